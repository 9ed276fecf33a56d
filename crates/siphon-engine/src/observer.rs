//! How the engine reports progress, and how it is asked to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use siphon_core::{StreamId, TableStats};

/// Receives progress as a pass runs (progress bars, logs, metrics). Called from the
/// engine's task: keep each call short.
pub trait Observer: Send + Sync {
    /// A table stream starts copying; `total` is the source's row estimate.
    fn table_started(&self, _stream: &StreamId, _total: Option<u64>) {}
    /// The table stream resumes an interrupted copy that had committed `rows`
    /// rows already (called right after [`Observer::table_started`]).
    fn table_resumed(&self, _stream: &StreamId, _rows: u64) {}
    /// `rows` more rows were committed on the target.
    fn rows_committed(&self, _stream: &StreamId, _rows: u64) {}
    /// A `cdc` table stream's copy is complete: what it commits from now on
    /// are streamed changes, not rows of the copy (the stream goes on; its end
    /// is still [`Observer::table_finished`]).
    fn copy_finished(&self, _stream: &StreamId) {}
    /// A table stream ended (its stats say how).
    fn table_finished(&self, _stream: &StreamId, _stats: &TableStats) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// A stop request shared by every task of a run. Drivers check it between chunks,
/// so a stop never leaves a chunk half-written: what was committed stays, with its
/// checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Stop>);

#[derive(Debug, Default)]
struct Stop {
    requested: AtomicBool,
    /// Requested too whenever this one is.
    parent: Option<Shutdown>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A stop request for a part of the run (one pipeline whose lease was
    /// lost): requested when `self` is, and on its own without stopping the rest.
    pub fn child(&self) -> Shutdown {
        Shutdown(Arc::new(Stop {
            requested: AtomicBool::new(false),
            parent: Some(self.clone()),
        }))
    }

    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
            || self.0.parent.as_ref().is_some_and(Shutdown::requested)
    }

    /// Resolves once a stop was requested (checked every 50 ms), for racing
    /// work that has no chunk boundary to stop at, such as opening a connection.
    pub async fn stopped(&self) {
        while !self.requested() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
