//! Fast, gentle recovery of a target that cannot be reached.
//!
//! When a run cannot open a session (`ErrorKind::Connect` / `Auth`), the *target* is marked
//! down and one probe task per target tries to take a session from its pool again with capped
//! exponential backoff ([`FIRST_RETRY`], doubling, at most [`MAX_RETRY`]): one connection
//! attempt at a time, however many checks use the target. While it is down, a check that
//! falls due does not connect: it is recorded as failed (kind `connect`) without touching the
//! network. As soon as a probe succeeds (or any run reaches the server), the recovery epoch
//! is bumped and every slot whose last run failed for that reason runs at once, whatever its
//! interval. A check that failed on its own (query error, column mismatch, timeout) waits for
//! its schedule.
//!
//! A [`Health`] belongs to a pool: the reload plan carries it with an unchanged target.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::{ErrorKind, Target};

/// First probe after a target was found down.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest gap between two probes.
pub const MAX_RETRY: Duration = Duration::from_secs(3);

/// Reachability of one target and its probe.
pub struct Health {
    down: AtomicBool,
    probing: AtomicBool,
    /// Bumped each time the target is reachable again after being down.
    recovered: watch::Sender<u64>,
    /// Whether a down target is probed (the daemon); `once` runs each check once only.
    probe: bool,
    /// Ends the probe (shutdown, or the pool is retired).
    stop: CancellationToken,
}

impl Health {
    pub fn new(probe: bool) -> Arc<Self> {
        Arc::new(Health {
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            recovered: watch::Sender::new(0),
            probe,
            stop: CancellationToken::new(),
        })
    }

    /// True while the target is known to be unreachable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Fires (changes) each time the target is reachable again.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.recovered.subscribe()
    }

    /// A run could not open a session: the target is down; start its probe unless one runs.
    pub fn report_down(self: &Arc<Self>, target: &Arc<Target>) {
        let was = self.down.swap(true, Ordering::AcqRel);
        if !was {
            tracing::warn!(target = %target.config.name, "target unreachable; probing it with backoff, checks resume as soon as it answers");
        }
        if !self.probe || self.stop.is_cancelled() || self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, target) = (self.clone(), target.clone());
        tokio::spawn(async move {
            loop {
                me.probe_until_up(&target).await;
                me.probing.store(false, Ordering::Release);
                // A failure reported between the probe's success and clearing the flag
                // found a probe running and started none: go on probing.
                if !me.is_down()
                    || me.stop.is_cancelled()
                    || me.probing.swap(true, Ordering::AcqRel)
                {
                    break;
                }
            }
        });
    }

    /// A run reached the server (whatever its outcome).
    pub fn report_up(&self, target: &str) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(%target, "target reachable again; re-running the checks that failed on it");
            self.recovered.send_modify(|n| *n += 1);
        }
    }

    /// Ends the probe.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    async fn probe_until_up(&self, target: &Target) {
        let mut delay = FIRST_RETRY;
        let mut attempts = 0u32;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            if !self.is_down() {
                // A run reached the server meanwhile.
                break;
            }
            attempts += 1;
            let attempt = tokio::select! {
                _ = self.stop.cancelled() => break,
                r = target.client(target.config.connect_timeout) => r,
            };
            match attempt {
                Ok(session) => {
                    // The session goes back to the pool for the runs that follow at once.
                    drop(session);
                    tracing::debug!(target = %target.config.name, attempts, "probe succeeded");
                    self.report_up(&target.config.name);
                    break;
                }
                // Every session busy: the server is answering someone.
                Err(e) if e.kind == ErrorKind::PoolTimeout => {
                    self.report_up(&target.config.name);
                    break;
                }
                Err(e) => {
                    tracing::debug!(target = %target.config.name, attempts, kind = e.kind.as_str(), error = %e.message, "probe failed");
                    delay = (delay * 2).min(MAX_RETRY);
                }
            }
        }
    }
}
