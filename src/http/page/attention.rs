//! What "needs attention" on a slot, shared by both pages: a failed last run (error kind and
//! message), or a value of the last successful run beyond its column's `warn`/`crit`
//! threshold from the configuration; and how one such item is written as a list entry.
//!
//! Owns: [`SlotView`] (the part of a slot the pages show, cloned under the store's lock so
//! that formatting happens after it is released), the ranking of items and their HTML. Does
//! not own: which items a page lists (`landing`, `detail`).

use std::sync::Arc;

use super::html::{push_esc, push_name, push_value};
use crate::config::{CheckConfig, Level, PageDetail};
use crate::sample::Samples;
use crate::snapshot::{Slot, State, Status};

/// What the pages show of one slot: `Arc` clones and the small status, taken under the
/// store's read lock and formatted after it is released. Kept small (no target name: the
/// caller has it), since the first view of `/` takes one per slot.
#[derive(Debug, Clone)]
pub(super) struct SlotView {
    /// Name, help, values and their thresholds.
    pub check: Arc<CheckConfig>,
    /// The last run: ran, success, error kind and message.
    pub status: Status,
    /// The last successful run's values, for the threshold crossings.
    pub samples: Option<Arc<Samples>>,
    /// Why the check does not run on this target, if it does not.
    pub not_applicable: Option<Arc<str>>,
}

impl SlotView {
    pub fn of(s: &Slot) -> Self {
        SlotView {
            check: s.check.clone(),
            status: s.status.clone(),
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
        same_samples && self.status == s.status && self.not_applicable == s.not_applicable
    }
}

/// One thing that needs attention on a slot: owned and small (no borrow of the slot), so the
/// landing page's cache can keep a slot's findings until the slot changes.
#[derive(Clone, Copy)]
pub(super) struct Found {
    /// Crit before errors before warn.
    pub rank: u8,
    pub kind: Kind,
}

#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// The last run failed.
    Failed,
    /// Value `value` of sample row `row` is beyond `threshold`.
    Beyond {
        value: usize,
        row: usize,
        level: Level,
        threshold: f64,
        v: f64,
    },
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

/// Everything that needs attention on one slot, in order: its failure, then its threshold
/// crossings (row by row within each value column).
pub(super) fn findings(slot: &SlotView, out: &mut Vec<Found>) {
    out.extend(failure(slot));
    crossings(slot, out);
}

/// The threshold crossings of one slot's last successful run.
pub(super) fn crossings(slot: &SlotView, out: &mut Vec<Found>) {
    if !slot.status.success {
        return;
    }
    let Some(samples) = &slot.samples else {
        return;
    };
    for (vi, spec) in slot.check.values.iter().enumerate() {
        if spec.thresholds.is_empty() {
            continue;
        }
        for (ri, row) in samples.rows.iter().enumerate() {
            let Some(v) = row.values.get(vi).copied().flatten() else {
                continue;
            };
            if let Some((level, threshold)) = spec.thresholds.level(v) {
                out.push(Found {
                    rank: if level == Level::Crit { 0 } else { 2 },
                    kind: Kind::Beyond {
                        value: vi,
                        row: ri,
                        level,
                        threshold,
                        v,
                    },
                });
            }
        }
    }
}

/// The failure of one slot's last run, if it failed.
fn failure(slot: &SlotView) -> Option<Found> {
    let failed = slot.status.ran && !slot.status.success && slot.not_applicable.is_none();
    failed.then_some(Found {
        rank: 1,
        kind: Kind::Failed,
    })
}

/// The mark of a slot from its findings: pending before its first run, else the worst.
pub(super) fn mark(slot: &SlotView, found: &[Found]) -> Mark {
    if !slot.status.ran {
        return Mark::Pending;
    }
    match found.iter().map(|i| i.rank).min() {
        Some(0) => Mark::Crit,
        Some(1) => Mark::Fail,
        Some(_) => Mark::Warn,
        None => Mark::Ok,
    }
}

/// `name` as [`push_name`] writes it (for [`Links`]).
fn safe_name(name: &str) -> String {
    let mut h = String::with_capacity(name.len());
    push_name(&mut h, name);
    h
}

/// Each slot's link to its check page, from the ` href` on:
/// ` href="checks/{check}/{target}">{check}</a> `, with both names HTML-safe (from
/// [`push_name`]); a per-database check's is `checks/{check}/{target}@{database}` with
/// ` @database` after its name, so the same check on two databases of one target never
/// shares a link. Relative, so it works under a path prefix. `<a` or `<a class="…"` goes
/// before it.
///
/// Fixed for a store, so worked out when its page cache is made. What differs per check is
/// written once per check (the text before and after the target's name), each target's name
/// once, and a slot keeps which of them it links to: a link is three copies of short, hot
/// strings, and 3,300 slots cost about 100 kB instead of 300 kB of link text.
#[derive(Default)]
pub(super) struct Links {
    /// Per check index: its HTML-safe name, ` href="checks/{check}/` and `">{check}</a> `.
    checks: Vec<(String, String, String)>,
    targets: Vec<String>,
    /// Per slot, in store order: its check's and target's index into the names above, and
    /// its database (per-database checks).
    slots: Vec<(u32, u32, Option<Arc<str>>)>,
}

impl Links {
    pub fn of(st: &State) -> Self {
        let mut checks: Vec<(String, String, String)> = Vec::new();
        for s in &st.slots {
            if checks.len() <= s.check_index {
                checks.resize(s.check_index + 1, Default::default());
            }
            let c = &mut checks[s.check_index];
            if c.0.is_empty() {
                let name = safe_name(&s.check.name);
                *c = (
                    format!(" href=\"checks/{name}/"),
                    format!("\">{name}</a> "),
                    name,
                );
            }
        }
        Links {
            checks,
            targets: st.targets.iter().map(|t| safe_name(&t.name)).collect(),
            slots: (st.slots.iter())
                .map(|s| {
                    (
                        s.check_index as u32,
                        s.target_index as u32,
                        s.database.clone(),
                    )
                })
                .collect(),
        }
    }

    /// How many slots it has a link for.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Writes slot `i`'s link, from the ` href` on.
    pub fn push(&self, h: &mut String, i: usize) {
        let (c, t, db) = &self.slots[i];
        let (before, after, name) = &self.checks[*c as usize];
        h.push_str(before);
        h.push_str(&self.targets[*t as usize]);
        match db {
            None => h.push_str(after),
            Some(db) => {
                h.push('@');
                push_esc(h, db);
                h.push_str("\">");
                h.push_str(name);
                h.push_str(" <span class=\"muted\">@");
                push_esc(h, db);
                h.push_str("</span></a> ");
            }
        }
    }
}

/// One finding of `slot` as a list entry; `link` (the links and the slot's index in them)
/// prefixes it with a link to the check page.
pub(super) fn item_html(
    h: &mut String,
    slot: &SlotView,
    i: &Found,
    detail: PageDetail,
    link: Option<(&Links, usize)>,
) {
    let (class, badge) = match i.kind {
        Kind::Failed => ("fail", "error"),
        Kind::Beyond { level, .. } => (
            if level == Level::Crit { "crit" } else { "warn" },
            level.as_str(),
        ),
    };
    h.push_str("<li><span class=\"badge ");
    h.push_str(class);
    h.push_str("\">");
    h.push_str(badge);
    h.push_str("</span> ");
    if let Some((links, at)) = link {
        h.push_str("<a");
        links.push(h, at);
    }
    match i.kind {
        Kind::Failed => {
            let e = slot.status.last_error.as_ref();
            h.push_str("failed: <b>");
            h.push_str(e.map(|e| e.kind.as_str()).unwrap_or("error"));
            h.push_str("</b>");
            if let (Some(e), PageDetail::Full) = (e, detail) {
                h.push_str("<span class=\"msg\">");
                push_esc(h, &e.message);
                h.push_str("</span>");
            }
        }
        Kind::Beyond {
            value,
            row,
            threshold,
            v,
            ..
        } => {
            let spec = &slot.check.values[value];
            let labels = slot
                .samples
                .as_ref()
                .and_then(|s| s.rows.get(row))
                .map(|r| r.labels.as_slice())
                .unwrap_or_default();
            h.push_str("<code>");
            push_esc(h, &spec.metric);
            if !labels.is_empty() {
                h.push('{');
                for (n, (k, l)) in slot.check.labels.iter().zip(labels).enumerate() {
                    if n > 0 {
                        h.push_str(", ");
                    }
                    push_esc(h, k);
                    h.push_str("=\"");
                    push_esc(h, l);
                    h.push('"');
                }
                h.push('}');
            }
            h.push_str("</code> = <b>");
            push_value(h, &spec.metric, v);
            h.push_str("</b> <span class=\"muted\">(");
            h.push_str(badge);
            h.push_str(if spec.thresholds.below {
                " &lt; "
            } else {
                " &gt; "
            });
            push_value(h, &spec.metric, threshold);
            h.push_str(")</span>");
        }
    }
    h.push_str("</li>");
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
