//! Wiring: builds the pools, the snapshot, the runner, the scheduler and the HTTP server from a
//! validated config, and tears them down in order. Two entry points: [`run_daemon`] (the
//! long-running exporter) and [`run_once`] (every check once, for cron jobs and CI).
//!
//! Shutdown goes through one [`CancellationToken`] taken as a parameter, so tests and `main`
//! drive it the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive;
use crate::archive::lifecycle::Lifecycle;
use crate::config::{self, Config};
use crate::db::{SetupError, Target};
use crate::exposition::{Exposition, PoolStatsFn};
use crate::http::{self, Live, ReloadRequest, Web};
use crate::recovery::Health;
use crate::reload::Plan;
use crate::schedule::{Runner, Scheduler};
use crate::snapshot::{Carry, ReloadStatus, Store};
use crate::web_config::{self, WebConfig};

/// Errors that end the process with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Target(#[from] SetupError),
    #[error(transparent)]
    WebConfig(#[from] web_config::WebConfigError),
    #[error("archive upload: {0}")]
    Archive(#[from] archive::upload::UploadError),
    #[error("unknown check{} {}; configured: {}", if .0.len() == 1 { "" } else { "s" }, .0.join(", "), .1.join(", "))]
    UnknownChecks(Vec<String>, Vec<String>),
}

fn build_targets(config: &Config) -> Result<Vec<Arc<Target>>, StartupError> {
    config
        .targets
        .iter()
        .map(|t| {
            Target::new(t.clone())
                .map(Arc::new)
                .map_err(StartupError::from)
        })
        .collect()
}

/// Closes the pools, all at once, giving up at `by`.
async fn close_pools(targets: &[Arc<Target>], by: Instant) {
    let all = futures_util::future::join_all(targets.iter().map(|t| async move {
        t.close().await;
        tracing::info!(target = %t.config.name, "pool closed");
    }));
    if tokio::time::timeout_at(by, all).await.is_err() {
        tracing::warn!("pools still closing at the shutdown deadline");
    }
}

fn clean_archive(config: &Config) {
    if let Some(root) = &config.exporter.archive_dir {
        let n = archive::clean_temporaries(root);
        if n > 0 {
            tracing::warn!(count = n, root = %root.display(), "removed temporary CSV files left by an earlier crash");
        }
    }
}

/// Command-line settings of the daemon that are not in checks.toml.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Where checks.toml is, for reloads.
    pub config_path: PathBuf,
    /// `--web.listen-address`: overrides `[exporter] listen_address`.
    pub listen_address: Option<String>,
    /// `--web.config.file`: TLS and basic authentication for the HTTP server.
    pub web_config: Option<PathBuf>,
    /// `--web.enable-lifecycle`: allow `POST /-/reload`.
    pub enable_lifecycle: bool,
    /// Fired by a second SIGTERM/SIGINT: stop waiting for running checks, cancel them on
    /// the server now.
    pub abort: CancellationToken,
}

/// Everything that belongs to one version of the configuration.
struct Generation {
    config: Arc<Config>,
    targets: Vec<Arc<Target>>,
    /// Per target: reachability and its recovery probe (kept with the pool on reload).
    health: Vec<Arc<Health>>,
    runner: Arc<Runner>,
    scheduler: Scheduler,
}

/// What a new configuration needs that can fail to build, built before anything changes.
struct Prepared {
    config: Arc<Config>,
    targets: Vec<Arc<Target>>,
    health: Vec<Arc<Health>>,
}

impl Prepared {
    /// Builds the pools (TLS, CA files) of new and changed targets; kept targets lend theirs.
    fn new(
        config: Arc<Config>,
        previous: Option<(&Generation, &Plan)>,
    ) -> Result<Self, StartupError> {
        let mut targets = Vec::with_capacity(config.targets.len());
        let mut health = Vec::with_capacity(config.targets.len());
        for (ni, tc) in config.targets.iter().enumerate() {
            match previous.and_then(|(p, plan)| plan.targets[ni].map(|oi| (p, oi))) {
                Some((p, oi)) => {
                    p.targets[oi].reloaded();
                    targets.push(p.targets[oi].clone());
                    health.push(p.health[oi].clone());
                }
                None => {
                    targets.push(Arc::new(Target::new(tc.clone())?));
                    health.push(Health::new(true));
                }
            }
        }
        Ok(Prepared {
            config,
            targets,
            health,
        })
    }
}

impl Generation {
    /// Starts a configuration; cannot fail (everything fallible is in [`Prepared`]).
    /// `previous` (on reload, with the plan) lends unchanged slots' state and clocks, stops
    /// firing, and forwards its in-flight results here.
    fn start(
        prepared: Prepared,
        previous: Option<(&Generation, &Plan)>,
        reload: &Arc<ReloadStatus>,
        lifecycle: &Lifecycle,
    ) -> (Self, Live) {
        let Prepared {
            config,
            targets,
            health,
        } = prepared;
        let store = Arc::new(Store::new(&config));
        let slots = store.read().slots.len();
        let mut clocks = vec![None; slots];
        let mut run_now = vec![true; slots];
        if let Some((p, plan)) = previous {
            // The old tasks stop before the new ones start; a run in flight finishes and
            // records into the new store (forward), holding its slot's lock meanwhile.
            p.scheduler.stop();
            store.adopt(&p.runner.store, &plan.targets, &plan.slots);
            p.runner.store.retire(store.clone(), plan.forward.clone());
            for (ni, carry) in plan.slots.iter().enumerate() {
                if let Carry::Unchanged(oi) = *carry {
                    clocks[ni] = Some(p.runner.clock(oi));
                    run_now[ni] = false;
                }
            }
            // New and edited slots meet what was detected about their (kept) target.
            store.regate();
        }
        let runner = Runner::with_parts(
            config.clone(),
            targets.clone(),
            health.clone(),
            store.clone(),
            clocks,
            lifecycle.archiver_for(&config),
        );
        // Forced deployments gate their slots from the start; detected ones log at detection.
        for s in store.read().slots.iter() {
            if let Some(why) = &s.not_applicable {
                tracing::info!(check = %s.check.name, target = %s.target, reason = %why, "check skipped on this target");
            }
        }
        for w in config.lint() {
            tracing::warn!(problem = %w, "SQL may not run on Redshift");
        }
        let scheduler = Scheduler::start(&runner, &run_now);
        // Labels from the new configuration: a kept pool's Target still holds the old one.
        let pools: Vec<(String, PoolStatsFn)> = config
            .targets
            .iter()
            .zip(&targets)
            .map(|(tc, t)| {
                let t2 = t.clone();
                (
                    crate::exposition::target_labels_text(&tc.name, &tc.labels),
                    Box::new(move || t2.stats()) as PoolStatsFn,
                )
            })
            .collect();
        let mut exposition = Exposition::new(store.clone(), pools, reload.clone());
        if let Some(stats) = lifecycle.stats() {
            exposition = exposition.with_archive_stats(stats, lifecycle.uploads_on());
        }
        let live = Live {
            exposition,
            pages: crate::http::page::Landing::new(store.clone()),
            store,
            archive_root: config
                .exporter
                .archive_dir
                .clone()
                .filter(|_| config.exporter.archive.serve),
        };
        tracing::info!(
            checks = config.checks.len(),
            targets = config.targets.len(),
            "checks scheduled"
        );
        (
            Generation {
                config,
                targets,
                health,
                runner,
                scheduler,
            },
            live,
        )
    }

    /// Retires connections older than each target's `max_connection_age`.
    fn maintain(&self) {
        for t in &self.targets {
            let n = t.retire_old_connections();
            if n > 0 {
                tracing::debug!(target = %t.config.name, retired = n, "retired old connections");
            }
        }
    }
}

/// Loads the file again and, if it is valid and its pools can be built, hands the running
/// configuration over to it ([`crate::reload`]).
async fn reload(
    options: &DaemonOptions,
    current: &mut Generation,
    web: &Web,
    retiring: &TaskTracker,
    retired: &mut Vec<std::sync::Weak<Runner>>,
    status: &Arc<ReloadStatus>,
    lifecycle: &Lifecycle,
) -> Result<(), String> {
    let result = (|| {
        let config = Arc::new(config::load(&options.config_path).map_err(|e| e.to_string())?);
        let plan = crate::reload::plan(&current.config, &config);
        // Everything that can fail, while the old configuration runs untouched.
        let prepared = Prepared::new(config, Some((current, &plan))).map_err(|e| e.to_string())?;
        // From here on nothing fails.
        let (next, live) = Generation::start(prepared, Some((current, &plan)), status, lifecycle);
        web.swap(live);
        let old = std::mem::replace(current, next);
        retired.retain(|w| w.strong_count() > 0);
        retired.push(Arc::downgrade(&old.runner));
        // In-flight runs of the old configuration finish on their own deadlines; pools the
        // new configuration does not use close after them.
        retiring.spawn(async move {
            old.runner.retire().await;
            let gone: Vec<Arc<Target>> =
                plan.close.iter().map(|&i| old.targets[i].clone()).collect();
            for &i in &plan.close {
                old.health[i].stop();
            }
            close_pools(&gone, tokio::time::Instant::now() + Duration::from_secs(6)).await;
        });
        Ok::<_, String>(())
    })();
    status.record(result.is_ok());
    match &result {
        Ok(()) => tracing::info!(path = %options.config_path.display(), "configuration reloaded"),
        Err(e) => {
            tracing::error!(error = %e, "configuration reload failed; the previous configuration keeps running")
        }
    }
    result
}

/// The shutdown budget: after SIGTERM the process exits within
/// `drain_timeout + SHUTDOWN_MARGIN`, however many checks, writes and uploads are in flight.
/// Every wait is bound to one of these deadlines (measured from the signal):
///
/// | phase | deadline |
/// |---|---|
/// | running checks finish (current and retiring configurations, in parallel); S3 uploads get the same time | `drain` |
/// | cancel the rest server-side, wait for them and for archive writes | `drain + 2 s` |
/// | retention task and upload worker stop | `+ 0.5 s` |
/// | pools close (in parallel) | `+ 0.5 s` |
/// | HTTP server stops | `+ 0.5 s` |
/// | runtime shutdown (`cli`) | `+ 1 s` |
///
/// Total `drain + 4.5 s`, inside `drain + 5 s`.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownBudget {
    pub runs_by: Instant,
    pub cancelled_by: Instant,
    pub tasks_by: Instant,
    pub pools_by: Instant,
    pub http_by: Instant,
}

/// What the process may take beyond `drain_timeout` to stop (deploy/: TimeoutStopSec,
/// terminationGracePeriodSeconds).
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);
/// After the drain: cancel requests, the cancelled runs and archive writes.
pub const CANCEL_WINDOW: Duration = Duration::from_secs(2);
/// Each of: stopping archive tasks, closing pools, stopping the HTTP server.
pub const STEP_WINDOW: Duration = Duration::from_millis(500);
/// The runtime's own shutdown (`cli`).
pub const RUNTIME_WINDOW: Duration = Duration::from_secs(1);

impl ShutdownBudget {
    pub fn new(start: Instant, drain: Duration) -> Self {
        let runs_by = start + drain;
        let cancelled_by = runs_by + CANCEL_WINDOW;
        let tasks_by = cancelled_by + STEP_WINDOW;
        let pools_by = tasks_by + STEP_WINDOW;
        let http_by = pools_by + STEP_WINDOW;
        ShutdownBudget {
            runs_by,
            cancelled_by,
            tasks_by,
            pools_by,
            http_by,
        }
    }
}

/// Runs the exporter until `shutdown` fires, then drains and closes everything.
/// SIGHUP (and `POST /-/reload` with `enable_lifecycle`) reloads the configuration.
pub async fn run_daemon(
    config: Config,
    options: DaemonOptions,
    shutdown: CancellationToken,
) -> Result<(), StartupError> {
    let config = Arc::new(config);
    let security = match &options.web_config {
        Some(path) => web_config::load(path)?,
        None => WebConfig::default(),
    };
    let address = options
        .listen_address
        .clone()
        .unwrap_or_else(|| config.exporter.listen_address.clone());
    let listener = http::bind(&address)
        .await
        .map_err(|source| StartupError::Listen {
            address: address.clone(),
            source,
        })?;
    clean_archive(&config);
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        tracing::warn!("running as root; a dedicated unprivileged user is safer");
    }
    let status = Arc::new(ReloadStatus::default());
    let lifecycle = Lifecycle::start(&config, true)?;
    let prepared = Prepared::new(config, None)?;
    let (mut current, live) = Generation::start(prepared, None, &status, &lifecycle);

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let web = Arc::new(Web::new(
        live,
        security,
        options.enable_lifecycle.then(|| reload_tx.clone()),
    ));
    let http_stop = CancellationToken::new();
    if let Some(a) = http::local_addr(&listener) {
        let tls = web.security.tls.is_some();
        let auth = web.security.auth.is_some();
        tracing::info!(address = %a, tls, basic_auth = auth, "listening");
    }
    let server = tokio::spawn(http::serve(listener, web.clone(), http_stop.clone()));

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let retiring = TaskTracker::new();
    let mut retired = Vec::new();
    // Retire old connections every so often (Redshift drops idle sessions after hours).
    let mut maintenance = tokio::time::interval(Duration::from_secs(30));
    maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = maintenance.tick() => current.maintain(),
            Some(answer) = reload_rx.recv() => {
                let r = reload(&options, &mut current, &web, &retiring, &mut retired, &status, &lifecycle).await;
                let _ = answer.send(r);
            }
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = reload(&options, &mut current, &web, &retiring, &mut retired, &status, &lifecycle).await;
            }
        }
    }

    let drain = current.config.exporter.drain_timeout;
    let budget = ShutdownBudget::new(Instant::now(), drain);
    tracing::info!(
        drain_timeout = %humantime::format_duration(drain),
        "shutting down: no new runs; waiting for running checks"
    );
    current.scheduler.stop();
    for h in &current.health {
        h.stop();
    }
    // The current runner and any still retiring after a reload drain together, to the same
    // deadlines; S3 uploads use the same time in parallel.
    let runners: Vec<Arc<Runner>> = std::iter::once(current.runner.clone())
        .chain(retired.iter().filter_map(std::sync::Weak::upgrade))
        .collect();
    let drains = futures_util::future::join_all(
        runners
            .iter()
            .map(|r| r.drain(budget.runs_by, budget.cancelled_by, &options.abort)),
    );
    let ((), ()) = tokio::join!(
        async {
            drains.await;
        },
        lifecycle.drain_uploads(budget.cancelled_by)
    );
    retiring.close();
    if tokio::time::timeout_at(budget.cancelled_by, retiring.wait())
        .await
        .is_err()
    {
        tracing::warn!("runs of a previous configuration were still going at shutdown");
    }
    lifecycle.shutdown(budget.tasks_by).await;
    close_pools(&current.targets, budget.pools_by).await;
    http_stop.cancel();
    if tokio::time::timeout_at(budget.http_by, server)
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open at the shutdown deadline");
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// One line of `once`'s summary.
#[derive(Debug)]
pub struct OnceLine {
    pub check: String,
    pub target: String,
    pub line: String,
    pub ok: bool,
}

/// Runs every check (or the named ones) once on every target, concurrently through the
/// pools; waits for the CSVs. Returns one summary line per check and target.
pub async fn run_once(config: Config, only: &[String]) -> Result<Vec<OnceLine>, StartupError> {
    let known: Vec<String> = config.checks.iter().map(|c| c.name.clone()).collect();
    let unknown: Vec<String> = only
        .iter()
        .filter(|n| !known.contains(n))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(StartupError::UnknownChecks(unknown, known));
    }
    let config = Arc::new(config);
    let targets = build_targets(&config)?;
    clean_archive(&config);
    let store = Arc::new(Store::new(&config));
    // Uploads (and a retention pass at the end) as in the daemon.
    let lifecycle = Lifecycle::start(&config, false)?;
    let n = store.read().slots.len();
    let runner = Runner::with_parts(
        config.clone(),
        targets.clone(),
        targets.iter().map(|_| Health::new(false)).collect(),
        store.clone(),
        vec![None; n],
        lifecycle.archiver_for(&config),
    );
    let slots: Vec<usize> = store
        .read()
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| only.is_empty() || only.contains(&s.check.name))
        .map(|(i, _)| i)
        .collect();
    let reports = futures_util::future::join_all(slots.iter().map(|&s| runner.run(s))).await;
    let mut lines = Vec::new();
    for r in reports {
        let (check, target) = {
            let st = store.read();
            (
                st.slots[r.slot].check.name.clone(),
                st.slots[r.slot].target.to_string(),
            )
        };
        let dur = format!("{:.3}s", r.duration.as_secs_f64());
        let (line, ok) = match r.outcome {
            Ok(None) => {
                let why = store.read().slots[r.slot]
                    .not_applicable
                    .clone()
                    .unwrap_or_default();
                (
                    format!("skip check={check} target={target} reason=\"{why}\""),
                    true,
                )
            }
            Ok(Some(())) => {
                let file: Option<PathBuf> = match r.archive {
                    Some(h) => h.await.ok().flatten(),
                    None => None,
                };
                let archive_on = config.exporter.archive_dir.is_some()
                    && store.read().slots[r.slot].check.archive;
                let (tail, ok) = match (r.rows, file) {
                    (0, _) => ("no data".to_string(), true),
                    (_, Some(p)) => (format!("file={}", p.display()), true),
                    (_, None) if !archive_on => ("archive=off".to_string(), true),
                    (_, None) => ("file=none (archive write failed)".to_string(), false),
                };
                let status = if ok { "ok" } else { "error" };
                (
                    format!(
                        "{status} check={check} target={target} rows={} duration={dur} {tail}",
                        r.rows
                    ),
                    ok,
                )
            }
            Err(e) => (
                format!(
                    "error check={check} target={target} kind={} duration={dur} error={}",
                    e.kind.as_str(),
                    e.message.replace('\n', " ")
                ),
                false,
            ),
        };
        lines.push(OnceLine {
            check,
            target,
            line,
            ok,
        });
    }
    let now = Instant::now();
    runner
        .drain(
            now,
            now + Duration::from_secs(60),
            &CancellationToken::new(),
        )
        .await;
    lifecycle.enforce_now().await;
    let grace = config
        .exporter
        .archive
        .s3
        .as_ref()
        .map_or(Duration::ZERO, |s| s.timeout);
    lifecycle.drain_uploads(Instant::now() + grace).await;
    lifecycle
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    close_pools(&targets, Instant::now() + Duration::from_secs(6)).await;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_budget_fits_in_drain_plus_the_margin() {
        let t0 = Instant::now();
        let drain = Duration::from_secs(30);
        let b = ShutdownBudget::new(t0, drain);
        assert_eq!(b.runs_by, t0 + drain);
        assert!(b.runs_by < b.cancelled_by && b.cancelled_by < b.tasks_by);
        assert!(b.tasks_by < b.pools_by && b.pools_by < b.http_by);
        assert!(
            b.http_by + RUNTIME_WINDOW < t0 + drain + SHUTDOWN_MARGIN,
            "the last deadline plus the runtime's shutdown must fit in drain + {SHUTDOWN_MARGIN:?}"
        );
    }
}
