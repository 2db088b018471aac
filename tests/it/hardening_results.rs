//! Hardening, hostile or odd results: label values with quotes, backslashes, newlines, tabs, emoji
//! and bytes that are not UTF-8 (a `SQL_ASCII` database); values NaN, ±Inf, 1e308, `-0`, numbers
//! with blanks, empty strings; the per-check series cap (per check and from `[exporter]`) against a
//! runaway query. The scrape must stay valid for `promtool check metrics` throughout.
//! (Duplicate label sets are covered in `mapping.rs`.)

use crate::archive::{parse_csv, walk};
use crate::support::names::*;
use crate::support::*;

/// (label value, value text) rows of the odd-values check; `None` is SQL NULL.
const ODD: &[(&str, Option<&str>)] = &[
    ("quote\"q", Some("1")),
    ("back\\slash", Some("NaN")),
    ("new\nline", Some("Infinity")),
    ("tab\there", Some("-Infinity")),
    ("emoji 🦀 ünï", Some("1e308")),
    ("neg zero", Some("-0")),
    ("blanks", Some(" 42 ")),
    ("inner blank", Some("4 2")),
    ("empty", Some("")),
    ("null", None),
    ("", Some("5")),
];

/// A SQL string literal (E'...') for `s`.
fn sql_lit(s: &str) -> String {
    let mut out = String::from("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_labels_values_and_non_utf8_bytes_map_as_documented_and_pass_promtool() {
    let db = database().await;
    // A database whose text is raw bytes: chr(233) and chr(255) are single bytes, not UTF-8.
    let raw_name = format!("{}_raw", db.dbname);
    db.execute(&format!(
        "CREATE DATABASE {raw_name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    ))
    .await;
    let mut raw = db.clone();
    raw.dbname = raw_name;
    let rows: Vec<String> = ODD
        .iter()
        .map(|(k, v)| {
            format!(
                "({}, {}::text)",
                sql_lit(k),
                v.map(sql_lit).unwrap_or("NULL".into())
            )
        })
        .collect();
    let work = WorkDir::new();
    let text = exporter_toml(&work.archive(), "")
        + "\n"
        + &db.target_toml("main", "")
        + "\n"
        + &raw.target_toml("raw", "")
        + &check_toml(
            "odd",
            &format!("SELECT * FROM (VALUES {}) AS t(k, v)", rows.join(", ")),
            "labels = [\"k\"]\nvalues = [\"v\"]\ntargets = [\"main\"]",
        )
        + &check_toml(
            "bytes",
            // The server validates what it sends a UTF8 client, so the check switches its own
            // transaction to SQL_ASCII: raw bytes on the wire, as a server that does not validate
            // would send them.
            "SELECT 'caf' || chr(233) AS k, '1' || chr(255) AS v, 2 AS w \
             FROM (SELECT set_config('client_encoding', 'SQL_ASCII', true)) AS raw_bytes",
            "labels = [\"k\"]\nvalues = [\"v\", \"w\"]\ntargets = [\"raw\"]",
        );
    let cfg = work.write("checks.toml", &text);
    let d = Daemon::start(&cfg).await;
    let raw_t = ("target", "raw");
    let m = d
        .wait_metrics("both checks to succeed", secs(10), |m| {
            m.check_value(SUCCESS, "odd") == Some(1.0)
                && m.get(SUCCESS, &[raw_t, ("check", "bytes")]) == Some(1.0)
        })
        .await;

    let get = |k: &str| m.get("itest_odd_v", &[("target", "main"), ("k", k)]);
    assert_eq!(get("quote\"q"), Some(1.0), "{}", m.lines_with("itest_odd"));
    assert!(get("back\\slash").is_some_and(f64::is_nan));
    assert_eq!(get("new\nline"), Some(f64::INFINITY));
    assert_eq!(get("tab\there"), Some(f64::NEG_INFINITY));
    assert_eq!(get("emoji 🦀 ünï"), Some(1e308));
    assert!(get("neg zero").is_some_and(|v| v == 0.0));
    assert_eq!(get("blanks"), Some(42.0), "numbers are trimmed");
    assert_eq!(get("inner blank"), None, "\"4 2\" is not a number");
    assert_eq!(get("empty"), None, "an empty string is not a number");
    assert_eq!(get("null"), None, "NULL is skipped");
    assert_eq!(get(""), Some(5.0), "an empty label value is kept");
    assert_eq!(m.find("itest_odd_v", &[]).len(), 8);
    let runs = m
        .check_value_with(RUNS, "odd", "result", "success")
        .unwrap();
    assert_eq!(
        m.check_value_with(SAMPLE_ERRORS, "odd", "reason", "not_a_number"),
        Some(2.0 * runs),
        "two non-numbers per run"
    );
    assert_eq!(
        m.check_value_with(SAMPLE_ERRORS, "odd", "reason", "null"),
        Some(runs)
    );

    // Bytes that are not UTF-8 become U+FFFD: a label value, and a value that is not a number.
    assert_eq!(
        m.get("itest_bytes_w", &[raw_t, ("k", "\u{FFFD}")]),
        Some(2.0),
        "{}",
        m.lines_with("itest_bytes")
    );
    assert!(m.find("itest_bytes_v", &[]).is_empty());
    assert!(
        m.get(
            SAMPLE_ERRORS,
            &[raw_t, ("check", "bytes"), ("reason", "not_a_number")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    prom::promtool_check(&m.text);
    assert_eq!(d.get("/").await.status, 200, "landing page with odd names");

    // The CSV keeps the odd values byte for byte (as UTF-8), quoted where needed.
    d.wait_metrics("CSV files", secs(5), |m| {
        m.check_value(ARCHIVE_FILES, "odd").unwrap_or(0.0) >= 1.0
            && m.get(ARCHIVE_FILES, &[raw_t, ("check", "bytes")])
                .unwrap_or(0.0)
                >= 1.0
    })
    .await;
    let file = walk(&work.archive().join("main").join("odd"))
        .into_iter()
        .next()
        .unwrap();
    let csv = parse_csv(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(csv[0], vec!["k", "v"]);
    let got: Vec<(String, String)> = csv[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let want: Vec<(String, String)> = ODD
        .iter()
        .map(|(k, v)| (k.to_string(), v.unwrap_or("").to_string()))
        .collect();
    assert_eq!(got, want, "{file:?}");
    let file = walk(&work.archive().join("raw").join("bytes"))
        .into_iter()
        .next()
        .unwrap();
    let text = std::fs::read_to_string(&file).expect("the CSV is valid UTF-8");
    assert_eq!(text, "k,v,w\n\u{FFFD},\u{FFFD},2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_cap_drops_and_counts_rows_with_one_warning_per_run() {
    let db = database().await;
    let work = WorkDir::new();
    let text = exporter_toml(
        &work.archive(),
        "max_series_per_check = 1000\narchive = false",
    ) + "\n"
        + &db.target_toml("main", "")
        + &check_toml(
            "capped",
            "SELECT g AS k, g AS hi, -g AS lo FROM generate_series(1, 10) g ORDER BY g",
            "labels = [\"k\"]\nvalues = [\"hi\", \"lo\"]\nmax_series = 6",
        )
        + &check_toml(
            "runaway",
            "SELECT g AS k, g AS v FROM generate_series(1, 200000) g",
            "labels = [\"k\"]\nvalues = [\"v\"]\ninterval = \"2s\"\ntimeout = \"10s\"",
        );
    let cfg = work.write("checks.toml", &text);
    let d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("both checks ran twice", secs(15), |m| {
            m.check_value_with(RUNS, "capped", "result", "success")
                .unwrap_or(0.0)
                >= 2.0
                && m.check_value_with(RUNS, "runaway", "result", "success")
                    .unwrap_or(0.0)
                    >= 2.0
        })
        .await;

    // max_series = 6 with two value columns: the first three rows (six series) stay.
    let a = m.find("itest_capped_hi", &[]);
    let b = m.find("itest_capped_lo", &[]);
    assert_eq!(a.len() + b.len(), 6, "{}", m.lines_with("itest_capped"));
    for k in ["1", "2", "3"] {
        assert!(
            m.get("itest_capped_hi", &[("target", "main"), ("k", k)])
                .is_some(),
            "row {k} kept (first rows win)"
        );
    }
    let runs = m
        .check_value_with(RUNS, "capped", "result", "success")
        .unwrap();
    let dropped = m
        .check_value_with(SAMPLE_ERRORS, "capped", "reason", "series_limit")
        .unwrap();
    assert_eq!(dropped, 7.0 * runs, "seven rows dropped per run");
    assert_eq!(m.check_value(ROWS, "capped"), Some(10.0), "rows returned");

    // [exporter] max_series_per_check caps the runaway query.
    assert_eq!(
        m.find("itest_runaway_v", &[]).len(),
        1000,
        "max_series_per_check"
    );
    let runaway_runs = m
        .check_value_with(RUNS, "runaway", "result", "success")
        .unwrap();
    assert_eq!(
        m.check_value_with(SAMPLE_ERRORS, "runaway", "reason", "series_limit"),
        Some(199_000.0 * runaway_runs)
    );
    assert_eq!(m.check_value(SUCCESS, "runaway"), Some(1.0));
    let rss = m.get("process_resident_memory_bytes", &[]).unwrap();
    assert!(
        rss < 300e6,
        "RSS {:.0} MB after 200 000-row results",
        rss / 1e6
    );
    prom::promtool_check(&m.text);

    // One warning per run, not one per dropped row.
    let m = d.metrics().await;
    let runs = m
        .check_value_with(RUNS, "capped", "result", "success")
        .unwrap();
    let warnings = d
        .logs()
        .iter()
        .filter(|l| {
            l.is_message("values skipped")
                && l.has("reason", "series_limit")
                && l.has("check", "capped")
        })
        .count() as f64;
    assert!(
        warnings >= runs && warnings <= runs + 1.0,
        "{warnings} series_limit warnings for {runs} runs"
    );
    let line = d
        .logs()
        .into_iter()
        .find(|l| l.is_message("values skipped") && l.has("check", "capped"))
        .unwrap();
    assert!(line.has("level", "WARN"), "{}", line.0);
    assert!(line.0.contains("\"count\":7"), "{}", line.0);
}
