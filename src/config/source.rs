//! Source positions: byte offset → line ([`LineIndex`]), the best-effort line of an unknown
//! key, and serde_ignored's paths shown as TOML paths ([`display_path`]).
//!
//! It knows the file only as text; it does not parse TOML.

/// serde_ignored reports `checks.2.intervl`; show it as `checks[2].intervl`.
pub(super) fn display_path(p: &str) -> String {
    let mut out = String::new();
    // `?` marks an Option and `$__serde_spanned_private_value` a Spanned: not keys.
    for part in p
        .split('.')
        .filter(|s| *s != "?" && !s.starts_with("$__serde_spanned"))
    {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Byte offset → line number.
pub(super) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Best-effort line of an unknown key: the first line at or after its table that
    /// starts with the key's last segment followed by `=`.
    pub(super) fn find_key(&self, text: &str, path: &str) -> Option<usize> {
        let key = path.rsplit(['.', ']']).next()?.trim();
        if key.is_empty() {
            return None;
        }
        // Narrow to the right [[checks]] entry or [table] when the path says which.
        let mut from = 0;
        if let Some(rest) = path.strip_prefix("checks[") {
            let n: usize = rest.split(']').next()?.parse().ok()?;
            let mut idx = text.match_indices("[[checks]]").map(|(i, _)| i);
            from = idx.nth(n)?;
        } else if let Some((table, _)) = path.rsplit_once('.') {
            if let Some(i) = text.find(&format!("[{table}]")) {
                from = i;
            }
        }
        let mut offset = from;
        for l in text[from..].split_inclusive('\n') {
            let t = l.trim_start();
            if let Some(after) = t.strip_prefix(key) {
                if after.trim_start().starts_with('=') {
                    return Some(self.line(offset));
                }
            }
            offset += l.len();
        }
        None
    }
}
