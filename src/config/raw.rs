//! Stage 1 of parsing: the loosely typed serde structures `checks.toml` is read into.
//!
//! Every value is wrapped in [`Spanned`] so a problem found later can name its line; nothing
//! is checked here beyond TOML types (keys serde does not know are collected by the caller,
//! [`super::parse`]). The archive keys' `[exporter.s3]` table lives in [`super::archive`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
pub(super) struct RawConfig {
    pub(super) exporter: Option<RawExporter>,
    #[serde(default)]
    pub(super) targets: BTreeMap<String, Spanned<RawTarget>>,
    #[serde(default)]
    pub(super) checks: Vec<Spanned<RawCheck>>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawExporter {
    pub(super) listen_address: Option<Spanned<String>>,
    pub(super) namespace: Option<Spanned<String>>,
    pub(super) archive_dir: Option<Spanned<String>>,
    pub(super) archive: Option<Spanned<bool>>,
    pub(super) default_interval: Option<Spanned<String>>,
    pub(super) default_timeout: Option<Spanned<String>>,
    pub(super) drain_timeout: Option<Spanned<String>>,
    pub(super) max_series_per_check: Option<Spanned<i64>>,
    pub(super) archive_max_age: Option<Spanned<String>>,
    pub(super) archive_max_bytes: Option<Spanned<StrOrInt>>,
    pub(super) archive_compression: Option<Spanned<String>>,
    pub(super) archive_serve: Option<Spanned<bool>>,
    pub(super) page_detail: Option<Spanned<String>>,
    pub(super) archive_retention_interval: Option<Spanned<String>>,
    pub(super) s3: Option<Spanned<super::archive::RawS3>>,
    /// Files of further `[[checks]]`, globs relative to the main file.
    pub(super) include: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StrOrInt {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
pub(super) struct RawTarget {
    pub(super) host: Option<Spanned<String>>,
    pub(super) hostaddr: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<StrOrInt>>,
    pub(super) database: Option<Spanned<String>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) password: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) sslmode: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) pool_size: Option<Spanned<i64>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) application_name: Option<Spanned<String>>,
    pub(super) max_connection_age: Option<Spanned<String>>,
    pub(super) keepalives_idle: Option<Spanned<String>>,
    pub(super) deployment: Option<Spanned<String>>,
    pub(super) password_secret: Option<Spanned<String>>,
    pub(super) iam: Option<Spanned<super::aws::RawIam>>,
    /// Static labels added to every series of the target.
    pub(super) labels: Option<BTreeMap<String, Spanned<String>>>,
    /// `["dev", "sales"]` or `{ include = [...], exclude = [...] }`: read as a plain value
    /// because serde's untagged enums lose the spans of what they buffer.
    pub(super) databases: Option<Spanned<toml::Value>>,
    pub(super) databases_refresh: Option<Spanned<String>>,
}

#[derive(Deserialize)]
pub(super) struct RawCheck {
    pub(super) name: Option<Spanned<String>>,
    pub(super) help: Option<Spanned<String>>,
    pub(super) query: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) labels: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) values: Vec<Spanned<toml::Value>>,
    pub(super) targets: Option<Vec<Spanned<String>>>,
    pub(super) archive: Option<Spanned<bool>>,
    pub(super) max_series: Option<Spanned<i64>>,
    pub(super) deployment: Option<Vec<Spanned<String>>>,
    pub(super) archive_max_age: Option<Spanned<String>>,
    pub(super) archive_max_bytes: Option<Spanned<StrOrInt>>,
    /// Static labels added to every series of the check (`labels` names label columns).
    pub(super) static_labels: Option<BTreeMap<String, Spanned<String>>>,
    /// `cluster` (default) or `database`.
    pub(super) scope: Option<Spanned<String>>,
}

/// A file named by `[exporter] include`: `[[checks]]` only.
#[derive(Deserialize, Default)]
pub(super) struct RawInclude {
    #[serde(default)]
    pub(super) checks: Vec<Spanned<RawCheck>>,
}
