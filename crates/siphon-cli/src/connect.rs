//! From a connection URL to a connector: the one place that knows every connector.

use std::cmp::Ordering;
use std::sync::Arc;

use siphon_core::{
    ApplyStats, Batch, ChangeStream, Checkpoint, Chunk, CursorSpec, Error, LogSource, NativeChunk,
    NativeFormat, Position, Result, Row, SchemaOptions, Sink, Source, StreamId, TableFilter,
    TableSchema,
};
use siphon_postgres::{PostgresChangeStream, PostgresSink, PostgresSource};
use siphon_sqlite::{SqliteSink, SqliteSource};

use crate::config::{ConnUrl, Kind};

/// Any source siphon can read.
#[derive(Debug)]
pub enum AnySource {
    Sqlite(SqliteSource),
    Postgres(PostgresSource),
}

/// Any target siphon can write.
#[derive(Debug)]
pub enum AnySink {
    Sqlite(SqliteSink),
    Postgres(PostgresSink),
}

fn not_yet(name: &str, url: &ConnUrl, role: &str) -> Error {
    Error::config(format!(
        "connection `{name}` ({url}) cannot be a {role} in this version of siphon: only sqlite:// connections \
         and postgres:// connections are replicated so far"
    ))
}

/// Says which connection an error concerns, its URL shown without the password.
fn named(e: Error, name: &str, url: &ConnUrl) -> Error {
    Error::new(e.kind(), format!("connection `{name}` ({url})")).source(e)
}

/// Opens the source a connection names.
pub async fn open_source(name: &str, url: &ConnUrl) -> Result<AnySource> {
    match url.kind {
        Kind::Sqlite => Ok(AnySource::Sqlite(SqliteSource::open(
            siphon_sqlite::path_from_url(url.expose())?,
        )?)),
        Kind::Postgres => PostgresSource::connect(url.expose())
            .await
            .map(AnySource::Postgres)
            .map_err(|e| named(e, name, url)),
        _ => Err(not_yet(name, url, "source")),
    }
}

/// Opens the target a connection names.
pub async fn open_sink(name: &str, url: &ConnUrl) -> Result<AnySink> {
    match url.kind {
        Kind::Sqlite => Ok(AnySink::Sqlite(SqliteSink::open(
            siphon_sqlite::path_from_url(url.expose())?,
        )?)),
        Kind::Postgres => PostgresSink::connect(url.expose())
            .await
            .map(AnySink::Postgres)
            .map_err(|e| named(e, name, url)),
        _ => Err(not_yet(name, url, "target")),
    }
}

impl Source for AnySource {
    async fn discover(&self, filter: &TableFilter) -> Result<Vec<TableSchema>> {
        match self {
            AnySource::Sqlite(s) => s.discover(filter).await,
            AnySource::Postgres(s) => s.discover(filter).await,
        }
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        match self {
            AnySource::Sqlite(s) => s.estimate_rows(table).await,
            AnySource::Postgres(s) => s.estimate_rows(table).await,
        }
    }

    async fn read_chunk(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        match self {
            AnySource::Sqlite(s) => s.read_chunk(table, after, limit).await,
            AnySource::Postgres(s) => s.read_chunk(table, after, limit).await,
        }
    }

    async fn split_keys(&self, table: &TableSchema, parts: usize) -> Result<Vec<Position>> {
        match self {
            AnySource::Sqlite(s) => s.split_keys(table, parts).await,
            AnySource::Postgres(s) => s.split_keys(table, parts).await,
        }
    }

    async fn another(&self) -> Result<Option<AnySource>> {
        Ok(match self {
            AnySource::Sqlite(s) => s.another().await?.map(AnySource::Sqlite),
            AnySource::Postgres(s) => s.another().await?.map(AnySource::Postgres),
        })
    }

    async fn native_format(&self, table: &TableSchema) -> Result<Option<NativeFormat>> {
        match self {
            AnySource::Sqlite(s) => s.native_format(table).await,
            AnySource::Postgres(s) => s.native_format(table).await,
        }
    }

    async fn read_native(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> Result<NativeChunk> {
        match self {
            AnySource::Sqlite(s) => s.read_native(table, after, until, limit).await,
            AnySource::Postgres(s) => s.read_native(table, after, until, limit).await,
        }
    }

    async fn poll(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        match self {
            AnySource::Sqlite(s) => s.poll(table, cursor, after, limit).await,
            AnySource::Postgres(s) => s.poll(table, cursor, after, limit).await,
        }
    }

    async fn cursor_high(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
    ) -> Result<Option<Position>> {
        match self {
            AnySource::Sqlite(s) => s.cursor_high(table, cursor).await,
            AnySource::Postgres(s) => s.cursor_high(table, cursor).await,
        }
    }

    fn rewind(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        from: &Position,
    ) -> Result<Position> {
        match self {
            AnySource::Sqlite(s) => s.rewind(table, cursor, from),
            AnySource::Postgres(s) => s.rewind(table, cursor, from),
        }
    }

    fn compare(&self, table: &TableSchema, a: &Position, b: &Position) -> Result<Ordering> {
        match self {
            AnySource::Sqlite(s) => s.compare(table, a, b),
            AnySource::Postgres(s) => s.compare(table, a, b),
        }
    }

    async fn existing_keys(&self, table: &TableSchema, keys: &[Row]) -> Result<Vec<bool>> {
        match self {
            AnySource::Sqlite(s) => s.existing_keys(table, keys).await,
            AnySource::Postgres(s) => s.existing_keys(table, keys).await,
        }
    }
}

impl Sink for AnySink {
    async fn prepare(&self, table: &TableSchema, options: &SchemaOptions) -> Result<()> {
        match self {
            AnySink::Sqlite(s) => s.prepare(table, options).await,
            AnySink::Postgres(s) => s.prepare(table, options).await,
        }
    }

    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        match self {
            AnySink::Sqlite(s) => s.checkpoint(stream).await,
            AnySink::Postgres(s) => s.checkpoint(stream).await,
        }
    }

    async fn reset(&self, stream: &StreamId) -> Result<()> {
        match self {
            AnySink::Sqlite(s) => s.reset(stream).await,
            AnySink::Postgres(s) => s.reset(stream).await,
        }
    }

    async fn load(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        match self {
            AnySink::Sqlite(s) => s.load(table, rows, checkpoint).await,
            AnySink::Postgres(s) => s.load(table, rows, checkpoint).await,
        }
    }

    async fn another(&self) -> Result<Option<AnySink>> {
        Ok(match self {
            AnySink::Sqlite(s) => s.another().await?.map(AnySink::Sqlite),
            AnySink::Postgres(s) => s.another().await?.map(AnySink::Postgres),
        })
    }

    async fn accepts_native(&self, table: &TableSchema, format: &NativeFormat) -> Result<bool> {
        match self {
            AnySink::Sqlite(s) => s.accepts_native(table, format).await,
            AnySink::Postgres(s) => s.accepts_native(table, format).await,
        }
    }

    async fn load_native(
        &self,
        table: &TableSchema,
        chunk: NativeChunk,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        match self {
            AnySink::Sqlite(s) => s.load_native(table, chunk, checkpoint).await,
            AnySink::Postgres(s) => s.load_native(table, chunk, checkpoint).await,
        }
    }

    async fn swap_refusal(&self, table: &TableSchema) -> Result<Option<String>> {
        match self {
            AnySink::Sqlite(s) => s.swap_refusal(table).await,
            AnySink::Postgres(s) => s.swap_refusal(table).await,
        }
    }

    async fn open_shadow(
        &self,
        table: &TableSchema,
        resume: Option<&siphon_core::TableName>,
    ) -> Result<(TableSchema, bool)> {
        match self {
            AnySink::Sqlite(s) => s.open_shadow(table, resume).await,
            AnySink::Postgres(s) => s.open_shadow(table, resume).await,
        }
    }

    async fn swap_in(
        &self,
        table: &TableSchema,
        shadow: &TableSchema,
        checkpoint: &Checkpoint,
    ) -> Result<u64> {
        match self {
            AnySink::Sqlite(s) => s.swap_in(table, shadow, checkpoint).await,
            AnySink::Postgres(s) => s.swap_in(table, shadow, checkpoint).await,
        }
    }

    async fn drop_shadow(&self, shadow: &siphon_core::TableName) -> Result<()> {
        match self {
            AnySink::Sqlite(s) => s.drop_shadow(shadow).await,
            AnySink::Postgres(s) => s.drop_shadow(shadow).await,
        }
    }

    async fn apply(&self, batch: Batch, checkpoint: &Checkpoint) -> Result<ApplyStats> {
        match self {
            AnySink::Sqlite(s) => s.apply(batch, checkpoint).await,
            AnySink::Postgres(s) => s.apply(batch, checkpoint).await,
        }
    }

    async fn read_keys(
        &self,
        table: &TableSchema,
        after: Option<&Row>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        match self {
            AnySink::Sqlite(s) => s.read_keys(table, after, limit).await,
            AnySink::Postgres(s) => s.read_keys(table, after, limit).await,
        }
    }

    async fn finish_tables(&self, options: &SchemaOptions) -> Result<()> {
        match self {
            AnySink::Sqlite(s) => s.finish_tables(options).await,
            AnySink::Postgres(s) => s.finish_tables(options).await,
        }
    }

    async fn unfilled(&self, table: &TableSchema) -> Result<Vec<usize>> {
        match self {
            AnySink::Sqlite(s) => s.unfilled(table).await,
            AnySink::Postgres(s) => s.unfilled(table).await,
        }
    }

    async fn fill(
        &self,
        table: &TableSchema,
        columns: &[usize],
        rows: Vec<Row>,
        done: bool,
    ) -> Result<()> {
        match self {
            AnySink::Sqlite(s) => s.fill(table, columns, rows, done).await,
            AnySink::Postgres(s) => s.fill(table, columns, rows, done).await,
        }
    }
}

/// The change stream of any source with a log.
#[derive(Debug)]
pub enum AnyChangeStream {
    Postgres(PostgresChangeStream),
}

fn no_log() -> Error {
    Error::config(
        "cdc needs a PostgreSQL source: this source has no change log siphon can read; use mode `full` or \
         `incremental` for it",
    )
}

impl LogSource for AnySource {
    type Stream = AnyChangeStream;

    async fn check_log_table(&self, table: &TableSchema) -> Result<()> {
        match self {
            AnySource::Sqlite(_) => Err(no_log().table(&table.name)),
            AnySource::Postgres(s) => s.check_log_table(table).await,
        }
    }

    async fn prepare_log(&self, pipeline: &str, tables: &[TableSchema]) -> Result<Position> {
        match self {
            AnySource::Sqlite(_) => Err(no_log()),
            AnySource::Postgres(s) => s.prepare_log(pipeline, tables).await,
        }
    }

    async fn log_head(&self) -> Result<Position> {
        match self {
            AnySource::Sqlite(_) => Err(no_log()),
            AnySource::Postgres(s) => s.log_head().await,
        }
    }

    async fn stream(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        from: &Position,
    ) -> Result<AnyChangeStream> {
        match self {
            AnySource::Sqlite(_) => Err(no_log()),
            AnySource::Postgres(s) => s
                .stream(pipeline, tables, from)
                .await
                .map(AnyChangeStream::Postgres),
        }
    }

    async fn drop_log(&self, pipeline: &str) -> Result<()> {
        match self {
            AnySource::Sqlite(_) => Ok(()),
            AnySource::Postgres(s) => s.drop_log(pipeline).await,
        }
    }

    async fn retained_log(&self, pipeline: &str) -> Result<Option<u64>> {
        match self {
            AnySource::Sqlite(_) => Ok(None),
            AnySource::Postgres(s) => s.retained_log(pipeline).await,
        }
    }

    fn compare_log(&self, a: &Position, b: &Position) -> Result<Ordering> {
        match self {
            AnySource::Sqlite(_) => Err(no_log()),
            AnySource::Postgres(s) => s.compare_log(a, b),
        }
    }
}

impl ChangeStream for AnyChangeStream {
    async fn next_batch(
        &mut self,
        max_changes: usize,
        until: Option<&Position>,
        wait: Option<std::time::Duration>,
    ) -> Result<Option<(Batch, Position)>> {
        match self {
            AnyChangeStream::Postgres(s) => s.next_batch(max_changes, until, wait).await,
        }
    }

    async fn confirm(&mut self, committed: &Position) -> Result<()> {
        match self {
            AnyChangeStream::Postgres(s) => s.confirm(committed).await,
        }
    }

    async fn close(self) -> Result<()> {
        match self {
            AnyChangeStream::Postgres(s) => s.close().await,
        }
    }
}
