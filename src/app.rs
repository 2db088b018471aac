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

mod discover;
mod once;

pub use once::{OnceLine, run_once};

/// The pools of `config`'s entries: an entry whose connection settings equal one of `reuse`
/// takes it (each at most once); the others are built, sharing the session bound of their
/// target's other entries (`db::bound`), or a new one for a target seen first.
fn build_entries(config: &Config, reuse: &[Arc<Target>]) -> Result<Vec<Arc<Target>>, StartupError> {
    let mut taken = vec![false; reuse.len()];
    let mut out: Vec<Option<Arc<Target>>> = config
        .targets
        .iter()
        .map(|tc| {
            let i = (0..reuse.len()).find(|&i| !taken[i] && reuse[i].config.same_connection(tc))?;
            taken[i] = true;
            Some(reuse[i].clone())
        })
        .collect();
    for (i, tc) in config.targets.iter().enumerate() {
        if out[i].is_none() {
            out[i] = Some(Arc::new(new_entry(tc, out.iter().flatten())?));
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// A new pool for entry `tc`, inside the bound of a sibling entry (same target name) among
/// `built` if there is one.
fn new_entry<'a>(
    tc: &Arc<crate::config::TargetConfig>,
    mut built: impl Iterator<Item = &'a Arc<Target>>,
) -> Result<Target, StartupError> {
    let bound = built
        .find(|t| t.config.name == tc.name)
        .map(|t| t.bound.clone())
        .unwrap_or_else(|| crate::db::bound::Bound::new(tc.pool_size));
    Ok(Target::with_bound(tc.clone(), bound)?)
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
        let n = config.targets.len();
        let mut targets: Vec<Option<Arc<Target>>> = vec![None; n];
        let mut health: Vec<Option<Arc<Health>>> = vec![None; n];
        for ni in 0..n {
            if let Some((p, oi)) = previous.and_then(|(p, plan)| plan.targets[ni].map(|oi| (p, oi)))
            {
                p.targets[oi].reloaded();
                targets[ni] = Some(p.targets[oi].clone());
                health[ni] = Some(p.health[oi].clone());
            }
        }
        // New entries after the kept ones, so a new database of a kept target joins its
        // siblings' session bound.
        for (ni, tc) in config.targets.iter().enumerate() {
            if targets[ni].is_none() {
                targets[ni] = Some(Arc::new(new_entry(tc, targets.iter().flatten())?));
                health[ni] = Some(Health::new(true));
            }
        }
        Ok(Prepared {
            config,
            targets: targets.into_iter().flatten().collect(),
            health: health.into_iter().flatten().collect(),
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
        discovery: &Arc<crate::discovery::DiscoveryStats>,
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
                    crate::exposition::target_labels_text(
                        &tc.name,
                        (!tc.instance.home).then_some(tc.database.as_str()),
                        &tc.labels,
                    ),
                    Box::new(move || t2.stats()) as PoolStatsFn,
                )
            })
            .collect();
        let mut exposition =
            Exposition::new(store.clone(), pools, reload.clone()).with_discovery(discovery.clone());
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

/// What a reload is from: the file again, or the same file with changed discovered databases.
enum Source {
    File,
    Discovery,
}

/// Hands the running configuration over to a new one ([`crate::reload`]): on
/// [`Source::File`] the file is loaded again; either way the effective configuration is
/// expanded with the databases discovered so far, its pools built (everything that can fail,
/// while the old configuration runs untouched), and then applied in one step.
#[allow(clippy::too_many_arguments)]
async fn reload(
    source: Source,
    options: &DaemonOptions,
    declared: &mut Arc<Config>,
    discovery: &mut discover::Discovery,
    current: &mut Generation,
    web: &Web,
    retiring: &TaskTracker,
    retired: &mut Vec<std::sync::Weak<Runner>>,
    status: &Arc<ReloadStatus>,
    lifecycle: &Lifecycle,
) -> Result<(), String> {
    let result = (|| {
        let next_declared = match source {
            Source::File => {
                Arc::new(config::load(&options.config_path).map_err(|e| e.to_string())?)
            }
            Source::Discovery => declared.clone(),
        };
        // Discovered sets of targets that still discover are kept (re-selected with the new
        // include/exclude); the others are forgotten once the reload succeeds.
        let mut known = discovery.discovered.clone();
        known.retain_configured(&next_declared);
        let config = Arc::new(crate::discovery::expand(&next_declared, &known));
        let plan = crate::reload::plan(&current.config, &config);
        // Everything that can fail, while the old configuration runs untouched.
        let prepared = Prepared::new(config, Some((current, &plan))).map_err(|e| e.to_string())?;
        // From here on nothing fails.
        let (next, live) = Generation::start(
            prepared,
            Some((current, &plan)),
            status,
            lifecycle,
            &discovery.stats,
        );
        // The page cache keeps what it worked out for the slots the reload kept.
        live.pages.carry_from(&web.live().pages, &plan.slots);
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
        *declared = next_declared;
        discovery.configure(declared);
        Ok::<_, String>(())
    })();
    match source {
        Source::File => {
            status.record(result.is_ok());
            match &result {
                Ok(()) => {
                    tracing::info!(path = %options.config_path.display(), "configuration reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "configuration reload failed; the previous configuration keeps running")
                }
            }
        }
        Source::Discovery => {
            if let Err(e) = &result {
                tracing::error!(error = %e, "the new databases could not be set up; the previous ones keep running");
            }
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
    // `declared` is the file as written; the generations run its expansion with the
    // databases discovered so far (`crate::discovery`).
    let mut declared = Arc::new(config);
    let mut discovery = discover::Discovery::new(&declared);
    let config = Arc::new(crate::discovery::expand(&declared, &discovery.discovered));
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
    let (mut current, live) =
        Generation::start(prepared, None, &status, &lifecycle, &discovery.stats);

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
        let next_discovery = discovery.next_due();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = maintenance.tick() => current.maintain(),
            Some(answer) = reload_rx.recv() => {
                let r = reload(Source::File, &options, &mut declared, &mut discovery, &mut current, &web, &retiring, &mut retired, &status, &lifecycle).await;
                let _ = answer.send(r);
            }
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = reload(Source::File, &options, &mut declared, &mut discovery, &mut current, &web, &retiring, &mut retired, &status, &lifecycle).await;
            }
            () = async { match next_discovery { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                discovery.start_due(&current, &declared);
            }
            Some(answer) = discovery.rx.recv() => {
                if discovery.finish(&declared, answer) {
                    let _ = reload(Source::Discovery, &options, &mut declared, &mut discovery, &mut current, &web, &retiring, &mut retired, &status, &lifecycle).await;
                }
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
    discovery.stop();
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
