//! Unit tests of the text writer and the render entry points against the prometheus crate's
//! own encoder and the OpenMetrics rules.

use super::*;
use std::io::Read;

#[test]
fn non_finite_values_are_spelled_as_the_text_format_says() {
    assert_eq!(Value(f64::INFINITY).to_string(), "+Inf");
    assert_eq!(Value(f64::NEG_INFINITY).to_string(), "-Inf");
    assert_eq!(Value(f64::NAN).to_string(), "NaN");
    assert_eq!(Value(-0.5).to_string(), "-0.5");
    assert_eq!(Value(3.0).to_string(), "3");
    let mut f = family("x", "h", MetricType::GAUGE);
    for (l, v) in [
        ("a", f64::INFINITY),
        ("b", f64::NEG_INFINITY),
        ("c", f64::NAN),
    ] {
        f.mut_metric().push(gauge(&[("l", l)], v));
    }
    let text = String::from_utf8(encode(&[f]).to_vec()).unwrap();
    assert_eq!(
        text,
        "# HELP x h\n# TYPE x gauge\nx{l=\"a\"} +Inf\nx{l=\"b\"} -Inf\nx{l=\"c\"} NaN\n"
    );
    let mut out = String::new();
    single(&mut out, "y", "h", "gauge", Format::Text, f64::INFINITY);
    assert!(out.ends_with("\ny +Inf\n"), "{out}");
}

/// For finite values the exposition's writer prints what the prometheus crate's would.
#[test]
fn encode_matches_the_prometheus_crate() {
    use prometheus::Encoder as _;
    let mut g = family("g", "Help with \\ and\nnewline.", MetricType::GAUGE);
    g.mut_metric().push(gauge(&[], 1.5));
    g.mut_metric()
        .push(gauge(&[("a", "q\"uote\\ back\nnl"), ("b", "")], -2.0));
    let mut c = family("c_total", "Counter.", MetricType::COUNTER);
    c.mut_metric().push(counter(&[("k", "v")], 12345678901.0));
    let empty = family("e", "Empty.", MetricType::GAUGE);
    let families = [g, empty, c];
    let non_empty: Vec<_> = families
        .iter()
        .filter(|f| !f.get_metric().is_empty())
        .cloned()
        .collect();
    let mut expected = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&non_empty, &mut expected)
        .unwrap();
    assert_eq!(
        String::from_utf8(encode(&families).to_vec()).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

/// The hand-written per-scrape part is what the encoder would print.
/// OpenMetrics, plain and gzip, of a store with results, skips, archive counters and a
/// detected target: well formed, and the same samples as the text format.
#[test]
fn open_metrics_exposition_is_well_formed_and_has_the_same_samples() {
    let config = crate::config::parse(
        "[targets.main]\nhost = \"h\"\nuser = \"u\"\nlabels = { env = \"p\\\"q\" }\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nlabels = [\"k\"]\nvalues = [\"v\"]\n",
        |_| None,
    )
    .unwrap();
    let store = Arc::new(Store::new(&config));
    let rs = crate::sample::ResultSet {
        columns: vec!["k".into(), "v".into()],
        rows: vec![vec![Some("a".into()), Some("inf".into())]],
    };
    let samples = crate::sample::map(&config.checks[0], &rs).unwrap();
    store.record_run(
        0,
        crate::snapshot::RunRecord {
            started: std::time::SystemTime::now(),
            duration: std::time::Duration::from_millis(4),
            outcome: Ok((1, samples)),
        },
    );
    store.record_skips(0, 2);
    store.record_archive(0, Ok("x.csv".into()));
    let pools: Vec<(String, PoolStatsFn)> = vec![(
        target_labels_text("main", None, &[("env".into(), "p\"q".into())]),
        Box::new(|| PoolStats {
            idle: 1,
            in_use: 0,
            max: 2,
        }),
    )];
    let archive = Arc::new(crate::archive::stats::ArchiveStats::default());
    archive.add_file("main", "c", 10);
    let e = Exposition::new(store, pools, Arc::new(ReloadStatus::default()))
        .with_archive_stats(archive, true);
    let om = Format::OpenMetrics(OpenMetricsVersion::V1_0_0);
    let plain = String::from_utf8(e.render_as(om).to_vec()).unwrap();
    let mut gz = String::new();
    flate2::read::GzDecoder::new(&e.render_gzip_as(om)[..])
        .read_to_string(&mut gz)
        .unwrap();
    let text = String::from_utf8(e.render().to_vec()).unwrap();
    let samples = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = t
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    for (name, body) in [("plain", &plain), ("gzip", &gz)] {
        format::check_open_metrics(body).unwrap_or_else(|e| panic!("{name}: {e}\n{body}"));
        assert_eq!(samples(body), samples(&text), "{name}");
    }
    assert!(plain.contains("# TYPE redshift_exporter_check_runs counter\n"));
    assert!(plain.contains("redshift_exporter_check_runs_total{"));
    assert!(text.contains("# TYPE redshift_exporter_check_runs_total counter\n"));
    assert!(!text.contains("# EOF"));
}

#[test]
fn dynamic_part_matches_the_encoder() {
    let store = Arc::new(Store::new(
        &crate::config::parse(
            "[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nvalues = [\"v\"]\n",
            |_| None,
        )
        .unwrap(),
    ));
    let pools: Vec<(String, PoolStatsFn)> = vec![(
        target_labels_text("main", None, &[]),
        Box::new(|| PoolStats {
            idle: 2,
            in_use: 1,
            max: 5,
        }),
    )];
    let e = Exposition::new(store, pools, Arc::new(ReloadStatus::default()));
    let text = String::from_utf8(e.dynamic_part(Format::Text).to_vec()).unwrap();
    let mut conns = family(
        "redshift_exporter_pool_connections",
        "Sessions in the target's pool, by state.",
        MetricType::GAUGE,
    );
    conns
        .mut_metric()
        .push(gauge(&[("target", "main"), ("state", "idle")], 2.0));
    conns
        .mut_metric()
        .push(gauge(&[("target", "main"), ("state", "in_use")], 1.0));
    let mut max = family(
        "redshift_exporter_pool_max_connections",
        "Maximum sessions the target's pool may open.",
        MetricType::GAUGE,
    );
    max.mut_metric().push(gauge(&[("target", "main")], 5.0));
    let mut ok = family(
        "redshift_exporter_config_last_reload_successful",
        "Whether the last configuration reload succeeded (1) or not (0).",
        MetricType::GAUGE,
    );
    ok.mut_metric().push(gauge(&[], 1.0));
    let expected = String::from_utf8(encode(&[conns, max, ok]).to_vec()).unwrap();
    assert!(text.starts_with(&expected), "{text}\n---\n{expected}");
    assert!(text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "));
    // The two-part forms equal the one-piece forms (but for the process samples, which
    // are read afresh on every call and may move in between).
    let steady = |b: Vec<u8>| -> String {
        String::from_utf8(b)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("process_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        steady(e.render_parts().concat()),
        steady(e.render().to_vec())
    );
    let gz = e.render_gzip_parts().concat();
    let mut out = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        out.starts_with("# HELP redshift_exporter_check_interval_seconds"),
        "{out}"
    );
}
