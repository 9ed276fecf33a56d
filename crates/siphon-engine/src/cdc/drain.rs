//! Draining the log: batches read while the previous one applies, reshaped to
//! each table's target, applied with the checkpoint they reach, and confirmed
//! to the source only after the target committed.

#[allow(clippy::wildcard_imports)]
use super::*;

/// How long a following pass waits for the next transaction before it looks at
/// its deadline and at shutdown again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Applies batches until the stream has caught up with `until` or, following
/// the log, until `deadline` (or shutdown); moves `position` with each
/// committed batch, and `within`, how far into a transaction split over
/// batches the target is ([`super::within`]): the stream's changes the target
/// holds already (a split transaction replayed from its start) are dropped. Tables in `backfill` are copied chunk by chunk among the
/// batches. With `watch`, the operator's switches are read about every second,
/// and a change ends the drain as its deadline would.
///
/// The state store's copy of a committed batch's checkpoint is written while
/// the next batch applies (or before the drain waits for the source, or when
/// it ends, however it ends), not between the two: the target holds the
/// checkpoint that counts, and a state store that syncs each write to disk
/// (SQLite) would otherwise stall the target for a disk flush every batch.
#[allow(clippy::too_many_arguments)]
pub(super) async fn drain<S: LogSource, C: ChangeStream, K: Sink, St: StateStore>(
    source: &S,
    pipeline: &str,
    spec: &PipelineSpec,
    tables: &mut [Table],
    routes: &mut HashMap<TableName, usize>,
    stream: &mut C,
    until: Option<&Position>,
    deadline: Option<std::time::Instant>,
    batch_size: usize,
    position: &mut Position,
    within: &mut Option<Within>,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    backfill: Option<&mut backfill::Backfill>,
    watch: Option<&mut switches::Watch>,
) -> Result<Drained> {
    let mut unsaved = None;
    let drained = drain_batches(
        source,
        pipeline,
        spec,
        tables,
        routes,
        stream,
        until,
        deadline,
        batch_size,
        position,
        within,
        sink,
        state,
        observer,
        shutdown,
        backfill,
        watch,
        &mut unsaved,
    )
    .await;
    save_copy(pipeline, state, &mut unsaved).await;
    drained
}

/// Writes the state store's copy of a committed checkpoint, if one waits; a
/// failure is told, not raised: the target holds the checkpoint.
async fn save_copy<St: StateStore>(pipeline: &str, state: &St, unsaved: &mut Option<Checkpoint>) {
    if let Some(cp) = unsaved.take() {
        if let Err(e) = state.save_checkpoint(&cp).await {
            tracing::warn!(pipeline, error = %e, "could not copy the checkpoint to the state store");
        }
    }
}

/// [`drain`], leaving the last committed checkpoint not yet copied to the
/// state store in `unsaved`.
#[allow(clippy::too_many_arguments)]
async fn drain_batches<S: LogSource, C: ChangeStream, K: Sink, St: StateStore>(
    source: &S,
    pipeline: &str,
    spec: &PipelineSpec,
    tables: &mut [Table],
    routes: &mut HashMap<TableName, usize>,
    stream: &mut C,
    until: Option<&Position>,
    deadline: Option<std::time::Instant>,
    batch_size: usize,
    position: &mut Position,
    within: &mut Option<Within>,
    sink: &K,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    mut backfill: Option<&mut backfill::Backfill>,
    mut watch: Option<&mut switches::Watch>,
    unsaved: &mut Option<Checkpoint>,
) -> Result<Drained> {
    let log = log_stream(pipeline);
    // Wide rows: a batch also ends past a byte budget, splitting a source
    // transaction as one past `batch_size` is.
    stream.limit_bytes(crate::budget::CHUNK_BYTES);
    let wait = deadline.map(|_| FOLLOW_POLL);
    let past_deadline = || deadline.is_some_and(|d| std::time::Instant::now() >= d);
    // What was read while the previous batch was applied (a batch, and one
    // that could not be merged into it): always applied before the pass ends,
    // since the stream has moved past it.
    let mut ahead: std::collections::VecDeque<(Batch, Position, Vec<Watermark>)> =
        Default::default();
    // A switch changed: the drain ends as at its deadline.
    let mut switched = watch.as_deref().is_some_and(switches::Watch::ended);
    let mut lag_writes = crate::telemetry::LagWrites::default();
    loop {
        if let Some(w) = watch.as_deref_mut().filter(|_| !switched) {
            switched = w
                .check(pipeline, state, tables, routes, backfill.as_deref())
                .await;
        }
        if let Some(b) = backfill.as_deref_mut() {
            b.start_chunks(pipeline, source).await?;
        }
        let (mut batch, next, marks) = match ahead.pop_front() {
            Some(b) => b,
            None => {
                if shutdown.requested() {
                    // Following the log has no end: stopping is its normal end.
                    return match deadline {
                        Some(_) => Ok(Drained::Done),
                        None => Err(Error::new(ErrorKind::Cancelled, "stopped on request")),
                    };
                }
                if switched || past_deadline() {
                    return Ok(Drained::Done);
                }
                // Nothing read ahead: the read may wait for the source.
                save_copy(pipeline, state, unsaved).await;
                match stream.next_batch(batch_size, until, wait).await {
                    Ok(Some((b, p))) => (b, p, stream.take_watermarks()),
                    Ok(None) if until.is_some() => return Ok(Drained::Done),
                    Ok(None) => continue,
                    Err(e) => {
                        return isolate::read_failed(pipeline, e, tables, routes, sink, state).await
                    }
                }
            }
        };
        // Where the target stands inside a split transaction once this batch
        // commits: from the batch as read, before anything is dropped from it.
        let full = batch.changes.len() >= batch_size
            || batch.changes.iter().map(|c| c.op.size()).sum::<u64>() >= crate::budget::CHUNK_BYTES;
        let reached =
            super::within::after(&batch.changes, within.as_ref(), next != *position, full);
        if let Some(b) = backfill.as_deref_mut() {
            b.absorb(pipeline, &mut batch, marks, tables, routes, source)
                .await?;
        }
        // A table whose shape changed (columns added, renamed, dropped or
        // widened) is evolved on the target before any of its rows; rows the
        // target held already get the source's values of added columns.
        // Tables that gained columns, with their target shape before: filled
        // from the source once this batch is applied.
        let mut refill: Vec<(usize, Arc<TableSchema>)> = Vec::new();
        for change in &batch.changes {
            if let Op::Schema(s) = &change.op {
                if let Some(&i) = routes.get(&s.name) {
                    let t = &mut tables[i];
                    let mut target = (**s).clone();
                    target.name = t.target.name.clone();
                    if let Err(e) =
                        crate::evolve::reshape(source, sink, s, &target, &spec.schema).await
                    {
                        let e = named(e, s);
                        if !isolate::isolatable(&e) {
                            return Err(e);
                        }
                        routes.remove(&s.name);
                        isolate::stop_table(pipeline, t, e, sink, state).await;
                        return Ok(Drained::Reopen);
                    }
                    t.source = s.clone();
                    refill.push((i, std::mem::replace(&mut t.target, Arc::new(target))));
                }
            }
        }
        // Per table: changes read, inserts, updates, deletes, truncates, and
        // the bytes of the row images read.
        let mut counts: HashMap<usize, (u64, u64, u64, u64, u64, u64)> = HashMap::new();
        let mut commits = crate::telemetry::Commits::default();
        let mut changes = Vec::with_capacity(batch.changes.len());
        // Whether the last change's shape (by its address) was its table's:
        // compared once per run of changes of one shape and table, not for
        // every row.
        let mut alike: Option<(usize, usize, bool)> = None;
        for change in batch.changes {
            let Some(&i) = routes.get(&change.table.name) else {
                continue;
            };
            // Applied before a stop, with the checkpoint that said so.
            if super::within::applied(within.as_ref(), &change) {
                continue;
            }
            if let (Some(snapshot), Some(tx)) = (&tables[i].skip, &change.tx) {
                if !matches!(change.op, Op::Schema(_)) {
                    if source.snapshot_holds(snapshot, tx)? {
                        continue;
                    }
                    tables[i].skip = None;
                }
            }
            let t = &tables[i];
            let shape = Arc::as_ptr(&change.table) as usize;
            let same = match alike {
                Some((p, j, same)) if p == shape && j == i => same,
                _ => {
                    let same = Arc::ptr_eq(&change.table, &t.source)
                        || change.table.columns == t.source.columns;
                    alike = Some((shape, i, same));
                    same
                }
            };
            let widen = |row: Vec<siphon_core::Value>| match same {
                true => row,
                false => reshape(&change.table, &t.source, row),
            };
            let c = counts.entry(i).or_default();
            c.5 += change.op.size();
            commits.note(i, &change);
            let op = match change.op {
                Op::Schema(_) => continue,
                Op::Insert(r) => {
                    c.0 += 1;
                    c.1 += 1;
                    Op::Insert(widen(r))
                }
                Op::Update { before, after } => {
                    c.0 += 1;
                    c.2 += 1;
                    Op::Update {
                        before: before.map(widen),
                        after: widen(after),
                    }
                }
                Op::Delete(r) => {
                    c.0 += 1;
                    c.3 += 1;
                    Op::Delete(widen(r))
                }
                Op::Truncate => {
                    c.4 += 1;
                    Op::Truncate
                }
            };
            changes.push(Change {
                table: t.target.clone(),
                op,
                tx: change.tx,
                index: change.index,
            });
        }
        let cp = Checkpoint {
            stream: log.clone(),
            epoch: 0,
            phase: Phase::Streaming {
                position: Some(super::within::wrap(&next, reached.as_ref())),
            },
        };
        // The target applies this batch while the next one is read and decoded.
        // One batch is read ahead at most: with one in hand already, reading
        // more would only queue it in memory.
        let read_on = ahead.is_empty() && !shutdown.requested() && !switched && !past_deadline();
        let nothing_queued = ahead.is_empty();
        let touched: Vec<usize> = counts.keys().copied().collect();
        let (batch_len, applying) = (changes.len(), std::time::Instant::now());
        let applied = std::sync::atomic::AtomicBool::new(false);
        let (done, read, ()) = tokio::join!(
            async {
                let r = sink.apply(Batch { changes }, &cp).await;
                applied.store(true, std::sync::atomic::Ordering::Release);
                if r.is_ok() {
                    crate::telemetry::batch_applied(pipeline, "cdc", applying.elapsed());
                    // Position and lags are told as the batch commits, not once
                    // the read beside it returns (which waits for the source's
                    // next change). With nothing queued behind this batch the
                    // lags are written at once, else at most every second.
                    crate::telemetry::source_position(pipeline, &next);
                    let lags =
                        commits.committed(&log, |i| tables[i].stream.clone(), chrono::Utc::now());
                    lag_writes.add(state, pipeline, lags, nothing_queued).await;
                }
                r
            },
            async {
                match read_on {
                    true => Some(
                        read_while_applying(stream, batch_size, until, wait, &next, &applied).await,
                    ),
                    false => None,
                }
            },
            // The copy of the batch before this one.
            save_copy(pipeline, state, unsaved)
        );
        let done = match done {
            Ok(done) => done,
            // The target refused one table's changes: that table stops, and
            // the batch is read again without it (what was read ahead too).
            Err(e) if isolate::isolatable(&e) => match isolate::culprit(&e, tables, &touched) {
                Some(i) => {
                    routes.remove(&tables[i].source.name);
                    isolate::stop_table(pipeline, &mut tables[i], e, sink, state).await;
                    return Ok(Drained::Reopen);
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        tracing::trace!(
            pipeline,
            changes = batch_len,
            took_ms = applying.elapsed().as_millis() as u64,
            "batch applied"
        );
        let mut failed = None;
        let finished = match read {
            Some(Ok(Some(read))) => {
                ahead.extend(read);
                false
            }
            // Caught up with `until`, once what was read ahead is applied.
            Some(Ok(None)) => until.is_some() && ahead.is_empty(),
            // Reported once what was applied is accounted for.
            Some(Err(e)) => {
                failed = Some(e);
                true
            }
            None => false,
        };
        // Copied to the state store while the next batch applies.
        *unsaved = Some(cp);
        // Only what the target committed is confirmed to the source.
        stream.confirm(&next).await?;
        *position = next;
        *within = reached;
        for (i, before) in refill {
            let t = &tables[i];
            if let Err(e) =
                crate::evolve::fill_added(source, sink, &t.source, &t.target, &before).await
            {
                let e = named(e, &t.source);
                if !isolate::isolatable(&e) {
                    return Err(e);
                }
                routes.remove(&tables[i].source.name);
                isolate::stop_table(pipeline, &mut tables[i], e, sink, state).await;
                return Ok(Drained::Reopen);
            }
        }
        let single = counts.len() == 1;
        // Rows a TRUNCATE removed are counted for the table it emptied when the
        // batch emptied one table; several emptied at once (TRUNCATE a, b, or
        // CASCADE) are reported together, since the target counts them together.
        let truncated: Vec<usize> = counts
            .iter()
            .filter(|(_, c)| c.4 > 0)
            .map(|(&i, _)| i)
            .collect();
        if truncated.len() > 1 {
            let names: Vec<String> = truncated
                .iter()
                .map(|&i| tables[i].stream.table.to_string())
                .collect();
            tracing::info!(
                pipeline,
                tables = names.join(", "),
                rows = done.emptied,
                "one TRUNCATE emptied several tables on the target"
            );
        }
        for (i, (read, ins, upd, del, _, bytes)) in counts {
            let t = &mut tables[i];
            t.stats.rows_read += read;
            t.stats.bytes += bytes;
            if single {
                t.stats.inserted += done.inserted;
                t.stats.updated += done.updated;
                t.stats.deleted += done.deleted;
            } else {
                t.stats.inserted += ins;
                t.stats.updated += upd;
                t.stats.deleted += del;
            }
            if truncated == [i] {
                t.stats.replaced += done.emptied;
            }
            if read > 0 {
                observer.rows_committed(&t.stream, read);
            }
        }
        // After the rows are counted: a copy this batch completed ends its
        // progress with them.
        if let Some(b) = backfill.as_deref_mut() {
            b.committed(position, sink, state, observer).await?;
        }
        if let Some(e) = failed {
            return isolate::read_failed(pipeline, e, tables, routes, sink, state).await;
        }
        if finished {
            return Ok(Drained::Done);
        }
    }
}

/// How often reading while a batch is applied looks whether it is applied.
const MERGE_POLL: Duration = Duration::from_millis(2);

/// Reads the next batch while the target applies the one at `applying`, and
/// goes on reading whole transactions into it until that apply is done or the
/// batch is full (`batch_size` changes, or [`crate::budget::CHUNK_BYTES`] of
/// row images): returning earlier would not apply it any sooner, and a
/// larger batch costs the target less per change. A batch that ends inside a
/// transaction (split, its position not moved) or does not fit is not merged
/// but kept to follow. `Ok(None)` as from [`ChangeStream::next_batch`].
async fn read_while_applying<C: ChangeStream>(
    stream: &mut C,
    batch_size: usize,
    until: Option<&Position>,
    wait: Option<Duration>,
    applying: &Position,
    applied: &std::sync::atomic::AtomicBool,
) -> Result<Option<Vec<(Batch, Position, Vec<Watermark>)>>> {
    use std::sync::atomic::Ordering as AtomicOrdering;
    let Some((mut batch, mut position)) = stream.next_batch(batch_size, until, wait).await? else {
        return Ok(None);
    };
    let mut marks = stream.take_watermarks();
    let mut out = Vec::with_capacity(2);
    let budget = crate::budget::CHUNK_BYTES;
    let size = |b: &Batch| b.changes.iter().map(|c| c.op.size()).sum::<u64>();
    let mut bytes = size(&batch);
    // A split batch takes nothing after it.
    let mut open = position != *applying;
    while open
        && batch.changes.len() < batch_size
        && bytes < budget
        && !applied.load(AtomicOrdering::Acquire)
    {
        match stream
            .next_batch(batch_size, until, Some(MERGE_POLL))
            .await?
        {
            Some((more, at)) => {
                let mut more_marks = stream.take_watermarks();
                // A batch that changes a table's shape starts a batch of its
                // own: the target takes the new shape (and fills added
                // columns) before its rows, and after the rows of the old one.
                let reshapes = more.changes.iter().any(|c| matches!(c.op, Op::Schema(_)));
                let more_bytes = size(&more);
                if at != position
                    && !reshapes
                    && batch.changes.len() + more.changes.len() <= batch_size
                    && bytes + more_bytes <= budget
                {
                    bytes += more_bytes;
                    for m in &mut more_marks {
                        m.before += batch.changes.len();
                    }
                    marks.extend(more_marks);
                    batch.changes.extend(more.changes);
                    position = at;
                } else {
                    out.push((more, at, more_marks));
                    open = false;
                }
            }
            // Nothing yet (or, with `until`, maybe nothing more).
            None if until.is_none() => {}
            None => open = false,
        }
    }
    out.insert(0, (batch, position, marks));
    Ok(Some(out))
}

/// A row of `from`'s shape as a row of `to`'s: columns matched by their
/// source id where the source has ids (so a renamed column keeps its values),
/// else by name; columns `from` lacks are NULL.
fn reshape(
    from: &Arc<TableSchema>,
    to: &Arc<TableSchema>,
    row: Vec<siphon_core::Value>,
) -> Vec<siphon_core::Value> {
    if Arc::ptr_eq(from, to) || from.columns == to.columns {
        return row;
    }
    // Values are moved, never copied: a row may hold a huge value.
    let mut row: Vec<Option<siphon_core::Value>> = row.into_iter().map(Some).collect();
    (0..to.columns.len())
        .map(|i| {
            from.same_column(to, i)
                .and_then(|j| row.get_mut(j).and_then(Option::take))
                .unwrap_or(siphon_core::Value::Null)
        })
        .collect()
}
