//! `redshift-exporter archive list|cat`: reading the CSV archive back from the command line.
//! Arguments and exit codes only; the reading is [`crate::archive::inspect`].
//!
//! Exit codes: 0 ok; 1 `cat` found nothing, or left files out (a changed header, an
//! unreadable file; each is reported on stderr); 2 usage or configuration error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{EXIT_CONFIG, EXIT_RUN_FAILED};
use crate::archive::inspect::{self, Filter};
use crate::config;

#[derive(Args, Debug)]
pub(super) struct ArchiveArgs {
    #[command(subcommand)]
    command: ArchiveCommand,
}

#[derive(Subcommand, Debug)]
enum ArchiveCommand {
    /// List archive files with their run time (UTC), rows, size and path, oldest first.
    List(ListArgs),
    /// Write every run of one check in a time range as one CSV on stdout, with leading
    /// run_started_at (RFC 3339, UTC) and target columns; plain and .gz files alike.
    Cat(CatArgs),
}

/// Where the archive is.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Root {
    /// Read archive_dir from this checks.toml.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The archive folder itself (no configuration needed).
    #[arg(long = "archive-dir", value_name = "DIR")]
    archive_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    root: Root,
    /// Only this target.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Only a per-database check's files of this database.
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
    /// Only this check.
    #[arg(long, value_name = "NAME")]
    check: Option<String>,
    /// Only runs that started at or after TIME: RFC 3339, a UTC date (2025-11-27) or a
    /// duration back from now (7d, 36h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
}

#[derive(Args, Debug)]
struct CatArgs {
    #[command(flatten)]
    root: Root,
    /// The check whose runs to join.
    #[arg(long, value_name = "NAME")]
    check: String,
    /// Only this target (default: every target, in run order).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Only a per-database check's runs on this database (default: every database).
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
    /// Runs that started at or after TIME (RFC 3339, a UTC date, or 7d / 36h back from now).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Runs that started before TIME (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

fn root(r: &Root) -> Result<PathBuf, ExitCode> {
    if let Some(d) = &r.archive_dir {
        return Ok(d.clone());
    }
    let path = r.config.as_ref().expect("clap requires one of the two");
    match config::load(path) {
        Ok(c) => c.exporter.archive_dir.ok_or_else(|| {
            eprintln!(
                "{}: the archive is switched off (archive = false)",
                path.display()
            );
            ExitCode::from(EXIT_CONFIG)
        }),
        Err(e) => {
            eprintln!("{e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn time(flag: &str, v: &Option<String>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ExitCode> {
    v.as_deref()
        .map(|s| inspect::parse_time(s, chrono::Utc::now()))
        .transpose()
        .map_err(|e| {
            eprintln!("redshift-exporter: {flag}: {e}");
            ExitCode::from(EXIT_CONFIG)
        })
}

pub(super) fn main(a: ArchiveArgs) -> ExitCode {
    let result = match a.command {
        ArchiveCommand::List(l) => list(l),
        ArchiveCommand::Cat(c) => cat(c),
    };
    result.unwrap_or_else(|code| code)
}

fn list(a: ListArgs) -> Result<ExitCode, ExitCode> {
    let root = root(&a.root)?;
    let filter = Filter {
        target: a.target,
        database: a.database,
        check: a.check,
        since: time("--since", &a.since)?,
        until: None,
    };
    let mut out = std::io::stdout().lock();
    match inspect::list(&root, &filter, &mut out) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("redshift-exporter: {}: {e}", root.display());
            Ok(ExitCode::from(EXIT_RUN_FAILED))
        }
    }
}

fn cat(a: CatArgs) -> Result<ExitCode, ExitCode> {
    let root = root(&a.root)?;
    let filter = Filter {
        target: a.target,
        database: a.database,
        check: Some(a.check.clone()),
        since: time("--since", &a.since)?,
        until: time("--until", &a.until)?,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = inspect::cat(&root, &filter, &mut out);
    let _ = out.flush();
    match summary {
        Ok(s) => {
            for why in &s.skipped {
                eprintln!("skipped {why}");
            }
            if s.files == 0 && s.skipped.is_empty() {
                eprintln!(
                    "no archive files of check {} in {} match",
                    a.check,
                    root.display()
                );
                return Ok(ExitCode::from(EXIT_RUN_FAILED));
            }
            eprintln!(
                "{} file(s), {} row(s){}",
                s.files,
                s.rows,
                if s.skipped.is_empty() {
                    String::new()
                } else {
                    format!(", {} file(s) left out", s.skipped.len())
                }
            );
            Ok(if s.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUN_FAILED)
            })
        }
        Err(e) => {
            eprintln!("redshift-exporter: {}: {e}", root.display());
            Ok(ExitCode::from(EXIT_RUN_FAILED))
        }
    }
}
