//! Any state store.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

use std::time::Duration;

use siphon_core::{
    Checkpoint, CommitLag, Conflict, Execution, ExecutionStatus, Flag, Lease, PipelineSpec, Result,
    Side, StateStore, StreamId, StreamState, TableStats,
};

use super::BoxFuture;

/// The `dyn`-compatible mirror of [`StateStore`].
trait DynState: fmt::Debug + Send + Sync {
    fn put_connection<'a>(&'a self, name: &'a str, url: &'a str) -> BoxFuture<'a, Result<()>>;
    fn connections(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>>;
    fn remove_connection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>>;
    fn put_pipeline<'a>(
        &'a self,
        name: &'a str,
        spec: &'a PipelineSpec,
    ) -> BoxFuture<'a, Result<()>>;
    fn pipelines(&self) -> BoxFuture<'_, Result<BTreeMap<String, PipelineSpec>>>;
    fn remove_pipeline<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>>;
    fn flag<'a>(&'a self, stream: &'a StreamId, flag: Flag) -> BoxFuture<'a, Result<Option<bool>>>;
    fn set_flag<'a>(
        &'a self,
        stream: &'a StreamId,
        flag: Flag,
        value: bool,
    ) -> BoxFuture<'a, Result<()>>;
    fn clear_flag<'a>(&'a self, stream: &'a StreamId, flag: Flag) -> BoxFuture<'a, Result<()>>;
    fn take_flag<'a>(&'a self, stream: &'a StreamId, flag: Flag) -> BoxFuture<'a, Result<bool>>;
    fn set_stream_state<'a>(
        &'a self,
        stream: &'a StreamId,
        state: &'a StreamState,
    ) -> BoxFuture<'a, Result<()>>;
    fn stream_states(&self) -> BoxFuture<'_, Result<Vec<(StreamId, StreamState)>>>;
    fn save_checkpoint<'a>(&'a self, checkpoint: &'a Checkpoint) -> BoxFuture<'a, Result<()>>;
    fn checkpoint<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Checkpoint>>>;
    fn remove_checkpoint<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>>;
    fn record_commit_lags<'a>(
        &'a self,
        lags: &'a [(StreamId, CommitLag)],
    ) -> BoxFuture<'a, Result<()>>;
    fn commit_lags(&self) -> BoxFuture<'_, Result<Vec<(StreamId, CommitLag)>>>;
    fn start_execution<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<u64>>;
    fn record_table<'a>(
        &'a self,
        execution: u64,
        stats: &'a TableStats,
    ) -> BoxFuture<'a, Result<()>>;
    fn record_retained_log(&self, execution: u64, bytes: u64) -> BoxFuture<'_, Result<()>>;
    fn finish_execution<'a>(
        &'a self,
        execution: u64,
        status: ExecutionStatus,
        error: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>>;
    fn executions<'a>(
        &'a self,
        pipeline: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Execution>>>;
    fn execution(&self, id: u64) -> BoxFuture<'_, Result<Option<Execution>>>;
    fn prune_executions<'a>(
        &'a self,
        pipeline: &'a str,
        older_than: Option<chrono::DateTime<chrono::Utc>>,
        keep_last: Option<u64>,
    ) -> BoxFuture<'a, Result<u64>>;
    fn acquire_lease<'a>(
        &'a self,
        pipeline: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>>>;
    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>>>;
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<()>>;
    fn lease<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<Option<Lease>>>;
    fn record_conflict<'a>(&'a self, conflict: &'a Conflict) -> BoxFuture<'a, Result<u64>>;
    fn conflicts<'a>(
        &'a self,
        pipeline: Option<&'a str>,
        unresolved_only: bool,
    ) -> BoxFuture<'a, Result<Vec<Conflict>>>;
    fn resolve_conflict(&self, id: u64, keep: Side) -> BoxFuture<'_, Result<bool>>;
    /// The store itself, to reach what only it offers.
    fn as_any(&self) -> &dyn Any;
}

/// A connector's state store.
#[derive(Debug)]
struct Store<T>(T);

impl<T: StateStore + fmt::Debug + 'static> DynState for Store<T> {
    fn put_connection<'a>(&'a self, name: &'a str, url: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.put_connection(name, url))
    }
    fn connections(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>> {
        Box::pin(self.0.connections())
    }
    fn remove_connection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.0.remove_connection(name))
    }
    fn put_pipeline<'a>(
        &'a self,
        name: &'a str,
        spec: &'a PipelineSpec,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.put_pipeline(name, spec))
    }
    fn pipelines(&self) -> BoxFuture<'_, Result<BTreeMap<String, PipelineSpec>>> {
        Box::pin(self.0.pipelines())
    }
    fn remove_pipeline<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.0.remove_pipeline(name))
    }
    fn flag<'a>(&'a self, stream: &'a StreamId, flag: Flag) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(self.0.flag(stream, flag))
    }
    fn set_flag<'a>(
        &'a self,
        stream: &'a StreamId,
        flag: Flag,
        value: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.set_flag(stream, flag, value))
    }
    fn clear_flag<'a>(&'a self, stream: &'a StreamId, flag: Flag) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.clear_flag(stream, flag))
    }
    fn take_flag<'a>(&'a self, stream: &'a StreamId, flag: Flag) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.0.take_flag(stream, flag))
    }
    fn set_stream_state<'a>(
        &'a self,
        stream: &'a StreamId,
        state: &'a StreamState,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.set_stream_state(stream, state))
    }
    fn stream_states(&self) -> BoxFuture<'_, Result<Vec<(StreamId, StreamState)>>> {
        Box::pin(self.0.stream_states())
    }
    fn save_checkpoint<'a>(&'a self, checkpoint: &'a Checkpoint) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.save_checkpoint(checkpoint))
    }
    fn checkpoint<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Checkpoint>>> {
        Box::pin(self.0.checkpoint(stream))
    }
    fn remove_checkpoint<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.remove_checkpoint(stream))
    }
    fn record_commit_lags<'a>(
        &'a self,
        lags: &'a [(StreamId, CommitLag)],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.record_commit_lags(lags))
    }
    fn commit_lags(&self) -> BoxFuture<'_, Result<Vec<(StreamId, CommitLag)>>> {
        Box::pin(self.0.commit_lags())
    }
    fn start_execution<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.0.start_execution(pipeline))
    }
    fn record_table<'a>(
        &'a self,
        execution: u64,
        stats: &'a TableStats,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.record_table(execution, stats))
    }
    fn record_retained_log(&self, execution: u64, bytes: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.0.record_retained_log(execution, bytes))
    }
    fn finish_execution<'a>(
        &'a self,
        execution: u64,
        status: ExecutionStatus,
        error: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.finish_execution(execution, status, error))
    }
    fn executions<'a>(
        &'a self,
        pipeline: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Execution>>> {
        Box::pin(self.0.executions(pipeline, limit))
    }
    fn execution(&self, id: u64) -> BoxFuture<'_, Result<Option<Execution>>> {
        Box::pin(self.0.execution(id))
    }
    fn prune_executions<'a>(
        &'a self,
        pipeline: &'a str,
        older_than: Option<chrono::DateTime<chrono::Utc>>,
        keep_last: Option<u64>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.0.prune_executions(pipeline, older_than, keep_last))
    }
    fn acquire_lease<'a>(
        &'a self,
        pipeline: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(self.0.acquire_lease(pipeline, holder, ttl))
    }
    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(self.0.renew_lease(lease, ttl))
    }
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.0.release_lease(lease))
    }
    fn lease<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(self.0.lease(pipeline))
    }
    fn record_conflict<'a>(&'a self, conflict: &'a Conflict) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.0.record_conflict(conflict))
    }
    fn conflicts<'a>(
        &'a self,
        pipeline: Option<&'a str>,
        unresolved_only: bool,
    ) -> BoxFuture<'a, Result<Vec<Conflict>>> {
        Box::pin(self.0.conflicts(pipeline, unresolved_only))
    }
    fn resolve_conflict(&self, id: u64, keep: Side) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.0.resolve_conflict(id, keep))
    }
    fn as_any(&self) -> &dyn Any {
        &self.0
    }
}

/// Any state store, opened through the [`Registry`](crate::Registry). It
/// implements [`StateStore`] by forwarding every method to its connector.
#[derive(Debug)]
pub struct AnyStateStore(Box<dyn DynState>);

impl AnyStateStore {
    /// Wraps a connector's state store.
    pub fn new<T: StateStore + fmt::Debug + 'static>(store: T) -> AnyStateStore {
        AnyStateStore(Box::new(Store(store)))
    }

    /// The store itself, when it is a `T` (such as
    /// `siphon_state::SqliteStateStore`, for its file's path).
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}

impl StateStore for AnyStateStore {
    async fn put_connection(&self, name: &str, url: &str) -> Result<()> {
        self.0.put_connection(name, url).await
    }
    async fn connections(&self) -> Result<BTreeMap<String, String>> {
        self.0.connections().await
    }
    async fn remove_connection(&self, name: &str) -> Result<bool> {
        self.0.remove_connection(name).await
    }
    async fn put_pipeline(&self, name: &str, spec: &PipelineSpec) -> Result<()> {
        self.0.put_pipeline(name, spec).await
    }
    async fn pipelines(&self) -> Result<BTreeMap<String, PipelineSpec>> {
        self.0.pipelines().await
    }
    async fn remove_pipeline(&self, name: &str) -> Result<bool> {
        self.0.remove_pipeline(name).await
    }
    async fn flag(&self, stream: &StreamId, flag: Flag) -> Result<Option<bool>> {
        self.0.flag(stream, flag).await
    }
    async fn set_flag(&self, stream: &StreamId, flag: Flag, value: bool) -> Result<()> {
        self.0.set_flag(stream, flag, value).await
    }
    async fn clear_flag(&self, stream: &StreamId, flag: Flag) -> Result<()> {
        self.0.clear_flag(stream, flag).await
    }
    async fn take_flag(&self, stream: &StreamId, flag: Flag) -> Result<bool> {
        self.0.take_flag(stream, flag).await
    }
    async fn set_stream_state(&self, stream: &StreamId, state: &StreamState) -> Result<()> {
        self.0.set_stream_state(stream, state).await
    }
    async fn stream_states(&self) -> Result<Vec<(StreamId, StreamState)>> {
        self.0.stream_states().await
    }
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.0.save_checkpoint(checkpoint).await
    }
    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        self.0.checkpoint(stream).await
    }
    async fn remove_checkpoint(&self, stream: &StreamId) -> Result<()> {
        self.0.remove_checkpoint(stream).await
    }
    async fn record_commit_lags(&self, lags: &[(StreamId, CommitLag)]) -> Result<()> {
        self.0.record_commit_lags(lags).await
    }
    async fn commit_lags(&self) -> Result<Vec<(StreamId, CommitLag)>> {
        self.0.commit_lags().await
    }
    async fn start_execution(&self, pipeline: &str) -> Result<u64> {
        self.0.start_execution(pipeline).await
    }
    async fn record_table(&self, execution: u64, stats: &TableStats) -> Result<()> {
        self.0.record_table(execution, stats).await
    }
    async fn record_retained_log(&self, execution: u64, bytes: u64) -> Result<()> {
        self.0.record_retained_log(execution, bytes).await
    }
    async fn finish_execution(
        &self,
        execution: u64,
        status: ExecutionStatus,
        error: Option<&str>,
    ) -> Result<()> {
        self.0.finish_execution(execution, status, error).await
    }
    async fn executions(&self, pipeline: Option<&str>, limit: usize) -> Result<Vec<Execution>> {
        self.0.executions(pipeline, limit).await
    }
    async fn execution(&self, id: u64) -> Result<Option<Execution>> {
        self.0.execution(id).await
    }
    async fn prune_executions(
        &self,
        pipeline: &str,
        older_than: Option<chrono::DateTime<chrono::Utc>>,
        keep_last: Option<u64>,
    ) -> Result<u64> {
        self.0
            .prune_executions(pipeline, older_than, keep_last)
            .await
    }
    async fn acquire_lease(
        &self,
        pipeline: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        self.0.acquire_lease(pipeline, holder, ttl).await
    }
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        self.0.renew_lease(lease, ttl).await
    }
    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.0.release_lease(lease).await
    }
    async fn lease(&self, pipeline: &str) -> Result<Option<Lease>> {
        self.0.lease(pipeline).await
    }
    async fn record_conflict(&self, conflict: &Conflict) -> Result<u64> {
        self.0.record_conflict(conflict).await
    }
    async fn conflicts(
        &self,
        pipeline: Option<&str>,
        unresolved_only: bool,
    ) -> Result<Vec<Conflict>> {
        self.0.conflicts(pipeline, unresolved_only).await
    }
    async fn resolve_conflict(&self, id: u64, keep: Side) -> Result<bool> {
        self.0.resolve_conflict(id, keep).await
    }
}
