//! Changes of a table without a key, applied exactly: inserts are appended
//! (a run of them in multi-row statements), and each update or delete
//! changes exactly one row equal to the old row (`<=>`, NULL-safe, over every
//! written column, `LIMIT 1`), so rows that repeat stay as many as at the
//! source. Text is equal byte for byte, not under the target column's
//! collation: with `utf8mb4_general_ci` (PAD SPACE) 'a' would find 'A' and
//! 'x' would find 'x '. Such updates and deletes take a statement each: rows
//! have no key to batch them by.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::{ApplyStats, Change, Error, Op, Result, Row, TableSchema, TypeKind, Value};

use super::apply::upsert;
use super::encode;
use super::{write_err, TargetTable};
use crate::conn::{ident, Flavor};

/// `c1 <=> v1 AND …` over the written columns of `row`; text compared byte
/// for byte ([`text_equal`]).
fn equal_to(t: &TargetTable, table: &TableSchema, row: &Row, flavor: Flavor) -> Result<String> {
    let mut terms = Vec::with_capacity(t.write.len());
    for &i in &t.write {
        let mut v = String::new();
        encode::literal(&row[i], &mut v).map_err(|why| {
            Error::bad_input(format!("a value does not fit the MySQL target: {why}"))
                .table(&table.name)
                .column(&t.columns[i])
        })?;
        // MySQL's json compares with a document, not with text.
        if t.json[i] && flavor == Flavor::MySql && v != "NULL" {
            v = format!("CAST({v} AS JSON)");
        }
        let column = ident(&t.columns[i]);
        let kind = table.columns.get(i).map(|c| &c.data_type.kind);
        terms.push(match (&row[i], kind) {
            (Value::Text(_), Some(kind)) if !t.json[i] => text_equal(&column, &v, kind),
            _ => format!("{column} <=> {v}"),
        });
    }
    Ok(if terms.is_empty() {
        "TRUE".to_string()
    } else {
        terms.join(" AND ")
    })
}

/// `column <=> text` byte for byte, for a text `literal` in a column of
/// `kind`: both sides as utf8mb4 (the session's character set; a latin1
/// column converts without loss) cast to binary strings, whose comparison
/// knows no case, accent or trailing-space padding. The plain `<=>` stays
/// before it, so an index on the column still finds the candidates. A
/// fixed-length text (`char(n)`) drops its trailing spaces first, on both
/// sides: MySQL's `char` returns its values without them, and PostgreSQL's
/// `char(n)` pads with them. Columns of other kinds, whose text is a
/// value's form (a time, a number), keep `<=>` alone.
fn text_equal(column: &str, literal: &str, kind: &TypeKind) -> String {
    let bytes = |e: &str| format!("CAST(CONVERT({e} USING utf8mb4) AS BINARY)");
    match kind {
        TypeKind::Text { .. } | TypeKind::Enum { .. } => format!(
            "{column} <=> {literal} AND {} <=> {}",
            bytes(column),
            bytes(literal)
        ),
        TypeKind::FixedText { .. } => {
            let trimmed = format!("RTRIM({literal})");
            format!(
                "{column} <=> {trimmed} AND {} <=> {}",
                bytes(&format!("RTRIM({column})")),
                bytes(&trimmed)
            )
        }
        _ => format!("{column} <=> {literal}"),
    }
}

/// Applies `changes` (all of one table without a key, in order) in the open
/// transaction.
pub(super) async fn apply(
    conn: &mut Conn,
    t: &TargetTable,
    table: &Arc<TableSchema>,
    changes: &[&Change],
    flavor: Flavor,
) -> Result<ApplyStats> {
    let mut stats = ApplyStats::default();
    let mut missed = 0u64;
    let mut i = 0;
    while i < changes.len() {
        match &changes[i].op {
            Op::Insert(_) => {
                let mut rows: Vec<&Row> = Vec::new();
                while let Some(Op::Insert(r)) = changes.get(i).map(|c| &c.op) {
                    rows.push(r);
                    i += 1;
                }
                stats.inserted += upsert(conn, t, table, &rows).await?.0;
                continue;
            }
            Op::Update { before, after } => {
                let before = before.as_ref().ok_or_else(|| {
                    Error::bad_input(
                        "an update of a table without a key came without its old row, so siphon \
                         cannot tell which row changed: give the table a primary key at the source \
                         (or, from PostgreSQL, run ALTER TABLE … REPLICA IDENTITY FULL), then copy \
                         the table again (`siphon sync resync`)",
                    )
                    .table(&table.name)
                })?;
                let mut sets = Vec::new();
                for &k in t.write.iter().filter(|&&k| before[k] != after[k]) {
                    let mut v = String::new();
                    encode::literal(&after[k], &mut v).map_err(|why| {
                        Error::bad_input(format!("a value does not fit the MySQL target: {why}"))
                            .table(&table.name)
                            .column(&t.columns[k])
                    })?;
                    sets.push(format!("{} = {v}", ident(&t.columns[k])));
                }
                let equal = equal_to(t, table, before, flavor)?;
                let n = if sets.is_empty() {
                    let found: Option<u8> = conn
                        .query_first(format!("SELECT 1 FROM {} WHERE {equal} LIMIT 1", t.name))
                        .await
                        .map_err(|e| write_err(e, table, "reading"))?;
                    u64::from(found.is_some())
                } else {
                    conn.query_drop(format!(
                        "UPDATE {} SET {} WHERE {equal} LIMIT 1",
                        t.name,
                        sets.join(", ")
                    ))
                    .await
                    .map_err(|e| write_err(e, table, "updating"))?;
                    conn.affected_rows()
                };
                stats.updated += n;
                missed += 1 - n.min(1);
            }
            Op::Delete(row) => {
                let equal = equal_to(t, table, row, flavor)?;
                conn.query_drop(format!("DELETE FROM {} WHERE {equal} LIMIT 1", t.name))
                    .await
                    .map_err(|e| write_err(e, table, "deleting from"))?;
                let n = conn.affected_rows();
                stats.deleted += n;
                missed += 1 - n.min(1);
            }
            Op::Truncate => {
                conn.query_drop(format!("DELETE FROM {}", t.name))
                    .await
                    .map_err(|e| write_err(e, table, "emptying"))?;
                stats.emptied += conn.affected_rows();
            }
            Op::Schema(_) => {
                return Err(
                    Error::internal("schema changes are applied through prepare")
                        .table(&table.name),
                )
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
