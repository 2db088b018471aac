//! The database-discovery query: which databases of a cluster accept connections, read from
//! the target's home database for [`crate::discovery`].
//!
//! Owns the SQL and its deadline. Does not decide which of the names are watched (the
//! `include`/`exclude` patterns are [`crate::config::Databases::select`]) or when it runs
//! (`app`'s timer).

use std::time::{Duration, Instant};

use super::{CheckError, ErrorKind, Target, classify_query_error};

/// Databases a session could be opened to. `pg_database` is a catalog on both PostgreSQL and
/// Redshift, where it keeps PostgreSQL 8's columns including `datistemplate` and
/// `datallowconn` (AWS, Amazon Redshift Database Developer Guide, "System catalog tables" /
/// PG_DATABASE_INFO, "extends the PostgreSQL catalog table PG_DATABASE":
/// https://docs.aws.amazon.com/redshift/latest/dg/r_PG_DATABASE_INFO.html). Templates and
/// databases that refuse connections (template0) can never be checked. `padb_harvest` is
/// Redshift's internal database (the shipped `xid_wraparound` check leaves it out for the
/// same reason): never a user's, so it is left out here whatever the patterns say.
pub const DATABASES_SQL: &str = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn AND datname <> 'padb_harvest'";

impl Target {
    /// The names of the databases of this target's cluster, asked on one pooled session,
    /// pool wait and query both within `deadline` (a late answer is cancelled server-side).
    pub async fn databases(&self, deadline: Duration) -> Result<Vec<String>, CheckError> {
        let start = Instant::now();
        let client = self.client(deadline).await?;
        let left = deadline.saturating_sub(start.elapsed());
        let token = client.cancel_token();
        match tokio::time::timeout(left, client.simple_query(DATABASES_SQL)).await {
            Ok(Ok(messages)) => Ok(messages
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect()),
            Ok(Err(e)) => Err(classify_query_error(&e)),
            Err(_) => {
                let _ = self.cancel(&token).await;
                Err(CheckError::new(
                    ErrorKind::Timeout,
                    "reading pg_database timed out",
                ))
            }
        }
    }
}
