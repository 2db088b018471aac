//! AWS access (cargo feature `aws`): the few AWS API calls the exporter makes for its targets'
//! logins — Redshift's `GetClusterCredentials` / `GetClusterCredentialsWithIAM`, Redshift
//! Serverless' `GetCredentials` and Secrets Manager's `GetSecretValue` — over one credential
//! chain for the whole process ([`chain`], shared with S3 upload) and object_store's SigV4
//! signer, sent with reqwest (already in the tree for S3; no AWS SDK).
//!
//! Owns: endpoints (`https://<service>.<region>.amazonaws.com`, `.com.cn` in China, overridden
//! by the SDKs' `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL`), signing and sending, the two
//! wire protocols (Query with an XML reply, JSON 1.1), and the shape of AWS errors ([`AwsError`],
//! whose `code` goes into logs; secrets never do). Does not own: what is asked (`iam`,
//! `secret`), caching and backoff (`cache`), or sessions (`db`, through [`TargetAuth`]).

pub mod cache;
pub mod chain;
pub mod iam;
pub mod login;
pub mod secret;

use std::sync::OnceLock;
use std::time::Duration;

pub use login::TargetAuth;

use object_store::aws::AwsAuthorizer;

/// A failed AWS call: the service's error code (`AccessDenied`, `Throttling`, …, or one of
/// ours such as `Network`), its message, and the HTTP status when there was a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
}

impl AwsError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        AwsError {
            code: code.into(),
            message: message.into(),
            status: None,
        }
    }

    /// The service asks us to slow down (retry later, with backoff).
    pub fn throttled(&self) -> bool {
        matches!(
            self.code.as_str(),
            "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "RequestThrottled"
        ) || self.status == Some(429)
            || self.message.contains("Rate exceeded")
    }
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
pub fn default_region() -> String {
    env_region().unwrap_or_else(|| "us-east-1".into())
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
pub fn env_region() -> Option<String> {
    std::env::var("AWS_REGION")
        .ok()
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
}

/// The URL to call `service` (its endpoint prefix, e.g. `redshift-serverless`) in `region`.
/// `env_id` is the SDKs' service id for `AWS_ENDPOINT_URL_<ID>` (e.g. `REDSHIFT_SERVERLESS`).
pub fn endpoint(service: &str, env_id: &str, region: &str) -> String {
    if let Some(url) = std::env::var(format!("AWS_ENDPOINT_URL_{env_id}"))
        .ok()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|u| !u.is_empty())
    {
        return url;
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}/")
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    })
}

/// One signed POST to `url`; returns the reply body of a 2xx, else the parsed error.
pub async fn post(
    signing_name: &str,
    region: &str,
    url: &str,
    headers: &[(&'static str, &str)],
    body: String,
) -> Result<String, AwsError> {
    let provider = chain::provider(None).map_err(|m| AwsError::new("CredentialsError", m))?;
    let credential = provider.get_credential().await.map_err(|e| {
        AwsError::new(
            "CredentialsError",
            format!("no AWS credentials from the chain: {e}"),
        )
    })?;
    let mut request = hyper::Request::post(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut request = request
        .body(object_store::client::HttpRequestBody::from(body.clone()))
        .map_err(|e| AwsError::new("InvalidRequest", e.to_string()))?;
    AwsAuthorizer::new(&credential, signing_name, region)
        .try_authorize(&mut request, None)
        .map_err(|e| AwsError::new("SigningError", e.to_string()))?;
    let reply = http()
        .post(url)
        .headers(request.headers().clone())
        .body(body)
        .send()
        .await
        .map_err(|e| AwsError::new("Network", network_message(&e)))?;
    let status = reply.status().as_u16();
    let error_type = reply
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = reply
        .text()
        .await
        .map_err(|e| AwsError::new("Network", network_message(&e)))?;
    if (200..300).contains(&status) {
        return Ok(text);
    }
    Err(parse_error(status, error_type.as_deref(), &text))
}

fn network_message(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The code and message of an AWS error reply: JSON (`__type`, `message`/`Message`), or XML
/// (`<Code>`, `<Message>`, wherever they sit: Query services and moto differ), or the status.
pub fn parse_error(status: u16, error_type: Option<&str>, body: &str) -> AwsError {
    let (mut code, mut message) = (None, None);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        code = v.get("__type").and_then(|t| t.as_str()).map(str::to_owned);
        message = ["message", "Message"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
            .map(str::to_owned);
    } else if body.trim_start().starts_with('<') {
        code = xml_text(body, "Code");
        message = xml_text(body, "Message");
    }
    let code = code
        .or_else(|| error_type.map(str::to_owned))
        .map(|c| {
            // `com.amazonaws.secretsmanager#ResourceNotFoundException`, `X:http://…`
            let c = c.rsplit('#').next().unwrap_or(&c);
            c.split(':').next().unwrap_or(c).to_owned()
        })
        .unwrap_or_else(|| format!("HTTP{status}"));
    let message = message.unwrap_or_else(|| format!("HTTP status {status}"));
    AwsError {
        code,
        message: message.chars().take(300).collect(),
        status: Some(status),
    }
}

/// The text of the first `<tag>…</tag>` in `xml`, entities decoded. The replies we read are
/// flat and small, so no XML parser is needed.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&#xD;", "\r")
            .replace("&amp;", "&"),
    )
}

/// `application/x-www-form-urlencoded` for a Query request.
pub fn form(pairs: &[(String, String)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_read_from_every_shape() {
        let e = parse_error(
            400,
            None,
            r#"{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","Message":"no such secret"}"#,
        );
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("ResourceNotFoundException", "no such secret")
        );
        let e = parse_error(
            404,
            None,
            "<ErrorResponse><Error><Type>Sender</Type><Code>ClusterNotFound</Code><Message>Cluster nope not found.</Message></Error></ErrorResponse>",
        );
        assert_eq!(e.code, "ClusterNotFound");
        let e = parse_error(
            400,
            None,
            "<ErrorResponse><Errors><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></Errors></ErrorResponse>",
        );
        assert!(e.throttled());
        let e = parse_error(503, Some("ServiceUnavailable:http://x"), "");
        assert_eq!(e.code, "ServiceUnavailable");
        assert_eq!(parse_error(500, None, "<html>").code, "HTTP500");
        assert!(parse_error(429, None, "").throttled());
    }

    #[test]
    fn forms_are_encoded_like_botocore() {
        let f = form(&[
            ("Action".into(), "GetClusterCredentials".into()),
            ("DbGroups.DbGroup.1".into(), "a b/c".into()),
        ]);
        assert_eq!(
            f,
            "Action=GetClusterCredentials&DbGroups.DbGroup.1=a%20b%2Fc"
        );
    }

    #[test]
    fn xml_text_decodes_entities() {
        assert_eq!(
            xml_text("<a><DbPassword>x&amp;y&lt;</DbPassword></a>", "DbPassword").as_deref(),
            Some("x&y<")
        );
        assert_eq!(xml_text("<a/>", "DbPassword"), None);
    }

    #[test]
    fn endpoints_follow_the_region() {
        // Only meaningful when no override is set in the test environment.
        if std::env::var_os("AWS_ENDPOINT_URL").is_none()
            && std::env::var_os("AWS_ENDPOINT_URL_REDSHIFT").is_none()
        {
            assert_eq!(
                endpoint("redshift", "REDSHIFT", "eu-west-1"),
                "https://redshift.eu-west-1.amazonaws.com/"
            );
            assert_eq!(
                endpoint("redshift", "REDSHIFT", "cn-north-1"),
                "https://redshift.cn-north-1.amazonaws.com.cn/"
            );
        }
    }
}
