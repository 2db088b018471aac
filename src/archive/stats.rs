//! Numbers about the archive per (target, check) folder: files and bytes present, deletions,
//! uploads. Retention's walk sets the present counts, each write adds to them; counters only
//! grow. The exposition reads a copy per scrape.
//!
//! Knows nothing about Prometheus or files; it is a map behind a mutex.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One folder's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderStats {
    /// Final files present (gauge).
    pub files: u64,
    /// Their total size (gauge).
    pub bytes: u64,
    /// Files deleted by retention (counter).
    pub deleted: u64,
    /// Deletions that failed (counter).
    pub delete_errors: u64,
    /// Files uploaded (counter).
    pub uploads: u64,
    /// Upload attempts that failed (counter).
    pub upload_errors: u64,
    /// Files waiting for their upload (gauge).
    pub upload_pending: u64,
}

/// (target, check) → numbers.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    inner: Mutex<BTreeMap<(String, String), FolderStats>>,
}

impl ArchiveStats {
    fn with(&self, target: &str, check: &str, f: impl FnOnce(&mut FolderStats)) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry((target.to_string(), check.to_string()))
            .or_default());
    }

    /// Replaces every folder's files and bytes with a walk's result (folders not in it: 0).
    pub fn set_present(&self, present: &BTreeMap<(String, String), (u64, u64)>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for v in m.values_mut() {
            v.files = 0;
            v.bytes = 0;
        }
        for (k, (files, bytes)) in present {
            let e = m.entry(k.clone()).or_default();
            e.files = *files;
            e.bytes = *bytes;
        }
    }

    /// A file was written.
    pub fn add_file(&self, target: &str, check: &str, bytes: u64) {
        self.with(target, check, |s| {
            s.files += 1;
            s.bytes += bytes;
        });
    }

    /// Retention deleted files (`deleted`) or failed to (`errors`).
    pub fn record_deletions(&self, target: &str, check: &str, deleted: u64, errors: u64) {
        self.with(target, check, |s| {
            s.deleted += deleted;
            s.delete_errors += errors;
        });
    }

    /// A file joined the upload queue.
    pub fn upload_queued(&self, target: &str, check: &str) {
        self.with(target, check, |s| s.upload_pending += 1);
    }

    /// An upload attempt ended; `done` when the file left the queue (uploaded or gone).
    pub fn upload_attempt(&self, target: &str, check: &str, ok: bool, done: bool) {
        self.with(target, check, |s| {
            if ok {
                s.uploads += 1;
            } else {
                s.upload_errors += 1;
            }
            if done {
                s.upload_pending = s.upload_pending.saturating_sub(1);
            }
        });
    }

    /// A queued file needed no upload after all (already marked, or deleted meanwhile).
    pub fn upload_dropped(&self, target: &str, check: &str) {
        self.with(target, check, |s| {
            s.upload_pending = s.upload_pending.saturating_sub(1)
        });
    }

    /// A copy, sorted by target and check.
    pub fn snapshot(&self) -> Vec<((String, String), FolderStats)> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// One folder's numbers (tests, `once`).
    pub fn get(&self, target: &str, check: &str) -> FolderStats {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(target.to_string(), check.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}
