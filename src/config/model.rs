//! The validated configuration: what the rest of the exporter reads ([`Config`],
//! [`TargetConfig`], [`CheckConfig`], ...), plus [`Secret`], which keeps passwords out of
//! `Debug` output.
//!
//! Plain data with a few helpers. It does not parse or validate anything (that is
//! [`super::validate`] and its siblings), and it does not know how a target is connected to
//! ([`crate::db`]) or how a schedule is run ([`crate::schedule`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{ArchiveSettings, Problem, Retention};

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub exporter: ExporterConfig,
    /// Targets in name order; checks refer to them by index.
    pub targets: Vec<Arc<TargetConfig>>,
    /// Checks in file order.
    pub checks: Vec<Arc<CheckConfig>>,
}

/// `[exporter]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// `host:port` the HTTP server binds; `--web.listen-address` overrides it.
    pub listen_address: String,
    /// Prefix of data metric names.
    pub namespace: String,
    /// How much the HTML pages show (`page_detail`).
    pub page_detail: PageDetail,
    /// Root of the CSV archive; `None` when archiving is switched off.
    pub archive_dir: Option<PathBuf>,
    pub default_interval: Duration,
    pub default_timeout: Duration,
    /// How long shutdown waits for running checks before cancelling them server-side.
    pub drain_timeout: Duration,
    /// Default cap on the series one check run may produce (per target).
    pub max_series_per_check: usize,
    /// Retention, compression, serving and S3 upload of archive files.
    pub archive: ArchiveSettings,
    /// The files `include` matched, in the order their checks were read (shown by
    /// `check-config`; re-read on every reload).
    pub included_files: Vec<PathBuf>,
}

/// How the connection to a target is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS, certificate not verified (libpq's `require`).
    Require,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Which kind of Redshift a target is, or should be assumed to be: what decides which of a
/// pair of check variants (STL/STV-based or SYS-based) runs on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Deployment {
    /// A provisioned cluster whose STL/STV/SVL/SVCS relations this user can read.
    Provisioned,
    /// A Serverless workgroup (SYS_* and a few SVV views; STL/STV refuse with 42501).
    Serverless,
    /// A provisioned cluster that offers this user only the SYS_* views: a Multi-AZ cluster
    /// (which has no other monitoring views), or one whose user may not read STL/STV.
    MultiAz,
    /// Not Redshift (no Redshift system relation exists): plain PostgreSQL and the like.
    Postgres,
}

impl Deployment {
    pub const ALL: [Deployment; 4] = [
        Deployment::Provisioned,
        Deployment::Serverless,
        Deployment::MultiAz,
        Deployment::Postgres,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Deployment::Provisioned => "provisioned",
            Deployment::Serverless => "serverless",
            Deployment::MultiAz => "multi_az",
            Deployment::Postgres => "postgres",
        }
    }

    pub fn from_name(name: &str) -> Option<Deployment> {
        Deployment::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it is handed to the database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How the exporter proves who it is to a target (the user name is [`TargetConfig::user`]).
///
/// One variant per credential source. Each variant is turned into driver settings in one
/// place, [`crate::db`]'s pool builder, with a `match`; a new source (IAM temporary
/// credentials from `GetClusterCredentials`, a Secrets Manager secret) is a new variant here,
/// its keys in [`super::target`], and a new arm there. Nothing else reads credentials.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// A static password from `password` or `password_file`. `None` sends no password and lets
    /// the server decide (e.g. `trust` in `pg_hba.conf`, for tests).
    Password(Option<Secret>),
    /// IAM temporary credentials (`[targets.NAME.iam]`, cargo feature `aws`): user and password
    /// come from the API for each new session; `user` is `iam.db_user` or empty.
    Iam(super::IamPlan),
    /// The login from a Secrets Manager secret (`password_secret`, cargo feature `aws`); `user`
    /// is empty, the secret's `username` is used.
    Secret(super::SecretRef),
}

/// `[targets.NAME]`: one database to watch, with its own connection pool.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    pub name: String,
    /// Host name: what is resolved (unless `hostaddr` is set) and what TLS verifies.
    pub host: String,
    /// IP address to connect to instead of resolving `host` (SSH tunnels, VPC endpoints):
    /// the certificate is still checked against `host`.
    pub hostaddr: Option<std::net::IpAddr>,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// How the exporter authenticates to this target.
    pub auth: Auth,
    pub sslmode: SslMode,
    /// Extra PEM bundle trusted for `verify-full` (e.g. Amazon's `amazon-trust-ca-bundle.crt`).
    pub ca_file: Option<PathBuf>,
    /// Upper bound on concurrent sessions, hence on concurrently running checks.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// Sent at start-up so the exporter's own sessions can be recognised and excluded.
    pub application_name: String,
    /// Connections older than this are retired (Redshift drops idle sessions after hours).
    pub max_connection_age: Duration,
    /// TCP keepalive idle time; the OS default (2 h) outlives AWS NAT idle timeouts.
    pub keepalives_idle: Duration,
    /// `None` means detect at connect time.
    pub deployment: Option<Deployment>,
    /// Static labels (`labels = { env = "prod" }`), sorted by name: added to every series of
    /// the target, data and self metrics, and to `redshift_exporter_target_info`. Not part of
    /// the connection, so a change keeps the pool ([`TargetConfig::same_connection`]).
    pub labels: Vec<(String, String)>,
    /// `databases`: the databases per-database checks run on; `None` runs them on
    /// `database` only. `database` stays the home database either way (discovery and
    /// cluster-scoped checks connect there).
    pub databases: Option<super::Databases>,
    /// How often the `{ include, exclude }` form re-reads `pg_database`.
    pub databases_refresh: Duration,
    /// What this entry is in the effective configuration ([`crate::discovery::expand`] makes
    /// one entry per database of a target, each with its own pool); as parsed, every target
    /// is its home instance.
    pub instance: Instance,
}

/// The role of one (target, database) entry of the effective configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    /// The target's home `database`: cluster-scoped checks run here, and the target-wide
    /// series (`target_info`) come from here only.
    pub home: bool,
    /// Per-database checks run here (the database is one of the target's databases).
    pub member: bool,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            home: true,
            member: true,
        }
    }
}

impl TargetConfig {
    /// Same database, credentials and session settings: the pool can be kept across a
    /// reload (static labels, the database selection and the entry's role may differ).
    pub fn same_connection(&self, other: &TargetConfig) -> bool {
        let strip = |t: &TargetConfig| TargetConfig {
            labels: Vec::new(),
            databases: None,
            databases_refresh: Duration::ZERO,
            instance: Instance::default(),
            ..t.clone()
        };
        strip(self) == strip(other)
    }
}

/// When a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every so often (whole seconds; the scheduler has one-second resolution).
    Interval(Duration),
    /// A six-field cron expression, seconds first, UTC.
    Cron(String),
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => write!(f, "cron \"{c}\""),
        }
    }
}

/// `page_detail`: what the HTML pages (`/`, `/checks/...`) show beyond what `/metrics` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageDetail {
    /// SQL text, error messages and result rows.
    #[default]
    Full,
    /// None of them: statuses, error kinds and threshold crossings only (for a page reachable
    /// by more people than the database is).
    Redacted,
}

/// One value column and the metric it becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueSpec {
    /// Column name in the result.
    pub column: String,
    /// Full metric name (namespace included).
    pub metric: String,
    pub help: String,
    /// Attention thresholds for the landing page, mirrored by the shipped alert rules.
    pub thresholds: Thresholds,
}

/// How bad a value is, by the thresholds of its [`ValueSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warn,
    Crit,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warn => "warn",
            Level::Crit => "crit",
        }
    }
}

/// `warn`, `crit` and `below` of a value column: a value beyond a threshold (above it, or
/// below it with `below = true`; strictly) needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Thresholds {
    pub warn: Option<f64>,
    pub crit: Option<f64>,
    /// Low values are bad: a value under the threshold crosses it.
    pub below: bool,
}

impl Thresholds {
    pub fn is_empty(&self) -> bool {
        self.warn.is_none() && self.crit.is_none()
    }

    /// The worst level `v` crosses, with the threshold it crosses (NaN crosses nothing).
    pub fn level(&self, v: f64) -> Option<(Level, f64)> {
        let beyond = |t: f64| if self.below { v < t } else { v > t };
        match (self.crit, self.warn) {
            (Some(c), _) if beyond(c) => Some((Level::Crit, c)),
            (_, Some(w)) if beyond(w) => Some((Level::Warn, w)),
            _ => None,
        }
    }
}

/// `[[checks]]`: one query, its schedule and how its rows map to metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    pub name: String,
    pub help: String,
    pub query: String,
    /// The system relations `query` reads (`lint::system_relations`), worked out once at
    /// validation: detection probes them and gating decides on them for every target, and
    /// at a fleet's scale parsing the SQL each time was a fifth of the start-up CPU.
    pub reads: Vec<String>,
    /// The included file the check came from (`None`: the main file), for lint messages.
    pub file: Option<String>,
    /// Line of the file where the query text starts, for lint messages.
    pub query_line: Option<usize>,
    pub schedule: Schedule,
    pub timeout: Duration,
    /// Label columns, in order; each becomes a label of the same name.
    pub labels: Vec<String>,
    pub values: Vec<ValueSpec>,
    /// Indices into [`Config::targets`].
    pub targets: Vec<usize>,
    pub archive: bool,
    /// Rows beyond this many series are dropped and counted.
    pub max_series: usize,
    /// Where the check applies; a target of another flavour skips it.
    pub deployments: Vec<Deployment>,
    /// How long this check's archive files are kept (age), and the cap on their bytes per target.
    pub archive_retention: Retention,
    /// Static labels (`static_labels = { team = "dba" }`), sorted by name: added to every
    /// series of the check, data and self metrics.
    pub static_labels: Vec<(String, String)>,
    /// `scope`: once per target on its home database, or on each of its databases.
    pub scope: super::Scope,
}

impl CheckConfig {
    pub fn applies_to(&self, d: Deployment) -> bool {
        self.deployments.contains(&d)
    }

    /// Same check, as far as running it and mapping its rows go (target indices and the
    /// query's position in the file may differ between two versions of a config).
    pub fn same_as(&self, other: &CheckConfig) -> bool {
        let strip = |c: &CheckConfig| CheckConfig {
            targets: Vec::new(),
            file: None,
            query_line: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }
}

impl Config {
    /// Redshift dialect warnings for every check, located like problems.
    pub fn lint(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, c) in self.checks.iter().enumerate() {
            for f in crate::lint::lint(&c.query) {
                out.push(Problem {
                    file: c.file.clone(),
                    path: format!("checks[{i}].query"),
                    line: c.query_line.map(|l| l + f.line),
                    message: format!("check {}: {} [{}]", c.name, f.message, f.rule),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    #[test]
    fn lint_findings_point_at_the_line_in_the_file() {
        let text = "[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"a\"\nvalues = [\"v\"]\nquery = \"\"\"\nSELECT 1 AS v,\n  now() AS t FROM stv_slices\n\"\"\"\n";
        let c = parse(text, |_| None).unwrap();
        let w = c.lint();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "checks[0].query");
        assert_eq!(w[0].line, Some(9), "{w:?}");
        assert!(w[0].message.contains("GETDATE()"));
    }
}
