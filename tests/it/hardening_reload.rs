//! Hardening, configuration reload: SIGHUP and `POST /-/reload` check the new file with the
//! start-up validation; a bad file leaves the old configuration running and sets
//! `redshift_exporter_config_last_reload_successful` to 0; a good one swaps checks and targets
//! without dropping unchanged pools (same backend pid) or interrupting a running check; scrapes
//! during repeated reloads all succeed; POST without `--web.enable-lifecycle` is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::support::names::*;
use crate::support::*;

const RELOAD_OK: &str = "redshift_exporter_config_last_reload_successful";
const RELOAD_TS: &str = "redshift_exporter_config_last_reload_success_timestamp_seconds";

fn reload_config(work: &WorkDir, db: &TestDb, extra_checks: &str) -> String {
    exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml("main", "pool_size = 1")
        + "\n"
        + &db.target_toml("slowt", "pool_size = 1")
        + &check_toml(
            "pid",
            "SELECT pg_backend_pid()::float8 AS pid",
            "values = [\"pid\"]\ninterval = \"1s\"\ntargets = [\"main\"]",
        )
        + &check_toml(
            "slow",
            "SELECT 4 AS v FROM pg_sleep(5)",
            "values = [\"v\"]\ninterval = \"1h\"\ntimeout = \"15s\"\ntargets = [\"slowt\"]",
        )
        + extra_checks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_bad_file_keeps_the_old_config_good_file_swaps_without_dropping_pools() {
    let db = database().await;
    let work = WorkDir::new();
    let path = work.write("checks.toml", &reload_config(&work, &db, ""));
    let client = db.connect().await;
    let d = Daemon::start(&path).await;
    let m = d
        .wait_metrics("a backend pid", secs(10), |m| {
            m.get("itest_pid_pid", &[("target", "main")]).is_some()
        })
        .await;
    let pid0 = m.get("itest_pid_pid", &[("target", "main")]).unwrap();
    assert_eq!(m.get(RELOAD_OK, &[]), Some(1.0));
    let deadline = Instant::now() + secs(5);
    while count_active(&client, "pg_sleep(5)").await == 0 {
        assert!(Instant::now() < deadline, "slow check not running");
        tokio::time::sleep(ms(50)).await;
    }

    // A bad file: the start-up validation's problems, the old configuration keeps running.
    let bad = reload_config(&work, &db, "").replace("interval = \"1s\"", "interval = \"1 parsec\"")
        + "bogus_key = 1\n";
    work.write("checks.toml", &bad);
    let cc = check_config(&path).await;
    assert_eq!(cc.code, Some(2), "{}", cc.dump());
    d.sighup();
    let m = d
        .wait_metrics("reload_successful 0", secs(5), |m| {
            m.get(RELOAD_OK, &[]) == Some(0.0)
        })
        .await;
    let line = d
        .wait_log("\"configuration reload failed\"", secs(2), |l| {
            l.message()
                .is_some_and(|m| m.starts_with("configuration reload failed"))
        })
        .await;
    let err = line.field("error").unwrap_or_default();
    for needle in ["1 parsec", "bogus_key"] {
        assert!(err.contains(needle), "reload error lacks {needle}: {err}");
        assert!(cc.stderr.contains(needle), "check-config lacks {needle}");
    }
    let runs = m.check_value_with(RUNS, "pid", "result", "success");
    let runs = runs.unwrap();
    let m = d
        .wait_metrics("the old config still runs", secs(5), |m| {
            m.check_value_with(RUNS, "pid", "result", "success")
                .unwrap_or(0.0)
                >= runs + 2.0
        })
        .await;
    assert_eq!(m.get(RELOAD_OK, &[]), Some(0.0));
    let ts_before = m.get(RELOAD_TS, &[]).unwrap();

    // A good file: a check added, one unchanged target kept with its session.
    work.write(
        "checks.toml",
        &reload_config(
            &work,
            &db,
            &check_toml(
                "added",
                "SELECT 2 AS v",
                "values = [\"v\"]\ntargets = [\"main\"]",
            ),
        ),
    );
    d.sighup();
    let m = d
        .wait_metrics("the added check after the reload", secs(6), |m| {
            m.get(RELOAD_OK, &[]) == Some(1.0)
                && m.get("itest_added_v", &[("target", "main")]) == Some(2.0)
        })
        .await;
    assert!(m.get(RELOAD_TS, &[]).unwrap() > ts_before);
    assert!(
        count_active(&client, "pg_sleep(5)").await >= 1,
        "the slow run is still going across both reloads"
    );
    let runs = m
        .check_value_with(RUNS, "pid", "result", "success")
        .unwrap();
    let m = d
        .wait_metrics("pid runs after the reload", secs(5), |m| {
            m.check_value_with(RUNS, "pid", "result", "success")
                .unwrap_or(0.0)
                >= runs + 2.0
        })
        .await;
    assert_eq!(
        m.get("itest_pid_pid", &[("target", "main")]),
        Some(pid0),
        "the unchanged target's pool (and session) survives the reload"
    );
    // The slow run that began before the reloads completes and is recorded.
    let m = d
        .wait_metrics("the slow check's result", secs(8), |m| {
            m.get("itest_slow_v", &[("target", "slowt")]) == Some(4.0)
        })
        .await;
    assert_eq!(
        m.get(
            RUNS,
            &[
                ("target", "slowt"),
                ("check", "slow"),
                ("result", "success")
            ]
        ),
        Some(1.0)
    );
    assert!(
        !d.logs()
            .iter()
            .any(|l| l.is_message("check failed") && l.has("check", "slow")),
        "{}",
        d.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_needs_lifecycle_and_scrapes_never_fail_during_reloads() {
    let db = database().await;
    let work = WorkDir::new();
    let a = reload_config(&work, &db, "");
    let b = reload_config(
        &work,
        &db,
        &check_toml(
            "extra",
            "SELECT 1 AS v",
            "values = [\"v\"]\ntargets = [\"main\"]",
        ),
    );
    let path = work.write("checks.toml", &a);

    // Without --web.enable-lifecycle: 403, nothing reloaded.
    let d = Daemon::start(&path).await;
    let r = d.post("/-/reload").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(d.logs_with_message("configuration reloaded").is_empty());
    drop(d);

    let mut d = Daemon::spawn(&path, "127.0.0.1:0", &["--web.enable-lifecycle"], &[]);
    let addr = d.wait_listening(secs(15)).await;
    d.wait_metrics("first runs", secs(10), |m| {
        m.check_value(SUCCESS, "pid").is_some()
    })
    .await;
    assert_eq!(d.get("/-/reload").await.status, 405, "GET is not a reload");

    // Scrape in a loop while reloading repeatedly.
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Acquire) {
                match http::get(addr, "/metrics").await {
                    Ok(r) if r.status == 200 => match Metrics::parse(&r.body) {
                        Ok(m) => {
                            for f in [
                                SUCCESS,
                                RUNS,
                                TARGET_UP,
                                POOL_MAX,
                                BUILD_INFO,
                                RELOAD_OK,
                                RELOAD_TS,
                                "process_start_time_seconds",
                            ] {
                                if !m.has_family(f) {
                                    failures.push(format!("scrape {n}: no {f}"));
                                }
                            }
                        }
                        Err(e) => failures.push(format!("scrape {n}: {e}")),
                    },
                    Ok(r) => failures.push(format!("scrape {n}: status {}", r.status)),
                    Err(e) => failures.push(format!("scrape {n}: {e}")),
                }
                n += 1;
            }
            (n, failures)
        })
    };
    for i in 0..12 {
        work.write("checks.toml", if i % 2 == 0 { &b } else { &a });
        let r = d.post("/-/reload").await;
        assert_eq!(r.status, 200, "reload {i}: {}", r.body);
        tokio::time::sleep(ms(150)).await;
    }
    // An invalid file over HTTP: 500 with the problems; the state stays scrapeable.
    work.write(
        "checks.toml",
        &(a.clone() + "[[checks]]\nname = \"Bad Name\"\n"),
    );
    let r = d.post("/-/reload").await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("Bad Name"), "{}", r.body);
    tokio::time::sleep(ms(300)).await;
    stop.store(true, Ordering::Release);
    let (n, failures) = scraper.await.unwrap();
    assert!(n >= 20, "only {n} scrapes");
    assert!(
        failures.is_empty(),
        "{} failed scrapes:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let m = d.metrics().await;
    assert_eq!(m.get(RELOAD_OK, &[]), Some(0.0));
    assert!(
        m.get("itest_extra_v", &[("target", "main")]).is_none()
            && m.check_value(SUCCESS, "extra").is_none(),
        "the last good file (without `extra`) is the one running:\n{}",
        m.lines_with("extra")
    );
    assert_eq!(d.logs_with_message("configuration reloaded").len(), 12);
    assert!(d.try_wait_exit(ms(10)).await.is_none());
    d.sigterm();
    assert_eq!(d.wait_exit(secs(20)).await.code(), Some(0));
}
