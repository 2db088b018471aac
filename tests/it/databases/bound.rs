//! The target-wide session bound: however many databases a target has, its sessions (counted in
//! `pg_stat_activity`, as the server sees them) stay within its `pool_size`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_bound_holds_across_the_databases_of_a_target() {
    let admin = database().await;
    let prefix = unique_name("bound");
    let extra = create_databases(&admin, &prefix, &["a", "b", "c"]).await;
    let mon = monitoring_role(&admin).await;
    let work = WorkDir::new();
    let list = toml_list(&admin.dbname, &extra);
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &mon.target_toml(
            "main",
            &format!("databases = [{list}]\npool_size = 2\nconnect_timeout = \"5s\""),
        )
        + &check_toml(
            "slow",
            "SELECT current_database() AS dbn, 1::float8 AS v FROM pg_sleep(0.3)",
            "labels = [\"dbn\"]\nvalues = [\"v\"]\ninterval = \"1s\"\ntimeout = \"8s\"\nscope = \"database\"",
        );
    let cfg = work.write("checks.toml", &text);
    let d = Daemon::start(&cfg).await;
    let watcher = admin.connect().await;
    let sessions = || async {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&mon.user],
            )
            .await
            .expect("pg_stat_activity")
            .get::<_, i64>(0)
    };
    let all: Vec<String> = std::iter::once(admin.dbname.clone())
        .chain(extra.iter().cloned())
        .collect();
    let mut max = 0;
    let mut samples = 0;
    let until = std::time::Instant::now() + secs(8);
    while std::time::Instant::now() < until {
        max = max.max(sessions().await);
        samples += 1;
        tokio::time::sleep(ms(10)).await;
    }
    assert!(
        samples > 100,
        "sampled pg_stat_activity only {samples} times"
    );
    assert!(
        max <= 2,
        "pool_size = 2 across 4 databases, but {max} sessions were open at once"
    );
    assert_eq!(
        max, 2,
        "four databases of slow checks must use the whole bound"
    );
    // Every database's check still succeeds, more than once.
    let m = d
        .wait_metrics(
            "every database's slow check succeeded twice",
            secs(20),
            |m| {
                all.iter().all(|db| {
                    m.get(
                        RUNS,
                        &[
                            ("target", "main"),
                            ("database", db),
                            ("check", "slow"),
                            ("result", "success"),
                        ],
                    )
                    .is_some_and(|n| n >= 2.0)
                })
            },
        )
        .await;
    for db in &all {
        assert_eq!(
            m.get(
                ERRORS,
                &[
                    ("target", "main"),
                    ("database", db),
                    ("check", "slow"),
                    ("kind", "pool_timeout")
                ]
            )
            .unwrap_or(0.0),
            0.0,
            "{}",
            m.text
        );
    }
    // The pool gauges are per database and never add up to more than the bound.
    let open: f64 = m
        .find(POOL_CONNECTIONS, &[("target", "main")])
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(open <= 2.0, "{}", m.text);
    assert_eq!(
        m.find(POOL_MAX, &[("target", "main")]).len(),
        4,
        "{}",
        m.text
    );
    drop(d);
    drop_databases(&admin, &extra).await;
}
