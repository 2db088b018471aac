//! Name rules: which strings may be check names, target names, metric names and label names.
//!
//! Predicates only; the messages that explain a violation are written where the rule is
//! applied ([`super::target`], [`super::check`], [`super::validate`]).

/// `[a-z_][a-z0-9_]*`: check names become metric name parts and folder names.
pub fn is_check_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | '_')) && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Target names are label values and folder names: `[a-z_][a-z0-9_-]*` keeps both safe.
pub fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | '_'))
        && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

/// Prometheus metric name rule.
pub fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | 'A'..='Z' | '_' | ':'))
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus label name rule (names starting with `__` are reserved).
pub fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | 'A'..='Z' | '_'))
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_check_name("long_queries"));
        assert!(!is_check_name("Long"));
        assert!(!is_check_name("../x"));
        assert!(!is_identifier("a/b"));
        assert!(is_label_name("user_name"));
        assert!(!is_label_name("__x"));
        assert!(!is_label_name("a-b"));
    }
}
