//! Configuration reload and signals, as documented in the README (not in the interface notes):
//! SIGHUP and `POST /-/reload` (with `--web.enable-lifecycle`) re-read checks.toml; an invalid file
//! keeps the running configuration and sets `redshift_exporter_config_last_reload_successful` to 0;
//! SIGINT shuts down gracefully like SIGTERM and a second signal exits at once.

use std::time::Instant;

use crate::support::names::*;
use crate::support::*;

const RELOAD_OK: &str = "redshift_exporter_config_last_reload_successful";
const T: (&str, &str) = ("target", "main");

fn checks_v1() -> String {
    check_toml("keep", "SELECT 1 AS v", "values = [\"v\"]")
        + &check_toml("gone", "SELECT 2 AS v", "values = [\"v\"]")
}

fn checks_v2() -> String {
    check_toml("keep", "SELECT 1 AS v", "values = [\"v\"]")
        + &check_toml(
            "fresh",
            "SELECT 3 AS v",
            "values = [\"v\"]\ninterval = \"1h\"",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_adds_and_removes_checks_without_restart() {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks_v1()));
    let mut d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("keep and gone exported", secs(10), |m| {
            m.get("itest_keep_v", &[T]) == Some(1.0) && m.get("itest_gone_v", &[T]) == Some(2.0)
        })
        .await;
    let keep_runs = m
        .check_value_with(RUNS, "keep", "result", "success")
        .unwrap_or(0.0);

    // without --web.enable-lifecycle the HTTP reload is refused
    work.write("checks.toml", &config_toml(&work, &db, &checks_v2()));
    let refused = d.post("/-/reload").await;
    assert!(
        (400..500).contains(&refused.status),
        "POST /-/reload without --web.enable-lifecycle: {} {}",
        refused.status,
        refused.body
    );
    tokio::time::sleep(secs(1)).await;
    let m = d.metrics().await;
    assert!(
        m.find("itest_fresh_v", &[]).is_empty(),
        "a refused reload must not apply the file"
    );

    d.signal(libc::SIGHUP);
    let m = d
        .wait_metrics("fresh added and gone removed after SIGHUP", secs(10), |m| {
            m.get("itest_fresh_v", &[T]) == Some(3.0) && m.find("itest_gone_v", &[]).is_empty()
        })
        .await;
    assert!(
        m.find(SUCCESS, &[("check", "gone")]).is_empty(),
        "self metrics of a removed check go too:\n{}",
        m.lines_with("\"gone\"")
    );
    assert_eq!(
        m.get(RELOAD_OK, &[]),
        Some(1.0),
        "{}",
        m.lines_with(RELOAD_OK)
    );
    assert!(
        m.check_value_with(RUNS, "keep", "result", "success")
            .unwrap_or(0.0)
            >= keep_runs,
        "an unchanged check keeps its counters:\n{}",
        m.lines_with(RUNS)
    );
    assert!(
        d.try_wait_exit(ms(10)).await.is_none(),
        "SIGHUP must not stop the daemon"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_the_running_configuration() {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks_v1()));
    let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &["--web.enable-lifecycle"], &[]);
    d.wait_listening(secs(15)).await;
    d.wait_metrics("keep exported", secs(10), |m| {
        m.get("itest_keep_v", &[T]) == Some(1.0)
    })
    .await;

    let broken = config_toml(&work, &db, &checks_v2()) + "bogus_reload_key = 1\n";
    work.write("checks.toml", &broken);
    d.signal(libc::SIGHUP);
    let m = d
        .wait_metrics("the failed reload to be reported", secs(10), |m| {
            m.get(RELOAD_OK, &[]) == Some(0.0)
        })
        .await;
    assert!(
        m.find("itest_fresh_v", &[]).is_empty(),
        "an invalid file is not applied"
    );
    let runs = m
        .check_value_with(RUNS, "keep", "result", "success")
        .unwrap_or(0.0);
    d.wait_metrics("the old checks to keep running", secs(6), |m| {
        m.check_value_with(RUNS, "keep", "result", "success")
            .unwrap_or(0.0)
            > runs
            && m.get("itest_gone_v", &[T]) == Some(2.0)
    })
    .await;

    let resp = d.post("/-/reload").await;
    assert_eq!(
        resp.status, 500,
        "POST /-/reload with an invalid file: {}",
        resp.body
    );
    assert!(
        resp.body.contains("bogus_reload_key"),
        "the answer lists the problems: {}",
        resp.body
    );

    work.write("checks.toml", &config_toml(&work, &db, &checks_v2()));
    let resp = d.post("/-/reload").await;
    assert_eq!(
        resp.status, 200,
        "POST /-/reload with a valid file: {}",
        resp.body
    );
    let m = d
        .wait_metrics("the valid reload applied", secs(10), |m| {
            m.get("itest_fresh_v", &[T]) == Some(3.0) && m.get(RELOAD_OK, &[]) == Some(1.0)
        })
        .await;
    assert!(
        m.find("itest_gone_v", &[]).is_empty(),
        "{}",
        m.lines_with("gone")
    );
    assert!(d.try_wait_exit(ms(10)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_and_a_second_signal_exits_at_once() {
    let (mut d, client, _work) = daemon_with_stuck_check("20s").await;

    d.signal(libc::SIGINT);
    assert!(
        d.try_wait_exit(ms(1500)).await.is_none(),
        "SIGINT must drain (the running check has 20 s), not exit at once; logs:\n{}",
        d.log_text()
    );
    assert_eq!(
        d.get("/-/healthy").await.status,
        200,
        "still serving while draining"
    );
    let second = Instant::now();
    d.signal(libc::SIGINT);
    let status = d.wait_exit(secs(5)).await;
    eprintln!(
        "exit {status} {:?} after the second signal",
        second.elapsed()
    );
    assert!(
        second.elapsed() < secs(3),
        "a second signal exits at once, took {:?}",
        second.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(1),
        "an aborted drain is not a clean exit"
    );
    // ...and what was running is cancelled on the server, not left behind.
    wait_statements(&client, "pg_sleep(30)", false, secs(2)).await;
}
