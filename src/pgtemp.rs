//! A throwaway PostgreSQL cluster started from the installed binaries, for `demo` and the
//! integration tests: `initdb` into a temporary folder, `postgres` on 127.0.0.1 and a free
//! port, stopped and deleted on [`TempCluster::stop`] or drop. What the tests need besides:
//! extra files and settings ([`TempCluster::builder`]), stopping the server and starting it
//! again on the same port with its data ([`TempCluster::halt`], [`TempCluster::restart`]),
//! and new `pg_hba.conf` rules ([`TempCluster::set_hba`]).
//!
//! PostgreSQL refuses to run as root, so when we are root the server runs as the Debian
//! `postgres` user (`Command::uid/gid`; no sudo needed). The binaries are found on `PATH`, then
//! through `pg_config --bindir`, then in `/usr/lib/postgresql/*/bin` (Debian keeps them off
//! `PATH`). Knows nothing about Redshift or the exporter.
//!
//! The server dies with this process, however it ends:
//! - every running cluster is listed in a process-wide registry, so a path that ends the
//!   process without unwinding (the second Ctrl-C of `demo`: `std::process::exit`; a test
//!   binary's `atexit`) can still stop them: [`stop_all`];
//! - a process killed outright (SIGKILL, a test timeout) runs nothing, so the postmaster is
//!   started with `PR_SET_PDEATHSIG` (SIGQUIT when its parent dies). Linux means the parent
//!   *thread*, so the postmaster is spawned from a keeper thread that lives exactly as long
//!   as the postmaster (it waits for it): a caller on a short-lived thread (tokio's blocking
//!   pool) must not take the server with it;
//! - folders left by killed processes (their owner and their postmaster both gone) are
//!   removed when the next cluster is created.

use std::ffi::CString;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Prefix of the cluster folders under `/tmp`; the owning process's pid follows it.
const ROOT_PREFIX: &str = "redshift-exporter-pg-";

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

/// The exit of a postmaster, filled in by its keeper thread (the only one that waits for it,
/// so the pid cannot be reused while this is empty).
#[derive(Default)]
struct Exit {
    status: Mutex<Option<ExitStatus>>,
    done: Condvar,
}

impl Exit {
    fn exited(&self) -> Option<ExitStatus> {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `limit`; whether the postmaster is gone.
    fn wait(&self, limit: Duration) -> bool {
        let guard = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .done
            .wait_timeout_while(guard, limit, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.is_some()
    }
}

/// A postmaster started here.
struct Server {
    pid: u32,
    exit: Arc<Exit>,
}

impl Server {
    /// Sends `signal` unless the postmaster is already gone (then the pid may be another's).
    fn signal(&self, signal: i32) {
        if self.exit.exited().is_none() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(self.pid as i32, signal) };
        }
    }

    /// `signal`, then up to `patience` for the exit, then SIGKILL and up to 2 s more.
    fn shut_down(&self, signal: i32, patience: Duration) {
        self.signal(signal);
        if !self.exit.wait(patience) {
            self.signal(libc::SIGKILL);
            self.exit.wait(Duration::from_secs(2));
        }
    }
}

/// Postmasters started here and not yet stopped: (server, root folder).
static RUNNING: Mutex<Vec<(u32, Arc<Exit>, PathBuf)>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<(u32, Arc<Exit>, PathBuf)>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops every cluster this process started and has not stopped yet, within about 2 s:
/// SIGQUIT (immediate shutdown), SIGKILL for any still there, then their folders are
/// removed. For exit paths that skip destructors.
pub fn stop_all() {
    let clusters: Vec<(u32, Arc<Exit>, PathBuf)> = std::mem::take(&mut *running());
    let servers: Vec<Server> = clusters
        .iter()
        .map(|(pid, exit, _)| Server {
            pid: *pid,
            exit: Arc::clone(exit),
        })
        .collect();
    for s in &servers {
        s.signal(libc::SIGQUIT);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for s in &servers {
        s.exit
            .wait(deadline.saturating_duration_since(Instant::now()));
        s.signal(libc::SIGKILL);
    }
    for (_, _, root) in clusters {
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// What a cluster starts with besides the defaults: files in the data folder and server
/// settings. From [`TempCluster::builder`].
#[derive(Default)]
pub struct TempClusterBuilder {
    /// (name in the data folder, contents, mode); owned by the server's user.
    files: Vec<(String, Vec<u8>, u32)>,
    /// `-c name=value`, after the defaults, so they win over them.
    settings: Vec<(String, String)>,
}

impl TempClusterBuilder {
    /// A file in the data folder (e.g. TLS certificates and keys, a `pg_hba.conf`).
    pub fn file(mut self, name: &str, contents: &[u8], mode: u32) -> Self {
        self.files.push((name.to_owned(), contents.to_vec(), mode));
        self
    }

    /// A server setting (`-c name=value`, e.g. `ssl=on`); overrides a default.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Creates and starts the cluster, waiting (up to 30 s) until it accepts connections.
    /// A port taken between choosing and binding it is retried on another, up to 4 times.
    pub fn start(self) -> Result<TempCluster, TempClusterError> {
        remove_stale_roots();
        let bindir = find_bindir().ok_or(TempClusterError::NoBinaries)?;
        let run_as = run_as_user()?;
        let root = make_root()?;
        // From here on the folder is the cluster's: dropping it removes the folder.
        let mut cluster = TempCluster {
            root,
            port: 0,
            server: None,
            bindir,
            run_as,
            settings: self.settings,
        };
        cluster.init(&self.files)?;
        let mut last = None;
        for _ in 0..4 {
            cluster.port = free_port()?;
            match cluster.spawn() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }
}

/// A running throwaway cluster.
pub struct TempCluster {
    /// Temporary root: `data/`, the socket and the server log live here; removed on stop.
    root: PathBuf,
    /// Kept across [`halt`](Self::halt) and [`restart`](Self::restart), so clients' settings
    /// stay right.
    port: u16,
    /// The postmaster; `None` once halted or stopped.
    server: Option<Server>,
    /// Where `initdb` and `postgres` are, found once at creation.
    bindir: PathBuf,
    /// The OS user the server runs as when we are root.
    run_as: Option<(u32, u32)>,
    /// The builder's extra settings, given again on every restart.
    settings: Vec<(String, String)>,
}

impl TempCluster {
    /// Creates and starts a cluster, waiting (up to 30 s) until it accepts connections.
    /// The superuser is `postgres`, trusted on 127.0.0.1 without a password.
    pub fn start() -> Result<Self, TempClusterError> {
        Self::builder().start()
    }

    /// A cluster with extra files or settings; [`TempClusterBuilder::start`] starts it.
    pub fn builder() -> TempClusterBuilder {
        TempClusterBuilder::default()
    }

    /// Like [`TempCluster::start`], with extra files in the data folder (name, contents,
    /// mode; owned by the server's user — e.g. TLS certificates and keys) and extra server
    /// settings (`-c name=value`, e.g. `ssl=on`).
    pub fn start_with(
        files: &[(&str, &[u8], u32)],
        settings: &[(&str, &str)],
    ) -> Result<Self, TempClusterError> {
        let mut b = Self::builder();
        for (name, contents, mode) in files {
            b = b.file(name, contents, *mode);
        }
        for (name, value) in settings {
            b = b.setting(name, value);
        }
        b.start()
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's folder (data folder, socket, server log); gone after [`stop`](Self::stop).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn init(&mut self, files: &[(String, Vec<u8>, u32)]) -> Result<(), TempClusterError> {
        let data = self.data();
        if let Some((uid, gid)) = self.run_as {
            chown(&self.root, uid, gid)?;
        }
        let mut initdb = Command::new(self.bindir.join("initdb"));
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
        as_user(&mut initdb, self.run_as);
        let out = initdb.output().map_err(io_err("running initdb"))?;
        if !out.status.success() {
            return Err(TempClusterError::Initdb(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        for (name, contents, mode) in files {
            self.write_data_file(name, contents, *mode)?;
        }
        let log = self.root.join("server.log");
        std::fs::File::create(&log).map_err(io_err("creating the server log"))?;
        if let Some((uid, gid)) = self.run_as {
            chown(&log, uid, gid)?;
        }
        Ok(())
    }

    fn write_data_file(
        &self,
        name: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), TempClusterError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data().join(name);
        std::fs::write(&path, contents).map_err(io_err(format!("writing {name}")))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("chmod {name}")))?;
        if let Some((uid, gid)) = self.run_as {
            chown(&path, uid, gid)?;
        }
        Ok(())
    }

    /// Starts the postmaster on `self.port` from a keeper thread and waits until it is ready.
    fn spawn(&mut self) -> Result<(), TempClusterError> {
        let data = self.data();
        // A postmaster killed outright leaves its pid file; the new one would refuse to start
        // while that pid exists (as another process, possibly).
        let _ = std::fs::remove_file(data.join("postmaster.pid"));
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.root.join("server.log"))
            .map_err(io_err("opening the server log"))?;
        let mut postgres = Command::new(self.bindir.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&self.root)
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("port={}", self.port))
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
        for (name, value) in &self.settings {
            postgres.arg("-c").arg(format!("{name}={value}"));
        }
        as_user(&mut postgres, self.run_as);
        // SAFETY: prctl is async-signal-safe and the closure allocates nothing.
        unsafe {
            postgres.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let exit = Arc::new(Exit::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let keeper_exit = Arc::clone(&exit);
        std::thread::Builder::new()
            .name(format!("postgres-{}", self.port))
            .spawn(move || match postgres.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id()));
                    let status = child.wait();
                    let status = status.unwrap_or_else(|_| ExitStatus::default());
                    *keeper_exit.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    keeper_exit.done.notify_all();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(io_err("starting a thread for postgres"))?;
        let pid = rx
            .recv()
            .map_err(|_| io_err("starting postgres")(io::Error::other("keeper thread died")))?
            .map_err(io_err("starting postgres"))?;
        running().push((pid, Arc::clone(&exit), self.root.clone()));
        self.server = Some(Server { pid, exit });
        if let Err(e) = self.wait_ready(Duration::from_secs(30)) {
            self.halt();
            return Err(e);
        }
        Ok(())
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), TempClusterError> {
        let deadline = Instant::now() + limit;
        let Some(server) = &self.server else {
            return Err(TempClusterError::NotReady(limit, "not started".into()));
        };
        // Neither the port answering nor the socket file is enough: logins are refused with
        // 57P03 ("starting up") until the postmaster writes "ready" as the 8th line of
        // postmaster.pid, which is what `pg_ctl -w` waits for. The first line must be our
        // postmaster's pid, not a predecessor's.
        let pidfile = self.data().join("postmaster.pid");
        let ready = || {
            std::fs::read_to_string(&pidfile).ok().is_some_and(|t| {
                let lines: Vec<&str> = t.lines().map(str::trim).collect();
                lines.first() == Some(&server.pid.to_string().as_str())
                    && lines.get(7) == Some(&"ready")
            })
        };
        let log = || std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
        while Instant::now() < deadline {
            if let Some(status) = server.exit.exited() {
                return Err(TempClusterError::NotReady(
                    limit,
                    format!("postgres exited with {status}\n{}", log()),
                ));
            }
            if ready() && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(TempClusterError::NotReady(limit, log()))
    }

    /// Stops the server (fast shutdown: sessions are terminated; SIGKILL after 20 s) and
    /// keeps its files, so [`restart`](Self::restart) can start it again with its data.
    pub fn halt(&mut self) {
        if let Some(server) = self.server.take() {
            // SIGINT = "fast" shutdown: disconnect clients, then exit cleanly.
            server.shut_down(libc::SIGINT, Duration::from_secs(20));
            running().retain(|(p, _, _)| *p != server.pid);
        }
    }

    /// Starts a halted server again on the same port and waits until it accepts connections.
    /// A running one is left as it is.
    pub fn restart(&mut self) -> Result<(), TempClusterError> {
        if self.server.is_some() {
            return Ok(());
        }
        self.spawn()
    }

    /// Replaces `pg_hba.conf` with `rules` and makes the postmaster reload it (SIGHUP). The
    /// reload is asynchronous: callers poll for its effect.
    pub fn set_hba(&self, rules: &str) -> Result<(), TempClusterError> {
        self.write_data_file("pg_hba.conf", rules.as_bytes(), 0o600)?;
        if let Some(server) = &self.server {
            server.signal(libc::SIGHUP);
        }
        Ok(())
    }

    /// Stops the server (fast shutdown, then SIGKILL after 5 s) and deletes its files.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shut_down(libc::SIGINT, Duration::from_secs(5));
            let _ = std::fs::remove_dir_all(&self.root);
            // Listed until here, so a second signal meanwhile still finds it (stop_all).
            running().retain(|(p, _, _)| *p != server.pid);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes cluster folders whose creating process and postmaster are both gone: left by a
/// process that was killed (its postmaster died with it through `PR_SET_PDEATHSIG`).
fn remove_stale_roots() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(ROOT_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let path = e.path();
        let postmaster = std::fs::read_to_string(path.join("data").join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if !exists(owner) && postmaster.is_none_or(|p| !exists(p)) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Whether a process with this pid exists (ours or another user's).
fn exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let ok = unsafe { libc::kill(pid, 0) } == 0;
    // EPERM: it exists, as another user's.
    ok || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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
            "{ROOT_PREFIX}{}-{nanos}-{attempt}",
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
