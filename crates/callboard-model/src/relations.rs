//! Relations between entities, derived from spec fields (Backstage's `BuiltinKindsEntityProcessor`
//! and the scaffolder's `ScaffolderEntitiesProcessor`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::entity_ref::EntityRef;

/// A relation type. Built-in types have variants; other processors may emit any type, kept as
/// [`RelationType::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelationType {
    /// `ownedBy`: the source is owned by the target.
    OwnedBy,
    /// `ownerOf`: the inverse of `ownedBy`.
    OwnerOf,
    /// `partOf`: the source is a part of the target (component of a system, system of a domain ...).
    PartOf,
    /// `hasPart`: the inverse of `partOf`.
    HasPart,
    /// `providesApi`: a component provides an API.
    ProvidesApi,
    /// `apiProvidedBy`: the inverse of `providesApi`.
    ApiProvidedBy,
    /// `consumesApi`: a component consumes an API.
    ConsumesApi,
    /// `apiConsumedBy`: the inverse of `consumesApi`.
    ApiConsumedBy,
    /// `dependsOn`: the source depends on the target.
    DependsOn,
    /// `dependencyOf`: the inverse of `dependsOn`.
    DependencyOf,
    /// `memberOf`: a user is a member of a group.
    MemberOf,
    /// `hasMember`: the inverse of `memberOf`.
    HasMember,
    /// `childOf`: a group is a child of another group.
    ChildOf,
    /// `parentOf`: the inverse of `childOf`.
    ParentOf,
    /// Any other type, as written.
    Other(String),
}

impl RelationType {
    /// The wire name, e.g. `ownedBy`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(name) => name,
            built_in => built_in.built_in_name().unwrap_or_default(),
        }
    }

    /// The type of the same fact seen from the other end, for built-in types.
    pub fn inverse(&self) -> Option<Self> {
        Some(match self {
            Self::OwnedBy => Self::OwnerOf,
            Self::OwnerOf => Self::OwnedBy,
            Self::PartOf => Self::HasPart,
            Self::HasPart => Self::PartOf,
            Self::ProvidesApi => Self::ApiProvidedBy,
            Self::ApiProvidedBy => Self::ProvidesApi,
            Self::ConsumesApi => Self::ApiConsumedBy,
            Self::ApiConsumedBy => Self::ConsumesApi,
            Self::DependsOn => Self::DependencyOf,
            Self::DependencyOf => Self::DependsOn,
            Self::MemberOf => Self::HasMember,
            Self::HasMember => Self::MemberOf,
            Self::ChildOf => Self::ParentOf,
            Self::ParentOf => Self::ChildOf,
            Self::Other(_) => return None,
        })
    }

    /// The inverse of a built-in type named as written (`ownedBy` → `ownerOf`), without building
    /// a [`RelationType`]: for code that handles relations as text, such as the read models'
    /// packing. `None` for other types.
    pub fn inverse_name(name: &str) -> Option<&'static str> {
        Self::BUILT_IN
            .iter()
            .find(|t| t.built_in_name() == Some(name))?
            .inverse()?
            .built_in_name()
    }

    /// The name of a built-in type (`None` for [`RelationType::Other`]).
    fn built_in_name(&self) -> Option<&'static str> {
        Some(match self {
            Self::OwnedBy => "ownedBy",
            Self::OwnerOf => "ownerOf",
            Self::PartOf => "partOf",
            Self::HasPart => "hasPart",
            Self::ProvidesApi => "providesApi",
            Self::ApiProvidedBy => "apiProvidedBy",
            Self::ConsumesApi => "consumesApi",
            Self::ApiConsumedBy => "apiConsumedBy",
            Self::DependsOn => "dependsOn",
            Self::DependencyOf => "dependencyOf",
            Self::MemberOf => "memberOf",
            Self::HasMember => "hasMember",
            Self::ChildOf => "childOf",
            Self::ParentOf => "parentOf",
            Self::Other(_) => return None,
        })
    }

    /// Every built-in type.
    pub const BUILT_IN: [RelationType; 14] = [
        Self::OwnedBy,
        Self::OwnerOf,
        Self::PartOf,
        Self::HasPart,
        Self::ProvidesApi,
        Self::ApiProvidedBy,
        Self::ConsumesApi,
        Self::ApiConsumedBy,
        Self::DependsOn,
        Self::DependencyOf,
        Self::MemberOf,
        Self::HasMember,
        Self::ChildOf,
        Self::ParentOf,
    ];
}

impl FromStr for RelationType {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::BUILT_IN
            .iter()
            .find(|t| t.as_str() == text)
            .cloned()
            .unwrap_or_else(|| Self::Other(text.to_owned())))
    }
}

impl fmt::Display for RelationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RelationType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RelationType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(text.parse().unwrap_or_else(|never| match never {}))
    }
}

/// One directed relation row: `source --type--> target`. The target need not exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Relation {
    /// The relation type.
    #[serde(rename = "type")]
    pub kind: RelationType,
    /// The entity the relation starts from.
    #[serde(rename = "sourceRef")]
    pub source: EntityRef,
    /// The entity the relation points at.
    #[serde(rename = "targetRef")]
    pub target: EntityRef,
}

impl Relation {
    /// The sort order of `callboard validate` and of Backstage's stitched `relations`: type, then
    /// target, then source.
    pub fn sort_key(&self) -> (&str, &EntityRef, &EntityRef) {
        (self.kind.as_str(), &self.target, &self.source)
    }
}

/// Sorts relations by type, target and source and removes duplicates, as the stitcher does.
pub fn normalize(relations: &mut Vec<Relation>) {
    relations.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    relations.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_type_has_its_inverse_by_name() {
        for t in RelationType::BUILT_IN {
            let inverse = t.inverse().expect("built-in types have inverses");
            assert_eq!(RelationType::inverse_name(t.as_str()), Some(inverse.as_str()));
            assert_eq!(t.as_str().parse::<RelationType>().ok(), Some(t));
        }
        assert_eq!(RelationType::inverse_name("custom"), None);
        assert_eq!(RelationType::Other("custom".into()).as_str(), "custom");
    }
}
