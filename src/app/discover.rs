//! The daemon's discovery timer: when each discovering target's `pg_database` is read next,
//! the passes in flight, and what the last answers were ([`Discovered`]). Lives in the
//! daemon's loop, beside the configuration, so it outlives every generation: a reload keeps
//! the answers and the next due times.
//!
//! Owns the timing and the in-flight set. Does not own the query (`db::Target::databases`),
//! the selection or the expansion into entries (`crate::discovery`), or the handover a changed
//! set goes through (`super::apply`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Generation;
use crate::config::{Config, Databases};
use crate::db::CheckError;
use crate::discovery::{Discovered, DiscoveryStats, members};

/// The answer of one pass: (target name, names or why not).
pub(super) type Answer = (String, Result<Vec<String>, CheckError>);

pub(super) struct Discovery {
    /// The last answer per target, unfiltered.
    pub(super) discovered: Discovered,
    /// Next pass per discovering target.
    due: BTreeMap<String, Instant>,
    /// Targets whose pass is in flight (at most one each).
    running: BTreeSet<String>,
    tx: mpsc::Sender<Answer>,
    pub(super) rx: mpsc::Receiver<Answer>,
    pub(super) stats: Arc<DiscoveryStats>,
    /// Ends passes still in flight at shutdown.
    stop: CancellationToken,
}

impl Discovery {
    pub(super) fn new(declared: &Config) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let mut d = Discovery {
            discovered: Discovered::default(),
            due: BTreeMap::new(),
            running: BTreeSet::new(),
            tx,
            rx,
            stats: Arc::new(DiscoveryStats::default()),
            stop: CancellationToken::new(),
        };
        d.configure(declared);
        d
    }

    /// Follows a new configuration: targets that start discovering are due now (the first
    /// pass starts at once), the others are forgotten; answers are kept for the rest.
    pub(super) fn configure(&mut self, declared: &Config) {
        let now = Instant::now();
        let discovering: Vec<&crate::config::TargetConfig> = declared
            .targets
            .iter()
            .filter(|t| matches!(t.databases, Some(Databases::Discover { .. })))
            .map(|t| &**t)
            .collect();
        self.due
            .retain(|name, _| discovering.iter().any(|t| t.name == *name));
        for t in &discovering {
            self.due.entry(t.name.clone()).or_insert(now);
        }
        self.discovered.retain_configured(declared);
        self.stats.configure(
            &discovering
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        crate::exposition::target_labels_text(&t.name, None, &t.labels),
                    )
                })
                .collect::<Vec<_>>(),
        );
    }

    /// When the next pass is due (none in flight for that target), if any.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.due
            .iter()
            .filter(|(n, _)| !self.running.contains(*n))
            .map(|(_, t)| *t)
            .min()
    }

    /// Starts every pass that is due, on the target's home entry of `current`, each within
    /// the exporter's default check timeout.
    pub(super) fn start_due(&mut self, current: &Generation, declared: &Config) {
        let now = Instant::now();
        let deadline = declared.exporter.default_timeout;
        let due: Vec<String> = self
            .due
            .iter()
            .filter(|(n, t)| **t <= now && !self.running.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let Some(i) = current
                .config
                .targets
                .iter()
                .position(|t| t.name == name && t.instance.home)
            else {
                continue;
            };
            let target = current.targets[i].clone();
            let tx = self.tx.clone();
            let stop = self.stop.clone();
            self.running.insert(name.clone());
            tokio::spawn(async move {
                let result = tokio::select! {
                    r = target.databases(deadline) => r,
                    _ = stop.cancelled() => return,
                };
                let _ = tx.send((name, result)).await;
            });
        }
    }

    /// Takes an answer: schedules the next pass, counts a failure (logged once per pass, the
    /// last known set kept), records names. True when the databases per-database checks run
    /// on changed, so the caller re-plans.
    pub(super) fn finish(&mut self, declared: &Config, answer: Answer) -> bool {
        let (name, result) = answer;
        self.running.remove(&name);
        let Some(t) = declared.targets.iter().find(|t| t.name == name) else {
            return false;
        };
        if let Some(due) = self.due.get_mut(&name) {
            *due = Instant::now() + t.databases_refresh;
        }
        match result {
            Err(e) => {
                self.stats.failed(&name, e.kind);
                tracing::warn!(target = %name, kind = e.kind.as_str(), error = %e.message, "database discovery failed; keeping the last known databases");
                false
            }
            Ok(names) => {
                let before = members(declared, &self.discovered);
                if let Some(Databases::Discover { .. }) = &t.databases {
                    let sel = t.databases.as_ref().map(|d| d.select(&names));
                    if let Some((kept, unusable)) = &sel {
                        self.stats.answered(&name, kept.len());
                        if !unusable.is_empty() && self.discovered.get(&name).is_none() {
                            tracing::warn!(target = %name, databases = ?unusable, "databases left out: their names cannot be used in labels and archive folders");
                        }
                    }
                }
                self.discovered.record(&name, names);
                let after = members(declared, &self.discovered);
                if before != after {
                    let i = declared.targets.iter().position(|t| t.name == name);
                    if let Some(dbs) = i.and_then(|i| after[i].as_ref()) {
                        tracing::info!(target = %name, databases = ?dbs, "the target's databases changed");
                    }
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Ends passes in flight (shutdown).
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}
