//! Micro-benchmarks of the hot paths: row → sample mapping (`sample::map`, the streaming
//! `Sampler`) and `/metrics` rendering (snapshot re-render after a change; cached plain and
//! gzip scrapes, which only render the per-scrape lines).
//!
//! `cargo bench --bench hot_paths` for figures; `cargo bench --bench hot_paths -- --quick`
//! (or `--test`, which runs each once) as a smoke run. Nothing here asserts a timing.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use redshift_exporter::config::{self, Config};
use redshift_exporter::exposition::Exposition;
use redshift_exporter::sample::{self, ResultSet};
use redshift_exporter::snapshot::{ReloadStatus, RunRecord, Store};

fn config(series: usize) -> Config {
    let text = format!(
        "[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"series\"\n\
         query = \"SELECT 1\"\nlabels = [\"k\", \"db\"]\nvalues = [\"v\"]\nmax_series = {series}\n"
    );
    config::parse(&text, |_| None).expect("bench config parses")
}

fn result(rows: usize) -> ResultSet {
    ResultSet {
        columns: vec!["k".into(), "db".into(), "v".into()],
        rows: (0..rows)
            .map(|i| {
                vec![
                    Some(format!("key_{i}")),
                    Some("dev     ".into()),
                    Some(format!("{}.5", i * 7)),
                ]
            })
            .collect(),
    }
}

fn mapping(c: &mut Criterion) {
    let mut g = c.benchmark_group("map");
    for rows in [1_000usize, 10_000, 100_000] {
        let cfg = config(rows);
        let rs = result(rows);
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_with_input(BenchmarkId::from_parameter(rows), &rs, |b, rs| {
            b.iter(|| sample::map(&cfg.checks[0], black_box(rs)).unwrap())
        });
    }
    // Past the cap: what a million-row result costs per row once the cap is reached.
    let cfg = config(1_000);
    let rs = result(100_000);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("100000_rows_cap_1000", |b| {
        b.iter(|| sample::map(&cfg.checks[0], black_box(&rs)).unwrap())
    });
    g.finish();
}

/// A store whose one slot holds `series` samples.
fn store(series: usize) -> (Config, Arc<Store>) {
    let cfg = config(series);
    let store = Arc::new(Store::new(&cfg));
    let samples = sample::map(&cfg.checks[0], &result(series)).unwrap();
    store.record_run(
        0,
        RunRecord {
            started: SystemTime::now(),
            duration: Duration::from_millis(3),
            outcome: Ok((series as u64, samples)),
        },
    );
    (cfg, store)
}

fn rendering(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    for series in [1_000usize, 10_000, 100_000] {
        let (cfg, store) = store(series);
        let exposition =
            Exposition::new(store.clone(), Vec::new(), Arc::new(ReloadStatus::default()));
        let bytes = exposition.render().len() as u64;
        g.throughput(Throughput::Bytes(bytes));
        // A scrape after a change: the snapshot part is rendered and compressed again.
        g.bench_with_input(BenchmarkId::new("changed", series), &series, |b, _| {
            b.iter(|| {
                store.record_skips(0, 1); // bumps the generation
                black_box(exposition.render())
            })
        });
        g.bench_with_input(BenchmarkId::new("cached_plain", series), &series, |b, _| {
            b.iter(|| black_box(exposition.render()))
        });
        g.bench_with_input(BenchmarkId::new("cached_gzip", series), &series, |b, _| {
            b.iter(|| black_box(exposition.render_gzip()))
        });
        drop(cfg);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = mapping, rendering
}
criterion_main!(benches);
