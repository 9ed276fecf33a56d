//! One pass of a pipeline over its tables, recorded as an execution.

use std::sync::Arc;

use chrono::Utc;
use siphon_core::{
    CursorSpec, Error, ErrorKind, ExecutionStatus, Flag, LogSource, Mode, NewTables, Phase,
    PipelineSpec, Result, Sink, Source, StateStore, StreamId, StreamState, TableName, TableSchema,
    TableStats,
};

use crate::cdc::LogSession;
use crate::snapshot::TableRun;
use crate::{cdc, full, incremental, row_count, snapshot, Observer, Shutdown};

mod tables;
mod vanished;

/// [`PassReport::execution`] of a following pass that had nothing to run (every
/// `full` table holds its copy, and no other table is selected): no execution
/// is recorded for it.
pub const NO_EXECUTION: u64 = 0;

/// What a pass did.
#[derive(Debug, Clone)]
pub struct PassReport {
    /// The execution recorded in the state store, or [`NO_EXECUTION`].
    pub execution: u64,
    pub status: ExecutionStatus,
    /// One entry per table that ran (paused tables are left out).
    pub tables: Vec<TableStats>,
    /// `cdc`: the bytes of log the source keeps for the pipeline after the pass.
    pub retained_log_bytes: Option<u64>,
}

impl PassReport {
    /// Whether any table read a row.
    pub fn found_work(&self) -> bool {
        self.tables.iter().any(|t| t.rows_read > 0 || t.deleted > 0)
    }
}

/// Runs every enabled table of a pipeline once: `full` tables are copied,
/// `incremental` tables polled until the source has nothing newer,
/// `row_count` tables copied again when their row counts differ. A table that
/// fails is recorded as failed and the others go on. Errors returned are the
/// pipeline's own (discovery, state store); table errors are in the report.
/// `cdc` tables fail here, since this source has no log: use [`run_log_pass`]
/// with a source that has one.
pub async fn run_pass<S: Source, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) -> Result<PassReport> {
    let (mut report, cdc, _, _) = run_tables(
        pipeline, spec, source, sink, state, observer, shutdown, true,
    )
    .await?;
    let mut outcome = Vec::new();
    for table in cdc {
        let stream = StreamId::new(pipeline, &table.name);
        let mut stats = TableStats::starting(&table.name, Mode::Cdc);
        stats.finished_at = Some(Utc::now());
        let e = Error::config(
            "mode `cdc` needs a source with a change log (PostgreSQL, MySQL, MariaDB); use `full`, `incremental` or `row_count` for this source",
        )
        .table(&table.name);
        outcome.push((stream, stats, Some(e)));
    }
    record(state, observer, &mut report, outcome).await?;
    if report.execution != NO_EXECUTION {
        // A pass that ran nothing (a continuous run's idle pass) changed
        // nothing that follows the data.
        finish_tables(pipeline, spec, sink).await;
    }
    let report = finish(state, report).await?;
    crate::history::prune(pipeline, spec, state).await;
    Ok(report)
}

/// Like [`run_pass`], and `cdc` tables read the source's change log: the
/// pipeline's log is prepared, tables without a checkpoint are snapshotted, then
/// the log is streamed until every transaction the source had committed when
/// the snapshots ended is applied on the target (see the `cdc` driver).
pub async fn run_log_pass<S: LogSource, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) -> Result<PassReport> {
    let mut session = LogSession::once();
    let report = follow_log_pass(
        pipeline,
        spec,
        source,
        sink,
        state,
        observer,
        shutdown,
        &mut session,
    )
    .await;
    session.close().await?;
    report
}

/// Like [`run_log_pass`], reading the log as `session` says: with
/// [`LogSession::follow`], the `cdc` tables stream for the session's window (or
/// until shutdown, which ends the pass without error) and the stream stays open
/// in `session` for the next pass, which must use the same source and sink;
/// and `full` tables are copied only when they have no complete copy (none
/// yet, or an interrupted one) or a reload was forced, so a continuous run
/// copies each once instead of reloading it pass after pass.
/// Close the session when done.
#[allow(clippy::too_many_arguments)]
pub async fn follow_log_pass<S: LogSource, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    session: &mut LogSession<S::Stream>,
) -> Result<PassReport> {
    let (mut report, tables, left_out, discovered) = run_tables(
        pipeline,
        spec,
        source,
        sink,
        state,
        observer,
        shutdown,
        session.reloads_full(),
    )
    .await?;
    // Tables the source no longer has lose their place in the log. A stream
    // kept open from the last pass carries them up to their drop.
    let gone = vanished::find(pipeline, spec, &discovered, sink, state).await?;
    if !gone.is_empty() {
        let carried = session.is_open() && !tables.is_empty();
        let outcome = vanished::forget(pipeline, gone, carried, sink).await;
        if !outcome.is_empty() && report.execution == NO_EXECUTION {
            report.execution = state.start_execution(pipeline).await?;
        }
        record(state, observer, &mut report, outcome).await?;
    }
    if tables.is_empty() {
        // No cdc table left: nothing may hold the log open.
        session.close().await?;
    } else {
        let window = session.window(!report.tables.is_empty());
        let outcome = cdc::run(
            pipeline,
            spec,
            tables,
            source,
            sink,
            state,
            observer,
            shutdown,
            report.execution,
            session,
            window,
            left_out,
        )
        .await?;
        let streaming: Vec<StreamId> = outcome
            .iter()
            .filter(|(_, _, e)| e.is_none())
            .map(|(s, _, _)| s.clone())
            .collect();
        record(state, observer, &mut report, outcome).await?;
        if session.is_open() {
            // Their stream goes on between passes (a table copied while the
            // log streams is loading until its copy is complete).
            for stream in &streaming {
                let now = match session.copying(stream) {
                    Some(rows) => StreamState::Snapshotting { rows },
                    None => StreamState::Streaming,
                };
                state.set_stream_state(stream, &now).await?;
            }
        }
        match source.retained_log(pipeline).await {
            Ok(Some(bytes)) => {
                report.retained_log_bytes = Some(bytes);
                state.record_retained_log(report.execution, bytes).await?;
                crate::telemetry::retained_log(pipeline, bytes);
                let limit = spec.retained_log_warning;
                if bytes > limit.0 {
                    tracing::warn!(
                        pipeline,
                        retained_bytes = bytes,
                        retained_log_warning = %limit,
                        "the source keeps more log for this pipeline than `retained_log_warning`: \
                         make sure the pipeline runs often and its target keeps up, or drop its log"
                    );
                } else {
                    tracing::debug!(
                        pipeline,
                        retained_bytes = bytes,
                        "log retained at the source"
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pipeline, error = %e, "could not read how much log the source keeps")
            }
        }
    }
    if report.execution != NO_EXECUTION {
        // A pass that ran nothing (a continuous run's idle pass) changed
        // nothing that follows the data.
        finish_tables(pipeline, spec, sink).await;
    }
    let report = finish(state, report).await?;
    crate::history::prune(pipeline, spec, state).await;
    Ok(report)
}

/// Records the outcome of tables run together.
async fn record<St: StateStore>(
    state: &St,
    observer: &dyn Observer,
    report: &mut PassReport,
    outcome: cdc::Outcome,
) -> Result<()> {
    for (stream, mut stats, error) in outcome {
        match error {
            None => {
                stats.status = ExecutionStatus::Succeeded;
                state.set_stream_state(&stream, &StreamState::Idle).await?;
            }
            Some(e) if e.kind() == ErrorKind::Cancelled => {
                tracing::info!(stream = %stream, rows = stats.rows_read, "stopped on request");
                stats.status = ExecutionStatus::Stopped;
                stats.error = Some(e.to_string());
                if report.status == ExecutionStatus::Succeeded {
                    report.status = ExecutionStatus::Stopped;
                }
                // The stream state stays where the stop left it (a load's
                // `snapshotting (N rows)`), which a resumed load starts from.
            }
            Some(e) => {
                // The caller reports it (the run's summary), once.
                tracing::debug!(stream = %stream, error = %e, "table stream failed");
                stats.status = ExecutionStatus::Failed;
                stats.error = Some(e.to_string());
                report.status = ExecutionStatus::Failed;
                // Its kind says whether the next pass retries it, and when.
                let failed = crate::retry::failed(&stream, &e, Utc::now());
                state.set_stream_state(&stream, &failed).await?;
                crate::telemetry::table_failed(&stream, e.kind());
            }
        }
        state.record_table(report.execution, &stats).await?;
        observer.table_finished(&stream, &stats);
        report.tables.push(stats);
    }
    Ok(())
}

/// Lets the sink create what follows the data (foreign keys, views, sequence
/// positions) once the pass's tables are loaded.
async fn finish_tables<K: Sink>(pipeline: &str, spec: &PipelineSpec, sink: &K) {
    if let Err(e) = sink.finish_tables(&spec.schema).await {
        tracing::warn!(pipeline, error = %e, "could not finish the target's tables");
    }
}

async fn finish<St: StateStore>(state: &St, report: PassReport) -> Result<PassReport> {
    if report.execution == NO_EXECUTION {
        return Ok(report);
    }
    let failed = report
        .tables
        .iter()
        .filter(|t| t.status == ExecutionStatus::Failed)
        .count();
    let error = (failed > 0).then(|| format!("{failed} of {} tables failed", report.tables.len()));
    if report.status == ExecutionStatus::Stopped {
        tracing::info!(execution = report.execution, "the pass stopped on request");
    }
    state
        .finish_execution(report.execution, report.status, error.as_deref())
        .await?;
    Ok(report)
}

/// Runs the pipeline's `full`, `incremental` and `row_count` tables; returns the report so
/// far, the enabled `cdc` tables, which share one log and run together, and
/// the tables left out whose switches a following `cdc` pass watches, and
/// the names of every table discovery found.
/// Without `reload_full`, a `full` table that holds a complete copy is left
/// alone (and out of the report) unless a reload was forced.
#[allow(clippy::too_many_arguments)]
async fn run_tables<S: Source, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    reload_full: bool,
) -> Result<(PassReport, Vec<TableSchema>, cdc::LeftOut, Vec<TableName>)> {
    crate::check_target(spec, &sink.capabilities())?;
    let tables = match source.discover(&spec.filter()).await {
        Ok(t) => t,
        Err(e) => {
            let execution = state.start_execution(pipeline).await?;
            state
                .finish_execution(execution, ExecutionStatus::Failed, Some(&e.to_string()))
                .await?;
            return Err(e);
        }
    };
    if tables.is_empty() {
        tracing::warn!(pipeline, include = ?spec.tables, "no source table matches the pipeline's `tables`");
    }
    let discovered: Vec<TableName> = tables.iter().map(|t| t.name.clone()).collect();
    let mut to_run = Vec::new();
    let mut cdc_tables = Vec::new();
    // Tables this pass leaves alone are prepared again on the schema check's
    // schedule, so their target follows the source's schema.
    let checking = crate::schema_check::take_due(
        pipeline,
        spec.schema_check_interval,
        std::time::Instant::now(),
    );
    let mut idle = Vec::new();
    let mut left_out = cdc::LeftOut::default();
    let retries = crate::retry::Retries::load(pipeline, spec, state, Utc::now()).await?;
    for table in tables {
        let stream = StreamId::new(pipeline, &table.name);
        let enabled = match state.flag(&stream, Flag::Enabled).await? {
            Some(v) => v,
            None => spec.new_tables == NewTables::Enabled,
        };
        let mode = spec.table_config(&table.name).mode.unwrap_or(spec.mode);
        if !enabled {
            if mode == Mode::Cdc {
                // The pipeline's log goes on without it: once enabled again it
                // starts with a fresh copy.
                if let Err(e) = sink.reset(&stream).await {
                    tracing::warn!(%stream, error = %e, "could not reset the checkpoint of a paused table");
                }
            }
            state
                .set_stream_state(&stream, &StreamState::Paused)
                .await?;
            left_out.paused.push(stream);
            continue;
        }
        if retries.holds(&stream, mode) {
            // Failed, and not yet due for a retry: it stays `failed` with its
            // next retry, and the others go on.
            continue;
        }
        if mode == Mode::Cdc {
            cdc_tables.push(table);
            continue;
        }
        if mode == Mode::Full && !reload_full && !full_copy_due(sink, state, &stream).await {
            left_out.copied.push(stream);
            if checking {
                idle.push(table);
            }
            continue;
        }
        to_run.push((stream, table, mode));
    }
    // A check runs what follows the data too (views, routines), so it counts
    // as work.
    let idle_checked = !idle.is_empty();
    let checked = crate::schema_check::check_tables(pipeline, spec, sink, state, idle).await?;
    // A following pass with nothing to do leaves no empty execution behind.
    let execution = if to_run.is_empty() && cdc_tables.is_empty() && !idle_checked && !reload_full {
        NO_EXECUTION
    } else {
        state.start_execution(pipeline).await?
    };
    let mut report = PassReport {
        execution,
        status: ExecutionStatus::Succeeded,
        tables: Vec::new(),
        retained_log_bytes: None,
    };
    record(state, observer, &mut report, checked).await?;
    tables::run(
        pipeline,
        spec,
        to_run,
        source,
        sink,
        state,
        observer,
        shutdown,
        &mut report,
    )
    .await?;
    Ok((report, cdc_tables, left_out, discovered))
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
    // A full load copies a table without a key too (by the source's physical
    // order); polling needs a key to resume between rows that share a cursor.
    let copies_whole = matches!(mode, Mode::Full | Mode::RowCount);
    // A table the source cannot read is refused before its target is touched.
    source
        .check_table(&table)
        .await
        .map_err(|e| named(e, &table))?;
    if !copies_whole && table.row_key().is_none() {
        // The modes that copy a table whole need no key: name them as the
        // other fix, beside adding one.
        return Err(Error::bad_input(format!(
            "the table has no primary key, and `{mode}` mode reads and writes rows by key: add a \
             PRIMARY KEY (or a UNIQUE NOT NULL column), or give the table `mode: full` or \
             `mode: row_count` in `tables_config`"
        ))
        .table(&table.name));
    }
    let mut target = table.clone();
    if let Some(schema) = &spec.target_schema {
        target.name.schema = Some(schema.clone());
    }
    sink.prepare(&target, &spec.schema)
        .await
        .map_err(|e| named(e, &table))?;

    // Read, not taken: the flag stays set until the reload has committed, so
    // a reload cut short (a failure, a stop, a crash) is made again, from the
    // start, by the next run. A reload asked for again while this one runs is
    // answered by this one.
    let force = state.flag(stream, Flag::ForceFullLoad).await? == Some(true);
    let ran: Result<()> = async {
        if force {
            tracing::info!(%stream, "forced full load");
            if !copies_whole {
                // A full load starts over by itself, and needs to know whether the
                // target holds a complete copy (to swap the new one in).
                sink.reset(stream).await?;
            }
            state.remove_checkpoint(stream).await?;
        }
        let checkpoint = sink.checkpoint(stream).await?;
        let parallel = spec.parallel(&table.name);
        let run = TableRun {
            stream: stream.clone(),
            source_table: Arc::new(table),
            target_table: Arc::new(target),
            source,
            sink,
            state,
            batch_size: config.batch_size.unwrap_or(spec.batch_size).max(1),
            parallel,
            observer,
            shutdown,
        };
        if mode != Mode::RowCount {
            // A row_count table is loading only once its counts differ.
            snapshot::mark_loading(state, stream).await?;
        }
        match mode {
            Mode::Full => {
                let strategy = spec.full_strategy(&run.source_table.name);
                full::run(&run, checkpoint, force, strategy, stats).await?;
            }
            Mode::RowCount => {
                let strategy = spec.full_strategy(&run.source_table.name);
                row_count::run(&run, checkpoint, force, strategy, stats).await?;
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
                    strategy: spec.cursor_strategy(&run.source_table.name),
                    lookback: config.lookback.or(spec.lookback),
                };
                let deletes = config.delete_detection.unwrap_or(spec.delete_detection);
                state
                    .set_stream_state(stream, &StreamState::Streaming)
                    .await?;
                incremental::run(&run, &cursor, deletes, checkpoint, stats).await?;
            }
            Mode::Cdc | Mode::Merge => {
                // cdc tables run together in `run_log_pass`; merge is not built yet.
                return Err(Error::config(format!(
                    "mode `{mode}` is not available for this source yet; use `full`, `incremental` or `row_count`"
                ))
                .table(&run.source_table.name));
            }
        }
        Ok(())
    }
    .await;
    if force && ran.is_ok() {
        // The reload committed: only now is the request answered. Should this
        // fail, the next run reloads the table once more, which is harmless.
        if let Err(e) = state.take_flag(stream, Flag::ForceFullLoad).await {
            tracing::warn!(%stream, error = %e, "could not clear the forced reload that completed; the next run reloads the table again");
        }
    }
    ran
}

/// Whether a continuous run copies a `full` table now: when it has no complete
/// copy (never copied, or a copy was interrupted) or a reload was forced. When
/// that cannot be read, the table runs, and its error is reported there.
async fn full_copy_due<K: Sink, St: StateStore>(sink: &K, state: &St, stream: &StreamId) -> bool {
    if let Ok(Some(true)) = state.flag(stream, Flag::ForceFullLoad).await {
        return true;
    }
    match sink.checkpoint(stream).await {
        Ok(Some(cp)) if matches!(cp.phase, Phase::Streaming { .. }) => {
            tracing::debug!(%stream, "holds a complete copy: not copied again until `siphon sync resync`");
            false
        }
        _ => true,
    }
}

/// Adds the table name to an error that lacks one.
fn named(e: Error, table: &TableSchema) -> Error {
    if e.table_name().is_some() {
        e
    } else {
        e.table(&table.name)
    }
}
