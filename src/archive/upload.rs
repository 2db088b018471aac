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

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, PutOptions, PutPayload,
    RetryConfig,
};
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
    Client(#[source] object_store::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("upload of {key} failed: {source}")]
    Put {
        key: String,
        #[source]
        source: object_store::Error,
    },
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

/// Builds the S3 client from `[exporter.s3]` and the AWS credential chain.
pub fn client(cfg: &S3Config) -> Result<Arc<dyn ObjectStore>, UploadError> {
    client_with(cfg, |b| b)
}

/// [`client`], with a last say on the builder (tests pass credentials this way).
fn client_with(
    cfg: &S3Config,
    adjust: impl FnOnce(AmazonS3Builder) -> AmazonS3Builder,
) -> Result<Arc<dyn ObjectStore>, UploadError> {
    // reqwest is built without a bundled TLS provider; ring is the project's (stack notes §3.8).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
    let region = cfg
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    b = b.with_region(region);
    if let Some(e) = &cfg.endpoint {
        b = b
            .with_endpoint(e)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(cfg.allow_http);
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        if let Some(c) = profile_credentials(cfg.profile.as_deref()) {
            b = b
                .with_access_key_id(c.key_id)
                .with_secret_access_key(c.secret);
            if let Some(t) = c.token {
                b = b.with_token(t);
            }
        }
    }
    // One request retries briefly; the queue's backoff handles longer outages.
    b = b
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: cfg.timeout,
        })
        .with_client_options(
            ClientOptions::new()
                .with_timeout(cfg.timeout)
                .with_connect_timeout(Duration::from_secs(10))
                .with_allow_http(cfg.allow_http),
        );
    Ok(Arc::new(adjust(b).build().map_err(UploadError::Client)?))
}

/// Static keys of a shared-credentials profile.
#[derive(Debug, PartialEq, Eq)]
struct ProfileCredentials {
    key_id: String,
    secret: String,
    token: Option<String>,
}

/// Reads `aws_access_key_id` / `aws_secret_access_key` (/ `aws_session_token`) of the
/// profile (`profile`, else `AWS_PROFILE`, else `default`) from `AWS_SHARED_CREDENTIALS_FILE`
/// (default `~/.aws/credentials`), then `AWS_CONFIG_FILE` (default `~/.aws/config`).
fn profile_credentials(profile: Option<&str>) -> Option<ProfileCredentials> {
    let name = profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let creds = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| parse_profile(&t, &name));
    creds.or_else(|| {
        let section = if name == "default" {
            name.clone()
        } else {
            format!("profile {name}")
        };
        file("AWS_CONFIG_FILE", "config")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| parse_profile(&t, &section))
    })
}

/// The keys of `[section]` in an INI-style AWS file.
fn parse_profile(text: &str, section: &str) -> Option<ProfileCredentials> {
    let mut inside = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            inside = s.trim() == section;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key_id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(ProfileCredentials {
        key_id: key_id?,
        secret: secret?,
        token,
    })
}

/// Starts the worker: queues every file under `root` that has no upload marker, then every
/// file pushed later. Stops when `stop` fires (pending files stay for the next start).
pub fn start(
    cfg: S3Config,
    store: Arc<dyn ObjectStore>,
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
    store: Arc<dyn ObjectStore>,
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
        let opts = PutOptions {
            attributes: Attributes::from_iter([(Attribute::ContentType, content_type)]),
            ..PutOptions::default()
        };
        let location = ObjectPath::from(key.as_str());
        self.store
            .put_opts(&location, PutPayload::from(body), opts)
            .await
            .map_err(|source| UploadError::Put {
                key: key.clone(),
                source,
            })?;
        if let Err(e) = tokio::fs::write(&marker, key.as_bytes()).await {
            // Not fatal: without the marker the file is uploaded again at the next start.
            tracing::warn!(path = %marker.display(), error = %e, "cannot write the upload marker");
        }
        Ok(Some(key))
    }
}

/// A moto S3 server on 127.0.0.1 for tests (`pip install 'moto[server]'`; `.ci/run` installs it).
#[cfg(test)]
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
        /// Starts moto on a free port; `None` (with the reason printed) when moto is not installed.
        pub fn start() -> Option<Moto> {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .ok()?
                .port();
            let mut m = Moto { child: None, port };
            match m.spawn() {
                Ok(()) => Some(m),
                Err(e) => {
                    eprintln!(
                        "SKIPPED: moto_server is not available ({e}); pip install 'moto[server]'"
                    );
                    None
                }
            }
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

    #[test]
    fn profiles_are_read_from_ini_files() {
        let text = "[default]\naws_access_key_id = AK1\naws_secret_access_key = S1\n\
                    [ops]\n# comment\naws_access_key_id=AK2\naws_secret_access_key=S2\naws_session_token=T2\n\
                    [broken]\naws_access_key_id = AK3\n";
        assert_eq!(
            parse_profile(text, "ops"),
            Some(ProfileCredentials {
                key_id: "AK2".into(),
                secret: "S2".into(),
                token: Some("T2".into())
            })
        );
        assert_eq!(parse_profile(text, "default").unwrap().key_id, "AK1");
        assert_eq!(parse_profile(text, "broken"), None);
        assert_eq!(parse_profile(text, "missing"), None);
    }

    async fn wait_for(what: &str, deadline: Duration, f: impl Fn() -> bool) {
        let end = tokio::time::Instant::now() + deadline;
        while !f() {
            assert!(
                tokio::time::Instant::now() < end,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_to_moto_retry_while_it_is_down_and_lose_nothing() {
        use crate::archive::Archiver;
        use crate::archive::retention::{self, Policy};
        use crate::config::Retention;
        use crate::sample::ResultSet;
        use chrono::TimeZone;
        use object_store::ObjectStoreExt;

        let Some(mut moto) = moto::Moto::start() else {
            return;
        };
        moto.create_bucket("archive-test");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let cfg = S3Config {
            bucket: "archive-test".into(),
            prefix: "rs/history".into(),
            region: Some("us-east-1".into()),
            endpoint: Some(moto.endpoint()),
            allow_http: true,
            profile: None,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_millis(800),
            timeout: Duration::from_secs(5),
        };
        let store = client_with(&cfg, |b| {
            b.with_access_key_id("testing")
                .with_secret_access_key("testing")
        })
        .unwrap();
        let at = |d: u32| -> std::time::SystemTime {
            chrono::Utc
                .with_ymd_and_hms(2026, 1, d, 6, 0, 0)
                .unwrap()
                .into()
        };
        let rs = ResultSet {
            columns: vec!["db".into(), "n".into()],
            rows: vec![vec![Some("dev".into()), Some("1".into())]],
        };
        // A file an earlier run wrote but did not upload: queued at start.
        let before = Archiver::new(root.clone());
        let earlier = before.write("main", "c", at(1), &rs).await.unwrap();

        let a = Archiver::new(root.clone());
        let stop = CancellationToken::new();
        let (q, worker) = start(
            cfg.clone(),
            store.clone(),
            root.clone(),
            a.stats.clone(),
            stop.clone(),
        );
        let a = a.with_uploads(q.clone());
        let second = a.write("main", "c", at(2), &rs).await.unwrap();
        assert!(q.idle(Duration::from_secs(30)).await, "uploads finished");
        for (path, key) in [
            (
                &earlier,
                "rs/history/main/c/dt=2026-01-01/c_20260101T060000.000Z.csv",
            ),
            (
                &second,
                "rs/history/main/c/dt=2026-01-02/c_20260102T060000.000Z.csv",
            ),
        ] {
            let meta = store.head(&ObjectPath::from(key)).await.unwrap();
            assert_eq!(meta.size, std::fs::metadata(path).unwrap().len());
            assert_eq!(
                std::fs::read_to_string(layout::upload_marker(path)).unwrap(),
                key
            );
        }
        assert_eq!(a.stats.get("main", "c").uploads, 2);

        // S3 goes away: the upload fails, is counted and retried; the file stays, and
        // retention (which would delete everything this old) keeps it.
        moto.stop();
        let third = a.write("main", "c", at(3), &rs).await.unwrap();
        wait_for("two failed attempts", Duration::from_secs(30), || {
            a.stats.get("main", "c").upload_errors >= 2
        })
        .await;
        assert_eq!(q.pending(), 1);
        assert!(!layout::upload_marker(&third).exists());
        let policy = Policy {
            global: Retention {
                max_age: Some(Duration::from_secs(3600)),
                max_bytes: None,
            },
            require_upload: true,
            ..Policy::default()
        };
        let enforce = || {
            let (a, p) = (a.clone(), policy.clone());
            tokio::task::spawn_blocking(move || retention::enforce(&a, &p, chrono::Utc::now()))
        };
        let o = enforce().await.unwrap();
        assert_eq!((o.deleted, o.held_for_upload), (2, 1));
        assert!(third.exists() && !earlier.exists() && !second.exists());

        // S3 is back (empty, as moto keeps nothing): the retry uploads the file.
        moto.restart();
        moto.create_bucket("archive-test");
        assert!(
            q.idle(Duration::from_secs(30)).await,
            "upload after recovery"
        );
        store
            .head(&ObjectPath::from(
                "rs/history/main/c/dt=2026-01-03/c_20260103T060000.000Z.csv",
            ))
            .await
            .unwrap();
        assert!(layout::upload_marker(&third).exists());
        let s = a.stats.get("main", "c");
        assert_eq!((s.uploads, s.upload_pending), (3, 0));
        // Now it may go.
        assert_eq!(enforce().await.unwrap().deleted, 1);
        stop.cancel();
        worker.await.unwrap();
    }
}
