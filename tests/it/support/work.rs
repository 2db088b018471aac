//! The per-test work folder: a temporary directory under `/tmp` holding the test's config files
//! and CSV archive, removed when the [`WorkDir`] drops.
//!
//! Owns only the folder and writing files into it; the config text itself comes from
//! [`super::config`], and nothing here starts processes.

use std::path::{Path, PathBuf};

/// A temporary directory holding a test's config file and CSV archive.
pub struct WorkDir {
    /// Under `/tmp` rather than `$TMPDIR`: the daemon and `postgres` (run as another OS user
    /// when the tests run as root) must be able to reach files in it.
    dir: tempfile::TempDir,
}

impl Default for WorkDir {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkDir {
    pub fn new() -> WorkDir {
        WorkDir {
            dir: tempfile::Builder::new()
                .prefix("rse-it-")
                .tempdir_in("/tmp")
                .expect("cannot create a work dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default archive directory (`<work>/archive`; not created).
    pub fn archive(&self) -> PathBuf {
        self.path().join("archive")
    }

    /// Writes `text` to `<work>/<name>` and returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("cannot write config");
        path
    }
}
