//! Wiring: builds the pools, the snapshot, the runner, the scheduler and the HTTP server from a
//! validated config, and tears them down in order. Two entry points: [`run_daemon`] (the
//! long-running exporter) and [`run_once`] (every check once, for cron jobs and CI).
//!
//! Shutdown goes through one [`CancellationToken`] taken as a parameter, so tests and `main`
//! drive it the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::archive;
use crate::config::Config;
use crate::db::{SetupError, Target};
use crate::exposition::{Exposition, PoolStatsFn};
use crate::http::{self, Web};
use crate::schedule::{Runner, Scheduler};
use crate::snapshot::Store;

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

/// Runs the exporter until `shutdown` fires, then drains and closes everything.
pub async fn run_daemon(
    config: Config,
    listen_override: Option<String>,
    shutdown: CancellationToken,
) -> Result<(), StartupError> {
    let config = Arc::new(config);
    let address = listen_override.unwrap_or_else(|| config.exporter.listen_address.clone());
    let listener = http::bind(&address)
        .await
        .map_err(|source| StartupError::Listen {
            address: address.clone(),
            source,
        })?;
    let targets = build_targets(&config)?;
    clean_archive(&config);
    if unsafe { libc::geteuid() } == 0 {
        tracing::warn!("running as root; a dedicated unprivileged user is safer");
    }

    let store = Arc::new(Store::new(&config));
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
    let web = Arc::new(Web {
        exposition: Exposition::new(store.clone(), pools),
        store: store.clone(),
    });
    let http_stop = CancellationToken::new();
    if let Some(a) = http::local_addr(&listener) {
        tracing::info!(address = %a, "listening");
    }
    let server = tokio::spawn(http::serve(listener, web, http_stop.clone()));

    let runner = Runner::new(config.clone(), targets.clone(), store.clone());
    for (ti, t) in config.targets.iter().enumerate() {
        if let Some(d) = t.deployment {
            runner.store.set_deployment(ti, d);
            runner.log_gating(ti);
        }
    }
    let scheduler = Scheduler::start(&runner)
        .await
        .map_err(|e| StartupError::Scheduler(e.to_string()))?;
    tracing::info!(
        checks = config.checks.len(),
        targets = config.targets.len(),
        "exporter started"
    );

    // Retire old connections in the background (Redshift drops idle sessions after hours).
    let maintenance = {
        let targets = targets.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                for t in &targets {
                    let n = t.retire_old_connections();
                    if n > 0 {
                        tracing::debug!(target = %t.config.name, retired = n, "retired old connections");
                    }
                }
            }
        })
    };

    shutdown.cancelled().await;
    tracing::info!(
        drain_timeout = %humantime::format_duration(config.exporter.drain_timeout),
        "shutting down: no new runs; waiting for running checks"
    );
    scheduler.stop().await;
    runner.drain(config.exporter.drain_timeout).await;
    let _ = maintenance.await;
    close_pools(&targets).await;
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
    let runner = Runner::new(config.clone(), targets.clone(), store.clone());
    for (ti, t) in config.targets.iter().enumerate() {
        if let Some(d) = t.deployment {
            store.set_deployment(ti, d);
        }
    }
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
    runner.drain(Duration::from_secs(0)).await;
    close_pools(&targets).await;
    Ok(lines)
}
