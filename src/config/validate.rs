//! Stage 2 of parsing: the [`Validator`], which turns raw structs into a [`Config`] while
//! collecting every problem with its path and line, and the `[exporter]` table and the
//! cross-check rules (duplicate names, metrics two checks would both produce).
//!
//! The per-table rules live next to it: targets in [`super::target`], checks in
//! [`super::check`], archive keys in [`super::archive`]. Locating lines is [`super::source`];
//! `${VAR}` expansion is [`super::env`].

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::raw::RawCheck;
use super::{
    CheckConfig, Config, DEFAULT_NAMESPACE, Deployment, ExporterConfig, LineIndex, PageDetail,
    Problem, RawConfig, expand_env, is_metric_name,
};

pub(super) struct Validator<'a> {
    /// The text of the file being validated, for locating the first line of multi-line strings.
    pub(super) src: &'a str,
    pub(super) lines: LineIndex,
    /// The included file being validated (`None`: the main file); problems carry it.
    pub(super) file: Option<String>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<Problem>,
    /// (variable, path, line, file) of every unset variable, reported together at the end.
    pub(super) missing_vars: Vec<(String, String, Option<usize>, Option<String>)>,
}

/// The `[[checks]]` of one file named by `[exporter] include`.
pub(super) struct Included<'a> {
    /// As written relative to the main file's folder.
    pub(super) name: String,
    pub(super) text: &'a str,
    pub(super) checks: Vec<Spanned<RawCheck>>,
}

impl<'a> Validator<'a> {
    pub(super) fn problem(
        &mut self,
        path: impl Into<String>,
        span_start: Option<usize>,
        msg: impl Into<String>,
    ) {
        let line = span_start.map(|s| self.lines.line(s));
        self.problems.push(Problem {
            file: self.file.clone(),
            path: path.into(),
            line,
            message: msg.into(),
        });
    }

    /// Expands `${VAR}` / `${VAR:-default}` / `$${` in a string value.
    pub(super) fn string(&mut self, path: &str, v: &Spanned<String>) -> String {
        let line = Some(self.lines.line(v.span().start));
        let (out, missing) = expand_env(v.get_ref(), self.env);
        for name in missing {
            self.missing_vars
                .push((name, path.to_string(), line, self.file.clone()));
        }
        out
    }

    pub(super) fn opt_string(&mut self, path: &str, v: &Option<Spanned<String>>) -> Option<String> {
        v.as_ref().map(|s| self.string(path, s))
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        v: &Option<Spanned<String>>,
        default: Duration,
    ) -> Duration {
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

    pub(super) fn positive(
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

    pub(super) fn validate(&mut self, raw: RawConfig, included: Vec<Included<'a>>) -> Config {
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
        let page_detail = match e.page_detail.as_ref() {
            None => PageDetail::Full,
            Some(s) => match s.get_ref().as_str() {
                "full" => PageDetail::Full,
                "redacted" => PageDetail::Redacted,
                other => {
                    self.problem(
                        "exporter.page_detail",
                        Some(s.span().start),
                        format!("\"{other}\" is not one of full, redacted"),
                    );
                    PageDetail::Full
                }
            },
        };
        let exporter = ExporterConfig {
            listen_address,
            namespace,
            page_detail,
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
            included_files: Vec::new(),
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

        if raw.checks.is_empty() && included.iter().all(|f| f.checks.is_empty()) {
            self.problem("checks", None, "at least one [[checks]] entry is required");
        }
        let mut checks: Vec<Arc<CheckConfig>> = Vec::new();
        let mut names = HashSet::new();
        let mut metrics: BTreeMap<String, (String, Vec<Deployment>)> = BTreeMap::new();
        // The main file's checks, then each included file's, each validated with its own text
        // so problems name the right file and line.
        let main = (self.src, None::<String>, raw.checks);
        let sources = std::iter::once(main).chain(
            included
                .into_iter()
                .map(|f| (f.text, Some(f.name), f.checks)),
        );
        for (text, file, raw_checks) in sources {
            self.src = text;
            self.lines = LineIndex::new(text);
            self.file = file;
            for (i, c) in raw_checks.iter().enumerate() {
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
                // A target's static labels may not take a name the check already uses.
                for &ti in &check.targets {
                    let t = &targets[ti];
                    let own: std::collections::BTreeSet<&String> = check
                        .labels
                        .iter()
                        .chain(check.static_labels.iter().map(|(n, _)| n))
                        .collect();
                    for name in own {
                        if t.labels.iter().any(|(n, _)| n == name) {
                            self.problem(
                                format!("{path}.labels"),
                                Some(c.span().start),
                                format!(
                                    "label \"{name}\" of check \"{}\" is also a static label of target \"{}\" (targets.{}.labels)",
                                    check.name, t.name, t.name
                                ),
                            );
                        }
                    }
                }
                checks.push(Arc::new(check));
            }
        }
        Config {
            exporter,
            targets,
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

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
        assert!(parse(&ok, |_| None).is_ok());
        let both = format!(
            "{base}{}{}",
            check("p", "\"provisioned\"", "[\"a\"]"),
            check("s", "\"serverless\", \"provisioned\"", "[\"a\"]")
        );
        let e = parse(&both, |_| None).unwrap_err();
        assert!(e[0].message.contains("a target could run both"), "{e:?}");
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
        let shown: Vec<String> = parse(text, |_| None)
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
}
