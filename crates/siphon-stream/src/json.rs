//! The JSON form of an event, shared by every destination of this crate: one
//! object per change.
//!
//! ```json
//! {"id":"{\"lsn\":\"0/16B3748\"}#3","table":"public.items","op":"update",
//!  "key":{"id":7},"before":{"id":7,"v":"a"},"after":{"id":7,"v":"b"},
//!  "tx":{"position":{"lsn":"0/16B3748"},"index":3,"commit_time":"2026-12-01T23:00:00.123456Z","origin":null}}
//! ```
//!
//! - `id`: the event's id ([`siphon_core::Event::from_change`] says how it is
//!   made): identical on every replay, so a consumer drops a repeat by id.
//! - `table`: the table's name (`schema.table`, or `table`; a part holding
//!   `.` or `"` is double-quoted).
//! - `op`: `insert`, `update`, `delete`, `truncate`, or `schema` (the table's
//!   shape, announced when a pipeline starts and when it changes; rows after it
//!   have that shape).
//! - `key`: the row key's columns and values (every column for a table without
//!   a key); `null` for `truncate` and `schema`.
//! - `before`: the old row of an update where the source logs it, the deleted
//!   row of a delete (only its key columns are sure to be set); else `null`.
//! - `after`: the new row of an insert or update; else `null`.
//! - `schema`: for `op: schema` only, `{"columns":[{"name","type","nullable"}],"key":[names]}`.
//! - `tx`: the source transaction of a change read from a log: its commit
//!   position (the connector's own form), the change's index in it, the commit
//!   time and the origin; `null` for rows copied by a snapshot or polled.
//!
//! Values are [`siphon_core::Value::to_json`]: exact decimals as strings, bytes
//! as `\x`-prefixed hex, times as ISO 8601 text, JSON documents as documents.

use serde_json::{json, Map, Value as J};
use siphon_core::{Event, Op, Row, TableSchema, Value};

/// The event as one JSON object (see the module's documentation).
pub fn event_json(event: &Event) -> J {
    let change = &event.change;
    let table = &change.table;
    let (op, before, after) = match &change.op {
        Op::Insert(r) => ("insert", None, Some(r)),
        Op::Update { before, after } => ("update", before.as_ref(), Some(after)),
        Op::Delete(r) => ("delete", Some(r), None),
        Op::Truncate => ("truncate", None, None),
        Op::Schema(_) => ("schema", None, None),
    };
    let key = after
        .or(before)
        .map_or(J::Null, |row| J::Object(key_of(table, row)));
    let mut out = json!({
        "id": event.id,
        "table": table.name.key(),
        "op": op,
        "key": key,
        "before": before.map_or(J::Null, |r| J::Object(row_of(table, r))),
        "after": after.map_or(J::Null, |r| J::Object(row_of(table, r))),
        "tx": change.tx.as_ref().map_or(J::Null, |tx| json!({
            "position": tx.position.0,
            "index": change.index,
            "commit_time": tx.commit_time.map(|t| Value::TimestampTz(t).to_json()),
            "origin": tx.origin,
        })),
    });
    if let Op::Schema(shape) = &change.op {
        out["schema"] = schema_of(shape);
    }
    out
}

/// The row as `{column: value}`, in column order.
fn row_of(table: &TableSchema, row: &Row) -> Map<String, J> {
    table
        .columns
        .iter()
        .zip(row)
        .map(|(c, v)| (c.name.clone(), v.to_json()))
        .collect()
}

/// The row key's columns of `row` (every column without a key).
fn key_of(table: &TableSchema, row: &Row) -> Map<String, J> {
    match table.row_key() {
        Some(key) => key
            .iter()
            .filter_map(|&i| Some((table.columns.get(i)?.name.clone(), row.get(i)?.to_json())))
            .collect(),
        None => row_of(table, row),
    }
}

/// A table's shape: its columns (name, type as the source declared it,
/// nullability) and its row key's column names.
fn schema_of(table: &TableSchema) -> J {
    let columns: Vec<J> = table
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.native_type,
                "nullable": c.data_type.nullable,
            })
        })
        .collect();
    let key: Vec<&str> = table
        .row_key()
        .unwrap_or_default()
        .iter()
        .filter_map(|&i| table.columns.get(i).map(|c| c.name.as_str()))
        .collect();
    json!({ "columns": columns, "key": key })
}
