//! The contract of a target connector.

use std::future::Future;

use crate::{ApplyStats, Batch, Checkpoint, Result, Row, SchemaOptions, StreamId, TableSchema};

/// Writes changes to a target and keeps each table stream's checkpoint there.
///
/// Every write is idempotent: inserts and updates are upserts by key and deletes
/// are by key, so replaying a batch after a crash converges to the same rows. Each
/// call that takes a checkpoint commits the data and the checkpoint in one target
/// transaction, or neither. Calls for one stream come one at a time, in order.
pub trait Sink: Send + Sync {
    /// Creates the table when it is missing (`options.create`), adds columns the
    /// source gained (`options.evolve`), and checks that the target can take the
    /// table's rows. `table` carries the target's name.
    fn prepare(
        &self,
        table: &TableSchema,
        options: &SchemaOptions,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The last checkpoint committed for the stream. The engine reads it first on
    /// every start and resumes from it.
    fn checkpoint(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Checkpoint>>> + Send;

    /// Forgets the stream's checkpoint, so the next run starts from scratch.
    fn reset(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send;

    /// Writes one snapshot chunk (upserting by key) and the checkpoint it reaches.
    fn load(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<ApplyStats>> + Send;

    /// Applies a batch of changes and the checkpoint it reaches.
    fn apply(
        &self,
        batch: Batch,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<ApplyStats>> + Send;

    /// Up to `limit` row keys after `after`, in key order (for delete detection).
    fn read_keys(
        &self,
        table: &TableSchema,
        after: Option<&Row>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send;
}
