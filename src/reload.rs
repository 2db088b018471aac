//! The reload handover: what a new configuration takes over from the running one.
//!
//! Two steps. [`plan`] is pure: it compares the two configurations and decides, per new
//! target, which old pool (with its connection state, its recovery probe and its detected
//! state) it keeps, and per new slot (check × target) what it keeps — everything
//! ([`Carry::Unchanged`]: status, samples, counters, the slot's clock with its next due
//! time and its run lock), counters only ([`Carry::Counters`]: the check or its target
//! changed; it runs at once) or nothing ([`Carry::Fresh`]: it runs at once). It also says,
//! per old slot, which new slot receives the results of a run still in flight, and which old
//! pools nobody keeps (closed once the old runs are over). Unit-tested without I/O.
//!
//! Then `app` applies it: everything that can fail (new pools, TLS files) is built first,
//! while the old configuration keeps running untouched; only then, in one step that has no
//! error path, the new store adopts the old one's state, skip states are recomputed
//! ([`crate::snapshot::Store::regate`]), the new slot tasks start, the web server's `Arc` is
//! swapped, the old slot tasks are told to stop (a run in flight finishes and records into
//! the new store) and the old generation is retired in the background.
//!
//! Invariants (tested below and in `tests/it/reload.rs`):
//! - an unchanged check on an unchanged target keeps its due time, so reloads never delay
//!   or repeat its runs, and shares its run lock, so it never overlaps itself;
//! - a changed or new check runs at once;
//! - counters of a (check, target) series never go back while the series exists;
//! - a changed target gets a new pool and forgets what was detected about it;
//! - with several databases per target (the effective configuration of
//!   [`crate::discovery::expand`]), each (target, database) entry is matched on its own: a
//!   database that appears gets a pool and runs at once, one that goes closes its pool and its
//!   slots' series disappear, the others keep pools, clocks and counters.

use crate::config::Config;
use crate::discovery::slot_database;
use crate::snapshot::{Carry, slot_keys};

/// The handover from one configuration to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per new target: the old target whose pool, recovery state and detected state it
    /// keeps (its settings are identical); `None` builds a new pool.
    pub targets: Vec<Option<usize>>,
    /// Per new slot (in [`slot_keys`] order): what it keeps.
    pub slots: Vec<Carry>,
    /// Per old slot: the new slot that continues it unchanged (late results go there).
    pub forward: Vec<Option<usize>>,
    /// Old targets that no new target keeps: closed after the old generation's runs end.
    pub close: Vec<usize>,
}

impl Plan {
    /// The slots that must run at once (new, or changed in a way that invalidates their
    /// schedule or state).
    pub fn run_now(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c, Carry::Unchanged(_)))
            .map(|(i, _)| i)
    }
}

/// Decides the handover from `old` to `new`. Pure.
pub fn plan(old: &Config, new: &Config) -> Plan {
    // Targets: a new target keeps an old pool when every connection setting is the same
    // (name included; static labels may differ: they are not part of the connection); each
    // old pool goes to at most one new target.
    let mut taken = vec![false; old.targets.len()];
    let targets: Vec<Option<usize>> = new
        .targets
        .iter()
        .map(|nt| {
            let oi = (0..old.targets.len())
                .find(|&oi| !taken[oi] && old.targets[oi].same_connection(nt))?;
            taken[oi] = true;
            Some(oi)
        })
        .collect();
    let close = (0..old.targets.len()).filter(|&oi| !taken[oi]).collect();

    let old_slots = slot_keys(old);
    let mut forward = vec![None; old_slots.len()];
    let slots = slot_keys(new)
        .into_iter()
        .enumerate()
        .map(|(ni, (ci, ti))| {
            let check = &new.checks[ci];
            let target_name = &new.targets[ti].name;
            // A slot is (check, target, database of a per-database check): the same check
            // on another database of the target is another series.
            let database = slot_database(new, ci, ti);
            let Some(oi) = old_slots.iter().position(|&(oc, ot)| {
                old.checks[oc].name == check.name
                    && old.targets[ot].name == *target_name
                    && slot_database(old, oc, ot) == database
            }) else {
                return Carry::Fresh;
            };
            let (oc, ot) = old_slots[oi];
            if targets[ti] == Some(ot) && old.checks[oc].same_as(check) {
                forward[oi] = Some(ni);
                Carry::Unchanged(oi)
            } else {
                Carry::Counters(oi)
            }
        })
        .collect();
    Plan {
        targets,
        slots,
        forward,
        close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(text, |_| None).unwrap_or_else(|p| panic!("{p:?}"))
    }

    fn target(name: &str, port: u16) -> String {
        format!(
            "[targets.{name}]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"u\"\npassword = \"p\"\nsslmode = \"disable\"\n"
        )
    }

    fn check(name: &str, query: &str, extra: &str) -> String {
        format!("[[checks]]\nname = \"{name}\"\nquery = \"{query}\"\nvalues = [\"v\"]\n{extra}\n")
    }

    #[test]
    fn unchanged_checks_keep_everything_changed_and_new_run_at_once() {
        let old = config(
            &(target("a", 1)
                + &check("keep", "SELECT 1 AS v", "interval = \"5s\"")
                + &check("edit", "SELECT 2 AS v", "")
                + &check("gone", "SELECT 3 AS v", "")),
        );
        let new = config(
            &(target("a", 1)
                + &check("fresh", "SELECT 4 AS v", "")
                + &check("edit", "SELECT 22 AS v", "")
                + &check("keep", "SELECT 1 AS v", "interval = \"5s\"")),
        );
        let p = plan(&old, &new);
        assert_eq!(p.targets, vec![Some(0)]);
        assert!(p.close.is_empty());
        // new order: fresh, edit, keep; old order: keep, edit, gone
        assert_eq!(
            p.slots,
            vec![Carry::Fresh, Carry::Counters(1), Carry::Unchanged(0)]
        );
        assert_eq!(p.forward, vec![Some(2), None, None]);
        assert_eq!(p.run_now().collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn a_schedule_change_is_a_change() {
        let old = config(&(target("a", 1) + &check("c", "SELECT 1 AS v", "interval = \"5s\"")));
        let new = config(&(target("a", 1) + &check("c", "SELECT 1 AS v", "interval = \"6s\"")));
        assert_eq!(plan(&old, &new).slots, vec![Carry::Counters(0)]);
        let cron = config(
            &(target("a", 1) + &check("c", "SELECT 1 AS v", "schedule = \"0 */5 * * * *\"")),
        );
        assert_eq!(plan(&old, &cron).slots, vec![Carry::Counters(0)]);
    }

    #[test]
    fn a_changed_target_gets_a_new_pool_and_its_slots_run_at_once() {
        let old = config(&(target("a", 1) + &target("b", 2) + &check("c", "SELECT 1 AS v", "")));
        // b moves to another port; a is untouched
        let new = config(&(target("a", 1) + &target("b", 3) + &check("c", "SELECT 1 AS v", "")));
        let p = plan(&old, &new);
        assert_eq!(p.targets, vec![Some(0), None]);
        assert_eq!(p.close, vec![1]);
        // slots: (c, a), (c, b)
        assert_eq!(p.slots, vec![Carry::Unchanged(0), Carry::Counters(1)]);
        assert_eq!(p.forward, vec![Some(0), None]);
    }

    #[test]
    fn removed_and_renamed_targets_carry_nothing() {
        let old = config(&(target("a", 1) + &target("b", 2) + &check("c", "SELECT 1 AS v", "")));
        let new = config(&(target("z", 1) + &check("c", "SELECT 1 AS v", "")));
        let p = plan(&old, &new);
        // a renamed target is a different target (its name is a label): new pool
        assert_eq!(p.targets, vec![None]);
        assert_eq!(p.close, vec![0, 1]);
        assert_eq!(p.slots, vec![Carry::Fresh]);
        assert_eq!(p.forward, vec![None, None]);
    }

    #[test]
    fn moving_a_target_in_the_file_keeps_its_pool() {
        let old = config(&(target("a", 1) + &target("b", 2) + &check("c", "SELECT 1 AS v", "")));
        let new = config(&(target("b", 2) + &target("a", 1) + &check("c", "SELECT 1 AS v", "")));
        let p = plan(&old, &new);
        let a_new = new.targets.iter().position(|t| t.name == "a").unwrap();
        let a_old = old.targets.iter().position(|t| t.name == "a").unwrap();
        assert_eq!(p.targets[a_new], Some(a_old));
        assert!(p.close.is_empty());
        assert!(p.slots.iter().all(|c| matches!(c, Carry::Unchanged(_))));
    }

    #[test]
    fn the_plan_is_applied_by_the_store_and_regate_marks_new_skips() {
        use crate::config::Deployment;
        use crate::snapshot::{RunRecord, Store};
        let old_cfg = config(&(target("a", 1) + &check("keep", "SELECT 1 AS v", "")));
        let new_cfg = config(
            &(target("a", 1)
                + &check("keep", "SELECT 1 AS v", "")
                + &check("only_sl", "SELECT 1 AS v", "deployment = [\"serverless\"]")),
        );
        let old = Store::new(&old_cfg);
        old.set_capabilities(
            0,
            std::sync::Arc::new(crate::capability::Capabilities::forced(
                Deployment::Provisioned,
            )),
        );
        old.record_run(
            0,
            RunRecord {
                started: std::time::SystemTime::now(),
                duration: std::time::Duration::ZERO,
                outcome: Ok((1, Default::default())),
            },
        );
        let p = plan(&old_cfg, &new_cfg);
        let new = Store::new(&new_cfg);
        new.adopt(&old, &p.targets, &p.slots);
        assert!(
            !new.ready(),
            "the new gated slot is not marked before regate"
        );
        new.regate();
        let st = new.read();
        assert_eq!(
            st.targets[0].capabilities.as_ref().map(|c| c.deployment),
            Some(Deployment::Provisioned)
        );
        assert!(st.slots[0].status.ran);
        assert_eq!(st.slots[0].counters.runs, old.read().slots[0].counters.runs);
        assert!(st.slots[1].not_applicable.is_some());
        drop(st);
        assert!(new.ready());
    }

    #[test]
    fn a_changed_database_set_keeps_the_unchanged_databases() {
        use crate::discovery::{Discovered, expand};
        let declared = config(
            &(target("a", 1).replace(
                "[targets.a]\n",
                "[targets.a]\ndatabase = \"dev\"\ndatabases = { include = [\"*\"] }\n",
            ) + &check("wlm", "SELECT 1 AS v", "")
                + &check("tables", "SELECT 1 AS v", "scope = \"database\"")),
        );
        let mut d = Discovered::default();
        d.record("a", vec!["dev".into(), "sales".into()]);
        let old = expand(&declared, &d);
        d.record("a", vec!["dev".into(), "ops".into()]);
        let new = expand(&declared, &d);
        // entries: old dev, sales; new dev, ops
        let p = plan(&old, &new);
        assert_eq!(
            p.targets,
            vec![Some(0), None],
            "dev keeps its pool, ops gets one"
        );
        assert_eq!(p.close, vec![1], "sales' pool closes");
        // slots: (wlm, dev), (tables, dev), (tables, ops|sales)
        assert_eq!(
            p.slots,
            vec![Carry::Unchanged(0), Carry::Unchanged(1), Carry::Fresh]
        );
        assert_eq!(p.forward, vec![Some(0), Some(1), None]);
        assert_eq!(
            p.run_now().collect::<Vec<_>>(),
            vec![2],
            "the new database runs at once"
        );
    }
}
