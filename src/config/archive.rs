//! The archive lifecycle keys of `checks.toml`: retention (`archive_max_age`,
//! `archive_max_bytes`, in `[exporter]` and per check), compression, HTTP serving and the
//! `[exporter.s3]` upload table.
//!
//! A child of [`crate::config`] so it reuses the same two-stage machinery (raw structs with
//! spans, then the [`Validator`] that collects every problem with its path and line). It only
//! turns text into typed values; what retention, compression or uploads *do* lives in
//! [`crate::archive`].

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{RawExporter, StrOrInt, Validator};

/// Retention default when `archive_max_age` is not set.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long to keep archive files, and how many bytes of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Files whose run started longer ago than this are deleted; `None` keeps them forever.
    pub max_age: Option<Duration>,
    /// Cap on bytes; the oldest files go first. In `[exporter]` it caps the whole archive,
    /// on a check it caps that check's files on each target. `None`: no cap.
    pub max_bytes: Option<u64>,
}

/// How archive files are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain `.csv`.
    #[default]
    None,
    /// `.csv.gz`, compressed while it is written.
    Gzip,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }
}

/// `[exporter]` archive lifecycle settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSettings {
    /// Whole-archive retention; its `max_age` is also every check's default.
    pub retention: Retention,
    pub compression: Compression,
    /// Serve archive files at `/archive/{target}/{check}/{file}` (off by default: results
    /// may be sensitive, and `/metrics` scrapers need not read them).
    pub serve: bool,
    /// How often retention runs (it also runs once at start-up).
    pub retention_interval: Duration,
    /// Upload of finished files to S3; `None` when `[exporter.s3]` is absent.
    pub s3: Option<S3Config>,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        ArchiveSettings {
            retention: Retention {
                max_age: Some(DEFAULT_MAX_AGE),
                max_bytes: None,
            },
            compression: Compression::None,
            serve: false,
            retention_interval: Duration::from_secs(60),
            s3: None,
        }
    }
}

/// Why `[exporter.s3]` is refused by a build without the `s3` cargo feature.
const NO_S3: &str =
    "this build has no S3 support; build with `cargo build --release --features s3`";

/// `[exporter.s3]`: where finished archive files are uploaded. Credentials come from the
/// standard AWS chain (environment, profile, web identity, ECS task role, instance role),
/// never from this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// `None`: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// S3-compatible endpoint (MinIO, moto, a VPC endpoint); path-style requests when set.
    pub endpoint: Option<String>,
    /// Allow `http://` endpoints (local test servers only).
    pub allow_http: bool,
    /// Shared-credentials profile; `None`: `AWS_PROFILE`, else `default`.
    pub profile: Option<String>,
    /// First delay before a failed upload is retried; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Deadline of one upload request.
    pub timeout: Duration,
}

#[derive(Deserialize)]
pub(super) struct RawS3 {
    bucket: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    allow_http: Option<Spanned<bool>>,
    profile: Option<Spanned<String>>,
    retry_initial: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

/// Parses `"10GiB"`, `"500 MB"`, `"1.5GiB"`, `"1024"` into bytes (SI and IEC units,
/// case-insensitive).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a size (examples: \"10GiB\", \"500MB\", 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit \"{other}\" (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("\"{s}\" must be at least one byte"));
    }
    Ok(bytes as u64)
}

fn is_none_word(s: &str) -> bool {
    matches!(s.trim(), "none" | "off" | "unlimited")
}

impl Validator<'_> {
    /// `archive_max_age`: a duration, or `"none"` to keep files forever.
    fn max_age(
        &mut self,
        path: &str,
        v: &Option<Spanned<String>>,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let Some(s) = v else { return default };
        let text = self.string(path, s);
        if is_none_word(&text) {
            return None;
        }
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.problem(
                    path,
                    Some(s.span().start),
                    "must be greater than zero (or \"none\")",
                );
                default
            }
            Err(e) => {
                self.problem(
                    path,
                    Some(s.span().start),
                    format!(
                        "invalid duration \"{text}\": {e} (examples: \"30d\", \"12h\", \"none\")"
                    ),
                );
                default
            }
        }
    }

    /// `archive_max_bytes`: an integer, a size with a unit, or `"none"`.
    fn max_bytes(&mut self, path: &str, v: &Option<Spanned<StrOrInt>>) -> Option<u64> {
        let s = v.as_ref()?;
        let at = Some(s.span().start);
        let parsed = match s.get_ref() {
            StrOrInt::Int(i) if *i > 0 => Ok(*i as u64),
            StrOrInt::Int(_) => Err("must be greater than zero".to_string()),
            StrOrInt::Str(x) => {
                let text = self.string(path, &Spanned::new(s.span(), x.clone()));
                if is_none_word(&text) {
                    return None;
                }
                parse_bytes(&text)
            }
        };
        match parsed {
            Ok(n) => Some(n),
            Err(e) => {
                self.problem(path, at, e);
                None
            }
        }
    }

    pub(super) fn archive_settings(&mut self, e: &RawExporter) -> ArchiveSettings {
        let d = ArchiveSettings::default();
        let compression = match self
            .opt_string("exporter.archive_compression", &e.archive_compression)
            .as_deref()
            .map(str::trim)
        {
            None | Some("none") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some(other) => {
                self.problem(
                    "exporter.archive_compression",
                    e.archive_compression.as_ref().map(|s| s.span().start),
                    format!("\"{other}\" is not one of none, gzip"),
                );
                Compression::None
            }
        };
        ArchiveSettings {
            retention: Retention {
                max_age: self.max_age(
                    "exporter.archive_max_age",
                    &e.archive_max_age,
                    d.retention.max_age,
                ),
                max_bytes: self.max_bytes("exporter.archive_max_bytes", &e.archive_max_bytes),
            },
            compression,
            serve: e.archive_serve.as_ref().is_some_and(|b| *b.get_ref()),
            retention_interval: self.duration(
                "exporter.archive_retention_interval",
                &e.archive_retention_interval,
                d.retention_interval,
            ),
            s3: e.s3.as_ref().map(|s| self.s3(s)),
        }
    }

    /// A check's retention: its own `archive_max_age` (else the exporter's) and its own
    /// `archive_max_bytes` cap (else none).
    pub(super) fn check_retention(
        &mut self,
        base: &str,
        max_age: &Option<Spanned<String>>,
        max_bytes: &Option<Spanned<StrOrInt>>,
        exporter: &ArchiveSettings,
    ) -> Retention {
        Retention {
            max_age: self.max_age(
                &format!("{base}.archive_max_age"),
                max_age,
                exporter.retention.max_age,
            ),
            max_bytes: self.max_bytes(&format!("{base}.archive_max_bytes"), max_bytes),
        }
    }

    fn s3(&mut self, raw: &Spanned<RawS3>) -> S3Config {
        let start = raw.span().start;
        let r = raw.get_ref();
        let p = |k: &str| format!("exporter.s3.{k}");
        if cfg!(not(feature = "s3")) {
            self.problem("exporter.s3", Some(start), NO_S3);
        }
        let bucket = match &r.bucket {
            Some(b) => {
                let name = self.string(&p("bucket"), b);
                let ok = (3..=63).contains(&name.len())
                    && name.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'
                    });
                if !ok {
                    self.problem(
                        p("bucket"),
                        Some(b.span().start),
                        format!("\"{name}\" is not an S3 bucket name (3-63 of a-z 0-9 . -)"),
                    );
                }
                name
            }
            None => {
                self.problem(p("bucket"), Some(start), "is required");
                String::new()
            }
        };
        let prefix = self
            .opt_string(&p("prefix"), &r.prefix)
            .unwrap_or_default()
            .trim_matches('/')
            .to_string();
        if prefix.split('/').any(|s| s == ".." || s == ".") {
            self.problem(
                p("prefix"),
                r.prefix.as_ref().map(|s| s.span().start),
                "must not contain . or .. segments",
            );
        }
        let endpoint = self.opt_string(&p("endpoint"), &r.endpoint);
        let allow_http = r.allow_http.as_ref().is_some_and(|b| *b.get_ref());
        if let (Some(e), Some(s)) = (&endpoint, &r.endpoint) {
            if !(e.starts_with("https://") || e.starts_with("http://")) {
                self.problem(
                    p("endpoint"),
                    Some(s.span().start),
                    format!("\"{e}\" must start with https:// (or http:// with allow_http = true)"),
                );
            } else if e.starts_with("http://") && !allow_http {
                self.problem(
                    p("endpoint"),
                    Some(s.span().start),
                    "an http:// endpoint needs allow_http = true (for local test servers only)",
                );
            }
        }
        let retry_initial = self.duration(
            &p("retry_initial"),
            &r.retry_initial,
            Duration::from_secs(1),
        );
        let retry_max = self.duration(&p("retry_max"), &r.retry_max, Duration::from_secs(300));
        if retry_max < retry_initial {
            self.problem(
                p("retry_max"),
                r.retry_max.as_ref().map(|s| s.span().start),
                "must not be shorter than retry_initial",
            );
        }
        S3Config {
            bucket,
            prefix,
            region: self.opt_string(&p("region"), &r.region),
            endpoint,
            allow_http,
            profile: self.opt_string(&p("profile"), &r.profile),
            retry_initial,
            retry_max,
            timeout: self.duration(&p("timeout"), &r.timeout, Duration::from_secs(60)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn env(_: &str) -> Option<String> {
        None
    }

    const BASE: &str = "[targets.main]\nhost = \"h\"\nuser = \"u\"\n";

    fn check(extra: &str) -> String {
        format!("[[checks]]\nname = \"c\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\n{extra}")
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("10GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes("500 MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("1.5kib"), Ok(1536));
        assert_eq!(parse_bytes("42"), Ok(42));
        assert!(parse_bytes("10 parsecs").is_err());
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("0").is_err());
    }

    #[test]
    fn defaults_keep_thirty_days_uncompressed_unserved_without_s3() {
        let c = parse(&format!("{BASE}{}", check("")), env).unwrap();
        assert_eq!(c.exporter.archive, ArchiveSettings::default());
        assert_eq!(c.exporter.archive.retention.max_age, Some(DEFAULT_MAX_AGE));
        assert_eq!(c.checks[0].archive_retention.max_age, Some(DEFAULT_MAX_AGE));
        assert_eq!(c.checks[0].archive_retention.max_bytes, None);
    }

    #[test]
    fn exporter_keys_and_per_check_overrides() {
        let text = format!(
            "[exporter]\narchive_max_age = \"7d\"\narchive_max_bytes = \"10GiB\"\n\
             archive_compression = \"gzip\"\narchive_serve = true\narchive_retention_interval = \"10s\"\n\
             [exporter.s3]\nbucket = \"my-bucket\"\nprefix = \"/exports/rs/\"\nregion = \"eu-west-1\"\n\
             endpoint = \"http://127.0.0.1:5000\"\nallow_http = true\nretry_initial = \"2s\"\n\
             {BASE}{}{}",
            check("archive_max_age = \"none\"\narchive_max_bytes = 1000\n"),
            check("").replace("\"c\"", "\"d\""),
        );
        if cfg!(not(feature = "s3")) {
            let problems = parse(&text, env).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].message.contains("no S3 support"),
                "{problems:?}"
            );
            return;
        }
        let c = parse(&text, env).unwrap();
        let a = &c.exporter.archive;
        assert_eq!(a.retention.max_age, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(a.retention.max_bytes, Some(10 << 30));
        assert_eq!(a.compression, Compression::Gzip);
        assert!(a.serve);
        assert_eq!(a.retention_interval, Duration::from_secs(10));
        let s3 = a.s3.as_ref().unwrap();
        assert_eq!(s3.bucket, "my-bucket");
        assert_eq!(s3.prefix, "exports/rs");
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert!(s3.allow_http);
        assert_eq!(s3.retry_initial, Duration::from_secs(2));
        assert_eq!(s3.retry_max, Duration::from_secs(300));
        assert_eq!(
            c.checks[0].archive_retention,
            Retention {
                max_age: None,
                max_bytes: Some(1000)
            }
        );
        assert_eq!(
            c.checks[1].archive_retention,
            Retention {
                max_age: Some(Duration::from_secs(7 * 86400)),
                max_bytes: None
            }
        );
    }

    #[test]
    fn problems_are_located_and_unknown_keys_rejected() {
        let text = format!(
            "[exporter]\narchive_max_age = \"soon\"\narchive_max_bytes = \"lots\"\n\
             archive_compression = \"zstd\"\n[exporter.s3]\nprefix = \"x\"\n\
             endpoint = \"http://127.0.0.1:1\"\nsecret = \"no\"\n{BASE}{}",
            check("archive_max_bytes = -1\narchive_max_agee = \"1d\"\n")
        );
        let shown: Vec<String> = parse(&text, env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        for needle in [
            "exporter.archive_max_age (line 2): invalid duration \"soon\"",
            "exporter.archive_max_bytes (line 3): \"lots\" is not a size",
            "exporter.archive_compression (line 4): \"zstd\" is not one of none, gzip",
            "exporter.s3.bucket (line 5): is required",
            "exporter.s3.endpoint (line 7): an http:// endpoint needs allow_http = true",
            "exporter.s3.secret (line 8): unknown key",
            "checks[0].archive_max_bytes (line 16): must be greater than zero",
            "checks[0].archive_max_agee (line 17): unknown key",
        ] {
            assert!(
                shown.iter().any(|s| s.contains(needle)),
                "no {needle:?} in {shown:#?}"
            );
        }
        // A build without the s3 feature also refuses the table itself.
        let expected = if cfg!(feature = "s3") { 8 } else { 9 };
        assert_eq!(shown.len(), expected, "{shown:#?}");
    }
}
