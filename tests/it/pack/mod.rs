//! The shipped Redshift check pack (`checks.toml`) against the Redshift emulation, through the
//! real daemon: one target per run of `tests/fixtures/redshift/expectations.toml` (provisioned,
//! Serverless and Multi-AZ, healthy and with every catalogued incident), deployment detected at
//! connect from what the user may read. Every `[[expect]]`, `[[rows]]` and `[[skipped]]` entry
//! must hold on `/metrics`, every check that applies must succeed, and the exposition must pass
//! `promtool check metrics`. The pack runs as the least-privilege monitoring role the
//! emulation creates (granted `sys:monitor`, as docs/checks.md tells operators), as a
//! superuser (Serverless and Multi-AZ refuse even superusers), and as a user without
//! `sys:monitor` (superuser-visible relations refused: those checks skip, naming the grant).
//!
//! The harness (expectations, emulation, the pack daemon) is in [`harness`], the verification
//! of a running daemon against the expectations in [`verify`]; the tests are here.

mod harness;
mod verify;

use redshift_exporter::emulation::{self, Scenario, Variant};

use crate::support::daemon::WorkDir;
use crate::support::names;
use crate::support::pg::{self, TestDb};
use crate::support::prom::Metrics;
use crate::support::secs;

pub use harness::*;
use verify::*;

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
            m.find(names::SUCCESS, &[("target", t), ("check", check)])
                .first()
                .map(|s| s.value),
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
