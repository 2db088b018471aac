//! The HTML pages: `/` (per target: deployment, up state and what needs attention) and
//! `/checks/{check}/{target}` (one slot: help, SQL, schedule, last run, its first rows, the
//! last runs, archive links).
//!
//! Rendered from the snapshot only (never the database), server-side, no script. Everything
//! that comes from the configuration or the database is HTML-escaped. Links are relative
//! (`checks/...` from `/`, `../../` back), so the pages work behind a reverse proxy that
//! serves them under a prefix; no host path (archive folder, config file) is ever shown.
//! With `page_detail = "redacted"` SQL text, error messages and result rows are left out.
//! The store's read lock is held only to clone what a page shows; formatting happens after.
//!
//! What "needs attention": a failed check (error kind and message), or a value of the last
//! run beyond its column's `warn`/`crit` threshold from the configuration; the shipped pack's
//! thresholds are those of the shipped alert rules (deploy/prometheus/rules/redshift.rules.yml).
//!
//! - `html` — stylesheet, escaping, head/nav/footer, how times and values are written;
//! - `attention` — the slot view the pages format and the "needs attention" items;
//! - `landing` — `/`: its start, one section per target, its end;
//! - `cache` — [`Landing`]: `/` with each target's section kept until it changes;
//! - `detail` — the check page and its path.

mod attention;
mod cache;
mod detail;
mod html;
mod landing;

pub use cache::Landing;
pub use detail::{CHECKS, check_page, parse_path};
pub use html::esc;
pub use landing::{ATTENTION_ITEMS, landing};
