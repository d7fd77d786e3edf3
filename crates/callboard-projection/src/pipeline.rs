//! Folding one batch while the previous one is written.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callboard_events::log::Message;
use tracing::Instrument;

#[cfg(doc)]
use crate::projection::ProjectionStore;
use crate::projection::{Batch, BatchPosition, Projection, StoredEvent, batch_positions, subjects};
use crate::tables::{Generation, StoreError};

/// A batch written, as the pipeline reports it.
#[derive(Debug)]
pub struct Written {
    /// Events applied.
    pub applied: usize,
    /// The positions the batch reached.
    pub positions: Vec<BatchPosition>,
    /// From the batch's arrival to its commit.
    pub took: Duration,
}

struct InFlight {
    subjects: HashSet<String>,
    task: tokio::task::JoinHandle<Result<Written, StoreError>>,
}

/// Folds one batch while the previous one is being written, so that decoding and folding (the
/// projector's CPU) overlap the store's write (the database's): on two cores a catch-up or a
/// replay takes about the longer of the two instead of their sum.
///
/// Correct because a subject's rows change only through its own events (the [`Projection`]
/// contract): a batch whose subjects are disjoint from the batches in flight reads exactly the
/// rows it would read after those writes, so it is loaded concurrently with them. A batch sharing
/// a subject waits for the writes first. Writes stay one at a time and in order, each in its own
/// transaction with its positions, so a kill at any point leaves what the sequential loop would
/// have left — except when filling a generation nobody reads yet (a replay), where a store that
/// can take several writes at once ([`ProjectionStore::parallel_writes`]) gets them: a crash there
/// throws the generation away, and positions only ever move forward.
pub struct Pipeline<P: Projection> {
    projection: Arc<P>,
    generation: Generation,
    group: Arc<str>,
    in_flight: VecDeque<InFlight>,
    /// Writes allowed in flight at once.
    writes: usize,
    /// For a pipeline that alone fills an empty generation (a replay): hashes of the subjects it
    /// has written. Only those can have rows to load; loading the others (nearly every subject
    /// of a replay) would be an index probe each that finds nothing.
    seen: Option<HashSet<u64>>,
}

impl<P: Projection> std::fmt::Debug for Pipeline<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("projection", &self.projection.name())
            .field("generation", &self.generation)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl<P: Projection> Pipeline<P> {
    /// A pipeline writing into `generation` with positions of `group`.
    pub fn new(projection: Arc<P>, generation: Generation, group: &str) -> Self {
        Self {
            projection,
            generation,
            group: group.into(),
            in_flight: VecDeque::new(),
            writes: 1,
            seen: None,
        }
    }

    /// A pipeline filling `generation`, which is empty and which nothing else writes until this
    /// pipeline is done (a replay's new generation): subjects it has not written yet are known
    /// to have no rows, and are not loaded.
    pub fn filling(projection: Arc<P>, generation: Generation, group: &str) -> Self {
        let writes = projection.store().parallel_writes().max(1);
        Self {
            seen: Some(HashSet::new()),
            writes,
            ..Self::new(projection, generation, group)
        }
    }

    /// Whether a write is in flight.
    pub fn writing(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Decodes, loads and folds `messages`, then starts writing them once a write slot is free
    /// (after the batch before, unless the pipeline is filling a generation). Returns the batches
    /// whose writes finished here, in the order they were pushed.
    pub async fn push(&mut self, messages: Vec<Message>) -> Result<Vec<Written>, StoreError> {
        let started = Instant::now();
        let batch =
            tokio::task::spawn_blocking(move || messages.into_iter().map(StoredEvent::decode).collect::<Vec<_>>())
                .await
                .map_err(|e| StoreError::Other(format!("decoding a batch failed: {e}")))?;
        let subjects = subjects(&batch);
        let mut done = Vec::new();
        if self
            .in_flight
            .iter()
            .any(|f| subjects.iter().any(|s| f.subjects.contains(s)))
        {
            done = self.finish().await?;
        }
        // One span per batch, from its load to its commit (named as before the runtime was
        // generic, so traces and dashboards keep finding it).
        let span = tracing::info_span!(
            "apply_batch",
            projection = self.projection.name(),
            events = batch.len(),
            generation = self.generation.0
        );
        let to_load: Vec<String> = match &mut self.seen {
            None => subjects.clone(),
            Some(seen) => {
                // A hash collision only loads a subject that has no rows: harmless.
                let known = subjects
                    .iter()
                    .filter(|s| seen.contains(&subject_hash(s)))
                    .cloned()
                    .collect();
                seen.extend(subjects.iter().map(|s| subject_hash(s)));
                known
            }
        };
        let loaded = if to_load.is_empty() {
            P::Loaded::default()
        } else {
            self.projection
                .store()
                .load(self.generation, &to_load)
                .instrument(span.clone())
                .await?
        };
        let load_ms = started.elapsed().as_millis() as u64;
        let projection = self.projection.clone();
        let (folded, positions) = tokio::task::spawn_blocking(move || {
            let positions = batch_positions(&batch);
            (projection.fold(&batch, loaded), positions)
        })
        .await
        .map_err(|e| StoreError::Other(format!("folding a batch failed: {e}")))?;
        let fold_ms = started.elapsed().as_millis() as u64 - load_ms;
        while self.in_flight.len() >= self.writes {
            done.extend(self.finish_oldest().await?);
        }
        let (projection, generation, group) = (self.projection.clone(), self.generation, self.group.clone());
        let task = tokio::spawn(
            async move {
                let writing = Instant::now();
                let (applied, skipped) = (folded.applied, folded.skipped);
                projection
                    .store()
                    .write(Batch {
                        generation,
                        group: &group,
                        changes: folded.changes,
                        positions: &positions,
                    })
                    .await?;
                tracing::debug!(
                    applied,
                    skipped,
                    load_ms,
                    fold_ms,
                    write_ms = writing.elapsed().as_millis() as u64,
                    "projection batch written"
                );
                Ok(Written {
                    applied,
                    positions,
                    took: started.elapsed(),
                })
            }
            .instrument(span),
        );
        self.in_flight.push_back(InFlight {
            subjects: subjects.into_iter().collect(),
            task,
        });
        Ok(done)
    }

    /// Waits for the oldest write in flight, if any.
    async fn finish_oldest(&mut self) -> Result<Option<Written>, StoreError> {
        match self.in_flight.pop_front() {
            Some(flight) => flight
                .task
                .await
                .map_err(|e| StoreError::Other(format!("writing a batch failed: {e}")))?
                .map(Some),
            None => Ok(None),
        }
    }

    /// Waits for every write in flight; returns them in the order they were pushed. On an error
    /// the remaining writes still run to their end before it is returned.
    pub async fn finish(&mut self) -> Result<Vec<Written>, StoreError> {
        let mut done = Vec::new();
        let mut failed = None;
        while !self.in_flight.is_empty() {
            match self.finish_oldest().await {
                Ok(written) => done.extend(written),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }
}

fn subject_hash(subject: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(subject)
}
