//! Process control of the exporter under test: starting the real binary (`run --log.format json
//! --log.level debug --web.listen-address 127.0.0.1:0`), finding its bound address from the
//! "listening" log line, collecting its stderr, scrapes with deadlines, signals and exit-status
//! waits. Every wait has a deadline, and the daemon is killed when the handle drops.
//!
//! Owns the long-running process only. Requests go through [`super::http`], log lines are
//! [`LogLine`]s ([`super::logs`]), one-shot subcommands are [`super::cli`], and config text is
//! [`super::config`]. The names that lived here before the split are re-exported below so a
//! test's `use crate::support::daemon::...` keeps working.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use super::cli::{CliOutput, check_config, once, run_cli};
#[allow(unused_imports)]
pub use super::config::{check_toml, config_toml, exporter_toml};
#[allow(unused_imports)]
pub use super::http::{HttpResponse, get as http_get};
pub use super::logs::LogLine;
pub use super::work::WorkDir;

use super::http;
use super::pg::{TestDb, database};
use super::prom::Metrics;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_redshift-exporter");

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
        let mut all = run_args(config, listen, Some("debug"));
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Daemon::spawn_raw(&all, env)
    }

    /// Starts `run --config PATH` on 127.0.0.1:0 with JSON logs at `level` (`None`: the
    /// binary's default, which [`spawn`](Self::spawn)'s `debug` would replace; `trace` for the
    /// tests that look for secrets in everything logged) and waits (15 s) for "listening".
    pub async fn start_at_level(
        config: &Path,
        level: Option<&str>,
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut d = Daemon::spawn_raw(&run_args(config, "127.0.0.1:0", level), env);
        d.wait_listening(Duration::from_secs(15)).await;
        d
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
        http::get(self.addr(), path)
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}; logs:\n{}", self.log_text()))
    }

    /// `POST path` (empty body) against the daemon.
    pub async fn post(&self, path: &str) -> HttpResponse {
        http::post(self.addr(), path)
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
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn sighup(&self) {
        self.signal(libc::SIGHUP);
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

/// A test's usual start: a fresh database, a work folder, a config `<work>/checks.toml` with
/// target `main` on that database and `checks` ([`config_toml`]), and the daemon running it,
/// listening. The database and folder are returned for the test to keep alive (and use), in
/// the order of declaration that drops the daemon first.
pub async fn start_with_checks(checks: &str) -> (TestDb, WorkDir, Daemon) {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = work.write("checks.toml", &config_toml(&work, &db, checks));
    let d = Daemon::start(&cfg).await;
    (db, work, d)
}

/// `run --config PATH --web.listen-address LISTEN --log.format json [--log.level LEVEL]`.
fn run_args(config: &Path, listen: &str, level: Option<&str>) -> Vec<String> {
    let mut all: Vec<String> = vec![
        "run".into(),
        "--config".into(),
        config.to_string_lossy().into(),
        "--web.listen-address".into(),
        listen.into(),
        "--log.format".into(),
        "json".into(),
    ];
    if let Some(level) = level {
        all.extend(["--log.level".into(), level.into()]);
    }
    all
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
