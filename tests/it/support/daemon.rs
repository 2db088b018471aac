//! The exporter under test as a subprocess.
//!
//! Owns: writing config files into a per-test work directory ([`WorkDir`]), starting the real binary
//! (`run --log.format json --log.level debug --web.listen-address 127.0.0.1:0`) and finding its bound
//! address from the "listening" log line ([`Daemon`]), a tiny HTTP/1.1 client ([`http_get`]), scrape
//! helpers with deadlines, signals and exit-status waits, log inspection ([`LogLine`]), and one-shot
//! subcommands (`once`, `check-config`) with captured output ([`run_cli`]). Every wait has a deadline,
//! and the daemon is killed when the handle drops.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pg::{TestDb, merge_defaults, toml_str};
use super::prom::Metrics;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_redshift-exporter");

/// A temporary directory holding a test's config file and CSV archive.
pub struct WorkDir {
    dir: tempfile::TempDir,
}

impl Default for WorkDir {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkDir {
    pub fn new() -> WorkDir {
        WorkDir {
            dir: tempfile::Builder::new()
                .prefix("rse-it-")
                .tempdir_in("/tmp")
                .expect("cannot create a work dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default archive directory (`<work>/archive`; not created).
    pub fn archive(&self) -> PathBuf {
        self.path().join("archive")
    }

    /// Writes `text` to `<work>/<name>` and returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("cannot write config");
        path
    }
}

/// `[exporter]` section used by the tests: namespace `itest`, archive under `archive_dir`, 1 s interval,
/// 2 s timeout, 10 s drain. `extra` lines are appended inside the section.
/// Keys that `extra` sets itself replace these defaults.
pub fn exporter_toml(archive_dir: &Path, extra: &str) -> String {
    let defaults = [
        ("namespace", toml_str("itest")),
        ("archive_dir", toml_str(&archive_dir.to_string_lossy())),
        ("default_interval", toml_str("1s")),
        ("default_timeout", toml_str("2s")),
        ("drain_timeout", toml_str("10s")),
    ];
    format!("[exporter]\n{}{extra}\n", merge_defaults(&defaults, extra))
}

/// One `[[checks]]` entry; `extra` lines (labels, values, interval, ...) are appended verbatim.
pub fn check_toml(name: &str, query: &str, extra: &str) -> String {
    format!(
        "[[checks]]\nname = {}\nhelp = {}\nquery = {}\n{extra}\n",
        toml_str(name),
        toml_str(&format!("Integration test check {name}.")),
        toml_str(query)
    )
}

/// A whole config: exporter section (archive in `work`), target `main` on `db`, then `checks`.
pub fn config_toml(work: &WorkDir, db: &TestDb, checks: &str) -> String {
    format!(
        "{}\n{}\n{checks}",
        exporter_toml(&work.archive(), ""),
        db.target_toml("main", "")
    )
}

/// One log line from the daemon's stderr (JSON when started with `--log.format json`).
#[derive(Clone, Debug)]
pub struct LogLine(pub String);

impl LogLine {
    /// Every string value of `key` in the line (JSON keys may repeat, e.g. `target`).
    pub fn fields(&self, key: &str) -> Vec<String> {
        let needle = format!("\"{key}\":\"");
        let mut out = Vec::new();
        let mut rest = self.0.as_str();
        while let Some(pos) = rest.find(&needle) {
            rest = &rest[pos + needle.len()..];
            let mut value = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(o) => value.push(o),
                        None => break,
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            out.push(value);
        }
        out
    }

    /// The first string value of `key`.
    pub fn field(&self, key: &str) -> Option<String> {
        self.fields(key).into_iter().next()
    }

    /// Whether some `key` has the string value `value`.
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.fields(key).iter().any(|v| v == value)
    }

    pub fn message(&self) -> Option<String> {
        self.field("message")
    }

    pub fn is_message(&self, message: &str) -> bool {
        self.has("message", message)
    }
}

/// The running exporter.
pub struct Daemon {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    addr: Option<SocketAddr>,
    /// When the "listening" line was seen.
    pub listening_at: Option<Instant>,
    pub spawned_at: Instant,
}

impl Daemon {
    /// Starts `run --config PATH` on 127.0.0.1:0 and waits (15 s) for the "listening" line.
    pub async fn start(config: &Path) -> Daemon {
        let mut d = Daemon::spawn(config, "127.0.0.1:0", &[], &[]);
        d.wait_listening(Duration::from_secs(15)).await;
        d
    }

    /// Starts `run --config PATH --web.listen-address LISTEN --log.format json --log.level debug ARGS...`
    /// without waiting; `env` is added to the child's environment.
    pub fn spawn(config: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut all: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            config.to_string_lossy().into(),
        ];
        all.extend(
            [
                "--web.listen-address",
                listen,
                "--log.format",
                "json",
                "--log.level",
                "debug",
            ]
            .map(String::from),
        );
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Daemon::spawn_raw(&all, env)
    }

    /// Starts the binary with exactly `args` (stderr captured as with [`Daemon::spawn`]).
    pub fn spawn_raw(args: &[String], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[daemon] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            logs,
            addr: None,
            listening_at: None,
            spawned_at: Instant::now(),
        }
    }

    /// Waits for the JSON log line with message "listening" and remembers its `address`.
    pub async fn wait_listening(&mut self, within: Duration) -> SocketAddr {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l.is_message("listening")) {
                let addr = line
                    .field("address")
                    .unwrap_or_else(|| panic!("\"listening\" line has no address: {}", line.0));
                let addr: SocketAddr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("bad listening address {addr:?}: {e}"));
                self.addr = Some(addr);
                self.listening_at = Some(Instant::now());
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "daemon exited ({status}) before logging \"listening\"; logs:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "daemon did not log \"listening\" within {within:?}; logs:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The bound HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("daemon is not listening yet")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// All stderr lines so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .map(LogLine)
            .collect()
    }

    /// Stderr so far as one string (for assertion messages).
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Log lines whose message is exactly `message`.
    pub fn logs_with_message(&self, message: &str) -> Vec<LogLine> {
        self.logs()
            .into_iter()
            .filter(|l| l.is_message(message))
            .collect()
    }

    /// Waits until some log line satisfies `pred`.
    pub async fn wait_log(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&LogLine) -> bool,
    ) -> LogLine {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.logs().into_iter().find(&pred) {
                return l;
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line {what} within {within:?}; logs:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path` against the daemon.
    pub async fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr(), path)
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}; logs:\n{}", self.log_text()))
    }

    /// `POST path` (empty body) against the daemon.
    pub async fn post(&self, path: &str) -> HttpResponse {
        http_request(self.addr(), "POST", path)
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}; logs:\n{}", self.log_text()))
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Scrapes and parses /metrics (status must be 200).
    pub async fn metrics(&self) -> Metrics {
        let resp = self.get("/metrics").await;
        assert_eq!(resp.status, 200, "GET /metrics: {}", resp.body);
        Metrics::parse(&resp.body)
            .unwrap_or_else(|e| panic!("unparsable /metrics ({e}):\n{}", resp.body))
    }

    /// Scrapes every 100 ms until `pred` holds; panics with the last scrape and the logs after `within`.
    pub async fn wait_metrics(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + within;
        loop {
            let m = self.metrics().await;
            if pred(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {within:?} waiting for {what}\n--- last /metrics ---\n{}\n--- logs ---\n{}",
                    m.text,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
    }

    /// Waits for the process to exit; panics after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match self.try_wait_exit(within).await {
            Some(s) => s,
            None => panic!(
                "daemon still running {within:?} later; logs:\n{}",
                self.log_text()
            ),
        }
    }

    /// Waits for the process to exit; `None` if it is still running after `within`.
    pub async fn try_wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // let the stderr thread drain the last lines
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
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

/// Minimal HTTP/1.1 GET with `Connection: close` and a 10 s overall deadline.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    http_request(addr, "GET", path).await
}

/// Minimal HTTP/1.1 request without a body (`Content-Length: 0` for anything but GET/HEAD),
/// `Connection: close`, 10 s overall deadline.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Result<HttpResponse, String> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let length = if method == "GET" || method == "HEAD" {
            ""
        } else {
            "Content-Length: 0\r\n"
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: it\r\nAccept: */*\r\n{length}Connection: close\r\n\r\n"
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| format!("GET {path}: no complete response within 10 s"))?
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
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
        body: String::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?,
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

/// Result of a one-shot subcommand.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CliOutput {
    /// Everything, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "exit code {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs the binary with `args` (e.g. `["once", "--config", path]`), extra `env`, and `unset` variables
/// removed from its environment. Killed and reported as a panic after `within`.
pub async fn run_cli(
    args: Vec<String>,
    env: Vec<(String, String)>,
    unset: Vec<String>,
    within: Duration,
) -> CliOutput {
    tokio::task::spawn_blocking(move || run_cli_blocking(&args, &env, &unset, within))
        .await
        .expect("run_cli thread panicked")
}

fn run_cli_blocking(
    args: &[String],
    env: &[(String, String)],
    unset: &[String],
    within: Duration,
) -> CliOutput {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in unset {
        cmd.env_remove(k);
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = start + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
            panic!(
                "{BIN} {args:?} still running after {within:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    CliOutput {
        code: status.code(),
        stdout,
        stderr,
        elapsed,
    }
}

/// `once --config PATH [extra...]` with a 30 s deadline.
pub async fn once(config: &Path, extra: &[&str]) -> CliOutput {
    let mut args = vec![
        "once".to_owned(),
        "--config".to_owned(),
        config.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    run_cli(args, vec![], vec![], Duration::from_secs(30)).await
}

/// `check-config --config PATH` with a 30 s deadline.
pub async fn check_config(config: &Path) -> CliOutput {
    let args = vec![
        "check-config".to_owned(),
        "--config".to_owned(),
        config.to_string_lossy().into_owned(),
    ];
    run_cli(args, vec![], vec![], Duration::from_secs(30)).await
}
