//! A fleet in one config: static labels on every series of a target and of a check (data and
//! self metrics, `target_info`), a reload that changes them without dropping the pool, and
//! `[exporter] include` files whose problems `check-config` reports with file and line.

use crate::support::names::*;
use crate::support::*;

fn fleet_config(work: &WorkDir, db: &TestDb, env: &str) -> std::path::PathBuf {
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml(
            "main",
            &format!(
                "pool_size = 1\nlabels = {{ env = \"{env}\", cluster_identifier = \"sales-prod\", note = \"a \\\"quoted\\\" value\" }}"
            ),
        )
        + &check_toml(
            "pid",
            "SELECT 'x' AS node, pg_backend_pid()::float8 AS pid",
            "labels = [\"node\"]\nvalues = [\"pid\"]\ninterval = \"1s\"\nstatic_labels = { team = \"dba\" }",
        )
        + &check_toml("plain", "SELECT 1::float8 AS v", "values = [\"v\"]\ninterval = \"1s\"");
    work.write("checks.toml", &text)
}

/// Every series that names target `main`, except the process-wide families.
fn target_series(m: &Metrics) -> Vec<&crate::support::prom::Sample> {
    m.samples
        .iter()
        .filter(|s| s.labels.get("target").map(String::as_str) == Some("main"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_labels_reach_every_series_and_a_reload_changes_them_keeping_the_pool() {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = fleet_config(&work, &db, "prod");
    let mut d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("both checks ran", secs(15), |m| {
            let ok =
                |c: &str| m.find(SUCCESS, &[("check", c)]).first().map(|s| s.value) == Some(1.0);
            ok("pid") && ok("plain")
        })
        .await;
    let series = target_series(&m);
    let families: std::collections::BTreeSet<&str> =
        series.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "itest_pid_pid",
        SUCCESS,
        RUNS,
        ERRORS,
        TARGET_UP,
        POOL_CONNECTIONS,
        POOL_MAX,
        "redshift_exporter_target_info",
    ] {
        assert!(
            families.contains(want),
            "{want} lacks target main: {families:?}"
        );
    }
    for s in &series {
        assert_eq!(s.labels.get("env").map(String::as_str), Some("prod"), "{s}");
        assert_eq!(
            s.labels.get("cluster_identifier").map(String::as_str),
            Some("sales-prod"),
            "{s}"
        );
        assert_eq!(
            s.labels.get("note").map(String::as_str),
            Some("a \"quoted\" value"),
            "{s}"
        );
        let of_pid =
            s.name == "itest_pid_pid" || s.labels.get("check").map(String::as_str) == Some("pid");
        assert_eq!(
            s.labels.contains_key("team"),
            of_pid,
            "check labels only on pid's series: {s}"
        );
    }
    crate::support::prom::promtool_check(&m.text);
    let pid0 = m.get(
        "itest_pid_pid",
        &[
            ("target", "main"),
            ("node", "x"),
            ("env", "prod"),
            ("cluster_identifier", "sales-prod"),
            ("note", "a \"quoted\" value"),
            ("team", "dba"),
        ],
    );
    assert!(pid0.is_some(), "{}", m.lines_with("itest_pid_pid"));

    // The landing page shows the target's static labels, HTML-escaped like every other value.
    let home = d.get("/").await.body;
    for want in [
        "<code>env=prod</code>",
        "<code>cluster_identifier=sales-prod</code>",
        "<code>note=a &quot;quoted&quot; value</code>",
    ] {
        assert!(
            home.contains(want),
            "the landing page lacks {want}:\n{home}"
        );
    }

    // Reload with another label value: the series carry it, the old ones are gone, and the
    // session (pool of 1) is the same one.
    fleet_config(&work, &db, "staging");
    d.sighup();
    let m = d
        .wait_metrics("the new label value", secs(15), |m| {
            target_series(m)
                .iter()
                .all(|s| s.labels.get("env").map(String::as_str) == Some("staging"))
                && m.find("itest_pid_pid", &[("env", "staging")]).len() == 1
        })
        .await;
    let pid1 = m.find("itest_pid_pid", &[("env", "staging")])[0].value;
    assert_eq!(
        Some(pid1),
        pid0,
        "the reload dropped the pool (new backend pid)"
    );
    d.sigterm();
    d.wait_exit(secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_include_problems_with_file_and_line() {
    let work = WorkDir::new();
    std::fs::create_dir_all(work.path().join("checks.d")).unwrap();
    work.write(
        "checks.d/good.toml",
        "[[checks]]\nname = \"wlm\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\n",
    );
    work.write(
        "checks.d/bad.toml",
        "# a comment\n[[checks]]\nname = \"disk\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\ntimeout = \"never\"\n",
    );
    let main = work.write(
        "checks.toml",
        "[exporter]\ninclude = [\"checks.d/*.toml\"]\n\n[targets.main]\nhost = \"127.0.0.1\"\nuser = \"u\"\n",
    );
    let out = check_config(&main).await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("checks.d/bad.toml: checks[0].timeout (line 6): invalid duration \"never\""),
        "{}",
        out.dump()
    );
    // Fixed, the merged file lists both included files and their checks.
    work.write(
        "checks.d/bad.toml",
        "[[checks]]\nname = \"disk\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\n",
    );
    let out = check_config(&main).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.contains("2 check(s)"), "{}", out.dump());
    assert!(
        out.stdout.contains("checks.d/bad.toml") && out.stdout.contains("checks.d/good.toml"),
        "{}",
        out.dump()
    );
}
