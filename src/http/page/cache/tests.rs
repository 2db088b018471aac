//! The page cache against a real store: what is rendered again, worked out again and copied,
//! and that the cached page is the uncached one, across runs and reloads.

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
