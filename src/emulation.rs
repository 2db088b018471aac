//! The Redshift emulation for PostgreSQL (`tests/fixtures/redshift/`), compiled into the
//! binary so `demo` works anywhere and the integration tests load exactly the same SQL:
//! Redshift's system relations as plain tables in schema `rs_emul`, the functions PostgreSQL
//! lacks (GETDATE, ...), and seeded scenarios. This module only knows the files and their
//! order (see the fixture's README); running them is `db::run_scripts`'s job.

/// Which kind of Redshift the database pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Provisioned,
    Serverless,
}

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
pub fn scripts(variant: Variant, scenarios: &[Scenario]) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        ("functions.sql", FUNCTIONS),
        ("relations_common.sql", RELATIONS_COMMON),
        match variant {
            Variant::Provisioned => ("relations_provisioned.sql", RELATIONS_PROVISIONED),
            Variant::Serverless => ("relations_serverless.sql", RELATIONS_SERVERLESS),
        },
    ];
    for s in scenarios {
        out.push(match s {
            Scenario::Healthy => ("seed/healthy.sql", SEED_HEALTHY),
            Scenario::Incidents => ("seed/incidents.sql", SEED_INCIDENTS),
        });
        out.push(match (variant, s) {
            (Variant::Provisioned, Scenario::Healthy) => {
                ("seed/provisioned/healthy.sql", SEED_PROVISIONED_HEALTHY)
            }
            (Variant::Provisioned, Scenario::Incidents) => {
                ("seed/provisioned/incidents.sql", SEED_PROVISIONED_INCIDENTS)
            }
            (Variant::Serverless, Scenario::Healthy) => {
                ("seed/serverless/healthy.sql", SEED_SERVERLESS_HEALTHY)
            }
            (Variant::Serverless, Scenario::Incidents) => {
                ("seed/serverless/incidents.sql", SEED_SERVERLESS_INCIDENTS)
            }
        });
    }
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
                "relations_serverless.sql",
                "seed/healthy.sql",
                "seed/serverless/healthy.sql",
                "seed/incidents.sql",
                "seed/serverless/incidents.sql"
            ]
        );
        // No psql meta-commands: every file must be plain SQL for simple_query.
        for (name, sql) in scripts(
            Variant::Provisioned,
            &[Scenario::Healthy, Scenario::Incidents],
        ) {
            assert!(
                !sql.lines().any(|l| l.trim_start().starts_with('\\')),
                "{name} has a psql meta-command"
            );
        }
    }
}
