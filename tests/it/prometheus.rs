//! A real Prometheus (Debian's `prometheus`) in the loop: started with the shipped scrape config
//! and alert rules (`deploy/prometheus/`) against the daemon running the shipped pack on the
//! Redshift emulation. Through Prometheus's HTTP API: the target is up, the exporter's series
//! arrived, and alerts for seeded incidents fire (on the incident databases only).
//!
//! Only the intervals are shortened (scrape and evaluation every second); expressions,
//! thresholds and `for` durations are the shipped ones, so the asserted alerts are those that
//! fire without a `for` wait.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pack::{PackDaemon, start_pack_daemon};
use crate::support::http::get as http_get;
use crate::support::pg::free_port;
use crate::support::secs;

/// Kills Prometheus when the test ends, however it ends.
struct Prometheus {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

async fn start_prometheus(exporter: std::net::SocketAddr) -> Prometheus {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root.join("rules"), &dir.path().join("rules"));
    let shipped = std::fs::read_to_string(root.join("prometheus.yml")).unwrap();
    assert!(
        shipped.contains("localhost:9439"),
        "the shipped config names the default target"
    );
    let config = shipped
        .replace("localhost:9439", &exporter.to_string())
        .replace("scrape_interval: 30s", "scrape_interval: 1s")
        .replace("evaluation_interval: 30s", "evaluation_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (Debian package prometheus)");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let p = Prometheus {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + secs(30);
    loop {
        if let Ok(r) = http_get(p.addr, "/-/ready").await {
            if r.status == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "Prometheus did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p
}

/// GETs a Prometheus API path and returns its `data` field.
async fn api(p: &Prometheus, path: &str) -> serde_json::Value {
    let r = http_get(p.addr, path).await.expect("Prometheus answers");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(v["status"], "success", "{path}: {}", r.body);
    v["data"].clone()
}

/// Polls `f` every 500 ms until it returns `Some`, or fails after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {within:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_exporter_and_fires_incident_alerts() {
    // `_work` stays bound: with `..` the work dir would be deleted here, under the running daemon.
    let PackDaemon {
        mut daemon, _work, ..
    } = start_pack_daemon().await;
    let prom = start_prometheus(daemon.addr()).await;

    // The target is up.
    eventually("scrape target up", secs(30), || async {
        let d = api(&prom, "/api/v1/targets").await;
        let targets = d["activeTargets"].as_array().cloned().unwrap_or_default();
        match targets
            .iter()
            .find(|t| t["labels"]["job"] == "redshift-exporter")
        {
            Some(t) if t["health"] == "up" => Ok(()),
            Some(t) => Err(format!("health {} error {}", t["health"], t["lastError"])),
            None => Err(format!("no redshift-exporter target in {targets:?}")),
        }
    })
    .await;

    // The exporter's own and the pack's series arrived, per target.
    eventually("series in Prometheus", secs(30), || async {
        let d = api(&prom, "/api/v1/query?query=redshift_exporter_check_success").await;
        let n = d["result"].as_array().map_or(0, |r| r.len());
        let disk = api(&prom, "/api/v1/query?query=redshift_disk_used_ratio%7Btarget%3D%22provisioned_incidents%22%7D").await;
        let disk_n = disk["result"].as_array().map_or(0, |r| r.len());
        if n >= 70 && disk_n == 2 { Ok(()) } else { Err(format!("{n} success series, {disk_n} disk series")) }
    })
    .await;

    // Seeded incidents fire their alerts, on the incident databases only.
    let firing = eventually("incident alerts firing", secs(30), || async {
        let d = api(&prom, "/api/v1/alerts").await;
        let alerts = d["alerts"].as_array().cloned().unwrap_or_default();
        let firing: Vec<(String, String)> = alerts
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["labels"]["target"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let want = [
            ("RedshiftLongRunningQuery", "provisioned_incidents"),
            (
                "RedshiftMaterializedViewUnrefreshable",
                "provisioned_incidents",
            ),
            (
                "RedshiftMaterializedViewUnrefreshable",
                "serverless_incidents",
            ),
            ("RedshiftLoadErrors", "provisioned_incidents"),
        ];
        if want
            .iter()
            .all(|(a, t)| firing.iter().any(|(fa, ft)| fa == a && ft == t))
        {
            Ok(firing)
        } else {
            Err(format!("firing: {firing:?}"))
        }
    })
    .await;
    for (alert, target) in &firing {
        assert!(
            !target.ends_with("_healthy"),
            "{alert} fires on the healthy database {target}: {firing:?}"
        );
        assert!(
            !alert.starts_with("RedshiftExporter") && alert != "RedshiftTargetDown",
            "the exporter itself is unhealthy: {alert} on {target}"
        );
    }

    daemon.sigterm();
    daemon.wait_exit(secs(30)).await;
}

/// Percent-encodes a PromQL expression or selector for a query string.
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET /metrics with the `Accept` header Prometheus 2.x sends (scrape/scrape.go):
/// (content type, body).
async fn get_as_prometheus(addr: std::net::SocketAddr) -> (String, String) {
    const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = crate::support::http::request(addr, "GET", "/metrics", &[("Accept", ACCEPT)], b"")
        .await
        .expect("a response within the deadline");
    let content_type = r.header("content-type").expect("a content type").to_owned();
    (content_type, r.body)
}

/// OpenMetrics end to end: Prometheus asks for it first, so a real Prometheus parses our
/// OpenMetrics exposition with its strict parser (labels and HELP that need escaping, +Inf,
/// a failing check, counters). The target metadata proves which format it parsed: from
/// OpenMetrics a counter's family is recorded without `_total`, from the text format with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_parses_the_openmetrics_exposition() {
    use crate::support::*;
    let db = database().await;
    let work = WorkDir::new();
    let checks = check_toml(
        "escapes",
        "SELECT E'quote\" back\\\\slash' AS odd, 'new\nline'::text AS nl, 3 AS v, 'Infinity'::float8 AS big",
        "labels = [\"odd\", \"nl\"]\nvalues = [\"v\", \"big\"]",
    ) + &check_toml(
        "named",
        "SELECT 1.5::float8 AS x",
        "values = [{ column = \"x\", name = \"named_ratio\", help = \"A ratio with \\\\ and \\\"quotes\\\".\" }]",
    ) + &check_toml("broken", "SELECT v FROM no_such_table", "values = [\"v\"]");
    let config = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let mut daemon = Daemon::start(&config).await;
    daemon
        .wait_metrics("the first runs", secs(10), |m| {
            m.check_value(names::SUCCESS, "escapes") == Some(1.0)
                && m.check_value(names::SUCCESS, "broken") == Some(0.0)
        })
        .await;

    let (content_type, body) = get_as_prometheus(daemon.addr()).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "{}",
        &body[body.len().saturating_sub(200)..]
    );
    assert!(body.contains("# TYPE redshift_exporter_check_runs counter\n"));
    assert!(body.contains("# HELP itest_named_ratio A ratio with \\\\ and \\\"quotes\\\".\n"));

    let prom = start_prometheus(daemon.addr()).await;
    eventually("scrape target up", secs(30), || async {
        let d = api(&prom, "/api/v1/targets").await;
        let t = d["activeTargets"].as_array().and_then(|ts| {
            ts.iter()
                .find(|t| t["labels"]["job"] == "redshift-exporter")
                .cloned()
        });
        match t {
            Some(t) if t["health"] == "up" && t["lastError"] == "" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let meta = |metric: &'static str| {
        let prom = &prom;
        async move {
            let path = format!(
                "/api/v1/targets/metadata?match_target={}&metric={metric}",
                q("{job=\"redshift-exporter\"}")
            );
            api(prom, &path)
                .await
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let runs = meta("redshift_exporter_check_runs").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["type"], "counter", "{runs:?}");
    assert!(
        meta("redshift_exporter_check_runs_total").await.is_empty(),
        "a text-format parse would record the family with _total"
    );
    let help = meta("itest_named_ratio").await;
    assert_eq!(
        help[0]["help"], "A ratio with \\ and \"quotes\".",
        "{help:?}"
    );

    let series = eventually("the escaped series in Prometheus", secs(30), || async {
        let d = api(
            &prom,
            &format!("/api/v1/query?query={}", q("itest_escapes_big")),
        )
        .await;
        match d["result"].as_array() {
            Some(r) if r.len() == 1 => Ok(r[0].clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(series["metric"]["odd"], "quote\" back\\slash", "{series}");
    assert_eq!(series["metric"]["nl"], "new\nline", "{series}");
    assert_eq!(series["value"][1], "+Inf", "{series}");
    let runs = api(
        &prom,
        &format!(
            "/api/v1/query?query={}",
            q("redshift_exporter_check_runs_total{check=\"broken\",result=\"error\"}")
        ),
    )
    .await;
    assert_eq!(runs["result"].as_array().map(Vec::len), Some(1), "{runs}");

    daemon.sigterm();
    daemon.wait_exit(secs(30)).await;
}
