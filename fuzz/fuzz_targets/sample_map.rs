//! Fuzz target: `sample::map` on an arbitrary result set (columns, NULLs, odd text) for a check
//! with label and value columns and a small series cap must never panic, and must keep its own
//! promises: at most `max_series` series, at most one row per label set, every counted error
//! accounted for.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use redshift_exporter::config::{self, CheckConfig};
use redshift_exporter::sample::{self, ResultSet, SampleError};

const COLUMNS: [&str; 4] = ["k", "l", "v", "w"];

fn check() -> &'static CheckConfig {
    static CHECK: OnceLock<CheckConfig> = OnceLock::new();
    CHECK.get_or_init(|| {
        let text = "[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nlabels = [\"k\", \"l\"]\nvalues = [\"v\", \"w\"]\nmax_series = 16\n";
        (*config::parse(text, |_| None).expect("valid").checks[0]).clone()
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: first byte picks the column order/subset, then rows of cells separated by 0xff,
    // cells by 0xfe; a cell starting with 0xfd is NULL; text is lossily decoded.
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let mut columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    columns.rotate_left((shape & 3) as usize);
    if shape & 4 != 0 {
        columns.pop();
    }
    if shape & 8 != 0 {
        columns.push("k".into()); // a duplicate column name
    }
    let rows: Vec<Vec<Option<String>>> = rest
        .split(|&b| b == 0xff)
        .map(|row| {
            row.split(|&b| b == 0xfe)
                .map(|cell| match cell.first() {
                    Some(0xfd) => None,
                    _ => Some(String::from_utf8_lossy(cell).into_owned()),
                })
                .collect()
        })
        .collect();
    let rs = ResultSet { columns, rows };
    let c = check();
    match sample::map(c, &rs) {
        Err(missing) => assert!(!missing.missing.is_empty()),
        Ok(s) => {
            assert!(s.series() <= c.max_series, "series cap exceeded");
            assert!(s.rows.len() * 2 <= c.max_series);
            let mut seen = std::collections::HashSet::new();
            for r in &s.rows {
                assert!(seen.insert(r.labels.clone()), "duplicate label set kept");
                assert_eq!(r.labels.len(), 2);
                assert_eq!(r.values.len(), 2);
                assert!(r.labels.iter().all(|l| l == l.trim_end_matches(' ')));
            }
            let dropped = s.error_count(SampleError::DuplicateLabels)
                + s.error_count(SampleError::SeriesLimit);
            assert_eq!(s.rows.len() as u64 + dropped, rs.rows.len() as u64);
        }
    }
});
