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
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    hasher.update(b"{");
    for key in keys {
        feed_str(key, hasher);
        hasher.update(b":");
        feed(&map[key], hasher);
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
        other => hasher.update(other.to_string().as_bytes()),
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
}
