//! Any target.

use std::any::Any;
use std::fmt;

use siphon_core::{
    ApplyStats, Batch, Checkpoint, NativeChunk, NativeFormat, Result, Row, SchemaOptions, Sink,
    SinkCapabilities, StreamId, TableName, TableSchema,
};

use super::BoxFuture;

/// The `dyn`-compatible mirror of [`Sink`].
trait DynSink: fmt::Debug + Send + Sync {
    fn capabilities(&self) -> SinkCapabilities;
    fn prepare<'a>(
        &'a self,
        table: &'a TableSchema,
        options: &'a SchemaOptions,
    ) -> BoxFuture<'a, Result<()>>;
    fn checkpoint<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Checkpoint>>>;
    fn reset<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>>;
    fn fence<'a>(&'a self, pipeline: &'a str, epoch: u64) -> BoxFuture<'a, Result<()>>;
    fn load<'a>(
        &'a self,
        table: &'a TableSchema,
        rows: Vec<Row>,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<ApplyStats>>;
    fn accepts_native<'a>(
        &'a self,
        table: &'a TableSchema,
        format: &'a NativeFormat,
    ) -> BoxFuture<'a, Result<bool>>;
    fn load_native<'a>(
        &'a self,
        table: &'a TableSchema,
        chunk: NativeChunk,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<ApplyStats>>;
    fn another(&self) -> BoxFuture<'_, Result<Option<Box<dyn DynSink>>>>;
    fn swap_refusal<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Option<String>>>;
    fn open_shadow<'a>(
        &'a self,
        table: &'a TableSchema,
        resume: Option<&'a TableName>,
    ) -> BoxFuture<'a, Result<(TableSchema, bool)>>;
    fn swap_in<'a>(
        &'a self,
        table: &'a TableSchema,
        shadow: &'a TableSchema,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<u64>>;
    fn drop_shadow<'a>(&'a self, shadow: &'a TableName) -> BoxFuture<'a, Result<()>>;
    fn apply<'a>(
        &'a self,
        batch: Batch,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<ApplyStats>>;
    fn read_keys<'a>(
        &'a self,
        table: &'a TableSchema,
        after: Option<&'a Row>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>>>;
    fn count_rows<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Option<u64>>>;
    fn unfilled<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Vec<usize>>>;
    fn fill<'a>(
        &'a self,
        table: &'a TableSchema,
        columns: &'a [usize],
        rows: Vec<Row>,
        done: bool,
    ) -> BoxFuture<'a, Result<()>>;
    fn finish_tables<'a>(&'a self, options: &'a SchemaOptions) -> BoxFuture<'a, Result<()>>;
    /// The connector itself, to reach what only it offers.
    fn as_any(&self) -> &dyn Any;
}

/// A connector's sink.
#[derive(Debug)]
struct Target<T>(T);

impl<T: Sink + fmt::Debug + 'static> DynSink for Target<T> {
    fn capabilities(&self) -> SinkCapabilities {
        self.0.capabilities()
    }
    fn prepare<'a>(
        &'a self,
        table: &'a TableSchema,
        options: &'a SchemaOptions,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.prepare(table, options))
    }
    fn checkpoint<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Checkpoint>>> {
        Box::pin(self.0.checkpoint(stream))
    }
    fn reset<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.reset(stream))
    }
    fn fence<'a>(&'a self, pipeline: &'a str, epoch: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.fence(pipeline, epoch))
    }
    fn load<'a>(
        &'a self,
        table: &'a TableSchema,
        rows: Vec<Row>,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<ApplyStats>> {
        Box::pin(self.0.load(table, rows, checkpoint))
    }
    fn accepts_native<'a>(
        &'a self,
        table: &'a TableSchema,
        format: &'a NativeFormat,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.0.accepts_native(table, format))
    }
    fn load_native<'a>(
        &'a self,
        table: &'a TableSchema,
        chunk: NativeChunk,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<ApplyStats>> {
        Box::pin(self.0.load_native(table, chunk, checkpoint))
    }
    fn another(&self) -> BoxFuture<'_, Result<Option<Box<dyn DynSink>>>> {
        Box::pin(async move {
            Ok(self
                .0
                .another()
                .await?
                .map(|s| Box::new(Target(s)) as Box<dyn DynSink>))
        })
    }
    fn swap_refusal<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(self.0.swap_refusal(table))
    }
    fn open_shadow<'a>(
        &'a self,
        table: &'a TableSchema,
        resume: Option<&'a TableName>,
    ) -> BoxFuture<'a, Result<(TableSchema, bool)>> {
        Box::pin(self.0.open_shadow(table, resume))
    }
    fn swap_in<'a>(
        &'a self,
        table: &'a TableSchema,
        shadow: &'a TableSchema,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.0.swap_in(table, shadow, checkpoint))
    }
    fn drop_shadow<'a>(&'a self, shadow: &'a TableName) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.drop_shadow(shadow))
    }
    fn apply<'a>(
        &'a self,
        batch: Batch,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<ApplyStats>> {
        Box::pin(self.0.apply(batch, checkpoint))
    }
    fn read_keys<'a>(
        &'a self,
        table: &'a TableSchema,
        after: Option<&'a Row>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(self.0.read_keys(table, after, limit))
    }
    fn count_rows<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(self.0.count_rows(table))
    }
    fn unfilled<'a>(&'a self, table: &'a TableSchema) -> BoxFuture<'a, Result<Vec<usize>>> {
        Box::pin(self.0.unfilled(table))
    }
    fn fill<'a>(
        &'a self,
        table: &'a TableSchema,
        columns: &'a [usize],
        rows: Vec<Row>,
        done: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.fill(table, columns, rows, done))
    }
    fn finish_tables<'a>(&'a self, options: &'a SchemaOptions) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.finish_tables(options))
    }
    fn as_any(&self) -> &dyn Any {
        &self.0
    }
}

/// Any target siphon can write, opened through the
/// [`Registry`](crate::Registry). It implements [`Sink`] by forwarding every
/// method to its connector.
#[derive(Debug)]
pub struct AnySink(Box<dyn DynSink>, u64);

impl AnySink {
    /// Wraps a connector's sink.
    pub fn new<T: Sink + fmt::Debug + 'static>(sink: T) -> AnySink {
        AnySink(Box::new(Target(sink)), 0)
    }

    /// The same sink, writing for the holder of a pipeline lease of `epoch`:
    /// every checkpoint it writes (and those of the sinks
    /// [`Sink::another`] opens from it) carries `epoch`, so the target refuses
    /// them once a newer holder wrote (fencing). Epoch 0 leaves checkpoints as
    /// the engine made them.
    pub fn under_lease(mut self, epoch: u64) -> AnySink {
        self.1 = epoch;
        self
    }

    /// `checkpoint` with this sink's lease epoch.
    fn fenced<'a>(&self, checkpoint: &'a Checkpoint) -> std::borrow::Cow<'a, Checkpoint> {
        if self.1 == 0 || checkpoint.epoch == self.1 {
            std::borrow::Cow::Borrowed(checkpoint)
        } else {
            std::borrow::Cow::Owned(checkpoint.clone().with_epoch(self.1))
        }
    }

    /// The connector itself, when it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}

impl Sink for AnySink {
    fn capabilities(&self) -> SinkCapabilities {
        self.0.capabilities()
    }

    async fn prepare(&self, table: &TableSchema, options: &SchemaOptions) -> Result<()> {
        self.0.prepare(table, options).await
    }

    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        self.0.checkpoint(stream).await
    }

    async fn reset(&self, stream: &StreamId) -> Result<()> {
        self.0.reset(stream).await
    }

    async fn fence(&self, pipeline: &str, epoch: u64) -> Result<()> {
        self.0.fence(pipeline, epoch).await
    }

    async fn load(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        self.0.load(table, rows, &self.fenced(checkpoint)).await
    }

    async fn accepts_native(&self, table: &TableSchema, format: &NativeFormat) -> Result<bool> {
        self.0.accepts_native(table, format).await
    }

    async fn load_native(
        &self,
        table: &TableSchema,
        chunk: NativeChunk,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        self.0
            .load_native(table, chunk, &self.fenced(checkpoint))
            .await
    }

    async fn another(&self) -> Result<Option<AnySink>> {
        Ok(self.0.another().await?.map(|s| AnySink(s, self.1)))
    }

    async fn swap_refusal(&self, table: &TableSchema) -> Result<Option<String>> {
        self.0.swap_refusal(table).await
    }

    async fn open_shadow(
        &self,
        table: &TableSchema,
        resume: Option<&TableName>,
    ) -> Result<(TableSchema, bool)> {
        self.0.open_shadow(table, resume).await
    }

    async fn swap_in(
        &self,
        table: &TableSchema,
        shadow: &TableSchema,
        checkpoint: &Checkpoint,
    ) -> Result<u64> {
        self.0
            .swap_in(table, shadow, &self.fenced(checkpoint))
            .await
    }

    async fn drop_shadow(&self, shadow: &TableName) -> Result<()> {
        self.0.drop_shadow(shadow).await
    }

    async fn apply(&self, batch: Batch, checkpoint: &Checkpoint) -> Result<ApplyStats> {
        self.0.apply(batch, &self.fenced(checkpoint)).await
    }

    async fn read_keys(
        &self,
        table: &TableSchema,
        after: Option<&Row>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        self.0.read_keys(table, after, limit).await
    }

    async fn count_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        self.0.count_rows(table).await
    }

    async fn unfilled(&self, table: &TableSchema) -> Result<Vec<usize>> {
        self.0.unfilled(table).await
    }

    async fn fill(
        &self,
        table: &TableSchema,
        columns: &[usize],
        rows: Vec<Row>,
        done: bool,
    ) -> Result<()> {
        self.0.fill(table, columns, rows, done).await
    }

    async fn finish_tables(&self, options: &SchemaOptions) -> Result<()> {
        self.0.finish_tables(options).await
    }
}
