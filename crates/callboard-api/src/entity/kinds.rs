//! The `Entity` interface and one type per kind. Every kind type carries the interface's fields
//! through [`entity_types!`], so a field is written once; kind-specific fields follow Backstage's
//! descriptor format and its relations.

use async_graphql::{Context, Interface, Json, Object, Result};
use serde_json::Value;

use super::records::{Link, Profile, Rejection, Version};
use super::{Node, RawJson, Relation};
use crate::schema::list_cost;

/// A catalog entity — now, or as it was at an instant (`asOf`). Every kind has a type of its
/// own with typed spec and relation fields; `raw` holds the whole final entity for anything
/// custom. Relation fields leave out targets that are not in the catalog (see `relations` for
/// every row, dangling ones included).
// The interface's field list repeats `ty = …` per field, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(Debug, Clone, Interface)]
#[graphql(
    field(
        name = "ref",
        method = "entity_ref",
        ty = "String",
        desc = "The canonical, lowercased entity ref (`kind:namespace/name`)."
    ),
    field(name = "kind", ty = "String", desc = "The kind, as written."),
    field(name = "namespace", ty = "String", desc = "The namespace (`default` when unset)."),
    field(name = "name", ty = "String", desc = "`metadata.name`."),
    field(name = "title", ty = "Option<String>", desc = "`metadata.title`."),
    field(name = "description", ty = "Option<String>", desc = "`metadata.description`."),
    field(name = "tags", ty = "Vec<String>", desc = "`metadata.tags`."),
    field(
        name = "labels",
        ty = "Json<Value>",
        desc = "`metadata.labels` (an object, or null)."
    ),
    field(
        name = "annotations",
        ty = "Json<Value>",
        desc = "`metadata.annotations` (an object, or null)."
    ),
    field(name = "links", ty = "Vec<Link>", desc = "`metadata.links`."),
    field(
        name = "uid",
        ty = "Option<String>",
        desc = "`metadata.uid`: stable for the entity's life."
    ),
    field(
        name = "created_at",
        ty = "Option<String>",
        desc = "When the entity was first seen (absent for a past version)."
    ),
    field(
        name = "updated_at",
        ty = "Option<String>",
        desc = "When it last changed (absent for a past version)."
    ),
    field(
        name = "as_of",
        ty = "Option<String>",
        desc = "The instant this entity was read as of, when it is a past version."
    ),
    field(name = "spec", ty = "Json<Value>", desc = "`spec`, as written."),
    field(
        name = "raw",
        ty = "RawJson",
        desc = "The final entity as Backstage's API returns it: the document with `metadata.uid`, `metadata.etag` and `relations`."
    ),
    field(
        name = "relations",
        ty = "Vec<Relation>",
        desc = "Relations leaving this entity, optionally of one type; `incoming` lists relations pointing at it instead.",
        arg(name = "type", ty = "Option<String>"),
        arg(name = "incoming", ty = "bool", default = false)
    ),
    field(
        name = "owner",
        ty = "Option<Entity>",
        desc = "The owner (`ownedBy`): a Group or User."
    ),
    field(
        name = "history",
        ty = "Vec<Version>",
        desc = "Its versions, newest first: each with the event that made it, time, source, actor and a JSON Patch from the previous version.",
        arg(name = "first", ty = "i32", default = 20),
        arg(name = "before_sequence", ty = "Option<i64>")
    ),
    field(
        name = "rejections",
        ty = "Vec<Rejection>",
        desc = "Why documents claiming this ref are not in the catalog as written (latest per source)."
    )
)]
pub enum Entity {
    /// A Component.
    Component(Component),
    /// An API.
    Api(Api),
    /// A Resource.
    Resource(Resource),
    /// A System.
    System(System),
    /// A Domain.
    Domain(Domain),
    /// A Group.
    Group(Group),
    /// A User.
    User(User),
    /// A Location.
    Location(Location),
    /// A Template.
    Template(Template),
    /// Any other kind.
    OtherEntity(OtherEntity),
}

/// Declares entity types: each wraps a [`Node`] and carries the interface's fields, then its own.
macro_rules! entity_types {
    ($(
        $(#[$attr:meta])* $name:ident { $($extra:tt)* }
        lists [ $( $(#[$list_attr:meta])* $list:ident: $item:ty = $relation:literal, $kind:expr; )* ]
    )*) => { $(
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct $name(pub(crate) Node);

        impl FromNode for $name {
            fn from_node(node: Node) -> Self {
                Self(node)
            }
        }

        #[Object]
        impl $name {
            /// The canonical, lowercased entity ref (`kind:namespace/name`).
            #[graphql(name = "ref")]
            async fn entity_ref(&self, _ctx: &Context<'_>) -> Result<String> {
                Ok(self.0.entity_ref.canonical())
            }
            /// The kind, as written.
            async fn kind(&self, _ctx: &Context<'_>) -> Result<String> {
                Ok(self.0.str_at("/kind").unwrap_or_default())
            }
            /// The namespace (`default` when unset).
            async fn namespace(&self, _ctx: &Context<'_>) -> Result<String> {
                Ok(self.0.str_at("/metadata/namespace").unwrap_or_else(|| "default".into()))
            }
            /// `metadata.name`.
            async fn name(&self, _ctx: &Context<'_>) -> Result<String> {
                Ok(self.0.str_at("/metadata/name").unwrap_or_default())
            }
            /// `metadata.title`.
            async fn title(&self, _ctx: &Context<'_>) -> Result<Option<String>> {
                Ok(self.0.str_at("/metadata/title"))
            }
            /// `metadata.description`.
            async fn description(&self, _ctx: &Context<'_>) -> Result<Option<String>> {
                Ok(self.0.str_at("/metadata/description"))
            }
            /// `metadata.tags`.
            async fn tags(&self, _ctx: &Context<'_>) -> Result<Vec<String>> {
                Ok(self.0.strings_at("/metadata/tags"))
            }
            /// `metadata.labels` (an object, or null).
            async fn labels(&self, _ctx: &Context<'_>) -> Result<Json<Value>> {
                Ok(self.0.json_at("/metadata/labels"))
            }
            /// `metadata.annotations` (an object, or null).
            async fn annotations(&self, _ctx: &Context<'_>) -> Result<Json<Value>> {
                Ok(self.0.json_at("/metadata/annotations"))
            }
            /// `metadata.links`.
            async fn links(&self, _ctx: &Context<'_>) -> Result<Vec<Link>> {
                Ok(self.0.links())
            }
            /// `metadata.uid`: stable for the entity's life.
            async fn uid(&self, _ctx: &Context<'_>) -> Result<Option<String>> {
                Ok(self.0.row.as_ref().map(|r| r.uid.clone()).or_else(|| self.0.str_at("/metadata/uid")))
            }
            /// When the entity was first seen (absent for a past version).
            async fn created_at(&self, _ctx: &Context<'_>) -> Result<Option<String>> {
                Ok(self.0.row.as_ref().map(|r| r.created_at.clone()))
            }
            /// When it last changed (absent for a past version).
            async fn updated_at(&self, _ctx: &Context<'_>) -> Result<Option<String>> {
                Ok(self.0.row.as_ref().map(|r| r.updated_at.clone()))
            }
            /// The instant this entity was read as of, when it is a past version.
            async fn as_of(&self, _ctx: &Context<'_>) -> Result<Option<String>> {
                Ok(self.0.at.as_ref().map(|at| at.as_str().to_owned()))
            }
            /// `spec`, as written.
            async fn spec(&self, _ctx: &Context<'_>) -> Result<Json<Value>> {
                Ok(self.0.json_at("/spec"))
            }
            /// The final entity as Backstage's API returns it: the document with `metadata.uid`,
            /// `metadata.etag` and `relations`.
            async fn raw(&self, ctx: &Context<'_>) -> Result<RawJson> {
                self.0.raw(ctx).await
            }
            /// Relations leaving this entity, optionally of one type; `incoming` lists relations
            /// pointing at it instead.
            async fn relations(
                &self,
                ctx: &Context<'_>,
                #[graphql(name = "type")] relation_type: Option<String>,
                #[graphql(default = false)] incoming: bool,
            ) -> Result<Vec<Relation>> {
                self.0.relations(ctx, relation_type, incoming).await
            }
            /// The owner (`ownedBy`): a Group or User.
            async fn owner(&self, ctx: &Context<'_>) -> Result<Option<Entity>> {
                Ok(self.0.first_related(ctx, "ownedBy", None).await?.map(Node::into_entity))
            }
            /// Its versions, newest first: each with the event that made it, time, source, actor
            /// and a JSON Patch from the previous version.
            async fn history(
                &self,
                ctx: &Context<'_>,
                #[graphql(default = 20)] first: i32,
                before_sequence: Option<i64>,
            ) -> Result<Vec<Version>> {
                self.0.history(ctx, first, before_sequence).await
            }
            /// Why documents claiming this ref are not in the catalog as written (latest per
            /// source).
            async fn rejections(&self, ctx: &Context<'_>) -> Result<Vec<Rejection>> {
                self.0.rejections(ctx).await
            }

            $($extra)*

            $(
                $(#[$list_attr])*
                // Written here, not at the invocation, so that the expression sees the
                // `child_complexity` that `#[Object]` defines (macro hygiene).
                #[graphql(complexity = "list_cost(first, child_complexity)")]
                async fn $list(
                    &self,
                    ctx: &Context<'_>,
                    #[graphql(default = 100, desc = "At most this many, in relation order.")] first: i32,
                ) -> Result<Vec<$item>> {
                    let nodes = self.0.related(ctx, $relation, $kind, Some(first)).await?;
                    Ok(nodes.into_iter().map(<$item as FromNode>::from_node).collect())
                }
            )*
        }
    )* };
}

/// What a relation list holds, made from a node.
trait FromNode {
    fn from_node(node: Node) -> Self;
}

impl FromNode for Entity {
    fn from_node(node: Node) -> Self {
        node.into_entity()
    }
}

entity_types! {
    /// A piece of software: a service, website, library, …
    Component {
        /// `spec.type` (`service`, `website`, `library`, …).
        #[graphql(name = "type")]
        async fn spec_type(&self) -> Option<String> {
            self.0.str_at("/spec/type")
        }
        /// `spec.lifecycle` (`experimental`, `production`, `deprecated`, …).
        async fn lifecycle(&self) -> Option<String> {
            self.0.str_at("/spec/lifecycle")
        }
        /// The system it is part of.
        async fn system(&self, ctx: &Context<'_>) -> Result<Option<System>> {
            Ok(self.0.first_related(ctx, "partOf", Some("system")).await?.map(System))
        }
        /// The component it is a subcomponent of.
        async fn subcomponent_of(&self, ctx: &Context<'_>) -> Result<Option<Component>> {
            Ok(self.0.first_related(ctx, "partOf", Some("component")).await?.map(Component))
        }
    }
    lists [
        /// Its subcomponents.
        subcomponents: Component = "hasPart", Some("component");
        /// APIs it provides.
        provides_apis: Api = "providesApi", Some("api");
        /// APIs it consumes.
        consumes_apis: Api = "consumesApi", Some("api");
        /// What it depends on directly (components and resources).
        depends_on: Entity = "dependsOn", None;
        /// What depends on it directly.
        dependency_of: Entity = "dependencyOf", None;
    ]

    /// An interface components provide or consume.
    Api {
        /// `spec.type` (`openapi`, `asyncapi`, `graphql`, `grpc`, …).
        #[graphql(name = "type")]
        async fn spec_type(&self) -> Option<String> {
            self.0.str_at("/spec/type")
        }
        /// `spec.lifecycle`.
        async fn lifecycle(&self) -> Option<String> {
            self.0.str_at("/spec/lifecycle")
        }
        /// `spec.definition`: the API's specification text.
        async fn definition(&self) -> Option<String> {
            self.0.str_at("/spec/definition")
        }
        /// The system it is part of.
        async fn system(&self, ctx: &Context<'_>) -> Result<Option<System>> {
            Ok(self.0.first_related(ctx, "partOf", Some("system")).await?.map(System))
        }
    }
    lists [
        /// Components that provide it.
        providers: Component = "apiProvidedBy", Some("component");
        /// Components that consume it.
        consumers: Component = "apiConsumedBy", Some("component");
    ]

    /// Infrastructure a component needs: a database, a bucket, a cluster, …
    Resource {
        /// `spec.type` (`database`, `s3-bucket`, …).
        #[graphql(name = "type")]
        async fn spec_type(&self) -> Option<String> {
            self.0.str_at("/spec/type")
        }
        /// The system it is part of.
        async fn system(&self, ctx: &Context<'_>) -> Result<Option<System>> {
            Ok(self.0.first_related(ctx, "partOf", Some("system")).await?.map(System))
        }
    }
    lists [
        /// What it depends on directly.
        depends_on: Entity = "dependsOn", None;
        /// What depends on it directly.
        dependency_of: Entity = "dependencyOf", None;
    ]

    /// A collection of components, APIs and resources that together expose some functionality.
    System {
        /// The domain it belongs to.
        async fn domain(&self, ctx: &Context<'_>) -> Result<Option<Domain>> {
            Ok(self.0.first_related(ctx, "partOf", Some("domain")).await?.map(Domain))
        }
    }
    lists [
        /// Its components.
        components: Component = "hasPart", Some("component");
        /// Its APIs.
        apis: Api = "hasPart", Some("api");
        /// Its resources.
        resources: Resource = "hasPart", Some("resource");
    ]

    /// A business area grouping systems.
    Domain {
        /// The domain it is a subdomain of.
        async fn subdomain_of(&self, ctx: &Context<'_>) -> Result<Option<Domain>> {
            Ok(self.0.first_related(ctx, "partOf", Some("domain")).await?.map(Domain))
        }
    }
    lists [
        /// Its subdomains.
        subdomains: Domain = "hasPart", Some("domain");
        /// Its systems.
        systems: System = "hasPart", Some("system");
    ]

    /// A team or other organisational unit.
    Group {
        /// `spec.type` (`team`, `business-unit`, …).
        #[graphql(name = "type")]
        async fn spec_type(&self) -> Option<String> {
            self.0.str_at("/spec/type")
        }
        /// `spec.profile`.
        async fn profile(&self) -> Option<Profile> {
            self.0.profile()
        }
        /// The parent group.
        async fn parent(&self, ctx: &Context<'_>) -> Result<Option<Group>> {
            Ok(self.0.first_related(ctx, "childOf", Some("group")).await?.map(Group))
        }
    }
    lists [
        /// Child groups.
        children: Group = "parentOf", Some("group");
        /// Its members.
        members: User = "hasMember", Some("user");
        /// Entities it owns directly (see the `owned` query for the roll-up through sub-groups).
        owns: Entity = "ownerOf", None;
    ]

    /// A person.
    User {
        /// `spec.profile`.
        async fn profile(&self) -> Option<Profile> {
            self.0.profile()
        }
    }
    lists [
        /// Groups they are a member of.
        member_of: Group = "memberOf", Some("group");
        /// Entities they own directly.
        owns: Entity = "ownerOf", None;
    ]

    /// A reference to other places that hold descriptor files.
    Location {
        /// `spec.type` (`url`, `file`, …).
        #[graphql(name = "type")]
        async fn spec_type(&self) -> Option<String> {
            self.0.str_at("/spec/type")
        }
        /// `spec.target`.
        async fn target(&self) -> Option<String> {
            self.0.str_at("/spec/target")
        }
        /// `spec.targets`.
        async fn targets(&self) -> Vec<String> {
            self.0.strings_at("/spec/targets")
        }
        /// `spec.presence` (`required` or `optional`).
        async fn presence(&self) -> Option<String> {
            self.0.str_at("/spec/presence")
        }
    }
    lists [
    ]

    /// A scaffolder template (Backstage `scaffolder.backstage.io/v1beta3`).
    Template {
        /// `spec.type` (what it creates: `service`, `website`, …).
        #[graphql(name = "type")]
        async fn spec_type(&self) -> Option<String> {
            self.0.str_at("/spec/type")
        }
        /// `spec.parameters`: the forms, as JSON Schema.
        async fn parameters(&self) -> Json<Value> {
            self.0.json_at("/spec/parameters")
        }
        /// `spec.steps`: the actions it runs.
        async fn steps(&self) -> Json<Value> {
            self.0.json_at("/spec/steps")
        }
        /// `spec.output`.
        async fn output(&self) -> Json<Value> {
            self.0.json_at("/spec/output")
        }
    }
    lists [
    ]

    /// An entity of a kind without a type of its own (custom kinds); see `spec` and `raw`.
    OtherEntity {
        /// `spec.type`, when it has one.
        #[graphql(name = "type")]
        async fn spec_type(&self) -> Option<String> {
            self.0.str_at("/spec/type")
        }
    }
    lists [
    ]
}
