//! Content hashes that ignore formatting: objects are hashed with their keys sorted, so moving
//! keys around in a YAML file is not a change, while any change of value (or of array order) is.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 of the canonical JSON form of `value`, hex-encoded.
pub fn content_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    feed(value, &mut hasher);
    hex::encode(hasher.finalize())
}

/// [`content_hash`] of an object, without building a `Value` around it.
pub fn content_hash_object(map: &serde_json::Map<String, Value>) -> String {
    let mut hasher = Sha256::new();
    feed_object(map, &mut hasher);
    hex::encode(hasher.finalize())
}

fn feed_object(map: &serde_json::Map<String, Value>, hasher: &mut Sha256) {
    // Sorting the entries, not the keys, spares a hash lookup per key.
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    hasher.update(b"{");
    for (key, value) in entries {
        feed_str(key, hasher);
        hasher.update(b":");
        feed(value, hasher);
        hasher.update(b",");
    }
    hasher.update(b"}");
}

fn feed(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => feed_object(map, hasher),
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                feed(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        Value::String(s) => feed_str(s, hasher),
        Value::Null => hasher.update(b"null"),
        Value::Bool(true) => hasher.update(b"true"),
        Value::Bool(false) => hasher.update(b"false"),
        // Numbers as their JSON text, written straight into the hasher.
        Value::Number(n) => {
            let _ = std::fmt::Write::write_fmt(&mut HashWriter(hasher), format_args!("{n}"));
        }
    }
}

/// Feeds formatted text to the hasher without an intermediate string.
struct HashWriter<'h>(&'h mut Sha256);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

fn feed_str(s: &str, hasher: &mut Sha256) {
    hasher.update(b"\"");
    hasher.update((s.len() as u64).to_le_bytes());
    hasher.update(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_but_values_do() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b = json!({"b": {"y": "z", "x": [1, 2]}, "a": 1});
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"a": 1, "b": {"x": [2, 1], "y": "z"}}))
        );
        assert_ne!(content_hash(&json!({"a": "1"})), content_hash(&json!({"a": 1})));
    }

    /// The canonical form as first defined (hashes are persisted in logs and compared on every
    /// re-import, so it must never change): scalars as their JSON text, keys sorted.
    fn reference(value: &Value, hasher: &mut Sha256) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                hasher.update(b"{");
                for key in keys {
                    feed_str(key, hasher);
                    hasher.update(b":");
                    reference(&map[key], hasher);
                    hasher.update(b",");
                }
                hasher.update(b"}");
            }
            Value::Array(items) => {
                hasher.update(b"[");
                for item in items {
                    reference(item, hasher);
                    hasher.update(b",");
                }
                hasher.update(b"]");
            }
            Value::String(s) => feed_str(s, hasher),
            other => hasher.update(other.to_string().as_bytes()),
        }
    }

    #[test]
    fn the_canonical_form_does_not_change() {
        let value = json!({
            "z": [1, -2, 3.5, 1e300, -0.25, 18446744073709551615u64, true, false, null],
            "a": {"nested": {"b": "x\"y", "a": ""}, "": [[], {}]},
            "é": "ü",
        });
        let mut hasher = Sha256::new();
        reference(&value, &mut hasher);
        let expected = hex::encode(hasher.finalize());
        assert_eq!(content_hash(&value), expected);
        assert_eq!(content_hash_object(value.as_object().unwrap()), expected);
    }
}
