//! Static labels: `labels = { env = "prod" }` on a target and `static_labels = { ... }` on a
//! check, added to every series of that target or check. Owns the naming rules and the names
//! they may not take; the clash rules against a check's label columns are in
//! [`super::validate`], which sees checks and targets together.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{Validator, is_label_name};

/// Label names the exporter itself sets on some series (`target`, `check`, the closed sets of
/// its self metrics, `database` for per-database checks, what `target_info` says), or that
/// Prometheus sets at scrape time (`job`, `instance`; a clash would be renamed `exported_*`),
/// or that carry meaning in the exposition format (`le`, `quantile`).
pub const RESERVED: [&str; 14] = [
    "target",
    "check",
    "database",
    "kind",
    "result",
    "reason",
    "state",
    "version",
    "deployment",
    "families",
    "job",
    "instance",
    "le",
    "quantile",
];

impl Validator<'_> {
    /// Validates a static label table at `path` (`targets.X.labels`, `checks[i].static_labels`);
    /// returns the labels sorted by name.
    pub(super) fn static_labels(
        &mut self,
        path: &str,
        start: usize,
        raw: &Option<BTreeMap<String, Spanned<String>>>,
    ) -> Vec<(String, String)> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, value) in raw {
            let at = Some(value.span().start);
            let key = format!("{path}.{name}");
            if !is_label_name(name) || name.starts_with("__") {
                self.problem(
                    &key,
                    at.or(Some(start)),
                    format!("\"{name}\" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"),
                );
                continue;
            }
            if RESERVED.contains(&name.as_str()) {
                self.problem(
                    &key,
                    at,
                    format!(
                        "\"{name}\" is reserved (the exporter or Prometheus sets it: {})",
                        RESERVED.join(", ")
                    ),
                );
                continue;
            }
            let v = self.string(&key, value);
            out.push((name.clone(), v));
        }
        out
    }
}
