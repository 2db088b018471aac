//! Documentation that must stay in step with the code: `docs/checks.md` against the shipped
//! `checks.toml` (every check has a section, every metric is in the metric index with its labels
//! and flavours, and the index lists nothing the pack does not publish).

use std::collections::{BTreeMap, BTreeSet};

use redshift_exporter::config::{self, Deployment};

fn root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pack() -> config::Config {
    let text = std::fs::read_to_string(root().join("checks.toml")).unwrap();
    config::parse(&text, |k| {
        Some(if k.ends_with("PORT") { "5439" } else { "x" }.to_string())
    })
    .unwrap_or_else(|p| panic!("checks.toml does not validate: {p:?}"))
}

/// Metric index rows: metric → (labels cell, checks cell, provisioned?, serverless?).
fn metric_index(doc: &str) -> BTreeMap<String, (String, String, bool, bool)> {
    let start = doc
        .find("## Metric index")
        .expect("docs/checks.md has a metric index");
    let section = &doc[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let mut out = BTreeMap::new();
    for line in section[..end]
        .lines()
        .filter(|l| l.starts_with("| redshift_"))
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(cells.len() >= 6, "malformed index row: {line}");
        out.insert(
            cells[0].to_string(),
            (
                cells[1].to_string(),
                cells[3].to_string(),
                !cells[4].is_empty(),
                !cells[5].is_empty(),
            ),
        );
    }
    out
}

/// What the pack publishes under one metric name: checks, label columns, on provisioned, on Serverless.
type Published<'a> = (BTreeSet<&'a str>, BTreeSet<&'a str>, bool, bool);

#[test]
fn checks_md_documents_every_check_and_metric_of_the_pack() {
    let doc = std::fs::read_to_string(root().join("docs/checks.md")).unwrap();
    let pack = pack();
    let headings: Vec<&str> = doc.lines().filter(|l| l.starts_with("### ")).collect();
    let index = metric_index(&doc);
    let mut problems = Vec::new();

    // Every check has a section in the check reference.
    for c in &pack.checks {
        let named = |n: &str| headings.iter().any(|h| h.contains(&format!("`{n}`")));
        let documented = named(&c.name)
            || c.name.strip_suffix("_serverless").is_some_and(|base| {
                headings
                    .iter()
                    .any(|h| h.contains(&format!("`{base}`")) && h.contains("`_serverless`"))
            });
        if !documented {
            problems.push(format!("check {} has no section in docs/checks.md", c.name));
        }
    }

    // Every published metric is in the index, with the right checks, labels and flavours.
    let mut published: BTreeMap<&str, Published> = BTreeMap::new();
    for c in &pack.checks {
        for v in &c.values {
            let e = published.entry(v.metric.as_str()).or_default();
            e.0.insert(c.name.as_str());
            e.1.extend(c.labels.iter().map(String::as_str));
            e.2 |= c.applies_to(Deployment::Provisioned);
            e.3 |= c.applies_to(Deployment::Serverless);
        }
    }
    for (metric, (checks, labels, p, s)) in &published {
        let Some((labels_cell, checks_cell, ip, is)) = index.get(*metric) else {
            problems.push(format!("{metric} is missing from the metric index"));
            continue;
        };
        for c in checks {
            if !checks_cell.split(',').any(|x| x.trim() == *c) {
                problems.push(format!(
                    "{metric}: index does not name check {c} ({checks_cell})"
                ));
            }
        }
        for l in labels {
            if !labels_cell.contains(l) {
                problems.push(format!(
                    "{metric}: index does not name label {l} ({labels_cell})"
                ));
            }
        }
        if (p, s) != (ip, is) {
            problems.push(format!("{metric}: flavours in the index (P {ip}, S {is}) differ from the pack (P {p}, S {s})"));
        }
    }
    // And nothing stale: the index lists only what the pack publishes.
    for metric in index.keys() {
        if !published.contains_key(metric.as_str()) {
            problems.push(format!(
                "the metric index lists {metric}, which the pack does not publish"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/checks.md is out of step with checks.toml:\n{}",
        problems.join("\n")
    );
    assert!(
        published.len() >= 40,
        "the pack publishes {} metrics",
        published.len()
    );
}

/// A "simple" alert: `metric > N` (or `<`), no selector, no second operand, severity warning
/// or critical. `N` may be a product (`4 * 3600`). Returns (metric, level, threshold, below).
fn simple_rule(expr: &str, severity: &str) -> Option<(String, &'static str, f64, bool)> {
    let level = match severity {
        "warning" => "warn",
        "critical" => "crit",
        _ => return None,
    };
    let expr = expr.trim();
    let (metric, rest) = expr.split_once(' ')?;
    if !metric
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let rest = rest.trim_start();
    let (below, number) = if let Some(n) = rest.strip_prefix("> ") {
        (false, n)
    } else if let Some(n) = rest.strip_prefix("< ") {
        (true, n)
    } else {
        return None;
    };
    let mut value = 1.0;
    for factor in number.split('*') {
        value *= factor.trim().parse::<f64>().ok()?;
    }
    Some((metric.to_string(), level, value, below))
}

/// Every `warn`/`crit` of the shipped pack has an alert in redshift.rules.yml with that
/// threshold on that metric (warning for warn, critical for crit), and every simple
/// `metric > N` alert is mirrored by a threshold on each value column publishing the metric:
/// the landing page flags exactly what the shipped alerts fire on (minus their `for:`).
#[test]
fn pack_thresholds_mirror_the_simple_alert_rules() {
    let text =
        std::fs::read_to_string(root().join("deploy/prometheus/rules/redshift.rules.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut simple: BTreeSet<(String, &str, u64, bool)> = BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let (Some(_), Some(expr)) = (rule["alert"].as_str(), rule["expr"].as_str()) else {
                continue;
            };
            let severity = rule["labels"]["severity"].as_str().unwrap_or("");
            if let Some((m, level, v, below)) = simple_rule(expr, severity) {
                simple.insert((m, level, v.to_bits(), below));
            }
        }
    }
    assert!(
        simple.len() >= 20,
        "only {} simple rules found",
        simple.len()
    );
    let pack = pack();
    let mut in_pack = BTreeSet::new();
    let mut problems = Vec::new();
    for c in &pack.checks {
        for v in &c.values {
            let t = v.thresholds;
            for (level, n) in [("warn", t.warn), ("crit", t.crit)] {
                if let Some(n) = n {
                    let key = (v.metric.clone(), level, n.to_bits(), t.below);
                    if !simple.contains(&key) {
                        problems.push(format!(
                            "check {} value {}: {level} = {n} has no {} alert `{} {} {n}`",
                            c.name,
                            v.column,
                            if level == "warn" {
                                "warning"
                            } else {
                                "critical"
                            },
                            v.metric,
                            if t.below { "<" } else { ">" }
                        ));
                    }
                    in_pack.insert(key);
                }
            }
        }
    }
    for (metric, level, bits, below) in &simple {
        let n = f64::from_bits(*bits);
        let publishers: Vec<&str> = pack
            .checks
            .iter()
            .filter(|c| c.values.iter().any(|v| &v.metric == metric))
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            !publishers.is_empty(),
            "alert on {metric}: no check publishes it"
        );
        for c in &pack.checks {
            for v in c.values.iter().filter(|v| &v.metric == metric) {
                let t = v.thresholds;
                let got = if *level == "warn" { t.warn } else { t.crit };
                if got != Some(n) || t.below != *below {
                    problems.push(format!(
                        "alert `{metric} {} {n}`: check {} value {} has {level} = {got:?} (below = {})",
                        if *below { "<" } else { ">" },
                        c.name,
                        v.column,
                        t.below
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(in_pack.len(), simple.len());
}
