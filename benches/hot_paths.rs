//! Micro-benchmarks of the hot paths: row → sample mapping (`sample::map`, the streaming
//! `Sampler`), `/metrics` rendering (snapshot re-render after a change; cached plain and
//! gzip scrapes, which only render the per-scrape lines; and the fleet: 3,300 slots, one of
//! them changed, re-rendered incrementally) and the HTML pages (landing page uncached, cached
//! with nothing changed and with a few slots changed since the last view, and a check page,
//! for 100 targets × the shipped pack, next to a cached `/metrics` of the same store).
//!
//! `cargo bench --bench hot_paths` for figures; `cargo bench --bench hot_paths -- --quick`
//! (or `--test`, which runs each once) as a smoke run. Nothing here asserts a timing.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use redshift_exporter::config::{self, Config, Deployment};
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

/// The shipped pack on `n` provisioned targets (so the Serverless variants are skipped, as
/// on a real fleet), every applicable check run once with 5 rows, the first rows kept for the
/// check pages. `alerting`: values 0.0 .. 1.0, so every target has dozens of values beyond a
/// threshold (the worst case); else every value is 0 (a healthy fleet: nothing listed).
fn fleet(n: usize, alerting: bool) -> (Config, Arc<Store>) {
    let env = |k: &str| Some(if k.ends_with("PORT") { "5439" } else { "x" }.to_string());
    let mut cfg = config::parse(redshift_exporter::emulation::PACK, env).expect("the pack parses");
    let template = (*cfg.targets[0]).clone();
    cfg.targets = (0..n)
        .map(|i| {
            let mut t = template.clone();
            t.name = format!("cluster-{i:03}");
            t.deployment = Some(Deployment::Provisioned);
            Arc::new(t)
        })
        .collect();
    for c in &mut cfg.checks {
        Arc::make_mut(c).targets = (0..n).collect();
    }
    let store = Arc::new(Store::new(&cfg));
    let slots: Vec<(usize, bool)> = store
        .read()
        .slots
        .iter()
        .map(|s| (s.check_index, s.not_applicable.is_none()))
        .collect();
    for (i, (ci, applies)) in slots.into_iter().enumerate() {
        if !applies {
            continue;
        }
        let check = &cfg.checks[ci];
        let columns: Vec<String> = check
            .labels
            .iter()
            .cloned()
            .chain(check.values.iter().map(|v| v.column.clone()))
            .collect();
        let rows =
            (0..5)
                .map(|r| {
                    check
                        .labels
                        .iter()
                        .map(|l| Some(format!("{l}_{r}")))
                        .chain(check.values.iter().map(|_| {
                            Some(format!("{}", if alerting { r as f64 / 4.0 } else { 0.0 }))
                        }))
                        .collect()
                })
                .collect();
        let samples = sample::map(check, &ResultSet { columns, rows }).unwrap();
        store.record_run(
            i,
            RunRecord {
                started: SystemTime::now(),
                duration: Duration::from_millis(40),
                outcome: Ok((5, samples)),
            },
        );
    }
    (cfg, store)
}

/// CPU time of this thread (not wall time: on a shared machine a descheduled thread's wait
/// is not the page's cost).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `changes` slots on as many different targets run again (the same values): what happens
/// between two views of a busy fleet. `next` walks the applicable slots.
fn rerun(store: &Store, runs: &[(usize, Arc<sample::Samples>)], next: &mut usize, changes: usize) {
    for _ in 0..changes {
        // Steps of 101 slots: a different target each time (slots are in check order).
        *next = (*next + 101) % runs.len();
        let (slot, samples) = &runs[*next];
        store.record_run(
            *slot,
            RunRecord {
                started: SystemTime::now(),
                duration: Duration::from_millis(40),
                outcome: Ok((5, (**samples).clone())),
            },
        );
    }
}

/// The applicable slots of `store` with the samples of their last run.
fn runs(store: &Store) -> Vec<(usize, Arc<sample::Samples>)> {
    store
        .read()
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.samples.clone().map(|x| (i, x)))
        .collect()
}

/// Slots changed between two views in the realistic case.
const CHANGES: usize = 3;

/// The HTML pages at 100 targets × the shipped pack: what one page view costs, next to a
/// cached `/metrics` scrape of the same store as the baseline.
fn pages(c: &mut Criterion) {
    use redshift_exporter::http::page::{self, Landing};
    // CPU per page view, printed besides criterion's wall-clock figures: only the view is
    // timed, not the runs recorded between views.
    // PAGE_FIGURES=0 leaves them out (when counting instructions of one benchmark under
    // callgrind, the figures' own views would be counted with it).
    let figures = std::env::var("PAGE_FIGURES").map_or(true, |v| v != "0");
    for (name, alerting) in [("healthy", false), ("all alerting", true)] {
        if !figures {
            break;
        }
        let (cfg, store) = fleet(100, alerting);
        let runs = runs(&store);
        let exposition =
            Exposition::new(store.clone(), Vec::new(), Arc::new(ReloadStatus::default()));
        let landing = Landing::new(store.clone());
        let n = 200u32;
        let per = |f: &mut dyn FnMut() -> Duration| {
            let total: Duration = (0..n).map(|_| f()).sum();
            total / n
        };
        let timed = |f: &mut dyn FnMut()| {
            let t0 = thread_cpu();
            f();
            thread_cpu() - t0
        };
        black_box(exposition.render_parts());
        let metrics = per(&mut || timed(&mut || drop(black_box(exposition.render_parts()))));
        // The first view of a new cache (after a start): what the daemon's first `/` costs.
        let uncached = per(&mut || {
            let fresh = Landing::new(store.clone());
            timed(&mut || drop(black_box(fresh.render())))
        });
        let bytes: usize = landing.render().iter().map(|b| b.len()).sum();
        let cached = per(&mut || timed(&mut || drop(black_box(landing.render()))));
        let mut next = 0;
        let before = landing.sections_rendered();
        let changed = per(&mut || {
            rerun(&store, &runs, &mut next, CHANGES);
            timed(&mut || drop(black_box(landing.render())))
        });
        let sections = (landing.sections_rendered() - before) as f64 / n as f64;
        let everywhere = per(&mut || {
            rerun(&store, &runs, &mut next, 100);
            timed(&mut || drop(black_box(landing.render())))
        });
        // The first view after a reload that kept every slot (the same file re-read): the
        // new store's cache takes the old one's parts over, so only the sections are new.
        let plan = redshift_exporter::reload::plan(&cfg, &cfg);
        let (mut old_store, mut old_landing) = (store.clone(), landing);
        let reloads: u32 = std::env::var("RELOADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let after_reload = (0..reloads)
            .map(|_| {
                let next = Arc::new(Store::new(&cfg));
                next.adopt(&old_store, &plan.targets, &plan.slots);
                next.regate();
                let fresh = Landing::new(next.clone());
                fresh.carry_from(&old_landing, &plan.slots);
                let cpu = timed(&mut || drop(black_box(fresh.render())));
                (old_store, old_landing) = (next, fresh);
                cpu
            })
            .sum::<Duration>()
            / reloads;
        eprintln!(
            "landing page, 100 targets, {name}: {bytes} bytes; CPU per view: uncached {uncached:?}, \
             cached {cached:?}, {CHANGES} slots changed {changed:?} ({sections:.1} sections \
             rendered per view), one slot changed on every target {everywhere:?}, first view \
             after a reload that kept every slot {after_reload:?}; /metrics cached {metrics:?}"
        );
    }
    let mut g = c.benchmark_group("page");
    for (name, alerting) in [("healthy", false), ("all_alerting", true)] {
        let (cfg, store) = fleet(100, alerting);
        let runs = runs(&store);
        let exposition =
            Exposition::new(store.clone(), Vec::new(), Arc::new(ReloadStatus::default()));
        let landing = Landing::new(store.clone());
        g.bench_function(format!("metrics_cached_100_targets_{name}"), |b| {
            b.iter(|| black_box(exposition.render_parts()))
        });
        g.bench_function(format!("landing_uncached_100_targets_{name}"), |b| {
            // The cache is dropped outside the timing, as a start's cache is not dropped.
            b.iter_batched_ref(
                || Landing::new(store.clone()),
                |fresh| black_box(fresh.render()),
                criterion::BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("landing_cached_100_targets_{name}"), |b| {
            b.iter(|| black_box(landing.render()))
        });
        let mut next = 0;
        g.bench_function(
            format!("landing_{CHANGES}_changed_100_targets_{name}"),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        rerun(&store, &runs, &mut next, CHANGES);
                        let t0 = std::time::Instant::now();
                        black_box(landing.render());
                        total += t0.elapsed();
                    }
                    total
                })
            },
        );
        // The first view after a reload that kept every slot (the same file re-read): the
        // new store's cache takes the old one's parts over. Store and cache are made outside
        // the timing; each reload is of the one before, as in the daemon.
        let plan = redshift_exporter::reload::plan(&cfg, &cfg);
        let mut chain = (store.clone(), Landing::new(store.clone()));
        chain.1.render();
        g.bench_function(format!("landing_after_reload_100_targets_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let next = Arc::new(Store::new(&cfg));
                    next.adopt(&chain.0, &plan.targets, &plan.slots);
                    next.regate();
                    let fresh = Landing::new(next.clone());
                    fresh.carry_from(&chain.1, &plan.slots);
                    let t0 = std::time::Instant::now();
                    black_box(fresh.render());
                    total += t0.elapsed();
                    chain = (next, fresh);
                }
                total
            })
        });
        // A view of a busy fleet: one slot on every target ran again since the last view,
        // so every section is rendered again (from the kept parts of the other slots).
        g.bench_function(
            format!("landing_every_target_changed_100_targets_{name}"),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        rerun(&store, &runs, &mut next, 100);
                        let t0 = std::time::Instant::now();
                        black_box(landing.render());
                        total += t0.elapsed();
                    }
                    total
                })
            },
        );
    }
    let (cfg, store) = fleet(100, true);
    g.bench_function("check_100_targets", |b| {
        b.iter(|| black_box(page::check_page(&store, None, "disk", "cluster-042").unwrap()))
    });
    g.finish();
    drop(cfg);
}

/// 100 targets × 33 checks (3,300 slots), each slot 12 rows × 2 value columns: ~80k series,
/// the fleet of the "Performance at fleet scale" issue.
fn fleet_store() -> (Config, Arc<Store>, sample::Samples) {
    let mut text = String::new();
    for t in 0..100 {
        text.push_str(&format!(
            "[targets.cluster{t:03}]\nhost = \"h\"\nuser = \"u\"\nlabels = {{ env = \"prod\", cluster_identifier = \"sales-{t:03}\" }}\n"
        ));
    }
    for c in 0..33 {
        text.push_str(&format!(
            "[[checks]]\nname = \"check_{c}\"\nquery = \"SELECT 1\"\nlabels = [\"k\", \"db\"]\nvalues = [\"v\", \"w\"]\n"
        ));
    }
    let cfg = config::parse(&text, |_| None).expect("fleet config parses");
    let store = Arc::new(Store::new(&cfg));
    let rs = ResultSet {
        columns: vec!["k".into(), "db".into(), "v".into(), "w".into()],
        rows: (0..12)
            .map(|i| {
                vec![
                    Some(format!("queue_{i}")),
                    Some("dev".into()),
                    Some(format!("{}.25", i * 7)),
                    Some(format!("{}", i * 1000)),
                ]
            })
            .collect(),
    };
    let samples = sample::map(&cfg.checks[0], &rs).unwrap();
    let slots = store.read().slots.len();
    for slot in 0..slots {
        store.record_run(
            slot,
            RunRecord {
                started: SystemTime::now(),
                duration: Duration::from_millis(3),
                outcome: Ok((12, samples.clone())),
            },
        );
    }
    (cfg, store, samples)
}

/// The fleet: a scrape right after one slot of 3,300 changed costs that slot, not the fleet.
fn fleet_rendering(c: &mut Criterion) {
    let mut g = c.benchmark_group("fleet");
    let (cfg, store, samples) = fleet_store();
    let exposition = Exposition::new(store.clone(), Vec::new(), Arc::new(ReloadStatus::default()));
    let bytes = exposition.render().len() as u64;
    eprintln!(
        "fleet: {bytes} B plain in {} chunks, {} B gzip",
        exposition.render_parts().len(),
        exposition.render_gzip().len()
    );
    g.throughput(Throughput::Bytes(bytes));
    let mut slot = 0usize;
    let mut one_run = |store: &Store| {
        slot = (slot + 97) % 3300;
        store.record_run(
            slot,
            RunRecord {
                started: SystemTime::now(),
                duration: Duration::from_millis(4),
                outcome: Ok((12, samples.clone())),
            },
        );
    };
    g.bench_function("changed_one_of_3300_plain", |b| {
        b.iter(|| {
            one_run(&store);
            black_box(exposition.render_parts())
        })
    });
    g.bench_function("changed_one_of_3300_gzip", |b| {
        b.iter(|| {
            one_run(&store);
            black_box(exposition.render_gzip_parts())
        })
    });
    g.bench_function("cached_plain", |b| {
        b.iter(|| black_box(exposition.render_parts()))
    });
    g.bench_function("cached_gzip", |b| {
        b.iter(|| black_box(exposition.render_gzip_parts()))
    });
    // Everything changed (the first render of a new configuration): all 3,300 slots.
    g.sample_size(10);
    g.bench_function("full_plain_and_gzip", |b| {
        b.iter(|| {
            let e = Exposition::new(store.clone(), Vec::new(), Arc::new(ReloadStatus::default()));
            black_box(e.render_parts());
            black_box(e.render_gzip_parts())
        })
    });
    g.finish();
    drop(cfg);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = mapping, rendering, fleet_rendering, pages
}
criterion_main!(benches);
