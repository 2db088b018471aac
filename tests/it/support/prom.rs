//! A small parser for the Prometheus text exposition format (0.0.4), enough to look up samples by
//! name and labels, and to read `# HELP` / `# TYPE` lines. Malformed input is an error, so a test
//! never silently reads garbage as "series absent".

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.name)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        write!(f, "}} {}", self.value)
    }
}

/// A parsed scrape.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
    pub help: HashMap<String, String>,
    pub types: HashMap<String, String>,
}

impl Metrics {
    /// Parses a whole scrape body.
    pub fn parse(text: &str) -> Result<Metrics, String> {
        let mut m = Metrics {
            text: text.to_owned(),
            ..Metrics::default()
        };
        for (no, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let rest = rest.trim_start();
                if let Some(rest) = rest.strip_prefix("HELP ") {
                    let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                    m.help.insert(name.to_owned(), unescape_help(help));
                } else if let Some(rest) = rest.strip_prefix("TYPE ") {
                    let (name, ty) = rest
                        .split_once(' ')
                        .ok_or_else(|| format!("line {}: TYPE without a type: {line}", no + 1))?;
                    m.types.insert(name.to_owned(), ty.trim().to_owned());
                }
                continue;
            }
            let sample = parse_sample(line).map_err(|e| format!("line {}: {e}: {line}", no + 1))?;
            m.samples.push(sample);
        }
        Ok(m)
    }

    /// The value of the sample with exactly this name and label set.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Every sample with this name whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// Every sample whose name starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .collect()
    }

    /// Whether the metric family `name` appears at all (a sample, or a TYPE line).
    pub fn has_family(&self, name: &str) -> bool {
        self.types.contains_key(name) || self.samples.iter().any(|s| s.name == name)
    }

    /// Self-metric shorthand: `{name}{target="main",check=CHECK}` (exact label set).
    pub fn check_value(&self, name: &str, check: &str) -> Option<f64> {
        self.get(name, &[("target", "main"), ("check", check)])
    }

    /// Self-metric shorthand: `{name}{target="main",check=CHECK,KEY=VAL}` (exact label set).
    pub fn check_value_with(&self, name: &str, check: &str, key: &str, val: &str) -> Option<f64> {
        self.get(name, &[("target", "main"), ("check", check), (key, val)])
    }

    /// Panics, showing the family's lines, unless the counter
    /// `{name}{target="main",check=CHECK,KEY=VAL}` is at least 1.
    pub fn assert_counted(&self, name: &str, check: &str, key: &str, val: &str) {
        assert!(
            self.check_value_with(name, check, key, val).unwrap_or(0.0) >= 1.0,
            "{name}{{check={check:?},{key}={val:?}}} not counted:\n{}",
            self.lines_with(name)
        );
    }

    /// The scrape lines that mention `needle` (for assertion messages).
    pub fn lines_with(&self, needle: &str) -> String {
        self.text
            .lines()
            .filter(|l| l.contains(needle))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
    {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let consumed;
        loop {
            // skip blanks and commas
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c == ' ' {
                    chars.next();
                } else {
                    break;
                }
            }
            match chars.peek() {
                Some(&(i, '}')) => {
                    consumed = i + 1;
                    break;
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            let key = key.trim().to_owned();
            if key.is_empty() {
                return Err("empty label name".into());
            }
            match chars.next() {
                Some((_, '"')) => {}
                _ => return Err(format!("label {key} value is not quoted")),
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, o)) => return Err(format!("bad escape \\{o}")),
                        None => return Err("dangling escape".into()),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err("unterminated label value".into());
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("duplicate label {key}"));
            }
        }
        rest = &after[consumed..];
    }
    let mut parts = rest.split_whitespace();
    let value = parts.next().ok_or("no value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse::<f64>()
            .map_err(|e| format!("bad value {v:?}: {e}"))?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("bad timestamp {ts:?}: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing garbage".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Runs `promtool check metrics` on a scrape; panics with its report (and the scrape) unless
/// promtool exits 0 and prints nothing: lint warnings count as failures.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package `prometheus`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics ({}):\n{report}\n--- scraped ---\n{text}",
        out.status
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_escapes_and_special_values() {
        let text = "# HELP a_b Some \\\\ help\n# TYPE a_b gauge\na_b{x=\"1,2\",y=\"q\\\"z\\n\"} 3.5\nc 1 1700000000\nd{} NaN\ne{k=\"v\",} +Inf\n";
        let m = Metrics::parse(text).unwrap();
        assert_eq!(m.get("a_b", &[("x", "1,2"), ("y", "q\"z\n")]), Some(3.5));
        assert_eq!(m.get("c", &[]), Some(1.0));
        assert!(m.get("d", &[]).unwrap().is_nan());
        assert_eq!(m.get("e", &[("k", "v")]), Some(f64::INFINITY));
        assert_eq!(m.help["a_b"], "Some \\ help");
        assert_eq!(m.types["a_b"], "gauge");
        assert!(Metrics::parse("x{a=b} 1").is_err());
        assert!(Metrics::parse("x 1 2 3").is_err());
    }
}
