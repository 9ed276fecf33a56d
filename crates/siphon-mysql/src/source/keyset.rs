//! Key ranges in SQL: the bounds of a keyset read, key equality for lookups,
//! and the cuts that split a table for parallel readers.
//!
//! A bound is compared by the server, with the column's own collation and
//! type: a text key under `utf8mb4_general_ci` orders `a` and `A` as the index
//! does, and a decimal bound is cast to the column's decimal type (a string
//! compared with a decimal column would be compared as a double).

use siphon_core::{Column, Position, Result, TableSchema, TypeKind, Value};

use super::{KeyPosition, MySqlSource};
use crate::conn::{ident, qualified};
use crate::schema::key_list;
use crate::types::encode;

/// `` `database`.`table` ``.
pub(crate) fn table_sql(table: &TableSchema) -> String {
    qualified(table.name.schema.as_deref(), &table.name.name)
}

/// The select list of a table: every column in order, spatial values as
/// their WKT text.
pub(crate) fn select_list(table: &TableSchema) -> String {
    table
        .columns
        .iter()
        .map(|c| {
            if is_spatial(&c.native_type) {
                format!("ST_AsText({})", ident(&c.name))
            } else {
                ident(&c.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_spatial(native: &str) -> bool {
    matches!(
        native.to_ascii_lowercase().as_str(),
        "geometry"
            | "point"
            | "linestring"
            | "polygon"
            | "multipoint"
            | "multilinestring"
            | "multipolygon"
            | "geometrycollection"
            | "geomcollection"
    )
}

/// Whether a column is declared as an integer or bit type (its decimal
/// values, `bigint unsigned` and `bit(64)`, go as integer parameters).
fn integer_declared(column: &Column) -> bool {
    let n = column.native_type.to_ascii_lowercase();
    [
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "bigint",
        "bit",
        "year",
    ]
    .iter()
    .any(|t| n.starts_with(t))
}

/// The placeholder of a parameter compared with `column`: `?`, cast to the
/// column's decimal type for decimal columns.
pub(crate) fn placeholder(column: &Column) -> String {
    match &column.data_type.kind {
        TypeKind::Decimal {
            precision: Some(p),
            scale,
        } if !integer_declared(column) => {
            format!("CAST(? AS DECIMAL({p},{}))", scale.unwrap_or(0))
        }
        _ => "?".to_string(),
    }
}

/// `(a, b) = (?, ?)` for the key columns.
pub(crate) fn equal_condition(table: &TableSchema, key: &[usize]) -> String {
    let marks: Vec<String> = key
        .iter()
        .map(|&i| placeholder(&table.columns[i]))
        .collect();
    format!("({}) = ({})", key_list(table, key), marks.join(", "))
}

/// `op` between the first `values.len()` key columns and `values`, as SQL
/// with its parameters. Two or more columns also bound the first column
/// alone (`a >= ? AND (a, b) > (?, ?)`), which the optimizer turns into an
/// index range where it would scan for the row comparison alone.
fn bound(
    table: &TableSchema,
    key: &[usize],
    values: &[Value],
    op: &str,
) -> Result<(String, Vec<mysql_async::Value>)> {
    let n = values.len().min(key.len());
    let cols = &key[..n];
    let mut params = Vec::new();
    for (v, &i) in values.iter().zip(cols) {
        params.push(encode(v).map_err(|e| e.table(&table.name).column(&table.columns[i].name))?);
    }
    let first = &table.columns[cols[0]];
    if n == 1 {
        return Ok((
            format!("{} {op} {}", ident(&first.name), placeholder(first)),
            params,
        ));
    }
    let wide = if op.starts_with('>') { ">=" } else { "<=" };
    let marks: Vec<String> = cols
        .iter()
        .map(|&i| placeholder(&table.columns[i]))
        .collect();
    let mut all = vec![params[0].clone()];
    all.extend(params);
    Ok((
        format!(
            "{} {wide} {} AND ({}) {op} ({})",
            ident(&first.name),
            placeholder(first),
            key_list(table, cols),
            marks.join(", ")
        ),
        all,
    ))
}

/// The ` WHERE …` clause (empty when both bounds are open) and its parameters
/// keeping a keyset read to keys after `after` and up to `until` (either may
/// hold a prefix of the key).
pub(crate) fn range_filter(
    table: &TableSchema,
    key: &[usize],
    after: Option<&[Value]>,
    until: Option<&[Value]>,
) -> Result<(String, Vec<mysql_async::Value>)> {
    let mut filters = Vec::new();
    let mut params = Vec::new();
    for (values, op) in [(after, ">"), (until, "<=")] {
        if let Some(values) = values.filter(|v| !v.is_empty()) {
            let (sql, p) = bound(table, key, values, op)?;
            filters.push(sql);
            params.extend(p);
        }
    }
    if filters.is_empty() {
        return Ok((String::new(), params));
    }
    Ok((format!(" WHERE {}", filters.join(" AND ")), params))
}

/// An integer from a wire value (`MIN`/`MAX` of an integer column).
fn wire_integer(v: &mysql_async::Value) -> Option<i128> {
    match v {
        mysql_async::Value::Int(i) => Some(i128::from(*i)),
        mysql_async::Value::UInt(u) => Some(i128::from(*u)),
        mysql_async::Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// The value of an integer key column of `kind` for `v`.
fn integer_value(kind: &TypeKind, v: i128) -> Option<Value> {
    Some(match kind {
        TypeKind::Int16 => Value::Int16(i16::try_from(v).ok()?),
        TypeKind::Int32 => Value::Int32(i32::try_from(v).ok()?),
        TypeKind::Int64 => Value::Int64(i64::try_from(v).ok()?),
        TypeKind::Decimal { .. } => Value::Decimal(v.to_string().parse().ok()?),
        _ => return None,
    })
}

/// Up to `parts - 1` ascending cuts of the table's key. An integer first key
/// column (unsigned `bigint` included, computed in 128 bits) is cut into equal
/// widths between its minimum and maximum; any other key is cut at sampled
/// keys, the rows at equal offsets in key order (`LIMIT 1 OFFSET n`).
pub(super) async fn split_keys(
    source: &MySqlSource,
    table: &TableSchema,
    parts: usize,
) -> Result<Vec<Position>> {
    let Some(key) = table.row_key().map(<[usize]>::to_vec) else {
        return Ok(Vec::new());
    };
    if parts < 2 {
        return Ok(Vec::new());
    }
    let first = &table.columns[key[0]];
    let integer = integer_declared(first)
        && matches!(
            first.data_type.kind,
            TypeKind::Int16 | TypeKind::Int32 | TypeKind::Int64 | TypeKind::Decimal { .. }
        );
    if integer {
        let c = ident(&first.name);
        let sql = format!("SELECT MIN({c}), MAX({c}) FROM {}", table_sql(table));
        let rows = source
            .raw_rows(table, &sql, Vec::new(), "reading the key range")
            .await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(Vec::new());
        };
        let raw = row.unwrap();
        let (Some(lo), Some(hi)) = (
            raw.first().and_then(wire_integer),
            raw.get(1).and_then(wire_integer),
        ) else {
            return Ok(Vec::new());
        };
        let width = hi - lo;
        let mut cuts: Vec<i128> = (1..parts as i128)
            .map(|i| lo + width * i / parts as i128)
            .filter(|&c| c < hi)
            .collect();
        cuts.dedup();
        return cuts
            .into_iter()
            .filter_map(|c| integer_value(&first.data_type.kind, c))
            .map(|v| Position::encode(&KeyPosition { key: vec![v] }))
            .collect();
    }
    let rows = siphon_core::Source::estimate_rows(source, table)
        .await?
        .unwrap_or(0);
    if rows < parts as u64 * 2 {
        return Ok(Vec::new());
    }
    let key_table = TableSchema {
        columns: key.iter().map(|&i| table.columns[i].clone()).collect(),
        primary_key: (0..key.len()).collect(),
        unique_keys: Vec::new(),
        indexes: Vec::new(),
        objects: Vec::new(),
        ..table.clone()
    };
    let mut cuts = Vec::new();
    let mut last_offset = None;
    for i in 1..parts as u64 {
        let offset = rows * i / parts as u64;
        if last_offset == Some(offset) {
            continue;
        }
        last_offset = Some(offset);
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT 1 OFFSET {offset}",
            select_list(&key_table),
            table_sql(table),
            key_list(table, &key)
        );
        match source.rows(&key_table, &sql, Vec::new()).await?.pop() {
            Some(k) => cuts.push(Position::encode(&KeyPosition { key: k })?),
            None => break,
        }
    }
    Ok(cuts)
}
