//! The process's AWS credential chain, shared by S3 upload and the targets' AWS logins: the
//! chain object_store builds (environment keys, web identity / IRSA, ECS and EKS Pod Identity
//! task roles, IMDSv2 instance roles, each refreshed before it expires) plus the static keys of
//! a shared-credentials profile, which object_store does not read.
//!
//! Owns: building that chain (one per profile, made once and kept for the process). Does not
//! own: signing or calling services (`aws`), profiles with `role_arn`, SSO or
//! `credential_process` (unsupported, as for S3).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use object_store::aws::{AmazonS3Builder, AwsCredentialProvider};

/// An object_store S3 builder with the chain's settings: what S3 upload builds on, and where
/// [`provider`] takes its credential provider from.
pub fn builder(profile: Option<&str>, region: &str) -> AmazonS3Builder {
    // reqwest is built with `rustls-no-provider` (aws-lc would double the build), so rustls has
    // no crypto provider of its own and the first HTTPS call would panic without a process
    // default. ring is what the database TLS already uses; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = AmazonS3Builder::from_env().with_region(region);
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        if let Some(c) = profile_credentials(profile) {
            b = b
                .with_access_key_id(c.key_id)
                .with_secret_access_key(c.secret);
            if let Some(t) = c.token {
                b = b.with_token(t);
            }
        }
    }
    b
}

/// The credential provider of the chain for `profile` (the default chain for `None`), built on
/// first use and shared from then on, so its cached role credentials are shared too.
pub fn provider(profile: Option<&str>) -> Result<AwsCredentialProvider, String> {
    static PROVIDERS: OnceLock<Mutex<HashMap<Option<String>, AwsCredentialProvider>>> =
        OnceLock::new();
    let mut map = PROVIDERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = profile.map(str::to_owned);
    if let Some(p) = map.get(&key) {
        return Ok(p.clone());
    }
    let store = builder(profile, &super::default_region())
        // Only the credential chain is used; the bucket is never addressed.
        .with_bucket_name("unused")
        .build()
        .map_err(|e| format!("cannot set up the AWS credential chain: {e}"))?;
    let p = store.credentials().clone();
    map.insert(key, p.clone());
    Ok(p)
}

/// Static keys of a shared-credentials profile.
#[derive(Debug, PartialEq, Eq)]
struct ProfileCredentials {
    key_id: String,
    secret: String,
    token: Option<String>,
}

/// Reads `aws_access_key_id` / `aws_secret_access_key` (/ `aws_session_token`) of the
/// profile (`profile`, else `AWS_PROFILE`, else `default`) from `AWS_SHARED_CREDENTIALS_FILE`
/// (default `~/.aws/credentials`), then `AWS_CONFIG_FILE` (default `~/.aws/config`).
fn profile_credentials(profile: Option<&str>) -> Option<ProfileCredentials> {
    let name = profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let creds = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| parse_profile(&t, &name));
    creds.or_else(|| {
        let section = if name == "default" {
            name.clone()
        } else {
            format!("profile {name}")
        };
        file("AWS_CONFIG_FILE", "config")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| parse_profile(&t, &section))
    })
}

/// The keys of `[section]` in an INI-style AWS file.
fn parse_profile(text: &str, section: &str) -> Option<ProfileCredentials> {
    let mut inside = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            inside = s.trim() == section;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key_id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(ProfileCredentials {
        key_id: key_id?,
        secret: secret?,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_ini_files() {
        let text = "[default]\naws_access_key_id = AK1\naws_secret_access_key = S1\n\
                    [ops]\n# comment\naws_access_key_id=AK2\naws_secret_access_key=S2\naws_session_token=T2\n\
                    [broken]\naws_access_key_id = AK3\n";
        assert_eq!(
            parse_profile(text, "ops"),
            Some(ProfileCredentials {
                key_id: "AK2".into(),
                secret: "S2".into(),
                token: Some("T2".into())
            })
        );
        assert_eq!(parse_profile(text, "default").unwrap().key_id, "AK1");
        assert_eq!(parse_profile(text, "broken"), None);
        assert_eq!(parse_profile(text, "missing"), None);
    }
}
