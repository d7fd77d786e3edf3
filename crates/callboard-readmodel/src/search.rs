//! Backstage's search semantics, which drive filters and facets (`buildEntitySearch`): the entity
//! is flattened into `(key, value)` pairs — object paths joined by `.`, arrays traversed without
//! an index, each string array item also giving `<path>.<item> = true` — keys and values
//! lowercased; keys longer than 200 characters dropped; values longer than 200 characters kept
//! for existence only. `relations` and `status` are skipped (relation filters are answered from
//! the relation rows). Plus the text that full-text search matches.

use serde_json::Value;

const MAX: usize = 200;

/// One flattened pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    /// Lowercased dotted key.
    pub key: String,
    /// `(lowercased, original)` value, or `None` for existence only.
    pub value: Option<(String, String)>,
}

/// Flattens an entity document.
pub fn pairs(entity: &Value) -> Vec<Pair> {
    let mut out = Vec::new();
    if let Value::Object(root) = entity {
        for (key, value) in root {
            if matches!(key.as_str(), "relations" | "status" | "attachments") {
                continue;
            }
            walk(value, key, &mut out);
        }
    }
    if entity.pointer("/metadata/namespace").is_none() {
        push(&mut out, "metadata.namespace", Some("default"));
    }
    out.sort();
    out.dedup();
    out
}

fn push(out: &mut Vec<Pair>, key: &str, value: Option<&str>) {
    if key.len() > MAX {
        return;
    }
    let value = value
        .filter(|v| v.len() <= MAX)
        .map(|v| (v.to_lowercase(), v.to_owned()));
    out.push(Pair {
        key: key.to_lowercase(),
        value,
    });
}

fn walk(value: &Value, path: &str, out: &mut Vec<Pair>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                walk(child, &format!("{path}.{key}"), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Value::String(s) = item {
                    push(out, &format!("{path}.{s}"), Some("true"));
                }
                walk(item, path, out);
            }
        }
        Value::String(s) => push(out, path, Some(s)),
        Value::Bool(b) => push(out, path, Some(if *b { "true" } else { "false" })),
        Value::Number(n) => push(out, path, Some(&n.to_string())),
        Value::Null => push(out, path, None),
    }
}

/// The filter keys stored for an entity: `key` for every pair, `key=value` for pairs with a value.
pub fn keys(pairs: &[Pair]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(pairs.len() * 2);
    for pair in pairs {
        out.push(pair.key.clone());
        if let Some((lower, _)) = &pair.value {
            out.push(format!("{}={lower}", pair.key));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A filter key as one word an inverted index can hold exactly (`k` and 32 hex digits): the
/// 128-bit FNV-1a hash of the key. The SQLite read model keeps these in its full-text index, where
/// a filter is one index lookup instead of a scan; at 128 bits, collisions between distinct keys
/// are not a practical concern (about 10^-20 for a million keys).
pub fn key_token(key: &str) -> String {
    format!("k{:032x}", fnv1a_128(key))
}

/// A filter key as a 64-bit integer (the 128-bit FNV-1a hash, folded): what the PostgreSQL read
/// model stores in its GIN-indexed `bigint[]`, a third the size of the keys as text and faster to
/// index. At 64 bits, the chance that any two of a million distinct keys collide is about 10^-8.
pub fn key_hash64(key: &str) -> i64 {
    let hash = fnv1a_128(key);
    ((hash >> 64) as u64 ^ hash as u64) as i64
}

fn fnv1a_128(key: &str) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for byte in key.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// Annotations whose values full-text search also matches.
pub const SEARCHED_ANNOTATIONS: [&str; 3] = [
    "github.com/project-slug",
    "gitlab.com/project-slug",
    "backstage.io/techdocs-ref",
];

/// The text full-text search matches: name, title, description, tags, kind, type and the
/// searched annotations.
pub fn text(entity: &Value) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for pointer in [
        "/kind",
        "/metadata/name",
        "/metadata/title",
        "/metadata/description",
        "/spec/type",
    ] {
        if let Some(s) = entity.pointer(pointer).and_then(Value::as_str) {
            parts.push(s);
        }
    }
    if let Some(tags) = entity.pointer("/metadata/tags").and_then(Value::as_array) {
        parts.extend(tags.iter().filter_map(Value::as_str));
    }
    if let Some(annotations) = entity.pointer("/metadata/annotations").and_then(Value::as_object) {
        for key in SEARCHED_ANNOTATIONS {
            if let Some(s) = annotations.get(key).and_then(Value::as_str) {
                parts.push(s);
            }
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_like_backstage() {
        let entity = json!({
            "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
            "metadata": {"name": "Payments", "tags": ["Java", "web"], "annotations": {"backstage.io/x": "Y"}, "description": null},
            "spec": {"type": "service", "owner": "team-a", "long": "x".repeat(201)},
            "relations": [{"type": "ownedBy", "targetRef": "group:default/team-a"}],
        });
        let p = keys(&pairs(&entity));
        for expected in [
            "kind=component",
            "metadata.name=payments",
            "metadata.tags=java",
            "metadata.tags.java=true",
            "metadata.tags.java",
            "metadata.annotations.backstage.io/x=y",
            "metadata.namespace=default",
            "metadata.description",
            "spec.long",
        ] {
            assert!(p.contains(&expected.to_owned()), "{expected} in {p:?}");
        }
        assert!(!p.iter().any(|k| k.starts_with("relations")));
        assert!(
            !p.iter().any(|k| k.starts_with("spec.long=")),
            "long values are existence-only"
        );
        assert_eq!(text(&entity), "Component Payments service Java web");
    }

    #[test]
    fn key_tokens_are_stable_words() {
        // Stored in read models: a change of hash would silently break filters on old rows.
        assert_eq!(key_token(""), "k6c62272e07bb014262b821756295c58d");
        assert_eq!(key_token("kind=component"), key_token("kind=component"));
        assert_ne!(key_token("kind=component"), key_token("kind=api"));
        assert!(
            key_token("spec.owner=group:default/team-a")
                .chars()
                .skip(1)
                .all(|c| c.is_ascii_hexdigit())
        );
    }
}
