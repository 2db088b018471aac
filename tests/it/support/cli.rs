//! One-shot subcommands of the binary (`once`, `check-config`, `archive ...`): run to completion
//! with captured stdout/stderr and a deadline after which the child is killed and the test fails.
//!
//! Owns only short-lived runs; the long-running daemon is [`super::daemon`].

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::BIN;

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
