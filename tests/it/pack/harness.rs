//! The pack tests' harness: the expectations file's model (`[[run]]`, `[[expect]]`, `[[rows]]`,
//! `[[skipped]]`), loading the Redshift emulation into a fresh database, the pack's config, and
//! the real daemon running the pack on one emulated database per run ([`PackDaemon`]; also
//! used by the page, Prometheus and detection tests).

use std::collections::BTreeMap;

use serde::Deserialize;

use redshift_exporter::emulation::{self, Scenario, Variant};

use crate::support::daemon::{Daemon, WorkDir};
use crate::support::pg::{self, TestDb};
use crate::support::prom::Sample;
use crate::support::secs;

pub(super) const EXPECTATIONS: &str = include_str!("../../fixtures/redshift/expectations.toml");
pub(super) const PACK: &str = include_str!("../../../checks.toml");

#[derive(Deserialize)]
pub struct Expectations {
    pub run: Vec<Run>,
    pub(super) skipped: Vec<Skipped>,
    pub(super) expect: Vec<Expect>,
    pub(super) rows: Vec<Rows>,
}

#[derive(Deserialize)]
pub struct Run {
    pub name: String,
    pub(super) variant: String,
    pub(super) scenarios: Vec<String>,
    /// Another run whose expectations hold here too, for the checks that run here.
    pub(super) expect_as: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Skipped {
    pub(super) variant: String,
    pub(super) checks: Vec<String>,
}

#[derive(Deserialize, Debug)]
pub(super) struct Expect {
    pub(super) run: String,
    pub(super) metric: String,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    pub(super) value: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
    pub(super) series: Option<String>,
    #[serde(default)]
    pub(super) absent: bool,
}

#[derive(Deserialize, Debug)]
pub(super) struct Rows {
    pub(super) run: String,
    pub(super) check: String,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
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

pub(super) async fn load(db: &TestDb, run: &Run) {
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
pub(super) fn pack_config(work: &WorkDir, targets: &str) -> String {
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

pub(super) fn matches_labels(
    s: &Sample,
    target: &str,
    want: &BTreeMap<String, String>,
    exact: bool,
) -> bool {
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

pub(super) fn check_value(e: &Expect, v: f64) -> Result<(), String> {
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
