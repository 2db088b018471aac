//! Every database of a cluster (issue 14, part 2), against the real throwaway PostgreSQL with
//! several databases created by each test, as a least-privilege login role: per-database checks
//! yield one series set per database (`database` label) while cluster checks run once;
//! discovery picks up a created database and retires a dropped one; the target-wide session
//! bound holds in `pg_stat_activity`; check-config locates the new problems; the archive folders
//! `{target}@{database}` and `archive list --database`; the pages; `once`.

use std::collections::BTreeSet;

use crate::support::names::*;
use crate::support::pg::{toml_str, unique_name};
use crate::support::*;

/// A plain login role (no superuser, no grants beyond PUBLIC's CONNECT): what a monitoring
/// user is. Returns the home database as that role.
async fn monitoring_role(admin: &TestDb) -> TestDb {
    let role = unique_name("mon");
    let password = format!("Pw-{role}");
    admin
        .execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB"
        ))
        .await;
    TestDb::at(
        &admin.host,
        admin.port,
        &admin.dbname,
        &role,
        Some(&password),
    )
}

/// Creates `n` databases named `{prefix}_{i}` (the role may connect: PUBLIC has CONNECT).
async fn create_databases(admin: &TestDb, prefix: &str, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let name = format!("{prefix}_{n}");
        admin.execute(&format!("CREATE DATABASE {name}")).await;
        out.push(name);
    }
    out
}

async fn drop_databases(admin: &TestDb, names: &[String]) {
    for n in names {
        admin
            .execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
            .await;
    }
}

/// The checks of these tests: `where_cluster` (cluster scope) and `where_db` (per database),
/// both reporting the database they ran in as the label column `dbn`.
fn where_checks(extra_db: &str) -> String {
    check_toml(
        "where_cluster",
        "SELECT current_database() AS dbn, 1::float8 AS v",
        "labels = [\"dbn\"]\nvalues = [\"v\"]\ninterval = \"1s\"",
    ) + &check_toml(
        "where_db",
        "SELECT current_database() AS dbn, 1::float8 AS v",
        &format!(
            "labels = [\"dbn\"]\nvalues = [\"v\"]\ninterval = \"1s\"\nscope = \"database\"\n{extra_db}"
        ),
    )
}

/// The databases `where_db` has series for, each checked to have run in the database it is
/// labelled with.
fn per_database(m: &Metrics) -> BTreeSet<String> {
    m.find("itest_where_db_v", &[("target", "main")])
        .iter()
        .map(|s| {
            let db = s.labels.get("database").cloned().unwrap_or_default();
            assert_eq!(
                s.labels.get("dbn"),
                Some(&db),
                "a per-database series must come from the database it names: {s:?}"
            );
            db
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_database_checks_run_on_each_database_and_cluster_checks_once() {
    let admin = database().await;
    let prefix = unique_name("dbs");
    let extra = create_databases(&admin, &prefix, &["a", "b"]).await;
    let mon = monitoring_role(&admin).await;
    let work = WorkDir::new();
    let list = toml_list(&admin.dbname, &extra);
    let text = exporter_toml(&work.archive(), "archive_serve = true")
        + "\n"
        + &mon.target_toml("main", &format!("databases = [{list}]"))
        + &where_checks("");
    let cfg = work.write("checks.toml", &text);
    let mut d = Daemon::start(&cfg).await;
    let all: BTreeSet<String> = std::iter::once(admin.dbname.clone())
        .chain(extra.iter().cloned())
        .collect();
    let m = d
        .wait_metrics("where_db on all three databases", secs(20), |m| {
            m.find("itest_where_db_v", &[]).len() == 3
                && m.find("itest_where_cluster_v", &[]).len() == 1
        })
        .await;
    assert_eq!(per_database(&m), all);
    // The cluster check ran once, at home, without a database label.
    let c = m.find("itest_where_cluster_v", &[]);
    assert_eq!(c[0].labels.get("dbn"), Some(&admin.dbname));
    assert!(!c[0].labels.contains_key("database"), "{:?}", c[0]);
    // Self metrics follow: one success series per database for where_db, one for the cluster check.
    for db in &all {
        assert_eq!(
            m.get(
                SUCCESS,
                &[("target", "main"), ("database", db), ("check", "where_db")]
            ),
            Some(1.0),
            "{}",
            m.text
        );
    }
    assert_eq!(m.find(SUCCESS, &[("check", "where_cluster")]).len(), 1);
    assert_eq!(
        m.get(SUCCESS, &[("target", "main"), ("check", "where_cluster")]),
        Some(1.0)
    );
    // Target-wide series: up per entry (the home entry without a database label), one target_info.
    assert_eq!(
        m.find(TARGET_UP, &[("target", "main")]).len(),
        3,
        "{}",
        m.text
    );
    assert_eq!(
        m.find("redshift_exporter_target_info", &[("target", "main")])
            .len(),
        1
    );

    // Pages: each per-database slot links to its own check page, which names the database.
    let home = d.get("/").await;
    assert_eq!(home.status, 200);
    for db in &all {
        let href = format!("checks/where_db/main@{db}");
        assert!(home.body.contains(&href), "{href} not on /:\n{}", home.body);
        let page = d.get(&format!("/{href}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains(&format!("database</span> {db}")),
            "{}",
            page.body
        );
    }
    assert!(
        home.body.contains("checks/where_cluster/main\""),
        "{}",
        home.body
    );
    assert_eq!(d.get("/checks/where_db/main@nope").await.status, 404);
    assert_eq!(d.get("/checks/where_db/main@a@b").await.status, 404);

    // Archive: one folder per database for where_db, the target's own for the cluster check;
    // the per-database files are served under the same folder names.
    let root = work.archive();
    let csvs = |dir: std::path::PathBuf| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "csv"))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("CSV files in every folder", secs(10), ms(100), || {
        let missing: Vec<String> = all
            .iter()
            .map(|db| format!("main@{db}/where_db"))
            .chain(std::iter::once("main/where_cluster".to_string()))
            .filter(|f| csvs(root.join(f)).is_empty())
            .collect();
        async move {
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("{missing:?}"))
            }
        }
    })
    .await;
    assert!(
        !root.join("main/where_db").exists(),
        "a per-database check never writes to the target's own folder"
    );
    let file = csvs(root.join(format!("main@{}/where_db", extra[0])))[0].clone();
    let href = format!(
        "/archive/main@{}/where_db/{}",
        extra[0],
        file.file_name().unwrap().to_string_lossy()
    );
    let served = d.get(&href).await;
    assert_eq!(served.status, 200, "{href}: {}", served.body);
    assert!(served.body.contains(&extra[0]), "{}", served.body);

    d.sigterm();
    d.wait_exit(secs(20)).await;
    let cfg_s = cfg.to_string_lossy().into_owned();
    let list = run_cli(
        vec![
            "archive".into(),
            "list".into(),
            "--config".into(),
            cfg_s.clone(),
            "--database".into(),
            extra[1].clone(),
        ],
        vec![],
        vec![],
        secs(30),
    )
    .await;
    assert_eq!(list.code, Some(0), "{}", list.dump());
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(
        lines[0].contains("target") && lines[0].contains("database"),
        "{}",
        list.dump()
    );
    assert!(lines.len() > 1, "{}", list.dump());
    for l in &lines[1..] {
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(
            &cols[1..4],
            &["main", extra[1].as_str(), "where_db"],
            "{}",
            list.dump()
        );
    }
    let cat = run_cli(
        vec![
            "archive".into(),
            "cat".into(),
            "--config".into(),
            cfg_s,
            "--check".into(),
            "where_db".into(),
        ],
        vec![],
        vec![],
        secs(30),
    )
    .await;
    assert_eq!(cat.code, Some(0), "{}", cat.dump());
    assert!(
        cat.stdout
            .starts_with("run_started_at,target,database,dbn,v\n"),
        "{}",
        cat.dump()
    );
    let dbs: BTreeSet<String> = cat
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(
                f[2], f[3],
                "the database column is where the row came from: {l}"
            );
            f[2].to_string()
        })
        .collect();
    assert_eq!(dbs, all);
    drop_databases(&admin, &extra).await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_locates_the_database_problems() {
    let work = WorkDir::new();
    let text = "[targets.main]\nhost = \"127.0.0.1\"\nuser = \"u\"\n\
                databases = [\"dev\", \"a/b\"]\n\
                databases_refresh = \"1m\"\n\
                [targets.other]\nhost = \"127.0.0.1\"\nuser = \"u\"\n\
                databases = { include = [\"*\"] }\n\
                databases_refresh = \"10ms\"\n\
                [[checks]]\nname = \"t\"\nquery = \"SELECT 'x' AS database, 1 AS v\"\n\
                labels = [\"database\"]\nvalues = [\"v\"]\n\
                scope = \"database\"\n\
                [[checks]]\nname = \"u\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\nscope = \"everywhere\"\n";
    let cfg = work.write("checks.toml", text);
    let out = check_config(&cfg).await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
    for want in [
        "targets.main.databases[1] (line 4): \"a/b\" is not a usable database name",
        "targets.main.databases_refresh (line 5): only applies to databases = { include",
        "targets.other.databases_refresh (line 10): must be at least 1s",
        "checks[0].labels[0] (line 14): \"database\" is reserved for the database of a per-database check",
        "checks[1].scope (line 21): \"everywhere\" is not one of cluster, database",
    ] {
        assert!(
            out.stderr.contains(want) || out.stdout.contains(want),
            "{want:?} missing:\n{}",
            out.dump()
        );
    }
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

/// `home` and `extra` as the items of a TOML array of strings.
fn toml_list(home: &str, extra: &[String]) -> String {
    std::iter::once(home)
        .chain(extra.iter().map(String::as_str))
        .map(toml_str)
        .collect::<Vec<_>>()
        .join(", ")
}
