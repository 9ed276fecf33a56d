//! Snapshot chunks into a target table: `LOAD DATA LOCAL INFILE … REPLACE`
//! streamed from memory, or multi-row `INSERT … ON DUPLICATE KEY UPDATE` where
//! the server refuses local files. Both upsert by key, so a chunk loaded again
//! after a crash converges.

use std::sync::LazyLock;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::typemap::Engine;
use siphon_core::{ApplyStats, Error, ErrorKind, Result, Row, TableSchema, Value};

use super::apply::upsert;
use super::encode::{self, FieldMode};
use super::{write_err, TargetTable};
use crate::conn::{ident, literal, too_large_on, Side};

/// Bytes of `LOAD DATA` text sent in one piece.
const PIECE: usize = 1 << 20;

/// Loads `rows` by `LOAD DATA LOCAL INFILE`, replacing rows whose key is
/// there already. Any warning (a value cut or converted) fails the load: the
/// server turns errors of a local load into warnings.
pub(super) async fn load_data(
    conn: &mut Conn,
    t: &TargetTable,
    table: &TableSchema,
    rows: &[Row],
) -> Result<ApplyStats> {
    if rows.is_empty() {
        return Ok(ApplyStats::default());
    }
    let forms = Forms::of(table);
    let mut data = Vec::with_capacity(rows.len() * 64);
    let mut longest = 0;
    for row in rows {
        let start = data.len();
        for (n, &i) in t.write.iter().enumerate() {
            if n > 0 {
                data.push(b'\t');
            }
            let value = forms.value(&row[i], t, table, i)?;
            encode::field(value, t.modes[i], &mut data).map_err(|why| {
                Error::bad_input(format!("a value does not fit the MySQL target: {why}"))
                    .table(&table.name)
                    .column(&t.columns[i])
            })?;
        }
        data.push(b'\n');
        longest = longest.max(data.len() - start);
    }
    // The server drops the connection of a load with a line longer than its
    // max_allowed_packet, with no error code: a failure is told from a lost
    // connection by the setting read before (never below 1 KiB).
    let max_packet: Option<usize> = if longest >= 1024 {
        conn.query_first("SELECT @@max_allowed_packet")
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let mut targets = Vec::with_capacity(t.write.len());
    let mut sets = Vec::new();
    for &i in &t.write {
        let c = ident(&t.columns[i]);
        match t.modes[i] {
            FieldMode::Plain => targets.push(c),
            FieldMode::Hex => {
                targets.push(format!("@v{i}"));
                sets.push(format!("{c} = UNHEX(@v{i})"));
            }
            FieldMode::Bits => {
                targets.push(format!("@v{i}"));
                sets.push(format!("{c} = CAST(@v{i} AS UNSIGNED)"));
            }
        }
    }
    let set = if sets.is_empty() {
        String::new()
    } else {
        format!(" SET {}", sets.join(", "))
    };
    let sql = format!(
        "LOAD DATA LOCAL INFILE {} REPLACE INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({}){set}",
        literal("siphon-chunk"),
        t.name,
        targets.join(", ")
    );
    let data = Bytes::from(data);
    let pieces: Vec<Bytes> = (0..data.len())
        .step_by(PIECE)
        .map(|s| data.slice(s..(s + PIECE).min(data.len())))
        .collect();
    conn.set_infile_handler(async move { Ok(stream::iter(pieces).map(Ok).boxed()) });
    conn.query_drop(sql).await.map_err(|e| {
        let dropped = matches!(
            e,
            mysql_async::Error::Io(_)
                | mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed)
        );
        if dropped && max_packet.is_some_and(|max| longest >= max) {
            too_large_on(e, &format!("loading {}", table.name), Side::Target).table(&table.name)
        } else {
            write_err(e, table, "loading")
        }
    })?;
    let affected = conn.affected_rows();
    check_warnings(conn, table).await?;
    // REPLACE counts a replaced row twice (deleted, inserted).
    let n = rows.len() as u64;
    let replaced = affected.saturating_sub(n).min(n);
    Ok(ApplyStats {
        inserted: n - replaced,
        updated: replaced,
        ..Default::default()
    })
}

/// Warning codes that say a value was not stored as given: cut, rounded,
/// out of range, converted, or replaced by a default.
const DATA_WARNINGS: &[u32] = &[1048, 1261, 1262, 1263, 1264, 1265, 1292, 1366, 1406];

/// Warnings MySQL gives for the statement itself, not for the data:
/// `VALUES()` in `ON DUPLICATE KEY UPDATE` is deprecated in MySQL 8.
const STATEMENT_WARNINGS: &[u32] = &[1287];

/// Fails when the last statement left a warning that a value was changed on
/// its way in: the server turns the errors of a local load into warnings, and
/// rounds some values (a decimal's extra fraction digits) with only a note.
/// The error names the table and, when the warning does, the column.
pub(super) async fn check_warnings(conn: &mut Conn, table: &TableSchema) -> Result<()> {
    if conn.get_warnings() == 0 {
        return Ok(());
    }
    let shown: Vec<(String, u32, String)> = conn
        .query("SHOW WARNINGS LIMIT 10")
        .await
        .unwrap_or_default();
    let Some((_, code, message)) = shown.iter().find(|(level, code, _)| {
        DATA_WARNINGS.contains(code) || (level != "Note" && !STATEMENT_WARNINGS.contains(code))
    }) else {
        return Ok(());
    };
    let err = Error::bad_input(format!(
        "writing {}: the target changed a value instead of storing it: {message} (warning {code}); \
         change the target column to hold it, or the value at the source",
        table.name
    ))
    .table(&table.name);
    Err(match super::column_in(message) {
        Some(c) => err.column(c),
        None => err,
    })
}

/// Loads `rows` by multi-row `INSERT … ON DUPLICATE KEY UPDATE` (plain
/// `INSERT` for a table without a key), each value in its column's form (see
/// [`Forms`]).
pub(super) async fn insert(
    conn: &mut Conn,
    t: &TargetTable,
    table: &TableSchema,
    rows: &[Row],
) -> Result<ApplyStats> {
    let refs: Vec<&Row> = rows.iter().collect();
    let (inserted, updated) = upsert(conn, t, table, &refs).await?;
    Ok(ApplyStats {
        inserted,
        updated,
        ..Default::default()
    })
}

/// The form each column's values are written in, so that a MySQL target
/// stores what a MySQL source holds: an enum's error value `''` as index 0
/// (see [`enum_zero_columns`]), and a `year` of 0 as `0000` (MySQL reads a
/// `0` in text, as `LOAD DATA` sends it, as the year 2000). Row values only; a
/// key compared in a `WHERE` is written as it is.
pub(super) struct Forms {
    zero: Vec<Option<bool>>,
    year: Vec<bool>,
}

impl Forms {
    /// The forms of `table`'s columns.
    pub(super) fn of(table: &TableSchema) -> Self {
        let year = table
            .columns
            .iter()
            .map(|c| {
                table.origin == Engine::Mysql
                    && c.native_type
                        .get(..4)
                        .is_some_and(|h| h.eq_ignore_ascii_case("year"))
            })
            .collect();
        Forms {
            zero: enum_zero_columns(table),
            year,
        }
    }

    /// The value to write for `value` of column `i`; an error names the
    /// column when it cannot be written.
    pub(super) fn value<'a>(
        &self,
        value: &'a Value,
        t: &TargetTable,
        table: &TableSchema,
        i: usize,
    ) -> Result<&'a Value> {
        if self.year[i] && matches!(value, Value::Int16(0) | Value::Int32(0) | Value::Int64(0)) {
            return Ok(&YEAR_ZERO);
        }
        enum_value(value, self.zero[i], t, table, i)
    }
}

/// The text MySQL stores as the year 0000, in `LOAD DATA` and as a literal:
/// `0` and `'0'` in text are the year 2000.
static YEAR_ZERO: LazyLock<Value> = LazyLock::new(|| Value::Text("0000".to_string()));

/// The text MySQL stores as an enum's index 0, its error value `''`, even
/// under strict mode (a number in text is an index; index 0 is the error value).
static ENUM_INDEX_ZERO: LazyLock<Value> = LazyLock::new(|| Value::Text("0".to_string()));

/// For each column of a MySQL source's table: `Some(true)` for an `enum`
/// whose members include neither `''` nor `'0'`, whose `''` is the error
/// value (index 0) that a non-strict server stored, written as `'0'`;
/// `Some(false)` when a member is `'0'`, so that index 0 cannot be written;
/// `None` for other columns, and for every column of another engine's table.
pub(super) fn enum_zero_columns(table: &TableSchema) -> Vec<Option<bool>> {
    table
        .columns
        .iter()
        .map(|c| {
            if table.origin != Engine::Mysql {
                return None;
            }
            let members = enum_members(&c.native_type)?;
            if members.iter().any(String::is_empty) {
                return None;
            }
            Some(!members.iter().any(|m| m == "0"))
        })
        .collect()
}

/// The members of an `enum('a','it''s')` column type, or `None` for another type.
fn enum_members(native: &str) -> Option<Vec<String>> {
    let head = native.get(..5)?;
    if !head.eq_ignore_ascii_case("enum(") {
        return None;
    }
    let mut members = Vec::new();
    let mut chars = native[5..].chars().peekable();
    loop {
        match chars.next()? {
            '\'' => {
                let mut member = String::new();
                loop {
                    match chars.next()? {
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            member.push('\'');
                        }
                        '\'' => break,
                        c => member.push(c),
                    }
                }
                members.push(member);
            }
            ',' => {}
            ')' => return Some(members),
            _ => return None,
        }
    }
}

/// The value of column `i` to write: an enum's error value `''` becomes the
/// text that stores index 0; an error names the column when it cannot.
pub(super) fn enum_value<'a>(
    value: &'a Value,
    zero: Option<bool>,
    t: &TargetTable,
    table: &TableSchema,
    i: usize,
) -> Result<&'a Value> {
    let (Some(writable), Value::Text(s)) = (zero, value) else {
        return Ok(value);
    };
    if !s.is_empty() {
        return Ok(value);
    }
    if !writable {
        return Err(Error::bad_input(
            "a row holds the enum's error value '' (index 0, stored by a server not in strict \
             mode), which cannot be written to an enum with a member '0': update the rows to a \
             member or NULL at the source, or exclude the table",
        )
        .table(&table.name)
        .column(&t.columns[i]));
    }
    Ok(&ENUM_INDEX_ZERO)
}

/// Whether `e` says the server takes no local files (`local_infile` off).
pub(super) fn infile_refused(e: &Error) -> bool {
    if e.kind() == ErrorKind::BadInput {
        return false;
    }
    let text = e.to_string();
    ["(error 1148)", "(error 3948)", "(error 4166)"]
        .iter()
        .any(|code| text.contains(code))
}

#[cfg(test)]
mod tests {
    use super::enum_members;

    #[test]
    fn enum_members_are_read_with_doubled_quotes_and_a_character_set() {
        assert_eq!(
            enum_members("enum('a','it''s','') CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
            Some(vec!["a".to_string(), "it's".to_string(), String::new()])
        );
        assert_eq!(enum_members("ENUM('0')"), Some(vec!["0".to_string()]));
        assert_eq!(enum_members("set('a')"), None);
        assert_eq!(enum_members("varchar(5)"), None);
    }
}
