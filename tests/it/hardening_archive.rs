//! Hardening, archive faults: an archive folder that is unwritable, disappears or is full
//! (RLIMIT_FSIZE), crash leftovers, and SIGKILL during a large CSV write. Every test runs the real
//! daemon against a real PostgreSQL and asserts that nothing was lost, nothing crashed, and the
//! failure is visible in metrics and logs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::archive::{parse_archive_name, parse_csv, walk};
use crate::support::names::*;
use crate::support::*;

/// Sets RLIMIT_FSIZE of a running process (as root this may raise it again).
fn set_fsize(pid: i32, bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child with a valid rlimit struct.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit failed: {}", std::io::Error::last_os_error());
}

/// Hidden or `.tmp` files below `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with('.') || n.ends_with(".tmp")
        })
        .collect()
}

/// Every file under a final name parses as CSV with `rows` data rows.
fn assert_complete(dir: &Path, check: &str, rows: usize) -> usize {
    let files: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| !temporaries(dir).contains(p))
        .collect();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            parse_archive_name(&name, check).is_some(),
            "unexpected file {f:?}"
        );
        let text = std::fs::read_to_string(f).unwrap();
        let records = parse_csv(&text).unwrap_or_else(|e| panic!("{f:?} is not CSV: {e}"));
        assert_eq!(records.len(), rows + 1, "{f:?} is partial");
    }
    files.len()
}

fn count_lines(d: &Daemon, message_prefix: &str) -> usize {
    d.logs()
        .iter()
        .filter(|l| l.message().is_some_and(|m| m.starts_with(message_prefix)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_archive_is_counted_logged_once_per_episode_and_recovers() {
    const ROWS: usize = 400; // ~20 KB per file
    let checks = check_toml(
        "big",
        &format!("SELECT g AS id, md5(g::text) AS h, 1 AS v FROM generate_series(1, {ROWS}) g"),
        "labels = [\"id\"]\nvalues = [\"v\"]\ninterval = \"1s\"",
    );
    let (_db, work, mut d) = start_with_checks(&checks).await;
    let m = d
        .wait_metrics("a first CSV", secs(10), |m| {
            m.check_value(ARCHIVE_FILES, "big").unwrap_or(0.0) >= 1.0
        })
        .await;
    let files0 = m.check_value(ARCHIVE_FILES, "big").unwrap();

    for episode in 1..=2 {
        // "Disk full": no file may grow past 4 KB.
        set_fsize(d.pid(), 4096);
        let m = d
            .wait_metrics(
                &format!("episode {episode}: three archive errors"),
                secs(10),
                |m| m.check_value(ARCHIVE_ERRORS, "big").unwrap_or(0.0) >= 3.0 * episode as f64,
            )
            .await;
        assert_eq!(m.check_value(SUCCESS, "big"), Some(1.0), "runs carry on");
        assert_eq!(
            m.get("itest_big_v", &[("target", "main"), ("id", "7")]),
            Some(1.0),
            "metrics carry on"
        );
        assert_eq!(
            count_lines(&d, "archive write failed;"),
            episode,
            "one ERROR line per episode; logs:\n{}",
            d.log_text()
        );
        set_fsize(d.pid(), libc::RLIM_INFINITY);
        let before = m.check_value(ARCHIVE_FILES, "big").unwrap();
        d.wait_metrics(&format!("episode {episode}: writes again"), secs(6), |m| {
            m.check_value(ARCHIVE_FILES, "big").unwrap_or(0.0) > before
        })
        .await;
        d.wait_log("\"archive writes recovered\"", secs(3), |l| {
            l.is_message("archive writes recovered")
        })
        .await;
        assert_eq!(count_lines(&d, "archive writes recovered"), episode);
    }
    let line = d
        .logs()
        .into_iter()
        .find(|l| {
            l.message()
                .is_some_and(|m| m.starts_with("archive write failed;"))
        })
        .unwrap();
    assert!(line.has("level", "ERROR"), "{}", line.0);
    assert!(
        line.field("error").is_some_and(|e| e.contains("too large")),
        "the cause (EFBIG) is logged: {}",
        line.0
    );

    d.sigterm();
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(0));
    let dir = work.archive();
    assert_eq!(temporaries(&dir), Vec::<PathBuf>::new(), "temporaries left");
    let n = assert_complete(&dir, "big", ROWS);
    assert!(n as f64 > files0, "{n} files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_folder_unwritable_or_gone_keeps_running_and_recovers() {
    let checks = check_toml(
        "arch",
        "SELECT 'a'::text AS k, 5 AS v",
        "labels = [\"k\"]\nvalues = [\"v\"]\ninterval = \"1s\"",
    );
    let (_db, work, d) = start_with_checks(&checks).await;
    let root = work.archive();
    let m = d
        .wait_metrics("a first CSV", secs(10), |m| {
            m.check_value(ARCHIVE_FILES, "arch").unwrap_or(0.0) >= 1.0
        })
        .await;

    // Disappearing: the whole archive folder is deleted; the next write recreates it.
    std::fs::remove_dir_all(&root).unwrap();
    let files = m.check_value(ARCHIVE_FILES, "arch").unwrap();
    let m = d
        .wait_metrics("a write after the folder vanished", secs(6), |m| {
            m.check_value(ARCHIVE_FILES, "arch").unwrap_or(0.0) >= files + 2.0
        })
        .await;
    assert_eq!(m.check_value(ARCHIVE_ERRORS, "arch"), Some(0.0));
    assert!(!walk(&root).is_empty(), "folder recreated with files");

    // Unwritable: a regular file where the folder was (root ignores permission bits).
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, "in the way").unwrap();
    let m = d
        .wait_metrics("archive errors", secs(6), |m| {
            m.check_value(ARCHIVE_ERRORS, "arch").unwrap_or(0.0) >= 2.0
        })
        .await;
    assert_eq!(m.check_value(SUCCESS, "arch"), Some(1.0));
    assert_eq!(
        m.get("itest_arch_v", &[("target", "main"), ("k", "a")]),
        Some(5.0)
    );
    assert_eq!(
        count_lines(&d, "archive write failed;"),
        1,
        "{}",
        d.log_text()
    );
    assert_eq!(d.get("/-/healthy").await.status, 200);

    std::fs::remove_file(&root).unwrap();
    let errors = m.check_value(ARCHIVE_ERRORS, "arch").unwrap();
    d.wait_log("\"archive writes recovered\"", secs(6), |l| {
        l.is_message("archive writes recovered")
    })
    .await;
    let m = d.metrics().await;
    assert!(m.check_value(ARCHIVE_ERRORS, "arch").unwrap() <= errors + 1.0);
    assert_eq!(count_lines(&d, "archive write failed;"), 1);
    assert!(assert_complete(&root, "arch", 1) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_large_csv_write_leaves_no_partial_file() {
    const ROWS: usize = 150_000; // ~20 MB of CSV
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml(
        "huge",
        &format!(
            "SELECT g AS id, md5(g::text) AS a, md5((g + 1)::text) AS b, repeat('x', 60) AS pad \
             FROM generate_series(1, {ROWS}) g"
        ),
        "values = [\"id\"]\ninterval = \"1h\"\ntimeout = \"30s\"\nmax_series = 10",
    );
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let root = work.archive();
    let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &[], &[]);
    // Wait for the temporary file to appear, then kill -9 at once.
    let pid = d.pid();
    let dir = root.join("main").join("huge");
    let seen = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + secs(20);
        while Instant::now() < deadline {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with('.') && e.metadata().is_ok_and(|m| m.len() > 0) {
                        // SAFETY: kill(2) on our own child.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        return Some(n);
                    }
                }
            }
            std::thread::yield_now();
        }
        None
    })
    .await
    .unwrap();
    let tmp = seen.unwrap_or_else(|| {
        panic!(
            "never saw the temporary CSV being written; logs:\n{}",
            d.log_text()
        )
    });
    let status = d.wait_exit(secs(5)).await;
    assert_eq!(status.code(), None, "killed by a signal: {status}");
    eprintln!("killed while writing {tmp}");
    let finals = assert_complete(&root, "huge", ROWS);
    assert_eq!(finals, 0, "no file under a final name after the kill");
    assert!(
        !temporaries(&root).is_empty(),
        "the crash left its temporary file (the test killed too late?)"
    );

    // Restart: the leftover is removed and a complete file is written.
    let d = Daemon::start(&cfg).await;
    d.wait_metrics("a complete CSV after the restart", secs(20), |m| {
        m.check_value(ARCHIVE_FILES, "huge").unwrap_or(0.0) >= 1.0
    })
    .await;
    let line = d
        .wait_log("leftover clean-up", secs(2), |l| {
            l.is_message("removed temporary CSV files left by an earlier crash")
        })
        .await;
    assert!(line.0.contains("\"count\":1"), "{}", line.0);
    assert_eq!(temporaries(&root), Vec::<PathBuf>::new());
    assert_eq!(assert_complete(&root, "huge", ROWS), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporaries_from_a_crash_are_removed_at_start_up_by_once_too() {
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml("t", "SELECT 1 AS v", "values = [\"v\"]");
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let folder = work.archive().join("main").join("t");
    std::fs::create_dir_all(&folder).unwrap();
    // Recent names, so archive retention (by age) leaves them alone.
    let stamp = |s: i64| {
        (chrono::Utc::now() - chrono::Duration::seconds(s))
            .format("%Y%m%dT%H%M%S%.3fZ")
            .to_string()
    };
    let kept = folder.join(format!("t_{}.csv", stamp(60)));
    std::fs::write(&kept, "v\n1\n").unwrap();
    for n in [
        format!(".t_{}.csv.tmp", stamp(50)),
        format!(".t_{}.csv.tmp", stamp(40)),
    ] {
        std::fs::write(folder.join(n), "v\n1\n2").unwrap();
    }
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(
        out.stderr.contains("removed temporary CSV files"),
        "{}",
        out.dump()
    );
    assert_eq!(temporaries(&work.archive()), Vec::<PathBuf>::new());
    assert!(kept.is_file(), "a complete file is never removed");
}
