//! `row_count` tables: each run compares the exact row counts of the source
//! table and of its copy on the target, and copies the table again in full
//! (as `full` does) when they differ or the target holds no complete copy.
//!
//! This is for tables with neither a cursor column nor a change log. A change
//! that keeps the count (an update, or as many inserts as deletes) is not seen:
//! the copy stays as it was until the counts differ or a reload is forced.

use siphon_core::{
    Checkpoint, Error, FullStrategy, Phase, Result, RowCounts, Sink, Source, StateStore, TableStats,
};

use crate::full;
use crate::snapshot::{self, TableRun};

/// One `row_count` pass over a table. `checkpoint` is the target's; only a
/// complete copy (`Streaming`) is compared: without one (a new table, or a
/// load that was interrupted, which then resumes) and with `force` the table
/// is copied. Equal counts leave the target untouched and record the counts in
/// `stats` ([`TableStats::row_counts`]); different ones copy the table again,
/// into a shadow table swapped in when the sink can (so readers keep the
/// previous copy until the new one is complete), else by emptying it first,
/// as `strategy` says (see `full`).
pub(crate) async fn run<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    checkpoint: Option<Checkpoint>,
    force: bool,
    strategy: Option<FullStrategy>,
    stats: &mut TableStats,
) -> Result<()> {
    let complete = matches!(
        checkpoint.as_ref().map(|c| &c.phase),
        Some(Phase::Streaming { .. })
    );
    // The target is counted first: a row the source gains meanwhile makes the
    // counts differ, which costs a copy, never a missed change.
    let target = run
        .sink
        .count_rows(&run.target_table)
        .await?
        .ok_or_else(|| {
            Error::config(
                "the target cannot count the rows of its tables, which `mode: row_count` compares \
                 with the source's; use `mode: full` for this table",
            )
            .table(&run.source_table.name)
        })?;
    let source = run
        .source
        .count_rows(&run.source_table)
        .await?
        .ok_or_else(|| {
            Error::config(
                "the source cannot count the rows of its tables exactly, which `mode: row_count` \
                 compares with the target's; use `mode: full` for this table",
            )
            .table(&run.source_table.name)
        })?;
    let counts = RowCounts {
        source,
        target: complete.then_some(target),
    };
    stats.row_counts = Some(counts);
    if counts.equal() && !force {
        tracing::info!(stream = %run.stream, rows = source,
                       "the source and the target hold as many rows: not copied");
        return Ok(());
    }
    match counts.target {
        _ if force => {}
        Some(target) => tracing::info!(stream = %run.stream, source, target,
                                       "the row counts differ: copying the table again in full"),
        None => tracing::info!(stream = %run.stream, source,
                               "the target holds no complete copy: copying the table in full"),
    }
    snapshot::mark_loading(run.state, &run.stream).await?;
    full::run(run, checkpoint, force, strategy, stats).await
}
