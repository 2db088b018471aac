//! Configuration: `checks.toml` → validated [`Config`].
//!
//! Parsing happens in two stages, as in ripgrep and rust-csv:
//! 1. *raw* ([`raw`]): serde reads the TOML into loosely typed structs that remember where each
//!    value came from ([`toml::Spanned`]); keys serde does not know are collected, not fatal;
//! 2. *validated* ([`validate`], [`target`], [`check`], [`archive`]): `${VAR}` references are
//!    expanded ([`env`]), durations parsed, names ([`names`]) and references checked, and
//!    **every** problem is collected with its TOML path and line ([`source`]).
//!
//! The same [`load`] function serves start-up, `check-config` and `once`, so they can never
//! disagree about what a valid file is. This module owns the entry points ([`load`],
//! [`parse`]), the problem types and the public re-exports; the validated types themselves are
//! in [`model`]. It knows nothing about databases, metrics or files other than the config itself
//! (and `password_file`, which is part of the config).

use std::fmt;
use std::path::{Path, PathBuf};

mod archive;
mod aws;
mod check;
mod cron;
mod env;
mod model;
mod names;
mod raw;
mod source;
mod target;
mod validate;

pub use archive::{ArchiveSettings, Compression, Retention, S3Config, parse_bytes};
pub use aws::{HostHint, IamApi, IamPlan, SecretRef, host_hint, secret_ref};
pub use cron::parse_cron;
pub use env::expand_env;
pub use model::{
    Auth, CheckConfig, Config, Deployment, ExporterConfig, Schedule, Secret, SslMode, TargetConfig,
    ValueSpec,
};
pub use names::{is_check_name, is_identifier, is_label_name, is_metric_name};

use raw::{RawConfig, RawExporter, StrOrInt};
use source::{LineIndex, display_path};
use validate::Validator;

/// Where data metrics' names start unless `[exporter] namespace` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "redshift";
/// Prefix of the exporter's own metrics; data metric names may not collide with it.
pub const SELF_PREFIX: &str = "redshift_exporter_";
/// Reserved label: every data series carries the target it came from.
pub const TARGET_LABEL: &str = "target";

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let Auth::Password(pw) = &t.auth else {
            panic!("a password target")
        };
        assert_eq!(pw.as_ref().unwrap().expose(), "s3cr3t");
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
}
