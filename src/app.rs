//! Wiring: builds the pools, the snapshot, the runner, the scheduler and the HTTP server from a
//! validated config, and tears them down in order. Two entry points: [`run_daemon`] (the
//! long-running exporter) and [`run_once`] (every check once, for cron jobs and CI).
//!
//! Shutdown goes through one [`CancellationToken`] taken as a parameter, so tests and `main`
//! drive it the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive;
use crate::archive::lifecycle::Lifecycle;
use crate::config::{self, Config};
use crate::db::{SetupError, Target};
use crate::exposition::{Exposition, PoolStatsFn};
use crate::http::{self, Live, ReloadRequest, Web};
use crate::schedule::{Runner, Scheduler};
use crate::snapshot::{ReloadStatus, Store};
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
    #[error("scheduler: {0}")]
    Scheduler(String),
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

async fn close_pools(targets: &[Arc<Target>]) {
    for t in targets {
        t.close().await;
        tracing::info!(target = %t.config.name, "pool closed");
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
    runner: Arc<Runner>,
    scheduler: Scheduler,
}

impl Generation {
    /// Starts a configuration. `previous` (on reload) lends unchanged pools, slot state and
    /// overlap guards, and forwards its in-flight results here.
    async fn start(
        config: Arc<Config>,
        previous: Option<&Generation>,
        reload: &Arc<ReloadStatus>,
        lifecycle: &Lifecycle,
    ) -> Result<(Self, Live), StartupError> {
        // Pools: keep a target's pool when its settings did not change.
        let mut kept_targets = vec![None; previous.map_or(0, |p| p.targets.len())];
        let mut targets = Vec::with_capacity(config.targets.len());
        for (ni, tc) in config.targets.iter().enumerate() {
            let reused = previous.and_then(|p| {
                p.targets.iter().position(|t| *t.config == **tc).map(|oi| {
                    kept_targets[oi] = Some(ni);
                    p.targets[oi].clone()
                })
            });
            targets.push(match reused {
                Some(t) => {
                    t.reloaded().await;
                    t
                }
                None => Arc::new(Target::new(tc.clone())?),
            });
        }
        let store = Arc::new(Store::new(&config));
        let slots = store.read().slots.len();
        let mut guards = vec![None; slots];
        let mut run_now = vec![true; slots];
        if let Some(p) = previous {
            let mapping = store.adopt(&p.runner.store, &kept_targets);
            for (old, new) in mapping.iter().enumerate() {
                if let Some(n) = *new {
                    guards[n] = Some(p.runner.guards(old));
                    run_now[n] = false;
                }
            }
            p.runner.store.retire(store.clone(), mapping);
        }
        let runner = Runner::with_archiver(
            config.clone(),
            targets.clone(),
            store.clone(),
            guards,
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
        let scheduler = Scheduler::start(&runner, &run_now)
            .await
            .map_err(|e| StartupError::Scheduler(e.to_string()))?;
        let pools: Vec<(String, PoolStatsFn)> = targets
            .iter()
            .map(|t| {
                let t2 = t.clone();
                (
                    t.config.name.clone(),
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
        Ok((
            Generation {
                config,
                targets,
                runner,
                scheduler,
            },
            live,
        ))
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

/// Loads the file again and, if it is valid, swaps the running configuration.
async fn reload(
    options: &DaemonOptions,
    current: &mut Generation,
    web: &Web,
    retiring: &TaskTracker,
    status: &Arc<ReloadStatus>,
    lifecycle: &Lifecycle,
) -> Result<(), String> {
    let result = async {
        let config = config::load(&options.config_path).map_err(|e| e.to_string())?;
        let (next, live) = Generation::start(Arc::new(config), Some(current), status, lifecycle)
            .await
            .map_err(|e| e.to_string())?;
        web.swap(live);
        let old = std::mem::replace(current, next);
        old.scheduler.stop().await;
        // In-flight runs of the old configuration finish on their own deadlines; pools the
        // new configuration does not use close after them.
        let keep: Vec<Arc<Target>> = current.targets.clone();
        retiring.spawn(async move {
            old.runner.retire().await;
            let gone: Vec<Arc<Target>> = old
                .targets
                .iter()
                .filter(|t| !keep.iter().any(|k| Arc::ptr_eq(k, t)))
                .cloned()
                .collect();
            close_pools(&gone).await;
        });
        Ok::<_, String>(())
    }
    .await;
    status.record(result.is_ok());
    match &result {
        Ok(()) => tracing::info!(path = %options.config_path.display(), "configuration reloaded"),
        Err(e) => {
            tracing::error!(error = %e, "configuration reload failed; the previous configuration keeps running")
        }
    }
    result
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
    let (mut current, live) = Generation::start(config, None, &status, &lifecycle).await?;

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
    // Retire old connections every so often (Redshift drops idle sessions after hours).
    let mut maintenance = tokio::time::interval(Duration::from_secs(30));
    maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = maintenance.tick() => current.maintain(),
            Some(answer) = reload_rx.recv() => {
                let r = reload(&options, &mut current, &web, &retiring, &status, &lifecycle).await;
                let _ = answer.send(r);
            }
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = reload(&options, &mut current, &web, &retiring, &status, &lifecycle).await;
            }
        }
    }

    let drain = current.config.exporter.drain_timeout;
    tracing::info!(
        drain_timeout = %humantime::format_duration(drain),
        "shutting down: no new runs; waiting for running checks"
    );
    current.scheduler.stop().await;
    current.runner.drain(drain, &options.abort).await;
    retiring.close();
    if tokio::time::timeout(drain, retiring.wait()).await.is_err() {
        tracing::warn!("runs of a previous configuration were still going at shutdown");
    }
    lifecycle.shutdown(drain).await;
    close_pools(&current.targets).await;
    http_stop.cancel();
    let _ = server.await;
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
    let runner = Runner::with_archiver(
        config.clone(),
        targets.clone(),
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
    runner
        .drain(Duration::from_secs(0), &CancellationToken::new())
        .await;
    lifecycle.enforce_now().await;
    let grace = config
        .exporter
        .archive
        .s3
        .as_ref()
        .map_or(Duration::ZERO, |s| s.timeout);
    lifecycle.shutdown(grace).await;
    close_pools(&targets).await;
    Ok(lines)
}
