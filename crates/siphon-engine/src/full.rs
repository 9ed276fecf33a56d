//! Loads of `full` tables: into the target table after emptying it
//! (`strategy: truncate`), or into a shadow table swapped in at the end
//! (`strategy: swap`, and by default for a reload over a complete copy).

use std::sync::Arc;

use siphon_core::{
    Batch, Checkpoint, Error, ErrorKind, FullStrategy, Phase, Result, Sink, Source, StateStore,
    TableName, TableStats,
};

use crate::snapshot::{self, TableRun};

/// Copies a `full` table. `checkpoint` is the target's: a complete copy
/// (`Streaming`), an interrupted load (`Snapshot`, into the table or into a
/// shadow table), or none. An interrupted load resumes where it stopped, into
/// the same table, unless `force` asks for a new copy or the strategy changed.
/// `strategy` is the one the user set; unset, a reload over a complete copy
/// swaps when the sink can, so a failing reload never destroys the last good
/// copy.
pub(crate) async fn run<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    checkpoint: Option<Checkpoint>,
    force: bool,
    strategy: Option<FullStrategy>,
    stats: &mut TableStats,
) -> Result<()> {
    let (complete, interrupted) = match checkpoint.map(|c| c.phase) {
        Some(Phase::Streaming { .. }) => (true, None),
        Some(Phase::Snapshot {
            last_key,
            ranges,
            shadow,
            ..
        }) => {
            let progress = snapshot::Progress { last_key, ranges };
            // A shadow load leaves the previous complete copy in place.
            (shadow.is_some(), Some((shadow, progress)))
        }
        None => (false, None),
    };
    // A table without a key is loaded by plain inserts: rows an interrupted
    // load committed could not be told from the same rows copied again, so
    // the load starts over (the table, or a new shadow, emptied first).
    let interrupted = match interrupted {
        Some((shadow, progress)) if progress.started() && run.source_table.row_key().is_none() => {
            tracing::info!(stream = %run.stream, "the table has no key: its interrupted load starts over from an empty table, \
                           since rows copied twice could not be told apart");
            if let Some(s) = &shadow {
                run.sink.drop_shadow(s).await?;
            }
            None
        }
        other => other,
    };
    let swap = choose(run, strategy, complete).await?;
    // An interrupted load resumes unless a reload was forced or the strategy
    // changed; a new swap load starts over in a new shadow table.
    let interrupted = match interrupted {
        Some((Some(shadow), key)) if swap && !force => {
            return swap_load(run, Some((shadow, key)), stats).await
        }
        Some((Some(shadow), _)) if !swap => {
            // A shadow load the strategy no longer wants: its table goes.
            run.sink.drop_shadow(&shadow).await?;
            None
        }
        _ if force => None,
        other => other,
    };
    match (swap, interrupted) {
        (true, _) => swap_load(run, None, stats).await,
        (false, Some((_, progress))) => {
            let from = run.checkpoint(Phase::Snapshot {
                last_key: progress.last_key,
                resume_position: None,
                ranges: progress.ranges,
                shadow: None,
            });
            snapshot::run(run, Some(from), None, stats).await
        }
        (false, None) => snapshot::run(run, None, None, stats).await,
    }
}

/// Whether the load swaps: as the user set, else when the target holds a
/// complete copy and the sink can swap it.
async fn choose<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    strategy: Option<FullStrategy>,
    complete: bool,
) -> Result<bool> {
    match strategy {
        Some(FullStrategy::Truncate) => Ok(false),
        Some(FullStrategy::Swap) => match run.sink.swap_refusal(&run.target_table).await? {
            None => Ok(true),
            Some(why) => Err(Error::config(format!(
                "`strategy: swap` cannot load this table: {why}; fix that, or set `strategy: truncate` \
                 (the table is then emptied before each load)"
            ))
            .table(&run.target_table.name)),
        },
        None if complete && run.sink.capabilities().swap => match run.sink.swap_refusal(&run.target_table).await? {
            None => {
                tracing::info!(stream = %run.stream, "reloading into a shadow table swapped in when complete: \
                               the current copy stays readable and intact until then");
                Ok(true)
            }
            Some(why) => {
                tracing::warn!(stream = %run.stream, reason = %why,
                               "reloading by emptying the table first, since it cannot be swapped: \
                                readers see it empty and growing, and a failed reload leaves part of a copy");
                Ok(false)
            }
        },
        None => Ok(false),
    }
}

/// Loads the table into a shadow table and swaps it in; `resume` is the
/// shadow an interrupted load left and the last key it committed there.
async fn swap_load<S: Source, K: Sink, St: StateStore>(
    run: &TableRun<'_, S, K, St>,
    resume: Option<(TableName, snapshot::Progress)>,
    stats: &mut TableStats,
) -> Result<()> {
    let (resume_shadow, key) = match resume {
        Some((s, k)) => (Some(s), k),
        None => (None, snapshot::Progress::default()),
    };
    let (shadow, resumed) = run
        .sink
        .open_shadow(&run.target_table, resume_shadow.as_ref())
        .await?;
    let after = if resumed {
        tracing::info!(stream = %run.stream, shadow = %shadow.name, "resuming the load into its shadow table");
        key
    } else {
        // The first checkpoint says which shadow table the load writes, so a
        // load that is stopped or killed resumes into it.
        let cp = run.checkpoint(Phase::Snapshot {
            last_key: None,
            resume_position: None,
            ranges: Vec::new(),
            shadow: Some(shadow.name.clone()),
        });
        run.sink.apply(Batch::default(), &cp).await?;
        run.remember(&cp).await;
        snapshot::Progress::default()
    };
    let shadow = Arc::new(shadow);
    let into = TableRun {
        stream: run.stream.clone(),
        source_table: run.source_table.clone(),
        target_table: shadow.clone(),
        source: run.source,
        sink: run.sink,
        state: run.state,
        batch_size: run.batch_size,
        parallel: run.parallel,
        observer: run.observer,
        shutdown: run.shutdown,
    };
    if let Err(e) = snapshot::copy(&into, after, Some(&shadow.name), &None, stats).await {
        if e.kind() != ErrorKind::Cancelled {
            tracing::warn!(stream = %run.stream, shadow = %shadow.name,
                           "the new copy failed before it was complete and was not swapped in: \
                            the target table keeps its previous copy; the next run resumes the new one");
        }
        return Err(e);
    }
    // A complete copy is swapped in, even when a stop was asked for meanwhile.
    let cp = run.checkpoint(Phase::Streaming { position: None });
    let replaced = run.sink.swap_in(&run.target_table, &shadow, &cp).await?;
    stats.replaced += replaced;
    run.remember(&cp).await;
    Ok(())
}
