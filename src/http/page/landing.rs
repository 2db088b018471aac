//! The landing page `/`: per target, its deployment and readable families, up state, static
//! labels, the database user an AWS login resolved to, and what needs attention (worst
//! first, at most [`ATTENTION_ITEMS`]); every applicable check as a marked link, skipped
//! checks folded away and grouped by why.
//!
//! Owns: the page's layout, as a start (per view: it says when), one section per target
//! ([`card`], the unit the cache keeps) and an end. Does not own: when a section is rendered
//! again (`cache`), nor the items themselves (`attention`). No time on a target's section is
//! relative to now, so a section stays true until what it shows changes.

use std::fmt::Write as _;

use super::attention::{SlotView, check_href, crossings, database_note, failure, item_html, worst};
use super::html::{footer, head, nav, now, push_esc, push_name, utc};
use crate::config::PageDetail;
use crate::snapshot::{State, Store, TargetState};

/// How many things needing attention the landing page lists per target (worst first); the
/// rest are counted, and marked in the target's list of checks.
pub const ATTENTION_ITEMS: usize = 10;

/// `/` rendered whole, without the cache (what the first view after a start or a reload
/// costs): the store's read lock is held only to clone what the sections show.
pub fn landing(store: &Store) -> String {
    let (targets, slots, detail) = {
        let st = store.read();
        let all: Vec<usize> = (0..st.targets.len()).collect();
        let slots = views(&st, &slot_lists(&st), &all);
        (st.targets.clone(), slots, st.page_detail)
    };
    let mut h = String::with_capacity(16 * 1024 + 6 * 1024 * targets.len());
    start(&mut h, now());
    for (t, s) in targets.iter().zip(&slots) {
        card(&mut h, t, s, detail);
    }
    end(&mut h, targets.is_empty());
    h
}

/// The slots of each target, in check order (indices into [`State::slots`]).
pub(super) fn slot_lists(st: &State) -> Vec<Vec<usize>> {
    let mut lists = vec![Vec::new(); st.targets.len()];
    for (i, s) in st.slots.iter().enumerate() {
        lists[s.target_index].push(i);
    }
    lists
}

/// What the sections of `targets` show of their slots, cloned under the lock (`lists` from
/// [`slot_lists`] on the same state).
pub(super) fn views(st: &State, lists: &[Vec<usize>], targets: &[usize]) -> Vec<Vec<SlotView>> {
    targets
        .iter()
        .map(|&t| {
            lists[t]
                .iter()
                .map(|&i| SlotView::of(&st.slots[i]))
                .collect()
        })
        .collect()
}

/// The page up to the first target's section: the only part that changes with every view.
pub(super) fn start(h: &mut String, now: f64) {
    head(h, "Redshift Exporter");
    h.push_str("<header><h1>Redshift Exporter</h1>");
    nav(h, "");
    let _ = write!(h, "<p>As of {}.</p></header>", utc(now));
}

/// The page after the last target's section.
pub(super) fn end(h: &mut String, no_targets: bool) {
    if no_targets {
        h.push_str("<p>No targets are configured.</p>");
    }
    footer(h);
}

/// The up state as a badge.
fn up_badge(t: &TargetState) -> &'static str {
    match t.up {
        Some(true) => "<span class=\"badge ok\">up</span>",
        Some(false) => "<span class=\"badge fail\">down</span>",
        None => "<span class=\"badge muted\">not tried yet</span>",
    }
}

/// One target's section of `/`: everything in it comes from `t` and `slots` (its slots, in
/// check order) and `detail`, so the cache may reuse it until one of their stamps moves.
pub(super) fn card(h: &mut String, t: &TargetState, slots: &[SlotView], detail: PageDetail) {
    // Another database of a target has a section of its own, next to the target's (entries of
    // one target are adjacent), named `target · database d`.
    h.push_str("<section class=\"card\" id=\"target-");
    push_esc(h, &t.name);
    if let Some(db) = &t.database {
        h.push('@');
        push_esc(h, db);
    }
    h.push_str("\"><div class=\"head\"><h2>");
    push_esc(h, &t.name);
    if let Some(db) = &t.database {
        h.push_str(" <span class=\"muted\">· database</span> ");
        push_esc(h, db);
    }
    h.push_str("</h2>");
    h.push_str(up_badge(t));
    h.push_str("</div><p class=\"muted\">");
    match &t.capabilities {
        Some(c) if c.forced => {
            let _ = write!(
                h,
                "Deployment <b>{}</b> (configured; families not probed)",
                c.deployment.as_str()
            );
        }
        Some(c) => {
            let f = c.readable_families();
            let _ = write!(
                h,
                "Deployment <b>{}</b> (detected) · readable: {}",
                c.deployment.as_str(),
                if f.is_empty() {
                    "SYS views only".to_string()
                } else {
                    f.join(", ")
                }
            );
        }
        None => h.push_str("Deployment not detected yet"),
    }
    if let Some(user) = &t.db_user {
        h.push_str(" · database user (AWS) <b>");
        push_esc(h, user);
        h.push_str("</b>");
    }
    if !t.labels.is_empty() {
        h.push_str(" · labels");
        for (k, v) in t.labels.iter() {
            h.push_str(" <code>");
            push_esc(h, k);
            h.push('=');
            push_esc(h, v);
            h.push_str("</code>");
        }
    }
    h.push_str("</p>");

    // What needs attention, per slot (for the marks in the list of checks) and worst first.
    let mut items = Vec::new();
    let mut marks = Vec::with_capacity(slots.len());
    for s in slots {
        let from = items.len();
        items.extend(failure(s));
        crossings(s, &mut items);
        marks.push(worst(&items[from..]));
    }
    items.sort_by_key(|i| i.rank);
    let applicable: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].not_applicable.is_none())
        .collect();
    let count = |mark: &str| applicable.iter().filter(|&&i| marks[i] == mark).count();
    let pending = applicable.iter().filter(|&&i| !slots[i].status.ran).count();
    if items.is_empty() {
        if pending == applicable.len() && !applicable.is_empty() {
            h.push_str("<p class=\"muted\">Waiting for the first runs.</p>");
        } else {
            h.push_str(
                "<p class=\"ok\">Nothing needs attention: no value crosses a threshold and \
                 every check that ran succeeded.</p>",
            );
        }
    } else {
        let _ = write!(
            h,
            "<h3>Needs attention ({})</h3><ul class=\"att\">",
            items.len()
        );
        for i in items.iter().take(ATTENTION_ITEMS) {
            item_html(h, i, detail, Some(&t.name));
        }
        h.push_str("</ul>");
        if items.len() > ATTENTION_ITEMS {
            let _ = write!(
                h,
                "<p class=\"muted\">… and {} more, in the checks marked below.</p>",
                items.len() - ATTENTION_ITEMS
            );
        }
    }

    // Every check that applies here, marked with its worst state.
    let failed = count("fail");
    let _ = write!(
        h,
        "<details class=\"checks\"{}><summary>{} checks: {} ok, {} crit, {} warn, {} failed, {} pending</summary><p class=\"checks\">",
        if failed > 0 { " open" } else { "" },
        applicable.len(),
        count("ok") - pending,
        count("crit"),
        count("warn"),
        failed,
        pending
    );
    for &i in &applicable {
        let s = &slots[i];
        let mark = if s.status.ran { marks[i] } else { "pending" };
        h.push_str("<a class=\"");
        h.push_str(mark);
        h.push_str("\" href=\"");
        check_href(h, &s.check.name, &t.name, s.database.as_deref());
        h.push_str("\">");
        push_name(h, &s.check.name);
        database_note(h, s);
        h.push_str("</a> ");
    }
    h.push_str("</p></details>");

    // Checks that cannot run here, grouped by why.
    let mut skipped: Vec<(&str, &SlotView)> = slots
        .iter()
        .filter_map(|s| s.not_applicable.as_deref().map(|w| (w, s)))
        .collect();
    if !skipped.is_empty() {
        skipped.sort_by_key(|(why, _)| *why);
        let _ = write!(
            h,
            "<details class=\"skipped\"><summary>{} checks skipped here</summary><ul class=\"skip\">",
            skipped.len()
        );
        let mut last = None;
        for (why, s) in skipped {
            if last != Some(why) {
                if last.is_some() {
                    h.push_str("</li>");
                }
                h.push_str("<li><span class=\"muted\">");
                push_esc(h, why);
                h.push_str(":</span> ");
                last = Some(why);
            }
            h.push_str("<a href=\"");
            check_href(h, &s.check.name, &t.name, s.database.as_deref());
            h.push_str("\">");
            push_name(h, &s.check.name);
            database_note(h, s);
            h.push_str("</a> ");
        }
        h.push_str("</li></ul></details>");
    }
    h.push_str("</section>");
}
