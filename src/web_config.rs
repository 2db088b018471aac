//! `--web.config.file`: TLS and basic authentication for the HTTP server, in the file format of
//! Prometheus's exporter-toolkit, so the same file works for every exporter on a host:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/redshift-exporter/tls.crt
//!   key_file: /etc/redshift-exporter/tls.key
//!   # client_ca_file: ...            # with client_auth_type: RequireAndVerifyClientCert
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Owns parsing and validating that file, building the rustls server config, and checking
//! `Authorization` headers. bcrypt is slow on purpose, so verified credentials are cached (by a
//! SHA-256 of user and password, never the password itself) and verification runs off the
//! async threads. Knows nothing about routes or metrics.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::Deserialize;

/// Most distinct verified credentials remembered; beyond it the cache starts over.
const CACHE_LIMIT: usize = 1024;

/// A problem with the web config file (a start-up error: exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    /// Accepted for compatibility with exporter-toolkit files; HTTP/2 is not served.
    #[allow(dead_code)]
    http_server_config: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    /// Accepted for compatibility; rustls picks safe suites itself.
    #[allow(dead_code)]
    cipher_suites: Option<serde_yaml::Value>,
    #[allow(dead_code)]
    curve_preferences: Option<serde_yaml::Value>,
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
}

/// The validated web configuration.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS for every connection when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `None`: no authentication. Otherwise user → bcrypt hash.
    pub auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.auth.as_ref().map(|a| a.users.len()),
            )
            .finish()
    }
}

/// Basic authentication against bcrypt hashes.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// SHA-256 digests of `user:password` pairs already verified.
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Result of checking a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Allowed,
    Denied,
}

impl BasicAuth {
    pub fn new(users: BTreeMap<String, String>) -> Self {
        BasicAuth {
            users,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Checks an `Authorization` header value. Unknown users cost a bcrypt verification too,
    /// so response times do not reveal which user names exist.
    pub async fn check(self: &Arc<Self>, header: Option<&str>) -> AuthResult {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return AuthResult::Denied;
        };
        let key = digest(&user, &password);
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return AuthResult::Allowed;
        }
        let me = self.clone();
        let ok = tokio::task::spawn_blocking(move || {
            // A fixed dummy hash keeps timing uniform for unknown users.
            const DUMMY: &str = "$2y$10$7EqJtq98hPqEX7fNZaFWoO1mVO/4MLpdPqQ4EL8aXIB8yHYz5Oq2e";
            let hash = me.users.get(&user).map(String::as_str);
            let ok = bcrypt::verify(&password, hash.unwrap_or(DUMMY)).unwrap_or(false);
            ok && hash.is_some()
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key);
            AuthResult::Allowed
        } else {
            AuthResult::Denied
        }
    }
}

fn digest(user: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(user.as_bytes());
    ctx.update(b"\0");
    ctx.update(password.as_bytes());
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `Basic dXNlcjpwYXNz` → (`user`, `pass`).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Reads and validates the file; certificate and key must load.
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |message: String| WebConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let raw: RawWebConfig = if text.trim().is_empty() {
        RawWebConfig {
            tls_server_config: None,
            basic_auth_users: BTreeMap::new(),
            http_server_config: None,
        }
    } else {
        serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };

    for (user, hash) in &raw.basic_auth_users {
        if user.contains(':') {
            return Err(invalid(format!(
                "basic_auth_users: user name \"{user}\" contains ':'"
            )));
        }
        if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
            return Err(invalid(format!(
                "basic_auth_users.{user}: not a bcrypt hash (expected $2y$..., e.g. from htpasswd -nBC 10)"
            )));
        }
    }

    let tls = match raw.tls_server_config {
        None => None,
        Some(t) => {
            let cert_file = resolve(&t.cert_file);
            let key_file = resolve(&t.key_file);
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
                .and_then(|it| it.collect())
                .map_err(|e| {
                    invalid(format!(
                        "tls_server_config.cert_file {}: {e}",
                        cert_file.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(invalid(format!(
                    "tls_server_config.cert_file {}: no certificate found",
                    cert_file.display()
                )));
            }
            let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|e| {
                invalid(format!(
                    "tls_server_config.key_file {}: {e}",
                    key_file.display()
                ))
            })?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
                None | Some("TLS12") => &[&rustls::version::TLS12, &rustls::version::TLS13],
                Some("TLS13") => &[&rustls::version::TLS13],
                Some(other) => {
                    return Err(invalid(format!(
                        "tls_server_config.min_version \"{other}\" is not supported (TLS12 or TLS13)"
                    )));
                }
            };
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| invalid(e.to_string()))?;
            let builder = match (t.client_auth_type.as_deref(), &t.client_ca_file) {
                (None | Some("NoClientCert"), _) => builder.with_no_client_auth(),
                (Some("RequireAndVerifyClientCert"), Some(ca)) => {
                    let ca = resolve(ca);
                    let mut roots = rustls::RootCertStore::empty();
                    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca)
                        .and_then(|it| it.collect())
                        .map_err(|e| {
                            invalid(format!(
                                "tls_server_config.client_ca_file {}: {e}",
                                ca.display()
                            ))
                        })?;
                    roots.add_parsable_certificates(cas);
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .build()
                    .map_err(|e| invalid(format!("tls_server_config.client_ca_file: {e}")))?;
                    builder.with_client_cert_verifier(verifier)
                }
                (Some(other), _) => {
                    return Err(invalid(format!(
                        "tls_server_config.client_auth_type \"{other}\" is not supported (NoClientCert, or RequireAndVerifyClientCert with client_ca_file)"
                    )));
                }
            };
            let mut config = builder.with_single_cert(certs, key).map_err(|e| {
                invalid(format!(
                    "tls_server_config: certificate and key do not match: {e}"
                ))
            })?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(config))
        }
    };
    let auth =
        (!raw.basic_auth_users.is_empty()).then(|| Arc::new(BasicAuth::new(raw.basic_auth_users)));
    Ok(WebConfig { tls, auth })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_headers() {
        assert_eq!(
            parse_basic("Basic dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[tokio::test]
    async fn checks_bcrypt_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = Arc::new(BasicAuth::new(BTreeMap::from([("prom".to_string(), hash)])));
        let h = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert_eq!(
            auth.check(Some(&h("prom", "s3cret"))).await,
            AuthResult::Allowed
        );
        assert_eq!(
            auth.check(Some(&h("prom", "s3cret"))).await,
            AuthResult::Allowed
        );
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        assert_eq!(
            auth.check(Some(&h("prom", "wrong"))).await,
            AuthResult::Denied
        );
        assert_eq!(
            auth.check(Some(&h("nobody", "s3cret"))).await,
            AuthResult::Denied
        );
        assert_eq!(auth.check(None).await, AuthResult::Denied);
    }

    #[test]
    fn rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("web.yml");
        std::fs::write(&f, "basic_auth_users:\n  u: plaintext\n").unwrap();
        assert!(
            load(&f)
                .unwrap_err()
                .to_string()
                .contains("not a bcrypt hash")
        );
        std::fs::write(
            &f,
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
        )
        .unwrap();
        assert!(load(&f).unwrap_err().to_string().contains("cert_file"));
        std::fs::write(&f, "unknown_key: 1\n").unwrap();
        assert!(load(&f).unwrap_err().to_string().contains("unknown field"));
        std::fs::write(&f, "").unwrap();
        let empty = load(&f).unwrap();
        assert!(empty.tls.is_none() && empty.auth.is_none());
    }
}
