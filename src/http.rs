//! The HTTP server: `/metrics`, `/-/healthy`, `/-/ready`, a landing page at `/`, and
//! `POST /-/reload` with `--web.enable-lifecycle`.
//!
//! Every handler reads the snapshot (through the exposition's cache); none touches the
//! database. HTTP/1.1 only, via hyper, with a header read timeout that actually works
//! (hyper's `header_read_timeout` takes effect only when the builder is also given a timer).
//! TLS and basic authentication come from `--web.config.file` and cover every route.
//! Shutdown: stop accepting when the token fires; connections in flight get a short grace
//! period.

use std::convert::Infallible;
use std::fmt::Write as _;
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

use crate::exposition::{CONTENT_TYPE, Exposition};
use crate::snapshot::Store;
use crate::web_config::{AuthResult, WebConfig};

/// The part of the server's state a configuration reload replaces.
pub struct Live {
    pub exposition: Exposition,
    pub store: Arc<Store>,
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
    route(web, req).map(Body::from)
}

/// `/metrics`: the per-scrape part and the cached snapshot part as two chunks of one body,
/// so the (large, shared) cached bytes are never copied per scrape.
fn metrics(web: &Web, req: &Request<Incoming>) -> Response<Body> {
    let live = web.live();
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .header(header::VARY, "Accept-Encoding");
    if accepts_gzip(req.headers()) {
        builder
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::new(live.exposition.render_gzip_parts()))
    } else {
        builder.body(Body::new(live.exposition.render_parts()))
    }
    .expect("static response parts are valid")
}

/// A response body of ready chunks with an exact length (so hyper sends `Content-Length`
/// and writes the chunks with one vectored write where it can).
pub struct Body {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl Body {
    fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: std::collections::VecDeque<Bytes> =
            chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Body { chunks, remaining }
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
        let chunk = self.chunks.pop_front();
        if let Some(c) = &chunk {
            self.remaining -= c.len() as u64;
        }
        std::task::Poll::Ready(chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
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
        "/" => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(landing_page(
                &live.store,
                live.archive_root.as_deref(),
            ))))
            .expect("static response parts are valid"),
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

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

/// A small page: a link to `/metrics` and every check's last status on every target.
fn landing_page(store: &Store, archive_root: Option<&std::path::Path>) -> String {
    let st = store.read();
    let mut h = String::with_capacity(4096);
    h.push_str(concat!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Redshift Exporter</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}",
        ".ok{color:#060}.fail{color:#a00}.muted{color:#777}</style></head><body>",
        "<h1>Redshift Exporter</h1><p><a href=\"/metrics\">Metrics</a> · ",
        "<a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>"
    ));
    let _ = write!(
        h,
        "<p class=\"muted\">version {}</p>",
        env!("CARGO_PKG_VERSION")
    );
    h.push_str(
        "<h2>Targets</h2><table><tr><th>Target</th><th>Up</th><th>Deployment</th>\
         <th>Readable families</th><th>Labels</th></tr>",
    );
    for t in &st.targets {
        let up = match t.up {
            Some(true) => "<span class=\"ok\">up</span>",
            Some(false) => "<span class=\"fail\">down</span>",
            None => "<span class=\"muted\">not tried yet</span>",
        };
        let (dep, families) = match &t.capabilities {
            Some(c) if c.forced => (
                format!("{} (configured)", c.deployment.as_str()),
                "not probed".to_string(),
            ),
            Some(c) => (
                c.deployment.as_str().to_string(),
                c.readable_families().join(", "),
            ),
            None => ("not detected yet".to_string(), String::new()),
        };
        let labels: Vec<String> = t
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{up}</td><td>{dep}</td><td>{families}</td><td>{}</td></tr>",
            esc(&t.name),
            labels.join(" ")
        );
    }
    h.push_str(
        "</table><h2>Checks</h2><table><tr><th>Check</th><th>Target</th><th>Schedule</th>\
         <th>Status</th><th>Last run (UTC)</th><th>Duration</th><th>Rows</th><th>Detail</th></tr>",
    );
    for s in &st.slots {
        let (status, detail) = if let Some(why) = &s.not_applicable {
            ("<span class=\"muted\">skipped</span>".to_string(), esc(why))
        } else if !s.status.ran {
            (
                "<span class=\"muted\">pending</span>".to_string(),
                String::new(),
            )
        } else if s.status.success {
            let file = s
                .last_file
                .as_ref()
                .map(|p| {
                    let shown = esc(&p.display().to_string());
                    match archive_root.and_then(|r| archive::href(r, p)) {
                        Some(href) => format!("last CSV: <a href=\"{}\">{shown}</a>", esc(&href)),
                        None => format!("last CSV: {shown}"),
                    }
                })
                .unwrap_or_default();
            ("<span class=\"ok\">ok</span>".to_string(), file)
        } else {
            let e = s.status.last_error.as_ref();
            (
                format!(
                    "<span class=\"fail\">{}</span>",
                    e.map(|e| e.kind.as_str()).unwrap_or("error")
                ),
                e.map(|e| esc(&e.message)).unwrap_or_default(),
            )
        };
        let last = if s.status.last_run > 0.0 {
            chrono::DateTime::from_timestamp(s.status.last_run as i64, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let _ = write!(
            h,
            "<tr><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{status}</td><td>{last}</td><td>{:.3}s</td><td>{}</td><td>{detail}</td></tr>",
            esc(&s.check.help),
            esc(&s.check.name),
            esc(&s.target),
            esc(&s.check.schedule.to_string()),
            s.status.duration.as_secs_f64(),
            s.status.rows,
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
            super::esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
