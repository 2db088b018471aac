//! What a target's monitoring user can read, what kind of Redshift that makes the target, and
//! which checks it can therefore run. Pure decisions, no I/O: `detect` asks the database and
//! hands the answers (one [`Access`] per probed relation) to [`decide`]; the snapshot store
//! asks [`applicability`] for each slot.
//!
//! Why probing by access and not by existence: Redshift Serverless *has* the STL/STV/SVL/SVCS
//! relations and refuses them with SQLSTATE 42501 (even to superusers; public reports:
//! datahub-project/datahub#12415, mage-ai/mage-ai#2754, awslabs/amazon-redshift-utils#648), a
//! Multi-AZ cluster refuses everything but the SYS_* views ("You can't use STL, SVCS, SVL, SVV,
//! STV views with Multi-AZ deployments", AWS Management Guide), and a provisioned user without
//! `sys:monitor` is refused the superuser-visible relations. 42501 ("refused") and 42P01
//! ("missing") are answers; anything else (a lost connection, a timeout) is not, and the caller
//! retries instead of deciding (`docs/checks.md`, "Deployments and grants").

use std::collections::BTreeMap;

use crate::config::{CheckConfig, Deployment};

/// What reading one relation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Readable,
    /// SQLSTATE 42501: the relation exists, this user may not read it.
    Refused,
    /// SQLSTATE 42P01: no such relation.
    Missing,
}

/// The relation families of Redshift's system catalogue, each known by one relation that any
/// user may read wherever the family is offered at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// STL log tables, STV snapshots, SVL and SVCS views (provisioned clusters).
    Stl,
    /// SVV views (provisioned; a few of them on Serverless).
    Svv,
    /// SYS_* monitoring views (every deployment).
    Sys,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Stl, Family::Svv, Family::Sys];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Stl => "stl",
            Family::Svv => "svv",
            Family::Sys => "sys",
        }
    }

    /// The relation whose access stands for the family's. All three are "visible to all users"
    /// in AWS's documentation, so a refusal means the family is closed, not a missing grant.
    pub fn probe(self) -> &'static str {
        match self {
            Family::Stl => "stv_slices",
            Family::Svv => "svv_transactions",
            Family::Sys => "sys_query_history",
        }
    }

    /// The family a system relation belongs to, by its prefix.
    pub fn of(relation: &str) -> Option<Family> {
        let prefix = relation.split('_').next()?;
        match prefix {
            "stl" | "stv" | "svl" | "svcs" => Some(Family::Stl),
            "svv" => Some(Family::Svv),
            "sys" => Some(Family::Sys),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Exists only on Serverless (AWS: SYS_SERVERLESS_USAGE); superuser-visible, so a monitoring
/// user may well be refused it, which still says "Serverless".
pub const SERVERLESS_MARKER: &str = "sys_serverless_usage";

/// Serverless endpoints end in this; provisioned ones in `.redshift.amazonaws.com`. Either can
/// hide behind a VPC endpoint, a tunnel or `hostaddr`, so the host is a hint on top of probes.
const SERVERLESS_HOST_SUFFIX: &str = ".redshift-serverless.amazonaws.com";

/// The answers of the family probes (the first step of detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyProbes {
    /// Indexed by [`Family`].
    pub families: [Access; 3],
    /// How [`SERVERLESS_MARKER`] answered.
    pub serverless_marker: Access,
}

impl FamilyProbes {
    pub fn family(&self, f: Family) -> Access {
        self.families[f.index()]
    }
}

/// What was decided about a target, exported as `redshift_exporter_target_info` and shown on
/// the landing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub deployment: Deployment,
    /// Set by the configuration (`deployment = "..."`): nothing was probed, every check of
    /// that deployment runs and a refusal shows as a failed check.
    pub forced: bool,
    /// Access per family (all `Readable` when forced).
    pub families: [Access; 3],
    /// Access of every other relation the target's checks name, where it was probed.
    pub relations: BTreeMap<String, Access>,
}

impl Capabilities {
    /// A deployment set in the configuration.
    pub fn forced(deployment: Deployment) -> Self {
        Capabilities {
            deployment,
            forced: true,
            families: [Access::Readable; 3],
            relations: BTreeMap::new(),
        }
    }

    /// The readable families, e.g. `["svv", "sys"]`.
    pub fn readable_families(&self) -> Vec<&'static str> {
        Family::ALL
            .into_iter()
            .filter(|f| self.families[f.index()] == Access::Readable)
            .map(Family::as_str)
            .collect()
    }

    /// How `relation` answers, as far as is known: probed, else its family's answer.
    pub fn access(&self, relation: &str) -> Access {
        if self.forced {
            return Access::Readable;
        }
        if let Some(a) = self.relations.get(relation) {
            return *a;
        }
        match Family::of(relation) {
            Some(f) => self.families[f.index()],
            None => Access::Readable,
        }
    }
}

/// The deployment the probes and the host name point to.
pub fn deployment(host: &str, probes: &FamilyProbes) -> Deployment {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.ends_with(SERVERLESS_HOST_SUFFIX) || probes.serverless_marker != Access::Missing {
        return Deployment::Serverless;
    }
    if probes.family(Family::Stl) == Access::Readable {
        return Deployment::Provisioned;
    }
    let redshift = probes.families.iter().any(|a| *a != Access::Missing);
    if redshift {
        Deployment::MultiAz
    } else {
        Deployment::Postgres
    }
}

/// The relations still to probe once the families are known: those named by `checks` that
/// apply to `deployment`, in a family that is readable (a closed family's relations are all
/// closed), other than the family probes themselves. Sorted, each once.
pub fn relations_to_probe<'a>(
    checks: impl IntoIterator<Item = &'a CheckConfig>,
    deployment: Deployment,
    probes: &FamilyProbes,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in checks.into_iter().filter(|c| c.applies_to(deployment)) {
        for r in &c.reads {
            let open = Family::of(r).is_some_and(|f| probes.family(f) == Access::Readable);
            let is_probe = Family::ALL.iter().any(|f| f.probe() == r);
            if open && !is_probe && !out.contains(r) {
                out.push(r.clone());
            }
        }
    }
    out.sort();
    out
}

/// Puts the answers together.
pub fn decide(
    host: &str,
    probes: &FamilyProbes,
    relations: impl IntoIterator<Item = (String, Access)>,
) -> Capabilities {
    let mut known: BTreeMap<String, Access> = relations.into_iter().collect();
    for f in Family::ALL {
        known.insert(f.probe().to_string(), probes.family(f));
    }
    known.insert(SERVERLESS_MARKER.to_string(), probes.serverless_marker);
    Capabilities {
        deployment: deployment(host, probes),
        forced: false,
        families: probes.families,
        relations: known,
    }
}

/// `None` when `check` can run on a target with `caps`; otherwise why not (for the log and the
/// landing page).
pub fn applicability(check: &CheckConfig, caps: &Capabilities) -> Option<String> {
    if !check.applies_to(caps.deployment) {
        let wants: Vec<&str> = check.deployments.iter().map(|d| d.as_str()).collect();
        return Some(format!(
            "check applies to {}; target is {}",
            wants.join(" and "),
            caps.deployment.as_str()
        ));
    }
    for r in &check.reads {
        match caps.access(r) {
            Access::Readable => {}
            Access::Refused => {
                return Some(format!(
                    "needs {r}, which this user may not read (42501); {}",
                    grant_hint(r)
                ));
            }
            Access::Missing => return Some(format!("needs {r}, which this database lacks")),
        }
    }
    None
}

/// The documented grant that opens `relation` to a monitoring user.
pub fn grant_hint(relation: &str) -> &'static str {
    match relation {
        // The two superuser-visible relations AWS documents a GRANT SELECT for.
        "svv_table_info" | "svcs_concurrency_scaling_usage" => {
            "GRANT ROLE sys:monitor TO <user>, or GRANT SELECT ON it"
        }
        _ => "GRANT ROLE sys:monitor TO <user> (or GRANT ACCESS SYSTEM TABLE TO ROLE <role>)",
    }
}

/// One sentence per family the user cannot read, saying what that means on this deployment and
/// which grant would open it: logged once per target after detection.
pub fn family_advice(caps: &Capabilities) -> Vec<String> {
    if caps.forced || caps.deployment == Deployment::Postgres {
        return Vec::new();
    }
    let mut out = Vec::new();
    for f in Family::ALL {
        if caps.families[f.index()] == Access::Readable {
            continue;
        }
        let text = match (f, caps.deployment) {
            (Family::Stl | Family::Svv, Deployment::Serverless) => continue,
            (Family::Stl, _) => {
                "STL/STV/SVL/SVCS relations are refused: running the SYS_* variants of the checks. \
                 A Multi-AZ cluster offers nothing else; on a single-AZ cluster GRANT ROLE sys:monitor \
                 TO <user> (or GRANT ACCESS SYSTEM TABLE) opens them, and ALTER USER <user> SYSLOG \
                 ACCESS UNRESTRICTED shows every user's rows in them"
            }
            (Family::Svv, _) => {
                "SVV views are refused (Multi-AZ clusters offer only SYS_* views): the table, lock \
                 and materialized-view checks are skipped"
            }
            (Family::Sys, _) => {
                "SYS_* monitoring views are refused: GRANT ROLE sys:monitor TO <user> opens them"
            }
        };
        out.push(format!("{} ({}): {text}", f.as_str(), f.probe()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Access::*;

    fn probes(stl: Access, svv: Access, sys: Access, marker: Access) -> FamilyProbes {
        FamilyProbes {
            families: [stl, svv, sys],
            serverless_marker: marker,
        }
    }

    fn check(name: &str, query: &str, deployments: &[Deployment]) -> CheckConfig {
        let text = format!(
            "[targets.t]\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\n\n[[checks]]\nname = \"{name}\"\nquery = \"{query}\"\nvalues = [\"v\"]\n"
        );
        let mut c = crate::config::parse(&text, |_| None).unwrap();
        let mut c = (*c.checks.remove(0)).clone();
        c.deployments = deployments.to_vec();
        c
    }

    #[test]
    fn the_deployment_follows_what_the_user_can_read() {
        // Provisioned, as a sys:monitor user or a superuser.
        let p = probes(Readable, Readable, Readable, Missing);
        assert_eq!(
            deployment("c.abc.eu-west-1.redshift.amazonaws.com", &p),
            Deployment::Provisioned
        );
        // Serverless refuses STL/STV (42501) and has the usage view, readable or not.
        let s = probes(Refused, Readable, Readable, Refused);
        assert_eq!(deployment("10.0.0.7", &s), Deployment::Serverless);
        let s = probes(Refused, Readable, Readable, Readable);
        assert_eq!(deployment("10.0.0.7", &s), Deployment::Serverless);
        // Multi-AZ: only SYS_* — and a provisioned user refused STL looks the same.
        let m = probes(Refused, Refused, Readable, Missing);
        assert_eq!(
            deployment("c.abc.us-east-1.redshift.amazonaws.com", &m),
            Deployment::MultiAz
        );
        // The Serverless host name decides even behind a refused usage view.
        let hinted = probes(Refused, Readable, Readable, Missing);
        assert_eq!(
            deployment(
                "wg.123456789012.us-east-1.redshift-serverless.amazonaws.com.",
                &hinted
            ),
            Deployment::Serverless
        );
        assert_eq!(deployment("10.0.0.7", &hinted), Deployment::MultiAz);
        // Nothing of Redshift's exists: plain PostgreSQL.
        let pg = probes(Missing, Missing, Missing, Missing);
        assert_eq!(deployment("db.internal", &pg), Deployment::Postgres);
    }

    #[test]
    fn checks_are_gated_on_their_deployment_and_the_relations_they_read() {
        use Deployment::*;
        let disk = check(
            "disk",
            "SELECT 1::float8 AS v FROM stv_partitions",
            &[Provisioned],
        );
        let q = check("q", "SELECT 1::float8 AS v FROM stl_query", &[Provisioned]);
        let q_sys = check(
            "q_sys",
            "SELECT 1::float8 AS v FROM sys_query_history",
            &[Serverless, MultiAz],
        );
        let locks = check(
            "locks",
            "SELECT 1::float8 AS v FROM svv_transactions",
            &Deployment::ALL,
        );
        let plain = check("plain", "SELECT 1::float8 AS v", &Deployment::ALL);

        // A provisioned user without sys:monitor: stv_partitions is refused, stl_query is not.
        let p = probes(Readable, Readable, Readable, Missing);
        let todo = relations_to_probe([&disk, &q, &q_sys, &locks, &plain], Provisioned, &p);
        assert_eq!(todo, ["stl_query", "stv_partitions"]);
        let caps = decide(
            "h",
            &p,
            [
                ("stl_query".into(), Readable),
                ("stv_partitions".into(), Refused),
            ],
        );
        assert_eq!(caps.deployment, Provisioned);
        let why = applicability(&disk, &caps).unwrap();
        assert!(
            why.contains("stv_partitions") && why.contains("sys:monitor"),
            "{why}"
        );
        assert_eq!(applicability(&q, &caps), None);
        assert!(
            applicability(&q_sys, &caps)
                .unwrap()
                .contains("target is provisioned")
        );
        assert_eq!(applicability(&locks, &caps), None);

        // Multi-AZ: the SYS variant runs; nothing of the closed families is probed.
        let m = probes(Refused, Refused, Readable, Missing);
        assert!(relations_to_probe([&disk, &q, &locks], MultiAz, &m).is_empty());
        let caps = decide("h", &m, []);
        assert_eq!(applicability(&q_sys, &caps), None);
        assert!(applicability(&locks, &caps).unwrap().contains("42501"));
        assert_eq!(caps.readable_families(), ["sys"]);
        assert_eq!(family_advice(&caps).len(), 2);

        // Plain PostgreSQL: checks without system relations run, the rest say why not.
        let caps = decide("h", &probes(Missing, Missing, Missing, Missing), []);
        assert_eq!(applicability(&plain, &caps), None);
        assert!(applicability(&locks, &caps).unwrap().contains("lacks"));
        assert!(family_advice(&caps).is_empty());

        // A forced deployment probes nothing and trusts the operator.
        let caps = Capabilities::forced(Provisioned);
        assert_eq!(applicability(&disk, &caps), None);
    }

    #[test]
    fn families_come_from_prefixes() {
        assert_eq!(
            Family::of("svcs_concurrency_scaling_usage"),
            Some(Family::Stl)
        );
        assert_eq!(Family::of("svv_table_info"), Some(Family::Svv));
        assert_eq!(Family::of("sys_load_history"), Some(Family::Sys));
        assert_eq!(Family::of("pg_class"), None);
        for f in Family::ALL {
            assert_eq!(Family::of(f.probe()), Some(f));
        }
    }
}
