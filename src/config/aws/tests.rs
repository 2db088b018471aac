//! Host inference and the validation of `[targets.X.iam]` / `password_secret`.

use super::*;
use crate::config::{Auth, Config, Problem, parse};

#[test]
fn hosts_are_read_like_the_drivers_do() {
    use HostHint::*;
    let prov = |c: &str, r: &str| Provisioned {
        cluster: c.into(),
        region: r.into(),
    };
    for (host, want) in [
        (
            "examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com",
            prov("examplecluster", "us-west-2"),
        ),
        (
            "Examplecluster.abc.eu-west-1.redshift-dev.amazonaws.com.",
            prov("examplecluster", "eu-west-1"),
        ),
        (
            "c1.abc.cn-north-1.redshift.amazonaws.com.cn",
            prov("c1", "cn-north-1"),
        ),
        (
            "exporter-wg.123456789012.us-east-1.redshift-serverless.amazonaws.com",
            Serverless {
                workgroup: Some("exporter-wg".into()),
                region: "us-east-1".into(),
            },
        ),
        (
            "123456789012.us-east-1.redshift-serverless.amazonaws.com",
            Serverless {
                workgroup: None,
                region: "us-east-1".into(),
            },
        ),
        (
            "vpce-0abc-def.vpce-svc-123.us-east-1.vpce.amazonaws.com",
            Other,
        ),
        ("redshift.example.com", Other),
        ("abc.us-east-1.redshift.amazonaws.com", Other),
        ("10.0.0.5", Other),
        ("localhost", Other),
    ] {
        assert_eq!(host_hint(host), want, "{host}");
    }
}

fn config(target: &str, env: &[(&str, &str)]) -> Result<Config, Vec<Problem>> {
    let text = format!(
        "[targets.t]\n{target}\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nvalues = [\"v\"]\n"
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(&text, move |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
}

fn plan(target: &str) -> IamPlan {
    let c = config(target, &[]).unwrap_or_else(|p| panic!("{p:?}"));
    match &c.targets[0].auth {
        Auth::Iam(p) => p.clone(),
        other => panic!("{other:?}"),
    }
}

fn problems(target: &str) -> Vec<Problem> {
    config(target, &[]).expect_err("refused")
}

const PROVISIONED: &str = "host = \"examplecluster.abc123.us-east-1.redshift.amazonaws.com\"";
const SERVERLESS: &str =
    "host = \"wg1.123456789012.eu-central-1.redshift-serverless.amazonaws.com\"";

#[test]
fn the_api_follows_the_deployment() {
    if cfg!(not(feature = "aws")) {
        return;
    }
    let p = plan(&format!(
        "{PROVISIONED}\n[targets.t.iam]\ndb_user = \"exporter\"\ndb_groups = [\"monitoring\"]\nduration = \"30m\""
    ));
    assert_eq!(
        p.api,
        IamApi::ClusterCredentials {
            db_user: "exporter".into(),
            db_groups: vec!["monitoring".into()],
            auto_create: false
        }
    );
    assert_eq!(
        (p.resource.as_str(), p.region.as_str(), p.database.as_str()),
        ("examplecluster", "us-east-1", "dev")
    );
    assert_eq!(p.duration.as_secs(), 1800);
    let c = config(
        &format!("{PROVISIONED}\n[targets.t.iam]\ndb_user = \"exporter\""),
        &[],
    )
    .unwrap();
    assert_eq!(c.targets[0].user, "exporter");

    let p = plan(&format!("{PROVISIONED}\n[targets.t.iam]"));
    assert_eq!(p.api, IamApi::ClusterCredentialsWithIam);
    let p = plan(&format!("{SERVERLESS}\n[targets.t.iam]"));
    assert_eq!(
        (p.api, p.resource.as_str(), p.region.as_str()),
        (IamApi::Serverless, "wg1", "eu-central-1")
    );
    // Explicit keys win, and are what VPC endpoints and custom names need.
    let p = plan(
        "host = \"vpce-1.vpce-svc-2.us-east-1.vpce.amazonaws.com\"\n[targets.t.iam]\ncluster_identifier = \"prod\"\nregion = \"us-east-2\"",
    );
    assert_eq!(
        (p.resource.as_str(), p.region.as_str()),
        ("prod", "us-east-2")
    );
    let p = plan(&format!(
        "{PROVISIONED}\ndeployment = \"serverless\"\n[targets.t.iam]\nworkgroup = \"other\""
    ));
    assert_eq!((p.api, p.resource.as_str()), (IamApi::Serverless, "other"));
}

fn has(problems: &[Problem], path: &str, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.path == path && p.message.contains(needle) && p.line.is_some())
}

#[test]
fn iam_mistakes_are_reported_with_path_and_line() {
    let no_feature = cfg!(not(feature = "aws"));
    let p = problems(&format!(
        "{PROVISIONED}\nsslmode = \"disable\"\n[targets.t.iam]\ndb_user = \"exporter\""
    ));
    assert!(has(&p, "targets.t.sslmode", "need TLS"), "{p:?}");
    let p = problems("host = \"db.internal.example\"\n[targets.t.iam]\nregion = \"us-east-1\"");
    assert!(
        has(
            &p,
            "targets.t.iam.cluster_identifier",
            "set iam.cluster_identifier"
        ),
        "{p:?}"
    );
    let p = problems("host = \"db.internal.example\"\n[targets.t.iam]\ncluster_identifier = \"c\"");
    assert!(has(&p, "targets.t.iam.region", "set iam.region"), "{p:?}");
    let p = problems(&format!(
        "{PROVISIONED}\n[targets.t.iam]\nduration = \"2h\""
    ));
    assert!(
        has(&p, "targets.t.iam.duration", "between 15m and 1h"),
        "{p:?}"
    );
    let p = problems(&format!(
        "{PROVISIONED}\n[targets.t.iam]\ndb_user = \"Exporter\""
    ));
    assert!(has(&p, "targets.t.iam.db_user", "lower case"), "{p:?}");
    let p = problems(&format!(
        "{SERVERLESS}\n[targets.t.iam]\ndb_user = \"exporter\""
    ));
    assert!(
        has(&p, "targets.t.iam.db_user", "provisioned clusters only"),
        "{p:?}"
    );
    let p = problems(&format!(
        "{PROVISIONED}\nuser = \"u\"\npassword = \"x\"\n[targets.t.iam]"
    ));
    assert!(has(&p, "targets.t.iam", "remove password"), "{p:?}");
    assert!(has(&p, "targets.t.user", "iam.db_user"), "{p:?}");
    if no_feature {
        let p = problems(&format!("{PROVISIONED}\n[targets.t.iam]"));
        assert!(has(&p, "targets.t.iam", "--features aws"), "{p:?}");
    }
}

#[test]
fn secrets_are_named_by_arn_or_name_and_region() {
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift!c-admin-AbCdEf";
    let target = format!("host = \"h\"\npassword_secret = \"{arn}\"");
    if cfg!(feature = "aws") {
        let c = config(&target, &[]).unwrap();
        assert_eq!(
            c.targets[0].auth,
            Auth::Secret(SecretRef {
                id: arn.into(),
                region: "eu-west-1".into()
            })
        );
        let c = config(
            "host = \"h\"\npassword_secret = \"prod/exporter\"",
            &[("AWS_REGION", "ap-south-1")],
        )
        .unwrap();
        assert!(matches!(&c.targets[0].auth, Auth::Secret(r) if r.region == "ap-south-1"));
        let p = problems("host = \"h\"\npassword_secret = \"prod/exporter\"");
        assert!(
            has(&p, "targets.t.password_secret", "set AWS_REGION"),
            "{p:?}"
        );
        let p = problems("host = \"h\"\npassword_secret = \"arn:aws:s3:::b\"");
        assert!(
            has(&p, "targets.t.password_secret", "not a Secrets Manager"),
            "{p:?}"
        );
        let p = problems(&format!("{target}\nuser = \"u\""));
        assert!(has(&p, "targets.t.user", "\"username\""), "{p:?}");
    } else {
        let p = problems(&target);
        assert!(
            has(&p, "targets.t.password_secret", "--features aws"),
            "{p:?}"
        );
    }
}
