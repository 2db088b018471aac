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
use crate::snapshot::{Slot, Status};

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

/// The tail of a link to a slot's check page, from the ` href` on:
/// ` href="checks/{check}/{target}">{check}</a> `, with both names already HTML-safe (from
/// [`push_name`]); a per-database check's is `checks/{check}/{target}@{database}` with
/// ` @database` after its name, so the same check on two databases of one target never
/// shares a link. Relative, so it works under a path prefix. Names are fixed within a store,
/// so the landing page builds each slot's once; `<a` or `<a class="…"` goes before it.
pub(super) fn push_check_link(h: &mut String, check: &str, target: &str, database: Option<&str>) {
    h.push_str(" href=\"checks/");
    h.push_str(check);
    h.push('/');
    h.push_str(target);
    if let Some(db) = database {
        h.push('@');
        push_esc(h, db);
    }
    h.push_str("\">");
    h.push_str(check);
    if let Some(db) = database {
        h.push_str(" <span class=\"muted\">@");
        push_esc(h, db);
        h.push_str("</span>");
    }
    h.push_str("</a> ");
}

/// `name` as [`push_name`] writes it (for [`push_check_link`]).
pub(super) fn safe_name(name: &str) -> String {
    let mut h = String::with_capacity(name.len());
    push_name(&mut h, name);
    h
}

/// One finding of `slot` as a list entry; `link` (from [`push_check_link`]) prefixes it with a
/// link to the check page.
pub(super) fn item_html(
    h: &mut String,
    slot: &SlotView,
    i: &Found,
    detail: PageDetail,
    link: Option<&str>,
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
    if let Some(link) = link {
        h.push_str("<a");
        h.push_str(link);
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
