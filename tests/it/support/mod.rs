//! Test harness shared by every integration-test module, one concern a module:
//! - [`work`]: the per-test work folder ([`WorkDir`]);
//! - [`config`]: TOML builders for the exporter, target and check sections;
//! - [`pg`]: the PostgreSQL the tests run against ([`database`], [`PgCluster`]), on top of the
//!   crate's own throwaway cluster (`redshift_exporter::pgtemp`);
//! - [`daemon`]: the exporter as a subprocess (start, signals, scrapes, exit waits);
//! - [`logs`]: its JSON log lines ([`LogLine`]);
//! - [`http`]: the one HTTP client (plain requests and a raw exchange);
//! - [`cli`]: one-shot subcommands with captured output ([`run_cli`]); [`demo`]: the `demo`
//!   subcommand as a process;
//! - [`prom`]: a Prometheus text-format parser; [`aws`]: an AWS API stand-in; [`moto`]: moto as
//!   the AWS of the S3 and IAM tests;
//! - here: the self-metric names ([`names`]), a generic deadline-bounded poll ([`wait_for`]),
//!   and helpers for watching the exporter's sessions in `pg_stat_activity`.

#![allow(dead_code)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod http;
pub mod logs;
#[cfg(feature = "aws")]
pub mod moto;
pub mod pg;
pub mod prom;
pub mod work;

use std::time::Duration;

// The names the test modules use through `use crate::support::*`; not every build (features)
// uses each one.
#[allow(unused_imports)]
pub use cli::{CliOutput, check_config, once, run_cli};
#[allow(unused_imports)]
pub use config::{check_toml, config_toml, exporter_toml, toml_str};
#[allow(unused_imports)]
pub use daemon::{Daemon, start_with_checks};
#[allow(unused_imports)]
pub use http::HttpResponse;
#[allow(unused_imports)]
pub use logs::LogLine;
#[allow(unused_imports)]
pub use pg::{PgCluster, TestDb, database};
#[allow(unused_imports)]
pub use prom::Metrics;
#[allow(unused_imports)]
pub use work::WorkDir;

/// Shorthand for whole seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Shorthand for milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Number of other sessions in the client's current database that are actively running a statement
/// whose text contains `needle` (our own session is excluded, and the needle is passed as a
/// parameter so this query never matches itself).
pub async fn count_active(client: &tokio_postgres::Client, needle: &str) -> i64 {
    let pattern = format!(
        "%{}%",
        needle
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND state = 'active' AND query LIKE $1",
            &[&pattern],
        )
        .await
        .expect("pg_stat_activity query failed");
    row.get::<_, i64>(0)
}

/// Waits (every 50 ms, up to `within`) until statements containing `needle` are running
/// (`running = true`: at least one) or gone (`false`).
pub async fn wait_statements(
    client: &tokio_postgres::Client,
    needle: &str,
    running: bool,
    within: Duration,
) {
    let what = format!(
        "statements containing {needle:?} to be {}",
        if running { "running" } else { "gone" }
    );
    wait_for(&what, within, ms(50), || async move {
        match (count_active(client, needle).await, running) {
            (0, false) => Ok(()),
            (n, true) if n > 0 => Ok(()),
            (n, _) => Err(format!("{n} running")),
        }
    })
    .await;
}

/// A daemon whose only check, `stuck`, runs `pg_sleep(30)` (timeout 60 s, hourly), observed
/// running on the server: the starting point of the shutdown tests. Returns the daemon, a
/// client on the same database, and the work folder to keep alive.
pub async fn daemon_with_stuck_check(
    drain_timeout: &str,
) -> (Daemon, tokio_postgres::Client, WorkDir) {
    let db = database().await;
    let work = WorkDir::new();
    let text = exporter_toml(
        &work.archive(),
        &format!("drain_timeout = \"{drain_timeout}\""),
    ) + "\n"
        + &db.target_toml("main", "")
        + &check_toml(
            "stuck",
            "SELECT 1 AS v FROM pg_sleep(30)",
            "values = [\"v\"]\ninterval = \"1h\"\ntimeout = \"60s\"",
        );
    let cfg = work.write("checks.toml", &text);
    let client = db.connect().await;
    let d = Daemon::start(&cfg).await;
    wait_statements(&client, "pg_sleep(30)", true, secs(6)).await;
    (d, client, work)
}

/// Number of sessions in the client's current database with this `application_name` (any state).
pub async fn count_sessions(client: &tokio_postgres::Client, application_name: &str) -> i64 {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1",
            &[&application_name],
        )
        .await
        .expect("pg_stat_activity query failed");
    row.get::<_, i64>(0)
}

/// Self-metric names from the interface contract.
pub mod names {
    pub const SUCCESS: &str = "redshift_exporter_check_success";
    pub const DURATION: &str = "redshift_exporter_check_duration_seconds";
    pub const ROWS: &str = "redshift_exporter_check_rows";
    pub const LAST_RUN: &str = "redshift_exporter_check_last_run_timestamp_seconds";
    pub const LAST_SUCCESS: &str = "redshift_exporter_check_last_success_timestamp_seconds";
    pub const RUNS: &str = "redshift_exporter_check_runs_total";
    pub const ERRORS: &str = "redshift_exporter_check_errors_total";
    pub const SAMPLE_ERRORS: &str = "redshift_exporter_sample_errors_total";
    pub const ARCHIVE_FILES: &str = "redshift_exporter_archive_files_total";
    pub const ARCHIVE_ERRORS: &str = "redshift_exporter_archive_errors_total";
    pub const TARGET_UP: &str = "redshift_exporter_target_up";
    pub const POOL_CONNECTIONS: &str = "redshift_exporter_pool_connections";
    pub const POOL_MAX: &str = "redshift_exporter_pool_max_connections";
    pub const BUILD_INFO: &str = "redshift_exporter_build_info";
}

/// Polls `probe` every `every` until it returns `Ok(value)`, and returns the value. An `Err`
/// describes the state seen; after `within` the test panics with `what` and the last description.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, every: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if std::time::Instant::now() > deadline => {
                panic!("timed out after {within:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
