//! Where in its interval a slot runs: the pure part of spreading a fleet's runs.
//!
//! Every target of a check shares the check's interval; if they all kept the phase of their
//! first run (start-up, where all of them run at once) a check on 100 targets would fire 100
//! queries, and hand 100 results to the runtime, at the same instant, every interval. So a slot
//! of a check that runs on more than one target runs on its own grid `origin + k × interval`,
//! whose offset in the interval is a stable hash of (check name, target name) and whose origin
//! is aligned to the wall clock once per process: the same check and target land on the same
//! phase after a reload and after a restart, and the targets of a check are spread over its
//! interval. A check on a single target has nothing to spread against and keeps its first
//! run's phase, as before. Cron checks never use this (they keep cron semantics).
//!
//! This module owns the offset and the grid arithmetic; it knows nothing about tasks or runs.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The offset of (check, target) within `every`: in `[0, every)`, the same for the same names
/// on every run of every build (FNV-1a, not the standard library's randomly keyed hasher).
pub fn offset(check: &str, target: &str, every: Duration) -> Duration {
    let nanos = every.as_nanos().max(1);
    let h = u128::from(fnv1a(&[check.as_bytes(), b"\0", target.as_bytes()]));
    // Multiply-shift maps the 64-bit hash onto [0, nanos) evenly (no modulo bias).
    let off = (h * nanos) >> 64;
    Duration::from_nanos(u64::try_from(off).unwrap_or(u64::MAX))
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // A final avalanche: names differing in their last byte would otherwise differ only in
    // the low bits, which the multiply-shift above discards.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The process's one pairing of the monotonic clock with the wall clock, taken at the first
/// call: grids are laid out from it, so they do not move while the process lives.
fn anchor() -> (Instant, u128) {
    static ANCHOR: OnceLock<(Instant, u128)> = OnceLock::new();
    *ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        (Instant::now(), wall)
    })
}

/// A slot's due times: `origin + k × every` for every integer `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub origin: Instant,
    pub every: Duration,
}

impl Grid {
    /// The grid whose points fall at `offset` past each multiple of `every` since the Unix
    /// epoch (as the process's anchor sees the wall clock).
    pub fn aligned(every: Duration, offset: Duration) -> Self {
        let (at, wall) = anchor();
        Self::from_anchor(at, wall, every, offset)
    }

    fn from_anchor(at: Instant, wall_nanos: u128, every: Duration, offset: Duration) -> Self {
        let every = every.max(Duration::from_nanos(1));
        let n = every.as_nanos();
        let into = wall_nanos % n;
        let ahead = (offset.as_nanos() % n + n - into) % n;
        let origin = at + Duration::from_nanos(u64::try_from(ahead).unwrap_or(0));
        Grid { origin, every }
    }

    /// The first grid point strictly after `t`.
    pub fn after(&self, t: Instant) -> Instant {
        let n = self.every.as_nanos();
        if t >= self.origin {
            let k = (t - self.origin).as_nanos() / n + 1;
            self.origin + nanos(k * n)
        } else {
            // Points before the origin: origin - j × every; the smallest j with the point > t.
            let d = (self.origin - t).as_nanos();
            let j = (d - 1) / n;
            self.origin - nanos(j * n)
        }
    }

    /// The first grid point at or after `t`.
    fn at_or_after(&self, t: Instant) -> Instant {
        match t.checked_sub(Duration::from_nanos(1)) {
            Some(before) => self.after(before),
            None => self.after(t),
        }
    }

    /// The next due time after a run scheduled for `due` that ended at `now`, and how many
    /// grid points were skipped because it was still going. A point less than one interval
    /// after `due` is not a miss: `due` may be off the grid (a first run, at once), and that
    /// run stands for the point it preceded.
    pub fn next(&self, due: Instant, now: Instant) -> (Instant, u64) {
        let first = self.after(due);
        if first > now {
            return (first, 0);
        }
        let next = self.after(now);
        let from = self.at_or_after(due + self.every);
        let missed = if from > now {
            0
        } else {
            ((now - from).as_nanos() / self.every.as_nanos()) as u64 + 1
        };
        (next, missed)
    }
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn offsets_are_stable_and_within_the_interval() {
        let every = 30 * S;
        let a = offset("disk", "cluster-042", every);
        // the same names, the same offset (and a known value: no per-process hash key)
        assert_eq!(a, offset("disk", "cluster-042", every));
        // computed independently (FNV-1a, the avalanche, multiply-shift): a build or a
        // toolchain cannot move a slot's phase
        assert_eq!(a, Duration::from_nanos(11_331_232_062));
        assert!(a < every);
        // the separator keeps ("ab","c") and ("a","bc") apart
        assert_ne!(offset("ab", "c", every), offset("a", "bc", every));
        // a 1 ns interval has one phase
        assert_eq!(offset("x", "y", Duration::from_nanos(1)), Duration::ZERO);
        for t in 0..1000 {
            assert!(offset("q", &format!("t{t}"), 7 * S) < 7 * S);
        }
    }

    #[test]
    fn offsets_spread_a_checks_targets_over_its_interval() {
        // 100 targets of one check in 10 buckets of a 30 s interval: about 10 each; a burst
        // would put them all in one.
        let every = 30 * S;
        let mut buckets = [0u32; 10];
        for t in 0..100 {
            let off = offset("wlm_queue_state", &format!("c{t:03}"), every);
            buckets[(off.as_nanos() * 10 / every.as_nanos()) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (3..=20).contains(&b)),
            "100 targets over 10 tenths of the interval: {buckets:?}"
        );
        // and the targets of different checks do not share a phase either
        let same = (0..100)
            .filter(|t| {
                let name = format!("c{t:03}");
                offset("disk", &name, every) == offset("wlm_queue_state", &name, every)
            })
            .count();
        assert_eq!(same, 0);
    }

    #[test]
    fn the_grid_is_aligned_to_the_wall_clock_at_the_offset() {
        let at = Instant::now();
        // wall clock 2.25 s past a multiple of 10 s; offset 3 s: the next point is 0.75 s away
        let wall = (1_000_000 * 10 + 2) as u128 * 1_000_000_000 + 250_000_000;
        let g = Grid::from_anchor(at, wall, 10 * S, 3 * S);
        assert_eq!(g.origin, at + Duration::from_millis(750));
        assert_eq!(g.after(at), at + Duration::from_millis(750));
        assert_eq!(g.after(g.origin), g.origin + 10 * S);
        // before the origin: the grid extends backwards
        assert_eq!(g.after(g.origin - 10 * S), g.origin);
        assert_eq!(g.after(g.origin - 15 * S), g.origin - 10 * S);
        // an offset past the interval wraps
        assert_eq!(Grid::from_anchor(at, wall, 10 * S, 13 * S), g);
    }

    #[test]
    fn the_first_run_joins_the_grid_within_one_interval_without_a_miss() {
        let at = Instant::now();
        let g = Grid::from_anchor(at, 0, 10 * S, 4 * S); // points at at + 4 s + k × 10 s
        // a first run at once (off the grid), quick: next is the first point after it
        assert_eq!(g.next(at, at + S / 2), (at + 4 * S, 0));
        // a first run that went past the first point but lasted less than an interval: that
        // point is absorbed, not counted
        assert_eq!(g.next(at, at + 6 * S), (at + 14 * S, 0));
        // ... one that lasted 12 s missed the point 10 s after its start (14 s)
        assert_eq!(g.next(at, at + 15 * S), (at + 24 * S, 1));
    }

    #[test]
    fn on_the_grid_runs_keep_the_phase_and_count_misses() {
        let at = Instant::now();
        let g = Grid::from_anchor(at, 0, 5 * S, Duration::ZERO);
        let due = at + 5 * S;
        // quick: the next point
        assert_eq!(g.next(due, due + S), (due + 5 * S, 0));
        // 12 s of a 5 s interval: 10 s and 5 s passed
        assert_eq!(g.next(due, due + 12 * S), (due + 15 * S, 2));
        // ended exactly on a point: that point is missed
        assert_eq!(g.next(due, due + 5 * S), (due + 10 * S, 1));
    }
}
