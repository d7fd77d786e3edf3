//! Facet counts the projector keeps up to date: values of a few common fields, over the whole
//! catalog and within each kind, so facets over them are instant.

use serde_json::Value;

use crate::filter::Filter;
use crate::rows::FacetDelta;
use crate::{FastMap, search};

/// Keys whose value counts are kept up to date as entities change, so facets over them are
/// instant. Facets over other keys are counted when asked.
pub const COUNTED_FACETS: [&str; 8] = [
    "kind",
    "metadata.namespace",
    "metadata.tags",
    "spec.type",
    "spec.lifecycle",
    "spec.owner",
    "spec.system",
    "apiversion",
];

/// The values of a document's counted facet keys (flattened `pairs`), as an entity row keeps
/// them: a JSON array of `key=value` (the key lowercased, the value as written), one per
/// occurrence, as the kept counts count them.
pub fn facet_values(pairs: &[search::Pair]) -> String {
    let values: Vec<String> = pairs
        .iter()
        .filter(|pair| COUNTED_FACETS.contains(&pair.key.as_str()))
        .filter_map(|pair| Some(format!("{}={}", pair.key, pair.value.as_ref()?.1)))
        .collect();
    serde_json::to_string(&values).unwrap_or_else(|_| "[]".into())
}

/// The changes of counted-facet values over a batch: `key → original value → delta`. Nearly
/// every entity of a batch bumps values already seen in it, so lookups go by `&str` and only a
/// new key or value is copied (a map keyed by owned pairs copied two strings per counted field
/// of every entity, 5% of a projector's CPU).
#[derive(Default)]
pub(super) struct FacetTally {
    counts: FastMap<String, FastMap<String, i64>>,
    /// The per-kind key being looked up, reused.
    kind_key: String,
}

impl FacetTally {
    /// Counts a document's counted-facet values, by its lowercased kind and flattened pairs:
    /// each counted key over the whole catalog, and again within the kind (see
    /// [`counted_facet_key`]).
    pub(super) fn add(&mut self, kind: Option<&str>, pairs: &[search::Pair], delta: i64) {
        for pair in pairs {
            if !COUNTED_FACETS.contains(&pair.key.as_str()) {
                continue;
            }
            let Some((_, original)) = &pair.value else { continue };
            if let Some(kind) = kind
                && pair.key != "kind"
            {
                self.kind_key.clear();
                push_kind_facet_key(&mut self.kind_key, kind, &pair.key);
                bump(&mut self.counts, &self.kind_key, original, delta);
            }
            bump(&mut self.counts, &pair.key, original, delta);
        }
    }

    /// [`FacetTally::add`] for a parsed document.
    pub(super) fn add_document(&mut self, document: &Value, delta: i64) {
        let kind = document.get("kind").and_then(Value::as_str).map(str::to_lowercase);
        self.add(kind.as_deref(), &search::pairs(document), delta);
    }

    /// The non-zero changes, ordered by key and value (writers apply them in this order).
    pub(super) fn into_deltas(self) -> Vec<FacetDelta> {
        let mut out: Vec<FacetDelta> = self
            .counts
            .into_iter()
            .flat_map(|(key, values)| {
                values
                    .into_iter()
                    .filter(|(_, delta)| *delta != 0)
                    .map(move |(value, delta)| FacetDelta {
                        key: key.clone(),
                        value,
                        delta,
                    })
            })
            .collect();
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key).then_with(|| a.value.cmp(&b.value)));
        out
    }
}

fn bump(counts: &mut FastMap<String, FastMap<String, i64>>, key: &str, value: &str, delta: i64) {
    if let Some(values) = counts.get_mut(key) {
        match values.get_mut(value) {
            Some(count) => *count += delta,
            None => {
                values.insert(value.to_owned(), delta);
            }
        }
        return;
    }
    let mut values = FastMap::default();
    values.insert(value.to_owned(), delta);
    counts.insert(key.to_owned(), values);
}

/// The stored key of a counted facet within one kind (`component|spec.type`). Counted keys are a
/// fixed list of dotted paths, so the separator never collides with one.
fn kind_facet_key(kind: &str, key: &str) -> String {
    let mut out = String::with_capacity(kind.len() + 1 + key.len());
    push_kind_facet_key(&mut out, kind, key);
    out
}

fn push_kind_facet_key(out: &mut String, kind: &str, key: &str) {
    out.push_str(kind);
    out.push('|');
    out.push_str(key);
}

/// The stored key whose maintained counts answer facets of `key` (lowercased) over `filter`:
/// a counted key over everything, or over one kind (`kind=component`, what catalog pages ask
/// for). `None`: count from the documents.
pub fn counted_facet_key(key: &str, filter: Option<&Filter>) -> Option<String> {
    if !COUNTED_FACETS.contains(&key) {
        return None;
    }
    match filter {
        None => Some(key.to_owned()),
        Some(Filter::Field { key: on, values }) if on == "kind" && values.len() == 1 && key != "kind" => {
            Some(kind_facet_key(&values[0], key))
        }
        Some(_) => None,
    }
}
