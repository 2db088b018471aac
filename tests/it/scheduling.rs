//! Timing behaviour: timeouts that cancel the statement on the server, no overlapping runs of one
//! check, and checks of one target running concurrently through the pool (daemon and `once`).

use std::time::Instant;

use crate::support::names::*;
use crate::support::*;

/// Longest server-side run time (seconds, server clock) of an active statement containing `needle`.
async fn active_runtime(client: &tokio_postgres::Client, needle: &str) -> Option<f64> {
    let row = client
        .query_one(
            "SELECT max(extract(epoch FROM clock_timestamp() - query_start))::float8 \
             FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND state = 'active' AND strpos(query, $1) > 0",
            &[&needle],
        )
        .await
        .expect("pg_stat_activity query failed");
    row.get::<_, Option<f64>>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_cancels_the_statement_on_the_server() {
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml(
        "sleepy",
        "SELECT 1 AS v FROM pg_sleep(30)",
        "values = [\"v\"]\ninterval = \"1h\"\ntimeout = \"2s\"",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let client = db.connect().await;
    let d = Daemon::start(&cfg).await;

    // Watch the statement on the server every 50 ms: the longest run time seen, and when it ended.
    let watcher = tokio::spawn(async move {
        let mut longest: Option<f64> = None;
        let until = Instant::now() + secs(12);
        while Instant::now() < until {
            match active_runtime(&client, "pg_sleep(30)").await {
                Some(r) => longest = Some(longest.unwrap_or(0.0).max(r)),
                None if longest.is_some() => return (longest, Some(Instant::now())),
                None => {}
            }
            tokio::time::sleep(ms(50)).await;
        }
        (longest, None)
    });

    let m = d
        .wait_metrics("a timeout to be counted", secs(8), |m| {
            m.check_value_with(ERRORS, "sleepy", "kind", "timeout")
                .unwrap_or(0.0)
                >= 1.0
        })
        .await;
    let timed_out_at = Instant::now();
    assert_eq!(
        m.check_value(SUCCESS, "sleepy"),
        Some(0.0),
        "{}",
        m.lines_with("sleepy")
    );
    assert!(
        m.check_value_with(RUNS, "sleepy", "result", "timeout")
            .unwrap_or(0.0)
            >= 1.0,
        "{RUNS}{{result=\"timeout\"}}:\n{}",
        m.lines_with(RUNS)
    );

    let (longest, ended) = watcher.await.expect("watcher");
    let longest = longest.unwrap_or_else(|| {
        panic!(
            "the statement was never seen running (first run is expected at start-up); logs:\n{}",
            d.log_text()
        )
    });
    let ended = ended.unwrap_or_else(|| {
        panic!("pg_sleep(30) still running on the server 12 s after start-up (longest {longest:.2} s): no server-side cancel")
    });
    // the bound: gone within ~2 s after the deadline (a client-side timeout alone leaves it running 28 s)
    assert!(
        ended <= timed_out_at + secs(2),
        "pg_sleep(30) still active {:?} after the timeout was reported",
        ended - timed_out_at
    );
    // and it was cancelled at the 2 s deadline, not by some later server-side statement_timeout
    assert!(
        longest < 2.6,
        "the statement ran {longest:.2} s on the server with timeout = \"2s\": the cancel request was not sent at the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_check_never_overlaps_itself() {
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml(
        "slow",
        "SELECT 1 AS v FROM pg_sleep(2.5)",
        "values = [\"v\"]\ninterval = \"1s\"\ntimeout = \"10s\"",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let client = db.connect().await;
    let d = Daemon::start(&cfg).await;

    let mut max = 0;
    let mut samples = Vec::new();
    let until = Instant::now() + ms(5500);
    while Instant::now() < until {
        let n = count_active(&client, "pg_sleep(2.5)").await;
        samples.push(n);
        max = max.max(n);
        tokio::time::sleep(ms(100)).await;
    }
    assert!(max >= 1, "the check never ran; logs:\n{}", d.log_text());
    assert_eq!(
        max, 1,
        "concurrent executions of one check seen (samples every 100 ms: {samples:?})"
    );

    let m = d
        .wait_metrics("skipped runs to be counted", secs(5), |m| {
            m.check_value_with(RUNS, "slow", "result", "skipped")
                .unwrap_or(0.0)
                > 0.0
        })
        .await;
    assert!(
        m.check_value_with(RUNS, "slow", "result", "success")
            .unwrap_or(0.0)
            >= 1.0,
        "{}",
        m.lines_with(RUNS)
    );
}

/// 20 checks of 0.5 s each with a pool of 20.
fn twenty_checks(work: &WorkDir, db: &TestDb) -> std::path::PathBuf {
    let mut text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml("main", "pool_size = 20");
    for i in 0..20 {
        text += &check_toml(
            &format!("c{i:02}"),
            "SELECT pg_sleep(0.5) AS x, 1::float8 AS v",
            "values = [\"v\"]\ninterval = \"1h\"\ntimeout = \"5s\"",
        );
    }
    work.write("checks.toml", &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_checks_run_concurrently() {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = twenty_checks(&work, &db);
    let d = Daemon::start(&cfg).await;
    let listening = d.listening_at.expect("listening");

    loop {
        let r = d.get("/-/ready").await;
        if r.status == 200 {
            break;
        }
        assert!(
            listening.elapsed() < secs(4),
            "/-/ready still {} 4 s after start-up: the first round of 20 × 0.5 s checks did not run concurrently; logs:\n{}",
            r.status,
            d.log_text()
        );
        tokio::time::sleep(ms(50)).await;
    }
    let m = d.metrics().await;
    for i in 0..20 {
        let c = format!("c{i:02}");
        assert_eq!(
            m.check_value(SUCCESS, &c),
            Some(1.0),
            "{c}:\n{}",
            m.lines_with(&c)
        );
        assert_eq!(
            m.get(&format!("itest_{c}_v"), &[("target", "main")]),
            Some(1.0),
            "{}",
            m.lines_with(&c)
        );
        let dur = m.check_value(DURATION, &c).unwrap_or(0.0);
        assert!(dur >= 0.45, "{c} duration {dur} s: the query sleeps 0.5 s");
    }
    assert_eq!(
        m.get(POOL_MAX, &[("target", "main")]),
        Some(20.0),
        "{}",
        m.lines_with(POOL_MAX)
    );

    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(
        out.elapsed < secs(5),
        "`once` with 20 × 0.5 s checks took {:?}",
        out.elapsed
    );
    let ok = out.stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(ok, 20, "{}", out.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_schedule_runs_repeatedly() {
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml(
        "cron",
        "SELECT 1 AS v",
        "values = [\"v\"]\nschedule = \"* * * * * *\"",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let d = Daemon::start(&cfg).await;
    d.wait_metrics("three runs of an every-second schedule", secs(8), |m| {
        m.check_value_with(RUNS, "cron", "result", "success")
            .unwrap_or(0.0)
            >= 3.0
    })
    .await;
}
