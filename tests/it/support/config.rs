//! Config builders: the TOML text of the tests' `[exporter]`, `[targets.*]` and `[[checks]]`
//! sections, with defaults a test overrides by setting the same key itself.
//!
//! Owns only text; writing it goes through [`super::WorkDir`], and the database a target points
//! at is a [`TestDb`] from [`super::pg`].

use std::path::Path;

use super::pg::TestDb;
use super::work::WorkDir;

/// `[exporter]` section used by the tests: namespace `itest`, archive under `archive_dir`, 1 s interval,
/// 2 s timeout, 10 s drain. `extra` lines are appended inside the section.
/// Keys that `extra` sets itself replace these defaults.
pub fn exporter_toml(archive_dir: &Path, extra: &str) -> String {
    let defaults = [
        ("namespace", toml_str("itest")),
        ("archive_dir", toml_str(&archive_dir.to_string_lossy())),
        ("default_interval", toml_str("1s")),
        ("default_timeout", toml_str("2s")),
        ("drain_timeout", toml_str("10s")),
    ];
    format!("[exporter]\n{}{extra}\n", merge_defaults(&defaults, extra))
}

/// One `[[checks]]` entry; `extra` lines (labels, values, interval, ...) are appended verbatim.
pub fn check_toml(name: &str, query: &str, extra: &str) -> String {
    format!(
        "[[checks]]\nname = {}\nhelp = {}\nquery = {}\n{extra}\n",
        toml_str(name),
        toml_str(&format!("Integration test check {name}.")),
        toml_str(query)
    )
}

/// A whole config: exporter section (archive in `work`), target `main` on `db`, then `checks`.
pub fn config_toml(work: &WorkDir, db: &TestDb, checks: &str) -> String {
    format!(
        "{}\n{}\n{checks}",
        exporter_toml(&work.archive(), ""),
        db.target_toml("main", "")
    )
}

impl TestDb {
    /// A `[targets.NAME]` TOML section pointing at this database; `extra` is appended verbatim.
    /// Keys that `extra` sets itself replace the defaults (host, port, database, user, password,
    /// sslmode "disable", pool_size 5, connect_timeout "1s").
    pub fn target_toml(&self, name: &str, extra: &str) -> String {
        self.target_toml_without(name, extra, &[])
    }

    /// Like [`target_toml`](Self::target_toml), leaving out the default keys in `omit`
    /// (e.g. `password` when `extra` sets `password_file`).
    pub fn target_toml_without(&self, name: &str, extra: &str, omit: &[&str]) -> String {
        let password = self.password.clone().unwrap_or_else(|| "unused".to_owned());
        let defaults = [
            ("host", toml_str(&self.host)),
            ("port", self.port.to_string()),
            ("database", toml_str(&self.dbname)),
            ("user", toml_str(&self.user)),
            ("password", toml_str(&password)),
            ("sslmode", toml_str("disable")),
            ("pool_size", "5".to_owned()),
            ("connect_timeout", toml_str("1s")),
        ];
        let defaults: Vec<(&str, String)> = defaults
            .into_iter()
            .filter(|(k, _)| !omit.contains(k))
            .collect();
        format!(
            "[targets.{name}]\n{}{extra}\n",
            merge_defaults(&defaults, extra)
        )
    }
}

/// `key = value` lines for every default whose key the `extra` TOML lines do not set.
pub fn merge_defaults(defaults: &[(&str, String)], extra: &str) -> String {
    let set_by_extra = |key: &str| {
        extra.lines().any(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    defaults
        .iter()
        .filter(|(k, _)| !set_by_extra(k))
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

/// A TOML basic string literal for `s`.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
