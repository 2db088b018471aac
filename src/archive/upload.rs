//! Upload of finished archive files to S3 (or anything S3-compatible), keyed
//! `{prefix}/{target}/{check}/dt=YYYY-MM-DD/{file}` so Redshift Spectrum, Athena or `COPY`
//! can read the history in place (`dt` is the UTC day of the run).
//!
//! Files are queued ([`UploadQueue`]) and uploaded by one worker task, never on the
//! scheduling path. A failed upload is logged, counted and retried after a delay that
//! doubles from `retry_initial` up to `retry_max`, forever: the local file stays, so nothing
//! is lost while S3 is away. Success leaves a hidden marker `.{file}.uploaded` next to the
//! file; retention deletes only marked files, and at start-up every file without a marker
//! is queued again, so the state survives restarts.
//!
//! Signing, retries of single requests and the credential chain (environment, web identity,
//! ECS task role, instance role) come from the `object_store` crate; static keys of a
//! shared-credentials profile (`~/.aws/credentials`) are read here, since object_store does
//! not. Knows nothing about CSV contents or metrics formats.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::layout;
use super::stats::ArchiveStats;
use crate::config::S3Config;

/// Why the uploader could not start, or one upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("S3 client: {0}")]
    Client(String),
    #[error(
        "[exporter.s3] is set, but this build has no S3 support: build with `cargo build --release --features s3`"
    )]
    NotBuilt,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("upload of {key} failed: {message}")]
    Put { key: String, message: String },
}

/// One file to upload.
#[derive(Debug, Clone)]
struct Job {
    target: String,
    check: String,
    path: PathBuf,
}

/// The sending side of the queue; cheap to clone.
#[derive(Clone)]
pub struct UploadQueue {
    /// To the worker. Unbounded: a job is a path, and the files themselves are the backlog.
    tx: mpsc::UnboundedSender<Job>,
    /// Per-folder pending counts and upload counters.
    stats: Arc<ArchiveStats>,
    /// Files queued and not yet uploaded (or dropped).
    pending: Arc<watch::Sender<u64>>,
}

impl UploadQueue {
    /// Queues a finished file.
    pub fn push(&self, target: &str, check: &str, path: &Path) {
        self.stats.upload_queued(target, check);
        self.pending.send_modify(|n| *n += 1);
        let job = Job {
            target: target.to_string(),
            check: check.to_string(),
            path: path.to_path_buf(),
        };
        if self.tx.send(job).is_err() {
            // The worker stopped (shutdown); the file has no marker, so the next start
            // queues it again.
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    }

    /// Files queued and not uploaded yet.
    pub fn pending(&self) -> u64 {
        *self.pending.borrow()
    }

    /// Waits until the queue is empty, at most `deadline`; true if it emptied.
    pub async fn idle(&self, deadline: Duration) -> bool {
        let mut rx = self.pending.subscribe();
        tokio::time::timeout(deadline, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The object key of an archive file.
pub fn object_key(prefix: &str, target: &str, check: &str, file: &str) -> Option<String> {
    let parsed = layout::parse_file_name(file)?;
    let day = parsed.started.format("%Y-%m-%d");
    let key = format!("{target}/{check}/dt={day}/{file}");
    Some(if prefix.is_empty() {
        key
    } else {
        format!("{prefix}/{key}")
    })
}

/// Where uploaded files go: the S3 client (module `s3`, cargo feature `s3`), behind a seam so
/// the queue, markers and retries do not depend on the optional S3 crates.
pub trait Store: Send + Sync {
    /// Stores `body` under `key`; the error is the client's message.
    fn put<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Builds the S3 client from `[exporter.s3]` and the AWS credential chain; a build without
/// the `s3` feature refuses.
pub fn client(cfg: &S3Config) -> Result<Arc<dyn Store>, UploadError> {
    #[cfg(feature = "s3")]
    {
        super::s3::client(cfg)
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = cfg;
        Err(UploadError::NotBuilt)
    }
}

/// Starts the worker: queues every file under `root` that has no upload marker, then every
/// file pushed later. Stops when `stop` fires (pending files stay for the next start).
pub fn start(
    cfg: S3Config,
    store: Arc<dyn Store>,
    root: PathBuf,
    stats: Arc<ArchiveStats>,
    stop: CancellationToken,
) -> (UploadQueue, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = UploadQueue {
        tx,
        stats: stats.clone(),
        pending: Arc::new(watch::Sender::new(0)),
    };
    // Files an earlier run did not upload, oldest first. Scanned synchronously so they are
    // queued before any new file; a file both scanned and pushed is uploaded once (the
    // worker checks the marker).
    match layout::scan(&root) {
        Ok(s) => {
            let pending: Vec<_> = s.files.into_iter().filter(|e| !e.uploaded).collect();
            if !pending.is_empty() {
                tracing::info!(
                    files = pending.len(),
                    "queueing archive files not uploaded yet"
                );
            }
            for e in pending {
                queue.push(&e.target, &e.check, &e.path);
            }
        }
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "cannot scan the archive for pending uploads")
        }
    }
    let worker = Worker {
        cfg,
        store,
        stats,
        pending: queue.pending.clone(),
    };
    let handle = tokio::spawn(worker.run(rx, stop));
    (queue, handle)
}

struct Worker {
    /// Bucket, prefix and backoff.
    cfg: S3Config,
    store: Arc<dyn Store>,
    stats: Arc<ArchiveStats>,
    /// Shared with the queue: decremented when a job leaves it.
    pending: Arc<watch::Sender<u64>>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Job>, stop: CancellationToken) {
        loop {
            let job = tokio::select! {
                j = rx.recv() => match j { Some(j) => j, None => break },
                _ = stop.cancelled() => break,
            };
            let mut delay = self.cfg.retry_initial;
            loop {
                match self.upload(&job).await {
                    Ok(Some(key)) => {
                        tracing::debug!(target = %job.target, check = %job.check, %key, "uploaded to S3");
                        self.stats
                            .upload_attempt(&job.target, &job.check, true, true);
                        break;
                    }
                    Ok(None) => {
                        // Already uploaded, or deleted meanwhile: nothing to do.
                        self.stats.upload_dropped(&job.target, &job.check);
                        break;
                    }
                    Err(e) => {
                        self.stats
                            .upload_attempt(&job.target, &job.check, false, false);
                        tracing::warn!(target = %job.target, check = %job.check, error = %e,
                            retry_in = %humantime::format_duration(delay), "S3 upload failed; will retry");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.cancelled() => return,
                        }
                        delay = (delay * 2).min(self.cfg.retry_max);
                    }
                }
            }
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    }

    /// Uploads one file and writes its marker; `Ok(None)` when there is nothing to do.
    async fn upload(&self, job: &Job) -> Result<Option<String>, UploadError> {
        let marker = layout::upload_marker(&job.path);
        if tokio::fs::try_exists(&marker).await.unwrap_or(false) {
            return Ok(None);
        }
        let name = job
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(key) = object_key(&self.cfg.prefix, &job.target, &job.check, &name) else {
            return Ok(None);
        };
        let body = match tokio::fs::read(&job.path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(UploadError::Read {
                    path: job.path.clone(),
                    source,
                });
            }
        };
        let content_type = if name.ends_with(".gz") {
            "application/gzip"
        } else {
            "text/csv"
        };
        self.store
            .put(&key, body, content_type)
            .await
            .map_err(|message| UploadError::Put {
                key: key.clone(),
                message,
            })?;
        if let Err(e) = tokio::fs::write(&marker, key.as_bytes()).await {
            // Not fatal: without the marker the file is uploaded again at the next start.
            tracing::warn!(path = %marker.display(), error = %e, "cannot write the upload marker");
        }
        Ok(Some(key))
    }
}

/// A moto S3 server on 127.0.0.1 for tests (`pip install 'moto[server]'`; `.ci/run` installs it).
#[cfg(all(test, feature = "s3"))]
pub(crate) mod moto {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Moto {
        child: Option<Child>,
        pub port: u16,
    }

    impl Moto {
        /// Starts moto on a free port. Panics when moto is not installed: the S3 tests must
        /// fail, not pass silently (`.ci/run` installs it).
        pub fn start() -> Moto {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut m = Moto { child: None, port };
            if let Err(e) = m.spawn() {
                panic!("moto_server is not available ({e}); pip install 'moto[server]'");
            }
            m
        }

        fn spawn(&mut self) -> Result<(), String> {
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot run moto_server: {e}"))?;
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err("moto_server did not listen within 30s".into())
        }

        pub fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// Stops the server (its in-memory buckets are gone).
        pub fn stop(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        /// Starts it again on the same port.
        pub fn restart(&mut self) {
            self.stop();
            self.spawn().expect("moto restarts");
        }

        /// Creates a bucket (moto takes unsigned requests).
        pub fn create_bucket(&self, name: &str) {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("moto is up");
            write!(
                s,
                "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            )
            .unwrap();
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            assert!(
                resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
                "{resp}"
            );
        }
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_hive_layout() {
        assert_eq!(
            object_key("exp/rs", "main", "c", "c_20251127T002405.123Z.csv.gz").as_deref(),
            Some("exp/rs/main/c/dt=2025-11-27/c_20251127T002405.123Z.csv.gz")
        );
        assert_eq!(
            object_key("", "main", "c", "c_20251127T002405.123Z.csv").as_deref(),
            Some("main/c/dt=2025-11-27/c_20251127T002405.123Z.csv")
        );
        assert_eq!(object_key("", "main", "c", "notes.txt"), None);
    }
}
