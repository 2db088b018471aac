//! What "needs attention" on a slot, shared by both pages: a failed last run (error kind and
//! message), or a value of the last successful run beyond its column's `warn`/`crit`
//! threshold from the configuration; and how one such item is written as a list entry.
//!
//! Owns: [`SlotView`] (the part of a slot the pages show, cloned under the store's lock so
//! that formatting happens after it is released), the ranking of items and their HTML. Does
//! not own: which items a page lists (`landing`, `detail`).

use std::sync::Arc;

use super::html::{push_esc, push_name, push_value};
use crate::config::{CheckConfig, Level, PageDetail, ValueSpec};
use crate::db::CheckError;
use crate::sample::{Crossing, Samples};
use crate::snapshot::{Slot, State, Status};

/// What the pages show of one slot: `Arc` clones and the small status, taken under the
/// store's read lock and formatted after it is released. Kept small (no target name: the
/// caller has it), since the first view of `/` takes one per slot.
#[derive(Debug, Clone)]
pub(super) struct SlotView {
    /// Name, help, values and their thresholds.
    pub check: Arc<CheckConfig>,
    /// The last run: ran, success, error kind and message.
    pub status: Outcome,
    /// The last successful run's values, for the threshold crossings.
    pub samples: Option<Arc<Samples>>,
    /// Why the check does not run on this target, if it does not.
    pub not_applicable: Option<Arc<str>>,
}

impl SlotView {
    pub fn of(s: &Slot) -> Self {
        SlotView {
            check: s.check.clone(),
            status: Outcome::of(&s.status),
            samples: s.samples.clone(),
            not_applicable: s.not_applicable.clone(),
        }
    }

    /// Whether this view still shows what `s` holds (its check aside: the caller knows it is
    /// the same check): the same last run, the same samples (the same allocation: samples are
    /// replaced whole, never changed in place) and the same applicability.
    pub fn shows(&self, s: &Slot) -> bool {
        let same_samples = match (&self.samples, &s.samples) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_samples && self.status.shows(&s.status) && self.not_applicable == s.not_applicable
    }
}

/// What the pages show of a slot's last run: whether it ran and succeeded, and its error;
/// not its times and duration (the check page reads those from the slot itself). A first
/// view of `/` writes one per slot into its parts and reads them back, 3,300 at 100 targets
/// × the pack, and that view is bound by memory: the whole [`Status`] made a part about
/// 120 bytes, this 80.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Outcome {
    pub ran: bool,
    pub success: bool,
    pub last_error: Option<CheckError>,
}

impl Outcome {
    fn of(s: &Status) -> Self {
        Outcome {
            ran: s.ran,
            success: s.success,
            last_error: s.last_error.clone(),
        }
    }

    /// Whether this shows what `s` says.
    fn shows(&self, s: &Status) -> bool {
        self.ran == s.ran && self.success == s.success && self.last_error == s.last_error
    }
}

/// One thing that needs attention on a slot: small and owned (no borrow of the slot).
#[derive(Clone, Copy)]
pub(super) enum Found {
    /// The last run failed.
    Failed,
    /// A value of the last run is beyond a threshold.
    Beyond(Crossing),
}

impl Found {
    /// Crit before errors before warn.
    pub fn rank(&self) -> u8 {
        match self {
            Found::Beyond(Crossing {
                level: Level::Crit, ..
            }) => 0,
            Found::Failed => 1,
            Found::Beyond(_) => 2,
        }
    }
}

/// The worst state of a slot: the class of its link and what the list of checks counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Mark {
    Ok,
    Warn,
    Crit,
    Fail,
    /// Applicable, not run yet.
    Pending,
}

impl Mark {
    /// The CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Ok => "ok",
            Mark::Warn => "warn",
            Mark::Crit => "crit",
            Mark::Fail => "fail",
            Mark::Pending => "pending",
        }
    }
}

/// What a slot's mark and findings follow from, borrowed from a view or, under the store's
/// lock, from the slot itself (so that a slot with nothing to list is judged without a
/// view: [`judge`]).
#[derive(Clone, Copy)]
struct Facts<'a> {
    ran: bool,
    success: bool,
    skipped: bool,
    /// The last successful run's crossings; none when the last run failed.
    crossings: &'a [Crossing],
}

impl<'a> Facts<'a> {
    fn new(ran: bool, success: bool, skipped: bool, samples: Option<&'a Samples>) -> Self {
        Facts {
            ran,
            success,
            skipped,
            crossings: match samples {
                Some(samples) if success => &samples.crossings,
                _ => &[],
            },
        }
    }

    fn of(slot: &'a SlotView) -> Self {
        let s = &slot.status;
        let skipped = slot.not_applicable.is_some();
        Facts::new(s.ran, s.success, skipped, slot.samples.as_deref())
    }

    /// Whether the last run failed (and the check applies).
    fn failed(&self) -> bool {
        self.ran && !self.success && !self.skipped
    }

    fn count(&self) -> usize {
        usize::from(self.failed()) + self.crossings.len()
    }

    /// Pending before the first run, else the worst finding's.
    fn mark(&self) -> Mark {
        if !self.ran {
            Mark::Pending
        } else if self.crossings.iter().any(|c| c.level == Level::Crit) {
            Mark::Crit
        } else if self.failed() {
            Mark::Fail
        } else if !self.crossings.is_empty() {
            Mark::Warn
        } else {
            Mark::Ok
        }
    }
}

/// The threshold crossings of one slot's last successful run (worked out when its samples
/// were made: `sample::Crossing`); none when the last run failed.
pub(super) fn crossings(slot: &SlotView) -> &[Crossing] {
    Facts::of(slot).crossings
}

/// Everything that needs attention on one slot, in order: its failure, then its threshold
/// crossings (row by row within each value column). Read from the slot, not collected.
pub(super) fn findings(slot: &SlotView) -> impl Iterator<Item = Found> + '_ {
    let facts = Facts::of(slot);
    (facts.failed().then_some(Found::Failed).into_iter())
        .chain(facts.crossings.iter().copied().map(Found::Beyond))
}

/// How many [`findings`] the slot has.
pub(super) fn finding_count(slot: &SlotView) -> usize {
    Facts::of(slot).count()
}

/// The mark of `s` (pending before its first run, else its worst finding's) and how many
/// [`findings`] it has, read from the slot in place, under the store's lock.
pub(super) fn judge(s: &Slot) -> (Mark, usize) {
    let (status, skipped) = (&s.status, s.not_applicable.is_some());
    let facts = Facts::new(status.ran, status.success, skipped, s.samples.as_deref());
    (facts.mark(), facts.count())
}

/// Each slot's link to its check page, from the ` href` on:
/// ` href="checks/{check}/{target}">{check}</a> `, with both names HTML-safe (from
/// [`push_name`]); a per-database check's is `checks/{check}/{target}@{database}` with
/// ` @database` after its name, so the same check on two databases of one target never
/// shares a link. Relative, so it works under a path prefix. `<a` or `<a class="…"` goes
/// before it. And the end of each listed threshold crossing, which only the configuration
/// decides.
///
/// Fixed for a store, so worked out when its page cache is made, and written per view with
/// one copy each: the first view of a fleet writes a link for every applicable slot and one
/// per listed finding (4,300 at 100 targets × the pack), and three short copies per link
/// were a tenth of that view. All links are one string (about 230 kB at 3,300 slots), so
/// they cost 2 allocations, not one per slot.
#[derive(Default)]
pub(super) struct Links {
    /// Every slot's link text, in store order.
    text: String,
    /// Where slot `i`'s link starts in `text`; it ends where slot `i + 1`'s starts (one
    /// entry more than slots).
    at: Vec<u32>,
    /// Per slot: its check's index into `ends`.
    check: Vec<u32>,
    /// Per check index, per value column, at `[warn, crit]`: what a listed crossing of that
    /// threshold ends with (from [`push_end`]); empty for a level the column has no
    /// threshold for.
    ends: Vec<Vec<[Box<str>; 2]>>,
}

impl Links {
    pub fn of(st: &State) -> Self {
        let mut text = String::with_capacity(st.slots.len() * 72);
        let mut at = Vec::with_capacity(st.slots.len() + 1);
        let mut ends: Vec<Vec<[Box<str>; 2]>> = Vec::new();
        for s in &st.slots {
            at.push(text.len() as u32);
            push_link(&mut text, &s.check.name, &s.target, s.database.as_deref());
            if ends.len() <= s.check_index {
                ends.resize(s.check_index + 1, Vec::new());
            }
            if ends[s.check_index].is_empty() {
                ends[s.check_index] = (s.check.values.iter())
                    .map(|spec| {
                        let t = spec.thresholds;
                        [(Level::Warn, t.warn), (Level::Crit, t.crit)].map(|(l, t)| {
                            let mut h = String::new();
                            if let Some(t) = t {
                                push_end(&mut h, l, spec, t);
                            }
                            h.into_boxed_str()
                        })
                    })
                    .collect();
            }
        }
        at.push(text.len() as u32);
        Links {
            text,
            at,
            check: st.slots.iter().map(|s| s.check_index as u32).collect(),
            ends,
        }
    }

    /// How many slots it has a link for.
    pub fn len(&self) -> usize {
        self.check.len()
    }

    /// Writes slot `i`'s link, from the ` href` on.
    pub fn push(&self, h: &mut String, i: usize) {
        h.push_str(&self.text[self.at[i] as usize..self.at[i + 1] as usize]);
    }

    /// The end of a listed crossing of value column `value` at `level` on slot `i`.
    fn end(&self, i: usize, value: usize, level: Level) -> Option<&str> {
        let ends = self.ends.get(self.check[i] as usize)?.get(value)?;
        let end = &ends[usize::from(level == Level::Crit)];
        (!end.is_empty()).then_some(&**end)
    }
}

/// A link's text from the ` href` on (see [`Links`]).
fn push_link(h: &mut String, check: &str, target: &str, db: Option<&str>) {
    h.push_str(" href=\"checks/");
    push_name(h, check);
    h.push('/');
    push_name(h, target);
    match db {
        None => {
            h.push_str("\">");
            push_name(h, check);
            h.push_str("</a> ");
        }
        Some(db) => {
            h.push('@');
            push_esc(h, db);
            h.push_str("\">");
            push_name(h, check);
            h.push_str(" <span class=\"muted\">@");
            push_esc(h, db);
            h.push_str("</span></a> ");
        }
    }
}

/// What a listed crossing of `threshold` at `level` ends with, after its value:
/// `</b> <span class="muted">(crit &gt; 90 %)</span></li>`.
fn push_end(h: &mut String, level: Level, spec: &ValueSpec, threshold: f64) {
    h.push_str("</b> <span class=\"muted\">(");
    h.push_str(level.as_str());
    h.push_str(if spec.thresholds.below {
        " &lt; "
    } else {
        " &gt; "
    });
    push_value(h, &spec.metric, threshold);
    h.push_str(")</span></li>");
}

/// One finding of `slot` as a list entry; `link` (the links and the slot's index in them)
/// prefixes it with a link to the check page, and gives the end of a crossing ready-made.
pub(super) fn item_html(
    h: &mut String,
    slot: &SlotView,
    i: &Found,
    detail: PageDetail,
    link: Option<(&Links, usize)>,
) {
    h.push_str(match i {
        Found::Failed => "<li><span class=\"badge fail\">error</span> ",
        Found::Beyond(Crossing {
            level: Level::Crit, ..
        }) => "<li><span class=\"badge crit\">crit</span> ",
        Found::Beyond(_) => "<li><span class=\"badge warn\">warn</span> ",
    });
    if let Some((links, at)) = link {
        h.push_str("<a");
        links.push(h, at);
    }
    match *i {
        Found::Failed => {
            let e = slot.status.last_error.as_ref();
            h.push_str("failed: <b>");
            h.push_str(e.map(|e| e.kind.as_str()).unwrap_or("error"));
            h.push_str("</b>");
            if let (Some(e), PageDetail::Full) = (e, detail) {
                h.push_str("<span class=\"msg\">");
                push_esc(h, &e.message);
                h.push_str("</span>");
            }
            h.push_str("</li>");
        }
        Found::Beyond(Crossing { row, value, level }) => {
            let (row, value) = (row as usize, value as usize);
            // The samples were made by this check (a reload that changes a check does not
            // keep its slots' samples), so the column is there; an empty entry if not.
            let Some(spec) = slot.check.values.get(value) else {
                h.push_str("</li>");
                return;
            };
            let row = slot.samples.as_ref().and_then(|s| s.rows.get(row));
            let labels = row.map(|r| r.labels.as_slice()).unwrap_or_default();
            let v = row
                .and_then(|r| r.values.get(value).copied().flatten())
                .unwrap_or(f64::NAN);
            let t = &spec.thresholds;
            let threshold = match level {
                Level::Crit => t.crit,
                Level::Warn => t.warn,
            }
            .unwrap_or(f64::NAN);
            // Metric and label names are validated as Prometheus names (`config::names`):
            // nothing in them to escape. Label values come from the database: escaped.
            h.push_str("<code>");
            h.push_str(&spec.metric);
            if !labels.is_empty() {
                h.push('{');
                for (n, (k, l)) in slot.check.labels.iter().zip(labels).enumerate() {
                    if n > 0 {
                        h.push_str(", ");
                    }
                    h.push_str(k);
                    h.push_str("=\"");
                    push_esc(h, l);
                    h.push('"');
                }
                h.push('}');
            }
            h.push_str("</code> = <b>");
            push_value(h, &spec.metric, v);
            match link.and_then(|(links, at)| links.end(at, value, level)) {
                Some(end) => h.push_str(end),
                None => push_end(h, level, spec, threshold),
            }
        }
    }
}

/// The slot's state as a badge: skipped, pending, ok or error.
pub(super) fn status_badge(slot: &SlotView) -> &'static str {
    if slot.not_applicable.is_some() {
        "<span class=\"badge muted\">skipped</span>"
    } else if !slot.status.ran {
        "<span class=\"badge muted\">pending</span>"
    } else if slot.status.success {
        "<span class=\"badge ok\">ok</span>"
    } else {
        "<span class=\"badge fail\">error</span>"
    }
}
