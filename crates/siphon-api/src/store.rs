//! The part of a state store the API reads and writes, behind `dyn`: every
//! [`StateStore`] is one, so the handlers need no type parameter.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use siphon_core::{Conflict, Execution, PipelineSpec, Result, Side, StateStore};

/// A boxed future, as the API's `dyn` traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The state store operations the REST API uses, each as
/// [`StateStore`]'s method of the same name says.
pub trait Store: Send + Sync {
    /// The stored connections, name to URL as written.
    fn connections(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>>;
    /// Adds or replaces a connection.
    fn put_connection<'a>(&'a self, name: &'a str, url: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Removes a connection; whether it existed.
    fn remove_connection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// The stored pipelines.
    fn pipelines(&self) -> BoxFuture<'_, Result<BTreeMap<String, PipelineSpec>>>;
    /// Adds or replaces a pipeline.
    fn put_pipeline<'a>(
        &'a self,
        name: &'a str,
        spec: &'a PipelineSpec,
    ) -> BoxFuture<'a, Result<()>>;
    /// The newest executions first, of one pipeline or all.
    fn executions<'a>(
        &'a self,
        pipeline: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Execution>>>;
    /// One execution.
    fn execution(&self, id: u64) -> BoxFuture<'_, Result<Option<Execution>>>;
    /// Conflicts oldest first.
    fn conflicts<'a>(
        &'a self,
        pipeline: Option<&'a str>,
        unresolved_only: bool,
    ) -> BoxFuture<'a, Result<Vec<Conflict>>>;
    /// Resolves a conflict; whether an unresolved one with that id was there.
    fn resolve_conflict(&self, id: u64, keep: Side) -> BoxFuture<'_, Result<bool>>;
}

impl<St: StateStore> Store for St {
    fn connections(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>> {
        Box::pin(StateStore::connections(self))
    }

    fn put_connection<'a>(&'a self, name: &'a str, url: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(StateStore::put_connection(self, name, url))
    }

    fn remove_connection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(StateStore::remove_connection(self, name))
    }

    fn pipelines(&self) -> BoxFuture<'_, Result<BTreeMap<String, PipelineSpec>>> {
        Box::pin(StateStore::pipelines(self))
    }

    fn put_pipeline<'a>(
        &'a self,
        name: &'a str,
        spec: &'a PipelineSpec,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(StateStore::put_pipeline(self, name, spec))
    }

    fn executions<'a>(
        &'a self,
        pipeline: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Execution>>> {
        Box::pin(StateStore::executions(self, pipeline, limit))
    }

    fn execution(&self, id: u64) -> BoxFuture<'_, Result<Option<Execution>>> {
        Box::pin(StateStore::execution(self, id))
    }

    fn conflicts<'a>(
        &'a self,
        pipeline: Option<&'a str>,
        unresolved_only: bool,
    ) -> BoxFuture<'a, Result<Vec<Conflict>>> {
        Box::pin(StateStore::conflicts(self, pipeline, unresolved_only))
    }

    fn resolve_conflict(&self, id: u64, keep: Side) -> BoxFuture<'_, Result<bool>> {
        Box::pin(StateStore::resolve_conflict(self, id, keep))
    }
}
