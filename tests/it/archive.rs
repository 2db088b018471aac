//! The CSV archive: file layout and names, header and field quoting, NULL as an empty field, no
//! temporary files left behind, no file for an empty result, and an unwritable archive that must not
//! break the metrics.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::names::*;
use crate::support::*;

/// Every file below `dir` (recursively), hidden ones included.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Parses `{check}_{YYYYMMDDTHHMMSS.mmmZ}.csv` into Unix milliseconds; `None` if the name does not match.
pub fn parse_archive_name(file_name: &str, check: &str) -> Option<i64> {
    let stamp = file_name
        .strip_prefix(&format!("{check}_"))?
        .strip_suffix(".csv")?;
    let b = stamp.as_bytes();
    if b.len() != 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = &stamp[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (h, mi, s, milli) = (
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?,
        digits(16..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + milli)
}

/// A strict RFC 4180 reader (quoted fields, doubled quotes, CRLF or LF line ends).
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
            }
            '"' => return Err(format!("stray quote in field {field:?}")),
            ',' => {
                record.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                quoted = false;
            }
            c => {
                if quoted {
                    return Err(format!("text after closing quote: {c:?}"));
                }
                field.push(c)
            }
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".into());
    }
    if !field.is_empty() || !record.is_empty() || quoted {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn archive_name_and_csv_helpers() {
    assert_eq!(
        parse_archive_name("c_19700101T000001.250Z.csv", "c"),
        Some(1250)
    );
    assert_eq!(
        parse_archive_name("c_20260227T010203.004Z.csv", "c"),
        Some(1_772_154_123_004)
    );
    assert_eq!(parse_archive_name("c_20260227T010203Z.csv", "c"), None);
    assert_eq!(
        parse_archive_name(".c_20260227T010203.004Z.csv.tmp", "c"),
        None
    );
    assert_eq!(
        parse_csv("a,b\r\n1,\"x,\"\"y\"\"\"\n").unwrap(),
        vec![vec!["a", "b"], vec!["1", "x,\"y\""]]
    );
    assert!(parse_csv("a\"b\n").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_file_name_header_quoting_and_nulls() {
    let db = database().await;
    let work = WorkDir::new();
    let query =
        "SELECT 1 AS id, NULL::text AS note, 'a,b \"q\"'::text AS tricky, 'plain'::text AS word";
    let checks = check_toml("csvc", query, "values = [\"id\"]\ninterval = \"1h\"");
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let started = now_ms();
    let d = Daemon::start(&cfg).await;
    d.wait_metrics("one archived file", secs(10), |m| {
        m.check_value(ARCHIVE_FILES, "csvc").unwrap_or(0.0) >= 1.0
    })
    .await;

    let dir = work.archive().join("main").join("csvc");
    let files = walk(&work.archive());
    assert_eq!(files.len(), 1, "exactly one file expected, found {files:?}");
    let file = &files[0];
    assert_eq!(
        file.parent(),
        Some(dir.as_path()),
        "file must be in {{archive_dir}}/{{target}}/{{check}}/"
    );
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = parse_archive_name(&name, "csvc")
        .unwrap_or_else(|| panic!("{name} does not match csvc_YYYYMMDDTHHMMSS.mmmZ.csv"));
    assert!(
        stamp >= started - 2000 && stamp <= now_ms() + 1000,
        "file time {stamp} is not the UTC start of the run (test ran {started}..{})",
        now_ms()
    );

    let text = std::fs::read_to_string(file).unwrap();
    let records = parse_csv(&text).unwrap_or_else(|e| panic!("invalid CSV ({e}):\n{text}"));
    assert_eq!(
        records,
        vec![
            vec!["id", "note", "tricky", "word"],
            vec!["1", "", "a,b \"q\"", "plain"],
        ],
        "CSV contents:\n{text}"
    );
    let data_line = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .trim_end_matches('\r');
    assert!(
        data_line.starts_with("1,,"),
        "NULL must be an empty, unquoted field: {data_line:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_temporary_files_are_left_behind() {
    let checks = check_toml(
        "many",
        "SELECT g AS id, g AS n, md5(g::text) AS h FROM generate_series(1, 2000) g",
        "labels = [\"id\"]\nvalues = [\"n\"]\ninterval = \"1s\"",
    );
    let (_db, work, mut d) = start_with_checks(&checks).await;
    d.wait_metrics("three archived files", secs(12), |m| {
        m.check_value(ARCHIVE_FILES, "many").unwrap_or(0.0) >= 3.0
    })
    .await;
    d.sigterm();
    let status = d.wait_exit(secs(15)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let files = walk(&work.archive());
    let leftovers: Vec<_> = files
        .iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with('.') || n.ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            parse_archive_name(&name, "many").is_some(),
            "unexpected file {f:?}"
        );
        let text = std::fs::read_to_string(f).unwrap();
        let records = parse_csv(&text).unwrap();
        assert_eq!(records.len(), 2001, "{f:?}: header + 2000 rows");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_result_writes_no_file_and_warns() {
    let checks = check_toml("empty", "SELECT 1 AS v WHERE false", "values = [\"v\"]")
        + &check_toml("full", "SELECT 1 AS v", "values = [\"v\"]");
    let (_db, work, d) = start_with_checks(&checks).await;
    let m = d
        .wait_metrics("both checks to run twice", secs(10), |m| {
            m.check_value_with(RUNS, "empty", "result", "success")
                .unwrap_or(0.0)
                >= 2.0
                && m.check_value(ARCHIVE_FILES, "full").unwrap_or(0.0) >= 1.0
        })
        .await;
    assert_eq!(
        m.check_value(SUCCESS, "empty"),
        Some(1.0),
        "an empty result is a success"
    );
    assert_eq!(m.check_value(ROWS, "empty"), Some(0.0));
    let line = d
        .wait_log(
            "\"check returned no rows; no CSV written\" for check empty",
            secs(3),
            |l| l.is_message("check returned no rows; no CSV written") && l.has("check", "empty"),
        )
        .await;
    assert!(line.has("level", "WARN"), "must be a WARN line: {}", line.0);
    assert!(line.has("target", "main"), "target field: {}", line.0);
    let files = walk(&work.archive().join("main").join("empty"));
    assert!(
        files.is_empty(),
        "no file for an empty result, found {files:?}"
    );
    assert!(
        !walk(&work.archive().join("main").join("full")).is_empty(),
        "the control check with a row must have written a file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_archive_keeps_metrics_and_counts_errors() {
    let db = database().await;
    let work = WorkDir::new();
    let blocker = work.path().join("blocker");
    std::fs::write(
        &blocker,
        "a regular file, so mkdir below it fails even for root",
    )
    .unwrap();
    let text = exporter_toml(&blocker.join("archive"), "")
        + "\n"
        + &db.target_toml("main", "")
        + &check_toml("arch", "SELECT 7 AS v", "values = [\"v\"]");
    let cfg = work.write("checks.toml", &text);
    let d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("an archive error", secs(10), |m| {
            m.check_value(ARCHIVE_ERRORS, "arch").unwrap_or(0.0) >= 1.0
        })
        .await;
    assert_eq!(
        m.check_value(SUCCESS, "arch"),
        Some(1.0),
        "archive failures do not fail the check"
    );
    assert_eq!(
        m.get("itest_arch_v", &[("target", "main")]),
        Some(7.0),
        "{}",
        m.lines_with("itest_arch")
    );
    let line = d
        .wait_log("\"archive write failed\" for arch", secs(3), |l| {
            l.is_message("archive write failed") && l.has("check", "arch")
        })
        .await;
    assert!(
        line.field("error").is_some_and(|e| !e.is_empty()),
        "error field: {}",
        line.0
    );
    assert_eq!(d.get("/-/healthy").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_can_be_switched_off_per_check_and_globally() {
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml("kept", "SELECT 1 AS v", "values = [\"v\"]")
        + &check_toml(
            "unarchived",
            "SELECT 1 AS v",
            "values = [\"v\"]\narchive = false",
        );
    let per_check = work.write("per_check.toml", &config_toml(&work, &db, &checks));
    let out = once(&per_check, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert_eq!(
        walk(&work.archive().join("main").join("kept")).len(),
        1,
        "{}",
        out.dump()
    );
    assert!(
        walk(&work.archive().join("main").join("unarchived")).is_empty(),
        "archive = false on the check:\n{}",
        out.dump()
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("ok check=unarchived "))
        .unwrap_or_else(|| panic!("{}", out.dump()));
    assert!(
        !line.contains("file="),
        "no file for an unarchived check: {line}"
    );

    let off = work.path().join("off");
    let global =
        exporter_toml(&off, "archive = false") + "\n" + &db.target_toml("main", "") + &checks;
    let out = once(&work.write("global.toml", &global), &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(
        walk(&off).is_empty(),
        "[exporter] archive = false:\n{}",
        out.dump()
    );
}
