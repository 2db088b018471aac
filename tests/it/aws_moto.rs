//! IAM temporary credentials end to end against moto's Redshift (`GetClusterCredentials`, the
//! one credential API moto implements) with SigV4 signature and IAM policy checks on, and a
//! real PostgreSQL with TLS whose `"IAM:exporter"` role has the password moto will return:
//! moto's random generator is seeded, so the harness learns that password first and seeds
//! again (redshift-auth.md §3.3). `redshift-exporter once` runs several checks at once as
//! `IAM:exporter` on one fetch (a second fetch would return another password and fail); a
//! wrong secret key is an `aws` error carrying moto's code, never a database one.

use std::time::Duration;

use redshift_exporter::pgtemp::TempCluster;

use crate::support::moto::Moto;
use crate::support::{TestDb, WorkDir, run_cli};
use crate::tls::make_pki;

/// moto with signature and policy checks after the first four (setup) calls.
fn start_moto() -> Moto {
    Moto::start_with(Some(4))
}

/// The four unauthenticated setup calls (IAM user, key, policy; cluster), then the password
/// the next GetClusterCredentials will return. Prints key id, secret, user, password.
const SETUP: &str = r#"
import boto3, json, sys, urllib.request
url = sys.argv[1]
kw = dict(endpoint_url=url, region_name="us-east-1")
boot = dict(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="boot")
iam = boto3.client("iam", **kw, **boot)
iam.create_user(UserName="exporter-bot")
key = iam.create_access_key(UserName="exporter-bot")["AccessKey"]
iam.put_user_policy(UserName="exporter-bot", PolicyName="credentials", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["redshift:GetClusterCredentials"], "Resource": "*"}]}))
boto3.client("redshift", **kw, **boot).create_cluster(
    ClusterIdentifier="examplecluster", NodeType="ra3.xlplus", MasterUsername="admin",
    MasterUserPassword="Admin-Pass-1", ClusterType="single-node")
seed = lambda: urllib.request.urlopen(urllib.request.Request(url + "/moto-api/seed?a=42", method="POST"))
rs = boto3.client("redshift", **kw, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
seed()
c = rs.get_cluster_credentials(DbUser="exporter", ClusterIdentifier="examplecluster", DbName="dev", AutoCreate=False)
seed()
print(json.dumps({"key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "user": c["DbUser"], "password": c["DbPassword"]}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_login_through_moto_with_signature_checks() {
    let moto = start_moto();
    let out = std::process::Command::new("python3")
        .args(["-c", SETUP, &moto.url()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "moto setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let setup: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (key, secret, user, password) = (
        setup["key"].as_str().unwrap().to_owned(),
        setup["secret"].as_str().unwrap().to_owned(),
        setup["user"].as_str().unwrap().to_owned(),
        setup["password"].as_str().unwrap().to_owned(),
    );
    assert_eq!(user, "IAM:exporter");

    let (cluster, pki) = tokio::task::spawn_blocking(|| {
        let pki = make_pki();
        let crt = std::fs::read(pki.path("server.crt")).unwrap();
        let k = std::fs::read(pki.path("server.key")).unwrap();
        let hba = "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 md5\n";
        let c = TempCluster::start_with(
            &[
                ("server.crt", &crt, 0o644),
                ("server.key", &k, 0o600),
                ("pg_hba.conf", hba.as_bytes(), 0o600),
            ],
            &[
                ("ssl", "on"),
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
                ("password_encryption", "md5"),
            ],
        )
        .expect("a throwaway PostgreSQL with TLS starts");
        (c, pki)
    })
    .await
    .unwrap();
    TestDb::at("127.0.0.1", cluster.port(), "postgres", "postgres", None)
        .execute(&format!(
            "CREATE ROLE \"IAM:exporter\" LOGIN PASSWORD '{password}'"
        ))
        .await;

    let work = WorkDir::new();
    let archive = work.archive().display().to_string();
    let ca = pki.path("ca.crt").display().to_string();
    let mut checks = String::new();
    for i in 0..3 {
        checks.push_str(&format!(
            "[[checks]]\nname = \"who{i}\"\nquery = \"SELECT 1 AS v FROM pg_sleep(0.3) WHERE current_user = 'IAM:exporter'\"\nvalues = [\"v\"]\ntimeout = \"20s\"\n"
        ));
    }
    let config = format!(
        "[exporter]\narchive_dir = \"{archive}\"\n[targets.main]\nhost = \"localhost\"\nport = {}\ndatabase = \"postgres\"\nsslmode = \"verify-full\"\nca_file = \"{ca}\"\nconnect_timeout = \"10s\"\npool_size = 3\n[targets.main.iam]\ncluster_identifier = \"examplecluster\"\nregion = \"us-east-1\"\ndb_user = \"exporter\"\n{checks}",
        cluster.port()
    );
    let path = work.write("checks.toml", &config);
    let env = |secret: &str| {
        vec![
            ("AWS_ENDPOINT_URL".to_owned(), moto.url()),
            ("AWS_ACCESS_KEY_ID".to_owned(), key.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), secret.to_owned()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ]
    };
    let args = vec![
        "once".to_owned(),
        "--config".to_owned(),
        path.display().to_string(),
    ];
    let unset = vec!["AWS_SESSION_TOKEN".to_owned(), "AWS_PROFILE".to_owned()];
    let run = run_cli(
        args.clone(),
        env(&secret),
        unset.clone(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    for i in 0..3 {
        assert!(
            run.stdout
                .contains(&format!("ok check=who{i} target=main rows=1")),
            "every check ran as IAM:exporter: {}",
            run.dump()
        );
    }
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!all.contains(&password), "the temporary password leaked");
    assert!(!all.contains(&secret), "the secret key leaked");

    // A wrong secret key: moto refuses the signature; the error is the AWS call's.
    let run = run_cli(args, env("wrong-secret"), unset, Duration::from_secs(60)).await;
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert!(run.stdout.contains("kind=aws"), "{}", run.dump());
    assert!(
        run.stdout.contains("SignatureDoesNotMatch") || run.stdout.contains("InvalidClientTokenId"),
        "{}",
        run.dump()
    );
    drop(cluster);
}

/// A Secrets Manager secret in moto; the daemon logs in with it, then the secret and the role's
/// password are rotated and the exporter's sessions are dropped: the daemon recovers on its own
/// (the refused login makes it read the secret again) without an `auth` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_in_moto_is_picked_up_by_the_daemon() {
    use crate::support::names::{ERRORS, RUNS};
    use crate::support::{Daemon, check_toml, exporter_toml};
    let moto = Moto::start();
    let boto = |code: &str| {
        let script = format!(
            "import boto3, json, sys\nsm = boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='AKIAMOTO', aws_secret_access_key='x')\n{code}"
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script, &moto.url()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let arn = boto(
        "print(sm.create_secret(Name='redshift-exporter-it', SecretString=json.dumps({'engine': 'redshift', 'username': 'sm_rot', 'password': 'Moto-Sm-Pw-1', 'port': 5439}))['ARN'])",
    );
    assert!(
        arn.starts_with("arn:aws:secretsmanager:us-east-1:"),
        "{arn}"
    );
    let (cluster, _pki) = crate::aws_login::tls_cluster().await;
    let admin = TestDb::at("127.0.0.1", cluster.port(), "postgres", "postgres", None);
    admin
        .execute("CREATE ROLE sm_rot LOGIN PASSWORD 'Moto-Sm-Pw-1'")
        .await;
    let work = WorkDir::new();
    let text = exporter_toml(&work.archive(), "")
        + &format!(
            "\n[targets.main]\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"postgres\"\nsslmode = \"require\"\nconnect_timeout = \"5s\"\npool_size = 1\npassword_secret = \"{arn}\"\n",
            cluster.port()
        )
        + &check_toml(
            "who",
            "SELECT 1 AS v WHERE current_user = 'sm_rot'",
            "values = [\"v\"]\ninterval = \"1s\"",
        );
    let cfg = work.write("checks.toml", &text);
    let endpoint = moto.url();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIAMOTO"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_REGION", "us-east-1"),
    ];
    let mut d = Daemon::start_at_level(&cfg, None, &env).await;
    let ok = [("target", "main"), ("check", "who"), ("result", "success")];
    let m = d
        .wait_metrics("a run as sm_rot", Duration::from_secs(45), |m| {
            m.get(RUNS, &ok).unwrap_or(0.0) >= 1.0
        })
        .await;
    let before = m.get(RUNS, &ok).unwrap();
    // The landing page names the user the secret resolved to (runner → store → cached page).
    let page = d.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("database user (AWS) <b>sm_rot</b>"),
        "the landing page does not show the resolved user:\n{}",
        page.body
    );

    // Rotate: the secret and the role's password change, and the session is dropped.
    boto(
        "sm.put_secret_value(SecretId='redshift-exporter-it', SecretString=json.dumps({'engine': 'redshift', 'username': 'sm_rot', 'password': 'Moto-Sm-Pw-2'}))",
    );
    admin
        .execute("ALTER ROLE sm_rot PASSWORD 'Moto-Sm-Pw-2'; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'sm_rot'")
        .await;
    let m = d
        .wait_metrics(
            "successful runs after the rotation",
            Duration::from_secs(45),
            |m| m.get(RUNS, &ok).unwrap_or(0.0) >= before + 3.0,
        )
        .await;
    assert_eq!(
        m.get(
            ERRORS,
            &[("target", "main"), ("check", "who"), ("kind", "auth")]
        )
        .unwrap_or(0.0),
        0.0,
        "the rotation is absorbed by one re-read, not reported:\n{}",
        d.log_text()
    );
    // The secret was read again: after a refused login, or (when the dropped session's
    // replacement raced the password change) by the next fetch.
    let refused = d
        .logs_with_message("login refused; fetching the credentials again")
        .len();
    let reads = d.logs_with_message("database user resolved from AWS").len();
    assert!(
        refused >= 1 || reads >= 2,
        "no re-read of the secret:\n{}",
        d.log_text()
    );
    assert!(!d.log_text().contains("Moto-Sm-Pw"), "a password leaked");
    d.sigterm();
    let _ = d.wait_exit(Duration::from_secs(15)).await;
    drop(cluster);
}
