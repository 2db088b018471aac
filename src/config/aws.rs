//! The AWS login keys of a target: `[targets.X.iam]` (IAM temporary credentials) and
//! `password_secret` (Secrets Manager), with what can be worked out from the endpoint host
//! (cluster identifier, workgroup, region: the patterns AWS's JDBC and Python drivers use).
//!
//! A child of [`crate::config`] like `archive`: it turns text into the [`Auth::Iam`] / [`Auth::Secret`] variants and
//! reports problems with their TOML path and line. It is compiled into every build, so a build
//! without the `aws` feature can refuse these keys with a hint; the calls live in
//! [`crate::aws`] (feature `aws`).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Auth, Deployment, SslMode, Validator};

/// Why AWS logins are refused by a build without the `aws` cargo feature.
pub(super) const NO_AWS: &str = "this build has no AWS support (IAM credentials, Secrets Manager); build with `cargo build --release --features aws`";

/// `[targets.X.iam]` as written.
#[derive(Deserialize)]
pub(super) struct RawIam {
    cluster_identifier: Option<Spanned<String>>,
    workgroup: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    db_user: Option<Spanned<String>>,
    db_groups: Option<Vec<Spanned<String>>>,
    auto_create: Option<Spanned<bool>>,
    duration: Option<Spanned<String>>,
}

/// Which API issues the temporary credentials (it follows the deployment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamApi {
    /// Provisioned, `db_user` given: `redshift:GetClusterCredentials` (user `IAM:<db_user>`,
    /// `IAMA:` with `auto_create`).
    ClusterCredentials {
        db_user: String,
        db_groups: Vec<String>,
        auto_create: bool,
    },
    /// Provisioned without `db_user`: `redshift:GetClusterCredentialsWithIAM`; the user is the
    /// caller's identity (`IAM:<user>` / `IAMR:<role>`).
    ClusterCredentialsWithIam,
    /// Serverless: `redshift-serverless:GetCredentials`; the user is the caller's identity.
    Serverless,
}

/// Everything needed to ask for a target's temporary credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamPlan {
    pub api: IamApi,
    /// The cluster (provisioned) or workgroup (Serverless) the credentials are for.
    pub resource: String,
    pub region: String,
    pub database: String,
    /// 900 s to 3600 s.
    pub duration: Duration,
}

/// Which secret holds the login, and the region its service is called in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub id: String,
    pub region: String,
}

/// What an endpoint host says about the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHint {
    /// `<cluster>.<id>.<region>.redshift[-dev].amazonaws.com[.cn]`
    Provisioned { cluster: String, region: String },
    /// `[<workgroup>.]<account>.<region>.redshift-serverless[-dev].amazonaws.com[.cn]`
    Serverless {
        workgroup: Option<String>,
        region: String,
    },
    /// A VPC endpoint, CNAME, NLB or IP: nothing can be inferred.
    Other,
}

/// Reads `host` as the drivers do (`Driver.java` / `redshift_property.py` patterns).
pub fn host_hint(host: &str) -> HostHint {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let Some(i) = labels.iter().position(|l| {
        matches!(
            *l,
            "redshift" | "redshift-dev" | "redshift-serverless" | "redshift-serverless-dev"
        )
    }) else {
        return HostHint::Other;
    };
    if labels.get(i + 1) != Some(&"amazonaws") || labels.get(i + 2) != Some(&"com") {
        return HostHint::Other;
    }
    let label = |k: usize| {
        i.checked_sub(k)
            .and_then(|j| labels.get(j))
            .filter(|l| !l.is_empty())
            .map(|l| l.to_string())
    };
    let region = label(1);
    if labels[i].starts_with("redshift-serverless") {
        match (region, label(2)) {
            (Some(region), Some(_account)) => HostHint::Serverless {
                workgroup: label(3),
                region,
            },
            _ => HostHint::Other,
        }
    } else {
        match (region, label(2), label(3)) {
            (Some(region), Some(_id), Some(cluster)) => HostHint::Provisioned { cluster, region },
            _ => HostHint::Other,
        }
    }
}

/// The parts of a target the AWS keys depend on.
pub(super) struct TargetFacts<'a> {
    pub base: &'a str,
    pub host: &'a str,
    pub database: &'a str,
    pub sslmode: SslMode,
    pub sslmode_span: Option<usize>,
    pub deployment: Option<Deployment>,
    pub has_password: Option<usize>,
    pub user: Option<usize>,
}

impl Validator<'_> {
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`, from the environment the config is read with.
    fn env_region(&self) -> Option<String> {
        (self.env)("AWS_REGION")
            .or_else(|| (self.env)("AWS_DEFAULT_REGION"))
            .filter(|r| !r.is_empty())
    }

    /// Validates `password_secret` and `[targets.X.iam]`.
    pub(super) fn aws_login(
        &mut self,
        f: &TargetFacts<'_>,
        secret: &Option<Spanned<String>>,
        iam: &Option<Spanned<RawIam>>,
    ) -> Option<Auth> {
        let base = f.base;
        let (key, start) = match (secret, iam) {
            (None, None) => return None,
            (Some(s), Some(_)) => {
                self.problem(
                    format!("{base}.password_secret"),
                    Some(s.span().start),
                    "give password_secret or [iam], not both",
                );
                return None;
            }
            (Some(s), None) => ("password_secret", s.span().start),
            (None, Some(i)) => ("iam", i.span().start),
        };
        if cfg!(not(feature = "aws")) {
            self.problem(format!("{base}.{key}"), Some(start), NO_AWS);
        }
        if let Some(at) = f.has_password {
            self.problem(
                format!("{base}.{key}"),
                Some(at),
                format!("{key} provides the password: remove password / password_file"),
            );
        }
        if let Some(at) = f.user {
            let hint = if key == "iam" {
                "the database user comes from the credentials: set iam.db_user (provisioned) instead of user"
            } else {
                "the database user comes from the secret's \"username\": remove user"
            };
            self.problem(format!("{base}.user"), Some(at), hint);
        }
        if let Some(s) = secret {
            let id = self.string(&format!("{base}.password_secret"), s);
            return match secret_ref(&id, self.env_region().as_deref()) {
                Ok(r) => Some(Auth::Secret(r)),
                Err(m) => {
                    self.problem(format!("{base}.password_secret"), Some(start), m);
                    None
                }
            };
        }
        let raw = iam.as_ref()?.get_ref();
        let p = |k: &str| format!("{base}.iam.{k}");
        if f.sslmode == SslMode::Disable {
            self.problem(
                format!("{base}.sslmode"),
                f.sslmode_span.or(Some(start)),
                "IAM temporary credentials need TLS: use sslmode = \"require\" or \"verify-full\"",
            );
        }
        let hint = host_hint(f.host);
        let cluster = self.opt_string(&p("cluster_identifier"), &raw.cluster_identifier);
        let workgroup = self.opt_string(&p("workgroup"), &raw.workgroup);
        let region = self
            .opt_string(&p("region"), &raw.region)
            .or(match &hint {
                HostHint::Provisioned { region, .. } | HostHint::Serverless { region, .. } => {
                    Some(region.clone())
                }
                HostHint::Other => None,
            })
            .or_else(|| self.env_region());
        let serverless = workgroup.is_some()
            || f.deployment == Some(Deployment::Serverless)
            || matches!(hint, HostHint::Serverless { .. });
        let db_user = self.opt_string(&p("db_user"), &raw.db_user);
        let groups: Vec<String> = raw
            .db_groups
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, g)| self.string(&format!("{}[{j}]", p("db_groups")), g))
            .collect();
        let auto_create = raw.auto_create.as_ref().is_some_and(|b| *b.get_ref());
        let duration = self.duration(&p("duration"), &raw.duration, Duration::from_secs(900));
        if !(900..=3600).contains(&duration.as_secs()) {
            self.problem(
                p("duration"),
                raw.duration.as_ref().map(|d| d.span().start),
                "must be between 15m and 1h (what the credential APIs accept)",
            );
        }
        let Some(region) = region else {
            self.problem(
                p("region"),
                Some(start),
                "the region cannot be read from the host: set iam.region (or AWS_REGION)",
            );
            return None;
        };
        let (api, resource) = if serverless {
            if let Some(u) = &raw.db_user {
                self.problem(
                    p("db_user"),
                    Some(u.span().start),
                    "Redshift Serverless names the user after the caller's IAM identity; db_user applies to provisioned clusters only",
                );
            }
            let inferred = match &hint {
                HostHint::Serverless { workgroup, .. } => workgroup.clone(),
                _ => None,
            };
            let Some(wg) = workgroup.or(inferred) else {
                self.problem(
                    p("workgroup"),
                    Some(start),
                    "the Serverless workgroup cannot be read from the host: set iam.workgroup",
                );
                return None;
            };
            (IamApi::Serverless, wg)
        } else {
            let inferred = match &hint {
                HostHint::Provisioned { cluster, .. } => Some(cluster.clone()),
                _ => None,
            };
            let Some(cluster) = cluster.or(inferred) else {
                self.problem(
                    p("cluster_identifier"),
                    Some(start),
                    "the cluster cannot be read from the host (VPC endpoint or custom name?): set iam.cluster_identifier",
                );
                return None;
            };
            let api = match db_user {
                Some(u) => {
                    let ok = u.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && !u.chars().any(|c| c.is_ascii_uppercase());
                    if !ok {
                        self.problem(
                            p("db_user"),
                            raw.db_user.as_ref().map(|s| s.span().start),
                            "must be lower case and begin with a letter (GetClusterCredentials refuses others)",
                        );
                    }
                    IamApi::ClusterCredentials {
                        db_user: u,
                        db_groups: groups,
                        auto_create,
                    }
                }
                None => {
                    if !groups.is_empty() || auto_create {
                        self.problem(
                            p("db_user"),
                            Some(start),
                            "db_groups and auto_create need db_user (GetClusterCredentials)",
                        );
                    }
                    IamApi::ClusterCredentialsWithIam
                }
            };
            (api, cluster)
        };
        Some(Auth::Iam(IamPlan {
            api,
            resource,
            region,
            database: f.database.to_owned(),
            duration,
        }))
    }
}

/// An ARN names its region; a plain name uses `region` (the environment's).
pub fn secret_ref(id: &str, region: Option<&str>) -> Result<SecretRef, String> {
    let from_arn = match id.strip_prefix("arn:") {
        None => None,
        Some(rest) => match rest.split(':').collect::<Vec<_>>().as_slice() {
            [_, "secretsmanager", region, _, "secret", ..] if !region.is_empty() => {
                Some(region.to_string())
            }
            _ => {
                return Err(format!(
                    "\"{id}\" is not a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
                ));
            }
        },
    };
    if id.trim().is_empty() {
        return Err("must name a secret (its ARN or name)".into());
    }
    let region = from_arn.or_else(|| region.map(str::to_owned)).ok_or_else(|| {
        format!("\"{id}\" is a name, not an ARN, and no region is known: give the secret's ARN, or set AWS_REGION")
    })?;
    Ok(SecretRef {
        id: id.to_owned(),
        region,
    })
}

#[cfg(test)]
mod tests;
