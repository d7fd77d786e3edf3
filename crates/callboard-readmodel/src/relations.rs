//! Relations as the read models store them: the current relations of an entity are kept *packed*
//! in its entity row, and every upsert's history row keeps the relations of that version.
//!
//! Why packed: Backstage's processors emit every relation twice, once from each end
//! (`A ownedBy G` and `G ownerOf A`), both declared by the entity whose fields produced them (its
//! *origin*). Stored as one row per direction with indexes on their ends, relations were the
//! largest part of the read model and of a projection's writes: about seven rows and fourteen
//! index entries per entity, each a random B-tree insert. Packed, they are one column of a row
//! that is written anyway. A pair whose one end is the origin is stored once, as `[type, target]`
//! (the inverse row is implied); any other row is stored as written, `[source, type, target]`.
//! Lookups by the *other* end go through the entity's filter keys, which carry a key per end
//! ([`crate::search::endpoint_key`]).
//!
//! Relations over time need no rows of their own: a relation holds from the version that declares
//! it until the version that stops declaring it, so spans and the graph at any instant are
//! derived from history ([`spans_from_versions`], [`at_instant`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use callboard_model::{EntityRef, Relation, RelationType};

use crate::FastSet;
use crate::rows::SpanRow;

/// One directed relation row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Row {
    /// Source ref.
    pub source: String,
    /// Relation type, e.g. `ownedBy`.
    pub relation_type: String,
    /// Target ref.
    pub target: String,
}

impl Row {
    /// A row from its parts.
    pub fn new(source: &str, relation_type: &str, target: &str) -> Self {
        Self {
            source: source.to_owned(),
            relation_type: relation_type.to_owned(),
            target: target.to_owned(),
        }
    }

    /// As a [`Relation`]; `None` when an end is not a ref (never written by the projection).
    pub fn into_relation(self) -> Option<Relation> {
        let source = EntityRef::from_canonical(self.source).ok()?;
        let target = EntityRef::from_canonical(self.target).ok()?;
        let kind = self.relation_type.parse().unwrap_or_else(|never| match never {});
        Some(Relation { kind, source, target })
    }
}

/// The inverse of a built-in relation type (`ownedBy` ↔ `ownerOf`), exactly as written; `None`
/// for other types.
pub fn inverse(relation_type: &str) -> Option<&'static str> {
    RelationType::inverse_name(relation_type)
}

/// [`pack`], and the [`endpoints`] of the result, from one pass over the rows.
pub fn pack_with_endpoints<'a>(
    origin: &str,
    rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> (String, Vec<String>) {
    let rows: Vec<(&str, &str, &str)> = rows.into_iter().collect();
    let mut ends: Vec<String> = rows
        .iter()
        .flat_map(|&(source, _, target)| [source, target])
        .filter(|end| *end != origin)
        .map(str::to_owned)
        .collect();
    ends.sort_unstable();
    ends.dedup();
    (pack(origin, rows), ends)
}

/// The packed form of the relation rows `origin`'s version declares (duplicates ignored): a JSON
/// array whose items are `[type, target]` for a row `origin → target` whose inverse row is also
/// declared, and `[source, type, target]` for any other row. Deterministic: the same set of rows
/// always packs to the same text.
pub fn pack<'a>(origin: &str, rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let rows: BTreeSet<(&str, &str, &str)> = rows.into_iter().collect();
    let mut consumed: FastSet<(&str, &str, &str)> = FastSet::default();
    let mut pairs: Vec<[&str; 2]> = Vec::new();
    for &(source, relation_type, target) in &rows {
        if source != origin || consumed.contains(&(source, relation_type, target)) {
            continue;
        }
        let Some(inverse) = inverse(relation_type) else {
            continue;
        };
        let partner = (target, inverse, origin);
        if partner != (source, relation_type, target) && rows.contains(&partner) && !consumed.contains(&partner) {
            consumed.insert((source, relation_type, target));
            consumed.insert(partner);
            pairs.push([relation_type, target]);
        }
    }
    let singles: Vec<[&str; 3]> = rows
        .iter()
        .filter(|row| !consumed.contains(*row))
        .map(|&(s, t, x)| [s, t, x])
        .collect();
    let mut out = String::with_capacity(2 + 48 * (pairs.len() + singles.len()));
    out.push('[');
    let mut first = true;
    let mut item = |parts: &[&str]| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('[');
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(part).unwrap_or_else(|_| "\"\"".into()));
        }
        out.push(']');
    };
    for pair in &pairs {
        item(pair);
    }
    for single in &singles {
        item(single);
    }
    out.push(']');
    out
}

/// The packed items, parsed; unreadable text (never written by [`pack`]) reads as no relations.
fn items(packed: &str) -> Vec<Vec<String>> {
    serde_json::from_str(packed).unwrap_or_default()
}

/// Every row a packed list stands for, sorted and without duplicates.
pub fn unpack(origin: &str, packed: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for item in items(packed) {
        match item.as_slice() {
            [relation_type, target] => {
                if let Some(inverse) = inverse(relation_type) {
                    out.push(Row::new(target, inverse, origin));
                }
                out.push(Row::new(origin, relation_type, target));
            }
            [source, relation_type, target] => out.push(Row::new(source, relation_type, target)),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The refs other than `origin` that a packed list mentions: the ends by which the entity's
/// relations are found from elsewhere.
pub fn endpoints(origin: &str, packed: &str) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for item in items(packed) {
        let ends: &[String] = match item.as_slice() {
            [_, target] => std::slice::from_ref(target),
            [source, _, target] => {
                for end in [source, target] {
                    if end != origin {
                        out.insert(end.clone());
                    }
                }
                &[]
            }
            _ => &[],
        };
        for end in ends {
            if end != origin {
                out.insert(end.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// Rows from the packed relations of candidate entities (`(origin, packed)`), keeping those whose
/// source (or, with `incoming`, whose target) is one of `refs`. Candidates are the entities
/// `refs` name plus those whose endpoint keys mention them; rows of other entities are ignored.
pub fn select(refs: &[String], incoming: bool, candidates: &[(String, String)]) -> Vec<Row> {
    let wanted: HashSet<&str> = refs.iter().map(String::as_str).collect();
    let mut out: Vec<Row> = candidates
        .iter()
        .flat_map(|(origin, packed)| unpack(origin, packed))
        .filter(|row| {
            let end = if incoming { &row.target } else { &row.source };
            wanted.contains(end.as_str())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every row of the given packed lists, sorted and without duplicates (the graph's edges).
pub fn all(lists: &[(String, String)]) -> Vec<Row> {
    let mut out: Vec<Row> = lists
        .iter()
        .flat_map(|(origin, packed)| unpack(origin, packed))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Rows as [`Relation`]s, leaving out any whose ends are not refs.
pub fn into_relations(rows: Vec<Row>) -> Vec<Relation> {
    rows.into_iter().filter_map(Row::into_relation).collect()
}

/// The relation rows valid at an instant, from the version of each subject in force then:
/// `(subject, Some(packed))` for a subject whose latest version by then is an upsert, `None` when
/// it is a deletion.
pub fn at_instant(versions: &[(String, Option<String>)]) -> Vec<Row> {
    let live: Vec<(String, String)> = versions
        .iter()
        .filter_map(|(subject, packed)| packed.as_ref().map(|p| (subject.clone(), p.clone())))
        .collect();
    all(&live)
}

/// The relations a history row leaves in effect, read from its event type and its `relations`
/// column: an upsert's packed relations, `None` after a deletion.
pub fn of_history_row(event_type: &str, relations: Option<String>) -> Option<String> {
    (event_type == "entity.upserted.v1").then(|| relations.unwrap_or_default())
}

/// One version of an origin, for [`spans_from_versions`].
#[derive(Debug, Clone)]
pub struct Version {
    /// Its sequence.
    pub sequence: i64,
    /// Its event time.
    pub time: String,
    /// Its packed relations; `None` for a deletion.
    pub relations: Option<String>,
}

/// The relation rows of one origin with their validity intervals, from its versions in sequence
/// order: a row is valid from the first version that declares it until the first later version
/// that does not (or the deletion). Sorted by the opening sequence, then the row.
pub fn spans_from_versions(origin: &EntityRef, versions: &[Version]) -> Vec<SpanRow> {
    let mut open: BTreeMap<Row, (i64, String)> = BTreeMap::new();
    let mut closed: Vec<(Row, (i64, String), Option<String>)> = Vec::new();
    for version in versions {
        let now: BTreeSet<Row> = version
            .relations
            .as_deref()
            .map(|packed| unpack(origin.as_str(), packed).into_iter().collect())
            .unwrap_or_default();
        let gone: Vec<Row> = open.keys().filter(|row| !now.contains(*row)).cloned().collect();
        for row in gone {
            if let Some(opened) = open.remove(&row) {
                closed.push((row, opened, Some(version.time.clone())));
            }
        }
        for row in now {
            open.entry(row)
                .or_insert_with(|| (version.sequence, version.time.clone()));
        }
    }
    closed.extend(
        std::mem::take(&mut open)
            .into_iter()
            .map(|(row, opened)| (row, opened, None)),
    );
    // Ordered by the opening sequence, then the row as written.
    closed.sort_by(|(a, (a_from, _), _), (b, (b_from, _), _)| (a_from, a).cmp(&(b_from, b)));
    closed
        .into_iter()
        .filter_map(|(row, (from_sequence, valid_from), valid_to)| {
            Some(SpanRow {
                origin: origin.clone(),
                relation: row.into_relation()?,
                from_sequence,
                valid_from,
                valid_to,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "component:default/a";
    const G: &str = "group:default/g";

    fn rows(list: &[(&str, &str, &str)]) -> Vec<Row> {
        let mut out: Vec<Row> = list.iter().map(|(s, t, x)| Row::new(s, t, x)).collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn pairs_are_stored_once_and_read_both_ways() {
        let declared = [(A, "ownedBy", G), (G, "ownerOf", A)];
        let packed = pack(A, declared.iter().copied());
        assert_eq!(packed, r#"[["ownedBy","group:default/g"]]"#);
        assert_eq!(unpack(A, &packed), rows(&declared));
        assert_eq!(endpoints(A, &packed), [G]);
    }

    #[test]
    fn rows_without_their_inverse_are_kept_as_written() {
        // Half a pair, a custom type and a row between two other entities.
        let declared = [
            (A, "ownedBy", G),
            (A, "x-custom", G),
            ("api:default/p", "apiProvidedBy", "component:default/b"),
        ];
        let packed = pack(A, declared.iter().copied());
        assert_eq!(unpack(A, &packed), rows(&declared));
        assert_eq!(endpoints(A, &packed), ["api:default/p", "component:default/b", G]);
        assert_eq!(pack(A, []), "[]");
        assert!(unpack(A, "not json").is_empty());
    }

    #[test]
    fn selecting_rows_by_either_end() {
        let candidates = vec![
            (A.to_owned(), pack(A, [(A, "ownedBy", G), (G, "ownerOf", A)])),
            (
                "user:default/u".to_owned(),
                pack(
                    "user:default/u",
                    [("user:default/u", "memberOf", G), (G, "hasMember", "user:default/u")],
                ),
            ),
        ];
        let out = select(&[G.to_owned()], false, &candidates);
        assert_eq!(out, rows(&[(G, "hasMember", "user:default/u"), (G, "ownerOf", A)]));
        let incoming = select(&[G.to_owned()], true, &candidates);
        assert_eq!(incoming, rows(&[(A, "ownedBy", G), ("user:default/u", "memberOf", G)]));
    }

    #[test]
    fn spans_follow_versions() {
        let v = |sequence: i64, time: &str, relations: Option<Vec<(&str, &str, &str)>>| Version {
            sequence,
            time: time.into(),
            relations: relations.map(|r| pack(A, r)),
        };
        let h = "group:default/h";
        let spans = spans_from_versions(
            &A.parse().expect("a ref"),
            &[
                v(1, "t1", Some(vec![(A, "ownedBy", G), (G, "ownerOf", A)])),
                v(
                    2,
                    "t2",
                    Some(vec![(A, "ownedBy", G), (G, "ownerOf", A), (A, "dependsOn", h)]),
                ),
                v(3, "t3", Some(vec![(A, "ownedBy", G), (G, "ownerOf", A)])),
                v(4, "t4", None),
                v(5, "t5", Some(vec![(A, "ownedBy", G), (G, "ownerOf", A)])),
            ],
        );
        let summary: Vec<(i64, &str, &str, Option<&str>)> = spans
            .iter()
            .map(|s| {
                (
                    s.from_sequence,
                    s.relation.kind.as_str(),
                    s.valid_from.as_str(),
                    s.valid_to.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "ownedBy", "t1", Some("t4")),
                (1, "ownerOf", "t1", Some("t4")),
                (2, "dependsOn", "t2", Some("t3")),
                (5, "ownedBy", "t5", None),
                (5, "ownerOf", "t5", None),
            ]
        );
    }

    #[test]
    fn history_rows_leave_relations_only_after_upserts() {
        let packed = Some("[[\"ownedBy\",\"group:default/g\"]]".to_owned());
        assert_eq!(of_history_row("entity.upserted.v1", packed.clone()), packed);
        assert_eq!(of_history_row("entity.upserted.v1", None), Some(String::new()));
        assert_eq!(of_history_row("entity.deleted.v1", packed), None);
    }

    fn row_strategy() -> impl Strategy<Value = (String, String, String)> {
        let refs = prop::sample::select(vec![A, G, "api:default/p", "user:default/u"]);
        let types = prop::sample::select(vec![
            "ownedBy",
            "ownerOf",
            "dependsOn",
            "dependencyOf",
            "partOf",
            "hasPart",
            "x-custom",
            "OwnedBy",
        ]);
        (refs.clone(), types, refs).prop_map(|(s, t, x)| (s.to_owned(), t.to_owned(), x.to_owned()))
    }

    proptest! {
        #[test]
        fn packing_keeps_exactly_the_declared_rows(declared in prop::collection::vec(row_strategy(), 0..12)) {
            let packed = pack(A, declared.iter().map(|(s, t, x)| (s.as_str(), t.as_str(), x.as_str())));
            let mut expected: Vec<Row> = declared.iter().map(|(s, t, x)| Row::new(s, t, x)).collect();
            expected.sort();
            expected.dedup();
            prop_assert_eq!(unpack(A, &packed), expected.clone());
            // Order of declaration does not matter.
            let reversed = pack(A, declared.iter().rev().map(|(s, t, x)| (s.as_str(), t.as_str(), x.as_str())));
            prop_assert_eq!(&reversed, &packed);
            // Every end other than the origin is an endpoint.
            let mut ends: Vec<String> = expected.iter().flat_map(|r| [r.source.clone(), r.target.clone()]).filter(|e| e != A).collect();
            ends.sort();
            ends.dedup();
            prop_assert_eq!(endpoints(A, &packed), ends.clone());
            let rows = declared.iter().map(|(s, t, x)| (s.as_str(), t.as_str(), x.as_str()));
            prop_assert_eq!(pack_with_endpoints(A, rows), (packed, ends));
        }
    }
}
