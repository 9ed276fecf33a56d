//! Where each `cdc` table of a pass starts: streaming on from the pipeline's
//! checkpoint, resuming an interrupted copy, or copying afresh. Whether the log
//! still holds a table's history is the source's to say
//! ([`LogSource::resume`]); the engine never orders log positions. A table
//! that lost its history stops with an error naming the fix, or is copied
//! again when the pipeline says `on_lost_position: resnapshot`; the other
//! tables are not touched.

use std::collections::{HashMap, HashSet};

use siphon_core::{
    Batch, Checkpoint, Error, ErrorKind, Flag, LogSource, OnLostPosition, Phase, PipelineSpec,
    Position, Result, Sink, StateStore, StreamId, TableSchema,
};

use super::Table;

/// How a table of the pass gets to streaming.
#[derive(Debug)]
pub(super) enum Plan {
    /// Streamed before, and the log still holds what came since: it streams
    /// on. Its checkpoint, as the target holds it.
    Stream(Checkpoint),
    /// An interrupted copy made against the log, resumed from its checkpoint.
    Resume(Checkpoint),
    /// Copied from the start.
    Copy,
}

/// A table's plan, and whether a forced reload (`sync resync`) asked for it:
/// the flag is cleared once the copy is done.
#[derive(Debug)]
pub(super) struct Planned {
    pub(super) plan: Plan,
    pub(super) forced: bool,
}

/// Decides where each table without an error starts, and where the pass
/// reads the log from: `from`, the pipeline's checkpoint, as far as the source
/// can go on from it, else (no checkpoint, or no table that goes on from it:
/// every one is copied afresh) `slot_start` ([`LogSource::prepare_log`]'s
/// position). Tables that lost their history and stop (`on_lost_position: fail`) get
/// their error, no plan, and a checkpoint that no longer places them in the
/// log, so a later pass stops them again whatever the log then holds, until
/// they are copied again. Returns the position and the plan of each table by
/// its index in `tables`. A table in `reloading` is being copied for a forced
/// reload already, whose flag stays set until that copy is complete: the
/// flag does not ask for another copy then.
#[allow(clippy::too_many_arguments)]
pub(super) async fn plan<S: LogSource, K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    tables: &mut [Table],
    reloading: &HashSet<StreamId>,
    from: Option<&Position>,
    slot_start: &Position,
    source: &S,
    sink: &K,
    state: &St,
) -> Result<(Position, HashMap<usize, Planned>)> {
    let mut plans = HashMap::new();
    // Tables whose copy on the target is current up to `from`.
    let mut on_log = Vec::new();
    // Without a pipeline checkpoint: interrupted copies, by the log position
    // each was made against.
    let mut copies: Vec<(Position, Vec<usize>)> = Vec::new();
    let mut lost: Vec<(usize, Error)> = Vec::new();
    // The checkpoints of the tables that follow the log, by index.
    let mut streaming: HashMap<usize, Checkpoint> = HashMap::new();
    for (i, t) in tables.iter().enumerate() {
        if t.error.is_some() {
            continue;
        }
        // Read, not taken: the flag is cleared once the copy is complete, so
        // a copy cut short (a failure, a stop, a crash) is made again, from
        // the start, by the next pass. A reload asked for again while this
        // one copies is answered by it.
        let forced = !reloading.contains(&t.stream)
            && state.flag(&t.stream, Flag::ForceFullLoad).await? == Some(true);
        if forced {
            tracing::info!(stream = %t.stream, "forced full load");
            sink.reset(&t.stream).await?;
            state.remove_checkpoint(&t.stream).await?;
            plans.insert(
                i,
                Planned {
                    plan: Plan::Copy,
                    forced,
                },
            );
            continue;
        }
        let checkpoint = sink.checkpoint(&t.stream).await?;
        let plan = match checkpoint {
            Some(c)
                if from.is_some() && matches!(c.phase, Phase::Streaming { position: Some(_) }) =>
            {
                on_log.push(i);
                streaming.insert(i, c.clone());
                Plan::Stream(c)
            }
            // A complete copy that has no place in the log: it stopped
            // following the log when the log lost its history (or a full load
            // copied it), so changes to it may be missing.
            Some(c) if from.is_some() && matches!(c.phase, Phase::Streaming { position: None }) => {
                let e = Error::new(
                    ErrorKind::PositionLost,
                    "the table's copy on the target no longer follows the pipeline's change log \
                     (the log lost the table's history earlier, or a full load copied it)",
                )
                .table(&t.source.name);
                streaming.insert(i, c);
                lost.push((i, e));
                continue;
            }
            Some(c) => match &c.phase {
                Phase::Snapshot {
                    resume_position: Some(rp),
                    ..
                } => {
                    match from {
                        Some(_) => on_log.push(i),
                        None => match copies.iter_mut().find(|(p, _)| p == rp) {
                            Some((_, group)) => group.push(i),
                            None => copies.push((rp.clone(), vec![i])),
                        },
                    }
                    Plan::Resume(c)
                }
                _ => Plan::Copy,
            },
            None => Plan::Copy,
        };
        plans.insert(
            i,
            Planned {
                plan,
                forced: false,
            },
        );
    }
    let schemas = |of: &[usize], tables: &[Table]| -> Vec<TableSchema> {
        of.iter().map(|&i| (*tables[i].source).clone()).collect()
    };
    let start = match from {
        Some(from) if !on_log.is_empty() => {
            let r = source
                .resume(pipeline, from, &schemas(&on_log, tables))
                .await?;
            for (name, e) in r.lost {
                if let Some(&i) = on_log.iter().find(|&&i| tables[i].source.name == name) {
                    lost.push((i, e));
                }
            }
            r.from
        }
        // Every table is copied afresh (a resync of the whole pipeline, or
        // tables that stopped and lost their checkpoints): none needs the log
        // before now, so it is read from where a fresh copy starts, not
        // replayed from the checkpoint. Replaying it would read again what
        // stopped a table (a row image it cannot decode) and stop it again,
        // copy after copy.
        Some(_) => slot_start.clone(),
        None => {
            // An interrupted copy resumes when the log still holds what came
            // after the position it was made against, and the log is read
            // from there: its rows copied before the interruption miss the
            // changes since (a source whose `prepare_log` gives its head, as
            // a binlog reader does, would skip them). One position starts the
            // log, so copies made against another start again.
            let mut start = slot_start.clone();
            for (n, (rp, group)) in copies.iter().enumerate() {
                if n > 0 {
                    for &i in group {
                        plans.insert(
                            i,
                            Planned {
                                plan: Plan::Copy,
                                forced: false,
                            },
                        );
                    }
                    continue;
                }
                let r = source.resume(pipeline, rp, &schemas(group, tables)).await?;
                if r.lost.len() < group.len() {
                    start = r.from;
                }
                for (name, e) in r.lost {
                    if let Some(&i) = group.iter().find(|&&i| tables[i].source.name == name) {
                        lost.push((i, e));
                    }
                }
            }
            start
        }
    };
    for (i, cause) in lost {
        let t = &mut tables[i];
        let copying = plans
            .get(&i)
            .is_some_and(|p| matches!(p.plan, Plan::Resume(_)));
        if copying {
            // It was never complete: its copy starts again, whatever the policy.
            tracing::warn!(
                stream = %t.stream,
                error = %cause,
                "the interrupted copy was made against log history the source no longer has: \
                 copying the table from the start"
            );
            plans.insert(
                i,
                Planned {
                    plan: Plan::Copy,
                    forced: false,
                },
            );
            continue;
        }
        match spec.on_lost_position {
            OnLostPosition::Resnapshot => {
                tracing::warn!(
                    stream = %t.stream,
                    error = %cause,
                    "the source's log lost the table's history: copying it again \
                     (on_lost_position: resnapshot); the pipeline's other tables go on"
                );
                plans.insert(
                    i,
                    Planned {
                        plan: Plan::Copy,
                        forced: false,
                    },
                );
            }
            OnLostPosition::Fail => {
                plans.remove(&i);
                // Its copy stays as it is, with no place in the log any more:
                // written before the pipeline's checkpoint moves past the loss.
                if let Some(c) = streaming.remove(&i) {
                    let cp = Checkpoint {
                        phase: Phase::Streaming { position: None },
                        ..c
                    };
                    sink.apply(Batch::default(), &cp).await?;
                }
                let e = lost_error(pipeline, &t.source, cause);
                tracing::error!(pipeline, table = %t.source.name, error = %e, "table stream failed");
                t.error = Some(e);
            }
        }
    }
    Ok((start, plans))
}

/// The error of a table that lost its place in the log and stops: what
/// happened and the fix.
fn lost_error(pipeline: &str, table: &TableSchema, cause: Error) -> Error {
    // The command names the table by its key, which is unambiguous.
    let key = table.name.key();
    let arg = if key.contains('"') || key.contains(' ') {
        format!("'{}'", key.replace('\'', "'\\''"))
    } else {
        key
    };
    Error::new(
        ErrorKind::PositionLost,
        format!(
            "the source's change log no longer holds this table's changes since the pipeline's \
             checkpoint, so the target may lack some of them; the table stopped while the \
             pipeline's other tables go on. Copy it again with \
             `siphon sync resync {pipeline} --table {arg}` (or set `on_lost_position: resnapshot` \
             on the pipeline to have such tables copied again by themselves)"
        ),
    )
    .table(&table.name)
    .source(cause)
}
