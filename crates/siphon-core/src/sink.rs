//! The contract of a target connector.

use std::future::Future;

use crate::{
    ApplyStats, Batch, Checkpoint, NativeChunk, NativeFormat, Result, Row, SchemaOptions, StreamId,
    TableName, TableSchema,
};

/// Writes changes to a target and keeps each table stream's checkpoint there.
///
/// Every write is idempotent: inserts and updates are upserts by key and deletes
/// are by key, so replaying a batch after a crash converges to the same rows. Each
/// call that takes a checkpoint commits the data and the checkpoint in one target
/// transaction, or neither. Calls for one stream come one at a time, in order.
pub trait Sink: Send + Sync {
    /// Creates the table when it is missing (`options.create`), evolves it to
    /// the source's shape (`options.evolve`: adds columns the source gained,
    /// renames those it renamed where [`crate::Column::source_id`] says so,
    /// widens types), and checks that the target can take the table's rows;
    /// a change it cannot apply safely is a `BadInput` error that names the
    /// table, the column and the statement to run. `table` carries the
    /// target's name.
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

    /// Why the sink cannot load `table` (prepared) into a shadow table and swap
    /// it in (`strategy: swap`), or `None` when it can. The reason is shown to
    /// the user with the table's name. Defaults to "not supported".
    fn swap_refusal(
        &self,
        _table: &TableSchema,
    ) -> impl Future<Output = Result<Option<String>>> + Send {
        async {
            Ok(Some(
                "this kind of target cannot swap a table in".to_string(),
            ))
        }
    }

    /// Opens the shadow table of a swap load of `table` (prepared): with
    /// `resume`, the shadow an interrupted load left, when it still exists;
    /// otherwise a new, empty one (any older shadow of that name is dropped)
    /// with the target table's definition. Returns the shadow's schema, which
    /// [`Sink::load`], [`Sink::accepts_native`] and [`Sink::load_native`] then
    /// take, and whether it resumed an existing shadow.
    fn open_shadow(
        &self,
        table: &TableSchema,
        _resume: Option<&TableName>,
    ) -> impl Future<Output = Result<(TableSchema, bool)>> + Send {
        let e = crate::Error::internal("this sink cannot swap tables").table(&table.name);
        async { Err(e) }
    }

    /// Replaces `table` with its loaded `shadow` and writes `checkpoint`, in one
    /// target transaction: readers see the old rows or the new ones, never a
    /// mix, an empty table or a missing one. Returns how many rows the replaced
    /// copy held.
    fn swap_in(
        &self,
        table: &TableSchema,
        _shadow: &TableSchema,
        _checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<u64>> + Send {
        let e = crate::Error::internal("this sink cannot swap tables").table(&table.name);
        async { Err(e) }
    }

    /// Drops a shadow table that will not be swapped in, if it exists.
    fn drop_shadow(&self, _shadow: &TableName) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Applies a batch of changes and the checkpoint it reaches. An error that
    /// one table's changes caused (the target refused a value or a row) names
    /// that table, as the batch's changes name it, and has the kind `BadInput`
    /// when applying it again cannot succeed: the engine then stops that table
    /// alone and goes on with the others.
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

    /// Columns of `table` (positions, after [`Sink::prepare`]) that prepare
    /// added to a target table that held rows already: those rows still wait
    /// for the source's values of them, which the engine reads and hands to
    /// [`Sink::fill`]. Kept across restarts until a fill says it is done.
    /// Defaults to none.
    fn unfilled(&self, _table: &TableSchema) -> impl Future<Output = Result<Vec<usize>>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Sets `columns` of the target rows that have the keys of `rows` (whole
    /// rows of `table`, as the source holds them now) to the rows' values,
    /// leaving every other column and every row the target lacks alone. With
    /// `done`, the columns no longer wait ([`Sink::unfilled`]). Idempotent.
    fn fill(
        &self,
        table: &TableSchema,
        _columns: &[usize],
        _rows: Vec<Row>,
        _done: bool,
    ) -> impl Future<Output = Result<()>> + Send {
        let e = crate::Error::internal("this sink cannot fill added columns").table(&table.name);
        async { Err(e) }
    }

    /// Called once at the end of each pass, after its tables are loaded: creates
    /// what must follow the data among the tables this sink prepared (foreign
    /// keys, views, sequence positions) and reports what it does not carry.
    /// Idempotent; an object it cannot create is reported, not an error.
    /// Defaults to nothing.
    fn finish_tables(&self, _options: &SchemaOptions) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}
