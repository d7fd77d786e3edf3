//! The JSON Schemas in `schema/events/` are the published contract of the events Callboard
//! writes. This test builds a realistic event of every [`EventType`] with the crate's own types,
//! exactly as the writer serialises it, and checks it against the schema of its type; it also
//! checks that there is exactly one schema per type, and that the schemas refuse what they must
//! (a missing subject, a data field of the wrong type, sequence 0 on an entity event, ...).

use std::collections::BTreeMap;
use std::path::PathBuf;

use callboard_events::CloudEvent;
use callboard_events::hash::content_hash;
use callboard_events::types::{
    ApplyEntity, CommandCompleted, CommandStatus, DeleteEntity, DeleteReason, EntityDeleted, EntityRejected,
    EntityUpserted, EventType, LocationChanged, LocationCommand, LocationRecord, PositionRecord, ProblemRecord,
    RejectionCleared, RelationRecord,
};
use jsonschema::{Retrieve, Uri};
use serde_json::{Map, Value, json};

const BASE: &str = "https://callboard.dev/schema/events/";
const FILE: &str = "file:/srv/catalog/payments/catalog-info.yaml";
const ORIGIN: &str = "file:/srv/catalog/catalog-info.yaml";
const USER: &str = "user:default/jane.doe";

fn schema_dir() -> PathBuf {
    callboard_testkit::workspace_root().join("schema/events")
}

/// Serves `https://callboard.dev/schema/events/<file>` from `schema/events/`, and nothing else.
#[derive(Debug)]
struct LocalSchemas(PathBuf);

impl Retrieve for LocalSchemas {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix(BASE)
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| format!("not a Callboard event schema: {uri}"))?;
        let text = std::fs::read_to_string(self.0.join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(schema_dir().join(file))
        .unwrap_or_else(|e| panic!("cannot read schema/events/{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("schema/events/{file} is not JSON: {e}"))
}

fn validator(event_type: EventType) -> jsonschema::Validator {
    let file = format!("{}.json", event_type.short_name());
    jsonschema::options()
        .with_retriever(LocalSchemas(schema_dir()))
        .should_validate_formats(true)
        .build(&load(&file))
        .unwrap_or_else(|e| panic!("schema/events/{file} does not compile: {e}"))
}

fn to_value<T: serde::Serialize>(payload: &T) -> Value {
    serde_json::to_value(payload).expect("payloads serialise")
}

/// The message value exactly as it is written to the log.
fn wire(event: &CloudEvent) -> Value {
    serde_json::from_slice(&event.to_bytes()).expect("events are JSON")
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn assert_valid(event_type: EventType, instance: &Value) {
    let found = errors(&validator(event_type), instance);
    assert!(
        found.is_empty(),
        "{} does not accept\n{}\n{found:#?}",
        event_type.short_name(),
        serde_json::to_string_pretty(instance).unwrap_or_default()
    );
}

fn assert_invalid(validator: &jsonschema::Validator, instance: &Value, why: &str) {
    assert!(
        !validator.is_valid(instance),
        "{why}: the schema accepts\n{}",
        serde_json::to_string_pretty(instance).unwrap_or_default()
    );
}

fn payments_api() -> Map<String, Value> {
    let Value::Object(entity) = json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": "payments-api",
            "namespace": "default",
            "title": "Payments API",
            "annotations": {
                "backstage.io/managed-by-location": FILE,
                "backstage.io/managed-by-origin-location": ORIGIN,
            },
            "tags": ["java", "payments"],
        },
        "spec": {
            "type": "service",
            "lifecycle": "production",
            "owner": "team-payments",
            "system": "checkout",
            "providesApis": ["payments"],
        },
    }) else {
        unreachable!()
    };
    entity
}

fn relation(relation_type: &str, source: &str, target: &str) -> RelationRecord {
    RelationRecord {
        relation_type: relation_type.into(),
        source_ref: source.into(),
        target_ref: target.into(),
    }
}

fn upserted() -> EntityUpserted {
    let entity = payments_api();
    let me = "component:default/payments-api";
    EntityUpserted {
        entity_ref: me.into(),
        uid: uuid::Uuid::new_v4().to_string(),
        content_hash: content_hash(&Value::Object(entity.clone())),
        entity,
        relations: vec![
            relation("apiProvidedBy", "api:default/payments", me),
            relation("hasPart", "system:default/checkout", me),
            relation("ownedBy", me, "group:default/team-payments"),
            relation("ownerOf", "group:default/team-payments", me),
            relation("partOf", me, "system:default/checkout"),
            relation("providesApi", me, "api:default/payments"),
        ],
        location_key: FILE.into(),
        origin_location: ORIGIN.into(),
    }
}

fn problem(rule: &str, field: &str, message: &str, hint: Option<&str>, at: Option<(u32, u32)>) -> ProblemRecord {
    ProblemRecord {
        rule: rule.into(),
        field: field.into(),
        message: message.into(),
        hint: hint.map(str::to_owned),
        line: at.map(|a| a.0),
        column: at.map(|a| a.1),
    }
}

fn rejected(
    entity_ref: Option<&str>,
    location: &str,
    index: Option<u32>,
    problems: Vec<ProblemRecord>,
    conflicts_with: Option<&str>,
) -> EntityRejected {
    let hash = content_hash(&json!({
        "location": location, "index": index, "problems": problems, "conflictsWith": conflicts_with,
    }));
    EntityRejected {
        entity_ref: entity_ref.map(str::to_owned),
        location: location.into(),
        document_index: index,
        problems,
        origin_location: ORIGIN.into(),
        conflicts_with: conflicts_with.map(str::to_owned),
        content_hash: hash,
    }
}

fn registration() -> LocationRecord {
    LocationRecord {
        location_type: "url".into(),
        target: "https://github.com/acme/payments/blob/main/catalog-info.yaml".into(),
    }
}

fn location_changed() -> LocationChanged {
    LocationChanged {
        location: registration(),
        id: uuid::Uuid::new_v4().to_string(),
        entity_ref: "location:default/generated-0a3f5e6c9d1b2a4f8e7c6b5a49382716a5b4c3d2".into(),
    }
}

fn command(event_type: EventType, subject: &str, data: Value) -> CloudEvent {
    CloudEvent::new(event_type, subject, 0, "callboard:api", USER, data)
}

fn completed(command: &CloudEvent, outcome: &CommandCompleted) -> CloudEvent {
    CloudEvent::new(
        EventType::CommandCompleted,
        command.subject.clone(),
        0,
        "callboard:writer",
        "callboard:writer",
        to_value(outcome),
    )
    .caused_by(Some(command.id.clone()))
}

/// Realistic events of `event_type`, built the way Callboard builds them. The match is exhaustive
/// so that a new type cannot be added without its samples.
fn samples(event_type: EventType) -> Vec<CloudEvent> {
    let me = "component:default/payments-api";
    match event_type {
        EventType::EntityUpserted => {
            let scanned = CloudEvent::new(event_type, me, 1, FILE, "provider:location", to_value(&upserted()));
            let mut pushed = upserted();
            pushed.location_key = "push".into();
            pushed.origin_location = "push".into();
            for key in [
                "backstage.io/managed-by-location",
                "backstage.io/managed-by-origin-location",
            ] {
                pushed.entity["metadata"]["annotations"][key] = json!(format!("push:{USER}"));
            }
            pushed.content_hash = content_hash(&Value::Object(pushed.entity.clone()));
            let pushed = CloudEvent::new(event_type, me, 7, "callboard:api", USER, to_value(&pushed))
                .caused_by(Some(uuid::Uuid::new_v4().to_string()));
            vec![scanned, pushed]
        }
        EventType::EntityDeleted => {
            let mut events = Vec::new();
            for (reason, source, actor) in [
                (DeleteReason::RemovedFromSource, FILE, "provider:location"),
                (DeleteReason::LocationUnregistered, ORIGIN, USER),
                (DeleteReason::DeletedByUser, "callboard:api", USER),
            ] {
                let payload = EntityDeleted {
                    entity_ref: me.into(),
                    uid: uuid::Uuid::new_v4().to_string(),
                    reason,
                    location_key: if reason == DeleteReason::DeletedByUser {
                        "push".into()
                    } else {
                        FILE.into()
                    },
                };
                events.push(CloudEvent::new(event_type, me, 4, source, actor, to_value(&payload)));
            }
            events
        }
        EventType::EntityRejected => {
            let invalid = rejected(
                Some(me),
                FILE,
                Some(0),
                vec![problem(
                    "schema.required",
                    "spec.owner",
                    "spec.owner is required for a Component",
                    Some("name the owning group, e.g. owner: team-payments"),
                    Some((9, 3)),
                )],
                None,
            );
            let broken_file = "file:/srv/catalog/billing/catalog-info.yaml";
            let no_ref = rejected(
                None,
                broken_file,
                Some(2),
                vec![problem(
                    "yaml.syntax",
                    "",
                    "mapping values are not allowed here",
                    None,
                    Some((14, 12)),
                )],
                None,
            );
            let conflict = rejected(
                Some(me),
                "file:/srv/catalog/legacy/catalog-info.yaml",
                None,
                vec![problem(
                    "entity.conflict",
                    "metadata.name",
                    &format!(
                        "{me} is already defined by {FILE}; this definition in file:/srv/catalog/legacy/catalog-info.yaml is ignored"
                    ),
                    Some("keep one definition, or unregister the location that should not define it"),
                    None,
                )],
                Some(FILE),
            );
            vec![
                CloudEvent::new(event_type, me, 3, FILE, "provider:location", to_value(&invalid)),
                CloudEvent::new(
                    event_type,
                    format!("{broken_file}#2"),
                    1,
                    broken_file,
                    "provider:location",
                    to_value(&no_ref),
                ),
                CloudEvent::new(
                    event_type,
                    me,
                    5,
                    "file:/srv/catalog/legacy/catalog-info.yaml",
                    "provider:location",
                    to_value(&conflict),
                ),
            ]
        }
        EventType::RejectionCleared => {
            let fixed = RejectionCleared {
                location: FILE.into(),
                reason: callboard_events::types::ClearReason::Fixed,
            };
            let removed = RejectionCleared {
                location: "file:/srv/catalog/billing/catalog-info.yaml".into(),
                reason: callboard_events::types::ClearReason::Removed,
            };
            vec![
                CloudEvent::new(event_type, me, 4, FILE, "provider:location", to_value(&fixed)),
                CloudEvent::new(
                    event_type,
                    "file:/srv/catalog/billing/catalog-info.yaml#2",
                    2,
                    ORIGIN,
                    USER,
                    to_value(&removed),
                ),
            ]
        }
        EventType::LocationRegistered | EventType::LocationUnregistered => {
            let key = registration().key();
            let sequence = if event_type == EventType::LocationRegistered {
                1
            } else {
                2
            };
            vec![CloudEvent::new(
                event_type,
                key.clone(),
                sequence,
                key,
                USER,
                to_value(&location_changed()),
            )]
        }
        EventType::ApplyEntity => {
            let entity = json!({
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "Component",
                "metadata": {"name": "Payments-Worker"},
                "spec": {"type": "service", "lifecycle": "experimental", "owner": "team-payments"},
            });
            vec![command(
                event_type,
                "component:default/payments-worker",
                to_value(&ApplyEntity { entity }),
            )]
        }
        EventType::DeleteEntity => {
            let data = DeleteEntity {
                entity_ref: "Component:default/Payments-Worker".into(),
            };
            vec![command(
                event_type,
                "component:default/payments-worker",
                to_value(&data),
            )]
        }
        EventType::RegisterLocation | EventType::UnregisterLocation | EventType::RefreshLocation => {
            let data = LocationCommand {
                location: registration(),
            };
            vec![command(event_type, &registration().key(), to_value(&data))]
        }
        EventType::CommandCompleted => {
            let apply = command(EventType::ApplyEntity, "component:default/payments-worker", json!({}));
            let register = command(EventType::RegisterLocation, &registration().key(), json!({}));
            let ok = CommandCompleted {
                command_id: apply.id.clone(),
                status: CommandStatus::Ok,
                positions: vec![PositionRecord {
                    topic: "callboard.entities".into(),
                    partition: 3,
                    offset: 18_204,
                }],
                entity_refs: vec!["component:default/payments-worker".into()],
                problems: Vec::new(),
                message: None,
            };
            let rejected = CommandCompleted {
                command_id: apply.id.clone(),
                status: CommandStatus::Rejected,
                positions: Vec::new(),
                entity_refs: Vec::new(),
                problems: vec![problem(
                    "schema.required",
                    "spec.lifecycle",
                    "spec.lifecycle is required for a Component",
                    None,
                    None,
                )],
                message: Some("spec.lifecycle is required for a Component".into()),
            };
            let failed = CommandCompleted {
                command_id: register.id.clone(),
                status: CommandStatus::Failed,
                positions: Vec::new(),
                entity_refs: Vec::new(),
                problems: Vec::new(),
                message: Some("the event log is unavailable: broker transport failure".into()),
            };
            vec![
                completed(&apply, &ok),
                completed(&apply, &rejected),
                completed(&register, &failed),
            ]
        }
    }
}

fn schema_files() -> BTreeMap<String, Value> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(schema_dir()).expect("schema/events is readable") {
        let name = entry
            .expect("directory entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".json") && name != "common.json" {
            let schema = load(&name);
            files.insert(name, schema);
        }
    }
    files
}

#[test]
fn every_event_type_validates_against_its_schema() {
    for event_type in EventType::ALL {
        let events = samples(event_type);
        assert!(!events.is_empty());
        for event in events {
            assert_eq!(event.known_type(), Some(event_type));
            let value = wire(&event);
            assert_valid(event_type, &value);
            // Read back with the crate's own types, the data is what was written.
            let back = CloudEvent::from_bytes(&event.to_bytes()).expect("events parse");
            assert_eq!(back, event);
        }
    }
}

#[test]
fn there_is_exactly_one_schema_per_event_type() {
    let files = schema_files();
    let mut seen: BTreeMap<&'static str, String> = BTreeMap::new();
    for (name, schema) in &files {
        let type_name = schema["properties"]["type"]["const"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no `type` const"));
        let event_type =
            EventType::from_name(type_name).unwrap_or_else(|| panic!("{name}: {type_name} is not an EventType"));
        assert_eq!(
            *name,
            format!("{}.json", event_type.short_name()),
            "file name of {type_name}"
        );
        assert_eq!(schema["$id"], json!(format!("{BASE}{name}")), "$id of {name}");
        assert_eq!(schema["$id"], json!(event_type.schema_url()), "$id of {name}");
        assert_eq!(
            schema["properties"]["dataschema"]["const"],
            json!(event_type.schema_url()),
            "dataschema const of {name}"
        );
        assert_eq!(
            schema["$schema"],
            json!("https://json-schema.org/draft/2020-12/schema"),
            "{name} is draft 2020-12"
        );
        if let Some(other) = seen.insert(event_type.name(), name.clone()) {
            panic!("{type_name} has two schemas: {other} and {name}");
        }
    }
    for event_type in EventType::ALL {
        assert!(
            seen.contains_key(event_type.name()),
            "{} has no schema",
            event_type.name()
        );
    }
    assert_eq!(files.len(), EventType::ALL.len());
    assert_eq!(load("common.json")["$id"], json!(format!("{BASE}common.json")));
}

#[test]
fn the_index_lists_every_schema() {
    let readme = std::fs::read_to_string(schema_dir().join("README.md")).expect("schema/events/README.md");
    for event_type in EventType::ALL {
        let file = format!("{}.json", event_type.short_name());
        assert!(readme.contains(&file), "schema/events/README.md does not list {file}");
    }
}

/// Every `json` block of `docs/events.md` is JSON, and every event among them is valid.
#[test]
fn the_examples_in_the_documentation_are_valid() {
    let path = schema_dir().join("../../docs/events.md");
    let text = std::fs::read_to_string(&path).expect("docs/events.md");
    let mut checked = BTreeMap::<&'static str, usize>::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```json\n") {
        let block = &rest[start + "```json\n".len()..];
        let end = block.find("\n```").expect("a closed code block");
        let value: Value = serde_json::from_str(&block[..end]).unwrap_or_else(|e| {
            panic!(
                "docs/events.md has a json block that is not JSON ({e}):\n{}",
                &block[..end]
            )
        });
        let event_type = value["type"]
            .as_str()
            .and_then(EventType::from_name)
            .unwrap_or_else(|| panic!("docs/events.md: a json block that is not a known event:\n{value:#}"));
        assert_valid(event_type, &value);
        // The examples parse with the crate's own types, too.
        let event: CloudEvent = serde_json::from_value(value.clone()).expect("the envelope parses");
        match event_type {
            EventType::EntityUpserted => {
                let data: EntityUpserted = serde_json::from_value(event.data).expect("payload");
                assert_eq!(
                    data.content_hash,
                    content_hash(&Value::Object(data.entity)),
                    "docs/events.md: the example's contentHash is the hash of its entity"
                );
            }
            EventType::EntityDeleted => drop(serde_json::from_value::<EntityDeleted>(event.data).expect("payload")),
            EventType::EntityRejected => {
                let data: EntityRejected = serde_json::from_value(event.data).expect("payload");
                let hash = content_hash(&json!({
                    "location": data.location, "index": data.document_index,
                    "problems": data.problems, "conflictsWith": data.conflicts_with,
                }));
                assert_eq!(
                    data.content_hash, hash,
                    "docs/events.md: the example's rejection contentHash"
                );
            }
            EventType::RejectionCleared => {
                drop(serde_json::from_value::<RejectionCleared>(event.data).expect("payload"))
            }
            EventType::LocationRegistered | EventType::LocationUnregistered => {
                drop(serde_json::from_value::<LocationChanged>(event.data).expect("payload"));
            }
            EventType::ApplyEntity => drop(serde_json::from_value::<ApplyEntity>(event.data).expect("payload")),
            EventType::DeleteEntity => drop(serde_json::from_value::<DeleteEntity>(event.data).expect("payload")),
            EventType::RegisterLocation | EventType::UnregisterLocation | EventType::RefreshLocation => {
                drop(serde_json::from_value::<LocationCommand>(event.data).expect("payload"));
            }
            EventType::CommandCompleted => {
                drop(serde_json::from_value::<CommandCompleted>(event.data).expect("payload"))
            }
        }
        *checked.entry(event_type.short_name()).or_default() += 1;
        rest = &block[end..];
    }
    for short in [
        "entity.upserted.v1",
        "entity.deleted.v1",
        "entity.rejected.v1",
        "entity.rejection-cleared.v1",
        "location.registered.v1",
    ] {
        assert!(checked.contains_key(short), "docs/events.md has no example of {short}");
    }
}

/// A wrong value for every data field: no field of any payload is a boolean.
#[test]
fn schemas_refuse_what_callboard_never_writes() {
    for event_type in EventType::ALL {
        let validator = validator(event_type);
        let short = event_type.short_name();
        let event = wire(&samples(event_type)[0]);

        let mut missing_subject = event.clone();
        missing_subject.as_object_mut().unwrap().remove("subject");
        assert_invalid(&validator, &missing_subject, &format!("{short} without subject"));

        for attribute in [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "datacontenttype",
            "dataschema",
            "sequence",
            "actor",
            "data",
        ] {
            let mut missing = event.clone();
            missing.as_object_mut().unwrap().remove(attribute);
            assert_invalid(&validator, &missing, &format!("{short} without {attribute}"));
        }

        let data = event["data"].as_object().unwrap().clone();
        for (field, value) in &data {
            let mut wrong = event.clone();
            wrong["data"][field] = json!(true);
            assert_invalid(&validator, &wrong, &format!("{short} with data.{field} = true"));
            // Fields the Rust types always write are required (`Option` without
            // `skip_serializing_if` is written as null, not left out).
            let mut missing = event.clone();
            missing["data"].as_object_mut().unwrap().remove(field);
            let optional = matches!(field.as_str(), "conflictsWith" | "message");
            assert_eq!(
                validator.is_valid(&missing),
                optional,
                "{short} without data.{field} (value {value}) should be {}",
                if optional { "valid" } else { "invalid" }
            );
        }
        let mut unknown = event.clone();
        unknown["data"]["surprise"] = json!("x");
        assert_invalid(&validator, &unknown, &format!("{short} with an unknown data field"));

        let mut wrong_type = event.clone();
        let other = EventType::ALL.into_iter().find(|t| *t != event_type).unwrap();
        wrong_type["type"] = json!(other.name());
        assert_invalid(&validator, &wrong_type, &format!("{short} with type {}", other.name()));

        let mut wrong_schema = event.clone();
        wrong_schema["dataschema"] = json!(other.schema_url());
        assert_invalid(
            &validator,
            &wrong_schema,
            &format!("{short} with dataschema of {}", other.name()),
        );

        for (attribute, bad) in [
            ("specversion", json!("0.3")),
            ("datacontenttype", json!("application/yaml")),
            ("time", json!("yesterday")),
            ("time", json!("2025-03-14 09:26:53")),
            ("sequence", json!(-1)),
            ("sequence", json!("1")),
            ("sequence", json!(1.5)),
            ("actor", json!("")),
            ("id", json!("")),
        ] {
            let mut wrong = event.clone();
            wrong[attribute] = bad.clone();
            assert_invalid(&validator, &wrong, &format!("{short} with {attribute} = {bad}"));
        }

        let mut zero = event.clone();
        zero["sequence"] = json!(0);
        if event_type.is_command() {
            assert!(validator.is_valid(&zero), "{short}: commands carry sequence 0");
        } else {
            assert_invalid(&validator, &zero, &format!("{short} with sequence 0"));
        }

        // CloudEvents extensions added by others are allowed in the envelope.
        let mut extended = event.clone();
        extended["traceparent"] = json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        extended["partitionkey"] = json!(event["subject"]);
        assert!(validator.is_valid(&extended), "{short}: unknown extensions are allowed");
    }
}

#[test]
fn payload_details_are_enforced() {
    let upserted_v = validator(EventType::EntityUpserted);
    let good = wire(&samples(EventType::EntityUpserted)[0]);
    for (pointer, bad, why) in [
        ("/data/entity/apiVersion", Value::Null, "entity without apiVersion"),
        ("/data/entity/kind", Value::Null, "entity without kind"),
        (
            "/data/entity/metadata/name",
            Value::Null,
            "entity without metadata.name",
        ),
        (
            "/data/entity/metadata/namespace",
            Value::Null,
            "stored entity without namespace",
        ),
        (
            "/data/entity/metadata/annotations",
            Value::Null,
            "stored entity without location annotations",
        ),
        ("/data/entity/metadata", Value::Null, "entity without metadata"),
        (
            "/data/contentHash",
            json!("not-a-hash"),
            "contentHash that is not SHA-256 hex",
        ),
        ("/data/uid", json!("payments-api"), "uid that is not a UUID"),
        (
            "/data/relations/0/targetRef",
            json!("payments"),
            "relation target that is not a full ref",
        ),
        ("/data/relations/0/extra", json!(1), "relation with an unknown field"),
        (
            "/data/entityRef",
            json!("payments-api"),
            "entityRef that is not a full ref",
        ),
        ("/subject", json!("payments-api"), "subject that is not a full ref"),
    ] {
        let mut wrong = good.clone();
        set_or_remove(&mut wrong, pointer, bad);
        assert_invalid(&upserted_v, &wrong, why);
    }
    // `spec` is optional, and entities may carry fields the schema does not know.
    let mut no_spec = good.clone();
    no_spec["data"]["entity"].as_object_mut().unwrap().remove("spec");
    no_spec["data"]["entity"]["metadata"]["links"] = json!([{"url": "https://pay.acme.dev"}]);
    assert!(upserted_v.is_valid(&no_spec), "spec is optional");

    let rejected_v = validator(EventType::EntityRejected);
    let no_ref = wire(&samples(EventType::EntityRejected)[1]);
    assert_eq!(
        no_ref["data"]["entityRef"],
        Value::Null,
        "written as null, not left out"
    );
    assert_eq!(
        no_ref["subject"],
        json!("file:/srv/catalog/billing/catalog-info.yaml#2")
    );
    assert!(no_ref["data"].get("conflictsWith").is_none(), "left out, not null");
    assert!(
        no_ref["data"]["problems"][0].get("hint").is_none(),
        "left out, not null"
    );
    for (pointer, bad, why) in [
        ("/data/problems", json!([]), "a rejection without problems"),
        ("/data/problems/0/line", json!(0), "line 0 (lines are 1-based)"),
        (
            "/data/problems/0/hint",
            Value::Null,
            "a null hint (absent hints are left out)",
        ),
        (
            "/data/conflictsWith",
            Value::Null,
            "a null conflictsWith (left out when absent)",
        ),
        ("/data/documentIndex", json!(-1), "a negative document index"),
        ("/data/problems/0/rule", Value::Null, "a problem without rule"),
    ] {
        let mut wrong = no_ref.clone();
        if bad.is_null() && pointer != "/data/problems/0/rule" {
            // Write an explicit null rather than removing the field.
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            wrong.pointer_mut(parent).unwrap()[key] = Value::Null;
        } else {
            set_or_remove(&mut wrong, pointer, bad);
        }
        assert_invalid(&rejected_v, &wrong, why);
    }

    let cleared_v = validator(EventType::RejectionCleared);
    let mut wrong = wire(&samples(EventType::RejectionCleared)[0]);
    wrong["data"]["reason"] = json!("forgotten");
    assert_invalid(&cleared_v, &wrong, "a rejection cleared for an unknown reason");

    let deleted_v = validator(EventType::EntityDeleted);
    let mut wrong = wire(&samples(EventType::EntityDeleted)[0]);
    wrong["data"]["reason"] = json!("removed_from_source");
    assert_invalid(&deleted_v, &wrong, "a delete reason not in kebab-case");

    let registered_v = validator(EventType::LocationRegistered);
    let mut wrong = wire(&samples(EventType::LocationRegistered)[0]);
    wrong["data"]["location"]["type"] = json!("github-org");
    assert_invalid(&registered_v, &wrong, "a registered location of an unsupported type");

    let completed_v = validator(EventType::CommandCompleted);
    let failed = wire(&samples(EventType::CommandCompleted)[2]);
    let mut wrong = failed.clone();
    wrong["data"].as_object_mut().unwrap().remove("message");
    assert_invalid(&completed_v, &wrong, "a failed command without message");
    let mut wrong = failed.clone();
    wrong.as_object_mut().unwrap().remove("causationid");
    assert_invalid(&completed_v, &wrong, "a command outcome without causationid");
    let mut wrong = failed.clone();
    wrong["data"]["status"] = json!("Failed");
    assert_invalid(&completed_v, &wrong, "a status not in kebab-case");
    let ok = wire(&samples(EventType::CommandCompleted)[0]);
    let mut wrong = ok.clone();
    wrong["data"]["positions"][0]["partition"] = json!(-1);
    assert_invalid(&completed_v, &wrong, "a negative partition");

    let apply_v = validator(EventType::ApplyEntity);
    let mut wrong = wire(&samples(EventType::ApplyEntity)[0]);
    wrong["data"]["entity"] = json!("apiVersion: backstage.io/v1alpha1");
    assert_invalid(&apply_v, &wrong, "an entity that is not an object");
}

/// Sets the value at `pointer`, or removes it when `value` is null.
fn set_or_remove(instance: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let parent = if parent.is_empty() {
        instance
    } else {
        instance
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{parent} exists"))
    };
    match parent {
        Value::Object(map) => {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.to_owned(), value);
            }
        }
        Value::Array(items) => {
            let index: usize = key.parse().expect("an array index");
            items[index] = value;
        }
        other => panic!("{pointer}: cannot set inside {other}"),
    }
}
