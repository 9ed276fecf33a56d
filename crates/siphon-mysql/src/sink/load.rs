//! Snapshot chunks into a target table: `LOAD DATA LOCAL INFILE … REPLACE`
//! streamed from memory, or multi-row `INSERT … ON DUPLICATE KEY UPDATE` where
//! the server refuses local files. Both upsert by key, so a chunk loaded again
//! after a crash converges.

use std::cell::Cell;
use std::sync::LazyLock;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::typemap::Engine;
use siphon_core::{ApplyStats, Error, ErrorKind, Result, Row, TableSchema, Value};

use super::apply::upsert;
use super::encode::{self, FieldMode};
use super::{column_in, write_err, TargetTable};
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
            let value = forms.value(&row[i], i)?;
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
    let zeroes = forms.take_zeroes(t);
    let fail = |e: mysql_async::Error| {
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
    };
    let (affected, _) = execute(conn, &sql, table, &zeroes, fail).await?;
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
pub(super) async fn check_warnings(
    conn: &mut Conn,
    table: &TableSchema,
    zeroes: &Zeroes<'_>,
) -> Result<()> {
    let count = conn.get_warnings();
    if count == 0 {
        return Ok(());
    }
    // Expected warnings may hide others past a limit: all are read then
    // (the session keeps up to `max_error_count` of them).
    let show = match zeroes.count == 0 {
        true => "SHOW WARNINGS LIMIT 10",
        false => "SHOW WARNINGS",
    };
    let shown: Vec<(String, u32, String)> = conn.query(show).await.unwrap_or_default();
    // Each enum error value written gives one "Data truncated" for its
    // column; one more would be a value the enum refused.
    let mut expected = zeroes.count;
    let mut bad = None;
    for (level, code, message) in &shown {
        if !DATA_WARNINGS.contains(code) && (level == "Note" || STATEMENT_WARNINGS.contains(code)) {
            continue;
        }
        let zero = *code == 1265
            && column_in(message).is_some_and(|c| zeroes.columns.contains(&c.as_str()));
        if zero && expected > 0 {
            expected -= 1;
            continue;
        }
        bad = Some((*code, message.clone()));
        break;
    }
    let (code, message) = match bad {
        Some(found) => found,
        None if zeroes.count > 0 && (shown.len() as u64) < u64::from(count) => (
            0,
            format!("{count} warnings, more than the server kept to tell them apart"),
        ),
        None => return Ok(()),
    };
    let err = Error::bad_input(format!(
        "writing {}: the target changed a value instead of storing it: {message} (warning {code}); \
         change the target column to hold it, or the value at the source",
        table.name
    ))
    .table(&table.name);
    Err(match column_in(&message) {
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
/// stores what a MySQL source holds: a `year` of 0 as `0000` (MySQL reads a
/// `0` in text, as `LOAD DATA` sends it, as the year 2000); and it notes
/// whether a value was an enum's error value `''` (index 0, see
/// [`enum_zero_columns`]), which only a statement run outside strict mode
/// can write ([`execute`]). Row values only; a key compared in a `WHERE` is
/// written as it is.
pub(super) struct Forms {
    zero: Vec<bool>,
    year: Vec<bool>,
    /// How many values given out were an enum's error value.
    zeroes: Cell<u64>,
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
            zeroes: Cell::new(0),
        }
    }

    /// The value to write for `value` of column `i`.
    pub(super) fn value<'a>(&self, value: &'a Value, i: usize) -> Result<&'a Value> {
        if self.year[i] && matches!(value, Value::Int16(0) | Value::Int32(0) | Value::Int64(0)) {
            return Ok(&YEAR_ZERO);
        }
        if self.zero[i] && matches!(value, Value::Text(s) if s.is_empty()) {
            self.zeroes.set(self.zeroes.get() + 1);
        }
        Ok(value)
    }

    /// The enum error values given out since the last call, which the
    /// statement holding them writes outside strict mode, one warning of the
    /// server expected for each.
    pub(super) fn take_zeroes<'t>(&self, t: &'t TargetTable) -> Zeroes<'t> {
        let count = self.zeroes.replace(0);
        let columns = match count {
            0 => Vec::new(),
            _ => self
                .zero
                .iter()
                .enumerate()
                .filter(|(_, z)| **z)
                .map(|(i, _)| t.columns[i].as_str())
                .collect(),
        };
        Zeroes { columns, count }
    }
}

/// Enum error values a statement writes ([`Forms::take_zeroes`]).
#[derive(Debug, Default)]
pub(super) struct Zeroes<'t> {
    /// The target names of the enum columns that may hold them.
    columns: Vec<&'t str>,
    /// How many there are.
    count: u64,
}

impl Zeroes<'_> {
    /// None.
    const NONE: Zeroes<'static> = Zeroes {
        columns: Vec::new(),
        count: 0,
    };
}

/// The text MySQL stores as the year 0000, in `LOAD DATA` and as a literal:
/// `0` and `'0'` in text are the year 2000.
static YEAR_ZERO: LazyLock<Value> = LazyLock::new(|| Value::Text("0000".to_string()));

/// For each column of a MySQL source's table: whether it is an `enum`
/// without a member `''`, whose `''` is then the error value (index 0) a
/// server outside strict mode stores for a value it refused. A strict
/// server refuses to write it (recent MariaDB and MySQL refuse even `'0'`
/// and `0`, which older ones took as index 0), so statements holding it run
/// outside strict mode. False for every column of another engine's table.
pub(super) fn enum_zero_columns(table: &TableSchema) -> Vec<bool> {
    table
        .columns
        .iter()
        .map(|c| {
            table.origin == Engine::Mysql
                && enum_members(&c.native_type).is_some_and(|m| !m.iter().any(String::is_empty))
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

/// Runs `sql`, then fails on a warning that a value was changed (see
/// [`check_warnings`]) and returns the statement's affected rows and info.
/// With `zeroes` (enum columns whose error value the statement writes, see
/// [`Forms::take_zeroes`]), it runs outside strict mode, the only way a
/// server writes that value, and the one warning each such value gives is
/// expected; strict mode is back before this returns, whatever happened.
pub(super) async fn execute(
    conn: &mut Conn,
    sql: &str,
    table: &TableSchema,
    zeroes: &Zeroes<'_>,
    fail: impl FnOnce(mysql_async::Error) -> Error,
) -> Result<(u64, String)> {
    if zeroes.count == 0 {
        conn.query_drop(sql).await.map_err(fail)?;
        let done = (conn.affected_rows(), conn.info().into_owned());
        check_warnings(conn, table, &Zeroes::NONE).await?;
        return Ok(done);
    }
    conn.query_drop(super::LENIENT)
        .await
        .map_err(|e| write_err(e, table, "writing"))?;
    let r = async {
        conn.query_drop(sql).await.map_err(fail)?;
        let done = (conn.affected_rows(), conn.info().into_owned());
        check_warnings(conn, table, zeroes).await?;
        Ok(done)
    }
    .await;
    let back = conn
        .query_drop(super::STRICT)
        .await
        .map_err(|e| write_err(e, table, "writing"));
    let done = r?;
    back?;
    Ok(done)
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
