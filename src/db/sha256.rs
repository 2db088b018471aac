//! Redshift's SHA-256 password authentication (authentication request code 13), answered by a
//! stream adapter that sits between the TLS stream and tokio-postgres.
//!
//! Owns: the digest (`SHA256(SHA256(password ‖ salt) ‖ server_nonce ‖ client_nonce)`, as AWS's
//! JDBC and Python drivers compute it), the parsing of the server's `R(13)` request, the `'d'`
//! reply, and [`DigestTls`], a `MakeTlsConnect` wrapper that puts the adapter on every TLS
//! session it opens. The adapter looks at the first message the server sends after the startup
//! message: an `R(13)` is answered here and tokio-postgres only sees what follows (`R(0)` or an
//! `ErrorResponse`); anything else (MD5, SCRAM, trust, an error) is handed up untouched and the
//! adapter becomes a plain pass-through. So pooling, TLS verification, channel binding and
//! cancel requests stay tokio-postgres's.
//!
//! Does not own: which targets get the adapter (`db`: only targets that may be Redshift, since
//! other PostgreSQL forks give code 13 another meaning), the password's source, or plain-TCP
//! sessions (tokio-postgres does not call a TLS connector with `sslmode = disable`, so a code-13
//! request there fails with the driver's "unknown authentication tag" and `db` says to use TLS).
//! Only algorithm 0 (SHA-256) exists; others are refused before anything is sent.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::config::Secret;

/// Every error this module raises starts with this, so `db` can classify it as `auth`.
pub const ERROR_PREFIX: &str = "Redshift sha256 password authentication";

/// The authentication request code Redshift sends for sha256 passwords.
const AUTH_REQ_DIGEST: u32 = 13;
/// The largest request we buffer: a real one is 8 + 4 + 4 + 4 + 32 + 4 + 32 bytes.
const MAX_REQUEST: usize = 4096;

/// `SHA256(password ‖ salt)`: what the server stores (password-equivalent, like MD5's hash).
pub fn verifier(password: &[u8], salt: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(password);
    ctx.update(salt);
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The client's proof: `SHA256(verifier ‖ server_nonce ‖ client_nonce)`.
pub fn digest(password: &[u8], salt: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> [u8; 32] {
    digest_from_verifier(&verifier(password, salt), server_nonce, client_nonce)
}

/// The proof computed from the stored verifier, as a server checks it.
pub fn digest_from_verifier(
    verifier: &[u8; 32],
    server_nonce: &[u8],
    client_nonce: &[u8],
) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(verifier);
    ctx.update(server_nonce);
    ctx.update(client_nonce);
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The `'d'` message: `'d' Int32(len) Int32(32) digest Int32(n) client_nonce`.
pub fn response_message(digest: &[u8; 32], client_nonce: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + 4 + 4 + 32 + 4 + client_nonce.len());
    m.push(b'd');
    m.extend_from_slice(&((4 + 4 + 32 + 4 + client_nonce.len()) as u32).to_be_bytes());
    m.extend_from_slice(&32u32.to_be_bytes());
    m.extend_from_slice(digest);
    m.extend_from_slice(&(client_nonce.len() as u32).to_be_bytes());
    m.extend_from_slice(client_nonce);
    m
}

/// A parsed `R(13)` request.
#[derive(Debug, PartialEq, Eq)]
pub struct DigestRequest {
    pub salt: Vec<u8>,
    pub server_nonce: Vec<u8>,
}

/// Parses the body of an `R(13)` message after the code: algorithm, salt, server nonce.
pub fn parse_request(body: &[u8]) -> Result<DigestRequest, String> {
    let mut rest = body;
    let algorithm = take_u32(&mut rest, "algorithm")?;
    if algorithm != 0 {
        let name = match algorithm {
            1 => " (scrypt)",
            2 => " (argon2)",
            _ => "",
        };
        return Err(format!(
            "{ERROR_PREFIX}: the server asked for digest algorithm {algorithm}{name}; only 0 (SHA-256) is supported"
        ));
    }
    let salt = take_field(&mut rest, "salt")?;
    let server_nonce = take_field(&mut rest, "server nonce")?;
    if !rest.is_empty() {
        return Err(format!(
            "{ERROR_PREFIX}: {} unexpected bytes after the server nonce",
            rest.len()
        ));
    }
    if salt.is_empty() || server_nonce.is_empty() {
        return Err(format!("{ERROR_PREFIX}: empty salt or server nonce"));
    }
    Ok(DigestRequest {
        salt: salt.to_vec(),
        server_nonce: server_nonce.to_vec(),
    })
}

fn take_u32(rest: &mut &[u8], what: &str) -> Result<u32, String> {
    if rest.len() < 4 {
        return Err(format!(
            "{ERROR_PREFIX}: the request ends before its {what}"
        ));
    }
    let (head, tail) = rest.split_at(4);
    *rest = tail;
    Ok(u32::from_be_bytes(head.try_into().unwrap()))
}

/// An `Int32(len)` followed by that many bytes.
fn take_field<'a>(rest: &mut &'a [u8], what: &str) -> Result<&'a [u8], String> {
    let len = take_u32(rest, &format!("{what} length"))? as usize;
    if rest.len() < len {
        return Err(format!(
            "{ERROR_PREFIX}: the {what} length ({len}) overruns the request"
        ));
    }
    let (field, tail) = rest.split_at(len);
    *rest = tail;
    Ok(field)
}

/// The client nonce both AWS drivers send: Unix time in milliseconds, as decimal ASCII.
fn client_nonce() -> Vec<u8> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    ms.to_string().into_bytes()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

enum State {
    /// Waiting for (and buffering) the server's first message after the startup message.
    AwaitFirst,
    /// Writing our `'d'` reply (`out[pos..]` is left), then flushing.
    Replying { out: Vec<u8>, pos: usize },
    /// Reply sent: the next message (R(0) or E) goes up; a second R(13) is an error.
    AwaitOutcome,
    /// Everything passes through; `held[pos..]` is what was buffered and not yet handed up.
    Passthrough { held: Vec<u8>, pos: usize },
}

/// A session stream that answers Redshift's `R(13)` itself (see the module doc).
pub struct DigestStream<S> {
    inner: S,
    password: Option<Arc<Secret>>,
    state: State,
    buf: Vec<u8>,
}

impl<S> DigestStream<S> {
    /// Wraps a stream on which the startup message is about to be sent.
    pub fn new(inner: S, password: Option<Arc<Secret>>) -> Self {
        DigestStream {
            inner,
            password,
            state: State::AwaitFirst,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> DigestStream<S> {
    /// Drives a pending reply to the server; `Ready(Ok)` when there is none.
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let State::Replying { out, pos } = &mut self.state {
            while *pos < out.len() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &out[*pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *pos += n;
            }
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            self.state = State::AwaitOutcome;
        }
        Poll::Ready(Ok(()))
    }

    /// What to do with the buffered bytes: `None` when more are needed.
    fn decide(&mut self) -> io::Result<Option<State>> {
        let b = &self.buf;
        if b.is_empty() {
            return Ok(None);
        }
        if b[0] != b'R' {
            return Ok(Some(self.release()));
        }
        if b.len() < 9 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(b[1..5].try_into().unwrap()) as usize;
        let code = u32::from_be_bytes(b[5..9].try_into().unwrap());
        if code != AUTH_REQ_DIGEST || len < 8 {
            return Ok(Some(self.release()));
        }
        if matches!(self.state, State::AwaitOutcome) {
            return Err(invalid(format!(
                "{ERROR_PREFIX}: the server asked a second time after our answer"
            )));
        }
        if len > MAX_REQUEST {
            return Err(invalid(format!(
                "{ERROR_PREFIX}: the request is implausibly long ({len} bytes)"
            )));
        }
        if b.len() < 1 + len {
            return Ok(None);
        }
        let request = parse_request(&b[9..1 + len]).map_err(invalid)?;
        let Some(password) = &self.password else {
            return Err(invalid(format!(
                "{ERROR_PREFIX}: the server asked for a password and the target has none"
            )));
        };
        let nonce = client_nonce();
        let digest = digest(
            password.expose().as_bytes(),
            &request.salt,
            &request.server_nonce,
            &nonce,
        );
        self.buf.drain(..1 + len);
        Ok(Some(State::Replying {
            out: response_message(&digest, &nonce),
            pos: 0,
        }))
    }

    fn release(&mut self) -> State {
        State::Passthrough {
            held: std::mem::take(&mut self.buf),
            pos: 0,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for DigestStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Passthrough { held, pos } => {
                    if *pos < held.len() {
                        let n = buf.remaining().min(held.len() - *pos);
                        buf.put_slice(&held[*pos..*pos + n]);
                        *pos += n;
                        if *pos == held.len() {
                            *held = Vec::new();
                            *pos = 0;
                        }
                        return Poll::Ready(Ok(()));
                    }
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
                State::Replying { .. } => ready!(this.poll_reply(cx))?,
                State::AwaitFirst | State::AwaitOutcome => {
                    if let Some(next) = this.decide()? {
                        this.state = next;
                        continue;
                    }
                    let mut chunk = [0u8; 512];
                    let mut rb = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                    if rb.filled().is_empty() {
                        // EOF: hand up what there is; tokio-postgres reports the short read.
                        this.state = this.release();
                        continue;
                    }
                    this.buf.extend_from_slice(rb.filled());
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for DigestStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_reply(cx))?;
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_reply(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for DigestStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose sessions answer `R(13)` with `password` (see the module doc).
#[derive(Clone)]
pub struct DigestTls<T> {
    pub inner: T,
    pub password: Option<Arc<Secret>>,
}

impl<S, T: MakeTlsConnect<S>> MakeTlsConnect<S> for DigestTls<T> {
    type Stream = DigestStream<T::Stream>;
    type TlsConnect = DigestConnect<T::TlsConnect>;
    type Error = T::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(DigestConnect {
            inner: self.inner.make_tls_connect(domain)?,
            password: self.password.clone(),
        })
    }
}

/// One TLS handshake whose stream gets the adapter.
pub struct DigestConnect<C> {
    inner: C,
    password: Option<Arc<Secret>>,
}

impl<S, C: TlsConnect<S>> TlsConnect<S> for DigestConnect<C> {
    type Stream = DigestStream<C::Stream>;
    type Error = C::Error;
    type Future = DigestConnectFuture<C::Future>;

    fn connect(self, stream: S) -> Self::Future {
        DigestConnectFuture {
            inner: Box::pin(self.inner.connect(stream)),
            password: self.password,
        }
    }
}

/// The inner handshake, then the adapter around its stream.
pub struct DigestConnectFuture<F> {
    inner: Pin<Box<F>>,
    password: Option<Arc<Secret>>,
}

impl<F, S, E> Future for DigestConnectFuture<F>
where
    F: Future<Output = Result<S, E>>,
{
    type Output = Result<DigestStream<S>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let stream = ready!(self.inner.as_mut().poll(cx))?;
        Poll::Ready(Ok(DigestStream::new(stream, self.password.take())))
    }
}

#[cfg(test)]
mod tests;
