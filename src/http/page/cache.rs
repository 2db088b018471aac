//! The landing page's cache: each target's section rendered once and reused until something
//! it shows changes, so a view costs the targets that changed since the last one, not the
//! fleet.
//!
//! A section shows its target (`up`, capabilities, labels, the AWS database user), its slots
//! (last status, samples, applicability) and their checks' configuration (names, thresholds)
//! and `page_detail`. Every write to the store stamps what it changed with the generation it
//! publishes (`TargetState::changed`, `Slot::changed`); a section rendered at generation `g`
//! is reused while no stamp of its target or of one of its slots is above `g`. The
//! configuration's part cannot change within a store: a reload builds a new store, and with
//! it (`http::Live`) a new cache, which takes over the old one's slot parts of the slots the
//! reload kept ([`Landing::carry_from`]), so the first view after a reload works out only the
//! slots that changed. The cache holds one section per target and one part, one link and
//! one list entry per slot of its store and nothing else, so it is bounded by the live
//! targets.
//!
//! Under the store's read lock: a generation check, one pass over the stamps, and `Arc` clones
//! of what the stale sections show; the formatting happens after the lock is released. A view
//! is the page's start (it says when) and the sections, as chunks of one body: nothing large
//! is copied per view.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::attention::{Links, SlotView};
use super::html::now;
use super::landing::{Listed, Part, Reuse, card, end, slot_lists, start};
use crate::snapshot::{Carry, State, Store, TargetState};

/// `/` for one store: see the module's documentation.
pub struct Landing {
    store: Arc<Store>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The store generation the sections were brought to; 0 before the first view (stores
    /// start at 1).
    generation: u64,
    /// The slots of each target (indices into the store's slots): fixed for a store, so
    /// computed at the first view.
    lists: Vec<Vec<usize>>,
    /// One per target of the store, in its order.
    sections: Vec<Section>,
    /// Per slot of the store: what its target's section shows of it, worked out at the
    /// generation in `parts_at` (all of them at the first view).
    parts: Vec<Part>,
    /// Per slot: the generation `parts` was worked out at; stale when the slot's stamp is above.
    parts_at: Vec<u64>,
    /// Per slot: the tail of its check link; names are fixed for a store.
    links: Links,
    /// The page after the sections (footer): fixed for a store.
    end: Bytes,
    /// Sections rendered so far: what the tests and the benchmark count.
    rendered: u64,
    /// Slot parts worked out so far (what the tests count: only changed slots are).
    worked: u64,
    /// Listed findings copied from an earlier render instead of written (what the tests
    /// count).
    copied: u64,
}

/// One target's section and the generation it was rendered at.
struct Section {
    /// Valid while no stamp of the target or its slots is above this.
    at: u64,
    html: Bytes,
    /// What the next render of the section may copy instead of writing it again.
    listing: Listing,
}

/// The findings a section listed and where their HTML is: the next render copies those
/// whose part was not worked out again since. Writing a listed finding costs about ten
/// times copying it, and a section lists up to [`super::landing::ATTENTION_ITEMS`].
#[derive(Default)]
struct Listing {
    listed: Vec<Listed>,
    /// The HTML the ranges of `listed` are in: the section's own, or after a reload the old
    /// store's section of the same target (carried by [`Landing::carry_from`]).
    html: Bytes,
    /// An entry is valid while its slot's part was worked out at or before this generation.
    valid_at: u64,
}

impl Landing {
    /// The cache of `store`, with what is fixed for it (each target's slots, the links,
    /// the end of the page) worked out now, when the store is made, not at its first view.
    pub fn new(store: Arc<Store>) -> Self {
        let mut inner = Inner::default();
        inner.shape(&store.read());
        Landing {
            store,
            inner: Mutex::new(inner),
        }
    }

    /// `/` as the chunks of one body: the start (written per view), one section per target
    /// (shared, re-rendered only when changed) and the end.
    pub fn render(&self) -> Vec<Bytes> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.update(&self.store);
        let mut head = String::with_capacity(4 * 1024);
        start(&mut head, now());
        let mut out = Vec::with_capacity(inner.sections.len() + 2);
        out.push(Bytes::from(head));
        out.extend(inner.sections.iter().map(|s| s.html.clone()));
        out.push(inner.end.clone());
        out
    }

    /// Takes over from `old`, the cache of the store this one's replaced at a reload, the
    /// parts of the slots the reload kept (`slots[new] == Carry::Unchanged(old)`: the same
    /// check on the same target, its state copied by `Store::adopt`), so the first view after
    /// the reload works out only the slots that did change. The sections are rendered again
    /// (the links, the targets and the page's detail level may have changed), copying what
    /// the old sections listed of the kept slots.
    ///
    /// `old` is left as a cache that has not been viewed yet: a request still holding the old
    /// state renders it whole, correctly. A part is carried only if it shows what the new
    /// store holds for its slot now (the same status, samples and applicability), and used
    /// at the first view only if the slot has not been written since (a run that finished in
    /// between, or a new skip decision, makes it worked out again). Nothing is carried when
    /// the page's detail level changed (the listed findings' HTML depends on it). The
    /// comparing happens here, on the reload's path, not on a page view's.
    pub fn carry_from(&self, old: &Landing, slots: &[Carry]) {
        if old.store.read().page_detail != self.store.read().page_detail {
            return;
        }
        let (parts, old_sections) = {
            let mut o = old.inner.lock().unwrap_or_else(|e| e.into_inner());
            let taken = (
                std::mem::take(&mut o.parts),
                std::mem::take(&mut o.sections),
            );
            // Not viewed yet, as far as the next view knows (its shape is worked out again
            // then); the counts go on.
            *o = Inner {
                worked: o.worked,
                rendered: o.rendered,
                copied: o.copied,
                ..Inner::default()
            };
            taken
        };
        let st = self.store.read();
        if parts.is_empty() || slots.len() != st.slots.len() {
            return;
        }
        let old_len = parts.len();
        // The same slots in the same order (the file re-read, labels or thresholds of other
        // checks changed): the parts stay where they are.
        let identity = slots.len() == parts.len()
            && slots
                .iter()
                .enumerate()
                .all(|(ni, c)| *c == Carry::Unchanged(ni));
        let mut parts_at = vec![st.generation; st.slots.len()];
        let mut keep = |i: usize, part: Option<Part>, slot: &crate::snapshot::Slot| match part
            .filter(|p| p.view.shows(slot))
        {
            Some(mut p) => {
                p.view.check = slot.check.clone();
                p
            }
            // Worked out at the first view: stale at every generation.
            None => {
                parts_at[i] = 0;
                Part::unworked(SlotView::of(slot))
            }
        };
        let parts: Vec<Part> = if identity {
            // Collected in place: the same allocation, no part moved elsewhere.
            (parts.into_iter().zip(&st.slots).enumerate())
                .map(|(i, (p, slot))| keep(i, Some(p), slot))
                .collect()
        } else {
            let mut old: Vec<Option<Part>> = parts.into_iter().map(Some).collect();
            (slots.iter().zip(&st.slots).enumerate())
                .map(|(i, (c, slot))| {
                    let p = match *c {
                        Carry::Unchanged(oi) => old.get_mut(oi).and_then(Option::take),
                        _ => None,
                    };
                    keep(i, p, slot)
                })
                .collect()
        };
        // The findings the old sections listed, for the first view to copy where their part
        // was carried: the same slot shows the same HTML (the same check, target and
        // database make the same link, and the detail level is the same). All the kept
        // slots of a new target were slots of the old target of that name.
        let mut to_new = vec![None; old_len];
        for (ni, c) in slots.iter().enumerate() {
            if let Carry::Unchanged(oi) = *c {
                if let Some(n) = to_new.get_mut(oi) {
                    *n = Some(ni);
                }
            }
        }
        let mut listings: Vec<Listing> =
            (0..st.targets.len()).map(|_| Listing::default()).collect();
        for os in old_sections {
            let Listing { listed, html, .. } = os.listing;
            for l in listed {
                let Some(ni) = to_new.get(l.slot as usize).copied().flatten() else {
                    continue;
                };
                if parts_at[ni] == 0 {
                    continue;
                }
                let to = &mut listings[st.slots[ni].target_index];
                if to.listed.is_empty() {
                    to.html = html.clone();
                } else if to.html.as_ptr() != html.as_ptr() {
                    continue;
                }
                to.listed.push(Listed {
                    slot: ni as u32,
                    ..l
                });
            }
        }
        for l in &mut listings {
            l.valid_at = st.generation;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.parts = parts;
        inner.parts_at = parts_at;
        if inner.sections.len() == listings.len() {
            for (s, l) in inner.sections.iter_mut().zip(listings) {
                s.listing = l;
            }
        }
    }

    /// How many slot parts were worked out since this cache was made.
    pub fn slots_worked_out(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).worked
    }

    /// How many listed findings were copied from an earlier render since this cache was
    /// made (instead of written again).
    pub fn findings_copied(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).copied
    }

    /// How many target sections were rendered since this cache was made.
    pub fn sections_rendered(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rendered
    }
}

impl Inner {
    /// What is fixed for the store `st` holds: each target's slots, the links and the end
    /// of the page, and a placeholder section per target. The parts are dropped unless there
    /// is one per slot (carried over a reload: [`Landing::carry_from`]).
    fn shape(&mut self, st: &State) {
        self.lists = slot_lists(st);
        self.links = Links::of(st);
        self.sections = (0..st.targets.len())
            .map(|_| Section {
                at: 0,
                html: Bytes::new(),
                listing: Listing::default(),
            })
            .collect();
        if self.parts.len() != st.slots.len() {
            self.parts = Vec::new();
            self.parts_at = vec![0; st.slots.len()];
        }
        let mut e = String::new();
        end(&mut e, st.targets.is_empty());
        self.end = Bytes::from(e);
    }

    /// Brings every section to the store's generation, rendering only stale ones.
    fn update(&mut self, store: &Store) {
        if self.generation != 0 && store.generation() == self.generation {
            return;
        }
        let (generation, detail, stale, views, first) = {
            let st = store.read();
            if self.sections.len() != st.targets.len() || self.links.len() != st.slots.len() {
                self.shape(&st);
            }
            let mut stamps: Vec<u64> = st.targets.iter().map(|t| t.changed).collect();
            for s in &st.slots {
                let t = &mut stamps[s.target_index];
                *t = (*t).max(s.changed);
            }
            let indices: Vec<usize> = (0..stamps.len())
                .filter(|&t| stamps[t] > self.sections[t].at)
                .collect();
            // The first view clones every slot's view straight into its part (worked out
            // below, in place); later views only the slots that changed since their part
            // was worked out.
            let first = self.parts.len() != st.slots.len();
            let mut views: Vec<(usize, SlotView)> = Vec::new();
            if first {
                self.parts = (st.slots.iter())
                    .map(|s| Part::unworked(SlotView::of(s)))
                    .collect();
            } else {
                for &t in &indices {
                    for &i in &self.lists[t] {
                        if st.slots[i].changed > self.parts_at[i] {
                            views.push((i, SlotView::of(&st.slots[i])));
                        }
                    }
                }
            }
            let targets: Vec<(usize, TargetState)> = indices
                .iter()
                .map(|&t| (t, st.targets[t].clone()))
                .collect();
            (st.generation, st.page_detail, targets, views, first)
        };
        // The lock is released: format.
        if first {
            for p in &mut self.parts {
                p.work_out();
            }
            self.worked += self.parts.len() as u64;
            self.parts_at.fill(generation);
        } else {
            self.worked += views.len() as u64;
            for (i, view) in views {
                self.parts[i] = Part::of(view);
                self.parts_at[i] = generation;
            }
        }
        let Inner {
            lists,
            sections,
            parts,
            parts_at,
            links,
            rendered,
            copied,
            ..
        } = self;
        let mut kept: Vec<Listed> = Vec::new();
        for (t, target) in stale {
            let list = &lists[t];
            // The last render's size (a section changes little between renders), else a
            // guess that fits a target of the pack with a few findings.
            let mut h = String::with_capacity(match sections[t].html.len() {
                0 => 4 * 1024 + 128 * list.len(),
                n => n + 1024,
            });
            // What the last render listed of parts that are still the same (a part worked
            // out since is stamped after it).
            let old = std::mem::take(&mut sections[t].listing);
            kept.clear();
            kept.extend((old.listed.iter()).filter(|l| parts_at[l.slot as usize] <= old.valid_at));
            let reuse = Reuse {
                listed: &kept,
                html: &old.html,
            };
            let mut listed = old.listed;
            *copied += card(
                &mut h,
                &target,
                parts,
                list,
                links,
                detail,
                reuse,
                &mut listed,
            ) as u64;
            let html = Bytes::from(h);
            sections[t] = Section {
                at: generation,
                html: html.clone(),
                listing: Listing {
                    listed,
                    html,
                    valid_at: generation,
                },
            };
            *rendered += 1;
        }
        self.generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::{self, Config};
    use crate::db::{CheckError, ErrorKind};
    use crate::sample::{self, ResultSet};
    use crate::snapshot::{Carry, RunRecord};

    /// Three targets, two checks on each; `disk` has a `crit` threshold of `crit`.
    fn config(crit: f64) -> Config {
        let mut text = String::new();
        for t in ["a", "b", "c"] {
            text.push_str(&format!(
                "[targets.{t}]\nhost = \"h\"\nuser = \"u\"\ndeployment = \"provisioned\"\n"
            ));
        }
        text.push_str(&format!(
            "[[checks]]\nname = \"disk\"\nquery = \"SELECT 1\"\nlabels = [\"node\"]\n\
             values = [{{ column = \"used\", crit = {crit} }}]\n\
             [[checks]]\nname = \"queue\"\nquery = \"SELECT 1\"\nvalues = [\"n\"]\n"
        ));
        config::parse(&text, |_| None).expect("test config parses")
    }

    /// The slot of `check` (0 disk, 1 queue) on target `t` (slots are in check order).
    fn slot(check: usize, t: usize) -> usize {
        check * 3 + t
    }

    fn run(cfg: &Config, store: &Store, check: usize, t: usize, used: f64) {
        let rs = ResultSet {
            columns: vec!["node".into(), "used".into()],
            rows: vec![vec![Some("0".into()), Some(used.to_string())]],
        };
        let samples = sample::map(&cfg.checks[0], &rs).expect("maps");
        store.record_run(
            slot(check, t),
            RunRecord {
                started: SystemTime::now(),
                duration: Duration::from_millis(5),
                outcome: Ok((1, samples)),
            },
        );
    }

    /// The sections of a view (the chunks between the start and the end).
    fn sections(view: &[Bytes]) -> Vec<Bytes> {
        view[1..view.len() - 1].to_vec()
    }

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).expect("UTF-8")
    }

    /// Everything after the start (whose time moves): the same bytes as the uncached page's.
    fn after_start(page: &str) -> &str {
        &page[page.find("</header>").expect("a header")..]
    }

    #[test]
    fn only_changed_targets_render_again() {
        let cfg = config(0.9);
        let store = Arc::new(Store::new(&cfg));
        let cache = Landing::new(store.clone());
        let first = cache.render();
        assert_eq!(first.len(), 3 + 2, "start, three sections, end");
        assert_eq!(
            cache.sections_rendered(),
            3,
            "the first view renders every target"
        );

        // Nothing changed: the very same bytes, nothing rendered.
        let again = cache.render();
        assert_eq!(cache.sections_rendered(), 3);
        for (a, b) in sections(&first).iter().zip(sections(&again)) {
            assert_eq!(
                a.as_ptr(),
                b.as_ptr(),
                "an unchanged section is shared, not copied"
            );
        }

        assert_eq!(
            cache.slots_worked_out(),
            6,
            "the first view works out every slot"
        );

        // A run on target b crosses the threshold: b alone is rendered again, from the part
        // of its other slot kept since the first view.
        run(&cfg, &store, 0, 1, 0.95);
        let view = cache.render();
        assert_eq!(cache.sections_rendered(), 4);
        assert_eq!(
            cache.slots_worked_out(),
            7,
            "only the slot that ran is worked out"
        );
        let (old, new) = (sections(&again), sections(&view));
        assert_eq!(old[0].as_ptr(), new[0].as_ptr());
        assert_eq!(old[2].as_ptr(), new[2].as_ptr());
        assert!(!text(&old[1]).contains("95 %") && !text(&old[1]).contains("0.95"));
        assert!(
            text(&new[1]).contains("<b>0.95</b>"),
            "the new value is listed: {}",
            text(&new[1])
        );

        // Another run on b, of the other check: b is rendered again, and its listed finding,
        // whose part did not change, is copied from the last render, not written again.
        run(&cfg, &store, 1, 1, 0.0);
        let copied = cache.findings_copied();
        let view = cache.render();
        assert_eq!(cache.sections_rendered(), 5);
        assert_eq!(cache.findings_copied(), copied + 1);
        assert!(text(&sections(&view)[1]).contains("<b>0.95</b>"));
        // The same slot beyond the threshold by another value: written, not copied.
        run(&cfg, &store, 0, 1, 0.96);
        let view = cache.render();
        assert_eq!(cache.findings_copied(), copied + 1);
        assert!(text(&sections(&view)[1]).contains("<b>0.96</b>"));
        assert!(!text(&sections(&view)[1]).contains("<b>0.95</b>"));

        // A failed run on c (a slot stamp and the target's `up`).
        store.record_run(
            slot(1, 2),
            RunRecord {
                started: SystemTime::now(),
                duration: Duration::from_millis(5),
                outcome: Err(CheckError::new(ErrorKind::Query, "relation does not exist")),
            },
        );
        let view = cache.render();
        assert_eq!(cache.sections_rendered(), 7);
        assert!(text(&sections(&view)[2]).contains("relation does not exist"));

        // A slot-only stamp (a skipped run) on a: its section is checked and rendered again.
        store.record_skips(slot(1, 0), 1);
        cache.render();
        assert_eq!(cache.sections_rendered(), 8);

        // The AWS database user: stamped once, shown; the same user again changes nothing.
        store.set_db_user(0, "IAM:exporter");
        let view = cache.render();
        assert_eq!(cache.sections_rendered(), 9);
        assert!(text(&sections(&view)[0]).contains("database user (AWS) <b>IAM:exporter</b>"));
        let generation = store.generation();
        store.set_db_user(0, "IAM:exporter");
        assert_eq!(store.generation(), generation, "no write for the same user");
        cache.render();
        assert_eq!(cache.sections_rendered(), 9);

        // The cached page is the uncached page.
        let cached: Vec<u8> = cache.render().iter().flat_map(|b| b.to_vec()).collect();
        let cached = String::from_utf8(cached).expect("UTF-8");
        let whole = super::super::landing(&store);
        assert_eq!(after_start(&cached), after_start(&whole));
    }

    #[test]
    fn a_reload_renders_everything_from_the_new_configuration() {
        let cfg = config(0.9);
        let store = Arc::new(Store::new(&cfg));
        let cache = Landing::new(store.clone());
        run(&cfg, &store, 0, 0, 0.95);
        store.set_db_user(1, "IAM:exporter");
        let before = cache.render();
        assert!(text(&sections(&before)[0]).contains("<b>0.95</b>"));

        // The same checks and targets with a higher threshold: the reload keeps only the
        // counters of `disk`'s slots (their samples' crossings were worked out under the old
        // threshold), so nothing is listed until they run again; `queue`'s are kept.
        let new_cfg = config(0.99);
        let plan = crate::reload::plan(&cfg, &new_cfg);
        assert_eq!(
            plan.slots,
            [0, 1, 2]
                .map(Carry::Counters)
                .into_iter()
                .chain([3, 4, 5].map(Carry::Unchanged))
                .collect::<Vec<_>>()
        );
        let targets = plan.targets.clone();
        let slots = plan.slots.clone();
        let next = Arc::new(Store::new(&new_cfg));
        next.adopt(&store, &targets, &slots);
        next.regate();
        let cache = Landing::new(next.clone());
        let after = cache.render();
        assert_eq!(
            cache.sections_rendered(),
            3,
            "a new store: every section is new"
        );
        assert!(!text(&sections(&after)[0]).contains("<b>0.95</b>"));
        assert!(
            text(&sections(&after)[1]).contains("IAM:exporter"),
            "an unchanged target keeps its user"
        );
        // Runs under the new threshold: 0.95 is below it, 0.995 beyond.
        run(&new_cfg, &next, 0, 0, 0.95);
        run(&new_cfg, &next, 0, 1, 0.995);
        let view = cache.render();
        assert!(!text(&sections(&view)[0]).contains("Needs attention"));
        assert!(text(&sections(&view)[1]).contains("<b>0.995</b>"));

        // A changed target starts without the old user.
        let fresh = Arc::new(Store::new(&new_cfg));
        fresh.adopt(&store, &[Some(0), None, Some(2)], &slots);
        let cache = Landing::new(fresh);
        assert!(!text(&sections(&cache.render())[1]).contains("IAM:exporter"));
    }
    #[test]
    fn a_reload_carries_the_parts_of_the_slots_it_kept() {
        let cfg = config(0.9);
        let store = Arc::new(Store::new(&cfg));
        let cache = Landing::new(store.clone());
        run(&cfg, &store, 0, 0, 0.95);
        run(&cfg, &store, 1, 2, 0.5);
        cache.render();
        assert_eq!(cache.slots_worked_out(), 6);

        // The same configuration again: every slot is kept, so the first view of the new
        // store works out none of them, and still shows what the uncached page shows.
        let reload = |old: &Arc<Store>, old_cache: &Landing, new_cfg: &Config| {
            let plan = crate::reload::plan(&cfg, new_cfg);
            let next = Arc::new(Store::new(new_cfg));
            next.adopt(old, &plan.targets, &plan.slots);
            next.regate();
            let cache = Landing::new(next.clone());
            cache.carry_from(old_cache, &plan.slots);
            (next, cache)
        };
        let (next, carried) = reload(&store, &cache, &cfg);
        let view: Vec<u8> = carried.render().iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(carried.slots_worked_out(), 0, "every part was carried");
        assert_eq!(
            carried.findings_copied(),
            1,
            "the listed finding is copied from the old store's section"
        );
        assert_eq!(carried.sections_rendered(), 3, "the sections are new");
        let view = String::from_utf8(view).expect("UTF-8");
        assert!(
            view.contains("<b>0.95</b>"),
            "the carried finding is listed"
        );
        assert_eq!(
            after_start(&view),
            after_start(&super::super::landing(&next))
        );

        // The old cache gave its parts away: a request still on the old state renders it
        // whole, and correctly.
        let old_view: Vec<u8> = cache.render().iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(cache.slots_worked_out(), 12);
        assert_eq!(
            after_start(&String::from_utf8(old_view).expect("UTF-8")),
            after_start(&super::super::landing(&store))
        );

        // A run between the reload and the first view: that slot's carried part no longer
        // shows it, so it alone is worked out.
        let (next, carried) = reload(&store, &cache, &cfg);
        run(&cfg, &next, 0, 0, 0.97);
        let view: Vec<u8> = carried.render().iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(carried.slots_worked_out(), 1);
        assert_eq!(
            carried.findings_copied(),
            0,
            "a finding of a slot that ran since the reload is written again"
        );
        assert!(
            String::from_utf8(view)
                .expect("UTF-8")
                .contains("<b>0.97</b>")
        );

        // A higher threshold on `disk`: its three slots are not kept (the reload resets them
        // to counters only), `queue`'s are carried.
        cache.render();
        let (_, carried) = reload(&store, &cache, &config(0.99));
        carried.render();
        assert_eq!(carried.slots_worked_out(), 3);
    }
}
