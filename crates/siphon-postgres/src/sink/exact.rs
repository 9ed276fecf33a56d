//! Changes of a table without a key, applied exactly: inserts are appended,
//! and each update or delete changes exactly one row equal to the old row
//! (NULL-safe, over every written column), so rows that repeat stay as many
//! as at the source. No upsert, and no staging table: rows are found by value.

use std::sync::Arc;

use siphon_core::{ApplyStats, Change, Error, Op, Result, Row, TableSchema, Value};
use tokio_postgres::Transaction;

use super::staging::Staging;
use super::{copy_data, copy_into, TargetTable};
use crate::conn::{column_list, ident, pg_err};
use crate::types::{encode_text, PgType};

/// Types without an equality operator (or whose `=` is not equality of
/// values): their columns are compared by their text.
const COMPARED_AS_TEXT: &[&str] = &[
    "json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle",
];

/// Whether a column of type `ty` is compared by its text.
fn as_text(ty: &PgType) -> bool {
    match &ty.element {
        Some(e) => as_text(e),
        None => COMPARED_AS_TEXT.contains(&ty.name.as_str()),
    }
}

/// The value as a text parameter, `None` for NULL.
fn text_param(ty: &PgType, v: &Value, table: &TableSchema, column: &str) -> Result<Option<String>> {
    if v.is_null() {
        return Ok(None);
    }
    let mut s = String::new();
    encode_text(ty, v, &mut s).map_err(|e| {
        Error::bad_input(format!("a value does not fit the target column: {e}"))
            .table(&table.name)
            .column(column)
    })?;
    Ok(Some(s))
}

/// The condition that a row of the target equals `row` in every written
/// column, with its parameters numbered from `first` (a NULL takes none); and
/// those parameters.
fn equal_to(
    t: &TargetTable,
    table: &TableSchema,
    row: &Row,
    first: usize,
) -> Result<(String, Vec<Option<String>>)> {
    let mut terms = Vec::with_capacity(t.write.len());
    let mut params = Vec::with_capacity(t.write.len());
    for &i in &t.write {
        let (c, ty) = (ident(&t.columns[i]), &t.types[i]);
        if row[i].is_null() {
            terms.push(format!("{c} IS NULL"));
            continue;
        }
        let p = format!("${}::text::{}", first + params.len(), ty.name);
        terms.push(match as_text(ty) {
            true => format!("{c}::text = ({p})::text"),
            false => format!("{c} = {p}"),
        });
        params.push(text_param(ty, &row[i], table, &t.columns[i])?);
    }
    Ok((terms.join(" AND "), params))
}

/// Applies `changes` (inserts, updates and deletes of one table without a
/// key, in order) in the open transaction.
pub(super) async fn apply(
    tx: &Transaction<'_>,
    t: &TargetTable,
    table: &Arc<TableSchema>,
    changes: &[&Change],
    staging: &Staging,
) -> Result<ApplyStats> {
    let werr = |e| pg_err(e, &format!("writing {}", table.name)).table(&table.name);
    let mut stats = ApplyStats::default();
    let mut missed = 0u64;
    let mut i = 0;
    while i < changes.len() {
        match &changes[i].op {
            Op::Insert(_) => {
                // A run of inserts is one COPY.
                let mut rows: Vec<&Row> = Vec::new();
                while let Some(Change {
                    op: Op::Insert(r), ..
                }) = changes.get(i).copied()
                {
                    rows.push(r);
                    i += 1;
                }
                let cols = column_list(t.write.iter().map(|&k| t.columns[k].as_str()));
                let (data, format) = copy_data(t, &rows, &t.write, table)?;
                let copy = staging
                    .statement(
                        tx,
                        &format!(
                            "COPY {} ({cols}) FROM STDIN (FORMAT {})",
                            t.name,
                            format.as_sql()
                        ),
                    )
                    .await
                    .map_err(werr)?;
                stats.inserted += copy_into(tx, &copy, data).await.map_err(werr)?;
                continue;
            }
            Op::Update { before, after } => {
                let before = before.as_ref().ok_or_else(|| {
                    Error::bad_input(
                        "an update of a table without a key came without its old row, so siphon \
                         cannot tell which row changed: run ALTER TABLE … REPLICA IDENTITY FULL at \
                         the source, then copy the table again (`siphon sync resync`)",
                    )
                    .table(&table.name)
                })?;
                let changed: Vec<usize> = t
                    .write
                    .iter()
                    .copied()
                    .filter(|&k| before[k] != after[k])
                    .collect();
                let mut params = Vec::with_capacity(changed.len() + t.write.len());
                let mut sets = Vec::with_capacity(changed.len());
                for &k in &changed {
                    let ty = &t.types[k];
                    sets.push(format!(
                        "{} = ${}::text::{}",
                        ident(&t.columns[k]),
                        params.len() + 1,
                        ty.name
                    ));
                    params.push(text_param(ty, &after[k], table, &t.columns[k])?);
                }
                let (equal, more) = equal_to(t, table, before, params.len() + 1)?;
                params.extend(more);
                let n = if sets.is_empty() {
                    // Nothing written changed: the row is there or it is not.
                    let sql = format!(
                        "SELECT count(*) FROM (SELECT 1 FROM {} WHERE {equal} LIMIT 1) s",
                        t.name
                    );
                    let stmt = staging.statement(tx, &sql).await.map_err(werr)?;
                    let refs = refs(&params);
                    tx.query_one(&stmt, &refs)
                        .await
                        .map_err(werr)?
                        .get::<_, i64>(0) as u64
                } else {
                    let sql = format!(
                        "UPDATE {t} SET {} WHERE (tableoid, ctid) = \
                         (SELECT tableoid, ctid FROM {t} WHERE {equal} LIMIT 1)",
                        sets.join(", "),
                        t = t.name
                    );
                    let stmt = staging.statement(tx, &sql).await.map_err(werr)?;
                    tx.execute(&stmt, &refs(&params)).await.map_err(werr)?
                };
                stats.updated += n;
                missed += 1 - n.min(1);
            }
            Op::Delete(row) => {
                let (equal, params) = equal_to(t, table, row, 1)?;
                let sql = format!(
                    "DELETE FROM {t} WHERE (tableoid, ctid) = \
                     (SELECT tableoid, ctid FROM {t} WHERE {equal} LIMIT 1)",
                    t = t.name
                );
                let stmt = staging.statement(tx, &sql).await.map_err(werr)?;
                let n = tx.execute(&stmt, &refs(&params)).await.map_err(werr)?;
                stats.deleted += n;
                missed += 1 - n.min(1);
            }
            Op::Truncate | Op::Schema(_) => {
                return Err(Error::internal(
                    "a truncate or a schema change reached the exact apply of a table",
                )
                .table(&table.name))
            }
        }
        i += 1;
    }
    if missed > 0 {
        tracing::warn!(
            table = %table.name,
            changes = missed,
            "updates or deletes of a table without a key found no equal row on the target: \
             the target's copy differs from the source's; copy it again with `siphon sync resync`"
        );
    }
    Ok(stats)
}

/// Parameters as `query` takes them.
fn refs(params: &[Option<String>]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}
