//! `redshift-exporter demo`: starts its own PostgreSQL with the Redshift emulation, serves the
//! shipped pack's metrics for a provisioned, a Serverless and a Multi-AZ target (as a
//! least-privilege monitoring user), and removes everything (server processes, data folder,
//! archive) on Ctrl-C, exiting 0.

use std::time::Duration;

use crate::support::demo::Demo;
use crate::support::http::get as http_get;
use crate::support::prom::Metrics;
use crate::support::secs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_every_deployment_and_cleans_up_on_ctrl_c() {
    let mut demo = Demo::start(secs(60)).await;
    let addr = demo.addr;
    let listen = addr.to_string();
    // It serves the pack's metrics for every deployment once every first run is done.
    let m = http_get(addr, "/metrics").await.unwrap();
    let metrics = Metrics::parse(&m.body).unwrap();
    let printed = demo.stdout();
    assert!(
        printed.contains(&format!("http://{listen}/metrics")),
        "{printed}"
    );
    assert!(printed.contains("CSV archive"), "{printed}");
    // The landing page comes first, before the other lines...
    assert!(
        printed
            .lines()
            .next()
            .unwrap_or_default()
            .contains(&format!("http://{listen}/ ")),
        "the first line is not the landing page:\n{printed}"
    );
    // ...and names the seeded incidents.
    let page = http_get(addr, "/").await.unwrap().body;
    for want in [
        "redshift_disk_used_ratio{node=\"1\"}</code> = <b>94 %",
        "redshift_wlm_queue_queued_queries",
        "redshift_locks_waiting",
    ] {
        assert!(page.contains(want), "landing page lacks {want:?}:\n{page}");
    }
    // The seeded incident (disk 94% on node 1) on the provisioned target...
    assert_eq!(
        metrics.get(
            "redshift_disk_used_ratio",
            &[("target", "provisioned"), ("node", "1")]
        ),
        Some(0.94)
    );
    // ...Serverless usage on the Serverless one, and no failed check anywhere.
    assert!(
        !metrics
            .find(
                "redshift_serverless_charged_rpu_seconds",
                &[("target", "serverless")]
            )
            .is_empty()
    );
    // ...and each target detected as what it emulates.
    for t in ["provisioned", "serverless", "multi_az"] {
        assert_eq!(
            metrics
                .find(
                    "redshift_exporter_target_info",
                    &[("target", t), ("deployment", t)]
                )
                .len(),
            1,
            "{t} not detected as {t}"
        );
    }
    let failed: Vec<String> = metrics
        .find("redshift_exporter_check_success", &[])
        .into_iter()
        .filter(|s| s.value != 1.0)
        .map(|s| s.to_string())
        .collect();
    assert!(failed.is_empty(), "failed checks in the demo: {failed:?}");
    let archive = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("CSV archive"))
        .map(|p| p.trim().to_string())
        .unwrap();

    // Ctrl-C: exit 0, and nothing is left behind.
    demo.signal(libc::SIGINT);
    let status = demo.wait_exit(secs(30), "after SIGINT").await;
    assert!(status.success(), "demo exited with {status}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(demo.stdout().contains("Demo stopped"), "{}", demo.stdout());
    assert!(
        !std::path::Path::new(&archive).exists(),
        "archive {archive} left behind"
    );
    demo.assert_no_postgres_left();
}

/// A second Ctrl-C while the demo shuts down: it exits (code 1) and still leaves no
/// PostgreSQL process or folder behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_second_signal_leaves_no_postgres_behind() {
    let mut demo = Demo::start(secs(60)).await;
    for _ in 0..2 {
        demo.signal(libc::SIGTERM);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    demo.wait_exit(secs(15), "after two signals").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    demo.assert_no_postgres_left();
}
