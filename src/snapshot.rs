//! The latest state of every check on every target: what `/metrics`, `/-/ready` and the
//! landing page show. Runs write it; scrapes only read it, so serving never touches the
//! database.
//!
//! A *slot* is one (check, target) pair. Each slot keeps its last run's status, its samples
//! (replaced whole by every run, so vanished rows vanish; removed by a failed run) and its
//! counters. Every change bumps a generation number, which lets the exposition render once
//! per change and serve cached bytes in between.
//!
//! Knows checks' configuration and the closed label sets of `db` and `sample`; knows nothing
//! about Prometheus, HTTP, CSV or the database driver.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capability::{self, Capabilities};
use crate::config::{CheckConfig, Config, PageDetail};
use crate::db::{CheckError, ErrorKind};
use crate::sample::{Preview, SampleError, Samples};

/// Runs remembered per slot for the check page.
pub const HISTORY: usize = 20;
/// Archive files remembered per slot for the check page.
pub const RECENT_FILES: usize = 5;

/// One finished run, as the check page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Unix seconds of the start.
    pub started: f64,
    pub duration: Duration,
    pub rows: u64,
    /// `None` for a success.
    pub error: Option<ErrorKind>,
}

/// The first rows of a slot's last successful run (see [`Preview`] for the bounds).
#[derive(Debug, Clone)]
pub struct LastResult {
    /// Unix seconds of that run's start.
    pub started: f64,
    pub preview: Preview,
}

/// How a run ended; the `result` label of `runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Success,
    Error,
    Timeout,
    Skipped,
}

impl RunResult {
    pub const ALL: [RunResult; 4] = [
        RunResult::Success,
        RunResult::Error,
        RunResult::Timeout,
        RunResult::Skipped,
    ];

    /// How many there are: the length of counter arrays indexed by [`RunResult::index`].
    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`RunResult::ALL`], hence in every counter array sized by [`RunResult::COUNT`].
    pub const fn index(self) -> usize {
        self as usize
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Error => "error",
            RunResult::Timeout => "timeout",
            RunResult::Skipped => "skipped",
        }
    }
}

// `index` is the declaration order: ALL must list every variant in that order, so that every
// index is below COUNT (checked at compile time; a gap or reordering fails the build).
const _: () = {
    let mut i = 0;
    while i < RunResult::COUNT {
        assert!(RunResult::ALL[i].index() == i);
        i += 1;
    }
};

/// Monotonic counters of one slot.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Indexed like [`RunResult::ALL`].
    pub runs: [u64; RunResult::COUNT],
    /// Indexed like [`ErrorKind::ALL`].
    pub errors: [u64; ErrorKind::COUNT],
    /// Indexed like [`SampleError::ALL`].
    pub sample_errors: [u64; SampleError::COUNT],
    pub archive_files: u64,
    pub archive_errors: u64,
}

/// The last run of one slot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// False until the first run finished (readiness).
    pub ran: bool,
    pub success: bool,
    pub duration: Duration,
    pub rows: u64,
    /// Unix seconds of the last run's start; 0 before the first run.
    pub last_run: f64,
    /// Unix seconds of the last successful run's start; 0 before the first success (not
    /// exported then: the exposition leaves the series out).
    pub last_success: f64,
    /// Why the last run failed, if it did.
    pub last_error: Option<CheckError>,
}

/// One (check, target) pair.
#[derive(Debug, Clone)]
pub struct Slot {
    pub check: Arc<CheckConfig>,
    pub check_index: usize,
    pub target_index: usize,
    pub target: Arc<str>,
    /// The database of a per-database check's slot (its `database` label, its archive folder
    /// `{target}@{database}` and check page path); `None` for a cluster-scoped check.
    pub database: Option<Arc<str>>,
    pub status: Status,
    /// Samples of the last successful run; `None` after a failed run.
    pub samples: Option<Arc<Samples>>,
    pub counters: Counters,
    /// The last CSV written, for the landing page.
    pub last_file: Option<PathBuf>,
    /// Set when the check does not apply to the target's deployment: the reason (shared: the
    /// pages clone it under the store's lock for every skipped slot).
    pub not_applicable: Option<Arc<str>>,
    /// The last [`HISTORY`] runs, oldest first.
    pub history: std::collections::VecDeque<RunSummary>,
    /// The first rows of the last successful run; kept across failed runs.
    pub last_result: Option<Arc<LastResult>>,
    /// The last [`RECENT_FILES`] CSVs written, oldest first.
    pub recent_files: std::collections::VecDeque<PathBuf>,
    /// The generation of the last write that changed what the exposition shows of this slot
    /// (status, samples, counters, applicability): the exposition re-renders only slots
    /// changed since it last rendered.
    pub changed: u64,
}

/// What is known about a target.
#[derive(Debug, Clone)]
pub struct TargetState {
    pub name: Arc<str>,
    /// The database of an entry that is not its target's home database: target-wide series
    /// of this entry (up, pool) carry it as a `database` label so that entries of one target
    /// never share a series. `None` for the home entry.
    pub database: Option<Arc<str>>,
    /// `None` until the first connection attempt.
    pub up: Option<bool>,
    /// What the target's user can read and the deployment that makes it: from the
    /// configuration when forced, else detected at the first successful connect.
    pub capabilities: Option<Arc<Capabilities>>,
    /// Static labels of the target (configuration), added to all of its series.
    pub labels: Arc<[(String, String)]>,
    /// Set when the target went down after detection: the next run detects again (a restored
    /// snapshot or a changed grant may answer differently), keeping the old answer meanwhile.
    pub redetect: bool,
    /// The database user the target's AWS-provided login (IAM, Secrets Manager) last resolved
    /// to, for the landing page; `None` for a configured user or before the first login.
    /// Kept here rather than in a process-wide map so that it goes with the target: a reload
    /// that changes the target starts without it, and setting it stamps `changed`.
    pub db_user: Option<Arc<str>>,
    /// The generation of the last write that changed this target (`up`, capabilities, the
    /// database user) or what the landing page shows of one of its slots (every
    /// `record_run`); the page's per-target cache also checks the slots' own stamps.
    pub changed: u64,
}

/// Everything the readers see.
#[derive(Debug, Clone)]
pub struct State {
    pub slots: Vec<Slot>,
    pub targets: Vec<TargetState>,
    /// What the HTML pages may show (`[exporter] page_detail`).
    pub page_detail: PageDetail,
    /// The generation this state is at: inside a write, the one the write will publish
    /// (what `changed` stamps are set to).
    pub generation: u64,
}

/// A finished run, as recorded.
#[derive(Debug)]
pub struct RunRecord {
    pub started: SystemTime,
    pub duration: Duration,
    pub outcome: Result<(u64, Samples), CheckError>,
}

/// One slot per check and each of its targets, in check order: (check index, target index).
/// The order of [`State::slots`], and the keys the reload plan matches.
pub fn slot_keys(config: &Config) -> Vec<(usize, usize)> {
    config
        .checks
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| c.targets.iter().map(move |&ti| (ci, ti)))
        .collect()
}

/// What a new slot keeps from an old one after a reload (decided by `crate::reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// Same check on the same, unchanged target: status, samples, counters and last file.
    Unchanged(usize),
    /// Same check name, target name and database, but the check or the target changed: counters
    /// only (they never reset while the series lives); it runs at once.
    Counters(usize),
    /// A new slot.
    Fresh,
}

/// The shared store.
pub struct Store {
    state: RwLock<State>,
    generation: AtomicU64,
    /// After a reload: the store that replaced this one and, per slot here, the slot there.
    /// Runs that were in flight during the reload record into the successor, so no result
    /// of an unchanged check is lost.
    successor: OnceLock<(Arc<Store>, Vec<Option<usize>>)>,
}

/// Outcome of configuration reloads, shown as `redshift_exporter_config_last_reload_*`.
#[derive(Debug)]
pub struct ReloadStatus {
    successful: AtomicBool,
    /// f64 bits of the Unix time of the last successful (re)load.
    last_success: AtomicU64,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        ReloadStatus {
            successful: AtomicBool::new(true),
            last_success: AtomicU64::new(unix(SystemTime::now()).to_bits()),
        }
    }
}

impl ReloadStatus {
    pub fn record(&self, ok: bool) {
        self.successful.store(ok, Ordering::Release);
        if ok {
            self.last_success
                .store(unix(SystemTime::now()).to_bits(), Ordering::Release);
        }
    }
    pub fn successful(&self) -> bool {
        self.successful.load(Ordering::Acquire)
    }
    pub fn last_success(&self) -> f64 {
        f64::from_bits(self.last_success.load(Ordering::Acquire))
    }
}

/// Marks each slot of the targets `which` says with why it cannot run there, from the
/// target's capabilities (slots of a target not yet detected are left as they are). A slot is
/// stamped only when its applicability changes, so a re-detection or a reload that decides
/// the same leaves the caches of what it shows alone.
fn gate(s: &mut State, which: impl Fn(usize) -> bool) {
    let generation = s.generation;
    for sl in s.slots.iter_mut() {
        let ti = sl.target_index;
        if !which(ti) {
            continue;
        }
        let Some(caps) = &s.targets[ti].capabilities else {
            continue;
        };
        let why = capability::applicability(&sl.check, caps);
        if sl.not_applicable.as_deref() != why.as_deref() {
            sl.not_applicable = why.map(Arc::from);
            sl.changed = generation;
        }
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Store {
    /// One slot per check and each of its targets, in check order ([`slot_keys`]).
    pub fn new(config: &Config) -> Self {
        let targets: Vec<TargetState> = config
            .targets
            .iter()
            .map(|t| TargetState {
                name: Arc::from(t.name.as_str()),
                database: (!t.instance.home).then(|| Arc::from(t.database.as_str())),
                up: None,
                capabilities: t.deployment.map(|d| Arc::new(Capabilities::forced(d))),
                labels: t.labels.clone().into(),
                redetect: false,
                db_user: None,
                changed: 1,
            })
            .collect();
        let slots = slot_keys(config)
            .into_iter()
            .map(|(ci, ti)| Slot {
                check: config.checks[ci].clone(),
                check_index: ci,
                target_index: ti,
                target: targets[ti].name.clone(),
                database: crate::discovery::slot_database(config, ci, ti).map(Arc::from),
                status: Status::default(),
                samples: None,
                counters: Counters::default(),
                last_file: None,
                not_applicable: None,
                history: Default::default(),
                last_result: None,
                recent_files: Default::default(),
                changed: 1,
            })
            .collect();
        let mut state = State {
            slots,
            targets,
            page_detail: config.exporter.page_detail,
            generation: 1,
        };
        // Forced deployments gate their slots from the start.
        gate(&mut state, |_| true);
        Store {
            state: RwLock::new(state),
            generation: AtomicU64::new(1),
            successor: OnceLock::new(),
        }
    }

    /// Takes over what `old` knows after a reload, as the reload plan says
    /// (`crate::reload`): `targets[new]` is the old target whose connection state and
    /// detected state the new one keeps (an unchanged target); `slots[new]` says what a
    /// slot keeps. The per-target detected state is carried as an opaque value. Skip
    /// states are not copied: call [`Store::regate`] afterwards.
    pub fn adopt(&self, old: &Store, targets: &[Option<usize>], slots: &[Carry]) {
        let old_state = old.read();
        self.write(|new| {
            for (ni, from) in targets.iter().enumerate() {
                if let Some(oi) = *from {
                    let t = &old_state.targets[oi];
                    new.targets[ni].up = t.up;
                    // The same login (the target is unchanged): the same user.
                    new.targets[ni].db_user = t.db_user.clone();
                    // A forced deployment in the new configuration wins over a detected one.
                    if new.targets[ni].capabilities.is_none() {
                        new.targets[ni].capabilities = t.capabilities.clone();
                        new.targets[ni].redetect = t.redetect;
                    }
                }
            }
            for (ni, carry) in slots.iter().enumerate() {
                let n = &mut new.slots[ni];
                match *carry {
                    Carry::Unchanged(oi) => {
                        let o = &old_state.slots[oi];
                        n.counters = o.counters.clone();
                        n.status = o.status.clone();
                        n.samples = o.samples.clone();
                        n.last_file = o.last_file.clone();
                        n.history = o.history.clone();
                        n.last_result = o.last_result.clone();
                        n.recent_files = o.recent_files.clone();
                    }
                    Carry::Counters(oi) => n.counters = old_state.slots[oi].counters.clone(),
                    Carry::Fresh => {}
                }
            }
            let generation = new.generation;
            new.slots.iter_mut().for_each(|s| s.changed = generation);
            new.targets.iter_mut().for_each(|t| t.changed = generation);
        });
    }

    /// Forwards this store's late writes to `next` (see the field's comment).
    pub fn retire(&self, next: Arc<Store>, mapping: Vec<Option<usize>>) {
        let _ = self.successor.set((next, mapping));
    }

    /// The store a write for `slot` belongs in: this one, or a successor's slot.
    fn forward(&self, slot: usize) -> Option<(&Store, usize)> {
        match self.successor.get() {
            None => Some((self, slot)),
            Some((next, map)) => map
                .get(slot)
                .copied()
                .flatten()
                .and_then(|s| next.forward(s)),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes whenever anything readers can see changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn write(&self, f: impl FnOnce(&mut State)) {
        let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
        guard.generation = self.generation.load(Ordering::Acquire) + 1;
        f(&mut guard);
        self.generation.store(guard.generation, Ordering::Release);
    }

    /// Replaces the slot's status and samples with a finished run's.
    pub fn record_run(&self, slot: usize, run: RunRecord) {
        let Some((store, slot)) = self.forward(slot) else {
            return;
        };
        store.write(|s| {
            let target_index = s.slots[slot].target_index;
            s.targets[target_index].changed = s.generation;
            let generation = s.generation;
            let sl = &mut s.slots[slot];
            sl.changed = generation;
            let started = unix(run.started);
            sl.status.ran = true;
            sl.status.duration = run.duration;
            sl.status.last_run = started;
            if sl.history.len() == HISTORY {
                sl.history.pop_front();
            }
            sl.history.push_back(RunSummary {
                started,
                duration: run.duration,
                rows: run.outcome.as_ref().map(|(r, _)| *r).unwrap_or(0),
                error: run.outcome.as_ref().err().map(|e| e.kind),
            });
            match run.outcome {
                Ok((rows, mut samples)) => {
                    if let Some(preview) = samples.preview.take() {
                        sl.last_result = Some(Arc::new(LastResult { started, preview }));
                    }
                    sl.status.success = true;
                    sl.status.rows = rows;
                    sl.status.last_success = started;
                    sl.status.last_error = None;
                    sl.counters.runs[RunResult::Success.index()] += 1;
                    for e in SampleError::ALL {
                        sl.counters.sample_errors[e.index()] += samples.error_count(e);
                    }
                    sl.samples = Some(Arc::new(samples));
                    s.targets[target_index].up = Some(true);
                }
                Err(err) => {
                    sl.status.success = false;
                    sl.status.rows = 0;
                    sl.samples = None;
                    let result = if err.kind == ErrorKind::Timeout {
                        RunResult::Timeout
                    } else {
                        RunResult::Error
                    };
                    sl.counters.runs[result.index()] += 1;
                    sl.counters.errors[err.kind.index()] += 1;
                    if err.kind.target_down() {
                        s.targets[target_index].up = Some(false);
                        let t = &mut s.targets[target_index];
                        if t.capabilities.as_ref().is_some_and(|c| !c.forced) {
                            t.redetect = true;
                        }
                    } else if matches!(err.kind, ErrorKind::Query | ErrorKind::Columns) {
                        s.targets[target_index].up = Some(true);
                    }
                    sl.status.last_error = Some(err);
                }
            }
        });
    }

    /// `n` scheduled runs fell due while the previous run was still going (not started).
    pub fn record_skips(&self, slot: usize, n: u64) {
        if n == 0 {
            return;
        }
        let Some((store, slot)) = self.forward(slot) else {
            return;
        };
        store.write(|s| {
            let generation = s.generation;
            let sl = &mut s.slots[slot];
            sl.counters.runs[RunResult::Skipped.index()] += n;
            sl.changed = generation;
        });
    }

    /// An archive write finished.
    pub fn record_archive(&self, slot: usize, result: Result<PathBuf, ()>) {
        let Some((store, slot)) = self.forward(slot) else {
            return;
        };
        store.write(|s| {
            let generation = s.generation;
            let sl = &mut s.slots[slot];
            sl.changed = generation;
            match result {
                Ok(p) => {
                    sl.counters.archive_files += 1;
                    if sl.recent_files.len() == RECENT_FILES {
                        sl.recent_files.pop_front();
                    }
                    sl.recent_files.push_back(p.clone());
                    sl.last_file = Some(p);
                }
                Err(()) => sl.counters.archive_errors += 1,
            }
        });
    }

    /// Records what a target's user can read and marks the checks that cannot run there.
    pub fn set_capabilities(&self, target: usize, caps: Arc<Capabilities>) {
        self.write(|s| {
            s.targets[target].capabilities = Some(caps);
            s.targets[target].redetect = false;
            s.targets[target].changed = s.generation;
            gate(s, |ti| ti == target);
        });
    }

    /// Records the database user the target's AWS login resolved to; a write (and a new
    /// stamp) only when it differs from the one known, so calling it after every run is cheap.
    pub fn set_db_user(&self, target: usize, user: &str) {
        let same = |s: &State| s.targets[target].db_user.as_deref() == Some(user);
        if same(&self.read()) {
            return;
        }
        self.write(|s| {
            if !same(s) {
                s.targets[target].db_user = Some(Arc::from(user));
                s.targets[target].changed = s.generation;
            }
        });
    }

    /// Recomputes every slot's skip state from what is known about its target: after a
    /// reload handover, where new and edited slots meet carried capabilities.
    pub fn regate(&self) {
        self.write(|s| gate(s, |_| true));
    }

    /// True once every applicable slot has finished a run.
    pub fn ready(&self) -> bool {
        self.read()
            .slots
            .iter()
            .all(|s| s.status.ran || s.not_applicable.is_some())
    }
}
