//! Deployment detection against a database that is not there yet, then goes away and comes
//! back: a connection error is never taken for an answer (nothing is decided, nothing exported,
//! the checks fail as `connect`), the first successful connect detects, and detection runs again
//! after the target was down.

use redshift_exporter::emulation::{MONITOR_ROLE, Scenario, Variant};

use crate::pack::load_emulation;
use crate::support::names::*;
use crate::support::*;

const INFO: &str = "redshift_exporter_target_info";

fn config(work: &WorkDir, db: &TestDb) -> std::path::PathBuf {
    let mut monitor = db.clone();
    monitor.user = MONITOR_ROLE.into();
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &monitor.target_toml("main", "deployment = \"auto\"")
        + &check_toml(
            "sys_side",
            "SELECT COUNT(*)::float8 AS v FROM sys_query_history",
            "values = [\"v\"]\ninterval = \"1s\"\ndeployment = [\"serverless\", \"multi_az\"]",
        )
        + &check_toml(
            "stl_side",
            "SELECT COUNT(*)::float8 AS v FROM stv_slices",
            "values = [\"v\"]\ninterval = \"1s\"\ndeployment = [\"provisioned\"]",
        );
    work.write("checks.toml", &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_never_decide_the_deployment_and_outages_redetect() {
    let cluster = PgCluster::dedicated();
    let db = cluster.create_database().await;
    load_emulation(&db, Variant::Serverless, &[Scenario::Healthy]).await;
    cluster.stop();
    let work = WorkDir::new();
    let mut d = Daemon::start(&config(&work, &db)).await;

    // Unreachable: both checks fail as connect errors, no deployment is decided or exported,
    // and nothing is skipped (the provisioned-only check is not ruled out on no evidence).
    let m = d
        .wait_metrics("connect errors on both checks", secs(15), |m| {
            ["sys_side", "stl_side"].iter().all(|c| {
                m.check_value_with(ERRORS, c, "kind", "connect")
                    .unwrap_or(0.0)
                    >= 2.0
            })
        })
        .await;
    let info = m.find(INFO, &[("target", "main")]);
    assert!(
        info.len() == 1 && !info[0].labels.contains_key("deployment"),
        "{}",
        m.lines_with(INFO)
    );
    assert!(d.logs_with_message("detected deployment").is_empty());
    assert_eq!(m.check_value(SUCCESS, "stl_side"), Some(0.0));

    // Reachable: detected as Serverless from what rs_monitor may read.
    cluster.start();
    let m = d
        .wait_metrics("detected and the SYS check back", secs(20), |m| {
            m.check_value(SUCCESS, "sys_side") == Some(1.0)
        })
        .await;
    let info = m.find(INFO, &[("target", "main")]);
    assert_eq!(info.len(), 1, "{}", m.lines_with(INFO));
    assert_eq!(info[0].labels["deployment"], "serverless");
    assert_eq!(info[0].labels["families"], "svv,sys");
    // The provisioned-only check is now skipped: its stale failure is gone from /metrics.
    assert_eq!(m.check_value(SUCCESS, "stl_side"), None);
    assert_eq!(d.logs_with_message("detected deployment").len(), 1);

    // Down and back: detected again after the outage.
    cluster.stop();
    d.wait_metrics("target down", secs(15), |m| {
        m.get(TARGET_UP, &[("target", "main")]) == Some(0.0)
    })
    .await;
    cluster.start();
    let deadline = std::time::Instant::now() + secs(20);
    while d.logs_with_message("detected deployment").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "not detected again after the outage:\n{}",
            d.log_text()
        );
        tokio::time::sleep(ms(100)).await;
    }
    d.wait_metrics("the SYS check back after the outage", secs(20), |m| {
        m.check_value(SUCCESS, "sys_side") == Some(1.0)
    })
    .await;
    d.sigterm();
    d.wait_exit(secs(30)).await;
}
