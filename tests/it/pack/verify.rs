//! Checking a running pack daemon against the expectations: every `[[expect]]`, `[[rows]]` and
//! `[[skipped]]` entry on `/metrics`, every applicable check succeeding, the families each
//! deployment exports, the metrics dashboards and alert rules use, and `promtool`.

use std::collections::BTreeMap;

use crate::support::daemon::Daemon;
use crate::support::names;
use crate::support::prom::{Metrics, Sample};

use super::harness::*;

/// Metric names used by a dashboard panel or an alert rule (recording rules' own names,
/// which contain a colon, excluded).
pub(super) fn metrics_used_by_dashboards_and_rules() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut exprs: Vec<(String, String)> = Vec::new();
    fn walk_json(v: &serde_json::Value, file: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "query", serde_json::Value::String(e)) => {
                            out.push((file.into(), e.clone()))
                        }
                        _ => walk_json(v, file, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk_json(v, file, out)),
            _ => {}
        }
    }
    for dir in ["grafana/dashboards", "deploy/prometheus/rules"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let path = entry.path();
            let file = path.strip_prefix(root).unwrap().display().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            if file.ends_with(".json") {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                walk_json(&v, &file, &mut exprs);
            } else if file.ends_with(".yml") || file.ends_with(".yaml") {
                let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
                for g in v["groups"].as_sequence().into_iter().flatten() {
                    for r in g["rules"].as_sequence().into_iter().flatten() {
                        if let Some(e) = r["expr"].as_str() {
                            exprs.push((file.clone(), e.to_string()));
                        }
                    }
                }
            }
        }
    }
    let mut names = Vec::new();
    for (file, e) in exprs {
        let b = e.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let start_ok = i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':');
            if start_ok && (e[i..].starts_with("redshift_") || e[i..].starts_with("process_")) {
                let end = e[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .map_or(e.len(), |n| i + n);
                let name = &e[i..end];
                if !name.contains(':') && !names.iter().any(|(_, n): &(String, String)| n == name) {
                    names.push((file.clone(), name.to_string()));
                }
                i = end;
            } else {
                i += 1;
            }
        }
    }
    names
}

/// The check that produces each metric of the pack, to tell which expectations of an
/// `expect_as` run apply to a run where some checks do not run.
pub(super) fn metric_owners() -> BTreeMap<String, String> {
    let config = redshift_exporter::config::parse(PACK, |_| Some("1".into())).expect("pack parses");
    let mut owners = BTreeMap::new();
    for c in &config.checks {
        for v in &c.values {
            owners.insert(v.metric.clone(), c.name.clone());
        }
    }
    owners
}

/// Families the monitoring role reads on each variant (as redshift_exporter_target_info says).
pub(super) fn expected_families(variant: &str) -> &'static str {
    match variant {
        "provisioned" => "stl,svv,sys",
        "serverless" => "svv,sys",
        "multi_az" => "sys",
        other => panic!("unknown variant {other}"),
    }
}

/// Every expectation of expectations.toml for the runs the daemon serves, as failure lines.
pub(super) async fn verify_pack(daemon: &mut Daemon, exp: &Expectations) -> Vec<String> {
    let m: Metrics = daemon.metrics().await;
    let mut failures = Vec::new();
    let owners = metric_owners();

    // Every check that applies succeeded; every check that does not was skipped, not run.
    let pack_checks: Vec<String> = PACK
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.split('"').next())
        .map(String::from)
        .collect();
    assert!(
        pack_checks.len() >= 25,
        "pack has {} checks",
        pack_checks.len()
    );
    let skipped_on = |variant: &str| -> Vec<&String> {
        exp.skipped
            .iter()
            .filter(|s| s.variant == variant)
            .flat_map(|s| &s.checks)
            .collect()
    };
    for run in &exp.run {
        let t = target_name(&run.name);
        let skipped = skipped_on(&run.variant);
        for check in &pack_checks {
            // `find`: a per-database check's series also carry the database label.
            let success = m
                .find(names::SUCCESS, &[("target", &t), ("check", check)])
                .first()
                .map(|s| s.value);
            match (skipped.contains(&check), success) {
                (true, None) => {}
                (true, Some(_)) => {
                    failures.push(format!("{t}: {check} must be skipped on {}", run.variant))
                }
                (false, Some(1.0)) => {}
                (false, other) => failures.push(format!("{t}: {check} success = {other:?}")),
            }
        }
        // What detection decided is exported.
        let info = m.find(
            "redshift_exporter_target_info",
            &[("target", &t), ("deployment", &run.variant)],
        );
        match info.as_slice() {
            [s] if s.labels.get("families").map(String::as_str)
                == Some(expected_families(&run.variant)) => {}
            other => failures.push(format!(
                "{t}: target_info {other:?}, expected deployment {} families {}",
                run.variant,
                expected_families(&run.variant)
            )),
        }
    }

    // The expectations of each run, and of the run it borrows them from (for checks it runs).
    let mut expects: Vec<(String, &Expect)> = Vec::new();
    let mut rows: Vec<(String, &Rows)> = Vec::new();
    for run in &exp.run {
        let skipped = skipped_on(&run.variant);
        let runs_here = |check: Option<&String>| check.is_some_and(|c| !skipped.contains(&c));
        let source = run.expect_as.as_deref().unwrap_or(&run.name);
        for e in exp.expect.iter().filter(|e| e.run == source) {
            if run.expect_as.is_none() || runs_here(owners.get(&e.metric)) {
                expects.push((target_name(&run.name), e));
            }
        }
        for r in exp.rows.iter().filter(|r| r.run == source) {
            if run.expect_as.is_none() || runs_here(Some(&r.check)) {
                rows.push((target_name(&run.name), r));
            }
        }
    }
    for (t, e) in &expects {
        let all = e.series.as_deref() == Some("all");
        let found: Vec<&Sample> = m
            .samples
            .iter()
            .filter(|s| s.name == e.metric && matches_labels(s, t, &e.labels, !all))
            .collect();
        let what = format!("{t}: {}{:?}", e.metric, e.labels);
        if e.absent {
            if !found.is_empty() {
                failures.push(format!("{what} must be absent, found {}", found[0]));
            }
            continue;
        }
        if found.is_empty() {
            failures.push(format!("{what} missing"));
            continue;
        }
        if !all && found.len() > 1 {
            failures.push(format!("{what}: {} series", found.len()));
        }
        for s in found {
            if let Err(why) = check_value(e, s.value) {
                failures.push(format!("{what}: {s}: {why}"));
            }
        }
    }
    for (t, r) in &rows {
        let e = Expect {
            run: r.run.clone(),
            metric: names::ROWS.into(),
            labels: BTreeMap::new(),
            value: None,
            min: r.min,
            max: r.max,
            series: None,
            absent: false,
        };
        match m
            .find(names::ROWS, &[("target", t), ("check", &r.check)])
            .first()
            .map(|s| s.value)
        {
            None => failures.push(format!("{t}: no row count for {}", r.check)),
            Some(v) => {
                if let Err(why) = check_value(&e, v) {
                    failures.push(format!("{t}: {} rows: {why}", r.check));
                }
            }
        }
    }
    // Borrowed expectations must not be vacuous.
    for run in exp.run.iter().filter(|r| r.expect_as.is_some()) {
        let t = target_name(&run.name);
        let n = expects.iter().filter(|(et, _)| *et == t).count();
        if n < 10 {
            failures.push(format!("{t}: only {n} expectations apply"));
        }
    }

    // The exporter logged the detected deployment of every target.
    for run in &exp.run {
        let t = target_name(&run.name);
        let detected = daemon
            .logs_with_message("detected deployment")
            .iter()
            .any(|l| l.has("target", &t) && l.has("deployment", &run.variant));
        if !detected {
            failures.push(format!(
                "{t}: no \"detected deployment\" log line for {}",
                run.variant
            ));
        }
    }
    // The full pack's exposition is valid for Prometheus.
    crate::support::prom::promtool_check(&m.text);
    failures
}

pub(super) fn assert_no_failures(failures: &[String], exp: &Expectations) {
    assert!(
        failures.is_empty(),
        "{} of {} expectations failed:\n{}",
        failures.len(),
        exp.expect.len() + exp.rows.len(),
        failures.join("\n")
    );
}
