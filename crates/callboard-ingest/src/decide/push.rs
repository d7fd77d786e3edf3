//! Entities pushed through the API (the push provider).

use callboard_events::types::{DeleteReason, EventType, ProblemRecord};
use callboard_model::Entity;

use super::*;
use crate::state::State;

/// The location key of entities pushed through the API.
pub const PUSH_LOCATION: &str = "push";

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum PushRefusal {
    /// The entity is invalid.
    Invalid(Vec<ProblemRecord>),
    /// The entity is defined by a location, not through the API.
    ManagedElsewhere(String),
}

/// Decides applying a pushed entity (already validated) on behalf of `actor`.
pub fn decide_push_apply(state: &State, entity: &Entity, actor: &str, source: &str) -> Result<Decision, PushRefusal> {
    let r = entity.entity_ref().to_string();
    let live = state.subjects.get(&r).and_then(|s| s.live.as_ref());
    if let Some(live) = live.filter(|l| &*l.location_key != PUSH_LOCATION) {
        return Err(PushRefusal::ManagedElsewhere(live.location_key.to_string()));
    }
    let uid = live.map_or_else(|| uuid::Uuid::new_v4().to_string(), |l| l.uid.clone());
    let payload = upsert_payload(entity, &uid, PUSH_LOCATION, PUSH_LOCATION);
    let mut decision = Decision::default();
    if live.is_some_and(|l| l.content_hash == payload.content_hash) {
        decision.counts.unchanged += 1;
        return Ok(decision);
    }
    let mut seq = Sequencer::new(state);
    decision
        .entity_events
        .push(seq.event(EventType::EntityUpserted, r, source, actor, &payload));
    decision.counts.upserted += 1;
    Ok(decision)
}

/// Decides deleting a pushed entity. Deleting an absent entity is not an error (nothing happens).
pub fn decide_push_delete(state: &State, entity_ref: &str, actor: &str, source: &str) -> Result<Decision, PushRefusal> {
    let mut decision = Decision::default();
    let Some(live) = state.subjects.get(entity_ref).and_then(|s| s.live.as_ref()) else {
        return Ok(decision);
    };
    if &*live.location_key != PUSH_LOCATION {
        return Err(PushRefusal::ManagedElsewhere(live.location_key.to_string()));
    }
    let deleted = Sequencer::new(state).deletion(entity_ref, live, DeleteReason::DeletedByUser, source, actor);
    decision.entity_events.push(deleted);
    decision.counts.deleted += 1;
    Ok(decision)
}
