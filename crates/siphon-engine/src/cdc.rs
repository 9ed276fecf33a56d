//! Log-based change data capture: one log per pipeline, shared by its `cdc`
//! tables. Tables that need it are snapshotted first, then the log is replayed
//! from the pipeline's checkpoint, one target transaction per batch of whole
//! source transactions, and the source is told only what the target committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use siphon_core::{
    retry_policy, Action, Batch, Change, ChangeStream, Checkpoint, Error, ErrorKind, Flag,
    LogSource, Mode, Op, Phase, PipelineSpec, Position, Result, Retry, Sink, StateStore, StreamId,
    StreamState, TableName, TableSchema, TableStats, Watermark,
};

use crate::snapshot::{self, TableRun};
use crate::{Observer, Shutdown};

mod backfill;
mod drain;
mod exact;
mod isolate;
mod resume;
mod switches;
mod within;

pub(crate) use switches::LeftOut;
use within::Within;

/// How often a dropped replication connection is reopened within one pass.
const RECONNECTS: u32 = 5;

/// The stream that holds a pipeline's log checkpoint (table name `*`), written
/// by the sink in the same transaction as each batch of changes.
pub fn log_stream(pipeline: &str) -> StreamId {
    StreamId::new(pipeline, &TableName::new(None, "*"))
}

/// How the passes of a pipeline read its change log, and copy its `full` tables.
///
/// [`LogSession::once`] streams until the source's position at the start of the
/// pass and closes the stream (`run --once`, timed schedules); each pass copies
/// the `full` tables.
/// [`LogSession::follow`] streams without an end point for up to `window` per
/// pass and keeps the stream open between passes, so a continuous schedule
/// never stops reading the log: a change reaches the target as soon as its
/// transaction commits. Its passes copy a `full` table only when it has no
/// complete copy or a reload was forced.
#[derive(Debug)]
pub struct LogSession<C> {
    window: Option<Duration>,
    open: Option<OpenLog<C>>,
    /// Tables stopped by an error the target gave, with it: later passes of the
    /// session leave them out, so the log goes on for the others, until a
    /// reload is forced (`sync resync`) or siphon starts again.
    stopped: HashMap<TableName, (ErrorKind, String)>,
    /// Tables copied between watermarks while the log streams.
    backfill: backfill::Backfill,
}

impl<C> LogSession<C> {
    /// The rows copied so far of a table stream being copied while the log
    /// streams (it is `snapshotting` until its copy is complete), or `None`.
    pub(crate) fn copying(&self, stream: &StreamId) -> Option<u64> {
        self.backfill.copied(stream)
    }

    /// Whether each pass copies the `full` tables again (not when following).
    pub fn reloads_full(&self) -> bool {
        self.window.is_none()
    }
}

/// The longest a following pass streams when the pipeline has `full` or
/// `incremental` tables too.
const POLL_WINDOW: Duration = Duration::from_secs(1);

/// A stream kept open between passes, with what it was opened for.
#[derive(Debug)]
struct OpenLog<C> {
    stream: C,
    /// Where the stream is: the last committed batch's position.
    position: Position,
    /// How far into a transaction split over batches the target is.
    within: Option<Within>,
    /// The tables it carries, sorted.
    tables: Vec<TableName>,
    /// Each table it carries: its stream, source and target schemas.
    carried: Vec<(StreamId, Arc<TableSchema>, Arc<TableSchema>)>,
}

impl<C: ChangeStream> LogSession<C> {
    /// How long a pass streams: the session's window, cut to
    /// [`POLL_WINDOW`] when the pass also polls other tables, so that they are
    /// polled about as often as in a pass without a log.
    pub(crate) fn window(&self, polls_others: bool) -> Option<Duration> {
        self.window
            .map(|w| if polls_others { w.min(POLL_WINDOW) } else { w })
    }

    /// Each pass catches up with the source's position at its start, then ends.
    pub fn once() -> Self {
        LogSession {
            window: None,
            open: None,
            stopped: HashMap::new(),
            backfill: backfill::Backfill::new(),
        }
    }

    /// Each pass streams for `window`, and the stream stays open between passes.
    pub fn follow(window: Duration) -> Self {
        LogSession {
            window: Some(window),
            open: None,
            stopped: HashMap::new(),
            backfill: backfill::Backfill::new(),
        }
    }

    /// Whether a stream is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Closes the open stream, if any, telling the source the last position the
    /// target committed.
    pub async fn close(&mut self) -> Result<()> {
        match self.open.take() {
            Some(open) => open.stream.close().await,
            None => Ok(()),
        }
    }
}

/// Drops a pipeline's log reader at the source (PostgreSQL: its replication slot
/// and publication) and forgets its log checkpoint on the target, so a later run
/// starts again with snapshots.
pub async fn drop_log<S: LogSource, K: Sink>(pipeline: &str, source: &S, sink: &K) -> Result<()> {
    source.drop_log(pipeline).await?;
    sink.reset(&log_stream(pipeline)).await
}

/// One cdc table of a pass.
struct Table {
    stream: StreamId,
    source: Arc<TableSchema>,
    target: Arc<TableSchema>,
    stats: TableStats,
    error: Option<Error>,
    /// Stopped while streaming, by an error only this table had.
    stopped: bool,
    /// For a table without a key: the position of the snapshot its copy was
    /// read in, whose transactions the stream skips for it (no upsert could
    /// absorb them), until the first one the snapshot does not hold.
    skip: Option<Position>,
}

/// What a cdc pass did to each table: its stats, and its error if it failed.
pub(crate) type Outcome = Vec<(StreamId, TableStats, Option<Error>)>;

/// Runs the `cdc` tables of a pipeline once: prepares the log, snapshots the
/// tables that have no checkpoint (or a forced reload), then streams until every
/// transaction the source had committed when the snapshots ended is applied.
/// Each table's outcome is returned; only state store errors are returned as errors.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<S: LogSource, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    schemas: Vec<TableSchema>,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    execution: u64,
    session: &mut LogSession<S::Stream>,
    window: Option<Duration>,
    left_out: LeftOut,
) -> Result<Outcome> {
    let mut tables = Vec::new();
    for schema in schemas {
        let stream = StreamId::new(pipeline, &schema.name);
        let stats = TableStats::starting(&schema.name, Mode::Cdc);
        state.record_table(execution, &stats).await?;
        let mut target = schema.clone();
        if let Some(s) = &spec.target_schema {
            target.name.schema = Some(s.clone());
        }
        let mut t = Table {
            stream,
            source: Arc::new(schema),
            target: Arc::new(target),
            stats,
            error: None,
            stopped: false,
            skip: None,
        };
        if let Some(why) = session.stopped.get(&t.source.name) {
            if state.flag(&t.stream, Flag::ForceFullLoad).await? == Some(true) {
                session.stopped.remove(&t.source.name);
            } else {
                t.error = Some(Error::new(why.0, why.1.clone()));
                tables.push(t);
                continue;
            }
        }
        if let Err(e) = check(&t, source, sink, spec).await {
            // The log goes on without it: its next run starts with a fresh copy.
            if let Err(r) = sink.reset(&t.stream).await {
                tracing::warn!(stream = %t.stream, error = %r, "could not reset the checkpoint");
            }
            t.error = Some(e);
        }
        tables.push(t);
    }
    if let Err(e) = stream_tables(
        pipeline,
        spec,
        &mut tables,
        source,
        sink,
        state,
        observer,
        shutdown,
        session,
        window,
        left_out,
    )
    .await
    {
        for t in tables.iter_mut().filter(|t| t.error.is_none()) {
            t.error = Some(e.clone());
        }
    }
    for t in tables.iter().filter(|t| t.stopped) {
        if let Some(e) = &t.error {
            session
                .stopped
                .insert(t.source.name.clone(), (e.kind(), e.to_string()));
        }
    }
    Ok(tables
        .into_iter()
        .map(|mut t| {
            t.stats.finished_at = Some(Utc::now());
            (t.stream, t.stats, t.error)
        })
        .collect())
}

/// Checks one table before the log is prepared: a key, a log that can carry it,
/// and a target that takes it.
async fn check<S: LogSource, K: Sink>(
    t: &Table,
    source: &S,
    sink: &K,
    spec: &PipelineSpec,
) -> Result<()> {
    source
        .check_log_table(&t.source)
        .await
        .map_err(|e| named(e, &t.source))?;
    crate::evolve::prepare(source, sink, &t.source, &t.target, &spec.schema)
        .await
        .map_err(|e| named(e, &t.source))
}

/// Clears the forced-reload flag of a table whose copy for it is complete
/// and committed. Should that fail, the table is copied once more.
async fn reloaded<St: StateStore>(state: &St, stream: &StreamId) {
    if let Err(e) = state.take_flag(stream, Flag::ForceFullLoad).await {
        tracing::warn!(%stream, error = %e, "could not clear the forced reload that completed; the table is copied again");
    }
}

fn named(e: Error, table: &TableSchema) -> Error {
    if e.table_name().is_some() {
        e
    } else {
        e.table(&table.name)
    }
}

#[allow(clippy::too_many_arguments)]
async fn stream_tables<S: LogSource, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    tables: &mut [Table],
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    session: &mut LogSession<S::Stream>,
    window: Option<Duration>,
    left_out: LeftOut,
) -> Result<()> {
    // A stream left open by the last pass goes on only for the same tables.
    // For others, it first applies what the log holds up to now for the
    // tables it carries (those dropped at the source too), then it is closed
    // before the log is changed.
    let mut kept = session.open.take();
    if kept
        .as_ref()
        .is_some_and(|o| o.tables != streaming_names(tables))
    {
        if let Some(o) = kept.take() {
            catch_up(
                source, pipeline, spec, o, tables, sink, state, observer, shutdown,
            )
            .await;
        }
    }
    let ok: Vec<TableSchema> = tables
        .iter()
        .filter(|t| t.error.is_none())
        .map(|t| (*t.source).clone())
        .collect();
    if ok.is_empty() {
        return Ok(());
    }
    let slot_start = source.prepare_log(pipeline, &ok).await?;
    let log = log_stream(pipeline);
    // The checkpoint of a batch that ended inside a transaction also says
    // how far into it the target is: the log is read from the source's own
    // position, and the changes of that transaction the target holds are
    // dropped when the log replays them.
    let (from, from_within) = match sink.checkpoint(&log).await?.map(|c| c.phase) {
        Some(Phase::Streaming { position: Some(p) }) => {
            let (p, w) = within::unwrap(p);
            (Some(p), w)
        }
        _ => (None, None),
    };
    // Whether each table can go on from the checkpoint is the source's to
    // say; one that cannot stops or is copied again, the others go on.
    let reloading = session.backfill.reloading();
    let (start, mut plans) = resume::plan(
        pipeline,
        spec,
        tables,
        &reloading,
        from.as_ref(),
        &slot_start,
        source,
        sink,
        state,
    )
    .await?;

    // Snapshots, one table after another, before any change is streamed: a
    // table never receives changes before its copy is complete.
    for (i, t) in tables.iter_mut().enumerate() {
        let Some(planned) = plans.remove(&i).filter(|_| t.error.is_none()) else {
            continue;
        };
        // Added to a log that streams already: copied while the log goes on.
        let on_log = window.is_some() && from.as_ref() == Some(&start);
        let adopted = session
            .backfill
            .adopt(
                t, spec, planned, &start, on_log, source, sink, state, observer,
            )
            .await;
        let copied = match adopted {
            Ok(Some(planned)) => {
                let forced = planned.forced;
                let copied = snapshot_table(
                    t, spec, planned, &start, source, sink, state, observer, shutdown,
                )
                .await;
                if forced && copied.is_ok() {
                    reloaded(state, &t.stream).await;
                }
                copied
            }
            other => other.map(|_| ()),
        };
        if let Err(e) = copied {
            // A copy cut short by a stop request keeps its checkpoint, so the
            // next run resumes it: nothing streams after a stop (the drain
            // below ends before reading, as nothing was read ahead), so the
            // log's checkpoint stays at `start`, the position the copy was
            // made against. After any other failure its changes are skipped
            // from here on while the others stream: its next run starts afresh.
            if e.kind() != ErrorKind::Cancelled {
                if let Err(r) = sink.reset(&t.stream).await {
                    tracing::warn!(stream = %t.stream, error = %r, "could not reset the checkpoint");
                }
            }
            t.error = Some(e);
        }
    }
    if tables.iter().all(|t| t.error.is_some()) {
        return Ok(());
    }

    // A pass that follows the log has no end point.
    let until = match window {
        Some(_) => None,
        None => Some(source.log_head().await?),
    };
    let deadline = window.map(|w| std::time::Instant::now() + w);
    let moved = from.as_ref() != Some(&start);
    let mut position = start;
    // Read from elsewhere than the checkpoint, the log does not replay the
    // transaction it was inside of as it was.
    let mut within = if moved { None } else { from_within };
    // The kept stream must stand where the target's checkpoint does.
    let mut kept = kept
        .filter(|o| o.position == position && o.within == within)
        .map(|o| o.stream);
    if moved {
        // The tables' copies hold everything before the log's start: record it,
        // so the next pass resumes the log instead of copying again.
        let cp = Checkpoint {
            stream: log.clone(),
            epoch: 0,
            phase: Phase::Streaming {
                position: Some(position.clone()),
            },
        };
        sink.apply(Batch::default(), &cp).await?;
    }
    let mut routes: HashMap<TableName, usize> = HashMap::new();
    for (i, t) in tables.iter().enumerate() {
        if t.error.is_none() {
            routes.insert(t.source.name.clone(), i);
            if session.backfill.copied(&t.stream).is_none() {
                state
                    .set_stream_state(&t.stream, &StreamState::Streaming)
                    .await?;
            }
        }
    }
    let batch_size = spec.batch_size.max(1);
    // Following the log, the window ends early when an operator's switch
    // changed, so that the next pass applies it at once.
    let mut watch = window.map(|_| switches::Watch::new(spec.new_tables, left_out));
    let mut attempts = 0;
    loop {
        let open: Vec<Arc<TableSchema>> =
            routes.values().map(|&i| tables[i].source.clone()).collect();
        let reused = kept.take();
        let mut stream = match reused {
            Some(s) => s,
            None => match source.stream(pipeline, &open, &position).await {
                Ok(s) => {
                    session.backfill.reopened(&routes);
                    s
                }
                Err(e) if e.action() == Action::RetrySoon && attempts < RECONNECTS => {
                    attempts += 1;
                    backoff(pipeline, attempts, &e).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        // Reconnects count anew once the stream made progress: separate
        // outages of a long pass do not add up to a failed pass.
        let read_from = position.clone();
        let r = drain::drain(
            source,
            pipeline,
            spec,
            tables,
            &mut routes,
            &mut stream,
            until.as_ref(),
            deadline,
            batch_size,
            &mut position,
            &mut within,
            sink,
            state,
            observer,
            shutdown,
            Some(&mut session.backfill),
            watch.as_mut(),
        )
        .await;
        match r {
            // A table stopped: the others read the log on from the last
            // committed batch, without it.
            Ok(Drained::Reopen) => {
                if let Err(e) = stream.close().await {
                    tracing::debug!(pipeline, error = %e, "closing the change stream failed");
                }
                if routes.is_empty() {
                    break;
                }
            }
            Ok(Drained::Done) if window.is_some() && !shutdown.requested() => {
                let carried = routes
                    .values()
                    .map(|&i| {
                        let t = &tables[i];
                        (t.stream.clone(), t.source.clone(), t.target.clone())
                    })
                    .collect();
                session.open = Some(OpenLog {
                    stream,
                    position,
                    within,
                    tables: streaming_names(tables),
                    carried,
                });
                break;
            }
            Ok(Drained::Done) => {
                stream.close().await?;
                break;
            }
            Err(e)
                if e.action() == Action::RetrySoon
                    && (attempts < RECONNECTS || position != read_from) =>
            {
                drop(stream);
                if position != read_from {
                    attempts = 0;
                }
                attempts += 1;
                backoff(pipeline, attempts, &e).await;
            }
            Err(e) => {
                drop(stream);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The tables of a pass that stream, sorted.
fn streaming_names(tables: &[Table]) -> Vec<TableName> {
    let mut names: Vec<TableName> = tables
        .iter()
        .filter(|t| t.error.is_none())
        .map(|t| t.source.name.clone())
        .collect();
    names.sort();
    names
}

/// Applies what the log of a kept stream holds up to the source's position
/// now, for every table it carries, then closes it: a table dropped at the
/// source (or renamed) thus gets every change committed before the drop, and
/// is no longer streamed. A failure is logged; the pass goes on from the
/// target's checkpoint.
#[allow(clippy::too_many_arguments)]
async fn catch_up<S: LogSource, K: Sink, St: StateStore>(
    source: &S,
    pipeline: &str,
    spec: &PipelineSpec,
    open: OpenLog<S::Stream>,
    current: &mut [Table],
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) {
    let mut carried: Vec<Table> = open
        .carried
        .into_iter()
        .map(|(stream, source, target)| Table {
            stats: TableStats::starting(&source.name, Mode::Cdc),
            stream,
            source,
            target,
            error: None,
            stopped: false,
            skip: None,
        })
        .collect();
    let mut routes: HashMap<TableName, usize> = carried
        .iter()
        .enumerate()
        .map(|(i, t)| (t.source.name.clone(), i))
        .collect();
    let (mut stream, mut position, mut within) = (open.stream, open.position, open.within);
    let result: Result<()> = async {
        let until = source.log_head().await?;
        let batch_size = spec.batch_size.max(1);
        loop {
            let r = drain::drain(
                source,
                pipeline,
                spec,
                &mut carried,
                &mut routes,
                &mut stream,
                Some(&until),
                None,
                batch_size,
                &mut position,
                &mut within,
                sink,
                state,
                observer,
                shutdown,
                None,
                None,
            )
            .await?;
            stream.close().await?;
            match r {
                Drained::Done => return Ok(()),
                Drained::Reopen if routes.is_empty() => return Ok(()),
                Drained::Reopen => {
                    let open: Vec<Arc<TableSchema>> = routes
                        .values()
                        .map(|&i| carried[i].source.clone())
                        .collect();
                    stream = source.stream(pipeline, &open, &position).await?;
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(pipeline, error = %e, "applying the log before the tables changed failed; the pass goes on from the target's checkpoint");
    }
    for t in carried {
        match current.iter_mut().find(|c| c.source.name == t.source.name) {
            Some(c) => {
                c.stats.rows_read += t.stats.rows_read;
                c.stats.bytes += t.stats.bytes;
                c.stats.inserted += t.stats.inserted;
                c.stats.updated += t.stats.updated;
                c.stats.deleted += t.stats.deleted;
                c.stats.replaced += t.stats.replaced;
                if t.stopped && c.error.is_none() {
                    c.error = t.error;
                    c.stopped = true;
                }
            }
            None => tracing::warn!(
                pipeline,
                table = %t.source.name,
                "table {} was dropped at the source (or renamed there): every change \
                 committed before that is applied; it is no longer streamed, and its copy \
                 on the target stays",
                t.source.name
            ),
        }
    }
}

/// How a drain of the log ended.
enum Drained {
    /// Caught up, at its deadline, or stopped on request.
    Done,
    /// A table stopped: read the log again from the last committed batch
    /// without it.
    Reopen,
}

/// Waits as the retry policy says before attempt `attempt` after `e`.
async fn backoff(pipeline: &str, attempt: u32, e: &Error) {
    let Retry::After(wait) = retry_policy(e.kind(), attempt) else {
        return;
    };
    tracing::warn!(pipeline, attempt, error = %e, ?wait, "the change stream failed; reconnecting");
    tokio::time::sleep(wait).await;
}

/// Copies a table as its plan says (nothing for one that streams on), so
/// that it streams from `resume` on.
#[allow(clippy::too_many_arguments)]
async fn snapshot_table<S: LogSource, K: Sink, St: StateStore>(
    t: &mut Table,
    spec: &PipelineSpec,
    planned: resume::Planned,
    resume: &Position,
    source: &S,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) -> Result<()> {
    if t.source.row_key().is_none() {
        let (streamed, checkpoint) = match planned.plan {
            resume::Plan::Stream(c) => (true, Some(c)),
            resume::Plan::Resume(c) => (false, Some(c)),
            resume::Plan::Copy => (false, None),
        };
        let run = exact::Run {
            spec,
            source,
            sink,
            state,
            observer,
            shutdown,
        };
        exact::snapshot(t, &run, streamed, checkpoint).await?;
        if !streamed {
            observer.copy_finished(&t.stream);
        }
        return Ok(());
    }
    let resume_from = match planned.plan {
        resume::Plan::Stream(_) => return Ok(()),
        resume::Plan::Resume(c) => Some(c),
        resume::Plan::Copy => None,
    };
    snapshot::mark_loading(state, &t.stream).await?;
    let config = spec.table_config(&t.source.name);
    let run = TableRun {
        stream: t.stream.clone(),
        source_table: t.source.clone(),
        target_table: t.target.clone(),
        source,
        sink,
        state,
        batch_size: config.batch_size.unwrap_or(spec.batch_size).max(1),
        parallel: spec.parallel(&t.source.name),
        observer,
        shutdown,
    };
    snapshot::run(&run, resume_from, Some(resume.clone()), &mut t.stats).await?;
    observer.copy_finished(&t.stream);
    Ok(())
}
