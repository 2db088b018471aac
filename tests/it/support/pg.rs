//! PostgreSQL for the integration tests.
//!
//! Owns the test database server: either an existing server named by the environment variable
//! `REDSHIFT_EXPORTER_TEST_DATABASE_URL` (a `postgres://` URL of a role that may `CREATE DATABASE`), or one
//! throwaway cluster per test process, created with `initdb` under `/tmp`, run as the `postgres` OS user
//! when the tests run as root, and stopped with SIGQUIT when the process exits (an `atexit` hook, backed
//! by `PR_SET_PDEATHSIG` so even a killed test process leaves no postmaster behind).
//! Every test gets its own fresh database ([`database`]); tests that need to stop and restart the server
//! get a [`PgCluster::dedicated`] cluster of their own.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

// Lived here before the split; kept reachable for `use crate::support::pg::toml_str`.
#[allow(unused_imports)]
pub use super::config::{merge_defaults, toml_str};

/// Environment variable naming an existing server to use instead of a throwaway cluster.
pub const DATABASE_URL_ENV: &str = "REDSHIFT_EXPORTER_TEST_DATABASE_URL";

/// One fresh database, with everything a test needs to write a `[targets.*]` section.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    /// With an external server: drops the database when the last clone goes away.
    dropper: Option<Arc<DropDatabase>>,
}

/// Drops a database on an external server (`WITH (FORCE)`, bounded to 10 s, errors ignored).
#[derive(Debug)]
struct DropDatabase {
    admin: tokio_postgres::Config,
    dbname: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.dbname);
        // A runtime of its own on a thread of its own: this may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), async move {
                    let (client, conn) = admin.connect(NoTls).await?;
                    tokio::spawn(conn);
                    client.batch_execute(&sql).await
                })
                .await;
            });
        })
        .join();
    }
}

impl TestDb {
    /// A database on some other server (e.g. a `TempCluster` of the test's own); never dropped
    /// by the harness.
    pub fn at(host: &str, port: u16, dbname: &str, user: &str, password: Option<&str>) -> TestDb {
        TestDb {
            host: host.to_owned(),
            port,
            dbname: dbname.to_owned(),
            user: user.to_owned(),
            password: password.map(str::to_owned),
            dropper: None,
        }
    }

    /// A `tokio_postgres::Config` for this database (no TLS).
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .application_name("redshift-exporter-it")
            .connect_timeout(Duration::from_secs(5))
            // the tests' own SQL never waits forever either
            .options("-c statement_timeout=30000");
        if let Some(pw) = &self.password {
            c.password(pw);
        }
        c
    }

    /// Opens a connection for the test's own SQL; the connection task runs on the current runtime.
    pub async fn connect(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.pg_config().connect(NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    return client;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect to test database {}: {e:?}", self.dbname),
            }
        }
    }

    /// Runs a batch of SQL statements on a fresh connection.
    pub async fn execute(&self, sql: &str) {
        let client = self.connect().await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("test SQL failed: {e:?}\n{sql}"));
    }
}

/// A name that is unique across concurrently running test processes (lower case, `[a-z0-9_]`).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    )
}

/// A fresh database on the shared server (the URL from the environment, or this process's cluster).
pub async fn database() -> TestDb {
    match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => database_from_url(&url).await,
        _ => shared_cluster().create_database().await,
    }
}

async fn database_from_url(url: &str) -> TestDb {
    let config: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("{DATABASE_URL_ENV} is not a valid postgres URL: {e}"));
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => panic!("{DATABASE_URL_ENV} must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .unwrap_or_else(|| panic!("{DATABASE_URL_ENV} must name a user"))
        .to_owned();
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let admin = TestDb {
        host,
        port,
        dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
        user,
        password,
        dropper: None,
    };
    let mut db = create_database_via(&admin).await;
    db.dropper = Some(Arc::new(DropDatabase {
        admin: admin.pg_config(),
        dbname: db.dbname.clone(),
    }));
    db
}

async fn create_database_via(admin: &TestDb) -> TestDb {
    let dbname = unique_name("t");
    admin.execute(&format!("CREATE DATABASE {dbname}")).await;
    TestDb {
        dbname,
        ..admin.clone()
    }
}

/// The cluster shared by every test of this process (started on first use).
pub fn shared_cluster() -> &'static PgCluster {
    SHARED.get_or_init(|| {
        let cluster = PgCluster::create(false).unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: registering a plain `extern "C" fn()` with atexit.
        unsafe {
            libc::atexit(stop_shared_cluster);
        }
        cluster
    })
}

extern "C" fn stop_shared_cluster() {
    // Runs at process exit. Must not panic.
    let _ = std::panic::catch_unwind(|| {
        if let Some(cluster) = SHARED.get() {
            cluster.shutdown_and_remove();
        }
    });
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();

/// A PostgreSQL cluster started by the tests (see the module docs).
pub struct PgCluster {
    root: PathBuf,
    port: Mutex<u16>,
    pid: Mutex<Option<i32>>,
    dedicated: bool,
}

impl PgCluster {
    /// A cluster of the calling test's own, which it may [`stop`](Self::stop) and [`start`](Self::start).
    /// It is shut down and deleted on drop.
    pub fn dedicated() -> PgCluster {
        PgCluster::create(true).unwrap_or_else(|e| panic!("{e}"))
    }

    fn create(dedicated: bool) -> Result<PgCluster, String> {
        remove_stale_clusters();
        let root = tempfile::Builder::new()
            .prefix("rse-it-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create cluster dir under /tmp: {e}"))?
            .keep();
        let cluster = PgCluster {
            root,
            port: Mutex::new(0),
            pid: Mutex::new(None),
            dedicated,
        };
        let result = cluster.init_and_start();
        if let Err(e) = result {
            cluster.shutdown_and_remove();
            return Err(e);
        }
        Ok(cluster)
    }

    fn init_and_start(&self) -> Result<(), String> {
        let owner = postgres_owner();
        if let Some((uid, gid)) = owner {
            chown(&self.root, uid, gid)?;
        }
        let data = self.data_dir();
        let log = fs::File::create(self.root.join("initdb.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(pg_bin("initdb"));
        cmd.arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run initdb ({}): {e}", pg_bin("initdb").display()))?;
        if !status.success() {
            return Err(format!(
                "initdb failed ({status}):\n{}",
                fs::read_to_string(self.root.join("initdb.log")).unwrap_or_default()
            ));
        }
        let mut last_err = String::new();
        for _ in 0..4 {
            *self.port.lock().unwrap() = free_port();
            match self.try_start() {
                Ok(()) => return Ok(()),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The TCP port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        *self.port.lock().unwrap()
    }

    /// Creates a fresh database `t_...` on this cluster (the cluster must be running).
    pub async fn create_database(&self) -> TestDb {
        let admin = TestDb {
            host: "127.0.0.1".to_owned(),
            port: self.port(),
            dbname: "postgres".to_owned(),
            user: "postgres".to_owned(),
            password: None,
            dropper: None,
        };
        create_database_via(&admin).await
    }

    /// Starts the (stopped) cluster again on the same port and waits until it accepts connections.
    pub fn start(&self) {
        self.try_start().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the cluster (fast shutdown: sessions are terminated) and waits until the postmaster is gone.
    pub fn stop(&self) {
        self.signal_and_wait(libc::SIGINT, Duration::from_secs(20));
    }

    fn try_start(&self) -> Result<(), String> {
        let data = self.data_dir();
        let pidfile = data.join("postmaster.pid");
        let _ = fs::remove_file(&pidfile);
        let port = self.port();
        let logpath = self.root.join("postgres.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&logpath)
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(pg_bin("postgres"));
        cmd.arg("-D").arg(&data);
        for setting in [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("port={port}"),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "max_connections=120".to_owned(),
            "shared_buffers=32MB".to_owned(),
        ] {
            cmd.arg("-c").arg(setting);
        }
        cmd.arg("-k")
            .arg(&self.root)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if let Some((uid, gid)) = postgres_owner() {
            cmd.uid(uid).gid(gid);
        }
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The postmaster is spawned from a keeper thread that lives exactly as long as the postmaster
        // (it waits for it), so PR_SET_PDEATHSIG fires only when the whole test process dies.
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("postgres-{port}"))
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id() as i32));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            })
            .map_err(|e| e.to_string())?;
        let pid = rx
            .recv()
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        *self.pid.lock().unwrap() = Some(pid);

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if !alive(pid) {
                *self.pid.lock().unwrap() = None;
                return Err(format!(
                    "postgres exited during start-up on port {port}:\n{}",
                    tail(&fs::read_to_string(&logpath).unwrap_or_default(), 20)
                ));
            }
            if pidfile_ready(&pidfile, pid)
                && TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.signal_and_wait(libc::SIGQUIT, Duration::from_secs(5));
                return Err(format!(
                    "postgres not ready within 30 s on port {port}:\n{}",
                    tail(&fs::read_to_string(&logpath).unwrap_or_default(), 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal_and_wait(&self, signal: i32, patience: Duration) {
        let Some(pid) = self.pid.lock().unwrap().take() else {
            return;
        };
        // SAFETY: plain kill(2) on the postmaster we started.
        unsafe {
            libc::kill(pid, signal);
        }
        let deadline = Instant::now() + patience;
        while alive(pid) {
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn shutdown_and_remove(&self) {
        self.signal_and_wait(libc::SIGQUIT, Duration::from_secs(10));
        let _ = fs::remove_dir_all(&self.root);
    }

    /// Replaces `pg_hba.conf` with `rules` and makes the postmaster reload it (SIGHUP). The reload
    /// is asynchronous: callers should poll for the effect.
    pub fn set_hba(&self, rules: &str) {
        fs::write(self.data_dir().join("pg_hba.conf"), rules).expect("cannot write pg_hba.conf");
        if let Some(pid) = *self.pid.lock().unwrap() {
            // SAFETY: kill(2) on the postmaster we started.
            unsafe {
                libc::kill(pid, libc::SIGHUP);
            }
        }
    }

    /// The cluster's directory (data directory, logs and Unix socket).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.dedicated {
            self.shutdown_and_remove();
        }
    }
}

/// Deletes cluster directories left by killed test processes: older than an hour, and no live
/// postmaster (the postmaster itself died with its test process through PR_SET_PDEATHSIG).
fn remove_stale_clusters() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_ours = e.file_name().to_string_lossy().starts_with("rse-it-pg-");
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if !is_ours || !old {
            continue;
        }
        let pid = fs::read_to_string(path.join("data").join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if pid.is_none_or(|p| !alive(p)) {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence. The keeper thread reaps the child, so a
    // finished postmaster stops existing instead of lingering as a zombie.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn pidfile_ready(pidfile: &Path, pid: i32) -> bool {
    let Ok(text) = fs::read_to_string(pidfile) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
        && lines.get(7).map(|l| l.trim()) == Some("ready")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port")
}

/// `(uid, gid)` of the `postgres` OS user when running as root (initdb and postgres refuse root).
fn postgres_owner() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    // SAFETY: getpwnam returns a pointer to static storage or null; the fields are copied at once.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if pw.is_null() {
        panic!("running as root but there is no `postgres` OS user to run initdb/postgres as");
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {} failed: {e}", path.display()))
}

/// Path of a PostgreSQL server binary: from PATH, else `pg_config --bindir`, else Debian's layout.
pub fn pg_bin(name: &str) -> PathBuf {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let bindir = BINDIR.get_or_init(|| {
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            if out.status.success() {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if dir.join(name).is_file() {
                    return Some(dir);
                }
            }
        }
        let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    });
    match bindir {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}
