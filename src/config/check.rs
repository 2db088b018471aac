//! Validation of one `[[checks]]` entry into a [`CheckConfig`]: name, query (one statement),
//! schedule, labels, value columns and the metric names they become, targets, deployments.
//!
//! Rules that span several checks (duplicate names, shared metrics) are in
//! [`super::validate`]; the cron grammar is [`super::cron`]; archive retention keys are
//! [`super::archive`].

use std::collections::HashSet;

use toml::Spanned;

use super::raw::RawCheck;
use super::{
    CheckConfig, Deployment, ExporterConfig, SELF_PREFIX, Schedule, TARGET_LABEL, Thresholds,
    Validator, ValueSpec, is_check_name, is_label_name, is_metric_name, parse_cron,
};

impl Validator<'_> {
    /// `warn`, `crit` (numbers) and `below` (a boolean) of one value table.
    fn thresholds(&mut self, vp: &str, at: Option<usize>, t: &toml::Table) -> Thresholds {
        let number = |v: &mut Self, k: &str| -> Option<f64> {
            let n = match t.get(k)? {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                _ => {
                    v.problem(format!("{vp}.{k}"), at, "must be a number");
                    return None;
                }
            };
            if !n.is_finite() {
                v.problem(format!("{vp}.{k}"), at, "must be a finite number");
                return None;
            }
            Some(n)
        };
        let warn = number(self, "warn");
        let crit = number(self, "crit");
        let below = match t.get("below") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => {
                self.problem(format!("{vp}.below"), at, "must be true or false");
                false
            }
        };
        let th = Thresholds { warn, crit, below };
        if below && th.is_empty() {
            self.problem(
                format!("{vp}.below"),
                at,
                "has no effect without warn or crit",
            );
        }
        if let (Some(w), Some(c)) = (warn, crit) {
            if (!below && c < w) || (below && c > w) {
                self.problem(
                    format!("{vp}.crit"),
                    at,
                    format!(
                        "{c} is less severe than warn = {w} (crit must be {} warn{})",
                        if below { "at most" } else { "at least" },
                        if below { " with below = true" } else { "" }
                    ),
                );
            }
        }
        th
    }

    pub(super) fn check(
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
            let (column, suffix, vhelp, thresholds) = match v.get_ref() {
                toml::Value::String(s) => {
                    let col = self.string(&vp, &Spanned::new(v.span(), s.clone()));
                    (
                        col.clone(),
                        format!("{name}_{col}"),
                        None,
                        Thresholds::default(),
                    )
                }
                toml::Value::Table(t) => {
                    for k in t.keys() {
                        if !["column", "name", "help", "warn", "crit", "below"]
                            .contains(&k.as_str())
                        {
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
                    let thresholds = self.thresholds(&vp, at, t);
                    (col, suffix, hp, thresholds)
                }
                _ => {
                    self.problem(&vp, at, "must be a column name or { column = \"...\", name = \"...\", help = \"...\", warn = N, crit = N }");
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
                thresholds,
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
        let scope = self.scope(&p("scope"), &c.scope);
        if scope == super::Scope::Database {
            for (j, l) in c.labels.iter().enumerate() {
                if l.get_ref() == "database" {
                    self.problem(
                        format!("{base}.labels[{j}]"),
                        Some(l.span().start),
                        "\"database\" is reserved for the database of a per-database check; alias the column in the query",
                    );
                }
            }
        }
        let static_labels = self.static_labels(&p("static_labels"), start, &c.static_labels);
        for (name, _) in &static_labels {
            if labels.contains(name) {
                self.problem(
                    p("static_labels"),
                    c.static_labels
                        .as_ref()
                        .and_then(|m| m.get(name))
                        .map(|v| v.span().start),
                    format!("\"{name}\" is also a label column of this check"),
                );
            }
        }
        CheckConfig {
            scope,
            static_labels,
            file: self.file.clone(),
            name,
            help,
            reads: crate::lint::system_relations(&query),
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

#[cfg(test)]
mod tests {
    use crate::config::{Level, PageDetail, parse};

    const HEAD: &str = "[exporter]\npage_detail = \"redacted\"\n[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\n";

    #[test]
    fn thresholds_parse_and_classify() {
        let text = format!(
            "{HEAD}values = [\n  {{ column = \"a\", warn = 0.8, crit = 0.9 }},\n  {{ column = \"b\", crit = 600 }},\n  {{ column = \"c\", warn = 10, crit = 5, below = true }},\n  \"d\",\n]\n"
        );
        let c = parse(&text, |_| None).unwrap();
        assert_eq!(c.exporter.page_detail, PageDetail::Redacted);
        let v = &c.checks[0].values;
        assert_eq!(v[0].thresholds.level(0.85), Some((Level::Warn, 0.8)));
        assert_eq!(v[0].thresholds.level(0.94), Some((Level::Crit, 0.9)));
        assert_eq!(v[0].thresholds.level(0.8), None, "strictly beyond");
        assert_eq!(v[0].thresholds.level(f64::NAN), None);
        assert_eq!(v[1].thresholds.level(601.0), Some((Level::Crit, 600.0)));
        assert_eq!(v[1].thresholds.level(599.0), None);
        assert_eq!(v[2].thresholds.level(7.0), Some((Level::Warn, 10.0)));
        assert_eq!(v[2].thresholds.level(4.0), Some((Level::Crit, 5.0)));
        assert!(v[3].thresholds.is_empty());
    }

    #[test]
    fn bad_thresholds_name_the_key_and_line() {
        let text = format!(
            "{HEAD}values = [\n  {{ column = \"a\", warn = \"high\" }},\n  {{ column = \"b\", warn = 0.9, crit = 0.8 }},\n  {{ column = \"c\", below = true }},\n  {{ column = \"d\", critical = 1 }},\n]\n"
        );
        let shown: Vec<String> = parse(&text.replace("redacted", "some"), |_| None)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        let has = |needle: &str| {
            assert!(
                shown.iter().any(|s| s.contains(needle)),
                "no problem containing {needle:?} in {shown:#?}"
            )
        };
        has("exporter.page_detail (line 2): \"some\" is not one of full, redacted");
        has("checks[0].values[0].warn (line 10): must be a number");
        has("checks[0].values[1].crit (line 11): 0.8 is less severe than warn = 0.9");
        has("checks[0].values[2].below (line 12): has no effect without warn or crit");
        has("checks[0].values[3].critical (line 13): unknown key");
        assert_eq!(shown.len(), 5, "{shown:#?}");
    }
}
