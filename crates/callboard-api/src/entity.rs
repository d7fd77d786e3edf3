//! Entities in the schema: the `Entity` interface and one type per kind, with typed spec and
//! relation fields, all backed by one [`Node`] (a current row, or a past version's document).
//!
//! Every kind type carries the interface's fields through [`entity_types!`], so a field is
//! written once; kind-specific fields follow Backstage's descriptor format and its relations.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Interface, Json, Object, Result, SimpleObject};
use callboard_readmodel::rows::{EntityRow, HistoryRow, RejectionRow};
use callboard_readmodel::store::{CatalogReader, RejectionsBy, RelationView, attach_relations, final_entity};
use serde_json::Value;

use crate::cache::EntityCache;
use crate::schema::{bad_input, internal, page_size, services};

/// A relation between two entities.
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
pub struct Relation {
    /// The relation type (`ownedBy`, `dependsOn`, …).
    #[graphql(name = "type")]
    pub relation_type: String,
    /// Where it starts.
    pub source_ref: String,
    /// Where it points.
    pub target_ref: String,
    /// True when the target is not in the catalog.
    pub dangling: bool,
}

impl From<RelationView> for Relation {
    fn from(row: RelationView) -> Self {
        Self {
            relation_type: row.relation_type,
            source_ref: row.source,
            target_ref: row.target,
            dangling: !row.target_exists,
        }
    }
}

/// Loads current entity rows by ref, into the cache.
pub(crate) struct EntityLoader {
    pub(crate) reader: Arc<dyn CatalogReader>,
    pub(crate) cache: Arc<EntityCache>,
}

impl Loader<String> for EntityLoader {
    type Value = Arc<EntityRow>;
    type Error = Arc<String>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let epoch = self.cache.epoch();
        let rows: Vec<Arc<EntityRow>> = self
            .reader
            .entities(keys)
            .await
            .map_err(|e| Arc::new(e.to_string()))?
            .into_iter()
            .map(Arc::new)
            .collect();
        self.cache.insert_rows(epoch, rows.iter().cloned());
        Ok(rows.into_iter().map(|r| (r.entity_ref.clone(), r)).collect())
    }
}

/// Loads current outgoing relations by source ref, into the cache.
pub(crate) struct RelationLoader {
    pub(crate) reader: Arc<dyn CatalogReader>,
    pub(crate) cache: Arc<EntityCache>,
}

impl Loader<String> for RelationLoader {
    type Value = Arc<Vec<Relation>>;
    type Error = Arc<String>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let epoch = self.cache.epoch();
        let rows = self
            .reader
            .relations(keys, false)
            .await
            .map_err(|e| Arc::new(e.to_string()))?;
        let mut out: HashMap<String, Vec<Relation>> = keys.iter().map(|k| (k.clone(), Vec::new())).collect();
        for row in rows {
            out.entry(row.source.clone()).or_default().push(row.into());
        }
        let out: HashMap<String, Arc<Vec<Relation>>> = out.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        self.cache
            .insert_relations(epoch, out.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(out)
    }
}

fn cache<'a>(ctx: &Context<'a>) -> &'a EntityCache {
    services(ctx).feed.cache()
}

/// Current entities by ref (lowercased), in order, absent ones left out: from the cache, the
/// rest in one batched load. Relations come along when cached; otherwise they load on demand.
pub(crate) async fn load_current(ctx: &Context<'_>, refs: &[String]) -> Result<Vec<Node>> {
    let cache = cache(ctx);
    let mut found: HashMap<String, Arc<EntityRow>> = HashMap::new();
    let mut missing: Vec<String> = Vec::new();
    for r in refs {
        match cache.row(r) {
            Some(hit) => {
                found.insert(r.clone(), hit);
            }
            None => missing.push(r.clone()),
        }
    }
    if cache.is_live() {
        metrics::counter!("callboard_api_entity_cache_hits_total").increment(found.len() as u64);
        metrics::counter!("callboard_api_entity_cache_misses_total").increment(missing.len() as u64);
    }
    if !missing.is_empty() {
        let loader = ctx.data_unchecked::<DataLoader<EntityLoader>>();
        found.extend(loader.load_many(missing).await.map_err(internal)?);
    }
    Ok(refs
        .iter()
        .filter_map(|r| found.get(r))
        .map(|row| {
            let mut node = Node::current(row.clone());
            node.relations = cache.relations(&row.entity_ref);
            node
        })
        .collect())
}

/// One current entity by ref (lowercased).
pub(crate) async fn load_entity(ctx: &Context<'_>, entity_ref: &str) -> Result<Option<Entity>> {
    Ok(load_current(ctx, &[entity_ref.to_lowercase()])
        .await?
        .into_iter()
        .next()
        .map(Node::into_entity))
}

/// An entity as it was at `at` (stored form of an instant).
pub(crate) async fn entity_at(ctx: &Context<'_>, entity_ref: &str, at: &str) -> Result<Option<Entity>> {
    let entity_ref = entity_ref.to_lowercase();
    let document = services(ctx)
        .reader
        .entity_at(&entity_ref, at)
        .await
        .map_err(internal)?;
    Ok(document.map(|document| Node::past(entity_ref, document, at).into_entity()))
}

/// What every entity type is backed by: a current row, or a past version's document.
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) entity_ref: String,
    /// The current row; `None` for a past version.
    row: Option<Arc<EntityRow>>,
    /// A past version's document (a current entity's is in its row).
    past: Option<Arc<Value>>,
    at: Option<String>,
    /// Outgoing relations, when loaded with the entity.
    pub(crate) relations: Option<Arc<Vec<Relation>>>,
    /// The related entities of a whole page, loaded with it.
    pub(crate) neighbours: Option<Arc<HashMap<String, Arc<EntityRow>>>>,
}

impl Node {
    /// A current entity from its row alone (relations load on demand).
    pub(crate) fn current(row: Arc<EntityRow>) -> Self {
        Self {
            entity_ref: row.entity_ref.clone(),
            row: Some(row),
            past: None,
            at: None,
            relations: None,
            neighbours: None,
        }
    }

    /// A past version.
    pub(crate) fn past(entity_ref: String, document: Value, at: &str) -> Self {
        Self {
            entity_ref,
            row: None,
            past: Some(Arc::new(document)),
            at: Some(at.to_owned()),
            relations: None,
            neighbours: None,
        }
    }

    /// The schema type for this entity's kind.
    pub(crate) fn into_entity(self) -> Entity {
        let kind = self.entity_ref.split_once(':').map_or("", |(k, _)| k);
        match kind {
            "component" => Entity::Component(Component(self)),
            "api" => Entity::Api(Api(self)),
            "resource" => Entity::Resource(Resource(self)),
            "system" => Entity::System(System(self)),
            "domain" => Entity::Domain(Domain(self)),
            "group" => Entity::Group(Group(self)),
            "user" => Entity::User(User(self)),
            "location" => Entity::Location(Location(self)),
            "template" => Entity::Template(Template(self)),
            _ => Entity::OtherEntity(OtherEntity(self)),
        }
    }

    fn document(&self) -> &Value {
        match (&self.row, &self.past) {
            (Some(row), _) => &row.document,
            (None, Some(past)) => past,
            (None, None) => &Value::Null,
        }
    }

    fn str_at(&self, pointer: &str) -> Option<String> {
        self.document()
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn json_at(&self, pointer: &str) -> Json<Value> {
        Json(self.document().pointer(pointer).cloned().unwrap_or(Value::Null))
    }

    fn strings_at(&self, pointer: &str) -> Vec<String> {
        self.document()
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Relations leaving this entity (now, or at the instant it was read for).
    async fn outgoing(&self, ctx: &Context<'_>) -> Result<Arc<Vec<Relation>>> {
        if let Some(relations) = &self.relations {
            return Ok(relations.clone());
        }
        match &self.at {
            None => {
                if let Some(hit) = cache(ctx).relations(&self.entity_ref) {
                    return Ok(hit);
                }
                let loader = ctx.data_unchecked::<DataLoader<RelationLoader>>();
                Ok(loader
                    .load_one(self.entity_ref.clone())
                    .await
                    .map_err(internal)?
                    .unwrap_or_default())
            }
            Some(at) => {
                let spans = services(ctx).reader.spans(&self.entity_ref).await.map_err(internal)?;
                let mut out: Vec<Relation> = spans
                    .into_iter()
                    .filter(|s| {
                        s.source == self.entity_ref
                            && s.valid_from.as_str() <= at.as_str()
                            && s.valid_to.as_deref().is_none_or(|to| to > at.as_str())
                    })
                    .map(|s| Relation {
                        relation_type: s.relation_type,
                        source_ref: s.source,
                        target_ref: s.target,
                        dangling: false,
                    })
                    .collect();
                out.sort_by(|a, b| (&a.relation_type, &a.target_ref).cmp(&(&b.relation_type, &b.target_ref)));
                out.dedup_by(|a, b| a.relation_type == b.relation_type && a.target_ref == b.target_ref);
                Ok(Arc::new(out))
            }
        }
    }

    /// The entities related by `relation_type` whose refs are of `kind` (any kind when `None`),
    /// in relation order; absent ones are left out.
    async fn related(&self, ctx: &Context<'_>, relation_type: &str, kind: Option<&str>) -> Result<Vec<Node>> {
        let refs: Vec<String> = self
            .outgoing(ctx)
            .await?
            .iter()
            .filter(|r| r.relation_type.eq_ignore_ascii_case(relation_type))
            .map(|r| r.target_ref.to_lowercase())
            .filter(|r| kind.is_none_or(|k| r.split_once(':').is_some_and(|(rk, _)| rk == k)))
            .collect();
        self.resolve(ctx, refs).await
    }

    /// The entities `refs` name, in order (absent ones left out), as of this entity's instant.
    /// One batched load for the whole list: loading them one by one would cost a round of
    /// queries per element.
    async fn resolve(&self, ctx: &Context<'_>, refs: Vec<String>) -> Result<Vec<Node>> {
        match (&self.at, &self.neighbours) {
            (None, Some(neighbours)) => {
                // Loaded with the page: every existing target is here.
                Ok(refs
                    .iter()
                    .filter_map(|r| neighbours.get(r))
                    .map(|row| {
                        let mut node = Node::current(row.clone());
                        node.relations = cache(ctx).relations(&row.entity_ref);
                        node
                    })
                    .collect())
            }
            (None, None) => load_current(ctx, &refs).await,
            (Some(at), _) => {
                let found = futures::future::try_join_all(refs.iter().map(|r| async move {
                    let document = services(ctx).reader.entity_at(r, at).await.map_err(internal)?;
                    Ok::<_, async_graphql::Error>(document.map(|d| Node::past(r.clone(), d, at)))
                }))
                .await?;
                Ok(found.into_iter().flatten().collect())
            }
        }
    }

    async fn first_related(&self, ctx: &Context<'_>, relation_type: &str, kind: Option<&str>) -> Result<Option<Node>> {
        Ok(self.related(ctx, relation_type, kind).await?.into_iter().next())
    }

    async fn raw(&self, ctx: &Context<'_>) -> Result<Json<Value>> {
        let relations: Vec<(String, String)> = self
            .outgoing(ctx)
            .await?
            .iter()
            .map(|r| (r.relation_type.clone(), r.target_ref.clone()))
            .collect();
        Ok(Json(match &self.row {
            Some(row) => final_entity(row, &relations),
            None => {
                let mut document = self.document().clone();
                attach_relations(&mut document, &relations.iter().collect::<Vec<_>>());
                document
            }
        }))
    }

    async fn relations(
        &self,
        ctx: &Context<'_>,
        relation_type: Option<String>,
        incoming: bool,
    ) -> Result<Vec<Relation>> {
        let rows: Vec<Relation> = if incoming {
            if self.at.is_some() {
                return Err(bad_input("incoming relations are not available asOf an instant yet"));
            }
            services(ctx)
                .reader
                .relations(std::slice::from_ref(&self.entity_ref), true)
                .await
                .map_err(internal)?
                .into_iter()
                .map(Relation::from)
                .collect()
        } else {
            self.outgoing(ctx).await?.as_ref().clone()
        };
        Ok(rows
            .into_iter()
            .filter(|r| {
                relation_type
                    .as_ref()
                    .is_none_or(|t| r.relation_type.eq_ignore_ascii_case(t))
            })
            .collect())
    }

    async fn history(&self, ctx: &Context<'_>, first: i32, before_sequence: Option<i64>) -> Result<Vec<Version>> {
        let limit = page_size(ctx, Some(first))?;
        let rows = services(ctx)
            .reader
            .history(&self.entity_ref, limit, before_sequence)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Version).collect())
    }

    async fn rejections(&self, ctx: &Context<'_>) -> Result<Vec<Rejection>> {
        let rows = services(ctx)
            .reader
            .rejections(RejectionsBy::Entity(&self.entity_ref))
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Rejection).collect())
    }

    fn links(&self) -> Vec<Link> {
        self.document()
            .pointer("/metadata/links")
            .and_then(Value::as_array)
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| {
                        let text = |k: &str| l.get(k).and_then(Value::as_str).map(str::to_owned);
                        Some(Link {
                            url: text("url")?,
                            title: text("title"),
                            icon: text("icon"),
                            link_type: text("type"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn profile(&self) -> Option<Profile> {
        let profile = self.document().pointer("/spec/profile")?;
        let text = |k: &str| profile.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Profile {
            display_name: text("displayName"),
            email: text("email"),
            picture: text("picture"),
        })
    }
}

fn entities(nodes: Vec<Node>) -> Vec<Entity> {
    nodes.into_iter().map(Node::into_entity).collect()
}

/// A link of `metadata.links`.
#[derive(Debug, Clone, SimpleObject)]
pub struct Link {
    /// Where it points.
    pub url: String,
    /// Its title.
    pub title: Option<String>,
    /// An icon name.
    pub icon: Option<String>,
    /// A type of link (`dashboard`, `runbook`, …).
    #[graphql(name = "type")]
    pub link_type: Option<String>,
}

/// `spec.profile` of a User or Group.
#[derive(Debug, Clone, SimpleObject)]
pub struct Profile {
    /// The display name.
    pub display_name: Option<String>,
    /// The e-mail address.
    pub email: Option<String>,
    /// A picture URL.
    pub picture: Option<String>,
}

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
        ty = "Json<Value>",
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
    ($( $(#[$attr:meta])* $name:ident { $($extra:tt)* } )*) => { $(
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct $name(Node);

        #[Object]
        impl $name {
            /// The canonical, lowercased entity ref (`kind:namespace/name`).
            #[graphql(name = "ref")]
            async fn entity_ref(&self, _ctx: &Context<'_>) -> Result<String> {
                Ok(self.0.entity_ref.clone())
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
                Ok(self.0.at.clone())
            }
            /// `spec`, as written.
            async fn spec(&self, _ctx: &Context<'_>) -> Result<Json<Value>> {
                Ok(self.0.json_at("/spec"))
            }
            /// The final entity as Backstage's API returns it: the document with `metadata.uid`,
            /// `metadata.etag` and `relations`.
            async fn raw(&self, ctx: &Context<'_>) -> Result<Json<Value>> {
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
        }
    )* };
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
        /// Its subcomponents.
        async fn subcomponents(&self, ctx: &Context<'_>) -> Result<Vec<Component>> {
            Ok(self.0.related(ctx, "hasPart", Some("component")).await?.into_iter().map(Component).collect())
        }
        /// APIs it provides.
        async fn provides_apis(&self, ctx: &Context<'_>) -> Result<Vec<Api>> {
            Ok(self.0.related(ctx, "providesApi", Some("api")).await?.into_iter().map(Api).collect())
        }
        /// APIs it consumes.
        async fn consumes_apis(&self, ctx: &Context<'_>) -> Result<Vec<Api>> {
            Ok(self.0.related(ctx, "consumesApi", Some("api")).await?.into_iter().map(Api).collect())
        }
        /// What it depends on directly (components and resources).
        async fn depends_on(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
            Ok(entities(self.0.related(ctx, "dependsOn", None).await?))
        }
        /// What depends on it directly.
        async fn dependency_of(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
            Ok(entities(self.0.related(ctx, "dependencyOf", None).await?))
        }
    }

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
        /// Components that provide it.
        async fn providers(&self, ctx: &Context<'_>) -> Result<Vec<Component>> {
            Ok(self.0.related(ctx, "apiProvidedBy", Some("component")).await?.into_iter().map(Component).collect())
        }
        /// Components that consume it.
        async fn consumers(&self, ctx: &Context<'_>) -> Result<Vec<Component>> {
            Ok(self.0.related(ctx, "apiConsumedBy", Some("component")).await?.into_iter().map(Component).collect())
        }
    }

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
        /// What it depends on directly.
        async fn depends_on(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
            Ok(entities(self.0.related(ctx, "dependsOn", None).await?))
        }
        /// What depends on it directly.
        async fn dependency_of(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
            Ok(entities(self.0.related(ctx, "dependencyOf", None).await?))
        }
    }

    /// A collection of components, APIs and resources that together expose some functionality.
    System {
        /// The domain it belongs to.
        async fn domain(&self, ctx: &Context<'_>) -> Result<Option<Domain>> {
            Ok(self.0.first_related(ctx, "partOf", Some("domain")).await?.map(Domain))
        }
        /// Its components.
        async fn components(&self, ctx: &Context<'_>) -> Result<Vec<Component>> {
            Ok(self.0.related(ctx, "hasPart", Some("component")).await?.into_iter().map(Component).collect())
        }
        /// Its APIs.
        async fn apis(&self, ctx: &Context<'_>) -> Result<Vec<Api>> {
            Ok(self.0.related(ctx, "hasPart", Some("api")).await?.into_iter().map(Api).collect())
        }
        /// Its resources.
        async fn resources(&self, ctx: &Context<'_>) -> Result<Vec<Resource>> {
            Ok(self.0.related(ctx, "hasPart", Some("resource")).await?.into_iter().map(Resource).collect())
        }
    }

    /// A business area grouping systems.
    Domain {
        /// The domain it is a subdomain of.
        async fn subdomain_of(&self, ctx: &Context<'_>) -> Result<Option<Domain>> {
            Ok(self.0.first_related(ctx, "partOf", Some("domain")).await?.map(Domain))
        }
        /// Its subdomains.
        async fn subdomains(&self, ctx: &Context<'_>) -> Result<Vec<Domain>> {
            Ok(self.0.related(ctx, "hasPart", Some("domain")).await?.into_iter().map(Domain).collect())
        }
        /// Its systems.
        async fn systems(&self, ctx: &Context<'_>) -> Result<Vec<System>> {
            Ok(self.0.related(ctx, "hasPart", Some("system")).await?.into_iter().map(System).collect())
        }
    }

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
        /// Child groups.
        async fn children(&self, ctx: &Context<'_>) -> Result<Vec<Group>> {
            Ok(self.0.related(ctx, "parentOf", Some("group")).await?.into_iter().map(Group).collect())
        }
        /// Its members.
        async fn members(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
            Ok(self.0.related(ctx, "hasMember", Some("user")).await?.into_iter().map(User).collect())
        }
        /// Entities it owns directly (see the `owned` query for the roll-up through sub-groups).
        async fn owns(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
            Ok(entities(self.0.related(ctx, "ownerOf", None).await?))
        }
    }

    /// A person.
    User {
        /// `spec.profile`.
        async fn profile(&self) -> Option<Profile> {
            self.0.profile()
        }
        /// Groups they are a member of.
        async fn member_of(&self, ctx: &Context<'_>) -> Result<Vec<Group>> {
            Ok(self.0.related(ctx, "memberOf", Some("group")).await?.into_iter().map(Group).collect())
        }
        /// Entities they own directly.
        async fn owns(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
            Ok(entities(self.0.related(ctx, "ownerOf", None).await?))
        }
    }

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

    /// An entity of a kind without a type of its own (custom kinds); see `spec` and `raw`.
    OtherEntity {
        /// `spec.type`, when it has one.
        #[graphql(name = "type")]
        async fn spec_type(&self) -> Option<String> {
            self.0.str_at("/spec/type")
        }
    }
}

/// One version of an entity, from the history.
#[derive(Debug, Clone)]
pub struct Version(pub(crate) HistoryRow);

#[Object]
impl Version {
    /// The per-entity sequence number (1, 2, …).
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }
    /// The event type (`entity.upserted.v1`, `entity.deleted.v1`, …).
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// The event id.
    async fn event_id(&self) -> &str {
        &self.0.event_id
    }
    /// When it happened (RFC 3339, UTC).
    async fn time(&self) -> &str {
        &self.0.time
    }
    /// Which provider, location or user produced it.
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// Who acted.
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    /// The entity document of this version (absent for deletions).
    async fn entity(&self) -> Option<Json<Value>> {
        self.0.entity.clone().map(Json)
    }
    /// JSON Patch (RFC 6902) from the previous version.
    async fn diff(&self) -> Option<Json<Value>> {
        self.0.diff.clone().map(Json)
    }
}

/// A document that could not be accepted: the last good version (if any) stays in the catalog.
#[derive(Debug, Clone)]
pub struct Rejection(pub(crate) RejectionRow);

#[Object]
impl Rejection {
    /// The entity ref the document claims, when it could be read.
    async fn entity_ref(&self) -> Option<&str> {
        self.0.entity_ref.as_deref()
    }
    /// The file it came from.
    async fn location(&self) -> &str {
        &self.0.location
    }
    /// The registered location that led to the file.
    async fn origin(&self) -> &str {
        &self.0.origin
    }
    /// The document's position in the file (0-based).
    async fn document_index(&self) -> Option<i64> {
        self.0.document_index
    }
    /// The problems: each with field, rule, message and position.
    async fn problems(&self) -> Json<Value> {
        Json(self.0.problems.clone())
    }
    /// The location that holds the ref, for conflicts.
    async fn conflicts_with(&self) -> Option<&str> {
        self.0.conflicts_with.as_deref()
    }
    /// When it was rejected.
    async fn time(&self) -> &str {
        &self.0.time
    }
}
