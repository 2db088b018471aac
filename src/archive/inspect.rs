//! Reading the archive back: `archive list` (the files, their run time, rows and size) and
//! `archive cat` (every run of one check in a time range as one CSV with leading
//! `run_started_at` and `target` columns, plain and gzip inputs alike; a `database` column
//! follows `target` when a per-database check's `{target}@{database}` folder is among them).
//!
//! Synchronous on purpose: these are CLI commands that read local files start to end. A
//! file whose header differs from the first one's (the query changed) or that cannot be
//! read is skipped and reported, never mixed in. Knows nothing about the daemon.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use super::layout::{self, Entry};

/// Which files to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub target: Option<String>,
    /// Only a per-database check's files of this database (`{target}@{database}` folders).
    pub database: Option<String>,
    pub check: Option<String>,
    /// Runs that started at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Runs that started before this.
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    fn keeps(&self, e: &Entry) -> bool {
        let (target, database) = crate::discovery::split_folder(&e.target);
        self.target.as_deref().is_none_or(|t| t == target)
            && self.database.as_deref().is_none_or(|d| database == Some(d))
            && self.check.as_deref().is_none_or(|c| c == e.check)
            && self.since.is_none_or(|s| e.started >= s)
            && self.until.is_none_or(|u| e.started < u)
    }
}

/// Parses a `--since` / `--until` value: RFC 3339 (`2025-11-27T06:00:00Z`), a UTC date
/// (`2025-11-27`), or a duration back from `now` (`7d`, `36h`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("\"{s}\" reaches too far back"));
    }
    Err(format!(
        "\"{s}\" is not a time: use RFC 3339 (2025-11-27T06:00:00Z), a UTC date (2025-11-27) or a duration back from now (7d, 36h)"
    ))
}

/// The archive's files that pass `filter`, oldest first.
pub fn select(root: &Path, filter: &Filter) -> io::Result<Vec<Entry>> {
    Ok(layout::scan(root)?
        .files
        .into_iter()
        .filter(|e| filter.keeps(e))
        .collect())
}

fn open(e: &Entry) -> io::Result<csv::Reader<Box<dyn Read>>> {
    let f = BufReader::new(File::open(&e.path)?);
    let r: Box<dyn Read> = if e.gzip {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(csv::ReaderBuilder::new().has_headers(true).from_reader(r))
}

/// Data rows in a file (header excluded).
pub fn count_rows(e: &Entry) -> io::Result<u64> {
    let mut r = open(e)?;
    let mut n = 0;
    let mut rec = csv::ByteRecord::new();
    while r.read_byte_record(&mut rec).map_err(csv_io)? {
        n += 1;
    }
    Ok(n)
}

fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Whether any of `files` is a per-database check's (then `list` and `cat` add a `database`
/// column after `target`; archives without one read as before).
fn any_database(files: &[Entry]) -> bool {
    files
        .iter()
        .any(|e| crate::discovery::split_folder(&e.target).1.is_some())
}

/// Writes the `archive list` table; returns how many files matched.
pub fn list(root: &Path, filter: &Filter, out: &mut dyn Write) -> io::Result<usize> {
    let files = select(root, filter)?;
    let with_db = any_database(&files);
    let mut head: Vec<String> = vec!["run_started_at".into(), "target".into()];
    if with_db {
        head.push("database".into());
    }
    head.extend(["check", "rows", "bytes", "path"].map(String::from));
    let mut rows: Vec<Vec<String>> = vec![head];
    for e in &files {
        let n = count_rows(e).map_or_else(|_| "unreadable".to_string(), |n| n.to_string());
        let (target, database) = crate::discovery::split_folder(&e.target);
        let mut row = vec![rfc3339(e.started), target.to_string()];
        if with_db {
            row.push(database.unwrap_or("").to_string());
        }
        row.extend([
            e.check.clone(),
            n,
            e.size.to_string(),
            e.path.display().to_string(),
        ]);
        rows.push(row);
    }
    let last = rows[0].len() - 1;
    let mut widths = vec![0usize; rows[0].len()];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i == last {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(files.len())
}

/// What `archive cat` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CatSummary {
    pub files: usize,
    pub rows: u64,
    /// Files left out, each with the reason (header differs, unreadable).
    pub skipped: Vec<String>,
}

/// Writes every selected file as one CSV: `run_started_at,target,` + the first file's
/// header, then each file's rows. A file with another header, or one that cannot be read
/// to the end, is left out whole (nothing of it is written) and reported.
pub fn cat(root: &Path, filter: &Filter, out: &mut dyn Write) -> io::Result<CatSummary> {
    let files = select(root, filter)?;
    let with_db = any_database(&files);
    let mut w = csv::WriterBuilder::new().from_writer(out);
    let mut header: Option<csv::ByteRecord> = None;
    let mut summary = CatSummary::default();
    for e in &files {
        // Read a whole file before writing any of it, so a bad one leaves nothing behind.
        let read = (|| -> io::Result<(csv::ByteRecord, Vec<csv::ByteRecord>)> {
            let mut r = open(e)?;
            let h = r.byte_headers().map_err(csv_io)?.clone();
            let mut rows = Vec::new();
            let mut rec = csv::ByteRecord::new();
            while r.read_byte_record(&mut rec).map_err(csv_io)? {
                rows.push(rec.clone());
            }
            Ok((h, rows))
        })();
        let (h, rows) = match read {
            Ok(x) => x,
            Err(err) => {
                summary
                    .skipped
                    .push(format!("{}: cannot read: {err}", e.path.display()));
                continue;
            }
        };
        match &header {
            None => {
                let mut first = csv::ByteRecord::new();
                first.push_field(b"run_started_at");
                first.push_field(b"target");
                if with_db {
                    first.push_field(b"database");
                }
                first.extend(h.iter());
                w.write_byte_record(&first).map_err(csv_io)?;
                header = Some(h);
            }
            Some(first) if *first != h => {
                summary.skipped.push(format!(
                    "{}: header ({}) differs from the first file's ({}); the query changed?",
                    e.path.display(),
                    show(&h),
                    show(first)
                ));
                continue;
            }
            Some(_) => {}
        }
        let at = rfc3339(e.started);
        for r in rows {
            let mut rec = csv::ByteRecord::new();
            rec.push_field(at.as_bytes());
            let (target, database) = crate::discovery::split_folder(&e.target);
            rec.push_field(target.as_bytes());
            if with_db {
                rec.push_field(database.unwrap_or("").as_bytes());
            }
            rec.extend(r.iter());
            w.write_byte_record(&rec).map_err(csv_io)?;
            summary.rows += 1;
        }
        summary.files += 1;
    }
    w.flush()?;
    Ok(summary)
}

fn show(h: &csv::ByteRecord) -> String {
    h.iter()
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Archiver;
    use crate::config::Compression;
    use crate::sample::ResultSet;
    use chrono::TimeZone;
    use std::time::SystemTime;

    fn at(h: u32) -> SystemTime {
        Utc.with_ymd_and_hms(2026, 1, 10, h, 0, 0).unwrap().into()
    }

    fn rs(cols: &[&str], rows: &[&[&str]]) -> ResultSet {
        ResultSet {
            columns: cols.iter().map(|s| s.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| Some(v.to_string())).collect())
                .collect(),
        }
    }

    #[tokio::test]
    async fn cat_joins_plain_and_gzip_runs_and_reports_a_changed_header() {
        let dir = tempfile::tempdir().unwrap();
        let plain = Archiver::new(dir.path().to_path_buf());
        let gz = Archiver::new(dir.path().to_path_buf()).with_compression(Compression::Gzip);
        plain
            .write(
                "a",
                "c",
                at(1),
                &rs(&["db", "n"], &[&["x", "1"], &["y,z", "2"]]),
            )
            .await
            .unwrap();
        gz.write("b", "c", at(2), &rs(&["db", "n"], &[&["x", "3"]]))
            .await
            .unwrap();
        plain
            .write(
                "a",
                "c",
                at(3),
                &rs(&["db", "n", "extra"], &[&["x", "4", "!"]]),
            )
            .await
            .unwrap();
        plain
            .write("a", "other", at(1), &rs(&["q"], &[&["no"]]))
            .await
            .unwrap();
        // A corrupt gzip file is reported and skipped too.
        std::fs::write(
            dir.path().join("b/c/c_20260110T040000.000Z.csv.gz"),
            b"not gzip",
        )
        .unwrap();
        let filter = Filter {
            check: Some("c".into()),
            ..Filter::default()
        };
        let mut out = Vec::new();
        let s = cat(dir.path(), &filter, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "run_started_at,target,db,n\n\
             2026-01-10T01:00:00.000Z,a,x,1\n\
             2026-01-10T01:00:00.000Z,a,\"y,z\",2\n\
             2026-01-10T02:00:00.000Z,b,x,3\n"
        );
        assert_eq!((s.files, s.rows), (2, 3));
        assert_eq!(s.skipped.len(), 2, "{:?}", s.skipped);
        assert!(s.skipped[0].contains("differs from the first file's (db,n)"));
        assert!(s.skipped[1].contains("cannot read"));

        // Range and target filters: [since, until).
        let filter = Filter {
            check: Some("c".into()),
            target: Some("a".into()),
            since: Some(at(1).into()),
            until: Some(at(2).into()),
            database: None,
        };
        let mut out = Vec::new();
        let s = cat(dir.path(), &filter, &mut out).unwrap();
        assert_eq!((s.files, s.rows), (1, 2));

        let mut out = Vec::new();
        let n = list(
            dir.path(),
            &Filter {
                target: Some("b".into()),
                ..Filter::default()
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n, 2);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("run_started_at"), "{text}");
        assert!(
            lines[1].starts_with("2026-01-10T02:00:00.000Z  b       c      1     "),
            "{text}"
        );
        assert!(lines[2].contains("unreadable"), "{text}");
    }

    #[tokio::test]
    async fn per_database_folders_get_a_database_column_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archiver::new(dir.path().to_path_buf());
        a.write("main@dev", "t", at(1), &rs(&["n"], &[&["1"]]))
            .await
            .unwrap();
        a.write("main@sales", "t", at(2), &rs(&["n"], &[&["2"]]))
            .await
            .unwrap();
        a.write("other", "t", at(3), &rs(&["n"], &[&["3"]]))
            .await
            .unwrap();
        let only = |target: Option<&str>, database: Option<&str>| Filter {
            check: Some("t".into()),
            target: target.map(Into::into),
            database: database.map(Into::into),
            ..Filter::default()
        };
        let mut out = Vec::new();
        cat(dir.path(), &only(None, None), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "run_started_at,target,database,n\n\
             2026-01-10T01:00:00.000Z,main,dev,1\n\
             2026-01-10T02:00:00.000Z,main,sales,2\n\
             2026-01-10T03:00:00.000Z,other,,3\n"
        );
        let mut out = Vec::new();
        let n = list(dir.path(), &only(Some("main"), Some("sales")), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n, 1, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("run_started_at            target  database  check"),
            "{text}"
        );
        assert!(lines[1].contains("  main    sales     t "), "{text}");
        assert!(
            lines[1].ends_with("main@sales/t/t_20260110T020000.000Z.csv"),
            "{text}"
        );
        let mut out = Vec::new();
        assert_eq!(
            list(dir.path(), &only(Some("main"), None), &mut out).unwrap(),
            2
        );
    }

    #[test]
    fn times() {
        let now = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        assert_eq!(
            parse_time("2026-01-09T06:00:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 9, 5, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("2026-01-09", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 9, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("36h", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 9, 0, 0, 0).unwrap()
        );
        assert!(parse_time("yesterday", now).is_err());
    }
}
