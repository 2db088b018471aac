//! The tests' one HTTP client: HTTP/1.1 over a plain TCP socket to the daemon (or Prometheus,
//! moto), one request per connection (`Connection: close`), every exchange bounded by a
//! deadline.
//!
//! Owns building requests ([`request`], [`get`], [`post`]), the raw exchange
//! ([`raw_exchange`]: any bytes out, every byte back, for malformed-request tests) and parsing
//! a response (status, headers, body; chunked or sized). Hand-written rather than a client
//! crate: the tests must be able to send what no well-behaved client sends, and this is all
//! they need. TLS endpoints are tested with `curl` instead.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one exchange may take, connect to last byte: far above any response the daemon
/// gives, so hitting it means a hang.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text (invalid UTF-8 replaced); [`bytes`](Self::bytes) has it exactly.
    pub body: String,
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `method path` with extra `headers` and `body`. `Host`, `User-Agent`, `Accept: */*`
/// (unless `headers` has one), `Connection: close` and, for anything but GET/HEAD or with a
/// body, `Content-Length` are added.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: it\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        head.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || !(method == "GET" || method == "HEAD") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    let answer = raw_exchange(addr, &raw)
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    parse_response(&answer).map_err(|e| format!("{method} {path}: {e}"))
}

/// `GET path` with no extra headers.
pub async fn get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    request(addr, "GET", path, &[], b"").await
}

/// `POST path` with an empty body.
pub async fn post(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    request(addr, "POST", path, &[], b"").await
}

/// `GET path` with HTTP basic credentials (`user:password`) when given.
pub async fn get_as(
    addr: SocketAddr,
    path: &str,
    user_pass: Option<&str>,
) -> Result<HttpResponse, String> {
    use base64::Engine;
    let auth = user_pass.map(|up| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(up)
        )
    });
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request(addr, "GET", path, &headers, b"").await
}

/// Writes `bytes` as they are and reads until the peer closes: the raw
/// answer, within [`DEADLINE`]. For requests no client would send.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(raw)
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .map_err(|_| format!("no complete response within {DEADLINE:?}"))?
}

/// Parses a whole HTTP/1.x response (status line, headers, then a chunked, sized or
/// read-to-close body).
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length {len}"))?;
        if body.len() < len {
            return Err(format!("body truncated: {} of {len} bytes", body.len()));
        }
        body.truncate(len);
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk header")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[test]
fn responses_parse_sized_chunked_and_refuse_garbage() {
    let sized =
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi!").unwrap();
    assert_eq!((sized.status, sized.body.as_str()), (200, "hi"));
    assert_eq!(sized.header("x-a"), Some("b"));
    let chunked = parse_response(
        b"HTTP/1.1 404 NF\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;x\r\nd\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!((chunked.status, chunked.body.as_str()), (404, "abcd"));
    assert!(
        parse_response(b"\x15\x03\x03\x00\x02\x02\x46").is_err(),
        "a TLS alert is no response"
    );
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
}
