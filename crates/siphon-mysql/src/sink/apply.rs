//! Applying a batch of changes in the open transaction: grouped by table, and
//! within a table reduced to what each key ends as (the last change of a key
//! decides it: an upsert writes the whole row, a delete removes it), then
//! written as batched `DELETE … IN` and multi-row `INSERT … ON DUPLICATE KEY
//! UPDATE`, never a statement per row. A table with a unique key or index
//! beside its row key has every key the batch writes or deletes deleted
//! first, then its final rows written by plain `INSERT`: the rows left and the
//! rows written are the source's state after the batch, which satisfies every
//! unique index, where an upsert could collide with a row that gives its
//! value up later in the batch, or update the row a secondary unique key
//! matched instead of the one of its key. An update that changed a row's key
//! deletes the old key; a truncate empties the table with `DELETE` (MySQL's
//! `TRUNCATE` would commit the transaction) and drops what came before it.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::{
    key_bytes, ApplyStats, Change, Error, Op, Result, Row, TableName, TableSchema, Value,
};

use super::encode;
use super::load::{execute, Forms};
use super::{write_err, TargetTable, STATEMENT_BYTES};
use crate::conn::{column_list, ident, Flavor};

/// What a key ends as in a batch.
enum Last<'a> {
    Upsert(&'a Row),
    Delete(&'a Row),
}

/// One table's changes, reduced.
struct Plan<'a> {
    table: &'a Arc<TableSchema>,
    /// Empty the table first.
    truncate: bool,
    /// Keys by their encoding, with the position of their last change (the
    /// order upserts are written in) and what they end as.
    last: HashMap<Vec<u8>, (usize, Last<'a>)>,
}

/// Applies `changes` (their tables prepared as `targets`) in the open
/// transaction.
pub(super) async fn apply(
    conn: &mut Conn,
    targets: &HashMap<TableName, Arc<TargetTable>>,
    changes: &[Change],
    flavor: Flavor,
) -> Result<ApplyStats> {
    let mut stats = ApplyStats::default();
    // Tables in the order they first appear, each with its changes in order.
    let mut groups: Vec<(&Arc<TableSchema>, Vec<&Change>)> = Vec::new();
    for c in changes {
        match groups.iter_mut().find(|(t, _)| t.name == c.table.name) {
            Some((_, g)) => g.push(c),
            None => groups.push((&c.table, vec![c])),
        }
    }
    for (table, group) in groups {
        let t = targets
            .get(&table.name)
            .ok_or_else(|| Error::internal("the table was not prepared").table(&table.name))?;
        for c in &group {
            if let Op::Insert(r) | Op::Update { after: r, .. } | Op::Delete(r) = &c.op {
                t.check_shape(r, table)?;
            }
        }
        if t.key.is_empty() {
            stats += super::exact::apply(conn, t, table, &group, flavor).await?;
            continue;
        }
        let plan = reduce(t, table, &group)?;
        stats += write(conn, t, plan).await?;
    }
    Ok(stats)
}

/// Reduces one table's changes to what each key ends as.
fn reduce<'a>(
    t: &TargetTable,
    table: &'a Arc<TableSchema>,
    group: &[&'a Change],
) -> Result<Plan<'a>> {
    let mut plan = Plan {
        table,
        truncate: false,
        last: HashMap::new(),
    };
    for (n, c) in group.iter().enumerate() {
        match &c.op {
            Op::Insert(row) => {
                plan.last
                    .insert(key_bytes(row, &t.key), (n, Last::Upsert(row)));
            }
            Op::Update { before, after } => {
                let new = key_bytes(after, &t.key);
                if let Some(before) = before {
                    let old = key_bytes(before, &t.key);
                    if old != new {
                        plan.last.insert(old, (n, Last::Delete(before)));
                    }
                }
                plan.last.insert(new, (n, Last::Upsert(after)));
            }
            Op::Delete(row) => {
                plan.last
                    .insert(key_bytes(row, &t.key), (n, Last::Delete(row)));
            }
            Op::Truncate => {
                plan.truncate = true;
                plan.last.clear();
            }
            Op::Schema(_) => {
                return Err(
                    Error::internal("schema changes are applied through prepare")
                        .table(&table.name),
                )
            }
        }
    }
    Ok(plan)
}

/// Writes a table's plan: the emptying, the deletes, then the upserts in the
/// order of their last change.
async fn write(conn: &mut Conn, t: &TargetTable, plan: Plan<'_>) -> Result<ApplyStats> {
    let table = &**plan.table;
    let mut stats = ApplyStats::default();
    if plan.truncate {
        conn.query_drop(format!("DELETE FROM {}", t.name))
            .await
            .map_err(|e| write_err(e, table, "emptying"))?;
        stats.emptied += conn.affected_rows();
    }
    let mut entries: Vec<(usize, Last<'_>)> = plan.last.into_values().collect();
    entries.sort_by_key(|(n, _)| *n);
    let mut deletes = Vec::new();
    let mut upserts = Vec::new();
    for (_, last) in entries {
        match last {
            Last::Delete(r) => deletes.push(r),
            Last::Upsert(r) => upserts.push(r),
        }
    }
    if let Some(k) = sortable_key(t, table) {
        // In key order the server walks the primary key's pages once, in
        // order, instead of jumping about the table for each row: less work
        // for the target per row. Only where no other unique key could make
        // the order of two rows matter.
        let at = |r: &&Row| match &r[k] {
            Value::Int64(n) => *n,
            Value::Int32(n) => i64::from(*n),
            Value::Int16(n) => i64::from(*n),
            _ => 0,
        };
        let ints = |rows: &[&Row]| {
            rows.iter()
                .all(|r| matches!(r[k], Value::Int64(_) | Value::Int32(_) | Value::Int16(_)))
        };
        if ints(&upserts) && ints(&deletes) {
            upserts.sort_by_key(at);
            deletes.sort_by_key(at);
        }
    }
    stats.deleted += delete(conn, t, table, &deletes).await?;
    if table.unique_besides(&t.key) {
        // Rows that trade unique values: none may be written while another
        // still holds its value, so the rows go first and come back whole.
        let replaced = delete(conn, t, table, &upserts).await?;
        let inserted = insert(conn, t, table, &upserts, false).await?.0;
        stats.updated += replaced.min(inserted);
        stats.inserted += inserted.saturating_sub(replaced);
        return Ok(stats);
    }
    let (inserted, updated) = upsert(conn, t, table, &upserts).await?;
    stats.inserted += inserted;
    stats.updated += updated;
    Ok(stats)
}

/// The column of a one-column key the rows may be written in the order of:
/// the table has no unique key or unique index beside its row key, so rows of
/// distinct keys cannot collide whatever their order.
fn sortable_key(t: &TargetTable, table: &TableSchema) -> Option<usize> {
    match t.key.as_slice() {
        [k] if !table.unique_besides(&t.key) => Some(*k),
        _ => None,
    }
}

/// Appends `(v1, v2, …)` of `row` at `cols` as SQL literals: row values in
/// their columns' `forms`, key values compared in a `WHERE` (no `forms`) as
/// they are.
pub(super) fn tuple(
    out: &mut String,
    row: &Row,
    cols: &[usize],
    t: &TargetTable,
    table: &TableSchema,
    forms: Option<&Forms>,
) -> Result<()> {
    out.push('(');
    for (n, &i) in cols.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let value = match forms {
            Some(f) => f.value(&row[i], i)?,
            None => &row[i],
        };
        encode::literal(value, out).map_err(|why| {
            Error::bad_input(format!("a value does not fit the MySQL target: {why}"))
                .table(&table.name)
                .column(&t.columns[i])
        })?;
    }
    out.push(')');
    Ok(())
}

/// Inserts rows, updating those whose key exists (a plain insert for a table
/// without a key), in statements of at most [`STATEMENT_BYTES`]. Returns
/// (inserted, updated).
pub(crate) async fn upsert(
    conn: &mut Conn,
    t: &TargetTable,
    table: &TableSchema,
    rows: &[&Row],
) -> Result<(u64, u64)> {
    insert(conn, t, table, rows, true).await
}

/// Inserts rows in statements of at most [`STATEMENT_BYTES`], updating those
/// whose key exists when `update` (and the table has a key). Returns
/// (inserted, updated).
async fn insert(
    conn: &mut Conn,
    t: &TargetTable,
    table: &TableSchema,
    rows: &[&Row],
    update: bool,
) -> Result<(u64, u64)> {
    if rows.is_empty() {
        return Ok((0, 0));
    }
    let head = format!(
        "INSERT INTO {} ({}) VALUES ",
        t.name,
        column_list(t.write.iter().map(|&i| t.columns[i].as_str()))
    );
    let tail = if t.key.is_empty() || !update {
        String::new()
    } else {
        let sets: Vec<String> = t
            .write
            .iter()
            .filter(|i| !t.key.contains(i))
            .map(|&i| format!("{c} = VALUES({c})", c = ident(&t.columns[i])))
            .collect();
        match sets.is_empty() {
            // Every column is in the key: a row already there stays.
            true => {
                let k = ident(&t.columns[t.key[0]]);
                format!(" ON DUPLICATE KEY UPDATE {k} = {k}")
            }
            false => format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", ")),
        }
    };
    let forms = Forms::of(table);
    let (mut inserted, mut updated) = (0, 0);
    let mut sql = String::with_capacity(STATEMENT_BYTES.min(rows.len() * 64 + head.len()));
    let mut count = 0u64;
    for (n, row) in rows.iter().enumerate() {
        if count == 0 {
            sql.clear();
            sql.push_str(&head);
        } else {
            sql.push_str(", ");
        }
        tuple(&mut sql, row, &t.write, t, table, Some(&forms))?;
        count += 1;
        if sql.len() >= STATEMENT_BYTES || n + 1 == rows.len() {
            sql.push_str(&tail);
            let zeroes = forms.take_zeroes(t);
            let fail = |e| write_err(e, table, "writing");
            let (affected, info) = execute(conn, &sql, table, &zeroes, fail).await?;
            // Affected rows count an inserted row once, an updated one twice
            // (`Duplicates`), and one left unchanged not at all.
            let dup = duplicates(&info).unwrap_or(u64::from(affected >= 2));
            let fresh = affected.saturating_sub(2 * dup).min(count);
            inserted += fresh;
            updated += count - fresh;
            count = 0;
        }
    }
    Ok((inserted, updated))
}

/// `Duplicates: N` of a multi-row insert's info.
fn duplicates(info: &str) -> Option<u64> {
    let at = info.find("Duplicates:")?;
    info[at + "Duplicates:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Deletes rows by key, `(k1, k2) IN ((…), …)` in statements of at most
/// [`STATEMENT_BYTES`]. Returns how many rows went.
async fn delete(
    conn: &mut Conn,
    t: &TargetTable,
    table: &TableSchema,
    rows: &[&Row],
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let keys = column_list(t.key.iter().map(|&i| t.columns[i].as_str()));
    let head = match t.key.len() {
        1 => format!("DELETE FROM {} WHERE {keys} IN (", t.name),
        _ => format!("DELETE FROM {} WHERE ({keys}) IN (", t.name),
    };
    let mut deleted = 0;
    let mut sql = String::new();
    let mut count = 0;
    for (n, row) in rows.iter().enumerate() {
        if count == 0 {
            sql.clear();
            sql.push_str(&head);
        } else {
            sql.push_str(", ");
        }
        if t.key.len() == 1 {
            let mut one = String::new();
            tuple(&mut one, row, &t.key, t, table, None)?;
            sql.push_str(&one[1..one.len() - 1]);
        } else {
            tuple(&mut sql, row, &t.key, t, table, None)?;
        }
        count += 1;
        if sql.len() >= STATEMENT_BYTES || n + 1 == rows.len() {
            sql.push(')');
            conn.query_drop(sql.as_str())
                .await
                .map_err(|e| write_err(e, table, "deleting from"))?;
            deleted += conn.affected_rows();
            count = 0;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::duplicates;

    #[test]
    fn duplicates_are_read_from_the_info() {
        assert_eq!(
            duplicates("Records: 3  Duplicates: 1  Warnings: 0"),
            Some(1)
        );
        assert_eq!(duplicates(""), None);
    }
}
