//! How query results become series on /metrics: label and value columns, named value overrides with
//! their HELP text, booleans, char(n) padding, rows that vanish, failed runs that drop a check's series,
//! and NULL / non-numeric values that are skipped and counted.

use crate::support::names::*;
use crate::support::*;

const T: (&str, &str) = ("target", "main");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_map_to_labelled_series_with_exact_values() {
    let db = database().await;
    db.execute(
        "CREATE TABLE svc (db char(10), usr text, cnt int, ratio float8, ok boolean, big numeric);
         INSERT INTO svc VALUES ('alpha', 'ann', 5, 2.5, true, 1234567.25),
                                ('beta', 'bob', -3, 0.125, false, 0);",
    )
    .await;
    let work = WorkDir::new();
    let checks = check_toml(
        "svc",
        "SELECT db, usr, cnt, ratio, ok, big FROM svc",
        "labels = [\"db\", \"usr\"]\nvalues = [\"cnt\", \"ratio\", \"ok\", \"big\"]",
    ) + &check_toml(
        "named",
        "SELECT db, cnt FROM svc",
        "labels = [\"db\"]\nvalues = [{ column = \"cnt\", name = \"custom_count\", help = \"Custom help for the count.\" }]",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("both checks to succeed", secs(10), |m| {
            m.check_value(SUCCESS, "svc") == Some(1.0)
                && m.check_value(SUCCESS, "named") == Some(1.0)
        })
        .await;

    let alpha = [T, ("db", "alpha"), ("usr", "ann")];
    let beta = [T, ("db", "beta"), ("usr", "bob")];
    let expect = [
        ("itest_svc_cnt", &alpha, 5.0),
        ("itest_svc_ratio", &alpha, 2.5),
        ("itest_svc_ok", &alpha, 1.0),
        ("itest_svc_big", &alpha, 1234567.25),
        ("itest_svc_cnt", &beta, -3.0),
        ("itest_svc_ratio", &beta, 0.125),
        ("itest_svc_ok", &beta, 0.0),
        ("itest_svc_big", &beta, 0.0),
    ];
    for (name, labels, value) in expect {
        assert_eq!(
            m.get(name, labels),
            Some(value),
            "{name}{labels:?} (char(10) label values must be trimmed); got:\n{}",
            m.lines_with(name)
        );
    }
    for family in [
        "itest_svc_cnt",
        "itest_svc_ratio",
        "itest_svc_ok",
        "itest_svc_big",
    ] {
        assert_eq!(
            m.find(family, &[]).len(),
            2,
            "exactly one series per row:\n{}",
            m.lines_with(family)
        );
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some("gauge"),
            "{family} TYPE"
        );
    }
    assert!(
        m.with_prefix("itest_svc_")
            .iter()
            .all(|s| !s.name.ends_with("_db") && !s.name.ends_with("_usr")),
        "label columns must not become value series:\n{}",
        m.lines_with("itest_svc_")
    );
    assert!(
        m.samples
            .iter()
            .all(|s| s.labels.values().all(|v| v == v.trim_end())),
        "no label value may keep trailing blanks:\n{}",
        m.lines_with("itest_")
    );
    assert_eq!(m.check_value(ROWS, "svc"), Some(2.0), "{ROWS}");

    // named value: {ns}_{name} replaces {ns}_{check}_{column}, with its own HELP
    assert_eq!(
        m.get("itest_custom_count", &[T, ("db", "alpha")]),
        Some(5.0),
        "{}",
        m.lines_with("custom_count")
    );
    assert_eq!(
        m.get("itest_custom_count", &[T, ("db", "beta")]),
        Some(-3.0),
        "{}",
        m.lines_with("custom_count")
    );
    assert_eq!(
        m.help.get("itest_custom_count").map(String::as_str),
        Some("Custom help for the count."),
        "HELP of the named value"
    );
    assert!(
        m.find("itest_named_cnt", &[]).is_empty(),
        "the override replaces the default name:\n{}",
        m.lines_with("itest_named")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_rows_drop_their_series_after_the_next_run() {
    let db = database().await;
    db.execute(
        "CREATE TABLE q (name text, n int);
         INSERT INTO q VALUES ('keep', 1), ('gone', 2);",
    )
    .await;
    let work = WorkDir::new();
    let checks = check_toml(
        "q",
        "SELECT name, n FROM q",
        "labels = [\"name\"]\nvalues = [\"n\"]",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let d = Daemon::start(&cfg).await;
    d.wait_metrics("both rows exported", secs(10), |m| {
        m.get("itest_q_n", &[T, ("name", "keep")]) == Some(1.0)
            && m.get("itest_q_n", &[T, ("name", "gone")]) == Some(2.0)
    })
    .await;

    db.execute("DELETE FROM q WHERE name = 'gone'").await;
    let m = d
        .wait_metrics("the deleted row's series to disappear", secs(6), |m| {
            m.find("itest_q_n", &[("name", "gone")]).is_empty()
        })
        .await;
    assert_eq!(
        m.get("itest_q_n", &[T, ("name", "keep")]),
        Some(1.0),
        "{}",
        m.lines_with("itest_q_n")
    );
    assert_eq!(
        m.check_value(ROWS, "q"),
        Some(1.0),
        "{}",
        m.lines_with(ROWS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_drops_that_checks_series_and_counts_the_error() {
    let db = database().await;
    db.execute("CREATE TABLE frag (k text, v int); INSERT INTO frag VALUES ('a', 11);")
        .await;
    let work = WorkDir::new();
    let checks = check_toml(
        "fragile",
        "SELECT k, v FROM frag",
        "labels = [\"k\"]\nvalues = [\"v\"]",
    ) + &check_toml("steady", "SELECT 42 AS answer", "values = [\"answer\"]");
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let d = Daemon::start(&cfg).await;
    d.wait_metrics("both checks to succeed", secs(10), |m| {
        m.get("itest_fragile_v", &[T, ("k", "a")]) == Some(11.0)
            && m.check_value(SUCCESS, "steady") == Some(1.0)
    })
    .await;

    db.execute("DROP TABLE frag").await;
    let m = d
        .wait_metrics("fragile to fail", secs(6), |m| {
            m.check_value(SUCCESS, "fragile") == Some(0.0)
        })
        .await;
    assert!(
        m.with_prefix("itest_fragile_").is_empty(),
        "a failed run must drop the check's data series:\n{}",
        m.lines_with("itest_fragile_")
    );
    let errors = m
        .check_value_with(ERRORS, "fragile", "kind", "query")
        .unwrap_or(0.0);
    assert!(
        errors >= 1.0,
        "{ERRORS}{{kind=\"query\"}} = {errors}:\n{}",
        m.lines_with(ERRORS)
    );
    let runs = m
        .check_value_with(RUNS, "fragile", "result", "error")
        .unwrap_or(0.0);
    assert!(
        runs >= 1.0,
        "{RUNS}{{result=\"error\"}} = {runs}:\n{}",
        m.lines_with(RUNS)
    );
    assert_eq!(
        m.get("itest_steady_answer", &[T]),
        Some(42.0),
        "other checks stay:\n{}",
        m.lines_with("itest_")
    );
    assert_eq!(m.check_value(SUCCESS, "steady"), Some(1.0));

    let line = d
        .wait_log("\"check failed\" for fragile", secs(3), |l| {
            l.is_message("check failed") && l.has("check", "fragile")
        })
        .await;
    assert!(line.has("kind", "query"), "kind field: {}", line.0);

    // the counter keeps counting on later runs
    d.wait_metrics("a second query error", secs(6), |m| {
        m.check_value_with(ERRORS, "fragile", "kind", "query")
            .unwrap_or(0.0)
            >= errors + 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_and_text_values_are_skipped_and_counted() {
    let checks = check_toml(
        "nt",
        "SELECT 'x'::text AS k, NULL::int AS n, 'abc'::text AS s, 7 AS good",
        "labels = [\"k\"]\nvalues = [\"n\", \"s\", \"good\"]",
    );
    let (_db, _work, d) = start_with_checks(&checks).await;
    let m = d
        .wait_metrics("nt to run", secs(10), |m| {
            m.check_value_with(SAMPLE_ERRORS, "nt", "reason", "null")
                .unwrap_or(0.0)
                >= 1.0
                && m.check_value_with(SAMPLE_ERRORS, "nt", "reason", "not_a_number")
                    .unwrap_or(0.0)
                    >= 1.0
        })
        .await;
    assert_eq!(
        m.check_value(SUCCESS, "nt"),
        Some(1.0),
        "skipped samples do not fail the run"
    );
    assert_eq!(
        m.get("itest_nt_good", &[T, ("k", "x")]),
        Some(7.0),
        "{}",
        m.lines_with("itest_nt")
    );
    assert!(
        m.find("itest_nt_n", &[]).is_empty(),
        "NULL is skipped:\n{}",
        m.lines_with("itest_nt_n")
    );
    assert!(
        m.find("itest_nt_s", &[]).is_empty(),
        "'abc' is skipped:\n{}",
        m.lines_with("itest_nt_s")
    );
    // one NULL and one text value per run: both counters move in step with the runs
    let runs = m
        .check_value_with(RUNS, "nt", "result", "success")
        .unwrap_or(0.0);
    let nulls = m
        .check_value_with(SAMPLE_ERRORS, "nt", "reason", "null")
        .unwrap_or(0.0);
    assert!(
        runs >= 1.0 && nulls <= runs + 1.0,
        "runs={runs} nulls={nulls}:\n{}",
        m.lines_with("nt")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_run_on_every_target_unless_restricted() {
    let db = database().await;
    let work = WorkDir::new();
    let text = exporter_toml(&work.archive(), "")
        + "\n"
        + &db.target_toml("main", "")
        + "\n"
        + &db.target_toml("second", "")
        + "\n"
        + &check_toml("everywhere", "SELECT 1 AS v", "values = [\"v\"]")
        + &check_toml(
            "only_second",
            "SELECT 2 AS v",
            "values = [\"v\"]\ntargets = [\"second\"]",
        );
    let cfg = work.write("checks.toml", &text);
    let d = Daemon::start(&cfg).await;
    let second = ("target", "second");
    let m = d
        .wait_metrics("all three check × target pairs", secs(10), |m| {
            m.get("itest_everywhere_v", &[T]) == Some(1.0)
                && m.get("itest_everywhere_v", &[second]) == Some(1.0)
                && m.get("itest_only_second_v", &[second]) == Some(2.0)
        })
        .await;
    assert!(
        m.find("itest_only_second_v", &[T]).is_empty(),
        "only_second must not run on main:\n{}",
        m.lines_with("only_second")
    );
    assert!(
        m.find(SUCCESS, &[T, ("check", "only_second")]).is_empty(),
        "no self metrics for a pair that does not exist:\n{}",
        m.lines_with("only_second")
    );
    assert_eq!(
        m.get(SUCCESS, &[second, ("check", "only_second")]),
        Some(1.0)
    );
    assert_eq!(m.get(TARGET_UP, &[second]), Some(1.0));
    d.wait_metrics("archives for both targets", secs(5), |m| {
        m.get(ARCHIVE_FILES, &[second, ("check", "only_second")])
            .unwrap_or(0.0)
            >= 1.0
            && m.get(ARCHIVE_FILES, &[T, ("check", "everywhere")])
                .unwrap_or(0.0)
                >= 1.0
    })
    .await;
    assert!(work.archive().join("second").join("only_second").is_dir());
    assert!(work.archive().join("main").join("everywhere").is_dir());
    assert!(!work.archive().join("main").join("only_second").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_value_column_fails_the_run_as_columns() {
    let checks = check_toml("cols", "SELECT 1 AS v", "values = [\"v\", \"missing_col\"]");
    let (_db, _work, d) = start_with_checks(&checks).await;
    let m = d
        .wait_metrics("a columns error", secs(10), |m| {
            m.check_value_with(ERRORS, "cols", "kind", "columns")
                .unwrap_or(0.0)
                >= 1.0
        })
        .await;
    assert_eq!(m.check_value(SUCCESS, "cols"), Some(0.0));
    assert!(
        m.with_prefix("itest_cols_").is_empty(),
        "{}",
        m.lines_with("itest_cols")
    );
    let line = d
        .wait_log("\"check failed\" for cols", secs(3), |l| {
            l.is_message("check failed") && l.has("check", "cols")
        })
        .await;
    assert!(line.has("kind", "columns"), "{}", line.0);
    assert!(
        line.field("error")
            .is_some_and(|e| e.contains("missing_col")),
        "the error names the missing column: {}",
        line.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_label_sets_keep_one_series_and_are_counted() {
    let checks = check_toml(
        "dups",
        "SELECT 'same'::text AS k, g AS v FROM generate_series(1, 3) g ORDER BY g",
        "labels = [\"k\"]\nvalues = [\"v\"]",
    );
    let (_db, _work, d) = start_with_checks(&checks).await;
    let m = d
        .wait_metrics("duplicate_labels to be counted", secs(10), |m| {
            m.check_value_with(SAMPLE_ERRORS, "dups", "reason", "duplicate_labels")
                .unwrap_or(0.0)
                >= 2.0
        })
        .await;
    let series = m.find("itest_dups_v", &[]);
    assert_eq!(
        series.len(),
        1,
        "one series per label set:\n{}",
        m.lines_with("itest_dups")
    );
    assert_eq!(series[0].value, 1.0, "the first row wins: {}", series[0]);
    assert_eq!(m.check_value(SUCCESS, "dups"), Some(1.0));
    let runs = m
        .check_value_with(RUNS, "dups", "result", "success")
        .unwrap_or(0.0);
    let dups = m
        .check_value_with(SAMPLE_ERRORS, "dups", "reason", "duplicate_labels")
        .unwrap_or(0.0);
    assert_eq!(dups, 2.0 * runs, "two duplicates per run");
    crate::support::prom::promtool_check(&m.text);
}
