//! When checks run, and what happens around each run.
//!
//! [`Runner`] owns one run of one slot (check × target): the overlap guard (a tick that finds
//! the previous run still going is skipped and counted), flavour gating, executing the check,
//! mapping rows to samples, recording the result in the snapshot and handing non-empty
//! results to the archive on a task of their own. [`Scheduler`] fires runs: once right after
//! start-up, then on each check's interval or cron schedule via tokio-cron-scheduler (UTC),
//! with a guard against catch-up bursts after a stall.
//!
//! Shutdown: [`Runner::drain`] stops new runs, waits for running ones up to the drain
//! timeout, then cancels the rest server-side, and waits for archive writes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::archive::{Archiver, Episode, Feed};
use crate::capability;
use crate::check;
use crate::config::{CheckConfig, Config, Schedule};
use crate::db::{CheckError, ErrorKind, Target};
use crate::detect::Detector;
use crate::sample;
use crate::snapshot::{RunRecord, Store};

/// Rows buffered between the connection and the sampler.
const ROW_BUFFER: usize = 256;
/// Rows buffered between the sampler and the CSV writer.
const ARCHIVE_BUFFER: usize = 1024;

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
    /// Per slot: set while a run is in flight (the overlap guard). Shared with the runner of
    /// the previous configuration for unchanged slots, so a reload cannot cause an overlap.
    running: Vec<Arc<AtomicBool>>,
    /// Per slot: milliseconds since [`epoch`] of the last scheduled start (catch-up guard).
    last_start: Vec<Arc<AtomicU64>>,
    /// Cancels in-flight runs (server-side) once the drain timeout has passed.
    cancel: CancellationToken,
    /// In-flight runs.
    runs: TaskTracker,
    /// In-flight archive writes.
    writes: TaskTracker,
    /// Set when shutdown began; no new runs start after it.
    stopping: AtomicBool,
    /// Detects what each target's user may read, one detection per target at a time.
    detector: Detector,
}

/// Clears an overlap guard when dropped.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Process-wide reference point of the catch-up guard's timestamps.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A slot's overlap and catch-up guards, handed from one runner to the next on reload.
pub type Guards = (Arc<AtomicBool>, Arc<AtomicU64>);

impl Runner {
    pub fn new(config: Arc<Config>, targets: Vec<Arc<Target>>, store: Arc<Store>) -> Arc<Self> {
        let n = store.read().slots.len();
        Self::with_guards(config, targets, store, vec![None; n])
    }

    /// Like [`Runner::new`], reusing the guards of slots carried over from a previous runner.
    pub fn with_guards(
        config: Arc<Config>,
        targets: Vec<Arc<Target>>,
        store: Arc<Store>,
        carried: Vec<Option<Guards>>,
    ) -> Arc<Self> {
        let archiver = Archiver::from_config(&config);
        Self::with_archiver(config, targets, store, carried, archiver)
    }

    /// Like [`Runner::with_guards`], with an archiver built by the caller (one that shares
    /// the daemon's archive gauges and upload queue across reloads).
    pub fn with_archiver(
        config: Arc<Config>,
        targets: Vec<Arc<Target>>,
        store: Arc<Store>,
        carried: Vec<Option<Guards>>,
        archiver: Option<Archiver>,
    ) -> Arc<Self> {
        let (running, last_start) = carried.into_iter().map(|g| g.unwrap_or_default()).unzip();
        Arc::new(Runner {
            detector: Detector::new(targets.len()),
            config,
            targets,
            store,
            archiver,
            running,
            last_start,
            cancel: CancellationToken::new(),
            runs: TaskTracker::new(),
            writes: TaskTracker::new(),
            stopping: AtomicBool::new(false),
        })
    }

    pub fn slot_count(&self) -> usize {
        self.running.len()
    }

    /// The guards of `slot`, for the runner that replaces this one.
    pub fn guards(&self, slot: usize) -> Guards {
        (self.running[slot].clone(), self.last_start[slot].clone())
    }

    /// Starts a run of `slot` on its own task unless one is in flight (then counts a skip).
    /// `min_gap` is the catch-up guard: a tick sooner than that after the previous start
    /// is a burst after a stall and is dropped.
    pub fn spawn(self: &Arc<Self>, slot: usize, min_gap: Option<Duration>) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let now_ms = epoch().elapsed().as_millis() as u64;
        if let Some(gap) = min_gap {
            let last = self.last_start[slot].load(Ordering::Acquire);
            if last != 0 && now_ms.saturating_sub(last) < gap.as_millis() as u64 {
                tracing::debug!(slot, "tick dropped: catch-up after a stall");
                return;
            }
        }
        if self.running[slot].swap(true, Ordering::AcqRel) {
            let (check, target) = self.names(slot);
            tracing::warn!(%check, %target, "previous run still going; this run is skipped");
            self.store.record_skip(slot);
            return;
        }
        self.last_start[slot].store(now_ms.max(1), Ordering::Release);
        let me = self.clone();
        let flag = self.running[slot].clone();
        self.runs.spawn(async move {
            // Cleared on drop, so even a panicking run cannot leave its check blocked forever.
            let _clear = ClearOnDrop(flag);
            let _ = me.run(slot).await;
        });
    }

    fn names(&self, slot: usize) -> (String, String) {
        let st = self.store.read();
        let s = &st.slots[slot];
        (s.check.name.clone(), s.target.to_string())
    }

    /// Runs `slot` once, now, and records the outcome.
    pub async fn run(self: &Arc<Self>, slot: usize) -> Report {
        let (check, target_index, target_name) = {
            let st = self.store.read();
            let s = &st.slots[slot];
            (s.check.clone(), s.target_index, s.target.clone())
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
        let (tx, mut rx) = mpsc::channel(ROW_BUFFER);
        let archiver = self.archiver.as_ref().filter(|_| check.archive);
        let consume = async {
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
                    check::Message::Row(row) => {
                        if let Some(s) = sampler.as_mut() {
                            s.push(&row);
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
                            if f.send(Feed::Row(row)).await.is_err() {
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
        // A query error wins over what the consumer saw; dropping `feed` abandons the CSV.
        let rows = executed?;
        let (samples, feed, archive) = consumed?;
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

    /// After a reload: lets in-flight runs finish on their own deadlines (they record into
    /// the successor store), then waits for archive writes.
    pub async fn retire(&self) {
        let longest = self
            .config
            .checks
            .iter()
            .map(|c| c.timeout)
            .max()
            .unwrap_or_default();
        self.drain(longest + Duration::from_secs(10), &CancellationToken::new())
            .await;
    }

    /// Stops new runs, waits for running ones up to `drain`, cancels the rest server-side,
    /// then waits for archive writes.
    /// `abort` (a second signal) cuts the wait short: running checks are cancelled at once.
    pub async fn drain(&self, drain: Duration, abort: &CancellationToken) {
        self.stopping.store(true, Ordering::Release);
        self.runs.close();
        let finished = tokio::select! {
            r = tokio::time::timeout(drain, self.runs.wait()) => r.is_ok(),
            _ = abort.cancelled() => self.runs.is_empty(),
        };
        if !finished {
            tracing::warn!(
                running = self.runs.len(),
                "cancelling running checks on the server"
            );
            self.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), self.runs.wait()).await;
        }
        self.writes.close();
        if tokio::time::timeout(Duration::from_secs(60), self.writes.wait())
            .await
            .is_err()
        {
            tracing::error!("archive writes did not finish within 60s");
        }
    }
}

/// Fires runs on each check's schedule.
pub struct Scheduler {
    inner: Mutex<Option<JobScheduler>>,
}

impl Scheduler {
    /// Runs the slots marked in `run_now` at once, then registers one job per check.
    pub async fn start(
        runner: &Arc<Runner>,
        run_now: &[bool],
    ) -> Result<Self, tokio_cron_scheduler::JobSchedulerError> {
        for slot in (0..runner.slot_count()).filter(|&s| run_now[s]) {
            runner.spawn(slot, None);
        }
        // The scheduler's internal broadcast channels (job activations, started/done
        // notifications) drop messages when they lag; size them for every check firing at
        // once, several times over (the default, 200, lagged in the soak with 200 checks).
        let sched =
            JobScheduler::new_with_channel_size((8 * runner.config.checks.len()).max(1024)).await?;
        let config = runner.config.clone();
        for (ci, check) in config.checks.iter().enumerate() {
            let slots: Arc<[usize]> = runner
                .store
                .read()
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.check_index == ci)
                .map(|(i, _)| i)
                .collect();
            let r = runner.clone();
            let job = match &check.schedule {
                Schedule::Interval(every) => {
                    let gap = *every / 2;
                    Job::new_repeated_async(*every, move |_, _| {
                        let (r, slots) = (r.clone(), slots.clone());
                        Box::pin(async move {
                            for &s in slots.iter() {
                                r.spawn(s, Some(gap));
                            }
                        })
                    })?
                }
                Schedule::Cron(expr) => {
                    Job::new_async_tz(expr.as_str(), chrono::Utc, move |_, _| {
                        let (r, slots) = (r.clone(), slots.clone());
                        Box::pin(async move {
                            for &s in slots.iter() {
                                r.spawn(s, Some(Duration::from_millis(900)));
                            }
                        })
                    })?
                }
            };
            sched.add(job).await?;
        }
        sched.start().await?;
        Ok(Scheduler {
            inner: Mutex::new(Some(sched)),
        })
    }

    /// Stops firing; running checks are not touched.
    pub async fn stop(&self) {
        let sched = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut s) = sched {
            if let Err(e) = s.shutdown().await {
                tracing::warn!(error = %e, "scheduler shutdown reported an error");
            }
        }
    }
}
