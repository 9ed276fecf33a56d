//! Full loads: keyset chunks committed with their checkpoint, resumable after a crash.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use siphon_core::{
    Batch, Change, Checkpoint, Error, ErrorKind, KeyRange, NativeChunk, NativeFormat, Op, Phase,
    Position, Result, Row, Sink, Source, StateStore, StreamId, StreamState, TableName, TableSchema,
    TableStats,
};
use tokio::sync::mpsc;

use crate::budget::ChunkSizer;
use crate::{Observer, Shutdown};

/// A load by one worker on the native path reads chunks of this many times
/// `batch_size` rows (20,000 by default): rows still encoded take a fraction of
/// the memory of decoded ones, and fewer, larger target transactions keep the
/// target's COPY busy (in `bench/pg_full_load.sh` on two cores, about 20% faster
/// than chunks of 5,000, at about 33 MiB; 40,000 was not clearly faster and took
/// 55 MiB). Parallel workers keep `batch_size`: they overlap one another's
/// commits already, and memory grows with their number.
const NATIVE_CHUNK_FACTOR: usize = 4;

/// The state store's copies of a load's checkpoint and progress are written at
/// most this often (the last one always): each is a durable write, an fsync
/// with the SQLite store, and a load commits chunks many times a second. The
/// target's checkpoint, which a resume reads, commits with every chunk.
const RECORD_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Chunks read ahead of the sink: the reader waits when the sink is behind, so
/// memory holds at most this many chunks plus the one being written.
const READ_AHEAD: usize = 2;

/// A chunk on its way from the reader to the writer.
enum Rows {
    /// Decoded values.
    Values(Vec<Row>),
    /// Rows in the source's own encoding, and how many there are.
    Native(Vec<u8>, usize),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Values(rows) => rows.len(),
            Rows::Native(_, n) => *n,
        }
    }

    /// The bytes these rows count for in [`TableStats::bytes`].
    fn size(&self) -> u64 {
        match self {
            Rows::Values(rows) => rows.iter().map(|r| siphon_core::Value::row_size(r)).sum(),
            Rows::Native(data, _) => data.len() as u64,
        }
    }
}

/// Everything a driver needs for one table stream.
pub(crate) struct TableRun<'a, S, K, St> {
    pub stream: StreamId,
    pub source_table: Arc<TableSchema>,
    pub target_table: Arc<TableSchema>,
    pub source: &'a S,
    pub sink: &'a K,
    pub state: &'a St,
    pub batch_size: usize,
    /// Workers for a new full load (`parallel`).
    pub parallel: usize,
    pub observer: &'a dyn Observer,
    pub shutdown: &'a Shutdown,
}

impl<S: Source, K: Sink, St: StateStore> TableRun<'_, S, K, St> {
    pub(crate) fn checkpoint(&self, phase: Phase) -> Checkpoint {
        Checkpoint {
            stream: self.stream.clone(),
            epoch: 0,
            phase,
        }
    }

    /// Keeps a copy of a checkpoint the target committed. The target's copy is the
    /// one that counts, so a failure here is logged, not fatal.
    pub(crate) async fn remember(&self, cp: &Checkpoint) {
        if let Err(e) = self.state.save_checkpoint(cp).await {
            tracing::warn!(stream = %self.stream, error = %e, "could not copy the checkpoint to the state store");
        }
    }

    /// Commits a batch with its checkpoint and counts what it did.
    pub(crate) async fn apply(
        &self,
        batch: Batch,
        cp: Checkpoint,
        stats: &mut TableStats,
    ) -> Result<()> {
        let n = batch.changes.len() as u64;
        let ops = crate::telemetry::Polled::of(&batch);
        let applying = std::time::Instant::now();
        let done = self.sink.apply(batch, &cp).await?;
        ops.applied(&self.stream, applying.elapsed());
        stats.inserted += done.inserted;
        stats.updated += done.updated;
        stats.deleted += done.deleted;
        self.remember(&cp).await;
        if n > 0 {
            self.observer.rows_committed(&self.stream, n);
        }
        Ok(())
    }

    /// Records how many rows the running load has copied, for `status` and for
    /// the progress of a resumed load. Not fatal, like [`TableRun::remember`].
    pub(crate) async fn record_progress(&self, rows: u64) {
        crate::telemetry::snapshot_done(&self.stream, rows);
        let state = StreamState::Snapshotting { rows };
        if let Err(e) = self.state.set_stream_state(&self.stream, &state).await {
            tracing::debug!(stream = %self.stream, error = %e, "could not record the load's progress");
        }
    }

    pub(crate) fn stop_requested(&self) -> Result<()> {
        if self.shutdown.requested() {
            return Err(Error::new(ErrorKind::Cancelled, "stopped on request")
                .table(&self.source_table.name));
        }
        Ok(())
    }
}

/// Copies the table in key order, one chunk per target transaction, each with the
/// checkpoint `Snapshot { last_key }` it reaches. Resumes after the last committed
/// chunk when `from` is a snapshot checkpoint; otherwise empties the target table
/// first (in the same transaction as the first checkpoint). Ends with
/// `Streaming { position: resume_position }` committed.
///
/// Chunks travel in the source's own encoding when the sink accepts it (see
/// [`Source::native_format`]). With `parallel` above 1 on that path, workers
/// copy key ranges of the table at once and `last_key` holds every range's
/// progress (see [`parallel`]).
pub(crate) async fn run<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    from: Option<Checkpoint>,
    resume_position: Option<Position>,
    stats: &mut TableStats,
) -> Result<()> {
    let after = match from.map(|c| c.phase) {
        Some(Phase::Snapshot {
            last_key, ranges, ..
        }) => {
            let progress = Progress { last_key, ranges };
            tracing::info!(stream = %run.stream, resumed = progress.started(), "resuming snapshot");
            progress
        }
        _ => {
            empty_target(run, resume_position.clone(), stats).await?;
            Progress::default()
        }
    };
    copy(run, after, None, &resume_position, stats).await?;
    let cp = run.checkpoint(Phase::Streaming {
        position: resume_position,
    });
    run.apply(Batch::default(), cp, stats).await
}

/// Empties the target table, with the first checkpoint of a new load; the rows
/// it held are counted as replaced, not deleted.
async fn empty_target<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    resume_position: Option<Position>,
    stats: &mut TableStats,
) -> Result<()> {
    let truncate = Change::new(run.target_table.clone(), Op::Truncate);
    let cp = run.checkpoint(Phase::snapshot(None, resume_position));
    let done = run
        .sink
        .apply(
            Batch {
                changes: vec![truncate],
            },
            &cp,
        )
        .await?;
    stats.replaced += done.emptied + done.deleted;
    run.remember(&cp).await;
    Ok(())
}

/// Where an interrupted load resumes: the last key it copied (a load in one key
/// order), or the progress of each of its key ranges (a parallel load).
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub last_key: Option<Position>,
    pub ranges: Vec<KeyRange>,
}

impl Progress {
    /// Whether any chunk of the load is on the target (or its ranges are set).
    pub(crate) fn started(&self) -> bool {
        self.last_key.is_some() || !self.ranges.is_empty()
    }
}

/// Copies the rows after `after` into the run's target table (a shadow table
/// when `shadow` names it, which each checkpoint then names), one
/// chunk per target transaction. The counts of every committed chunk are in
/// `stats`, also when the copy stops or fails part way.
pub(crate) async fn copy<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    after: Progress,
    shadow: Option<&TableName>,
    resume_position: &Option<Position>,
    stats: &mut TableStats,
) -> Result<()> {
    let total = run
        .source
        .estimate_rows(&run.source_table)
        .await
        .unwrap_or(None);
    run.observer.table_started(&run.stream, total);
    // A resumed load's progress starts at the rows it had copied.
    let done_before = match after.started() {
        true => rows_copied(run).await,
        false => 0,
    };
    if done_before > 0 {
        run.observer.table_resumed(&run.stream, done_before);
    }
    crate::telemetry::snapshot_started(&run.stream, total, done_before);
    let tally = Tally::new(done_before);
    let r = copy_counted(run, after, shadow, resume_position, &tally).await;
    tally.add_to(stats);
    if r.is_ok() {
        let copied = tally.before + tally.rows_read.load(AtomicOrdering::Relaxed);
        crate::telemetry::snapshot_finished(&run.stream, copied);
    }
    r
}

/// Records that the stream is loading, keeping the rows an interrupted load
/// had copied (its progress resumes from them).
pub(crate) async fn mark_loading<St: StateStore>(state: &St, stream: &StreamId) -> Result<()> {
    let current = state
        .stream_states()
        .await?
        .into_iter()
        .find(|(s, _)| s == stream)
        .map(|(_, st)| st);
    if !matches!(current, Some(StreamState::Snapshotting { .. })) {
        state
            .set_stream_state(stream, &StreamState::Snapshotting { rows: 0 })
            .await?;
    }
    Ok(())
}

/// The rows an interrupted load had copied, as the state store last recorded.
async fn rows_copied<S: Source, K: Sink, St: StateStore>(run: &TableRun<'_, S, K, St>) -> u64 {
    match run.state.stream_states().await {
        Ok(states) => states
            .into_iter()
            .find_map(|(s, st)| match st {
                StreamState::Snapshotting { rows } if s == run.stream => Some(rows),
                _ => None,
            })
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn copy_counted<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    after: Progress,
    shadow: Option<&TableName>,
    resume_position: &Option<Position>,
    tally: &Tally,
) -> Result<()> {
    let format = run.source.native_format(&run.source_table).await?;
    let format = match format {
        Some(f)
            if run.sink.capabilities().native
                && run.sink.accepts_native(&run.target_table, &f).await? =>
        {
            tracing::info!(stream = %run.stream, "rows pass through in the source's own encoding");
            Some(f)
        }
        _ => None,
    };
    let abort = AtomicBool::new(false);
    // The load's checkpoint at this progress.
    let phase = |last_key: Option<Position>, ranges: Vec<KeyRange>| Phase::Snapshot {
        last_key,
        resume_position: resume_position.clone(),
        ranges,
        shadow: shadow.cloned(),
    };
    match plan(run, after).await? {
        Plan::Serial(after) => {
            let checkpoint_for = |last: &Position, _done: bool| {
                Ok(run.checkpoint(phase(Some(last.clone()), Vec::new())))
            };
            let (how, limit) = match format {
                Some(_) => (
                    Read::Native,
                    run.batch_size.saturating_mul(NATIVE_CHUNK_FACTOR),
                ),
                None => (Read::Chunks, run.batch_size),
            };
            copy_range(
                run,
                how,
                (limit, crate::budget::CHUNK_BYTES),
                (after, None),
                &checkpoint_for,
                &|_, _| {},
                &abort,
                None,
                tally,
            )
            .await
        }
        Plan::Parallel(ranges, workers) => {
            parallel(
                run,
                format.as_ref(),
                ranges,
                workers,
                &|ranges| phase(None, ranges),
                tally,
            )
            .await
        }
    }
}

/// Counts of committed chunks, shared by the workers of a load.
struct Tally {
    /// Rows copied before this run (a resumed load), for the progress record.
    before: u64,
    rows_read: AtomicU64,
    bytes: AtomicU64,
    inserted: AtomicU64,
    updated: AtomicU64,
}

impl Tally {
    fn new(before: u64) -> Tally {
        Tally {
            before,
            rows_read: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            inserted: AtomicU64::new(0),
            updated: AtomicU64::new(0),
        }
    }

    /// Adds a committed chunk of `rows` rows and `bytes` bytes; returns the
    /// rows the load has copied in all.
    fn add(&self, rows: u64, bytes: u64, applied: &siphon_core::ApplyStats) -> u64 {
        self.bytes.fetch_add(bytes, AtomicOrdering::Relaxed);
        self.inserted
            .fetch_add(applied.inserted, AtomicOrdering::Relaxed);
        self.updated
            .fetch_add(applied.updated, AtomicOrdering::Relaxed);
        self.before + self.rows_read.fetch_add(rows, AtomicOrdering::Relaxed) + rows
    }

    fn add_to(&self, stats: &mut TableStats) {
        stats.rows_read += self.rows_read.load(AtomicOrdering::Relaxed);
        stats.bytes += self.bytes.load(AtomicOrdering::Relaxed);
        stats.inserted += self.inserted.load(AtomicOrdering::Relaxed);
        stats.updated += self.updated.load(AtomicOrdering::Relaxed);
    }
}

/// How a load reads the table.
enum Plan {
    /// In one key order, after this key.
    Serial(Option<Position>),
    /// Over key ranges, by up to this many workers.
    Parallel(Vec<KeyRange>, usize),
}

/// How a chunk is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// [`Source::read_chunk`]: decoded rows, in one key order.
    Chunks,
    /// [`Source::read_range`]: decoded rows of one key range.
    Range,
    /// [`Source::read_native`]: rows in the source's own encoding.
    Native,
}

/// Serial or parallel: an interrupted load goes on as it started; a new one is
/// parallel when configured and the source can split the key, on the native
/// path or with decoded rows alike.
async fn plan<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    after: Progress,
) -> Result<Plan> {
    let workers = run.parallel.max(1);
    if !after.ranges.is_empty() {
        return Ok(Plan::Parallel(after.ranges, workers));
    }
    if after.last_key.is_some() || workers < 2 {
        return Ok(Plan::Serial(after.last_key));
    }
    let cuts = run.source.split_keys(&run.source_table, workers).await?;
    if cuts.is_empty() {
        tracing::info!(stream = %run.stream, workers, "loading with one worker: the table is empty or its first key column is not an integer");
        return Ok(Plan::Serial(None));
    }
    let mut bounds = vec![None];
    bounds.extend(cuts.into_iter().map(Some));
    bounds.push(None);
    let ranges = bounds
        .windows(2)
        .map(|w| KeyRange {
            after: w[0].clone(),
            until: w[1].clone(),
            done: false,
        })
        .collect::<Vec<_>>();
    tracing::info!(stream = %run.stream, ranges = ranges.len(), "loading key ranges in parallel");
    Ok(Plan::Parallel(ranges, workers))
}

/// Loads the ranges not done yet with up to `workers` workers, each reading
/// with a source connection of its own. Each writes with a target connection of
/// its own when the sink can open more ([`Sink::another`]); otherwise the
/// workers share the one the load has, and take turns to write (reads stay
/// parallel: one writer, as SQLite allows). Rows are decoded unless `format`
/// (the native path) is given. Every chunk commits with a checkpoint that
/// holds its own range's new progress and the others' committed progress, so a
/// resume never skips a row; it may re-read a chunk another worker committed
/// at the same moment, which the sink absorbs by upserting.
async fn parallel<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    format: Option<&NativeFormat>,
    ranges: Vec<KeyRange>,
    workers: usize,
    phase: &(dyn Fn(Vec<KeyRange>) -> Phase + Sync),
    tally: &Tally,
) -> Result<()> {
    let todo: VecDeque<usize> = (0..ranges.len()).filter(|&i| !ranges[i].done).collect();
    let mut handles: Vec<(S, Option<K>)> = Vec::new();
    let own_sinks = run.sink.capabilities().another;
    while handles.len() + 1 < workers.min(todo.len()) {
        // A server out of connection slots means fewer workers, not a failed load.
        let source = match run.source.another().await {
            Ok(Some(source)) => source,
            Err(e) => {
                tracing::warn!(stream = %run.stream, workers = handles.len() + 1, error = %e, "cannot open more source connections; loading with fewer workers");
                break;
            }
            Ok(None) => {
                tracing::info!(stream = %run.stream, workers = handles.len() + 1, "the source cannot open more connections; loading with fewer workers");
                break;
            }
        };
        let sink = match own_sinks {
            true => match run.sink.another().await {
                Ok(sink) => sink,
                Err(e) => {
                    tracing::warn!(stream = %run.stream, workers = handles.len() + 1, error = %e, "cannot open more target connections; loading with fewer workers");
                    break;
                }
            },
            false => None,
        };
        if let (Some(sink), Some(format)) = (&sink, format) {
            if !sink.accepts_native(&run.target_table, format).await? {
                return Err(
                    Error::internal("a second target connection refused the rows' format")
                        .table(&run.target_table.name),
                );
            }
        }
        handles.push((source, sink));
    }
    let copy_of = |source, sink| TableRun {
        stream: run.stream.clone(),
        source_table: run.source_table.clone(),
        target_table: run.target_table.clone(),
        source,
        sink,
        state: run.state,
        batch_size: run.batch_size,
        parallel: run.parallel,
        observer: run.observer,
        shutdown: run.shutdown,
    };
    // Workers without a target connection of their own write with the load's,
    // one at a time.
    let mut runs = vec![(copy_of(run.source, run.sink), true)];
    runs.extend(handles.iter().map(|(source, sink)| match sink {
        Some(sink) => (copy_of(source, sink), false),
        None => (copy_of(source, run.sink), true),
    }));
    let writers = 1 + runs.iter().filter(|(_, shared)| !shared).count();
    tracing::info!(stream = %run.stream, workers = runs.len(), writers, ranges = todo.len(), native = format.is_some(), "parallel load");
    let committed = Mutex::new(ranges);
    let todo = Mutex::new(todo);
    let abort = AtomicBool::new(false);
    let turn = tokio::sync::Mutex::new(());
    let how = match format {
        Some(_) => Read::Native,
        None => Read::Range,
    };
    // The workers share one byte budget, so memory does not grow with their number.
    let budget = crate::budget::CHUNK_BYTES / runs.len().max(1) as u64;
    let jobs = runs
        .iter()
        .map(|(run, shared)| {
            let shared = shared.then_some(&turn);
            let ctx = Worker {
                committed: &committed,
                todo: &todo,
                abort: &abort,
                turn: shared,
                how,
                phase,
                tally,
                budget,
            };
            async move { worker(run, ctx).await }
        })
        .collect();
    let mut first_error = None;
    for outcome in join_all::<_>(jobs).await {
        match outcome {
            Ok(()) => {}
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

/// What the workers of a parallel load share.
struct Worker<'a> {
    /// Each range's committed progress.
    committed: &'a Mutex<Vec<KeyRange>>,
    /// Ranges no worker took yet.
    todo: &'a Mutex<VecDeque<usize>>,
    abort: &'a AtomicBool,
    /// Held while writing, by workers that share a target connection.
    turn: Option<&'a tokio::sync::Mutex<()>>,
    how: Read,
    /// The load's checkpoint with these ranges.
    phase: &'a (dyn Fn(Vec<KeyRange>) -> Phase + Sync),
    tally: &'a Tally,
    /// Each worker's share of [`crate::budget::CHUNK_BYTES`].
    budget: u64,
}

/// One worker of a parallel load: copies ranges from `todo` until none is left.
async fn worker<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    w: Worker<'_>,
) -> Result<()> {
    let committed = w.committed;
    loop {
        let next = w.todo.lock().map_err(|_| poisoned())?.pop_front();
        let Some(i) = next else {
            return Ok(());
        };
        let range = committed.lock().map_err(|_| poisoned())?[i].clone();
        let checkpoint_for = |last: &Position, done: bool| {
            let mut ranges = committed.lock().map_err(|_| poisoned())?.clone();
            ranges[i].after = Some(last.clone());
            ranges[i].done = done;
            Ok(run.checkpoint((w.phase)(ranges)))
        };
        let on_commit = |last: &Position, done: bool| {
            if let Ok(mut ranges) = committed.lock() {
                ranges[i].after = Some(last.clone());
                ranges[i].done = done;
            }
        };
        copy_range(
            run,
            w.how,
            (run.batch_size, w.budget),
            (range.after, range.until),
            &checkpoint_for,
            &on_commit,
            w.abort,
            w.turn,
            w.tally,
        )
        .await
        .inspect_err(|_| w.abort.store(true, AtomicOrdering::Relaxed))?;
    }
}

fn poisoned() -> Error {
    Error::internal("a parallel load's shared state is poisoned")
}

/// Runs futures concurrently on the current task; their outputs in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Writes a committed checkpoint and the rows copied to the state store.
async fn record<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    committed: Option<(Checkpoint, u64)>,
) {
    if let Some((cp, rows)) = committed {
        run.remember(&cp).await;
        run.record_progress(rows).await;
    }
}

/// Copies the rows after `range.0` up to `range.1` in key order, chunks of at
/// most `size.0` rows and about `size.1` bytes (see [`ChunkSizer`]) read as
/// `how` says, one per target transaction with the checkpoint `checkpoint_for(last key, range
/// done)` gives; `on_commit` learns each committed chunk's last key. The reader
/// runs [`READ_AHEAD`] chunks ahead of the sink, and reads no further while
/// the chunks waiting for the sink hold `size.1` bytes or more. Stops early when `abort` is set.
/// Writes while holding `turn` when given (a target connection shared with
/// other workers). Each committed chunk is counted in `tally` at once.
#[allow(clippy::too_many_arguments)]
async fn copy_range<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    how: Read,
    size: (usize, u64),
    range: (Option<Position>, Option<Position>),
    checkpoint_for: &(dyn Fn(&Position, bool) -> Result<Checkpoint> + Sync),
    on_commit: &(dyn Fn(&Position, bool) + Sync),
    abort: &AtomicBool,
    turn: Option<&tokio::sync::Mutex<()>>,
    tally: &Tally,
) -> Result<()> {
    let (after, until) = range;
    // Each chunk travels with its size in bytes, measured by the reader while
    // the rows it just read are still in the CPU's cache.
    let (tx, mut rx) = mpsc::channel::<(Rows, u64, Position, bool)>(READ_AHEAD);
    let mut sizer = ChunkSizer::new(size.0, size.1, &run.source_table);
    // The bytes of the chunks sent and not yet taken by the writer, which
    // tells `taken` when it takes one.
    let queued = AtomicU64::new(0);
    let taken = tokio::sync::Notify::new();
    let (queued, taken) = (&queued, &taken);
    // The reader owns the sender, so the channel closes when it ends.
    let reader = async move {
        let mut after = after;
        loop {
            run.stop_requested()?;
            if abort.load(AtomicOrdering::Relaxed) {
                return Ok(());
            }
            // Wide rows: no more read ahead while a budget's worth waits.
            while queued.load(AtomicOrdering::Acquire) >= sizer.budget() {
                tokio::select! {
                    () = taken.notified() => {}
                    () = tx.closed() => return Ok(()), // the writer stopped
                }
            }
            let limit = sizer.limit();
            let (rows, last) = match how {
                Read::Native => {
                    let chunk = run
                        .source
                        .read_native(&run.source_table, after.as_ref(), until.as_ref(), limit)
                        .await?;
                    (Rows::Native(chunk.data, chunk.rows), chunk.last)
                }
                Read::Range => {
                    let chunk = run
                        .source
                        .read_range(&run.source_table, after.as_ref(), until.as_ref(), limit)
                        .await?;
                    (Rows::Values(chunk.rows), chunk.last)
                }
                Read::Chunks => {
                    let chunk = run
                        .source
                        .read_chunk(&run.source_table, after.as_ref(), limit)
                        .await?;
                    (Rows::Values(chunk.rows), chunk.last)
                }
            };
            let done = rows.len() < limit;
            let Some(last) = last else {
                return Ok(());
            };
            let size = rows.size();
            sizer.observe(rows.len(), size);
            queued.fetch_add(size, AtomicOrdering::AcqRel);
            if tx.send((rows, size, last.clone(), done)).await.is_err() {
                return Ok(()); // the writer stopped; its error is reported
            }
            if done {
                return Ok(());
            }
            after = Some(last);
        }
    };
    // The state store's copies of the checkpoint and of the progress are
    // written beside the load, not between its chunks: each is a durable write
    // (an fsync), and the target's checkpoint is the one that counts. They are
    // written at most once per RECORD_EVERY, the newest of those waiting; the
    // last one always is, before this returns.
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<(Checkpoint, u64)>();
    let recorder = async move {
        let mut pending: Option<(Checkpoint, u64)> = None;
        let mut next_write = tokio::time::Instant::now();
        loop {
            let received = match &pending {
                // Something waits to be written: take newer ones until its time.
                Some(_) => match tokio::time::timeout_at(next_write, progress_rx.recv()).await {
                    Ok(received) => received,
                    Err(_elapsed) => {
                        record(run, pending.take()).await;
                        next_write = tokio::time::Instant::now() + RECORD_EVERY;
                        continue;
                    }
                },
                None => progress_rx.recv().await,
            };
            match received {
                Some(newest) => {
                    pending = Some(newest);
                    if tokio::time::Instant::now() >= next_write {
                        record(run, pending.take()).await;
                        next_write = tokio::time::Instant::now() + RECORD_EVERY;
                    }
                }
                None => {
                    record(run, pending.take()).await;
                    return;
                }
            }
        }
    };
    // The writer owns the receiver: when it fails, the channel closes and the
    // reader, perhaps waiting to hand over a chunk, ends.
    let writer = async move {
        while let Some((rows, bytes, last, done)) = rx.recv().await {
            queued.fetch_sub(bytes, AtomicOrdering::AcqRel);
            taken.notify_one();
            // Chunks read ahead are dropped on a stop request: a stop ends the
            // load after the chunk being written, as the README promises.
            run.stop_requested()?;
            let _turn = match turn {
                Some(t) => Some(t.lock().await),
                None => None,
            };
            let n = rows.len() as u64;
            let cp = checkpoint_for(&last, done)?;
            let applied = match rows {
                Rows::Values(rows) => run.sink.load(&run.target_table, rows, &cp).await?,
                Rows::Native(data, rows) => {
                    let chunk = NativeChunk {
                        data,
                        rows,
                        last: None,
                    };
                    run.sink.load_native(&run.target_table, chunk, &cp).await?
                }
            };
            let copied = tally.add(n, bytes, &applied);
            on_commit(&last, done);
            // The recorder ends once the writer, which holds the sender, has.
            let _ = progress_tx.send((cp, copied));
            run.observer.rows_committed(&run.stream, n);
            crate::telemetry::rows_applied(&run.stream, crate::telemetry::Applied::Copy, n);
        }
        Ok::<(), Error>(())
    };
    let (read, written, ()) = tokio::join!(reader, writer, recorder);
    // A writer error closes the channel and ends the reader: report the writer's.
    written?;
    read
}
