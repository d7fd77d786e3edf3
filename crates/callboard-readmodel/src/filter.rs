//! Entity filters with Backstage's semantics: keys are dotted paths of the flattened entity,
//! matched case-insensitively against exact values; a key with no value means "exists"; values
//! for the same key are alternatives; `relations.<type>` matches relation targets.

use std::collections::HashMap;
use std::fmt;

use crate::relations::Row;

/// A filter over entities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every filter matches.
    All(Vec<Filter>),
    /// At least one filter matches.
    Any(Vec<Filter>),
    /// The filter does not match.
    Not(Box<Filter>),
    /// `key` exists (no values) or equals one of `values`; both lowercased.
    Field {
        /// Dotted key, lowercased.
        key: String,
        /// Accepted values, lowercased; empty for "exists".
        values: Vec<String>,
    },
}

/// A `relations.<type>` condition of a filter: the (lowercased) relation type and the accepted
/// targets (lowercased; empty: any target).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationCondition {
    /// Lowercased relation type.
    pub relation_type: String,
    /// Accepted targets; empty for "has any".
    pub targets: Vec<String>,
}

impl RelationCondition {
    /// The sources of `rows` that meet the condition: the entities a
    /// `relations.<type>=<target>` filter selects. Read models fetch the candidate rows (the rows
    /// into the targets, or every row when the condition has none) and keep these.
    pub fn sources(&self, rows: &[Row]) -> Vec<String> {
        let mut out: Vec<String> = rows
            .iter()
            .filter(|row| {
                row.relation_type.eq_ignore_ascii_case(&self.relation_type)
                    && (self.targets.is_empty() || self.targets.contains(&row.target))
            })
            .map(|row| row.source.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A filter whose relation conditions have been replaced by the entities that meet them, which is
/// what read models turn into queries: relations live packed with their entities, so a relation
/// condition is answered from the relation rows first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Every filter matches.
    All(Vec<Resolved>),
    /// At least one filter matches.
    Any(Vec<Resolved>),
    /// The filter does not match.
    Not(Box<Resolved>),
    /// As [`Filter::Field`], never a relation key.
    Field {
        /// Dotted key, lowercased.
        key: String,
        /// Accepted values, lowercased; empty for "exists".
        values: Vec<String>,
    },
    /// The entity is one of these refs.
    Refs(Vec<String>),
}

impl Resolved {
    /// `filter` (or everything) narrowed to entities that have `key`: the entities whose
    /// documents can hold a value of it, which is what counting its facets reads.
    pub fn having_key(filter: Option<Resolved>, key: &str) -> Resolved {
        let has_key = Resolved::Field {
            key: key.to_owned(),
            values: Vec::new(),
        };
        match filter {
            Some(filter) => Resolved::All(vec![filter, has_key]),
            None => has_key,
        }
    }
}

/// A filter that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A condition had an empty key (`=x`).
    #[error("filter condition {0:?} has an empty key")]
    EmptyKey(String),
}

impl Filter {
    /// `key = value` (case-insensitive).
    pub fn eq(key: &str, value: &str) -> Self {
        Filter::Field {
            key: key.to_lowercase(),
            values: vec![value.to_lowercase()],
        }
    }

    /// `key` exists.
    pub fn exists(key: &str) -> Self {
        Filter::Field {
            key: key.to_lowercase(),
            values: Vec::new(),
        }
    }

    /// The relation type a `relations.<type>` key names, lowercased.
    pub fn relation_key(key: &str) -> Option<&str> {
        key.strip_prefix("relations.")
    }

    /// Whether an entity with these filter keys (see `search::keys`: `key` and `key=value`,
    /// lowercased, sorted) matches. Relation keys need the relation rows in `keys` too.
    pub fn matches(&self, keys: &[String]) -> bool {
        let has = |k: &str| keys.binary_search_by(|probe| probe.as_str().cmp(k)).is_ok();
        match self {
            Filter::All(items) => items.iter().all(|f| f.matches(keys)),
            Filter::Any(items) => items.iter().any(|f| f.matches(keys)),
            Filter::Not(inner) => !inner.matches(keys),
            Filter::Field { key, values } if values.is_empty() => has(key),
            Filter::Field { key, values } => values.iter().any(|v| has(&format!("{key}={v}"))),
        }
    }

    /// The distinct relation conditions of the filter.
    pub fn relation_conditions(&self) -> Vec<RelationCondition> {
        fn walk(filter: &Filter, out: &mut Vec<RelationCondition>) {
            match filter {
                Filter::All(items) | Filter::Any(items) => items.iter().for_each(|f| walk(f, out)),
                Filter::Not(inner) => walk(inner, out),
                Filter::Field { key, values } => {
                    if let Some(relation_type) = Filter::relation_key(key) {
                        out.push(RelationCondition {
                            relation_type: relation_type.to_owned(),
                            targets: values.clone(),
                        });
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// The filter with each relation condition replaced by the refs that meet it (`sources`, from
    /// [`RelationCondition::sources`]; a condition missing there meets nothing).
    pub fn resolve(&self, sources: &HashMap<RelationCondition, Vec<String>>) -> Resolved {
        match self {
            Filter::All(items) => Resolved::All(items.iter().map(|f| f.resolve(sources)).collect()),
            Filter::Any(items) => Resolved::Any(items.iter().map(|f| f.resolve(sources)).collect()),
            Filter::Not(inner) => Resolved::Not(Box::new(inner.resolve(sources))),
            Filter::Field { key, values } => match Filter::relation_key(key) {
                Some(relation_type) => {
                    let condition = RelationCondition {
                        relation_type: relation_type.to_owned(),
                        targets: values.clone(),
                    };
                    Resolved::Refs(sources.get(&condition).cloned().unwrap_or_default())
                }
                None => Resolved::Field {
                    key: key.clone(),
                    values: values.clone(),
                },
            },
        }
    }

    /// Whether any condition is on `relations.<type>`.
    pub fn mentions_relations(&self) -> bool {
        match self {
            Filter::All(items) | Filter::Any(items) => items.iter().any(Filter::mentions_relations),
            Filter::Not(inner) => inner.mentions_relations(),
            Filter::Field { key, .. } => Filter::relation_key(key).is_some(),
        }
    }

    /// Parses Backstage's `filter` query parameters: each parameter is a set of comma-separated
    /// conditions (`key=value` or `key`), ANDed; the sets are ORed; the same key repeated inside
    /// a set accumulates alternative values. `None` when there are no conditions.
    pub fn parse_backstage(params: &[String]) -> Result<Option<Filter>, FilterError> {
        let mut sets = Vec::new();
        for param in params {
            let mut fields: Vec<(String, Vec<String>, bool)> = Vec::new();
            for statement in param.split(',') {
                let statement = statement.trim();
                if statement.is_empty() {
                    continue;
                }
                let (key, value) = match statement.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim())),
                    None => (statement, None),
                };
                if key.is_empty() {
                    return Err(FilterError::EmptyKey(statement.to_owned()));
                }
                let key = key.to_lowercase();
                let slot = match fields.iter_mut().position(|(k, _, _)| *k == key) {
                    Some(i) => &mut fields[i],
                    None => {
                        fields.push((key, Vec::new(), false));
                        fields.last_mut().unwrap_or_else(|| unreachable!("just pushed"))
                    }
                };
                match value {
                    Some(v) => slot.1.push(v.to_lowercase()),
                    None => slot.2 = true,
                }
            }
            if fields.is_empty() {
                continue;
            }
            // A key given with values and also bare: the values win (upstream's newest parser).
            let conditions: Vec<Filter> = fields
                .into_iter()
                .map(|(key, values, _)| Filter::Field { key, values })
                .collect();
            sets.push(if conditions.len() == 1 {
                conditions.into_iter().next().unwrap_or_else(|| unreachable!())
            } else {
                Filter::All(conditions)
            });
        }
        Ok(match sets.len() {
            0 => None,
            1 => sets.pop(),
            _ => Some(Filter::Any(sets)),
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::All(items) => write!(
                f,
                "({})",
                items.iter().map(ToString::to_string).collect::<Vec<_>>().join(" AND ")
            ),
            Filter::Any(items) => write!(
                f,
                "({})",
                items.iter().map(ToString::to_string).collect::<Vec<_>>().join(" OR ")
            ),
            Filter::Not(inner) => write!(f, "NOT {inner}"),
            Filter::Field { key, values } if values.is_empty() => write!(f, "{key} exists"),
            Filter::Field { key, values } => write!(f, "{key} in {values:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backstage_filter_params() {
        let f = Filter::parse_backstage(&[
            "kind=component,spec.type=Service,kind=API".into(),
            "metadata.tags.java".into(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            f,
            Filter::Any(vec![
                Filter::All(vec![
                    Filter::Field {
                        key: "kind".into(),
                        values: vec!["component".into(), "api".into()]
                    },
                    Filter::Field {
                        key: "spec.type".into(),
                        values: vec!["service".into()]
                    },
                ]),
                Filter::Field {
                    key: "metadata.tags.java".into(),
                    values: vec![]
                },
            ])
        );
        assert_eq!(Filter::parse_backstage(&[" , ".into()]).unwrap(), None);
        assert!(Filter::parse_backstage(&["=x".into()]).is_err());
        assert_eq!(Filter::relation_key("relations.ownedby"), Some("ownedby"));
    }

    #[test]
    fn having_a_key_narrows_a_filter_or_everything() {
        let has = Resolved::Field {
            key: "spec.type".into(),
            values: vec![],
        };
        assert_eq!(Resolved::having_key(None, "spec.type"), has);
        let refs = Resolved::Refs(vec!["component:default/a".into()]);
        assert_eq!(
            Resolved::having_key(Some(refs.clone()), "spec.type"),
            Resolved::All(vec![refs, has])
        );
    }

    #[test]
    fn matching_filter_keys() {
        let entity = serde_json::json!({"kind": "Component", "metadata": {"name": "a", "tags": ["Java"]},
            "spec": {"type": "service"}});
        let keys = crate::search::keys(&crate::search::pairs(&entity));
        let f = |params: &[&str]| {
            Filter::parse_backstage(&params.iter().map(|p| p.to_string()).collect::<Vec<_>>())
                .unwrap()
                .unwrap()
        };
        assert!(f(&["kind=component,spec.type=SERVICE"]).matches(&keys));
        assert!(!f(&["kind=component,spec.type=website"]).matches(&keys));
        assert!(f(&["kind=api", "metadata.tags.java"]).matches(&keys));
        assert!(f(&["metadata.tags=java"]).matches(&keys));
        assert!(!f(&["spec.lifecycle"]).matches(&keys));
        assert!(f(&["relations.ownedby=group:default/x"]).mentions_relations());
        assert!(!f(&["kind=api"]).mentions_relations());
    }
}
