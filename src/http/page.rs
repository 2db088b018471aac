//! The HTML pages: `/` (per target: deployment, up state and what needs attention) and
//! `/checks/{check}/{target}` (one slot: help, SQL, schedule, last run, its first rows, the
//! last runs, archive links).
//!
//! Rendered from the snapshot only (never the database), server-side, no script. Everything
//! that comes from the configuration or the database is HTML-escaped. Links are relative
//! (`checks/...` from `/`, `../../` back), so the pages work behind a reverse proxy that
//! serves them under a prefix; no host path (archive folder, config file) is ever shown.
//! With `page_detail = "redacted"` SQL text, error messages and result rows are left out.
//!
//! What "needs attention": a failed check (error kind and message), or a value of the last
//! run beyond its column's `warn`/`crit` threshold from the configuration; the shipped pack's
//! thresholds are those of the shipped alert rules (deploy/prometheus/rules/redshift.rules.yml).

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{Level, PageDetail, ValueSpec, is_check_name, is_identifier};
use crate::snapshot::{Slot, State, Store, TargetState};

/// The route prefix of check pages.
pub const CHECKS: &str = "/checks/";

const CSS: &str = concat!(
    ":root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#656d76;--line:#d0d7de;",
    "--card:#f6f8fa;--ok:#1a7f37;--warn:#9a6700;--crit:#cf222e;--link:#0969da}",
    "@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#8d96a0;",
    "--line:#30363d;--card:#161b22;--ok:#3fb950;--warn:#d29922;--crit:#f85149;--link:#4493f8}}",
    "*{box-sizing:border-box}html{-webkit-text-size-adjust:100%}",
    "body{margin:0 auto;max-width:75rem;padding:.75rem 1rem 2rem;background:var(--bg);color:var(--fg);",
    "font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}",
    "a{color:var(--link)}h1{font-size:1.35rem;margin:.3rem 0}h2{font-size:1.1rem;margin:0}",
    "h3{font-size:1rem;margin:1rem 0 .3rem}header p,footer{color:var(--muted);font-size:.85rem}",
    "nav{display:flex;flex-wrap:wrap;gap:.2rem 1rem;font-size:.9rem}",
    ".card{background:var(--card);border:1px solid var(--line);border-radius:8px;",
    "padding:.75rem 1rem;margin:1rem 0;min-width:0}",
    ".head{display:flex;flex-wrap:wrap;align-items:center;gap:.3rem .6rem}",
    ".scroll{overflow-x:auto;max-width:100%;border:1px solid var(--line);border-radius:6px;background:var(--bg)}",
    "table{border-collapse:collapse;font-size:.88rem;width:100%}",
    "th,td{border-bottom:1px solid var(--line);padding:.25rem .55rem;text-align:left;",
    "vertical-align:top;white-space:nowrap}th{font-weight:600}td.num{text-align:right}",
    "td.null::after{content:'NULL';color:var(--muted);font-style:italic}",
    "pre{margin:0;padding:.6rem;overflow-x:auto;font-size:.82rem;white-space:pre}",
    "code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}",
    ".badge{display:inline-block;min-width:3.2rem;text-align:center;padding:0 .4rem;",
    "border-radius:1rem;font-size:.75rem;font-weight:700;border:1px solid currentColor;",
    "text-transform:uppercase}",
    ".ok{color:var(--ok)}.warn{color:var(--warn)}.crit,.fail{color:var(--crit)}.muted{color:var(--muted)}",
    "ul.att{list-style:none;padding:0;margin:.5rem 0}",
    "ul.att li{padding:.35rem 0;border-top:1px solid var(--line);overflow-wrap:anywhere}",
    "ul.att .msg{display:block;color:var(--muted);font-size:.85rem;margin-left:.2rem}",
    "details{margin:.5rem 0}summary{cursor:pointer;font-weight:600}",
    "dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem .8rem;margin:.5rem 0}",
    "dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}",
    "ul.skip{padding-left:1.2rem;overflow-wrap:anywhere}",
    "p.checks{margin:.4rem 0;line-height:1.9}p.checks a{margin-right:.35rem;white-space:nowrap}",
    "p.checks a::before{content:'● '}p.checks a.ok::before{color:var(--ok)}",
    "p.checks a.warn::before{color:var(--warn)}p.checks a.crit::before,p.checks a.fail::before{color:var(--crit)}",
    "p.checks a.pending::before{color:var(--muted)}",
);

/// HTML-escapes `s` into `out`.
fn push_esc(out: &mut String, s: &str) {
    // Most text has nothing to escape: one tight scan, then one copy.
    if !s
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\''))
    {
        out.push_str(s);
        return;
    }
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        out.push_str(rep);
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// `s` HTML-escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_esc(&mut out, s);
    out
}

fn head(h: &mut String, title: &str) {
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    // No favicon request (it would be a 404 in every browser's console).
    h.push_str("<meta name=\"color-scheme\" content=\"light dark\"><link rel=\"icon\" href=\"data:,\"><title>");
    push_esc(h, title);
    h.push_str("</title><style>");
    h.push_str(CSS);
    h.push_str("</style></head><body>");
}

/// Unix seconds as UTC text.
fn utc(t: f64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// "3 min ago" and the like.
fn ago(t: f64, now: f64) -> String {
    if t <= 0.0 {
        return String::new();
    }
    format!("{} ago", span((now - t).max(0.0)))
}

/// A duration in seconds, short: "45 s", "12 min", "2 h 5 min", "3 d 4 h".
fn span(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// A number without noise: integers plain, others with up to 4 significant decimals.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let t = format!("{v:.4}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    t.to_string()
}

/// A value in the unit its metric name says (`_ratio` → %, `_seconds` → time, `_bytes`).
fn value_text(metric: &str, v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if metric.ends_with("_ratio") {
        format!("{} %", number((v * 1000.0).round() / 10.0))
    } else if metric.ends_with("_seconds") && v >= 60.0 {
        span(v)
    } else if metric.ends_with("_seconds") {
        format!("{} s", number(v))
    } else if metric.ends_with("_bytes") && v >= 1024.0 {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut x = v / 1024.0;
        let mut u = 0;
        while x >= 1024.0 && u + 1 < units.len() {
            x /= 1024.0;
            u += 1;
        }
        format!("{} {}", number((x * 10.0).round() / 10.0), units[u])
    } else {
        number(v)
    }
}

/// How many things needing attention the landing page lists per target (worst first); the
/// rest are counted, and marked in the target's list of checks.
pub const ATTENTION_ITEMS: usize = 10;

/// One thing that needs attention: cheap to collect, rendered only when listed.
#[derive(Clone, Copy)]
struct Item<'a> {
    /// Crit before errors before warn.
    rank: u8,
    slot: &'a Slot,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
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
fn crossings<'a>(slot: &'a Slot, out: &mut Vec<Item<'a>>) {
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
fn failure(slot: &Slot) -> Option<Item<'_>> {
    let failed = slot.status.ran && !slot.status.success && slot.not_applicable.is_none();
    failed.then_some(Item {
        rank: 1,
        slot,
        kind: Kind::Failed,
    })
}

/// The worst of a slot's items, as a CSS class: crit, fail, warn or ok.
fn worst(items: &[Item<'_>]) -> &'static str {
    match items.iter().map(|i| i.rank).min() {
        Some(0) => "crit",
        Some(1) => "fail",
        Some(_) => "warn",
        None => "ok",
    }
}

/// One item as a list entry; `link` prefixes it with a link to the check page.
fn item_html(h: &mut String, i: &Item<'_>, detail: PageDetail, link: bool) {
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
    if link {
        h.push_str("<a href=\"");
        check_href(h, "", slot);
        h.push_str("\">");
        push_esc(h, &slot.check.name);
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

fn check_href(h: &mut String, prefix: &str, slot: &Slot) {
    h.push_str(prefix);
    h.push_str("checks/");
    push_name(h, &slot.check.name);
    h.push('/');
    push_name(h, &slot.target);
}

/// A check or target name: validated as `[a-z_][a-z0-9_-]*`, so nothing to escape (the
/// common case, taken without the per-byte scan); anything else is escaped all the same.
fn push_name(h: &mut String, name: &str) {
    if name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        h.push_str(name);
    } else {
        push_esc(h, name);
    }
}

fn status_badge(slot: &Slot) -> &'static str {
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

fn up_badge(t: &TargetState) -> &'static str {
    match t.up {
        Some(true) => "<span class=\"badge ok\">up</span>",
        Some(false) => "<span class=\"badge fail\">down</span>",
        None => "<span class=\"badge muted\">not tried yet</span>",
    }
}

fn nav(h: &mut String, prefix: &str) {
    let home = if prefix.is_empty() { "./" } else { prefix };
    let _ = write!(
        h,
        "<nav><a href=\"{home}\">Overview</a><a href=\"{prefix}metrics\">Metrics</a>\
         <a href=\"{prefix}-/healthy\">Health</a><a href=\"{prefix}-/ready\">Readiness</a></nav>"
    );
}

fn footer(h: &mut String) {
    let _ = write!(
        h,
        "<footer><p>Thresholds are the <code>warn</code> / <code>crit</code> keys of each value \
         column in the configuration (the shipped <code>checks.toml</code> uses those of the \
         shipped alert rules, <code>deploy/prometheus/rules/redshift.rules.yml</code>; the alerts \
         also wait their <code>for:</code> time). Values are from each check's last run; this \
         page never queries the database. redshift-exporter {}.</p></footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h.push('\n');
}

/// `/`: per target, what it is, whether it is up, and what needs attention.
pub fn landing(store: &Store) -> String {
    let st = store.read();
    let now = now();
    let mut h = String::with_capacity(16 * 1024 + 2048 * st.targets.len());
    head(&mut h, "Redshift Exporter");
    h.push_str("<header><h1>Redshift Exporter</h1>");
    nav(&mut h, "");
    let _ = write!(h, "<p>As of {}.</p></header>", utc(now));

    let mut per_target: Vec<Vec<&Slot>> = vec![Vec::new(); st.targets.len()];
    for s in &st.slots {
        per_target[s.target_index].push(s);
    }
    for (ti, t) in st.targets.iter().enumerate() {
        target_card(&mut h, &st, t, &per_target[ti]);
    }
    if st.targets.is_empty() {
        h.push_str("<p>No targets are configured.</p>");
    }
    footer(&mut h);
    h
}

fn target_card(h: &mut String, st: &State, t: &TargetState, slots: &[&Slot]) {
    h.push_str("<section class=\"card\" id=\"target-");
    push_esc(h, &t.name);
    h.push_str("\"><div class=\"head\"><h2>");
    push_esc(h, &t.name);
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
    if let Some(user) = crate::db::login::resolved_user(&t.name) {
        h.push_str(" · database user (AWS) <b>");
        push_esc(h, &user);
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
            item_html(h, i, st.page_detail, true);
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
        let s = slots[i];
        let mark = if s.status.ran { marks[i] } else { "pending" };
        h.push_str("<a class=\"");
        h.push_str(mark);
        h.push_str("\" href=\"");
        check_href(h, "", s);
        h.push_str("\">");
        push_name(h, &s.check.name);
        h.push_str("</a> ");
    }
    h.push_str("</p></details>");

    // Checks that cannot run here, grouped by why.
    let mut skipped: Vec<(&str, &Slot)> = slots
        .iter()
        .filter_map(|s| s.not_applicable.as_deref().map(|w| (w, *s)))
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
            check_href(h, "", s);
            h.push_str("\">");
            push_name(h, &s.check.name);
            h.push_str("</a> ");
        }
        h.push_str("</li></ul></details>");
    }
    h.push_str("</section>");
}

/// The (check, target) of a check page's path, if it is one.
pub fn parse_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(CHECKS)?;
    let (check, target) = rest.split_once('/')?;
    (is_check_name(check) && is_identifier(target)).then_some((check, target))
}

/// `/checks/{check}/{target}`; `None` when there is no such slot. `archive_root` is set when
/// `archive_serve = true` (the recent CSVs are then links).
pub fn check_page(
    store: &Store,
    archive_root: Option<&Path>,
    check: &str,
    target: &str,
) -> Option<String> {
    let st = store.read();
    let slot = st
        .slots
        .iter()
        .find(|s| s.check.name == check && &*s.target == target)?;
    let detail = st.page_detail;
    let now = now();
    let c = &slot.check;
    let mut h = String::with_capacity(16 * 1024);
    head(
        &mut h,
        &format!("{} on {} · Redshift Exporter", c.name, target),
    );
    h.push_str("<header>");
    nav(&mut h, "../../");
    h.push_str("<h1>");
    push_esc(&mut h, &c.name);
    h.push_str(" <span class=\"muted\">on</span> <a href=\"../../#target-");
    push_esc(&mut h, target);
    h.push_str("\">");
    push_esc(&mut h, target);
    h.push_str("</a> ");
    h.push_str(status_badge(slot));
    h.push_str("</h1><p>");
    push_esc(&mut h, &c.help);
    h.push_str("</p></header>");

    // Last run.
    h.push_str("<section class=\"card\"><h2>Last run</h2><dl>");
    if let Some(why) = &slot.not_applicable {
        h.push_str("<dt>Skipped</dt><dd>");
        push_esc(&mut h, why);
        h.push_str("</dd>");
    } else if !slot.status.ran {
        h.push_str("<dt>Outcome</dt><dd>not run yet</dd>");
    } else {
        let s = &slot.status;
        let _ = write!(
            h,
            "<dt>Started</dt><dd>{} <span class=\"muted\">({})</span></dd>\
             <dt>Duration</dt><dd>{:.3} s</dd><dt>Rows</dt><dd>{}</dd><dt>Outcome</dt><dd>",
            utc(s.last_run),
            ago(s.last_run, now),
            s.duration.as_secs_f64(),
            s.rows
        );
        match (&s.last_error, s.success) {
            (_, true) => h.push_str("<span class=\"ok\">success</span>"),
            (Some(e), false) => {
                let _ = write!(h, "<span class=\"fail\">{}</span>", e.kind.as_str());
            }
            (None, false) => h.push_str("<span class=\"fail\">error</span>"),
        }
        h.push_str("</dd>");
        if let (Some(e), PageDetail::Full) = (&s.last_error, detail) {
            h.push_str("<dt>Error</dt><dd class=\"fail\">");
            push_esc(&mut h, &e.message);
            h.push_str("</dd>");
        }
        if s.last_success > 0.0 && !s.success {
            let _ = write!(h, "<dt>Last success</dt><dd>{}</dd>", utc(s.last_success));
        }
    }
    let _ = write!(
        h,
        "<dt>Schedule</dt><dd>{}</dd><dt>Timeout</dt><dd>{}</dd><dt>Deployments</dt><dd>{}</dd></dl>",
        esc(&c.schedule.to_string()),
        humantime::format_duration(c.timeout),
        c.deployments
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut items = Vec::new();
    crossings(slot, &mut items);
    items.sort_by_key(|i| i.rank);
    if !items.is_empty() {
        h.push_str("<h3>Beyond a threshold</h3><ul class=\"att\">");
        for i in &items {
            item_html(&mut h, i, detail, false);
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");

    // Result rows.
    h.push_str("<section class=\"card\" id=\"result\"><h2>Last result</h2>");
    match (&slot.last_result, detail) {
        (_, PageDetail::Redacted) => h.push_str(
            "<p class=\"muted\">Result rows are not shown (page_detail = \"redacted\").</p>",
        ),
        (None, _) => h.push_str("<p class=\"muted\">No successful run yet.</p>"),
        (Some(r), _) => {
            let p = &r.preview;
            let _ = write!(
                h,
                "<p class=\"muted\">{} of {} row{} of the run started {}{}.</p>",
                if p.omitted() > 0 {
                    format!("First {}", p.rows.len())
                } else {
                    "All".to_string()
                },
                p.seen,
                if p.seen == 1 { "" } else { "s" },
                utc(r.started),
                if p.cut {
                    "; long values are cut (…)"
                } else {
                    ""
                }
            );
            if !p.columns.is_empty() {
                h.push_str("<div class=\"scroll\"><table class=\"rows\"><thead><tr>");
                for col in &p.columns {
                    h.push_str("<th>");
                    push_esc(&mut h, col);
                    h.push_str("</th>");
                }
                h.push_str("</tr></thead><tbody>");
                for row in &p.rows {
                    h.push_str("<tr>");
                    for v in row {
                        match v {
                            None => h.push_str("<td class=\"null\"></td>"),
                            Some(v) => {
                                h.push_str("<td>");
                                push_esc(&mut h, v);
                                h.push_str("</td>");
                            }
                        }
                    }
                    h.push_str("</tr>");
                }
                h.push_str("</tbody></table></div>");
            }
        }
    }
    h.push_str("</section>");

    // Values and thresholds.
    h.push_str(
        "<section class=\"card\"><h2>Metrics</h2><div class=\"scroll\"><table><thead><tr>\
         <th>Metric</th><th>Column</th><th>warn</th><th>crit</th></tr></thead><tbody>",
    );
    for v in &c.values {
        value_row(&mut h, v);
    }
    h.push_str("</tbody></table></div>");
    if !c.labels.is_empty() {
        h.push_str("<p class=\"muted\">Labels: ");
        push_esc(&mut h, &c.labels.join(", "));
        h.push_str("</p>");
    }
    h.push_str("</section>");

    if detail == PageDetail::Full {
        h.push_str("<section class=\"card\"><details open><summary>SQL</summary><div class=\"scroll\"><pre><code>");
        push_esc(&mut h, c.query.trim());
        h.push_str("</code></pre></div></details></section>");
    }

    // Recent runs, newest first.
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Recent runs</h2>\
         <div class=\"scroll\"><table><thead><tr><th>Started</th><th>Duration</th><th>Rows</th>\
         <th>Outcome</th></tr></thead><tbody>"
    );
    for r in slot.history.iter().rev() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{:.3} s</td><td class=\"num\">{}</td><td>{}</td></tr>",
            utc(r.started),
            r.duration.as_secs_f64(),
            r.rows,
            match r.error {
                None => "<span class=\"ok\">success</span>".to_string(),
                Some(k) => format!("<span class=\"fail\">{}</span>", k.as_str()),
            }
        );
    }
    if slot.history.is_empty() {
        h.push_str("<tr><td colspan=\"4\" class=\"muted\">none yet</td></tr>");
    }
    h.push_str("</tbody></table></div></section>");

    // Archive files: names only; links when archive serving is on.
    if c.archive {
        h.push_str("<section class=\"card\"><h2>Archive</h2>");
        if slot.recent_files.is_empty() {
            h.push_str("<p class=\"muted\">No CSV written yet.</p>");
        } else {
            h.push_str("<ul>");
            for f in slot.recent_files.iter().rev() {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match archive_root.and_then(|root| super::archive::href(root, f)) {
                    Some(href) => {
                        // `href` is root-relative (/archive/...): made relative to this page.
                        let rel = href.trim_start_matches('/');
                        let _ = write!(
                            h,
                            "<li><a href=\"../../{}\">{}</a></li>",
                            esc(rel),
                            esc(&name)
                        );
                    }
                    None => {
                        let _ = write!(h, "<li><code>{}</code></li>", esc(&name));
                    }
                }
            }
            h.push_str("</ul>");
            if archive_root.is_none() {
                h.push_str(
                    "<p class=\"muted\">Files are not served over HTTP (archive_serve = false).</p>",
                );
            }
        }
        h.push_str("</section>");
    }
    footer(&mut h);
    Some(h)
}

fn value_row(h: &mut String, v: &ValueSpec) {
    let t = &v.thresholds;
    let cell = |x: Option<f64>| {
        x.map(|x| {
            format!(
                "{} {}",
                if t.below { "&lt;" } else { "&gt;" },
                esc(&value_text(&v.metric, x))
            )
        })
        .unwrap_or_default()
    };
    let _ = write!(
        h,
        "<tr><td title=\"{}\"><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&v.help),
        esc(&v.metric),
        esc(&v.column),
        cell(t.warn),
        cell(t.crit)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(value_text("redshift_disk_used_ratio", 0.94), "94 %");
        assert_eq!(value_text("x_ratio", 0.1234), "12.3 %");
        assert_eq!(value_text("x_seconds", 7200.0), "2 h");
        assert_eq!(value_text("x_seconds", 45.5), "45.5 s");
        assert_eq!(
            value_text("x_bytes", 3.0 * 1024.0 * 1024.0 * 1024.0),
            "3 GiB"
        );
        assert_eq!(value_text("x_queries", 3.0), "3");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(span(3720.0), "1 h 2 min");
    }

    #[test]
    fn check_paths() {
        assert_eq!(parse_path("/checks/disk/main"), Some(("disk", "main")));
        assert_eq!(parse_path("/checks/disk/main-2"), Some(("disk", "main-2")));
        assert_eq!(parse_path("/checks/disk/main/"), None);
        assert_eq!(parse_path("/checks/../main"), None);
        assert_eq!(parse_path("/checks/Disk/main"), None);
        assert_eq!(parse_path("/checks/disk"), None);
        assert_eq!(parse_path("/checks/disk/%2e%2e"), None);
    }
}
