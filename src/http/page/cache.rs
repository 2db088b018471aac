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

use super::attention::Links;
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
    /// The HTML the ranges of `listed` are in when it is not the section's own: after a
    /// reload, the old store's section of the same target (carried by
    /// [`Landing::carry_from`]). `None` for the section's own, which it holds already.
    carried: Option<Bytes>,
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
            .filter(|p| p.shows(slot))
        {
            Some(mut p) => {
                p.set_check(&slot.check);
                p
            }
            // A stand-in, worked out again at the first view: stale at every generation.
            None => {
                parts_at[i] = 0;
                Part::of(slot)
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
        let listings = carry_listings(old_sections, old_len, slots, &parts_at, &st);
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

/// The findings the old store's sections listed, for the new store's first view to copy
/// where their slot's part was carried (`parts_at[new] != 0`), as one listing per target of
/// the new store (`st`): the same slot shows the same HTML (the same check, target and
/// database make the same link, and the caller checked that the detail level is the same).
/// All the kept slots of a new target were slots of the old target of that name, so a
/// listing's findings come from one old section. `old_slots`: how many slots the old store
/// has.
fn carry_listings(
    old_sections: Vec<Section>,
    old_slots: usize,
    slots: &[Carry],
    parts_at: &[u64],
    st: &State,
) -> Vec<Listing> {
    // Old slot → new slot, for the kept ones.
    let mut to_new = vec![None; old_slots];
    for (ni, c) in slots.iter().enumerate() {
        if let Carry::Unchanged(oi) = *c {
            if let Some(n) = to_new.get_mut(oi) {
                *n = Some(ni);
            }
        }
    }
    let mut listings: Vec<Listing> = (0..st.targets.len()).map(|_| Listing::default()).collect();
    for os in old_sections {
        let html = os.listing.carried.unwrap_or(os.html);
        for l in os.listing.listed {
            let Some(ni) = to_new.get(l.slot as usize).copied().flatten() else {
                continue;
            };
            if parts_at[ni] == 0 {
                continue;
            }
            let to = &mut listings[st.slots[ni].target_index];
            match &to.carried {
                None => to.carried = Some(html.clone()),
                Some(h) if h.as_ptr() != html.as_ptr() => continue,
                Some(_) => {}
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
    listings
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
        let (generation, detail, stale, fresh, first) = {
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
            // The first view works out every slot's part, later views only those of the
            // slots that changed since. A part is judged in place, which costs less than
            // cloning a view to judge after the lock: it clones a view only for a slot
            // with findings to list.
            let first = self.parts.len() != st.slots.len();
            let mut fresh: Vec<(usize, Part)> = Vec::new();
            if first {
                self.parts = st.slots.iter().map(Part::of).collect();
            } else {
                for &t in &indices {
                    for &i in &self.lists[t] {
                        if st.slots[i].changed > self.parts_at[i] {
                            fresh.push((i, Part::of(&st.slots[i])));
                        }
                    }
                }
            }
            let targets: Vec<(usize, TargetState)> = indices
                .iter()
                .map(|&t| (t, st.targets[t].clone()))
                .collect();
            (st.generation, st.page_detail, targets, fresh, first)
        };
        // The lock is released: format.
        if first {
            self.worked += self.parts.len() as u64;
            self.parts_at.fill(generation);
        } else {
            self.worked += fresh.len() as u64;
            for (i, part) in fresh {
                self.parts[i] = part;
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
                html: old.carried.as_ref().unwrap_or(&sections[t].html),
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
            sections[t] = Section {
                at: generation,
                html: Bytes::from(h),
                listing: Listing {
                    listed,
                    carried: None,
                    valid_at: generation,
                },
            };
            *rendered += 1;
        }
        self.generation = generation;
    }
}

#[cfg(test)]
mod tests;
