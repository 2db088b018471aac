//! Prometheus text exposition of the snapshot. The only module that knows Prometheus.
//!
//! Families come from three collectors, one per concern:
//! - data: one gauge family per value column of each check, labels `target` + label columns;
//! - checks and targets: the exporter's own `redshift_exporter_*` families;
//! - process and pools: `process_*` from `/proc/self` and the pool gauges.
//!
//! The first two change only when a run (or an archive write) finishes, so they are rendered
//! once per snapshot generation and the bytes are cached; only the third is rendered per
//! scrape.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

mod archive;

use crate::db::{ErrorKind, PoolStats};
use crate::sample::SampleError;
use crate::snapshot::{ReloadStatus, RunResult, State, Store};

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Pool numbers for one target, read per scrape (no database access).
pub type PoolStatsFn = Box<dyn Fn() -> PoolStats + Send + Sync>;

/// Renders `/metrics`.
pub struct Exposition {
    store: Arc<Store>,
    /// (target name, pool reader) for each target.
    pools: Vec<(String, PoolStatsFn)>,
    /// The snapshot-derived families, plain and compressed, and the generation they were
    /// rendered from.
    cache: Mutex<(u64, Option<Arc<Rendered>>)>,
    start_time: f64,
    /// Outcome of configuration reloads (process-wide, outlives each configuration).
    reload: Arc<ReloadStatus>,
    /// Archive gauges and counters (process-wide), and whether S3 uploads are on.
    archive: Option<(Arc<crate::archive::stats::ArchiveStats>, bool)>,
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
            cache: Mutex::new((0, None)),
            start_time: process_start_time().unwrap_or(0.0),
            reload,
            archive: None,
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

    /// The full exposition.
    pub fn render(&self) -> Bytes {
        let [dynamic, cached] = self.render_parts();
        let mut out = BytesMut::with_capacity(cached.len() + dynamic.len());
        out.extend_from_slice(&dynamic);
        out.extend_from_slice(&cached);
        out.freeze()
    }

    /// The full exposition as two parts to send one after the other: the small per-scrape
    /// part, then the cached snapshot part (shared, not copied). Small part first: hyper
    /// queues it and sends both with the headers in one vectored write when the big part,
    /// the body's last, arrives (the other way round it must flush in between).
    pub fn render_parts(&self) -> [Bytes; 2] {
        let cached = self.snapshot_part();
        [self.dynamic_part(), cached.plain.clone()]
    }

    /// The full exposition, gzip-compressed. The snapshot part is compressed once per
    /// snapshot change and cached; only the small per-scrape part is compressed per scrape
    /// and appended to the same deflate stream (see [`Gzipped`]).
    pub fn render_gzip(&self) -> Bytes {
        let [prefix, tail] = self.render_gzip_parts();
        let mut out = BytesMut::with_capacity(prefix.len() + tail.len());
        out.extend_from_slice(&prefix);
        out.extend_from_slice(&tail);
        out.freeze()
    }

    /// [`Exposition::render_gzip`] as two parts: the cached compressed prefix (shared, not
    /// copied) and the per-scrape deflate blocks plus the gzip trailer.
    pub fn render_gzip_parts(&self) -> [Bytes; 2] {
        let cached = self.snapshot_part();
        let dynamic = self.dynamic_part();
        [
            cached.gzip.prefix.clone(),
            cached.gzip.finish_tail(&dynamic),
        ]
    }

    /// The families derived from the snapshot, re-rendered only when it changed.
    fn snapshot_part(&self) -> Arc<Rendered> {
        let generation = self.store.generation();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.0 == generation {
                if let Some(r) = &cache.1 {
                    return r.clone();
                }
            }
        }
        // Render outside the cache lock; a concurrent scrape may render too, harmlessly.
        let (generation, families) = {
            let st = self.store.read();
            (self.store.generation(), snapshot_families(&st))
        };
        let plain = encode(&families);
        let rendered = Arc::new(Rendered {
            gzip: Gzipped::new(&plain),
            plain,
        });
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if generation >= cache.0 {
            *cache = (generation, Some(rendered.clone()));
        }
        rendered
    }

    /// What changes on every scrape: pool gauges, reload status, `process_*`. Written by
    /// hand (a few hundred bytes, labels are validated target names and fixed words), in
    /// the same text format as the encoder's.
    fn dynamic_part(&self) -> Bytes {
        let mut out = String::with_capacity(2048);
        header(
            &mut out,
            "redshift_exporter_pool_connections",
            "Sessions in the target's pool, by state.",
            "gauge",
        );
        let stats: Vec<(&str, PoolStats)> =
            self.pools.iter().map(|(n, f)| (n.as_str(), f())).collect();
        for (name, s) in &stats {
            let _ = writeln!(
                out,
                "redshift_exporter_pool_connections{{target=\"{name}\",state=\"idle\"}} {}",
                s.idle as f64
            );
            let _ = writeln!(
                out,
                "redshift_exporter_pool_connections{{target=\"{name}\",state=\"in_use\"}} {}",
                s.in_use as f64
            );
        }
        header(
            &mut out,
            "redshift_exporter_pool_max_connections",
            "Maximum sessions the target's pool may open.",
            "gauge",
        );
        for (name, s) in &stats {
            let _ = writeln!(
                out,
                "redshift_exporter_pool_max_connections{{target=\"{name}\"}} {}",
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
            if self.reload.successful() { 1.0 } else { 0.0 },
        );
        single(
            &mut out,
            "redshift_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load.",
            "gauge",
            self.reload.last_success(),
        );
        if let Some((stats, uploads)) = &self.archive {
            // Archive lifecycle families change with every write, deletion and upload.
            out.push_str(&String::from_utf8_lossy(&encode(&archive::families(
                stats, *uploads,
            ))));
        }
        write_process(&mut out, self.start_time);
        Bytes::from(out)
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, help: &str, kind: &str, v: f64) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {v}");
}

/// The snapshot part of the exposition, ready to serve.
struct Rendered {
    plain: Bytes,
    gzip: Gzipped,
}

/// The start of a gzip member: header plus deflate blocks of `plain`, ended with a sync flush
/// (byte-aligned, not final), and the running CRC. [`Gzipped::finish`] appends the per-scrape
/// bytes as further deflate blocks from a fresh compressor (which refers back to nothing before
/// its own input) with the final-block flag, then the trailer: one valid gzip member, so every
/// client can read it, for the cost of compressing a few kilobytes per scrape.
struct Gzipped {
    prefix: Bytes,
    crc: crc32fast::Hasher,
    len: usize,
}

impl Gzipped {
    fn new(plain: &[u8]) -> Self {
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown
        let mut out = Vec::with_capacity(plain.len() / 4 + 64);
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        deflate(&mut c, plain, &mut out, flate2::FlushCompress::Sync);
        let mut crc = crc32fast::Hasher::new();
        crc.update(plain);
        Gzipped {
            prefix: Bytes::from(out),
            crc,
            len: plain.len(),
        }
    }

    #[cfg(test)]
    fn finish(&self, tail: &[u8]) -> Bytes {
        let mut out = BytesMut::from(&self.prefix[..]);
        out.extend_from_slice(&self.finish_tail(tail));
        out.freeze()
    }

    /// What follows the cached prefix: `tail` as final deflate blocks, then the trailer.
    fn finish_tail(&self, tail: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(tail.len() / 2 + 64);
        let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
        deflate(&mut c, tail, &mut out, flate2::FlushCompress::Finish);
        let mut crc = self.crc.clone();
        crc.update(tail);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        out.extend_from_slice(&((self.len + tail.len()) as u32).to_le_bytes());
        Bytes::from(out)
    }
}

/// Compresses all of `input` into `out` (growing it), then flushes as asked.
fn deflate(
    c: &mut flate2::Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: flate2::FlushCompress,
) {
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.len().max(16 * 1024));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(input, out, flush)
            .expect("deflating into memory cannot fail");
        input = &input[(c.total_in() - before) as usize..];
        let room_left = out.len() < out.capacity();
        match status {
            flate2::Status::StreamEnd => break,
            _ if input.is_empty() && room_left && flush != flate2::FlushCompress::Finish => break,
            _ => {}
        }
    }
}

fn encode(families: &[MetricFamily]) -> Bytes {
    let non_empty: Vec<MetricFamily> = families
        .iter()
        .filter(|f| !f.get_metric().is_empty())
        .cloned()
        .collect();
    let mut buf = Vec::with_capacity(4096);
    // Encoding to memory cannot fail for non-empty, named families.
    if let Err(e) = TextEncoder::new().encode(&non_empty, &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    Bytes::from(buf)
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

/// Data families and the exporter's check/target families.
fn snapshot_families(st: &State) -> Vec<MetricFamily> {
    let mut out = Vec::new();

    // Data: one family per metric name, in check order; every target of every check feeding
    // it inside (the provisioned and Serverless variants of a measurement share a name).
    let mut seen_checks = std::collections::HashSet::new();
    let mut data: Vec<MetricFamily> = Vec::new();
    let mut by_name: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for s in &st.slots {
        if !seen_checks.insert(s.check_index) {
            continue;
        }
        let check = &s.check;
        for (vi, v) in check.values.iter().enumerate() {
            let fi = *by_name.entry(v.metric.as_str()).or_insert_with(|| {
                data.push(family(&v.metric, &v.help, MetricType::GAUGE));
                data.len() - 1
            });
            let f = &mut data[fi];
            for sl in st.slots.iter().filter(|x| x.check_index == s.check_index) {
                let Some(samples) = &sl.samples else { continue };
                for row in &samples.rows {
                    let Some(value) = row.values[vi] else {
                        continue;
                    };
                    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(row.labels.len() + 1);
                    pairs.push(("target", &sl.target));
                    for (name, val) in check.labels.iter().zip(&row.labels) {
                        pairs.push((name, val));
                    }
                    f.mut_metric().push(gauge(&pairs, value));
                }
            }
        }
    }
    out.extend(data);

    let applicable = || st.slots.iter().filter(|s| s.not_applicable.is_none());
    let per_slot = |name: &str, help: &str, value: &dyn Fn(&crate::snapshot::Slot) -> f64| {
        let mut f = family(name, help, MetricType::GAUGE);
        for s in applicable() {
            f.mut_metric().push(gauge(
                &[("target", &s.target), ("check", &s.check.name)],
                value(s),
            ));
        }
        f
    };
    out.push(per_slot(
        "redshift_exporter_check_success",
        "Whether the check's last run succeeded (1) or not (0).",
        &|s| if s.status.success { 1.0 } else { 0.0 },
    ));
    out.push(per_slot(
        "redshift_exporter_check_duration_seconds",
        "Duration of the check's last run.",
        &|s| s.status.duration.as_secs_f64(),
    ));
    out.push(per_slot(
        "redshift_exporter_check_rows",
        "Rows returned by the check's last run.",
        &|s| s.status.rows as f64,
    ));
    out.push(per_slot(
        "redshift_exporter_check_interval_seconds",
        "How often the check runs: its interval, or for a cron schedule the longest gap between runs.",
        &|s| s.check.schedule.expected_interval().as_secs_f64(),
    ));
    out.push(per_slot(
        "redshift_exporter_check_last_run_timestamp_seconds",
        "Start of the check's last run, Unix time (0 before the first run).",
        &|s| s.status.last_run,
    ));
    out.push(per_slot(
        "redshift_exporter_check_last_success_timestamp_seconds",
        "Start of the check's last successful run, Unix time (0 before the first success).",
        &|s| s.status.last_success,
    ));

    let mut runs = family(
        "redshift_exporter_check_runs_total",
        "Runs of the check, by result (skipped: the previous run was still going).",
        MetricType::COUNTER,
    );
    let mut errors = family(
        "redshift_exporter_check_errors_total",
        "Failed runs of the check, by kind of failure.",
        MetricType::COUNTER,
    );
    let mut sample_errors = family(
        "redshift_exporter_sample_errors_total",
        "Values or rows of the check's results that produced no sample, by reason.",
        MetricType::COUNTER,
    );
    let mut files = family(
        "redshift_exporter_archive_files_total",
        "CSV files written to the archive.",
        MetricType::COUNTER,
    );
    let mut archive_errors = family(
        "redshift_exporter_archive_errors_total",
        "CSV files that could not be written to the archive.",
        MetricType::COUNTER,
    );
    for s in applicable() {
        let base = [("target", &*s.target), ("check", s.check.name.as_str())];
        for r in RunResult::ALL {
            runs.mut_metric().push(counter(
                &[base[0], base[1], ("result", r.as_str())],
                s.counters.runs[r as usize] as f64,
            ));
        }
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            errors.mut_metric().push(counter(
                &[base[0], base[1], ("kind", k.as_str())],
                s.counters.errors[i] as f64,
            ));
        }
        for e in SampleError::ALL {
            sample_errors.mut_metric().push(counter(
                &[base[0], base[1], ("reason", e.as_str())],
                s.counters.sample_errors[e as usize] as f64,
            ));
        }
        files
            .mut_metric()
            .push(counter(&base, s.counters.archive_files as f64));
        archive_errors
            .mut_metric()
            .push(counter(&base, s.counters.archive_errors as f64));
    }
    out.extend([runs, errors, sample_errors, files, archive_errors]);

    let mut up = family(
        "redshift_exporter_target_up",
        "Whether the exporter could last open a session on the target (1) or not (0).",
        MetricType::GAUGE,
    );
    for t in &st.targets {
        up.mut_metric().push(gauge(
            &[("target", &t.name)],
            if t.up == Some(true) { 1.0 } else { 0.0 },
        ));
    }
    out.push(up);

    // What detection decided (or the configuration forced); absent until it is known.
    let mut target_info = family(
        "redshift_exporter_target_info",
        "What the exporter decided about a target: its deployment, the system relation families its user can read (comma-separated; \"configured\" when the deployment was set rather than detected); the value is always 1.",
        MetricType::GAUGE,
    );
    for t in &st.targets {
        if let Some(c) = &t.capabilities {
            let families = if c.forced {
                "configured".to_string()
            } else {
                c.readable_families().join(",")
            };
            target_info.mut_metric().push(gauge(
                &[
                    ("target", &t.name),
                    ("deployment", c.deployment.as_str()),
                    ("families", &families),
                ],
                1.0,
            ));
        }
    }
    if !target_info.get_metric().is_empty() {
        out.push(target_info);
    }

    let mut info = family(
        "redshift_exporter_build_info",
        "Build information; the value is always 1.",
        MetricType::GAUGE,
    );
    info.mut_metric()
        .push(gauge(&[("version", env!("CARGO_PKG_VERSION"))], 1.0));
    out.push(info);
    out
}

/// The standard `process_*` families, read from `/proc/self`.
fn write_process(out: &mut String, start_time: f64) {
    if let Some(stat) = read_stat() {
        single(
            out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            stat.cpu_seconds,
        );
        single(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            stat.vsize,
        );
        single(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            stat.rss,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        single(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            fds.count() as f64,
        );
    }
    if let Some(max) = max_fds() {
        single(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            max,
        );
    }
    if start_time > 0.0 {
        single(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            start_time,
        );
    }
}

struct Stat {
    cpu_seconds: f64,
    vsize: f64,
    rss: f64,
    start_ticks: f64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as f64 } else { 4096.0 }
}

fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok());
    // Field numbers from proc(5), minus 3 (pid, comm and state come before `rest[1..]`).
    let ticks = clock_ticks();
    Some(Stat {
        cpu_seconds: (num(11)? + num(12)?) / ticks,
        start_ticks: num(19)?,
        vsize: num(20)?,
        rss: num(21)? * page_size(),
    })
}

fn max_fds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn process_start_time() -> Option<f64> {
    let stat = read_stat()?;
    let uptime_boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = uptime_boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime + stat.start_ticks / clock_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn spliced_gzip_is_one_valid_member() {
        let big: String = (0..20_000)
            .map(|i| format!("metric_{}{{a=\"{i}\"}} {i}\n", i % 7))
            .collect();
        let g = Gzipped::new(big.as_bytes());
        for tail in ["", "process_open_fds 12\n", &"x".repeat(100_000)] {
            let gz = g.finish(tail.as_bytes());
            let mut out = String::new();
            // GzDecoder reads one member only: the splice must be a single member.
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out.len(), big.len() + tail.len());
            assert!(out == format!("{big}{tail}"));
        }
        assert!(
            g.prefix.len() < big.len() / 4,
            "compresses: {} of {}",
            g.prefix.len(),
            big.len()
        );
    }

    #[test]
    fn process_metrics_are_read() {
        let mut text = String::new();
        write_process(&mut text, process_start_time().unwrap());
        for n in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{n} ")), "{n} missing from {text}");
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 1e6);
    }

    /// The hand-written per-scrape part is what the encoder would print.
    #[test]
    fn dynamic_part_matches_the_encoder() {
        let store = Arc::new(Store::new(
            &crate::config::parse(
                "[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nvalues = [\"v\"]\n",
                |_| None,
            )
            .unwrap(),
        ));
        let pools: Vec<(String, PoolStatsFn)> = vec![(
            "main".to_string(),
            Box::new(|| PoolStats {
                idle: 2,
                in_use: 1,
                max: 5,
            }),
        )];
        let e = Exposition::new(store, pools, Arc::new(ReloadStatus::default()));
        let text = String::from_utf8(e.dynamic_part().to_vec()).unwrap();
        let mut conns = family(
            "redshift_exporter_pool_connections",
            "Sessions in the target's pool, by state.",
            MetricType::GAUGE,
        );
        conns
            .mut_metric()
            .push(gauge(&[("target", "main"), ("state", "idle")], 2.0));
        conns
            .mut_metric()
            .push(gauge(&[("target", "main"), ("state", "in_use")], 1.0));
        let mut max = family(
            "redshift_exporter_pool_max_connections",
            "Maximum sessions the target's pool may open.",
            MetricType::GAUGE,
        );
        max.mut_metric().push(gauge(&[("target", "main")], 5.0));
        let mut ok = family(
            "redshift_exporter_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or not (0).",
            MetricType::GAUGE,
        );
        ok.mut_metric().push(gauge(&[], 1.0));
        let expected = String::from_utf8(encode(&[conns, max, ok]).to_vec()).unwrap();
        assert!(text.starts_with(&expected), "{text}\n---\n{expected}");
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ")
        );
        // The two-part forms equal the one-piece forms (but for the process samples, which
        // are read afresh on every call and may move in between).
        let steady = |b: Vec<u8>| -> String {
            String::from_utf8(b)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("process_"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            steady(e.render_parts().concat()),
            steady(e.render().to_vec())
        );
        let gz = e.render_gzip_parts().concat();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert!(
            out.starts_with("# HELP redshift_exporter_check_success"),
            "{out}"
        );
    }
}
