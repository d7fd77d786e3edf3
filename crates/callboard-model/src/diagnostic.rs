//! Diagnostics: what is wrong with a document, where, and which rule it broke.

use std::fmt;

use crate::path::FieldPath;

/// The rule a document broke. The [`Rule::code`] strings are a public contract: they appear in
/// `callboard validate` output, in `entity.rejected` events and in the API, so tools can match on
/// them. Add rules freely; never rename a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The bytes are not valid UTF-8.
    InvalidUtf8,
    /// The YAML could not be parsed.
    YamlSyntax,
    /// A mapping has the same key twice.
    YamlDuplicateKey,
    /// Aliases expand beyond the limit that protects against "billion laughs" documents.
    YamlAliasLimit,
    /// Collections nest deeper than the limit.
    YamlDepthLimit,
    /// The document is larger than the limit.
    YamlSizeLimit,
    /// An alias names an anchor that was never defined.
    YamlUnknownAnchor,
    /// The document root is not a mapping.
    RootNotObject,
    /// A required field is missing.
    Required,
    /// A field has the wrong JSON type.
    Type,
    /// A string is empty where it must not be, or an array has too few items.
    MinLength,
    /// A number is below its minimum.
    Minimum,
    /// A value is not one of the allowed values.
    Enum,
    /// A field is not allowed at this place.
    AdditionalProperty,
    /// A root field other than `apiVersion`, `kind`, `metadata` and `spec`.
    ForeignRootField,
    /// A field breaks Backstage's format rule for it (names, namespaces, tags, keys, URLs ...).
    Format,
    /// No built-in kind matches the `apiVersion` and `kind` pair.
    UnknownKind,
    /// A Location uses a location type that cannot be read.
    UnsupportedLocationType,
    /// An entity reference is malformed.
    InvalidRef,
    /// An entity reference has no kind where the field has no default kind.
    RefMissingKind,
    /// A `$text`, `$json` or `$yaml` placeholder could not be resolved.
    Placeholder,
    /// Reading a URL or file was refused by the allowlist.
    NotAllowed,
}

impl Rule {
    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Rule::InvalidUtf8 => "encoding.utf8",
            Rule::YamlSyntax => "yaml.syntax",
            Rule::YamlDuplicateKey => "yaml.duplicate-key",
            Rule::YamlAliasLimit => "yaml.alias-limit",
            Rule::YamlDepthLimit => "yaml.depth-limit",
            Rule::YamlSizeLimit => "yaml.size-limit",
            Rule::YamlUnknownAnchor => "yaml.unknown-anchor",
            Rule::RootNotObject => "document.not-an-object",
            Rule::Required => "schema.required",
            Rule::Type => "schema.type",
            Rule::MinLength => "schema.min-length",
            Rule::Minimum => "schema.minimum",
            Rule::Enum => "schema.enum",
            Rule::AdditionalProperty => "schema.additional-property",
            Rule::ForeignRootField => "policy.foreign-root-field",
            Rule::Format => "policy.field-format",
            Rule::UnknownKind => "kind.unknown",
            Rule::UnsupportedLocationType => "location.unsupported-type",
            Rule::InvalidRef => "ref.malformed",
            Rule::RefMissingKind => "ref.missing-kind",
            Rule::Placeholder => "placeholder.unresolved",
            Rule::NotAllowed => "read.not-allowed",
        }
    }

    /// A default hint telling the author how to fix the problem.
    pub fn default_hint(self) -> Option<&'static str> {
        Some(match self {
            Rule::InvalidUtf8 => "save the file as UTF-8",
            Rule::YamlDuplicateKey => "remove or rename one of the two keys",
            Rule::YamlAliasLimit => "use fewer aliases; this limit protects against alias bombs",
            Rule::YamlDepthLimit => "flatten the document",
            Rule::YamlSizeLimit => "split the document or move large content into a $text placeholder",
            Rule::RootNotObject => "a descriptor document must be a mapping with apiVersion, kind, metadata and spec",
            Rule::ForeignRootField => "only apiVersion, kind, metadata and spec may be written at the root",
            Rule::UnknownKind => {
                "built-in kinds are Component, API, Resource, System, Domain, Group, User and \
                 Location (apiVersion backstage.io/v1alpha1 or v1beta1), and Template \
                 (scaffolder.backstage.io/v1beta3); kind names are case-sensitive"
            }
            Rule::UnsupportedLocationType => "use type url or file",
            Rule::RefMissingKind => "prefix the reference with its kind, e.g. component:my-service",
            Rule::YamlSyntax => {
                "templating syntax such as {% %} or ${{ }} is not valid outside quotes; quote the value"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One problem with one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The rule that was broken.
    pub rule: Rule,
    /// The field at fault (the parent object for a missing field).
    pub path: FieldPath,
    /// What is wrong, in words, naming the field.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the rule's default hint.
    pub fn new(rule: Rule, path: impl Into<FieldPath>, message: impl Into<String>) -> Self {
        Self {
            rule,
            path: path.into(),
            message: message.into(),
            hint: rule.default_hint().map(str::to_owned),
        }
    }

    /// Replaces the hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.rule.code())
    }
}
