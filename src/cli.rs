//! Command line: `run` (default), `once`, `check-config` and `archive list|cat`. Parses arguments with clap, calls
//! into [`crate::app`], prints, and maps results to exit codes: 0 ok, 1 a run failed,
//! 2 a configuration, usage or start-up error. `anyhow`-style catch-alls stop here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

mod archive;

use crate::app;
use crate::config::{self, Config};
use crate::logging::{self, Format, Level};

const EXIT_RUN_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "redshift-exporter",
    version,
    about = "Runs health-check SQL against Amazon Redshift; exposes the results to Prometheus and archives them as CSV.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    // `redshift-exporter --config F [options]` is `redshift-exporter run --config F [options]`.
    /// Path of checks.toml.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: RunOptions,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the exporter (the default).
    Run(RunArgs),
    /// Run every check (or the named ones) once on every target, write the CSVs, print a
    /// summary line per check and target; exit 1 if any failed.
    Once(OnceArgs),
    /// Validate the configuration and exit (0 valid, 2 invalid).
    CheckConfig(ConfigArgs),
    /// Read the CSV archive: `archive list`, `archive cat`.
    Archive(archive::ArchiveArgs),
    /// Start a throwaway PostgreSQL with the Redshift emulation and every catalogued incident,
    /// run the exporter with the shipped checks against it, clean up on Ctrl-C.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Address the exporter listens on.
    #[arg(
        long = "web.listen-address",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9439"
    )]
    listen_address: String,
    /// Keep the CSV archive folder after exit.
    #[arg(long)]
    keep_archive: bool,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Args, Debug)]
struct ConfigArgs {
    /// Path of checks.toml.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
}

#[derive(Args, Debug)]
struct LogArgs {
    /// Least severe level logged.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    log_level: Level,
    /// Log line format.
    #[arg(long = "log.format", value_enum, default_value = "text")]
    log_format: Format,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Path of checks.toml.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    #[command(flatten)]
    options: RunOptions,
}

/// Everything `run` takes besides the config path (also accepted without the subcommand).
#[derive(Args, Debug)]
struct RunOptions {
    /// Address to listen on (HOST:PORT); overrides [exporter] listen_address.
    #[arg(long = "web.listen-address", value_name = "HOST:PORT")]
    listen_address: Option<String>,
    /// TLS and basic authentication for the HTTP server (exporter-toolkit web config format).
    #[arg(long = "web.config.file", value_name = "PATH")]
    web_config: Option<PathBuf>,
    /// Allow reloading the configuration with POST /-/reload (SIGHUP always works).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Args, Debug)]
struct OnceArgs {
    /// Path of checks.toml.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// Run only this check (repeatable).
    #[arg(long = "check", value_name = "NAME")]
    checks: Vec<String>,
    #[command(flatten)]
    log: LogArgs,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // A file-size limit (ulimit -f) must make a CSV write fail with EFBIG, which the archive
    // counts and logs, instead of killing the whole exporter with SIGXFSZ.
    // SAFETY: setting a signal to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (Some(Command::Run(a)), _) => run(a),
        (Some(Command::Once(a)), _) => once(a),
        (Some(Command::CheckConfig(a)), _) => check_config(a),
        (Some(Command::Archive(a)), _) => archive::main(a),
        (Some(Command::Demo(a)), _) => demo(a),
        (None, Some(config)) => run(RunArgs {
            config,
            options: cli.run,
        }),
        (None, None) => {
            eprintln!("redshift-exporter: --config PATH is required (see --help)");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// glibc gives threads that allocate concurrently their own arena (up to 8 per core), each
/// keeping freed memory; with two worker threads and a per-thread cache for small
/// allocations, one arena is enough (docs/performance.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Hands memory freed at the top of the heap (and whole free pages inside it) back to the
/// system: after a large transient buffer, e.g. the first full render of a big snapshot.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn run(a: RunArgs) -> ExitCode {
    let o = a.options;
    logging::init(o.log.log_level, o.log.log_format);
    let config = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = runtime();
    let result = rt.block_on(async {
        let (shutdown, abort) = (CancellationToken::new(), CancellationToken::new());
        spawn_signal_handler(shutdown.clone(), abort.clone());
        let options = app::DaemonOptions {
            config_path: a.config.clone(),
            listen_address: o.listen_address,
            web_config: o.web_config,
            enable_lifecycle: o.enable_lifecycle,
            abort,
        };
        let aborted = options.abort.clone();
        app::run_daemon(config, options, shutdown)
            .await
            .map(|()| aborted.is_cancelled())
    });
    // Do not wait for stray blocking tasks (a stuck DNS lookup, say) at exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(false) => ExitCode::SUCCESS,
        // A second signal cut the drain short: running checks were cancelled, not finished.
        Ok(true) => ExitCode::from(EXIT_RUN_FAILED),
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("redshift-exporter: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// SIGTERM or SIGINT start the graceful shutdown; a second one aborts it: running checks are
/// cancelled on the server at once and the process exits (code 1) within 5 seconds, after
/// stopping any throwaway PostgreSQL (`demo`).
fn spawn_signal_handler(shutdown: CancellationToken, abort: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
        shutdown.cancel();
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: cancelling running checks and exiting");
        abort.cancel();
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        // `exit` runs no destructors: stop the demo's PostgreSQL first (bounded, ~2 s).
        tokio::task::spawn_blocking(crate::pgtemp::stop_all)
            .await
            .ok();
        std::process::exit(i32::from(EXIT_RUN_FAILED));
    });
}

fn demo(a: DemoArgs) -> ExitCode {
    logging::init(a.log.log_level.min_warn(), a.log.log_format);
    let rt = runtime();
    let result = rt.block_on(async {
        let (shutdown, abort) = (CancellationToken::new(), CancellationToken::new());
        spawn_signal_handler(shutdown.clone(), abort.clone());
        crate::demo::run(
            crate::demo::DemoOptions {
                listen_address: a.listen_address,
                keep_archive: a.keep_archive,
                abort,
            },
            shutdown,
        )
        .await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redshift-exporter demo: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn once(a: OnceArgs) -> ExitCode {
    logging::init(a.log.log_level.min_warn(), a.log.log_format);
    let config = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = runtime();
    let result = rt.block_on(app::run_once(config, &a.checks));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(lines) => {
            for l in &lines {
                println!("{}", l.line);
            }
            if lines.iter().all(|l| l.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUN_FAILED)
            }
        }
        Err(e) => {
            eprintln!("redshift-exporter: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn check_config(a: ConfigArgs) -> ExitCode {
    let config = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let warnings = config.lint();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: valid; {} target(s), {} check(s), {} Redshift dialect warning(s)",
        a.config.display(),
        config.targets.len(),
        config.checks.len(),
        warnings.len()
    );
    for f in &config.exporter.included_files {
        println!("included {}", f.display());
    }
    for t in &config.targets {
        let deployment = t
            .deployment
            .map(|d| d.as_str())
            .unwrap_or("detected at connect");
        let user = match &t.auth {
            crate::config::Auth::Password(_) => t.user.clone(),
            crate::config::Auth::Secret(s) => format!("the user of secret {}", s.id),
            crate::config::Auth::Iam(p) => match &p.api {
                crate::config::IamApi::ClusterCredentials {
                    db_user,
                    auto_create,
                    ..
                } => format!(
                    "{}{db_user} (IAM, cluster {})",
                    if *auto_create { "IAMA:" } else { "IAM:" },
                    p.resource
                ),
                crate::config::IamApi::ClusterCredentialsWithIam => {
                    format!("the caller's IAM identity (cluster {})", p.resource)
                }
                crate::config::IamApi::Serverless => {
                    format!("the caller's IAM identity (workgroup {})", p.resource)
                }
            },
        };
        println!(
            "target {}: {}:{}/{} as {} (sslmode {}, pool {}, deployment {deployment})",
            t.name,
            t.host,
            t.port,
            t.database,
            user,
            t.sslmode.as_str(),
            t.pool_size
        );
        if !t.labels.is_empty() {
            let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            println!("  labels {}", labels.join(", "));
        }
        match &t.databases {
            None => {}
            Some(crate::config::Databases::List(l)) => {
                println!("  per-database checks on {}", l.join(", "));
            }
            Some(crate::config::Databases::Discover { include, exclude }) => println!(
                "  per-database checks on the databases of pg_database matching {}{}, re-read every {}",
                include.join(" or "),
                if exclude.is_empty() {
                    String::new()
                } else {
                    format!(" but not {}", exclude.join(" or "))
                },
                humantime::format_duration(t.databases_refresh)
            ),
        }
        for c in config.checks.iter().filter(|c| {
            c.targets.contains(
                &config
                    .targets
                    .iter()
                    .position(|x| x.name == t.name)
                    .unwrap_or(usize::MAX),
            )
        }) {
            let runs = match t.deployment {
                Some(d) if !c.applies_to(d) => format!(
                    "skipped (applies to {})",
                    c.deployments
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                Some(_) => format!(
                    "{}, timeout {}",
                    c.schedule,
                    humantime::format_duration(c.timeout)
                ),
                // Flavour detected at connect: say which flavour the check needs.
                None => format!(
                    "{}, timeout {}{}",
                    c.schedule,
                    humantime::format_duration(c.timeout),
                    if c.deployments.len() < crate::config::Deployment::ALL.len() {
                        format!(
                            " (only if the target is {}; skipped otherwise)",
                            c.deployments
                                .iter()
                                .map(|d| d.as_str())
                                .collect::<Vec<_>>()
                                .join(" or ")
                        )
                    } else {
                        String::new()
                    }
                ),
            };
            // What the user must be able to read; detection skips the check if it cannot.
            let reads = &c.reads;
            let runs = match c.scope {
                crate::config::Scope::Database => format!("{runs}, per database"),
                crate::config::Scope::Cluster => runs,
            };
            if reads.is_empty() {
                println!("  check {}: {runs}", c.name);
            } else {
                println!("  check {}: {runs}; reads {}", c.name, reads.join(", "));
            }
        }
    }
    ExitCode::SUCCESS
}

impl Level {
    /// `once` is a batch command: its stdout is the summary, so logs default to warnings.
    fn min_warn(self) -> Level {
        if self == Level::Info {
            Level::Warn
        } else {
            self
        }
    }
}
