//! `$text`, `$json` and `$yaml` placeholders (Backstage's `PlaceholderProcessor`).
//!
//! An object with exactly one key, `$text`, `$json` or `$yaml`, whose value is a string, is
//! replaced by the content that string points at: text, parsed JSON, or a parsed single YAML
//! document. Objects with other `$` keys (such as JSON Schema's `$ref`) are left alone. The
//! replacement is not searched for further placeholders.
//!
//! Reading is the caller's job: [`targets`] lists what must be read, the caller reads it through
//! whatever allowlisted reader it has, and [`substitute`] puts the results in.

use std::collections::HashMap;

use callboard_model::{Diagnostic, FieldPath, Rule};
use serde_json::{Map, Value};

use crate::location::{Base, Target, resolve_placeholder};
use crate::yaml::{Limits, read_stream};

/// The three placeholder kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `$text`: the content as a string.
    Text,
    /// `$json`: the content parsed as JSON.
    Json,
    /// `$yaml`: the content parsed as one YAML document.
    Yaml,
}

impl Kind {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "$text" => Some(Kind::Text),
            "$json" => Some(Kind::Json),
            "$yaml" => Some(Kind::Yaml),
            _ => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Text => "$text",
            Kind::Json => "$json",
            Kind::Yaml => "$yaml",
        }
    }
}

/// A failed read, as the reader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// True when the allowlist refused the read (rather than the read failing).
    pub not_allowed: bool,
    /// True when the target does not exist.
    pub not_found: bool,
    /// What happened.
    pub message: String,
}

impl ReadError {
    /// The allowlist refused the read.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            not_allowed: true,
            not_found: false,
            message: message.into(),
        }
    }

    /// The target does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            not_allowed: false,
            not_found: true,
            message: message.into(),
        }
    }

    /// The read failed otherwise.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            not_allowed: false,
            not_found: false,
            message: message.into(),
        }
    }
}

/// The outcome of each read the caller performed.
pub type Reads = HashMap<Target, Result<Vec<u8>, ReadError>>;

fn placeholder(map: &Map<String, Value>) -> Option<(Kind, &str)> {
    if map.len() != 1 {
        return None;
    }
    let (key, value) = map.iter().next()?;
    Some((Kind::from_key(key)?, value.as_str()?))
}

/// Visits every placeholder with its path (without descending into replaced values). The path
/// is kept as borrowed segments and only turned into a [`FieldPath`] for a placeholder found.
fn visit<'v>(value: &'v Value, trail: &mut Vec<Step<'v>>, found: &mut Vec<(FieldPath, Kind, &'v str)>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                trail.push(Step::Index(i));
                visit(item, trail, found);
                trail.pop();
            }
        }
        Value::Object(map) => {
            if let Some((kind, reference)) = placeholder(map) {
                let mut path = FieldPath::root();
                for step in trail.iter() {
                    path = match step {
                        Step::Key(k) => path.key(k),
                        Step::Index(i) => path.index(*i),
                    };
                }
                found.push((path, kind, reference));
            } else if !map.keys().any(|k| k.starts_with('$')) {
                for (k, v) in map {
                    trail.push(Step::Key(k));
                    visit(v, trail, found);
                    trail.pop();
                }
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone, Copy)]
enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

fn find(document: &Value) -> Vec<(FieldPath, Kind, &str)> {
    let mut found = Vec::new();
    visit(document, &mut Vec::new(), &mut found);
    found
}

/// What must be read to resolve the document's placeholders (references that cannot be resolved
/// are reported by [`substitute`]).
pub fn targets(document: &Value, base: &Base) -> Vec<Target> {
    let found = find(document);
    let mut out: Vec<Target> = found
        .into_iter()
        .filter_map(|(_, _, r)| resolve_placeholder(r, base).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Replaces every placeholder with the content read for it.
pub fn substitute(document: Value, base: &Base, reads: &Reads) -> Result<Value, Diagnostic> {
    let found = find(&document);
    if found.is_empty() {
        return Ok(document);
    }
    let mut replacements = Vec::with_capacity(found.len());
    for (path, kind, reference) in found {
        let fail = |rule: Rule, message: String| Diagnostic::new(rule, path.clone(), format!("{path}: {message}"));
        let target = resolve_placeholder(reference, base)
            .map_err(|e| fail(Rule::Placeholder, format!("{} could not be resolved: {e}", kind.key())))?;
        let bytes = match reads.get(&target) {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => {
                let rule = if e.not_allowed {
                    Rule::NotAllowed
                } else {
                    Rule::Placeholder
                };
                return Err(fail(
                    rule,
                    format!("{} could not read {target}: {}", kind.key(), e.message),
                ));
            }
            None => {
                return Err(fail(
                    Rule::Placeholder,
                    format!("{} could not read {target}: it was not read", kind.key()),
                ));
            }
        };
        let text = String::from_utf8_lossy(bytes);
        let value = match kind {
            Kind::Text => Value::String(text.into_owned()),
            Kind::Json => serde_json::from_str(&text).map_err(|e| {
                fail(
                    Rule::Placeholder,
                    format!("$json failed to parse JSON data at {target}: {e}"),
                )
            })?,
            Kind::Yaml => {
                parse_single_yaml(bytes).map_err(|m| fail(Rule::Placeholder, format!("$yaml {m} at {target}")))?
            }
        };
        replacements.push((path, value));
    }
    let mut document = document;
    for (path, value) in replacements {
        if let Some(slot) = pointer_mut(&mut document, &path) {
            *slot = value;
        }
    }
    Ok(document)
}

fn parse_single_yaml(bytes: &[u8]) -> Result<Value, String> {
    let (documents, _) = read_stream(bytes, &Limits::default());
    if documents.len() != 1 {
        return Err(format!(
            "expected exactly one document of data, found {}",
            documents.len()
        ));
    }
    match documents.into_iter().next().map(|d| d.content) {
        Some(Ok(value)) => Ok(value.unwrap_or(Value::Null)),
        Some(Err(e)) => Err(format!("found an error in the data: {e}")),
        None => Err("found no document".into()),
    }
}

fn pointer_mut<'v>(value: &'v mut Value, path: &FieldPath) -> Option<&'v mut Value> {
    let mut current = value;
    for segment in path.segments() {
        current = match segment {
            callboard_model::Segment::Key(k) => current.get_mut(k.as_str())?,
            callboard_model::Segment::Index(i) => current.get_mut(*i)?,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use url::Url;

    #[test]
    fn finds_and_substitutes() {
        let base = Base::Url(Url::parse("https://github.com/o/r/blob/main/catalog-info.yaml").unwrap());
        let doc = json!({"spec": {"definition": {"$text": "./api.yaml"}, "schema": {"$ref": "#/x", "$text": "no"}, "list": [{"$json": "https://github.com/o/r/blob/main/a.json"}]}});
        let t = targets(&doc, &base);
        assert_eq!(t.len(), 2);
        let mut reads = Reads::new();
        reads.insert(t[0].clone(), Ok(br#"{"a": 1}"#.to_vec()));
        reads.insert(t[1].clone(), Ok(b"openapi: 3".to_vec()));
        let out = substitute(doc, &base, &reads).unwrap();
        assert_eq!(out["spec"]["definition"], json!("openapi: 3"));
        assert_eq!(out["spec"]["list"][0], json!({"a": 1}));
        assert_eq!(out["spec"]["schema"], json!({"$ref": "#/x", "$text": "no"}));
    }

    #[test]
    fn refused_reads_name_the_field() {
        let base = Base::Url(Url::parse("https://github.com/o/r/blob/main/c.yaml").unwrap());
        let doc = json!({"spec": {"definition": {"$text": "https://example.com/x"}}});
        let mut reads = Reads::new();
        for t in targets(&doc, &base) {
            reads.insert(t, Err(ReadError::refused("host example.com is not allowed")));
        }
        let e = substitute(doc, &base, &reads).unwrap_err();
        assert_eq!(e.rule, Rule::NotAllowed);
        assert_eq!(e.path.to_string(), "spec.definition");
    }
}
