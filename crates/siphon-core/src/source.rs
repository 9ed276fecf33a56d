//! The contract of a source connector.

use std::cmp::Ordering;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{Batch, CursorSpec, Position, Result, Row, TableFilter, TableSchema};

/// Rows read from a source, and the position just after the last of them.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    pub rows: Vec<Row>,
    /// Where the next read resumes; `None` when `rows` is empty.
    pub last: Option<Position>,
}

/// How a source encodes a table's rows on its native path: the encoding's name
/// and, per column in table order, the exact type each value is encoded as. A
/// sink that accepts the format writes such rows without decoding them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeFormat {
    /// The encoding, as its connector names it (`postgresql-binary-tuples`).
    pub encoding: String,
    /// Each column's type, as the connector identifies it.
    pub columns: Vec<String>,
}

/// Rows read on a source's native path, still encoded as its [`NativeFormat`]
/// says, and the position just after the last of them.
#[derive(Debug, Clone, Default)]
pub struct NativeChunk {
    /// The encoded rows, one after the other.
    pub data: Vec<u8>,
    /// How many rows `data` holds.
    pub rows: usize,
    /// Where the next read resumes; `None` when there are no rows.
    pub last: Option<Position>,
}

/// Reads tables from a database. A source never writes to the database it reads.
///
/// Positions it returns are its own: only the same connector reads, orders or
/// rewinds them. Every read is ordered, so that a read resumed from a position
/// neither skips nor repeats rows (rows changed after they were read may be read
/// again, which sinks absorb by upserting).
pub trait Source: Send + Sync {
    /// The tables the filter selects, with columns, keys and indexes.
    fn discover(
        &self,
        filter: &TableFilter,
    ) -> impl Future<Output = Result<Vec<TableSchema>>> + Send;

    /// Whether this source can read the table at all (each of its columns of a
    /// type the source carries); an error naming the table, the column and the
    /// fix when it cannot. The engine asks before it creates or changes the
    /// target table of a `full`, `incremental` or `row_count` table, so a
    /// refused table leaves nothing on the target, and the pipeline's other
    /// tables go on. The default accepts every table.
    fn check_table(&self, _table: &TableSchema) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// A cheap estimate of the number of rows, for progress reporting.
    fn estimate_rows(
        &self,
        table: &TableSchema,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// The exact number of rows the table holds now (`SELECT count(*)`), which
    /// `mode: row_count` compares with the target's; `None` when this source
    /// cannot count exactly (the default), and `row_count` is refused for it.
    fn count_rows(&self, _table: &TableSchema) -> impl Future<Output = Result<Option<u64>>> + Send {
        async { Ok(None) }
    }

    /// Up to `limit` rows after `after` in primary-key order (keyset pagination).
    /// `last` is the key of the last row returned.
    fn read_chunk(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Chunk>> + Send;

    /// The format in which [`Source::read_native`] reads the table, or `None`
    /// when the source has no native path for it (the default). The engine takes
    /// the native path only when the sink accepts the format.
    fn native_format(
        &self,
        _table: &TableSchema,
    ) -> impl Future<Output = Result<Option<NativeFormat>>> + Send {
        async { Ok(None) }
    }

    /// Like [`Source::read_chunk`], with the rows left in the table's
    /// [`NativeFormat`], and only rows whose key is at most `until` when given.
    /// Positions are those of [`Source::read_chunk`]. Called only when
    /// [`Source::native_format`] offered a format.
    fn read_native(
        &self,
        table: &TableSchema,
        _after: Option<&Position>,
        _until: Option<&Position>,
        _limit: usize,
    ) -> impl Future<Output = Result<NativeChunk>> + Send {
        let e = crate::Error::internal("this source has no native read path").table(&table.name);
        async { Err(e) }
    }

    /// Like [`Source::read_chunk`], with the range's bounds: up to `limit` rows
    /// after `after` and, when given, whose key is at most `until`, in key
    /// order. `after` and `until` are positions of [`Source::read_chunk`] or
    /// cuts from [`Source::split_keys`] (which may hold a prefix of the key).
    /// Every source whose [`Source::split_keys`] returns cuts reads ranges this
    /// way; the default refuses bounds, as such a source returns no cuts.
    fn read_range(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Chunk>> + Send {
        async move {
            match until {
                None if after.is_none() => self.read_chunk(table, None, limit).await,
                _ => Err(crate::Error::internal(
                    "this source cannot read key ranges, yet it split the table into some",
                )
                .table(&table.name)),
            }
        }
    }

    /// Up to `parts - 1` cut keys, ascending, that split the table's key space
    /// into ranges of about equal width for parallel reads: range `i` holds the
    /// rows after cut `i - 1` up to and including cut `i` (the first from the
    /// start, the last to the end). A cut is a position as
    /// [`Source::read_range`] (and [`Source::read_native`], on the native path)
    /// takes for `after` and `until`. Empty when the source cannot split the
    /// table (the default), which is then read whole.
    fn split_keys(
        &self,
        _table: &TableSchema,
        _parts: usize,
    ) -> impl Future<Output = Result<Vec<Position>>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Another handle on the same database with a connection of its own, for a
    /// parallel worker; `None` when the source cannot open one (the default).
    fn another(&self) -> impl Future<Output = Result<Option<Self>>> + Send
    where
        Self: Sized,
    {
        async { Ok(None) }
    }

    /// Up to `limit` rows after the watermark `after`, ordered by
    /// `(cursor, primary key)`, so rows sharing one cursor value are never skipped
    /// at a chunk boundary. `last` is the watermark of the last row returned.
    fn poll(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        after: Option<&Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Chunk>> + Send;

    /// A watermark from which `poll` returns every row whose cursor value is at
    /// least the highest one in the table now; `None` for an empty table. Taken
    /// before a snapshot, it makes polling pick up what changed during it.
    fn cursor_high(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
    ) -> impl Future<Output = Result<Option<Position>>> + Send;

    /// The watermark `cursor.lookback` before `from`, from which a pass re-reads
    /// rows that committed late.
    fn rewind(&self, table: &TableSchema, cursor: &CursorSpec, from: &Position)
        -> Result<Position>;

    /// Orders two watermarks of the same table and cursor.
    fn compare(&self, table: &TableSchema, a: &Position, b: &Position) -> Result<Ordering>;

    /// For each key (values of the table's row key, in key order), whether a row
    /// with that key exists now.
    fn existing_keys(
        &self,
        table: &TableSchema,
        keys: &[Row],
    ) -> impl Future<Output = Result<Vec<bool>>> + Send;
}

/// A source with a change log (PostgreSQL logical replication, a binlog): one log
/// per pipeline, shared by the pipeline's `cdc` tables.
///
/// The engine calls [`LogSource::prepare_log`] first, then, when the pipeline has
/// a checkpoint, asks [`LogSource::resume`] whether the log still holds what came
/// after it, then snapshots the tables that need it with [`Source::read_chunk`],
/// then reads the log from where `resume` said (or from the position
/// `prepare_log` returned) with [`LogSource::stream`]. Every change committed after the position `prepare_log`
/// returned is in the log after it, so changes made during a snapshot are replayed
/// afterwards; sinks absorb the overlap by upserting and deleting by key.
pub trait LogSource: Source {
    /// The stream [`LogSource::stream`] opens.
    type Stream: ChangeStream;

    /// Whether the log can carry the table's updates and deletes by key; an error
    /// that names the table and the fix when it cannot. Tables that fail are left
    /// out of [`LogSource::prepare_log`].
    fn check_log_table(&self, table: &TableSchema) -> impl Future<Output = Result<()>> + Send;

    /// Creates the pipeline's log reader (a replication slot and a publication)
    /// when missing or no longer readable, makes it cover exactly `tables`, and
    /// returns the position from which the log holds every change committed
    /// since then: a table copied now is streamed from there. Idempotent: on an
    /// existing log it returns that log's oldest position still readable.
    /// Whether a checkpoint can still be resumed is [`LogSource::resume`]'s to say.
    fn prepare_log(
        &self,
        pipeline: &str,
        tables: &[TableSchema],
    ) -> impl Future<Output = Result<Position>> + Send;

    /// The position the source's log has reached now (for `run --once`: stream
    /// until everything committed before it is applied).
    fn log_head(&self) -> impl Future<Output = Result<Position>> + Send;

    /// Opens the pipeline's log at `from` (a position from [`LogSource::prepare_log`]
    /// or from a batch). Changes of tables not in `tables` are skipped; changes of
    /// `tables` carry those `Arc`s (or a newer schema announced by an
    /// [`crate::Op::Schema`] change). `from` is also what the log may forget up
    /// to until [`ChangeStream::confirm`] says more.
    fn stream(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        from: &Position,
    ) -> impl Future<Output = Result<Self::Stream>> + Send;

    /// Drops the pipeline's log reader (slot and publication). Missing ones are
    /// not an error. After this, the pipeline's checkpoints cannot be resumed.
    fn drop_log(&self, pipeline: &str) -> impl Future<Output = Result<()>> + Send;

    /// How many bytes of log the source keeps for the pipeline (PostgreSQL: the
    /// slot's retained WAL), or `None` when it has no log reader.
    fn retained_log(&self, pipeline: &str) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Whether the pipeline's log can be read on from its checkpoint `from` for
    /// each of `tables` (tables whose copy on the target is current up to
    /// `from`), and where reading goes on. Only the source can tell: a MySQL
    /// GTID set is only partially ordered and binlogs are purged by time, SQL
    /// Server Change Tracking keeps a minimum valid version per table, a
    /// PostgreSQL slot may have been dropped, recreated or invalidated. The
    /// engine never orders log positions itself.
    ///
    /// Called after [`LogSource::prepare_log`] for the same pipeline. A table in
    /// [`Resume::lost`] has lost changes between `from` and [`Resume::from`]; its
    /// error has kind [`crate::ErrorKind::PositionLost`] and says why. Every
    /// other table of `tables` may be streamed from [`Resume::from`] without
    /// losing a change. Reads only: it changes nothing at the source.
    fn resume(
        &self,
        pipeline: &str,
        from: &Position,
        tables: &[TableSchema],
    ) -> impl Future<Output = Result<Resume>> + Send;

    /// Pins the reads of `table` ([`Source::read_chunk`], [`Source::read_native`])
    /// to one consistent snapshot of the source taken now, until
    /// [`LogSource::unpin_snapshot`], and returns where the log stands for it:
    /// every transaction committed before is in the reads, every later one is
    /// in the log after it ([`LogSource::snapshot_holds`] tells them apart). A
    /// table without a row key is copied this way before it streams, since no
    /// upsert can absorb a change both copied and streamed. Defaults to an
    /// error: the source cannot hand such a table over exactly.
    fn pin_snapshot(&self, table: &TableSchema) -> impl Future<Output = Result<Position>> + Send {
        let e = crate::Error::bad_input(
            "this source cannot copy a table without a key at a known log position, so its \
             changes could be applied twice: add a primary key, or replicate the table with `mode: full`",
        )
        .table(&table.name);
        async { Err(e) }
    }

    /// Ends what [`LogSource::pin_snapshot`] pinned for `table`; nothing when
    /// nothing is pinned (the default).
    fn unpin_snapshot(&self, _table: &TableSchema) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Whether a snapshot that [`LogSource::pin_snapshot`] pinned at `snapshot`
    /// already holds the changes of transaction `tx` (it committed before):
    /// such changes of the snapshotted table are skipped when streaming.
    fn snapshot_holds(&self, _snapshot: &Position, _tx: &crate::Transaction) -> Result<bool> {
        Err(crate::Error::internal(
            "this source pins no snapshots, so it cannot say what one holds",
        ))
    }

    /// Whether [`LogSource::write_watermark`] works for this source: then a
    /// table added to a pipeline that already streams is copied chunk by chunk
    /// between the watermarks, while the other tables keep streaming (the
    /// watermark method of Netflix DBLog). A source without them (the default)
    /// pauses the stream while such a table is copied whole, then streams on.
    fn watermarks(&self) -> impl Future<Output = Result<bool>> + Send {
        async { Ok(false) }
    }

    /// Writes `mark` into the pipeline's log in a transaction of its own and
    /// returns once it committed: a stream of the pipeline returns it later
    /// from [`ChangeStream::take_watermarks`], where it falls among the
    /// changes, so everything committed before it is before it in the stream.
    /// Called only when [`LogSource::watermarks`] said yes; defaults to an error.
    fn write_watermark(
        &self,
        _pipeline: &str,
        _mark: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        async {
            Err(crate::Error::internal(
                "this source cannot write watermarks into its log",
            ))
        }
    }
}

/// A mark the engine wrote into a change log ([`LogSource::write_watermark`]),
/// as a stream read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// The mark as written.
    pub mark: String,
    /// How many changes of its batch come before it in the log.
    pub before: usize,
}

/// What [`LogSource::resume`] found: where the log goes on, and which tables
/// lost their history.
#[derive(Debug)]
pub struct Resume {
    /// Where the pipeline's log is read on from: the checkpoint itself when the
    /// log still holds everything after it, or the oldest position the log
    /// still holds when it lost some of it (tables snapshotted again start
    /// there).
    pub from: Position,
    /// The tables whose changes since the checkpoint the log no longer holds,
    /// each with an error of kind [`crate::ErrorKind::PositionLost`] that says why.
    pub lost: Vec<(crate::TableName, crate::Error)>,
}

/// An open change log, read in commit order.
pub trait ChangeStream: Send {
    /// The changes of the next whole source transactions, at most `max_changes`
    /// of them (at least one transaction's worth), and the position just after
    /// the last transaction included: resuming from it neither repeats nor skips a
    /// transaction. A transaction larger than `max_changes` is split into batches
    /// of `max_changes`; the position of a batch that ends inside a transaction is
    /// the one before that transaction, so a resume reads the whole of it again, each
    /// change with the same transaction position and index as before (the engine
    /// drops those the target already holds). Batches never merge half a
    /// transaction with another. Waits for changes when there are none yet.
    ///
    /// Returns `Ok(None)` once every transaction that committed before `until`
    /// has been returned; from then on it always does. With `wait`, it also
    /// returns `Ok(None)` when no transaction arrived within `wait` while it had
    /// nothing in hand; the stream stays open and is read on by the next call.
    fn next_batch(
        &mut self,
        max_changes: usize,
        until: Option<&Position>,
        wait: Option<Duration>,
    ) -> impl Future<Output = Result<Option<(Batch, Position)>>> + Send;

    /// Tells the source that everything up to `committed` is durably on the target,
    /// so its log may discard it. Call only after the target committed the batch
    /// that reached `committed`; positions never move backward.
    fn confirm(&mut self, committed: &Position) -> impl Future<Output = Result<()>> + Send;

    /// Ends the stream, making sure the source learned the last confirmed position.
    fn close(self) -> impl Future<Output = Result<()>> + Send;

    /// The watermarks ([`LogSource::write_watermark`]) among the changes of the
    /// batch the last [`ChangeStream::next_batch`] returned, in log order, each
    /// once. A batch's watermarks are taken before the next batch is read. The
    /// marks of other pipelines reading the same log may be among them; the
    /// engine knows its own by their text. None for a source without
    /// watermarks (the default).
    fn take_watermarks(&mut self) -> Vec<Watermark> {
        Vec::new()
    }

    /// Caps the bytes of row images a batch holds, as [`crate::Op::size`]
    /// counts them, besides `max_changes`: a batch ends at the first
    /// transaction end past `max_bytes`, and a transaction whose changes pass
    /// it is split there as one larger than `max_changes` is (its batches
    /// report the position before it). A batch holds at least one change, so
    /// one row larger than `max_bytes` is a batch of its own. Applies to the
    /// batches read after the call. A stream without the cap (the default)
    /// counts changes only.
    fn limit_bytes(&mut self, _max_bytes: u64) {}
}
