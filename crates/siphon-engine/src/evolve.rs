//! A target table brought to its source table's shape: prepared by the sink,
//! then the rows it held already given the source's values of the columns it
//! just gained (a column added with a default, volatile or not, holds values
//! at the source that its log never carried).

use siphon_core::{Result, SchemaOptions, Sink, Source, TableSchema};

/// Rows read from the source per fill of added columns.
const FILL_CHUNK: usize = 5_000;

/// Prepares `target` on the sink (see [`Sink::prepare`]), then fills the
/// columns that wait for values ([`Sink::unfilled`]) from `source`'s current
/// rows of `table` (its shape at the source), in key order. A later change in
/// the log to a row filled this way is applied after it, so the target
/// converges on the source.
pub(crate) async fn prepare<S: Source, K: Sink>(
    source: &S,
    sink: &K,
    table: &TableSchema,
    target: &TableSchema,
    options: &SchemaOptions,
) -> Result<()> {
    sink.prepare(target, options).await?;
    let columns = sink.unfilled(target).await?;
    if columns.is_empty() {
        return Ok(());
    }
    tracing::info!(table = %table.name, columns = columns.len(), "filling the rows of added columns from the source");
    let mut after = None;
    loop {
        let chunk = source.read_chunk(table, after.as_ref(), FILL_CHUNK).await?;
        let done = chunk.rows.len() < FILL_CHUNK || chunk.last.is_none();
        sink.fill(target, &columns, chunk.rows, done).await?;
        if done {
            return Ok(());
        }
        after = chunk.last;
    }
}
