//! The scheduling model and the reload handover (ARCHITECTURE.md, "Scheduling"): unchanged
//! checks keep their phase through reloads, counters carry over exactly, a gated check added
//! by a reload does not hold readiness back, a down target is probed gently and its checks
//! come back as soon as it answers, cron is cron, a column mismatch stops its statement, and
//! shutdown stays within its budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use redshift_exporter::emulation::{self, Scenario, Variant};

use crate::support::names::*;
use crate::support::*;

/// A TCP proxy in front of `backend` that counts every connection opened through it (the
/// exporter's connection attempts, including those made while the backend is down: they are
/// accepted here and closed at once).
async fn counting_proxy(backend: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, count)
}

fn steady_and_churn(work: &WorkDir, db: &TestDb, churn: u32) -> String {
    config_toml(
        work,
        db,
        &(check_toml(
            "steady",
            "SELECT 1 AS v",
            "values = [\"v\"]\ninterval = \"5s\"",
        ) + &check_toml(
            "churn",
            &format!("SELECT {churn} AS v"),
            "values = [\"v\"]\ninterval = \"1h\"",
        )),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_every_2s_do_not_move_an_unchanged_5s_check() {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = work.write("checks.toml", &steady_and_churn(&work, &db, 0));
    let d = Daemon::start(&cfg).await;
    d.wait_metrics("steady ran once", secs(10), |m| {
        m.check_value(LAST_RUN, "steady").unwrap_or(0.0) > 0.0
    })
    .await;

    // Every 2 s for 30 s: a real change (churn's query), steady untouched. Watch steady's
    // last run time every 200 ms.
    let mut runs: Vec<f64> = Vec::new();
    let start = Instant::now();
    let mut next_reload = start;
    let mut reloads = 0;
    while start.elapsed() < secs(30) {
        if Instant::now() >= next_reload {
            reloads += 1;
            work.write("checks.toml", &steady_and_churn(&work, &db, reloads));
            d.signal(libc::SIGHUP);
            next_reload += secs(2);
        }
        let m = d.metrics().await;
        if let Some(t) = m.check_value(LAST_RUN, "steady") {
            if runs.last() != Some(&t) {
                runs.push(t);
            }
        }
        tokio::time::sleep(ms(200)).await;
    }
    let m = d.metrics().await;
    assert_eq!(
        m.get("redshift_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
    // 30 s of a 5 s check: 6 runs (7 with the one before), whatever the reloads did.
    assert!(
        runs.len() >= 6,
        "steady ran {} times in 30 s with {reloads} reloads (start times {runs:?}); reloads restart its timer",
        runs.len()
    );
    let gaps: Vec<f64> = runs.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| (4.5..5.5).contains(g)),
        "steady's runs are not 5 s apart (on its phase) through reloads: gaps {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_carry_over_a_reload_exactly() {
    let db = database().await;
    let work = WorkDir::new();
    let v1 = check_toml(
        "keep",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"1h\"",
    ) + &check_toml(
        "edit",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"1h\"",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &v1));
    let d = Daemon::start(&cfg).await;
    let before = d
        .wait_metrics("both ran", secs(10), |m| {
            m.check_value_with(RUNS, "keep", "result", "success") == Some(1.0)
                && m.check_value_with(RUNS, "edit", "result", "success") == Some(1.0)
        })
        .await;
    let series = |m: &Metrics, check: &str| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = [RUNS, ERRORS]
            .iter()
            .flat_map(|f| m.find(f, &[("check", check)]))
            .map(|s| (s.to_string(), s.value))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let keep_before = series(&before, "keep");
    assert!(!keep_before.is_empty());

    let v2 = check_toml(
        "keep",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"1h\"",
    ) + &check_toml(
        "edit",
        "SELECT 2 AS v",
        "values = [\"v\"]\ninterval = \"1h\"",
    );
    work.write("checks.toml", &config_toml(&work, &db, &v2));
    d.signal(libc::SIGHUP);
    let after = d
        .wait_metrics("the edited check ran at once", secs(10), |m| {
            m.get("itest_edit_v", &[("target", "main")]) == Some(2.0)
        })
        .await;
    // Unchanged: the same counters, to the unit (not re-run, not reset).
    assert_eq!(series(&after, "keep"), keep_before);
    // Edited: its counters continue (1 before + the run the reload triggered).
    assert_eq!(
        after.check_value_with(RUNS, "edit", "result", "success"),
        Some(2.0),
        "{}",
        after.lines_with(RUNS)
    );
}

/// A target auto-detected as provisioned (the Redshift emulation); a reload adds a check
/// limited to Serverless, and one that applies.
fn gated_config(work: &WorkDir, db: &TestDb, with_new: bool) -> String {
    let mut checks = check_toml(
        "base",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"1h\"",
    );
    if with_new {
        checks += &check_toml(
            "sl_only",
            "SELECT 1 AS v",
            "values = [\"v\"]\ninterval = \"1h\"\ndeployment = [\"serverless\"]",
        );
        checks += &check_toml(
            "extra",
            "SELECT 3 AS v",
            "values = [\"v\"]\ninterval = \"1h\"",
        );
    }
    config_toml(work, db, &checks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adding_a_deployment_gated_check_keeps_ready() {
    let db = database().await;
    db.execute(&emulation::database_settings(&db.dbname)).await;
    for (name, sql) in emulation::scripts(Variant::Provisioned, &[Scenario::Healthy]) {
        let client = db.connect().await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("loading {name}: {e:?}"));
    }
    let work = WorkDir::new();
    let cfg = work.write("checks.toml", &gated_config(&work, &db, false));
    let d = Daemon::start(&cfg).await;
    wait_for("ready before the reload", secs(10), ms(100), || async {
        (d.get("/-/ready").await.status == 200)
            .then_some(())
            .ok_or_else(|| String::from("not yet"))
    })
    .await;
    assert!(
        d.log_text().contains("provisioned"),
        "the target was detected as provisioned"
    );

    work.write("checks.toml", &gated_config(&work, &db, true));
    d.signal(libc::SIGHUP);
    d.wait_metrics("the reload applied", secs(10), |m| {
        m.get("itest_extra_v", &[("target", "main")]) == Some(3.0)
    })
    .await;
    let r = wait_for("ready after the reload", secs(3), ms(100), || async {
        let r = d.get("/-/ready").await;
        (r.status == 200)
            .then_some(())
            .map(|()| r)
            .ok_or_else(|| String::from("not yet"))
    })
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resilience_a_down_target_is_probed_gently_and_recovers_at_once() {
    let cluster = PgCluster::dedicated();
    let db = cluster.create_database().await;
    let (proxy, attempts) = counting_proxy(cluster.port()).await;
    let work = WorkDir::new();
    let mut checks = check_toml(
        "slow",
        "SELECT 7 AS v",
        "values = [\"v\"]\ninterval = \"5m\"\ntimeout = \"2s\"",
    );
    for i in 0..4 {
        checks += &check_toml(
            &format!("fast{i}"),
            "SELECT 1 AS v",
            "values = [\"v\"]\ninterval = \"1s\"\ntimeout = \"1s\"",
        );
    }
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml("main", &format!("port = {proxy}"))
        + &checks;
    let cfg = work.write("checks.toml", &text);

    // PostgreSQL down for 10 s, under a 5-minute check and four 1-second checks.
    cluster.stop();
    let down = Instant::now();
    let mut d = Daemon::start(&cfg).await;
    d.wait_metrics("the 5-minute check failed", secs(8), |m| {
        m.check_value_with(ERRORS, "slow", "kind", "connect")
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    tokio::time::sleep((down + secs(10)).saturating_duration_since(Instant::now())).await;
    let while_down = attempts.load(Ordering::SeqCst);

    cluster.start();
    let up = Instant::now();
    let m = d
        .wait_metrics("the 5-minute check back to success", secs(15), |m| {
            m.check_value(SUCCESS, "slow") == Some(1.0)
        })
        .await;
    let recovered = up.elapsed();
    eprintln!(
        "connection attempts in 10 s down: {while_down}; 5-minute check recovered {recovered:?} after PostgreSQL accepted connections"
    );
    assert!(
        recovered <= secs(5),
        "the 5-minute check took {recovered:?} to recover"
    );
    assert_eq!(m.get("itest_slow_v", &[("target", "main")]), Some(7.0));
    // Five first runs (one attempt each), then one probe at a time with backoff
    // (1 s, 2 s, then every 3 s: about 4 in 10 s). Retrying per check would be ≈ 45.
    assert!(
        (1..=12).contains(&while_down),
        "{while_down} connection attempts in 10 s while the database was down (bound 12)"
    );
    d.sigterm();
    d.wait_exit(secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_schedule_runs_on_its_wall_clock_seconds_not_the_default_interval() {
    let db = database().await;
    let work = WorkDir::new();
    // default_interval is 1h here: ignoring the cron would run this once.
    let text = exporter_toml(
        &work.archive(),
        "archive = false\ndefault_interval = \"1h\"",
    ) + "\n"
        + &db.target_toml("main", "")
        + &check_toml(
            "even",
            "SELECT 1 AS v",
            "values = [\"v\"]\nschedule = \"*/2 * * * * *\"",
        );
    let cfg = work.write("checks.toml", &text);
    let d = Daemon::start(&cfg).await;
    let mut starts: Vec<f64> = Vec::new();
    let until = Instant::now() + secs(9);
    while Instant::now() < until {
        if let Some(t) = d.metrics().await.check_value(LAST_RUN, "even") {
            if t > 0.0 && starts.last() != Some(&t) {
                starts.push(t);
            }
        }
        tokio::time::sleep(ms(100)).await;
    }
    // the first run is at start-up; the others on even seconds
    assert!(starts.len() >= 4, "runs started at {starts:?}");
    for t in &starts[1..] {
        let whole = t.floor() as u64;
        assert!(
            whole % 2 == 0 && t.fract() < 0.3,
            "a run of \"*/2 * * * * *\" started at {t} (not on an even second): {starts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_mismatch_cancels_its_query_at_once_and_counts_as_columns() {
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml(
        "mismatch",
        // Rows arrive at once and keep coming (the server flushes its output every 8 KiB):
        // tens of seconds of streaming if nobody stops it.
        "SELECT generate_series(1, 500000000) AS wrong",
        "values = [\"v\"]\ninterval = \"1h\"\ntimeout = \"15s\"",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let client = db.connect().await;
    let started = Instant::now();
    let d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("a columns error", secs(10), |m| {
            m.check_value_with(ERRORS, "mismatch", "kind", "columns")
                .unwrap_or(0.0)
                >= 1.0
        })
        .await;
    assert!(
        started.elapsed() < secs(6),
        "the mismatch was reported after {:?} (the 15 s deadline?)",
        started.elapsed()
    );
    assert_eq!(
        m.check_value_with(ERRORS, "mismatch", "kind", "timeout")
            .unwrap_or(0.0),
        0.0,
        "{}",
        m.lines_with(ERRORS)
    );
    wait_for(
        "pg_sleep(20) cancelled on the server",
        secs(2),
        ms(50),
        || async {
            (count_active(&client, "pg_sleep(20)").await == 0)
                .then_some(())
                .ok_or_else(|| String::from("not yet"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resilience_sigterm_ends_within_drain_timeout_plus_5s_with_many_runs_in_flight() {
    let db = database().await;
    let work = WorkDir::new();
    let mut text = exporter_toml(&work.archive(), "drain_timeout = \"2s\"")
        + "\n"
        + &db.target_toml("main", "pool_size = 8");
    for i in 0..8 {
        text += &check_toml(
            &format!("stuck{i}"),
            "SELECT 1 AS v FROM pg_sleep(60)",
            "values = [\"v\"]\ninterval = \"1h\"\ntimeout = \"50s\"",
        );
    }
    let cfg = work.write("checks.toml", &text);
    let client = db.connect().await;
    let mut d = Daemon::start(&cfg).await;
    wait_for("8 statements running", secs(10), ms(100), || async {
        (count_active(&client, "pg_sleep(60)").await >= 8)
            .then_some(())
            .ok_or_else(|| String::from("not yet"))
    })
    .await;
    let t0 = Instant::now();
    d.sigterm();
    d.wait_exit(secs(30)).await;
    let took = t0.elapsed();
    assert!(
        took <= secs(7),
        "SIGTERM took {took:?} with drain_timeout 2s (budget 2 s + 5 s)"
    );
    wait_for(
        "no statement left on the server",
        secs(3),
        ms(100),
        || async {
            (count_active(&client, "pg_sleep(60)").await == 0)
                .then_some(())
                .ok_or_else(|| String::from("not yet"))
        },
    )
    .await;
}
