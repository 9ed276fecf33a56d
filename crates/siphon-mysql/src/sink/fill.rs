//! Columns added to a target table that already held rows, kept waiting in
//! the target's `siphon_columns` table until those rows hold the source's
//! values of them.
//!
//! A column added at the source with a default (constant or not) gives the
//! rows the source held that default without logging them, so a target that
//! only adds the column would keep NULL (or its own implicit value) in those
//! rows until they change. [`record`] notes each column a prepare is about to
//! add to a target table holding rows, before the `ALTER TABLE` (a DDL that
//! commits by itself), so that a crash in between still leaves it noted; the
//! engine then reads the source's current rows and hands them to [`fill`],
//! which sets those columns of the rows the target has (a temporary table of
//! keys and values joined in one `UPDATE`, rows the target lacks left alone)
//! and, once the whole table is filled, forgets the columns.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::{Result, Row, SchemaOptions, TableSchema};

use super::apply::tuple;
use super::load::{execute, Forms};
use super::{target_name, write_err, TargetTable, STATEMENT_BYTES};
use crate::conn::{column_list, ident, my_err, qualified, Flavor, Server};

/// The waiting columns' table in the target database.
pub(crate) const COLUMNS: &str = "siphon_columns";

/// The temporary table a fill joins the target table with.
const FILL: &str = "siphon_fill";

/// Notes the columns of `table` that the prepare about to run adds to its
/// existing target table in `database`, when that table holds rows and they
/// can be found by key (a table without a key keeps the added columns'
/// defaults: the engine warns of it). Nothing without `options.evolve` (the
/// prepare refuses the missing columns then).
pub(super) async fn record(
    conn: &mut Conn,
    database: &str,
    server: &Server,
    table: &TableSchema,
    options: &SchemaOptions,
) -> Result<()> {
    if !options.evolve || table.row_key().is_none() {
        return Ok(());
    }
    let found: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (database, &table.name.name),
        )
        .await
        .map_err(|e| my_err(e, "reading the target table's columns").table(&table.name))?;
    if found.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| !c.generated && !found.iter().any(|f| f.eq_ignore_ascii_case(&c.name)))
        .map(|c| c.name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let name = target_name(database, table);
    let held: Option<i64> = conn
        .query_first(format!("SELECT 1 FROM {name} LIMIT 1"))
        .await
        .map_err(|e| write_err(e, table, "reading"))?;
    if held.is_none() {
        return Ok(());
    }
    let collation = match server.flavor {
        Flavor::MariaDb => "utf8mb4_nopad_bin",
        Flavor::MySql => "utf8mb4_0900_bin",
    };
    let columns = qualified(Some(database), COLUMNS);
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {columns} (tbl varchar(512) NOT NULL, col varchar(255) NOT NULL, \
         added_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (tbl, col)) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"
    ))
    .await
    .map_err(|e| my_err(e, "creating the siphon_columns table in the target database"))?;
    for col in missing {
        conn.exec_drop(
            format!("INSERT IGNORE INTO {columns} (tbl, col) VALUES (?, ?)"),
            (&table.name.name, col),
        )
        .await
        .map_err(|e| my_err(e, "writing siphon_columns").table(&table.name))?;
    }
    Ok(())
}

/// The waiting column names of `table`'s target table; none when no column
/// ever waited in this database.
async fn waiting(conn: &mut Conn, database: &str, table: &TableSchema) -> Result<Vec<String>> {
    let r = conn
        .exec(
            format!(
                "SELECT col FROM {} WHERE tbl = ?",
                qualified(Some(database), COLUMNS)
            ),
            (&table.name.name,),
        )
        .await;
    match r {
        Ok(names) => Ok(names),
        Err(mysql_async::Error::Server(s)) if s.code == 1146 => Ok(Vec::new()),
        Err(e) => Err(my_err(e, "reading siphon_columns").table(&table.name)),
    }
}

/// See [`siphon_core::Sink::unfilled`]: positions in `table` of its waiting columns.
pub(super) async fn unfilled(
    conn: &mut Conn,
    database: &str,
    table: &TableSchema,
) -> Result<Vec<usize>> {
    let names = waiting(conn, database, table).await?;
    Ok(table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| names.iter().any(|n| n.eq_ignore_ascii_case(&c.name)))
        .map(|(i, _)| i)
        .collect())
}

/// Creates the session's temporary table of the key and `columns` of `t`,
/// typed as the target's, outside any transaction (a temporary table's DDL
/// is refused inside one by some GTID settings).
pub(super) async fn stage(
    conn: &mut Conn,
    database: &str,
    t: &TargetTable,
    table: &TableSchema,
    columns: &[usize],
) -> Result<()> {
    let fill = qualified(Some(database), FILL);
    let cols = t.key.iter().chain(columns).map(|&i| t.columns[i].as_str());
    conn.query_drop(format!("DROP TEMPORARY TABLE IF EXISTS {fill}"))
        .await
        .map_err(|e| write_err(e, table, "filling added columns of"))?;
    conn.query_drop(format!(
        "CREATE TEMPORARY TABLE {fill} AS SELECT {} FROM {} LIMIT 0",
        column_list(cols),
        t.name
    ))
    .await
    .map_err(|e| write_err(e, table, "filling added columns of"))
}

/// Drops the session's temporary table of [`stage`].
pub(super) async fn unstage(conn: &mut Conn, database: &str) -> Result<()> {
    conn.query_drop(format!(
        "DROP TEMPORARY TABLE IF EXISTS {}",
        qualified(Some(database), FILL)
    ))
    .await
    .map_err(|e| my_err(e, "dropping a temporary table"))
}

/// In the open transaction, after [`stage`]: sets `columns` of the target
/// rows whose keys `rows` (whole rows of `table` as the source holds them)
/// have to the rows' values; rows the target lacks stay missing. With `done`,
/// the columns (and any waiting column `table` no longer has) stop waiting.
pub(super) async fn fill(
    conn: &mut Conn,
    database: &str,
    t: &TargetTable,
    table: &TableSchema,
    columns: &[usize],
    rows: &[Row],
    done: bool,
) -> Result<()> {
    let werr = |e| write_err(e, table, "filling added columns of");
    if !rows.is_empty() && !columns.is_empty() {
        let fill = qualified(Some(database), FILL);
        let cols: Vec<usize> = t.key.iter().chain(columns).copied().collect();
        conn.query_drop(format!("DELETE FROM {fill}"))
            .await
            .map_err(werr)?;
        let head = format!(
            "INSERT INTO {fill} ({}) VALUES ",
            column_list(cols.iter().map(|&i| t.columns[i].as_str()))
        );
        let forms = Forms::of(table);
        let mut sql = String::new();
        for (n, row) in rows.iter().enumerate() {
            t.check_shape(row, table)?;
            match sql.is_empty() {
                true => sql.push_str(&head),
                false => sql.push_str(", "),
            }
            tuple(&mut sql, row, &cols, t, table, Some(&forms))?;
            if sql.len() >= STATEMENT_BYTES || n + 1 == rows.len() {
                let zeroes = forms.take_zeroes(t);
                execute(conn, &sql, table, &zeroes, werr).await?;
                sql.clear();
            }
        }
        let on: Vec<String> = t
            .key
            .iter()
            .map(|&i| format!("t.{c} = f.{c}", c = ident(&t.columns[i])))
            .collect();
        let set: Vec<String> = columns
            .iter()
            .map(|&i| format!("t.{c} = f.{c}", c = ident(&t.columns[i])))
            .collect();
        conn.query_drop(format!(
            "UPDATE {} AS t JOIN {fill} AS f ON {} SET {}",
            t.name,
            on.join(" AND "),
            set.join(", ")
        ))
        .await
        .map_err(werr)?;
    }
    if done {
        let names = waiting(conn, database, table).await?;
        let over: Vec<&String> = names
            .iter()
            .filter(|n| {
                columns
                    .iter()
                    .any(|&i| table.columns[i].name.eq_ignore_ascii_case(n))
                    || !table.columns.iter().any(|c| c.name.eq_ignore_ascii_case(n))
            })
            .collect();
        for name in over {
            conn.exec_drop(
                format!(
                    "DELETE FROM {} WHERE tbl = ? AND col = ?",
                    qualified(Some(database), COLUMNS)
                ),
                (&table.name.name, name),
            )
            .await
            .map_err(|e| my_err(e, "writing siphon_columns").table(&table.name))?;
        }
    }
    Ok(())
}
