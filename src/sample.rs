//! Pure mapping of a query result to samples: label columns → label values, value columns →
//! numbers. No I/O, no database types, no Prometheus types: a [`ResultSet`] of text in, a
//! [`Samples`] out, so the rules can be tested (and fuzzed) in isolation.
//!
//! The rules:
//! - values arrive as text (simple query protocol); `t`/`true` → 1, `f`/`false` → 0, anything
//!   `f64` parses after trimming whitespace (including `NaN`, `Infinity`, `-Infinity`) is kept;
//!   NULL and anything else is skipped and counted, and the rest of the row still counts;
//! - label values lose trailing blanks (Redshift's `character(n)` pads them); NULL → `""`;
//! - the first row with a given label set wins; later duplicates are dropped and counted;
//! - at most `max_series` series (rows × value columns) are kept; the rest are counted.

use std::hash::BuildHasherDefault;

use crate::config::CheckConfig;
use crate::rows::Row;

mod crossing;

pub use crossing::Crossing;

/// A query result in text form, as the archive and the sampler both need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    /// Column names in result order.
    pub columns: Vec<String>,
    /// Rows of nullable text values, one per column.
    pub rows: Vec<Vec<Option<String>>>,
}

/// One result row reduced to what `/metrics` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    /// Values of the check's label columns, in the check's `labels` order.
    pub labels: Vec<String>,
    /// One entry per value column of the check; `None` where the value was skipped.
    pub values: Vec<Option<f64>>,
}

/// Why a sample was not produced; a small closed set, used as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleError {
    Null,
    NotANumber,
    DuplicateLabels,
    SeriesLimit,
}

impl SampleError {
    pub const ALL: [SampleError; 4] = [
        SampleError::Null,
        SampleError::NotANumber,
        SampleError::DuplicateLabels,
        SampleError::SeriesLimit,
    ];

    /// How many there are: the length of counter arrays indexed by [`SampleError::index`].
    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`SampleError::ALL`], hence in every counter array sized by [`SampleError::COUNT`].
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SampleError::Null => "null",
            SampleError::NotANumber => "not_a_number",
            SampleError::DuplicateLabels => "duplicate_labels",
            SampleError::SeriesLimit => "series_limit",
        }
    }
}

// `index` is the declaration order: ALL must list every variant in that order, so that every
// index is below COUNT (checked at compile time; a gap or reordering fails the build).
const _: () = {
    let mut i = 0;
    while i < SampleError::COUNT {
        assert!(SampleError::ALL[i].index() == i);
        i += 1;
    }
};

/// The samples of one run of one check on one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    pub rows: Vec<SampleRow>,
    /// Counts indexed like [`SampleError::ALL`].
    pub errors: [u64; SampleError::COUNT],
    /// The first rows as text, for the check's HTML page; the store moves it into the slot.
    pub preview: Option<Preview>,
    /// The values beyond their column's threshold (the configuration of the check that made
    /// these samples: a reload that changes a threshold does not keep a slot's samples).
    pub crossings: Vec<Crossing>,
}

/// Rows kept for the check page: at most this many (the CSV's first rows).
pub const PREVIEW_ROWS: usize = 50;
/// A cell longer than this is cut (at a character boundary) and marked.
pub const PREVIEW_CELL_BYTES: usize = 256;
/// Memory kept per preview at most: the cells' and column names' text plus
/// [`PREVIEW_CELL_OVERHEAD`] per cell; rows past it are not kept.
pub const PREVIEW_BYTES: usize = 16 * 1024;
/// What a cell costs besides its text (the `Option<String>` itself).
pub const PREVIEW_CELL_OVERHEAD: usize = std::mem::size_of::<Option<String>>();

/// The first rows of a result, as text, bounded by [`PREVIEW_ROWS`], [`PREVIEW_CELL_BYTES`]
/// and [`PREVIEW_BYTES`]: the same values, in the same order, as the CSV's first rows
/// (NULL is `None`, the CSV's empty field).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preview {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows seen in all (kept or not).
    pub seen: u64,
    /// Some cell was cut at [`PREVIEW_CELL_BYTES`].
    pub cut: bool,
    bytes: usize,
}

impl Preview {
    pub fn new(columns: &[String]) -> Self {
        let columns: Vec<String> = columns.iter().map(|c| cut(c).0).collect();
        let bytes = columns
            .iter()
            .map(|c| PREVIEW_CELL_OVERHEAD + c.len())
            .sum();
        Preview {
            columns,
            bytes,
            ..Preview::default()
        }
    }

    /// Keeps a copy of `row` while there is room; counts it either way.
    pub fn push<R: Row + ?Sized>(&mut self, row: &R) {
        self.seen += 1;
        if self.rows.len() >= PREVIEW_ROWS || self.bytes >= PREVIEW_BYTES {
            return;
        }
        let row: Vec<Option<String>> = (0..self.columns.len())
            .map(|i| {
                row.field(i).map(|s| {
                    let (s, was_cut) = cut(s);
                    self.cut |= was_cut;
                    s
                })
            })
            .collect();
        let bytes: usize = row
            .iter()
            .map(|c| PREVIEW_CELL_OVERHEAD + c.as_ref().map_or(0, String::len))
            .sum();
        if self.bytes + bytes > PREVIEW_BYTES {
            self.bytes = PREVIEW_BYTES;
            return;
        }
        self.bytes += bytes;
        self.rows.push(row);
    }

    /// Rows seen but not kept.
    pub fn omitted(&self) -> u64 {
        self.seen - self.rows.len() as u64
    }
}

/// `s` cut to [`PREVIEW_CELL_BYTES`] at a character boundary, with "…" when cut.
fn cut(s: &str) -> (String, bool) {
    if s.len() <= PREVIEW_CELL_BYTES {
        return (s.to_string(), false);
    }
    let mut end = PREVIEW_CELL_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}…", &s[..end]), true)
}

impl Samples {
    pub fn error_count(&self, e: SampleError) -> u64 {
        self.errors[e.index()]
    }
    /// Number of series that will be exposed.
    pub fn series(&self) -> usize {
        self.rows
            .iter()
            .map(|r| r.values.iter().filter(|v| v.is_some()).count())
            .sum()
    }
}

/// The result lacks columns the check maps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the result has no column{} {}; it has: {}", if .missing.len() == 1 { "" } else { "s" }, .missing.join(", "), .present.join(", "))]
pub struct MissingColumns {
    pub missing: Vec<String>,
    pub present: Vec<String>,
}

/// Maps a result to samples according to the check's `labels` and `values`.
pub fn map(check: &CheckConfig, result: &ResultSet) -> Result<Samples, MissingColumns> {
    let mut sampler = Sampler::new(check, &result.columns)?;
    for row in &result.rows {
        sampler.push(row);
    }
    Ok(sampler.finish())
}

/// Maps rows to samples one at a time, as they stream in: memory stays bounded by the
/// series cap whatever the number of rows (rows past the cap, and duplicates, cost no
/// allocation). [`map`] is this over a whole [`ResultSet`].
pub struct Sampler<'c> {
    check: &'c CheckConfig,
    label_ix: Vec<usize>,
    value_ix: Vec<usize>,
    out: Samples,
    /// Hash of a kept row's label set → its index in `out.rows`. The key is already a hash:
    /// the map uses it as is instead of hashing it again.
    index: std::collections::HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
    /// Kept rows whose label hash collided with another label set (practically never).
    collided: Vec<(u64, u32)>,
    /// The label hash's per-run seed. Every row is hashed, also the rows past the series cap
    /// (duplicates are counted as such), so this is on the per-row path of a million-row
    /// archive: a multiply-rotate hash, not SipHash (collisions cost a comparison, never
    /// correctness).
    seed: u64,
    series: usize,
}

impl<'c> Sampler<'c> {
    /// Resolves the check's columns in the result's `columns`.
    pub fn new(check: &'c CheckConfig, columns: &[String]) -> Result<Self, MissingColumns> {
        let position = |name: &str| columns.iter().position(|c| c == name);
        let mut missing = Vec::new();
        let mut index = |name: &str| {
            position(name).unwrap_or_else(|| {
                missing.push(name.to_string());
                usize::MAX
            })
        };
        let label_ix: Vec<usize> = check.labels.iter().map(|l| index(l)).collect();
        let value_ix: Vec<usize> = check.values.iter().map(|v| index(&v.column)).collect();
        if !missing.is_empty() {
            return Err(MissingColumns {
                missing,
                present: columns.to_vec(),
            });
        }
        Ok(Sampler {
            check,
            label_ix,
            value_ix,
            out: Samples {
                preview: Some(Preview::new(columns)),
                ..Samples::default()
            },
            index: std::collections::HashMap::default(),
            collided: Vec::new(),
            seed: {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
            },
            series: 0,
        })
    }

    /// One result row (nullable text values in result column order).
    pub fn push<R: Row + ?Sized>(&mut self, row: &R) {
        use std::hash::{Hash, Hasher};
        if let Some(p) = self.out.preview.as_mut() {
            p.push(row);
        }
        let label = |i: usize| row.field(i).map(|s| s.trim_end_matches(' ')).unwrap_or("");
        let mut h = LabelHasher(self.seed);
        for &i in &self.label_ix {
            label(i).hash(&mut h);
        }
        let hash = h.finish();
        let same = |r: u32, rows: &[SampleRow]| {
            let kept = &rows[r as usize].labels;
            self.label_ix.iter().zip(kept).all(|(&i, k)| label(i) == k)
        };
        let duplicate = match self.index.get(&hash) {
            None => false,
            Some(&r) => {
                same(r, &self.out.rows)
                    || self
                        .collided
                        .iter()
                        .any(|&(ch, r)| ch == hash && same(r, &self.out.rows))
            }
        };
        if duplicate {
            self.out.errors[SampleError::DuplicateLabels.index()] += 1;
            return;
        }
        let per_row = self.value_ix.len().max(1);
        if self.series + per_row > self.check.max_series {
            self.out.errors[SampleError::SeriesLimit.index()] += 1;
            return;
        }
        let errors = &mut self.out.errors;
        let values: Vec<Option<f64>> = self
            .value_ix
            .iter()
            .map(|&i| match row.field(i) {
                None => {
                    errors[SampleError::Null.index()] += 1;
                    None
                }
                Some(text) => match parse_value(text) {
                    Some(v) => Some(v),
                    None => {
                        errors[SampleError::NotANumber.index()] += 1;
                        None
                    }
                },
            })
            .collect();
        self.series += per_row;
        let labels: Vec<String> = self
            .label_ix
            .iter()
            .map(|&i| label(i).to_string())
            .collect();
        let at = self.out.rows.len() as u32;
        match self.index.entry(hash) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(at);
            }
            // Another label set with the same hash holds the index entry.
            std::collections::hash_map::Entry::Occupied(_) => self.collided.push((hash, at)),
        }
        self.out.rows.push(SampleRow { labels, values });
    }

    /// The samples so far, with their threshold crossings.
    pub fn finish(mut self) -> Samples {
        self.out.crossings = crossing::crossings(self.check, &self.out.rows);
        self.out
    }
}

/// The label-set hash of [`Sampler`]: eight bytes at a time, multiply and rotate (the
/// rustc-hash scheme), finished with a mix so the map's bucket bits depend on every byte.
struct LabelHasher(u64);

impl std::hash::Hasher for LabelHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0 ^ w).wrapping_mul(K).rotate_left(26);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        // The length keeps "a" and "a\0" apart.
        let w = u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59);
        self.0 = (self.0 ^ w).wrapping_mul(K).rotate_left(26);
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// The hasher of a map whose keys are hashes already: the key itself.
#[derive(Default)]
struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Text → number, as documented in the module header.
pub fn parse_value(text: &str) -> Option<f64> {
    let t = text.trim();
    match t {
        "t" | "true" | "TRUE" => Some(1.0),
        "f" | "false" | "FALSE" => Some(0.0),
        "" => None,
        _ => t.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, CheckConfig};

    fn check(labels: &[&str], values: &[&str], max_series: usize) -> CheckConfig {
        let text = format!(
            "[targets.main]\nhost = \"h\"\nuser = \"u\"\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nlabels = {labels:?}\nvalues = {values:?}\nmax_series = {max_series}\n"
        );
        let cfg = config::parse(&text, |_| None).unwrap();
        (*cfg.checks[0]).clone()
    }

    fn rs(columns: &[&str], rows: &[&[Option<&str>]]) -> ResultSet {
        ResultSet {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
                .collect(),
        }
    }

    #[test]
    fn maps_labels_and_values_in_config_order() {
        let c = check(&["db", "usr"], &["n", "secs"], 100);
        let r = rs(
            &["secs", "usr", "n", "db", "extra"],
            &[&[
                Some("2.5"),
                Some("alice     "),
                Some("3"),
                Some("dev"),
                Some("x"),
            ]],
        );
        let s = map(&c, &r).unwrap();
        assert_eq!(
            s.rows,
            vec![SampleRow {
                labels: vec!["dev".into(), "alice".into()],
                values: vec![Some(3.0), Some(2.5)],
            }]
        );
        assert_eq!(s.errors, [0; SampleError::COUNT]);
    }

    #[test]
    fn null_and_text_values_are_skipped_and_counted_rest_of_row_counts() {
        let c = check(&["k"], &["a", "b", "c"], 100);
        let r = rs(
            &["k", "a", "b", "c"],
            &[
                &[Some("x"), None, Some("abc"), Some("7")],
                &[None, Some("t"), Some("f"), Some(" 1e3 ")],
            ],
        );
        let s = map(&c, &r).unwrap();
        assert_eq!(s.rows[0].values, vec![None, None, Some(7.0)]);
        assert_eq!(s.rows[1].labels, vec![String::new()]);
        assert_eq!(s.rows[1].values, vec![Some(1.0), Some(0.0), Some(1000.0)]);
        assert_eq!(s.error_count(SampleError::Null), 1);
        assert_eq!(s.error_count(SampleError::NotANumber), 1);
        assert_eq!(s.series(), 4);
    }

    #[test]
    fn label_hashes_are_seeded_and_tell_label_sets_apart() {
        use std::hash::{Hash, Hasher};
        let hash = |seed: u64, labels: &[&str]| {
            let mut h = LabelHasher(seed);
            for l in labels {
                l.hash(&mut h);
            }
            h.finish()
        };
        assert_eq!(hash(7, &["a", "b"]), hash(7, &["a", "b"]));
        assert_ne!(hash(7, &["a", "b"]), hash(8, &["a", "b"]));
        // field boundaries count: ("ab", "") is not ("a", "b"), nor "a" "a\0"
        assert_ne!(hash(7, &["ab", ""]), hash(7, &["a", "b"]));
        assert_ne!(hash(7, &["a"]), hash(7, &["a\0"]));
        let distinct: std::collections::HashSet<u64> = (0..100_000)
            .map(|i| hash(7, &[&format!("node-{i}"), "slice"]))
            .collect();
        assert_eq!(
            distinct.len(),
            100_000,
            "no collisions among 100k label sets"
        );
    }

    #[test]
    fn duplicates_first_wins_and_series_cap() {
        let c = check(&["k"], &["v"], 2);
        let r = rs(
            &["k", "v"],
            &[
                &[Some("a"), Some("1")],
                &[Some("a  "), Some("2")],
                &[Some("b"), Some("3")],
                &[Some("c"), Some("4")],
            ],
        );
        let s = map(&c, &r).unwrap();
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0].values, vec![Some(1.0)]);
        assert_eq!(s.error_count(SampleError::DuplicateLabels), 1);
        assert_eq!(s.error_count(SampleError::SeriesLimit), 1);
    }

    #[test]
    fn streaming_keeps_memory_at_the_cap_and_matches_map() {
        let c = check(&["k"], &["v"], 10);
        let columns = vec!["k".to_string(), "v".to_string()];
        let mut s = Sampler::new(&c, &columns).unwrap();
        for i in 0..100_000 {
            // Every label set twice.
            let row = [Some(format!("k{} ", i / 2)), Some(i.to_string())];
            s.push(&row);
        }
        let out = s.finish();
        assert_eq!(out.rows.len(), 10);
        assert_eq!(out.rows[3].labels, vec!["k3".to_string()]);
        assert_eq!(out.rows[3].values, vec![Some(6.0)]);
        assert_eq!(out.error_count(SampleError::DuplicateLabels), 10);
        // Past the cap nothing is remembered, so a duplicate there counts as over the cap.
        assert_eq!(out.error_count(SampleError::SeriesLimit), 100_000 - 20);
        assert!(Sampler::new(&c, &["k".to_string()]).is_err());
    }

    #[test]
    fn preview_keeps_the_first_rows_bounded() {
        let c = check(&["k"], &["v"], 10);
        let columns = vec!["k".to_string(), "v".to_string()];
        let mut s = Sampler::new(&c, &columns).unwrap();
        s.push(&[Some("x".repeat(1000)), None]);
        for i in 0..10_000 {
            s.push(&[Some(format!("k{i}")), Some(i.to_string())]);
        }
        let p = s.finish().preview.unwrap();
        assert_eq!(p.columns, columns);
        assert_eq!(p.rows.len(), PREVIEW_ROWS);
        assert_eq!(p.seen, 10_001);
        assert_eq!(p.omitted(), 10_001 - PREVIEW_ROWS as u64);
        assert!(p.cut);
        let first = p.rows[0][0].as_deref().unwrap();
        assert_eq!(first.len(), PREVIEW_CELL_BYTES + "…".len());
        assert_eq!(p.rows[0][1], None);
        assert_eq!(
            p.rows[1],
            vec![Some("k0".to_string()), Some("0".to_string())]
        );
        // The byte cap holds whatever the row width.
        let wide: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
        let mut p = Preview::new(&wide);
        let row: Vec<Option<String>> = (0..200).map(|_| Some("y".repeat(300))).collect();
        for _ in 0..50 {
            p.push(&row);
        }
        // A row over the cap is not kept, nor any after it: the preview stays the CSV's prefix.
        assert!(p.rows.is_empty());
        assert_eq!(p.seen, 50);
        // Empty cells count too: a very wide result of NULLs stays within the cap.
        let wide: Vec<String> = (0..2000).map(|i| format!("c{i}")).collect();
        let mut p = Preview::new(&wide);
        for _ in 0..50 {
            p.push(&vec![None; 2000]);
        }
        let kept = p.rows.len() * 2000 * PREVIEW_CELL_OVERHEAD;
        assert!(kept <= PREVIEW_BYTES, "{kept}");
    }

    #[test]
    fn missing_columns_are_an_error_naming_them() {
        let c = check(&["k"], &["v"], 10);
        let e = map(&c, &rs(&["x"], &[])).unwrap_err();
        assert_eq!(e.missing, vec!["k".to_string(), "v".to_string()]);
        assert!(e.to_string().contains("no columns k, v"), "{e}");
    }

    #[test]
    fn odd_numbers() {
        assert_eq!(parse_value("NaN").map(f64::is_nan), Some(true));
        assert_eq!(parse_value("Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("1e308"), Some(1e308));
        assert_eq!(parse_value("-0").map(|v| v.is_sign_negative()), Some(true));
        assert_eq!(parse_value(""), None);
        assert_eq!(parse_value("1 2"), None);
        assert_eq!(parse_value("12abc"), None);
    }
}
