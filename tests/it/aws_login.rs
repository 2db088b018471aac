//! AWS-provided logins end to end against a real PostgreSQL with TLS and the in-process AWS
//! stand-in ([`crate::support::aws`]): Secrets Manager (login, rotation recovered by one
//! re-read), IAM temporary credentials for both flavours (`GetClusterCredentialsWithIAM`,
//! Serverless `GetCredentials`, `GetClusterCredentials`), one fetch for many sessions,
//! renewal before expiry, one re-fetch after a refused login, backoff on throttling.

use std::sync::Arc;
use std::time::Duration;

use redshift_exporter::db::{ErrorKind, Target};
use redshift_exporter::pgtemp::TempCluster;

use crate::support::TestDb;
use crate::support::aws::stand_in;
use crate::tls::Pki;

pub(crate) use crate::tls::tls_cluster;

fn admin(c: &TempCluster) -> TestDb {
    TestDb::at("127.0.0.1", c.port(), "postgres", "postgres", None)
}

/// A target named `name` on the cluster, over verified TLS, with `login` (keys and tables).
fn target(c: &TempCluster, pki: &Pki, name: &str, keys: &str, tables: &str) -> Target {
    let ca = pki.path("ca.crt").display().to_string();
    let text = format!(
        "[targets.{name}]\nhost = \"localhost\"\nport = {}\ndatabase = \"postgres\"\nsslmode = \"verify-full\"\nca_file = \"{ca}\"\nconnect_timeout = \"5s\"\npool_size = 4\n{keys}\n{tables}\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nvalues = [\"v\"]\n",
        c.port()
    );
    let config =
        redshift_exporter::config::parse(&text, |_| None).unwrap_or_else(|p| panic!("{p:?}"));
    Target::new(config.targets[0].clone()).unwrap()
}

async fn current_user(t: &Target) -> String {
    let client = t
        .client(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = client
        .simple_query("SELECT current_user::text")
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

/// Opens `n` sessions at once; returns the users they logged in as.
async fn concurrent(t: &Arc<Target>, n: usize) -> Vec<deadpool_postgres::Object> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            t.client(Duration::from_secs(10)).await
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

/// No idle session is left, so the next `client` opens (and logs in) a new one.
fn drop_idle(t: &Target) {
    t.pool.retain(|_, _| false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_manager_login_recovers_from_rotation_by_one_re_read() {
    let aws = stand_in();
    let (cluster, pki) = tls_cluster().await;
    let id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:exporter-rot-AbCdEf";
    let secret = |pw: &str| {
        serde_json::json!({"engine": "redshift", "username": "rot_user", "password": pw,
            "host": "localhost", "port": 5439, "dbname": "dev"})
        .to_string()
    };
    aws.set(id, |r| r.secret_string = secret("Rot-Pass-One-1"));
    admin(&cluster)
        .execute("CREATE ROLE rot_user LOGIN PASSWORD 'Rot-Pass-One-1'")
        .await;
    let t = Arc::new(target(
        &cluster,
        &pki,
        "sm",
        &format!("password_secret = \"{id}\""),
        "",
    ));
    let sessions = concurrent(&t, 3).await;
    assert_eq!(aws.get(id).calls, 1, "one read for three new sessions");
    assert!(
        aws.get(id)
            .scope
            .ends_with("/us-east-1/secretsmanager/aws4_request")
    );
    drop(sessions);
    assert_eq!(current_user(&t).await, "rot_user");
    assert_eq!(t.db_user().as_deref(), Some("rot_user"));

    // Rotation: the role's password and the secret change; the next login is refused, the
    // secret is read again once, and the login succeeds.
    let kept = t.client(Duration::from_secs(5)).await.unwrap();
    admin(&cluster)
        .execute("ALTER ROLE rot_user PASSWORD 'Rot-Pass-Two-2'")
        .await;
    aws.set(id, |r| r.secret_string = secret("Rot-Pass-Two-2"));
    let fresh = {
        drop_idle(&t);
        let mut more = concurrent(&t, 1).await;
        more.pop().unwrap()
    };
    assert_eq!(
        aws.get(id).calls,
        2,
        "exactly one re-read after the refused login"
    );
    fresh.simple_query("SELECT 1").await.unwrap();
    kept.simple_query("SELECT 1")
        .await
        .expect("a session opened before the rotation keeps working");
    drop((kept, fresh));

    // A reload that keeps the target reads the secret again for the next new session.
    t.reloaded();
    drop_idle(&t);
    let _session = t.client(Duration::from_secs(10)).await.unwrap();
    assert_eq!(aws.get(id).calls, 3, "re-read after a reload");

    // A refusal a re-read does not cure is reported, after exactly one more read.
    admin(&cluster)
        .execute("ALTER ROLE rot_user PASSWORD 'Rot-Pass-Three-3'")
        .await;
    drop_idle(&t);
    let err = t.client(Duration::from_secs(10)).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert!(!err.message.contains("Rot-Pass"), "{err}");
    assert_eq!(aws.get(id).calls, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_credentials_for_both_flavours_one_fetch_for_many_sessions() {
    let aws = stand_in();
    let (cluster, pki) = tls_cluster().await;
    let db = admin(&cluster);
    db.execute("CREATE ROLE \"IAM:alice\" LOGIN PASSWORD 'Iam-Temp-Pw-1'; CREATE ROLE \"IAMR:exporter-role\" LOGIN PASSWORD 'Sls-Temp-Pw-1'; CREATE ROLE \"IAM:exporter\" LOGIN PASSWORD 'V1-Temp-Pw-1'").await;

    // Provisioned without db_user: GetClusterCredentialsWithIAM, the caller's identity.
    aws.set("c-withiam", |r| {
        r.db_user = "IAM:alice".into();
        r.db_password = "Iam-Temp-Pw-1".into();
    });
    let t = Arc::new(target(
        &cluster,
        &pki,
        "v2",
        "",
        "[targets.v2.iam]\ncluster_identifier = \"c-withiam\"\nregion = \"us-east-1\"",
    ));
    let sessions = concurrent(&t, 4).await;
    assert_eq!(
        aws.get("c-withiam").calls,
        1,
        "concurrent connects share one fetch"
    );
    assert!(
        aws.get("c-withiam")
            .scope
            .ends_with("/us-east-1/redshift/aws4_request")
    );
    drop(sessions);
    assert_eq!(current_user(&t).await, "IAM:alice");
    assert_eq!(t.auth.as_ref().unwrap().fetches(), 1);

    // Serverless: GetCredentials for the workgroup.
    aws.set("wg-test", |r| {
        r.db_user = "IAMR:exporter-role".into();
        r.db_password = "Sls-Temp-Pw-1".into();
    });
    let s = target(
        &cluster,
        &pki,
        "sls",
        "",
        "[targets.sls.iam]\nworkgroup = \"wg-test\"\nregion = \"us-east-1\"",
    );
    assert_eq!(current_user(&s).await, "IAMR:exporter-role");
    assert!(
        aws.get("wg-test")
            .scope
            .ends_with("/us-east-1/redshift-serverless/aws4_request")
    );

    // Provisioned with db_user: GetClusterCredentials.
    aws.set("c-v1", |r| {
        r.db_user = "IAM:exporter".into();
        r.db_password = "V1-Temp-Pw-1".into();
    });
    let v1 = target(
        &cluster,
        &pki,
        "v1",
        "",
        "[targets.v1.iam]\ncluster_identifier = \"c-v1\"\nregion = \"us-east-1\"\ndb_user = \"exporter\"",
    );
    assert_eq!(current_user(&v1).await, "IAM:exporter");
    assert_eq!(aws.get("c-v1").calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_credentials_are_renewed_before_expiry_and_re_fetched_once_when_refused() {
    let aws = stand_in();
    let (cluster, pki) = tls_cluster().await;
    let db = admin(&cluster);
    db.execute("CREATE ROLE \"IAM:renew\" LOGIN PASSWORD 'Renew-Pw-1'")
        .await;
    // 62 s of life: renewed 60 s early, i.e. after 2 s.
    aws.set("c-renew", |r| {
        r.db_user = "IAM:renew".into();
        r.db_password = "Renew-Pw-1".into();
        r.lifetime = Duration::from_secs(62);
    });
    let t = target(
        &cluster,
        &pki,
        "renew",
        "",
        "[targets.renew.iam]\ncluster_identifier = \"c-renew\"\nregion = \"us-east-1\"",
    );
    let kept = t.client(Duration::from_secs(10)).await.unwrap();
    drop_idle(&t);
    let again = t.client(Duration::from_secs(10)).await.unwrap();
    assert_eq!(aws.get("c-renew").calls, 1, "still fresh: no fetch");
    drop(again);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    drop_idle(&t);
    let renewed = t.client(Duration::from_secs(10)).await.unwrap();
    assert_eq!(aws.get("c-renew").calls, 2, "renewed before expiry");
    drop(renewed);

    // The token is refused (as "IAM Authentication token has expired" would be): one re-fetch.
    aws.set("c-renew", |r| {
        r.db_password = "Renew-Pw-2".into();
        r.lifetime = Duration::from_secs(900);
    });
    db.execute("ALTER ROLE \"IAM:renew\" PASSWORD 'Renew-Pw-2'")
        .await;
    // The cached pair is not due for renewal yet: only the refusal makes it stale.
    drop_idle(&t);
    let c = t.client(Duration::from_secs(10)).await;
    let calls = aws.get("c-renew").calls;
    assert!(c.is_ok(), "{:?}", c.err());
    assert!(
        calls == 3,
        "one re-fetch after the refused login, got {calls} calls"
    );
    kept.simple_query("SELECT 1")
        .await
        .expect("a session opened before expiry is not killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_backs_off_and_is_an_aws_error() {
    let aws = stand_in();
    let (cluster, pki) = tls_cluster().await;
    admin(&cluster)
        .execute("CREATE ROLE \"IAM:slow\" LOGIN PASSWORD 'Slow-Pw-1'")
        .await;
    aws.set("c-throttle", |r| {
        r.db_user = "IAM:slow".into();
        r.db_password = "Slow-Pw-1".into();
        r.throttle_next = 2;
    });
    let t = target(
        &cluster,
        &pki,
        "thr",
        "",
        "[targets.thr.iam]\ncluster_identifier = \"c-throttle\"\nregion = \"us-east-1\"",
    );
    let err = t.client(Duration::from_secs(10)).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::Aws, "{err}");
    assert!(
        err.message.contains("GetClusterCredentialsWithIAM"),
        "{err}"
    );
    assert!(err.message.contains("Throttling"), "{err}");
    // Within the backoff (2 s when throttled) no call is made.
    let err = t.client(Duration::from_secs(10)).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::Aws, "{err}");
    assert_eq!(aws.get("c-throttle").calls, 1);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(t.client(Duration::from_secs(10)).await.is_err());
    assert_eq!(aws.get("c-throttle").calls, 2);
    // Second failure: 4 s.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(t.client(Duration::from_secs(10)).await.is_err());
    assert_eq!(aws.get("c-throttle").calls, 2, "still backing off");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let c = t.client(Duration::from_secs(10)).await;
    assert!(c.is_ok(), "{:?}", c.err());
    assert_eq!(aws.get("c-throttle").calls, 3);
}
