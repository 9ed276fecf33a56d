//! The contract of a source connector.

use std::cmp::Ordering;
use std::future::Future;

use crate::{CursorSpec, Position, Result, Row, TableFilter, TableSchema};

/// Rows read from a source, and the position just after the last of them.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    pub rows: Vec<Row>,
    /// Where the next read resumes; `None` when `rows` is empty.
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

    /// A cheap estimate of the number of rows, for progress reporting.
    fn estimate_rows(
        &self,
        table: &TableSchema,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Up to `limit` rows after `after` in primary-key order (keyset pagination).
    /// `last` is the key of the last row returned.
    fn read_chunk(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Chunk>> + Send;

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
