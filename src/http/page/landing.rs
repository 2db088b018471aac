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

use std::sync::Arc;

use super::attention::{Found, Links, Mark, SlotView, finding_count, findings, item_html, judge};
use super::html::{footer, head, nav, now, push_esc, push_int, utc};
use crate::config::PageDetail;
use crate::snapshot::{Slot, State, Store, TargetState};

/// How many things needing attention the landing page lists per target (worst first); the
/// rest are counted, and marked in the target's list of checks.
pub const ATTENTION_ITEMS: usize = 10;

/// What a section shows of one slot, worked out once per change of the slot: its mark, why
/// it is skipped, and its view if it has findings to list. The landing page's cache keeps
/// one per slot, so a section re-rendered because one of its slots ran again does this work
/// for that slot only.
pub(super) struct Part {
    shown: Shown,
    /// The worst of its findings (or pending).
    mark: Mark,
}

/// What a section shows of a slot besides its mark. One of three, in the space of a view:
/// a skipped slot lists nothing.
enum Shown {
    /// Applicable, nothing to list.
    Quiet,
    /// Why the check does not run on this target: the section groups the skipped checks by
    /// it.
    Skipped(Arc<str>),
    /// The slot's view, kept only while it has findings (only those are listed): a first
    /// view judges every slot in place but clones a view for these alone, and a healthy
    /// fleet has none.
    Found(SlotView),
}

/// A finding a section lists, and where its HTML is in the section: the next render of the
/// section copies it from there while the finding's part is the same (at most
/// [`ATTENTION_ITEMS`] per section, so a few bytes each instead of a string per finding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Listed {
    /// The slot (index into the store's slots) and its finding (index into its part's).
    pub slot: u32,
    pub found: u32,
    /// Byte range in the section.
    pub from: u32,
    pub to: u32,
}

impl Part {
    /// What `s` shows, read under the store's lock: judged in place, its view cloned only
    /// when it has findings to list.
    pub fn of(s: &Slot) -> Self {
        let (mark, count) = judge(s);
        let shown = match &s.not_applicable {
            Some(why) => Shown::Skipped(why.clone()),
            None if count > 0 => Shown::Found(SlotView::of(s)),
            None => Shown::Quiet,
        };
        Part { shown, mark }
    }

    /// Whether this part still shows what `s` holds (its check aside: the caller knows it is
    /// the same check, and sets a kept view's with [`Part::set_check`]).
    pub fn shows(&self, s: &Slot) -> bool {
        match (&self.shown, &s.not_applicable) {
            (Shown::Found(view), _) => view.shows(s),
            (Shown::Skipped(why), Some(now)) => why == now,
            (Shown::Quiet, None) => judge(s) == (self.mark, 0),
            _ => false,
        }
    }

    /// Gives a kept view the new store's check (the same configuration, another `Arc`).
    pub fn set_check(&mut self, check: &Arc<crate::config::CheckConfig>) {
        if let Shown::Found(view) = &mut self.shown {
            view.check = check.clone();
        }
    }

    /// The slot's view, if it has findings to list.
    fn found(&self) -> Option<&SlotView> {
        match &self.shown {
            Shown::Found(view) => Some(view),
            _ => None,
        }
    }

    /// Why the check does not run on this target, if it does not.
    fn skipped(&self) -> Option<&str> {
        match &self.shown {
            Shown::Skipped(why) => Some(why),
            _ => None,
        }
    }
}

/// `/` rendered whole, without the cache (what the first view after a start or a reload
/// costs): the store's read lock is held only to clone what the sections show.
pub fn landing(store: &Store) -> String {
    let (targets, lists, parts, links, detail) = {
        let st = store.read();
        let parts: Vec<Part> = st.slots.iter().map(Part::of).collect();
        (
            st.targets.clone(),
            slot_lists(&st),
            parts,
            Links::of(&st),
            st.page_detail,
        )
    };
    let mut h = String::with_capacity(16 * 1024 + 6 * 1024 * targets.len());
    start(&mut h, now());
    let mut listed = Vec::new();
    for (t, list) in targets.iter().zip(&lists) {
        card(
            &mut h,
            t,
            &parts,
            list,
            &links,
            detail,
            Reuse::NONE,
            &mut listed,
        );
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

/// Findings an earlier render of a section listed whose parts are still the same, and that
/// render's HTML: what [`card`] copies instead of writing them again.
#[derive(Clone, Copy)]
pub(super) struct Reuse<'a> {
    pub listed: &'a [Listed],
    pub html: &'a [u8],
}

impl Reuse<'_> {
    pub const NONE: Reuse<'static> = Reuse {
        listed: &[],
        html: &[],
    };

    /// The HTML of finding `found` of slot `slot`, if that render listed it.
    fn find(&self, slot: usize, found: usize) -> Option<&str> {
        let l =
            (self.listed.iter()).find(|l| l.slot as usize == slot && l.found as usize == found)?;
        std::str::from_utf8(self.html.get(l.from as usize..l.to as usize)?).ok()
    }
}

/// One finding of a section, with what sorts it and what writes it.
struct Item<'a> {
    /// [`Found::rank`]: crit, then errors, then warn.
    rank: u8,
    /// The slot (index into the store's slots) and the finding's index among its own.
    slot: usize,
    index: usize,
    found: Found,
    view: &'a SlotView,
}

/// One target's section of `/`: everything in it comes from `t`, the parts of its slots
/// (`list`: their indices into `parts` and `links`, in check order) and `detail`, so the
/// cache may reuse it until one of their stamps moves. The findings it lists are copied
/// from `reuse` where it has them, and go to `listed` (cleared first) with their place in
/// what this call wrote. Returns how many it copied.
#[allow(clippy::too_many_arguments)]
pub(super) fn card(
    h: &mut String,
    t: &TargetState,
    parts: &[Part],
    list: &[usize],
    links: &Links,
    detail: PageDetail,
    reuse: Reuse<'_>,
    listed: &mut Vec<Listed>,
) -> usize {
    let base = h.len();
    let mut copied = 0;
    listed.clear();
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
        Some(c) => {
            h.push_str("Deployment <b>");
            h.push_str(c.deployment.as_str());
            if c.forced {
                h.push_str("</b> (configured; families not probed)");
            } else {
                h.push_str("</b> (detected) · readable: ");
                let families = c.readable_families();
                if families.is_empty() {
                    h.push_str("SYS views only");
                }
                for (n, f) in families.iter().enumerate() {
                    if n > 0 {
                        h.push_str(", ");
                    }
                    h.push_str(f);
                }
            }
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

    // What needs attention, worst first (a stable sort: slot order within a rank).
    let mut items: Vec<Item<'_>> = Vec::with_capacity(
        (list.iter())
            .filter_map(|&i| parts[i].found())
            .map(finding_count)
            .sum(),
    );
    let (mut ok, mut warn, mut crit, mut failed, mut pending, mut applicable) = (0, 0, 0, 0, 0, 0);
    for &i in list {
        let p = &parts[i];
        if p.skipped().is_some() {
            continue;
        }
        applicable += 1;
        match p.mark {
            Mark::Ok => ok += 1,
            Mark::Warn => warn += 1,
            Mark::Crit => crit += 1,
            Mark::Fail => failed += 1,
            Mark::Pending => pending += 1,
        }
        if let Some(view) = p.found() {
            items.extend(findings(view).enumerate().map(|(f, found)| Item {
                rank: found.rank(),
                slot: i,
                index: f,
                found,
                view,
            }));
        }
    }
    items.sort_by_key(|item| item.rank);
    if items.is_empty() {
        if pending == applicable && applicable > 0 {
            h.push_str("<p class=\"muted\">Waiting for the first runs.</p>");
        } else {
            h.push_str(
                "<p class=\"ok\">Nothing needs attention: no value crosses a threshold and \
                 every check that ran succeeded.</p>",
            );
        }
    } else {
        h.push_str("<h3>Needs attention (");
        push_int(h, items.len() as i64);
        h.push_str(")</h3><ul class=\"att\">");
        for item in items.iter().take(ATTENTION_ITEMS) {
            let (i, f) = (item.slot, item.index);
            let from = h.len();
            match reuse.find(i, f) {
                Some(html) => {
                    h.push_str(html);
                    copied += 1;
                }
                None => item_html(h, item.view, &item.found, detail, Some((links, i))),
            }
            listed.push(Listed {
                slot: i as u32,
                found: f as u32,
                from: (from - base) as u32,
                to: (h.len() - base) as u32,
            });
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
    h.push_str(if failed > 0 {
        "<details class=\"checks\" open><summary>"
    } else {
        "<details class=\"checks\"><summary>"
    });
    for (n, what) in [
        (applicable, " checks: "),
        (ok, " ok, "),
        (crit, " crit, "),
        (warn, " warn, "),
        (failed, " failed, "),
        (pending, " pending</summary><p class=\"checks\">"),
    ] {
        push_int(h, n);
        h.push_str(what);
    }
    for &i in list {
        let p = &parts[i];
        if p.skipped().is_none() {
            h.push_str("<a class=\"");
            h.push_str(p.mark.as_str());
            h.push('"');
            links.push(h, i);
        }
    }
    h.push_str("</p></details>");

    // Checks that cannot run here, grouped by why.
    let mut skipped: Vec<(&str, usize)> = Vec::with_capacity(list.len());
    skipped.extend((list.iter()).filter_map(|&i| parts[i].skipped().map(|w| (w, i))));
    if !skipped.is_empty() {
        skipped.sort_by_key(|(why, _)| *why);
        h.push_str("<details class=\"skipped\"><summary>");
        push_int(h, skipped.len() as i64);
        h.push_str(" checks skipped here</summary><ul class=\"skip\">");
        let mut last = None;
        for (why, i) in skipped {
            if last != Some(why) {
                if last.is_some() {
                    h.push_str("</li>");
                }
                h.push_str("<li><span class=\"muted\">");
                push_esc(h, why);
                h.push_str(":</span> ");
                last = Some(why);
            }
            h.push_str("<a");
            links.push(h, i);
        }
        h.push_str("</li></ul></details>");
    }
    h.push_str("</section>");
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_stays_small() {
        // A first view writes and reads one part per slot (3,300 at 100 targets × the pack)
        // and is bound by memory, not instructions: a part holds what a section shows of a
        // slot and nothing else (with the whole `Status`, its findings and their HTML, it
        // was 152 bytes; a view beside a skip reason made it 96).
        let size = std::mem::size_of::<Part>();
        assert!(size <= 80, "a part is {size} bytes");
    }
}
