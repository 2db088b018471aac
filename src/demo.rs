//! `redshift-exporter demo`: the product on a laptop in one command. Starts a throwaway
//! PostgreSQL ([`crate::pgtemp`]), loads the Redshift emulation with every catalogued incident
//! into two databases (a provisioned cluster and a Serverless workgroup), runs the daemon with
//! the shipped check pack against both, prints where to look, and removes everything when
//! the shutdown token fires (Ctrl-C).

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::{self, DaemonOptions};
use crate::config::{self, Config, Deployment, SslMode};
use crate::db;
use crate::emulation::{self, Scenario, Variant};
use crate::pgtemp::{TempCluster, TempClusterError};

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the exporter listens.
    pub listen_address: String,
    /// Keep the CSV archive folder after exit.
    pub keep_archive: bool,
    /// A second Ctrl-C: stop waiting for running checks (the cluster is still removed).
    pub abort: CancellationToken,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start PostgreSQL: {0}")]
    Cluster(#[from] TempClusterError),
    #[error("cannot load the Redshift emulation: {0}")]
    Load(String),
    #[error("the shipped check pack does not parse: {0}")]
    Pack(String),
    #[error(transparent)]
    Exporter(#[from] app::StartupError),
}

/// The demo's targets, one per emulated deployment: (target name, database, flavour).
const TARGETS: [(&str, &str, Variant); 3] = [
    ("provisioned", "redshift_provisioned", Variant::Provisioned),
    ("serverless", "redshift_serverless", Variant::Serverless),
    ("multi_az", "redshift_multi_az", Variant::MultiAz),
];

/// How often the seeded incidents are brought up to now (their windows are 15 minutes to an
/// hour; see `tests/fixtures/redshift/reseed.sql`).
const RESEED_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The URL a browser on this machine opens for `listen` (a wildcard address → loopback).
fn page_url(listen: &str) -> String {
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen, ""));
    let host = match host {
        "" | "0.0.0.0" | "[::]" | "::" => "127.0.0.1",
        h => h,
    };
    format!("http://{host}:{port}/")
}

/// Runs the demo until `shutdown` fires.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> Result<(), DemoError> {
    let url = page_url(&options.listen_address);
    println!("Landing page: {url} (what needs attention on each target; ready in a few seconds)");
    println!();
    println!("Starting a throwaway PostgreSQL ...");
    let cluster = tokio::task::spawn_blocking(TempCluster::start)
        .await
        .map_err(|e| DemoError::Load(e.to_string()))??;
    let port = cluster.port();
    for (_, database, variant) in TARGETS {
        // CREATE DATABASE cannot share a statement batch (an implicit transaction).
        let create = format!("CREATE DATABASE \"{database}\"");
        let settings = emulation::database_settings(database);
        db::run_scripts(
            port,
            "postgres",
            &[
                ("create database", &create),
                ("database settings", &settings),
            ],
        )
        .await
        .map_err(DemoError::Load)?;
        let scripts = emulation::scripts(variant, &[Scenario::Healthy, Scenario::Incidents]);
        db::run_scripts(port, database, &scripts)
            .await
            .map_err(DemoError::Load)?;
    }

    let archive =
        std::env::temp_dir().join(format!("redshift-exporter-demo-{}", std::process::id()));
    let config = demo_config(port, &archive, &options.listen_address)?;
    println!();
    println!(
        "Redshift emulation (every catalogued incident seeded), PostgreSQL on 127.0.0.1:{port}, \
         monitoring user {}:",
        emulation::MONITOR_ROLE
    );
    for (target, database, variant) in TARGETS {
        println!(
            "  target {target:<12} {:<12} {}",
            variant.as_str(),
            cluster.url(database)
        );
    }
    println!();
    println!(
        "Exporter (the shipped checks.toml pack, {} checks):",
        config.checks.len()
    );
    println!("  landing page  {url}");
    println!("  metrics       {url}metrics");
    println!("  CSV archive   {}", archive.display());
    println!();
    println!(
        "Press Ctrl-C to stop; everything is removed on exit{}.",
        if options.keep_archive {
            " except the archive"
        } else {
            ""
        }
    );

    // Keeps the incidents current: the seeds' windowed rows would age out after 15 minutes.
    let reseed = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(RESEED_EVERY);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => break,
                }
                for (target, database, _) in TARGETS {
                    if let Err(e) =
                        db::run_scripts(port, database, &[("reseed", emulation::RESEED_NOW)]).await
                    {
                        tracing::warn!(%target, error = %e, "demo: cannot bring the seeded incidents up to now");
                    }
                }
            }
        }
    });
    let result = app::run_daemon(
        config,
        DaemonOptions {
            config_path: PathBuf::new(),
            listen_address: Some(options.listen_address.clone()),
            web_config: None,
            enable_lifecycle: false,
            abort: options.abort.clone(),
        },
        shutdown,
    )
    .await;
    reseed.abort();
    let _ = reseed.await;
    drop(cluster);
    if !options.keep_archive {
        let _ = std::fs::remove_dir_all(&archive);
    }
    result?;
    println!("Demo stopped; the throwaway PostgreSQL is gone.");
    Ok(())
}

/// The shipped pack, pointed at the two emulated databases.
fn demo_config(port: u16, archive: &std::path::Path, listen: &str) -> Result<Config, DemoError> {
    let port_text = port.to_string();
    let env = |k: &str| match k {
        "REDSHIFT_HOST" => Some("127.0.0.1".to_string()),
        "REDSHIFT_PORT" => Some(port_text.clone()),
        // A least-privilege monitoring user (granted sys:monitor), as in production.
        "REDSHIFT_USER" => Some(emulation::MONITOR_ROLE.to_string()),
        "REDSHIFT_PASSWORD" => Some(String::new()),
        "REDSHIFT_DATABASE" => Some(TARGETS[0].1.to_string()),
        _ => None,
    };
    let mut config = config::parse(emulation::PACK, env).map_err(|problems| {
        DemoError::Pack(
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let template = (*config.targets[0]).clone();
    config.targets = TARGETS
        .iter()
        .map(|(name, database, _)| {
            let mut t = template.clone();
            t.name = name.to_string();
            t.database = database.to_string();
            t.sslmode = SslMode::Disable;
            // Detected at connect, as on a real cluster.
            t.deployment = None::<Deployment>;
            Arc::new(t)
        })
        .collect();
    for check in &mut config.checks {
        Arc::make_mut(check).targets = (0..TARGETS.len()).collect();
    }
    config.exporter.archive_dir = Some(archive.to_path_buf());
    config.exporter.listen_address = listen.to_string();
    Ok(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_url_is_openable() {
        assert_eq!(super::page_url("127.0.0.1:9439"), "http://127.0.0.1:9439/");
        assert_eq!(super::page_url("0.0.0.0:9439"), "http://127.0.0.1:9439/");
        assert_eq!(super::page_url(":9439"), "http://127.0.0.1:9439/");
        assert_eq!(super::page_url("localhost:1"), "http://localhost:1/");
    }

    #[test]
    fn the_shipped_pack_becomes_a_target_per_deployment_demo() {
        let dir = std::path::Path::new("/nonexistent");
        let c = super::demo_config(5432, dir, "127.0.0.1:9439").unwrap();
        assert_eq!(c.targets.len(), 3);
        assert!(c.checks.iter().all(|ch| ch.targets == vec![0, 1, 2]));
        assert_eq!(c.targets[1].database, "redshift_serverless");
        assert_eq!(c.targets[2].database, "redshift_multi_az");
        assert!(
            c.targets
                .iter()
                .all(|t| t.user == crate::emulation::MONITOR_ROLE)
        );
        assert!(
            c.lint().is_empty(),
            "the shipped pack has Redshift dialect warnings: {:?}",
            c.lint()
        );
    }
}
