//! One pass of a pipeline over its tables, recorded as an execution.

use std::sync::Arc;

use chrono::Utc;
use siphon_core::{
    CursorSpec, Error, ExecutionStatus, Flag, Mode, NewTables, PipelineSpec, Result, Sink, Source,
    StateStore, StreamId, StreamState, TableSchema, TableStats,
};

use crate::snapshot::TableRun;
use crate::{incremental, snapshot, Observer, Shutdown};

/// What a pass did.
#[derive(Debug, Clone)]
pub struct PassReport {
    pub execution: u64,
    pub status: ExecutionStatus,
    /// One entry per table that ran (paused tables are left out).
    pub tables: Vec<TableStats>,
}

impl PassReport {
    /// Whether any table read a row.
    pub fn found_work(&self) -> bool {
        self.tables.iter().any(|t| t.rows_read > 0 || t.deleted > 0)
    }
}

/// Runs every enabled table of a pipeline once: `full` tables are copied,
/// `incremental` tables polled until the source has nothing newer. A table that
/// fails is recorded as failed and the others go on. Errors returned are the
/// pipeline's own (discovery, state store); table errors are in the report.
pub async fn run_pass<S: Source, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) -> Result<PassReport> {
    let execution = state.start_execution(pipeline).await?;
    let tables = match source.discover(&spec.filter()).await {
        Ok(t) => t,
        Err(e) => {
            state
                .finish_execution(execution, ExecutionStatus::Failed, Some(&e.to_string()))
                .await?;
            return Err(e);
        }
    };
    if tables.is_empty() {
        tracing::warn!(pipeline, include = ?spec.tables, "no source table matches the pipeline's `tables`");
    }
    let mut report = PassReport {
        execution,
        status: ExecutionStatus::Succeeded,
        tables: Vec::new(),
    };
    for table in tables {
        let stream = StreamId::new(pipeline, &table.name);
        let enabled = match state.flag(&stream, Flag::Enabled).await? {
            Some(v) => v,
            None => spec.new_tables == NewTables::Enabled,
        };
        if !enabled {
            state
                .set_stream_state(&stream, &StreamState::Paused)
                .await?;
            continue;
        }
        let mode = spec.table_config(&table.name).mode.unwrap_or(spec.mode);
        let mut stats = TableStats {
            table: table.name.clone(),
            mode,
            rows_read: 0,
            inserted: 0,
            updated: 0,
            deleted: 0,
            started_at: Utc::now(),
            finished_at: None,
            status: ExecutionStatus::Running,
            error: None,
        };
        state.record_table(execution, &stats).await?;
        let outcome = run_table(
            pipeline, spec, &stream, table, source, sink, state, observer, shutdown, &mut stats,
        )
        .await;
        stats.finished_at = Some(Utc::now());
        match outcome {
            Ok(()) => {
                stats.status = ExecutionStatus::Succeeded;
                state.set_stream_state(&stream, &StreamState::Idle).await?;
            }
            Err(e) => {
                tracing::error!(stream = %stream, error = %e, "table stream failed");
                stats.status = ExecutionStatus::Failed;
                stats.error = Some(e.to_string());
                report.status = ExecutionStatus::Failed;
                state
                    .set_stream_state(
                        &stream,
                        &StreamState::Failed {
                            error: e.to_string(),
                        },
                    )
                    .await?;
            }
        }
        state.record_table(execution, &stats).await?;
        observer.table_finished(&stream, &stats);
        report.tables.push(stats);
    }
    let failed = report
        .tables
        .iter()
        .filter(|t| t.status == ExecutionStatus::Failed)
        .count();
    let error = (failed > 0).then(|| format!("{failed} of {} tables failed", report.tables.len()));
    state
        .finish_execution(execution, report.status, error.as_deref())
        .await?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn run_table<S: Source, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    stream: &StreamId,
    table: TableSchema,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    stats: &mut TableStats,
) -> Result<()> {
    let config = spec.table_config(&table.name);
    let mode = config.mode.unwrap_or(spec.mode);
    if table.row_key().is_none() {
        return Err(Error::bad_input(
            "the table has no primary key: add a PRIMARY KEY (or a UNIQUE NOT NULL column), since siphon \
             copies and applies rows by key",
        )
        .table(&table.name));
    }
    let mut target = table.clone();
    if let Some(schema) = &spec.target_schema {
        target.name.schema = Some(schema.clone());
    }
    sink.prepare(&target, &spec.schema)
        .await
        .map_err(|e| named(e, &table))?;

    let force = state.flag(stream, Flag::ForceFullLoad).await? == Some(true);
    if force {
        tracing::info!(%stream, "forced full load");
        sink.reset(stream).await?;
        state.remove_checkpoint(stream).await?;
    }
    let checkpoint = sink.checkpoint(stream).await?;
    let run = TableRun {
        stream: stream.clone(),
        source_table: Arc::new(table),
        target_table: Arc::new(target),
        source,
        sink,
        state,
        batch_size: config.batch_size.unwrap_or(spec.batch_size).max(1),
        observer,
        shutdown,
    };
    state
        .set_stream_state(stream, &StreamState::Snapshotting { rows: 0 })
        .await?;
    match mode {
        Mode::Full => {
            // A finished load starts over; an interrupted one resumes.
            let from =
                checkpoint.filter(|c| matches!(c.phase, siphon_core::Phase::Snapshot { .. }));
            snapshot::run(&run, from, None, stats).await?;
        }
        Mode::Incremental => {
            let column = config.cursor.or_else(|| spec.cursor.clone()).ok_or_else(|| {
                Error::config(format!(
                    "incremental mode needs a cursor column: set `cursor` on pipeline {pipeline} or in its \
                     tables_config for this table"
                ))
                .table(&run.source_table.name)
            })?;
            let cursor = CursorSpec {
                column,
                strategy: config.strategy.unwrap_or(spec.strategy),
                lookback: config.lookback.or(spec.lookback),
            };
            let deletes = config.delete_detection.unwrap_or(spec.delete_detection);
            state
                .set_stream_state(stream, &StreamState::Streaming)
                .await?;
            incremental::run(&run, &cursor, deletes, checkpoint, stats).await?;
        }
        Mode::Cdc | Mode::Merge => {
            return Err(Error::config(format!(
                "mode `{mode}` is not available for this source yet; use `full` or `incremental`"
            ))
            .table(&run.source_table.name));
        }
    }
    if force {
        state.clear_flag(stream, Flag::ForceFullLoad).await?;
    }
    Ok(())
}

/// Adds the table name to an error that lacks one.
fn named(e: Error, table: &TableSchema) -> Error {
    if e.table_name().is_some() {
        e
    } else {
        e.table(&table.name)
    }
}
