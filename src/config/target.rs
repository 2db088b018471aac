//! Validation of one `[targets.NAME]` table into a [`TargetConfig`], including reading a
//! `password_file` (bounded, so a FIFO cannot hang start-up).
//!
//! It does not connect to anything: how these settings become a connection pool is
//! [`crate::db`].

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::RawTarget;
use super::{Auth, Deployment, Secret, SslMode, StrOrInt, TargetConfig, Validator, is_identifier};

impl Validator<'_> {
    pub(super) fn target(&mut self, name: &str, start: usize, t: &RawTarget) -> TargetConfig {
        let p = |k: &str| format!("targets.{name}.{k}");
        if !is_identifier(name) {
            self.problem(
                format!("targets.{name}"),
                Some(start),
                "target names must match [a-z_][a-z0-9_-]* (they become a label value and a folder name)",
            );
        }
        let required = |v: &mut Self, key: &str, s: &Option<Spanned<String>>| -> String {
            match s {
                Some(s) => {
                    let out = v.string(&p(key), s);
                    if out.trim().is_empty() && !v.missing_vars.iter().any(|m| m.1 == p(key)) {
                        v.problem(p(key), Some(s.span().start), "must not be empty");
                    }
                    out
                }
                None => {
                    v.problem(p(key), Some(start), "is required");
                    String::new()
                }
            }
        };
        let host = required(self, "host", &t.host);
        let hostaddr = match &t.hostaddr {
            None => None,
            Some(s) => {
                let text = self.string(&p("hostaddr"), s);
                match text.trim().parse::<std::net::IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.problem(
                            p("hostaddr"),
                            Some(s.span().start),
                            format!("\"{text}\" is not an IP address"),
                        );
                        None
                    }
                }
            }
        };
        let aws_keys = t.iam.is_some() || t.password_secret.is_some();
        let user = if aws_keys {
            self.opt_string(&p("user"), &t.user).unwrap_or_default()
        } else {
            required(self, "user", &t.user)
        };
        let database = self
            .opt_string(&p("database"), &t.database)
            .unwrap_or_else(|| "dev".into());
        let port = match &t.port {
            None => 5439,
            Some(s) => {
                let text = match s.get_ref() {
                    StrOrInt::Int(i) => i.to_string(),
                    StrOrInt::Str(x) => self.string(&p("port"), &Spanned::new(s.span(), x.clone())),
                };
                match text.trim().parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        if !self.missing_vars.iter().any(|m| m.1 == p("port")) {
                            self.problem(
                                p("port"),
                                Some(s.span().start),
                                format!("\"{text}\" is not a TCP port (1-65535)"),
                            );
                        }
                        5439
                    }
                }
            }
        };
        let password = match (&t.password, &t.password_file) {
            (Some(pw), Some(_)) => {
                self.problem(
                    p("password_file"),
                    Some(pw.span().start),
                    "give password or password_file, not both",
                );
                None
            }
            (Some(pw), None) => Some(Secret::new(self.string(&p("password"), pw))),
            (None, Some(f)) => {
                let path = self.string(&p("password_file"), f);
                match read_secret_file(&path) {
                    Ok(s) => Some(Secret::new(s.trim_end_matches(['\r', '\n']))),
                    Err(e) => {
                        self.problem(
                            p("password_file"),
                            Some(f.span().start),
                            format!("cannot read \"{path}\": {e}"),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let sslmode = match self.opt_string(&p("sslmode"), &t.sslmode).as_deref() {
            None => SslMode::Require,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                self.problem(
                    p("sslmode"),
                    t.sslmode.as_ref().map(|s| s.span().start),
                    format!("\"{other}\" is not one of disable, require, verify-full"),
                );
                SslMode::Require
            }
        };
        let ca_file = self
            .opt_string(&p("ca_file"), &t.ca_file)
            .map(PathBuf::from);
        if let (Some(f), Some(s)) = (&ca_file, &t.ca_file) {
            if !f.is_file() {
                self.problem(
                    p("ca_file"),
                    Some(s.span().start),
                    format!("\"{}\" is not a readable file", f.display()),
                );
            }
        }
        let deployment = match self.opt_string(&p("deployment"), &t.deployment).as_deref() {
            None | Some("auto") => None,
            Some(name) => match Deployment::from_name(name) {
                Some(d) => Some(d),
                None => {
                    self.problem(
                        p("deployment"),
                        t.deployment.as_ref().map(|s| s.span().start),
                        format!(
                            "\"{name}\" is not one of auto, provisioned, serverless, multi_az, postgres"
                        ),
                    );
                    None
                }
            },
        };
        let application_name = self
            .opt_string(&p("application_name"), &t.application_name)
            .unwrap_or_else(|| "redshift-exporter".into());
        let aws = self.aws_login(
            &super::aws::TargetFacts {
                base: &format!("targets.{name}"),
                host: &host,
                database: &database,
                sslmode,
                sslmode_span: t.sslmode.as_ref().map(|s| s.span().start),
                deployment,
                has_password: t
                    .password
                    .as_ref()
                    .or(t.password_file.as_ref())
                    .map(|s| s.span().start),
                user: t.user.as_ref().map(|s| s.span().start),
            },
            &t.password_secret,
            &t.iam,
        );
        let user = match &aws {
            Some(Auth::Iam(super::IamPlan {
                api: super::IamApi::ClusterCredentials { db_user, .. },
                ..
            })) => db_user.clone(),
            _ => user,
        };
        let labels = self.static_labels(&p("labels"), start, &t.labels);
        let databases = self.databases(&p("databases"), &t.databases);
        let databases_refresh = self.databases_refresh(
            &p("databases_refresh"),
            &t.databases_refresh,
            databases.as_ref(),
        );
        TargetConfig {
            labels,
            databases,
            databases_refresh,
            instance: super::Instance::default(),
            name: name.to_string(),
            host,
            hostaddr,
            port,
            database,
            user,
            auth: aws.unwrap_or(Auth::Password(password)),
            sslmode,
            ca_file,
            pool_size: self.positive(&p("pool_size"), &t.pool_size, 5, 1000),
            connect_timeout: self.duration(
                &p("connect_timeout"),
                &t.connect_timeout,
                Duration::from_secs(10),
            ),
            application_name,
            max_connection_age: self.duration(
                &p("max_connection_age"),
                &t.max_connection_age,
                Duration::from_secs(3600),
            ),
            keepalives_idle: self.duration(
                &p("keepalives_idle"),
                &t.keepalives_idle,
                Duration::from_secs(60),
            ),
            deployment,
        }
    }
}

/// Reads a `password_file`, at most 64 KiB: a path such as `/dev/stdin` or a FIFO must not
/// make loading the configuration read forever.
fn read_secret_file(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    const LIMIT: u64 = 64 * 1024;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(LIMIT + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > LIMIT {
        return Err(std::io::Error::other(
            "longer than 64 KiB; is it really a password file?",
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_files_are_read_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("pw");
        std::fs::write(&ok, "s3cret\n").unwrap();
        assert_eq!(read_secret_file(ok.to_str().unwrap()).unwrap(), "s3cret\n");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 70 * 1024]).unwrap();
        assert!(read_secret_file(big.to_str().unwrap()).is_err());
        // An endless source ends at the limit instead of hanging.
        assert!(read_secret_file("/dev/zero").is_err());
    }
}
