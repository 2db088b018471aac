//! Self-tests of the harness that need no exporter: the shared PostgreSQL hands out separate
//! databases, a dedicated cluster can be stopped and started again on the same port, and a
//! throwaway cluster lives exactly as long as its test process.

use redshift_exporter::pgtemp::TempCluster;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_server_hands_out_fresh_databases() {
    let a = database().await;
    let b = database().await;
    assert_ne!(a.dbname, b.dbname);
    a.execute("CREATE TABLE x (v int)").await;
    let client = b.connect().await;
    let row = client
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'x'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "databases must be separate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_cluster_stops_and_starts() {
    let cluster = PgCluster::dedicated();
    let db = cluster.create_database().await;
    db.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1);")
        .await;
    cluster.stop();
    assert!(
        tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
                cluster.port()
            ),
            tokio_postgres::NoTls,
        )
        .await
        .is_err(),
        "connect must fail while stopped"
    );
    cluster.start();
    let client = db.connect().await;
    let row = client.query_one("SELECT v FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    let root = cluster.root().to_owned();
    drop(client);
    drop(cluster);
    assert!(
        !root.exists(),
        "dedicated cluster directory removed on drop"
    );
}

/// A cluster started from a thread that ends at once (as tokio's blocking pool threads do)
/// keeps running: the parent-death signal follows the keeper thread, not the caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_outlives_the_thread_that_started_it() {
    let cluster = std::thread::spawn(TempCluster::start)
        .join()
        .unwrap()
        .expect("a throwaway PostgreSQL starts");
    tokio::time::sleep(ms(500)).await;
    let db = TestDb::at("127.0.0.1", cluster.port(), "postgres", "postgres", None);
    let client = db.connect().await;
    let row = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
}

/// The child half of [`a_killed_test_process_takes_its_postgres_with_it`]; does nothing when
/// run on its own.
#[test]
#[ignore = "started by a_killed_test_process_takes_its_postgres_with_it"]
fn child_starts_a_cluster_and_waits() {
    if std::env::var_os("RSE_IT_PGTEMP_CHILD").is_none() {
        return;
    }
    let cluster = TempCluster::start().expect("a throwaway PostgreSQL starts");
    println!("root={}", cluster.root().display());
    std::thread::sleep(secs(60));
}

/// A test process killed outright (SIGKILL: no destructor, no atexit) leaves no postmaster
/// running, and its folder is removed when the next cluster is created.
#[test]
fn a_killed_test_process_takes_its_postgres_with_it() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "harness::child_starts_a_cluster_and_waits",
            "--ignored",
            "--nocapture",
        ])
        .env("RSE_IT_PGTEMP_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let root = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("root=").map(std::path::PathBuf::from))
        .expect("the child reports its cluster");
    let pid: i32 = std::fs::read_to_string(root.join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on a process that exists (checked right before).
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "postmaster {pid} runs");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + secs(15);
    // SAFETY: signal 0 only checks for existence.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "postmaster {pid} still running 15 s after its test process was killed"
        );
        std::thread::sleep(ms(50));
    }
    // (Another test process creating a cluster meanwhile may remove the folder first.)
    let next = TempCluster::start().expect("a throwaway PostgreSQL starts");
    assert!(
        !root.exists(),
        "the stale folder is removed by the next cluster"
    );
    drop(next);
}
