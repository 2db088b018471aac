//! Life-cycle robustness: the database going away and coming back (while running, and at start-up)
//! on a dedicated cluster, and graceful shutdown on SIGTERM (drain, pools closed, no sessions left).

use std::time::Instant;

use crate::support::names::*;
use crate::support::pg::toml_str;
use crate::support::*;

const UP: &[(&str, &str)] = &[("target", "main")];

fn alive_config(work: &WorkDir, db: &TestDb) -> std::path::PathBuf {
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml("main", "")
        + &check_toml(
            "alive",
            "SELECT 5 AS v",
            "values = [\"v\"]\ninterval = \"1s\"\ntimeout = \"1s\"",
        );
    work.write("checks.toml", &text)
}

fn healthy(m: &Metrics) -> bool {
    m.get(TARGET_UP, UP) == Some(1.0)
        && m.check_value(SUCCESS, "alive") == Some(1.0)
        && m.get("itest_alive_v", UP) == Some(5.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_and_restarted_while_running() {
    let cluster = PgCluster::dedicated();
    let db = cluster.create_database().await;
    let work = WorkDir::new();
    let cfg = alive_config(&work, &db);
    let mut d = Daemon::start(&cfg).await;
    d.wait_metrics("target up and check ok", secs(10), healthy)
        .await;

    cluster.stop();
    let m = d
        .wait_metrics(
            "target_up 0 and success 0 while the database is down",
            secs(15),
            |m| m.get(TARGET_UP, UP) == Some(0.0) && m.check_value(SUCCESS, "alive") == Some(0.0),
        )
        .await;
    assert!(
        m.check_value_with(RUNS, "alive", "result", "error")
            .unwrap_or(0.0)
            + m.check_value_with(RUNS, "alive", "result", "timeout")
                .unwrap_or(0.0)
            >= 1.0,
        "runs while the database is down are counted as failed:\n{}",
        m.lines_with(RUNS)
    );
    assert!(
        m.find("itest_alive_v", &[]).is_empty(),
        "no stale data while the database is down:\n{}",
        m.lines_with("itest_alive")
    );
    // still serving a few seconds later
    tokio::time::sleep(secs(2)).await;
    assert_eq!(d.get("/metrics").await.status, 200);
    assert!(
        d.try_wait_exit(ms(10)).await.is_none(),
        "daemon exited while the database was down"
    );

    cluster.start();
    let restarted = Instant::now();
    d.wait_metrics(
        "recovery after the restart (same daemon)",
        secs(20),
        healthy,
    )
    .await;
    eprintln!(
        "recovered {:?} after the database restart",
        restarted.elapsed()
    );
    assert!(
        d.try_wait_exit(ms(10)).await.is_none(),
        "daemon must not restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_started_while_the_database_is_down_recovers() {
    let cluster = PgCluster::dedicated();
    let db = cluster.create_database().await;
    cluster.stop();
    let work = WorkDir::new();
    let cfg = alive_config(&work, &db);
    let mut d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("a failed connect attempt and target_up 0", secs(10), |m| {
            m.get(TARGET_UP, UP) == Some(0.0)
                && m.check_value_with(ERRORS, "alive", "kind", "connect")
                    .unwrap_or(0.0)
                    >= 1.0
        })
        .await;
    assert_ne!(
        m.check_value(SUCCESS, "alive"),
        Some(1.0),
        "{}",
        m.lines_with("alive")
    );
    assert!(
        m.find("itest_alive_v", &[]).is_empty(),
        "{}",
        m.lines_with("itest_alive")
    );
    assert_eq!(
        d.get("/-/healthy").await.status,
        200,
        "healthy while the database is down"
    );

    cluster.start();
    d.wait_metrics("recovery once the database is up", secs(20), healthy)
        .await;
    assert!(
        d.try_wait_exit(ms(10)).await.is_none(),
        "daemon must keep running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_closes_pools_and_exits_zero() {
    let db = database().await;
    let work = WorkDir::new();
    let text = exporter_toml(&work.archive(), "drain_timeout = \"10s\"")
        + "\n"
        + &db.target_toml("main", "")
        + "\n"
        + &db.target_toml("second", "application_name = \"redshift-exporter-second\"")
        + &check_toml(
            "slow",
            "SELECT 1 AS v FROM pg_sleep(2)",
            "values = [\"v\"]\ninterval = \"1s\"\ntimeout = \"10s\"",
        )
        + &check_toml(
            "quick",
            "SELECT 1 AS v",
            "values = [\"v\"]\ninterval = \"1s\"",
        );
    let cfg = work.write("checks.toml", &text);
    let client = db.connect().await;
    let mut d = Daemon::start(&cfg).await;

    let c = &client;
    wait_statements(c, "pg_sleep(2)", true, secs(6)).await;
    wait_for(
        "sessions under the default and the per-target application_name",
        secs(5),
        ms(50),
        || async move {
            let main = count_sessions(c, "redshift-exporter").await;
            let second = count_sessions(c, "redshift-exporter-second").await;
            if main >= 1 && second >= 1 {
                Ok(())
            } else {
                Err(format!(
                    "'redshift-exporter' {main}, 'redshift-exporter-second' {second}"
                ))
            }
        },
    )
    .await;

    let sent = Instant::now();
    d.sigterm();
    let status = d.wait_exit(secs(14)).await;
    let took = sent.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}; logs:\n{}",
        d.log_text()
    );
    assert!(took < secs(11), "exit took {took:?}, drain_timeout is 10 s");

    let logs = d.logs();
    for target in ["main", "second"] {
        assert!(
            logs.iter()
                .any(|l| l.is_message("pool closed") && l.has("target", target)),
            "no \"pool closed\" line for target {target}; logs:\n{}",
            d.log_text()
        );
    }
    let complete = logs
        .iter()
        .position(|l| l.is_message("shutdown complete"))
        .unwrap_or_else(|| panic!("no \"shutdown complete\" line; logs:\n{}", d.log_text()));
    let pool_closed = logs
        .iter()
        .rposition(|l| l.is_message("pool closed"))
        .unwrap();
    assert!(
        pool_closed < complete,
        "\"shutdown complete\" must be the last word"
    );
    assert!(
        !logs.iter().any(|l| l.is_message("check failed")
            && l.has("check", "slow")
            && l.has("kind", "canceled")),
        "the in-flight 2 s check must be drained, not canceled (drain_timeout 10 s); logs:\n{}",
        d.log_text()
    );

    wait_for(
        "no exporter session left after exit",
        secs(3),
        ms(100),
        || async move {
            let left = count_sessions(c, "redshift-exporter").await
                + count_sessions(c, "redshift-exporter-second").await;
            match left {
                0 => Ok(()),
                n => Err(format!("{n} session(s) open")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_password_file_and_auth_errors() {
    let cluster = PgCluster::dedicated();
    let db = cluster.create_database().await;
    db.execute("CREATE ROLE pwuser LOGIN PASSWORD 's3cret-pw'")
        .await;
    cluster.set_hba(
        "local all all trust\n\
         host all pwuser 127.0.0.1/32 scram-sha-256\n\
         host all all 127.0.0.1/32 trust\n",
    );
    // wait until the server really asks pwuser for a password
    let dbr = &db;
    wait_for(
        "pg_hba.conf to be reloaded",
        secs(5),
        ms(100),
        || async move {
            let mut c = dbr.pg_config();
            c.user("pwuser").password("wrong");
            match c.connect(tokio_postgres::NoTls).await {
                Err(_) => Ok(()),
                Ok(_) => Err("a wrong password is still accepted".to_owned()),
            }
        },
    )
    .await;

    let work = WorkDir::new();
    let pwfile = work.write("pw", "s3cret-pw\n");
    let text = exporter_toml(&work.archive(), "")
        + "\n"
        + &db.target_toml_without(
            "main",
            &format!(
                "user = \"pwuser\"\npassword_file = {}",
                toml_str(&pwfile.to_string_lossy())
            ),
            &["password"],
        )
        + "\n"
        + &db.target_toml("fromenv", "user = \"pwuser\"\npassword = \"${RSE_IT_PW}\"")
        + "\n"
        + &db.target_toml("wrong", "user = \"pwuser\"\npassword = \"not-the-pw\"")
        + &check_toml("who", "SELECT 1 AS v", "values = [\"v\"]");
    let cfg = work.write("checks.toml", &text);
    let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &[], &[("RSE_IT_PW", "s3cret-pw")]);
    d.wait_listening(secs(15)).await;
    let m = d
        .wait_metrics(
            "main and fromenv ok, wrong failing with auth",
            secs(10),
            |m| {
                let ok = |t: &str| m.get(SUCCESS, &[("target", t), ("check", "who")]) == Some(1.0);
                ok("main")
                    && ok("fromenv")
                    && m.get(
                        ERRORS,
                        &[("target", "wrong"), ("check", "who"), ("kind", "auth")],
                    )
                    .unwrap_or(0.0)
                        >= 1.0
            },
        )
        .await;
    assert_eq!(
        m.get(SUCCESS, &[("target", "wrong"), ("check", "who")]),
        Some(0.0)
    );
    assert_eq!(m.get(TARGET_UP, &[("target", "wrong")]), Some(0.0));
    assert_eq!(m.get(TARGET_UP, &[("target", "main")]), Some(1.0));
    let line = d
        .wait_log("\"check failed\" for target wrong", secs(3), |l| {
            l.is_message("check failed") && l.has("target", "wrong")
        })
        .await;
    assert!(line.has("kind", "auth"), "{}", line.0);
    let scrape = d.get("/metrics").await.body;
    let home = d.get("/").await.body;
    for (what, text) in [("logs", d.log_text()), ("/metrics", scrape), ("/", home)] {
        assert!(
            !text.contains("s3cret-pw") && !text.contains("not-the-pw"),
            "a password leaked into {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cancels_running_statements_on_the_server() {
    let (mut d, client, _work) = daemon_with_stuck_check("1s").await;
    let sent = Instant::now();
    d.sigterm();
    let status = d.wait_exit(secs(8)).await;
    assert!(
        sent.elapsed() < secs(5),
        "exit took {:?} with drain_timeout 1 s",
        sent.elapsed()
    );
    eprintln!("exit status after the drain timeout: {status}");
    assert!(
        d.logs().iter().any(|l| l.is_message("check failed")
            && l.has("check", "stuck")
            && l.has("kind", "canceled")),
        "the run cut short at shutdown is logged as kind=canceled; logs:\n{}",
        d.log_text()
    );
    // PostgreSQL does not notice a vanished client while pg_sleep runs: only a cancel request stops it.
    wait_statements(&client, "pg_sleep(30)", false, secs(2)).await;
}
