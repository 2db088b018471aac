//! Which values of a run cross their column's `warn`/`crit` threshold, worked out once when
//! the run's samples are made, so that the pages, which list them, read them instead of
//! scanning every row of every slot at each first view (at 100 targets × the pack, that
//! scan was a fifth of the landing page's first view).
//!
//! Owns: the crossing rule's application to rows. Does not own: the rule itself
//! (`config::Thresholds::level`), nor how crossings are shown (`http::page::attention`).

use super::SampleRow;
use crate::config::{CheckConfig, Level};

/// One value beyond its threshold: row `row`'s value of value column `value` (indices into
/// [`super::Samples::rows`] and the check's `values`), at `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub row: u32,
    pub value: u32,
    pub level: Level,
}

/// The crossings of `rows` under `check`'s thresholds, value column by value column and row
/// by row within each; empty (no allocation) when nothing crosses.
pub(super) fn crossings(check: &CheckConfig, rows: &[SampleRow]) -> Vec<Crossing> {
    let mut out = Vec::new();
    for (vi, spec) in check.values.iter().enumerate() {
        if spec.thresholds.is_empty() {
            continue;
        }
        for (ri, row) in rows.iter().enumerate() {
            let Some(v) = row.values.get(vi).copied().flatten() else {
                continue;
            };
            if let Some((level, _)) = spec.thresholds.level(v) {
                out.push(Crossing {
                    row: ri as u32,
                    value: vi as u32,
                    level,
                });
            }
        }
    }
    out
}
