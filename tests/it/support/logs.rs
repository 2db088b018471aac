//! The daemon's log lines as the tests read them: one JSON object per line (the daemon runs with
//! `--log.format json`), parsed with `serde_json`.
//!
//! Owns looking up string fields in a line. Collecting the lines from the process is
//! [`super::daemon`]'s job.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One log line from the daemon's stderr (JSON when started with `--log.format json`).
#[derive(Clone, Debug)]
pub struct LogLine(pub String);

impl LogLine {
    /// Every string value of `key` in the line, in order, at any depth (the current span's
    /// fields are a nested object), and every time the key occurs: with `flatten_event` an
    /// event field can share its name with one of tracing's own keys (e.g. `target`), so
    /// a key may repeat, which a map type would collapse to one value. A line that is not
    /// JSON (e.g. a panic message) has no fields.
    pub fn fields(&self, key: &str) -> Vec<String> {
        match serde_json::from_str::<Node>(&self.0) {
            Ok(Node::Pairs(pairs)) => pairs
                .into_iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The first string value of `key`.
    pub fn field(&self, key: &str) -> Option<String> {
        self.fields(key).into_iter().next()
    }

    /// Whether some `key` has the string value `value`.
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.fields(key).iter().any(|v| v == value)
    }

    pub fn message(&self) -> Option<String> {
        self.field("message")
    }

    pub fn is_message(&self, message: &str) -> bool {
        self.has("message", message)
    }
}

/// A JSON value reduced to what [`LogLine::fields`] looks up: a string, or the (key, string
/// value) pairs of an object or array and everything nested in it, in document order.
enum Node {
    Str(String),
    Pairs(Vec<(String, String)>),
    /// Numbers, booleans and null: no test looks them up as strings.
    Other,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut pairs = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            if let Node::Pairs(p) = node {
                pairs.extend(p);
            }
        }
        Ok(Node::Pairs(pairs))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match map.next_value::<Node>()? {
                Node::Str(v) => pairs.push((key, v)),
                Node::Pairs(p) => pairs.extend(p),
                Node::Other => {}
            }
        }
        Ok(Node::Pairs(pairs))
    }
}

#[test]
fn log_fields_keep_repeated_and_nested_keys_and_unescape() {
    let line = LogLine(
        r#"{"timestamp":"t","level":"WARN","message":"a \"quoted\"\nline","target":"main","n":3,"target":"redshift_exporter::check","span":{"check":"c1","ok":true},"list":[{"check":"c2"}]}"#
            .to_owned(),
    );
    assert_eq!(line.fields("target"), ["main", "redshift_exporter::check"]);
    assert_eq!(line.fields("check"), ["c1", "c2"]);
    assert_eq!(line.message().as_deref(), Some("a \"quoted\"\nline"));
    assert!(line.has("level", "WARN"));
    assert_eq!(line.field("n"), None, "numbers are not string fields");
    assert!(
        LogLine("thread panicked at src/x.rs".into())
            .fields("message")
            .is_empty()
    );
}
