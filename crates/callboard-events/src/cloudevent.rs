//! The CloudEvents 1.0 envelope, structured JSON mode (`application/cloudevents+json`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::types::EventType;

/// The CloudEvents version.
pub const SPEC_VERSION: &str = "1.0";
/// The Kafka `content-type` header value of structured-mode messages.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// One event. Unknown attributes are kept when an event is read and written again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per event (a UUID).
    pub id: String,
    /// Where the change came from: a location (`file:/…`, `url:https://…`, `discovery:/…`),
    /// `callboard:api` for commands, or `callboard:writer` for command outcomes.
    pub source: String,
    /// The versioned type, e.g. `dev.callboard.entity.upserted.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the event is about: the canonical entity ref, or a location ref. Also the message key.
    pub subject: String,
    /// When the event was created, RFC 3339, UTC.
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// URL of the JSON Schema of `data`.
    pub dataschema: String,
    /// Extension: increases by one with every event about the same subject, starting at 1, on
    /// the entities and locations topics; 0 on the commands topic, where it has no meaning.
    pub sequence: u64,
    /// Extension: who acted — a user's entity ref, `provider:<name>`, or `callboard:writer`.
    pub actor: String,
    /// Extension: the id of the command that caused this event, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    /// The payload.
    pub data: Value,
}

impl CloudEvent {
    /// A new event of `event_type` about `subject`.
    pub fn new(
        event_type: EventType,
        subject: impl Into<String>,
        sequence: u64,
        source: impl Into<String>,
        actor: impl Into<String>,
        data: Value,
    ) -> Self {
        Self {
            specversion: SPEC_VERSION.into(),
            id: uuid::Uuid::new_v4().to_string(),
            source: source.into(),
            event_type: event_type.name().into(),
            subject: subject.into(),
            time: now_rfc3339(),
            datacontenttype: "application/json".into(),
            dataschema: event_type.schema_url(),
            sequence,
            actor: actor.into(),
            causationid: None,
            data,
        }
    }

    /// Sets the causing command.
    #[must_use]
    pub fn caused_by(mut self, command_id: Option<String>) -> Self {
        self.causationid = command_id;
        self
    }

    /// The known type, if it is one.
    pub fn known_type(&self) -> Option<EventType> {
        EventType::from_name(&self.event_type)
    }

    /// Serialises to the structured-mode JSON bytes written to the log.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|e| unreachable!("a CloudEvent always serialises: {e}"))
    }

    /// The bytes of this event with `data` in place of its own: exactly what [`to_bytes`] gives
    /// for an event whose `data` is `data` as a `Value`, without building that `Value` (for
    /// large payloads written in bulk, such as upserts during an import).
    ///
    /// [`to_bytes`]: CloudEvent::to_bytes
    pub fn to_bytes_with_data<D: Serialize>(&self, data: &D) -> Vec<u8> {
        /// The envelope's fields in [`CloudEvent`]'s order, borrowing.
        #[derive(Serialize)]
        struct Envelope<'a, D> {
            specversion: &'a str,
            id: &'a str,
            source: &'a str,
            #[serde(rename = "type")]
            event_type: &'a str,
            subject: &'a str,
            time: &'a str,
            datacontenttype: &'a str,
            dataschema: &'a str,
            sequence: u64,
            actor: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            causationid: Option<&'a str>,
            data: &'a D,
        }
        let envelope = Envelope {
            specversion: &self.specversion,
            id: &self.id,
            source: &self.source,
            event_type: &self.event_type,
            subject: &self.subject,
            time: &self.time,
            datacontenttype: &self.datacontenttype,
            dataschema: &self.dataschema,
            sequence: self.sequence,
            actor: &self.actor,
            causationid: self.causationid.as_deref(),
            data,
        };
        serde_json::to_vec(&envelope).unwrap_or_else(|e| unreachable!("an event always serialises: {e}"))
    }

    /// Parses structured-mode JSON bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The current time as RFC 3339, UTC, always with three fractional digits
/// (`2026-11-22T10:00:00.000Z`), so times compare correctly as strings.
pub fn now_rfc3339() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// Formats a time the way events carry it.
pub fn format_time(time: OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses any RFC 3339 time and formats it as events carry it; `None` if it is not RFC 3339.
pub fn normalize_time(text: &str) -> Option<String> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(format_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_data_serialises_as_the_value_would() {
        #[derive(Serialize)]
        struct Payload {
            b: u32,
            a: Vec<&'static str>,
        }
        let payload = Payload {
            b: 1,
            a: vec!["x", "é\"\n"],
        };
        let mut event = CloudEvent::new(
            EventType::EntityDeleted,
            "component:default/a",
            3,
            "s",
            "who",
            json!(null),
        );
        for cause in [None, Some("command-1".to_owned())] {
            event.causationid = cause;
            let with_value = CloudEvent {
                data: serde_json::to_value(&payload).expect("value"),
                ..event.clone()
            };
            assert_eq!(event.to_bytes_with_data(&payload), with_value.to_bytes());
        }
    }
}
