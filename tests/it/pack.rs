//! The shipped Redshift check pack (`checks.toml`) against the Redshift emulation, through the
//! real daemon: one target per run of `tests/fixtures/redshift/expectations.toml` (provisioned,
//! Serverless and Multi-AZ, healthy and with every catalogued incident), deployment detected at
//! connect from what the user may read. Every `[[expect]]`, `[[rows]]` and `[[skipped]]` entry
//! must hold on `/metrics`, every check that applies must succeed, and the exposition must pass
//! `promtool check metrics`. The pack runs as the least-privilege monitoring role the
//! emulation creates (granted `sys:monitor`, as docs/checks.md tells operators), as a
//! superuser (Serverless and Multi-AZ refuse even superusers), and as a user without
//! `sys:monitor` (superuser-visible relations refused: those checks skip, naming the grant).

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
    /// Another run whose expectations hold here too, for the checks that run here.
    expect_as: Option<String>,
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
pub async fn load_emulation(db: &TestDb, variant: Variant, scenarios: &[Scenario]) {
    db.execute(&emulation::database_settings(&db.dbname)).await;
    for (name, sql) in emulation::scripts(variant, scenarios) {
        let client = db.connect().await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("loading {name} into {}: {e:?}", db.dbname));
    }
}

async fn load(db: &TestDb, run: &Run) {
    let variant = Variant::from_name(&run.variant)
        .unwrap_or_else(|| panic!("unknown variant {}", run.variant));
    let scenarios: Vec<Scenario> = run
        .scenarios
        .iter()
        .map(|s| match s.as_str() {
            "healthy" => Scenario::Healthy,
            "incidents" => Scenario::Incidents,
            other => panic!("unknown scenario {other}"),
        })
        .collect();
    load_emulation(db, variant, &scenarios).await;
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
    // A per-database check's series also carry `database` (the connected one): not one of
    // the check's own labels unless the expectation names it.
    let own = s
        .labels
        .keys()
        .filter(|k| *k != "target" && (*k != "database" || want.contains_key("database")))
        .count();
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

/// The pack daemon, connecting to every database as the emulation's monitoring role.
pub async fn start_pack_daemon() -> PackDaemon {
    start_pack_daemon_as(Some(emulation::MONITOR_ROLE), |_| true).await
}

/// The pack daemon on the runs `pick` selects, connecting as `user` (`None`: the superuser the
/// harness loads the emulation with).
pub async fn start_pack_daemon_as(user: Option<&str>, pick: impl Fn(&Run) -> bool) -> PackDaemon {
    start_pack_daemon_with(user, pick, &[], "").await
}

/// Like [`start_pack_daemon_as`], running `after_load` (as the superuser) in every database
/// once the emulation is loaded, with `extra` (more `[[checks]]`) appended to the pack.
pub async fn start_pack_daemon_with(
    user: Option<&str>,
    pick: impl Fn(&Run) -> bool,
    after_load: &[&str],
    extra: &str,
) -> PackDaemon {
    let mut exp: Expectations = toml::from_str(EXPECTATIONS).expect("expectations.toml parses");
    exp.run.retain(|r| pick(r));
    let work = WorkDir::new();
    let mut targets = String::new();
    for run in &exp.run {
        let mut db = pg::database().await;
        load(&db, run).await;
        for sql in after_load {
            db.execute(sql).await;
        }
        if let Some(u) = user {
            db.user = u.to_string();
            db.password = Some(u.to_string());
        }
        // deployment = auto: detected at connect, as on a real cluster.
        targets.push_str(&db.target_toml(
            &target_name(&run.name),
            "deployment = \"auto\"\nconnect_timeout = \"5s\"\npool_size = 4",
        ));
    }
    let config = work.write(
        "checks.toml",
        &format!("{}\n{extra}", pack_config(&work, &targets)),
    );
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

/// The check that produces each metric of the pack, to tell which expectations of an
/// `expect_as` run apply to a run where some checks do not run.
fn metric_owners() -> BTreeMap<String, String> {
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
fn expected_families(variant: &str) -> &'static str {
    match variant {
        "provisioned" => "stl,svv,sys",
        "serverless" => "svv,sys",
        "multi_az" => "sys",
        other => panic!("unknown variant {other}"),
    }
}

/// Every expectation of expectations.toml for the runs the daemon serves, as failure lines.
async fn verify_pack(daemon: &mut Daemon, exp: &Expectations) -> Vec<String> {
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

fn assert_no_failures(failures: &[String], exp: &Expectations) {
    assert!(
        failures.is_empty(),
        "{} of {} expectations failed:\n{}",
        failures.len(),
        exp.expect.len() + exp.rows.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_pack_as_a_monitoring_user_reports_every_incident_on_every_deployment() {
    let PackDaemon {
        mut daemon,
        exp,
        _work,
    } = start_pack_daemon().await;
    let m: Metrics = daemon.metrics().await;
    let mut failures = verify_pack(&mut daemon, &exp).await;

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

    // The landing page says what each target is and which checks it skips, and why.
    let page = daemon.get("/").await.body;
    for want in [
        "check applies to provisioned; target is serverless",
        "check applies to provisioned and serverless; target is multi_az",
        "multi_az",
        "stl, svv, sys",
    ] {
        if !page.contains(want) {
            failures.push(format!("landing page lacks {want:?}"));
        }
    }
    // Multi-AZ: the log says once that STL/STV is closed and what would open it.
    let advice = daemon.log_text();
    let stl_advice = advice
        .lines()
        .filter(|l| {
            l.contains("multi_az_healthy") && l.contains("STL/STV/SVL/SVCS relations are refused")
        })
        .count();
    if stl_advice != 1 {
        failures.push(format!(
            "multi_az_healthy: STL advice logged {stl_advice} times"
        ));
    }
    assert_no_failures(&failures, &exp);
    daemon.sigterm();
    daemon.wait_exit(secs(30)).await;
}

/// Serverless and Multi-AZ refuse STL/STV even to superusers, so a superuser's target is
/// detected the same way and runs the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_pack_as_superuser_detects_the_same_deployments() {
    let PackDaemon {
        mut daemon,
        exp,
        _work,
    } = start_pack_daemon_as(None, |r| r.name.ends_with("incidents")).await;
    assert_eq!(exp.run.len(), 3);
    let failures = verify_pack(&mut daemon, &exp).await;
    assert_no_failures(&failures, &exp);
    daemon.sigterm();
    daemon.wait_exit(secs(30)).await;
}

/// A provisioned user without sys:monitor (SYSLOG ACCESS UNRESTRICTED at most) may read the
/// relations visible to all users: those checks run; the ones reading superuser-visible
/// relations are skipped, each naming the relation and the grant, instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superuser_visible_relations_refused_skip_their_checks_with_the_grant() {
    let PackDaemon {
        mut daemon,
        exp,
        _work,
    } = start_pack_daemon_as(Some(emulation::SYSLOG_ROLE), |r| {
        r.name == "provisioned-incidents"
    })
    .await;
    let m = daemon.metrics().await;
    let t = "provisioned_incidents";
    for check in [
        "disk",
        "wlm_queue",
        "queued",
        "commit_queue",
        "table_health",
        "concurrency_scaling",
    ] {
        assert_eq!(
            m.find(names::SUCCESS, &[("target", t), ("check", check)])
                .first()
                .map(|s| s.value),
            None,
            "{check} must be skipped"
        );
    }
    for check in [
        "long_running",
        "blocked_locks",
        "qmr_actions",
        "query_outcomes",
        "connections",
    ] {
        assert_eq!(
            m.get(names::SUCCESS, &[("target", t), ("check", check)]),
            Some(1.0),
            "{check} must run"
        );
    }
    let page = daemon.get("/").await.body;
    assert!(
        page.contains(
            "needs stv_partitions, which this user may not read (42501); GRANT ROLE sys:monitor"
        ),
        "landing page lacks the grant hint"
    );
    let _ = exp;
    daemon.sigterm();
    daemon.wait_exit(secs(30)).await;
}

/// `once` with the shipped pack and `deployment = "auto"`, as the monitoring role, on each
/// emulated deployment with its incidents: exit 0, every check either ran and returned rows or
/// was skipped, and the skipped ones are exactly expectations.toml's list for that deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_0_with_rows_from_every_applicable_check_on_every_deployment() {
    let exp: Expectations = toml::from_str(EXPECTATIONS).expect("expectations.toml parses");
    for variant in Variant::ALL {
        let mut db = pg::database().await;
        load_emulation(&db, variant, &[Scenario::Healthy, Scenario::Incidents]).await;
        db.user = emulation::MONITOR_ROLE.into();
        let work = WorkDir::new();
        let target = db.target_toml("main", "deployment = \"auto\"\nconnect_timeout = \"5s\"");
        let config = work.write("checks.toml", &pack_config(&work, &target));
        let out = crate::support::once(&config, &[]).await;
        let v = variant.as_str();
        assert_eq!(out.code, Some(0), "{v}: {}", out.dump());
        let mut skipped: Vec<String> = Vec::new();
        for line in out.stdout.lines() {
            let check = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("check="))
                .unwrap_or_default()
                .to_string();
            if line.starts_with("skip ") {
                skipped.push(check);
            } else {
                assert!(
                    line.starts_with("ok ") && !line.contains(" rows=0 "),
                    "{v}: {line}\n{}",
                    out.dump()
                );
            }
        }
        skipped.sort();
        let mut want: Vec<String> = exp
            .skipped
            .iter()
            .filter(|s| s.variant == v)
            .flat_map(|s| s.checks.clone())
            .collect();
        want.sort();
        assert_eq!(skipped, want, "{v}: skipped checks");
    }
}

/// Ages a loaded emulation by an hour, as if it had run that long without a reseed.
const AGE_ONE_HOUR: &str = "SELECT rs_emul.shift_time(- interval '1 hour')";

/// Rows a query returns, run as the superuser the emulation was loaded with.
async fn count_rows(db: &TestDb, sql: &str) -> usize {
    let client = db.connect().await;
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count()
}

/// An hour-old demo still shows every incident: the data aged by an hour (timestamps and the
/// reseed clock moved back, as if the emulation had been loaded an hour ago) loses its windowed
/// incidents, and `rs_emul.reseed()` (what `demo` runs every 5 minutes) brings all of them back,
/// on every deployment, the refused STL/STV tables of Serverless and Multi-AZ included: every
/// expectation of the incidents runs holds again through the real daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_old_emulation_after_a_reseed_still_shows_every_incident() {
    let pack = redshift_exporter::config::parse(PACK, |k| {
        Some(if k.ends_with("PORT") { "5439" } else { "x" }.to_string())
    })
    .unwrap();
    let query = |name: &str| {
        pack.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.query.clone())
            .unwrap()
    };
    let db = pg::database().await;
    load_emulation(
        &db,
        Variant::Provisioned,
        &[Scenario::Healthy, Scenario::Incidents],
    )
    .await;
    let windowed = ["load_errors", "query_outcomes", "qmr_actions"];
    for check in windowed {
        assert!(count_rows(&db, &query(check)).await > 0, "{check} fresh");
    }
    db.execute(AGE_ONE_HOUR).await;
    for check in windowed {
        assert_eq!(
            count_rows(&db, &query(check)).await,
            0,
            "{check} after an hour"
        );
    }
    db.execute(emulation::RESEED_NOW).await;
    for check in windowed {
        assert!(
            count_rows(&db, &query(check)).await > 0,
            "{check} after the reseed"
        );
    }
    // A second reseed right after moves nothing (the clock is current).
    let before = count_rows(&db, &query("load_errors")).await;
    db.execute(emulation::RESEED_NOW).await;
    assert_eq!(count_rows(&db, &query("load_errors")).await, before);

    let PackDaemon {
        mut daemon,
        exp,
        _work,
    } = start_pack_daemon_with(
        Some(emulation::MONITOR_ROLE),
        |r| r.name.ends_with("incidents"),
        &[AGE_ONE_HOUR, emulation::RESEED_NOW],
        "",
    )
    .await;
    assert_eq!(exp.run.len(), 3);
    let failures = verify_pack(&mut daemon, &exp).await;
    assert_no_failures(&failures, &exp);
    daemon.sigterm();
    daemon.wait_exit(secs(30)).await;
}
