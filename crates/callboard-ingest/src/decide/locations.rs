//! Registering and unregistering locations.

use callboard_events::CloudEvent;
use callboard_events::types::{
    ClearReason, DeleteReason, EntityDeleted, EventType, LocationChanged, LocationRecord, RejectionCleared,
};

use super::*;
use crate::state::{FastMap, State};

/// The ref of the Location entity Backstage generates for a registered location:
/// `location:default/generated-<sha1 of "<type>:<target>">`.
pub fn generated_location_ref(location: &LocationRecord) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(location.key().as_bytes());
    format!("location:default/generated-{}", hex::encode(digest))
}

/// Decides registering a location (no events when it is registered already).
pub fn decide_register(state: &State, location: &LocationRecord, actor: &str) -> Decision {
    let key = location.key();
    let mut decision = Decision::default();
    if state.locations.get(&key).is_some_and(|(_, r)| r.is_some()) {
        return decision;
    }
    let mut seq = Sequencer {
        state,
        next: FastMap::default(),
    };
    let payload = LocationChanged {
        location: location.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        entity_ref: generated_location_ref(location),
    };
    let sequence = seq.next_location(&key);
    decision.location_events.push(CloudEvent::new(
        EventType::LocationRegistered,
        key.clone(),
        sequence,
        key,
        actor,
        to_value(&payload),
    ));
    decision
}

/// Decides unregistering a location: the registration ends and everything that came through it
/// is deleted (Backstage's eager deletion), pending rejections included.
pub fn decide_unregister(state: &State, location: &LocationRecord, actor: &str) -> Decision {
    let key = location.key();
    let mut decision = Decision::default();
    let Some((_, Some(registered))) = state.locations.get(&key) else {
        return decision;
    };
    let mut seq = Sequencer {
        state,
        next: FastMap::default(),
    };
    let payload = LocationChanged {
        location: location.clone(),
        id: registered.id.clone(),
        entity_ref: generated_location_ref(location),
    };
    let sequence = seq.next_location(&key);
    decision.location_events.push(CloudEvent::new(
        EventType::LocationUnregistered,
        key.clone(),
        sequence,
        key.clone(),
        actor,
        to_value(&payload),
    ));
    let mut subjects: Vec<_> = state.subjects.iter().collect();
    subjects.sort_by(|a, b| a.0.cmp(b.0));
    for (subject, s) in subjects {
        if let Some(live) = s.live.as_ref().filter(|l| l.origin == key) {
            let payload = EntityDeleted {
                entity_ref: subject.clone(),
                uid: live.uid.clone(),
                reason: DeleteReason::LocationUnregistered,
                location_key: live.location_key.clone(),
            };
            let sequence = seq.next(subject);
            decision.entity_events.push(CloudEvent::new(
                EventType::EntityDeleted,
                subject.clone(),
                sequence,
                key.clone(),
                actor,
                to_value(&payload),
            ));
            decision.counts.deleted += 1;
        } else if let Some(pending) = s.rejection.as_ref().filter(|p| p.origin == key) {
            let payload = RejectionCleared {
                location: pending.location.clone(),
                reason: ClearReason::Removed,
            };
            let sequence = seq.next(subject);
            decision.entity_events.push(CloudEvent::new(
                EventType::RejectionCleared,
                subject.clone(),
                sequence,
                key.clone(),
                actor,
                to_value(&payload),
            ));
            decision.counts.cleared += 1;
        }
    }
    decision
}
