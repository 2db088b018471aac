//! `redshift-exporter demo`: starts its own PostgreSQL with the Redshift emulation, serves the
//! shipped pack's metrics for a provisioned, a Serverless and a Multi-AZ target (as a
//! least-privilege monitoring user), and removes everything (server processes, data folder,
//! archive) on Ctrl-C, exiting 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::daemon::BIN;
use crate::support::http::get as http_get;
use crate::support::pg::free_port;
use crate::support::prom::Metrics;
use crate::support::secs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_every_deployment_and_cleans_up_on_ctrl_c() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["demo", "--web.listen-address", &listen])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    let out = Arc::new(Mutex::new(String::new()));
    let sink = out.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });

    // It serves the pack's metrics for every deployment once every first run is done.
    let addr = listen.parse().unwrap();
    let deadline = Instant::now() + secs(60);
    let metrics = loop {
        assert!(
            Instant::now() < deadline,
            "demo not ready; stdout:\n{}",
            out.lock().unwrap()
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "demo exited early ({status}); stdout:\n{}",
                out.lock().unwrap()
            );
        }
        if let Ok(r) = http_get(addr, "/-/ready").await {
            if r.status == 200 {
                let m = http_get(addr, "/metrics").await.unwrap();
                break Metrics::parse(&m.body).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let printed = out.lock().unwrap().clone();
    assert!(
        printed.contains(&format!("http://{listen}/metrics")),
        "{printed}"
    );
    assert!(printed.contains("CSV archive"), "{printed}");
    // The landing page comes first, before the other lines...
    assert!(
        printed
            .lines()
            .next()
            .unwrap_or_default()
            .contains(&format!("http://{listen}/ ")),
        "the first line is not the landing page:\n{printed}"
    );
    // ...and names the seeded incidents.
    let page = http_get(addr, "/").await.unwrap().body;
    for want in [
        "redshift_disk_used_ratio{node=\"1\"}</code> = <b>94 %",
        "redshift_wlm_queue_queued_queries",
        "redshift_locks_waiting",
    ] {
        assert!(page.contains(want), "landing page lacks {want:?}:\n{page}");
    }
    // The seeded incident (disk 94% on node 1) on the provisioned target...
    assert_eq!(
        metrics.get(
            "redshift_disk_used_ratio",
            &[("target", "provisioned"), ("node", "1")]
        ),
        Some(0.94)
    );
    // ...Serverless usage on the Serverless one, and no failed check anywhere.
    assert!(
        !metrics
            .find(
                "redshift_serverless_charged_rpu_seconds",
                &[("target", "serverless")]
            )
            .is_empty()
    );
    // ...and each target detected as what it emulates.
    for t in ["provisioned", "serverless", "multi_az"] {
        assert_eq!(
            metrics
                .find(
                    "redshift_exporter_target_info",
                    &[("target", t), ("deployment", t)]
                )
                .len(),
            1,
            "{t} not detected as {t}"
        );
    }
    let failed: Vec<String> = metrics
        .find("redshift_exporter_check_success", &[])
        .into_iter()
        .filter(|s| s.value != 1.0)
        .map(|s| s.to_string())
        .collect();
    assert!(failed.is_empty(), "failed checks in the demo: {failed:?}");
    let archive = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("CSV archive"))
        .map(|p| p.trim().to_string())
        .unwrap();

    // Ctrl-C: exit 0, and nothing is left behind.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let deadline = Instant::now() + secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo did not exit after SIGINT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "demo exited with {status}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        out.lock().unwrap().contains("Demo stopped"),
        "{}",
        out.lock().unwrap()
    );
    assert!(
        !std::path::Path::new(&archive).exists(),
        "archive {archive} left behind"
    );
    let leftovers: Vec<String> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("redshift-exporter-pg-{pid}-")))
        .collect();
    assert!(
        leftovers.is_empty(),
        "PostgreSQL folders left behind: {leftovers:?}"
    );
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let procs = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !procs
            .lines()
            .any(|l| l.contains(&format!("redshift-exporter-pg-{pid}-"))),
        "postgres processes left behind"
    );
}

/// A second Ctrl-C while the demo shuts down: it exits (code 1) and still leaves no
/// PostgreSQL process or folder behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_second_signal_leaves_no_postgres_behind() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["demo", "--web.listen-address", &listen])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    let addr = listen.parse().unwrap();
    let deadline = Instant::now() + secs(60);
    loop {
        assert!(Instant::now() < deadline, "demo not ready");
        assert!(child.try_wait().unwrap().is_none(), "demo exited early");
        if let Ok(r) = http_get(addr, "/-/ready").await {
            if r.status == 200 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for _ in 0..2 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "demo did not exit after two signals"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let procs = String::from_utf8_lossy(&ps.stdout);
    let left: Vec<&str> = procs
        .lines()
        .filter(|l| l.contains(&format!("redshift-exporter-pg-{pid}-")))
        .collect();
    assert!(left.is_empty(), "postgres processes left behind: {left:?}");
    let folders: Vec<String> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("redshift-exporter-pg-{pid}-")))
        .collect();
    assert!(
        folders.is_empty(),
        "PostgreSQL folders left behind: {folders:?}"
    );
}
