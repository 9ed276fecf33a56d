//! The handover of a table without a key from its snapshot to its stream: no
//! upsert can absorb a change that is both in the copy and in the log, so the
//! copy is read in one snapshot pinned at a known log position, and the stream
//! skips the table's transactions that snapshot already holds.

use siphon_core::{Checkpoint, LogSource, Phase, PipelineSpec, Result, Sink, StateStore};

use super::Table;
use crate::snapshot::{self, TableRun};
use crate::{Observer, Shutdown};

/// What a snapshot of one table needs besides the table.
pub(super) struct Run<'a, S, K, St> {
    pub spec: &'a PipelineSpec,
    pub source: &'a S,
    pub sink: &'a K,
    pub state: &'a St,
    pub observer: &'a dyn Observer,
    pub shutdown: &'a Shutdown,
}

/// Copies the key-less table `t` unless its copy is current (`streamed`: the
/// log is read on from the pipeline's checkpoint, and `checkpoint` says the
/// copy was complete), and sets which of its transactions the stream skips.
///
/// The copy is read in a snapshot the source pins at a log position
/// ([`LogSource::pin_snapshot`]) and always starts from an empty target table:
/// an interrupted copy is not resumed, since the pinned snapshot is gone and
/// rows copied twice could not be told apart. The completed copy's checkpoint
/// holds the snapshot's position, so a restart skips the same transactions;
/// changes after it are applied once, with the log checkpoint in the same
/// target transaction.
pub(super) async fn snapshot<S: LogSource, K: Sink, St: StateStore>(
    t: &mut Table,
    run: &Run<'_, S, K, St>,
    streamed: bool,
    checkpoint: Option<Checkpoint>,
) -> Result<()> {
    match checkpoint.map(|c| c.phase) {
        Some(Phase::Streaming { position }) if streamed => {
            t.skip = position;
            return Ok(());
        }
        Some(Phase::Snapshot {
            last_key: Some(_), ..
        }) => tracing::info!(
            stream = %t.stream,
            "table {} has no key: its interrupted copy starts over from an empty table, since \
             rows copied twice could not be told apart",
            t.source.name
        ),
        _ => {}
    }
    snapshot::mark_loading(run.state, &t.stream).await?;
    let at = run.source.pin_snapshot(&t.source).await?;
    tracing::info!(
        stream = %t.stream,
        "table {} has no key: copied in one snapshot at a known log position, from which its \
         changes are streamed",
        t.source.name
    );
    let config = run.spec.table_config(&t.source.name);
    let table_run = TableRun {
        stream: t.stream.clone(),
        source_table: t.source.clone(),
        target_table: t.target.clone(),
        source: run.source,
        sink: run.sink,
        state: run.state,
        batch_size: config.batch_size.unwrap_or(run.spec.batch_size).max(1),
        parallel: 1,
        observer: run.observer,
        shutdown: run.shutdown,
    };
    let copied = snapshot::run(&table_run, None, Some(at.clone()), &mut t.stats).await;
    if let Err(e) = run.source.unpin_snapshot(&t.source).await {
        tracing::warn!(stream = %t.stream, error = %e, "could not end the snapshot the copy was read in");
    }
    copied?;
    t.skip = Some(at);
    Ok(())
}
