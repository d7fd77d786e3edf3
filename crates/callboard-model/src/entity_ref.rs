//! Entity references: `[<kind>:][<namespace>/]<name>`.
//!
//! Parsing follows Backstage's `parseEntityRef`: the first `:` ends the kind unless a `/` comes
//! before it, the first `/` ends the namespace, and the name is everything after; present but
//! empty parts are errors; missing parts take the caller's defaults. Identity is
//! case-insensitive, so an [`EntityRef`] keeps the lowercased canonical parts only; authors'
//! casing lives in the entity body.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The namespace an entity belongs to when it names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why a reference could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// The reference was the empty string.
    #[error("entity reference must not be empty")]
    Empty,
    /// A present part was empty, as in `component:` or `ns/`.
    #[error("entity reference {0:?} is not of the form [<kind>:][<namespace>/]<name>")]
    Malformed(String),
    /// No kind was written and the field has no default kind.
    #[error(
        "entity reference {0:?} has no kind and this field has no default kind; write it as \
         <kind>:{0} (for example component:{0})"
    )]
    MissingKind(String),
}

/// Defaults applied to the parts a reference leaves out.
#[derive(Debug, Clone, Copy)]
pub struct RefContext<'a> {
    /// Kind used when the reference has none; `None` makes a kind mandatory.
    pub default_kind: Option<&'a str>,
    /// Namespace used when the reference has none. Backstage uses the *referring* entity's
    /// namespace here, not `default`.
    pub default_namespace: &'a str,
}

impl Default for RefContext<'_> {
    fn default() -> Self {
        Self {
            default_kind: None,
            default_namespace: DEFAULT_NAMESPACE,
        }
    }
}

/// The parts of a reference string as written, before defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefParts<'a> {
    /// Text before the first `:` (if that colon comes before any `/`).
    pub kind: Option<&'a str>,
    /// Text between the kind and the first `/`.
    pub namespace: Option<&'a str>,
    /// Everything after the kind and namespace; may itself contain `:` or `/`.
    pub name: &'a str,
}

impl<'a> RefParts<'a> {
    /// Splits a reference string without applying defaults.
    pub fn split(text: &'a str) -> Result<Self, RefError> {
        if text.is_empty() {
            return Err(RefError::Empty);
        }
        let slash = text.find('/');
        let colon = match (text.find(':'), slash) {
            // A `/` before the first `:` means the colon belongs to the name.
            (Some(c), Some(s)) if s < c => None,
            (c, _) => c,
        };
        let kind = colon.map(|c| &text[..c]);
        let namespace = slash.map(|s| &text[colon.map_or(0, |c| c + 1)..s]);
        let name_start = match (colon, slash) {
            (Some(c), Some(s)) => (c + 1).max(s + 1),
            (Some(c), None) => c + 1,
            (None, Some(s)) => s + 1,
            (None, None) => 0,
        };
        let name = &text[name_start..];
        if kind == Some("") || namespace == Some("") || name.is_empty() {
            return Err(RefError::Malformed(text.to_owned()));
        }
        Ok(Self { kind, namespace, name })
    }
}

/// A full, canonical (lowercased) reference to an entity.
///
/// Invariants: every part is non-empty; the kind contains neither `:` nor `/`; the namespace
/// contains no `/`. Together they make [`fmt::Display`] and [`EntityRef::parse`] inverse.
///
/// It keeps its canonical text in one string, with the positions of the two separators: refs
/// travel through every port, cache and map of the system, where the text is what is compared,
/// hashed, stored and printed, so reading it costs nothing. Equality, hashing and ordering are
/// those of the text, which makes a ref usable as a `&str` key (`Borrow<str>`).
#[derive(Debug, Clone)]
pub struct EntityRef {
    text: String,
    /// Byte offset of the `:` after the kind.
    colon: u32,
    /// Byte offset of the `/` after the namespace.
    slash: u32,
}

impl EntityRef {
    /// Builds a reference from parts, lowercasing them.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Result<Self, RefError> {
        let malformed = || RefError::Malformed(format!("{kind}:{namespace}/{name}"));
        if kind.is_empty() || kind.contains([':', '/']) {
            return Err(malformed());
        }
        if namespace.is_empty() || namespace.contains('/') || name.is_empty() {
            return Err(malformed());
        }
        let mut text = String::with_capacity(kind.len() + namespace.len() + name.len() + 2);
        push_lower(&mut text, kind);
        let colon = text.len();
        text.push(':');
        push_lower(&mut text, namespace);
        let slash = text.len();
        text.push('/');
        push_lower(&mut text, name);
        // Lowercasing can change lengths outside ASCII, but never adds `:` or `/`, so the offsets
        // taken while building stay the separators'.
        Ok(Self {
            colon: colon as u32,
            slash: slash as u32,
            text,
        })
    }

    /// Parses a reference string, applying the context's defaults.
    pub fn parse(text: &str, context: RefContext<'_>) -> Result<Self, RefError> {
        let parts = RefParts::split(text)?;
        let kind = match parts.kind.or(context.default_kind) {
            Some(kind) if !kind.is_empty() => kind,
            _ => return Err(RefError::MissingKind(text.to_owned())),
        };
        let namespace = parts.namespace.unwrap_or(context.default_namespace);
        Self::new(kind, namespace, parts.name)
    }

    /// Parses the compound form `{kind?, namespace?, name}` with the context's defaults.
    pub fn from_compound(
        kind: Option<&str>,
        namespace: Option<&str>,
        name: &str,
        context: RefContext<'_>,
    ) -> Result<Self, RefError> {
        let kind = match kind.or(context.default_kind) {
            Some(kind) if !kind.is_empty() => kind,
            _ => return Err(RefError::MissingKind(name.to_owned())),
        };
        Self::new(kind, namespace.unwrap_or(context.default_namespace), name)
    }

    /// A ref from text that is already canonical (what Callboard itself stored or sent): taken
    /// as it is, without a copy, when it is; parsed (and lowercased) when it is not.
    pub fn from_canonical(text: String) -> Result<Self, RefError> {
        if let Some(colon) = text.find(':')
            && let Some(slash) = text[colon..].find('/').map(|s| s + colon)
            && colon > 0
            && slash > colon + 1
            && slash + 1 < text.len()
            && !text[..colon].contains('/')
            && !text.bytes().any(|b| b.is_ascii_uppercase())
            && text.is_ascii()
        {
            return Ok(Self {
                colon: colon as u32,
                slash: slash as u32,
                text,
            });
        }
        text.parse()
    }

    /// The canonical text, `kind:namespace/name` (what `to_string` gives), as an owned string.
    pub fn canonical(&self) -> String {
        self.text.clone()
    }

    /// The canonical text, `kind:namespace/name`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The canonical text, without a copy.
    pub fn into_string(self) -> String {
        self.text
    }

    /// The lowercased kind, e.g. `component`.
    pub fn kind(&self) -> &str {
        &self.text[..self.colon as usize]
    }

    /// The lowercased namespace, e.g. `default`.
    pub fn namespace(&self) -> &str {
        &self.text[self.colon as usize + 1..self.slash as usize]
    }

    /// The lowercased name.
    pub fn name(&self) -> &str {
        &self.text[self.slash as usize + 1..]
    }
}

/// Lowercasing as JavaScript's `toLocaleLowerCase('en-US')` does for the characters that occur in
/// practice; ASCII takes a fast path because nearly every ref is ASCII.
fn push_lower(out: &mut String, text: &str) {
    if text.is_ascii() {
        let start = out.len();
        out.push_str(text);
        out[start..].make_ascii_lowercase();
    } else {
        out.push_str(&text.to_lowercase());
    }
}

impl PartialEq for EntityRef {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for EntityRef {}

impl std::hash::Hash for EntityRef {
    // The text alone, as `str` hashes it: `Borrow<str>` lets maps keyed by refs be searched by
    // text.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl std::borrow::Borrow<str> for EntityRef {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for EntityRef {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// Ordered as the canonical strings are, so sorted output matches Backstage's string sorts.
impl Ord for EntityRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl PartialOrd for EntityRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<EntityRef> for String {
    fn from(r: EntityRef) -> Self {
        r.text
    }
}

/// Parses a *full* reference (`kind:namespace/name`, or `kind:name` in the default namespace).
impl FromStr for EntityRef {
    type Err = RefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text, RefContext::default())
    }
}

impl Serialize for EntityRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for EntityRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_canonical(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx<'a>(kind: Option<&'a str>, ns: &'a str) -> RefContext<'a> {
        RefContext {
            default_kind: kind,
            default_namespace: ns,
        }
    }

    #[test]
    fn parses_with_defaults() {
        let r = EntityRef::parse("team-a", ctx(Some("Group"), "ops")).unwrap();
        assert_eq!(r.to_string(), "group:ops/team-a");
        let r = EntityRef::parse("user:jdoe", ctx(Some("Group"), "ops")).unwrap();
        assert_eq!(r.to_string(), "user:ops/jdoe");
        let r = EntityRef::parse("Component:Default/MyService", ctx(None, "x")).unwrap();
        assert_eq!(r.to_string(), "component:default/myservice");
    }

    #[test]
    fn exotic_forms_follow_upstream() {
        let r = EntityRef::parse("component:default/a/b", ctx(None, "default")).unwrap();
        assert_eq!((r.kind(), r.namespace(), r.name()), ("component", "default", "a/b"));
        let r = EntityRef::parse("a:b:c", ctx(None, "default")).unwrap();
        assert_eq!((r.kind(), r.name()), ("a", "b:c"));
        let r = EntityRef::parse("ns/a:b", ctx(Some("k"), "default")).unwrap();
        assert_eq!((r.kind(), r.namespace(), r.name()), ("k", "ns", "a:b"));
    }

    #[test]
    fn errors() {
        assert_eq!(EntityRef::parse("", ctx(Some("k"), "d")), Err(RefError::Empty));
        for bad in [":x", "a:/x", "a/", "k:"] {
            assert!(
                matches!(EntityRef::parse(bad, ctx(Some("k"), "d")), Err(RefError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            EntityRef::parse("super-cool-backend", ctx(None, "default")),
            Err(RefError::MissingKind("super-cool-backend".into()))
        );
    }

    #[test]
    fn canonical_text_is_taken_as_it_is_and_other_text_parsed() {
        let r = EntityRef::from_canonical("component:default/a:b/c".into()).unwrap();
        assert_eq!((r.kind(), r.namespace(), r.name()), ("component", "default", "a:b/c"));
        let r = EntityRef::from_canonical("Component:x".into()).unwrap();
        assert_eq!(r.as_str(), "component:default/x");
        for bad in ["", "x", ":a/b", "k:/b", "k:a/"] {
            assert!(EntityRef::from_canonical(bad.into()).is_err(), "{bad}");
        }
        let map: std::collections::HashMap<EntityRef, i32> = [(r.clone(), 1)].into();
        assert_eq!(map.get("component:default/x"), Some(&1), "refs are found by their text");
    }

    #[test]
    fn compound() {
        let r = EntityRef::from_compound(None, Some("NS"), "x", ctx(Some("Group"), "d")).unwrap();
        assert_eq!(r.to_string(), "group:ns/x");
    }

    fn part(allow: &'static str) -> impl Strategy<Value = String> {
        proptest::string::string_regex(allow).expect("valid regex")
    }

    proptest! {
        /// Printing then parsing a canonical reference gives it back.
        #[test]
        fn display_parse_round_trip(
            kind in part("[A-Za-z0-9_.-]{1,12}"),
            namespace in part("[a-z0-9:._-]{1,12}"),
            name in part("[A-Za-z0-9:/._ -]{1,20}"),
        ) {
            let r = EntityRef::new(&kind, &namespace, &name).unwrap();
            let printed = r.to_string();
            let parsed: EntityRef = printed.parse().unwrap();
            prop_assert_eq!(&parsed, &r);
            prop_assert_eq!(parsed.to_string(), printed.clone());
            prop_assert_eq!(r.canonical(), printed);
        }

        /// Any string either parses or fails cleanly, and a parsed ref is already canonical.
        #[test]
        fn parse_never_panics(text in ".{0,40}") {
            if let Ok(r) = EntityRef::parse(&text, ctx(Some("component"), "default")) {
                let again: EntityRef = r.to_string().parse().unwrap();
                prop_assert_eq!(again, r);
            }
        }

        /// Ordering agrees with the ordering of the printed strings.
        #[test]
        fn order_matches_strings(a in part("[a-c:-]{1,3}"), b in part("[a-c:-]{1,3}")) {
            let x = EntityRef::parse(&a, ctx(Some("k"), "d")).ok();
            let y = EntityRef::parse(&b, ctx(Some("k-"), "d")).ok();
            if let (Some(x), Some(y)) = (x, y) {
                prop_assert_eq!(x.cmp(&y), x.to_string().cmp(&y.to_string()));
            }
        }

        /// Short forms expand with the context's defaults.
        #[test]
        fn defaults_fill_missing_parts(name in part("[a-z0-9][a-z0-9-]{0,10}"), ns in part("[a-z]{1,6}")) {
            let r = EntityRef::parse(&name, ctx(Some("Group"), &ns)).unwrap();
            prop_assert_eq!(r.to_string(), format!("group:{ns}/{name}"));
        }
    }
}
