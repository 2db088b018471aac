//! Discovery over the life of the daemon: a database created while it runs is picked up by the
//! next pass and a dropped one retired; a failed pass keeps the last set, through a reload too.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_picks_up_a_created_database_and_retires_a_dropped_one() {
    let admin = database().await;
    let prefix = unique_name("disc");
    let mut made = create_databases(&admin, &prefix, &["one"]).await;
    let mon = monitoring_role(&admin).await;
    let work = WorkDir::new();
    // The home database does not match the pattern: only cluster checks run there.
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &mon.target_toml(
            "main",
            &format!(
                "databases = {{ include = [\"{prefix}_*\"], exclude = [\"{prefix}_skip*\"] }}\ndatabases_refresh = \"1s\""
            ),
        )
        + &where_checks("");
    let cfg = work.write("checks.toml", &text);
    let mut d = Daemon::start(&cfg).await;
    let one = made[0].clone();
    let m = d
        .wait_metrics("the first discovery answer", secs(20), |m| {
            per_database(m).contains(&one)
                && m.get("redshift_exporter_target_databases", &[("target", "main")]) == Some(1.0)
        })
        .await;
    assert_eq!(per_database(&m), BTreeSet::from([one.clone()]));
    assert_eq!(
        m.get(
            "redshift_exporter_discovery_errors_total",
            &[("target", "main"), ("kind", "connect")]
        ),
        Some(0.0),
        "failures are counted from 0 once discovery is on"
    );
    let runs_of = |m: &Metrics, check: &str, db: Option<&str>| -> f64 {
        let mut l = vec![("target", "main"), ("check", check), ("result", "success")];
        if let Some(db) = db {
            l.push(("database", db));
        }
        m.find(RUNS, &l)
            .iter()
            .filter(|s| db.is_some() || !s.labels.contains_key("database"))
            .map(|s| s.value)
            .sum()
    };
    let before_cluster = runs_of(&m, "where_cluster", None);
    let before_one = runs_of(&m, "where_db", Some(&one));

    // A database created while the daemon runs (and one the exclude pattern leaves out).
    made.extend(create_databases(&admin, &prefix, &["two", "skip_me"]).await);
    let two = made[1].clone();
    let m = d
        .wait_metrics("the created database", secs(20), |m| {
            per_database(m).contains(&two)
                && m.get("redshift_exporter_target_databases", &[("target", "main")]) == Some(2.0)
        })
        .await;
    assert_eq!(per_database(&m), BTreeSet::from([one.clone(), two.clone()]));
    // Unchanged slots kept their counters through the handover.
    assert!(
        runs_of(&m, "where_cluster", None) >= before_cluster,
        "{}",
        m.text
    );
    assert!(
        runs_of(&m, "where_db", Some(&one)) >= before_one,
        "{}",
        m.text
    );
    assert!(
        d.logs()
            .iter()
            .any(|l| l.0.contains("the target's databases changed")),
        "{}",
        d.log_text()
    );

    // A dropped database disappears from /metrics, every family of it.
    admin
        .execute(&format!("DROP DATABASE {one} WITH (FORCE)"))
        .await;
    let m = d
        .wait_metrics("the dropped database gone", secs(20), |m| {
            !m.samples
                .iter()
                .any(|s| s.labels.get("database") == Some(&one))
                && m.get("redshift_exporter_target_databases", &[("target", "main")]) == Some(1.0)
        })
        .await;
    assert_eq!(per_database(&m), BTreeSet::from([two.clone()]));
    assert_eq!(m.find("itest_where_cluster_v", &[]).len(), 1);
    d.sigterm();
    d.wait_exit(secs(20)).await;

    // `once` does one discovery pass and runs the per-database check on each database.
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(
        out.stdout
            .contains(&format!("check=where_db target=main@{two} ")),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains("check=where_cluster target=main "),
        "{}",
        out.dump()
    );
    assert!(!out.stdout.contains("skip_me"), "{}", out.dump());
    drop_databases(&admin, &made).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_discovery_keeps_the_last_databases_and_a_reload_keeps_them_too() {
    let admin = database().await;
    let prefix = unique_name("keep");
    let made = create_databases(&admin, &prefix, &["one"]).await;
    let one = made[0].clone();
    let mon = monitoring_role(&admin).await;
    let work = WorkDir::new();
    let config = |cluster_interval: &str| {
        exporter_toml(&work.archive(), "archive = false")
            + "\n"
            + &mon.target_toml(
                "main",
                &format!(
                    "databases = {{ include = [\"{prefix}_*\"] }}\ndatabases_refresh = \"1s\""
                ),
            )
            + &where_checks("").replacen(
                "interval = \"1s\"",
                &format!("interval = \"{cluster_interval}\""),
                1,
            )
    };
    let cfg = work.write("checks.toml", &config("1s"));
    let mut d = Daemon::start(&cfg).await;
    d.wait_metrics("the first discovery answer", secs(20), |m| {
        per_database(m).contains(&one)
    })
    .await;

    // The home database refuses the monitoring user from now on: discovery (which reads
    // pg_database there) fails; the database found before keeps running.
    admin
        .execute(&format!(
            "REVOKE CONNECT ON DATABASE {home} FROM PUBLIC; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}' AND datname = '{home}'",
            home = admin.dbname,
            role = mon.user
        ))
        .await;
    let errors = |m: &Metrics| -> f64 {
        m.find(
            "redshift_exporter_discovery_errors_total",
            &[("target", "main")],
        )
        .iter()
        .map(|s| s.value)
        .sum()
    };
    let m = d
        .wait_metrics("a failed discovery pass counted", secs(20), |m| {
            errors(m) >= 1.0
        })
        .await;
    assert_eq!(
        per_database(&m),
        BTreeSet::from([one.clone()]),
        "{}",
        m.text
    );
    assert_eq!(
        m.get("redshift_exporter_target_databases", &[("target", "main")]),
        Some(1.0)
    );
    assert!(
        d.logs().iter().any(|l| l
            .0
            .contains("database discovery failed; keeping the last known databases")),
        "{}",
        d.log_text()
    );

    // A configuration reload (discovery still failing) re-plans with the databases known so far.
    work.write("checks.toml", &config("2s"));
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(d.pid(), libc::SIGHUP);
    }
    d.wait_log("the reload", secs(10), |l| {
        l.0.contains("configuration reloaded")
    })
    .await;
    let m = d.metrics().await;
    assert_eq!(
        m.get(
            "redshift_exporter_check_interval_seconds",
            &[("target", "main"), ("check", "where_cluster")]
        ),
        Some(2.0),
        "the reload applied"
    );
    assert_eq!(
        per_database(&m),
        BTreeSet::from([one.clone()]),
        "{}",
        m.text
    );

    admin
        .execute(&format!(
            "GRANT CONNECT ON DATABASE {} TO PUBLIC",
            admin.dbname
        ))
        .await;
    d.sigterm();
    d.wait_exit(secs(20)).await;
    drop_databases(&admin, &made).await;
}
