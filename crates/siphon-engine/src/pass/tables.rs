//! Runs a pass's `full`, `incremental` and `row_count` tables: up to the
//! pipeline's `max_parallel` at once, or one after another in its `order`.
//!
//! Each slot is a worker that takes the next table from one queue, so a slow
//! table holds only its own slot and a failed one is recorded for itself
//! alone. The first slot uses the pass's source and sink; every other slot
//! opens connections of its own ([`Source::another`], [`Sink::another`]) and
//! falls back to the pass's where it cannot, where calls for different
//! tables take turns inside the connector (the sink contract allows them to
//! overlap).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::Utc;
use siphon_core::{
    ExecutionStatus, Mode, PipelineSpec, Result, Sink, Source, StateStore, StreamId, TableSchema,
    TableStats,
};

use super::{record, run_table, PassReport};
use crate::snapshot::join_all;
use crate::{Observer, Shutdown};

/// One table of the pass, with the mode it runs in.
pub(super) type Job = (StreamId, TableSchema, Mode);

/// What every slot of a pass shares.
struct Shared<'a, S, K, St> {
    pipeline: &'a str,
    spec: &'a PipelineSpec,
    source: &'a S,
    sink: &'a K,
    state: &'a St,
    observer: &'a dyn Observer,
    shutdown: &'a Shutdown,
    execution: u64,
    /// The tables not started yet, the next one first.
    todo: Mutex<VecDeque<Job>>,
    /// Set when a slot hit an error of the pipeline's own (the state store):
    /// the others finish their table and take no other.
    abort: AtomicBool,
}

/// Runs `jobs` and adds each table's outcome to `report` as it is recorded.
/// Tables listed in the pipeline's `order` start first, in that order; the
/// others follow in the order given. Returns the first error of the
/// pipeline's own; table errors are in the report.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<S: Source, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    mut jobs: Vec<Job>,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    report: &mut PassReport,
) -> Result<()> {
    // Stable: tables not listed keep their order, after the listed ones.
    jobs.sort_by_key(|(_, t, _)| spec.order_of(&t.name).unwrap_or(usize::MAX));
    let slots = spec.tables_at_once().min(jobs.len());
    if slots > 1 {
        tracing::info!(
            pipeline,
            tables = jobs.len(),
            at_once = slots,
            "running tables in parallel"
        );
    }
    let shared = Shared {
        pipeline,
        spec,
        source,
        sink,
        state,
        observer,
        shutdown,
        execution: report.execution,
        todo: Mutex::new(jobs.into()),
        abort: AtomicBool::new(false),
    };
    let outcomes = join_all((0..slots).map(|slot| worker(&shared, slot)).collect()).await;
    let mut first_error = None;
    for outcome in outcomes {
        match outcome {
            Ok(done) => {
                if done.status == ExecutionStatus::Failed {
                    report.status = ExecutionStatus::Failed;
                } else if done.status == ExecutionStatus::Stopped
                    && report.status == ExecutionStatus::Succeeded
                {
                    report.status = ExecutionStatus::Stopped;
                }
                report.tables.extend(done.tables);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One slot: takes tables from the queue until it is empty, and records each.
/// Returns what it ran, as a report of its own.
async fn worker<S: Source, K: Sink, St: StateStore>(
    shared: &Shared<'_, S, K, St>,
    slot: usize,
) -> Result<PassReport> {
    let mut done = PassReport {
        execution: shared.execution,
        status: ExecutionStatus::Succeeded,
        tables: Vec::new(),
        retained_log_bytes: None,
    };
    let (own_source, own_sink) = match slot {
        0 => (None, None),
        _ => connections(shared, slot).await,
    };
    let source = own_source.as_ref().unwrap_or(shared.source);
    let sink = own_sink.as_ref().unwrap_or(shared.sink);
    let r = async {
        loop {
            if shared.abort.load(Ordering::SeqCst) {
                return Ok(());
            }
            // The lock is never held across an await.
            let next = shared.todo.lock().ok().and_then(|mut q| q.pop_front());
            let Some((stream, table, mode)) = next else {
                return Ok(());
            };
            let mut stats = TableStats::starting(&table.name, mode);
            shared.state.record_table(shared.execution, &stats).await?;
            let outcome = run_table(
                shared.pipeline,
                shared.spec,
                &stream,
                table,
                source,
                sink,
                shared.state,
                shared.observer,
                shared.shutdown,
                &mut stats,
            )
            .await;
            stats.finished_at = Some(Utc::now());
            record(
                shared.state,
                shared.observer,
                &mut done,
                vec![(stream, stats, outcome.err())],
            )
            .await?;
        }
    }
    .await;
    match r {
        Ok(()) => Ok(done),
        Err(e) => {
            shared.abort.store(true, Ordering::SeqCst);
            Err(e)
        }
    }
}

/// A slot's own source and target connections; `None` for each it cannot
/// open, whose calls then share the pass's connection.
async fn connections<S: Source, K: Sink, St: StateStore>(
    shared: &Shared<'_, S, K, St>,
    slot: usize,
) -> (Option<S>, Option<K>) {
    let pipeline = shared.pipeline;
    let source = match shared.source.another().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(pipeline, slot, error = %e, "cannot open another source connection: this slot shares the pass's");
            None
        }
    };
    let sink = match shared.sink.capabilities().another {
        false => None,
        true => match shared.sink.another().await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(pipeline, slot, error = %e, "cannot open another target connection: this slot shares the pass's");
                None
            }
        },
    };
    (source, sink)
}
