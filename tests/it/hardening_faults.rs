//! Hardening, database faults: the database unreachable without refusing (a loopback proxy that
//! first blackholes, then forwards), a session killed mid-query, the database restarted
//! repeatedly while checks run, connections retired by `max_connection_age`. Every test runs the
//! real daemon against a real PostgreSQL and asserts that nothing was lost, nothing crashed, and
//! the failure is visible in metrics and logs. Archive faults are in `hardening_archive`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::names::*;
use crate::support::*;

const MAIN: &[(&str, &str)] = &[("target", "main")];

/// A loopback TCP proxy in front of PostgreSQL. While blackholing it accepts connections and
/// reads (and drops) whatever arrives, but never answers; while forwarding it relays new
/// connections to the real server. Switching to blackhole also cuts forwarded connections.
struct Proxy {
    addr: SocketAddr,
    forward: Arc<AtomicBool>,
    /// Bumped on every switch, so relays started in an earlier mode stop.
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(upstream: u16, forward: bool) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fwd = Arc::new(AtomicBool::new(forward));
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (f2, e2) = (fwd.clone(), epoch.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let forward = f2.load(Ordering::Acquire);
                let my_epoch = e2.load(Ordering::Acquire);
                let e3 = e2.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let changed = async {
                        while e3.load(Ordering::Acquire) == my_epoch {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    if forward {
                        let Ok(mut up) =
                            tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut sock, &mut up) => {}
                            _ = changed => {}
                        }
                    } else {
                        // Swallow everything, answer nothing, until the peer gives up.
                        let mut buf = [0u8; 4096];
                        loop {
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(_) => {}
                            }
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            forward: fwd,
            epoch,
        }
    }

    fn set_forward(&self, on: bool) {
        self.forward.store(on, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

fn sum(m: &Metrics, name: &str, check: &str, key: &str, vals: &[&str]) -> f64 {
    vals.iter()
        .map(|v| m.check_value_with(name, check, key, v).unwrap_or(0.0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_database_fails_at_the_timeout_and_recovers() {
    let db = database().await;
    let proxy = Proxy::start(db.port, false).await;
    let work = WorkDir::new();
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml(
            "main",
            &format!("port = {}\nconnect_timeout = \"1s\"", proxy.addr.port()),
        )
        + &check_toml(
            "bh",
            "SELECT 3 AS v",
            "values = [\"v\"]\ninterval = \"1s\"\ntimeout = \"2s\"",
        );
    let cfg = work.write("checks.toml", &text);
    let mut d = Daemon::start(&cfg).await;

    let m = d
        .wait_metrics("target_up 0 and a failed run", secs(8), |m| {
            m.get(TARGET_UP, MAIN) == Some(0.0) && m.check_value(SUCCESS, "bh") == Some(0.0)
        })
        .await;
    let failed0 = sum(&m, RUNS, "bh", "result", &["error", "timeout"]);
    // Runs keep being attempted and each fails within its deadline: never a hang.
    let m = d
        .wait_metrics("three more failed runs", secs(10), |m| {
            sum(m, RUNS, "bh", "result", &["error", "timeout"]) >= failed0 + 3.0
        })
        .await;
    let dur = m.check_value(DURATION, "bh").unwrap();
    assert!(
        dur <= 2.5,
        "a run against a silent server took {dur} s; timeout 2 s, connect_timeout 1 s"
    );
    assert!(
        m.find("itest_bh_v", &[]).is_empty(),
        "no data while unreachable:\n{}",
        m.lines_with("itest_bh")
    );
    let errs = sum(
        &m,
        ERRORS,
        "bh",
        "kind",
        &["connect", "timeout", "pool_timeout"],
    );
    assert!(errs >= 3.0, "{}", m.lines_with(ERRORS));
    let t = Instant::now();
    assert_eq!(d.get("/metrics").await.status, 200);
    assert!(
        t.elapsed() < secs(1),
        "scrape took {:?} while the database hangs",
        t.elapsed()
    );
    let line = d
        .wait_log("\"check failed\" for bh", secs(2), |l| {
            l.is_message("check failed") && l.has("check", "bh")
        })
        .await;
    assert!(
        line.field("error").is_some_and(|e| !e.is_empty()),
        "{}",
        line.0
    );

    proxy.set_forward(true);
    let back = Instant::now();
    d.wait_metrics("recovery through the proxy", secs(8), |m| {
        m.get(TARGET_UP, MAIN) == Some(1.0)
            && m.check_value(SUCCESS, "bh") == Some(1.0)
            && m.get("itest_bh_v", MAIN) == Some(3.0)
    })
    .await;
    eprintln!("recovered {:?} after forwarding started", back.elapsed());
    assert!(d.try_wait_exit(ms(10)).await.is_none(), "daemon exited");
}

/// Backend pid of the exporter's session running a statement containing `needle`, if any.
async fn active_pid(client: &tokio_postgres::Client, needle: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND state = 'active' AND strpos(query, $1) > 0 LIMIT 1",
            &[&needle],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// Backend pids of sessions with application_name `redshift-exporter` in the client's database.
async fn exporter_pids(client: &tokio_postgres::Client) -> Vec<i32> {
    client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'redshift-exporter' ORDER BY pid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_killed_mid_query_fails_that_run_and_leaves_the_pool() {
    let db = database().await;
    let work = WorkDir::new();
    // pool_size 1: if the broken session stayed in the pool, every later run would fail.
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml("main", "pool_size = 1")
        + &check_toml(
            "victim",
            "SELECT 7 AS v FROM pg_sleep(1.2)",
            "values = [\"v\"]\ninterval = \"2s\"\ntimeout = \"5s\"",
        );
    let cfg = work.write("checks.toml", &text);
    let client = db.connect().await;
    let mut d = Daemon::start(&cfg).await;
    d.wait_metrics("a first successful run", secs(10), |m| {
        m.get("itest_victim_v", MAIN) == Some(7.0)
    })
    .await;

    let deadline = Instant::now() + secs(6);
    let pid = loop {
        if let Some(pid) = active_pid(&client, "pg_sleep(1.2)").await {
            break pid;
        }
        assert!(Instant::now() < deadline, "victim never seen running");
        tokio::time::sleep(ms(20)).await;
    };
    let killed: bool = client
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);

    let m = d
        .wait_metrics("the killed run to be counted as failed", secs(5), |m| {
            m.check_value(SUCCESS, "victim") == Some(0.0)
        })
        .await;
    assert!(
        m.find("itest_victim_v", &[]).is_empty(),
        "{}",
        m.lines_with("itest_victim")
    );
    let line = d
        .wait_log("\"check failed\" for victim", secs(2), |l| {
            l.is_message("check failed") && l.has("check", "victim")
        })
        .await;
    let kind = line.field("kind").unwrap_or_default();
    assert!(
        kind == "query" || kind == "connect",
        "a terminated session is a query/connect failure, not {kind:?}: {}",
        line.0
    );
    assert!(
        line.field("error")
            .is_some_and(|e| e.contains("terminat") || e.contains("closed")),
        "the cause is in the log: {}",
        line.0
    );

    // The next run gets a fresh session and succeeds.
    let m = d
        .wait_metrics("the next run to succeed", secs(6), |m| {
            m.get("itest_victim_v", MAIN) == Some(7.0)
                && m.check_value(SUCCESS, "victim") == Some(1.0)
        })
        .await;
    assert_eq!(
        m.get(POOL_MAX, MAIN),
        Some(1.0),
        "{}",
        m.lines_with(POOL_MAX)
    );
    let pids = exporter_pids(&client).await;
    assert!(pids.len() <= 1, "pool of 1 holds {pids:?}");
    assert!(
        !pids.contains(&pid),
        "the terminated backend {pid} is still listed: {pids:?}"
    );
    assert!(d.try_wait_exit(ms(10)).await.is_none(), "daemon exited");
}

/// Sessions of the exporter on the cluster, counted from a fresh connection (the server restarts).
async fn exporter_sessions(db: &TestDb) -> Option<i64> {
    let mut cfg = db.pg_config();
    cfg.connect_timeout(Duration::from_millis(500));
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
    let task = tokio::spawn(conn);
    let n = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'redshift-exporter'",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get::<_, i64>(0));
    drop(client);
    let _ = task.await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_database_restarts_leak_no_sessions_and_recover_within_an_interval() {
    const POOL: i64 = 3;
    let cluster = PgCluster::dedicated();
    let db = cluster.create_database().await;
    let work = WorkDir::new();
    let mut text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml("main", &format!("pool_size = {POOL}"));
    let names: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    for n in &names {
        text += &check_toml(
            n,
            "SELECT 1 AS v FROM pg_sleep(0.2)",
            "values = [\"v\"]\ninterval = \"2s\"\ntimeout = \"2s\"",
        );
    }
    let cfg = work.write("checks.toml", &text);
    let mut d = Daemon::start(&cfg).await;
    let all_ok = |m: &Metrics, after: f64| {
        names.iter().all(|n| {
            m.check_value(SUCCESS, n) == Some(1.0)
                && m.check_value(LAST_SUCCESS, n).unwrap_or(0.0) >= after
        })
    };
    d.wait_metrics("every check up", secs(10), |m| all_ok(m, 0.0))
        .await;

    // Watch the exporter's sessions the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut max = 0;
            let mut seen = 0;
            while !stop.load(Ordering::Acquire) {
                if let Some(n) = exporter_sessions(&db).await {
                    max = max.max(n);
                    seen += 1;
                }
                tokio::time::sleep(ms(50)).await;
            }
            (max, seen)
        })
    };

    let mut recoveries = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(ms(700)).await;
        tokio::task::block_in_place(|| cluster.stop());
        d.wait_metrics(&format!("round {round}: a failed run"), secs(8), |m| {
            names.iter().any(|n| m.check_value(SUCCESS, n) == Some(0.0))
        })
        .await;
        tokio::task::block_in_place(|| cluster.start());
        let up_at = Instant::now();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // One interval (2 s) plus the run itself and a scrape's slack.
        d.wait_metrics(
            &format!("round {round}: recovery within one interval"),
            secs(4),
            |m| all_ok(m, now - 1.0) && m.get(TARGET_UP, MAIN) == Some(1.0),
        )
        .await;
        recoveries.push(up_at.elapsed());
    }
    tokio::time::sleep(secs(1)).await;
    stop.store(true, Ordering::Release);
    let (max, seen) = watcher.await.unwrap();
    eprintln!("recoveries {recoveries:?}; max exporter sessions {max} over {seen} samples");
    assert!(seen >= 20, "the watcher saw too little ({seen} samples)");
    assert!(
        max <= POOL,
        "{max} exporter sessions seen; pool_size is {POOL}"
    );
    let m = d.metrics().await;
    let pooled = m
        .get(POOL_CONNECTIONS, &[("target", "main"), ("state", "idle")])
        .unwrap_or(0.0)
        + m.get(POOL_CONNECTIONS, &[("target", "main"), ("state", "in_use")])
            .unwrap_or(0.0);
    assert!(pooled <= POOL as f64, "{}", m.lines_with(POOL_CONNECTIONS));
    let now = exporter_sessions(&db).await.unwrap();
    assert!(now <= POOL, "{now} sessions after the restarts");
    assert!(d.try_wait_exit(ms(10)).await.is_none(), "daemon exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connection_age_are_replaced() {
    let db = database().await;
    let work = WorkDir::new();
    // Same database twice: `aged` retires sessions after 2 s, `steady` keeps the default (1 h).
    let text = exporter_toml(&work.archive(), "archive = false")
        + "\n"
        + &db.target_toml("aged", "pool_size = 1\nmax_connection_age = \"2s\"")
        + "\n"
        + &db.target_toml("steady", "pool_size = 1")
        + &check_toml(
            "backend",
            "SELECT pg_backend_pid()::float8 AS pid",
            "values = [\"pid\"]\ninterval = \"1s\"",
        );
    let cfg = work.write("checks.toml", &text);
    let client = db.connect().await;
    let d = Daemon::start(&cfg).await;
    let pid_of = |m: &Metrics, t: &str| m.get("itest_backend_pid", &[("target", t)]);
    let m = d
        .wait_metrics("both targets report a backend pid", secs(10), |m| {
            pid_of(m, "aged").is_some() && pid_of(m, "steady").is_some()
        })
        .await;
    let (aged0, steady0) = (pid_of(&m, "aged").unwrap(), pid_of(&m, "steady").unwrap());
    let runs0 = m
        .get(
            RUNS,
            &[
                ("target", "steady"),
                ("check", "backend"),
                ("result", "success"),
            ],
        )
        .unwrap();
    let started = Instant::now();
    let m = d
        .wait_metrics("the aged target to get a new backend", secs(8), |m| {
            pid_of(m, "aged").is_some_and(|p| p != aged0)
        })
        .await;
    eprintln!("aged session replaced after {:?}", started.elapsed());
    // Wait for a few more runs of the steady target: it must keep its session.
    let m2 = d
        .wait_metrics("three more runs on steady", secs(8), |m| {
            m.get(
                RUNS,
                &[
                    ("target", "steady"),
                    ("check", "backend"),
                    ("result", "success"),
                ],
            )
            .unwrap_or(0.0)
                >= runs0 + 3.0
        })
        .await;
    assert_eq!(
        pid_of(&m2, "steady"),
        Some(steady0),
        "a session younger than max_connection_age is reused"
    );
    assert_eq!(
        m.get(SUCCESS, &[("target", "aged"), ("check", "backend")]),
        Some(1.0),
        "retiring a session never fails a run"
    );
    // The old session was closed, not leaked.
    let pids: Vec<f64> = exporter_pids(&client)
        .await
        .into_iter()
        .map(f64::from)
        .collect();
    assert!(
        !pids.contains(&aged0),
        "backend {aged0} past max_connection_age is still connected: {pids:?}"
    );
    assert!(pids.len() <= 2, "two pools of one: {pids:?}");
}
