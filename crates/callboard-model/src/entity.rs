//! The typed entity: what a descriptor document becomes once it passed validation.
//!
//! An [`Entity`] can only be obtained from [`crate::validate`], so holding one proves the document
//! obeyed every rule; the raw JSON is kept alongside for the fields no type describes.

use serde_json::{Map, Value};

use crate::entity_ref::EntityRef;
use crate::relations::Relation;

/// The kinds Callboard knows, each tied to the `apiVersion`s that Backstage accepts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A piece of software: a service, website, library ...
    Component,
    /// An interface a component provides or consumes.
    Api,
    /// Infrastructure a component needs at runtime: a database, a bucket ...
    Resource,
    /// A collection of components, APIs and resources.
    System,
    /// A business area grouping systems.
    Domain,
    /// A team or organisational unit.
    Group,
    /// A person.
    User,
    /// A pointer to more descriptor files.
    Location,
    /// A scaffolder template (`scaffolder.backstage.io/v1beta3`).
    Template,
}

/// `apiVersion`s of the catalog's own kinds.
pub const CATALOG_API_VERSIONS: [&str; 2] = ["backstage.io/v1alpha1", "backstage.io/v1beta1"];
/// The only executable template version.
pub const TEMPLATE_API_VERSION: &str = "scaffolder.backstage.io/v1beta3";

impl Kind {
    /// Every kind, in the order Backstage's processors try them.
    pub const ALL: [Kind; 9] = [
        Kind::Api,
        Kind::Component,
        Kind::Resource,
        Kind::Group,
        Kind::Location,
        Kind::User,
        Kind::System,
        Kind::Domain,
        Kind::Template,
    ];

    /// The `kind` value as written in descriptors (case-sensitive, as Backstage's schemas are).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Component => "Component",
            Kind::Api => "API",
            Kind::Resource => "Resource",
            Kind::System => "System",
            Kind::Domain => "Domain",
            Kind::Group => "Group",
            Kind::User => "User",
            Kind::Location => "Location",
            Kind::Template => "Template",
        }
    }

    /// The accepted `apiVersion`s.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Template => std::slice::from_ref(&TEMPLATE_API_VERSION),
            _ => &CATALOG_API_VERSIONS,
        }
    }

    /// The kind for an `apiVersion`/`kind` pair, if it is a built-in one.
    pub fn from_pair(api_version: &str, kind: &str) -> Option<Kind> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == kind && k.api_versions().contains(&api_version))
    }

    /// The kind named `name`, compared case-insensitively (for refs and queries).
    pub fn from_name(name: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
}

/// A link in `metadata.links`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// An absolute URL.
    pub url: String,
    /// A display title.
    pub title: Option<String>,
    /// An icon key.
    pub icon: Option<String>,
    /// A free-form type, e.g. `dashboard`.
    pub link_type: Option<String>,
}

/// The typed part of `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// `metadata.name`, as written.
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    pub namespace: String,
    /// `metadata.title`.
    pub title: Option<String>,
    /// `metadata.description`.
    pub description: Option<String>,
    /// `metadata.labels`, in document order.
    pub labels: Vec<(String, String)>,
    /// `metadata.annotations`, in document order.
    pub annotations: Vec<(String, String)>,
    /// `metadata.tags`.
    pub tags: Vec<String>,
    /// `metadata.links`.
    pub links: Vec<Link>,
}

impl Metadata {
    /// The value of an annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `spec` of a Component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// `spec.type`, e.g. `service`.
    pub component_type: String,
    /// `spec.lifecycle`, e.g. `production`.
    pub lifecycle: String,
    /// `spec.owner` (default kind Group).
    pub owner: EntityRef,
    /// `spec.system`.
    pub system: Option<EntityRef>,
    /// `spec.subcomponentOf`.
    pub subcomponent_of: Option<EntityRef>,
    /// `spec.providesApis`.
    pub provides_apis: Vec<EntityRef>,
    /// `spec.consumesApis`.
    pub consumes_apis: Vec<EntityRef>,
    /// `spec.dependsOn`.
    pub depends_on: Vec<EntityRef>,
    /// `spec.dependencyOf`.
    pub dependency_of: Vec<EntityRef>,
}

/// `spec` of an API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSpec {
    /// `spec.type`, e.g. `openapi`.
    pub api_type: String,
    /// `spec.lifecycle`.
    pub lifecycle: String,
    /// `spec.owner`.
    pub owner: EntityRef,
    /// `spec.definition`, after placeholders were resolved.
    pub definition: String,
    /// `spec.system`.
    pub system: Option<EntityRef>,
}

/// `spec` of a Resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// `spec.type`, e.g. `database`.
    pub resource_type: String,
    /// `spec.owner`.
    pub owner: EntityRef,
    /// `spec.system`.
    pub system: Option<EntityRef>,
    /// `spec.dependsOn`.
    pub depends_on: Vec<EntityRef>,
    /// `spec.dependencyOf`.
    pub dependency_of: Vec<EntityRef>,
}

/// `spec` of a System.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSpec {
    /// `spec.owner`.
    pub owner: EntityRef,
    /// `spec.domain`.
    pub domain: Option<EntityRef>,
    /// `spec.type`.
    pub system_type: Option<String>,
}

/// `spec` of a Domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// `spec.owner`.
    pub owner: EntityRef,
    /// `spec.subdomainOf`.
    pub subdomain_of: Option<EntityRef>,
    /// `spec.type`.
    pub domain_type: Option<String>,
}

/// `spec.profile` of a Group or User.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// A display name.
    pub display_name: Option<String>,
    /// An e-mail address.
    pub email: Option<String>,
    /// A picture URL.
    pub picture: Option<String>,
}

/// `spec` of a Group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// `spec.type`, e.g. `team`.
    pub group_type: String,
    /// `spec.profile`.
    pub profile: Option<Profile>,
    /// `spec.parent`.
    pub parent: Option<EntityRef>,
    /// `spec.children` (always present, maybe empty).
    pub children: Vec<EntityRef>,
    /// `spec.members`.
    pub members: Vec<EntityRef>,
}

/// `spec` of a User.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// `spec.profile`.
    pub profile: Option<Profile>,
    /// `spec.memberOf` (always present, maybe empty).
    pub member_of: Vec<EntityRef>,
}

/// Whether a location's target must exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Presence {
    /// A missing target is an error (the default).
    #[default]
    Required,
    /// A missing target is silently skipped.
    Optional,
}

/// `spec` of a Location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationSpec {
    /// `spec.type`; when absent, the type of the location this entity was read from.
    pub location_type: Option<String>,
    /// `spec.target`.
    pub target: Option<String>,
    /// `spec.targets`.
    pub targets: Vec<String>,
    /// `spec.presence`.
    pub presence: Presence,
}

impl LocationSpec {
    /// `target` followed by `targets`, the order Backstage reads them in.
    pub fn all_targets(&self) -> impl Iterator<Item = &str> {
        self.target.iter().chain(self.targets.iter()).map(String::as_str)
    }
}

/// One step of a template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateStep {
    /// `id`.
    pub id: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `action`, e.g. `fetch:template`.
    pub action: String,
    /// `input`.
    pub input: Option<Map<String, Value>>,
    /// `if`: a boolean or a template expression.
    pub condition: Option<Value>,
    /// `each`: a template expression or a literal collection.
    pub each: Option<Value>,
}

/// `spec` of a Template (`scaffolder.backstage.io/v1beta3`).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    /// `spec.type`.
    pub template_type: String,
    /// `spec.owner`.
    pub owner: Option<EntityRef>,
    /// `spec.lifecycle`.
    pub lifecycle: Option<String>,
    /// `spec.parameters`: one JSON Schema object or a list of them (one per form page).
    pub parameters: Option<Value>,
    /// `spec.steps`.
    pub steps: Vec<TemplateStep>,
    /// `spec.output`.
    pub output: Option<Map<String, Value>>,
}

/// The typed spec of an entity, one variant per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// A Component.
    Component(ComponentSpec),
    /// An API.
    Api(ApiSpec),
    /// A Resource.
    Resource(ResourceSpec),
    /// A System.
    System(SystemSpec),
    /// A Domain.
    Domain(DomainSpec),
    /// A Group.
    Group(GroupSpec),
    /// A User.
    User(UserSpec),
    /// A Location.
    Location(LocationSpec),
    /// A Template.
    Template(TemplateSpec),
}

impl Spec {
    /// The kind this spec belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Component(_) => Kind::Component,
            Spec::Api(_) => Kind::Api,
            Spec::Resource(_) => Kind::Resource,
            Spec::System(_) => Kind::System,
            Spec::Domain(_) => Kind::Domain,
            Spec::Group(_) => Kind::Group,
            Spec::User(_) => Kind::User,
            Spec::Location(_) => Kind::Location,
            Spec::Template(_) => Kind::Template,
        }
    }

    /// The owner, for kinds that have one.
    pub fn owner(&self) -> Option<&EntityRef> {
        match self {
            Spec::Component(s) => Some(&s.owner),
            Spec::Api(s) => Some(&s.owner),
            Spec::Resource(s) => Some(&s.owner),
            Spec::System(s) => Some(&s.owner),
            Spec::Domain(s) => Some(&s.owner),
            Spec::Template(s) => s.owner.as_ref(),
            Spec::Group(_) | Spec::User(_) | Spec::Location(_) => None,
        }
    }
}

/// A valid entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub(crate) raw: Map<String, Value>,
    pub(crate) entity_ref: EntityRef,
    pub(crate) api_version: String,
    pub(crate) metadata: Metadata,
    pub(crate) spec: Spec,
    pub(crate) relations: Vec<Relation>,
}

impl Entity {
    /// The canonical reference, e.g. `component:default/payments`.
    pub fn entity_ref(&self) -> &EntityRef {
        &self.entity_ref
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The typed metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The typed spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The relations this entity's own fields produce, both directions, sorted and without
    /// duplicates. Targets need not exist.
    pub fn relations(&self) -> &[Relation] {
        &self.relations
    }

    /// The document as JSON, with `metadata.namespace` filled in.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// Consumes the entity, returning the JSON document.
    pub fn into_raw(self) -> Map<String, Value> {
        self.raw
    }
}
