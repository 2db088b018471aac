//! `once`: every check (or the named ones) once on every target and, for per-database
//! checks, on every database (one discovery pass first), then the CSVs, uploads and a
//! retention pass. For cron jobs and CI.
//!
//! Owns the summary lines and exit data; the daemon's wiring is [`super`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{StartupError, build_entries, clean_archive, close_pools};
use crate::archive::lifecycle::Lifecycle;
use crate::config::{Config, Databases};
use crate::db::Target;
use crate::discovery::Discovered;
use crate::recovery::Health;
use crate::schedule::Runner;
use crate::snapshot::Store;

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
    // One discovery pass first (on the home entries, within each target's deadline), so
    // per-database checks run on every database; a failed pass leaves only the home entry.
    let declared = config;
    let homes = Arc::new(crate::discovery::expand(
        &declared,
        &crate::discovery::Discovered::default(),
    ));
    let home_targets = build_entries(&homes, &[])?;
    let discovered = discover_once(&declared, &homes, &home_targets).await;
    let config = Arc::new(crate::discovery::expand(&declared, &discovered));
    let targets = build_entries(&config, &home_targets)?;
    // Home entries the full configuration did not reuse (none today: kept for clarity).
    let unused: Vec<Arc<Target>> = home_targets
        .iter()
        .filter(|h| !targets.iter().any(|t| Arc::ptr_eq(t, h)))
        .cloned()
        .collect();
    close_pools(&unused, Instant::now() + Duration::from_secs(6)).await;
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
            let s = &st.slots[r.slot];
            // `target@database` for a per-database check, as its archive folder is named.
            (
                s.check.name.clone(),
                crate::discovery::folder(&s.target, s.database.as_deref()),
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

/// One discovery pass over the discovering targets, in parallel, each within the exporter's
/// default check timeout; a failure is one log line and leaves that target's home entry only.
async fn discover_once(declared: &Config, homes: &Config, targets: &[Arc<Target>]) -> Discovered {
    let deadline = declared.exporter.default_timeout;
    let passes = homes
        .targets
        .iter()
        .zip(targets)
        .filter(|(tc, _)| matches!(tc.databases, Some(Databases::Discover { .. })))
        .map(|(tc, t)| async move { (tc.name.clone(), t.databases(deadline).await) });
    let mut out = Discovered::default();
    for (name, result) in futures_util::future::join_all(passes).await {
        match result {
            Ok(names) => {
                out.record(&name, names);
            }
            Err(e) => {
                tracing::warn!(target = %name, kind = e.kind.as_str(), error = %e.message, "database discovery failed; per-database checks run on no database of this target")
            }
        }
    }
    out
}
