//! Retention: deletes archive files that are too old, or that push a check's folder or the
//! whole archive over its byte cap, oldest first. The same walk refreshes the files/bytes
//! gauges.
//!
//! [`plan`] decides (pure, unit-tested); [`enforce`] walks, deletes and records; [`spawn`]
//! runs it at start-up and then on an interval, on a task of its own and on the blocking
//! pool, never on the scheduling path. When uploads are on, a file without its upload
//! marker is never deleted: it is skipped and the next oldest deletable file goes instead.
//! A failed deletion is logged and counted; it never stops the task.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Archiver;
use super::layout::{self, Entry};
use crate::config::{Config, Retention};

/// What to keep.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The whole archive: `max_age` applies to checks that are not configured (any more);
    /// `max_bytes` caps the total.
    pub global: Retention,
    /// Per configured check: its age limit and its per-target byte cap.
    pub checks: HashMap<String, Retention>,
    /// Only files with an upload marker may be deleted.
    pub require_upload: bool,
}

impl Policy {
    pub fn from_config(config: &Config) -> Self {
        Policy {
            global: config.exporter.archive.retention,
            checks: config
                .checks
                .iter()
                .map(|c| (c.name.clone(), c.archive_retention))
                .collect(),
            require_upload: config.exporter.archive.s3.is_some(),
        }
    }

    fn for_check(&self, check: &str) -> Retention {
        self.checks.get(check).copied().unwrap_or(Retention {
            max_age: self.global.max_age,
            max_bytes: None,
        })
    }
}

/// Indices (into `files`, which is oldest first) of the files to delete.
pub fn plan(files: &[Entry], now: DateTime<Utc>, policy: &Policy) -> Vec<usize> {
    let deletable = |e: &Entry| !policy.require_upload || e.uploaded;
    let mut doomed = vec![false; files.len()];
    // 1. Age.
    for (i, e) in files.iter().enumerate() {
        if let Some(max) = policy.for_check(&e.check).max_age {
            let age = now
                .signed_duration_since(e.started)
                .to_std()
                .unwrap_or_default();
            if age > max && deletable(e) {
                doomed[i] = true;
            }
        }
    }
    // 2. Each check's cap, per target folder.
    let mut folders: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, e) in files.iter().enumerate() {
        folders.entry((&e.target, &e.check)).or_default().push(i);
    }
    for ((_, check), idx) in &folders {
        if let Some(cap) = policy.for_check(check).max_bytes {
            trim(files, idx, cap, &mut doomed, &deletable);
        }
    }
    // 3. The whole archive's cap.
    if let Some(cap) = policy.global.max_bytes {
        let all: Vec<usize> = (0..files.len()).collect();
        trim(files, &all, cap, &mut doomed, &deletable);
    }
    (0..files.len()).filter(|&i| doomed[i]).collect()
}

/// Marks the oldest deletable files among `idx` (oldest first) until the rest fit in `cap`.
fn trim(
    files: &[Entry],
    idx: &[usize],
    cap: u64,
    doomed: &mut [bool],
    deletable: &dyn Fn(&Entry) -> bool,
) {
    let mut total: u64 = idx
        .iter()
        .filter(|&&i| !doomed[i])
        .map(|&i| files[i].size)
        .sum();
    for &i in idx {
        if total <= cap {
            break;
        }
        if !doomed[i] && deletable(&files[i]) {
            doomed[i] = true;
            total -= files[i].size;
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub deleted: u64,
    pub errors: u64,
    /// Files kept only because they are not uploaded yet, though the policy would delete them.
    pub held_for_upload: u64,
}

/// One pass: walk, delete, refresh the gauges. Blocking; run it on the blocking pool.
pub fn enforce(archiver: &Archiver, policy: &Policy, now: DateTime<Utc>) -> Outcome {
    enforce_with(archiver, policy, now, &remove)
}

/// [`enforce`] with the deletion injected (tests make it fail).
fn enforce_with(
    archiver: &Archiver,
    policy: &Policy,
    now: DateTime<Utc>,
    remove: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Outcome {
    let root = archiver.root();
    // Writes finish their rename and gauge update under the read side of this lock, so
    // the walk's counts and theirs never overlap.
    let _quiet = archiver.walk_lock.blocking_write();
    let scan = match layout::scan(root) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "cannot read the archive folder");
            return Outcome::default();
        }
    };
    let doomed = plan(&scan.files, now, policy);
    let mut out = Outcome::default();
    if policy.require_upload {
        let unrestricted = Policy {
            require_upload: false,
            ..policy.clone()
        };
        let would = plan(&scan.files, now, &unrestricted);
        out.held_for_upload = would.iter().filter(|&&i| !scan.files[i].uploaded).count() as u64;
    }
    let mut gone = vec![false; scan.files.len()];
    let mut per_folder: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for i in doomed {
        let e = &scan.files[i];
        let key = (e.target.clone(), e.check.clone());
        match remove(&e.path) {
            Ok(()) => {
                gone[i] = true;
                per_folder.entry(key).or_default().0 += 1;
                out.deleted += 1;
                let _ = remove(&layout::upload_marker(&e.path));
            }
            Err(err) => {
                tracing::warn!(path = %e.path.display(), error = %err, "cannot delete an archive file");
                per_folder.entry(key).or_default().1 += 1;
                out.errors += 1;
            }
        }
    }
    for m in &scan.orphan_markers {
        let _ = remove(m);
    }
    for ((t, c), (deleted, errors)) in &per_folder {
        archiver.stats.record_deletions(t, c, *deleted, *errors);
    }
    let mut present: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for (e, _) in scan.files.iter().zip(&gone).filter(|(_, g)| !**g) {
        let p = present
            .entry((e.target.clone(), e.check.clone()))
            .or_default();
        p.0 += 1;
        p.1 += e.size;
    }
    archiver.stats.set_present(&present);
    out
}

fn remove(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Runs [`enforce`] now and then every `every` until `stop` fires. The policy is read at
/// each pass, so a configuration reload can replace it.
pub fn spawn(
    archiver: Archiver,
    policy: Arc<RwLock<Policy>>,
    every: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let a = archiver.clone();
            let p = policy.read().unwrap_or_else(|e| e.into_inner()).clone();
            match tokio::task::spawn_blocking(move || enforce(&a, &p, Utc::now())).await {
                Ok(o) => {
                    if o.deleted > 0 || o.errors > 0 {
                        tracing::info!(
                            deleted = o.deleted,
                            failed = o.errors,
                            "archive retention deleted old files"
                        );
                    }
                    if o.held_for_upload > 0 {
                        tracing::warn!(
                            files = o.held_for_upload,
                            "archive retention keeps files that are not uploaded yet"
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "archive retention pass panicked"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(target: &str, check: &str, hours_ago: i64, size: u64, uploaded: bool) -> Entry {
        let started = now() - chrono::Duration::hours(hours_ago);
        let name = layout::file_name(check, started, crate::config::Compression::None);
        Entry {
            target: target.into(),
            check: check.into(),
            path: format!("{target}/{check}/{name}").into(),
            name,
            started,
            size,
            gzip: false,
            uploaded,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap()
    }

    fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
        v.sort_by_key(|e| e.started);
        v
    }

    fn hours(h: u64) -> Option<Duration> {
        Some(Duration::from_secs(h * 3600))
    }

    #[test]
    fn age_uses_the_check_override_and_the_global_default() {
        let files = sorted(vec![
            entry("t", "a", 50, 1, false),    // a keeps 100h
            entry("t", "b", 50, 1, false),    // b: global 24h
            entry("t", "gone", 30, 1, false), // not configured: global 24h
            entry("t", "b", 2, 1, false),
        ]);
        let policy = Policy {
            global: Retention {
                max_age: hours(24),
                max_bytes: None,
            },
            checks: [
                (
                    "a".to_string(),
                    Retention {
                        max_age: hours(100),
                        max_bytes: None,
                    },
                ),
                (
                    "b".to_string(),
                    Retention {
                        max_age: hours(24),
                        max_bytes: None,
                    },
                ),
            ]
            .into(),
            require_upload: false,
        };
        let d: Vec<(&str, i64)> = plan(&files, now(), &policy)
            .into_iter()
            .map(|i| {
                (
                    files[i].check.as_str(),
                    (now() - files[i].started).num_hours(),
                )
            })
            .collect();
        assert_eq!(d, vec![("b", 50), ("gone", 30)]);
    }

    #[test]
    fn byte_caps_delete_oldest_first_per_folder_then_globally() {
        let files = sorted(vec![
            entry("t1", "a", 5, 100, false),
            entry("t1", "a", 4, 100, false),
            entry("t1", "a", 3, 100, false),
            entry("t2", "a", 6, 100, false), // other target: its own folder cap
            entry("t1", "b", 7, 100, false),
            entry("t1", "b", 1, 100, false),
        ]);
        let cap_a = Retention {
            max_age: None,
            max_bytes: Some(200),
        };
        let policy = Policy {
            global: Retention {
                max_age: None,
                max_bytes: Some(300),
            },
            checks: [("a".to_string(), cap_a)].into(),
            require_upload: false,
        };
        let d: Vec<(&str, &str, i64)> = plan(&files, now(), &policy)
            .into_iter()
            .map(|i| {
                let e = &files[i];
                (
                    e.target.as_str(),
                    e.check.as_str(),
                    (now() - e.started).num_hours(),
                )
            })
            .collect();
        // a on t1 is over 200 by its oldest (5h); then the total (500) is over 300: the two
        // oldest left go (b 7h, a/t2 6h).
        assert_eq!(d, vec![("t1", "b", 7), ("t2", "a", 6), ("t1", "a", 5)]);
    }

    #[test]
    fn files_not_uploaded_are_never_deleted_when_uploads_are_on() {
        let files = sorted(vec![
            entry("t", "a", 90, 100, false),
            entry("t", "a", 80, 100, true),
            entry("t", "a", 1, 100, true),
            entry("t", "a", 0, 100, false),
        ]);
        let policy = Policy {
            global: Retention {
                max_age: hours(48),
                max_bytes: Some(150),
            },
            checks: HashMap::new(),
            require_upload: true,
        };
        let d: Vec<i64> = plan(&files, now(), &policy)
            .into_iter()
            .map(|i| (now() - files[i].started).num_hours())
            .collect();
        // 90h is too old but not uploaded: kept. Over the cap, the next oldest uploaded go.
        assert_eq!(d, vec![80, 1]);
    }

    #[test]
    fn enforce_deletes_files_and_markers_and_refreshes_gauges() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archiver::new(dir.path().to_path_buf());
        let f = dir.path().join("main/c");
        std::fs::create_dir_all(&f).unwrap();
        let old = f.join("c_20260101T000000.000Z.csv");
        let new = f.join("c_20260110T110000.000Z.csv");
        std::fs::write(&old, b"x\n1\n").unwrap();
        std::fs::write(&new, b"x\n22\n").unwrap();
        std::fs::write(layout::upload_marker(&old), b"").unwrap();
        std::fs::write(f.join(".c_20200101T000000.000Z.csv.uploaded"), b"").unwrap();
        let policy = Policy {
            global: Retention {
                max_age: hours(24),
                max_bytes: None,
            },
            ..Policy::default()
        };
        let o = enforce(&a, &policy, now());
        assert_eq!(
            o,
            Outcome {
                deleted: 1,
                errors: 0,
                held_for_upload: 0
            }
        );
        assert!(!old.exists() && new.exists());
        let left: Vec<_> = std::fs::read_dir(&f).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "markers (own and orphan) are removed too");
        let s = a.stats.get("main", "c");
        assert_eq!((s.files, s.bytes, s.deleted), (1, 5, 1));
    }

    #[test]
    fn a_failed_deletion_is_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archiver::new(dir.path().to_path_buf());
        let f = dir.path().join("main/c");
        std::fs::create_dir_all(&f).unwrap();
        let stuck = f.join("c_20260101T000000.000Z.csv");
        let other = f.join("c_20260101T010000.000Z.csv");
        std::fs::write(&stuck, b"x\n").unwrap();
        std::fs::write(&other, b"x\n").unwrap();
        let policy = Policy {
            global: Retention {
                max_age: hours(1),
                max_bytes: None,
            },
            ..Policy::default()
        };
        let failing = |p: &Path| {
            if p.ends_with("c_20260101T000000.000Z.csv") {
                Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            } else {
                remove(p)
            }
        };
        let o = enforce_with(&a, &policy, now(), &failing);
        assert_eq!((o.deleted, o.errors), (1, 1));
        assert!(stuck.exists() && !other.exists());
        let s = a.stats.get("main", "c");
        assert_eq!((s.files, s.deleted, s.delete_errors), (1, 1, 1));
        // The next pass tries again.
        assert_eq!(enforce(&a, &policy, now()).deleted, 1);
    }
}
