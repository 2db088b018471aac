//! PostgreSQL for the integration tests: the server the tests' databases live on, and those
//! databases as [`TestDb`]s.
//!
//! The server is either an existing one named by the environment variable
//! `REDSHIFT_EXPORTER_TEST_DATABASE_URL` (a `postgres://` URL of a role that may `CREATE DATABASE`),
//! or one throwaway cluster per test process: the crate's own `redshift_exporter::pgtemp` (the one
//! `demo` uses; it runs the server as the `postgres` OS user when the tests run as root and makes
//! it die with the test process), stopped through an `atexit` hook since a static is never dropped.
//! Every test gets its own fresh database ([`database`]); tests that need to stop and restart the
//! server, or change its `pg_hba.conf`, get a [`PgCluster::dedicated`] cluster of their own.
//!
//! Owns no cluster code of its own: starting, stopping and reconfiguring servers is `pgtemp`'s.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redshift_exporter::pgtemp::{self, TempCluster};
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
        let cluster = PgCluster::create();
        // SAFETY: registering a plain `extern "C" fn()` with atexit.
        unsafe {
            libc::atexit(stop_clusters);
        }
        cluster
    })
}

/// Runs at process exit: statics are never dropped, so the shared cluster is stopped here.
extern "C" fn stop_clusters() {
    // Must not unwind into libc.
    let _ = std::panic::catch_unwind(pgtemp::stop_all);
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();

/// A PostgreSQL cluster started by the tests: the crate's [`TempCluster`] (which also makes
/// it die with the test process), with the settings the tests run with and handles that work
/// through `&self`, since the shared one lives in a static.
pub struct PgCluster {
    cluster: Mutex<TempCluster>,
}

impl PgCluster {
    /// A cluster of the calling test's own, which it may [`stop`](Self::stop) and [`start`](Self::start).
    /// It is shut down and deleted on drop.
    pub fn dedicated() -> PgCluster {
        PgCluster::create()
    }

    fn create() -> PgCluster {
        let cluster = TempCluster::builder()
            // Every test process has a cluster of its own, so a small one: many run at once.
            .setting("max_connections", "120")
            .setting("shared_buffers", "32MB")
            .start()
            .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
        PgCluster {
            cluster: Mutex::new(cluster),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TempCluster> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The TCP port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.lock().port()
    }

    /// Creates a fresh database `t_...` on this cluster (the cluster must be running).
    pub async fn create_database(&self) -> TestDb {
        let admin = TestDb::at("127.0.0.1", self.port(), "postgres", "postgres", None);
        create_database_via(&admin).await
    }

    /// Starts the (stopped) cluster again on the same port and waits until it accepts connections.
    pub fn start(&self) {
        self.lock()
            .restart()
            .unwrap_or_else(|e| panic!("cannot restart PostgreSQL: {e}"));
    }

    /// Stops the cluster (fast shutdown: sessions are terminated) and waits until the postmaster is gone.
    pub fn stop(&self) {
        self.lock().halt();
    }

    /// Replaces `pg_hba.conf` with `rules` and makes the postmaster reload it (SIGHUP). The reload
    /// is asynchronous: callers should poll for the effect.
    pub fn set_hba(&self, rules: &str) {
        self.lock()
            .set_hba(rules)
            .unwrap_or_else(|e| panic!("cannot replace pg_hba.conf: {e}"));
    }

    /// The cluster's directory (data directory, logs and Unix socket).
    pub fn root(&self) -> PathBuf {
        self.lock().root().to_owned()
    }
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port")
}
