//! Hardening, security: checks that try to write fail and write nothing; names can never steer a
//! path outside the archive folder. Secrets are in `hardening_secrets`, TLS and basic auth on the
//! web endpoint in `hardening_web`.

use crate::archive::walk;
use crate::support::names::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_that_try_to_write_fail_and_write_nothing() {
    let db = database().await;
    db.execute(
        "CREATE TABLE ro (v int); INSERT INTO ro VALUES (1);
         CREATE SEQUENCE ro_seq;
         CREATE FUNCTION side_effect() RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO ro VALUES (3); RETURN 1; END $$;",
    )
    .await;
    let work = WorkDir::new();
    let writes = [
        ("ins", "INSERT INTO ro VALUES (2) RETURNING v"),
        ("ctas", "CREATE TABLE made_by_check AS SELECT 1 AS v"),
        ("func", "SELECT side_effect() AS v"),
        (
            "cte",
            "WITH gone AS (DELETE FROM ro RETURNING v) SELECT v FROM gone",
        ),
        ("seq", "SELECT nextval('ro_seq') AS v"),
        ("upd", "UPDATE ro SET v = 9 RETURNING v"),
        ("lock", "SELECT v FROM ro FOR UPDATE"),
    ];
    // Several statements could end the READ ONLY transaction (or make it read-write before
    // its first query): such a file is refused as a whole, by check-config, once and run.
    let escapes = [
        (
            "rw",
            "SET TRANSACTION READ WRITE; INSERT INTO ro VALUES (4); SELECT 1 AS v",
        ),
        ("commit", "COMMIT; INSERT INTO ro VALUES (5); SELECT 1 AS v"),
        (
            "sneaky",
            "SELECT 'a\\'; COMMIT; INSERT INTO ro VALUES (6); SELECT '1' AS v --'",
        ),
    ];
    let mut bad = String::new();
    for (name, sql) in escapes {
        bad += &check_toml(name, sql, "values = [\"v\"]");
    }
    let bad_cfg = work.write("escapes.toml", &config_toml(&work, &db, &bad));
    let out = check_config(&bad_cfg).await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
    for i in 0..escapes.len() {
        let line = out
            .stderr
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("checks[{i}].query")))
            .unwrap_or_else(|| panic!("checks[{i}].query not reported:\n{}", out.dump()));
        assert!(line.contains("one SQL statement"), "{line}");
    }
    let out = once(&bad_cfg, &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
    let mut d = Daemon::spawn(&bad_cfg, "127.0.0.1:0", &[], &[]);
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(2));

    let mut checks = String::new();
    for (name, sql) in writes {
        checks += &check_toml(name, sql, "values = [\"v\"]");
    }
    checks += &check_toml("reader", "SELECT count(*) AS v FROM ro", "values = [\"v\"]");
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.dump());
    for (name, _) in writes {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" check={name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{}", out.dump()));
        assert!(
            line.starts_with("error ") && line.contains("kind=query"),
            "{name} must fail as a query error: {line}"
        );
        assert!(
            line.contains("read-only transaction") || line.contains("one statement"),
            "{name}: the error says why: {line}"
        );
    }
    assert!(
        out.stdout.contains("ok check=reader target=main rows=1"),
        "{}",
        out.dump()
    );

    let client = db.connect().await;
    let rows: Vec<i32> = client
        .query("SELECT v FROM ro ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![1], "a check wrote to ro");
    let made: bool = client
        .query_one("SELECT to_regclass('made_by_check') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!made, "CREATE TABLE from a check took effect");
    let seq: bool = client
        .query_one("SELECT is_called FROM ro_seq", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!seq, "nextval from a check took effect");

    // The daemon reports the same, and keeps running the good check.
    let d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("every check ran", secs(10), |m| {
            writes
                .iter()
                .all(|(n, _)| m.check_value(LAST_RUN, n).unwrap_or(0.0) > 0.0)
                && m.check_value(SUCCESS, "reader") == Some(1.0)
        })
        .await;
    for (name, _) in writes {
        assert_eq!(m.check_value(SUCCESS, name), Some(0.0), "{name}");
        assert!(
            m.check_value_with(ERRORS, name, "kind", "query")
                .unwrap_or(0.0)
                >= 1.0,
            "{name}: {}",
            m.lines_with(name)
        );
    }
    assert_eq!(m.get("itest_reader_v", &[("target", "main")]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_steer_a_path_outside_the_archive() {
    let db = database().await;
    let work = WorkDir::new();
    // Bad check and target names are refused up front.
    for (what, text) in [
        (
            "check ../evil",
            config_toml(
                &work,
                &db,
                &check_toml("../evil", "SELECT 1 AS v", "values = [\"v\"]"),
            ),
        ),
        (
            "check a/b",
            config_toml(
                &work,
                &db,
                &check_toml("a/b", "SELECT 1 AS v", "values = [\"v\"]"),
            ),
        ),
        (
            "check .hidden",
            config_toml(
                &work,
                &db,
                &check_toml(".hidden", "SELECT 1 AS v", "values = [\"v\"]"),
            ),
        ),
        (
            "target ..",
            exporter_toml(&work.archive(), "")
                + &db.target_toml("\"..\"", "")
                + &check_toml("c", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
        (
            "target ../up",
            exporter_toml(&work.archive(), "")
                + &db.target_toml("\"../up\"", "")
                + &check_toml("c", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
        (
            "target a/b",
            exporter_toml(&work.archive(), "")
                + &db.target_toml("\"a/b\"", "")
                + &check_toml("c", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
    ] {
        let out = check_config(&work.write("bad.toml", &text)).await;
        assert_eq!(out.code, Some(2), "{what}:\n{}", out.dump());
        assert!(
            out.stderr.contains("must match"),
            "{what}: the name rule is explained:\n{}",
            out.dump()
        );
    }

    // Column names and values are data: they never become paths.
    let query = "SELECT '../../../escaped'::text AS \"../../up\", '/etc/passwd'::text AS \"/abs\", \
                 1 AS v, '..'::text AS k";
    let cfg = work.write(
        "checks.toml",
        &config_toml(
            &work,
            &db,
            &check_toml("cols", query, "labels = [\"k\"]\nvalues = [\"v\"]"),
        ),
    );
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    let dir = work.archive().join("main").join("cols");
    let files = walk(work.path());
    for f in &files {
        assert!(
            f.parent() == Some(dir.as_path()) || f.parent() == Some(work.path()),
            "unexpected file {f:?}"
        );
    }
    let csvs: Vec<_> = files.iter().filter(|f| f.starts_with(&dir)).collect();
    assert_eq!(csvs.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(csvs[0]).unwrap();
    assert!(text.starts_with("../../up,/abs,v,k\n"), "{text}");
    assert!(!work.path().parent().unwrap().join("escaped").exists());
}
