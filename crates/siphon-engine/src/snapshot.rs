//! Full loads: keyset chunks committed with their checkpoint, resumable after a crash.

use std::sync::Arc;

use siphon_core::{
    Batch, Change, Checkpoint, Error, ErrorKind, Op, Phase, Position, Result, Sink, Source,
    StateStore, StreamId, TableSchema, TableStats,
};
use tokio::sync::mpsc;

use crate::{Observer, Shutdown};

/// Chunks read ahead of the sink: the reader waits when the sink is behind, so
/// memory holds at most this many chunks plus the one being written.
const READ_AHEAD: usize = 2;

/// Everything a driver needs for one table stream.
pub(crate) struct TableRun<'a, S, K, St> {
    pub stream: StreamId,
    pub source_table: Arc<TableSchema>,
    pub target_table: Arc<TableSchema>,
    pub source: &'a S,
    pub sink: &'a K,
    pub state: &'a St,
    pub batch_size: usize,
    pub observer: &'a dyn Observer,
    pub shutdown: &'a Shutdown,
}

impl<S: Source, K: Sink, St: StateStore> TableRun<'_, S, K, St> {
    pub(crate) fn checkpoint(&self, phase: Phase) -> Checkpoint {
        Checkpoint {
            stream: self.stream.clone(),
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
        let done = self.sink.apply(batch, &cp).await?;
        stats.inserted += done.inserted;
        stats.updated += done.updated;
        stats.deleted += done.deleted;
        self.remember(&cp).await;
        if n > 0 {
            self.observer.rows_committed(&self.stream, n);
        }
        Ok(())
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
pub(crate) async fn run<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    from: Option<Checkpoint>,
    resume_position: Option<Position>,
    stats: &mut TableStats,
) -> Result<()> {
    let after = match from.map(|c| c.phase) {
        Some(Phase::Snapshot { last_key, .. }) => {
            tracing::info!(stream = %run.stream, resumed = last_key.is_some(), "resuming snapshot");
            last_key
        }
        _ => {
            let truncate = Change {
                table: run.target_table.clone(),
                op: Op::Truncate,
            };
            let cp = run.checkpoint(Phase::Snapshot {
                last_key: None,
                resume_position: resume_position.clone(),
            });
            let done = run
                .sink
                .apply(
                    Batch {
                        changes: vec![truncate],
                    },
                    &cp,
                )
                .await?;
            stats.deleted += done.deleted;
            run.remember(&cp).await;
            None
        }
    };
    let total = run
        .source
        .estimate_rows(&run.source_table)
        .await
        .unwrap_or(None);
    run.observer.table_started(&run.stream, total);

    let (tx, mut rx) = mpsc::channel::<(Vec<siphon_core::Row>, Position)>(READ_AHEAD);
    // The reader owns the sender, so the channel closes when it ends.
    let reader = async move {
        let mut after = after;
        loop {
            run.stop_requested()?;
            let chunk = run
                .source
                .read_chunk(&run.source_table, after.as_ref(), run.batch_size)
                .await?;
            let n = chunk.rows.len();
            let Some(last) = chunk.last else {
                return Ok(());
            };
            if tx.send((chunk.rows, last.clone())).await.is_err() {
                return Ok(()); // the writer stopped; its error is reported
            }
            if n < run.batch_size {
                return Ok(());
            }
            after = Some(last);
        }
    };
    let writer = async {
        while let Some((rows, last)) = rx.recv().await {
            let n = rows.len() as u64;
            let cp = run.checkpoint(Phase::Snapshot {
                last_key: Some(last),
                resume_position: resume_position.clone(),
            });
            let done = run.sink.load(&run.target_table, rows, &cp).await?;
            stats.rows_read += n;
            stats.inserted += done.inserted;
            stats.updated += done.updated;
            run.remember(&cp).await;
            run.observer.rows_committed(&run.stream, n);
        }
        Ok::<(), Error>(())
    };
    let (read, written) = tokio::join!(reader, writer);
    // A writer error closes the channel and ends the reader: report the writer's.
    written?;
    read?;
    let cp = run.checkpoint(Phase::Streaming {
        position: resume_position,
    });
    run.apply(Batch::default(), cp, stats).await
}
