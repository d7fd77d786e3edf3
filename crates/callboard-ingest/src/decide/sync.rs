//! A full sync of one source: a scan's documents against the state.

use std::sync::Arc;

use callboard_events::CloudEvent;
use callboard_events::hash::content_hash_object;
use callboard_events::types::{ClearReason, DeleteReason, EntityRejected, EventType, ProblemRecord, RejectionCleared};
use callboard_model::Entity;
use serde_json::Value;

use super::*;
use crate::state::{FastMap, FastSet, State};

/// A definition whose incumbent is another file of the same source, settled at the end of a scan.
#[derive(Debug)]
struct Contested {
    entity: Box<Entity>,
    location: String,
    index: Option<u32>,
    hash: Option<String>,
}

/// What a scan knows of an entity it took: the file that defines it, and whether the scan upserted
/// it. Files' names are shared between their entities: a large sync holds one claim per entity
/// until its end, and a copy of the name each was a tenth of `serve`'s memory at 100,000 entities.
#[derive(Debug)]
struct Claim {
    location: Arc<str>,
    upserted: bool,
}

/// A full sync of one source, decided while the scan is still running: documents are fed in as
/// files are read (so a large import appends as it goes, and a crash loses little), and
/// [`SyncSession::finish`] settles what needs the whole picture — definitions that moved between
/// files, entities accepted again after a rejection, cleared rejections and deletions.
///
/// The caller appends the events each call returns and applies them to the state before the next
/// call, as the writer does.
#[derive(Debug)]
pub struct SyncSession {
    origin: String,
    actor: String,
    /// Entity ref → the file that defines it in this scan, and whether it was upserted.
    claims: FastMap<String, Claim>,
    /// Subjects rejected in this scan (the first rejection of a subject wins).
    rejected: FastSet<String>,
    /// Files whose entities must stay although they may not have been seen.
    protected: FastSet<String>,
    /// Files read in this scan.
    scanned: FastSet<String>,
    /// The name of the file claimed last, shared by the next claims from the same file.
    last_location: Option<Arc<str>>,
    /// Definitions whose incumbent is another file of this source not settled yet.
    contested: Vec<Contested>,
    /// Unchanged entities with a pending rejection: accepted again at the end unless rejected again.
    reaccept: Vec<(Box<Entity>, String, Option<String>)>,
    counts: Counts,
}

impl SyncSession {
    /// Starts a sync of the registered location `origin`.
    pub fn new(origin: impl Into<String>, actor: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            actor: actor.into(),
            claims: FastMap::default(),
            rejected: FastSet::default(),
            protected: FastSet::default(),
            scanned: FastSet::default(),
            last_location: None,
            contested: Vec::new(),
            reaccept: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Marks a file whose entities must stay (it could not be read).
    pub fn protect(&mut self, location: impl Into<String>) {
        self.protected.insert(location.into());
    }

    /// Decides the events for the next documents of the scan.
    pub fn feed(&mut self, state: &State, documents: Vec<Scanned>) -> Vec<Outgoing> {
        let mut seq = Sequencer::new(state);
        let mut events = Vec::new();
        for document in documents {
            match document {
                Scanned::Accepted {
                    entity,
                    location,
                    index,
                    hash,
                } => {
                    self.scanned.insert(location.clone());
                    let r = entity.entity_ref().to_string();
                    if let Some(earlier) = self.claimed_by(&r) {
                        self.conflict(&mut seq, state, &mut events, &r, &location, index, earlier);
                        continue;
                    }
                    if let Some(live) = state.subjects.get(&r).and_then(|s| s.live.as_ref())
                        && *live.location_key != *location
                    {
                        if *live.origin == *self.origin && &*live.location_key != PUSH_LOCATION {
                            // Its file may not define it any more: settle at the end.
                            self.contested.push(Contested {
                                entity,
                                location,
                                index,
                                hash,
                            });
                        } else {
                            let incumbent = live.location_key.to_string();
                            self.conflict(&mut seq, state, &mut events, &r, &location, index, incumbent);
                        }
                        continue;
                    }
                    self.claim(&mut seq, state, &mut events, entity, location, hash, true);
                }
                Scanned::Rejected {
                    entity_ref,
                    location,
                    index,
                    problems,
                } => {
                    self.scanned.insert(location.clone());
                    if entity_ref.is_none() {
                        // A document without identity may have held any entity of its file.
                        self.protected.insert(location.clone());
                    }
                    let subject = rejection_subject(entity_ref.as_deref(), &location, index);
                    let payload = rejection_payload(entity_ref, &location, index, problems, &self.origin, None);
                    self.reject(&mut seq, state, &mut events, subject, payload);
                }
            }
        }
        events
    }

    /// Settles contested definitions, re-acceptances, cleared rejections and (for a complete scan)
    /// deletions.
    pub fn finish(&mut self, state: &State, complete: bool) -> Vec<Outgoing> {
        let mut seq = Sequencer::new(state);
        let mut events = Vec::new();
        for Contested {
            entity,
            location,
            index,
            hash,
        } in std::mem::take(&mut self.contested)
        {
            let r = entity.entity_ref().to_string();
            if let Some(earlier) = self.claimed_by(&r) {
                self.conflict(&mut seq, state, &mut events, &r, &location, index, earlier);
                continue;
            }
            let live = state.subjects.get(&r).and_then(|s| s.live.as_ref());
            // The definition moved when its old file was read in this scan and no longer has it.
            let moved = live
                .is_none_or(|l| self.scanned.contains(&*l.location_key) && !self.protected.contains(&*l.location_key));
            if moved {
                self.claim(&mut seq, state, &mut events, entity, location, hash, true);
            } else if let Some(live) = live {
                let incumbent = live.location_key.to_string();
                self.conflict(&mut seq, state, &mut events, &r, &location, index, incumbent);
            }
        }
        for (entity, location, hash) in std::mem::take(&mut self.reaccept) {
            let r = entity.entity_ref().to_string();
            if self.rejected.contains(&r) {
                self.counts.unchanged += 1;
            } else {
                self.claim(&mut seq, state, &mut events, entity, location, hash, false);
            }
        }
        if !complete {
            return events;
        }
        let mut subjects: Vec<(&String, &crate::state::Subject)> = state.subjects.iter().collect();
        subjects.sort_by(|a, b| a.0.cmp(b.0));
        for (subject, s) in &subjects {
            if let Some(pending) = &s.rejection
                && *pending.origin == *self.origin
                && !self.rejected.contains(*subject)
                && !self.was_upserted(subject)
                && !(s.live.is_some()
                    && !self.claims.contains_key(*subject)
                    && self.protected.contains(&*pending.location))
            {
                let reason = if self.scanned.contains(&*pending.location) {
                    ClearReason::Fixed
                } else {
                    ClearReason::Removed
                };
                let payload = RejectionCleared {
                    location: pending.location.to_string(),
                    reason,
                };
                events.push(Outgoing::event(seq.event(
                    EventType::RejectionCleared,
                    (*subject).clone(),
                    pending.location.to_string(),
                    &self.actor,
                    &payload,
                )));
                self.counts.cleared += 1;
            }
        }
        for (subject, s) in subjects {
            let Some(live) = &s.live else { continue };
            let keep = *live.origin != *self.origin
                || self.claims.contains_key(subject)
                || self.rejected.contains(subject)
                || self.protected.contains(&*live.location_key);
            if keep {
                continue;
            }
            let source = live.location_key.to_string();
            let deleted = seq.deletion(subject, live, DeleteReason::RemovedFromSource, source, &self.actor);
            events.push(Outgoing::event(deleted));
            self.counts.deleted += 1;
        }
        events
    }

    /// The file that claimed `entity_ref` earlier in this scan, if one did.
    fn claimed_by(&self, entity_ref: &str) -> Option<String> {
        self.claims.get(entity_ref).map(|c| c.location.to_string())
    }

    /// Whether this scan upserted `subject`.
    fn was_upserted(&self, subject: &str) -> bool {
        self.claims.get(subject).is_some_and(|c| c.upserted)
    }

    /// Takes `entity` for `location`, upserting it when it changed. With `defer_reaccept`, an
    /// unchanged entity with a pending rejection waits for the end of the scan, when it is known
    /// whether it is rejected again. `hash` is the entity's content hash when known already.
    #[allow(clippy::too_many_arguments)]
    fn claim(
        &mut self,
        seq: &mut Sequencer<'_>,
        state: &State,
        events: &mut Vec<Outgoing>,
        entity: Box<Entity>,
        location: String,
        hash: Option<String>,
        defer_reaccept: bool,
    ) {
        let r = entity.entity_ref().to_string();
        let claimed = match &self.last_location {
            Some(last) if **last == *location => last.clone(),
            _ => Arc::from(location.as_str()),
        };
        self.last_location = Some(claimed.clone());
        self.claims.insert(
            r.clone(),
            Claim {
                location: claimed,
                upserted: false,
            },
        );
        let subject = state.subjects.get(&r);
        let live = subject.and_then(|s| s.live.as_ref());
        let uid = live.map_or_else(|| uuid::Uuid::new_v4().to_string(), |l| l.uid.clone());
        // A file reached through two registered locations stays with the first: taking turns
        // would emit an event on every scan of either.
        let origin = live
            .filter(|l| *l.location_key == *location)
            .map_or(self.origin.as_str(), |l| &*l.origin);
        let hash = hash.unwrap_or_else(|| content_hash_object(entity.raw()));
        let pending = subject.and_then(|s| s.rejection.as_ref()).is_some();
        let changed = live.is_none_or(|l| l.content_hash != hash || *l.location_key != *location);
        if !changed && pending && defer_reaccept {
            self.reaccept.push((entity, location, Some(hash)));
            return;
        }
        if changed || pending {
            let head = seq.event(
                EventType::EntityUpserted,
                r.clone(),
                location.clone(),
                &self.actor,
                &Value::Null,
            );
            events.push(Outgoing::Upsert(Box::new(PendingUpsert {
                head,
                entity,
                uid,
                hash,
                location,
                origin: origin.to_owned(),
            })));
            self.counts.upserted += 1;
            if let Some(claim) = self.claims.get_mut(&r) {
                claim.upserted = true;
            }
        } else {
            self.counts.unchanged += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn conflict(
        &mut self,
        seq: &mut Sequencer<'_>,
        state: &State,
        events: &mut Vec<Outgoing>,
        r: &str,
        location: &str,
        index: Option<u32>,
        incumbent: String,
    ) {
        let problem = ProblemRecord {
            rule: "entity.conflict".into(),
            field: "metadata.name".into(),
            message: format!("{r} is already defined by {incumbent}; this definition in {location} is ignored"),
            hint: Some("keep one definition, or unregister the location that should not define it".into()),
            line: None,
            column: None,
        };
        let payload = rejection_payload(
            Some(r.to_owned()),
            location,
            index,
            vec![problem],
            &self.origin,
            Some(incumbent),
        );
        self.reject(seq, state, events, r.to_owned(), payload);
    }

    /// Emits a rejection unless the subject was rejected already in this scan, or the same
    /// rejection is pending.
    fn reject(
        &mut self,
        seq: &mut Sequencer<'_>,
        state: &State,
        events: &mut Vec<Outgoing>,
        subject: String,
        payload: EntityRejected,
    ) {
        if !self.rejected.insert(subject.clone()) {
            return;
        }
        let pending = state.subjects.get(&subject).and_then(|s| s.rejection.as_ref());
        if pending.is_some_and(|p| p.hash == payload.content_hash) && !self.was_upserted(&subject) {
            self.counts.unchanged += 1;
            return;
        }
        events.push(Outgoing::event(seq.event(
            EventType::EntityRejected,
            subject,
            payload.location.clone(),
            &self.actor,
            &payload,
        )));
        self.counts.rejected += 1;
    }
}

/// Decides a whole batch at once (feeding it in one go); for tests and small callers. The
/// returned events assume none of them was applied yet.
pub fn decide_sync(state: &State, batch: &SyncBatch) -> Decision {
    let mut session = SyncSession::new(batch.origin.clone(), batch.actor.clone());
    for location in &batch.protected {
        session.protect(location.clone());
    }
    let mut working = state.clone();
    let fed = session.feed(&working, batch.documents.clone());
    for event in &fed {
        working.apply_outgoing(event);
    }
    let mut events: Vec<CloudEvent> = fed.into_iter().map(Outgoing::into_event).collect();
    events.extend(
        session
            .finish(&working, batch.complete)
            .into_iter()
            .map(Outgoing::into_event),
    );
    Decision {
        entity_events: events,
        location_events: Vec::new(),
        counts: session.counts(),
    }
}
