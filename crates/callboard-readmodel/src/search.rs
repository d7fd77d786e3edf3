//! Backstage's search semantics, which drive filters and facets (`buildEntitySearch`): the entity
//! is flattened into `(key, value)` pairs — object paths joined by `.`, arrays traversed without
//! an index, each string array item also giving `<path>.<item> = true` — keys and values
//! lowercased; keys longer than 200 characters dropped; values longer than 200 characters kept
//! for existence only. `relations` and `status` are skipped (relation filters are answered from
//! the relation rows). Plus the text that full-text search matches.

use std::collections::HashMap;

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
    let mut out = Vec::with_capacity(32);
    let mut path = String::with_capacity(64);
    if let Value::Object(root) = entity {
        for (key, value) in root {
            if matches!(key.as_str(), "relations" | "status" | "attachments") {
                continue;
            }
            path.clear();
            path.push_str(key);
            walk(value, &mut path, &mut out);
        }
    }
    if entity.pointer("/metadata/namespace").is_none() {
        push(&mut out, "metadata.namespace", Some("default"));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Lowercased like JavaScript's `toLowerCase` (Rust's `to_lowercase`, with its context-dependent
/// final sigma), taking the cheap path for ASCII, which nearly every key and value is.
fn lower(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        text.to_lowercase()
    }
}

/// Adds one pair, by the length rules of [`pairs`].
pub(crate) fn push(out: &mut Vec<Pair>, key: &str, value: Option<&str>) {
    if key.len() > MAX {
        return;
    }
    let value = value.filter(|v| v.len() <= MAX).map(|v| (lower(v), v.to_owned()));
    out.push(Pair { key: lower(key), value });
}

/// Walks `value` at `path` (the dotted path as written; lowercased whole when a pair is pushed,
/// as Backstage lowercases the whole key). `path` is one buffer extended and truncated on the
/// way, instead of a new string per node.
fn walk(value: &Value, path: &mut String, out: &mut Vec<Pair>) {
    match value {
        Value::Object(map) => {
            let len = path.len();
            for (key, child) in map {
                path.push('.');
                path.push_str(key);
                walk(child, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Value::String(s) = item {
                    let len = path.len();
                    path.push('.');
                    path.push_str(s);
                    push(out, path, Some("true"));
                    path.truncate(len);
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

/// The original values of one flattened key (lowercased, dotted), exactly as [`pairs`] gives
/// them, without flattening the rest of the document: facets over any key read only the
/// branch of each document that can hold it.
pub fn values_of(entity: &Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() <= MAX {
        if let Value::Object(root) = entity {
            for (name, value) in root {
                if matches!(name.as_str(), "relations" | "status" | "attachments") {
                    continue;
                }
                walk_to(value, name.to_lowercase(), key, &mut out);
            }
        }
        if key == "metadata.namespace" && entity.pointer("/metadata/namespace").is_none() {
            out.push("default".into());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A flag a long computation checks now and then, set when its caller gives up.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    /// Whether the caller gave up.
    pub fn cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A guard that cancels when dropped: hold it in the future that awaits the computation,
    /// so dropping that future (a timeout) stops the work.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Cancels its [`Cancel`] when dropped.
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        (self.0).0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Facet counts of `key` over stored documents (`(JSON text, uid)`, see
/// [`crate::catalog::stored_document`]): how many documents hold each original value, most
/// frequent first, then by value. CPU-bound at scale (documents are parsed), so it splits the
/// work over the available cores; run it off the async runtime.
/// Stops early (with partial counts nobody should read) once `cancel` is set.
pub fn count_values(documents: &[(String, String)], key: &str, cancel: &Cancel) -> Vec<(String, i64)> {
    let count = |chunk: &[(String, String)]| {
        let mut counts: HashMap<String, i64> = HashMap::new();
        for (i, (text, uid)) in chunk.iter().enumerate() {
            if i % 256 == 0 && cancel.cancelled() {
                return HashMap::new();
            }
            let document = crate::catalog::stored_document(text, uid);
            if document.is_null() {
                continue;
            }
            for value in values_of(&document, key) {
                *counts.entry(value).or_default() += 1;
            }
        }
        counts
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = documents.len().div_ceil(threads).max(1_000);
    let mut total: HashMap<String, i64> = HashMap::new();
    std::thread::scope(|scope| {
        let parts: Vec<_> = documents.chunks(chunk).map(|c| scope.spawn(move || count(c))).collect();
        for part in parts {
            for (value, n) in part.join().unwrap_or_default() {
                *total.entry(value).or_default() += n;
            }
        }
    });
    let mut out: Vec<(String, i64)> = total.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

fn walk_to(value: &Value, path: String, key: &str, out: &mut Vec<String>) {
    let on_the_way = key == path || (key.starts_with(&path) && key.as_bytes().get(path.len()) == Some(&b'.'));
    if !on_the_way {
        return;
    }
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                walk_to(child, format!("{path}.{}", name.to_lowercase()), key, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Value::String(s) = item
                    && key.len() == path.len() + 1 + s.len()
                    && format!("{path}.{}", s.to_lowercase()) == key
                {
                    out.push("true".into());
                }
                walk_to(item, path.clone(), key, out);
            }
        }
        _ if path != key => {}
        Value::String(s) if s.len() <= MAX => out.push(s.clone()),
        Value::Bool(b) => out.push(if *b { "true" } else { "false" }.into()),
        Value::Number(n) => out.push(n.to_string()),
        Value::String(_) | Value::Null => {}
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

/// Keys every entity of a read model has (the envelope's required fields, the namespace that
/// flattening defaults and the uid that projection adds): "has this key" is true of all of them,
/// so their existence is not stored.
pub const UNIVERSAL_KEYS: [&str; 5] = [
    "apiversion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

/// Keys whose values read models keep as columns of the entity row (lowercased, from the ref), so
/// their `key=value` filter keys are not stored: `(key, column)`.
pub const COLUMN_KEYS: [(&str, &str); 3] = [
    ("kind", "kind"),
    ("metadata.namespace", "namespace"),
    ("metadata.name", "name"),
];

/// The terms of a full-text search: its runs of letters and digits.
pub fn terms(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect()
}

/// How a read model answers one filter condition (`key`, or `key=value` for any of `values`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlan {
    /// Every entity meets it.
    Always,
    /// The entity row's column equals one of the values.
    Column(&'static str, Vec<String>),
    /// The entity has one of these key hashes.
    Hashes(Vec<u64>),
}

/// The plan for a condition on a (lowercased) key with (lowercased) accepted values, matching
/// what [`key_hashes`] stores: existence of a key is stored unless the key is universal or the
/// entity holds it with the value `true` (array items, flags), so "exists" also accepts `=true`.
pub fn plan(key: &str, values: &[String]) -> KeyPlan {
    if values.is_empty() {
        if UNIVERSAL_KEYS.contains(&key) {
            return KeyPlan::Always;
        }
        return KeyPlan::Hashes(vec![key_hash(key), key_hash(&format!("{key}=true"))]);
    }
    if let Some((_, column)) = COLUMN_KEYS.iter().find(|(k, _)| *k == key) {
        return KeyPlan::Column(column, values.to_vec());
    }
    KeyPlan::Hashes(values.iter().map(|v| key_hash(&format!("{key}={v}"))).collect())
}

/// The stored hashes of an entity's filter keys ([`keys`]), sorted and without duplicates,
/// computed from the pairs without building the key strings. Left out, because [`plan`] answers
/// them otherwise: existence of universal keys, existence of a key the entity also holds with
/// the value `true`, and the values of [`COLUMN_KEYS`]. (About a quarter of an entity's keys,
/// and of the filter index's size.)
pub fn key_hashes(pairs: &[Pair]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(pairs.len() * 2);
    let with_true: Vec<&str> = pairs
        .iter()
        .filter(|p| p.value.as_ref().is_some_and(|(lower, _)| lower == "true"))
        .map(|p| p.key.as_str())
        .collect();
    for pair in pairs {
        let key = fnv1a_128_update(FNV_OFFSET, pair.key.as_bytes());
        let existence = !UNIVERSAL_KEYS.contains(&pair.key.as_str()) && !with_true.contains(&pair.key.as_str());
        if existence {
            out.push(fold(key));
        }
        if let Some((lower, _)) = &pair.value
            && !COLUMN_KEYS.iter().any(|(k, _)| *k == pair.key)
        {
            out.push(fold(fnv1a_128_update(fnv1a_128_update(key, b"="), lower.as_bytes())));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The internal filter key by which an entity is found from a relation end it mentions (see
/// [`crate::relations`]). Never a key of [`pairs`] (relations are not flattened) nor of a
/// user's filter (`relations.` keys are relation conditions), so it cannot match either.
pub fn endpoint_key(entity_ref: &str) -> String {
    format!("relations.*={entity_ref}")
}

/// The 64-bit hash of a filter key: what read models index. At 64 bits, the chance that any two
/// of a million distinct keys collide is about 10^-8.
pub fn key_hash(key: &str) -> u64 {
    fold(fnv1a_128_update(FNV_OFFSET, key.as_bytes()))
}

/// [`key_hash`] as PostgreSQL's `bigint`, for the GIN-indexed `bigint[]` of filter keys.
pub fn key_hash64(key: &str) -> i64 {
    key_hash(key) as i64
}

/// A key hash as one word an inverted index holds exactly (`k` and 13 base-32 digits): what the
/// SQLite read model keeps in its full-text index, where a filter is one index lookup.
pub fn hash_token(hash: u64) -> String {
    let mut out = String::with_capacity(14);
    push_hash_token(&mut out, hash);
    out
}

/// Appends [`hash_token`] of `hash` to `out`.
pub fn push_hash_token(out: &mut String, hash: u64) {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    out.push('k');
    let mut rest = hash;
    for _ in 0..13 {
        out.push(char::from(DIGITS[(rest & 31) as usize]));
        rest >>= 5;
    }
}

/// [`hash_token`] of a key.
pub fn key_token(key: &str) -> String {
    hash_token(key_hash(key))
}

const FNV_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;

fn fnv1a_128_update(mut hash: u128, bytes: &[u8]) -> u128 {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    for byte in bytes {
        hash ^= u128::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

fn fold(hash: u128) -> u64 {
    (hash >> 64) as u64 ^ hash as u64
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
    fn values_of_one_key_agree_with_flattening_everything() {
        let documents = [
            json!({
                "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                "metadata": {"name": "Payments", "tags": ["Java", "web", "JAVA"], "description": null,
                    "annotations": {"backstage.io/techdocs-ref": "dir:.", "GitHub.com/Project-Slug": "Org/Repo"},
                    "links": [{"url": "https://x", "title": "X"}, {"url": "https://y"}]},
                "spec": {"type": "service", "owner": "team-a", "long": "x".repeat(201), "n": 3, "b": false,
                    "nested": {"list": [["a", "b"], {"deep": "v"}]}},
                "relations": [{"type": "ownedBy", "targetRef": "group:default/team-a"}],
            }),
            json!({"kind": "Group", "metadata": {"name": "g", "namespace": "Ops"}, "spec": {"children": []}}),
        ];
        for document in &documents {
            let flattened = pairs(document);
            let mut keys: Vec<&str> = flattened.iter().map(|p| p.key.as_str()).collect();
            keys.extend(["spec.absent", "metadata", "relations.ownedby", "metadata.tags.java"]);
            for key in keys {
                let mut expected: Vec<String> = flattened
                    .iter()
                    .filter(|p| p.key == key)
                    .filter_map(|p| p.value.as_ref().map(|(_, original)| original.clone()))
                    .collect();
                expected.sort();
                expected.dedup();
                assert_eq!(values_of(document, key), expected, "{key}");
            }
        }
    }

    #[test]
    fn counting_values_over_documents() {
        let documents: Vec<(String, String)> = (0..2_500)
            .map(|i| json!({"kind": "Component", "metadata": {"name": format!("c{i}"), "tags": if i % 2 == 0 { json!(["a", "b"]) } else { json!(["a"]) }}}).to_string())
            .chain(["not json".to_owned()])
            .map(|d| (d, "u".to_owned()))
            .collect();
        assert_eq!(
            count_values(&documents, "metadata.tags", &Cancel::default()),
            [("a".to_owned(), 2_500), ("b".to_owned(), 1_250)]
        );
        assert!(count_values(&[], "kind", &Cancel::default()).is_empty());
        assert_eq!(
            count_values(&documents[..1], "metadata.uid", &Cancel::default()),
            [("u".to_owned(), 1)],
            "uids are put back"
        );
    }

    #[test]
    fn key_tokens_are_stable_words() {
        // Stored in read models: a change of hash would silently break filters on old rows (the
        // table layouts' identity must change with it).
        assert_eq!(key_hash(""), 1_070_174_851_063_268_559);
        assert_eq!(hash_token(0), "k0000000000000");
        assert_eq!(hash_token(u64::MAX), "kvvvvvvvvvvvvf");
        assert_eq!(key_token("kind=component"), key_token("kind=component"));
        assert_ne!(key_token("kind=component"), key_token("kind=api"));
        let token = key_token("spec.owner=group:default/team-a");
        assert_eq!(token.len(), 14);
        assert!(token.starts_with('k') && token[1..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    /// Whether an entity meets a condition by its stored hashes and columns, as read models
    /// answer it.
    fn planned(entity: &Value, key: &str, values: &[&str]) -> bool {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let stored = key_hashes(&pairs(entity));
        match plan(key, &values) {
            KeyPlan::Always => true,
            KeyPlan::Column(column, values) => {
                let field = match column {
                    "kind" => "/kind",
                    "namespace" => "/metadata/namespace",
                    _ => "/metadata/name",
                };
                let actual = entity
                    .pointer(field)
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_lowercase();
                values.contains(&actual)
            }
            KeyPlan::Hashes(hashes) => hashes.iter().any(|h| stored.contains(h)),
        }
    }

    #[test]
    fn stored_keys_and_plans_answer_every_condition_as_the_keys_do() {
        let entity = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
            "metadata": {"name": "A", "uid": "u-1", "tags": ["x", "true"], "flag": true, "off": false, "none": null},
            "spec": {"owner": "team", "list": ["true"]}});
        let all = keys(&pairs(&entity));
        let mut conditions: Vec<(String, Vec<String>)> = Vec::new();
        for key in &all {
            match key.split_once('=') {
                Some((k, v)) => conditions.push((k.to_owned(), vec![v.to_owned()])),
                None => conditions.push((key.clone(), Vec::new())),
            }
        }
        for absent in ["spec.absent", "metadata.tags.y", "kind", "metadata.name"] {
            conditions.push((absent.to_owned(), vec!["nope".to_owned()]));
        }
        conditions.push(("spec.absent".to_owned(), Vec::new()));
        for (key, values) in conditions {
            let values_ref: Vec<&str> = values.iter().map(String::as_str).collect();
            let expected = crate::filter::Filter::Field {
                key: key.clone(),
                values: values.clone(),
            }
            .matches(&all);
            assert_eq!(planned(&entity, &key, &values_ref), expected, "{key} {values:?}");
        }
        // Fewer hashes stored than keys: universal existence, `=true` existence, column values.
        assert!(key_hashes(&pairs(&entity)).len() < all.len());
    }

    /// A count whose caller went away stops: a timed-out facet request does not keep a core busy.
    #[test]
    fn a_cancelled_count_stops() {
        let document = json!({"kind": "Component", "metadata": {"name": "a", "tags": ["x"]}}).to_string();
        let documents: Vec<(String, String)> = (0..5_000).map(|i| (document.clone(), format!("u{i}"))).collect();
        let cancel = Cancel::default();
        assert_eq!(
            count_values(&documents, "metadata.tags", &cancel),
            vec![("x".to_owned(), 5_000)]
        );
        drop(cancel.on_drop());
        assert!(cancel.cancelled());
        assert!(count_values(&documents, "metadata.tags", &cancel).is_empty());
    }
}
