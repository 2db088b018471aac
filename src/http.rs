//! The HTTP server: `/metrics`, `/-/healthy`, `/-/ready`, HTML pages at `/` and
//! `/checks/{check}/{target}` ([`page`]), and
//! `POST /-/reload` with `--web.enable-lifecycle`.
//!
//! Every handler reads the snapshot (through the exposition's cache); none touches the
//! database. HTTP/1.1 only, via hyper, with a header read timeout that actually works
//! (hyper's `header_read_timeout` takes effect only when the builder is also given a timer).
//! TLS and basic authentication come from `--web.config.file` and cover every route.
//! Shutdown: stop accepting when the token fires; connections in flight get a short grace
//! period.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod archive;
pub mod page;

use crate::exposition::{Exposition, Format};
use crate::snapshot::Store;
use crate::web_config::{AuthResult, WebConfig};

/// The part of the server's state a configuration reload replaces.
pub struct Live {
    pub exposition: Exposition,
    pub store: Arc<Store>,
    /// `/`, with each target's section cached until it changes; made with `store` (a reload
    /// brings a new store, hence a new cache).
    pub pages: page::Landing,
    /// The archive root when `archive_serve = true`: `/archive/...` serves its files.
    pub archive_root: Option<std::path::PathBuf>,
}

/// A reload request: the answer goes back on the oneshot (`Err` lists the problems).
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the handlers need.
pub struct Web {
    /// Swapped whole on reload, so a scrape sees either the old or the new state, never a mix.
    live: RwLock<Arc<Live>>,
    /// TLS and basic authentication from `--web.config.file` (both off by default).
    pub security: WebConfig,
    /// `Some` with `--web.enable-lifecycle`: where `POST /-/reload` sends its request.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
}

impl Web {
    pub fn new(
        live: Live,
        security: WebConfig,
        reload: Option<mpsc::Sender<ReloadRequest>>,
    ) -> Self {
        Web {
            live: RwLock::new(Arc::new(live)),
            security,
            reload,
        }
    }

    /// The current state.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs the state of a new configuration.
    pub fn swap(&self, live: Live) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }
}

/// Binds the listener; a taken port is a start-up error.
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves until `shutdown` fires.
pub async fn serve(listener: TcpListener, web: Arc<Web>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    let acceptor = web
        .security
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // A large response may go out in more than one write; without TCP_NODELAY a short
        // last one could wait for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let web = web.clone();
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            match acceptor {
                None => serve_connection(stream, peer, web, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_connection(tls, peer, web, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), connections.wait()).await;
}

/// Deadline for a client to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_connection<IO>(io: IO, peer: SocketAddr, web: Arc<Web>, shutdown: CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let web = web.clone();
        async move { Ok::<_, Infallible>(handle(&web, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r {
            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
        },
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

async fn handle(web: &Web, req: Request<Incoming>) -> Response<Body> {
    // Authentication comes first: a denied request never reaches the snapshot.
    if let Some(auth) = &web.security.auth {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if auth.check(header).await == AuthResult::Denied {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"redshift-exporter\"",
                )
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::new([Bytes::from_static(b"Unauthorized\n")]))
                .expect("static response parts are valid");
        }
    }
    if req.uri().path() == "/-/reload" {
        return reload(web, req.method()).await.map(Body::from);
    }
    if req.uri().path() == "/metrics"
        && (req.method() == Method::GET || req.method() == Method::HEAD)
    {
        return metrics(web, &req);
    }
    if req.uri().path().starts_with(archive::PREFIX) {
        let live = web.live();
        return archive::serve(live.archive_root.as_deref(), req.method(), req.uri().path())
            .await
            .map(Body::from);
    }
    if req.uri().path() == "/" && (req.method() == Method::GET || req.method() == Method::HEAD) {
        // The cached sections go out as chunks of the body, uncopied.
        return html_headers(StatusCode::OK)
            .body(Body::new(web.live().pages.render()))
            .expect("static response parts are valid");
    }
    route(web, req).map(Body::from)
}

/// `/metrics`: the per-scrape part and the cached snapshot part as two chunks of one body,
/// so the (large, shared) cached bytes are never copied per scrape.
fn metrics(web: &Web, req: &Request<Incoming>) -> Response<Body> {
    let live = web.live();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header(header::VARY, "Accept, Accept-Encoding");
    if accepts_gzip(req.headers()) {
        builder
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::scrape(live.exposition.gzip_scrape_as(format)))
    } else {
        builder.body(Body::scrape(live.exposition.scrape_as(format)))
    }
    .expect("static response parts are valid")
}

/// A response body of ready chunks with an exact length (so hyper sends `Content-Length`
/// and writes the chunks with one vectored write where it can): its own chunks, then a run
/// of shared ones walked in place (a scrape's cached chunks, never copied into the body),
/// then its own last chunk.
pub struct Body {
    chunks: std::collections::VecDeque<Bytes>,
    /// The shared run and the index of its next chunk.
    shared: Option<(Arc<[Bytes]>, usize)>,
    tail: Option<Bytes>,
    remaining: u64,
}

impl Body {
    fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: std::collections::VecDeque<Bytes> =
            chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Body {
            chunks,
            shared: None,
            tail: None,
            remaining,
        }
    }

    fn scrape(s: crate::exposition::Scrape) -> Self {
        let remaining = s.chunks().map(|c| c.len() as u64).sum();
        Body {
            chunks: s.head.into_iter().filter(|c| !c.is_empty()).collect(),
            shared: Some((s.shared, 0)),
            tail: s.tail.filter(|c| !c.is_empty()),
            remaining,
        }
    }

    /// The next non-empty chunk, taken off the body.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(c) = self.chunks.pop_front() {
            return Some(c);
        }
        if let Some((run, at)) = &mut self.shared {
            while let Some(c) = run.get(*at) {
                *at += 1;
                if !c.is_empty() {
                    return Some(c.clone());
                }
            }
            self.shared = None;
        }
        self.tail.take()
    }
}

impl From<Full<Bytes>> for Body {
    fn from(full: Full<Bytes>) -> Self {
        // The other routes build `Full` bodies; `Full<Bytes>` yields its one frame at the
        // first poll, so no waker is ever needed.
        let mut full = std::pin::pin!(full);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match hyper::body::Body::poll_frame(full.as_mut(), &mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                Body::new([frame.into_data().unwrap_or_default()])
            }
            _ => Body::new([]),
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let chunk = self.next_chunk();
        if let Some(c) = &chunk {
            self.remaining -= c.len() as u64;
        }
        std::task::Poll::Ready(chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// `POST /-/reload` (or PUT), only with `--web.enable-lifecycle`.
async fn reload(web: &Web, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::POST && method != Method::PUT {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
    }
    let Some(tx) = &web.reload else {
        return text(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n");
    };
    let (answer, result) = oneshot::channel();
    if tx.send(answer).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match result.await {
        Ok(Ok(())) => text(StatusCode::OK, "configuration reloaded\n"),
        Ok(Err(problems)) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(format!(
                "configuration not reloaded; the previous one keeps running:\n{problems}\n"
            ))))
            .expect("static response parts are valid"),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    }
}

fn route(web: &Web, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let live = web.live();
    match req.uri().path() {
        "/-/healthy" => text(StatusCode::OK, "OK\n"),
        "/-/ready" => {
            if live.store.ready() {
                text(StatusCode::OK, "OK\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: waiting for every check's first run\n",
                )
            }
        }
        path if path.starts_with(page::CHECKS) => {
            match page::parse_path(path).and_then(|(check, target)| {
                page::check_page(&live.store, live.archive_root.as_deref(), check, target)
            }) {
                Some(body) => html(StatusCode::OK, body),
                None => text(
                    StatusCode::NOT_FOUND,
                    "not found: no such check on that target; see /\n",
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found; try /metrics\n"),
    }
}

/// `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

/// An HTML page; never cached (it shows the latest state) and never framed.
fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    html_headers(status)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// The headers of every HTML page: no caching by the browser, no sniffing, no script.
fn html_headers(status: StatusCode) -> hyper::http::response::Builder {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-content-type-options", "nosniff")
        .header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

/// The address actually bound, for logs and tests (port 0 → the chosen port).
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = hyper::HeaderMap::new();
            m.insert(hyper::header::ACCEPT_ENCODING, v.parse().unwrap());
            super::accepts_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("deflate, gzip;q=0.5"));
        assert!(h("GZIP"));
        assert!(!h("gzip;q=0"));
        assert!(!h("identity"));
        assert!(!super::accepts_gzip(&hyper::HeaderMap::new()));
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            super::page::esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
