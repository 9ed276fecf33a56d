//! Incremental polling by a cursor column, and delete detection by key comparison.

use std::cmp::Ordering;

use siphon_core::{
    Batch, Change, Checkpoint, CursorSpec, DeleteDetection, Op, Phase, Position, Result, Sink,
    Source, StateStore, TableStats, Value,
};

use crate::snapshot::{self, TableRun};

/// One incremental pass. A stream with no checkpoint (or a forced reload) first
/// copies the table by key; the watermark it then polls from is taken before that
/// copy starts, so rows changed during the copy are read again afterwards. Each
/// pass polls in `(cursor, key)` order until the source has nothing newer, moving
/// the checkpoint with each committed batch and never backward (a `lookback`, or
/// the source's own window for late commits, re-reads a window behind it).
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
    loop {
        run.stop_requested()?;
        let chunk = run
            .source
            .poll(&run.source_table, cursor, after.as_ref(), run.batch_size)
            .await?;
        let n = chunk.rows.len();
        let Some(last) = chunk.last else { break };
        let ahead = match &saved {
            None => true,
            Some(s) => run.source.compare(&run.source_table, &last, s)? == Ordering::Greater,
        };
        // A chunk read again wholly behind the watermark brings nothing new
        // (its late rows count as inserted): were it counted as read, a
        // continuous pipeline would poll again at once, forever.
        if ahead {
            stats.rows_read += n as u64;
            stats.bytes += chunk.rows.iter().map(|r| Value::row_size(r)).sum::<u64>();
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
        run.apply(Batch { changes }, cp, stats).await?;
        if n < run.batch_size {
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
/// chunk of keys and no ordering has to agree between the two engines.
async fn key_diff<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    cp: Checkpoint,
    stats: &mut TableStats,
) -> Result<()> {
    let Some(key) = run.target_table.row_key().map(<[usize]>::to_vec) else {
        return Ok(());
    };
    let width = run.target_table.columns.len();
    let mut after: Option<Vec<Value>> = None;
    loop {
        run.stop_requested()?;
        let keys = run
            .sink
            .read_keys(&run.target_table, after.as_ref(), run.batch_size)
            .await?;
        if keys.is_empty() {
            return Ok(());
        }
        let exists = run.source.existing_keys(&run.source_table, &keys).await?;
        let gone: Vec<Change> = keys
            .iter()
            .zip(&exists)
            .filter(|(_, e)| !**e)
            .map(|(k, _)| {
                let mut row = vec![Value::Null; width];
                for (v, &i) in k.iter().zip(&key) {
                    row[i] = v.clone();
                }
                Change::new(run.target_table.clone(), Op::Delete(row))
            })
            .collect();
        if !gone.is_empty() {
            run.apply(Batch { changes: gone }, cp.clone(), stats)
                .await?;
        }
        let full = keys.len() == run.batch_size;
        after = keys.into_iter().last();
        if !full {
            return Ok(());
        }
    }
}
