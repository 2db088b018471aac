//! The Redshift emulation for PostgreSQL (`tests/fixtures/redshift/`), compiled into the
//! binary so `demo` works anywhere and the integration tests load exactly the same SQL:
//! Redshift's system relations as plain tables in schema `rs_emul`, the functions PostgreSQL
//! lacks (GETDATE, ...), and seeded scenarios. This module only knows the files and their
//! order (see the fixture's README); running them is `db::run_scripts`'s job.

/// Which kind of Redshift the database pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// A single-AZ provisioned cluster: every relation family is there.
    Provisioned,
    /// A Serverless workgroup: STL/STV/SVL/SVCS (and most SVV) exist but refuse with 42501.
    Serverless,
    /// A Multi-AZ provisioned cluster: everything but the SYS_* views refuses with 42501.
    MultiAz,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Provisioned, Variant::Serverless, Variant::MultiAz];

    /// The name used by expectations.toml, load.sh and the access file.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Provisioned => "provisioned",
            Variant::Serverless => "serverless",
            Variant::MultiAz => "multi_az",
        }
    }

    pub fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.as_str() == name)
    }
}

/// The login role the emulation creates for a monitoring user granted `sys:monitor`, the
/// documented grant (password = name; test clusters use trust anyway).
pub const MONITOR_ROLE: &str = "rs_monitor";
/// A login role with no grant beyond what every user sees (as with `SYSLOG ACCESS
/// UNRESTRICTED` alone): superuser-visible relations refuse it with 42501.
pub const SYSLOG_ROLE: &str = "rs_syslog";

/// Seeded data: a quiet cluster, or the same with every catalogued incident on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Healthy,
    Incidents,
}

const FUNCTIONS: &str = include_str!("../tests/fixtures/redshift/functions.sql");
const RELATIONS_COMMON: &str = include_str!("../tests/fixtures/redshift/relations_common.sql");
const RELATIONS_PROVISIONED: &str =
    include_str!("../tests/fixtures/redshift/relations_provisioned.sql");
const RELATIONS_SERVERLESS: &str =
    include_str!("../tests/fixtures/redshift/relations_serverless.sql");
const SEED_HEALTHY: &str = include_str!("../tests/fixtures/redshift/seed/healthy.sql");
const SEED_INCIDENTS: &str = include_str!("../tests/fixtures/redshift/seed/incidents.sql");
const SEED_PROVISIONED_HEALTHY: &str =
    include_str!("../tests/fixtures/redshift/seed/provisioned/healthy.sql");
const SEED_PROVISIONED_INCIDENTS: &str =
    include_str!("../tests/fixtures/redshift/seed/provisioned/incidents.sql");
const SEED_SERVERLESS_HEALTHY: &str =
    include_str!("../tests/fixtures/redshift/seed/serverless/healthy.sql");
const SEED_SERVERLESS_INCIDENTS: &str =
    include_str!("../tests/fixtures/redshift/seed/serverless/incidents.sql");
const ACCESS: &str = include_str!("../tests/fixtures/redshift/access.sql");
const ACCESS_PROVISIONED: &str = include_str!("../tests/fixtures/redshift/access_provisioned.sql");
const ACCESS_SERVERLESS: &str = include_str!("../tests/fixtures/redshift/access_serverless.sql");
const ACCESS_MULTI_AZ: &str = include_str!("../tests/fixtures/redshift/access_multi_az.sql");
const RESEED: &str = include_str!("../tests/fixtures/redshift/reseed.sql");

/// Brings a loaded database's seeded data up to now (see `reseed.sql`): run it periodically
/// in a long-lived emulation so the time-windowed incidents never age out.
pub const RESEED_NOW: &str = "SELECT rs_emul.reseed()";

/// The shipped check pack, as `demo` runs it.
pub const PACK: &str = include_str!("../checks.toml");

/// Statements to run in the (empty) database `db` first, from another database's session:
/// every later session resolves Redshift's names in `rs_emul` and speaks UTC.
pub fn database_settings(db: &str) -> String {
    let db = db.replace('"', "\"\"");
    format!(
        "ALTER DATABASE \"{db}\" SET search_path = rs_emul, public; ALTER DATABASE \"{db}\" SET timezone = 'UTC';"
    )
}

/// The scripts to run inside the database, in order, with a name for error messages.
/// `scenarios` are applied in the order given; `Incidents` is an overlay on `Healthy`.
/// Every variant has the STL/STV relations (Serverless and Multi-AZ refuse them at the end, as
/// the real ones do); a Multi-AZ cluster is provisioned, so it takes the provisioned seeds.
pub fn scripts(variant: Variant, scenarios: &[Scenario]) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        ("functions.sql", FUNCTIONS),
        ("relations_common.sql", RELATIONS_COMMON),
        ("relations_provisioned.sql", RELATIONS_PROVISIONED),
    ];
    if variant == Variant::Serverless {
        out.push(("relations_serverless.sql", RELATIONS_SERVERLESS));
    }
    let serverless = variant == Variant::Serverless;
    for s in scenarios {
        out.push(match s {
            Scenario::Healthy => ("seed/healthy.sql", SEED_HEALTHY),
            Scenario::Incidents => ("seed/incidents.sql", SEED_INCIDENTS),
        });
        out.push(match (serverless, s) {
            (false, Scenario::Healthy) => {
                ("seed/provisioned/healthy.sql", SEED_PROVISIONED_HEALTHY)
            }
            (false, Scenario::Incidents) => {
                ("seed/provisioned/incidents.sql", SEED_PROVISIONED_INCIDENTS)
            }
            (true, Scenario::Healthy) => ("seed/serverless/healthy.sql", SEED_SERVERLESS_HEALTHY),
            (true, Scenario::Incidents) => {
                ("seed/serverless/incidents.sql", SEED_SERVERLESS_INCIDENTS)
            }
        });
    }
    out.push(("access.sql", ACCESS));
    out.push(match variant {
        Variant::Provisioned => ("access_provisioned.sql", ACCESS_PROVISIONED),
        Variant::Serverless => ("access_serverless.sql", ACCESS_SERVERLESS),
        Variant::MultiAz => ("access_multi_az.sql", ACCESS_MULTI_AZ),
    });
    out.push(("reseed.sql", RESEED));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_follows_the_fixture_readme() {
        let names: Vec<&str> = scripts(
            Variant::Serverless,
            &[Scenario::Healthy, Scenario::Incidents],
        )
        .iter()
        .map(|(n, _)| *n)
        .collect();
        assert_eq!(
            names,
            [
                "functions.sql",
                "relations_common.sql",
                "relations_provisioned.sql",
                "relations_serverless.sql",
                "seed/healthy.sql",
                "seed/serverless/healthy.sql",
                "seed/incidents.sql",
                "seed/serverless/incidents.sql",
                "access.sql",
                "access_serverless.sql",
                "reseed.sql"
            ]
        );
        // No psql meta-commands: every file must be plain SQL for simple_query.
        for (name, sql) in Variant::ALL
            .into_iter()
            .flat_map(|v| scripts(v, &[Scenario::Healthy, Scenario::Incidents]))
        {
            assert!(
                !sql.lines().any(|l| l.trim_start().starts_with('\\')),
                "{name} has a psql meta-command"
            );
        }
    }

    /// access.sql closes exactly the relations whose header comment in relations_*.sql says
    /// they are superuser-visible: a new relation tagged "- superuser" cannot stay open to
    /// PUBLIC by mistake, and the list names no relation the files lack.
    #[test]
    fn access_closes_exactly_the_superuser_visible_relations() {
        let mut tagged = std::collections::BTreeSet::new();
        for file in [
            RELATIONS_COMMON,
            RELATIONS_PROVISIONED,
            RELATIONS_SERVERLESS,
        ] {
            for line in file.lines() {
                let Some(rest) = line.strip_prefix("-- ") else {
                    continue;
                };
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // A relation's header: its upper-case name, then its evidence tag.
                let header = name.len() > 4
                    && name.chars().all(|c| !c.is_ascii_lowercase())
                    && rest[name.len()..].starts_with(" [");
                if header && rest.contains("superuser") {
                    tagged.insert(name.to_ascii_lowercase());
                }
            }
        }
        let list = ACCESS
            .split("FOREACH rel IN ARRAY ARRAY[")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .expect("access.sql has the superuser-visible list");
        let listed: std::collections::BTreeSet<String> = list
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .flat_map(|l| l.split(','))
            .map(|s| s.trim().trim_matches('\'').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        assert!(tagged.len() >= 10, "found only {tagged:?}");
        assert_eq!(listed, tagged);
    }
}
