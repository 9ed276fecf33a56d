//! Table isolation in a shared change log: a table whose changes the target
//! refuses stops alone, and the log goes on for the others.

use std::collections::HashMap;

use siphon_core::{Error, ErrorKind, Result, Sink, StateStore, StreamState, TableName};

use super::{Drained, Table};

/// What a pass does when the stream could not read one table's changes (a
/// row it cannot decode, rows of a shape it cannot map): that table stops and
/// the log is read again from the last committed batch without it. An error
/// that names no streaming table, or that the retry policy retries soon,
/// ends the pass.
pub(super) async fn read_failed<K: Sink, St: StateStore>(
    pipeline: &str,
    e: Error,
    tables: &mut [Table],
    routes: &mut HashMap<TableName, usize>,
    sink: &K,
    state: &St,
) -> Result<Drained> {
    if !isolatable(&e) {
        return Err(e);
    }
    let Some(name) = e.table_name().map(str::to_string) else {
        return Err(e);
    };
    let Some((key, i)) = routes
        .iter()
        .find(|(n, _)| n.to_string() == name)
        .map(|(n, &i)| (n.clone(), i))
    else {
        return Err(e);
    };
    routes.remove(&key);
    stop_table(pipeline, &mut tables[i], e, sink, state).await;
    Ok(Drained::Reopen)
}

/// Whether an error applying a batch may be one table's alone: the target
/// refused its data or its schema, or the user lacks a privilege on it, which
/// fails again until someone fixes it (the retry policy never retries it on
/// its own). Errors the policy retries soon (connection losses, deadlocks,
/// timeouts, server trouble), the state store, lost leases and stop requests
/// concern every table, and are handled for the pass as a whole.
pub(super) fn isolatable(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::BadInput | ErrorKind::Privilege)
}

/// The streaming table `e` concerns: the one it names (by target or source
/// name), or the only one the failed batch touched.
pub(super) fn culprit(e: &Error, tables: &[Table], touched: &[usize]) -> Option<usize> {
    if let Some(name) = e.table_name() {
        let named = |t: &TableName| t.to_string() == name;
        if let Some(&i) = touched
            .iter()
            .find(|&&i| named(&tables[i].target.name) || named(&tables[i].source.name))
        {
            return Some(i);
        }
    }
    match touched {
        [only] => Some(*only),
        _ => None,
    }
}

/// Stops one table of a shared log: records why, with the fix, in its state
/// and forgets its checkpoint, since the log moves on without it. It stays out
/// of the log for the rest of this process, until `siphon sync resync` copies
/// it again; the next time siphon starts the pipeline (a new `siphon run`, a
/// restart of the service) copies it again from the start by itself, as its
/// checkpoint is gone. The message says both, so nothing happens behind the
/// operator's back and no change is lost: a copy holds every row the log
/// skipped. The other tables are not touched.
pub(super) async fn stop_table<K: Sink, St: StateStore>(
    pipeline: &str,
    t: &mut Table,
    cause: Error,
    sink: &K,
    state: &St,
) {
    let table = t.source.name.to_string();
    // The command names the table by its key, which is unambiguous.
    let key = t.source.name.key();
    let arg = if key.contains('"') || key.contains(' ') {
        format!("'{}'", key.replace('\'', "'\\''"))
    } else {
        key
    };
    let e = Error::new(
        cause.kind(),
        format!(
            "this table stopped streaming while the pipeline's other tables go on, and the log \
             moves on without it; fix the cause, then copy it again with \
             `siphon sync resync {pipeline} --table {arg}` (siphon also copies it again from the \
             start by itself the next time it starts this pipeline: the next `siphon run`, or a \
             restart of the service)"
        ),
    )
    .table(&table)
    .source(cause);
    tracing::error!(pipeline, table = %table, error = %e, "table stream failed");
    if let Err(r) = sink.reset(&t.stream).await {
        tracing::warn!(stream = %t.stream, error = %r, "could not reset the checkpoint");
    }
    let failed = StreamState::failed(&e, chrono::Utc::now(), 1);
    if let Err(r) = state.set_stream_state(&t.stream, &failed).await {
        tracing::warn!(stream = %t.stream, error = %r, "could not record the table's failure");
    }
    t.error = Some(e);
    t.stopped = true;
}
