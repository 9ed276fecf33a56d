//! The contract of a table target connector, and the optional abilities only
//! some targets have.

use std::fmt;
use std::future::Future;

use crate::{
    ApplyStats, Batch, Checkpoint, NativeChunk, NativeFormat, Result, Row, SchemaOptions, StreamId,
    TableName, TableSchema,
};

/// What a sink can do beyond the contract every [`Sink`] keeps. The engine asks
/// [`Sink::capabilities`] before it uses one of these abilities, and a
/// pipeline that needs an ability its target lacks fails when it starts, with
/// a `Config` error that names the target and what it lacks
/// ([`SinkCapabilities::missing`]). A method behind an ability the sink does
/// not claim is never called, so the sink need not implement it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SinkCapabilities {
    /// [`Sink::read_keys`]: the target can list its row keys, which
    /// `delete_detection: key_diff` needs.
    pub read_keys: bool,
    /// [`Sink::accepts_native`] and [`Sink::load_native`]: rows in a source's
    /// own encoding may be written unchanged (an optimisation; without it rows
    /// are decoded).
    pub native: bool,
    /// [`Sink::another`]: the sink can open more handles on the target for
    /// parallel snapshot workers (an optimisation; without it one worker loads).
    pub another: bool,
    /// [`Sink::swap_refusal`], [`Sink::open_shadow`], [`Sink::swap_in`] and
    /// [`Sink::drop_shadow`]: loads into shadow tables swapped in whole, which
    /// `strategy: swap` needs.
    pub swap: bool,
    /// [`Sink::unfilled`] and [`Sink::fill`]: columns added to a table that
    /// held rows are filled from the source (without it, such columns stay as
    /// the target's default until the rows change).
    pub fill: bool,
}

impl SinkCapabilities {
    /// No optional ability: what a sink claims unless it says otherwise.
    pub const NONE: SinkCapabilities = SinkCapabilities {
        read_keys: false,
        native: false,
        another: false,
        swap: false,
        fill: false,
    };

    /// Every optional ability.
    pub const ALL: SinkCapabilities = SinkCapabilities {
        read_keys: true,
        native: true,
        another: true,
        swap: true,
        fill: true,
    };

    /// The refusal of a pipeline that needs `ability` (one of this struct's
    /// field names) of target `target`, which lacks it: a `Config` error that
    /// names the target, the setting that asked for it (`needed_by`, such as
    /// `delete_detection: key_diff`) and what to do instead.
    pub fn missing(target: &str, ability: &str, needed_by: &str, instead: &str) -> crate::Error {
        crate::Error::config(format!(
            "target `{target}` cannot serve `{needed_by}`: this kind of target has no `{ability}` \
             ability; {instead}"
        ))
    }
}

impl fmt::Display for SinkCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.read_keys, "read_keys"),
            (self.native, "native"),
            (self.another, "another"),
            (self.swap, "swap"),
            (self.fill, "fill"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// Writes changes to a table target (a SQL database) and keeps each table
/// stream's checkpoint there.
///
/// Every write is idempotent: inserts and updates are upserts by key and deletes
/// are by key, so replaying a batch after a crash converges to the same rows. Each
/// call that takes a checkpoint commits the data and the checkpoint in one target
/// transaction, or neither: delivery is exactly-once in effect.
///
/// Concurrency, the one rule: calls on one handle for one stream never overlap
/// and come in order; calls for different streams may overlap (a sink is
/// `Sync`). More workers on one stream (a parallel snapshot) each use a handle
/// of their own from [`Sink::another`], so the rule holds per handle, and each
/// writes a checkpoint that counts only chunks already committed.
///
/// Optional abilities are declared by [`Sink::capabilities`]; the methods
/// behind an ability a sink does not claim keep their default bodies and are
/// never called.
pub trait Sink: Send + Sync {
    /// The optional abilities this sink has. Defaults to none; the engine
    /// checks them before it calls a method behind one.
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::NONE
    }

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

    /// Raises the lease epoch of every checkpoint the target holds for
    /// `pipeline` to `epoch` (never lowers one), once the transactions writing
    /// them ended. Called by a worker that just took the pipeline's lease, before
    /// it reads a checkpoint: from then on a worker of an older epoch that
    /// stalled and woke up is refused (`Fenced`) at its next checkpoint write,
    /// even where the new worker has written none yet. Defaults to nothing, for
    /// targets that keep no checkpoints.
    fn fence(&self, _pipeline: &str, _epoch: u64) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Writes one snapshot chunk (upserting by key) and the checkpoint it reaches.
    fn load(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<ApplyStats>> + Send;

    /// Only with [`SinkCapabilities::native`]: whether [`Sink::load_native`] can write rows encoded as `format` into the
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

    /// Only with [`SinkCapabilities::another`]: another handle on the same database with a connection of its own, for a
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

    /// Only with [`SinkCapabilities::swap`]: why the sink cannot load `table` (prepared) into a shadow table and swap
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

    /// Up to `limit` row keys after `after`, in key order (for delete
    /// detection). Called only when [`SinkCapabilities::read_keys`] is claimed.
    fn read_keys(
        &self,
        table: &TableSchema,
        _after: Option<&Row>,
        _limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send {
        let e = crate::Error::internal("this sink cannot read its keys").table(&table.name);
        async { Err(e) }
    }

    /// The exact number of rows `table` (prepared) holds on the target now,
    /// which `mode: row_count` compares with the source's; `None` when this
    /// target cannot count its rows (the default), and `row_count` is refused
    /// for it.
    fn count_rows(&self, _table: &TableSchema) -> impl Future<Output = Result<Option<u64>>> + Send {
        async { Ok(None) }
    }

    /// Only with [`SinkCapabilities::fill`]: columns of `table` (positions, after [`Sink::prepare`]) that prepare
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
