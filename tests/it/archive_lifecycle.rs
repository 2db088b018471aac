//! The archive lifecycle with the real daemon: retention at start-up and on its interval (age,
//! per-check overrides, byte caps) with the files/bytes/deleted metrics, gzip output,
//! `archive list` / `archive cat` on plain and compressed files, the landing page link, HTTP
//! serving (off by default; on behind the same basic auth as /metrics; no traversal). The S3
//! upload is tested in `archive_s3`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::archive::walk;
use crate::support::*;

const FILES: &str = "redshift_exporter_archive_stored_files";
const BYTES: &str = "redshift_exporter_archive_bytes";
pub(crate) const DELETED: &str = "redshift_exporter_archive_deleted_total";

pub(crate) fn config(work: &WorkDir, db: &TestDb, exporter_extra: &str, checks: &str) -> PathBuf {
    let text = format!(
        "{}\n{}\n{checks}",
        exporter_toml(&work.archive(), exporter_extra),
        db.target_toml("main", "")
    );
    work.write("checks.toml", &text)
}

/// Writes `{archive}/{target}/{check}/{check}_{stamp}.csv` with `body`.
fn plant(archive: &Path, target: &str, check: &str, stamp: &str, body: &str) -> PathBuf {
    let dir = archive.join(target).join(check);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{check}_{stamp}.csv"));
    std::fs::write(&p, body).unwrap();
    p
}

/// A UTC stamp `minutes` ago, in the archive's file name format.
fn stamp_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
}

#[cfg(feature = "s3")]
pub(crate) fn names(dir: &Path) -> Vec<String> {
    walk(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_by_age_and_size_at_start_up_and_reports_gauges() {
    let db = database().await;
    let work = WorkDir::new();
    let a = work.archive();
    // Too old for the 1-day default; "keep" overrides the age away; "capped" has 5 recent
    // files of 100 bytes under a 250-byte cap; "gone" is no longer configured.
    let old_aged = plant(&a, "main", "aged", "20200101T000000.000Z", "v\n1\n");
    let old_keep = plant(&a, "main", "keep", "20200101T000000.000Z", "v\n1\n");
    let old_gone = plant(&a, "main", "gone", "20200101T000000.000Z", "v\n1\n");
    let hundred = format!("v\n{}\n", "x".repeat(96));
    let capped: Vec<PathBuf> = (0..5)
        .map(|i| plant(&a, "main", "capped", &stamp_ago(50 - i), &hundred))
        .collect();
    let checks = check_toml(
        "aged",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"1h\"",
    ) + &check_toml(
        "keep",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"1h\"\narchive_max_age = \"none\"",
    ) + &check_toml(
        "capped",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"1h\"\narchive_max_bytes = 250",
    );
    let cfg = config(
        &work,
        &db,
        "archive_max_age = \"1d\"\narchive_retention_interval = \"1s\"",
        &checks,
    );
    let d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("retention deletions", secs(15), |m| {
            let del = |c: &str| m.get(DELETED, &[("target", "main"), ("check", c)]);
            del("aged") == Some(1.0)
                && del("gone") == Some(1.0)
                && del("capped") == Some(3.0)
                && m.get(FILES, &[("target", "main"), ("check", "capped")]) == Some(3.0)
                && m.get(FILES, &[("target", "main"), ("check", "aged")]) == Some(1.0)
                && m.get(FILES, &[("target", "main"), ("check", "keep")]) == Some(2.0)
        })
        .await;
    assert!(
        !old_aged.exists() && !old_gone.exists(),
        "old files deleted"
    );
    assert!(
        old_keep.exists(),
        "archive_max_age = \"none\" keeps the file"
    );
    assert!(
        capped[..3].iter().all(|p| !p.exists()) && capped[3..].iter().all(|p| p.exists()),
        "the three oldest capped files go first"
    );
    // Gauges agree with the disk.
    for check in ["aged", "keep", "capped"] {
        let files = walk(&a.join("main").join(check));
        let bytes: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        let labels = [("target", "main"), ("check", check)];
        assert_eq!(
            m.get(FILES, &labels),
            Some(files.len() as f64),
            "{check}: {}",
            m.lines_with(FILES)
        );
        assert_eq!(m.get(BYTES, &labels), Some(bytes as f64), "{check}");
    }
    assert_eq!(
        m.get(DELETED, &[("target", "main"), ("check", "keep")]),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_archive_and_the_list_and_cat_commands() {
    let db = database().await;
    let work = WorkDir::new();
    let a = work.archive();
    // Written before compression was switched on: same header, plain.
    let plain = plant(
        &a,
        "main",
        "sess",
        "20260101T000000.000Z",
        "db,n\nolder,7\n",
    );
    let checks = check_toml(
        "sess",
        "SELECT 'dev' || g AS db, g AS n FROM generate_series(1, 3) g",
        "labels = [\"db\"]\nvalues = [\"n\"]\ninterval = \"1h\"",
    );
    let cfg = config(
        &work,
        &db,
        "archive_compression = \"gzip\"\narchive_max_age = \"none\"",
        &checks,
    );
    let mut d = Daemon::start(&cfg).await;
    d.wait_metrics("a gzip file", secs(10), |m| {
        m.get(FILES, &[("target", "main"), ("check", "sess")]) == Some(2.0)
    })
    .await;
    d.sigterm();
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(0));
    let gz: Vec<PathBuf> = walk(&a)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".csv.gz"))
        .collect();
    assert_eq!(gz.len(), 1, "{:?}", walk(&a));
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz[0]).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "db,n\ndev1,1\ndev2,2\ndev3,3\n");
    let gz_name = gz[0].file_name().unwrap().to_string_lossy().into_owned();
    let run_time = {
        let s = &gz_name["sess_".len().."sess_".len() + 19];
        format!(
            "{}-{}-{}T{}:{}:{}Z",
            &s[0..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13],
            &s[13..19]
        )
    };

    let cli = |args: &[&str]| {
        let mut v: Vec<String> = vec!["archive".into()];
        v.extend(args.iter().map(|s| s.to_string()));
        run_cli(v, vec![], vec![], secs(30))
    };
    let cfg_s = cfg.to_string_lossy().into_owned();
    let list = cli(&["list", "--config", &cfg_s]).await;
    assert_eq!(list.code, Some(0), "{}", list.dump());
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", list.dump());
    assert!(lines[0].starts_with("run_started_at"), "{}", list.dump());
    let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        cols(lines[1]),
        vec![
            "2026-01-01T00:00:00.000Z".to_string(),
            "main".into(),
            "sess".into(),
            "1".into(),
            std::fs::metadata(&plain).unwrap().len().to_string(),
            plain.to_string_lossy().into_owned(),
        ]
    );
    let second = cols(lines[2]);
    assert_eq!(second[0], run_time);
    assert_eq!(second[3], "3", "rows of the gzip file");
    assert_eq!(
        second[4],
        std::fs::metadata(&gz[0]).unwrap().len().to_string()
    );
    let since = cli(&["list", "--config", &cfg_s, "--since", "2026-01-02"]).await;
    assert_eq!(since.stdout.lines().count(), 2, "{}", since.dump());

    let cat = cli(&[
        "cat",
        "--archive-dir",
        &a.to_string_lossy(),
        "--check",
        "sess",
    ])
    .await;
    assert_eq!(cat.code, Some(0), "{}", cat.dump());
    assert_eq!(
        cat.stdout,
        format!(
            "run_started_at,target,db,n\n2026-01-01T00:00:00.000Z,main,older,7\n\
             {run_time},main,dev1,1\n{run_time},main,dev2,2\n{run_time},main,dev3,3\n"
        )
    );
    // A changed query: reported, left out, exit 1.
    plant(
        &a,
        "main",
        "sess",
        "20260102T000000.000Z",
        "db,n,extra\nx,1,2\n",
    );
    let cat = cli(&[
        "cat", "--config", &cfg_s, "--check", "sess", "--until", &run_time,
    ])
    .await;
    assert_eq!(cat.code, Some(1), "{}", cat.dump());
    assert_eq!(
        cat.stdout,
        "run_started_at,target,db,n\n2026-01-01T00:00:00.000Z,main,older,7\n"
    );
    assert!(
        cat.stderr
            .contains("sess_20260102T000000.000Z.csv: header (db,n,extra) differs"),
        "{}",
        cat.dump()
    );
}

/// GET with optional basic-auth credentials; (status, body).
async fn get_as(addr: SocketAddr, path: &str, user_pass: Option<&str>) -> (u16, String) {
    let r = http::get_as(addr, path, user_pass)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (r.status, r.body)
}

/// The check page's link to its latest CSV (relative to `/checks/{check}/{target}`), as a
/// root-relative path, if any.
fn last_csv_href(page: &str) -> Option<String> {
    let at = page.find("<a href=\"../../archive/")? + "<a href=\"../..".len();
    Some(page[at..].split('"').next()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_files_are_served_only_when_enabled_and_behind_auth() {
    let db = database().await;
    let checks = check_toml(
        "srv",
        "SELECT 5 AS v",
        "values = [\"v\"]\ninterval = \"1h\"",
    );

    // Off by default: no link, no route.
    let work = WorkDir::new();
    let cfg = config(&work, &db, "", &checks);
    let d = Daemon::start(&cfg).await;
    d.wait_metrics("a file", secs(10), |m| {
        m.get(FILES, &[("target", "main"), ("check", "srv")]) == Some(1.0)
    })
    .await;
    let file = walk(&work.archive()).pop().unwrap();
    let rel = format!(
        "/archive/main/srv/{}",
        file.file_name().unwrap().to_string_lossy()
    );
    let deadline = std::time::Instant::now() + secs(10);
    let page = loop {
        let page = d.get("/checks/srv/main").await.body;
        if page.contains("srv_20") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(ms(100)).await;
    };
    assert_eq!(last_csv_href(&page), None, "no link while serving is off");
    assert!(
        !page.contains(&work.archive().display().to_string()),
        "no host path on the page: {page}"
    );
    assert_eq!(d.get(&rel).await.status, 404);
    drop(d);

    // On, with basic auth from --web.config.file: the same auth as /metrics.
    let work = WorkDir::new();
    let cfg = config(&work, &db, "archive_serve = true", &checks);
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = work.write(
        "web.yml",
        &format!("basic_auth_users:\n  scraper: '{hash}'\n"),
    );
    let mut d = Daemon::spawn(
        &cfg,
        "127.0.0.1:0",
        &["--web.config.file", &web.to_string_lossy()],
        &[],
    );
    let addr = d.wait_listening(secs(15)).await;
    let creds = Some("scraper:s3cret");
    let deadline = std::time::Instant::now() + secs(10);
    let href = loop {
        let (status, page) = get_as(addr, "/checks/srv/main", creds).await;
        assert_eq!(status, 200);
        if let Some(h) = last_csv_href(&page) {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "no link: {page}");
        tokio::time::sleep(ms(100)).await;
    };
    let file = walk(&work.archive()).pop().unwrap();
    assert_eq!(
        href,
        format!(
            "/archive/main/srv/{}",
            file.file_name().unwrap().to_string_lossy()
        )
    );
    let (status, body) = get_as(addr, &href, creds).await;
    assert_eq!((status, body.as_str()), (200, "v\n5\n"));
    assert_eq!(get_as(addr, &href, None).await.0, 401, "no credentials");
    for page in ["/", "/checks/srv/main"] {
        assert_eq!(
            get_as(addr, page, None).await.0,
            401,
            "{page} without credentials"
        );
    }
    assert_eq!(get_as(addr, &href, Some("scraper:wrong")).await.0, 401);
    assert_eq!(
        get_as(addr, "/metrics", None).await.0,
        401,
        "same as /metrics"
    );
    for bad in [
        "/archive/main/srv/..%2F..%2F..%2Fchecks.toml",
        "/archive/../checks.toml",
        "/archive/main/../../checks.toml",
        "/archive/main/srv/../../../web.yml",
        "/archive/main/srv/",
    ] {
        let (status, body) = get_as(addr, bad, creds).await;
        assert_eq!(status, 404, "{bad}: {body}");
        assert!(!body.contains("basic_auth_users") && !body.contains("[targets"));
    }
}
