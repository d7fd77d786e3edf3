//! A small structural checker with JSON Schema semantics (as Backstage's ajv applies them): it
//! reads fields out of a JSON tree, records a [`Diagnostic`] for every mismatch, and hands back
//! typed values so callers can build the typed model in the same pass. Paths are [`Loc`]s, so
//! the common case (no error) allocates nothing for them.

use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostic, Rule};
use crate::path::Loc;

/// The JSON type name used in messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Collects diagnostics while fields are read.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Checker {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    pub(crate) fn wrong_type(&mut self, at: Loc<'_>, expected: &str, found: &Value) {
        let path = at.to_path();
        let message = format!("{path} must be {expected}, found {}", type_name(found));
        self.push(Diagnostic::new(Rule::Type, path, message));
    }

    fn missing(&mut self, parent: Loc<'_>, key: &str) {
        let field = Loc::Key(&parent, key);
        self.push(Diagnostic::new(
            Rule::Required,
            parent.to_path(),
            format!("missing required field {field}"),
        ));
    }

    /// `value` must be an object.
    pub(crate) fn as_object<'v>(&mut self, value: &'v Value, at: Loc<'_>) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.wrong_type(at, "an object", other);
                None
            }
        }
    }

    /// A field that must be present.
    pub(crate) fn required<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        parent: Loc<'_>,
    ) -> Option<&'v Value> {
        let value = object.get(key);
        if value.is_none() {
            self.missing(parent, key);
        }
        value
    }

    fn field<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        parent: Loc<'_>,
        required: bool,
    ) -> Option<&'v Value> {
        if required {
            self.required(object, key, parent)
        } else {
            object.get(key)
        }
    }

    /// A string field. `min1` is JSON Schema's `minLength: 1`.
    pub(crate) fn string<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        parent: Loc<'_>,
        required: bool,
        min1: bool,
    ) -> Option<&'v str> {
        let value = self.field(object, key, parent, required)?;
        self.string_value(value, Loc::Key(&parent, key), min1)
    }

    pub(crate) fn string_value<'v>(&mut self, value: &'v Value, at: Loc<'_>, min1: bool) -> Option<&'v str> {
        match value {
            Value::String(s) => {
                if min1 && s.is_empty() {
                    let path = at.to_path();
                    let message = format!("{path} must not be empty");
                    self.push(Diagnostic::new(Rule::MinLength, path, message));
                    None
                } else {
                    Some(s)
                }
            }
            other => {
                self.wrong_type(at, "a string", other);
                None
            }
        }
    }

    /// An object field.
    pub(crate) fn object<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        parent: Loc<'_>,
        required: bool,
    ) -> Option<&'v Map<String, Value>> {
        let value = self.field(object, key, parent, required)?;
        self.as_object(value, Loc::Key(&parent, key))
    }

    /// An array of strings; `item_min1` applies `minLength: 1` to the items.
    pub(crate) fn string_array<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        parent: Loc<'_>,
        required: bool,
        item_min1: bool,
    ) -> Option<Vec<&'v str>> {
        let value = self.field(object, key, parent, required)?;
        let at = Loc::Key(&parent, key);
        let Value::Array(items) = value else {
            self.wrong_type(at, "an array", value);
            return None;
        };
        let before = self.diagnostics.len();
        let mut strings = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string_value(item, Loc::Index(&at, i), item_min1) {
                strings.push(s);
            }
        }
        (self.diagnostics.len() == before).then_some(strings)
    }

    /// An array field of any items.
    pub(crate) fn array<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        parent: Loc<'_>,
        required: bool,
    ) -> Option<&'v Vec<Value>> {
        let value = self.field(object, key, parent, required)?;
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.wrong_type(Loc::Key(&parent, key), "an array", other);
                None
            }
        }
    }

    /// A string field restricted to a set of values.
    pub(crate) fn enumerated<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        parent: Loc<'_>,
        allowed: &[&str],
    ) -> Option<&'v str> {
        let value = object.get(key)?;
        match value {
            Value::String(s) if allowed.contains(&s.as_str()) => Some(s),
            other => {
                let path = Loc::Key(&parent, key).to_path();
                let list = allowed.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
                let message = format!("{path} must be one of {list}, found {other}");
                self.push(Diagnostic::new(Rule::Enum, path, message));
                None
            }
        }
    }

    /// An object whose every value must be a string (labels, annotations).
    pub(crate) fn string_map<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        parent: Loc<'_>,
    ) -> Option<Vec<(&'v str, &'v str)>> {
        let map = self.object(object, key, parent, false)?;
        let at = Loc::Key(&parent, key);
        let before = self.diagnostics.len();
        let mut pairs = Vec::with_capacity(map.len());
        for (k, v) in map {
            match v {
                Value::String(s) => pairs.push((k.as_str(), s.as_str())),
                // JSON Schema's `patternProperties: {"^.+$": ...}` does not constrain the empty key.
                _ if k.is_empty() => {}
                other => self.wrong_type(Loc::Key(&at, k), "a string (quote numbers and booleans)", other),
            }
        }
        (self.diagnostics.len() == before).then_some(pairs)
    }
}
