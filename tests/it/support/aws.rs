//! An in-process stand-in for the AWS APIs the exporter calls, shaped by AWS's API reference,
//! for what moto lacks (`GetClusterCredentialsWithIAM`, Serverless `GetCredentials`) and for
//! faults (throttling, short expiry, rotation). One per test process, on its own thread, so it
//! outlives each test's runtime; state is kept per resource (secret id, cluster, workgroup), so
//! tests running in one process do not disturb each other.
//!
//! It checks that every request is SigV4-signed with the test key for the right region and
//! service (the signature itself is checked by the moto test), and counts calls per resource.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const KEY_ID: &str = "AKIDSTANDIN0000001";
pub const SECRET_KEY: &str = "StandIn-Secret-Access-Key-7733";
pub const SESSION_TOKEN: &str = "StandIn-Session-Token-5151";

/// One resource's behaviour and what it saw.
#[derive(Clone, Debug)]
pub struct Resource {
    /// The secret's JSON (Secrets Manager), or the pair returned (IAM).
    pub secret_string: String,
    pub db_user: String,
    pub db_password: String,
    /// How long issued credentials live.
    pub lifetime: Duration,
    /// Answer the next this many calls with a throttling error.
    pub throttle_next: usize,
    pub calls: usize,
    /// `…/<region>/<service>/aws4_request` of the last call.
    pub scope: String,
}

impl Default for Resource {
    fn default() -> Self {
        Resource {
            secret_string: String::new(),
            db_user: String::new(),
            db_password: String::new(),
            lifetime: Duration::from_secs(900),
            throttle_next: 0,
            calls: 0,
            scope: String::new(),
        }
    }
}

pub struct StandIn {
    pub url: String,
    resources: Arc<Mutex<HashMap<String, Resource>>>,
}

impl StandIn {
    pub fn set(&self, id: &str, f: impl FnOnce(&mut Resource)) {
        let mut m = self.resources.lock().unwrap();
        f(m.entry(id.to_owned()).or_default());
    }

    pub fn get(&self, id: &str) -> Resource {
        self.resources
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
}

/// The process's stand-in; the first call also points the AWS environment at it.
pub fn stand_in() -> &'static StandIn {
    static S: OnceLock<StandIn> = OnceLock::new();
    S.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://127.0.0.1:{}/",
            listener.local_addr().unwrap().port()
        );
        let resources: Arc<Mutex<HashMap<String, Resource>>> = Default::default();
        let r = resources.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(serve(sock, r.clone()));
                }
            });
        });
        // SAFETY (edition 2024): set once, before anything in this process reads them.
        unsafe {
            std::env::set_var("AWS_ENDPOINT_URL", &url);
            std::env::set_var("AWS_ACCESS_KEY_ID", KEY_ID);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
            std::env::set_var("AWS_SESSION_TOKEN", SESSION_TOKEN);
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        StandIn { url, resources }
    })
}

/// The environment a daemon needs to use the stand-in.
pub fn daemon_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", stand_in().url.clone()),
        ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN.into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

async fn serve(mut sock: tokio::net::TcpStream, resources: Arc<Mutex<HashMap<String, Resource>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let n = match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            break (
                head,
                String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string(),
            );
        }
    };
    let (status, content_type, reply) = answer(&head, &body, &resources);
    let msg = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = sock.write_all(msg.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        })
    })
}

fn answer(
    head: &str,
    body: &str,
    resources: &Mutex<HashMap<String, Resource>>,
) -> (&'static str, &'static str, String) {
    const XML: &str = "text/xml";
    const JSON: &str = "application/x-amz-json-1.1";
    let auth = header(head, "authorization").unwrap_or_default();
    let token = header(head, "x-amz-security-token").unwrap_or_default();
    let prefix = format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/");
    let Some(rest) = auth.strip_prefix(&prefix) else {
        return (
            "403 Forbidden",
            XML,
            "<ErrorResponse><Error><Code>InvalidClientTokenId</Code><Message>unsigned or unknown key</Message></Error></ErrorResponse>".into(),
        );
    };
    if token != SESSION_TOKEN {
        return (
            "403 Forbidden",
            XML,
            "<ErrorResponse><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid</Message></Error></ErrorResponse>".into(),
        );
    }
    let scope = rest.split(',').next().unwrap_or_default().to_owned();
    let target = header(head, "x-amz-target");
    let (kind, id) = match target.as_deref() {
        Some("secretsmanager.GetSecretValue") => {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            ("secret", v["SecretId"].as_str().unwrap().to_owned())
        }
        Some("RedshiftServerless.GetCredentials") => {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(header(head, "content-type").as_deref(), Some(JSON));
            assert!(
                v["durationSeconds"]
                    .as_u64()
                    .is_some_and(|d| (900..=3600).contains(&d))
            );
            (
                "serverless",
                v["workgroupName"].as_str().unwrap().to_owned(),
            )
        }
        _ => {
            let action = form_value(body, "Action").unwrap_or_default();
            assert!(
                action == "GetClusterCredentials" || action == "GetClusterCredentialsWithIAM",
                "unexpected call {action}"
            );
            if action == "GetClusterCredentials" {
                assert!(form_value(body, "DbUser").is_some());
            } else {
                assert!(
                    form_value(body, "DbUser").is_none(),
                    "WithIAM takes no DbUser"
                );
            }
            ("query", form_value(body, "ClusterIdentifier").unwrap())
        }
    };
    let mut m = resources.lock().unwrap();
    let r = m.entry(id.clone()).or_default();
    r.calls += 1;
    r.scope = scope;
    if r.throttle_next > 0 {
        r.throttle_next -= 1;
        return match kind {
            "query" => (
                "400 Bad Request",
                XML,
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".into(),
            ),
            _ => (
                "400 Bad Request",
                JSON,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
            ),
        };
    }
    let expires = chrono::Utc::now() + r.lifetime;
    match kind {
        "secret" => (
            "200 OK",
            JSON,
            serde_json::json!({"ARN": id, "Name": "n", "SecretString": r.secret_string, "VersionId": "v"})
                .to_string(),
        ),
        "serverless" => (
            "200 OK",
            JSON,
            serde_json::json!({
                "dbUser": r.db_user, "dbPassword": r.db_password,
                "expiration": expires.timestamp_millis() as f64 / 1000.0,
                "nextRefreshTime": expires.timestamp(),
            })
            .to_string(),
        ),
        _ => (
            "200 OK",
            XML,
            format!(
                "<GetClusterCredentialsResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><GetClusterCredentialsResult><DbUser>{}</DbUser><DbPassword>{}</DbPassword><Expiration>{}</Expiration></GetClusterCredentialsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetClusterCredentialsResponse>",
                r.db_user,
                r.db_password,
                expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
        ),
    }
}
