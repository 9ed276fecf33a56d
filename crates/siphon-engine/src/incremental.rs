//! Incremental polling by a cursor column, and delete detection by key comparison.
//!
//! Polls and key reads stop at a byte budget as well as at `batch_size` rows
//! (see [`crate::budget`]): each asks for as many rows as the rows read so far
//! say fit [`CHUNK_BYTES`], starting at one row for a table with a column of
//! unbounded width, so wide rows are never held `batch_size` at a time.

use std::cmp::Ordering;
use std::collections::HashMap;

use siphon_core::{
    Batch, Change, Checkpoint, CursorSpec, DeleteDetection, Op, Phase, Position, Result, Row, Sink,
    Source, StateStore, TableStats, TypeKind, Value,
};

use crate::budget::{ChunkSizer, CHUNK_BYTES};
use crate::snapshot::{self, TableRun};

/// One incremental pass. A stream with no checkpoint (or a forced reload) first
/// copies the table by key; the watermark it then polls from is taken before that
/// copy starts, so rows changed during the copy are read again afterwards. Each
/// pass polls in `(cursor, key)` order until the source has nothing newer, moving
/// the checkpoint with each committed batch and never backward (a `lookback`, or
/// the source's own window for late commits, re-reads a window behind it).
///
/// Each poll asks for the rows a [`ChunkSizer`] allows, at most `batch_size`.
/// The limit may change from one poll to the next without skipping or
/// repeating a row: a poll resumes strictly after the `(cursor, key)` of the
/// last row the one before returned, whatever its limit was, and a pass ends
/// only at a poll that returned fewer rows than it asked for.
pub(crate) async fn run<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    cursor: &CursorSpec,
    delete_detection: DeleteDetection,
    from: Option<Checkpoint>,
    stats: &mut TableStats,
) -> Result<()> {
    let mut saved = match from.map(|c| c.phase) {
        Some(Phase::Streaming { position }) => position,
        Some(Phase::Snapshot {
            last_key,
            resume_position,
            ranges,
            shadow,
        }) => {
            let cp = run.checkpoint(Phase::Snapshot {
                last_key,
                resume_position: resume_position.clone(),
                ranges,
                shadow,
            });
            snapshot::run(run, Some(cp), resume_position.clone(), stats).await?;
            resume_position
        }
        None => {
            let high = run.source.cursor_high(&run.source_table, cursor).await?;
            snapshot::run(run, None, high.clone(), stats).await?;
            high
        }
    };

    // The source decides how far back a pass re-reads: `lookback` when set, and
    // for some cursors a window of its own (PostgreSQL: timestamp cursors whose
    // watermark did not see every open transaction), else nothing.
    let mut after: Option<Position> = match &saved {
        Some(p) => Some(run.source.rewind(&run.source_table, cursor, p)?),
        None => None,
    };
    let mut sizer = ChunkSizer::new(run.batch_size, CHUNK_BYTES, &run.source_table);
    loop {
        run.stop_requested()?;
        let limit = sizer.limit();
        let chunk = run
            .source
            .poll(&run.source_table, cursor, after.as_ref(), limit)
            .await?;
        let n = chunk.rows.len();
        let Some(last) = chunk.last else { break };
        let bytes: u64 = chunk.rows.iter().map(|r| Value::row_size(r)).sum();
        sizer.observe(n, bytes);
        let ahead = match &saved {
            None => true,
            Some(s) => run.source.compare(&run.source_table, &last, s)? == Ordering::Greater,
        };
        // A chunk read again wholly behind the watermark brings nothing new
        // (its late rows count as inserted): were it counted as read, a
        // continuous pipeline would poll again at once, forever. Nor are its
        // rows the target held counted as updated: the sink's upserts cannot
        // tell them from unchanged ones, so an idle pass would report every
        // row of the window updated and none read.
        if ahead {
            stats.rows_read += n as u64;
            stats.bytes += bytes;
            saved = Some(last.clone());
        }
        let changes = chunk
            .rows
            .into_iter()
            .map(|row| Change::new(run.target_table.clone(), Op::Insert(row)))
            .collect();
        let cp = run.checkpoint(Phase::Streaming {
            position: saved.clone(),
        });
        let updated = stats.updated;
        run.apply(Batch { changes }, cp, stats).await?;
        if !ahead {
            stats.updated = updated;
        }
        // As many rows as asked for: more may follow, read after `last`.
        if n < limit {
            break;
        }
        after = Some(last);
    }

    if delete_detection == DeleteDetection::KeyDiff {
        let cp = run.checkpoint(Phase::Streaming { position: saved });
        key_diff(run, cp, stats).await?;
    }
    Ok(())
}

/// Deletes target rows whose key no longer exists at the source. Walks the target's
/// keys chunk by chunk and asks the source which still exist, so memory holds one
/// chunk of keys and no ordering has to agree between the two engines. A chunk
/// holds at most `batch_size` keys and about [`CHUNK_BYTES`] of them.
///
/// The source answers under its own collation, where `'a'` finds the row `'A'`
/// and `'c '` the row `'c'`. For a key of text columns, whose bytes a
/// case-insensitive or padding collation may change without changing the row,
/// the target's keys are also compared byte for byte with the source's (see
/// [`ExactKeys`]), so the target ends with the source's exact keys.
async fn key_diff<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    cp: Checkpoint,
    stats: &mut TableStats,
) -> Result<()> {
    let Some(key) = run.target_table.row_key().map(<[usize]>::to_vec) else {
        return Ok(());
    };
    let mut exact = match ExactKeys::wanted(run) {
        Some(source_key) => Some(ExactKeys::read(run, &source_key).await?),
        None => None,
    };
    let width = run.target_table.columns.len();
    let delete = |k: &Row| {
        let mut row = vec![Value::Null; width];
        for (v, &i) in k.iter().zip(&key) {
            row[i] = v.clone();
        }
        Change::new(run.target_table.clone(), Op::Delete(row))
    };
    // Target keys the source holds only under its collation, in other bytes.
    let mut stale: Vec<Row> = Vec::new();
    let mut after: Option<Vec<Value>> = None;
    let mut sizer = ChunkSizer::of_columns(run.batch_size, CHUNK_BYTES, &run.target_table, &key);
    loop {
        run.stop_requested()?;
        let limit = sizer.limit();
        let keys = run
            .sink
            .read_keys(&run.target_table, after.as_ref(), limit)
            .await?;
        if keys.is_empty() {
            break;
        }
        sizer.observe(keys.len(), keys.iter().map(|k| Value::row_size(k)).sum());
        let exists = run.source.existing_keys(&run.source_table, &keys).await?;
        let mut gone = Vec::new();
        for (k, e) in keys.iter().zip(&exists) {
            if !*e {
                gone.push(delete(k));
            } else if let Some(exact) = exact.as_mut() {
                if !exact.see(k) {
                    stale.push(k.clone());
                }
            }
        }
        if !gone.is_empty() {
            run.apply(Batch { changes: gone }, cp.clone(), stats)
                .await?;
        }
        let full = keys.len() >= limit;
        after = keys.into_iter().last();
        if !full {
            break;
        }
    }
    let Some(exact) = exact else {
        return Ok(());
    };
    // The stale keys go first: on a target that compares as the source does,
    // a stale key is the row of a source key, which is written afresh after.
    for chunk in stale.chunks(run.batch_size.max(1)) {
        run.stop_requested()?;
        let changes = chunk.iter().map(&delete).collect();
        run.apply(Batch { changes }, cp.clone(), stats).await?;
    }
    // Source rows whose exact key the target lacks (it held them under other
    // bytes, or lost them to the deletes above in a run that stopped there).
    if exact.unseen() > 0 {
        exact.write_unseen(run, cp, stats).await?;
    }
    Ok(())
}

/// The exact text keys of a source table, for comparing the target's keys
/// byte for byte. Used only when every column of the row key is variable
/// text at the source, the columns whose values a collation may find under
/// other bytes. Holds every key of the table (its text, no more) in memory.
struct ExactKeys {
    /// Positions of the key's columns in the source's rows.
    source_key: Vec<usize>,
    /// Each source key, and whether the target holds it byte for byte.
    keys: HashMap<Vec<String>, bool>,
}

impl ExactKeys {
    /// The source's key positions when its keys must be compared exactly:
    /// a row key of variable text columns only, the same columns (by name,
    /// in order) as the target's.
    fn wanted<S: Source, K: Sink, St: StateStore>(
        run: &TableRun<'_, S, K, St>,
    ) -> Option<Vec<usize>> {
        let source_key = run.source_table.row_key()?.to_vec();
        let target_key = run.target_table.row_key()?;
        let text = source_key.iter().all(|&i| {
            matches!(
                run.source_table.columns[i].data_type.kind,
                TypeKind::Text { .. }
            )
        });
        let same = source_key.len() == target_key.len()
            && source_key.iter().zip(target_key).all(|(&s, &t)| {
                run.source_table.columns[s].name == run.target_table.columns[t].name
            });
        (text && same).then_some(source_key)
    }

    /// Reads every key of the source table in key order, in chunks of whole
    /// rows within the byte budget.
    async fn read<S: Source, K: Sink, St: StateStore>(
        run: &TableRun<'_, S, K, St>,
        source_key: &[usize],
    ) -> Result<ExactKeys> {
        let mut keys = HashMap::new();
        let mut after: Option<Position> = None;
        let mut sizer = ChunkSizer::new(run.batch_size, CHUNK_BYTES, &run.source_table);
        loop {
            run.stop_requested()?;
            let limit = sizer.limit();
            let chunk = run
                .source
                .read_chunk(&run.source_table, after.as_ref(), limit)
                .await?;
            let n = chunk.rows.len();
            sizer.observe(n, chunk.rows.iter().map(|r| Value::row_size(r)).sum());
            for row in &chunk.rows {
                if let Some(k) = text_key(source_key.iter().map(|&i| &row[i])) {
                    keys.insert(k, false);
                }
            }
            match chunk.last {
                Some(last) if n >= limit => after = Some(last),
                _ => break,
            }
        }
        Ok(ExactKeys {
            source_key: source_key.to_vec(),
            keys,
        })
    }

    /// Whether the source holds the target key `k` byte for byte; marks it
    /// held by the target when it does.
    fn see(&mut self, k: &Row) -> bool {
        match text_key(k.iter()).and_then(|k| self.keys.get_mut(&k)) {
            Some(seen) => {
                *seen = true;
                true
            }
            None => false,
        }
    }

    /// How many source keys the target does not hold byte for byte.
    fn unseen(&self) -> usize {
        self.keys.values().filter(|seen| !**seen).count()
    }

    /// Reads the source's rows whose key the target lacks and upserts them,
    /// in chunks within the byte budget.
    async fn write_unseen<S: Source, K: Sink, St: StateStore>(
        &self,
        run: &TableRun<'_, S, K, St>,
        cp: Checkpoint,
        stats: &mut TableStats,
    ) -> Result<()> {
        let mut after: Option<Position> = None;
        let mut sizer = ChunkSizer::new(run.batch_size, CHUNK_BYTES, &run.source_table);
        loop {
            run.stop_requested()?;
            let limit = sizer.limit();
            let chunk = run
                .source
                .read_chunk(&run.source_table, after.as_ref(), limit)
                .await?;
            let n = chunk.rows.len();
            sizer.observe(n, chunk.rows.iter().map(|r| Value::row_size(r)).sum());
            let changes: Vec<Change> = chunk
                .rows
                .into_iter()
                .filter(|row| {
                    text_key(self.source_key.iter().map(|&i| &row[i]))
                        .is_some_and(|k| self.keys.get(&k) == Some(&false))
                })
                .map(|row| Change::new(run.target_table.clone(), Op::Insert(row)))
                .collect();
            if !changes.is_empty() {
                run.apply(Batch { changes }, cp.clone(), stats).await?;
            }
            match chunk.last {
                Some(last) if n >= limit => after = Some(last),
                _ => return Ok(()),
            }
        }
    }
}

/// A key's text values; `None` when one is not text.
fn text_key<'a>(values: impl Iterator<Item = &'a Value>) -> Option<Vec<String>> {
    values
        .map(|v| match v {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}
