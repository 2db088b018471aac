//! Hardening, security: TLS and basic auth on `/metrics` from `--web.config.file` through the real
//! daemon (and a bad web config exiting 2); checks that try to write fail and write nothing;
//! a distinctive password never appears in logs, pages, metrics, CSVs or `Debug` output; names can
//! never steer a path outside the archive folder.

use std::path::Path;
use std::process::Command;

use redshift_exporter::pgtemp::TempCluster;

use crate::archive::walk;
use crate::support::names::*;
use crate::support::*;

fn run(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A bcrypt hash of `password` (cost 4, for speed), in the `$2b$` form htpasswd and
/// python's bcrypt write.
fn bcrypt_hash(_dir: &Path, password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt hashes")
}

/// `curl` result: (HTTP status, headers and body as text).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is required");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_tls_with_basic_auth_and_bad_web_configs_exit_two() {
    let db = database().await;
    let work = WorkDir::new();
    let dir = work.path();
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
    );
    let hash = bcrypt_hash(dir, "s3cret pass");
    let web = work.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prom: '{hash}'\n"
        ),
    );
    let cfg = work.write(
        "checks.toml",
        &config_toml(
            &work,
            &db,
            &check_toml("sec", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
    );
    let web_s = web.to_string_lossy().into_owned();
    let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &["--web.config.file", &web_s], &[]);
    let addr = d.wait_listening(secs(15)).await;
    let listening = d.logs_with_message("listening");
    assert!(
        listening[0].0.contains("\"tls\":true") && listening[0].0.contains("\"basic_auth\":true"),
        "{}",
        listening[0].0
    );
    let cacert = dir.join("cert.pem").to_string_lossy().into_owned();
    let url = format!("https://127.0.0.1:{}/metrics", addr.port());

    // Right credentials: 200 and a valid scrape (wait for the first run).
    let deadline = std::time::Instant::now() + secs(10);
    let body = loop {
        let (code, resp) = curl(&["--cacert", &cacert, "-u", "prom:s3cret pass", &url]);
        assert_eq!(code, 200, "{resp}");
        let body = resp.split_once("\r\n\r\n").unwrap().1.to_owned();
        let m = Metrics::parse(&body).unwrap();
        if m.check_value(SUCCESS, "sec") == Some(1.0) {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(ms(200)).await;
    };
    assert!(body.contains("itest_sec_v{target=\"main\"} 1"), "{body}");

    // Wrong or missing credentials: 401 with a challenge, on every route.
    for (what, extra) in [
        ("wrong password", vec!["-u", "prom:nope"]),
        ("unknown user", vec!["-u", "root:s3cret pass"]),
        ("no credentials", vec![]),
    ] {
        for path in ["/metrics", "/", "/-/healthy", "/-/ready"] {
            let url = format!("https://127.0.0.1:{}{path}", addr.port());
            let mut args = vec!["--cacert", cacert.as_str()];
            args.extend(extra.iter().copied());
            args.push(&url);
            let (code, resp) = curl(&args);
            assert_eq!(code, 401, "{what} {path}: {resp}");
            assert!(
                resp.to_ascii_lowercase()
                    .contains("www-authenticate: basic realm="),
                "{what} {path}: {resp}"
            );
            assert!(!resp.contains("itest_"), "{what} {path} leaked data");
        }
    }
    // Really TLS with our certificate: unknown CA refused, plain HTTP gets no answer.
    let (code, _) = curl(&["-u", "prom:s3cret pass", &url]);
    assert_eq!(
        code, 0,
        "the self-signed certificate must not verify without --cacert"
    );
    assert!(
        http_get_plain(addr).await.is_err(),
        "plain HTTP on the TLS port must not be answered"
    );
    d.sigterm();
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(0));

    // A bad web config file is a start-up error: exit 2, the problem in the log.
    for (name, text, needle) in [
        (
            "missing_cert.yml",
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: key.pem\n".to_string(),
            "nope.pem",
        ),
        (
            "not_bcrypt.yml",
            "basic_auth_users:\n  prom: plaintext\n".to_string(),
            "bcrypt",
        ),
        (
            "unknown_key.yml",
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  bogus: 1\n"
                .to_string(),
            "bogus",
        ),
        (
            "syntax.yml",
            "basic_auth_users: [".to_string(),
            "syntax.yml",
        ),
        (
            "mismatch.yml",
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: cert.pem\n".to_string(),
            "key",
        ),
    ] {
        let path = work.write(name, &text);
        let p = path.to_string_lossy().into_owned();
        let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &["--web.config.file", &p], &[]);
        let status = d.wait_exit(secs(15)).await;
        assert_eq!(status.code(), Some(2), "{name}: {}", d.log_text());
        assert!(
            d.log_text().contains(needle),
            "{name}: the problem ({needle}) is reported:\n{}",
            d.log_text()
        );
    }
}

/// A plain-HTTP GET against a TLS port; `Err` when no HTTP response comes back.
async fn http_get_plain(addr: std::net::SocketAddr) -> Result<(), String> {
    crate::support::http::get(addr, "/metrics")
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_that_try_to_write_fail_and_write_nothing() {
    let db = database().await;
    db.execute(
        "CREATE TABLE ro (v int); INSERT INTO ro VALUES (1);
         CREATE SEQUENCE ro_seq;
         CREATE FUNCTION side_effect() RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO ro VALUES (3); RETURN 1; END $$;",
    )
    .await;
    let work = WorkDir::new();
    let writes = [
        ("ins", "INSERT INTO ro VALUES (2) RETURNING v"),
        ("ctas", "CREATE TABLE made_by_check AS SELECT 1 AS v"),
        ("func", "SELECT side_effect() AS v"),
        (
            "cte",
            "WITH gone AS (DELETE FROM ro RETURNING v) SELECT v FROM gone",
        ),
        ("seq", "SELECT nextval('ro_seq') AS v"),
        ("upd", "UPDATE ro SET v = 9 RETURNING v"),
        ("lock", "SELECT v FROM ro FOR UPDATE"),
    ];
    // Several statements could end the READ ONLY transaction (or make it read-write before
    // its first query): such a file is refused as a whole, by check-config, once and run.
    let escapes = [
        (
            "rw",
            "SET TRANSACTION READ WRITE; INSERT INTO ro VALUES (4); SELECT 1 AS v",
        ),
        ("commit", "COMMIT; INSERT INTO ro VALUES (5); SELECT 1 AS v"),
        (
            "sneaky",
            "SELECT 'a\\'; COMMIT; INSERT INTO ro VALUES (6); SELECT '1' AS v --'",
        ),
    ];
    let mut bad = String::new();
    for (name, sql) in escapes {
        bad += &check_toml(name, sql, "values = [\"v\"]");
    }
    let bad_cfg = work.write("escapes.toml", &config_toml(&work, &db, &bad));
    let out = check_config(&bad_cfg).await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
    for i in 0..escapes.len() {
        let line = out
            .stderr
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("checks[{i}].query")))
            .unwrap_or_else(|| panic!("checks[{i}].query not reported:\n{}", out.dump()));
        assert!(line.contains("one SQL statement"), "{line}");
    }
    let out = once(&bad_cfg, &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
    let mut d = Daemon::spawn(&bad_cfg, "127.0.0.1:0", &[], &[]);
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(2));

    let mut checks = String::new();
    for (name, sql) in writes {
        checks += &check_toml(name, sql, "values = [\"v\"]");
    }
    checks += &check_toml("reader", "SELECT count(*) AS v FROM ro", "values = [\"v\"]");
    let cfg = work.write("checks.toml", &config_toml(&work, &db, &checks));
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.dump());
    for (name, _) in writes {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" check={name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{}", out.dump()));
        assert!(
            line.starts_with("error ") && line.contains("kind=query"),
            "{name} must fail as a query error: {line}"
        );
        assert!(
            line.contains("read-only transaction") || line.contains("one statement"),
            "{name}: the error says why: {line}"
        );
    }
    assert!(
        out.stdout.contains("ok check=reader target=main rows=1"),
        "{}",
        out.dump()
    );

    let client = db.connect().await;
    let rows: Vec<i32> = client
        .query("SELECT v FROM ro ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![1], "a check wrote to ro");
    let made: bool = client
        .query_one("SELECT to_regclass('made_by_check') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!made, "CREATE TABLE from a check took effect");
    let seq: bool = client
        .query_one("SELECT is_called FROM ro_seq", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!seq, "nextval from a check took effect");

    // The daemon reports the same, and keeps running the good check.
    let d = Daemon::start(&cfg).await;
    let m = d
        .wait_metrics("every check ran", secs(10), |m| {
            writes
                .iter()
                .all(|(n, _)| m.check_value(LAST_RUN, n).unwrap_or(0.0) > 0.0)
                && m.check_value(SUCCESS, "reader") == Some(1.0)
        })
        .await;
    for (name, _) in writes {
        assert_eq!(m.check_value(SUCCESS, name), Some(0.0), "{name}");
        assert!(
            m.check_value_with(ERRORS, name, "kind", "query")
                .unwrap_or(0.0)
                >= 1.0,
            "{name}: {}",
            m.lines_with(name)
        );
    }
    assert_eq!(m.get("itest_reader_v", &[("target", "main")]), Some(1.0));
}

/// Everything a user or a scraper can see, as one string per source.
async fn observable(d: &Daemon) -> Vec<(String, String)> {
    let mut out = vec![("daemon log".to_owned(), d.log_text())];
    for path in ["/metrics", "/", "/-/ready", "/-/healthy", "/no/such"] {
        out.push((format!("GET {path}"), d.get(path).await.body));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distinctive_password_appears_nowhere() {
    const PW: &str = "Zebra-Quartz-7781-pw";
    const WRONG: &str = "Walrus-Wrong-5512-pw";
    let hba = "local all all trust\n\
               host all postgres 127.0.0.1/32 trust\n\
               host all all 127.0.0.1/32 scram-sha-256\n";
    let cluster = tokio::task::spawn_blocking(move || {
        TempCluster::start_with(
            &[("pg_hba.conf", hba.as_bytes(), 0o600)],
            &[("password_encryption", "scram-sha-256")],
        )
        .expect("a throwaway PostgreSQL starts")
    })
    .await
    .unwrap();
    let admin = TestDb::at("127.0.0.1", cluster.port(), "postgres", "postgres", None);
    admin
        .execute(&format!("CREATE ROLE exporter LOGIN PASSWORD '{PW}'"))
        .await;
    admin.execute("CREATE DATABASE sec OWNER exporter").await;
    let db = TestDb::at("127.0.0.1", cluster.port(), "sec", "exporter", Some(PW));
    // The role really needs its password: a wrong one is refused.
    let mut wrong = db.pg_config();
    wrong.password(WRONG);
    assert!(wrong.connect(tokio_postgres::NoTls).await.is_err());

    let work = WorkDir::new();
    let pw_file = work.write("password.txt", &format!("{PW}\n"));
    let base = |name: &str, extra: &str| {
        let t = db.target_toml(name, extra);
        // password_file targets must not also carry the harness's `password` line
        if extra.contains("password_file") {
            t.lines()
                .filter(|l| !l.starts_with("password ="))
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        } else {
            t
        }
    };
    let text = exporter_toml(&work.archive(), "")
        + "\n"
        + &base(
            "main",
            &format!("password_file = \"{}\"", pw_file.display()),
        )
        + "\n"
        + &base("fromenv", "password = \"${RSE_IT_SECRET_PW}\"")
        + "\n"
        + &base("wrongpw", &format!("password = \"{WRONG}\""))
        + &check_toml(
            "who",
            "SELECT current_user AS usr, 1 AS v",
            "labels = [\"usr\"]\nvalues = [\"v\"]",
        )
        + &check_toml(
            "broken",
            "SELECT v FROM no_such_table",
            "values = [\"v\"]\ntargets = [\"main\"]",
        );
    let cfg = work.write("checks.toml", &text);
    let cfg_s = cfg.to_string_lossy().into_owned();
    let env = [("RSE_IT_SECRET_PW", PW)];
    let args: Vec<String> = [
        "run",
        "--config",
        &cfg_s,
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.format",
        "json",
        "--log.level",
        "trace",
    ]
    .map(String::from)
    .to_vec();
    let mut d = Daemon::spawn_raw(&args, &env);
    d.wait_listening(secs(15)).await;
    let m = d
        .wait_metrics("good, failing and refused runs", secs(10), |m| {
            m.get(SUCCESS, &[("target", "main"), ("check", "who")]) == Some(1.0)
                && m.get(SUCCESS, &[("target", "fromenv"), ("check", "who")]) == Some(1.0)
                && m.get(
                    ERRORS,
                    &[("target", "wrongpw"), ("check", "who"), ("kind", "auth")],
                )
                .unwrap_or(0.0)
                    >= 1.0
                && m.check_value_with(ERRORS, "broken", "kind", "query")
                    .unwrap_or(0.0)
                    >= 1.0
                && m.get(ARCHIVE_FILES, &[("target", "main"), ("check", "who")])
                    .unwrap_or(0.0)
                    >= 1.0
        })
        .await;
    assert_eq!(
        m.get("itest_who_v", &[("target", "main"), ("usr", "exporter")]),
        Some(1.0),
        "password_file logs in as the role"
    );
    let mut seen = observable(&d).await;
    assert!(
        d.log_text().contains("password authentication failed"),
        "the refused login is logged (without the password):\n{}",
        d.log_text()
    );
    assert!(
        !d.logs_with_message("running as root; a dedicated unprivileged user is safer")
            .is_empty()
            // SAFETY: geteuid has no preconditions.
            || unsafe { libc::geteuid() } != 0,
        "a warning when the daemon runs as root"
    );
    d.sigterm();
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(0));
    seen.push(("daemon log after shutdown".into(), d.log_text()));

    // CSV archive
    for f in walk(&work.archive()) {
        seen.push((
            f.display().to_string(),
            std::fs::read_to_string(&f).unwrap_or_default(),
        ));
    }
    // once and check-config, with the most verbose logging
    let env_v = vec![("RSE_IT_SECRET_PW".to_owned(), PW.to_owned())];
    for args in [
        vec!["once", "--config", &cfg_s, "--log.level", "trace"],
        vec!["check-config", "--config", &cfg_s],
    ] {
        let out = run_cli(
            args.iter().map(|s| s.to_string()).collect(),
            env_v.clone(),
            vec![],
            secs(30),
        )
        .await;
        assert!(
            out.stdout.contains("who") || out.stderr.contains("who"),
            "{}",
            out.dump()
        );
        seen.push((format!("{args:?}"), out.dump()));
    }
    // Debug output of the parsed configuration
    let parsed = redshift_exporter::config::parse(&text, |k| {
        (k == "RSE_IT_SECRET_PW").then(|| PW.to_owned())
    })
    .expect("valid");
    seen.push(("Debug of Config".into(), format!("{parsed:?} {parsed:#?}")));
    for t in &parsed.targets {
        let redshift_exporter::config::Auth::Password(pw) = &t.auth else {
            panic!("{} logs in with a password", t.name)
        };
        assert!(pw.is_some(), "{} has a password", t.name);
    }

    for (source, text) in &seen {
        for secret in [PW, WRONG] {
            assert!(
                !text.contains(secret),
                "{secret} leaked into {source}:\n{text}"
            );
        }
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_steer_a_path_outside_the_archive() {
    let db = database().await;
    let work = WorkDir::new();
    // Bad check and target names are refused up front.
    for (what, text) in [
        (
            "check ../evil",
            config_toml(
                &work,
                &db,
                &check_toml("../evil", "SELECT 1 AS v", "values = [\"v\"]"),
            ),
        ),
        (
            "check a/b",
            config_toml(
                &work,
                &db,
                &check_toml("a/b", "SELECT 1 AS v", "values = [\"v\"]"),
            ),
        ),
        (
            "check .hidden",
            config_toml(
                &work,
                &db,
                &check_toml(".hidden", "SELECT 1 AS v", "values = [\"v\"]"),
            ),
        ),
        (
            "target ..",
            exporter_toml(&work.archive(), "")
                + &db.target_toml("\"..\"", "")
                + &check_toml("c", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
        (
            "target ../up",
            exporter_toml(&work.archive(), "")
                + &db.target_toml("\"../up\"", "")
                + &check_toml("c", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
        (
            "target a/b",
            exporter_toml(&work.archive(), "")
                + &db.target_toml("\"a/b\"", "")
                + &check_toml("c", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
    ] {
        let out = check_config(&work.write("bad.toml", &text)).await;
        assert_eq!(out.code, Some(2), "{what}:\n{}", out.dump());
        assert!(
            out.stderr.contains("must match"),
            "{what}: the name rule is explained:\n{}",
            out.dump()
        );
    }

    // Column names and values are data: they never become paths.
    let query = "SELECT '../../../escaped'::text AS \"../../up\", '/etc/passwd'::text AS \"/abs\", \
                 1 AS v, '..'::text AS k";
    let cfg = work.write(
        "checks.toml",
        &config_toml(
            &work,
            &db,
            &check_toml("cols", query, "labels = [\"k\"]\nvalues = [\"v\"]"),
        ),
    );
    let out = once(&cfg, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    let dir = work.archive().join("main").join("cols");
    let files = walk(work.path());
    for f in &files {
        assert!(
            f.parent() == Some(dir.as_path()) || f.parent() == Some(work.path()),
            "unexpected file {f:?}"
        );
    }
    let csvs: Vec<_> = files.iter().filter(|f| f.starts_with(&dir)).collect();
    assert_eq!(csvs.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(csvs[0]).unwrap();
    assert!(text.starts_with("../../up,/abs,v,k\n"), "{text}");
    assert!(!work.path().parent().unwrap().join("escaped").exists());
}

/// AWS-provided logins (feature `aws`): the AWS secret key, the session token, an IAM
/// temporary password and a Secrets Manager password appear in no log line (at trace level),
/// page, metric, CSV, `once` output or `Debug` of the configuration.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_keys_tokens_and_fetched_passwords_appear_nowhere() {
    use crate::support::aws::{SECRET_KEY, SESSION_TOKEN, daemon_env, stand_in};
    const TEMP_PW: &str = "Iam-Distinct-Temp-9931";
    const SM_PW: &str = "Sm-Distinct-Pw-4417";
    let aws = stand_in();
    let secret_id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hardening-XyZ";
    aws.set(secret_id, |r| {
        r.secret_string = serde_json::json!({"username": "sm_hard", "password": SM_PW}).to_string()
    });
    aws.set("c-hard", |r| {
        r.db_user = "IAM:hard".into();
        r.db_password = TEMP_PW.into();
    });
    let (cluster, pki) = crate::aws_login::tls_cluster().await;
    TestDb::at("127.0.0.1", cluster.port(), "postgres", "postgres", None)
        .execute(&format!(
            "CREATE ROLE sm_hard LOGIN PASSWORD '{SM_PW}'; CREATE ROLE \"IAM:hard\" LOGIN PASSWORD '{TEMP_PW}'"
        ))
        .await;
    let work = WorkDir::new();
    let ca = pki.path("ca.crt").display().to_string();
    let target = |name: &str, keys: &str, table: &str| {
        format!(
            "[targets.{name}]\nhost = \"localhost\"\nport = {}\ndatabase = \"postgres\"\nsslmode = \"verify-full\"\nca_file = \"{ca}\"\nconnect_timeout = \"5s\"\n{keys}\n{table}\n",
            cluster.port()
        )
    };
    let text = exporter_toml(&work.archive(), "")
        + "\n"
        + &target("sm", &format!("password_secret = \"{secret_id}\""), "")
        + &target(
            "iam",
            "",
            "[targets.iam.iam]\ncluster_identifier = \"c-hard\"\nregion = \"us-east-1\"",
        )
        + &check_toml(
            "who",
            "SELECT current_user AS usr, 1 AS v",
            "labels = [\"usr\"]\nvalues = [\"v\"]",
        );
    let cfg = work.write("checks.toml", &text);
    let cfg_s = cfg.to_string_lossy().into_owned();
    let env = daemon_env();
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args: Vec<String> = [
        "run",
        "--config",
        &cfg_s,
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.format",
        "json",
        "--log.level",
        "trace",
    ]
    .map(String::from)
    .to_vec();
    let mut d = Daemon::spawn_raw(&args, &env_ref);
    d.wait_listening(secs(15)).await;
    let m = d
        .wait_metrics("both AWS logins", secs(15), |m| {
            m.get(SUCCESS, &[("target", "sm"), ("check", "who")]) == Some(1.0)
                && m.get(SUCCESS, &[("target", "iam"), ("check", "who")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        m.get("itest_who_v", &[("target", "iam"), ("usr", "IAM:hard")]),
        Some(1.0)
    );
    let mut seen = observable(&d).await;
    let landing = d.get("/").await.body;
    assert!(
        landing.contains("IAM:hard"),
        "the resolved user is shown:\n{landing}"
    );
    assert!(landing.contains("sm_hard"), "{landing}");
    assert!(
        !d.logs_with_message("database user resolved from AWS")
            .is_empty(),
        "the resolved user is logged:\n{}",
        d.log_text()
    );
    d.sigterm();
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(0));
    seen.push(("daemon log after shutdown".into(), d.log_text()));
    for f in walk(&work.archive()) {
        seen.push((
            f.display().to_string(),
            std::fs::read_to_string(&f).unwrap_or_default(),
        ));
    }
    let env_v: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for args in [
        vec!["once", "--config", &cfg_s, "--log.level", "trace"],
        vec!["check-config", "--config", &cfg_s],
    ] {
        let out = run_cli(
            args.iter().map(|s| s.to_string()).collect(),
            env_v.clone(),
            vec![],
            secs(30),
        )
        .await;
        seen.push((format!("{args:?}"), out.dump()));
    }
    let parsed = redshift_exporter::config::parse(&text, |_| None).expect("valid");
    seen.push(("Debug of Config".into(), format!("{parsed:?} {parsed:#?}")));
    for (source, text) in &seen {
        for secret in [SECRET_KEY, SESSION_TOKEN, TEMP_PW, SM_PW] {
            assert!(
                !text.contains(secret),
                "{secret} leaked into {source}:\n{text}"
            );
        }
    }
    drop(cluster);
}
