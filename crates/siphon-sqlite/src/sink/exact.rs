//! Changes of a table without a key, applied exactly: inserts are appended,
//! and each update or delete changes exactly one row equal to the old row
//! (`IS`, which is NULL-safe, over every column), found by its `rowid`, so rows
//! that repeat stay as many as at the source.

use rusqlite::Transaction;
use siphon_core::{Error, Row, TableSchema};

use super::{bind_fitting, TableSql, WriteError};
use crate::conn::quote;

/// The condition that a row equals the values bound from `?{from + 1}` on.
fn equal_from(t: &TableSchema, from: usize) -> String {
    t.columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} IS ?{}", quote(&c.name), from + i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `UPDATE` of one row equal to the old values (`?n+1`…) to the new ones (`?1`…).
pub(super) fn update_sql(t: &TableSchema) -> String {
    let name = quote(&t.name.name);
    let sets: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = ?{}", quote(&c.name), i + 1))
        .collect();
    format!(
        "UPDATE {name} SET {} WHERE rowid = (SELECT rowid FROM {name} WHERE {} LIMIT 1)",
        sets.join(", "),
        equal_from(t, t.columns.len())
    )
}

/// `DELETE` of one row equal to the values bound (`?1`…).
pub(super) fn delete_sql(t: &TableSchema) -> String {
    let name = quote(&t.name.name);
    format!(
        "DELETE FROM {name} WHERE rowid = (SELECT rowid FROM {name} WHERE {} LIMIT 1)",
        equal_from(t, 0)
    )
}

/// Binds `rows` one after the other from `?1`, each value in the form its
/// column keeps (so it equals the stored one), and runs `sql`.
fn run(
    tx: &Transaction<'_>,
    sql: &TableSql,
    statement: &str,
    rows: &[&Row],
    scratch: &mut String,
) -> std::result::Result<u64, WriteError> {
    let mut st = tx.prepare_cached(statement)?;
    let mut index = 1;
    for row in rows {
        if row.len() != sql.ncols {
            return Err(rusqlite::Error::InvalidParameterCount(row.len(), sql.ncols).into());
        }
        for (i, v) in row.iter().enumerate() {
            bind_fitting(&mut st, index, v, sql.affinity[i], i, scratch)?;
            index += 1;
        }
    }
    Ok(st.raw_execute()? as u64)
}

/// Updates one row equal to `before` to `after`; returns how many changed
/// (0 when the target has no such row).
pub(super) fn update(
    tx: &Transaction<'_>,
    sql: &TableSql,
    t: &TableSchema,
    before: Option<&Row>,
    after: &Row,
    scratch: &mut String,
) -> std::result::Result<u64, WriteError> {
    let Some(before) = before else {
        return Err(WriteError::Other(
            Error::bad_input(
                "an update of a table without a key came without its old row, so siphon cannot \
                 tell which row changed: log whole old rows at the source (PostgreSQL: ALTER \
                 TABLE … REPLICA IDENTITY FULL), then copy the table again (`siphon sync resync`)",
            )
            .table(&t.name),
        ));
    };
    let statement = sql
        .update
        .as_deref()
        .ok_or_else(|| WriteError::Other(Error::internal("no update statement").table(&t.name)))?;
    run(tx, sql, statement, &[after, before], scratch)
}

/// Deletes one row equal to `row`; returns how many went (0 or 1).
pub(super) fn delete(
    tx: &Transaction<'_>,
    sql: &TableSql,
    row: &Row,
    scratch: &mut String,
) -> std::result::Result<u64, WriteError> {
    run(tx, sql, &sql.delete, &[row], scratch)
}
