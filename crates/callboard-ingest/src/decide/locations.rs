//! Registering and unregistering locations.

use callboard_events::types::{
    ClearReason, DeleteReason, EventType, LocationChanged, LocationRecord, RejectionCleared,
};

use super::*;
use crate::state::State;

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
    let mut seq = Sequencer::new(state);
    let payload = LocationChanged {
        location: location.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        entity_ref: generated_location_ref(location),
    };
    decision
        .location_events
        .push(seq.location_event(EventType::LocationRegistered, key.clone(), actor, &payload));
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
    let mut seq = Sequencer::new(state);
    let payload = LocationChanged {
        location: location.clone(),
        id: registered.id.clone(),
        entity_ref: generated_location_ref(location),
    };
    decision
        .location_events
        .push(seq.location_event(EventType::LocationUnregistered, key.clone(), actor, &payload));
    let mut subjects: Vec<_> = state.subjects.iter().collect();
    subjects.sort_by(|a, b| a.0.cmp(b.0));
    for (subject, s) in subjects {
        if let Some(live) = s.live.as_ref().filter(|l| *l.origin == *key) {
            let deleted = seq.deletion(subject, live, DeleteReason::LocationUnregistered, key.clone(), actor);
            decision.entity_events.push(deleted);
            decision.counts.deleted += 1;
        } else if let Some(pending) = s.rejection.as_ref().filter(|p| *p.origin == *key) {
            let payload = RejectionCleared {
                location: pending.location.to_string(),
                reason: ClearReason::Removed,
            };
            decision.entity_events.push(seq.event(
                EventType::RejectionCleared,
                subject.clone(),
                key.clone(),
                actor,
                &payload,
            ));
            decision.counts.cleared += 1;
        }
    }
    decision
}
