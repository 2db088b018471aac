//! The scheduler half of [`super`]: when each slot runs. One task per slot sleeps until the
//! slot's due time (interval phase or next cron occurrence), takes the slot's run lock from its
//! [`super::SlotClock`], hands the run to the [`super::Runner`], and computes the next due time;
//! while the slot's target is down it waits for the target's recovery instead of connecting.
//! It owns the timing rules (`Timing`, [`parse_cron`]) and nothing about what a run does.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Runner, phase};
use crate::config::Schedule;

/// How a check's due times follow each other.
enum Timing {
    /// Every interval after the first run (a check on one target).
    Interval(Duration),
    /// On the slot's own phase in the interval (a check on several targets; [`phase`]).
    Phased(phase::Grid),
    Cron(Box<croner::Cron>),
}

/// Parses a cron expression with the parser `config` validates with (six fields, seconds first,
/// day-of-month and day-of-week both matching when both are restricted).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    crate::config::cron(expr)
}

impl Timing {
    /// The timing of a slot of a check on `spread` = several targets (`check`, `target`: the
    /// names its phase is hashed from).
    fn of(schedule: &Schedule, spread: Option<(&str, &str)>) -> Self {
        match schedule {
            Schedule::Interval(d) => {
                let every = (*d).max(Duration::from_millis(1));
                match spread {
                    Some((check, target)) => Timing::Phased(phase::Grid::aligned(
                        every,
                        phase::offset(check, target, every),
                    )),
                    None => Timing::Interval(every),
                }
            }
            // Validated at load; an expression that fails here never fires.
            Schedule::Cron(expr) => match parse_cron(expr) {
                Ok(c) => Timing::Cron(Box::new(c)),
                Err(_) => Timing::Interval(Duration::from_secs(365 * 24 * 3600)),
            },
        }
    }

    /// The next due time after a run scheduled for `due` that ended at `now` (`wall` is the
    /// wall-clock time of `now`), and how many scheduled times passed while it ran.
    fn next(
        &self,
        due: Instant,
        now: Instant,
        wall: chrono::DateTime<chrono::Utc>,
    ) -> (Instant, u64) {
        match self {
            Timing::Interval(every) => next_interval(due, now, *every),
            Timing::Phased(grid) => grid.next(due, now),
            Timing::Cron(cron) => {
                let started_wall = wall
                    - chrono::Duration::from_std(now.saturating_duration_since(due))
                        .unwrap_or_default();
                let mut missed = 0;
                // croner keeps the sub-second part of its argument in what it returns: start
                // from the whole second so runs land on the second itself.
                let mut at =
                    chrono::Timelike::with_nanosecond(&started_wall, 0).unwrap_or(started_wall);
                let next = loop {
                    match cron.find_next_occurrence(&at, false) {
                        Ok(t) if t <= wall && missed < 10_000 => {
                            missed += 1;
                            at = t;
                        }
                        Ok(t) => break Some(t),
                        Err(_) => break None,
                    }
                };
                match next.and_then(|t| (t - wall).to_std().ok()) {
                    Some(wait) => (now + wait, missed),
                    // No further occurrence (a year field in the past): never again.
                    None => (now + Duration::from_secs(365 * 24 * 3600), missed),
                }
            }
        }
    }
}

/// `due + k × every`, the first such time after `now`, and the `k - 1` times skipped.
fn next_interval(due: Instant, now: Instant, every: Duration) -> (Instant, u64) {
    let next = due + every;
    if next > now {
        return (next, 0);
    }
    let behind = now.duration_since(due).as_nanos();
    let k = behind / every.as_nanos() + 1;
    let k = u32::try_from(k).unwrap_or(u32::MAX);
    (due + every * k, u64::from(k) - 1)
}

/// Fires runs on each check's schedule: one task per slot.
pub struct Scheduler {
    stop: CancellationToken,
}

impl Scheduler {
    /// Starts one task per slot. A slot whose clock has no due time yet, or that `run_now`
    /// marks (every slot at start; new and changed ones on reload), runs at once, whether
    /// interval or cron; a carried clock keeps its due time. Interval slots of a check on
    /// several targets then run on their own phase ([`phase`]): the first run stays at once
    /// because readiness waits for every slot's first result, and the start-up burst is
    /// already paced by each target's pool; it is the repeats that would burst every interval.
    pub fn start(runner: &Arc<Runner>, run_now: &[bool]) -> Self {
        let stop = CancellationToken::new();
        let now = Instant::now();
        let mut per_check = std::collections::HashMap::new();
        for s in &runner.store.read().slots {
            *per_check.entry(s.check_index).or_insert(0usize) += 1;
        }
        for (slot, &now_due) in run_now.iter().enumerate().take(runner.slot_count()) {
            let (check, spread, target) = {
                let st = runner.store.read();
                let s = &st.slots[slot];
                (
                    s.check.clone(),
                    per_check[&s.check_index] > 1,
                    s.target.clone(),
                )
            };
            let names = spread.then_some((check.name.as_str(), &*target));
            let timing = Timing::of(&check.schedule, names);
            let clock = &runner.clocks[slot];
            if now_due || clock.due().is_none() {
                clock.set_due(now);
            }
            let (r, stop) = (runner.clone(), stop.clone());
            runner.runs.spawn(slot_task(r, slot, timing, stop));
        }
        Scheduler { stop }
    }

    /// Stops firing: slot tasks end once their run (if any) is over.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Due,
    Recovered,
}

/// One slot's life in one configuration: sleep until due (or until its target recovers,
/// when the last run failed to reach it), take the slot's run lock, run, compute the next
/// due time, repeat.
async fn slot_task(r: Arc<Runner>, slot: usize, timing: Timing, stop: CancellationToken) {
    let clock = r.clocks[slot].clone();
    let target_index = r.store.read().slots[slot].target_index;
    let health = r.health[target_index].clone();
    let target = r.targets[target_index].clone();
    let mut recovered = health.subscribe();
    loop {
        let due = clock.due().unwrap_or_else(Instant::now);
        let wake = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => Wake::Due,
            Ok(()) = recovered.changed(), if clock.waiting() => Wake::Recovered,
        };
        // The previous configuration's task may still be running this slot: wait for it.
        let _running = tokio::select! {
            _ = stop.cancelled() => return,
            g = clock.running.lock() => g,
        };
        if stop.is_cancelled() || r.stopping.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let due = clock.due().unwrap_or(now);
        match wake {
            // Someone else ran it meanwhile and moved the due time: sleep again.
            Wake::Due if due > now => continue,
            Wake::Recovered if !clock.waiting() => continue,
            _ => {}
        }
        let scheduled = wake == Wake::Due;
        if scheduled && health.is_down() {
            // The target's probe is the one connection attempt while it is down.
            recovered.borrow_and_update();
            clock.waiting_for_target.store(true, Ordering::Release);
            r.record_unreachable(slot);
        } else {
            // Seen before the run: a recovery during the run wakes the next wait.
            recovered.borrow_and_update();
            // Boxed: a run's future (query, mapping, archive hand-off) is kilobytes, and
            // inlined it made every slot task that size while it sleeps between runs — at a
            // fleet's 3,300 slots most of the process's memory. Boxed, it exists during a run.
            let report = Box::pin(r.run(slot)).await;
            let down = matches!(&report.outcome, Err(e) if e.kind.target_down());
            clock.waiting_for_target.store(down, Ordering::Release);
        }
        if scheduled {
            let (next, missed) = timing.next(due, Instant::now(), chrono::Utc::now());
            if missed > 0 {
                let check = &r.store.read().slots[slot].check.name.clone();
                tracing::warn!(%check, target = %target.config.name, missed, "previous run still going at its next scheduled time; those runs are skipped");
                r.store.record_skips(slot, missed);
            }
            clock.set_due(next);
        }
        // An out-of-schedule run (the target recovered) keeps the schedule's phase.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_sleeping_slot_task_is_small() {
        // Every slot has one task for the life of a configuration (3,300 at 100 targets ×
        // the pack): its size while it sleeps is memory the fleet pays per slot. The run's
        // own future is boxed for the length of a run.
        let size = future_size(slot_task);
        eprintln!("slot task: {size} bytes");
        assert!(size <= 1024, "a slot task's future is {size} bytes");
    }

    #[test]
    fn intervals_keep_their_phase_and_skip_missed_times() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // a quick run: next is one interval after the scheduled time, not after the end
        assert_eq!(next_interval(t0, t0 + s / 3, 5 * s), (t0 + 5 * s, 0));
        // a run that took 12 s of a 5 s interval: 10 s and 5 s passed, next at 15 s
        assert_eq!(next_interval(t0, t0 + 12 * s, 5 * s), (t0 + 15 * s, 2));
        // ended exactly on a tick: that tick is missed
        assert_eq!(next_interval(t0, t0 + 5 * s, 5 * s), (t0 + 10 * s, 1));
    }

    #[test]
    fn cron_follows_its_expression_not_an_interval() {
        let timing = Timing::of(&Schedule::Cron("*/10 * * * * *".into()), Some(("c", "t")));
        let now = Instant::now();
        let wall = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:03Z")
            .unwrap()
            .to_utc();
        // next occurrence is :10, 7 s away
        assert_eq!(
            timing.next(now, now, wall),
            (now + Duration::from_secs(7), 0)
        );
        // a run scheduled at :00 that ended at :23 missed :10 and :20
        let (next, missed) = timing.next(
            now - Duration::from_secs(20),
            now,
            wall + chrono::Duration::seconds(20),
        );
        assert_eq!((next, missed), (now + Duration::from_secs(7), 2));
    }

    #[test]
    fn cron_days_must_match_both_fields() {
        // noon on the 1st, only when the 1st is a Monday (2027-02-01)
        let c = parse_cron("0 0 12 1 * Mon").unwrap();
        let from = chrono::DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z")
            .unwrap()
            .to_utc();
        let next = c.find_next_occurrence(&from, false).unwrap();
        assert_eq!(next.to_rfc3339(), "2027-02-01T12:00:00+00:00");
        // six fields, seconds first: a five-field expression is refused, as at validation
        assert!(parse_cron("0 */5 * * * *").is_ok());
        assert!(parse_cron("*/5 * * * *").is_err());
    }
}
