//! Reading events: the one decoder of the CloudEvents envelope, generic over how far its `data` is
//! decoded, and typed views of the payloads that borrow from the event's text.
//!
//! Writers build a [`CloudEvent`](crate::CloudEvent) (an owned `data` tree); readers decode
//! [`Envelope`]s. An [`EventView`] keeps `data` as the JSON text it was written as, so each reader
//! reads only what it needs of it, when it needs it: decoding every event's `data` into a
//! `serde_json::Value` tree was a tenth of a projection's time, and most of it was thrown away.
//! A reader that knows the payload type it wants decodes `Envelope<ThatType>` directly.

use std::borrow::Cow;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::types::EventType;

/// A CloudEvent as read from the log, with `data` decoded as `D`.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope<D> {
    /// Unique per event.
    pub id: String,
    /// Where the change came from.
    pub source: String,
    /// The versioned type, e.g. `dev.callboard.entity.upserted.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The entity ref (or location ref) the event is about.
    pub subject: String,
    /// Event time, RFC 3339.
    pub time: String,
    /// Per-subject sequence.
    pub sequence: u64,
    /// Who acted.
    pub actor: String,
    /// The causing command, if any.
    #[serde(default)]
    pub causationid: Option<String>,
    /// The payload.
    pub data: D,
    // Required by the envelope (a message without them is not a CloudEvent), not used here.
    #[serde(rename = "specversion")]
    _specversion: IgnoredAny,
    #[serde(rename = "datacontenttype")]
    _datacontenttype: IgnoredAny,
    #[serde(rename = "dataschema")]
    _dataschema: IgnoredAny,
}

/// An event with its payload kept as the JSON text it was written as.
pub type EventView = Envelope<Box<RawValue>>;

impl<D: DeserializeOwned> Envelope<D> {
    /// Decodes structured-mode CloudEvent JSON.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl<D> Envelope<D> {
    /// The known type, if it is one.
    pub fn known_type(&self) -> Option<EventType> {
        EventType::from_name(&self.event_type)
    }

    /// The type without its `dev.callboard.` prefix, e.g. `entity.upserted.v1` (how read models
    /// and clients name it).
    pub fn short_type(&self) -> &str {
        self.event_type
            .strip_prefix("dev.callboard.")
            .unwrap_or(&self.event_type)
    }
}

impl EventView {
    /// The payload decoded as `T` (a payload type of [`crate::types`], or a view of this module
    /// that borrows from the event).
    pub fn payload<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.get())
    }

    /// `data` as a JSON value (for the rare readers that want the payload whole).
    pub fn data_value(&self) -> Value {
        serde_json::from_str(self.data.get()).unwrap_or(Value::Null)
    }
}

/// A JSON string, borrowed from the text unless it has escapes (serde cannot borrow those; its
/// `Cow` never borrows, and copying every ref and uid was 1% of a projector's CPU).
fn string_of(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let text = raw?.get();
    match serde_json::from_str::<&str>(text) {
        Ok(borrowed) => Some(Cow::Borrowed(borrowed)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

/// A relation of an upsert, borrowed from the event's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationText<'a> {
    /// Source ref.
    pub source: Cow<'a, str>,
    /// Relation type, e.g. `ownedBy`.
    pub relation_type: Cow<'a, str>,
    /// Target ref.
    pub target: Cow<'a, str>,
}

/// `entity.upserted.v1` as projections read it, borrowed from the event's text; the entity stays
/// JSON text. Fields are read leniently: a missing or mistyped optional field reads as empty, and
/// a relation item missing a part is ignored.
#[derive(Debug, Clone)]
pub struct UpsertView<'a> {
    /// The canonical ref.
    pub entity_ref: Cow<'a, str>,
    /// The entity's uid.
    pub uid: Cow<'a, str>,
    /// The entity document, as written.
    pub entity: &'a RawValue,
    /// The relation rows, both directions.
    pub relations: Vec<RelationText<'a>>,
    /// The file (or `push`) that defines it.
    pub location_key: Cow<'a, str>,
    /// The registered location that led to it.
    pub origin_location: Cow<'a, str>,
    /// Hash of the entity's content.
    pub content_hash: Cow<'a, str>,
}

impl<'a> UpsertView<'a> {
    /// Reads an upsert's payload; `None` when it lacks its ref, uid or entity.
    pub fn read(data: &'a RawValue) -> Option<Self> {
        /// The fields, each still JSON text: read one by one, so that a field of the wrong type
        /// reads as absent instead of failing the whole payload.
        #[derive(Deserialize)]
        struct Fields<'a> {
            #[serde(rename = "entityRef", borrow, default)]
            entity_ref: Option<&'a RawValue>,
            #[serde(borrow, default)]
            uid: Option<&'a RawValue>,
            #[serde(borrow, default)]
            entity: Option<&'a RawValue>,
            #[serde(borrow, default)]
            relations: Option<&'a RawValue>,
            #[serde(rename = "locationKey", borrow, default)]
            location_key: Option<&'a RawValue>,
            #[serde(rename = "originLocation", borrow, default)]
            origin: Option<&'a RawValue>,
            #[serde(rename = "contentHash", borrow, default)]
            content_hash: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Item<'a> {
            #[serde(rename = "sourceRef", borrow, default)]
            source: Option<&'a RawValue>,
            #[serde(rename = "type", borrow, default)]
            relation_type: Option<&'a RawValue>,
            #[serde(rename = "targetRef", borrow, default)]
            target: Option<&'a RawValue>,
        }
        let fields: Fields<'a> = serde_json::from_str(data.get()).ok()?;
        let relations = fields
            .relations
            .and_then(|raw| serde_json::from_str::<Vec<Option<Item<'a>>>>(raw.get()).ok())
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some(RelationText {
                    source: string_of(r.source)?,
                    relation_type: string_of(r.relation_type)?,
                    target: string_of(r.target)?,
                })
            })
            .collect();
        let text = |raw| string_of(raw).unwrap_or_default();
        Some(Self {
            entity_ref: string_of(fields.entity_ref)?,
            uid: string_of(fields.uid)?,
            entity: fields.entity?,
            relations,
            location_key: text(fields.location_key),
            origin_location: text(fields.origin),
            content_hash: text(fields.content_hash),
        })
    }

    /// The owner: the target of the `ownedBy` relation the entity itself declares.
    pub fn owner(&self) -> Option<&str> {
        self.relations
            .iter()
            .find(|r| r.relation_type == "ownedBy" && r.source == self.entity_ref)
            .map(|r| r.target.as_ref())
    }
}

/// A value that reads as its default when it has another type, so one mistyped field of a payload
/// does not make the rest unreadable.
fn lenient<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(deserializer: D) -> Result<T, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Value(T),
        Other(IgnoredAny),
    }
    Ok(match Either::<T>::deserialize(deserializer)? {
        Either::Value(value) => value,
        Either::Other(_) => T::default(),
    })
}

/// `entity.rejected.v1` as read models read it; fields read leniently (see [`UpsertView`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedView {
    /// The canonical ref, when the document got far enough to have one.
    #[serde(default, deserialize_with = "lenient")]
    pub entity_ref: Option<String>,
    /// The file the document is in.
    #[serde(default, deserialize_with = "lenient")]
    pub location: String,
    /// The registered location that led to the file.
    #[serde(default, deserialize_with = "lenient")]
    pub origin_location: String,
    /// The document's position in the file.
    #[serde(default, deserialize_with = "lenient")]
    pub document_index: Option<i64>,
    /// The problems, as written.
    #[serde(default)]
    pub problems: Option<Value>,
    /// For conflicts: the location that already defines the entity.
    #[serde(default, deserialize_with = "lenient")]
    pub conflicts_with: Option<String>,
    /// Hash of the rejection's content.
    #[serde(default, deserialize_with = "lenient")]
    pub content_hash: String,
}

/// The fields every entity-topic payload may carry that readers keep track of an entity by
/// (`entity.upserted.v1`, `entity.deleted.v1`, `entity.rejected.v1`); fields read leniently.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityFacts {
    /// The entity's uid.
    #[serde(default, deserialize_with = "lenient")]
    pub uid: Option<String>,
    /// Hash of the content.
    #[serde(default, deserialize_with = "lenient")]
    pub content_hash: Option<String>,
    /// The file (or `push`) that defines it.
    #[serde(default, deserialize_with = "lenient")]
    pub location_key: Option<String>,
    /// The registered location that led to it.
    #[serde(default, deserialize_with = "lenient")]
    pub origin_location: Option<String>,
    /// For rejections and clearings: the file.
    #[serde(default, deserialize_with = "lenient")]
    pub location: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::CloudEvent;

    fn view(event_type: EventType, data: Value) -> EventView {
        let event = CloudEvent::new(event_type, "component:default/a", 1, "file:/x", "user:default/u", data);
        EventView::from_bytes(&event.to_bytes()).expect("an event")
    }

    #[test]
    fn upserts_read_leniently_and_borrow() {
        let event = view(
            EventType::EntityUpserted,
            json!({"entityRef": "component:default/a", "uid": "u1", "entity": {"kind": "Component"},
                   "contentHash": 7, "relations": [
                       {"type": "ownedBy", "sourceRef": "component:default/a", "targetRef": "group:default/t"},
                       {"type": "ownerOf", "sourceRef": "group:default/t"},
                       null]}),
        );
        let upsert = UpsertView::read(&event.data).expect("readable");
        assert!(matches!(upsert.entity_ref, Cow::Borrowed(_)));
        assert_eq!(upsert.content_hash, "", "a mistyped field reads as empty");
        assert_eq!(upsert.relations.len(), 1, "incomplete items are ignored");
        assert_eq!(upsert.owner(), Some("group:default/t"));
        assert_eq!(event.short_type(), "entity.upserted.v1");
        let broken = view(EventType::EntityUpserted, json!({"entityRef": "component:default/a"}));
        assert!(UpsertView::read(&broken.data).is_none());
    }

    #[test]
    fn rejections_and_facts_read_leniently() {
        let event = view(
            EventType::EntityRejected,
            json!({"entityRef": 3, "location": "file:/x", "documentIndex": 2, "problems": [{"rule": "r"}],
                   "originLocation": "file:/o", "contentHash": "h"}),
        );
        let rejected: RejectedView = event.payload().expect("readable");
        assert_eq!(rejected.entity_ref, None);
        assert_eq!(
            (rejected.location.as_str(), rejected.document_index),
            ("file:/x", Some(2))
        );
        assert_eq!(rejected.problems, Some(json!([{"rule": "r"}])));
        let facts: EntityFacts = event.payload().expect("readable");
        assert_eq!(facts.location.as_deref(), Some("file:/x"));
        assert_eq!(facts.content_hash.as_deref(), Some("h"));
    }
}
