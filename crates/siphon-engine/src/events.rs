//! Event targets driven through the same pass code as table targets: an
//! [`EventTarget`] is a [`Sink`] made of an [`EventSink`] and the state store,
//! which holds the checkpoints an event destination cannot.

use std::fmt;

use siphon_core::{
    ApplyStats, Batch, Change, Checkpoint, Event, EventSink, Op, Result, Row, SchemaOptions, Sink,
    SinkCapabilities, StateStore, StreamId, TableSchema,
};

/// A [`Sink`] that publishes to an [`EventSink`] and keeps checkpoints in a
/// [`StateStore`]. Each call that takes a checkpoint publishes its events,
/// waits until the destination durably accepted them, and only then saves the
/// checkpoint to the state store: a crash in between replays the events with
/// the same ids (at-least-once delivery, see [`siphon_core::Delivery`]).
///
/// It claims no optional ability ([`SinkCapabilities::NONE`]): an event
/// destination cannot list keys, swap tables or fill columns, so a pipeline
/// that needs one is refused when it starts.
pub struct EventTarget<'a, E, St> {
    events: &'a E,
    state: &'a St,
    epoch: u64,
}

impl<'a, E: EventSink, St: StateStore> EventTarget<'a, E, St> {
    /// Publishes to `events`, with checkpoints in `state`.
    pub fn new(events: &'a E, state: &'a St) -> EventTarget<'a, E, St> {
        EventTarget {
            events,
            state,
            epoch: 0,
        }
    }

    /// The same target, saving checkpoints under a pipeline lease of `epoch`:
    /// once another worker holds a newer lease, the state store refuses them
    /// and the pass stops (its events may have been published: delivery is at
    /// least once).
    pub fn under_lease(mut self, epoch: u64) -> EventTarget<'a, E, St> {
        self.epoch = epoch;
        self
    }

    /// Publishes, waits for the destination's acknowledgement, then saves the
    /// checkpoint.
    async fn publish(&self, events: Vec<Event>, checkpoint: &Checkpoint) -> Result<()> {
        self.events.publish(events).await?;
        if self.epoch == 0 || checkpoint.epoch == self.epoch {
            self.state.save_checkpoint(checkpoint).await
        } else {
            self.state
                .save_checkpoint(&checkpoint.clone().with_epoch(self.epoch))
                .await
        }
    }
}

impl<E, St> fmt::Debug for EventTarget<'_, E, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventTarget").finish_non_exhaustive()
    }
}

impl<E: EventSink, St: StateStore> Sink for EventTarget<'_, E, St> {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::NONE
    }

    /// Announces the table's shape as a schema event; nothing is created.
    async fn prepare(&self, table: &TableSchema, _options: &SchemaOptions) -> Result<()> {
        self.events.publish(vec![Event::schema(table)]).await
    }

    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        self.state.checkpoint(stream).await
    }

    async fn reset(&self, stream: &StreamId) -> Result<()> {
        self.state.remove_checkpoint(stream).await
    }

    async fn load(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let shape = std::sync::Arc::new(table.clone());
        let n = rows.len() as u64;
        let events = rows
            .into_iter()
            .map(|r| Event::from_change(Change::new(shape.clone(), Op::Insert(r)), checkpoint))
            .collect();
        self.publish(events, checkpoint).await?;
        Ok(ApplyStats {
            inserted: n,
            ..ApplyStats::default()
        })
    }

    async fn apply(&self, batch: Batch, checkpoint: &Checkpoint) -> Result<ApplyStats> {
        let mut stats = ApplyStats::default();
        for c in &batch.changes {
            match c.op {
                Op::Insert(_) => stats.inserted += 1,
                Op::Update { .. } => stats.updated += 1,
                Op::Delete(_) => stats.deleted += 1,
                Op::Truncate | Op::Schema(_) => {}
            }
        }
        let events = batch
            .changes
            .into_iter()
            .map(|c| Event::from_change(c, checkpoint))
            .collect();
        self.publish(events, checkpoint).await?;
        Ok(stats)
    }
}
