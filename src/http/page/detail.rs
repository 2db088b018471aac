//! The check page `/checks/{check}/{target}`: one slot's help, SQL, schedule, last run
//! (duration, rows, outcome, error), its values beyond a threshold, its first rows (the same
//! as the CSV's), its last runs and links to its latest archive files.
//!
//! Owns: that page and the parsing of its path. Not cached: it is one slot (a few µs), and
//! it shows times relative to now. Does not own: serving the archive files (`http::archive`).

use std::fmt::Write as _;
use std::path::Path;

use super::attention::{Found, SlotView, crossings, item_html, status_badge};
use super::html::{ago, esc, footer, head, nav, now, push_esc, utc, value_text};
use crate::config::{PageDetail, ValueSpec, is_check_name, is_identifier};
use crate::snapshot::Store;

/// The route prefix of check pages.
pub const CHECKS: &str = "/checks/";

/// The (check, target) of a check page's path, if it is one; `target` may be
/// `{target}@{database}` (a per-database check's slot).
pub fn parse_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(CHECKS)?;
    let (check, target) = rest.split_once('/')?;
    let (name, database) = crate::discovery::split_folder(target);
    (is_check_name(check)
        && is_identifier(name)
        && database.is_none_or(crate::config::is_database_name))
    .then_some((check, target))
}

/// `/checks/{check}/{target}`; `None` when there is no such slot. `archive_root` is set when
/// `archive_serve = true` (the recent CSVs are then links).
pub fn check_page(
    store: &Store,
    archive_root: Option<&Path>,
    check: &str,
    path_target: &str,
) -> Option<String> {
    let (target, database) = crate::discovery::split_folder(path_target);
    // Under the lock: one clone (bounded: 20 runs, 5 paths, `Arc`s); formatted after.
    let (slot, detail, section) = {
        let st = store.read();
        let slot = st
            .slots
            .iter()
            .find(|s| {
                s.check.name == check && &*s.target == target && s.database.as_deref() == database
            })?
            .clone();
        // The landing page section the slot is in: the target's, or its database entry's.
        let section =
            crate::discovery::folder(target, st.targets[slot.target_index].database.as_deref());
        (slot, st.page_detail, section)
    };
    let view = SlotView::of(&slot);
    let now = now();
    let c = &slot.check;
    let mut h = String::with_capacity(16 * 1024);
    head(
        &mut h,
        &format!("{} on {} · Redshift Exporter", c.name, path_target),
    );
    h.push_str("<header>");
    nav(&mut h, "../../");
    h.push_str("<h1>");
    push_esc(&mut h, &c.name);
    h.push_str(" <span class=\"muted\">on</span> <a href=\"../../#target-");
    push_esc(&mut h, &section);
    h.push_str("\">");
    push_esc(&mut h, target);
    h.push_str("</a> ");
    if let Some(db) = database {
        h.push_str("<span class=\"muted\">· database</span> ");
        push_esc(&mut h, db);
        h.push(' ');
    }
    h.push_str(status_badge(&view));
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
    let mut items: Vec<Found> = crossings(&view)
        .iter()
        .copied()
        .map(Found::Beyond)
        .collect();
    items.sort_by_key(Found::rank);
    if !items.is_empty() {
        h.push_str("<h3>Beyond a threshold</h3><ul class=\"att\">");
        for i in &items {
            item_html(&mut h, &view, i, detail, None);
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
                match archive_root.and_then(|root| super::super::archive::href(root, f)) {
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
    fn check_paths() {
        assert_eq!(parse_path("/checks/disk/main"), Some(("disk", "main")));
        assert_eq!(parse_path("/checks/disk/main-2"), Some(("disk", "main-2")));
        assert_eq!(parse_path("/checks/disk/main/"), None);
        assert_eq!(parse_path("/checks/../main"), None);
        assert_eq!(parse_path("/checks/Disk/main"), None);
        assert_eq!(parse_path("/checks/disk"), None);
        assert_eq!(parse_path("/checks/disk/%2e%2e"), None);
        assert_eq!(
            parse_path("/checks/tables/main@dev"),
            Some(("tables", "main@dev"))
        );
        assert_eq!(parse_path("/checks/tables/main@"), None);
        assert_eq!(parse_path("/checks/tables/main@a@b"), None);
        assert_eq!(parse_path("/checks/tables/@dev"), None);
    }
}
