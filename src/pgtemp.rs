//! A throwaway PostgreSQL cluster started from the installed binaries, for `demo` and the
//! integration tests: `initdb` into a temporary folder, `postgres` on 127.0.0.1 and a free
//! port, stopped and deleted on [`TempCluster::stop`] or drop.
//!
//! PostgreSQL refuses to run as root, so when we are root the server runs as the Debian
//! `postgres` user (`Command::uid/gid`; no sudo needed). The binaries are found on `PATH`, then
//! through `pg_config --bindir`, then in `/usr/lib/postgresql/*/bin` (Debian keeps them off
//! `PATH`). Knows nothing about Redshift or the exporter.
//!
//! Every running cluster is also listed in a process-wide registry, so a path that ends the
//! process without unwinding (the second Ctrl-C of `demo`: `std::process::exit`) can still
//! stop them: [`stop_all`].

use std::ffi::CString;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TempClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH, via pg_config or in /usr/lib/postgresql/*/bin; install PostgreSQL (Debian: apt-get install postgresql)"
    )]
    NoBinaries,
    #[error("running as root, but there is no `postgres` user to run the server as")]
    NoPostgresUser,
    #[error("{action}: {source}")]
    Io { action: String, source: io::Error },
    #[error("initdb failed: {0}")]
    Initdb(String),
    #[error("the server did not accept connections within {0:?}; its log:\n{1}")]
    NotReady(Duration, String),
}

fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> TempClusterError {
    let action = action.into();
    move |source| TempClusterError::Io { action, source }
}

/// Postmasters started here and not yet stopped: (pid, root folder).
static RUNNING: std::sync::Mutex<Vec<(u32, PathBuf)>> = std::sync::Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<(u32, PathBuf)>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops every cluster this process started and has not stopped yet, within about 2 s:
/// SIGQUIT (immediate shutdown), SIGKILL for any still there, then their folders are
/// removed. For exit paths that skip destructors.
pub fn stop_all() {
    let clusters: Vec<(u32, PathBuf)> = std::mem::take(&mut *running());
    for (pid, _) in &clusters {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(*pid as i32, libc::SIGQUIT) };
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for (pid, root) in clusters {
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
            // Reaped, or not our child any more (reaped elsewhere): gone.
            if r != 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; harmless if it is gone.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// A running throwaway cluster.
pub struct TempCluster {
    /// Temporary root: `data/`, the socket and the server log live here; removed on stop.
    root: PathBuf,
    port: u16,
    /// The postmaster; `None` once stopped.
    server: Option<Child>,
}

impl TempCluster {
    /// Creates and starts a cluster, waiting (up to 30 s) until it accepts connections.
    /// The superuser is `postgres`, trusted on 127.0.0.1 without a password.
    pub fn start() -> Result<Self, TempClusterError> {
        Self::start_with(&[], &[])
    }

    /// Like [`TempCluster::start`], with extra files in the data folder (name, contents,
    /// mode; owned by the server's user — e.g. TLS certificates and keys) and extra server
    /// settings (`-c name=value`, e.g. `ssl=on`).
    pub fn start_with(
        files: &[(&str, &[u8], u32)],
        settings: &[(&str, &str)],
    ) -> Result<Self, TempClusterError> {
        let bindir = find_bindir().ok_or(TempClusterError::NoBinaries)?;
        let run_as = run_as_user()?;
        let root = make_root()?;
        let data = root.join("data");
        if let Some((uid, gid)) = run_as {
            chown(&root, uid, gid)?;
        }
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null());
        as_user(&mut initdb, run_as);
        let out = initdb.output().map_err(io_err("running initdb"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&root);
            return Err(TempClusterError::Initdb(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        for (name, contents, mode) in files {
            use std::os::unix::fs::PermissionsExt;
            let path = data.join(name);
            std::fs::write(&path, contents).map_err(io_err(format!("writing {name}")))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                .map_err(io_err(format!("chmod {name}")))?;
            if let Some((uid, gid)) = run_as {
                chown(&path, uid, gid)?;
            }
        }
        let port = free_port()?;
        let log = std::fs::File::create(root.join("server.log"))
            .map_err(io_err("creating the server log"))?;
        if let Some((uid, gid)) = run_as {
            chown(&root.join("server.log"), uid, gid)?;
        }
        let mut postgres = Command::new(bindir.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&root)
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("port={port}"))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, value) in settings {
            postgres.arg("-c").arg(format!("{name}={value}"));
        }
        as_user(&mut postgres, run_as);
        let server = postgres.spawn().map_err(io_err("starting postgres"))?;
        running().push((server.id(), root.clone()));
        let mut cluster = TempCluster {
            root,
            port,
            server: Some(server),
        };
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), TempClusterError> {
        let deadline = Instant::now() + limit;
        // Neither the port answering nor the socket file is enough: logins are refused with
        // 57P03 ("starting up") until the postmaster writes "ready" as the 8th line of
        // postmaster.pid, which is what `pg_ctl -w` waits for.
        let pidfile = self.root.join("data").join("postmaster.pid");
        let ready = || {
            std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.lines().nth(7).map(|l| l.trim() == "ready"))
                .unwrap_or(false)
        };
        while Instant::now() < deadline {
            if let Some(s) = self.server.as_mut() {
                if let Ok(Some(status)) = s.try_wait() {
                    let log =
                        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
                    return Err(TempClusterError::NotReady(
                        limit,
                        format!("postgres exited with {status}\n{log}"),
                    ));
                }
            }
            if ready() && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
        Err(TempClusterError::NotReady(limit, log))
    }

    /// Stops the server (fast shutdown, then SIGKILL after 5 s) and deletes its files.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let pid = child.id();
            // SIGINT = "fast" shutdown: disconnect clients, then exit cleanly.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    // Exited, or reaped by stop_all.
                    _ => break,
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&self.root);
            // Listed until here, so a second signal meanwhile still finds it (stop_all).
            running().retain(|(p, _)| *p != pid);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_bindir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                // Resolve symlinks so `postgres` finds its share/lib folders.
                return Some(
                    d.join("postgres")
                        .canonicalize()
                        .ok()?
                        .parent()?
                        .to_path_buf(),
                );
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&d) {
            return Some(d);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has(d))
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// `Some((uid, gid))` of the `postgres` user when we are root.
fn run_as_user() -> Result<Option<(u32, u32)>, TempClusterError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam takes a valid C string; the result is read before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(TempClusterError::NoPostgresUser);
    }
    // SAFETY: pw is non-null and points to libc's static passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn as_user(cmd: &mut Command, who: Option<(u32, u32)>) {
    if let Some((uid, gid)) = who {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
}

fn make_root() -> Result<PathBuf, TempClusterError> {
    // Under /tmp, not $TMPDIR: the postgres user must be able to traverse it.
    let base = Path::new("/tmp");
    for attempt in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "redshift-exporter-pg-{}-{nanos}-{attempt}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating a folder under /tmp")(e)),
        }
    }
    Err(io_err("creating a folder under /tmp")(io::Error::other(
        "no free name",
    )))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), TempClusterError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(io_err(format!("chown {}", path.display())))
}

fn free_port() -> Result<u16, TempClusterError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io_err("finding a free port"))
}
