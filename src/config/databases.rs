//! Which databases of a cluster a target watches: `databases = ["dev", "sales"]` or
//! `databases = { include = ["*"], exclude = ["padb_harvest"] }` on `[targets.NAME]`,
//! `databases_refresh`, and a check's `scope = "cluster" | "database"`.
//!
//! Owns the validation of those keys (with TOML path and line), the database-name rule and the
//! `*`/`?` pattern matcher. It does not read `pg_database` or build the per-database
//! configuration: that is [`crate::discovery`] (pure) and `app` (the timer).

use std::time::Duration;

use toml::Spanned;

use super::Validator;

/// `databases` of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Databases {
    /// An explicit list: these databases, nothing is discovered.
    List(Vec<String>),
    /// Discovered from `pg_database` every `databases_refresh`: the names matching one of
    /// `include` and none of `exclude` (`*` any run of characters, `?` one character).
    Discover {
        include: Vec<String>,
        exclude: Vec<String>,
    },
}

/// Where a check runs on a target with several databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Once per target, on its home `database` (cluster-wide views: WLM, disk, sessions).
    #[default]
    Cluster,
    /// On every database of the target, each series labelled `database` (per-database
    /// catalogs: SVV_TABLE_INFO, materialized views).
    Database,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Cluster => "cluster",
            Scope::Database => "database",
        }
    }
}

/// The shortest `databases_refresh`: often enough for tests, rare enough that a typo such as
/// "1ms" cannot turn discovery into a busy loop against the cluster.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// How often `pg_database` is re-read when `databases_refresh` is not set.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

/// Whether `name` may be a database the exporter connects to and names in labels and archive
/// folders (`{target}@{database}`): 1 to 127 bytes of ASCII letters, digits, `_`, `$` and `-`
/// (Redshift's standard identifiers plus `-`; no `/`, `@` or `.`, so the name can never
/// escape or confuse a folder path).
pub fn is_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'-')
}

/// Whether `name` matches `pattern` (`*` any run, `?` exactly one character; nothing else is
/// special). Iterative with one backtrack point, so no pattern is exponential.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl Databases {
    /// The databases of `names` (a `pg_database` answer) this setting selects, sorted, each
    /// once; names that break [`is_database_name`] are left out (returned second, so the
    /// caller can say so once).
    pub fn select(&self, names: &[String]) -> (Vec<String>, Vec<String>) {
        let mut out = Vec::new();
        let mut unusable = Vec::new();
        for n in names {
            let wanted = match self {
                Databases::List(l) => l.contains(n),
                Databases::Discover { include, exclude } => {
                    include.iter().any(|p| glob_match(p, n))
                        && !exclude.iter().any(|p| glob_match(p, n))
                }
            };
            if !wanted {
                continue;
            }
            if is_database_name(n) {
                out.push(n.clone());
            } else {
                unusable.push(n.clone());
            }
        }
        out.sort();
        out.dedup();
        (out, unusable)
    }
}

impl Validator<'_> {
    /// `targets.NAME.databases`: a list of names or an `{ include, exclude }` table.
    pub(super) fn databases(
        &mut self,
        path: &str,
        raw: &Option<Spanned<toml::Value>>,
    ) -> Option<Databases> {
        let raw = raw.as_ref()?;
        let at = Some(raw.span().start);
        let strings = |v: &mut Self, key: &str, value: &toml::Value| -> Vec<String> {
            let Some(items) = value.as_array() else {
                v.problem(key, at, "must be a list of strings");
                return Vec::new();
            };
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => {
                        let s =
                            v.string(&format!("{key}[{i}]"), &Spanned::new(raw.span(), s.into()));
                        out.push(s);
                    }
                    None => v.problem(format!("{key}[{i}]"), at, "must be a string"),
                }
            }
            out
        };
        match raw.get_ref() {
            toml::Value::Array(_) => {
                let list = strings(self, path, raw.get_ref());
                if list.is_empty() {
                    self.problem(path, at, "must name at least one database");
                }
                let mut seen = std::collections::HashSet::new();
                for (i, name) in list.iter().enumerate() {
                    if !is_database_name(name) {
                        self.problem(
                            format!("{path}[{i}]"),
                            at,
                            format!("\"{name}\" is not a usable database name (1-127 of a-z, A-Z, 0-9, _, $, -)"),
                        );
                    } else if !seen.insert(name.as_str()) {
                        self.problem(
                            format!("{path}[{i}]"),
                            at,
                            format!("\"{name}\" is listed twice"),
                        );
                    }
                }
                Some(Databases::List(list))
            }
            toml::Value::Table(t) => {
                for key in t.keys() {
                    if key != "include" && key != "exclude" {
                        self.problem(
                            format!("{path}.{key}"),
                            at,
                            "unknown key (expected include, exclude)",
                        );
                    }
                }
                let include = match t.get("include") {
                    Some(v) => strings(self, &format!("{path}.include"), v),
                    None => Vec::new(),
                };
                if include.is_empty() {
                    self.problem(
                        format!("{path}.include"),
                        at,
                        "must list at least one pattern (e.g. [\"*\"])",
                    );
                }
                let exclude = match t.get("exclude") {
                    Some(v) => strings(self, &format!("{path}.exclude"), v),
                    None => Vec::new(),
                };
                for (key, list) in [("include", &include), ("exclude", &exclude)] {
                    for (i, p) in list.iter().enumerate() {
                        if p.is_empty() {
                            self.problem(format!("{path}.{key}[{i}]"), at, "must not be empty");
                        }
                    }
                }
                Some(Databases::Discover { include, exclude })
            }
            _ => {
                self.problem(
                    path,
                    at,
                    "must be a list of database names or { include = [...], exclude = [...] }",
                );
                None
            }
        }
    }

    /// `targets.NAME.databases_refresh`: only meaningful with discovery; at least [`MIN_REFRESH`].
    pub(super) fn databases_refresh(
        &mut self,
        path: &str,
        raw: &Option<Spanned<String>>,
        databases: Option<&Databases>,
    ) -> Duration {
        let d = self.duration(path, raw, DEFAULT_REFRESH);
        if let Some(s) = raw {
            if !matches!(databases, Some(Databases::Discover { .. })) {
                self.problem(
                    path,
                    Some(s.span().start),
                    "only applies to databases = { include = [...] } (nothing is discovered otherwise)",
                );
            } else if d < MIN_REFRESH {
                self.problem(
                    path,
                    Some(s.span().start),
                    format!(
                        "must be at least {}",
                        humantime::format_duration(MIN_REFRESH)
                    ),
                );
            }
        }
        d.max(MIN_REFRESH)
    }

    /// `checks[i].scope`.
    pub(super) fn scope(&mut self, path: &str, raw: &Option<Spanned<String>>) -> Scope {
        match self.opt_string(path, raw).as_deref() {
            None | Some("cluster") => Scope::Cluster,
            Some("database") => Scope::Database,
            Some(other) => {
                self.problem(
                    path,
                    raw.as_ref().map(|s| s.span().start),
                    format!("\"{other}\" is not one of cluster, database"),
                );
                Scope::Cluster
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, |_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|p| p.to_string()).collect(),
        }
    }

    const TARGET: &str = "[targets.main]\nhost = \"h\"\nuser = \"u\"\n";
    const CHECK: &str =
        "[[checks]]\nname = \"a\"\nquery = \"SELECT 'x' AS node, 1 AS v\"\nvalues = [\"v\"]\n";

    #[test]
    fn globs_match_star_and_question_mark_only() {
        assert!(glob_match("*", "dev"));
        assert!(glob_match("*", ""));
        assert!(glob_match("sales_*", "sales_eu"));
        assert!(!glob_match("sales_*", "sale"));
        assert!(glob_match("d?v", "dev"));
        assert!(!glob_match("d?v", "deev"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxxc"));
        assert!(glob_match("padb_harvest", "padb_harvest"));
        assert!(!glob_match("[ab]", "a"), "brackets are literal");
        // no exponential backtracking
        assert!(!glob_match(
            &"*a".repeat(30),
            &"a".repeat(60).replace("aa", "ab")
        ));
    }

    #[test]
    fn database_names_are_safe_folder_components() {
        assert!(is_database_name("dev"));
        assert!(is_database_name("Sales_2024$x-1"));
        for bad in ["", "a/b", "..", "a@b", "a b", "a.b", &"x".repeat(128)] {
            assert!(!is_database_name(bad), "{bad}");
        }
    }

    #[test]
    fn select_filters_sorts_and_sets_aside_unusable_names() {
        let names: Vec<String> = ["sales", "dev", "padb_harvest", "a b", "dev"]
            .map(String::from)
            .into();
        let d = Databases::Discover {
            include: vec!["*".into()],
            exclude: vec!["padb_*".into()],
        };
        assert_eq!(
            d.select(&names),
            (vec!["dev".into(), "sales".into()], vec!["a b".into()])
        );
        let l = Databases::List(vec!["sales".into(), "gone".into()]);
        assert_eq!(l.select(&names).0, vec!["sales".to_string()]);
    }

    #[test]
    fn the_list_and_pattern_forms_parse() {
        let c = parse(
            &format!("{TARGET}database = \"dev\"\ndatabases = [\"dev\", \"sales\"]\n{CHECK}scope = \"database\"\n"),
            |_| None,
        )
        .unwrap();
        assert_eq!(
            c.targets[0].databases,
            Some(Databases::List(vec!["dev".into(), "sales".into()]))
        );
        assert_eq!(c.checks[0].scope, Scope::Database);
        let c = parse(
            &format!("{TARGET}databases = {{ include = [\"*\"], exclude = [\"padb_harvest\"] }}\ndatabases_refresh = \"2s\"\n{CHECK}"),
            |_| None,
        )
        .unwrap();
        assert_eq!(
            c.targets[0].databases,
            Some(Databases::Discover {
                include: vec!["*".into()],
                exclude: vec!["padb_harvest".into()]
            })
        );
        assert_eq!(c.targets[0].databases_refresh, Duration::from_secs(2));
        assert_eq!(c.checks[0].scope, Scope::Cluster, "cluster is the default");
        let c = parse(&format!("{TARGET}{CHECK}"), |_| None).unwrap();
        assert_eq!(c.targets[0].databases, None);
        assert_eq!(c.targets[0].databases_refresh, DEFAULT_REFRESH);
    }

    #[test]
    fn every_databases_problem_has_its_path_and_line() {
        let has = |text: &str, want: &str| {
            let p = problems(text);
            assert!(p.iter().any(|s| s.contains(want)), "{want:?} not in {p:?}");
        };
        has(
            &format!("{TARGET}databases = []\n{CHECK}"),
            "targets.main.databases (line 4): must name at least one database",
        );
        has(
            &format!("{TARGET}databases = [\"a/b\"]\n{CHECK}"),
            "targets.main.databases[0] (line 4): \"a/b\" is not a usable database name",
        );
        has(
            &format!("{TARGET}databases = [\"a\", \"a\"]\n{CHECK}"),
            "targets.main.databases[1] (line 4): \"a\" is listed twice",
        );
        has(
            &format!("{TARGET}databases = [1]\n{CHECK}"),
            "targets.main.databases[0] (line 4): must be a string",
        );
        has(
            &format!("{TARGET}databases = \"dev\"\n{CHECK}"),
            "targets.main.databases (line 4): must be a list of database names",
        );
        has(
            &format!("{TARGET}databases = {{ exclude = [\"x\"] }}\n{CHECK}"),
            "targets.main.databases.include (line 4): must list at least one pattern",
        );
        has(
            &format!("{TARGET}databases = {{ include = [\"*\"], skip = [\"x\"] }}\n{CHECK}"),
            "targets.main.databases.skip (line 4): unknown key",
        );
        has(
            &format!("{TARGET}databases = {{ include = [\"\"] }}\n{CHECK}"),
            "targets.main.databases.include[0] (line 4): must not be empty",
        );
        has(
            &format!("{TARGET}databases = {{ include = \"*\" }}\n{CHECK}"),
            "targets.main.databases.include (line 4): must be a list of strings",
        );
        has(
            &format!("{TARGET}databases_refresh = \"1m\"\n{CHECK}"),
            "targets.main.databases_refresh (line 4): only applies to databases = { include",
        );
        has(
            &format!(
                "{TARGET}databases = {{ include = [\"*\"] }}\ndatabases_refresh = \"100ms\"\n{CHECK}"
            ),
            "targets.main.databases_refresh (line 5): must be at least 1s",
        );
        has(
            &format!("{TARGET}{CHECK}scope = \"node\"\n"),
            "checks[0].scope (line 8): \"node\" is not one of cluster, database",
        );
        has(
            &format!("{TARGET}{CHECK}scope = \"database\"\nlabels = [\"database\"]\n"),
            "checks[0].labels[0] (line 9): \"database\" is reserved for the database of a per-database check",
        );
        // A cluster check may still have a column called database.
        assert!(problems(&format!("{TARGET}{CHECK}labels = [\"database\"]\n")).is_empty());
    }
}
