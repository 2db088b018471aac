//! Hardening, secrets: a distinctive password never appears in logs, pages, metrics, CSVs or
//! `Debug` output; with the `aws` feature neither do AWS keys, session tokens or fetched passwords.

use redshift_exporter::pgtemp::TempCluster;

use crate::archive::walk;
use crate::support::names::*;
use crate::support::*;

/// Everything a user or a scraper can see, as one string per source.
async fn observable(d: &Daemon) -> Vec<(String, String)> {
    let mut out = vec![("daemon log".to_owned(), d.log_text())];
    for path in ["/metrics", "/", "/-/ready", "/-/healthy", "/no/such"] {
        out.push((format!("GET {path}"), d.get(path).await.body));
    }
    out
}

/// Every archived CSV file, as (path, contents).
fn archived(work: &WorkDir) -> Vec<(String, String)> {
    walk(&work.archive())
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            (f.display().to_string(), text)
        })
        .collect()
}

/// `once` at the most verbose log level and `check-config` on `cfg`, with `env`: (the
/// arguments, the output).
async fn once_and_check_config(cfg: &str, env: &[(String, String)]) -> Vec<(String, CliOutput)> {
    let mut outs = Vec::new();
    for args in [
        vec!["once", "--config", cfg, "--log.level", "trace"],
        vec!["check-config", "--config", cfg],
    ] {
        let out = run_cli(
            args.iter().map(|s| s.to_string()).collect(),
            env.to_vec(),
            vec![],
            secs(30),
        )
        .await;
        outs.push((format!("{args:?}"), out));
    }
    outs
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
    let mut d = Daemon::start_at_level(&cfg, Some("trace"), &[("RSE_IT_SECRET_PW", PW)]).await;
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
    seen.extend(archived(&work));
    // once and check-config, with the most verbose logging
    let env_v = vec![("RSE_IT_SECRET_PW".to_owned(), PW.to_owned())];
    for (args, out) in once_and_check_config(&cfg_s, &env_v).await {
        assert!(
            out.stdout.contains("who") || out.stderr.contains("who"),
            "{}",
            out.dump()
        );
        seen.push((args, out.dump()));
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
    let env = daemon_env();
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let mut d = Daemon::start_at_level(&cfg, Some("trace"), &env_ref).await;
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
    seen.extend(archived(&work));
    let env_v: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for (args, out) in once_and_check_config(&cfg_s, &env_v).await {
        seen.push((args, out.dump()));
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
