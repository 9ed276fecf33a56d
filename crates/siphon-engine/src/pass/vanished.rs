//! `cdc` tables that left the source: a table the pipeline selects and
//! streamed, which discovery no longer finds (dropped or renamed at the
//! source). The log moves on without it, so its copy on the target loses its
//! place in the log: its checkpoint is forgotten, and a table of that name
//! that exists again later is copied afresh (the target table emptied first)
//! instead of being streamed on top of the old table's rows.

use chrono::Utc;
use siphon_core::{
    Error, ErrorKind, Flag, Mode, PipelineSpec, Result, Sink, StateStore, StreamId, TableName,
    TableStats,
};

use crate::cdc;

/// The streams of `pipeline`'s `cdc` tables that its `tables` still select
/// and whose copy on the target follows (or was being copied against) the
/// log, but which are not among `discovered`: the source no longer has them.
/// Paused tables and tables the pipeline no longer selects are left alone.
pub(super) async fn find<K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    discovered: &[TableName],
    sink: &K,
    state: &St,
) -> Result<Vec<StreamId>> {
    let log = cdc::log_stream(pipeline);
    let filter = spec.filter();
    let mut gone = Vec::new();
    for (stream, _) in state.stream_states().await? {
        if stream.pipeline != pipeline
            || stream == log
            || discovered.contains(&stream.table)
            || !filter.matches(&stream.table)
            || spec.table_config(&stream.table).mode.unwrap_or(spec.mode) != Mode::Cdc
            || state.flag(&stream, Flag::Enabled).await? == Some(false)
        {
            continue;
        }
        if sink.checkpoint(&stream).await?.is_some() {
            gone.push(stream);
        }
    }
    Ok(gone)
}

/// Forgets the checkpoint of each table in `gone` (see [`find`]), so a table
/// of that name that exists again is copied afresh, and says so. With
/// `carried`, the pass's open stream carries them and applies what the log
/// holds of them up to the drop, which it reports: they are not failed here.
/// Otherwise the changes siphon had not read yet may be missing on the
/// target: each fails, naming the table and the fix. Returns the outcome of
/// the failed ones.
pub(super) async fn forget<K: Sink>(
    pipeline: &str,
    gone: Vec<StreamId>,
    carried: bool,
    sink: &K,
) -> cdc::Outcome {
    let mut outcome = Vec::new();
    for stream in gone {
        if let Err(e) = sink.reset(&stream).await {
            tracing::warn!(%stream, error = %e, "could not reset the checkpoint of a table the source no longer has");
        }
        if carried {
            tracing::info!(
                pipeline,
                table = %stream.table,
                "the source no longer has table {}: should a table of that name exist again, \
                 it is copied afresh",
                stream.table
            );
            continue;
        }
        let e = gone_error(pipeline, &stream.table);
        tracing::error!(pipeline, table = %stream.table, error = %e, "table stream failed");
        let mut stats = TableStats::starting(&stream.table, Mode::Cdc);
        stats.finished_at = Some(Utc::now());
        outcome.push((stream, stats, Some(e)));
    }
    outcome
}

/// The error of a streamed table the source no longer has: what happened,
/// what it means for the target, and the fix.
fn gone_error(pipeline: &str, table: &TableName) -> Error {
    // The command names the table by its key, which is unambiguous.
    let key = table.key();
    let arg = if key.contains('"') || key.contains(' ') {
        format!("'{}'", key.replace('\'', "'\\''"))
    } else {
        key
    };
    Error::new(
        ErrorKind::BadInput,
        format!(
            "the pipeline streamed this table, but the source no longer has it (dropped or renamed \
             there since siphon last read the log): changes to it that siphon had not read yet may \
             be missing on the target, whose copy stays as it is, and the log moves on without it. \
             Take it out of the pipeline's `tables`, or, once a table of that name exists again, \
             copy it with `siphon sync resync {pipeline} --table {arg}` (the next time siphon starts \
             this pipeline copies it afresh by itself, emptying the target table first)"
        ),
    )
    .table(table)
}
