//! Database plumbing: one bounded deadpool-postgres pool per target, TLS, flavour detection
//! and the classification of driver errors into a small closed set of [`ErrorKind`]s.
//!
//! Together with `check` this is the only module that knows tokio-postgres. It knows nothing
//! about checks' meaning, metrics or the archive.
//!
//! Redshift-safe choices: recycling is `Verified` (an empty query; never `Clean`, whose
//! `DISCARD`/`UNLISTEN` Redshift rejects); every pool wait has a deadline and a runtime (a
//! deadpool wait without one blocks forever); TCP keepalive is minutes, not the OS's two hours
//! (AWS NAT gateways and load balancers drop idle flows after about 350 s); connections are
//! retired by age by [`Target::retire_old_connections`] (Redshift drops idle sessions after hours).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

pub mod bound;
mod discover;
pub mod login;
pub mod sha256;
mod tls;

pub use tls::Tls;
use tls::make_tls;

use crate::capability::Access;
use crate::config::{Auth, Deployment, SslMode, TargetConfig};
use login::{Credentials, Login, TargetConnect};

/// Why a check run failed; a small closed set, used as the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Could not open a session (refused, unreachable, TLS, connect timeout).
    Connect,
    /// The server refused our credentials or asked for an auth method we cannot do.
    Auth,
    /// Every pooled session stayed busy until the check's deadline.
    PoolTimeout,
    /// The server rejected or failed the query.
    Query,
    /// The check's deadline passed; the query was cancelled server-side.
    Timeout,
    /// The result lacks the columns the check maps.
    Columns,
    /// Shutdown cancelled the run after the drain timeout.
    Canceled,
    /// The AWS call that provides the target's credentials failed (IAM, Secrets Manager).
    Aws,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Connect,
        ErrorKind::Auth,
        ErrorKind::PoolTimeout,
        ErrorKind::Query,
        ErrorKind::Timeout,
        ErrorKind::Columns,
        ErrorKind::Canceled,
        ErrorKind::Aws,
    ];

    /// How many there are: the length of counter arrays indexed by [`ErrorKind::index`].
    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`ErrorKind::ALL`], hence in every counter array sized by [`ErrorKind::COUNT`].
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Auth => "auth",
            ErrorKind::PoolTimeout => "pool_timeout",
            ErrorKind::Query => "query",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Columns => "columns",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Aws => "aws",
        }
    }

    /// True when the failure says the database could not be reached or logged into.
    pub fn target_down(self) -> bool {
        matches!(self, ErrorKind::Connect | ErrorKind::Auth | ErrorKind::Aws)
    }
}

// `index` is the declaration order: ALL must list every variant in that order, so that every
// index is below COUNT (checked at compile time; a gap or reordering fails the build).
const _: () = {
    let mut i = 0;
    while i < ErrorKind::COUNT {
        assert!(ErrorKind::ALL[i].index() == i);
        i += 1;
    }
};

/// A failed check run: the kind (for metrics) and a one-line cause (for logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}", kind = .kind.as_str())]
pub struct CheckError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CheckError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CheckError {
            kind,
            message: message.into(),
        }
    }
}

/// A target could not be set up at start-up (bad CA file and the like).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("target {target}: cannot read ca_file {path}: {source}")]
    CaFile {
        target: String,
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("target {target}: TLS setup failed: {message}")]
    Tls { target: String, message: String },
    #[error("target {target}: pool setup failed: {message}")]
    Pool { target: String, message: String },
}

/// One configured database with its pool.
pub struct Target {
    pub config: Arc<TargetConfig>,
    pub pool: Pool,
    pub tls: Tls,
    /// The credentials new sessions log in with.
    pub login: Arc<Login>,
    /// The session bound this entry shares with the target's other databases.
    pub bound: Arc<bound::Bound>,
    /// Where they come from when AWS provides them.
    #[cfg(feature = "aws")]
    pub auth: Option<Arc<crate::aws::TargetAuth>>,
}

/// Plain numbers describing a pool, for the exposition.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    pub max: usize,
    pub idle: usize,
    pub in_use: usize,
}

impl Target {
    /// Builds the target's pool. Connections are opened lazily, so a database that is down
    /// at start-up does not stop the daemon.
    pub fn new(config: Arc<TargetConfig>) -> Result<Self, SetupError> {
        let bound = bound::Bound::new(config.pool_size);
        Self::with_bound(config, bound)
    }

    /// Builds the pool of one (target, database) entry inside the target's session bound,
    /// shared with the pools of the target's other databases.
    pub fn with_bound(
        config: Arc<TargetConfig>,
        bound: Arc<bound::Bound>,
    ) -> Result<Self, SetupError> {
        let tls = make_tls(&config)?;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&config.host);
        if let Some(ip) = config.hostaddr {
            pg.hostaddr(ip);
        }
        pg.port(config.port)
            .dbname(&config.database)
            .application_name(&config.application_name)
            .connect_timeout(config.connect_timeout)
            .keepalives(true)
            .keepalives_idle(config.keepalives_idle)
            .ssl_mode(match config.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
        // The credentials of the first session; AWS-provided ones are fetched before it opens
        // (`Target::client`) and replace these.
        let password = match &config.auth {
            Auth::Password(pw) => pw.clone().map(Arc::new),
            Auth::Iam(_) | Auth::Secret(_) => None,
        };
        let login = Arc::new(Login::new(Credentials {
            user: config.user.clone(),
            password,
        }));
        let mgr_config = ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        };
        // Code 13 is Redshift's sha256 request on Redshift only (HighGo, a PostgreSQL fork,
        // uses it for something else): answer it unless the target is declared PostgreSQL.
        let connect = TargetConnect {
            tls: tls.clone(),
            digest: config.deployment != Some(Deployment::Postgres),
            login: login.clone(),
            bound: bound.clone(),
        };
        let manager = Manager::from_connect(pg, connect, mgr_config);
        let max_age = config.max_connection_age;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(Runtime::Tokio1)
            // Never hand out a session older than max_connection_age (idle ones are also
            // retired in the background by retire_old_connections).
            .pre_recycle(Hook::sync_fn(move |_, metrics| {
                if metrics.age() > max_age {
                    Err(HookError::message("connection reached max_connection_age"))
                } else {
                    Ok(())
                }
            }))
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move { identify_session(client).await.map_err(HookError::Backend) })
            }))
            .build()
            .map_err(|e| SetupError::Pool {
                target: config.name.clone(),
                message: e.to_string(),
            })?;
        bound.register(&pool);
        Ok(Target {
            bound,
            #[cfg(feature = "aws")]
            auth: crate::aws::TargetAuth::new(&config),
            config,
            pool,
            tls,
            login,
        })
    }

    pub fn stats(&self) -> PoolStats {
        let s = self.pool.status();
        PoolStats {
            max: s.max_size,
            idle: s.available,
            in_use: s.size.saturating_sub(s.available),
        }
    }

    /// Drops idle connections older than `max_connection_age`; in-use ones go when returned.
    pub fn retire_old_connections(&self) -> usize {
        let max_age = self.config.max_connection_age;
        let before = self.pool.status().size;
        self.pool.retain(|_, m| m.age() < max_age);
        before.saturating_sub(self.pool.status().size)
    }

    /// Closes the pool and waits (bounded) until its sessions are gone.
    pub async fn close(&self) {
        self.pool.close();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.pool.status().size > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let the connection tasks send Terminate and close their sockets.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Sends a cancel request for whatever `token`'s session is running (bounded to 5 s).
    pub async fn cancel(&self, token: &tokio_postgres::CancelToken) -> Result<(), String> {
        let fut = async {
            match &self.tls {
                Tls::None => token.cancel_query(NoTls).await,
                Tls::Rustls(t) => token.cancel_query(t.clone()).await,
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err("cancel request timed out".into()),
        }
    }

    /// A session for detection probes, taken from the pool within `deadline`.
    pub async fn session(&self, deadline: Duration) -> Result<Session<'_>, CheckError> {
        Ok(Session {
            target: self,
            client: self.client(deadline).await?,
        })
    }
}

/// One pooled session used to ask what the user may read (`detect`).
pub struct Session<'a> {
    target: &'a Target,
    client: deadpool_postgres::Object,
}

impl Session<'_> {
    /// Reads one row of each of `relations` (plain lower-case names), all within `deadline`:
    /// readable, refused (42501) or missing (42P01) each. Any other outcome — a lost session,
    /// a timeout, an unexpected error — is an `Err`, never an answer (the caller must not
    /// decide on it). The queries are sent at once on this session (pipelined: one round trip
    /// for the lot; each is its own simple query, so one relation's error does not abort the
    /// others).
    ///
    /// A detection reads a few dozen relations; one after the other, at fleet start-up, that
    /// chain of round trips was most of the time until a target's first checks could run.
    pub async fn probe_all(
        &self,
        relations: &[&str],
        deadline: Duration,
    ) -> Result<Vec<Access>, CheckError> {
        let sql: Vec<String> = relations
            .iter()
            .map(|relation| {
                let plain = !relation.is_empty()
                    && relation
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if plain {
                    Ok(format!("SELECT 1 FROM {relation} LIMIT 1"))
                } else {
                    Err(CheckError::new(
                        ErrorKind::Query,
                        format!("not a relation name: {relation:?}"),
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        let token = self.client.cancel_token();
        let all = futures_util::future::join_all(sql.iter().map(|q| self.client.simple_query(q)));
        let answers = match tokio::time::timeout(deadline, all).await {
            Ok(answers) => answers,
            Err(_) => {
                let _ = self.target.cancel(&token).await;
                return Err(CheckError::new(
                    ErrorKind::Timeout,
                    format!("probing {} timed out", relations.join(", ")),
                ));
            }
        };
        answers
            .into_iter()
            .map(|answer| match answer {
                Ok(_) => Ok(Access::Readable),
                Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                    Ok(Access::Refused)
                }
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(Access::Missing),
                Err(e) => Err(classify_query_error(&e)),
            })
            .collect()
    }
}

/// Every new session names itself beyond `application_name`: on Redshift it joins the
/// `redshift_exporter` query group, which labels its queries in `stl_query.label` and
/// `sys_query_history.query_label` (so checks can leave them out) and lets WLM route them.
/// PostgreSQL has no query groups, so the `SET` is only sent where `version()` says Redshift.
pub const QUERY_GROUP: &str = "redshift_exporter";

async fn identify_session(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    // GETDATE() follows the session time zone while system tables hold UTC: a user whose
    // default time zone is not UTC would shift every time window of the pack (AWS, GETDATE
    // function: "in the current session time zone (UTC by default)"). Both Redshift and
    // PostgreSQL accept this.
    client.simple_query("SET timezone TO 'UTC'").await?;
    let rows = client.simple_query("SELECT version()").await?;
    let is_redshift = rows.iter().any(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => {
            r.get(0).is_some_and(|v| v.contains("Redshift"))
        }
        _ => false,
    });
    if is_redshift {
        client
            .simple_query(&format!("SET query_group TO '{QUERY_GROUP}'"))
            .await?;
    }
    Ok(())
}

/// Runs SQL scripts (several statements each, simple protocol) on one fresh plain-TCP session
/// to `127.0.0.1:port` as `postgres`: how `demo` sets up its throwaway databases.
pub async fn run_scripts(
    port: u16,
    database: &str,
    scripts: &[(&str, &str)],
) -> Result<(), String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(database)
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting to {database}: {}", error_chain(&e)))?;
    let task = tokio::spawn(connection);
    for (name, sql) in scripts {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("{name}: {}", error_chain(&e)))?;
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

/// Takes a session from the pool within `deadline`.
pub async fn get_client(
    pool: &Pool,
    deadline: Duration,
) -> Result<deadpool_postgres::Object, CheckError> {
    let mut timeouts = pool.timeouts();
    timeouts.wait = Some(deadline);
    timeouts.create = Some(timeouts.create.map_or(deadline, |c| c.min(deadline)));
    timeouts.recycle = Some(timeouts.recycle.map_or(deadline, |c| c.min(deadline)));
    pool.timeout_get(&timeouts)
        .await
        .map_err(classify_pool_error)
}

/// Maps a pool error to a check error.
pub fn classify_pool_error(e: PoolError) -> CheckError {
    use deadpool_postgres::TimeoutType;
    match e {
        PoolError::Timeout(TimeoutType::Wait) => CheckError::new(
            ErrorKind::PoolTimeout,
            "no pooled session became free before the check's deadline",
        ),
        PoolError::Timeout(TimeoutType::Create) => {
            CheckError::new(ErrorKind::Connect, "connecting timed out")
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            CheckError::new(ErrorKind::Connect, "checking a pooled session timed out")
        }
        PoolError::Backend(e) => classify_connect_error(&e),
        PoolError::PostCreateHook(HookError::Backend(e)) => classify_connect_error(&e),
        PoolError::PostCreateHook(e) => CheckError::new(ErrorKind::Connect, e.to_string()),
        PoolError::Closed => CheckError::new(ErrorKind::Canceled, "the pool is closed"),
        PoolError::NoRuntimeSpecified => CheckError::new(ErrorKind::Connect, "pool has no runtime"),
    }
}

/// Maps an error raised while opening a session.
pub fn classify_connect_error(e: &tokio_postgres::Error) -> CheckError {
    let message = error_chain(e);
    // Redshift's "IAM Authentication token has expired" is an auth failure whatever its code.
    let auth_code = e
        .as_db_error()
        .map(|d| d.code().code().starts_with("28") || d.message().contains("token has expired"))
        .unwrap_or(false);
    if message.contains(sha256::ERROR_PREFIX) {
        return CheckError::new(ErrorKind::Auth, message);
    }
    if let Some(code) = unsupported_auth_code(&message) {
        let what = match code.as_str() {
            "13" => {
                "Redshift's SHA-256 password digest (the user's password was stored as sha256|...), which the exporter answers only over TLS and not for deployment = \"postgres\": set sslmode = \"require\" or \"verify-full\", or"
            }
            "14" => {
                "an identity-provider token (native IdP authentication), which the exporter does not do:"
            }
            _ => "a method this client does not implement:",
        };
        return CheckError::new(
            ErrorKind::Auth,
            format!(
                "the server asked for authentication method {code}, {what} give the exporter user an MD5 password (ALTER USER ... PASSWORD 'plain text' stores MD5) or use IAM temporary credentials ({message})"
            ),
        );
    }
    if auth_code {
        CheckError::new(ErrorKind::Auth, message)
    } else {
        CheckError::new(ErrorKind::Connect, message)
    }
}

/// Maps an error raised while running a query on an open session.
pub fn classify_query_error(e: &tokio_postgres::Error) -> CheckError {
    if e.as_db_error().is_some() {
        CheckError::new(ErrorKind::Query, error_chain(e))
    } else {
        // The session broke under us (server restart, network): that is a connection problem.
        CheckError::new(ErrorKind::Connect, error_chain(e))
    }
}

/// `unknown authentication tag 13` → `13`.
fn unsupported_auth_code(message: &str) -> Option<String> {
    let rest = &message[message.find("unknown authentication tag")? + 26..];
    let code: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (!code.is_empty()).then_some(code)
}

/// One line describing a driver error: since tokio-postgres 0.7.15 `Display` says only
/// "db error", so show the SQLSTATE and server message, or walk the source chain.
pub fn error_chain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests;
