//! The HTTP surface: /metrics validity (promtool), content type, build info and the full set of
//! self-metric families, the landing page, /-/healthy and /-/ready, and the JSON log format.

use crate::support::names::*;
use crate::support::*;

/// A config exercising successes, a query error, NULLs, labels that need escaping and a named value.
fn varied_config(work: &WorkDir, db: &TestDb) -> std::path::PathBuf {
    let checks = check_toml(
        "escapes",
        "SELECT E'quote\" back\\\\slash' AS odd, 'new\nline'::text AS nl, 3 AS v",
        "labels = [\"odd\", \"nl\"]\nvalues = [\"v\"]",
    ) + &check_toml(
        "named",
        "SELECT 1.5::float8 AS x",
        "values = [{ column = \"x\", name = \"named_ratio\", help = \"A ratio with \\\\ and \\\"quotes\\\".\" }]",
    ) + &check_toml("nulls", "SELECT NULL::int AS v", "values = [\"v\"]")
        + &check_toml("broken", "SELECT v FROM no_such_table", "values = [\"v\"]");
    work.write("checks.toml", &config_toml(work, db, &checks))
}

async fn all_ran(d: &Daemon) -> Metrics {
    d.wait_metrics("every check to finish a run", secs(10), |m| {
        ["escapes", "named", "nulls", "broken"]
            .iter()
            .all(|c| m.check_value(LAST_RUN, c).unwrap_or(0.0) > 0.0)
            && m.check_value(SUCCESS, "escapes") == Some(1.0)
            && m.check_value_with(ERRORS, "broken", "kind", "query")
                .unwrap_or(0.0)
                >= 1.0
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics() {
    let db = database().await;
    let work = WorkDir::new();
    let d = Daemon::start(&varied_config(&work, &db)).await;
    let m = all_ran(&d).await;
    assert_eq!(
        m.get(
            "itest_escapes_v",
            &[
                ("target", "main"),
                ("odd", "quote\" back\\slash"),
                ("nl", "new\nline")
            ]
        ),
        Some(3.0),
        "label values must be escaped correctly:\n{}",
        m.lines_with("itest_escapes")
    );

    crate::support::prom::promtool_check(&m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_info_and_every_self_metric_family_exist() {
    let db = database().await;
    let work = WorkDir::new();
    let d = Daemon::start(&varied_config(&work, &db)).await;
    all_ran(&d).await;
    let m = d
        .wait_metrics("an archived file", secs(5), |m| {
            m.check_value(ARCHIVE_FILES, "escapes").unwrap_or(0.0) >= 1.0
        })
        .await;

    let resp = d.get("/metrics").await;
    let ctype = resp.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("text/plain"),
        "/metrics Content-Type {ctype:?}"
    );

    assert_eq!(
        m.get(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0),
        "{}",
        m.lines_with(BUILD_INFO)
    );
    let families = [
        SUCCESS,
        DURATION,
        ROWS,
        LAST_RUN,
        LAST_SUCCESS,
        RUNS,
        ERRORS,
        SAMPLE_ERRORS,
        ARCHIVE_FILES,
        ARCHIVE_ERRORS,
        TARGET_UP,
        POOL_CONNECTIONS,
        POOL_MAX,
        BUILD_INFO,
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ];
    let missing: Vec<_> = families.iter().filter(|f| !m.has_family(f)).collect();
    assert!(
        missing.is_empty(),
        "families missing from /metrics: {missing:?}\n{}",
        m.text
    );

    // per check × target series, with the documented labels
    for c in ["escapes", "named", "nulls", "broken"] {
        for f in [
            SUCCESS,
            DURATION,
            ROWS,
            LAST_RUN,
            ARCHIVE_FILES,
            ARCHIVE_ERRORS,
        ] {
            assert!(
                m.check_value(f, c).is_some(),
                "{f}{{target=\"main\",check=\"{c}\"}} missing:\n{}",
                m.lines_with(f)
            );
        }
    }
    assert_eq!(m.check_value(SUCCESS, "broken"), Some(0.0));
    m.assert_counted(ERRORS, "broken", "kind", "query");
    m.assert_counted(SAMPLE_ERRORS, "nulls", "reason", "null");
    m.assert_counted(RUNS, "escapes", "result", "success");
    assert_eq!(m.check_value(ARCHIVE_ERRORS, "escapes"), Some(0.0));
    assert!(
        m.check_value(LAST_SUCCESS, "escapes").is_some(),
        "{}",
        m.lines_with(LAST_SUCCESS)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = m.check_value(LAST_RUN, "escapes").unwrap();
    assert!(
        (now - last).abs() < 30.0,
        "{LAST_RUN} is Unix seconds: {last} vs now {now}"
    );
    assert_eq!(m.get(TARGET_UP, &[("target", "main")]), Some(1.0));
    assert_eq!(
        m.get(POOL_MAX, &[("target", "main")]),
        Some(5.0),
        "pool_size = 5"
    );
    for state in ["idle", "in_use"] {
        assert!(
            m.get(POOL_CONNECTIONS, &[("target", "main"), ("state", state)])
                .is_some(),
            "{POOL_CONNECTIONS}{{state=\"{state}\"}}:\n{}",
            m.lines_with(POOL_CONNECTIONS)
        );
    }
    for (family, ty) in [
        (SUCCESS, "gauge"),
        (RUNS, "counter"),
        (ERRORS, "counter"),
        (ARCHIVE_FILES, "counter"),
        (TARGET_UP, "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(ty),
            "TYPE of {family}"
        );
    }
    assert_eq!(
        m.help.get("itest_named_ratio").map(String::as_str),
        Some("A ratio with \\ and \"quotes\"."),
        "HELP text with a backslash round-trips"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_health_and_readiness() {
    let checks = check_toml(
        "slow_first",
        "SELECT 1 AS v FROM pg_sleep(3)",
        "values = [\"v\"]\ninterval = \"1h\"\ntimeout = \"10s\"",
    ) + &check_toml("quick", "SELECT 1 AS v", "values = [\"v\"]");
    let (_db, _work, d) = start_with_checks(&checks).await;

    let ready = d.get("/-/ready").await;
    assert_eq!(
        ready.status, 503,
        "/-/ready before slow_first finished its first run: {}",
        ready.body
    );

    let healthy = d.get("/-/healthy").await;
    assert_eq!(healthy.status, 200);
    assert_eq!(healthy.body.trim(), "OK");

    let home = d.get("/").await;
    assert_eq!(home.status, 200);
    assert!(
        home.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "Content-Type of /: {:?}",
        home.header("content-type")
    );
    let body = home.body.replace('\'', "\"");
    assert!(
        body.contains("href=\"/metrics\"") || body.contains("href=\"metrics\""),
        "/ must link /metrics:\n{}",
        home.body
    );
    for c in ["slow_first", "quick"] {
        assert!(
            home.body.contains(c),
            "/ must list check {c}:\n{}",
            home.body
        );
    }

    let missing = d.get("/no/such/page").await;
    assert_eq!(missing.status, 404, "unknown path");

    let deadline = std::time::Instant::now() + secs(10);
    loop {
        let r = d.get("/-/ready").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "/-/ready while not ready");
        assert!(
            std::time::Instant::now() < deadline,
            "/-/ready never became 200; logs:\n{}",
            d.log_text()
        );
        tokio::time::sleep(ms(100)).await;
    }
    let m = d.metrics().await;
    assert!(
        m.check_value_with(RUNS, "slow_first", "result", "success")
            .unwrap_or(0.0)
            >= 1.0,
        "ready before slow_first finished:\n{}",
        m.lines_with("slow_first")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_are_flat_objects() {
    let checks = check_toml("broken", "SELECT v FROM no_such_table", "values = [\"v\"]");
    let (_db, _work, d) = start_with_checks(&checks).await;
    let failed = d
        .wait_log("\"check failed\"", secs(10), |l| {
            l.is_message("check failed")
        })
        .await;
    assert!(failed.has("level", "WARN"), "{}", failed.0);
    assert!(failed.has("check", "broken"), "{}", failed.0);
    assert!(
        failed.has("target", "main"),
        "target field of the event (not only the module path): {}",
        failed.0
    );
    assert!(failed.has("kind", "query"), "{}", failed.0);
    assert!(
        failed
            .field("error")
            .is_some_and(|e| e.contains("no_such_table")),
        "{}",
        failed.0
    );
    for l in d.logs() {
        assert!(
            l.0.starts_with('{') && l.0.ends_with('}'),
            "every stderr line is one JSON object: {}",
            l.0
        );
        assert!(
            l.field("timestamp").is_some() && l.field("level").is_some(),
            "{}",
            l.0
        );
        assert!(
            !l.0.contains("\"fields\":{"),
            "fields must be flattened: {}",
            l.0
        );
    }
}

/// A check whose first run has not finished says nothing about success, duration, rows or
/// run time (no series rather than a 0 that reads as "failed"), and a target on which nothing
/// was measured yet has no `target_up`; the configuration-derived series are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_made_up_before_the_first_run_finishes() {
    let (mut d, _client, _work) = daemon_with_stuck_check("1s").await;
    let m = d.metrics().await;
    for absent in [SUCCESS, DURATION, ROWS, LAST_RUN, LAST_SUCCESS, TARGET_UP] {
        assert!(
            m.find(absent, &[]).is_empty(),
            "{absent} exported before the first run finished:\n{}",
            m.text
        );
    }
    assert!(
        m.check_value("redshift_exporter_check_interval_seconds", "stuck") == Some(3600.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            RUNS,
            &[
                ("target", "main"),
                ("check", "stuck"),
                ("result", "success")
            ]
        ),
        Some(0.0),
        "{}",
        m.text
    );
    d.sigterm();
    d.wait_exit(secs(8)).await;
}

/// Text logs written to a file (or journald, or a pipe) carry no ANSI colour escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_file_have_no_colour_escapes() {
    let db = database().await;
    let work = WorkDir::new();
    let text = exporter_toml(&work.archive(), "")
        + "\n"
        + &db.target_toml("main", "")
        + &check_toml("broken", "SELECT v FROM no_such_table", "values = [\"v\"]");
    let cfg = work.write("checks.toml", &text);
    let log = work.write("stderr.log", "");
    let mut child = std::process::Command::new(crate::support::daemon::BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            "text",
            "--log.level",
            "debug",
        ])
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let written = wait_for("a failed check in the log", secs(15), ms(100), || {
        let log = log.clone();
        async move {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            if t.contains("check failed") {
                Ok(t)
            } else {
                Err(t)
            }
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !written.contains("\x1b["),
        "ANSI escapes in a log file:\n{written:?}"
    );
    assert!(
        written.contains("INFO") || written.contains("WARN"),
        "{written}"
    );
}
