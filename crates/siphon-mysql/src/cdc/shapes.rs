//! Rows the binlog holds in an older shape of their table: written before an
//! `ALTER TABLE` that the stream has not read yet, while the stream knows the
//! table as it is now. The TABLE_MAP event before them says how they were
//! written (the column count and types, and with `binlog_row_metadata=FULL`
//! the names); this maps each logged column to a column of the table now, or
//! says that no mapping is safe, and gives the columns added since the values
//! the source holds for the row.

use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::consts::ColumnType;
use siphon_core::{Error, Result, Row, TableName, Value};

use super::rows::{convert, ColumnInfo};
use super::stream::{Known, MySqlChangeStream, Rediscover};
use crate::conn::ZeroDates;

/// For each column of a row as logged, the position of the same column in
/// the table now (`None`: a column dropped since, whose values are dropped).
pub type Mapping = Vec<Option<usize>>;

/// How rows of `tme` map to `columns` (the table now): `Ok(None)` when they
/// are read as the table's columns now, a mapping when they were written in
/// an older shape that decodes safely, else an error naming the fix.
///
/// When the event names its columns (`binlog_row_metadata=FULL`), logged
/// columns are matched by name (those dropped since are left out). Without
/// names, rows of as many columns as the table has now are read as its
/// columns (a type changed in place is read by its type now, and a value
/// that does not fit fails with the table named), and rows of fewer columns
/// are read as the table's first columns, as an `ADD COLUMN` without
/// `FIRST`/`AFTER` leaves them. Either way, each logged column must be of a
/// type the binlog writes alike for the column it maps to.
pub fn mapping(
    table: &TableName,
    tme: &TableMapEvent<'_>,
    columns: &[ColumnInfo],
) -> Result<Option<Mapping>> {
    let logged = tme.columns_count() as usize;
    let names = names(tme).filter(|n| n.len() == logged);
    let map: Option<Mapping> = match &names {
        Some(names) => Some(
            names
                .iter()
                .map(|n| {
                    columns
                        .iter()
                        .position(|c| c.column.name.eq_ignore_ascii_case(n))
                })
                .collect(),
        ),
        None if logged == columns.len() => return Ok(None),
        None if logged < columns.len() => Some((0..logged).map(Some).collect()),
        None => None,
    };
    let fits = map.as_ref().is_some_and(|m| {
        m.iter().enumerate().all(|(i, j)| match j {
            Some(j) => matches!(tme.get_column_type(i), Ok(Some(t)) if logs_as(&columns[*j], t)),
            None => true,
        })
    });
    match map {
        Some(m) if fits => {
            let same = m.len() == columns.len() && m.iter().enumerate().all(|(i, j)| *j == Some(i));
            Ok((!same).then_some(m))
        }
        _ => Err(incompatible(table, logged, columns.len(), names.is_some())),
    }
}

/// A row image logged in an older shape of the table (`map`: where each
/// logged column is now) as a row of the table now; the columns it lacks are
/// NULL until [`MySqlChangeStream::fill_added`] gives them their values.
pub(super) fn decode_older(
    known: &Known,
    map: &Mapping,
    mut row: BinlogRow,
    bits: Option<&[bool]>,
    zero: ZeroDates,
) -> Result<Row> {
    let mut out = vec![Value::Null; known.columns.len()];
    let mut k = 0;
    for (i, j) in map.iter().enumerate() {
        if !bits.is_none_or(|b| b.get(i).copied().unwrap_or(false)) {
            continue;
        }
        let v = row.take(k);
        k += 1;
        if let Some(j) = *j {
            out[j] = convert(&known.schema.name, &known.columns[j], v, zero)?;
        }
    }
    Ok(out)
}

impl<R: Rediscover> MySqlChangeStream<R> {
    /// Gives the columns a row of an older shape lacks (added since) the
    /// values the source holds for that row now, as the engine gives rows
    /// the target held when a column was added: the source's rows written
    /// before the `ALTER` hold the column's default (or what a later change
    /// set, which the binlog applies after this), and a NULL would leave the
    /// target differing from the source. A row gone from the source since
    /// keeps NULLs: a later change in the binlog deletes it.
    pub(super) async fn fill_added(
        &self,
        known: &Known,
        map: &Mapping,
        key: Option<&[usize]>,
        row: &mut Row,
    ) -> Result<()> {
        let Some(key) = key else {
            return Ok(());
        };
        if key.iter().any(|k| !map.contains(&Some(*k))) {
            // The engine stops the table with the command that copies it
            // again (`siphon sync resync` of the pipeline and the table).
            return Err(Error::bad_input(
                "the binlog holds rows written before the table's key columns were added, so the \
                 table must be copied again",
            )
            .table(&known.schema.name));
        }
        let values = known.schema.key_of(key, row);
        if let Some(now) = self.source.current_row(&known.schema, key, &values).await? {
            for (j, v) in now.into_iter().enumerate() {
                if !map.contains(&Some(j)) {
                    if let Some(slot) = row.get_mut(j) {
                        *slot = v;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The column names a TABLE_MAP event carries (`binlog_row_metadata=FULL`).
fn names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    for field in tme.iter_optional_meta() {
        if let Ok(OptionalMetadataField::ColumnName(n)) = field {
            return n
                .iter_names()
                .map(|n| n.ok().map(|n| n.name().into_owned()))
                .collect();
        }
    }
    None
}

/// The binlog types of strings and byte strings.
const STRINGS: &[ColumnType] = &[
    ColumnType::MYSQL_TYPE_STRING,
    ColumnType::MYSQL_TYPE_VARCHAR,
    ColumnType::MYSQL_TYPE_VAR_STRING,
    ColumnType::MYSQL_TYPE_BLOB,
    ColumnType::MYSQL_TYPE_TINY_BLOB,
    ColumnType::MYSQL_TYPE_MEDIUM_BLOB,
    ColumnType::MYSQL_TYPE_LONG_BLOB,
];

/// Whether the binlog writes values of `col` as `logged`, or as a type whose
/// values read as `col`'s.
fn logs_as(col: &ColumnInfo, logged: ColumnType) -> bool {
    use ColumnType as T;
    let ok: &[ColumnType] = match col.data_type.as_str() {
        // An integer read as a wider or narrower integer keeps its value.
        "tinyint" | "bool" | "boolean" | "smallint" | "mediumint" | "int" | "integer"
        | "bigint" => &[
            T::MYSQL_TYPE_TINY,
            T::MYSQL_TYPE_SHORT,
            T::MYSQL_TYPE_INT24,
            T::MYSQL_TYPE_LONG,
            T::MYSQL_TYPE_LONGLONG,
        ],
        "float" | "double" | "real" => &[T::MYSQL_TYPE_FLOAT, T::MYSQL_TYPE_DOUBLE],
        "decimal" | "numeric" => &[T::MYSQL_TYPE_NEWDECIMAL, T::MYSQL_TYPE_DECIMAL],
        "date" => &[T::MYSQL_TYPE_DATE, T::MYSQL_TYPE_NEWDATE],
        "time" => &[T::MYSQL_TYPE_TIME, T::MYSQL_TYPE_TIME2],
        "datetime" => &[T::MYSQL_TYPE_DATETIME, T::MYSQL_TYPE_DATETIME2],
        "timestamp" => &[T::MYSQL_TYPE_TIMESTAMP, T::MYSQL_TYPE_TIMESTAMP2],
        "year" => &[T::MYSQL_TYPE_YEAR],
        "bit" => &[T::MYSQL_TYPE_BIT],
        // Strings and byte strings, however long, are bytes in the binlog.
        "char" | "varchar" | "binary" | "varbinary" | "tinytext" | "text" | "mediumtext"
        | "longtext" | "tinyblob" | "blob" | "mediumblob" | "longblob" => STRINGS,
        "enum" => &[T::MYSQL_TYPE_ENUM, T::MYSQL_TYPE_STRING],
        "set" => &[T::MYSQL_TYPE_SET, T::MYSQL_TYPE_STRING],
        // MariaDB's JSON is LONGTEXT; MySQL's is binary JSON.
        "json" => &[T::MYSQL_TYPE_JSON, T::MYSQL_TYPE_BLOB],
        // MariaDB's data-type plugins are logged as BINARY of their size
        // (the type's name is only in the optional metadata).
        "uuid" | "inet6" | "inet4" => &[T::MYSQL_TYPE_STRING],
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => &[T::MYSQL_TYPE_GEOMETRY],
        _ => &[],
    };
    ok.contains(&logged)
}

/// The error of rows logged in a shape the table's columns now cannot read:
/// why, and that the table must be copied again. The engine stops the table
/// with an error that names the command for it (`siphon sync resync` with
/// the pipeline and `--table`), this as its cause.
fn incompatible(table: &TableName, logged: usize, now: usize, named: bool) -> Error {
    let how = if named {
        "their columns, by the names the binlog gives, do not all exist now with a type the binlog \
         writes alike"
    } else {
        "they are not the first columns of the table now with the same types (a column added with \
         FIRST or AFTER, a column dropped, or a type changed; the binlog names no columns, as \
         binlog_row_metadata is not FULL)"
    };
    Error::bad_input(format!(
        "the binlog holds rows of {logged} columns written before the table's shape changed to \
         {now} columns, and {how}, so the table must be copied again"
    ))
    .table(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_core::typemap::{parse_native, Engine};
    use siphon_core::{Column, DataType};

    fn col(dt: &str, ct: &str) -> ColumnInfo {
        let column = Column {
            name: "c".into(),
            data_type: DataType::new(parse_native(Engine::Mysql, ct), true),
            native_type: ct.into(),
            generated: false,
            source_id: None,
        };
        ColumnInfo::new(&column, dt, ct, None)
    }

    #[test]
    fn logged_types_read_as_columns_of_the_same_family_only() {
        use ColumnType as T;
        // Widened in place: the old values read as the new type.
        assert!(logs_as(&col("bigint", "bigint(20)"), T::MYSQL_TYPE_LONG));
        assert!(logs_as(&col("text", "text"), T::MYSQL_TYPE_VARCHAR));
        assert!(logs_as(&col("double", "double"), T::MYSQL_TYPE_FLOAT));
        // A date is no integer, a string no date, a decimal no double.
        assert!(!logs_as(&col("date", "date"), T::MYSQL_TYPE_LONG));
        assert!(!logs_as(&col("int", "int(11)"), T::MYSQL_TYPE_VARCHAR));
        assert!(!logs_as(
            &col("datetime", "datetime"),
            T::MYSQL_TYPE_VARCHAR
        ));
        assert!(!logs_as(&col("double", "double"), T::MYSQL_TYPE_NEWDECIMAL));
        // MariaDB's uuid, inet6 and inet4 are logged as BINARY(16) and BINARY(4).
        assert!(logs_as(&col("uuid", "uuid"), T::MYSQL_TYPE_STRING));
        assert!(logs_as(&col("inet6", "inet6"), T::MYSQL_TYPE_STRING));
        assert!(logs_as(&col("inet4", "inet4"), T::MYSQL_TYPE_STRING));
        assert!(!logs_as(&col("uuid", "uuid"), T::MYSQL_TYPE_LONG));
        // A type siphon does not know is never taken for another.
        assert!(!logs_as(&col("vector", "vector(3)"), T::MYSQL_TYPE_VARCHAR));
    }

    #[test]
    fn the_error_names_the_table_and_leaves_the_command_to_the_engine() {
        let e = incompatible(&TableName::new(Some("d"), "t"), 3, 2, false);
        assert_eq!(e.kind(), siphon_core::ErrorKind::BadInput);
        assert_eq!(e.table_name(), Some("d.t"));
        let text = e.to_string();
        assert!(text.contains("must be copied again"), "{text}");
        // The engine's stop message names the command, with the pipeline.
        assert!(!text.contains("PIPELINE"), "{text}");
        assert!(!text.contains("siphon sync resync"), "{text}");
        assert!(text.contains("binlog_row_metadata"), "{text}");
    }
}
