//! The AWS side of a target's login: fetches the target's database credentials (IAM temporary
//! credentials or a Secrets Manager secret) through its [`Cache`], and logs the resolved
//! database user when it changes.
//!
//! Owns: which fetch a target uses and the cache per target. Does not own: opening sessions or
//! deciding that a login failed (`db`), nor the calls themselves (`iam`, `secret`).

use std::sync::{Arc, RwLock};

use super::cache::{Cache, Issued};
use super::{AwsError, iam, secret};
use crate::config::{Auth, IamApi, IamPlan, SecretRef, TargetConfig};
use crate::db::login::Credentials;

/// Where a target's credentials come from.
enum Source {
    Iam(IamPlan),
    Secret(SecretRef),
}

/// A target's AWS-provided login.
pub struct TargetAuth {
    target: String,
    source: Source,
    cache: Cache<Credentials>,
    db_user: RwLock<Option<String>>,
    /// Set by a reload: forget the cached secret before the next use.
    reread: std::sync::atomic::AtomicBool,
}

impl TargetAuth {
    /// `None` when the target logs in with its own user and password.
    pub fn new(config: &TargetConfig) -> Option<Arc<TargetAuth>> {
        let source = match &config.auth {
            Auth::Password(_) => return None,
            Auth::Iam(p) => Source::Iam(p.clone()),
            Auth::Secret(s) => Source::Secret(s.clone()),
        };
        Some(Arc::new(TargetAuth {
            target: config.name.clone(),
            source,
            cache: Cache::default(),
            db_user: RwLock::new(None),
            reread: Default::default(),
        }))
    }

    /// The call that provides the credentials, for messages.
    pub fn api(&self) -> &'static str {
        match &self.source {
            Source::Secret(_) => "secretsmanager:GetSecretValue",
            Source::Iam(p) => match p.api {
                IamApi::ClusterCredentials { .. } => "redshift:GetClusterCredentials",
                IamApi::ClusterCredentialsWithIam => "redshift:GetClusterCredentialsWithIAM",
                IamApi::Serverless => "redshift-serverless:GetCredentials",
            },
        }
    }

    /// Credentials for a new session: cached, or fetched (one fetch at a time).
    pub async fn credentials(&self) -> Result<Arc<Credentials>, AwsError> {
        if self
            .reread
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.cache.clear().await;
        }
        let creds = self
            .cache
            .get(|| async {
                match &self.source {
                    Source::Iam(plan) => iam::fetch(plan).await.map(|i| Issued {
                        value: Credentials {
                            user: i.value.db_user,
                            password: Some(Arc::new(i.value.password)),
                        },
                        expires: i.expires,
                    }),
                    Source::Secret(r) => secret::fetch(r).await.map(|i| Issued {
                        value: Credentials {
                            user: i.value.username,
                            password: Some(Arc::new(i.value.password)),
                        },
                        expires: i.expires,
                    }),
                }
            })
            .await?;
        let mut known = self.db_user.write().unwrap_or_else(|e| e.into_inner());
        if known.as_deref() != Some(creds.user.as_str()) {
            tracing::info!(
                target = %self.target,
                db_user = %creds.user,
                source = self.api(),
                "database user resolved from AWS"
            );
            *known = Some(creds.user.clone());
        }
        Ok(creds)
    }

    /// A login with `used` was refused: the next new session fetches anew (once per value).
    pub async fn login_failed(&self, used: &Arc<Credentials>) -> bool {
        self.cache.invalidate(used).await
    }

    /// On reload: a secret is read again for the next new session; IAM credentials stay.
    pub fn reload(&self) {
        if matches!(self.source, Source::Secret(_)) {
            self.reread
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The database user the last credentials named.
    pub fn db_user(&self) -> Option<String> {
        self.db_user
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many fetches were made.
    pub fn fetches(&self) -> u64 {
        self.cache.fetches()
    }
}
