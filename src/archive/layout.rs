//! Names and places of archive files: `{root}/{target}/{check}/{check}_{YYYYMMDDTHHMMSS.mmmZ}.csv`
//! (or `.csv.gz`; `{target}` is `{target}@{database}` for a per-database check), the hidden `.{file}.tmp` a write goes through and the hidden
//! `.{file}.uploaded` marker an upload leaves behind. [`scan`] walks the tree and returns
//! every final file with its run time, size and upload state.
//!
//! Owns the naming rules, so retention, uploads, `archive list`/`cat` and HTTP serving agree
//! on what a valid archive file is. Parsing is strict: anything that does not match the
//! layout exactly (hidden files, temporaries, stray files, odd folder names) is ignored,
//! which is also what keeps path traversal out of the HTTP route.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::config::{Compression, is_check_name, is_database_name, is_identifier};

/// The time format inside file names (UTC, millisecond precision).
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// A parsed archive file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub check: String,
    /// Start of the run, UTC.
    pub started: DateTime<Utc>,
    /// `.csv.gz` rather than `.csv`.
    pub gzip: bool,
}

/// The file name of a run of `check` that started at `started`.
pub fn file_name(check: &str, started: DateTime<Utc>, compression: Compression) -> String {
    let ext = match compression {
        Compression::None => "csv",
        Compression::Gzip => "csv.gz",
    };
    format!("{check}_{}.{ext}", started.format(TIME_FORMAT))
}

/// Parses `{check}_{YYYYMMDDTHHMMSS.mmmZ}.csv[.gz]`; `None` for anything else.
pub fn parse_file_name(name: &str) -> Option<FileName> {
    let (stem, gzip) = match name.strip_suffix(".csv.gz") {
        Some(s) => (s, true),
        None => (name.strip_suffix(".csv")?, false),
    };
    let (check, ts) = stem.rsplit_once('_')?;
    // Exactly 8 digits, T, 6 digits, '.', 3 digits, Z: chrono alone would accept variations.
    let b = ts.as_bytes();
    let shape = b.len() == 20
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'.'
        && b[16..19].iter().all(u8::is_ascii_digit)
        && b[19] == b'Z';
    if !shape || !is_check_name(check) {
        return None;
    }
    let started = NaiveDateTime::parse_from_str(ts, TIME_FORMAT)
        .ok()?
        .and_utc();
    Some(FileName {
        check: check.to_string(),
        started,
        gzip,
    })
}

/// The hidden marker that says `file` was uploaded.
pub fn upload_marker(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.uploaded"))
}

/// True for a target folder's name: `{target}` or, for a per-database check,
/// `{target}@{database}` (neither part can contain `@`, `/` or `.`).
pub fn is_folder_name(folder: &str) -> bool {
    let (target, database) = crate::discovery::split_folder(folder);
    is_identifier(target) && database.is_none_or(is_database_name)
}

/// True for `{target}/{check}/{file}` triples that name a valid archive file of that check
/// (`target` may be `{target}@{database}`).
pub fn valid_relative(target: &str, check: &str, file: &str) -> bool {
    is_folder_name(target)
        && is_check_name(check)
        && parse_file_name(file).is_some_and(|f| f.check == check)
}

/// One final archive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub target: String,
    pub check: String,
    pub path: PathBuf,
    /// The file name (last path component).
    pub name: String,
    pub started: DateTime<Utc>,
    pub size: u64,
    pub gzip: bool,
    /// Its upload marker exists.
    pub uploaded: bool,
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every final file, oldest first (ties broken by target, check).
    pub files: Vec<Entry>,
    /// Upload markers whose file is gone (left by a deletion that failed half-way).
    pub orphan_markers: Vec<PathBuf>,
}

/// Walks `{root}/{target}/{check}/`. A missing root is an empty archive.
pub fn scan(root: &Path) -> io::Result<Scan> {
    let mut out = Scan::default();
    let targets = match std::fs::read_dir(root) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for t in targets.flatten() {
        let target = t.file_name().to_string_lossy().into_owned();
        if !is_folder_name(&target) || !t.file_type().is_ok_and(|ft| ft.is_dir()) {
            continue;
        }
        let Ok(checks) = std::fs::read_dir(t.path()) else {
            continue;
        };
        for c in checks.flatten() {
            let check = c.file_name().to_string_lossy().into_owned();
            if !is_check_name(&check) || !c.file_type().is_ok_and(|ft| ft.is_dir()) {
                continue;
            }
            scan_folder(&target, &check, &c.path(), &mut out);
        }
    }
    out.files
        .sort_by(|a, b| (a.started, &a.target, &a.check).cmp(&(b.started, &b.target, &b.check)));
    Ok(out)
}

fn scan_folder(target: &str, check: &str, dir: &Path, out: &mut Scan) {
    let Ok(files) = std::fs::read_dir(dir) else {
        return;
    };
    let mut markers = HashSet::new();
    let mut found = Vec::new();
    for f in files.flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if let Some(of) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".uploaded"))
        {
            markers.insert(of.to_string());
            continue;
        }
        let Some(parsed) = parse_file_name(&name).filter(|p| p.check == check) else {
            continue;
        };
        let Ok(meta) = f.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        found.push(Entry {
            target: target.to_string(),
            check: check.to_string(),
            path: f.path(),
            name,
            started: parsed.started,
            size: meta.len(),
            gzip: parsed.gzip,
            uploaded: false,
        });
    }
    for e in &mut found {
        e.uploaded = markers.remove(&e.name);
    }
    out.orphan_markers.extend(
        markers
            .into_iter()
            .map(|m| dir.join(format!(".{m}.uploaded"))),
    );
    out.files.extend(found);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_round_trip_and_parsing_is_strict() {
        let t = Utc.timestamp_millis_opt(1_764_203_045_123).unwrap();
        let n = file_name("long_queries", t, Compression::Gzip);
        assert_eq!(n, "long_queries_20251127T002405.123Z.csv.gz");
        let p = parse_file_name(&n).unwrap();
        assert_eq!(
            (p.check.as_str(), p.started, p.gzip),
            ("long_queries", t, true)
        );
        assert!(
            !parse_file_name(&file_name("c", t, Compression::None))
                .unwrap()
                .gzip
        );
        for bad in [
            ".c_20251127T002405.123Z.csv.tmp",
            "c_20251127T002405.123Z.csv.tmp",
            "c_20251127T002405Z.csv",
            "c_2025112XT002405.123Z.csv",
            "C_20251127T002405.123Z.csv",
            "../c_20251127T002405.123Z.csv",
            "c_20251327T002405.123Z.csv",
            "_20251127T002405.123Z.csv",
            "c_20251127T002405.123Z.csv.gz.gz",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
        assert!(valid_relative("main", "c", "c_20251127T002405.123Z.csv"));
        assert!(!valid_relative("main", "d", "c_20251127T002405.123Z.csv"));
        assert!(!valid_relative("..", "c", "c_20251127T002405.123Z.csv"));
        assert!(!valid_relative("main", "..", "c_20251127T002405.123Z.csv"));
    }

    #[test]
    fn scan_finds_final_files_with_markers_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("main/c");
        std::fs::create_dir_all(&f).unwrap();
        std::fs::create_dir_all(dir.path().join("Bad/c")).unwrap();
        std::fs::write(dir.path().join("Bad/c/c_20250101T000000.000Z.csv"), b"x\n").unwrap();
        std::fs::write(f.join("c_20250102T000000.000Z.csv"), b"x\n1\n").unwrap();
        std::fs::write(f.join("c_20250101T000000.000Z.csv.gz"), b"gz").unwrap();
        std::fs::write(f.join(".c_20250102T000000.000Z.csv.uploaded"), b"").unwrap();
        std::fs::write(f.join(".c_20240101T000000.000Z.csv.uploaded"), b"").unwrap();
        std::fs::write(f.join(".c_20250103T000000.000Z.csv.tmp"), b"partial").unwrap();
        std::fs::write(f.join("notes.txt"), b"hello").unwrap();
        std::fs::write(f.join("d_20250103T000000.000Z.csv"), b"other check").unwrap();
        let s = scan(dir.path()).unwrap();
        let names: Vec<(&str, u64, bool, bool)> = s
            .files
            .iter()
            .map(|e| (e.name.as_str(), e.size, e.gzip, e.uploaded))
            .collect();
        assert_eq!(
            names,
            vec![
                ("c_20250101T000000.000Z.csv.gz", 2, true, false),
                ("c_20250102T000000.000Z.csv", 4, false, true),
            ]
        );
        assert_eq!(
            s.orphan_markers,
            vec![f.join(".c_20240101T000000.000Z.csv.uploaded")]
        );
        assert!(scan(&dir.path().join("missing")).unwrap().files.is_empty());
    }
}
