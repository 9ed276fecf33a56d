//! Any source, with or without a change log, and its change stream.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use siphon_core::{
    Batch, ChangeStream, Chunk, CursorSpec, Error, LogSource, NativeChunk, NativeFormat, Position,
    Result, Resume, Row, Source, TableFilter, TableSchema,
};

use super::BoxFuture;

/// The `dyn`-compatible mirror of [`Source`], plus the log when there is one.
trait DynSource: fmt::Debug + Send + Sync {
    fn discover<'a>(&'a self, filter: &'a TableFilter) -> BoxFuture<'a, Result<Vec<TableSchema>>>;
    fn check_table<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<()>>;
    fn estimate_rows<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Option<u64>>>;
    fn count_rows<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Option<u64>>>;
    fn read_chunk<'a>(
        &'a self,
        table: &'a TableSchema,
        after: Option<&'a Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Chunk>>;
    fn native_format<'a>(
        &'a self,
        table: &'a TableSchema,
    ) -> BoxFuture<'a, Result<Option<NativeFormat>>>;
    fn read_native<'a>(
        &'a self,
        table: &'a TableSchema,
        after: Option<&'a Position>,
        until: Option<&'a Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<NativeChunk>>;
    fn read_range<'a>(
        &'a self,
        table: &'a TableSchema,
        after: Option<&'a Position>,
        until: Option<&'a Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Chunk>>;
    fn split_keys<'a>(
        &'a self,
        table: &'a TableSchema,
        parts: usize,
    ) -> BoxFuture<'a, Result<Vec<Position>>>;
    fn another(&self) -> BoxFuture<'_, Result<Option<Box<dyn DynSource>>>>;
    fn poll<'a>(
        &'a self,
        table: &'a TableSchema,
        cursor: &'a CursorSpec,
        after: Option<&'a Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Chunk>>;
    fn cursor_high<'a>(
        &'a self,
        table: &'a TableSchema,
        cursor: &'a CursorSpec,
    ) -> BoxFuture<'a, Result<Option<Position>>>;
    fn rewind(&self, table: &TableSchema, cursor: &CursorSpec, from: &Position)
        -> Result<Position>;
    fn compare(&self, table: &TableSchema, a: &Position, b: &Position) -> Result<Ordering>;
    fn existing_keys<'a>(
        &'a self,
        table: &'a TableSchema,
        keys: &'a [Row],
    ) -> BoxFuture<'a, Result<Vec<bool>>>;
    /// The change log, for a source that has one.
    fn log(&self) -> Option<&dyn DynLog>;
    /// The connector itself, to reach what only it offers.
    fn as_any(&self) -> &dyn Any;
}

/// The `dyn`-compatible mirror of [`LogSource`].
trait DynLog: Send + Sync {
    fn check_log_table<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<()>>;
    fn prepare_log<'a>(
        &'a self,
        pipeline: &'a str,
        tables: &'a [TableSchema],
    ) -> BoxFuture<'a, Result<Position>>;
    fn log_head(&self) -> BoxFuture<'_, Result<Position>>;
    fn stream<'a>(
        &'a self,
        pipeline: &'a str,
        tables: &'a [Arc<TableSchema>],
        from: &'a Position,
    ) -> BoxFuture<'a, Result<AnyChangeStream>>;
    fn drop_log<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<()>>;
    fn retained_log<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;
    fn pin_snapshot<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Position>>;
    fn unpin_snapshot<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<()>>;
    fn snapshot_holds(&self, snapshot: &Position, tx: &siphon_core::Transaction) -> Result<bool>;
    fn watermarks(&self) -> BoxFuture<'_, Result<bool>>;
    fn write_watermark<'a>(&'a self, pipeline: &'a str, mark: &'a str)
        -> BoxFuture<'a, Result<()>>;
    fn resume<'a>(
        &'a self,
        pipeline: &'a str,
        from: &'a Position,
        tables: &'a [TableSchema],
    ) -> BoxFuture<'a, Result<Resume>>;
}

/// The `dyn`-compatible mirror of [`ChangeStream`].
trait DynChangeStream: fmt::Debug + Send {
    fn next_batch<'a>(
        &'a mut self,
        max_changes: usize,
        until: Option<&'a Position>,
        wait: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<(Batch, Position)>>>;
    fn confirm<'a>(&'a mut self, committed: &'a Position) -> BoxFuture<'a, Result<()>>;
    fn close(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
    fn take_watermarks(&mut self) -> Vec<siphon_core::Watermark>;
    fn limit_bytes(&mut self, max_bytes: u64);
}

/// A source without a change log.
#[derive(Debug)]
struct Plain<T>(T);

/// A source with a change log.
#[derive(Debug)]
struct Logged<T>(T);

/// Implements [`DynSource`]'s source methods for a wrapper by forwarding to
/// the connector it wraps; `$log` says whether the wrapper has a log.
macro_rules! forward_source {
    ($wrapper:ident, $rewrap:expr, $log:ident, where $($bounds:tt)*) => {
        impl<T> DynSource for $wrapper<T>
        where
            $($bounds)*
        {
            fn discover<'a>(
                &'a self,
                filter: &'a TableFilter,
            ) -> BoxFuture<'a, Result<Vec<TableSchema>>> {
                Box::pin(self.0.discover(filter))
            }
            fn check_table<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<()>> {
                Box::pin(self.0.check_table(table))
            }
            fn estimate_rows<'a>(
                &'a self,
                table: &'a TableSchema,
            ) -> BoxFuture<'a, Result<Option<u64>>> {
                Box::pin(self.0.estimate_rows(table))
            }
            fn count_rows<'a>(
                &'a self,
                table: &'a TableSchema,
            ) -> BoxFuture<'a, Result<Option<u64>>> {
                Box::pin(self.0.count_rows(table))
            }
            fn read_chunk<'a>(
                &'a self,
                table: &'a TableSchema,
                after: Option<&'a Position>,
                limit: usize,
            ) -> BoxFuture<'a, Result<Chunk>> {
                Box::pin(self.0.read_chunk(table, after, limit))
            }
            fn native_format<'a>(
                &'a self,
                table: &'a TableSchema,
            ) -> BoxFuture<'a, Result<Option<NativeFormat>>> {
                Box::pin(self.0.native_format(table))
            }
            fn read_native<'a>(
                &'a self,
                table: &'a TableSchema,
                after: Option<&'a Position>,
                until: Option<&'a Position>,
                limit: usize,
            ) -> BoxFuture<'a, Result<NativeChunk>> {
                Box::pin(self.0.read_native(table, after, until, limit))
            }
            fn read_range<'a>(
                &'a self,
                table: &'a TableSchema,
                after: Option<&'a Position>,
                until: Option<&'a Position>,
                limit: usize,
            ) -> BoxFuture<'a, Result<Chunk>> {
                Box::pin(self.0.read_range(table, after, until, limit))
            }
            fn split_keys<'a>(
                &'a self,
                table: &'a TableSchema,
                parts: usize,
            ) -> BoxFuture<'a, Result<Vec<Position>>> {
                Box::pin(self.0.split_keys(table, parts))
            }
            fn another(&self) -> BoxFuture<'_, Result<Option<Box<dyn DynSource>>>> {
                Box::pin(async move {
                    Ok(self
                        .0
                        .another()
                        .await?
                        .map(|s| Box::new($rewrap(s)) as Box<dyn DynSource>))
                })
            }
            fn poll<'a>(
                &'a self,
                table: &'a TableSchema,
                cursor: &'a CursorSpec,
                after: Option<&'a Position>,
                limit: usize,
            ) -> BoxFuture<'a, Result<Chunk>> {
                Box::pin(self.0.poll(table, cursor, after, limit))
            }
            fn cursor_high<'a>(
                &'a self,
                table: &'a TableSchema,
                cursor: &'a CursorSpec,
            ) -> BoxFuture<'a, Result<Option<Position>>> {
                Box::pin(self.0.cursor_high(table, cursor))
            }
            fn rewind(
                &self,
                table: &TableSchema,
                cursor: &CursorSpec,
                from: &Position,
            ) -> Result<Position> {
                self.0.rewind(table, cursor, from)
            }
            fn compare(
                &self,
                table: &TableSchema,
                a: &Position,
                b: &Position,
            ) -> Result<Ordering> {
                self.0.compare(table, a, b)
            }
            fn existing_keys<'a>(
                &'a self,
                table: &'a TableSchema,
                keys: &'a [Row],
            ) -> BoxFuture<'a, Result<Vec<bool>>> {
                Box::pin(self.0.existing_keys(table, keys))
            }
            fn log(&self) -> Option<&dyn DynLog> {
                $log(self)
            }
            fn as_any(&self) -> &dyn Any {
                &self.0
            }
        }
    };
}

forward_source!(Plain, Plain, no_log_of, where T: Source + fmt::Debug + 'static);
forward_source!(
    Logged,
    Logged,
    log_of,
    where T: LogSource + fmt::Debug + 'static, T::Stream: fmt::Debug + 'static
);

/// A source without a log has none to give.
fn no_log_of<T>(_: &Plain<T>) -> Option<&dyn DynLog> {
    None
}

/// A source with a log gives itself.
fn log_of<T>(source: &Logged<T>) -> Option<&dyn DynLog>
where
    T: LogSource + fmt::Debug + 'static,
    T::Stream: fmt::Debug + 'static,
{
    Some(source)
}

impl<T> DynLog for Logged<T>
where
    T: LogSource + fmt::Debug + 'static,
    T::Stream: fmt::Debug + 'static,
{
    fn check_log_table<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.check_log_table(table))
    }
    fn prepare_log<'a>(
        &'a self,
        pipeline: &'a str,
        tables: &'a [TableSchema],
    ) -> BoxFuture<'a, Result<Position>> {
        Box::pin(self.0.prepare_log(pipeline, tables))
    }
    fn log_head(&self) -> BoxFuture<'_, Result<Position>> {
        Box::pin(self.0.log_head())
    }
    fn stream<'a>(
        &'a self,
        pipeline: &'a str,
        tables: &'a [Arc<TableSchema>],
        from: &'a Position,
    ) -> BoxFuture<'a, Result<AnyChangeStream>> {
        Box::pin(async move {
            let stream = self.0.stream(pipeline, tables, from).await?;
            Ok(AnyChangeStream(Box::new(Stream(stream))))
        })
    }
    fn drop_log<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.drop_log(pipeline))
    }
    fn retained_log<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(self.0.retained_log(pipeline))
    }
    fn pin_snapshot<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Position>> {
        Box::pin(self.0.pin_snapshot(table))
    }
    fn unpin_snapshot<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.unpin_snapshot(table))
    }
    fn snapshot_holds(&self, snapshot: &Position, tx: &siphon_core::Transaction) -> Result<bool> {
        self.0.snapshot_holds(snapshot, tx)
    }
    fn watermarks(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.0.watermarks())
    }
    fn write_watermark<'a>(
        &'a self,
        pipeline: &'a str,
        mark: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.write_watermark(pipeline, mark))
    }
    fn resume<'a>(
        &'a self,
        pipeline: &'a str,
        from: &'a Position,
        tables: &'a [TableSchema],
    ) -> BoxFuture<'a, Result<Resume>> {
        Box::pin(self.0.resume(pipeline, from, tables))
    }
}

/// A connector's change stream.
#[derive(Debug)]
struct Stream<C>(C);

impl<C: ChangeStream + fmt::Debug + 'static> DynChangeStream for Stream<C> {
    fn next_batch<'a>(
        &'a mut self,
        max_changes: usize,
        until: Option<&'a Position>,
        wait: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<(Batch, Position)>>> {
        Box::pin(self.0.next_batch(max_changes, until, wait))
    }
    fn confirm<'a>(&'a mut self, committed: &'a Position) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.confirm(committed))
    }
    fn close(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(self.0.close())
    }
    fn take_watermarks(&mut self) -> Vec<siphon_core::Watermark> {
        self.0.take_watermarks()
    }
    fn limit_bytes(&mut self, max_bytes: u64) {
        self.0.limit_bytes(max_bytes)
    }
}

/// Any source siphon can read, opened through the
/// [`Registry`](crate::Registry). It implements [`Source`] and [`LogSource`]
/// by forwarding to its connector; the log methods of a source without a
/// change log say so in their error (and dropping or measuring a log it does
/// not have does nothing).
#[derive(Debug)]
pub struct AnySource(Box<dyn DynSource>);

impl AnySource {
    /// Wraps a source that has no change log (`mode: cdc` is refused for it).
    pub fn new<T: Source + fmt::Debug + 'static>(source: T) -> AnySource {
        AnySource(Box::new(Plain(source)))
    }

    /// Wraps a source whose change log siphon reads (`mode: cdc`).
    pub fn with_log<T>(source: T) -> AnySource
    where
        T: LogSource + fmt::Debug + 'static,
        T::Stream: fmt::Debug + 'static,
    {
        AnySource(Box::new(Logged(source)))
    }

    /// Whether this source has a change log siphon reads.
    pub fn has_log(&self) -> bool {
        self.0.log().is_some()
    }

    /// The connector itself, when it is a `T`: for what only that connector
    /// offers (such as who holds a PostgreSQL replication slot).
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}

/// The refusal of every log method of a source without a change log.
fn no_log() -> Error {
    Error::config(
        "cdc needs a PostgreSQL source, or a MySQL or MariaDB one: this source has no change log siphon can read; use mode `full` or \
         `incremental` for it",
    )
}

impl Source for AnySource {
    async fn discover(&self, filter: &TableFilter) -> Result<Vec<TableSchema>> {
        self.0.discover(filter).await
    }

    async fn check_table(&self, table: &TableSchema) -> Result<()> {
        self.0.check_table(table).await
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        self.0.estimate_rows(table).await
    }

    async fn count_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        self.0.count_rows(table).await
    }

    async fn read_chunk(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        self.0.read_chunk(table, after, limit).await
    }

    async fn native_format(&self, table: &TableSchema) -> Result<Option<NativeFormat>> {
        self.0.native_format(table).await
    }

    async fn read_native(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> Result<NativeChunk> {
        self.0.read_native(table, after, until, limit).await
    }

    async fn read_range(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        self.0.read_range(table, after, until, limit).await
    }

    async fn split_keys(&self, table: &TableSchema, parts: usize) -> Result<Vec<Position>> {
        self.0.split_keys(table, parts).await
    }

    async fn another(&self) -> Result<Option<AnySource>> {
        Ok(self.0.another().await?.map(AnySource))
    }

    async fn poll(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        self.0.poll(table, cursor, after, limit).await
    }

    async fn cursor_high(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
    ) -> Result<Option<Position>> {
        self.0.cursor_high(table, cursor).await
    }

    fn rewind(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        from: &Position,
    ) -> Result<Position> {
        self.0.rewind(table, cursor, from)
    }

    fn compare(&self, table: &TableSchema, a: &Position, b: &Position) -> Result<Ordering> {
        self.0.compare(table, a, b)
    }

    async fn existing_keys(&self, table: &TableSchema, keys: &[Row]) -> Result<Vec<bool>> {
        self.0.existing_keys(table, keys).await
    }
}

impl LogSource for AnySource {
    type Stream = AnyChangeStream;

    async fn check_log_table(&self, table: &TableSchema) -> Result<()> {
        match self.0.log() {
            Some(log) => log.check_log_table(table).await,
            None => Err(no_log().table(&table.name)),
        }
    }

    async fn prepare_log(&self, pipeline: &str, tables: &[TableSchema]) -> Result<Position> {
        match self.0.log() {
            Some(log) => log.prepare_log(pipeline, tables).await,
            None => Err(no_log()),
        }
    }

    async fn log_head(&self) -> Result<Position> {
        match self.0.log() {
            Some(log) => log.log_head().await,
            None => Err(no_log()),
        }
    }

    async fn stream(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        from: &Position,
    ) -> Result<AnyChangeStream> {
        match self.0.log() {
            Some(log) => log.stream(pipeline, tables, from).await,
            None => Err(no_log()),
        }
    }

    async fn drop_log(&self, pipeline: &str) -> Result<()> {
        match self.0.log() {
            Some(log) => log.drop_log(pipeline).await,
            None => Ok(()),
        }
    }

    async fn retained_log(&self, pipeline: &str) -> Result<Option<u64>> {
        match self.0.log() {
            Some(log) => log.retained_log(pipeline).await,
            None => Ok(None),
        }
    }

    async fn pin_snapshot(&self, table: &TableSchema) -> Result<Position> {
        match self.0.log() {
            Some(log) => log.pin_snapshot(table).await,
            None => Err(no_log().table(&table.name)),
        }
    }

    async fn unpin_snapshot(&self, table: &TableSchema) -> Result<()> {
        match self.0.log() {
            Some(log) => log.unpin_snapshot(table).await,
            None => Ok(()),
        }
    }

    fn snapshot_holds(&self, snapshot: &Position, tx: &siphon_core::Transaction) -> Result<bool> {
        match self.0.log() {
            Some(log) => log.snapshot_holds(snapshot, tx),
            None => Err(no_log()),
        }
    }

    async fn watermarks(&self) -> Result<bool> {
        match self.0.log() {
            Some(log) => log.watermarks().await,
            None => Ok(false),
        }
    }

    async fn write_watermark(&self, pipeline: &str, mark: &str) -> Result<()> {
        match self.0.log() {
            Some(log) => log.write_watermark(pipeline, mark).await,
            None => Err(no_log()),
        }
    }

    async fn resume(
        &self,
        pipeline: &str,
        from: &Position,
        tables: &[TableSchema],
    ) -> Result<Resume> {
        match self.0.log() {
            Some(log) => log.resume(pipeline, from, tables).await,
            None => Err(no_log()),
        }
    }
}

/// The change stream of any source with a log.
#[derive(Debug)]
pub struct AnyChangeStream(Box<dyn DynChangeStream>);

impl ChangeStream for AnyChangeStream {
    async fn next_batch(
        &mut self,
        max_changes: usize,
        until: Option<&Position>,
        wait: Option<Duration>,
    ) -> Result<Option<(Batch, Position)>> {
        self.0.next_batch(max_changes, until, wait).await
    }

    async fn confirm(&mut self, committed: &Position) -> Result<()> {
        self.0.confirm(committed).await
    }

    async fn close(self) -> Result<()> {
        self.0.close().await
    }

    fn take_watermarks(&mut self) -> Vec<siphon_core::Watermark> {
        self.0.take_watermarks()
    }
    fn limit_bytes(&mut self, max_bytes: u64) {
        self.0.limit_bytes(max_bytes)
    }
}
