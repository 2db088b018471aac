//! `${VAR}` / `${VAR:-default}` / `$${` expansion of string values.
//!
//! A pure function of the text and a lookup; reporting unset variables with their location is
//! the [`super::Validator`]'s job.

/// Expands `${VAR}` and `${VAR:-default}`; `$${` stands for a literal `${`.
/// Returns the result and the names of unset variables without a default.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(s.len());
    let mut missing = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            match tail.find('}') {
                Some(end) => {
                    let inner = &tail[..end];
                    let (name, default) = match inner.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (inner, None),
                    };
                    match (
                        env(name).filter(|v| !v.is_empty() || default.is_none()),
                        default,
                    ) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => {
                            if !missing.iter().any(|m| m == name) {
                                missing.push(name.to_string());
                            }
                        }
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    out.push_str(after);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    (out, missing)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The environment the configuration tests expand `${VAR}` in.
    pub(in crate::config) fn env(k: &str) -> Option<String> {
        match k {
            "HOST" => Some("db.example".into()),
            "PW" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_expansion() {
        let e = |s: &str| expand_env(s, &env);
        assert_eq!(e("a ${HOST} b"), ("a db.example b".into(), vec![]));
        assert_eq!(e("${MISSING:-dflt}"), ("dflt".into(), vec![]));
        assert_eq!(e("${EMPTY:-dflt}"), ("dflt".into(), vec![]));
        assert_eq!(e("${EMPTY}"), ("".into(), vec![]));
        assert_eq!(e("$${HOST} $1 $"), ("${HOST} $1 $".into(), vec![]));
        assert_eq!(e("${A}${B}${A}"), ("".into(), vec!["A".into(), "B".into()]));
    }
}
