//! A target table brought to its source table's shape: prepared by the sink,
//! then the rows it held already given the source's values of the columns it
//! just gained (a column added with a default, volatile or not, holds values
//! at the source that its log never carried).

use siphon_core::{Result, Row, SchemaOptions, Sink, Source, TableFilter, TableSchema, Value};

/// Gives the rows a target table held before columns were added to it the
/// source's values of those columns, when the sink can fill columns
/// ([`Sink::fill`]) but keeps no record of them ([`Sink::unfilled`] goes by
/// column ids, which a MySQL/MariaDB source has none of): `before` is the
/// target's shape before, `target` its shape now, `table` the source's. The
/// engine calls it once the batch that carried the shape change is applied,
/// so the rows of that batch logged in the older shape (their added columns
/// NULL) do not undo it; later changes in the log are applied after it, so
/// the target converges on the source. A crash between the two leaves those
/// rows waiting for the fill ([`Sink::unfilled`], where the sink records
/// them) until the next start fills them. Does nothing for sinks without
/// fills (the added columns keep the target's default until rows change) and
/// for tables without a key.
pub(crate) async fn fill_added<S: Source, K: Sink>(
    source: &S,
    sink: &K,
    table: &TableSchema,
    target: &TableSchema,
    before: &TableSchema,
) -> Result<()> {
    if has_ids(table) || !sink.capabilities().fill || table.row_key().is_none() {
        return Ok(());
    }
    let mut added: Vec<usize> = target
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            !c.generated
                && !before
                    .columns
                    .iter()
                    .any(|b| b.name.eq_ignore_ascii_case(&c.name))
        })
        .map(|(i, _)| i)
        .collect();
    // Those the sink recorded as waiting are said done once filled.
    let recorded = sink.unfilled(target).await?;
    for &i in &recorded {
        if !added.contains(&i) {
            added.push(i);
        }
    }
    if added.is_empty() {
        return Ok(());
    }
    fill_from_source(source, sink, table, target, &added, !recorded.is_empty()).await
}

/// Whether every column of `table` has a source column id (a PostgreSQL
/// source): its added columns are filled before the rows of the batch that
/// added them, by [`prepare`]; others after that batch, by [`fill_added`].
fn has_ids(table: &TableSchema) -> bool {
    table.columns.iter().all(|c| c.source_id.is_some())
}

/// [`prepare`] for a shape change read from the log, before the batch that
/// carries it is applied. For a table without column ids (a MySQL/MariaDB
/// source), only the sink prepares: the rows of that batch logged in the
/// older shape would undo a fill made now, so [`fill_added`] fills the added
/// columns once the batch is applied (the sink keeps them waiting until then,
/// across a crash too).
pub(crate) async fn reshape<S: Source, K: Sink>(
    source: &S,
    sink: &K,
    table: &TableSchema,
    target: &TableSchema,
    options: &SchemaOptions,
) -> Result<()> {
    match has_ids(table) {
        true => prepare(source, sink, table, target, options).await,
        false => sink.prepare(target, options).await,
    }
}

/// Rows read from the source per fill of added columns.
const FILL_CHUNK: usize = 5_000;

/// Prepares `target` on the sink (see [`Sink::prepare`]), then fills the
/// columns that wait for values ([`Sink::unfilled`]) from `source`'s current
/// rows of `table` (its shape at the source), in key order. A later change in
/// the log to a row filled this way is applied after it, so the target
/// converges on the source. This is also how columns added at the source
/// while siphon was stopped reach the rows the target held: the source's
/// catalog is ahead of the log when siphon starts, so the log never announces
/// them.
pub(crate) async fn prepare<S: Source, K: Sink>(
    source: &S,
    sink: &K,
    table: &TableSchema,
    target: &TableSchema,
    options: &SchemaOptions,
) -> Result<()> {
    sink.prepare(target, options).await?;
    if !sink.capabilities().fill {
        return Ok(());
    }
    let columns = sink.unfilled(target).await?;
    if columns.is_empty() {
        return Ok(());
    }
    fill_from_source(source, sink, table, target, &columns, true).await
}

/// Fills `columns` of `target` from `source`'s current rows of `table` (its
/// shape at the source), in key order, then, with `record`, says them done
/// ([`Sink::unfilled`] listed them).
async fn fill_from_source<S: Source, K: Sink>(
    source: &S,
    sink: &K,
    table: &TableSchema,
    target: &TableSchema,
    columns: &[usize],
    record: bool,
) -> Result<()> {
    let finish = |columns: &[usize]| {
        let columns = columns.to_vec();
        async move {
            match record {
                true => sink.fill(target, &columns, Vec::new(), true).await,
                false => Ok(()),
            }
        }
    };
    // The rows are read in the source's shape of now, which may have moved on
    // from `table`'s (the log lags the catalog), and matched to it by column.
    let filter = TableFilter {
        include: vec![table.name.to_string()],
        exclude: vec![],
    };
    let current = source
        .discover(&filter)
        .await?
        .into_iter()
        .find(|t| t.name == table.name);
    let Some(key) = table.row_key().map(<[usize]>::to_vec) else {
        // Rows without a key cannot be addressed one by one to fill them.
        tracing::warn!(table = %table.name, "the table has no key: the rows the target held before columns were added keep their defaults in them");
        return finish(&[]).await;
    };
    let at: Vec<Option<usize>> = match &current {
        Some(c) => (0..table.columns.len())
            .map(|i| c.same_column(table, i))
            .collect(),
        None => vec![None; table.columns.len()],
    };
    // Columns dropped at the source since have nothing to fill them with.
    let fill: Vec<usize> = columns
        .iter()
        .copied()
        .filter(|&i| at[i].is_some())
        .collect();
    let (Some(current), true) = (current, key.iter().all(|&i| at[i].is_some())) else {
        return finish(&[]).await;
    };
    tracing::info!(table = %table.name, columns = fill.len(), "filling the rows of added columns from the source");
    let mut after = None;
    loop {
        let chunk = source
            .read_chunk(&current, after.as_ref(), FILL_CHUNK)
            .await?;
        let done = chunk.rows.len() < FILL_CHUNK || chunk.last.is_none();
        let rows: Vec<Row> = chunk
            .rows
            .iter()
            .map(|r| {
                at.iter()
                    .map(|j| j.and_then(|j| r.get(j).cloned()).unwrap_or(Value::Null))
                    .collect()
            })
            .collect();
        sink.fill(target, &fill, rows, false).await?;
        if done {
            // Every waiting column is done, including those dropped since.
            return finish(columns).await;
        }
        after = chunk.last;
    }
}
