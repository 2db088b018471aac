//! Every database of a cluster: from the configuration as written (one entry per
//! `[targets.NAME]`) and what discovery has read of each target's `pg_database`, the
//! *effective* configuration the daemon runs — one target entry per (target, database),
//! each with its own pool, and each check pointing at the entries its `scope` says.
//!
//! Pure and unit-tested: [`expand`] and [`Discovered`]. The query itself is
//! [`crate::db::Target::databases`]; the timer that runs it and hands a changed set to the
//! reload handover is in `app`.
//!
//! Until a target's first discovery answer, only its home entry exists and it runs the
//! cluster-scoped checks: per-database checks have no slot there yet, so nothing is exported
//! for them (rather than a made-up 0) and readiness does not wait for a query that might be
//! refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, Databases, Instance, Scope};
use crate::db::ErrorKind;

/// What `/metrics` shows of discovery, per discovering target (process-wide: it outlives each
/// configuration, so counters never go back on a reload): the number of databases of the last
/// answer (absent before the first answer) and failed passes by error kind.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    targets: std::sync::Mutex<BTreeMap<String, TargetDiscovery>>,
}

/// One discovering target's numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetDiscovery {
    /// The target's labels as exposition text (`target="x"` and its static labels), set from
    /// the configuration.
    pub labels: String,
    /// Databases selected from the last answer; `None` until one came.
    pub databases: Option<usize>,
    /// Failed passes, indexed like [`ErrorKind::ALL`].
    pub errors: [u64; ErrorKind::COUNT],
}

impl DiscoveryStats {
    /// Keeps the targets that discover in the new configuration (with their labels as
    /// exposition text), forgetting the others.
    pub fn configure(&self, targets: &[(String, String)]) {
        let mut m = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|name, _| targets.iter().any(|(n, _)| n == name));
        for (name, labels) in targets {
            m.entry(name.clone()).or_default().labels = labels.clone();
        }
    }

    pub fn answered(&self, target: &str, databases: usize) {
        let mut m = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = m.get_mut(target) {
            t.databases = Some(databases);
        }
    }

    pub fn failed(&self, target: &str, kind: ErrorKind) {
        let mut m = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = m.get_mut(target) {
            t.errors[kind.index()] += 1;
        }
    }

    /// A copy, for one scrape.
    pub fn snapshot(&self) -> Vec<TargetDiscovery> {
        let m = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        m.values().cloned().collect()
    }
}

/// What is known of each discovering target's databases: the names of the last successful
/// `pg_database` answer, unfiltered (so a reload that changes `include`/`exclude` re-selects
/// from them without asking again). Targets whose discovery never answered are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    answers: BTreeMap<String, Vec<String>>,
}

impl Discovered {
    /// Records an answer for `target`; true when it differs from the last one.
    pub fn record(&mut self, target: &str, mut names: Vec<String>) -> bool {
        names.sort();
        names.dedup();
        if self.answers.get(target) == Some(&names) {
            return false;
        }
        self.answers.insert(target.to_string(), names);
        true
    }

    /// The last answer for `target`, if any.
    pub fn get(&self, target: &str) -> Option<&[String]> {
        self.answers.get(target).map(Vec::as_slice)
    }

    /// Forgets targets no longer configured to discover (a renamed or removed target, or one
    /// that switched to an explicit list).
    pub fn retain_configured(&mut self, declared: &Config) {
        self.answers.retain(|name, _| {
            declared
                .targets
                .iter()
                .any(|t| t.name == *name && matches!(t.databases, Some(Databases::Discover { .. })))
        });
    }
}

/// The databases per-database checks run on for each declared target: `None` while a
/// discovering target has not answered yet.
pub fn members(declared: &Config, discovered: &Discovered) -> Vec<Option<Vec<String>>> {
    declared
        .targets
        .iter()
        .map(|t| match &t.databases {
            None => Some(vec![t.database.clone()]),
            Some(Databases::List(l)) => {
                let mut l = l.clone();
                l.sort();
                Some(l)
            }
            Some(d @ Databases::Discover { .. }) => {
                discovered.get(&t.name).map(|names| d.select(names).0)
            }
        })
        .collect()
}

/// The effective configuration: per declared target, its home entry first (database =
/// `database`), then one entry per other member database in name order; each check's
/// `targets` point at the home entries (cluster scope) or at the member entries (database
/// scope) of its declared targets. A declared configuration without `databases` anywhere
/// expands to itself.
pub fn expand(declared: &Config, discovered: &Discovered) -> Config {
    let members = members(declared, discovered);
    let mut targets = Vec::new();
    // Per declared target: the index of its home entry and of each member entry.
    let mut homes = Vec::with_capacity(declared.targets.len());
    let mut member_entries: Vec<Vec<usize>> = Vec::with_capacity(declared.targets.len());
    for (t, members) in declared.targets.iter().zip(&members) {
        let members = members.as_deref().unwrap_or(&[]);
        let home_is_member = members.contains(&t.database);
        let mut home = (**t).clone();
        home.instance = Instance {
            home: true,
            member: home_is_member,
        };
        homes.push(targets.len());
        let mut mine = Vec::new();
        if home_is_member {
            mine.push(targets.len());
        }
        targets.push(Arc::new(home));
        for db in members.iter().filter(|d| **d != t.database) {
            let mut e = (**t).clone();
            e.database = db.clone();
            e.instance = Instance {
                home: false,
                member: true,
            };
            mine.push(targets.len());
            targets.push(Arc::new(e));
        }
        member_entries.push(mine);
    }
    let checks = declared
        .checks
        .iter()
        .map(|c| {
            let mut c2 = (**c).clone();
            c2.targets = c
                .targets
                .iter()
                .flat_map(|&ti| match c.scope {
                    Scope::Cluster => vec![homes[ti]],
                    Scope::Database => member_entries[ti].clone(),
                })
                .collect();
            Arc::new(c2)
        })
        .collect();
    Config {
        exporter: declared.exporter.clone(),
        targets,
        checks,
    }
}

/// The database a slot's series are labelled with: its entry's database for a per-database
/// check, none for a cluster-scoped one.
pub fn slot_database(config: &Config, check: usize, target: usize) -> Option<&str> {
    (config.checks[check].scope == Scope::Database)
        .then(|| config.targets[target].database.as_str())
}

/// The archive folder (and the check page's path segment) of a slot: `{target}` for a
/// cluster-scoped check, `{target}@{database}` for a per-database one. Target names cannot
/// contain `@` (`[a-z_][a-z0-9_-]*`) and database names cannot either
/// ([`crate::config::is_database_name`]), so the split is unambiguous.
pub fn folder(target: &str, database: Option<&str>) -> String {
    match database {
        None => target.to_string(),
        Some(db) => format!("{target}@{db}"),
    }
}

/// The inverse of [`folder`]: `(target, database)`.
pub fn split_folder(folder: &str) -> (&str, Option<&str>) {
    match folder.split_once('@') {
        Some((t, d)) => (t, Some(d)),
        None => (folder, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(text, |_| None).unwrap_or_else(|p| panic!("{p:?}"))
    }

    const CHECKS: &str = "[[checks]]\nname = \"wlm\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\n[[checks]]\nname = \"tables\"\nquery = \"SELECT 1 AS v\"\nvalues = [\"v\"]\nscope = \"database\"\n";

    fn entries(c: &Config) -> Vec<(String, String, bool, bool)> {
        c.targets
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.database.clone(),
                    t.instance.home,
                    t.instance.member,
                )
            })
            .collect()
    }

    #[test]
    fn a_target_without_databases_expands_to_itself() {
        let d = config(&format!(
            "[targets.a]\nhost = \"h\"\nuser = \"u\"\ndatabase = \"dev\"\n{CHECKS}"
        ));
        let e = expand(&d, &Discovered::default());
        assert_eq!(entries(&e), vec![("a".into(), "dev".into(), true, true)]);
        assert_eq!(e.checks[0].targets, vec![0]);
        assert_eq!(e.checks[1].targets, vec![0]);
        assert_eq!(slot_database(&e, 0, 0), None);
        assert_eq!(slot_database(&e, 1, 0), Some("dev"));
    }

    #[test]
    fn a_list_gives_one_entry_per_database_and_cluster_checks_run_at_home() {
        let d = config(&format!(
            "[targets.a]\nhost = \"h\"\nuser = \"u\"\ndatabase = \"dev\"\ndatabases = [\"sales\", \"dev\", \"ops\"]\n[targets.b]\nhost = \"h\"\nuser = \"u\"\ndatabase = \"home\"\ndatabases = [\"x\"]\n{CHECKS}"
        ));
        let e = expand(&d, &Discovered::default());
        assert_eq!(
            entries(&e),
            vec![
                ("a".into(), "dev".into(), true, true),
                ("a".into(), "ops".into(), false, true),
                ("a".into(), "sales".into(), false, true),
                // b's home is not one of its databases: cluster checks only
                ("b".into(), "home".into(), true, false),
                ("b".into(), "x".into(), false, true),
            ]
        );
        assert_eq!(e.checks[0].targets, vec![0, 3], "cluster: homes");
        assert_eq!(e.checks[1].targets, vec![0, 1, 2, 4], "database: members");
    }

    #[test]
    fn discovery_adds_entries_only_after_an_answer_and_filters_it() {
        let d = config(&format!(
            "[targets.a]\nhost = \"h\"\nuser = \"u\"\ndatabase = \"dev\"\ndatabases = {{ include = [\"*\"], exclude = [\"padb_harvest\"] }}\n{CHECKS}"
        ));
        let mut disc = Discovered::default();
        let before = expand(&d, &disc);
        assert_eq!(
            entries(&before),
            vec![("a".into(), "dev".into(), true, false)]
        );
        assert!(
            before.checks[1].targets.is_empty(),
            "no per-database slot before an answer"
        );
        assert!(disc.record(
            "a",
            vec!["sales".into(), "dev".into(), "padb_harvest".into()]
        ));
        assert!(
            !disc.record(
                "a",
                vec!["dev".into(), "padb_harvest".into(), "sales".into()]
            ),
            "same set, any order"
        );
        let after = expand(&d, &disc);
        assert_eq!(
            entries(&after),
            vec![
                ("a".into(), "dev".into(), true, true),
                ("a".into(), "sales".into(), false, true),
            ]
        );
        assert_eq!(after.checks[1].targets, vec![0, 1]);
        // the reload plan keeps the home pool: the entry's role is not part of the connection
        assert!(before.targets[0].same_connection(&after.targets[0]));
        assert!(!after.targets[0].same_connection(&after.targets[1]));
        // a dropped database goes
        assert!(disc.record("a", vec!["dev".into()]));
        assert_eq!(expand(&d, &disc).targets.len(), 1);
    }

    #[test]
    fn answers_of_targets_that_no_longer_discover_are_forgotten() {
        let mut disc = Discovered::default();
        disc.record("a", vec!["x".into()]);
        disc.record("gone", vec!["x".into()]);
        let d = config(&format!(
            "[targets.a]\nhost = \"h\"\nuser = \"u\"\ndatabases = {{ include = [\"*\"] }}\n{CHECKS}"
        ));
        disc.retain_configured(&d);
        assert!(disc.get("a").is_some());
        assert!(disc.get("gone").is_none());
    }

    #[test]
    fn folders_name_the_database_unambiguously() {
        assert_eq!(folder("a", None), "a");
        assert_eq!(folder("a-b", Some("dev")), "a-b@dev");
        assert_eq!(split_folder("a-b@dev"), ("a-b", Some("dev")));
        assert_eq!(split_folder("a"), ("a", None));
    }
}
