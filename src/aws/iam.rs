//! IAM temporary database credentials: `redshift:GetClusterCredentials` and
//! `GetClusterCredentialsWithIAM` (Query protocol, XML reply) for provisioned clusters,
//! `redshift-serverless:GetCredentials` (JSON 1.1) for Serverless workgroups.
//!
//! Owns: the requests (as botocore serializes them: `DbGroups.DbGroup.N`, camelCase JSON) and
//! the replies (`DbUser`/`DbPassword`/`Expiration` in ISO-8601, `dbUser`/`dbPassword`/
//! `expiration` in epoch seconds). Does not own: which API a target uses (`config::aws`
//! decides from the deployment), caching and renewal (`cache`).

use std::time::{Duration, SystemTime};

use super::cache::Issued;
use super::{AwsError, endpoint, form, post, xml_text};
use crate::config::{IamApi, IamPlan, Secret};

/// A database user name and its temporary password.
#[derive(Clone, PartialEq, Eq)]
pub struct DbCredentials {
    /// As the service returns it, prefixed (`IAM:`, `IAMA:`, `IAMR:`): the login name.
    pub db_user: String,
    pub password: Secret,
}

impl std::fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCredentials")
            .field("db_user", &self.db_user)
            .field("password", &self.password)
            .finish()
    }
}

/// The Query form of a provisioned request.
pub fn query_body(plan: &IamPlan) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: &str| pairs.push((k.to_owned(), v.to_owned()));
    match &plan.api {
        IamApi::ClusterCredentials {
            db_user,
            db_groups,
            auto_create,
        } => {
            add("Action", "GetClusterCredentials");
            add("Version", "2012-12-01");
            add("ClusterIdentifier", &plan.resource);
            add("DbUser", db_user);
            add("DbName", &plan.database);
            add("DurationSeconds", &plan.duration.as_secs().to_string());
            add("AutoCreate", if *auto_create { "true" } else { "false" });
            for (i, g) in db_groups.iter().enumerate() {
                add(&format!("DbGroups.DbGroup.{}", i + 1), g);
            }
        }
        IamApi::ClusterCredentialsWithIam | IamApi::Serverless => {
            add("Action", "GetClusterCredentialsWithIAM");
            add("Version", "2012-12-01");
            add("ClusterIdentifier", &plan.resource);
            add("DbName", &plan.database);
            add("DurationSeconds", &plan.duration.as_secs().to_string());
        }
    }
    form(&pairs)
}

/// The JSON body of a Serverless `GetCredentials`.
pub fn serverless_body(plan: &IamPlan) -> String {
    serde_json::json!({
        "workgroupName": plan.resource,
        "dbName": plan.database,
        "durationSeconds": plan.duration.as_secs(),
    })
    .to_string()
}

fn invalid(m: &str) -> AwsError {
    AwsError::new("InvalidReply", m.to_owned())
}

/// Reads a provisioned reply (`ClusterCredentials` / `ClusterExtendedCredentials`).
pub fn parse_query_reply(xml: &str) -> Result<Issued<DbCredentials>, AwsError> {
    let db_user = xml_text(xml, "DbUser").ok_or_else(|| invalid("the reply has no DbUser"))?;
    let password =
        xml_text(xml, "DbPassword").ok_or_else(|| invalid("the reply has no DbPassword"))?;
    let expires = xml_text(xml, "Expiration")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)));
    Ok(Issued {
        value: DbCredentials {
            db_user,
            password: Secret::new(password),
        },
        expires: Some(expires.unwrap_or_else(default_expiry)),
    })
}

/// Reads a Serverless reply (timestamps are epoch seconds in the JSON protocol).
pub fn parse_serverless_reply(json: &str) -> Result<Issued<DbCredentials>, AwsError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|_| invalid("the reply is not JSON"))?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let db_user = field("dbUser").ok_or_else(|| invalid("the reply has no dbUser"))?;
    let password = field("dbPassword").ok_or_else(|| invalid("the reply has no dbPassword"))?;
    let expires = v
        .get("expiration")
        .and_then(|x| x.as_f64())
        .filter(|s| *s > 0.0)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s));
    Ok(Issued {
        value: DbCredentials {
            db_user,
            password: Secret::new(password),
        },
        expires: Some(expires.unwrap_or_else(default_expiry)),
    })
}

/// Without an `Expiration`, assume the APIs' default lifetime.
fn default_expiry() -> SystemTime {
    SystemTime::now() + Duration::from_secs(900)
}

/// Asks for a new pair.
pub async fn fetch(plan: &IamPlan) -> Result<Issued<DbCredentials>, AwsError> {
    match plan.api {
        IamApi::Serverless => {
            let url = endpoint("redshift-serverless", "REDSHIFT_SERVERLESS", &plan.region);
            let reply = post(
                "redshift-serverless",
                &plan.region,
                &url,
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", "RedshiftServerless.GetCredentials"),
                ],
                serverless_body(plan),
            )
            .await?;
            parse_serverless_reply(&reply)
        }
        _ => {
            let url = endpoint("redshift", "REDSHIFT", &plan.region);
            let reply = post(
                "redshift",
                &plan.region,
                &url,
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )],
                query_body(plan),
            )
            .await?;
            parse_query_reply(&reply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(api: IamApi) -> IamPlan {
        IamPlan {
            api,
            resource: "examplecluster".into(),
            region: "us-east-1".into(),
            database: "dev".into(),
            duration: Duration::from_secs(900),
        }
    }

    #[test]
    fn requests_are_serialized_like_botocore() {
        let p = plan(IamApi::ClusterCredentials {
            db_user: "exporter".into(),
            db_groups: vec!["monitoring".into(), "ops".into()],
            auto_create: false,
        });
        assert_eq!(
            query_body(&p),
            "Action=GetClusterCredentials&Version=2012-12-01&ClusterIdentifier=examplecluster&DbUser=exporter&DbName=dev&DurationSeconds=900&AutoCreate=false&DbGroups.DbGroup.1=monitoring&DbGroups.DbGroup.2=ops"
        );
        assert_eq!(
            query_body(&plan(IamApi::ClusterCredentialsWithIam)),
            "Action=GetClusterCredentialsWithIAM&Version=2012-12-01&ClusterIdentifier=examplecluster&DbName=dev&DurationSeconds=900"
        );
        let mut s = plan(IamApi::Serverless);
        s.resource = "exporter-wg".into();
        let v: serde_json::Value = serde_json::from_str(&serverless_body(&s)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"workgroupName": "exporter-wg", "dbName": "dev", "durationSeconds": 900})
        );
    }

    #[test]
    fn replies_are_read() {
        let xml = "<GetClusterCredentialsResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><GetClusterCredentialsResult><DbUser>IAM:exporter</DbUser><DbPassword>sIBa&amp;Fsy0</DbPassword><Expiration>2026-12-01T22:37:55.939031Z</Expiration></GetClusterCredentialsResult></GetClusterCredentialsResponse>";
        let c = parse_query_reply(xml).unwrap();
        assert_eq!(c.value.db_user, "IAM:exporter");
        assert_eq!(c.value.password.expose(), "sIBa&Fsy0");
        let at = c
            .expires
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(at.as_secs(), 1_796_164_675);
        let c = parse_serverless_reply(
            r#"{"dbUser":"IAMR:exporter-role","dbPassword":"P","expiration":1764629875.5,"nextRefreshTime":1764629000}"#,
        )
        .unwrap();
        assert_eq!(c.value.db_user, "IAMR:exporter-role");
        let at = c
            .expires
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(at.as_millis(), 1_764_629_875_500);
        assert!(!format!("{:?}", c.value).contains("\"P\""));
        assert_eq!(parse_query_reply("<x/>").unwrap_err().code, "InvalidReply");
    }
}
