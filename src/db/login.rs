//! How a target's new sessions log in: the user name and password handed to tokio-postgres for
//! each new session, and the `deadpool_postgres::Connect` implementation that opens sessions
//! with them (with Redshift's sha256 adapter on TLS sessions of targets that may be Redshift).
//!
//! Owns: the per-session choice of credentials and of TLS connector. Does not own: where
//! rotating credentials come from (the `aws` module fills [`Login`] through [`Login::set`]), pool
//! sizing and hooks (`db`), or the sha256 exchange itself (`sha256`).

use std::sync::{Arc, RwLock};

use deadpool_postgres::Connect;
use tokio_postgres::NoTls;

use std::time::Duration;

#[cfg(feature = "aws")]
use super::ErrorKind;
use super::sha256::DigestTls;
use super::{CheckError, Target, Tls, get_client};
use crate::config::Secret;

/// A user name and password for new sessions.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Option<Arc<Secret>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The credentials the next new session of a target uses. Open sessions keep the ones they
/// logged in with: changing these never touches them.
#[derive(Debug)]
pub struct Login {
    current: RwLock<Arc<Credentials>>,
}

impl Login {
    pub fn new(credentials: Credentials) -> Self {
        Login {
            current: RwLock::new(Arc::new(credentials)),
        }
    }

    pub fn current(&self) -> Arc<Credentials> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the credentials for sessions opened from now on.
    pub fn set(&self, credentials: Arc<Credentials>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, &credentials) {
            *current = credentials;
        }
    }
}

/// Opens one session for the pool: the target's settings plus the current credentials.
pub(super) struct TargetConnect {
    pub tls: Tls,
    /// Answer Redshift's sha256 request (code 13) on TLS sessions.
    pub digest: bool,
    pub login: Arc<Login>,
    /// The target-wide session bound: a permit is taken before each session opens and kept by
    /// its connection task until the session closes.
    pub bound: Arc<super::bound::Bound>,
}

type ConnectFuture<'a> = std::pin::Pin<
    Box<
        dyn Future<
                Output = Result<
                    (tokio_postgres::Client, tokio::task::JoinHandle<()>),
                    tokio_postgres::Error,
                >,
            > + Send
            + 'a,
    >,
>;

impl Connect for TargetConnect {
    fn connect(&self, pg_config: &tokio_postgres::Config) -> ConnectFuture<'_> {
        let creds = self.login.current();
        let mut pg = pg_config.clone();
        pg.user(&creds.user);
        if let Some(pw) = &creds.password {
            pg.password(pw.expose());
        }
        let tls = self.tls.clone();
        let digest = self.digest;
        let bound = self.bound.clone();
        Box::pin(async move {
            // Bounded by deadpool's create timeout (see `bound`); a failed connect drops it.
            let permit = bound.acquire().await;
            let (client, task) = match tls {
                Tls::None => {
                    let (client, conn) = pg.connect(NoTls).await?;
                    (client, spawn_connection(conn, permit))
                }
                Tls::Rustls(t) if digest => {
                    let tls = DigestTls {
                        inner: t,
                        password: creds.password.clone(),
                    };
                    let (client, conn) = pg.connect(tls).await?;
                    (client, spawn_connection(conn, permit))
                }
                Tls::Rustls(t) => {
                    let (client, conn) = pg.connect(t).await?;
                    (client, spawn_connection(conn, permit))
                }
            };
            Ok((client, task))
        })
    }
}

/// Drives a session's connection in the background, as deadpool's own connector does,
/// holding the session's permit of the target's bound until the connection ends.
fn spawn_connection<F>(
    conn: F,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(target: "deadpool.postgres", "Connection error: {}", e);
        }
        // The connection ends when Terminate is sent; the server's backend leaves a moment
        // later. Holding the permit a little longer keeps the bound true as the server counts
        // sessions (pg_stat_activity, Redshift's connection limit), not only as we do.
        tokio::time::sleep(super::bound::SERVER_EXIT_GRACE).await;
        drop(permit);
    })
}

impl Target {
    /// The configuration was reloaded and this target kept: a Secrets Manager login is read
    /// again for the next new session (the secret may have been rotated on purpose).
    pub fn reloaded(&self) {
        #[cfg(feature = "aws")]
        if let Some(auth) = &self.auth {
            auth.reload();
        }
    }

    /// The database user this target's AWS-provided login last resolved to (`IAM:exporter`,
    /// `IAMR:role`, the secret's `username`); `None` for a configured user, before the first
    /// fetch, and in a build without the `aws` feature. The runner copies it into the store
    /// (`Store::set_db_user`) for the landing page.
    pub fn db_user(&self) -> Option<String> {
        #[cfg(feature = "aws")]
        if let Some(auth) = &self.auth {
            return auth.db_user();
        }
        None
    }

    /// Takes a session from the pool within `deadline`. When AWS provides the credentials,
    /// they are made current first if a new session may be opened, and a refused login (an
    /// expired token, a rotated password) makes one re-fetch and one more try.
    pub async fn client(
        &self,
        deadline: Duration,
    ) -> Result<deadpool_postgres::Object, CheckError> {
        #[cfg(feature = "aws")]
        if let Some(auth) = &self.auth {
            return self.client_with_aws(auth, deadline).await;
        }
        get_client(&self.pool, deadline).await
    }

    #[cfg(feature = "aws")]
    async fn client_with_aws(
        &self,
        auth: &crate::aws::TargetAuth,
        deadline: Duration,
    ) -> Result<deadpool_postgres::Object, CheckError> {
        let end = tokio::time::Instant::now() + deadline;
        let mut retried = false;
        loop {
            // An idle session is reused without a login; otherwise one may be opened.
            if retried || self.pool.status().available == 0 {
                let creds = tokio::time::timeout_at(end, auth.credentials())
                    .await
                    .map_err(|_| {
                        CheckError::new(
                            ErrorKind::Aws,
                            format!("{} did not answer before the deadline", auth.api()),
                        )
                    })?
                    .map_err(|e| {
                        CheckError::new(ErrorKind::Aws, format!("{} failed: {e}", auth.api()))
                    })?;
                self.login.set(creds);
            }
            let used = self.login.current();
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            match get_client(&self.pool, left).await {
                Err(e) if e.kind == ErrorKind::Auth && !retried => {
                    auth.login_failed(&used).await;
                    tracing::info!(
                        target = %self.config.name,
                        db_user = %used.user,
                        error = %e.message,
                        "login refused; fetching the credentials again"
                    );
                    retried = true;
                }
                r => return r,
            }
        }
    }
}
