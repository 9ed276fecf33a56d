//! Tables without a key, read in their physical order: chunks of block ranges
//! (`ctid >= '(a,0)' AND ctid < '(b,0)'`, a TID range scan from PostgreSQL 14),
//! and, for `cdc`, a snapshot pinned at a known WAL position that every chunk
//! of the copy is read in.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use siphon_core::{Chunk, Error, NativeChunk, Position, Result, TableSchema};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::{decode_row, name_of, select_list, PostgresSource, RawField};
use crate::conn::{column_list, connect_config, pg_err};
use crate::pgoutput::Lsn;
use crate::replication::{quote_literal, ExportedSnapshot};

/// Where the copy of a table without a key resumes: every row up to the
/// tuple `(block, offset)` is read. Offsets start at 1, so `(b, 0)` means
/// every block before `b`.
#[derive(Debug, Serialize, Deserialize)]
struct TidPosition {
    tid: (u64, u64),
}

/// Block numbers are 32-bit: a range ending here is open.
const PAST_LAST_BLOCK: u64 = 1 << 32;

/// Rows a block holds when the statistics do not say.
const ROWS_PER_BLOCK_GUESS: u64 = 100;

/// Temporary slots of this process get distinct names.
static PINS: AtomicU64 = AtomicU64::new(0);

/// The table's size in blocks now and about how many rows a block holds;
/// an error for a partitioned table, which has no blocks of its own.
async fn extent(client: &Client, table: &TableSchema) -> Result<(u64, u64)> {
    let row = client
        .query_one(
            "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8, \
                    c.reltuples::float8, c.relpages::int8, c.relkind::text \
             FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&name_of(table)],
        )
        .await
        .map_err(|e| pg_err(e, "reading the table's size").table(&table.name))?;
    if row.get::<_, String>(3) == "p" {
        return Err(Error::bad_input(
            "the table is partitioned and has no key, so siphon cannot read it in chunks of one \
             order: add a primary key (or a UNIQUE index on NOT NULL columns), or copy its \
             partitions as tables of their own",
        )
        .table(&table.name));
    }
    let blocks = row.get::<_, i64>(0).max(0) as u64;
    let tuples = row.get::<_, f64>(1);
    let pages = row.get::<_, i64>(2);
    let per_block = if tuples > 0.0 && pages > 0 {
        ((tuples / pages as f64).ceil() as u64).max(1)
    } else {
        ROWS_PER_BLOCK_GUESS
    };
    Ok((blocks, per_block))
}

/// Block ranges of about `limit` rows in physical order, read one after the
/// other until `limit` rows are in hand or the table ends. Each range is read
/// in `ctid` order, with the rows still wanted as its limit, so a chunk ends
/// exactly at a tuple.
struct Ranges {
    /// The last tuple read, or `(b, 0)`: every block before `b` is read.
    after: (u64, u64),
    end: u64,
    step: u64,
    got: usize,
    limit: usize,
    /// The range being read ends at this block (excluded).
    upper: u64,
    done: bool,
}

impl Ranges {
    /// The ranges after `after` (a [`TidPosition`]).
    async fn after(
        client: &Client,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Ranges> {
        let after = match after {
            Some(p) => p.decode::<TidPosition>(&table.name)?.tid,
            None => (0, 0),
        };
        let (end, per_block) = extent(client, table).await?;
        Ok(Ranges {
            after,
            end,
            step: (limit as u64 / per_block).max(1),
            got: 0,
            limit,
            upper: 0,
            // A chunk that ended with the table leaves a position past its last block.
            done: after.0 >= PAST_LAST_BLOCK,
        })
    }

    /// The next range's filter, order and limit, to follow the table's columns
    /// with `, ctid::text AS siphon_tid` (an output column named `ctid` would
    /// be what `ORDER BY ctid` sorts, as text); `None` when the chunk is complete. The last range
    /// is open: blocks added since the size was read are read too.
    fn next(&mut self) -> Option<String> {
        if self.done || self.got >= self.limit {
            return None;
        }
        let (block, offset) = self.after;
        self.upper = if block + self.step >= self.end {
            PAST_LAST_BLOCK
        } else {
            block + self.step
        };
        let upper = if self.upper >= PAST_LAST_BLOCK {
            String::new()
        } else {
            format!(" AND ctid < '({},0)'::tid", self.upper)
        };
        Some(format!(
            "ctid > '({block},{offset})'::tid{upper} ORDER BY ctid LIMIT {}",
            self.limit - self.got
        ))
    }

    /// Counts the rows the last range gave, the last of them at `last` (its
    /// `ctid` as text).
    fn found(&mut self, n: usize, last: Option<&str>, table: &TableSchema) -> Result<()> {
        self.got += n;
        if self.got >= self.limit {
            let last =
                last.ok_or_else(|| Error::internal("a row without its ctid").table(&table.name))?;
            self.after = parse_tid(last).ok_or_else(|| {
                Error::internal(format!("the server returned a bad ctid: {last}"))
                    .table(&table.name)
            })?;
            return Ok(());
        }
        // The range is exhausted.
        if self.upper >= PAST_LAST_BLOCK {
            self.done = true;
        }
        self.after = (self.upper, 0);
        // A sparse stretch (rows deleted) is crossed in larger steps.
        if n < self.limit / 4 {
            self.step = self.step.saturating_mul(2);
        }
        Ok(())
    }

    /// Where the next chunk starts; `None` when this one read nothing.
    fn last(&self) -> Result<Option<Position>> {
        if self.got == 0 {
            return Ok(None);
        }
        Position::encode(&TidPosition { tid: self.after }).map(Some)
    }
}

/// `(block,offset)` as numbers.
fn parse_tid(text: &str) -> Option<(u64, u64)> {
    let (b, o) = text.strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
    Some((b.trim().parse().ok()?, o.trim().parse().ok()?))
}

impl PostgresSource {
    /// The connection a table is read on: the one its pinned snapshot is
    /// open in, else the query connection.
    async fn reader(&self, table: &TableSchema) -> Result<Arc<Client>> {
        let pinned = self
            .pinned
            .lock()
            .ok()
            .and_then(|m| m.get(&table.name).cloned());
        match pinned {
            Some(c) => Ok(c),
            None => self.client().await,
        }
    }

    /// [`siphon_core::Source::read_chunk`] for a table without a key.
    pub(super) async fn read_physical(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        let pg = self.table(table).await?;
        let client = self.reader(table).await?;
        let cols = select_list(table, &pg);
        let t = name_of(table);
        let mut rows = Vec::new();
        let mut ranges = Ranges::after(&client, table, after, limit).await?;
        let width = table.columns.len();
        while let Some(filter) = ranges.next() {
            let sql = format!("SELECT {cols}, ctid::text AS siphon_tid FROM {t} WHERE {filter}");
            let found = client
                .query(&sql, &[])
                .await
                .map_err(|e| pg_err(e, &format!("reading {}", table.name)))?;
            for r in &found {
                rows.push(decode_row(r, &pg.types, table)?);
            }
            let last: Option<String> = found.last().map(|r| r.get(width));
            ranges.found(found.len(), last.as_deref(), table)?;
        }
        let last = ranges.last()?;
        Ok(Chunk { rows, last })
    }

    /// [`siphon_core::Source::read_native`] for a table without a key.
    pub(super) async fn read_physical_native(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<NativeChunk> {
        let client = self.reader(table).await?;
        let cols = column_list(table.columns.iter().map(|c| c.name.as_str()));
        let t = name_of(table);
        let width = table.columns.len();
        let count = i16::try_from(width)
            .map_err(|_| Error::bad_input("too many columns for binary COPY").table(&table.name))?
            .to_be_bytes();
        let mut chunk = NativeChunk::default();
        let rerr = |e| pg_err(e, &format!("reading {}", table.name));
        let mut ranges = Ranges::after(&client, table, after, limit).await?;
        while let Some(filter) = ranges.next() {
            let sql = format!("SELECT {cols}, ctid::text AS siphon_tid FROM {t} WHERE {filter}");
            let params: [&(dyn ToSql + Sync); 0] = [];
            let rows = client.query_raw(&sql, params).await.map_err(rerr)?;
            futures_util::pin_mut!(rows);
            let (mut n, mut last) = (0, None);
            while let Some(row) = rows.next().await {
                let row = row.map_err(rerr)?;
                last = Some(row.try_get::<_, String>(width).map_err(rerr)?);
                chunk.data.extend_from_slice(&count);
                for i in 0..width {
                    let raw: Option<RawField<'_>> = row.try_get(i).map_err(rerr)?;
                    match raw {
                        None => chunk.data.extend_from_slice(&(-1i32).to_be_bytes()),
                        Some(RawField(b)) => {
                            let len = i32::try_from(b.len()).map_err(|_| {
                                Error::bad_input("a value is too large for binary COPY")
                                    .table(&table.name)
                                    .column(&table.columns[i].name)
                            })?;
                            chunk.data.extend_from_slice(&len.to_be_bytes());
                            chunk.data.extend_from_slice(b);
                        }
                    }
                }
                n += 1;
            }
            chunk.rows += n;
            ranges.found(n, last.as_deref(), table)?;
        }
        let last = ranges.last()?;
        chunk.last = last;
        Ok(chunk)
    }

    /// Pins the reads of `table` to a snapshot exported by a temporary
    /// logical slot, and returns the slot's consistent point.
    pub(crate) async fn pin_physical(&self, table: &TableSchema) -> Result<Lsn> {
        let slot = format!(
            "siphon_pin_{}_{}",
            std::process::id(),
            PINS.fetch_add(1, AtomicOrdering::Relaxed)
        );
        let cfg = self.config.replication_config(&slot, &slot)?;
        let export = ExportedSnapshot::create(&cfg).await.map_err(|e| {
            if e.table_name().is_some() {
                e
            } else {
                e.table(&table.name)
            }
        })?;
        let client = connect_config(&self.config, "source").await?;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                quote_literal(&export.name)
            ))
            .await
            .map_err(|e| pg_err(e, "opening the exported snapshot").table(&table.name))?;
        // Imported, the snapshot no longer needs the slot that exported it.
        let at = export.at;
        drop(export);
        self.pinned
            .lock()
            .map_err(|_| Error::internal("pinned snapshots poisoned"))?
            .insert(table.name.clone(), Arc::new(client));
        tracing::debug!(table = %table.name, %at, "reads pinned to an exported snapshot");
        Ok(at)
    }

    /// Ends the snapshot pinned for `table`, if any.
    pub(crate) fn unpin_physical(&self, table: &TableSchema) {
        if let Ok(mut m) = self.pinned.lock() {
            // Dropping the connection ends its transaction.
            m.remove(&table.name);
        }
    }
}
