//! Spread phases at fleet scale: the targets of one interval check do not all run it at the
//! same moment after their first (simultaneous) run, and a check on one target keeps its
//! first run's phase.

use crate::support::*;

const LAST_RUN: &str = "redshift_exporter_check_last_run_timestamp_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checks_targets_run_on_spread_phases_after_their_first_run() {
    let db = database().await;
    let work = WorkDir::new();
    let every = 4.0;
    let mut text = exporter_toml(&work.archive(), "archive = false") + "\n";
    let targets: Vec<String> = (0..8).map(|t| format!("t{t}")).collect();
    for t in &targets {
        text += &db.target_toml(t, "pool_size = 1");
    }
    text += &check_toml(
        "spread",
        "SELECT 1::float8 AS v",
        "values = [\"v\"]\ninterval = \"4s\"",
    );
    let cfg = work.write("checks.toml", &text);
    let d = Daemon::start(&cfg).await;

    // Each target's run start times, watched every 100 ms for three intervals.
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let start = std::time::Instant::now();
    while start.elapsed() < secs(13) {
        let m = d.metrics().await;
        for (i, t) in targets.iter().enumerate() {
            let labels = [("check", "spread"), ("target", t.as_str())];
            if let Some(v) = m.get(LAST_RUN, &labels).filter(|v| *v > 0.0) {
                if runs[i].last() != Some(&v) {
                    runs[i].push(v);
                }
            }
        }
        tokio::time::sleep(ms(100)).await;
    }
    let firsts: Vec<f64> = runs.iter().filter_map(|r| r.first().copied()).collect();
    assert_eq!(firsts.len(), targets.len(), "every target ran: {runs:?}");
    let spread_of = |xs: &[f64]| {
        xs.iter().copied().fold(f64::MIN, f64::max) - xs.iter().copied().fold(f64::MAX, f64::min)
    };
    // The first runs are at once, together (readiness waits for them).
    assert!(spread_of(&firsts) < 1.5, "first runs {firsts:?}");
    for (t, r) in targets.iter().zip(&runs) {
        assert!(
            r.len() >= 3,
            "{t} ran {} times in 13 s of a 4 s check: {r:?}",
            r.len()
        );
        // It joins its phase within one interval of its first run, then keeps it.
        assert!(r[1] - r[0] <= every + 0.5, "{t}: {r:?}");
        for w in r[1..].windows(2) {
            assert!(
                (every - 0.5..every + 0.5).contains(&(w[1] - w[0])),
                "{t}: {r:?}"
            );
        }
    }
    // The repeats are spread over the interval: their phases are not one burst.
    let phases: Vec<f64> = runs.iter().map(|r| r[1] % every).collect();
    let mut sorted = phases.clone();
    sorted.sort_by(f64::total_cmp);
    // the largest empty stretch of the (circular) interval; one burst leaves ~every empty
    let widest_gap = sorted
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain([sorted[0] + every - sorted[sorted.len() - 1]])
        .fold(0.0, f64::max);
    assert!(
        widest_gap < every * 0.75,
        "8 targets' phases in a 4 s interval {phases:?}: bunched together"
    );
}
