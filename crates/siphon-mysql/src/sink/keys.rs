//! Reading the target's row keys in key order, for delete detection: each key
//! value decoded to the kind of its source column, so that it compares equal
//! to the source's.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::{Error, Result, Row, TableSchema, TypeKind, Value};

use super::apply::tuple;
use super::{write_err, TargetTable};
use crate::conn::column_list;

/// Up to `limit` keys after `after`, in key order.
pub(super) async fn read(
    conn: &mut Conn,
    t: &TargetTable,
    table: &TableSchema,
    after: Option<&Row>,
    limit: usize,
) -> Result<Vec<Row>> {
    if t.key.is_empty() {
        return Err(table.require_row_key().err().unwrap_or_else(|| {
            Error::internal("a table without a key has no keys to read").table(&table.name)
        }));
    }
    let keys = column_list(t.key.iter().map(|&i| t.columns[i].as_str()));
    let filter = match after {
        Some(a) => {
            // `after` holds the key's values only, in key order.
            let mut full: Row = vec![Value::Null; table.columns.len()];
            for (v, &i) in a.iter().zip(&t.key) {
                full[i] = v.clone();
            }
            let mut values = String::new();
            tuple(&mut values, &full, &t.key, t, table, None)?;
            format!("WHERE ({keys}) > {values}")
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT {keys} FROM {} {filter} ORDER BY {keys} LIMIT {limit}",
        t.name
    );
    let rows: Vec<mysql_async::Row> = conn
        .query(sql)
        .await
        .map_err(|e| write_err(e, table, "reading the keys of"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut key = Vec::with_capacity(t.key.len());
        for (j, &i) in t.key.iter().enumerate() {
            let raw = r.as_ref(j).cloned().unwrap_or(mysql_async::Value::NULL);
            let kind = &table.columns[i].data_type.kind;
            key.push(decode(kind, raw).map_err(|why| {
                Error::bad_input(format!("reading a key of the target: {why}"))
                    .table(&table.name)
                    .column(&t.columns[i])
            })?);
        }
        out.push(key);
    }
    Ok(out)
}

/// A value of the text protocol as a value of `kind`.
fn decode(kind: &TypeKind, raw: mysql_async::Value) -> std::result::Result<Value, String> {
    use mysql_async::Value as M;
    let bytes = match raw {
        M::NULL => return Ok(Value::Null),
        M::Bytes(b) => b,
        M::Int(i) => i.to_string().into_bytes(),
        M::UInt(u) => u.to_string().into_bytes(),
        other => return Err(format!("unexpected value {other:?}")),
    };
    if let TypeKind::Bytes { .. } = kind {
        return Ok(Value::Bytes(bytes));
    }
    let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
    let bad = |e: &dyn std::fmt::Display| format!("{text:?}: {e}");
    Ok(match kind {
        TypeKind::Bool => Value::Bool(text != "0"),
        TypeKind::Int16 => Value::Int16(text.parse().map_err(|e| bad(&e))?),
        TypeKind::Int32 => Value::Int32(text.parse().map_err(|e| bad(&e))?),
        TypeKind::Int64 => Value::Int64(text.parse().map_err(|e| bad(&e))?),
        TypeKind::Float32 => Value::Float32(text.parse().map_err(|e| bad(&e))?),
        TypeKind::Float64 => Value::Float64(text.parse().map_err(|e| bad(&e))?),
        TypeKind::Decimal { .. } => Value::Decimal(text.parse().map_err(|e| bad(&e))?),
        TypeKind::Date => {
            Value::Date(NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|e| bad(&e))?)
        }
        TypeKind::Time => {
            Value::Time(NaiveTime::parse_from_str(&text, "%H:%M:%S%.f").map_err(|e| bad(&e))?)
        }
        TypeKind::Timestamp | TypeKind::TimestampTz => {
            let ts = NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| bad(&e))?;
            match kind {
                TypeKind::TimestampTz => Value::TimestampTz(ts.and_utc()),
                _ => Value::Timestamp(ts),
            }
        }
        TypeKind::Uuid => Value::Uuid(text.parse().map_err(|e| bad(&e))?),
        TypeKind::Json => Value::Json(text),
        TypeKind::Engine { name } => Value::Engine {
            type_name: name.clone(),
            text,
        },
        _ => Value::Text(text),
    })
}
