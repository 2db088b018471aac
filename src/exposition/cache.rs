//! The snapshot part of the exposition, kept rendered and re-rendered per slot: rendering
//! costs what changed, not the size of the snapshot.
//!
//! Every family of [`super::families::layout`] is cut into groups of [`GROUP`] consecutive
//! entries (one entry: the lines of one slot in that family). A group keeps its text and the
//! end offset of each entry in it. When slots change (the store stamps each slot with the
//! generation that changed it), only those slots are formatted again — from `Arc` clones taken
//! under the store's read lock, formatted after it is released — and spliced into their
//! groups; the other entries' bytes are copied from the old group text. A plain scrape is the
//! list of non-empty groups (shared `Bytes`, never copied), headers in front of each non-empty
//! family. gzip: each group is compressed on its own (a compressor reset to its fresh state,
//! ended with a sync flush: a run of byte-aligned, non-final deflate blocks that refer to
//! nothing outside the group), only when it changed; a gzip scrape splices the groups'
//! blocks after one gzip header, CRCs combined ([`super::gzip`]), and appends the per-scrape
//! blocks and the trailer.
//!
//! It decides *when* and *what part* to render; *what the text is* is [`super::families`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::Format;
use super::families::{self, Content, FamilyLayout, SlotView, TargetView};
use super::gzip::{Fragment, Gzipped};
use crate::snapshot::Store;

/// Lines per group (about 8 kB): small enough that a changed slot re-copies, recompresses
/// and (while older scrapes still send the old text) keeps little, large enough that a scrape
/// is about a thousand chunks for the fleet, not tens of thousands.
const GROUP_LINES: usize = 64;
/// Entries per group of a data family (whose lines per entry depend on the results).
const DATA_GROUP: usize = 16;

/// A render whose scratch text was this large in total hands freed memory back to the system.
const TRIM_AFTER: usize = 4 << 20;

/// Slots formatted into the scratch text before it is spliced into the groups: a few hundred
/// kB of text at the pack's ~3 kB per slot.
const SPLICE_BATCH: usize = 256;

struct Group {
    /// End offset of each entry in `text`.
    ends: Vec<u32>,
    text: Bytes,
    /// `text` compressed; `None` when it changed since.
    gz: Option<Fragment>,
}

struct Family {
    /// The `# HELP`/`# TYPE` lines per format ([`super::Format`]'s index), plain and
    /// compressed: everything else in a family is the same bytes in every format.
    header: [Bytes; Format::COUNT],
    header_gz: [Fragment; Format::COUNT],
    content: Content,
    groups: Vec<Group>,
}

impl Family {
    fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.text.is_empty())
    }
}

struct Layout {
    families: Vec<Family>,
    /// Per slot, per part: (family, group, position in the group).
    parts: Vec<Vec<(u32, u32, u32)>>,
    /// Per slot: its label prefixes ([`families::slot_prefix`]).
    prefixes: Vec<(String, usize)>,
}

#[derive(Default)]
struct Renderer {
    /// The store generation the groups reflect.
    generation: u64,
    layout: Option<Layout>,
    /// The chunks of a plain scrape per format, for `generation`; built on demand.
    plain: [Option<Arc<[Bytes]>>; Format::COUNT],
    /// The gzip prefix per format, for `generation`; built on demand.
    gzip: [Option<Arc<Gzipped>>; Format::COUNT],
}

/// The snapshot part, kept up to date by whichever scrape first sees a new generation.
pub(super) struct Cache(Mutex<Renderer>);

impl Cache {
    pub(super) fn new() -> Self {
        Cache(Mutex::new(Renderer::default()))
    }

    /// The chunks of the snapshot part, in order, with the headers of format `fi`.
    pub(super) fn plain(&self, store: &Store, fi: usize) -> Arc<[Bytes]> {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        r.update(store);
        if r.plain[fi].is_none() {
            let layout = r.layout.as_ref().expect("updated");
            let mut out = Vec::new();
            for f in layout.families.iter().filter(|f| !f.is_empty()) {
                out.push(f.header[fi].clone());
                out.extend(
                    f.groups
                        .iter()
                        .filter(|g| !g.text.is_empty())
                        .map(|g| g.text.clone()),
                );
            }
            r.plain[fi] = Some(out.into());
        }
        r.plain[fi].clone().expect("just built")
    }

    /// The snapshot part as the start of a gzip member, with the headers of format `fi`.
    pub(super) fn gzip(&self, store: &Store, fi: usize) -> Arc<Gzipped> {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        r.update(store);
        if r.gzip[fi].is_none() {
            let layout = r.layout.as_mut().expect("updated");
            let mut frags: Vec<&Fragment> = Vec::new();
            for f in layout.families.iter_mut() {
                if f.is_empty() {
                    continue;
                }
                frags.push(&f.header_gz[fi]);
                for g in f.groups.iter_mut().filter(|g| !g.text.is_empty()) {
                    frags.push(g.gz.get_or_insert_with(|| Fragment::new(&g.text)));
                }
            }
            let gz = Arc::new(Gzipped::from_fragments(&frags));
            r.gzip[fi] = Some(gz);
        }
        r.gzip[fi].clone().expect("just built")
    }
}

impl Renderer {
    /// Brings the groups to the store's generation, formatting only changed slots.
    fn update(&mut self, store: &Store) {
        if self.layout.is_some() && store.generation() == self.generation {
            return;
        }
        let first = self.layout.is_none();
        let since = self.generation;
        // Under the lock: clones only.
        let (generation, slots, targets) = {
            let st = store.read();
            let slots: Vec<(usize, SlotView)> = st
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| first || s.changed > since)
                .map(|(i, s)| (i, SlotView::of(s)))
                .collect();
            let targets = (first || st.targets.iter().any(|t| t.changed > since))
                .then(|| st.targets.iter().map(TargetView::of).collect::<Vec<_>>());
            (st.generation, slots, targets)
        };
        self.generation = generation;
        if slots.is_empty() && targets.is_none() {
            // A write that changed nothing shown here.
            return;
        }
        self.plain = Default::default();
        self.gzip = Default::default();
        if first {
            let targets = targets.as_deref().expect("first render reads targets");
            let views: Vec<&SlotView> = slots.iter().map(|(_, v)| v).collect();
            self.layout = Some(Layout::new(&views, targets));
        }
        let layout = self.layout.as_mut().expect("built above");

        // Format the changed slots into a scratch text, then splice; in batches of slots,
        // so that the first render of a fleet (every slot, ~10 MB of text) never holds all
        // of its text twice (scratch and groups). Slots are in store order and a group holds
        // consecutive slots of one family, so a group is spliced about once per batch it
        // spans.
        let mut scratch = String::new();
        let mut ends = Vec::new();
        let mut updates: Vec<(u32, u32, u32, u32, u32)> = Vec::new();
        let mut scratch_len = 0;
        for batch in slots.chunks(SPLICE_BATCH) {
            scratch.clear();
            updates.clear();
            for (i, view) in batch {
                let start = scratch.len();
                ends.clear();
                families::write_slot(view, &layout.prefixes[*i], &mut scratch, &mut ends);
                let mut from = start;
                for (p, &end) in ends.iter().enumerate() {
                    let (f, g, pos) = layout.parts[*i][p];
                    updates.push((f, g, pos, from as u32, end as u32));
                    from = end;
                }
            }
            updates.sort_unstable_by_key(|u| (u.0, u.1, u.2));
            scratch_len += scratch.len();
            let mut at = 0;
            while at < updates.len() {
                let (f, g) = (updates[at].0, updates[at].1);
                let run = updates[at..]
                    .iter()
                    .take_while(|u| u.0 == f && u.1 == g)
                    .count();
                layout.families[f as usize].groups[g as usize]
                    .splice(&updates[at..at + run], scratch.as_bytes());
                at += run;
            }
        }
        if let Some(targets) = &targets {
            for f in layout.families.iter_mut() {
                let mut text = String::new();
                match f.content {
                    Content::TargetUp => families::write_target_up(targets, &mut text),
                    Content::TargetInfo => families::write_target_info(targets, &mut text),
                    _ => continue,
                }
                f.groups[0].set(text.into_bytes());
            }
        }
        drop(scratch);
        if scratch_len >= TRIM_AFTER {
            crate::cli::trim_heap();
        }
    }
}

impl Layout {
    fn new(slots: &[&SlotView], targets: &[TargetView]) -> Self {
        let prefixes = slots
            .iter()
            .map(|s| families::slot_prefix(s, &targets[s.target_index]))
            .collect();
        let mut parts: Vec<Vec<(u32, u32, u32)>> = slots
            .iter()
            .map(|s| vec![(0, 0, 0); s.check.values.len() + families::SELF_PARTS])
            .collect();
        let families = families::layout(slots)
            .into_iter()
            .enumerate()
            .map(
                |(
                    fi,
                    FamilyLayout {
                        header,
                        content,
                        lines_per_entry,
                    },
                )| {
                    let group = match lines_per_entry {
                        0 => DATA_GROUP,
                        n => (GROUP_LINES / n).max(4),
                    };
                    let groups = match &content {
                        Content::Slots(entries) => entries
                            .chunks(group)
                            .enumerate()
                            .map(|(gi, chunk)| {
                                for (pos, &(slot, part)) in chunk.iter().enumerate() {
                                    parts[slot as usize][part as usize] =
                                        (fi as u32, gi as u32, pos as u32);
                                }
                                Group::empty(chunk.len())
                            })
                            .collect(),
                        Content::TargetUp | Content::TargetInfo => vec![Group::empty(1)],
                        Content::Fixed(text) => {
                            let mut g = Group::empty(1);
                            g.set(text.clone().into_bytes());
                            vec![g]
                        }
                    };
                    Family {
                        header_gz: header.each_ref().map(|h| Fragment::new(h.as_bytes())),
                        header: header.map(Bytes::from),
                        content,
                        groups,
                    }
                },
            )
            .collect();
        Layout {
            families,
            parts,
            prefixes,
        }
    }
}

impl Group {
    fn empty(entries: usize) -> Self {
        Group {
            ends: vec![0; entries],
            text: Bytes::new(),
            gz: None,
        }
    }

    /// The whole text (a one-entry group).
    fn set(&mut self, text: Vec<u8>) {
        self.ends = vec![text.len() as u32];
        self.text = Bytes::from(text);
        self.gz = None;
    }

    /// Replaces the entries `updates` name (family, group, position, start, end in
    /// `scratch`; sorted by position) and keeps the others' bytes.
    fn splice(&mut self, updates: &[(u32, u32, u32, u32, u32)], scratch: &[u8]) {
        let old = &self.text;
        let mut replaced = 0usize;
        let mut added = 0usize;
        for u in updates {
            let pos = u.2 as usize;
            let start = if pos == 0 { 0 } else { self.ends[pos - 1] };
            replaced += (self.ends[pos] - start) as usize;
            added += (u.4 - u.3) as usize;
        }
        if replaced == 0 && added == 0 {
            return;
        }
        let mut text = Vec::with_capacity(old.len() - replaced + added);
        let mut next = updates.iter().peekable();
        let mut start = 0usize;
        for pos in 0..self.ends.len() {
            let end = self.ends[pos] as usize;
            match next.peek() {
                Some(u) if u.2 as usize == pos => {
                    text.extend_from_slice(&scratch[u.3 as usize..u.4 as usize]);
                    next.next();
                }
                _ => text.extend_from_slice(&old[start..end]),
            }
            start = end;
            self.ends[pos] = text.len() as u32;
        }
        self.text = Bytes::from(text);
        self.gz = None;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::capability::Capabilities;
    use crate::config::Deployment;
    use crate::db::{CheckError, ErrorKind};
    use crate::exposition::encode;
    use crate::exposition::families::snapshot_families;
    use crate::sample::{self, ResultSet};
    use crate::snapshot::RunRecord;

    fn plain(c: &Cache, store: &Store) -> String {
        plain_as(c, store, Format::Text)
    }

    fn plain_as(c: &Cache, store: &Store, f: Format) -> String {
        String::from_utf8(c.plain(store, f.index()).concat()).unwrap()
    }

    fn gunzip(c: &Cache, store: &Store) -> String {
        gunzip_as(c, store, Format::Text)
    }

    fn gunzip_as(c: &Cache, store: &Store, f: Format) -> String {
        let g = c.gzip(store, f.index());
        let gz = [g.prefix.concat(), g.finish_tail(b"").to_vec()].concat();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    fn reference(store: &Store) -> String {
        String::from_utf8(encode(&snapshot_families(&store.read())).to_vec()).unwrap()
    }

    fn reference_as(store: &Store, f: Format) -> String {
        let mut out = String::new();
        crate::exposition::encode_into(&mut out, &snapshot_families(&store.read()), f);
        out
    }

    /// Whatever changes, in whatever order, the spliced text is what a full render through
    /// the encoder prints, plain and gzip.
    #[test]
    fn incremental_text_equals_a_full_render() {
        let mut text = String::from(
            "[targets.a]\nhost = \"h\"\nuser = \"u\"\nlabels = { env = \"prod\", note = \"q\\\"uote\" }\n\
             [targets.b]\nhost = \"h\"\nuser = \"u\"\ndatabase = \"dev\"\ndatabases = [\"dev\", \"ops\"]\n",
        );
        // Every fourth check per database: b has two entries (dev at home, ops), their
        // series and target_up tell them apart by `database`. 130 checks: more slots than
        // one splice batch, so batches meet inside groups.
        for i in 0..130 {
            text.push_str(&format!(
                "[[checks]]\nname = \"c{i}\"\nquery = \"SELECT 1\"\nlabels = [\"k\"]\nvalues = [\"v\", \"w\"]\n{}\n{}\n",
                if i % 3 == 0 { "static_labels = { team = \"dba\" }" } else { "" },
                if i % 4 == 0 { "scope = \"database\"" } else { "" }
            ));
        }
        // Two checks feeding one metric name.
        text.push_str("[[checks]]\nname = \"s1\"\nquery = \"SELECT 1\"\ndeployment = [\"provisioned\"]\nlabels = [\"k\"]\nvalues = [{ column = \"v\", name = \"shared\", help = \"Shared.\" }]\n");
        text.push_str("[[checks]]\nname = \"s2\"\nquery = \"SELECT 1\"\ndeployment = [\"serverless\"]\nlabels = [\"k\"]\nvalues = [{ column = \"v\", name = \"shared\", help = \"Shared.\" }]\n");
        let config = crate::discovery::expand(
            &crate::config::parse(&text, |_| None).unwrap(),
            &crate::discovery::Discovered::default(),
        );
        assert_eq!(config.targets.len(), 3);
        let store = Store::new(&config);
        let slots = store.read().slots.len();
        let cache = Cache::new();
        assert_eq!(plain(&cache, &store), reference(&store));
        assert_eq!(gunzip(&cache, &store), reference(&store));
        let run = |slot: usize, n: usize, ok: bool| {
            let check = store.read().slots[slot].check.clone();
            let rs = ResultSet {
                columns: vec!["k".into(), "v".into(), "w".into()],
                rows: (0..n)
                    .map(|i| {
                        vec![
                            Some(format!("key \"{i}\"\n")),
                            Some(format!("{}", i as f64 * 1.5)),
                            (i % 2 == 0).then(|| "NaN".to_string()),
                        ]
                    })
                    .collect(),
            };
            let outcome = if ok {
                Ok((n as u64, sample::map(&check, &rs).unwrap()))
            } else {
                Err(CheckError::new(ErrorKind::Query, "boom"))
            };
            store.record_run(
                slot,
                RunRecord {
                    started: SystemTime::now(),
                    duration: Duration::from_millis(3 + n as u64),
                    outcome,
                },
            );
        };
        assert!(slots > SPLICE_BATCH, "{slots} slots");
        for round in 0..4 {
            // Round 0 runs every slot (batches of changed slots with text); then some.
            let step = if round == 0 { 1 } else { 3 + round };
            for slot in (round..slots).step_by(step) {
                run(slot, (slot * 7 + round) % 40, (slot + round) % 5 != 0);
            }
            store.record_skips(round * 2, 3);
            store.record_archive(round + 1, Ok("x.csv".into()));
            if round == 1 {
                store.set_capabilities(1, Arc::new(Capabilities::forced(Deployment::Serverless)));
            }
            assert_eq!(plain(&cache, &store), reference(&store), "round {round}");
            assert_eq!(gunzip(&cache, &store), reference(&store), "round {round}");
            // OpenMetrics: the same samples under its own headers, plain and gzip.
            let om = Format::OpenMetrics(crate::exposition::OpenMetricsVersion::V1_0_0);
            assert_eq!(plain_as(&cache, &store, om), reference_as(&store, om));
            assert_eq!(gunzip_as(&cache, &store, om), reference_as(&store, om));
            // Nothing changed: the same chunks.
            assert!(Arc::ptr_eq(
                &cache.plain(&store, 0),
                &cache.plain(&store, 0)
            ));
        }
        let text = reference(&store);
        assert!(text.contains("target=\"b\",database=\"ops\""), "{text}");
        assert!(text.contains("target=\"b\",database=\"dev\""), "{text}");
    }
}
