//! Self-tests of the harness that need no exporter: the shared PostgreSQL hands out separate
//! databases, and a dedicated cluster can be stopped and started again on the same port.

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
