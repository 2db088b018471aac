//! The daemon's archive machinery, built once at start-up and kept across configuration
//! reloads: the shared [`Archiver`] parts (gauges, upload queue), the retention task and the
//! upload worker. A reload hands each new runner an archiver that shares them and replaces
//! the retention policy; `archive_dir`, `archive` on/off, `[exporter.s3]` and
//! `archive_retention_interval` take effect at the next start.
//!
//! Owns the order of shutdown for these tasks: uploads get a grace period to empty the
//! queue, then everything stops; files left are uploaded after the next start.

use std::sync::{Arc, RwLock};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Archiver;
use super::retention::{self, Policy};
use super::stats::ArchiveStats;
use super::upload::{self, UploadError, UploadQueue};
use crate::config::Config;

/// Archive tasks of a running daemon (or of one `once` command).
pub struct Lifecycle {
    /// The archiver whose shared parts every runner's archiver reuses; `None` when
    /// archiving was off at start-up.
    base: Option<Archiver>,
    /// The upload queue, when `[exporter.s3]` was configured at start-up.
    uploads: Option<UploadQueue>,
    /// Read by the retention task at each pass; replaced on reload.
    policy: Arc<RwLock<Policy>>,
    /// Stops the retention task and the upload worker.
    stop: CancellationToken,
    /// The retention task and the upload worker, awaited at shutdown.
    tasks: Vec<JoinHandle<()>>,
}

impl Lifecycle {
    /// Starts the upload worker (queueing files an earlier run did not upload) and, when
    /// `retention` is true, the retention task (its first pass runs now).
    pub fn start(config: &Config, retention: bool) -> Result<Self, UploadError> {
        let stop = CancellationToken::new();
        let policy = Arc::new(RwLock::new(Policy::from_config(config)));
        let mut tasks = Vec::new();
        let mut uploads = None;
        let mut base = Archiver::from_config(config);
        if let (Some(a), Some(s3)) = (&base, &config.exporter.archive.s3) {
            let store = upload::client(s3)?;
            let (q, task) = upload::start(
                s3.clone(),
                store,
                a.root().to_path_buf(),
                a.stats.clone(),
                stop.clone(),
            );
            tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, pending = q.pending(), "S3 upload on");
            tasks.push(task);
            uploads = Some(q.clone());
            base = base.map(|a| a.with_uploads(q));
        }
        if let (Some(a), true) = (&base, retention) {
            tasks.push(retention::spawn(
                a.clone(),
                policy.clone(),
                config.exporter.archive.retention_interval,
                stop.clone(),
            ));
        }
        Ok(Lifecycle {
            base,
            uploads,
            policy,
            stop,
            tasks,
        })
    }

    /// The archiver for a runner of `config`: the shared one with this configuration's
    /// compression, and the retention policy updated to it.
    pub fn archiver_for(&self, config: &Config) -> Option<Archiver> {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Policy {
            require_upload: self.uploads.is_some(),
            ..Policy::from_config(config)
        };
        let wanted = config.exporter.archive_dir.as_ref()?;
        match &self.base {
            Some(b) if b.root() == wanted => Some(
                b.clone()
                    .with_compression(config.exporter.archive.compression),
            ),
            _ => {
                tracing::warn!(
                    "archive_dir or archive changed: the new setting writes files now; retention, gauges and uploads follow at the next start"
                );
                Archiver::from_config(config)
            }
        }
    }

    /// The gauges and counters, for `/metrics`.
    pub fn stats(&self) -> Option<Arc<ArchiveStats>> {
        self.base.as_ref().map(|a| a.stats.clone())
    }

    /// Whether finished files are uploaded.
    pub fn uploads_on(&self) -> bool {
        self.uploads.is_some()
    }

    /// Runs one retention pass now (for `once`).
    pub async fn enforce_now(&self) {
        if let Some(a) = self.base.clone() {
            let p = self
                .policy
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let _ =
                tokio::task::spawn_blocking(move || retention::enforce(&a, &p, chrono::Utc::now()))
                    .await;
        }
    }

    /// Gives queued uploads until `by` to finish (the tasks keep running).
    pub async fn drain_uploads(&self, by: tokio::time::Instant) {
        if let Some(q) = &self.uploads {
            let grace = by.saturating_duration_since(tokio::time::Instant::now());
            if q.pending() > 0 && !q.idle(grace).await {
                tracing::warn!(
                    pending = q.pending(),
                    "S3 uploads still pending at shutdown; they resume at the next start"
                );
            }
        }
    }

    /// Stops every task, waiting for them until `by`; a task still going then (an upload
    /// stuck in a request, a retention pass on a slow disk) is aborted.
    pub async fn shutdown(self, by: tokio::time::Instant) {
        self.stop.cancel();
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(by, t).await.is_err() {
                tracing::warn!("archive task still going at the shutdown deadline; aborted");
                abort.abort();
            }
        }
    }
}
