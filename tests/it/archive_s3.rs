//! The archive's S3 upload with the real daemon against moto on 127.0.0.1 (feature `s3`): keys,
//! an outage with nothing lost, retention holding files that are not uploaded, pending files
//! uploaded after a restart, `once` uploading before it exits; and a build without the feature
//! refusing `[exporter.s3]`.

#[cfg(feature = "s3")]
use std::path::{Path, PathBuf};

#[cfg(feature = "s3")]
use crate::archive::walk;
use crate::archive_lifecycle::config;
#[cfg(feature = "s3")]
use crate::archive_lifecycle::{DELETED, names};
#[cfg(feature = "s3")]
use crate::support::moto::Moto;
use crate::support::*;

#[cfg(feature = "s3")]
const UPLOADS: &str = "redshift_exporter_archive_uploads_total";
#[cfg(feature = "s3")]
const UPLOAD_ERRORS: &str = "redshift_exporter_archive_upload_errors_total";
#[cfg(feature = "s3")]
const PENDING: &str = "redshift_exporter_archive_upload_pending";

#[cfg(feature = "s3")]
fn s3_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]
}

#[cfg(feature = "s3")]
/// The key a local archive file must have.
fn key_of(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let check = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let s = &name[check.len() + 1..];
    format!(
        "hist/main/{check}/dt={}-{}-{}/{name}",
        &s[0..4],
        &s[4..6],
        &s[6..8]
    )
}

#[cfg(feature = "s3")]
fn csv_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect()
}

#[cfg(feature = "s3")]
fn marked(p: &Path) -> bool {
    let name = p.file_name().unwrap().to_string_lossy();
    p.with_file_name(format!(".{name}.uploaded")).exists()
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_keys_outage_and_restart_lose_nothing() {
    let mut moto = Moto::start();
    moto.create_bucket("rse-archive").await;
    let db = database().await;
    let work = WorkDir::new();
    let a = work.archive();
    let s3 = format!(
        "archive_max_age = \"2s\"\narchive_retention_interval = \"1s\"\ndrain_timeout = \"2s\"\n\
         [exporter.s3]\nbucket = \"rse-archive\"\nprefix = \"hist\"\nendpoint = \"http://127.0.0.1:{}\"\n\
         allow_http = true\nretry_initial = \"200ms\"\nretry_max = \"1s\"\ntimeout = \"3s\"",
        moto.port()
    );
    let checks = check_toml("up", "SELECT 1 AS v", "values = [\"v\"]\ninterval = \"1s\"");
    let cfg = config(&work, &db, &s3, &checks);
    let labels = [("target", "main"), ("check", "up")];
    let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &[], &s3_env());
    d.wait_listening(secs(15)).await;

    // Up: files are uploaded under {prefix}/{target}/{check}/dt=YYYY-MM-DD/{file}, marked,
    // and then (older than 2 s) deleted by retention.
    d.wait_metrics("two uploads and a deletion", secs(20), |m| {
        m.get(UPLOADS, &labels).unwrap_or(0.0) >= 2.0
            && m.get(DELETED, &labels).unwrap_or(0.0) >= 1.0
    })
    .await;
    let keys = moto.keys("rse-archive").await;
    assert!(keys.len() >= 2, "{keys:?}");
    for k in &keys {
        let parts: Vec<&str> = k.split('/').collect();
        assert_eq!(&parts[..3], &["hist", "main", "up"], "{k}");
        assert!(parts[3].starts_with("dt=") && parts[3].len() == 13, "{k}");
        assert!(
            parts[4].starts_with("up_") && parts[4].ends_with(".csv"),
            "{k}"
        );
    }

    // Down: uploads fail and are counted; retention keeps every file not uploaded.
    moto.stop();
    let before = d.metrics().await.get(UPLOAD_ERRORS, &labels).unwrap_or(0.0);
    d.wait_metrics("failed uploads and files pending", secs(20), |m| {
        m.get(UPLOAD_ERRORS, &labels).unwrap_or(0.0) >= before + 2.0
            && m.get(PENDING, &labels).unwrap_or(0.0) >= 3.0
    })
    .await;
    // Retention has run meanwhile (every second, 2 s max age): nothing unmarked went.
    tokio::time::sleep(secs(3)).await;
    let waiting: Vec<PathBuf> = csv_files(&a).into_iter().filter(|p| !marked(p)).collect();
    assert!(waiting.len() >= 3, "{:?}", names(&a));
    let oldest_waiting_kept = waiting.clone();

    // Stop the daemon while S3 is down: the pending files stay, unmarked.
    d.sigterm();
    assert_eq!(
        d.wait_exit(secs(20)).await.code(),
        Some(0),
        "{}",
        d.log_text()
    );
    let pending_at_exit: Vec<PathBuf> = csv_files(&a).into_iter().filter(|p| !marked(p)).collect();
    assert!(oldest_waiting_kept.iter().all(|p| p.exists()));

    // S3 is back (moto starts empty) and the exporter restarts: everything pending from the
    // previous run is uploaded, nothing is lost.
    moto.restart();
    moto.create_bucket("rse-archive").await;
    let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &[], &s3_env());
    d.wait_listening(secs(15)).await;
    let deadline = std::time::Instant::now() + secs(30);
    loop {
        let keys = moto.keys("rse-archive").await;
        if pending_at_exit.iter().all(|p| keys.contains(&key_of(p))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pending files not uploaded after the restart: {:?} vs {keys:?}\n{}",
            pending_at_exit,
            d.log_text()
        );
        tokio::time::sleep(ms(200)).await;
    }
    d.wait_metrics("an empty queue", secs(20), |m| {
        m.get(PENDING, &labels) == Some(0.0)
    })
    .await;
    d.sigterm();
    assert_eq!(d.wait_exit(secs(20)).await.code(), Some(0));
    for p in csv_files(&a) {
        assert!(marked(&p), "{p:?} has no upload marker after recovery");
    }
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_uploads_its_files_before_it_exits() {
    let moto = Moto::start();
    moto.create_bucket("rse-once").await;
    let db = database().await;
    let work = WorkDir::new();
    let s3 = format!(
        "archive_compression = \"gzip\"\n[exporter.s3]\nbucket = \"rse-once\"\nprefix = \"hist\"\n\
         endpoint = \"http://127.0.0.1:{}\"\nallow_http = true\ntimeout = \"5s\"",
        moto.port()
    );
    let checks = check_toml("up", "SELECT 1 AS v", "values = [\"v\"]");
    let cfg = config(&work, &db, &s3, &checks);
    let env = s3_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = run_cli(
        vec![
            "once".into(),
            "--config".into(),
            cfg.to_string_lossy().into(),
        ],
        env,
        vec![],
        secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    let files: Vec<PathBuf> = walk(&work.archive())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".csv.gz"))
        .collect();
    assert_eq!(files.len(), 1, "{}", out.dump());
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let keys = moto.keys("rse-once").await;
    let s = &name["up_".len()..];
    let key = format!(
        "hist/main/up/dt={}-{}-{}/{name}",
        &s[0..4],
        &s[4..6],
        &s[6..8]
    );
    assert_eq!(keys, vec![key]);
    assert!(
        files[0]
            .with_file_name(format!(".{name}.uploaded"))
            .exists()
    );
}

/// A build without the `s3` feature refuses `[exporter.s3]` at the same validation as every
/// other key: `check-config` and start-up alike, exit 2, naming the feature.
#[cfg(not(feature = "s3"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_needs_the_s3_build() {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = config(
        &work,
        &db,
        "[exporter.s3]\nbucket = \"rse-archive\"",
        &check_toml("c", "SELECT 1 AS v", "values = [\"v\"]"),
    );
    let out = check_config(&cfg).await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
    assert!(out.stderr.contains("--features s3"), "{}", out.dump());
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
}
