//! Redshift dialect lint: constructs PostgreSQL accepts but Redshift rejects (or runs only on
//! the leader node, which fails once a query touches STL/STV/SVV/SYS relations). The test
//! stand-in for Redshift is PostgreSQL, so only this lint protects shipped SQL from them. The
//! rules and why each exists are listed in `docs/checks.md`, "SQL rules for checks (and the
//! lint)".
//!
//! Pure text analysis: comments are dropped and string literals blanked first, so a keyword
//! inside a string or comment never triggers a rule. Findings are warnings: a check written
//! only for PostgreSQL may use these freely.

/// One finding in one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Short rule name, e.g. `now`.
    pub rule: &'static str,
    /// What is wrong and what to write instead.
    pub message: &'static str,
    /// 0-based line within the query text.
    pub line: usize,
}

struct Rule {
    name: &'static str,
    message: &'static str,
    matcher: fn(&str, usize) -> bool,
}

/// Words that are checked as identifiers (word boundaries on both sides).
const WORD_RULES: &[(&str, &str, &str)] = &[
    (
        "sysdate",
        "SYSDATE",
        "SYSDATE cannot be emulated on PostgreSQL and is leader-node flavoured; use GETDATE()",
    ),
    (
        "current_timestamp",
        "CURRENT_TIMESTAMP",
        "CURRENT_TIMESTAMP is leader-node only on Redshift (fails with system tables); use GETDATE()",
    ),
    (
        "current_time",
        "CURRENT_TIME",
        "CURRENT_TIME is leader-node only on Redshift; use GETDATE()",
    ),
    (
        "localtime",
        "LOCALTIME",
        "LOCALTIME is leader-node only on Redshift; use GETDATE()",
    ),
    (
        "localtimestamp",
        "LOCALTIMESTAMP",
        "LOCALTIMESTAMP is leader-node only on Redshift; use GETDATE()",
    ),
    (
        "current_schema",
        "CURRENT_SCHEMA",
        "CURRENT_SCHEMA is leader-node only on Redshift; fails with system tables",
    ),
    (
        "lateral",
        "LATERAL",
        "Redshift does not support LATERAL joins",
    ),
];

/// Rules about functions that run only on the leader node. Redshift rejects them once a query
/// also reads a relation stored on the compute nodes (the STL/STV/SVL/SVCS/SVV/SYS views); a
/// query over the leader's catalogs alone (`pg_database`, `pg_class`...) runs them fine — AWS's
/// own amazon-redshift-monitoring computes `MAX(AGE(datfrozenxid)) FROM pg_database`. So these
/// rules only fire for queries that name a system relation.
const LEADER_ONLY: &[&str] = &[
    "current_timestamp",
    "current_time",
    "localtime",
    "localtimestamp",
    "current_schema",
    "now",
    "age",
    "isfinite",
    "generate_series",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
];

/// Function calls: the name followed by `(`.
const CALL_RULES: &[(&str, &str, &str)] = &[
    (
        "now",
        "NOW",
        "NOW() is leader-node only on Redshift (fails with system tables); use GETDATE()",
    ),
    (
        "age",
        "AGE",
        "AGE() is leader-node only on Redshift; subtract timestamps or use EXTRACT(EPOCH FROM ...)",
    ),
    (
        "isfinite",
        "ISFINITE",
        "ISFINITE() is leader-node only on Redshift",
    ),
    (
        "decode",
        "DECODE",
        "DECODE means different things on Redshift (CASE-like) and PostgreSQL (bytea); use CASE",
    ),
    (
        "listagg",
        "LISTAGG",
        "LISTAGG does not exist on PostgreSQL and is restricted with system tables on Redshift; aggregate in the archive instead",
    ),
    (
        "string_agg",
        "STRING_AGG",
        "STRING_AGG does not exist on Redshift",
    ),
    (
        "generate_series",
        "GENERATE_SERIES",
        "GENERATE_SERIES is leader-node only on Redshift",
    ),
    ("array", "ARRAY", "Redshift has no PostgreSQL arrays"),
    (
        "has_table_privilege",
        "HAS_TABLE_PRIVILEGE",
        "HAS_*_PRIVILEGE is leader-node only on Redshift",
    ),
    (
        "has_schema_privilege",
        "HAS_SCHEMA_PRIVILEGE",
        "HAS_*_PRIVILEGE is leader-node only on Redshift",
    ),
    (
        "has_database_privilege",
        "HAS_DATABASE_PRIVILEGE",
        "HAS_*_PRIVILEGE is leader-node only on Redshift",
    ),
];

fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "dateparts",
            message: "DATEADD/DATEDIFF/DATE_PART need a quoted datepart ('second'): a bare word is a column on PostgreSQL",
            matcher: |t, i| {
                ["dateadd", "datediff", "date_part"].iter().any(|f| {
                    call_at(t, i, f).is_some_and(|after| !after.trim_start().starts_with('\''))
                })
            },
        },
        Rule {
            name: "top",
            message: "SELECT TOP n is Redshift-only syntax; use LIMIT n",
            matcher: |t, i| {
                word_at(t, i, "top")
                    && t[i + 3..]
                        .trim_start()
                        .starts_with(|c: char| c.is_ascii_digit())
            },
        },
        Rule {
            name: "filter",
            message: "aggregate FILTER (WHERE ...) is not supported on Redshift; use CASE inside the aggregate",
            matcher: |t, i| word_at(t, i, "filter") && t[i + 6..].trim_start().starts_with('('),
        },
        Rule {
            name: "distinct_on",
            message: "DISTINCT ON is not supported on Redshift; use ROW_NUMBER() OVER (...)",
            matcher: |t, i| word_at(t, i, "distinct") && next_word(&t[i + 8..]) == "on",
        },
        Rule {
            name: "array_literal",
            message: "Redshift has no PostgreSQL arrays",
            matcher: |t, i| word_at(t, i, "array") && t[i + 5..].trim_start().starts_with('['),
        },
        Rule {
            name: "values_list",
            message: "VALUES lists as tables are not supported on Redshift",
            matcher: |t, i| word_at(t, i, "values") && t[..i].trim_end().ends_with('('),
        },
        Rule {
            name: "nulls_order",
            message: "NULLS FIRST/LAST is not supported in Redshift window functions; order by a CASE instead",
            matcher: |t, i| {
                word_at(t, i, "nulls") && matches!(next_word(&t[i + 5..]), "first" | "last")
            },
        },
        Rule {
            name: "oid_cast",
            message: "::regclass/::regproc/::oid casts are not supported on Redshift",
            matcher: |t, i| {
                t[i..].starts_with("::")
                    && ["regclass", "regproc", "oid"].contains(&next_word(&t[i + 2..]))
            },
        },
        Rule {
            name: "qualified_system_relation",
            message: "do not schema-qualify system relations (pg_catalog.stl_...): the test emulation cannot live in pg_catalog",
            matcher: |t, i| {
                t[i..].starts_with("pg_catalog.")
                    && ["stl_", "stv_", "svl_", "svv_", "svcs_", "sys_"]
                        .iter()
                        .any(|p| t[i + 11..].starts_with(p))
                    && (i == 0 || !is_ident(t.as_bytes()[i - 1]))
            },
        },
        Rule {
            name: "placeholder",
            message: "checks take no bind parameters ($1); Redshift infers their types differently",
            matcher: |t, i| {
                t.as_bytes()[i] == b'$'
                    && t.as_bytes().get(i + 1).is_some_and(|b| b.is_ascii_digit())
                    && (i == 0 || !is_ident(t.as_bytes()[i - 1]))
            },
        },
    ]
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// `word` starts at `i` with identifier boundaries on both sides (`t` is lower-case).
fn word_at(t: &str, i: usize, word: &str) -> bool {
    let b = t.as_bytes();
    t[i..].starts_with(word)
        && (i == 0 || !is_ident(b[i - 1]) && b[i - 1] != b'.')
        && b.get(i + word.len()).is_none_or(|&c| !is_ident(c))
}

/// If a call of `name` starts at `i`, the text after its `(`.
fn call_at<'a>(t: &'a str, i: usize, name: &str) -> Option<&'a str> {
    if !word_at(t, i, name) {
        return None;
    }
    t[i + name.len()..].trim_start().strip_prefix('(')
}

fn next_word(t: &str) -> &str {
    let t = t.trim_start();
    let end = t.bytes().position(|b| !is_ident(b)).unwrap_or(t.len());
    &t[..end]
}

/// Lower-cases the query and blanks comments and string literals (keeping line breaks and
/// byte offsets, and the quotes themselves, so `'second'` still looks quoted).
fn normalize(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
            out.extend_from_slice(b"  ");
            i += 2;
        } else if b[i] == b'\'' || b[i] == b'"' {
            let q = b[i];
            out.push(q);
            i += 1;
            while i < b.len() {
                if b[i] == q && b.get(i + 1) == Some(&q) {
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == q {
                    break;
                } else {
                    out.push(if b[i] == b'\n' {
                        b'\n'
                    } else if q == b'"' {
                        b[i].to_ascii_lowercase()
                    } else {
                        b'x'
                    });
                    i += 1;
                }
            }
            if i < b.len() {
                out.push(q);
                i += 1;
            }
        } else {
            out.push(b[i].to_ascii_lowercase());
            i += 1;
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes; multi-byte characters outside literals
    // are copied through unchanged (to_ascii_lowercase leaves them alone).
    String::from_utf8(out).unwrap_or_default()
}

/// Prefixes of Redshift's system relations (AWS: STL, STV, SVL, SVCS, SVV and SYS views).
const SYSTEM_PREFIXES: [&str; 6] = ["stl_", "stv_", "svl_", "svcs_", "svv_", "sys_"];

/// The Redshift system relations a query names (lower-case, sorted, each once), outside
/// comments and string literals: what the user must be able to read for the query to run.
pub fn system_relations(sql: &str) -> Vec<String> {
    let t = normalize(sql);
    let b = t.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !is_ident(b[i - 1]);
        if starts_word && SYSTEM_PREFIXES.iter().any(|p| t[i..].starts_with(p)) {
            let end = b[i..]
                .iter()
                .position(|&c| !is_ident(c))
                .map_or(b.len(), |n| i + n);
            let name = &t[i..end];
            // A quoted literal's text is blanked to x's, and a name right before `(` is a
            // function, not a relation.
            if !t[end..].trim_start().starts_with('(') && !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out.sort();
    out
}

/// Byte offset of a `;` that is followed by more SQL, if `sql` holds more than one statement.
///
/// A check runs in a `READ ONLY` transaction with the simple query protocol, which accepts
/// several statements in one string: `COMMIT; INSERT ...` or `SET TRANSACTION READ WRITE; ...`
/// would write. So a check must be one statement (a trailing `;` is fine). Semicolons inside
/// comments, quoted strings, quoted identifiers and dollar quotes do not count. Backslashes in
/// strings escape on Redshift but not on PostgreSQL, so the text is scanned both ways and
/// either finding counts.
pub fn second_statement(sql: &str) -> Option<usize> {
    [true, false]
        .into_iter()
        .filter_map(|escapes| second_statement_with(sql.as_bytes(), escapes))
        .min()
}

fn second_statement_with(b: &[u8], backslash_escapes: bool) -> Option<usize> {
    let mut i = 0;
    let mut semicolon = None;
    while i < b.len() {
        let c = b[i];
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i += 2;
            continue;
        }
        if semicolon.is_some() && !c.is_ascii_whitespace() && c != b';' {
            return semicolon;
        }
        match c {
            b';' => semicolon = semicolon.or(Some(i)),
            b'\'' | b'"' => {
                i += 1;
                while i < b.len() {
                    let escaped = c == b'\'' && backslash_escapes && b[i] == b'\\';
                    let doubled = b[i] == c && b.get(i + 1) == Some(&c);
                    if escaped || doubled {
                        i += 2;
                    } else if b[i] == c {
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if i == 0 || !is_ident(b[i - 1]) => {
                // $tag$ ... $tag$ (the tag may be empty); `$1` is a parameter, not a quote.
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'))
                    .map(|p| i + 1 + p);
                if let Some(end) = tag_end.filter(|&e| b[e] == b'$' && !b[i + 1].is_ascii_digit()) {
                    let tag = &b[i..=end];
                    match b[end + 1..].windows(tag.len()).position(|w| w == tag) {
                        Some(p) => i = end + 1 + p + tag.len() - 1,
                        None => i = b.len(),
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Every finding in `sql`, at most one per rule.
pub fn lint(sql: &str) -> Vec<Finding> {
    let t = normalize(sql);
    let mut found: Vec<Finding> = Vec::new();
    let line_of = |i: usize| t[..i].bytes().filter(|&b| b == b'\n').count();
    let mut push = |rule: &'static str, message: &'static str, i: usize| {
        if !found.iter().any(|f| f.rule == rule) {
            found.push(Finding {
                rule,
                message,
                line: line_of(i),
            });
        }
    };
    let rules = rules();
    for i in 0..t.len() {
        if !t.is_char_boundary(i) {
            continue;
        }
        for (name, word, message) in WORD_RULES {
            let _ = word;
            if word_at(&t, i, name) {
                push(name, message, i);
            }
        }
        for (name, _, message) in CALL_RULES {
            if call_at(&t, i, name).is_some() {
                push(name, message, i);
            }
        }
        for r in &rules {
            if (r.matcher)(&t, i) {
                push(r.name, r.message, i);
            }
        }
    }
    if system_relations(sql).is_empty() {
        found.retain(|f| !LEADER_ONLY.contains(&f.rule));
    }
    found.sort_by_key(|f| f.line);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(sql: &str) -> Vec<&'static str> {
        let mut r: Vec<_> = lint(sql).into_iter().map(|f| f.rule).collect();
        r.sort();
        r
    }

    #[test]
    fn portable_sql_is_clean() {
        let sql = "SELECT TRIM(db_name) AS db, COUNT(*)::float8 AS n, \
                   MAX(EXTRACT(EPOCH FROM GETDATE()) - EXTRACT(EPOCH FROM starttime))::float8 AS age \
                   FROM stv_recents WHERE status = 'Running' AND starttime > GETDATE() - INTERVAL '1 hour' \
                   AND DATEDIFF('second', starttime, GETDATE()) > 0 -- now() in a comment is fine \
                   GROUP BY 1 ORDER BY 2 DESC LIMIT 20";
        assert_eq!(lint(sql), vec![]);
        // Keywords inside strings or as parts of identifiers are fine.
        assert_eq!(
            lint("SELECT 'now() sysdate top 5' AS x, now_ms, topic, my_array FROM t"),
            vec![]
        );
    }

    #[test]
    fn every_rule_fires() {
        let cases: &[(&str, &str)] = &[
            ("SELECT SYSDATE", "sysdate"),
            ("SELECT now()", "now"),
            ("SELECT NOW ()", "now"),
            ("SELECT current_timestamp", "current_timestamp"),
            ("SELECT CURRENT_TIME", "current_time"),
            ("SELECT localtime", "localtime"),
            ("SELECT age(x)", "age"),
            ("SELECT isfinite(x)", "isfinite"),
            ("SELECT DATEDIFF(second, a, b)", "dateparts"),
            ("SELECT dateadd(day, 1, a)", "dateparts"),
            ("SELECT date_part(epoch, a)", "dateparts"),
            ("SELECT TOP 10 * FROM t", "top"),
            ("SELECT decode(a, 1, 'x')", "decode"),
            ("SELECT listagg(a, ',')", "listagg"),
            ("SELECT string_agg(a, ',')", "string_agg"),
            ("SELECT * FROM generate_series(1, 3)", "generate_series"),
            ("SELECT count(*) FILTER (WHERE a)", "filter"),
            ("SELECT DISTINCT ON (a) a FROM t", "distinct_on"),
            ("SELECT * FROM t, LATERAL (SELECT 1) x", "lateral"),
            ("SELECT ARRAY[1, 2]", "array_literal"),
            ("SELECT array(SELECT 1)", "array"),
            ("SELECT * FROM (VALUES (1)) v", "values_list"),
            (
                "SELECT row_number() OVER (ORDER BY a NULLS LAST)",
                "nulls_order",
            ),
            ("SELECT 't'::regclass", "oid_cast"),
            ("SELECT x::oid", "oid_cast"),
            (
                "SELECT * FROM pg_catalog.stl_query",
                "qualified_system_relation",
            ),
            ("SELECT * FROM t WHERE a = $1", "placeholder"),
            ("SELECT current_schema()", "current_schema"),
            (
                "SELECT has_table_privilege('t', 'select')",
                "has_table_privilege",
            ),
        ];
        for (sql, rule) in cases {
            // Leader-node-only rules fire once the query reads a compute-node relation.
            let sql = if LEADER_ONLY.contains(rule) {
                format!("{sql} -- with\n, stv_slices")
            } else {
                sql.to_string()
            };
            assert_eq!(rules_of(&sql), vec![*rule], "{sql}");
        }
    }

    #[test]
    fn one_statement_only() {
        for one in [
            "SELECT 1",
            "SELECT 1;",
            "SELECT 1 ;\n  -- done\n",
            "SELECT ';' AS a, \"x;y\" FROM t /* ; */",
            "SELECT 'it''s; fine'",
            "SELECT $$;$$, $q$ ; $q$ AS v",
            "SELECT 1; /* trailing */ ;",
        ] {
            assert_eq!(second_statement(one), None, "{one}");
        }
        for two in [
            "SELECT 1; SELECT 2",
            "SET TRANSACTION READ WRITE; INSERT INTO t VALUES (1); SELECT 1",
            "COMMIT; INSERT INTO t VALUES (1)",
            "SELECT 1 -- x\n; DELETE FROM t",
            // PostgreSQL ends the string at the backslash; Redshift would not.
            "SELECT 'a\\'; COMMIT; INSERT INTO t VALUES (1); SELECT '1' AS v --'",
        ] {
            assert!(second_statement(two).is_some(), "{two}");
        }
        assert_eq!(second_statement("SELECT 1; SELECT 2"), Some(8));
    }

    #[test]
    fn reports_the_line() {
        let f = lint("SELECT a,\n  b\nFROM stl_query\nWHERE c < now()");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].line, 3);
    }

    #[test]
    fn system_relations_are_found_outside_comments_and_strings() {
        let sql = "SELECT s.x FROM stv_partitions p -- stl_not_this\n\
                   JOIN pg_catalog.SYS_QUERY_HISTORY h ON 'stl_nor_this' = h.y\n\
                   JOIN stv_partitions q ON true /* svv_nope */ WHERE my_stl_x = 1 AND sys_fn(1) > 0";
        assert_eq!(
            system_relations(sql),
            ["stv_partitions", "sys_query_history"]
        );
        assert!(system_relations("SELECT 1 FROM pg_stat_activity").is_empty());
    }

    #[test]
    fn leader_only_functions_are_fine_on_catalogs_alone() {
        let catalog = "SELECT MAX(AGE(datfrozenxid))::float8 AS v FROM pg_database";
        assert!(rules_of(catalog).is_empty(), "{:?}", rules_of(catalog));
        let mixed = "SELECT MAX(AGE(d.datfrozenxid))::float8 AS v FROM pg_database d, stv_slices s";
        assert_eq!(rules_of(mixed), ["age"]);
        // Rules that are not about the leader node still apply.
        assert_eq!(
            rules_of("SELECT string_agg(datname, ',') FROM pg_database"),
            ["string_agg"]
        );
    }
}
