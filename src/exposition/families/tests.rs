//! Tests of the text writers of [`super`], and their reference: the same families built as the
//! prometheus crate's protobuf-model structs ([`snapshot_families`]), printed by its encoder.

use std::time::Duration;

use prometheus::proto::{MetricFamily, MetricType};

use super::*;
use crate::exposition::{counter, family, gauge};

/// `target` and the static labels of the slot's target and check: the labels every series of
/// the slot starts with (validation keeps the names distinct from each other and from the
/// check's label columns).
fn slot_labels<'a>(st: &'a State, s: &'a Slot) -> Vec<(&'a str, &'a str)> {
    let mut out = vec![("target", &*s.target)];
    if let Some(db) = &s.database {
        out.push(("database", &**db));
    }
    out.extend(
        st.targets[s.target_index]
            .labels
            .iter()
            .chain(&s.check.static_labels)
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    out
}

/// Data families and the exporter's check/target families, as protobuf-model structs: the
/// reference the text writers are tested against.
pub(in crate::exposition) fn snapshot_families(st: &State) -> Vec<MetricFamily> {
    let mut out = Vec::new();

    // Data: one family per metric name, in check order; every target of every check feeding
    // it inside (the provisioned and Serverless variants of a measurement share a name).
    let mut seen_checks = std::collections::HashSet::new();
    let mut data: Vec<MetricFamily> = Vec::new();
    let mut by_name: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for s in &st.slots {
        if !seen_checks.insert(s.check_index) {
            continue;
        }
        let check = &s.check;
        for (vi, v) in check.values.iter().enumerate() {
            let fi = *by_name.entry(v.metric.as_str()).or_insert_with(|| {
                data.push(family(&v.metric, &v.help, MetricType::GAUGE));
                data.len() - 1
            });
            let f = &mut data[fi];
            for sl in st.slots.iter().filter(|x| x.check_index == s.check_index) {
                let Some(samples) = &sl.samples else { continue };
                for row in &samples.rows {
                    let Some(value) = row.values[vi] else {
                        continue;
                    };
                    let mut pairs = slot_labels(st, sl);
                    for (name, val) in check.labels.iter().zip(&row.labels) {
                        pairs.push((name, val));
                    }
                    f.mut_metric().push(gauge(&pairs, value));
                }
            }
        }
    }
    out.extend(data);

    let applicable = || st.slots.iter().filter(|s| s.not_applicable.is_none());
    // A slot that has not finished a run yet has no success, duration, rows or run time to
    // report, one that never succeeded no last success: absent rather than a made-up 0. The
    // interval is configuration.
    let ran = |s: &Slot| s.status.ran;
    let per_slot =
        |name: &str, help: &str, shown: &dyn Fn(&Slot) -> bool, value: &dyn Fn(&Slot) -> f64| {
            let mut f = family(name, help, MetricType::GAUGE);
            for s in applicable().filter(|s| shown(s)) {
                let mut pairs = slot_labels(st, s);
                pairs.push(("check", &s.check.name));
                f.mut_metric().push(gauge(&pairs, value(s)));
            }
            f
        };
    out.push(per_slot(
        "redshift_exporter_check_success",
        "Whether the check's last run succeeded (1) or not (0).",
        &ran,
        &|s| if s.status.success { 1.0 } else { 0.0 },
    ));
    out.push(per_slot(
        "redshift_exporter_check_duration_seconds",
        "Duration of the check's last run.",
        &ran,
        &|s| s.status.duration.as_secs_f64(),
    ));
    out.push(per_slot(
        "redshift_exporter_check_rows",
        "Rows returned by the check's last run.",
        &ran,
        &|s| s.status.rows as f64,
    ));
    out.push(per_slot(
        "redshift_exporter_check_interval_seconds",
        "How often the check runs: its interval, or for a cron schedule the longest gap between runs.",
        &|_| true,
        &|s| s.check.schedule.expected_interval().as_secs_f64(),
    ));
    out.push(per_slot(
        "redshift_exporter_check_last_run_timestamp_seconds",
        "Start of the check's last run, Unix time.",
        &ran,
        &|s| s.status.last_run,
    ));
    out.push(per_slot(
        "redshift_exporter_check_last_success_timestamp_seconds",
        "Start of the check's last successful run, Unix time (absent until the first success).",
        &|s| s.status.last_success > 0.0,
        &|s| s.status.last_success,
    ));

    let mut runs = family(
        "redshift_exporter_check_runs_total",
        "Runs of the check, by result (skipped: the previous run was still going).",
        MetricType::COUNTER,
    );
    let mut errors = family(
        "redshift_exporter_check_errors_total",
        "Failed runs of the check, by kind of failure.",
        MetricType::COUNTER,
    );
    let mut sample_errors = family(
        "redshift_exporter_sample_errors_total",
        "Values or rows of the check's results that produced no sample, by reason.",
        MetricType::COUNTER,
    );
    let mut files = family(
        "redshift_exporter_archive_files_total",
        "CSV files written to the archive.",
        MetricType::COUNTER,
    );
    let mut archive_errors = family(
        "redshift_exporter_archive_errors_total",
        "CSV files that could not be written to the archive.",
        MetricType::COUNTER,
    );
    for s in applicable() {
        let mut base = slot_labels(st, s);
        base.push(("check", s.check.name.as_str()));
        let with = |k: &'static str, v: &'static str| {
            let mut p = base.clone();
            p.push((k, v));
            p
        };
        for r in RunResult::ALL {
            runs.mut_metric().push(counter(
                &with("result", r.as_str()),
                s.counters.runs[r.index()] as f64,
            ));
        }
        for k in ErrorKind::ALL {
            errors.mut_metric().push(counter(
                &with("kind", k.as_str()),
                s.counters.errors[k.index()] as f64,
            ));
        }
        for e in SampleError::ALL {
            sample_errors.mut_metric().push(counter(
                &with("reason", e.as_str()),
                s.counters.sample_errors[e.index()] as f64,
            ));
        }
        files
            .mut_metric()
            .push(counter(&base, s.counters.archive_files as f64));
        archive_errors
            .mut_metric()
            .push(counter(&base, s.counters.archive_errors as f64));
    }
    out.extend([runs, errors, sample_errors, files, archive_errors]);

    let mut up = family(
        "redshift_exporter_target_up",
        "Whether the exporter could last open a session on the target (1) or not (0).",
        MetricType::GAUGE,
    );
    // Nothing is said about a target before anything was measured on it.
    for t in &st.targets {
        let Some(is_up) = t.up else { continue };
        let mut pairs = vec![("target", &*t.name)];
        if let Some(db) = &t.database {
            pairs.push(("database", &**db));
        }
        pairs.extend(t.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        up.mut_metric()
            .push(gauge(&pairs, if is_up { 1.0 } else { 0.0 }));
    }
    out.push(up);

    // Every target, with its static labels (the key dashboards and the CloudWatch rules join
    // on, needed most when a cluster was never reachable), and what detection decided — or the
    // configuration forced — once it is known: before that the two labels are absent, not
    // guessed.
    let mut target_info = family(
        "redshift_exporter_target_info",
        "A target's static labels and what the exporter decided about it: deployment, and the system relation families its user can read (comma-separated; \"configured\" when the deployment was set rather than detected), absent until detected; the value is always 1.",
        MetricType::GAUGE,
    );
    // One per target: its home entry's.
    for t in st.targets.iter().filter(|t| t.database.is_none()) {
        let families = t.capabilities.as_ref().map(|c| {
            if c.forced {
                "configured".to_string()
            } else {
                c.readable_families().join(",")
            }
        });
        let mut pairs = vec![("target", &*t.name)];
        if let (Some(c), Some(f)) = (&t.capabilities, &families) {
            pairs.push(("deployment", c.deployment.as_str()));
            pairs.push(("families", f.as_str()));
        }
        pairs.extend(t.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        target_info.mut_metric().push(gauge(&pairs, 1.0));
    }
    out.push(target_info);

    let mut info = family(
        "redshift_exporter_build_info",
        "Build information; the value is always 1.",
        MetricType::GAUGE,
    );
    info.mut_metric()
        .push(gauge(&[("version", env!("CARGO_PKG_VERSION"))], 1.0));
    out.push(info);
    out
}

use std::time::SystemTime;

use crate::snapshot::{RunRecord, Store};

fn names(st: &State) -> Vec<String> {
    snapshot_families(st)
        .iter()
        .filter(|f| !f.get_metric().is_empty())
        .map(|f| f.name().to_string())
        .collect()
}

#[test]
fn nothing_is_reported_about_a_slot_or_target_before_it_was_measured() {
    let config = crate::config::parse(
        "[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nvalues = [\"v\"]\n",
        |_| None,
    )
    .unwrap();
    let store = Store::new(&config);
    let before = names(&store.read());
    for absent in [
        "redshift_exporter_check_success",
        "redshift_exporter_check_duration_seconds",
        "redshift_exporter_check_rows",
        "redshift_exporter_check_last_run_timestamp_seconds",
        "redshift_exporter_check_last_success_timestamp_seconds",
        "redshift_exporter_target_up",
    ] {
        assert!(
            !before.iter().any(|n| n == absent),
            "{absent} in {before:?}"
        );
    }
    for present in [
        "redshift_exporter_check_interval_seconds",
        "redshift_exporter_check_runs_total",
    ] {
        assert!(
            before.iter().any(|n| n == present),
            "{present} not in {before:?}"
        );
    }
    // A failed run is measured (success 0, its duration) but is no success.
    store.record_run(
        0,
        RunRecord {
            started: SystemTime::now(),
            duration: Duration::from_millis(5),
            outcome: Err(crate::db::CheckError::new(
                crate::db::ErrorKind::Query,
                "relation does not exist",
            )),
        },
    );
    let failed = names(&store.read());
    assert!(
        failed
            .iter()
            .any(|n| n == "redshift_exporter_check_success")
    );
    assert!(
        !failed
            .iter()
            .any(|n| n == "redshift_exporter_check_last_success_timestamp_seconds"),
        "a check that never succeeded has no last success: {failed:?}"
    );
    store.record_run(
        0,
        RunRecord {
            started: SystemTime::now(),
            duration: Duration::from_millis(5),
            outcome: Ok((0, Samples::default())),
        },
    );
    let after = names(&store.read());
    for now_present in [
        "redshift_exporter_check_success",
        "redshift_exporter_check_duration_seconds",
        "redshift_exporter_check_rows",
        "redshift_exporter_check_last_run_timestamp_seconds",
        "redshift_exporter_check_last_success_timestamp_seconds",
        "redshift_exporter_target_up",
    ] {
        assert!(
            after.iter().any(|n| n == now_present),
            "{now_present} not in {after:?}"
        );
    }
}
