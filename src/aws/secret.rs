//! A target's login from AWS Secrets Manager (`password_secret`): `GetSecretValue` and the JSON
//! that Redshift-managed secrets (`manage_master_password`) and the rotation lambdas' secrets
//! hold — `username`, `password`, and optionally `host`, `port`, `dbname`.
//!
//! Owns: the request and the parsing of the secret. Does not own: caching and re-reading after
//! a rotation (`cache`, `login`). The secret's text never goes into an error or a log line.

use std::fmt;

use super::cache::Issued;
use super::{AwsError, endpoint, post};
use crate::config::{Secret, SecretRef};

/// What the secret says.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretLogin {
    pub username: String,
    pub password: Secret,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

impl fmt::Debug for SecretLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretLogin")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// Reads the `GetSecretValue` reply.
pub fn parse_reply(reply: &str) -> Result<SecretLogin, AwsError> {
    let bad = |m: &str| AwsError::new("InvalidSecret", m.to_owned());
    let reply: serde_json::Value =
        serde_json::from_str(reply).map_err(|_| bad("the GetSecretValue reply is not JSON"))?;
    let Some(text) = reply.get("SecretString").and_then(|s| s.as_str()) else {
        return Err(bad(
            "the secret has no SecretString (binary secrets are not supported)",
        ));
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        bad("the secret's value is not JSON with username and password (as Redshift and the rotation functions store it)")
    })?;
    let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let username = field("username").ok_or_else(|| bad("the secret has no \"username\""))?;
    let password = field("password").ok_or_else(|| bad("the secret has no \"password\""))?;
    let port = match value.get("port") {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok(SecretLogin {
        username,
        password: Secret::new(password),
        host: field("host"),
        port,
        dbname: field("dbname"),
    })
}

/// Calls `secretsmanager:GetSecretValue` (AWSCURRENT). Secrets do not expire on their own; a
/// rotation shows up as a failed login, after which the caller re-reads.
pub async fn fetch(secret: &SecretRef) -> Result<Issued<SecretLogin>, AwsError> {
    let url = endpoint("secretsmanager", "SECRETS_MANAGER", &secret.region);
    let body = serde_json::json!({ "SecretId": secret.id }).to_string();
    let reply = post(
        "secretsmanager",
        &secret.region,
        &url,
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "secretsmanager.GetSecretValue"),
        ],
        body,
    )
    .await?;
    Ok(Issued {
        value: parse_reply(&reply)?,
        expires: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redshift_and_rotation_secrets_are_read() {
        // Redshift-managed admin secret: username and password only.
        let v = parse_reply(r#"{"ARN":"a","Name":"n","SecretString":"{\"username\":\"admin\",\"password\":\"Pa$$\"}","VersionId":"v"}"#).unwrap();
        assert_eq!(v.username, "admin");
        assert_eq!(v.password.expose(), "Pa$$");
        assert_eq!(v.host, None);
        // Rotation-lambda shape, port as a number or a string.
        let v = parse_reply(r#"{"SecretString":"{\"engine\":\"redshift\",\"username\":\"exporter\",\"password\":\"x\",\"host\":\"c.abc.us-east-1.redshift.amazonaws.com\",\"port\":5439,\"dbname\":\"dev\"}"}"#).unwrap();
        assert_eq!((v.port, v.dbname.as_deref()), (Some(5439), Some("dev")));
        let v = parse_reply(
            r#"{"SecretString":"{\"username\":\"u\",\"password\":\"x\",\"port\":\"5439\"}"}"#,
        )
        .unwrap();
        assert_eq!(v.port, Some(5439));
    }

    #[test]
    fn bad_secrets_say_why_without_the_value() {
        for (reply, needle) in [
            (r#"{"SecretBinary":"AAAA"}"#, "binary"),
            (r#"{"SecretString":"hunter2-not-json"}"#, "not JSON"),
            (
                r#"{"SecretString":"{\"password\":\"hunter2\"}"}"#,
                "no \"username\"",
            ),
            (
                r#"{"SecretString":"{\"username\":\"u\"}"}"#,
                "no \"password\"",
            ),
        ] {
            let e = parse_reply(reply).unwrap_err();
            assert!(e.message.contains(needle), "{e}");
            assert!(!e.message.contains("hunter2"), "{e}");
        }
        let debug = format!(
            "{:?}",
            parse_reply(r#"{"SecretString":"{\"username\":\"u\",\"password\":\"hunter2\"}"}"#)
                .unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
