//! Configuration: `checks.toml` → validated [`Config`].
//!
//! Parsing happens in two stages, as in ripgrep and rust-csv:
//! 1. *raw*: serde reads the TOML into loosely typed structs that remember where each value
//!    came from ([`toml::Spanned`]); keys serde does not know are collected, not fatal;
//! 2. *validated*: [`validate`] expands `${VAR}` references, parses durations, checks names
//!    and references, and collects **every** problem with its TOML path and line.
//!
//! The same [`load`] function serves start-up, `check-config` and `once`, so they can never
//! disagree about what a valid file is. This module knows nothing about databases, metrics or
//! files other than the config itself (and `password_file`, which is part of the config).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod archive;
mod aws;
pub use archive::{ArchiveSettings, Compression, Retention, S3Config, parse_bytes};
pub use aws::{AwsLogin, HostHint, IamApi, IamPlan, SecretRef, host_hint, secret_ref};

/// Where data metrics' names start unless `[exporter] namespace` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "redshift";
/// Prefix of the exporter's own metrics; data metric names may not collide with it.
pub const SELF_PREFIX: &str = "redshift_exporter_";
/// Reserved label: every data series carries the target it came from.
pub const TARGET_LABEL: &str = "target";

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
    /// From `password` or `password_file`; `None` lets the server decide (trust, for tests).
    pub password: Option<Secret>,
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
    /// Credentials from AWS (IAM or Secrets Manager) instead of `user`/`password`; `user` is
    /// then `iam.db_user` or empty.
    pub aws: Option<AwsLogin>,
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

/// One value column and the metric it becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueSpec {
    /// Column name in the result.
    pub column: String,
    /// Full metric name (namespace included).
    pub metric: String,
    pub help: String,
}

/// `[[checks]]`: one query, its schedule and how its rows map to metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    pub name: String,
    pub help: String,
    pub query: String,
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
                    path: format!("checks[{i}].query"),
                    line: c.query_line.map(|l| l + f.line),
                    message: format!("check {}: {} [{}]", c.name, f.message, f.rule),
                });
            }
        }
        out
    }
}

/// One configuration problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// TOML key path, e.g. `checks[2].interval`.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (true, Some(l)) => write!(f, "line {l}: {}", self.message),
            (true, None) => write!(f, "{}", self.message),
            (false, Some(l)) => write!(f, "{} (line {l}): {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} problem{} found",
            self.file.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Reads, parses and validates a configuration file with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem {
            path: String::new(),
            line: None,
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    parse(&text, |k| std::env::var(k).ok()).map_err(|problems| ConfigError {
        file: path.to_owned(),
        problems,
    })
}

/// Parses and validates configuration text; `env` resolves `${VAR}` references.
pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
    let lines = LineIndex::new(text);
    let mut unknown = Vec::new();
    let raw: RawConfig = match toml::Deserializer::parse(text)
        .and_then(|de| serde_ignored::deserialize(de, |p| unknown.push(p.to_string())))
    {
        Ok(raw) => raw,
        Err(e) => {
            return Err(vec![Problem {
                path: String::new(),
                line: e.span().map(|s| lines.line(s.start)),
                message: e.message().trim().to_string(),
            }]);
        }
    };
    let mut v = Validator {
        src: text,
        lines,
        env: &env,
        problems: Vec::new(),
        missing_vars: Vec::new(),
    };
    for path in unknown {
        let path = display_path(&path);
        let line = v.lines.find_key(text, &path);
        v.problems.push(Problem {
            path,
            line,
            message: "unknown key".into(),
        });
    }
    let config = v.validate(raw);
    for (name, path, line) in std::mem::take(&mut v.missing_vars) {
        v.problems.push(Problem {
            path,
            line,
            message: format!(
                "environment variable {name} is not set (and no ${{{name}:-default}} given)"
            ),
        });
    }
    if v.problems.is_empty() {
        Ok(config)
    } else {
        v.problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(v.problems)
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: raw serde structures.

#[derive(Deserialize, Default)]
struct RawConfig {
    exporter: Option<RawExporter>,
    #[serde(default)]
    targets: BTreeMap<String, Spanned<RawTarget>>,
    #[serde(default)]
    checks: Vec<Spanned<RawCheck>>,
}

#[derive(Deserialize, Default)]
struct RawExporter {
    listen_address: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    archive_dir: Option<Spanned<String>>,
    archive: Option<Spanned<bool>>,
    default_interval: Option<Spanned<String>>,
    default_timeout: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
    max_series_per_check: Option<Spanned<i64>>,
    archive_max_age: Option<Spanned<String>>,
    archive_max_bytes: Option<Spanned<StrOrInt>>,
    archive_compression: Option<Spanned<String>>,
    archive_serve: Option<Spanned<bool>>,
    archive_retention_interval: Option<Spanned<String>>,
    s3: Option<Spanned<archive::RawS3>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrInt {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
struct RawTarget {
    host: Option<Spanned<String>>,
    hostaddr: Option<Spanned<String>>,
    port: Option<Spanned<StrOrInt>>,
    database: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    sslmode: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    pool_size: Option<Spanned<i64>>,
    connect_timeout: Option<Spanned<String>>,
    application_name: Option<Spanned<String>>,
    max_connection_age: Option<Spanned<String>>,
    keepalives_idle: Option<Spanned<String>>,
    deployment: Option<Spanned<String>>,
    password_secret: Option<Spanned<String>>,
    iam: Option<Spanned<aws::RawIam>>,
}

#[derive(Deserialize)]
struct RawCheck {
    name: Option<Spanned<String>>,
    help: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    labels: Vec<Spanned<String>>,
    #[serde(default)]
    values: Vec<Spanned<toml::Value>>,
    targets: Option<Vec<Spanned<String>>>,
    archive: Option<Spanned<bool>>,
    max_series: Option<Spanned<i64>>,
    deployment: Option<Vec<Spanned<String>>>,
    archive_max_age: Option<Spanned<String>>,
    archive_max_bytes: Option<Spanned<StrOrInt>>,
}

// ---------------------------------------------------------------------------------------------
// Stage 2: validation.

struct Validator<'a> {
    /// The file's text, for locating the first line of multi-line strings.
    src: &'a str,
    lines: LineIndex,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
    /// (variable, path, line) of every unset variable, reported together at the end.
    missing_vars: Vec<(String, String, Option<usize>)>,
}

impl Validator<'_> {
    fn problem(
        &mut self,
        path: impl Into<String>,
        span_start: Option<usize>,
        msg: impl Into<String>,
    ) {
        let line = span_start.map(|s| self.lines.line(s));
        self.problems.push(Problem {
            path: path.into(),
            line,
            message: msg.into(),
        });
    }

    /// Expands `${VAR}` / `${VAR:-default}` / `$${` in a string value.
    fn string(&mut self, path: &str, v: &Spanned<String>) -> String {
        let line = Some(self.lines.line(v.span().start));
        let (out, missing) = expand_env(v.get_ref(), self.env);
        for name in missing {
            self.missing_vars.push((name, path.to_string(), line));
        }
        out
    }

    fn opt_string(&mut self, path: &str, v: &Option<Spanned<String>>) -> Option<String> {
        v.as_ref().map(|s| self.string(path, s))
    }

    fn duration(&mut self, path: &str, v: &Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(s) = v else { return default };
        let text = self.string(path, s);
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() => {
                self.problem(path, Some(s.span().start), "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.problem(
                    path,
                    Some(s.span().start),
                    format!(
                        "invalid duration \"{text}\": {e} (examples: \"30s\", \"5m\", \"1h 30m\")"
                    ),
                );
                default
            }
        }
    }

    fn positive(
        &mut self,
        path: &str,
        v: &Option<Spanned<i64>>,
        default: usize,
        max: usize,
    ) -> usize {
        let Some(n) = v else { return default };
        match usize::try_from(*n.get_ref()) {
            Ok(x) if (1..=max).contains(&x) => x,
            _ => {
                self.problem(
                    path,
                    Some(n.span().start),
                    format!("must be between 1 and {max}"),
                );
                default
            }
        }
    }

    fn validate(&mut self, raw: RawConfig) -> Config {
        let e = raw.exporter.unwrap_or_default();
        let listen_address = self
            .opt_string("exporter.listen_address", &e.listen_address)
            .unwrap_or_else(|| "0.0.0.0:9439".into());
        if let Some(s) = &e.listen_address {
            if !listen_address.contains(':') {
                self.problem(
                    "exporter.listen_address",
                    Some(s.span().start),
                    format!("\"{listen_address}\" is not HOST:PORT"),
                );
            }
        }
        let namespace = self
            .opt_string("exporter.namespace", &e.namespace)
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        if !is_metric_name(&namespace) || namespace.contains(':') {
            self.problem(
                "exporter.namespace",
                e.namespace.as_ref().map(|s| s.span().start),
                format!(
                    "\"{namespace}\" is not a valid metric name prefix ([a-zA-Z_][a-zA-Z0-9_]*)"
                ),
            );
        }
        let archive_on = e.archive.as_ref().is_none_or(|a| *a.get_ref());
        let archive_dir = self
            .opt_string("exporter.archive_dir", &e.archive_dir)
            .unwrap_or_else(|| "archive".into());
        if archive_dir.trim().is_empty() {
            self.problem(
                "exporter.archive_dir",
                e.archive_dir.as_ref().map(|s| s.span().start),
                "must not be empty (set archive = false to switch archiving off)",
            );
        }
        let exporter = ExporterConfig {
            listen_address,
            namespace,
            archive_dir: archive_on.then(|| PathBuf::from(archive_dir)),
            default_interval: self.duration(
                "exporter.default_interval",
                &e.default_interval,
                Duration::from_secs(300),
            ),
            default_timeout: self.duration(
                "exporter.default_timeout",
                &e.default_timeout,
                Duration::from_secs(60),
            ),
            drain_timeout: self.duration(
                "exporter.drain_timeout",
                &e.drain_timeout,
                Duration::from_secs(30),
            ),
            max_series_per_check: self.positive(
                "exporter.max_series_per_check",
                &e.max_series_per_check,
                10_000,
                10_000_000,
            ),
            archive: self.archive_settings(&e),
        };

        if raw.targets.is_empty() {
            self.problem(
                "targets",
                None,
                "at least one [targets.NAME] table is required",
            );
        }
        let mut targets = Vec::new();
        for (name, t) in &raw.targets {
            let start = t.span().start;
            targets.push(Arc::new(self.target(name, start, t.get_ref())));
        }
        let target_names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();

        if raw.checks.is_empty() {
            self.problem("checks", None, "at least one [[checks]] entry is required");
        }
        let mut checks: Vec<Arc<CheckConfig>> = Vec::new();
        let mut names = HashSet::new();
        let mut metrics: BTreeMap<String, (String, Vec<Deployment>)> = BTreeMap::new();
        for (i, c) in raw.checks.iter().enumerate() {
            let check = self.check(i, c, &exporter, &target_names);
            let path = format!("checks[{i}]");
            let duplicate = !check.name.is_empty() && !names.insert(check.name.clone());
            if duplicate {
                self.problem(
                    format!("{path}.name"),
                    c.get_ref().name.as_ref().map(|s| s.span().start),
                    format!("duplicate check name \"{}\"", check.name),
                );
            }
            // A duplicate name's metrics collide by construction; one problem is enough.
            // Two checks may feed one metric only when no target can run both (disjoint
            // deployments: the provisioned and Serverless variants of one measurement), so
            // their series can never collide.
            for v in check.values.iter().filter(|_| !duplicate) {
                match metrics.get(&v.metric) {
                    None => {
                        metrics.insert(
                            v.metric.clone(),
                            (check.name.clone(), check.deployments.clone()),
                        );
                    }
                    Some((other, other_deployments)) => {
                        if check
                            .deployments
                            .iter()
                            .any(|d| other_deployments.contains(d))
                        {
                            self.problem(
                                format!("{path}.values"),
                                Some(c.span().start),
                                format!(
                                    "metric \"{}\" is also produced by check \"{other}\" and a target could run both; give one of them a values name override (checks may share a metric only when their deployments differ)",
                                    v.metric
                                ),
                            );
                        }
                    }
                }
            }
            checks.push(Arc::new(check));
        }
        Config {
            exporter,
            targets,
            checks,
        }
    }

    fn target(&mut self, name: &str, start: usize, t: &RawTarget) -> TargetConfig {
        let p = |k: &str| format!("targets.{name}.{k}");
        if !is_identifier(name) {
            self.problem(
                format!("targets.{name}"),
                Some(start),
                "target names must match [a-z_][a-z0-9_-]* (they become a label value and a folder name)",
            );
        }
        let required = |v: &mut Self, key: &str, s: &Option<Spanned<String>>| -> String {
            match s {
                Some(s) => {
                    let out = v.string(&p(key), s);
                    if out.trim().is_empty() && !v.missing_vars.iter().any(|m| m.1 == p(key)) {
                        v.problem(p(key), Some(s.span().start), "must not be empty");
                    }
                    out
                }
                None => {
                    v.problem(p(key), Some(start), "is required");
                    String::new()
                }
            }
        };
        let host = required(self, "host", &t.host);
        let hostaddr = match &t.hostaddr {
            None => None,
            Some(s) => {
                let text = self.string(&p("hostaddr"), s);
                match text.trim().parse::<std::net::IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.problem(
                            p("hostaddr"),
                            Some(s.span().start),
                            format!("\"{text}\" is not an IP address"),
                        );
                        None
                    }
                }
            }
        };
        let aws_keys = t.iam.is_some() || t.password_secret.is_some();
        let user = if aws_keys {
            self.opt_string(&p("user"), &t.user).unwrap_or_default()
        } else {
            required(self, "user", &t.user)
        };
        let database = self
            .opt_string(&p("database"), &t.database)
            .unwrap_or_else(|| "dev".into());
        let port = match &t.port {
            None => 5439,
            Some(s) => {
                let text = match s.get_ref() {
                    StrOrInt::Int(i) => i.to_string(),
                    StrOrInt::Str(x) => self.string(&p("port"), &Spanned::new(s.span(), x.clone())),
                };
                match text.trim().parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        if !self.missing_vars.iter().any(|m| m.1 == p("port")) {
                            self.problem(
                                p("port"),
                                Some(s.span().start),
                                format!("\"{text}\" is not a TCP port (1-65535)"),
                            );
                        }
                        5439
                    }
                }
            }
        };
        let password = match (&t.password, &t.password_file) {
            (Some(pw), Some(_)) => {
                self.problem(
                    p("password_file"),
                    Some(pw.span().start),
                    "give password or password_file, not both",
                );
                None
            }
            (Some(pw), None) => Some(Secret::new(self.string(&p("password"), pw))),
            (None, Some(f)) => {
                let path = self.string(&p("password_file"), f);
                match read_secret_file(&path) {
                    Ok(s) => Some(Secret::new(s.trim_end_matches(['\r', '\n']))),
                    Err(e) => {
                        self.problem(
                            p("password_file"),
                            Some(f.span().start),
                            format!("cannot read \"{path}\": {e}"),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let sslmode = match self.opt_string(&p("sslmode"), &t.sslmode).as_deref() {
            None => SslMode::Require,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                self.problem(
                    p("sslmode"),
                    t.sslmode.as_ref().map(|s| s.span().start),
                    format!("\"{other}\" is not one of disable, require, verify-full"),
                );
                SslMode::Require
            }
        };
        let ca_file = self
            .opt_string(&p("ca_file"), &t.ca_file)
            .map(PathBuf::from);
        if let (Some(f), Some(s)) = (&ca_file, &t.ca_file) {
            if !f.is_file() {
                self.problem(
                    p("ca_file"),
                    Some(s.span().start),
                    format!("\"{}\" is not a readable file", f.display()),
                );
            }
        }
        let deployment = match self.opt_string(&p("deployment"), &t.deployment).as_deref() {
            None | Some("auto") => None,
            Some(name) => match Deployment::from_name(name) {
                Some(d) => Some(d),
                None => {
                    self.problem(
                        p("deployment"),
                        t.deployment.as_ref().map(|s| s.span().start),
                        format!(
                            "\"{name}\" is not one of auto, provisioned, serverless, multi_az, postgres"
                        ),
                    );
                    None
                }
            },
        };
        let application_name = self
            .opt_string(&p("application_name"), &t.application_name)
            .unwrap_or_else(|| "redshift-exporter".into());
        let aws = self.aws_login(
            &aws::TargetFacts {
                base: &format!("targets.{name}"),
                host: &host,
                database: &database,
                sslmode,
                sslmode_span: t.sslmode.as_ref().map(|s| s.span().start),
                deployment,
                has_password: t
                    .password
                    .as_ref()
                    .or(t.password_file.as_ref())
                    .map(|s| s.span().start),
                user: t.user.as_ref().map(|s| s.span().start),
            },
            &t.password_secret,
            &t.iam,
        );
        let user = match &aws {
            Some(AwsLogin::Iam(IamPlan {
                api: IamApi::ClusterCredentials { db_user, .. },
                ..
            })) => db_user.clone(),
            _ => user,
        };
        TargetConfig {
            name: name.to_string(),
            host,
            hostaddr,
            port,
            database,
            user,
            password,
            sslmode,
            ca_file,
            pool_size: self.positive(&p("pool_size"), &t.pool_size, 5, 1000),
            connect_timeout: self.duration(
                &p("connect_timeout"),
                &t.connect_timeout,
                Duration::from_secs(10),
            ),
            application_name,
            max_connection_age: self.duration(
                &p("max_connection_age"),
                &t.max_connection_age,
                Duration::from_secs(3600),
            ),
            keepalives_idle: self.duration(
                &p("keepalives_idle"),
                &t.keepalives_idle,
                Duration::from_secs(60),
            ),
            deployment,
            aws,
        }
    }

    fn check(
        &mut self,
        i: usize,
        c: &Spanned<RawCheck>,
        exporter: &ExporterConfig,
        target_names: &[&str],
    ) -> CheckConfig {
        let start = c.span().start;
        let c = c.get_ref();
        let base = format!("checks[{i}]");
        let p = |k: &str| format!("{base}.{k}");

        let name = match &c.name {
            Some(s) => {
                let n = self.string(&p("name"), s);
                if !is_check_name(&n) {
                    self.problem(
                        p("name"),
                        Some(s.span().start),
                        format!("\"{n}\" must match [a-z_][a-z0-9_]* (it is part of metric names and a folder name)"),
                    );
                }
                n
            }
            None => {
                self.problem(p("name"), Some(start), "is required");
                String::new()
            }
        };
        let help = self
            .opt_string(&p("help"), &c.help)
            .unwrap_or_else(|| format!("Result of check {name}."));
        let mut query_line = None;
        let query = match &c.query {
            Some(q) => {
                // TOML drops a newline right after an opening triple quote; the text starts below it.
                let at = q.span().start;
                let opener = self.src.get(at..at + 4).unwrap_or("");
                let skip = usize::from(opener == "\"\"\"\n" || opener == "'''\n");
                query_line = Some(self.lines.line(at) + skip);
                let text = self.string(&p("query"), q);
                if text.trim().is_empty() {
                    self.problem(p("query"), Some(q.span().start), "must not be empty");
                }
                if let Some(at) = crate::lint::second_statement(&text) {
                    let line = text[..at].matches('\n').count() + 1;
                    self.problem(
                        p("query"),
                        Some(q.span().start),
                        format!(
                            "must be one SQL statement: the ';' on line {line} of the query is followed by more SQL (checks run in a READ ONLY transaction that a second statement could end)"
                        ),
                    );
                }
                text
            }
            None => {
                self.problem(p("query"), Some(start), "is required");
                String::new()
            }
        };
        let schedule = match (&c.interval, &c.schedule) {
            (Some(_), Some(s)) => {
                self.problem(
                    p("schedule"),
                    Some(s.span().start),
                    "give interval or schedule, not both",
                );
                Schedule::Interval(exporter.default_interval)
            }
            (None, Some(s)) => {
                let expr = self.string(&p("schedule"), s);
                if let Err(e) = parse_cron(&expr) {
                    self.problem(
                        p("schedule"),
                        Some(s.span().start),
                        format!(
                            "invalid cron expression \"{expr}\": {e} (six fields, seconds first, UTC: \"0 */5 * * * *\")"
                        ),
                    );
                }
                Schedule::Cron(expr)
            }
            (iv, None) => {
                let d = self.duration(&p("interval"), iv, exporter.default_interval);
                if let Some(s) = iv {
                    if d.subsec_nanos() != 0 {
                        self.problem(
                            p("interval"),
                            Some(s.span().start),
                            "must be a whole number of seconds",
                        );
                    }
                }
                Schedule::Interval(d)
            }
        };
        let timeout = self.duration(&p("timeout"), &c.timeout, exporter.default_timeout);

        let mut seen = HashSet::new();
        let mut labels = Vec::new();
        for (j, l) in c.labels.iter().enumerate() {
            let lp = format!("{base}.labels[{j}]");
            let col = self.string(&lp, l);
            if !is_label_name(&col) {
                self.problem(
                    &lp,
                    Some(l.span().start),
                    format!("\"{col}\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"),
                );
            } else if col == TARGET_LABEL {
                self.problem(
                    &lp,
                    Some(l.span().start),
                    "\"target\" is reserved for the target name; alias the column in the query",
                );
            } else if !seen.insert(col.clone()) {
                self.problem(
                    &lp,
                    Some(l.span().start),
                    format!("column \"{col}\" is listed twice"),
                );
            }
            labels.push(col);
        }

        let mut values = Vec::new();
        if c.values.is_empty() {
            self.problem(
                p("values"),
                Some(start),
                "at least one value column is required",
            );
        }
        for (j, v) in c.values.iter().enumerate() {
            let vp = format!("{base}.values[{j}]");
            let at = Some(v.span().start);
            let (column, suffix, vhelp) = match v.get_ref() {
                toml::Value::String(s) => {
                    let col = self.string(&vp, &Spanned::new(v.span(), s.clone()));
                    (col.clone(), format!("{name}_{col}"), None)
                }
                toml::Value::Table(t) => {
                    for k in t.keys() {
                        if !["column", "name", "help"].contains(&k.as_str()) {
                            self.problem(format!("{vp}.{k}"), at, "unknown key");
                        }
                    }
                    let get = |v: &mut Self, k: &str| -> Option<String> {
                        match t.get(k) {
                            None => None,
                            Some(toml::Value::String(s)) => {
                                Some(v.string(&format!("{vp}.{k}"), &Spanned::new(0..0, s.clone())))
                            }
                            Some(_) => {
                                v.problem(format!("{vp}.{k}"), at, "must be a string");
                                None
                            }
                        }
                    };
                    let col = get(self, "column");
                    let nm = get(self, "name");
                    let hp = get(self, "help");
                    let Some(col) = col else {
                        self.problem(format!("{vp}.column"), at, "is required");
                        continue;
                    };
                    let suffix = nm.unwrap_or_else(|| format!("{name}_{col}"));
                    (col, suffix, hp)
                }
                _ => {
                    self.problem(&vp, at, "must be a column name or { column = \"...\", name = \"...\", help = \"...\" }");
                    continue;
                }
            };
            if !is_label_name(&column) {
                self.problem(
                    &vp,
                    at,
                    format!("\"{column}\" is not a valid column name for a metric"),
                );
            }
            if !seen.insert(column.clone()) {
                self.problem(
                    &vp,
                    at,
                    format!("column \"{column}\" is already used as a label or value"),
                );
            }
            let metric = format!("{}_{suffix}", exporter.namespace);
            if !is_metric_name(&metric) {
                self.problem(&vp, at, format!("\"{metric}\" is not a valid metric name"));
            } else if metric.starts_with(SELF_PREFIX) {
                self.problem(
                    &vp,
                    at,
                    format!(
                        "\"{metric}\" collides with the exporter's own metrics ({SELF_PREFIX}*)"
                    ),
                );
            } else if metric.ends_with("_total") {
                self.problem(
                    &vp,
                    at,
                    format!(
                        "\"{metric}\": data metrics are gauges, and _total is reserved for counters"
                    ),
                );
            }
            let help = vhelp.unwrap_or_else(|| {
                if c.values.len() == 1 {
                    help.clone()
                } else {
                    format!("{help} (column {column})")
                }
            });
            values.push(ValueSpec {
                column,
                metric,
                help,
            });
        }

        let targets = match &c.targets {
            None => (0..target_names.len()).collect(),
            Some(list) => {
                let mut out = Vec::new();
                if list.is_empty() {
                    self.problem(
                        p("targets"),
                        Some(start),
                        "must name at least one target (or be left out for all)",
                    );
                }
                for (j, t) in list.iter().enumerate() {
                    let tp = format!("{base}.targets[{j}]");
                    let tn = self.string(&tp, t);
                    match target_names.iter().position(|n| *n == tn) {
                        Some(ix) if !out.contains(&ix) => out.push(ix),
                        Some(_) => self.problem(
                            &tp,
                            Some(t.span().start),
                            format!("target \"{tn}\" is listed twice"),
                        ),
                        None => self.problem(
                            &tp,
                            Some(t.span().start),
                            format!(
                                "unknown target \"{tn}\" (defined: {})",
                                target_names.join(", ")
                            ),
                        ),
                    }
                }
                out
            }
        };
        let deployments = match &c.deployment {
            None => Deployment::ALL.to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for (j, d) in list.iter().enumerate() {
                    let dp = format!("{base}.deployment[{j}]");
                    let name = self.string(&dp, d);
                    match Deployment::from_name(&name) {
                        Some(d) => out.push(d),
                        None => self.problem(
                            &dp,
                            Some(d.span().start),
                            format!(
                                "\"{name}\" is not one of provisioned, serverless, multi_az, postgres"
                            ),
                        ),
                    }
                }
                if list.is_empty() {
                    self.problem(
                        p("deployment"),
                        Some(start),
                        "must name at least one of provisioned, serverless, multi_az, postgres",
                    );
                }
                out
            }
        };
        CheckConfig {
            name,
            help,
            query,
            query_line,
            schedule,
            timeout,
            labels,
            values,
            targets,
            archive: c.archive.as_ref().is_none_or(|a| *a.get_ref()),
            max_series: self.positive(
                &p("max_series"),
                &c.max_series,
                exporter.max_series_per_check,
                10_000_000,
            ),
            deployments,
            archive_retention: self.check_retention(
                &base,
                &c.archive_max_age,
                &c.archive_max_bytes,
                &exporter.archive,
            ),
        }
    }
}

fn cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// Reads a `password_file`, at most 64 KiB: a path such as `/dev/stdin` or a FIFO must not
/// make loading the configuration read forever.
fn read_secret_file(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    const LIMIT: u64 = 64 * 1024;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(LIMIT + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > LIMIT {
        return Err(std::io::Error::other(
            "longer than 64 KiB; is it really a password file?",
        ));
    }
    Ok(text)
}

/// Parses a cron expression exactly as the scheduler will (six fields, seconds first).
pub fn parse_cron(expr: &str) -> Result<(), String> {
    cron(expr).map(|_| ())
}

impl Schedule {
    /// How long a run may be apart from the next: the interval, or for a cron schedule the
    /// longest gap among its next 64 runs. Published so alerts can call a check stale
    /// without a hand-kept table of intervals.
    pub fn expected_interval(&self) -> Duration {
        match self {
            Schedule::Interval(d) => *d,
            Schedule::Cron(expr) => {
                let Ok(c) = cron(expr) else {
                    return Duration::ZERO;
                };
                let mut at = chrono::Utc::now();
                let mut longest = Duration::ZERO;
                for _ in 0..64 {
                    let Ok(next) = c.find_next_occurrence(&at, false) else {
                        break;
                    };
                    if let Ok(gap) = (next - at).to_std() {
                        longest = longest.max(gap);
                    }
                    at = next;
                }
                longest
            }
        }
    }
}

/// Expands `${VAR}` and `${VAR:-default}`; `$${` stands for a literal `${`.
/// Returns the result and the names of unset variables without a default.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(s.len());
    let mut missing = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            match tail.find('}') {
                Some(end) => {
                    let inner = &tail[..end];
                    let (name, default) = match inner.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (inner, None),
                    };
                    match (
                        env(name).filter(|v| !v.is_empty() || default.is_none()),
                        default,
                    ) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => {
                            if !missing.iter().any(|m| m == name) {
                                missing.push(name.to_string());
                            }
                        }
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    out.push_str(after);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    (out, missing)
}

/// `[a-z_][a-z0-9_]*`: check names become metric name parts and folder names.
pub fn is_check_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | '_')) && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Target names are label values and folder names: `[a-z_][a-z0-9_-]*` keeps both safe.
pub fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | '_'))
        && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

/// Prometheus metric name rule.
pub fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | 'A'..='Z' | '_' | ':'))
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus label name rule (names starting with `__` are reserved).
pub fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | 'A'..='Z' | '_'))
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// serde_ignored reports `checks.2.intervl`; show it as `checks[2].intervl`.
fn display_path(p: &str) -> String {
    let mut out = String::new();
    // `?` marks an Option and `$__serde_spanned_private_value` a Spanned: not keys.
    for part in p
        .split('.')
        .filter(|s| *s != "?" && !s.starts_with("$__serde_spanned"))
    {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Byte offset → line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Best-effort line of an unknown key: the first line at or after its table that
    /// starts with the key's last segment followed by `=`.
    fn find_key(&self, text: &str, path: &str) -> Option<usize> {
        let key = path.rsplit(['.', ']']).next()?.trim();
        if key.is_empty() {
            return None;
        }
        // Narrow to the right [[checks]] entry or [table] when the path says which.
        let mut from = 0;
        if let Some(rest) = path.strip_prefix("checks[") {
            let n: usize = rest.split(']').next()?.parse().ok()?;
            let mut idx = text.match_indices("[[checks]]").map(|(i, _)| i);
            from = idx.nth(n)?;
        } else if let Some((table, _)) = path.rsplit_once('.') {
            if let Some(i) = text.find(&format!("[{table}]")) {
                from = i;
            }
        }
        let mut offset = from;
        for l in text[from..].split_inclusive('\n') {
            let t = l.trim_start();
            if let Some(after) = t.strip_prefix(key) {
                if after.trim_start().starts_with('=') {
                    return Some(self.line(offset));
                }
            }
            offset += l.len();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOST" => Some("db.example".into()),
            "PW" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    const GOOD: &str = r#"
[exporter]
listen_address = "127.0.0.1:9439"
default_interval = "1m"

[targets.main]
host = "${HOST}"
port = "${PORT:-5440}"
user = "exporter"
password = "${PW}"
sslmode = "disable"

[[checks]]
name = "sessions"
help = "Sessions per database."
query = "SELECT datname AS database, count(*)::float8 AS sessions FROM pg_stat_activity GROUP BY 1"
labels = ["database"]
values = ["sessions", { column = "x", name = "other_thing", help = "Other." }]
"#;

    #[test]
    fn parses_a_good_file() {
        let c = parse(GOOD, env).unwrap();
        let t = &c.targets[0];
        assert_eq!(t.host, "db.example");
        assert_eq!(t.port, 5440);
        assert_eq!(t.password.as_ref().unwrap().expose(), "s3cr3t");
        assert_eq!(t.database, "dev");
        assert_eq!(t.sslmode, SslMode::Disable);
        let ch = &c.checks[0];
        assert_eq!(ch.schedule, Schedule::Interval(Duration::from_secs(60)));
        assert_eq!(ch.values[0].metric, "redshift_sessions_sessions");
        assert_eq!(
            ch.values[0].help,
            "Sessions per database. (column sessions)"
        );
        assert_eq!(ch.values[1].metric, "redshift_other_thing");
        assert_eq!(ch.values[1].help, "Other.");
        assert_eq!(ch.targets, vec![0]);
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "Debug leaks the password"
        );
    }

    #[test]
    fn reports_every_problem_with_path_and_line() {
        let text = r#"
[exporter]
default_interval = "5x"
colour = "blue"

[targets.main]
host = "${NOPE}"
user = "${ALSO_NOPE}"

[[checks]]
name = "Bad-Name"
query = "SELECT 1"
values = ["v"]
targets = ["other"]
intervl = "1m"

[[checks]]
name = "dup"
query = "SELECT 1"
values = ["v"]
schedule = "*/5 * * * *"

[[checks]]
name = "dup"
query = "SELECT 1"
values = ["v"]
labels = ["target"]
"#;
        let problems = parse(text, env).unwrap_err();
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| {
            assert!(
                shown.iter().any(|s| s.contains(needle)),
                "no problem containing {needle:?} in {shown:#?}"
            )
        };
        has("exporter.default_interval (line 3): invalid duration \"5x\"");
        has("exporter.colour (line 4): unknown key");
        has("checks[0].name (line 11)");
        has("checks[0].targets[0] (line 14): unknown target \"other\"");
        has("checks[0].intervl (line 15): unknown key");
        has("checks[1].schedule (line 21): invalid cron expression");
        has("checks[2].name (line 24): duplicate check name \"dup\"");
        has("checks[2].labels[0] (line 27): \"target\" is reserved");
        has("targets.main.host (line 7): environment variable NOPE is not set");
        has("targets.main.user (line 8): environment variable ALSO_NOPE is not set");
        assert_eq!(problems.len(), 11, "{shown:#?}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let problems = parse("[exporter]\nnamespace = \n", env).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(2), "{:?}", problems[0]);
    }

    #[test]
    fn env_expansion() {
        let e = |s: &str| expand_env(s, &env);
        assert_eq!(e("a ${HOST} b"), ("a db.example b".into(), vec![]));
        assert_eq!(e("${MISSING:-dflt}"), ("dflt".into(), vec![]));
        assert_eq!(e("${EMPTY:-dflt}"), ("dflt".into(), vec![]));
        assert_eq!(e("${EMPTY}"), ("".into(), vec![]));
        assert_eq!(e("$${HOST} $1 $"), ("${HOST} $1 $".into(), vec![]));
        assert_eq!(e("${A}${B}${A}"), ("".into(), vec!["A".into(), "B".into()]));
    }

    #[test]
    fn metric_name_collisions_and_reserved_prefix() {
        let text = r#"
[exporter]
namespace = "redshift"
[targets.main]
host = "h"
user = "u"
[[checks]]
name = "a"
query = "SELECT 1"
values = [{ column = "v", name = "same" }]
[[checks]]
name = "b"
query = "SELECT 1"
values = [{ column = "v", name = "same" }, { column = "w", name = "exporter_x" }, "c_total"]
"#;
        let shown: Vec<String> = parse(text, env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert!(
            shown
                .iter()
                .any(|s| s.contains("also produced by check \"a\"")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains("collides with the exporter's own")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|s| s.contains("_total is reserved")),
            "{shown:?}"
        );
    }

    #[test]
    fn lint_findings_point_at_the_line_in_the_file() {
        let text = "[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"a\"\nvalues = [\"v\"]\nquery = \"\"\"\nSELECT 1 AS v,\n  now() AS t\n\"\"\"\n";
        let c = parse(text, env).unwrap();
        let w = c.lint();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "checks[0].query");
        assert_eq!(w[0].line, Some(9), "{w:?}");
        assert!(w[0].message.contains("GETDATE()"));
    }

    #[test]
    fn flavour_variants_may_share_a_metric() {
        let base = "[targets.main]\nhost = \"h\"\nuser = \"u\"\n";
        let check = |name: &str, dep: &str, labels: &str| {
            format!(
                "[[checks]]\nname = \"{name}\"\nquery = \"SELECT 1\"\nlabels = {labels}\nvalues = [{{ column = \"v\", name = \"shared\" }}]\ndeployment = [{dep}]\n"
            )
        };
        let ok = format!(
            "{base}{}{}",
            check("p", "\"provisioned\"", "[\"a\"]"),
            check("s", "\"serverless\"", "[\"a\"]")
        );
        assert!(parse(&ok, env).is_ok());
        let both = format!(
            "{base}{}{}",
            check("p", "\"provisioned\"", "[\"a\"]"),
            check("s", "\"serverless\", \"provisioned\"", "[\"a\"]")
        );
        let e = parse(&both, env).unwrap_err();
        assert!(e[0].message.contains("a target could run both"), "{e:?}");
    }

    #[test]
    fn expected_intervals() {
        assert_eq!(
            Schedule::Interval(Duration::from_secs(90)).expected_interval(),
            Duration::from_secs(90)
        );
        assert_eq!(
            Schedule::Cron("0 5 * * * *".into()).expected_interval(),
            Duration::from_secs(3600)
        );
        // Weekdays at 06:00: the weekend gap is the longest.
        assert_eq!(
            Schedule::Cron("0 0 6 * * Mon-Fri".into()).expected_interval(),
            Duration::from_secs(3 * 86400)
        );
    }

    #[test]
    fn password_files_are_read_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("pw");
        std::fs::write(&ok, "s3cret\n").unwrap();
        assert_eq!(read_secret_file(ok.to_str().unwrap()).unwrap(), "s3cret\n");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 70 * 1024]).unwrap();
        assert!(read_secret_file(big.to_str().unwrap()).is_err());
        // An endless source ends at the limit instead of hanging.
        assert!(read_secret_file("/dev/zero").is_err());
    }

    #[test]
    fn names() {
        assert!(is_check_name("long_queries"));
        assert!(!is_check_name("Long"));
        assert!(!is_check_name("../x"));
        assert!(!is_identifier("a/b"));
        assert!(is_label_name("user_name"));
        assert!(!is_label_name("__x"));
        assert!(!is_label_name("a-b"));
    }
}
