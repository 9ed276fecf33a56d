//! Copying a table into a pipeline whose log already streams, without pausing
//! the log for the other tables: the watermark method of Netflix DBLog (as in
//! Debezium's incremental snapshots).
//!
//! The table streams from the start of its copy, and its copy is read chunk by
//! chunk in key order, interleaved with the log. For each chunk the engine
//! writes a low watermark into the log; when the stream returns it, the chunk
//! is read (the rows after the last key copied) and a high watermark written.
//! A change of the table that the stream returns between the two watermarks
//! takes its key out of the chunk: the log has that row's newer state. At the
//! high watermark the rows left are applied, in order with the stream, in the
//! same target transaction as the changes around them. Every change committed
//! before the low watermark is in the chunk, and every later one follows it in
//! the log, so the table converges whatever the chunk read saw. After each
//! chunk the table's snapshot checkpoint moves to the chunk's last key: a
//! restart resumes the copy from there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use siphon_core::{
    Batch, Change, Checkpoint, LogSource, Op, Phase, PipelineSpec, Position, Result, Row, Sink,
    StateStore, StreamId, StreamState, TableName, TableSchema, Watermark,
};

use super::{resume, Table};
use crate::Observer;

/// The tables of a following session that are copied between watermarks.
#[derive(Debug)]
pub(super) struct Backfill {
    jobs: Vec<Job>,
    /// Makes the marks of this session unlike those of any other run.
    nonce: u64,
    /// The number of the last chunk started.
    chunks: u64,
}

/// One table being copied.
#[derive(Debug)]
struct Job {
    stream: StreamId,
    name: TableName,
    /// The last key copied and committed; `None` before the first chunk.
    after: Option<Position>,
    /// The last key of the chunks read, committed or not: the next chunk
    /// starts after it.
    read_after: Option<Position>,
    /// Chunks applied in the batch being committed: each one's last key, its
    /// rows, and whether it was the table's last.
    applied: Vec<(Option<Position>, u64, bool)>,
    /// Where the log stood when the copy started (the checkpoint's
    /// `resume_position`).
    resume_position: Position,
    /// How many rows each chunk reads: `batch_size`, fewer for wide rows.
    chunk_rows: crate::budget::ChunkSizer,
    /// Rows copied so far, for progress.
    copied: u64,
    /// The table's shape as the last schema change in the stream announced
    /// it, which the table's entry learns only when its batch is applied.
    shape: Option<Arc<TableSchema>>,
    chunk: Chunk,
    /// A forced reload asked for the copy: its flag is cleared once the copy
    /// is complete.
    forced: bool,
}

/// Where the job's current chunk is.
#[derive(Debug)]
enum Chunk {
    /// The next low watermark is to be written.
    Idle,
    /// The low watermark was written; the chunk is read when the stream
    /// returns it.
    Low(String),
    /// Read, and the high watermark written: the rows whose key no change
    /// between the watermarks touched, with the index of each key.
    Window {
        high: String,
        table: Arc<TableSchema>,
        rows: Vec<Option<Row>>,
        keys: HashMap<Vec<u8>, usize>,
        last: Option<Position>,
        done: bool,
    },
    /// The last chunk was read: nothing more to read.
    Finished,
}

impl Backfill {
    pub(super) fn new() -> Backfill {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        Backfill {
            jobs: Vec::new(),
            nonce,
            chunks: 0,
        }
    }

    /// The tables copied for a forced reload whose copy is not complete yet.
    pub(super) fn reloading(&self) -> HashSet<StreamId> {
        self.jobs
            .iter()
            .filter(|j| j.forced)
            .map(|j| j.stream.clone())
            .collect()
    }

    /// The rows copied so far of a table being copied between watermarks, or
    /// `None` when it is not.
    pub(super) fn copied(&self, stream: &StreamId) -> Option<u64> {
        self.jobs
            .iter()
            .find(|j| &j.stream == stream)
            .map(|j| j.copied)
    }

    /// Takes over the copy of `t` when the pass follows a log that streams
    /// already (`on_log`) and the source writes watermarks: it then streams
    /// from now on and is copied chunk by chunk while the log goes on, and
    /// `None` is returned. Otherwise the plan is handed back, for a copy with
    /// the stream paused (`run --once`, a new pipeline, a source without
    /// watermarks, a table without a key, or an interrupted copy that was
    /// loading key ranges in parallel or into a shadow table).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn adopt<S: LogSource, K: Sink, St: StateStore>(
        &mut self,
        t: &Table,
        spec: &PipelineSpec,
        planned: resume::Planned,
        start: &Position,
        on_log: bool,
        source: &S,
        sink: &K,
        state: &St,
        observer: &dyn Observer,
    ) -> Result<Option<resume::Planned>> {
        if let Some(at) = self.jobs.iter().position(|j| j.stream == t.stream) {
            if !planned.forced {
                return Ok(None);
            }
            // Forced again while copying: the copy starts over.
            self.jobs.remove(at);
        }
        let after = match &planned.plan {
            resume::Plan::Stream(_) => return Ok(Some(planned)),
            resume::Plan::Copy => None,
            resume::Plan::Resume(c) => match &c.phase {
                Phase::Snapshot {
                    last_key,
                    ranges,
                    shadow: None,
                    ..
                } if ranges.is_empty() => last_key.clone(),
                _ => return Ok(Some(planned)),
            },
        };
        if !on_log || t.source.row_key().is_none() || !source.watermarks().await? {
            return Ok(Some(planned));
        }
        let config = spec.table_config(&t.source.name);
        let mut job = Job {
            stream: t.stream.clone(),
            name: t.source.name.clone(),
            read_after: after.clone(),
            applied: Vec::new(),
            after,
            resume_position: start.clone(),
            chunk_rows: crate::budget::ChunkSizer::new(
                config.batch_size.unwrap_or(spec.batch_size).max(1),
                crate::budget::CHUNK_BYTES,
                &t.source,
            ),
            copied: 0,
            shape: None,
            chunk: Chunk::Idle,
            forced: planned.forced,
        };
        crate::snapshot::mark_loading(state, &t.stream).await?;
        let total = source.estimate_rows(&t.source).await.unwrap_or(None);
        observer.table_started(&t.stream, total);
        if job.after.is_none() {
            // A copy from the start empties the target's table first: the
            // changes streamed from now on and the chunks fill it again.
            let cp = job.checkpoint(Phase::snapshot(None, Some(start.clone())));
            let truncate = Change::new(t.target.clone(), Op::Truncate);
            sink.apply(
                Batch {
                    changes: vec![truncate],
                },
                &cp,
            )
            .await?;
            remember(state, &cp).await;
        } else {
            job.copied = copied_before(state, &t.stream).await;
            observer.table_resumed(&t.stream, job.copied);
        }
        crate::telemetry::snapshot_started(&t.stream, total, job.copied);
        tracing::info!(
            stream = %t.stream,
            resumed = job.after.is_some(),
            "copying the table between watermarks while the log streams"
        );
        self.jobs.push(job);
        Ok(None)
    }

    /// After a stream was (re)opened: chunks in flight are read again, and
    /// tables no longer streamed (stopped, or no longer selected) are dropped.
    pub(super) fn reopened(&mut self, routes: &HashMap<TableName, usize>) {
        self.jobs.retain(|j| routes.contains_key(&j.name));
        for j in &mut self.jobs {
            j.chunk = Chunk::Idle;
            j.read_after = j.after.clone();
            j.applied.clear();
            j.shape = None;
        }
    }

    /// Writes the low watermark of each job that has no chunk in flight.
    pub(super) async fn start_chunks<S: LogSource>(
        &mut self,
        pipeline: &str,
        source: &S,
    ) -> Result<()> {
        for j in &mut self.jobs {
            if matches!(j.chunk, Chunk::Idle) {
                self.chunks += 1;
                let low = format!("{pipeline}:{:x}-{}:low", self.nonce, self.chunks);
                source.write_watermark(pipeline, &low).await?;
                j.chunk = Chunk::Low(low);
            }
        }
        Ok(())
    }

    /// Goes through a batch the stream returned, with its watermarks, before
    /// it is applied: at a low watermark the chunk is read and the high one
    /// written; each change of a table between its watermarks takes its key
    /// out of the chunk; at the high watermark the chunk's rows left join the
    /// batch, as inserts (upserts) in their place in the log.
    pub(super) async fn absorb<S: LogSource>(
        &mut self,
        pipeline: &str,
        batch: &mut Batch,
        marks: Vec<Watermark>,
        tables: &[Table],
        routes: &HashMap<TableName, usize>,
        source: &S,
    ) -> Result<()> {
        if self.jobs.is_empty() {
            return Ok(());
        }
        let changes = std::mem::take(&mut batch.changes);
        let mut out = Vec::with_capacity(changes.len());
        let mut marks = marks.into_iter().peekable();
        for (n, change) in changes.into_iter().enumerate() {
            while let Some(m) = marks.next_if(|m| m.before <= n) {
                self.mark(pipeline, &m.mark, &mut out, tables, routes, source)
                    .await?;
            }
            self.overridden(&change);
            out.push(change);
        }
        for m in marks {
            self.mark(pipeline, &m.mark, &mut out, tables, routes, source)
                .await?;
        }
        batch.changes = out;
        Ok(())
    }

    /// Handles one watermark; the marks of other chunks, runs or pipelines
    /// are passed over.
    async fn mark<S: LogSource>(
        &mut self,
        pipeline: &str,
        mark: &str,
        out: &mut Vec<Change>,
        tables: &[Table],
        routes: &HashMap<TableName, usize>,
        source: &S,
    ) -> Result<()> {
        for j in &mut self.jobs {
            match &mut j.chunk {
                Chunk::Low(low) if low == mark => {
                    let Some(&i) = routes.get(&j.name) else {
                        return Ok(());
                    };
                    let table = j.shape.clone().unwrap_or_else(|| tables[i].source.clone());
                    let limit = j.chunk_rows.limit();
                    let chunk = source
                        .read_chunk(&table, j.read_after.as_ref(), limit)
                        .await?;
                    let done = chunk.rows.len() < limit;
                    let bytes = chunk
                        .rows
                        .iter()
                        .map(|r| siphon_core::Value::row_size(r))
                        .sum();
                    j.chunk_rows.observe(chunk.rows.len(), bytes);
                    if chunk.rows.is_empty() {
                        j.applied.push((None, 0, true));
                        j.chunk = Chunk::Finished;
                        return Ok(());
                    }
                    let high = format!("{}high", low.trim_end_matches("low"));
                    let key = table.row_key().unwrap_or(&[]).to_vec();
                    let keys = chunk
                        .rows
                        .iter()
                        .enumerate()
                        .map(|(n, r)| (key_of(&key, r), n))
                        .collect();
                    source.write_watermark(pipeline, &high).await?;
                    tracing::debug!(stream = %j.stream, rows = chunk.rows.len(), "chunk read between watermarks");
                    j.chunk = Chunk::Window {
                        high,
                        table,
                        rows: chunk.rows.into_iter().map(Some).collect(),
                        keys,
                        last: chunk.last,
                        done,
                    };
                    return Ok(());
                }
                Chunk::Window { high, .. } if high == mark => {
                    let Chunk::Window {
                        table,
                        rows,
                        last,
                        done,
                        ..
                    } = std::mem::replace(&mut j.chunk, Chunk::Idle)
                    else {
                        return Ok(());
                    };
                    let mut n = 0;
                    for row in rows.into_iter().flatten() {
                        out.push(Change::new(table.clone(), Op::Insert(row)));
                        n += 1;
                    }
                    tracing::debug!(stream = %j.stream, rows = n, "chunk joins the batch at its high watermark");
                    if last.is_some() {
                        j.read_after = last.clone();
                    }
                    j.applied.push((last, n, done));
                    j.chunk = Chunk::Finished;
                    if !done {
                        // The next chunk's low watermark travels the log
                        // while this batch is applied.
                        self.chunks += 1;
                        let low = format!("{pipeline}:{:x}-{}:low", self.nonce, self.chunks);
                        source.write_watermark(pipeline, &low).await?;
                        j.chunk = Chunk::Low(low);
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Takes the key a logged change touches out of the chunk of its table
    /// that is between its watermarks (all of them for a TRUNCATE).
    /// A change of the table's shape drops the chunk between its watermarks
    /// (read in the old shape; it is read again after its key), and later
    /// chunks are read in the new shape.
    fn overridden(&mut self, change: &Change) {
        for j in &mut self.jobs {
            if j.name != change.table.name {
                continue;
            }
            if let Op::Schema(shape) = &change.op {
                j.shape = Some(shape.clone());
                if matches!(j.chunk, Chunk::Window { .. }) {
                    j.chunk = Chunk::Idle;
                }
                continue;
            }
            let Chunk::Window { rows, keys, .. } = &mut j.chunk else {
                continue;
            };
            let row = match &change.op {
                Op::Insert(r) | Op::Delete(r) | Op::Update { after: r, .. } => r,
                Op::Truncate => {
                    rows.iter_mut().for_each(|r| *r = None);
                    continue;
                }
                Op::Schema(_) => continue,
            };
            let key = change.table.row_key().unwrap_or(&[]);
            if let Some(&n) = keys.get(&key_of(key, row)) {
                rows[n] = None;
            }
            // An update that moved the row's key also frees the old one.
            if let Op::Update {
                before: Some(b), ..
            } = &change.op
            {
                if let Some(&n) = keys.get(&key_of(key, b)) {
                    rows[n] = None;
                }
            }
        }
    }

    /// Once the target committed a batch that held chunks, moves each one's
    /// table checkpoint to the chunk's last key, in a target transaction of
    /// its own (a crash before it copies the chunk again, which upserts). A
    /// table whose copy is complete streams on from `position`, and
    /// `observer` learns that its copy finished.
    pub(super) async fn committed<K: Sink, St: StateStore>(
        &mut self,
        position: &Position,
        sink: &K,
        state: &St,
        observer: &dyn Observer,
    ) -> Result<()> {
        let mut finished = Vec::new();
        for (n, j) in self.jobs.iter_mut().enumerate() {
            if j.applied.is_empty() {
                continue;
            }
            let mut done = false;
            for (last, rows, last_chunk) in j.applied.drain(..) {
                if last.is_some() {
                    j.after = last;
                }
                j.copied += rows;
                done |= last_chunk;
                crate::telemetry::rows_applied(&j.stream, crate::telemetry::Applied::Copy, rows);
            }
            match done {
                true => crate::telemetry::snapshot_finished(&j.stream, j.copied),
                false => crate::telemetry::snapshot_done(&j.stream, j.copied),
            }
            let phase = match done {
                true => Phase::Streaming {
                    position: Some(position.clone()),
                },
                false => Phase::snapshot(j.after.clone(), Some(j.resume_position.clone())),
            };
            let cp = j.checkpoint(phase);
            sink.apply(Batch::default(), &cp).await?;
            remember(state, &cp).await;
            if done {
                finished.push(n);
                state
                    .set_stream_state(&j.stream, &StreamState::Streaming)
                    .await?;
                tracing::info!(stream = %j.stream, rows = j.copied, "copy complete; the table streams on");
                observer.copy_finished(&j.stream);
                if j.forced {
                    super::reloaded(state, &j.stream).await;
                }
            } else {
                let progress = StreamState::Snapshotting { rows: j.copied };
                if let Err(e) = state.set_stream_state(&j.stream, &progress).await {
                    tracing::debug!(stream = %j.stream, error = %e, "could not record the copy's progress");
                }
            }
        }
        for n in finished.into_iter().rev() {
            self.jobs.remove(n);
        }
        Ok(())
    }
}

impl Job {
    fn checkpoint(&self, phase: Phase) -> Checkpoint {
        Checkpoint::new(self.stream.clone(), phase)
    }
}

/// The values of a row's key columns, comparable across rows of one table.
fn key_of(key: &[usize], row: &Row) -> Vec<u8> {
    let values: Vec<_> = key.iter().map(|&i| row.get(i)).collect();
    format!("{values:?}").into_bytes()
}

/// Keeps a copy of a committed checkpoint; the target's copy is the one that
/// counts.
async fn remember<St: StateStore>(state: &St, cp: &Checkpoint) {
    if let Err(e) = state.save_checkpoint(cp).await {
        tracing::warn!(stream = %cp.stream, error = %e, "could not copy the checkpoint to the state store");
    }
}

/// The rows an interrupted copy had copied, as the state store last recorded.
async fn copied_before<St: StateStore>(state: &St, stream: &StreamId) -> u64 {
    match state.stream_states().await {
        Ok(states) => states
            .into_iter()
            .find_map(|(s, st)| match st {
                StreamState::Snapshotting { rows } if &s == stream => Some(rows),
                _ => None,
            })
            .unwrap_or(0),
        Err(_) => 0,
    }
}
