//! Field paths inside an entity document, such as `spec.owner` or `metadata.tags[2]`.
//!
//! Every diagnostic carries one, so a user can find the broken field; the YAML layer turns a path
//! back into a line and column.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A path from the document root to a field. The empty path is the root itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub(crate) Vec<Segment>);

impl FieldPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by an object key.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path extended by an array index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The segments from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// True for the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as a JSON Pointer (RFC 6901), the form JSON Schema tools print.
    pub fn to_json_pointer(&self) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            out.push('/');
            match segment {
                Segment::Key(key) => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
                Segment::Index(index) => out.push_str(&index.to_string()),
            }
        }
        out
    }
}

impl<S: Into<String>> FromIterator<S> for FieldPath {
    fn from_iter<T: IntoIterator<Item = S>>(iter: T) -> Self {
        Self(iter.into_iter().map(|s| Segment::Key(s.into())).collect())
    }
}

/// Dotted form for people: `spec.providesApis[1]`, `metadata.annotations["backstage.io/x"]`.
impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    let plain = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
                    if plain {
                        if i > 0 {
                            f.write_str(".")?;
                        }
                        f.write_str(key)?;
                    } else {
                        write!(f, "[{key:?}]")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_pointer() {
        let path = FieldPath::root()
            .key("metadata")
            .key("annotations")
            .key("backstage.io/x");
        assert_eq!(path.to_string(), r#"metadata.annotations["backstage.io/x"]"#);
        assert_eq!(path.to_json_pointer(), "/metadata/annotations/backstage.io~1x");
        let path = FieldPath::root().key("spec").key("dependsOn").index(2);
        assert_eq!(path.to_string(), "spec.dependsOn[2]");
        assert_eq!(FieldPath::root().to_string(), "<root>");
    }
}

/// A borrowed, allocation-free path used while checking: each level lives on the stack of the
/// code that descends into it, and a [`FieldPath`] is only built when a diagnostic needs one.
/// (Building owned paths for every field checked cost a third of the validator's time.)
#[derive(Debug, Clone, Copy)]
pub(crate) enum Loc<'a> {
    /// The document root.
    Root,
    /// A key below a parent.
    Key(&'a Loc<'a>, &'a str),
    /// An index below a parent.
    Index(&'a Loc<'a>, usize),
}

impl Loc<'_> {
    /// The owned path.
    pub(crate) fn to_path(self) -> FieldPath {
        let mut segments = Vec::new();
        let mut at = self;
        loop {
            match at {
                Loc::Root => break,
                Loc::Key(parent, key) => {
                    segments.push(Segment::Key(key.to_owned()));
                    at = *parent;
                }
                Loc::Index(parent, index) => {
                    segments.push(Segment::Index(index));
                    at = *parent;
                }
            }
        }
        segments.reverse();
        FieldPath(segments)
    }
}

impl From<Loc<'_>> for FieldPath {
    fn from(loc: Loc<'_>) -> Self {
        loc.to_path()
    }
}

impl fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_path().fmt(f)
    }
}
