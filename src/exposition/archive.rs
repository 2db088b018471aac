//! The archive lifecycle families: files and bytes present, deletions, uploads, per target
//! and check. Read per scrape from [`ArchiveStats`] (a copy under a short lock), never
//! from the disk. A child of [`crate::exposition`], which stays the only module that knows
//! Prometheus.

use prometheus::proto::{MetricFamily, MetricType};

use super::{counter, family, gauge};
use crate::archive::stats::{ArchiveStats, FolderStats};

type Value = fn(&FolderStats) -> u64;

const FAMILIES: [(&str, &str, MetricType, Value); 7] = [
    (
        "redshift_exporter_archive_stored_files",
        "Archive files present, per target and check (from the last retention walk plus writes since).",
        MetricType::GAUGE,
        |s| s.files,
    ),
    (
        "redshift_exporter_archive_bytes",
        "Bytes of the archive files present, per target and check.",
        MetricType::GAUGE,
        |s| s.bytes,
    ),
    (
        "redshift_exporter_archive_deleted_total",
        "Archive files deleted by retention (age or size limit).",
        MetricType::COUNTER,
        |s| s.deleted,
    ),
    (
        "redshift_exporter_archive_delete_errors_total",
        "Archive files retention could not delete.",
        MetricType::COUNTER,
        |s| s.delete_errors,
    ),
    (
        "redshift_exporter_archive_uploads_total",
        "Archive files uploaded to S3.",
        MetricType::COUNTER,
        |s| s.uploads,
    ),
    (
        "redshift_exporter_archive_upload_errors_total",
        "Failed S3 upload attempts (each is retried).",
        MetricType::COUNTER,
        |s| s.upload_errors,
    ),
    (
        "redshift_exporter_archive_upload_pending",
        "Archive files waiting for their S3 upload.",
        MetricType::GAUGE,
        |s| s.upload_pending,
    ),
];

/// One family per number; one series per (target, check) folder seen.
pub(super) fn families(stats: &ArchiveStats, uploads: bool) -> Vec<MetricFamily> {
    let snap = stats.snapshot();
    FAMILIES
        .iter()
        .filter(|(name, ..)| uploads || !name.contains("_upload"))
        .map(|(name, help, t, value)| {
            let mut f = family(name, help, *t);
            for ((folder, check), s) in &snap {
                // A per-database check's folder is `{target}@{database}`: two labels here,
                // like the check's own series.
                let (target, database) = crate::discovery::split_folder(folder);
                let mut pairs = vec![("target", target)];
                if let Some(db) = database {
                    pairs.push(("database", db));
                }
                pairs.push(("check", check.as_str()));
                let v = value(s) as f64;
                f.mut_metric().push(if *t == MetricType::COUNTER {
                    counter(&pairs, v)
                } else {
                    gauge(&pairs, v)
                });
            }
            f
        })
        .collect()
}
