//! Streaming results: rows go to the sampler and the CSV writer as they arrive, so a large
//! result is archived whole while `/metrics` keeps only `max_series` series, and a query that
//! fails part-way leaves no CSV (nor a temporary file) behind.

use crate::archive::walk;
use crate::support::names::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_result_is_archived_whole_while_metrics_keep_the_cap() {
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml(
        "big",
        "SELECT 'k' || g AS k, g AS v, CASE WHEN g % 2 = 0 THEN NULL ELSE 'x' END AS n \
         FROM generate_series(1, 200000) g",
        "labels = [\"k\"]\nvalues = [\"v\"]\nmax_series = 100\ntimeout = \"20s\"",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.contains("rows=200000"), "{}", out.dump());
    let files = walk(&work.archive().join("main").join("big"));
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        out.stdout.contains(&files[0].display().to_string()),
        "{}",
        out.dump()
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("k,v,n"));
    assert_eq!(lines.next(), Some("k1,1,x"));
    assert_eq!(lines.next(), Some("k2,2,"), "NULL is an empty field");
    assert_eq!(text.lines().count(), 200_001);
    assert_eq!(text.lines().last(), Some("k200000,200000,"));

    // The daemon: the series cap holds and the rest is counted.
    let d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("the big check's first run", secs(20), |m| {
            m.check_value(ROWS, "big").is_some_and(|r| r > 0.0)
        })
        .await;
    assert_eq!(m.check_value(ROWS, "big"), Some(200_000.0));
    assert_eq!(m.with_prefix("itest_big_v").len(), 100);
    assert_eq!(
        m.check_value_with(SAMPLE_ERRORS, "big", "reason", "series_limit"),
        Some(199_900.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_failing_part_way_leaves_no_csv() {
    let db = database().await;
    let work = WorkDir::new();
    // Rows stream out before the division by zero at g = 50000 fails the statement; the
    // timeout check sends rows, then sleeps past its deadline.
    let checks = check_toml(
        "fails",
        "SELECT g AS v, 1 / (50000 - g) AS x FROM generate_series(1, 60000) g",
        "values = [\"v\"]",
    ) + &check_toml(
        "slow",
        "SELECT g AS v, CASE WHEN g = 60000 THEN pg_sleep(5)::text END AS s \
         FROM generate_series(1, 60000) g",
        "values = [\"v\"]\ntimeout = \"1s\"",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.dump());
    assert!(out.stdout.contains("check=fails"), "{}", out.dump());
    assert!(out.stdout.contains("kind=timeout"), "{}", out.dump());
    let files = walk(&work.archive());
    assert!(files.is_empty(), "no file, no temporary: {files:?}");
}
