//! The families derived from the snapshot: data gauges, and the exporter's own check and
//! target families.
//!
//! Two halves. [`layout`] says which families there are, in order, and which (slot, part)
//! entries each holds; [`write_slot`] and [`write_targets`] write the text of a slot's parts and
//! of the target families, so that [`super::cache`] re-renders only what changed. The text is
//! what the prometheus crate's encoder would print (a test below renders the same states both
//! ways: [`snapshot_families`] through [`super::encode`], kept for that comparison).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::{Format, Value, escape};
use crate::capability::Capabilities;
use crate::config::CheckConfig;
use crate::db::ErrorKind;
use crate::sample::{SampleError, Samples};
#[cfg(test)]
use crate::snapshot::State;
use crate::snapshot::{Counters, RunResult, Slot, TargetState};

/// What the exposition needs of one slot, cloned under the store's lock (cheap: `Arc`s and a
/// few numbers) and formatted after it is released.
pub(super) struct SlotView {
    pub(super) check: Arc<CheckConfig>,
    pub(super) check_index: usize,
    pub(super) target_index: usize,
    pub(super) target: Arc<str>,
    /// `database` label of a per-database check's series.
    database: Option<Arc<str>>,
    applicable: bool,
    ran: bool,
    success: bool,
    duration: Duration,
    rows: u64,
    last_run: f64,
    last_success: f64,
    samples: Option<Arc<Samples>>,
    counters: Counters,
}

impl SlotView {
    pub(super) fn of(s: &Slot) -> Self {
        SlotView {
            check: s.check.clone(),
            check_index: s.check_index,
            target_index: s.target_index,
            target: s.target.clone(),
            database: s.database.clone(),
            applicable: s.not_applicable.is_none(),
            ran: s.status.ran,
            success: s.status.success,
            duration: s.status.duration,
            rows: s.status.rows,
            last_run: s.status.last_run,
            last_success: s.status.last_success,
            samples: s.samples.clone(),
            counters: s.counters.clone(),
        }
    }
}

/// What the exposition needs of one target.
pub(super) struct TargetView {
    name: Arc<str>,
    /// Set on a target's non-home database entries (see `TargetState::database`).
    database: Option<Arc<str>>,
    up: Option<bool>,
    capabilities: Option<Arc<Capabilities>>,
    pub(super) labels: Arc<[(String, String)]>,
}

impl TargetView {
    pub(super) fn of(t: &TargetState) -> Self {
        TargetView {
            name: t.name.clone(),
            database: t.database.clone(),
            up: t.up,
            capabilities: t.capabilities.clone(),
            labels: t.labels.clone(),
        }
    }
}

/// When a per-slot gauge has a value to show: a state nobody has measured is absent, not 0.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// Configuration (the interval): from the start.
    Always,
    /// Once a run finished (success, duration, rows, last run).
    AfterRun,
    /// Once a run succeeded (the last success's time: before it there is none).
    AfterSuccess,
}

/// The per-slot gauge families: name, help, and when the series appears.
const SLOT_GAUGES: [(&str, &str, Shown); 6] = [
    (
        "redshift_exporter_check_success",
        "Whether the check's last run succeeded (1) or not (0).",
        Shown::AfterRun,
    ),
    (
        "redshift_exporter_check_duration_seconds",
        "Duration of the check's last run.",
        Shown::AfterRun,
    ),
    (
        "redshift_exporter_check_rows",
        "Rows returned by the check's last run.",
        Shown::AfterRun,
    ),
    (
        "redshift_exporter_check_interval_seconds",
        "How often the check runs: its interval, or for a cron schedule the longest gap between runs.",
        Shown::Always,
    ),
    (
        "redshift_exporter_check_last_run_timestamp_seconds",
        "Start of the check's last run, Unix time.",
        Shown::AfterRun,
    ),
    (
        "redshift_exporter_check_last_success_timestamp_seconds",
        "Start of the check's last successful run, Unix time (absent until the first success).",
        Shown::AfterSuccess,
    ),
];

/// The per-slot counter families: name and help.
const SLOT_COUNTERS: [(&str, &str); 5] = [
    (
        "redshift_exporter_check_runs_total",
        "Runs of the check, by result (skipped: the previous run was still going).",
    ),
    (
        "redshift_exporter_check_errors_total",
        "Failed runs of the check, by kind of failure.",
    ),
    (
        "redshift_exporter_sample_errors_total",
        "Values or rows of the check's results that produced no sample, by reason.",
    ),
    (
        "redshift_exporter_archive_files_total",
        "CSV files written to the archive.",
    ),
    (
        "redshift_exporter_archive_errors_total",
        "CSV files that could not be written to the archive.",
    ),
];

/// Parts of a slot besides its data parts (one per value column): the self families.
pub(super) const SELF_PARTS: usize = SLOT_GAUGES.len() + SLOT_COUNTERS.len();

const TARGET_UP: (&str, &str) = (
    "redshift_exporter_target_up",
    "Whether the exporter could last open a session on the target (1) or not (0).",
);
const TARGET_INFO: (&str, &str) = (
    "redshift_exporter_target_info",
    "A target's static labels and what the exporter decided about it: deployment, and the system relation families its user can read (comma-separated; \"configured\" when the deployment was set rather than detected), absent until detected; the value is always 1.",
);
const BUILD_INFO: (&str, &str) = (
    "redshift_exporter_build_info",
    "Build information; the value is always 1.",
);

/// One family of the snapshot part, in exposition order.
pub(super) struct FamilyLayout {
    /// `# HELP` and `# TYPE` lines, for each [`Format`] (indexed by [`Format::index`]): they
    /// differ for counters (OpenMetrics names the family without `_total`) and in escaping.
    pub(super) header: [String; Format::COUNT],
    pub(super) content: Content,
    /// Lines each entry holds once its slot ran; 0 when it depends on the results (data).
    pub(super) lines_per_entry: usize,
}

/// What a family holds.
pub(super) enum Content {
    /// (slot, part) entries, in order.
    Slots(Vec<(u32, u32)>),
    /// `target_up` / `target_info`: re-rendered whole when a target changed.
    TargetUp,
    TargetInfo,
    /// Text that never changes (`build_info`).
    Fixed(String),
}

fn header_text(name: &str, help: &str, kind: &str) -> [String; Format::COUNT] {
    Format::ALL.map(|f| {
        let mut out = String::new();
        super::header(&mut out, name, help, kind, f);
        out
    })
}

/// The families and their entries for these slots (every slot of the store, in order):
/// data families by metric name in check order, every target of every check feeding one
/// inside it; then the per-slot families, the target families and `build_info`.
pub(super) fn layout(slots: &[&SlotView]) -> Vec<FamilyLayout> {
    let mut out = Vec::new();
    let mut by_check: std::collections::BTreeMap<usize, Vec<u32>> = Default::default();
    for (i, s) in slots.iter().enumerate() {
        by_check.entry(s.check_index).or_default().push(i as u32);
    }
    let mut seen_checks = std::collections::HashSet::new();
    let mut by_name: std::collections::HashMap<&str, usize> = Default::default();
    for s in slots {
        if !seen_checks.insert(s.check_index) {
            continue;
        }
        for (vi, v) in s.check.values.iter().enumerate() {
            let fi = *by_name.entry(v.metric.as_str()).or_insert_with(|| {
                out.push(FamilyLayout {
                    header: header_text(&v.metric, &v.help, "gauge"),
                    content: Content::Slots(Vec::new()),
                    lines_per_entry: 0,
                });
                out.len() - 1
            });
            let Content::Slots(entries) = &mut out[fi].content else {
                unreachable!("data families hold slots")
            };
            entries.extend(by_check[&s.check_index].iter().map(|&j| (j, vi as u32)));
        }
    }
    let all = |k: usize| {
        Content::Slots(
            slots
                .iter()
                .enumerate()
                .map(|(i, s)| (i as u32, (s.check.values.len() + k) as u32))
                .collect(),
        )
    };
    for (k, (name, help, _)) in SLOT_GAUGES.iter().enumerate() {
        out.push(FamilyLayout {
            header: header_text(name, help, "gauge"),
            content: all(k),
            lines_per_entry: 1,
        });
    }
    let counter_lines = [RunResult::COUNT, ErrorKind::COUNT, SampleError::COUNT, 1, 1];
    for (k, (name, help)) in SLOT_COUNTERS.iter().enumerate() {
        out.push(FamilyLayout {
            header: header_text(name, help, "counter"),
            content: all(SLOT_GAUGES.len() + k),
            lines_per_entry: counter_lines[k],
        });
    }
    out.push(FamilyLayout {
        header: header_text(TARGET_UP.0, TARGET_UP.1, "gauge"),
        content: Content::TargetUp,
        lines_per_entry: 0,
    });
    out.push(FamilyLayout {
        header: header_text(TARGET_INFO.0, TARGET_INFO.1, "gauge"),
        content: Content::TargetInfo,
        lines_per_entry: 0,
    });
    out.push(FamilyLayout {
        header: header_text(BUILD_INFO.0, BUILD_INFO.1, "gauge"),
        content: Content::Fixed(format!(
            "{}{{version=\"{}\"}} 1\n",
            BUILD_INFO.0,
            escape(env!("CARGO_PKG_VERSION"), true)
        )),
        lines_per_entry: 0,
    });
    out
}

/// The labels every series of a slot starts with, as text (`target="x",env="prod"`, then
/// the check's static labels), and the same followed by `,check="name"` for the self
/// families: the second string, and the length of the first inside it.
pub(super) fn slot_prefix(s: &SlotView, target: &TargetView) -> (String, usize) {
    let mut out = format!("target=\"{}\"", escape(&s.target, true));
    if let Some(db) = &s.database {
        let _ = write!(out, ",database=\"{}\"", escape(db, true));
    }
    for (k, v) in target.labels.iter().chain(&s.check.static_labels) {
        let _ = write!(out, ",{k}=\"{}\"", escape(v, true));
    }
    let len = out.len();
    let _ = write!(out, ",check=\"{}\"", escape(&s.check.name, true));
    (out, len)
}

/// Writes each part of the slot (data parts, one per value column, then [`SELF_PARTS`]) to
/// `out`, pushing the end offset of each.
pub(super) fn write_slot(
    s: &SlotView,
    prefix: &(String, usize),
    out: &mut String,
    ends: &mut Vec<usize>,
) {
    let data_prefix = &prefix.0[..prefix.1];
    let self_prefix = &prefix.0;
    for (vi, v) in s.check.values.iter().enumerate() {
        if let Some(samples) = &s.samples {
            for row in &samples.rows {
                let Some(value) = row.values[vi] else {
                    continue;
                };
                out.push_str(&v.metric);
                out.push('{');
                out.push_str(data_prefix);
                for (name, val) in s.check.labels.iter().zip(&row.labels) {
                    out.push(',');
                    out.push_str(name);
                    out.push_str("=\"");
                    out.push_str(&escape(val, true));
                    out.push('"');
                }
                let _ = writeln!(out, "}} {}", Value(value));
            }
        }
        ends.push(out.len());
    }
    // A slot that has not finished a run yet has no success, duration, rows or run time to
    // report, and one that never succeeded has no last success: those series are absent
    // until then rather than a made-up 0. The interval is configuration, always known; the
    // stale-check alert pairs it with the process start to notice a check that never
    // succeeds (deploy/prometheus/rules/exporter.rules.yml).
    for (name, _, shown) in SLOT_GAUGES {
        let known = match shown {
            Shown::Always => true,
            Shown::AfterRun => s.ran,
            Shown::AfterSuccess => s.last_success > 0.0,
        };
        if s.applicable && known {
            let v = match name {
                "redshift_exporter_check_success" => {
                    if s.success {
                        1.0
                    } else {
                        0.0
                    }
                }
                "redshift_exporter_check_duration_seconds" => s.duration.as_secs_f64(),
                "redshift_exporter_check_rows" => s.rows as f64,
                "redshift_exporter_check_interval_seconds" => {
                    s.check.schedule.expected_interval().as_secs_f64()
                }
                "redshift_exporter_check_last_run_timestamp_seconds" => s.last_run,
                _ => s.last_success,
            };
            let _ = writeln!(out, "{name}{{{self_prefix}}} {}", Value(v));
        }
        ends.push(out.len());
    }
    let c = &s.counters;
    let [runs, errors, sample_errors, files, archive_errors] = SLOT_COUNTERS.map(|(n, _)| n);
    if s.applicable {
        let runs_by = RunResult::ALL.map(|r| (r.as_str(), c.runs[r.index()]));
        labelled_counters(out, runs, self_prefix, "result", &runs_by);
    }
    ends.push(out.len());
    if s.applicable {
        let errors_by = ErrorKind::ALL.map(|k| (k.as_str(), c.errors[k.index()]));
        labelled_counters(out, errors, self_prefix, "kind", &errors_by);
    }
    ends.push(out.len());
    if s.applicable {
        let reasons = SampleError::ALL.map(|e| (e.as_str(), c.sample_errors[e.index()]));
        labelled_counters(out, sample_errors, self_prefix, "reason", &reasons);
    }
    ends.push(out.len());
    if s.applicable {
        let _ = writeln!(
            out,
            "{files}{{{self_prefix}}} {}",
            Value(c.archive_files as f64)
        );
    }
    ends.push(out.len());
    if s.applicable {
        let _ = writeln!(
            out,
            "{archive_errors}{{{self_prefix}}} {}",
            Value(c.archive_errors as f64)
        );
    }
    ends.push(out.len());
}

/// One counter of a slot per value of a closed enum (`key="value"` after the slot's labels).
fn labelled_counters(out: &mut String, name: &str, prefix: &str, key: &str, by: &[(&str, u64)]) {
    for (value, n) in by {
        let _ = writeln!(
            out,
            "{name}{{{prefix},{key}=\"{value}\"}} {}",
            Value(*n as f64)
        );
    }
}

fn target_labels(out: &mut String, t: &TargetView) {
    for (k, v) in t.labels.iter() {
        let _ = write!(out, ",{k}=\"{}\"", escape(v, true));
    }
}

/// The samples of `target_up` (nothing about a target before anything was measured on it).
pub(super) fn write_target_up(targets: &[TargetView], out: &mut String) {
    for t in targets {
        let Some(up) = t.up else { continue };
        let _ = write!(out, "{}{{target=\"{}\"", TARGET_UP.0, escape(&t.name, true));
        if let Some(db) = &t.database {
            let _ = write!(out, ",database=\"{}\"", escape(db, true));
        }
        target_labels(out, t);
        out.push_str(if up { "} 1\n" } else { "} 0\n" });
    }
}

/// The samples of `target_info`: every target, with its static labels (the key dashboards and
/// the CloudWatch rules join on, needed most when a cluster was never reachable), and what
/// detection decided — or the configuration forced — once it is known: before that the two
/// labels are absent, not guessed.
pub(super) fn write_target_info(targets: &[TargetView], out: &mut String) {
    // One series per target: its home entry's (the other databases' entries share the
    // target's static labels; their capabilities may differ, but the join key is the target).
    for t in targets.iter().filter(|t| t.database.is_none()) {
        let _ = write!(
            out,
            "{}{{target=\"{}\"",
            TARGET_INFO.0,
            escape(&t.name, true)
        );
        if let Some(c) = &t.capabilities {
            let families = if c.forced {
                "configured".to_string()
            } else {
                c.readable_families().join(",")
            };
            let _ = write!(
                out,
                ",deployment=\"{}\",families=\"{}\"",
                escape(c.deployment.as_str(), true),
                escape(&families, true)
            );
        }
        target_labels(out, t);
        out.push_str("} 1\n");
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(super) use tests::snapshot_families;
