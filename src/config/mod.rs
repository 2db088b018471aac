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
mod databases;
mod env;
mod include;
mod labels;
mod model;
mod names;
mod raw;
mod source;
mod target;
mod validate;

pub use archive::{ArchiveSettings, Compression, Retention, S3Config, parse_bytes};
pub use aws::{HostHint, IamApi, IamPlan, SecretRef, host_hint, secret_ref};
pub use cron::{cron, parse_cron};
pub use databases::{DEFAULT_REFRESH, Databases, MIN_REFRESH, Scope, glob_match, is_database_name};
pub use env::expand_env;
pub use labels::RESERVED as RESERVED_LABELS;
pub use model::{
    Auth, CheckConfig, Config, Deployment, ExporterConfig, Instance, Level, PageDetail, Schedule,
    Secret, SslMode, TargetConfig, Thresholds, ValueSpec,
};
pub use names::{is_check_name, is_identifier, is_label_name, is_metric_name};

use raw::{RawConfig, RawExporter, RawInclude, StrOrInt};
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
    /// The included file the problem is in (as written relative to the main file's folder);
    /// `None` for the main file.
    pub file: Option<String>,
    /// TOML key path, e.g. `checks[2].interval`.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
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

/// Reads, parses and validates a configuration file with the process environment, and the
/// files its `[exporter] include` names (relative to its folder).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem {
            file: None,
            path: String::new(),
            line: None,
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    parse_in(&text, Some(base), &|k| std::env::var(k).ok()).map_err(|problems| ConfigError {
        file: path.to_owned(),
        problems,
    })
}

/// Parses and validates configuration text; `env` resolves `${VAR}` references. Text that is
/// not a file has no folder, so `include` is a problem here (use [`load`]).
pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
    parse_in(text, None, &env)
}

/// TOML text deserialized with the keys serde did not know collected as problems.
fn deserialize<T: serde::de::DeserializeOwned>(
    text: &str,
    file: Option<&str>,
) -> Result<(T, Vec<Problem>), Problem> {
    let lines = LineIndex::new(text);
    let mut unknown = Vec::new();
    match toml::Deserializer::parse(text)
        .and_then(|de| serde_ignored::deserialize(de, |p| unknown.push(p.to_string())))
    {
        Ok(raw) => {
            let problems = unknown
                .into_iter()
                .map(|path| {
                    let path = display_path(&path);
                    Problem {
                        file: file.map(str::to_owned),
                        line: lines.find_key(text, &path),
                        path,
                        message: "unknown key".into(),
                    }
                })
                .collect();
            Ok((raw, problems))
        }
        Err(e) => Err(Problem {
            file: file.map(str::to_owned),
            path: String::new(),
            line: e.span().map(|s| lines.line(s.start)),
            message: e.message().trim().to_string(),
        }),
    }
}

fn parse_in(
    text: &str,
    base: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let (raw, mut problems): (RawConfig, _) = deserialize(text, None).map_err(|p| vec![p])?;
    // Included files: read and deserialized first (they must outlive the validator, which
    // borrows their text to locate lines).
    let patterns = raw
        .exporter
        .as_ref()
        .and_then(|e| e.include.clone())
        .unwrap_or_default();
    let mut texts: Vec<(String, PathBuf, String)> = Vec::new();
    let main_lines = LineIndex::new(text);
    let mut seen: Vec<PathBuf> = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let at = Some(main_lines.line(pattern.span().start));
        let problem = |message: String| Problem {
            file: None,
            path: format!("exporter.include[{i}]"),
            line: at,
            message,
        };
        let (expanded, missing) = expand_env(pattern.get_ref(), env);
        if !missing.is_empty() {
            problems.push(problem(format!(
                "environment variable {} is not set",
                missing.join(", ")
            )));
            continue;
        }
        let Some(base) = base else {
            problems.push(problem(
                "include needs the configuration to be a file (its folder is the base)".into(),
            ));
            continue;
        };
        match include::expand(&expanded, base) {
            Err(why) => problems.push(problem(format!("\"{expanded}\" {why}"))),
            Ok(files) => {
                for f in files {
                    if seen.contains(&f) {
                        continue;
                    }
                    match std::fs::read_to_string(&f) {
                        Ok(t) => {
                            let shown = f.strip_prefix(base).unwrap_or(&f).display().to_string();
                            seen.push(f.clone());
                            texts.push((shown, f, t));
                        }
                        Err(e) => {
                            problems.push(problem(format!("cannot read {}: {e}", f.display())))
                        }
                    }
                }
            }
        }
    }
    let mut included = Vec::new();
    for (shown, _, t) in &texts {
        match deserialize::<RawInclude>(t, Some(shown)) {
            Ok((raw, unknown)) => {
                // A top-level key other than [[checks]] (e.g. an [exporter] table copied in).
                problems.extend(unknown.into_iter().map(|mut p| {
                    if !p.path.contains(['.', '[']) {
                        p.line = p.line.or_else(|| {
                            t.lines()
                                .position(|l| {
                                    let l = l.trim_start();
                                    l.starts_with(&format!("[{}]", p.path))
                                        || l.starts_with(&format!("[[{}]]", p.path))
                                        || l.starts_with(&format!("{} ", p.path))
                                        || l.starts_with(&format!("{}=", p.path))
                                })
                                .map(|i| i + 1)
                        });
                        p.message = "unknown key: an included file holds [[checks]] only".into();
                    }
                    p
                }));
                included.push(validate::Included {
                    name: shown.clone(),
                    text: t,
                    checks: raw.checks,
                });
            }
            Err(p) => problems.push(p),
        }
    }
    let mut v = Validator {
        src: text,
        lines: main_lines,
        file: None,
        env,
        problems,
        missing_vars: Vec::new(),
    };
    let mut config = v.validate(raw, included);
    config.exporter.included_files = seen;
    for (name, path, line, file) in std::mem::take(&mut v.missing_vars) {
        v.problems.push(Problem {
            file,
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
        // Main file first, then each included file, each by line.
        v.problems.sort_by(|a, b| {
            (&a.file, a.line.unwrap_or(usize::MAX)).cmp(&(&b.file, b.line.unwrap_or(usize::MAX)))
        });
        Err(v.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use super::env::tests::env;

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

    fn shown(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn includes_merge_checks_and_locate_problems_in_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("checks.toml");
        std::fs::write(
            &main,
            "[exporter]\ninclude = [\"checks.d/*.toml\"]\n\n[targets.main]\nhost = \"h\"\nuser = \"u\"\n\n[[checks]]\nname = \"a\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("checks.d")).unwrap();
        let b =
            "# WLM checks\n[[checks]]\nname = \"b\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\n";
        std::fs::write(dir.path().join("checks.d/b.toml"), b).unwrap();
        let c = load(&main).unwrap();
        let names: Vec<&str> = c.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            c.exporter.included_files,
            [dir.path().join("checks.d/b.toml")]
        );
        assert_eq!(c.checks[1].file.as_deref(), Some("checks.d/b.toml"));

        // Problems in an included file name it, with the TOML path and line in that file.
        std::fs::write(
            dir.path().join("checks.d/c.toml"),
            "[[checks]]\nname = \"a\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\ninterval = \"soon\"\ncolour = 1\n[exporter]\n",
        )
        .unwrap();
        let err = load(&main).unwrap_err();
        let shown = shown(&err.problems);
        for want in [
            "checks.d/c.toml: checks[0].name (line 2): duplicate check name \"a\"",
            "checks.d/c.toml: checks[0].interval (line 5): invalid duration \"soon\"",
            "checks.d/c.toml: checks[0].colour (line 6): unknown key",
            "checks.d/c.toml: exporter (line 7): unknown key: an included file holds [[checks]] only",
        ] {
            assert!(
                shown.iter().any(|s| s.starts_with(want)),
                "no {want:?} in {shown:#?}"
            );
        }
        assert_eq!(err.problems.len(), 4, "{shown:#?}");

        // A pattern that names nothing is a problem of the main file.
        std::fs::remove_file(dir.path().join("checks.d/c.toml")).unwrap();
        std::fs::write(
            &main,
            std::fs::read_to_string(&main)
                .unwrap()
                .replace("checks.d/*.toml", "check.d/*.toml"),
        )
        .unwrap();
        let shown2 = self::tests::shown(&load(&main).unwrap_err().problems);
        assert!(
            shown2[0]
                .starts_with("exporter.include[0] (line 2): \"check.d/*.toml\" cannot read folder"),
            "{shown2:?}"
        );
        // Text that is not a file has no folder to include from.
        let text = "[exporter]\ninclude = [\"x.toml\"]\n[targets.t]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"a\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\n";
        assert!(shown_of(text)[0].contains("include needs the configuration to be a file"));
    }

    fn shown_of(text: &str) -> Vec<String> {
        shown(&parse(text, env).unwrap_err())
    }

    #[test]
    fn static_labels_are_validated_sorted_and_may_not_clash() {
        let good = "[targets.main]\nhost = \"h\"\nuser = \"u\"\nlabels = { env = \"prod\", account = \"${PW}\" }\n\n[[checks]]\nname = \"a\"\nquery = \"SELECT 'x' AS node, 1 AS v\"\nlabels = [\"node\"]\nvalues = [\"v\"]\nstatic_labels = { team = \"dba\" }\n";
        let c = parse(good, env).unwrap();
        assert_eq!(
            c.targets[0].labels,
            [
                ("account".to_string(), "s3cr3t".to_string()),
                ("env".into(), "prod".into())
            ]
        );
        assert_eq!(
            c.checks[0].static_labels,
            [("team".to_string(), "dba".to_string())]
        );

        let bad = good
            .replace(
                "env = \"prod\"",
                "env = \"prod\", job = \"x\", node = \"n\", \"bad-name\" = \"y\"",
            )
            .replace("team = \"dba\"", "team = \"dba\", node = \"z\"");
        let shown = shown_of(&bad);
        for want in [
            "targets.main.labels.job (line 4): \"job\" is reserved",
            "targets.main.labels.bad-name (line 4): \"bad-name\" is not a label name",
            "checks[0].static_labels (line 11): \"node\" is also a label column of this check",
            "checks[0].labels (line 6): label \"node\" of check \"a\" is also a static label of target \"main\" (targets.main.labels)",
        ] {
            assert!(
                shown.iter().any(|s| s.starts_with(want)),
                "no {want:?} in {shown:#?}"
            );
        }
    }

    #[test]
    fn a_label_change_keeps_the_connection() {
        let text = "[targets.main]\nhost = \"h\"\nuser = \"u\"\nlabels = { env = \"prod\" }\n[[checks]]\nname = \"a\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\n";
        let a = parse(text, env).unwrap();
        let b = parse(&text.replace("prod", "staging"), env).unwrap();
        let c = parse(&text.replace("host = \"h\"", "host = \"h2\""), env).unwrap();
        assert_ne!(a.targets[0], b.targets[0]);
        assert!(a.targets[0].same_connection(&b.targets[0]));
        assert!(!a.targets[0].same_connection(&c.targets[0]));
    }
}
