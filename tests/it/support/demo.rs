//! `redshift-exporter demo` as a subprocess: started on a free loopback port and waited for
//! until ready, signalled, waited for until it exits, and checked for PostgreSQL processes and
//! folders it left behind. Every wait has a deadline; the process is killed on drop.
//!
//! Owns only the demo's process; requests go through [`super::http`].

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::daemon::BIN;
use super::http;
use super::pg::free_port;

/// A running `demo`.
pub struct Demo {
    child: Child,
    /// `127.0.0.1:PORT` it serves on.
    pub addr: SocketAddr,
    /// Everything it printed so far (it prints its URLs and folders on stdout).
    stdout: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts `demo --web.listen-address 127.0.0.1:PORT` and waits until `/-/ready` answers
    /// 200; panics, with what it printed, when it exits first or `within` passes.
    pub async fn start(within: Duration) -> Demo {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut child = Command::new(BIN)
            .args(["demo", "--web.listen-address", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stdout);
        let pipe = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut demo = Demo {
            child,
            addr,
            stdout,
        };
        let deadline = Instant::now() + within;
        loop {
            assert!(
                Instant::now() < deadline,
                "demo not ready within {within:?}; stdout:\n{}",
                demo.stdout()
            );
            if let Some(status) = demo.child.try_wait().unwrap() {
                panic!("demo exited early ({status}); stdout:\n{}", demo.stdout());
            }
            if http::get(addr, "/-/ready")
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return demo;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends `signal` (e.g. `libc::SIGINT`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits for the exit; panics with `what` after `within`.
    pub async fn wait_exit(&mut self, within: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "demo did not exit {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Panics if a PostgreSQL process or folder of this demo's (`pgtemp` names its folders
    /// `/tmp/redshift-exporter-pg-{pid}-...`) is still there.
    pub fn assert_no_postgres_left(&self) {
        let marker = format!("redshift-exporter-pg-{}-", self.pid());
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let procs = String::from_utf8_lossy(&ps.stdout);
        let left: Vec<&str> = procs.lines().filter(|l| l.contains(&marker)).collect();
        assert!(left.is_empty(), "postgres processes left behind: {left:?}");
        let folders: Vec<String> = std::fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&marker))
            .collect();
        assert!(
            folders.is_empty(),
            "PostgreSQL folders left behind: {folders:?}"
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
