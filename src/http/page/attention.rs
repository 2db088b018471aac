//! What "needs attention" on a slot, shared by both pages: a failed last run (error kind and
//! message), or a value of the last successful run beyond its column's `warn`/`crit`
//! threshold from the configuration; and how one such item is written as a list entry.
//!
//! Owns: [`SlotView`] (the part of a slot the pages show, cloned under the store's lock so
//! that formatting happens after it is released), the ranking of items and their HTML. Does
//! not own: which items a page lists (`landing`, `detail`).

use std::sync::Arc;

use super::html::{push_esc, push_name, value_text};
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
    /// The database of a per-database check's slot: named next to the check and part of
    /// the check page's path (`{target}@{database}`).
    pub database: Option<Arc<str>>,
}

impl SlotView {
    pub fn of(s: &Slot) -> Self {
        SlotView {
            check: s.check.clone(),
            status: s.status.clone(),
            samples: s.samples.clone(),
            not_applicable: s.not_applicable.clone(),
            database: s.database.clone(),
        }
    }
}

/// One thing that needs attention: cheap to collect, rendered only when listed.
#[derive(Clone, Copy)]
pub(super) struct Item<'a> {
    /// Crit before errors before warn.
    pub rank: u8,
    pub slot: &'a SlotView,
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

/// The threshold crossings of one slot's last successful run.
pub(super) fn crossings<'a>(slot: &'a SlotView, out: &mut Vec<Item<'a>>) {
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
                out.push(Item {
                    rank: if level == Level::Crit { 0 } else { 2 },
                    slot,
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
pub(super) fn failure(slot: &SlotView) -> Option<Item<'_>> {
    let failed = slot.status.ran && !slot.status.success && slot.not_applicable.is_none();
    failed.then_some(Item {
        rank: 1,
        slot,
        kind: Kind::Failed,
    })
}

/// The worst of a slot's items, as a CSS class: crit, fail, warn or ok.
pub(super) fn worst(items: &[Item<'_>]) -> &'static str {
    match items.iter().map(|i| i.rank).min() {
        Some(0) => "crit",
        Some(1) => "fail",
        Some(_) => "warn",
        None => "ok",
    }
}

/// One item as a list entry; `link` (the slot's target) prefixes it with a link to the check
/// page.
pub(super) fn item_html(h: &mut String, i: &Item<'_>, detail: PageDetail, link: Option<&str>) {
    let slot = i.slot;
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
    if let Some(target) = link {
        h.push_str("<a href=\"");
        check_href(h, &slot.check.name, target, slot.database.as_deref());
        h.push_str("\">");
        push_esc(h, &slot.check.name);
        database_note(h, slot);
        h.push_str("</a> ");
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
            push_esc(h, &value_text(&spec.metric, v));
            h.push_str("</b> <span class=\"muted\">(");
            h.push_str(badge);
            h.push_str(if spec.thresholds.below {
                " &lt; "
            } else {
                " &gt; "
            });
            push_esc(h, &value_text(&spec.metric, threshold));
            h.push_str(")</span>");
        }
    }
    h.push_str("</li>");
}

/// The link from `/` to a slot's check page (relative, so it works under a path prefix):
/// `checks/{check}/{target}`, or `checks/{check}/{target}@{database}` for a per-database
/// check, so the same check on two databases of one target never shares a link.
pub(super) fn check_href(h: &mut String, check: &str, target: &str, database: Option<&str>) {
    h.push_str("checks/");
    push_name(h, check);
    h.push('/');
    push_name(h, target);
    if let Some(db) = database {
        h.push('@');
        push_esc(h, db);
    }
}

/// ` @database` after a per-database check's name (nothing for a cluster-scoped one).
pub(super) fn database_note(h: &mut String, slot: &SlotView) {
    if let Some(db) = &slot.database {
        h.push_str(" <span class=\"muted\">@");
        push_esc(h, db);
        h.push_str("</span>");
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
