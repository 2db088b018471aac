//! When checks run, and what happens around each run.
//!
//! [`Runner`] owns one run of one slot (check × target): flavour gating, executing the check,
//! mapping rows to samples, recording the result in the snapshot and handing non-empty
//! results to the archive on a task of their own, and reporting whether the target answered
//! ([`crate::recovery`]).
//!
//! [`Scheduler`] is one task per slot that sleeps until the slot's next due time
//! (`tokio::time::sleep_until`, monotonic clock), takes the slot's run lock and *awaits* the
//! run, so a check can never overlap itself. The due time and the lock live in the slot's
//! [`SlotClock`], which a reload hands to the next configuration when the check is unchanged:
//! reloads neither delay nor repeat its runs. Interval checks keep their phase: due times are
//! `first run + k × interval` for a check on one target, and for a check on several targets
//! `phase + k × interval` with a per-(check, target) phase spread over the interval
//! (`phase.rs`), so a fleet's targets do not all run a check at the same instant; scheduled
//! times that pass while the previous run is still going are skipped and counted
//! (`runs_total{result="skipped"}`), never caught up in a burst.
//! Cron checks (croner; six fields, seconds first, UTC; when both day-of-month and
//! day-of-week are restricted a day must match both) run at each next occurrence after the
//! previous run.
//!
//! Shutdown: [`Runner::drain`] stops the slot tasks, waits for running checks up to a
//! deadline, then cancels the rest server-side and waits for them and for archive writes up to
//! a second deadline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::archive::{Archiver, Episode, Feed};
use crate::capability;
use crate::check;
use crate::config::{CheckConfig, Config};
use crate::db::{CheckError, ErrorKind, Target};
use crate::detect::Detector;
use crate::recovery::Health;
use crate::sample;
use crate::snapshot::{RunRecord, Store};

mod phase;
mod timer;
pub use timer::{Scheduler, parse_cron};

/// Row batches (up to 1,024 rows or 64 kB each, see `check`) buffered between the connection
/// and the sampler.
const ROW_BUFFER: usize = 4;
/// Row batches buffered between the sampler and the CSV writer.
const ARCHIVE_BUFFER: usize = 16;

/// A successful run's rows, samples and CSV write.
struct Streamed {
    rows: u64,
    samples: sample::Samples,
    archive: Option<JoinHandle<Option<PathBuf>>>,
}

/// What one run produced, for `once` and tests.
#[derive(Debug)]
pub struct Report {
    pub slot: usize,
    pub duration: Duration,
    pub rows: u64,
    /// `Err` with the reason the run failed; `Ok(None)` when the check does not apply.
    pub outcome: Result<Option<()>, CheckError>,
    /// The archive write, when one was started.
    pub archive: Option<JoinHandle<Option<PathBuf>>>,
}

/// Runs slots and records their outcome.
pub struct Runner {
    pub config: Arc<Config>,
    pub targets: Vec<Arc<Target>>,
    pub store: Arc<Store>,
    archiver: Option<Archiver>,
    /// Per target (like `targets`): reachability and the recovery probe; carried with the pool.
    pub health: Vec<Arc<Health>>,
    /// Per slot: the run lock and the next due time. Shared with the runner of the previous
    /// configuration for unchanged slots (the reload plan), so a reload neither moves the
    /// schedule nor lets a check overlap itself.
    clocks: Vec<Arc<SlotClock>>,
    /// Cancels in-flight runs (server-side) once the drain deadline has passed.
    cancel: CancellationToken,
    /// The slot tasks (and the runs they await).
    runs: TaskTracker,
    /// In-flight archive writes.
    writes: TaskTracker,
    /// Set when shutdown began; no new runs start after it.
    stopping: AtomicBool,
    /// Set once every applicable slot has run (the first round after a start or a reload),
    /// when the heap that round left free is handed back (see [`Runner::run`]).
    settled: AtomicBool,
    /// Detects what each target's user may read, one detection per target at a time.
    detector: Detector,
}

/// What a slot keeps across reloads while its check and target are unchanged.
#[derive(Debug, Default)]
pub struct SlotClock {
    /// Held for the whole of a run, by whichever configuration's task starts it.
    running: tokio::sync::Mutex<()>,
    /// When the next run is due; `None`: at once.
    due: Mutex<Option<Instant>>,
    /// The last run failed because its target could not be reached: it runs again as soon
    /// as the target answers.
    waiting_for_target: AtomicBool,
}

impl SlotClock {
    fn due(&self) -> Option<Instant> {
        *self.due.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set_due(&self, at: Instant) {
        *self.due.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }
    fn waiting(&self) -> bool {
        self.waiting_for_target.load(Ordering::Acquire)
    }
    /// The next due time, for tests and the landing page.
    pub fn next_due(&self) -> Option<Instant> {
        self.due()
    }
}

impl Runner {
    /// A runner with the given per-target health (carried with the pools on reload), the
    /// clocks of slots carried over from a previous runner (`None`: a new slot, due at once)
    /// and an archiver built by the caller (one that shares the daemon's archive gauges and
    /// upload queue across reloads).
    pub fn with_parts(
        config: Arc<Config>,
        targets: Vec<Arc<Target>>,
        health: Vec<Arc<Health>>,
        store: Arc<Store>,
        carried: Vec<Option<Arc<SlotClock>>>,
        archiver: Option<Archiver>,
    ) -> Arc<Self> {
        assert_eq!(health.len(), targets.len(), "one health per target");
        let clocks = carried.into_iter().map(Option::unwrap_or_default).collect();
        Arc::new(Runner {
            detector: Detector::new(targets.len()),
            config,
            targets,
            health,
            store,
            archiver,
            clocks,
            cancel: CancellationToken::new(),
            runs: TaskTracker::new(),
            writes: TaskTracker::new(),
            stopping: AtomicBool::new(false),
            settled: AtomicBool::new(false),
        })
    }

    pub fn slot_count(&self) -> usize {
        self.clocks.len()
    }

    /// The clock of `slot`, for the runner that replaces this one.
    pub fn clock(&self, slot: usize) -> Arc<SlotClock> {
        self.clocks[slot].clone()
    }

    /// Runs `slot` once, now, and records the outcome.
    pub async fn run(self: &Arc<Self>, slot: usize) -> Report {
        let (check, target_index, target_name) = {
            let st = self.store.read();
            let s = &st.slots[slot];
            // A per-database slot is named `{target}@{database}` in logs and archive folders
            // (`crate::discovery::folder`), so entries of one target are told apart.
            let name: Arc<str> = match &s.database {
                None => s.target.clone(),
                Some(db) => Arc::from(crate::discovery::folder(&s.target, Some(db))),
            };
            (s.check.clone(), s.target_index, name)
        };
        let target = self.targets[target_index].clone();
        let span = tracing::info_span!("check", check = %check.name, target = %target_name);
        async move {
            let started = SystemTime::now();
            let t0 = Instant::now();

            // What may this target's user read? Detected at the first successful connect (and
            // again after an outage); a target that cannot be reached fails this run with
            // that cause. A check the last answer rules out is skipped without asking again.
            let stale = {
                let st = self.store.read();
                let t = &st.targets[target_index];
                t.capabilities.clone().filter(|_| t.redetect)
            };
            let skip = Report {
                slot,
                duration: Duration::ZERO,
                rows: 0,
                outcome: Ok(None),
                archive: None,
            };
            if stale.is_some_and(|c| capability::applicability(&check, &c).is_some()) {
                return skip;
            }
            let detected = self
                .detector
                .capabilities(target_index, &target, &self.store, check.timeout)
                .await;
            if let Ok(c) = &detected {
                if capability::applicability(&check, c).is_some() {
                    return skip;
                }
            }

            let result = match detected {
                Ok(_) => self.execute(&target, &check, slot, &target_name, started).await,
                Err(e) => Err(e),
            };
            let duration = t0.elapsed();
            let (record, rows, outcome, archive) = match result {
                Ok(Streamed { rows, samples, archive }) => {
                    for e in sample::SampleError::ALL {
                        let n = samples.error_count(e);
                        if n > 0 {
                            tracing::warn!(reason = e.as_str(), count = n, "values skipped");
                        }
                    }
                    tracing::debug!(rows, duration_ms = duration.as_millis() as u64, "check succeeded");
                    if rows == 0 {
                        tracing::warn!(check = %check.name, target = %target_name, "check returned no rows; no CSV written");
                    }
                    (Ok((rows, samples)), rows, Ok(Some(())), archive)
                }
                Err(e) => {
                    tracing::warn!(check = %check.name, target = %target_name, kind = e.kind.as_str(), error = %e.message, "check failed");
                    (Err(e.clone()), 0, Err(e), None)
                }
            };
            self.store.record_run(slot, RunRecord { started, duration, outcome: record });
            // The first round has every slot's run in flight at once, most of them waiting
            // for their target's pool (3,300 at 100 targets × the pack): once it is over, the
            // heap they held is free but glibc keeps it; hand it back, once per configuration.
            if !self.settled.load(Ordering::Acquire)
                && self.store.ready()
                && !self.settled.swap(true, Ordering::AcqRel)
            {
                crate::cli::trim_heap();
            }
            // The user an AWS login resolved to, for the landing page (a write only on change).
            if let Some(user) = target.db_user() {
                self.store.set_db_user(target_index, &user);
            }
            // Did the target answer? A session could not be opened: probe the target (once,
            // for every check on it); anything else the server said: it is reachable.
            match &outcome {
                Err(e) if e.kind.target_down() => self.health[target_index].report_down(&target),
                Err(e) if matches!(e.kind, ErrorKind::Canceled | ErrorKind::PoolTimeout) => {}
                _ => self.health[target_index].report_up(&target_name),
            }
            Report { slot, duration, rows, outcome, archive }
        }
        .instrument(span)
        .await
    }

    /// Runs the check and consumes its rows as they stream in: each row goes to the sampler
    /// (which keeps at most `max_series` series) and, when archiving, on to the CSV writer,
    /// whose task starts with the first row. Nothing holds the whole result; a slow disk
    /// slows the query down (bounded channels all the way to the socket) instead of
    /// filling memory. A failed run abandons the CSV (its temporary file is removed).
    async fn execute(
        self: &Arc<Self>,
        target: &Target,
        check: &Arc<CheckConfig>,
        slot: usize,
        target_name: &str,
        started: SystemTime,
    ) -> Result<Streamed, CheckError> {
        let (tx, rx) = mpsc::channel(ROW_BUFFER);
        let archiver = self.archiver.as_ref().filter(|_| check.archive);
        let consume = async {
            // Owned here, so a mismatch that returns early drops the receiver at once and the
            // query side sees it (then cancels the statement on the server).
            let mut rx = rx;
            let mut columns = Vec::new();
            let mut sampler = None;
            let mut feed: Option<mpsc::Sender<Feed>> = None;
            let mut written = None;
            while let Some(message) = rx.recv().await {
                match message {
                    check::Message::Columns(c) => {
                        // On a mismatch, returning drops `rx`: the query's rest is discarded.
                        sampler = Some(
                            sample::Sampler::new(check, &c)
                                .map_err(|e| CheckError::new(ErrorKind::Columns, e.to_string()))?,
                        );
                        columns = c;
                    }
                    check::Message::Rows(rows) => {
                        if let Some(s) = sampler.as_mut() {
                            for row in rows.iter() {
                                s.push(&row);
                            }
                        }
                        if let (Some(a), None) = (archiver, &written) {
                            let (f, handle) = self.spawn_archive(
                                a.clone(),
                                slot,
                                target_name,
                                &check.name,
                                started,
                                std::mem::take(&mut columns),
                            );
                            feed = Some(f);
                            written = Some(handle);
                        }
                        // A writer that failed has dropped its end (and reports the failure).
                        if let Some(f) = &feed {
                            if f.send(Feed::Rows(rows)).await.is_err() {
                                feed = None;
                            }
                        }
                    }
                }
            }
            Ok((
                sampler.map(sample::Sampler::finish).unwrap_or_default(),
                feed,
                written,
            ))
        };
        let (executed, consumed) =
            tokio::join!(check::execute(target, check, &self.cancel, tx), consume);
        // The consumer fails only on a column mismatch, which is then the cause (the query
        // side stopped because of it); otherwise a query error wins. Dropping `feed`
        // abandons the CSV.
        let (samples, feed, archive) = consumed?;
        let rows = executed?;
        if let Some(f) = feed {
            let _ = f.send(Feed::End).await;
        }
        Ok(Streamed {
            rows,
            samples,
            archive,
        })
    }

    /// Starts a CSV write fed row by row; `Feed::End` completes it, dropping the sender
    /// abandons it.
    fn spawn_archive(
        self: &Arc<Self>,
        archiver: Archiver,
        slot: usize,
        target: &str,
        check: &str,
        started: SystemTime,
        columns: Vec<String>,
    ) -> (mpsc::Sender<Feed>, JoinHandle<Option<PathBuf>>) {
        let store = self.store.clone();
        let (target, check) = (target.to_string(), check.to_string());
        let (tx, rx) = mpsc::channel(ARCHIVE_BUFFER);
        let handle = self.writes.spawn(async move {
            let result = match archiver
                .write_stream(&target, &check, started, &columns, rx)
                .await
            {
                Ok(None) => {
                    tracing::debug!(%check, %target, "run failed; partial CSV removed");
                    return None;
                }
                Ok(Some(path)) => Ok(path),
                Err(e) => Err(e),
            };
            // Failures are counted every time but logged once per episode, so a full disk
            // does not flood the log.
            match (&result, archiver.episode(result.is_ok())) {
                (Err(e), Episode::Started) => {
                    tracing::error!(%check, %target, error = %e, "archive write failed; further failures are counted, not logged, until a write succeeds")
                }
                (Err(e), _) => tracing::debug!(%check, %target, error = %e, "archive write failed"),
                (Ok(_), Episode::Recovered) => {
                    tracing::info!(%check, %target, "archive writes recovered")
                }
                (Ok(path), _) => {
                    tracing::debug!(%check, %target, path = %path.display(), "CSV written")
                }
            }
            store.record_archive(slot, result.as_ref().map(|p| p.clone()).map_err(|_| ()));
            result.ok()
        });
        (tx, handle)
    }

    /// Records a run that was due while its target is known to be down, without
    /// connecting: the target's probe is the only connection attempt until it answers.
    fn record_unreachable(&self, slot: usize) {
        self.store.record_run(
            slot,
            RunRecord {
                started: SystemTime::now(),
                duration: Duration::ZERO,
                outcome: Err(CheckError::new(
                    ErrorKind::Connect,
                    "target unreachable; not connecting until its probe succeeds",
                )),
            },
        );
    }

    /// After a reload: lets in-flight runs finish on their own deadlines (they record into
    /// the successor store), then waits for archive writes; bounded by the longest check
    /// timeout plus the cancel and write allowances.
    pub async fn retire(&self) {
        let longest = self
            .config
            .checks
            .iter()
            .map(|c| c.timeout)
            .max()
            .unwrap_or_default();
        let now = Instant::now();
        self.drain(
            now + longest + Duration::from_secs(1),
            now + longest + Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await;
    }

    /// Stops new runs and waits for running ones until `runs_by`; then cancels the rest
    /// server-side and waits for them and for archive writes until `all_by`. `abort` (a
    /// second signal) cuts the first wait short. Returns whether everything finished.
    pub async fn drain(
        &self,
        runs_by: Instant,
        all_by: Instant,
        abort: &CancellationToken,
    ) -> bool {
        self.stopping.store(true, Ordering::Release);
        self.runs.close();
        let finished = tokio::select! {
            r = tokio::time::timeout_at(runs_by, self.runs.wait()) => r.is_ok(),
            _ = abort.cancelled() => self.runs.is_empty(),
        };
        if !finished {
            tracing::warn!(
                running = self.runs.len(),
                "cancelling running checks on the server"
            );
            self.cancel.cancel();
            if tokio::time::timeout_at(all_by, self.runs.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    running = self.runs.len(),
                    "runs still going at the shutdown deadline; abandoned"
                );
            }
        }
        self.writes.close();
        if tokio::time::timeout_at(all_by, self.writes.wait())
            .await
            .is_err()
        {
            tracing::error!(
                writing = self.writes.len(),
                "archive writes still going at the shutdown deadline; their temporaries are removed at the next start"
            );
            return false;
        }
        self.runs.is_empty()
    }
}
