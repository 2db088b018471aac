//! The shipped Redshift check pack (`checks.toml`) against the Redshift emulation, through the
//! real daemon: one target per run of `tests/fixtures/redshift/expectations.toml` (provisioned
//! and Serverless, healthy and with every catalogued incident), flavour detected at connect.
//! Every `[[expect]]`, `[[rows]]` and `[[skipped]]` entry must hold on `/metrics`, every check
//! that applies must succeed, and the exposition must pass `promtool check metrics`.

use std::collections::BTreeMap;

use serde::Deserialize;

use redshift_exporter::emulation::{self, Scenario, Variant};

use crate::support::daemon::{Daemon, WorkDir};
use crate::support::names;
use crate::support::pg::{self, TestDb};
use crate::support::prom::{Metrics, Sample};
use crate::support::secs;

const EXPECTATIONS: &str = include_str!("../fixtures/redshift/expectations.toml");
const PACK: &str = include_str!("../../checks.toml");

#[derive(Deserialize)]
pub struct Expectations {
    pub run: Vec<Run>,
    skipped: Vec<Skipped>,
    expect: Vec<Expect>,
    rows: Vec<Rows>,
}

#[derive(Deserialize)]
pub struct Run {
    pub name: String,
    variant: String,
    scenarios: Vec<String>,
}

#[derive(Deserialize)]
struct Skipped {
    variant: String,
    checks: Vec<String>,
}

#[derive(Deserialize, Debug)]
struct Expect {
    run: String,
    metric: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    value: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    series: Option<String>,
    #[serde(default)]
    absent: bool,
}

#[derive(Deserialize, Debug)]
struct Rows {
    run: String,
    check: String,
    min: Option<f64>,
    max: Option<f64>,
}

pub fn target_name(run: &str) -> String {
    run.replace('-', "_")
}

/// Loads the emulation into `db` exactly as `demo` does (same files, same order).
async fn load(db: &TestDb, run: &Run) {
    let variant = match run.variant.as_str() {
        "provisioned" => Variant::Provisioned,
        "serverless" => Variant::Serverless,
        other => panic!("unknown variant {other}"),
    };
    let scenarios: Vec<Scenario> = run
        .scenarios
        .iter()
        .map(|s| match s.as_str() {
            "healthy" => Scenario::Healthy,
            "incidents" => Scenario::Incidents,
            other => panic!("unknown scenario {other}"),
        })
        .collect();
    db.execute(&emulation::database_settings(&db.dbname)).await;
    for (name, sql) in emulation::scripts(variant, &scenarios) {
        let client = db.connect().await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("loading {name} for {}: {e:?}", run.name));
    }
}

/// The shipped pack with its one `[targets.main]` replaced by one target per run.
fn pack_config(work: &WorkDir, targets: &str) -> String {
    let start = PACK
        .find("[targets.main]")
        .expect("the pack has [targets.main]");
    let end = start
        + PACK[start..]
            .find("\n# ---")
            .expect("a separator follows the target");
    // The example `targets = ["main"]` on the first check would name the removed target.
    let text = format!("{}{targets}{}", &PACK[..start], &PACK[end..]).replacen(
        "\ntargets = [\"main\"]",
        "\n",
        1,
    );
    let archive = work.archive().display().to_string();
    text.replacen(
        "archive_dir = \"archive\"",
        &format!("archive_dir = {archive:?}"),
        1,
    )
}

fn matches_labels(s: &Sample, target: &str, want: &BTreeMap<String, String>, exact: bool) -> bool {
    if s.labels.get("target").map(String::as_str) != Some(target) {
        return false;
    }
    let own = s.labels.len() - 1;
    want.iter().all(|(k, v)| s.labels.get(k) == Some(v)) && (!exact || own == want.len())
}

fn check_value(e: &Expect, v: f64) -> Result<(), String> {
    if let Some(want) = e.value {
        if (v - want).abs() > 1e-6 * want.abs().max(1.0) {
            return Err(format!("value {v}, expected {want}"));
        }
    }
    if let Some(min) = e.min {
        if v < min {
            return Err(format!("value {v} below min {min}"));
        }
    }
    if let Some(max) = e.max {
        if v > max {
            return Err(format!("value {v} above max {max}"));
        }
    }
    Ok(())
}

/// The real daemon running the shipped pack on one emulated database per run of
/// expectations.toml, after every check's first run (`/-/ready`).
pub struct PackDaemon {
    pub daemon: Daemon,
    pub exp: Expectations,
    /// Keeps the config and archive folder alive.
    pub _work: WorkDir,
}

pub async fn start_pack_daemon() -> PackDaemon {
    let exp: Expectations = toml::from_str(EXPECTATIONS).expect("expectations.toml parses");
    let work = WorkDir::new();
    let mut targets = String::new();
    for run in &exp.run {
        let db = pg::database().await;
        load(&db, run).await;
        // deployment = auto: the flavour is detected at connect, as on a real cluster.
        targets.push_str(&db.target_toml(
            &target_name(&run.name),
            "deployment = \"auto\"\nconnect_timeout = \"5s\"\npool_size = 4",
        ));
    }
    let config = work.write("checks.toml", &pack_config(&work, &targets));
    let mut daemon = Daemon::spawn(&config, "127.0.0.1:0", &[], &[]);
    daemon.wait_listening(secs(15)).await;
    let deadline = std::time::Instant::now() + secs(60);
    while daemon.get("/-/ready").await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "never ready:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    PackDaemon {
        daemon,
        exp,
        _work: work,
    }
}

/// Metric names used by a dashboard panel or an alert rule (recording rules' own names,
/// which contain a colon, excluded).
fn metrics_used_by_dashboards_and_rules() -> Vec<(String, String)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_pack_reports_every_seeded_incident_on_both_flavours() {
    let PackDaemon {
        mut daemon,
        exp,
        _work,
    } = start_pack_daemon().await;
    let m: Metrics = daemon.metrics().await;
    let mut failures = Vec::new();

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
    for run in &exp.run {
        let t = target_name(&run.name);
        let skipped: Vec<&String> = exp
            .skipped
            .iter()
            .filter(|s| s.variant == run.variant)
            .flat_map(|s| &s.checks)
            .collect();
        for check in &pack_checks {
            let success = m.get(names::SUCCESS, &[("target", &t), ("check", check)]);
            match (skipped.contains(&check), success) {
                (true, None) => {}
                (true, Some(_)) => {
                    failures.push(format!("{t}: {check} must be skipped on {}", run.variant))
                }
                (false, Some(1.0)) => {}
                (false, other) => failures.push(format!("{t}: {check} success = {other:?}")),
            }
        }
    }

    for e in &exp.expect {
        let t = target_name(&e.run);
        let all = e.series.as_deref() == Some("all");
        let found: Vec<&Sample> = m
            .samples
            .iter()
            .filter(|s| s.name == e.metric && matches_labels(s, &t, &e.labels, !all))
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

    for r in &exp.rows {
        let t = target_name(&r.run);
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
        match m.get(names::ROWS, &[("target", &t), ("check", &r.check)]) {
            None => failures.push(format!("{t}: no row count for {}", r.check)),
            Some(v) => {
                if let Err(why) = check_value(&e, v) {
                    failures.push(format!("{t}: {} rows: {why}", r.check));
                }
            }
        }
    }

    // No dangling panel, no dead rule: every metric a dashboard or an alert uses is exposed.
    let used = metrics_used_by_dashboards_and_rules();
    assert!(
        used.len() > 40,
        "found only {} metric names in dashboards and rules",
        used.len()
    );
    for (file, name) in &used {
        if !m.samples.iter().any(|s| &s.name == name) {
            failures.push(format!(
                "{file} uses {name}, which /metrics does not expose"
            ));
        }
    }

    // The landing page says which checks each target skips, and why.
    let page = daemon.get("/").await.body;
    assert!(
        page.contains("check applies to provisioned; target is serverless"),
        "landing page lacks skip reasons"
    );
    // The exporter logged the detected flavour of every target.
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

    assert!(
        failures.is_empty(),
        "{} of {} expectations failed:\n{}",
        failures.len(),
        exp.expect.len() + exp.rows.len(),
        failures.join("\n")
    );

    // The full pack's exposition is valid for Prometheus.
    crate::support::prom::promtool_check(&m.text);
    daemon.sigterm();
    daemon.wait_exit(secs(30)).await;
}
