//! Prometheus text exposition of the snapshot. The only module that knows Prometheus.
//!
//! Families come from three collectors, one per concern:
//! - data: one gauge family per value column of each check, labels `target` + label columns;
//! - checks and targets: the exporter's own `redshift_exporter_*` families;
//! - process and pools: `process_*` from `/proc/self` and the pool gauges.
//!
//! The first two change only when a run (or an archive write) finishes, so their text is kept
//! per slot and family and only the slots that changed are rendered again ([`cache`]); only
//! the third is rendered per scrape. This file owns [`Exposition`] (the render entry points), the per-scrape
//! part and the text writer shared by all families (values in canonical form: `+Inf`, `-Inf`,
//! `NaN`). Which families the snapshot yields is [`families`]; `/proc` reading is [`process`];
//! gzip with a cached prefix is [`gzip`]; the archive families are [`archive`].

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

mod archive;
mod cache;
mod families;
mod format;
mod gzip;
mod process;

use crate::db::PoolStats;
use crate::snapshot::{ReloadStatus, Store};
use cache::Cache;
use format::{EOF, header};
pub use format::{Format, OpenMetricsVersion};
use process::{process_start_time, write_process};

/// One scrape's body, in order: its own `head`, the `shared` run of cached chunks and its own
/// `tail`. The cached run is the cache's list itself (an `Arc`), so a scrape of a fleet holds
/// one pointer to its thousands of chunks instead of a copy of the list (at 100 targets ×
/// the pack: ~3,000 chunks, 96 kB per plain response in flight, and as many reference counts
/// moved per scrape).
pub struct Scrape {
    pub head: Option<Bytes>,
    pub shared: Arc<[Bytes]>,
    pub tail: Option<Bytes>,
}

impl Scrape {
    /// Every chunk, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.head
            .iter()
            .chain(self.shared.iter())
            .chain(self.tail.iter())
    }
}

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Pool numbers for one target, read per scrape (no database access).
pub type PoolStatsFn = Box<dyn Fn() -> PoolStats + Send + Sync>;

/// Renders `/metrics`.
pub struct Exposition {
    store: Arc<Store>,
    /// (the target's labels as exposition text — `target="x"` plus its static labels, from
    /// [`target_labels_text`] — and its pool reader) for each target.
    pools: Vec<(String, PoolStatsFn)>,
    /// The snapshot-derived families, plain and compressed, and the generation they were
    /// rendered from.
    cache: Cache,
    start_time: f64,
    /// Outcome of configuration reloads (process-wide, outlives each configuration).
    reload: Arc<ReloadStatus>,
    /// Archive gauges and counters (process-wide), and whether S3 uploads are on.
    archive: Option<(Arc<crate::archive::stats::ArchiveStats>, bool)>,
    /// Database discovery per discovering target (process-wide).
    discovery: Option<Arc<crate::discovery::DiscoveryStats>>,
}

impl Exposition {
    pub fn new(
        store: Arc<Store>,
        pools: Vec<(String, PoolStatsFn)>,
        reload: Arc<ReloadStatus>,
    ) -> Self {
        Exposition {
            store,
            pools,
            cache: Cache::new(),
            start_time: process_start_time().unwrap_or(0.0),
            reload,
            archive: None,
            discovery: None,
        }
    }

    /// Adds the archive lifecycle families (files, bytes, deletions; uploads when on).
    pub fn with_archive_stats(
        mut self,
        stats: Arc<crate::archive::stats::ArchiveStats>,
        uploads: bool,
    ) -> Self {
        self.archive = Some((stats, uploads));
        self
    }

    /// Adds the discovery families (`target_databases`, `discovery_errors_total`).
    pub fn with_discovery(mut self, stats: Arc<crate::discovery::DiscoveryStats>) -> Self {
        self.discovery = Some(stats);
        self
    }

    /// The full exposition.
    pub fn render(&self) -> Bytes {
        self.render_as(Format::Text)
    }

    /// The full exposition in `format`.
    pub fn render_as(&self, format: Format) -> Bytes {
        let parts = self.render_parts_as(format);
        let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
        for p in &parts {
            out.extend_from_slice(p);
        }
        out.freeze()
    }

    /// The full exposition as chunks to send one after the other: the small per-scrape part,
    /// then the snapshot part's cached chunks (shared, not copied; see [`cache`]). Small part
    /// first: hyper queues it and sends it with the headers and the first chunks in one
    /// vectored write.
    pub fn render_parts(&self) -> Vec<Bytes> {
        self.render_parts_as(Format::Text)
    }

    /// [`Exposition::render_parts`] in `format` (OpenMetrics: with `# EOF` last).
    pub fn render_parts_as(&self, format: Format) -> Vec<Bytes> {
        self.scrape_as(format).chunks().cloned().collect()
    }

    /// One plain scrape in `format`, as [`Scrape`]: the per-scrape part, the cached chunks
    /// (the list itself shared, not copied) and for OpenMetrics `# EOF`.
    pub fn scrape_as(&self, format: Format) -> Scrape {
        Scrape {
            head: Some(self.dynamic_part(format)),
            shared: self.cache.plain(&self.store, format.index()),
            tail: (format != Format::Text).then(|| Bytes::from_static(EOF)),
        }
    }

    /// One gzip scrape in `format`, as [`Scrape`]: the cached compressed groups (the list
    /// shared) and the per-scrape deflate blocks with the trailer.
    pub fn gzip_scrape_as(&self, format: Format) -> Scrape {
        let cached = self.cache.gzip(&self.store, format.index());
        let mut dynamic = BytesMut::from(&self.dynamic_part(format)[..]);
        if format != Format::Text {
            dynamic.extend_from_slice(EOF);
        }
        Scrape {
            head: None,
            tail: Some(cached.finish_tail(&dynamic)),
            shared: cached.prefix.clone(),
        }
    }

    /// The full exposition, gzip-compressed. The snapshot part is compressed per changed
    /// group and cached; only the small per-scrape part is compressed per scrape and appended
    /// to the same deflate stream (see [`Gzipped`](gzip::Gzipped)).
    pub fn render_gzip(&self) -> Bytes {
        self.render_gzip_parts().concat().into()
    }

    /// [`Exposition::render_gzip`] in `format`.
    pub fn render_gzip_as(&self, format: Format) -> Bytes {
        self.render_gzip_parts_as(format).concat().into()
    }

    /// [`Exposition::render_gzip`] as chunks: the cached compressed groups (shared, not
    /// copied) and the per-scrape deflate blocks plus the gzip trailer.
    pub fn render_gzip_parts(&self) -> Vec<Bytes> {
        self.render_gzip_parts_as(Format::Text)
    }

    /// [`Exposition::render_gzip_parts`] in `format` (the per-scrape part, and for
    /// OpenMetrics `# EOF`, are the last blocks of the stream).
    pub fn render_gzip_parts_as(&self, format: Format) -> Vec<Bytes> {
        self.gzip_scrape_as(format).chunks().cloned().collect()
    }

    /// What changes on every scrape: pool gauges, reload status, `process_*`. Written by
    /// hand (a few hundred bytes, labels are validated target names and fixed words), in
    /// the same text format as the encoder's.
    fn dynamic_part(&self, format: Format) -> Bytes {
        let mut out = String::with_capacity(2048);
        header(
            &mut out,
            "redshift_exporter_pool_connections",
            "Sessions in the target's pool, by state.",
            "gauge",
            format,
        );
        let stats: Vec<(&str, PoolStats)> =
            self.pools.iter().map(|(n, f)| (n.as_str(), f())).collect();
        for (name, s) in &stats {
            let _ = writeln!(
                out,
                "redshift_exporter_pool_connections{{{name},state=\"idle\"}} {}",
                s.idle as f64
            );
            let _ = writeln!(
                out,
                "redshift_exporter_pool_connections{{{name},state=\"in_use\"}} {}",
                s.in_use as f64
            );
        }
        header(
            &mut out,
            "redshift_exporter_pool_max_connections",
            "Maximum sessions the target's pool may open.",
            "gauge",
            format,
        );
        for (name, s) in &stats {
            let _ = writeln!(
                out,
                "redshift_exporter_pool_max_connections{{{name}}} {}",
                s.max as f64
            );
        }
        if stats.is_empty() {
            // No targets: no samples, so no families (as the encoder would do).
            out.clear();
        }
        single(
            &mut out,
            "redshift_exporter_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or not (0).",
            "gauge",
            format,
            if self.reload.successful() { 1.0 } else { 0.0 },
        );
        single(
            &mut out,
            "redshift_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load.",
            "gauge",
            format,
            self.reload.last_success(),
        );
        if let Some((stats, uploads)) = &self.archive {
            // Archive lifecycle families change with every write, deletion and upload.
            encode_into(&mut out, &archive::families(stats, *uploads), format);
        }
        if let Some(d) = &self.discovery {
            write_discovery(&mut out, &d.snapshot(), format);
        }
        write_process(&mut out, self.start_time, format);
        Bytes::from(out)
    }
}

/// `target_databases` (only for targets whose discovery answered: an unknown count is not 0)
/// and `discovery_errors_total` (every kind, from the start: no failure is a measured 0).
fn write_discovery(
    out: &mut String,
    targets: &[crate::discovery::TargetDiscovery],
    format: Format,
) {
    if targets.is_empty() {
        return;
    }
    if targets.iter().any(|t| t.databases.is_some()) {
        header(
            out,
            "redshift_exporter_target_databases",
            "Databases of the target that per-database checks run on, from its last pg_database answer.",
            "gauge",
            format,
        );
        for t in targets {
            if let Some(n) = t.databases {
                let _ = writeln!(
                    out,
                    "redshift_exporter_target_databases{{{}}} {n}",
                    t.labels
                );
            }
        }
    }
    header(
        out,
        "redshift_exporter_discovery_errors_total",
        "Failed reads of the target's pg_database, by error kind (the last known databases are kept).",
        "counter",
        format,
    );
    for t in targets {
        for kind in crate::db::ErrorKind::ALL {
            let _ = writeln!(
                out,
                "redshift_exporter_discovery_errors_total{{{},kind=\"{}\"}} {}",
                t.labels,
                kind.as_str(),
                t.errors[kind.index()]
            );
        }
    }
}

fn single(out: &mut String, name: &str, help: &str, kind: &str, format: Format, v: f64) {
    header(out, name, help, kind, format);
    let _ = writeln!(out, "{name} {}", Value(v));
}

/// A sample value as the text format spells it: `+Inf`, `-Inf` and `NaN` (Rust's own
/// `Display` writes `inf`), finite values in Rust's shortest round-trip form.
struct Value(f64);

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == f64::INFINITY {
            f.write_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            write!(f, "{v}")
        }
    }
}

/// A target entry's labels as exposition text, `target="x",env="prod"` (with
/// `database="d"` after the target for an entry that is not the target's home database):
/// written once per configuration for the per-scrape pool gauges, which are per entry.
pub fn target_labels_text(
    name: &str,
    database: Option<&str>,
    labels: &[(String, String)],
) -> String {
    let mut out = format!("target=\"{}\"", escape(name, true));
    if let Some(db) = database {
        out.push_str(&format!(",database=\"{}\"", escape(db, true)));
    }
    for (k, v) in labels {
        out.push_str(&format!(",{k}=\"{}\"", escape(v, true)));
    }
    out
}

/// `\` → `\\`, newline → `\n`, and with `quote` also `"` → `\"` (HELP text and label values).
fn escape(s: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    if !(s.contains(['\\', '\n']) || quote && s.contains('"')) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

/// The text format of gauge and counter families (the only kinds the exporter has), as the
/// prometheus crate's `TextEncoder` writes it but for the spelling of non-finite values
/// ([`Value`]). Families without samples are left out.
#[cfg(test)]
fn encode(families: &[MetricFamily]) -> Bytes {
    let mut out = String::with_capacity(4096);
    encode_into(&mut out, families, Format::Text);
    Bytes::from(out)
}

/// [`encode`] in `format`, appended to `out`.
fn encode_into(out: &mut String, families: &[MetricFamily], format: Format) {
    for f in families.iter().filter(|f| !f.get_metric().is_empty()) {
        let (kind, value): (&str, fn(&Metric) -> f64) = match f.get_field_type() {
            MetricType::COUNTER => ("counter", |m| m.get_counter().get_value()),
            MetricType::GAUGE => ("gauge", |m| m.get_gauge().get_value()),
            other => {
                tracing::error!(family = f.name(), kind = ?other, "cannot encode this metric type");
                continue;
            }
        };
        let name = f.name();
        header(out, name, f.help(), kind, format);
        for m in f.get_metric() {
            out.push_str(name);
            for (i, l) in m.get_label().iter().enumerate() {
                out.push(if i == 0 { '{' } else { ',' });
                let _ = write!(out, "{}=\"{}\"", l.name(), escape(l.value(), true));
            }
            if !m.get_label().is_empty() {
                out.push('}');
            }
            let _ = writeln!(out, " {}", Value(value(m)));
        }
    }
}

fn family(name: &str, help: &str, t: MetricType) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(t);
    f
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn gauge(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels(pairs));
    m
}

fn counter(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::default();
    m.set_counter(c);
    m.set_label(labels(pairs));
    m
}

#[cfg(test)]
mod tests;
