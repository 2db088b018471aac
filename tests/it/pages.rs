//! The HTML pages (`/`, `/checks/{check}/{target}`) of the real daemon running the shipped
//! pack on the Redshift emulation with every incident: the landing page lists the seeded
//! incidents per target (disk 94 % on node 1, queries queued in `etl`, the waiting lock and the
//! session holding it), a failed check's error, and folds the skipped checks away; a check page
//! shows the check's rows exactly as its CSV has them. `page_detail = "redacted"` hides SQL,
//! error messages and rows.

use crate::pack::{PackDaemon, start_pack_daemon_with, target_name};
use crate::support::daemon::{Daemon, WorkDir, check_toml, exporter_toml};
use crate::support::pg;
use crate::support::{ms, secs};
use redshift_exporter::emulation;

/// A check that always fails, with markup in its help and its error, on one target.
const BROKEN: &str = r#"
[[checks]]
name = "broken"
help = "Fails on purpose <script>alert(1)</script>"
query = "SELECT (1 / 0)::float8 AS v -- <b>not bold</b>"
values = ["v"]
interval = "1h"
targets = ["provisioned_incidents"]
"#;

/// The `<section>` of one target on the landing page.
fn target_section<'a>(page: &'a str, target: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"target-{target}\""))
        .unwrap_or_else(|| panic!("no section for {target}:\n{page}"));
    let end = page[start..].find("</section>").unwrap() + start;
    &page[start..end]
}

/// The text of every cell of the first `<table class="rows">`, row by row.
fn result_rows(page: &str) -> Vec<Vec<String>> {
    let Some(start) = page.find("<table class=\"rows\">") else {
        return Vec::new();
    };
    let table = &page[start..start + page[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()];
                    text.replace("&quot;", "\"")
                        .replace("&#39;", "'")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&amp;", "&")
                })
                .collect()
        })
        .collect()
}

/// The newest CSV of a check on a target, as rows of fields (header included).
fn newest_csv(work: &WorkDir, target: &str, check: &str) -> Vec<Vec<String>> {
    let dir = work.archive().join(target).join(check);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let file = files.pop().expect("a CSV");
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(&file)
        .unwrap();
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_the_incidents_errors_and_rows_of_the_emulation() {
    let PackDaemon {
        mut daemon,
        exp: _,
        _work: work,
    } = start_pack_daemon_with(
        Some(emulation::MONITOR_ROLE),
        |r| r.name.ends_with("incidents"),
        &[],
        BROKEN,
    )
    .await;
    let prov = target_name("provisioned-incidents");
    let serverless = target_name("serverless-incidents");
    let home = daemon.get("/").await;
    assert_eq!(home.status, 200);
    assert_eq!(home.header("cache-control"), Some("no-store"));
    let page = home.body;

    // The provisioned target: what it is, and the seeded incidents first.
    let p = target_section(&page, &prov);
    for want in [
        "<span class=\"badge ok\">up</span>",
        "Deployment <b>provisioned</b> (detected) · readable: stl, svv, sys",
        // Disk 94 % on node 1: beyond the critical 90 % of RedshiftDiskUsageCritical.
        "<span class=\"badge crit\">crit</span> <a href=\"checks/disk/provisioned_incidents\">disk</a> \
         <code>redshift_disk_used_ratio{node=\"1\"}</code> = <b>94 %</b> \
         <span class=\"muted\">(crit &gt; 90 %)</span>",
        // Three queries queued in the etl queue.
        "<code>redshift_wlm_queue_queued_queries{service_class=\"6\", queue=\"etl\"}</code> = <b>3</b>",
        // A session waits for a lock; etl_user's 2-hour transaction holds it.
        "<code>redshift_locks_waiting</code> = <b>",
        "<code>redshift_open_transaction_oldest_age_seconds{user_name=\"etl_user\"}</code> = <b>2 h",
        // The failed check: kind and message, escaped.
        "<a href=\"checks/broken/provisioned_incidents\">broken</a> failed: <b>query</b>",
        "division by zero",
    ] {
        assert!(p.contains(want), "provisioned section lacks {want:?}:\n{p}");
    }
    // Crit first, then errors, then warnings.
    let crit = p.find("badge crit").unwrap();
    let error = p.find("badge fail\">error").unwrap();
    let warn = p.find("badge warn").unwrap();
    assert!(crit < error && error < warn, "{p}");
    assert!(
        !page.contains("<script>"),
        "markup from the config is escaped"
    );
    assert!(page.contains("Fails on purpose") || !page.contains("alert(1)</script>"));

    // Serverless: its checks that cannot run there are folded away, with the reason.
    let s = target_section(&page, &serverless);
    let fold = s
        .find("<details class=\"skipped\"><summary>")
        .unwrap_or_else(|| panic!("no folded skipped checks:\n{s}"));
    let disk_link = format!("checks/disk/{serverless}");
    assert!(s[fold..].contains(&disk_link), "{s}");
    assert!(
        !s[..fold].contains(&disk_link),
        "disk is listed outside the fold:\n{s}"
    );
    assert!(s[fold..].contains("check applies to provisioned; target is serverless"));
    assert!(!s.contains("details class=\"skipped\" open"));
    // No host path (the archive folder) anywhere.
    assert!(!page.contains(&work.archive().display().to_string()));

    // A check page: help, SQL, schedule, last run, and its rows exactly as the CSV has them.
    let (status, cp) = {
        let r = daemon.get(&format!("/checks/disk/{prov}")).await;
        (r.status, r.body)
    };
    assert_eq!(status, 200, "{cp}");
    for want in [
        "Disk space used per compute node",
        "FROM stv_partitions p",
        "every 1m",
        "<span class=\"ok\">success</span>",
        "<th>node</th><th>used_ratio</th><th>used_bytes</th><th>capacity_bytes</th>",
        "<code>redshift_disk_used_ratio</code></td><td>used_ratio</td><td>&gt; 80 %</td><td>&gt; 90 %</td>",
        "<h2>Recent runs</h2>",
        "href=\"../../\"",
    ] {
        assert!(cp.contains(want), "disk page lacks {want:?}:\n{cp}");
    }
    assert!(!cp.contains(&work.archive().display().to_string()));
    // table_health runs per database: its page and archive folder are `{prov}@{database}`,
    // as the landing page links it.
    let per_db = {
        let at = page
            .find(&format!("checks/table_health/{prov}@"))
            .unwrap_or_else(|| panic!("no per-database link to table_health:\n{page}"));
        let link = &page[at + "checks/table_health/".len()..];
        link[..link.find('"').unwrap()].to_string()
    };
    for check in ["disk", "table_health", "open_transactions"] {
        let slot = if check == "table_health" {
            &per_db
        } else {
            &prov
        };
        // The CSV is written after the run is recorded: wait for both to show the same rows.
        let deadline = std::time::Instant::now() + secs(10);
        loop {
            let page = daemon.get(&format!("/checks/{check}/{slot}")).await.body;
            let shown = result_rows(&page);
            let csv = newest_csv(&work, slot, check);
            if !shown.is_empty() && csv[1..] == shown[..] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{check}: page rows {shown:?} != CSV rows {:?}",
                &csv[1..]
            );
            tokio::time::sleep(ms(200)).await;
        }
    }

    // The failed check's page: the error, the SQL (escaped), and no rows.
    let bp = daemon.get(&format!("/checks/broken/{prov}")).await.body;
    for want in [
        "<dt>Outcome</dt><dd><span class=\"fail\">query</span></dd>",
        "division by zero",
        "-- &lt;b&gt;not bold&lt;/b&gt;",
        "Fails on purpose &lt;script&gt;alert(1)&lt;/script&gt;",
        "No successful run yet.",
    ] {
        assert!(bp.contains(want), "broken page lacks {want:?}:\n{bp}");
    }
    // Unknown checks and targets, and odd paths, are 404.
    for bad in [
        format!("/checks/nope/{prov}"),
        "/checks/disk/nope".to_string(),
        format!("/checks/disk/{prov}/"),
        "/checks/../metrics".to_string(),
        "/checks/".to_string(),
    ] {
        assert_eq!(daemon.get(&bad).await.status, 404, "{bad}");
    }
    daemon.sigterm();
    daemon.wait_exit(secs(30)).await;
}

/// `page_detail = "redacted"`: no SQL, no error message, no result rows; the error kind,
/// the status and the threshold crossings stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_pages_hide_sql_errors_and_rows() {
    let db = pg::database().await;
    let work = WorkDir::new();
    let checks = check_toml(
        "fails",
        "SELECT (1 / 0)::float8 AS v",
        "values = [\"v\"]\ninterval = \"1h\"",
    ) + &check_toml(
        "hot",
        "SELECT 'secret-row-value' AS k, 0.97::float8 AS v",
        "labels = [\"k\"]\nvalues = [{ column = \"v\", warn = 0.8, crit = 0.9 }]\ninterval = \"1h\"",
    );
    let cfg = work.write(
        "checks.toml",
        &format!(
            "{}\n{}\n{checks}",
            exporter_toml(&work.archive(), "page_detail = \"redacted\""),
            db.target_toml("main", "")
        ),
    );
    let d = Daemon::start(&cfg).await;
    let deadline = std::time::Instant::now() + secs(15);
    while d.get("/-/ready").await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        tokio::time::sleep(ms(100)).await;
    }
    let home = d.get("/").await.body;
    assert!(home.contains("failed: <b>query</b>"), "{home}");
    assert!(
        home.contains("<code>itest_hot_v{k=\"secret-row-value\"}</code> = <b>0.97</b>"),
        "{home}"
    );
    assert!(!home.contains("division by zero"), "{home}");
    for page in ["/checks/fails/main", "/checks/hot/main"] {
        let body = d.get(page).await.body;
        assert!(!body.contains("division by zero"), "{page}: {body}");
        assert!(!body.contains("SELECT"), "{page}: {body}");
        assert!(!body.contains("<table class=\"rows\">"), "{page}: {body}");
        assert!(
            body.contains("(page_detail = \"redacted\")"),
            "{page}: {body}"
        );
    }
}
