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

mod bound;
mod discovery;

/// A plain login role (no superuser, no grants beyond PUBLIC's CONNECT): what a monitoring
/// user is. Returns the home database as that role.
pub(super) async fn monitoring_role(admin: &TestDb) -> TestDb {
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
pub(super) async fn create_databases(admin: &TestDb, prefix: &str, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let name = format!("{prefix}_{n}");
        admin.execute(&format!("CREATE DATABASE {name}")).await;
        out.push(name);
    }
    out
}

pub(super) async fn drop_databases(admin: &TestDb, names: &[String]) {
    for n in names {
        admin
            .execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
            .await;
    }
}

/// The checks of these tests: `where_cluster` (cluster scope) and `where_db` (per database),
/// both reporting the database they ran in as the label column `dbn`.
pub(super) fn where_checks(extra_db: &str) -> String {
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
pub(super) fn per_database(m: &Metrics) -> BTreeSet<String> {
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

/// `home` and `extra` as the items of a TOML array of strings.
pub(super) fn toml_list(home: &str, extra: &[String]) -> String {
    std::iter::once(home)
        .chain(extra.iter().map(String::as_str))
        .map(toml_str)
        .collect::<Vec<_>>()
        .join(", ")
}
