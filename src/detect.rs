//! Capability detection, per target: asks the database what the target's user may read — on
//! one pooled session, the relation families first, then every other system relation the
//! target's checks name — and records the decision in the snapshot store, which gates the
//! target's slots on it.
//!
//! Owns the per-target lock (one detection per target at a time: the first runs after start-up
//! all want it, and all but one wait and then read the answer) and the log lines that say what
//! was decided and which grant would open what is closed. The decisions themselves are
//! `capability`'s (pure); the probes are `db`'s. It does not decide when to detect again: the
//! store marks a target for re-detection when it goes down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capability::{self, Access, Capabilities, Family, FamilyProbes};
use crate::db::{CheckError, ErrorKind, Target};
use crate::snapshot::Store;

/// One lock per target of a configuration.
pub struct Detector {
    locks: Vec<tokio::sync::Mutex<()>>,
}

impl Detector {
    pub fn new(targets: usize) -> Self {
        Detector {
            locks: (0..targets).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// The capabilities of target `ti`: the known ones, or detected now within `deadline`
    /// (all probes together, waiting for another run's detection included). `Err` when no
    /// answer could be had (unreachable, timed out): nothing is recorded then, and the next
    /// run asks again.
    pub async fn capabilities(
        &self,
        ti: usize,
        target: &Target,
        store: &Store,
        deadline: Duration,
    ) -> Result<Arc<Capabilities>, CheckError> {
        let end = Instant::now() + deadline;
        let known = || {
            let st = store.read();
            let t = &st.targets[ti];
            t.capabilities.clone().filter(|_| !t.redetect)
        };
        if let Some(c) = known() {
            return Ok(c);
        }
        let _guard = tokio::time::timeout(deadline, self.locks[ti].lock())
            .await
            .map_err(|_| CheckError::new(ErrorKind::Timeout, "waiting for detection timed out"))?;
        if let Some(c) = known() {
            return Ok(c);
        }
        let previous = store.read().targets[ti].capabilities.clone();
        let caps = Arc::new(probe(ti, target, store, end).await?);
        let name = &target.config.name;
        tracing::info!(
            target = %name,
            deployment = caps.deployment.as_str(),
            families = %caps.readable_families().join(","),
            "detected deployment"
        );
        // Said once per target, and again only if a later detection answers differently.
        if previous
            .as_ref()
            .is_none_or(|p| p.families != caps.families)
        {
            for advice in capability::family_advice(&caps) {
                tracing::warn!(target = %name, "{advice}");
            }
        }
        store.set_capabilities(ti, caps.clone());
        let st = store.read();
        for s in st.slots.iter().filter(|s| s.target_index == ti) {
            if let Some(why) = &s.not_applicable {
                tracing::info!(check = %s.check.name, target = %s.target, reason = %why, "check skipped on this target");
            }
        }
        Ok(caps)
    }
}

/// Asks the database, on one session, until `end`.
async fn probe(
    ti: usize,
    target: &Target,
    store: &Store,
    end: Instant,
) -> Result<Capabilities, CheckError> {
    let left = || {
        end.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| CheckError::new(ErrorKind::Timeout, "detection timed out"))
    };
    let session = target.session(left()?).await?;
    // Two round trips: the families and the Serverless marker, then the relations the
    // target's checks name in the families that are open (each batch pipelined).
    let first: Vec<&str> = Family::ALL
        .iter()
        .map(|f| f.probe())
        .chain([capability::SERVERLESS_MARKER])
        .collect();
    let answers = session.probe_all(&first, left()?).await?;
    let mut families = [Access::Missing; 3];
    for (f, a) in Family::ALL.iter().zip(&answers) {
        families[*f as usize] = *a;
    }
    let probes = FamilyProbes {
        families,
        serverless_marker: answers[Family::ALL.len()],
    };
    let deployment = capability::deployment(&target.config.host, &probes);
    let checks: Vec<_> = {
        let st = store.read();
        st.slots
            .iter()
            .filter(|s| s.target_index == ti)
            .map(|s| s.check.clone())
            .collect()
    };
    let names = capability::relations_to_probe(checks.iter().map(|c| &**c), deployment, &probes);
    let asked: Vec<&str> = names.iter().map(String::as_str).collect();
    let answers = session.probe_all(&asked, left()?).await?;
    let relations = names.into_iter().zip(answers);
    Ok(capability::decide(&target.config.host, &probes, relations))
}
