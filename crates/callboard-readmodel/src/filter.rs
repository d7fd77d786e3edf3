//! Entity filters with Backstage's semantics: keys are dotted paths of the flattened entity,
//! matched case-insensitively against exact values; a key with no value means "exists"; values
//! for the same key are alternatives; `relations.<type>` matches relation targets.

use std::fmt;

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
