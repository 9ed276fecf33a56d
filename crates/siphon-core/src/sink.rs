//! The contract of a target connector.

use std::future::Future;

use crate::{
    ApplyStats, Batch, Checkpoint, NativeChunk, NativeFormat, Result, Row, SchemaOptions, StreamId,
    TableSchema,
};

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

    /// Whether [`Sink::load_native`] can write rows encoded as `format` into the
    /// table unchanged: the same encoding, and every column of the same type.
    /// Defaults to no.
    fn accepts_native(
        &self,
        _table: &TableSchema,
        _format: &NativeFormat,
    ) -> impl Future<Output = Result<bool>> + Send {
        async { Ok(false) }
    }

    /// Like [`Sink::load`], for rows in a format [`Sink::accepts_native`]
    /// accepted: written unchanged (upserting by key) with the checkpoint.
    fn load_native(
        &self,
        table: &TableSchema,
        _chunk: NativeChunk,
        _checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<ApplyStats>> + Send {
        let e = crate::Error::internal("this sink has no native load path").table(&table.name);
        async { Err(e) }
    }

    /// Another handle on the same database with a connection of its own, for a
    /// parallel worker, knowing the tables this one prepared; `None` when the
    /// sink cannot open one (the default). Workers load chunks of one stream
    /// concurrently, each with the checkpoint that counts only chunks already
    /// committed, so the stream's checkpoint never runs ahead of the target.
    fn another(&self) -> impl Future<Output = Result<Option<Self>>> + Send
    where
        Self: Sized,
    {
        async { Ok(None) }
    }

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
