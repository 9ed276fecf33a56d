//! Incremental polling by a cursor column (timestamp, sequence, version).
//!
//! A poll reads rows ordered by `(cursor, key)` after a watermark (the cursor
//! value and key of the last row read), compared by the server, so rows that
//! share a cursor value are never skipped at a chunk boundary. MySQL shows no
//! portable list of open transactions with their start in UTC, so a pass by a
//! `timestamp` cursor with no `lookback` of its own re-reads
//! [`DEFAULT_LOOKBACK`] behind its watermark, for rows of transactions that
//! committed after a later row was read; sinks absorb the re-read by upserting.

use std::cmp::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use siphon_core::{
    Chunk, CursorSpec, CursorStrategy, Error, Lookback, Position, Result, TableSchema, TypeKind,
    Value,
};

use crate::conn::ident;
use crate::schema::key_list;
use crate::source::{placeholder, select_list, table_sql, MySqlSource};
use crate::types::encode;

/// The window a pass by a timestamp cursor with no `lookback` re-reads.
pub(crate) const DEFAULT_LOOKBACK: Duration = Duration::from_secs(5 * 60);

/// Where polling resumes: cursor and key of the last row read; an empty key
/// means "every row with this cursor value".
#[derive(Debug, Serialize, Deserialize)]
struct Watermark {
    cursor: Value,
    key: Vec<Value>,
}

/// The cursor column's position, or an error when its type cannot be a
/// cursor of the strategy.
fn cursor_column(table: &TableSchema, cursor: &CursorSpec) -> Result<usize> {
    let i = cursor.column_in(table)?;
    let kind = &table.columns[i].data_type.kind;
    let fits = match cursor.strategy {
        CursorStrategy::Timestamp => matches!(
            kind,
            TypeKind::Date | TypeKind::Timestamp | TypeKind::TimestampTz
        ),
        CursorStrategy::Sequence | CursorStrategy::Version => matches!(
            kind,
            TypeKind::Int16 | TypeKind::Int32 | TypeKind::Int64 | TypeKind::Decimal { .. }
        ),
    };
    if !fits {
        return Err(Error::bad_input(format!(
            "a {} column cannot be a `{}` cursor; choose a date, datetime or timestamp column for \
             `timestamp`, an integer column for `sequence` or `version`",
            table.columns[i].native_type, cursor.strategy
        ))
        .table(&table.name)
        .column(&cursor.column));
    }
    Ok(i)
}

/// Up to `limit` rows after `after` in `(cursor, key)` order.
pub(crate) async fn poll(
    source: &MySqlSource,
    table: &TableSchema,
    cursor: &CursorSpec,
    after: Option<&Position>,
    limit: usize,
) -> Result<Chunk> {
    let key = table.require_row_key()?.to_vec();
    let ci = cursor_column(table, cursor)?;
    let after: Option<Watermark> = after.map(|p| p.decode(&table.name)).transpose()?;
    let col = &table.columns[ci];
    let c = ident(&col.name);
    let mark = placeholder(col);
    let param = |v: &Value, i: usize| {
        encode(v).map_err(|e| e.table(&table.name).column(&table.columns[i].name))
    };
    let mut params = Vec::new();
    let filter = match &after {
        None => format!("{c} IS NOT NULL"),
        Some(w) if w.key.is_empty() => {
            params.push(param(&w.cursor, ci)?);
            format!("{c} >= {mark}")
        }
        Some(w) => {
            params.push(param(&w.cursor, ci)?);
            params.push(param(&w.cursor, ci)?);
            let mut marks = vec![mark.clone()];
            for (v, &i) in w.key.iter().zip(&key) {
                params.push(param(v, i)?);
                marks.push(placeholder(&table.columns[i]));
            }
            format!(
                "{c} >= {mark} AND ({c}, {}) > ({})",
                key_list(table, &key),
                marks.join(", ")
            )
        }
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {filter} ORDER BY {c}, {} LIMIT {limit}",
        select_list(table),
        table_sql(table),
        key_list(table, &key)
    );
    let rows = source.rows(table, &sql, params).await?;
    let last = match rows.last() {
        Some(r) => Some(Position::encode(&Watermark {
            cursor: r[ci].clone(),
            key: table.key_of(&key, r),
        })?),
        None => None,
    };
    Ok(Chunk { rows, last })
}

/// A watermark from which polling returns every row with the highest cursor
/// value now; `None` for a table with no cursor value.
pub(crate) async fn cursor_high(
    source: &MySqlSource,
    table: &TableSchema,
    cursor: &CursorSpec,
) -> Result<Option<Position>> {
    let ci = cursor_column(table, cursor)?;
    let col = &table.columns[ci];
    // A one-column table of the cursor decodes the maximum by its kind.
    let one = TableSchema {
        columns: vec![col.clone()],
        primary_key: Vec::new(),
        unique_keys: Vec::new(),
        indexes: Vec::new(),
        objects: Vec::new(),
        ..table.clone()
    };
    let sql = format!("SELECT MAX({}) FROM {}", ident(&col.name), table_sql(table));
    let rows = source.rows(&one, &sql, Vec::new()).await?;
    match rows.into_iter().next().and_then(|r| r.into_iter().next()) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Position::encode(&Watermark {
            cursor: v,
            key: Vec::new(),
        })
        .map(Some),
    }
}

/// The watermark `cursor.lookback` (or, for a timestamp cursor without one,
/// [`DEFAULT_LOOKBACK`]) before `from`.
pub(crate) fn rewind(
    table: &TableSchema,
    cursor: &CursorSpec,
    from: &Position,
) -> Result<Position> {
    let w: Watermark = from.decode(&table.name)?;
    let lookback = match cursor.lookback {
        Some(l) => l,
        None if cursor.strategy == CursorStrategy::Timestamp
            && matches!(
                w.cursor,
                Value::Timestamp(_) | Value::TimestampTz(_) | Value::Date(_)
            ) =>
        {
            Lookback::Duration(DEFAULT_LOOKBACK)
        }
        None => return Ok(from.clone()),
    };
    let bad = || {
        Error::bad_input(format!(
            "cannot apply lookback {lookback:?} to this cursor; remove `lookback`"
        ))
        .table(&table.name)
        .column(&cursor.column)
    };
    let back = lookback.rewind(&w.cursor).ok_or_else(bad)?;
    Position::encode(&Watermark {
        cursor: back,
        key: Vec::new(),
    })
}

/// Orders two watermarks of the same table and cursor.
pub(crate) fn compare(table: &TableSchema, a: &Position, b: &Position) -> Result<Ordering> {
    let a: Watermark = a.decode(&table.name)?;
    let b: Watermark = b.decode(&table.name)?;
    let incomparable =
        || Error::internal("positions hold values that cannot be compared").table(&table.name);
    let mut ord = value_cmp(&a.cursor, &b.cursor).ok_or_else(incomparable)?;
    let mut i = 0;
    while ord == Ordering::Equal {
        ord = match (a.key.get(i), b.key.get(i)) {
            (None, None) => break,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => value_cmp(x, y).ok_or_else(incomparable)?,
        };
        i += 1;
    }
    Ok(ord)
}

/// Orders two values of one column's kind; `None` when they cannot be
/// compared. MySQL's `time` (an engine value) orders by its text, as
/// siphon's watermarks of it always have.
fn value_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Engine { text: x, .. }, Value::Engine { text: y, .. }) => Some(x.cmp(y)),
        _ => a.cmp_same_kind(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_cursors_and_time_text_order() {
        let d = |s: &str| Value::Decimal(s.parse().unwrap());
        assert_eq!(
            value_cmp(&d("18446744073709551615"), &d("9223372036854775808")),
            Some(Ordering::Greater)
        );
        let t = |s: &str| Value::Engine {
            type_name: "time".into(),
            text: s.into(),
        };
        assert_eq!(
            value_cmp(&t("10:00:00"), &t("09:00:00")),
            Some(Ordering::Greater)
        );
    }
}
