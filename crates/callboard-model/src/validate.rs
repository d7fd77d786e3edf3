//! Validation: Backstage's processing rules for one entity document, in Backstage's order.
//!
//! 1. **Envelope** (`EntityEnvelope.schema.json`): `apiVersion`, `kind`, `metadata.name` present
//!    and non-empty strings. Only after this stage does the document have an identity.
//! 2. **Entity schema** (`SchemaValidEntityPolicy`): root fields and `metadata` field types.
//! 3. **No foreign root fields**: only `apiVersion`, `kind`, `metadata`, `spec`.
//! 4. **Field formats** (`FieldFormatEntityPolicy`): names, namespaces, keys, tags, links.
//! 5. **Kind** (`BuiltinKindsEntityProcessor`, `ScaffolderEntitiesProcessor`): the
//!    `apiVersion`/`kind` pair must be built in, and `spec` must match that kind.
//! 6. **References**: every reference field must parse with its default kind.
//!
//! Each stage reports every problem it finds; a later stage runs only when earlier ones passed,
//! so the first reported problems are the ones Backstage would report.

use serde_json::{Map, Value};

use crate::check::{Checker, type_name};
use crate::diagnostic::{Diagnostic, Rule};
use crate::entity::*;
use crate::entity_ref::{DEFAULT_NAMESPACE, EntityRef, RefContext, RefError};
use crate::format;
use crate::path::Loc;
use crate::relations::{Relation, RelationType, normalize};

/// What the envelope stage learns about a document: enough to name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`, as written.
    pub kind: String,
    /// `metadata.name`, as written.
    pub name: String,
    /// `metadata.namespace`, if written.
    pub namespace: Option<String>,
}

impl Envelope {
    /// The lowercased `kind:namespace/name` string, as Backstage prints it even for invalid
    /// entities (so it may not satisfy [`EntityRef`]'s invariants).
    pub fn ref_string(&self) -> String {
        let namespace = self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        format!("{}:{}/{}", self.kind, namespace, self.name).to_lowercase()
    }
}

/// A document that failed validation: why, and as much identity as could be established.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The `kind` field, when it is a string.
    pub kind: Option<String>,
    /// The envelope, when the envelope stage passed.
    pub envelope: Option<Envelope>,
    /// At least one diagnostic.
    pub diagnostics: Vec<Diagnostic>,
}

impl Rejection {
    /// The lowercased entity ref string, when the envelope was valid.
    pub fn ref_string(&self) -> Option<String> {
        self.envelope.as_ref().map(Envelope::ref_string)
    }
}

/// The `kind` field of a document, when it is a string.
pub fn kind_of(document: &Value) -> Option<&str> {
    document.get("kind").and_then(Value::as_str)
}

/// Stage 1: the envelope.
pub fn check_envelope(document: &Value) -> Result<Envelope, Vec<Diagnostic>> {
    let mut ck = Checker::default();
    let root = Loc::Root;
    let Some(object) = ck.as_object(document, root) else {
        return Err(ck.diagnostics);
    };
    let api_version = ck.string(object, "apiVersion", root, true, true);
    let kind = ck.string(object, "kind", root, true, true);
    let metadata = ck.object(object, "metadata", root, true);
    let meta_path = Loc::Key(&root, "metadata");
    let (name, namespace) = match metadata {
        Some(m) => (
            ck.string(m, "name", meta_path, true, true),
            ck.string(m, "namespace", meta_path, false, true),
        ),
        None => (None, None),
    };
    match (api_version, kind, name) {
        (Some(api_version), Some(kind), Some(name)) if ck.is_clean() => Ok(Envelope {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
        }),
        _ => Err(ck.diagnostics),
    }
}

/// Validates a document (after placeholders were resolved) and builds the typed entity.
pub fn validate(document: Value) -> Result<Entity, Box<Rejection>> {
    let kind = kind_of(&document).map(str::to_owned);
    let reject = |envelope: Option<Envelope>, diagnostics| {
        Box::new(Rejection {
            kind: kind.clone(),
            envelope,
            diagnostics,
        })
    };

    let envelope = check_envelope(&document).map_err(|d| reject(None, d))?;
    let Value::Object(mut root) = document else {
        unreachable!("check_envelope accepted a non-object")
    };
    let fail = |diagnostics: Vec<Diagnostic>| reject(Some(envelope.clone()), diagnostics);

    let mut ck = Checker::default();
    let metadata = check_entity_schema(&root, &mut ck);
    if !ck.is_clean() {
        return Err(fail(ck.diagnostics));
    }
    check_foreign_root_fields(&root, &mut ck);
    if !ck.is_clean() {
        return Err(fail(ck.diagnostics));
    }
    check_field_formats(&root, &mut ck);
    if !ck.is_clean() {
        return Err(fail(ck.diagnostics));
    }
    let Some(metadata) = metadata else {
        unreachable!("metadata is checked by the entity schema stage")
    };

    let Some(kind) = Kind::from_pair(&envelope.api_version, &envelope.kind) else {
        let diagnostic = Diagnostic::new(
            Rule::UnknownKind,
            Loc::Key(&Loc::Root, "kind"),
            format!(
                "no built-in kind matches kind {:?} with apiVersion {:?}",
                envelope.kind, envelope.api_version
            ),
        );
        return Err(fail(vec![diagnostic]));
    };

    let mut refs = RefCollector {
        namespace: &metadata.namespace,
        diagnostics: Vec::new(),
    };
    let spec = match root.get("spec") {
        None => {
            ck.push(Diagnostic::new(
                Rule::Required,
                Loc::Root,
                "missing required field spec",
            ));
            None
        }
        Some(spec) => check_spec(kind, spec, &mut ck, &mut refs),
    };
    if !ck.is_clean() {
        return Err(fail(ck.diagnostics));
    }
    if !refs.diagnostics.is_empty() {
        return Err(fail(refs.diagnostics));
    }
    let Some(spec) = spec else {
        unreachable!("a clean spec check yields a spec")
    };

    let entity_ref = match EntityRef::new(kind.as_str(), &metadata.namespace, &metadata.name) {
        Ok(r) => r,
        // Unreachable in practice: the field-format stage already restricted every part.
        Err(e) => {
            return Err(fail(vec![Diagnostic::new(Rule::InvalidRef, Loc::Root, e.to_string())]));
        }
    };
    let relations = derive_relations(&entity_ref, &spec);

    // DefaultNamespaceEntityPolicy: the stored entity always names its namespace.
    if let Some(Value::Object(meta)) = root.get_mut("metadata")
        && !meta.contains_key("namespace")
    {
        meta.insert("namespace".into(), Value::String(DEFAULT_NAMESPACE.into()));
    }
    Ok(Entity {
        raw: root,
        entity_ref,
        api_version: envelope.api_version,
        metadata,
        spec,
        relations,
    })
}

/// Stage 2: root and `metadata` types (`Entity.schema.json`, `EntityMeta.schema.json`).
fn check_entity_schema(root: &Map<String, Value>, ck: &mut Checker) -> Option<Metadata> {
    const ROOT_FIELDS: [&str; 6] = ["apiVersion", "kind", "metadata", "spec", "relations", "status"];
    let path = Loc::Root;
    for key in root.keys() {
        if !ROOT_FIELDS.contains(&key.as_str()) {
            ck.push(Diagnostic::new(
                Rule::AdditionalProperty,
                Loc::Key(&path, key),
                format!("unexpected root field {key:?}; a descriptor has apiVersion, kind, metadata and spec"),
            ));
        }
    }
    if let Some(spec) = root.get("spec") {
        ck.as_object(spec, Loc::Key(&path, "spec"));
    }
    if let Some(relations) = ck.array(root, "relations", path, false) {
        for (i, relation) in relations.iter().enumerate() {
            let relations_at = Loc::Key(&path, "relations");
            let p = Loc::Index(&relations_at, i);
            if let Some(r) = ck.as_object(relation, p) {
                ck.string(r, "type", p, true, true);
                ck.string(r, "targetRef", p, false, true);
            }
        }
    }
    if let Some(status) = ck.object(root, "status", path, false) {
        ck.array(status, "items", Loc::Key(&path, "status"), false);
    }

    let meta_path = Loc::Key(&path, "metadata");
    let meta = ck.object(root, "metadata", path, true)?;
    ck.string(meta, "uid", meta_path, false, true);
    ck.string(meta, "etag", meta_path, false, true);
    // `generation` is no longer typed by upstream's EntityMeta schema: any value passes.
    let name = ck.string(meta, "name", meta_path, true, true);
    let namespace = ck.string(meta, "namespace", meta_path, false, true);
    let title = ck.string(meta, "title", meta_path, false, true);
    let description = ck.string(meta, "description", meta_path, false, false);
    let labels = ck.string_map(meta, "labels", meta_path);
    let annotations = ck.string_map(meta, "annotations", meta_path);
    let tags = ck.string_array(meta, "tags", meta_path, false, true);
    let mut links = Vec::new();
    if let Some(items) = ck.array(meta, "links", meta_path, false) {
        for (i, item) in items.iter().enumerate() {
            let links_at = Loc::Key(&meta_path, "links");
            let p = Loc::Index(&links_at, i);
            if let Some(link) = ck.as_object(item, p) {
                let url = ck.string(link, "url", p, true, true);
                let title = ck.string(link, "title", p, false, true);
                let icon = ck.string(link, "icon", p, false, true);
                let link_type = ck.string(link, "type", p, false, true);
                if let Some(url) = url {
                    links.push(Link {
                        url: url.to_owned(),
                        title: title.map(str::to_owned),
                        icon: icon.map(str::to_owned),
                        link_type: link_type.map(str::to_owned),
                    });
                }
            }
        }
    }
    let owned = |pairs: Option<Vec<(&str, &str)>>| {
        pairs
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    Some(Metadata {
        name: name?.to_owned(),
        namespace: namespace.unwrap_or(DEFAULT_NAMESPACE).to_owned(),
        title: title.map(str::to_owned),
        description: description.map(str::to_owned),
        labels: owned(labels),
        annotations: owned(annotations),
        tags: tags.unwrap_or_default().into_iter().map(str::to_owned).collect(),
        links,
    })
}

/// Stage 3: `NoForeignRootFieldsEntityPolicy`.
fn check_foreign_root_fields(root: &Map<String, Value>, ck: &mut Checker) {
    for key in root.keys() {
        if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "spec") {
            ck.push(Diagnostic::new(
                Rule::ForeignRootField,
                Loc::Key(&Loc::Root, key),
                format!("root field {key:?} is set by the catalog and cannot be written in a descriptor"),
            ));
        }
    }
}

const NAME_RULE: &str = "sequences of [a-zA-Z0-9] separated by any of [-_.], at most 63 characters in total";
const DNS_RULE: &str = "sequences of [a-z0-9] separated by [-], at most 63 characters in total";
const PREFIX_RULE: &str = "a valid prefix and/or suffix: [<dns-subdomain>/]<name>";
const TAG_RULE: &str = "sequences of [a-z0-9:+#] separated by [-], at most 63 characters in total";

/// Stage 4: `FieldFormatEntityPolicy`, on the raw JSON (types were checked by stage 2).
fn check_field_formats(root: &Map<String, Value>, ck: &mut Checker) {
    let mut bad = |at: Loc<'_>, value: &str, expected: &str| {
        let path = at.to_path();
        ck.push(Diagnostic::new(
            Rule::Format,
            path.clone(),
            format!("{path} {value:?} is not valid; expected {expected}"),
        ));
    };
    let root_path = Loc::Root;
    if let Some(Value::String(v)) = root.get("apiVersion")
        && !format::is_api_version(v)
    {
        bad(
            Loc::Key(&root_path, "apiVersion"),
            v,
            "a valid prefix and/or suffix, e.g. backstage.io/v1alpha1",
        );
    }
    if let Some(Value::String(v)) = root.get("kind")
        && !format::is_kind(v)
    {
        bad(
            Loc::Key(&root_path, "kind"),
            v,
            "a letter followed by letters and digits, at most 63 characters",
        );
    }
    let Some(Value::Object(meta)) = root.get("metadata") else {
        return;
    };
    let meta_path = Loc::Key(&root_path, "metadata");
    if let Some(Value::String(v)) = meta.get("name")
        && !format::is_object_name(v)
    {
        bad(Loc::Key(&meta_path, "name"), v, NAME_RULE);
    }
    if let Some(Value::String(v)) = meta.get("namespace")
        && !format::is_dns_label(v)
    {
        bad(Loc::Key(&meta_path, "namespace"), v, DNS_RULE);
    }
    for field in ["labels", "annotations"] {
        let Some(Value::Object(map)) = meta.get(field) else {
            continue;
        };
        for (key, value) in map {
            let path = Loc::Key(&Loc::Key(&meta_path, field), key);
            if !format::is_label_key(key) {
                bad(path, key, PREFIX_RULE);
            }
            match value {
                Value::String(v) if field == "labels" && !format::is_label_value(v) => {
                    bad(
                        path,
                        v,
                        "an empty string or sequences of [a-zA-Z0-9] separated by any of [-_.]",
                    );
                }
                Value::String(_) => {}
                other => ck_type_in_format(&mut bad, path, other),
            }
        }
    }
    if let Some(Value::Array(tags)) = meta.get("tags") {
        for (i, tag) in tags.iter().enumerate() {
            if let Value::String(v) = tag
                && !format::is_tag(v)
            {
                bad(Loc::Index(&Loc::Key(&meta_path, "tags"), i), v, TAG_RULE);
            }
        }
    }
    if let Some(Value::Array(links)) = meta.get("links") {
        for (i, link) in links.iter().enumerate() {
            let path = Loc::Index(&Loc::Key(&meta_path, "links"), i);
            if let Some(Value::String(url)) = link.get("url")
                && !format::is_url(url)
            {
                bad(Loc::Key(&path, "url"), url, "an absolute URL");
            }
            if let Some(Value::String(title)) = link.get("title")
                && !format::is_non_empty_trimmed(title)
            {
                bad(Loc::Key(&path, "title"), title, "a non-empty string");
            }
            if let Some(Value::String(icon)) = link.get("icon")
                && !format::is_non_empty_trimmed(icon)
            {
                bad(Loc::Key(&path, "icon"), icon, "a non-empty string");
            }
        }
    }
}

/// Only reachable for the empty key, whose value the schema stage does not type-check.
fn ck_type_in_format(bad: &mut impl FnMut(Loc<'_>, &str, &str), at: Loc<'_>, value: &Value) {
    bad(at, &value.to_string(), "a string");
}

/// Parses reference fields and remembers reference errors separately from schema errors, so
/// they are reported only when the spec's shape is right (Backstage finds them later, while
/// emitting relations).
struct RefCollector<'a> {
    namespace: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl RefCollector<'_> {
    fn error(&mut self, rule: Rule, at: Loc<'_>, message: impl std::fmt::Display) {
        let path = at.to_path();
        let text = format!("{path}: {message}");
        self.diagnostics.push(Diagnostic::new(rule, path, text));
    }

    fn parse(&mut self, text: &str, default_kind: Option<&str>, at: Loc<'_>) -> Option<EntityRef> {
        let context = RefContext {
            default_kind,
            default_namespace: self.namespace,
        };
        match EntityRef::parse(text, context) {
            Ok(r) => Some(r),
            Err(error) => {
                let rule = match error {
                    RefError::MissingKind(_) => Rule::RefMissingKind,
                    RefError::Empty | RefError::Malformed(_) => Rule::InvalidRef,
                };
                self.error(rule, at, error);
                None
            }
        }
    }

    fn one(&mut self, text: Option<&str>, default_kind: Option<&str>, parent: Loc<'_>, key: &str) -> Option<EntityRef> {
        self.parse(text?, default_kind, Loc::Key(&parent, key))
    }

    /// A reference field the kind schema does not type (Component and Resource `dependencyOf`):
    /// like upstream's `[targets].flat()`, it takes falsy values as "none", a string or compound
    /// object as one reference, and an array as several.
    fn loose(
        &mut self,
        value: Option<&Value>,
        default_kind: Option<&str>,
        parent: Loc<'_>,
        key: &str,
    ) -> Vec<EntityRef> {
        let Some(value) = value else {
            return Vec::new();
        };
        let falsy = match value {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            _ => false,
        };
        if falsy {
            return Vec::new();
        }
        let at = Loc::Key(&parent, key);
        let mut out = Vec::new();
        let single = [value.clone()];
        let (items, indexed) = match value {
            Value::Array(items) => (items.as_slice(), true),
            _ => (&single[..], false),
        };
        for (i, item) in items.iter().enumerate() {
            let item_at = if indexed { Loc::Index(&at, i) } else { at };
            let parsed = match item {
                Value::String(text) => self.parse(text, default_kind, item_at),
                Value::Object(compound) => self.compound(compound, default_kind, item_at),
                _ => {
                    self.error(
                        Rule::InvalidRef,
                        item_at,
                        "entity reference must be a string or {kind, namespace, name}",
                    );
                    None
                }
            };
            out.extend(parsed);
        }
        out
    }

    fn compound(&mut self, object: &Map<String, Value>, default_kind: Option<&str>, at: Loc<'_>) -> Option<EntityRef> {
        let part = |key: &str| object.get(key).and_then(Value::as_str);
        let Some(name) = part("name").filter(|n| !n.is_empty()) else {
            self.error(Rule::InvalidRef, at, "entity reference has a missing or empty name");
            return None;
        };
        let context = RefContext {
            default_kind,
            default_namespace: self.namespace,
        };
        match EntityRef::from_compound(part("kind"), part("namespace"), name, context) {
            Ok(r) => Some(r),
            Err(error) => {
                let rule = if matches!(error, RefError::MissingKind(_)) {
                    Rule::RefMissingKind
                } else {
                    Rule::InvalidRef
                };
                self.error(rule, at, error);
                None
            }
        }
    }

    fn many(
        &mut self,
        texts: Option<Vec<&str>>,
        default_kind: Option<&str>,
        parent: Loc<'_>,
        key: &str,
    ) -> Vec<EntityRef> {
        let at = Loc::Key(&parent, key);
        let mut out = Vec::new();
        for (i, text) in texts.unwrap_or_default().into_iter().enumerate() {
            out.extend(self.parse(text, default_kind, Loc::Index(&at, i)));
        }
        out
    }
}

/// Stage 5 and 6: the kind's spec schema, then its references.
fn check_spec(kind: Kind, spec: &Value, ck: &mut Checker, refs: &mut RefCollector<'_>) -> Option<Spec> {
    let p = Loc::Key(&Loc::Root, "spec");
    let s = ck.as_object(spec, p)?;
    let before = ck.diagnostics.len();
    // Reference fields are typed strings first; parsing them comes after the shape is known to
    // be right, so `unwrap_or_default` below only ever fills in after an error was recorded.
    macro_rules! string {
        ($key:literal, required) => {
            ck.string(s, $key, p, true, true)
        };
        ($key:literal) => {
            ck.string(s, $key, p, false, true)
        };
    }
    macro_rules! strings {
        ($key:literal, required) => {
            ck.string_array(s, $key, p, true, true)
        };
        ($key:literal) => {
            ck.string_array(s, $key, p, false, true)
        };
    }
    let owned = |v: Option<&str>| v.map(str::to_owned);
    let spec = match kind {
        Kind::Component => {
            let (t, lifecycle, owner) = (
                string!("type", required),
                string!("lifecycle", required),
                string!("owner", required),
            );
            let (system, sub) = (string!("system"), string!("subcomponentOf"));
            let (provides, consumes) = (strings!("providesApis"), strings!("consumesApis"));
            let depends_on = strings!("dependsOn");
            if ck.diagnostics.len() > before {
                return None;
            }
            Spec::Component(ComponentSpec {
                component_type: owned(t)?,
                lifecycle: owned(lifecycle)?,
                owner: refs.one(owner, Some("Group"), p, "owner")?,
                subcomponent_of: refs.one(sub, Some("Component"), p, "subcomponentOf"),
                provides_apis: refs.many(provides, Some("API"), p, "providesApis"),
                consumes_apis: refs.many(consumes, Some("API"), p, "consumesApis"),
                depends_on: refs.many(depends_on, None, p, "dependsOn"),
                dependency_of: refs.loose(s.get("dependencyOf"), None, p, "dependencyOf"),
                system: refs.one(system, Some("System"), p, "system"),
            })
        }
        Kind::Api => {
            let (t, lifecycle, owner) = (
                string!("type", required),
                string!("lifecycle", required),
                string!("owner", required),
            );
            let (definition, system) = (string!("definition", required), string!("system"));
            if ck.diagnostics.len() > before {
                return None;
            }
            Spec::Api(ApiSpec {
                api_type: owned(t)?,
                lifecycle: owned(lifecycle)?,
                owner: refs.one(owner, Some("Group"), p, "owner")?,
                definition: owned(definition)?,
                system: refs.one(system, Some("System"), p, "system"),
            })
        }
        Kind::Resource => {
            let (t, owner, system) = (string!("type", required), string!("owner", required), string!("system"));
            let depends_on = strings!("dependsOn");
            if ck.diagnostics.len() > before {
                return None;
            }
            Spec::Resource(ResourceSpec {
                resource_type: owned(t)?,
                owner: refs.one(owner, Some("Group"), p, "owner")?,
                depends_on: refs.many(depends_on, None, p, "dependsOn"),
                dependency_of: refs.loose(s.get("dependencyOf"), None, p, "dependencyOf"),
                system: refs.one(system, Some("System"), p, "system"),
            })
        }
        Kind::System => {
            let (owner, domain, t) = (string!("owner", required), string!("domain"), string!("type"));
            if ck.diagnostics.len() > before {
                return None;
            }
            Spec::System(SystemSpec {
                owner: refs.one(owner, Some("Group"), p, "owner")?,
                domain: refs.one(domain, Some("Domain"), p, "domain"),
                system_type: owned(t),
            })
        }
        Kind::Domain => {
            let (owner, sub, t) = (string!("owner", required), string!("subdomainOf"), string!("type"));
            if ck.diagnostics.len() > before {
                return None;
            }
            Spec::Domain(DomainSpec {
                owner: refs.one(owner, Some("Group"), p, "owner")?,
                subdomain_of: refs.one(sub, Some("Domain"), p, "subdomainOf"),
                domain_type: owned(t),
            })
        }
        Kind::Group => {
            let t = string!("type", required);
            let profile = check_profile(s, p, ck);
            let parent = string!("parent");
            let (children, members) = (strings!("children", required), strings!("members"));
            if ck.diagnostics.len() > before {
                return None;
            }
            Spec::Group(GroupSpec {
                group_type: owned(t)?,
                profile,
                parent: refs.one(parent, Some("Group"), p, "parent"),
                children: refs.many(children, Some("Group"), p, "children"),
                members: refs.many(members, Some("User"), p, "members"),
            })
        }
        Kind::User => {
            let profile = check_profile(s, p, ck);
            let member_of = strings!("memberOf", required);
            if ck.diagnostics.len() > before {
                return None;
            }
            Spec::User(UserSpec {
                profile,
                member_of: refs.many(member_of, Some("Group"), p, "memberOf"),
            })
        }
        Kind::Location => {
            let (t, target) = (string!("type"), string!("target"));
            let targets = strings!("targets");
            let presence = ck.enumerated(s, "presence", p, &["required", "optional"]);
            if ck.diagnostics.len() > before {
                return None;
            }
            Spec::Location(LocationSpec {
                location_type: owned(t),
                target: owned(target),
                targets: targets.unwrap_or_default().into_iter().map(str::to_owned).collect(),
                presence: if presence == Some("optional") {
                    Presence::Optional
                } else {
                    Presence::Required
                },
            })
        }
        Kind::Template => {
            let template = check_template(s, p, ck)?;
            if ck.diagnostics.len() > before {
                return None;
            }
            let TemplateParts {
                template_type,
                owner,
                lifecycle,
                parameters,
                steps,
                output,
            } = template;
            Spec::Template(TemplateSpec {
                template_type,
                owner: refs.one(owner.as_deref(), Some("Group"), p, "owner"),
                lifecycle,
                parameters,
                steps,
                output,
            })
        }
    };
    Some(spec)
}

fn check_profile(spec: &Map<String, Value>, p: Loc<'_>, ck: &mut Checker) -> Option<Profile> {
    let profile = ck.object(spec, "profile", p, false)?;
    let pp = Loc::Key(&p, "profile");
    Some(Profile {
        display_name: ck.string(profile, "displayName", pp, false, true).map(str::to_owned),
        email: ck.string(profile, "email", pp, false, true).map(str::to_owned),
        picture: ck.string(profile, "picture", pp, false, true).map(str::to_owned),
    })
}

struct TemplateParts {
    template_type: String,
    owner: Option<String>,
    lifecycle: Option<String>,
    parameters: Option<Value>,
    steps: Vec<TemplateStep>,
    output: Option<Map<String, Value>>,
}

/// `Template.v1beta3.schema.json` of the scaffolder. Only `output` restricts extra fields.
fn check_template(s: &Map<String, Value>, p: Loc<'_>, ck: &mut Checker) -> Option<TemplateParts> {
    let template_type = ck.string(s, "type", p, true, true);
    let owner = ck.string(s, "owner", p, false, true);
    let lifecycle = ck.string(s, "lifecycle", p, false, true);
    let parameters = s.get("parameters");
    if let Some(parameters) = parameters {
        let pp = Loc::Key(&p, "parameters");
        match parameters {
            Value::Object(page) => check_permissions(page, pp, ck),
            Value::Array(pages) => {
                for (i, page) in pages.iter().enumerate() {
                    if let Some(page) = ck.as_object(page, Loc::Index(&pp, i)) {
                        check_permissions(page, Loc::Index(&pp, i), ck);
                    }
                }
            }
            other => ck.push(Diagnostic::new(
                Rule::Type,
                pp,
                format!(
                    "{pp} must be an object or an array of objects, found {}",
                    type_name(other)
                ),
            )),
        }
    }
    if let Some(secrets) = ck.object(s, "secrets", p, false) {
        ck.object(secrets, "schema", Loc::Key(&p, "secrets"), false);
    }
    if let Some(presentation) = ck.object(s, "presentation", p, false) {
        let pp = Loc::Key(&p, "presentation");
        if let Some(labels) = ck.object(presentation, "buttonLabels", pp, false) {
            let lp = Loc::Key(&pp, "buttonLabels");
            for key in ["backButtonText", "createButtonText", "reviewButtonText"] {
                ck.string(labels, key, lp, false, false);
            }
        }
    }
    if let Some(recovery) = ck.object(s, "EXPERIMENTAL_recovery", p, false) {
        ck.string(
            recovery,
            "EXPERIMENTAL_strategy",
            Loc::Key(&p, "EXPERIMENTAL_recovery"),
            false,
            false,
        );
    }
    if let Some(decorators) = ck.array(s, "EXPERIMENTAL_formDecorators", p, false) {
        let decorators_at = Loc::Key(&p, "EXPERIMENTAL_formDecorators");
        for (i, item) in decorators.iter().enumerate() {
            let dp = Loc::Index(&decorators_at, i);
            if let Some(decorator) = ck.as_object(item, dp) {
                ck.string(decorator, "id", dp, false, false);
                ck.object(decorator, "input", dp, false);
            }
        }
    }
    let mut steps = Vec::new();
    if let Some(items) = ck.array(s, "steps", p, true) {
        let steps_at = Loc::Key(&p, "steps");
        for (i, item) in items.iter().enumerate() {
            let sp = Loc::Index(&steps_at, i);
            let Some(step) = ck.as_object(item, sp) else {
                continue;
            };
            let id = ck.string(step, "id", sp, false, false);
            let name = ck.string(step, "name", sp, false, false);
            let action = ck.string(step, "action", sp, true, false);
            let input = ck.object(step, "input", sp, false);
            let condition = step.get("if");
            check_condition(step, sp, ck);
            check_permissions(step, sp, ck);
            if let Some(action) = action {
                steps.push(TemplateStep {
                    id: id.map(str::to_owned),
                    name: name.map(str::to_owned),
                    action: action.to_owned(),
                    input: input.cloned(),
                    condition: condition.cloned(),
                    each: step.get("each").cloned(),
                });
            }
        }
    }
    let output = ck.object(s, "output", p, false).cloned();
    if let Some(output) = &output {
        let op = Loc::Key(&p, "output");
        for (key, value) in output {
            match key.as_str() {
                "links" | "text" => {
                    let Some(items) = ck.array(output, key, op, false) else {
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        let ip = Loc::Index(&Loc::Key(&op, key), i);
                        let Some(entry) = ck.as_object(item, ip) else {
                            continue;
                        };
                        check_condition(entry, ip, ck);
                        let fields: &[(&str, bool)] = if key == "links" {
                            &[("url", true), ("entityRef", true), ("title", true), ("icon", true)]
                        } else {
                            &[("title", true), ("icon", true), ("content", false)]
                        };
                        for (field, min1) in fields {
                            ck.string(entry, field, ip, false, *min1);
                        }
                    }
                }
                _ => {
                    ck.string_value(value, Loc::Key(&op, key), false);
                }
            }
        }
    }
    Some(TemplateParts {
        template_type: template_type?.to_owned(),
        owner: owner.map(str::to_owned),
        lifecycle: lifecycle.map(str::to_owned),
        parameters: parameters.cloned(),
        steps,
        output,
    })
}

/// `if`: a boolean or a template expression string.
fn check_condition(object: &Map<String, Value>, path: Loc<'_>, ck: &mut Checker) {
    if let Some(c) = object.get("if")
        && !matches!(c, Value::String(_) | Value::Bool(_))
    {
        let cp = Loc::Key(&path, "if");
        ck.push(Diagnostic::new(
            Rule::Type,
            cp,
            format!("{cp} must be a string or a boolean, found {}", type_name(c)),
        ));
    }
}

/// `backstage:permissions: {tags: [string]}` on parameter pages and steps.
fn check_permissions(object: &Map<String, Value>, path: Loc<'_>, ck: &mut Checker) {
    if let Some(permissions) = ck.object(object, "backstage:permissions", path, false) {
        ck.string_array(
            permissions,
            "tags",
            Loc::Key(&path, "backstage:permissions"),
            false,
            false,
        );
    }
}

/// The relation rows an entity's own fields produce (section 4.2 of the Backstage reference):
/// each reference yields the forward row and its inverse.
fn derive_relations(me: &EntityRef, spec: &Spec) -> Vec<Relation> {
    use RelationType as T;
    let mut out = Vec::new();
    let mut emit = |targets: &mut dyn Iterator<Item = &EntityRef>, forward: T| {
        for target in targets {
            let inverse = forward
                .inverse()
                .unwrap_or_else(|| unreachable!("built-in types have inverses"));
            out.push(Relation {
                kind: forward.clone(),
                source: me.clone(),
                target: target.clone(),
            });
            out.push(Relation {
                kind: inverse,
                source: target.clone(),
                target: me.clone(),
            });
        }
    };
    match spec {
        Spec::Component(s) => {
            emit(&mut std::iter::once(&s.owner), T::OwnedBy);
            emit(&mut s.subcomponent_of.iter(), T::PartOf);
            emit(&mut s.provides_apis.iter(), T::ProvidesApi);
            emit(&mut s.consumes_apis.iter(), T::ConsumesApi);
            emit(&mut s.depends_on.iter(), T::DependsOn);
            emit(&mut s.dependency_of.iter(), T::DependencyOf);
            emit(&mut s.system.iter(), T::PartOf);
        }
        Spec::Api(s) => {
            emit(&mut std::iter::once(&s.owner), T::OwnedBy);
            emit(&mut s.system.iter(), T::PartOf);
        }
        Spec::Resource(s) => {
            emit(&mut std::iter::once(&s.owner), T::OwnedBy);
            emit(&mut s.depends_on.iter(), T::DependsOn);
            emit(&mut s.dependency_of.iter(), T::DependencyOf);
            emit(&mut s.system.iter(), T::PartOf);
        }
        Spec::System(s) => {
            emit(&mut std::iter::once(&s.owner), T::OwnedBy);
            emit(&mut s.domain.iter(), T::PartOf);
        }
        Spec::Domain(s) => {
            emit(&mut std::iter::once(&s.owner), T::OwnedBy);
            emit(&mut s.subdomain_of.iter(), T::PartOf);
        }
        Spec::Group(s) => {
            emit(&mut s.parent.iter(), T::ChildOf);
            emit(&mut s.children.iter(), T::ParentOf);
            emit(&mut s.members.iter(), T::HasMember);
        }
        Spec::User(s) => emit(&mut s.member_of.iter(), T::MemberOf),
        Spec::Template(s) => emit(&mut s.owner.iter(), T::OwnedBy),
        Spec::Location(_) => {}
    }
    normalize(&mut out);
    out
}
