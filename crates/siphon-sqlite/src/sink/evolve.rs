//! Evolving an existing SQLite target table to a new shape of its source
//! table: renamed columns renamed (SQLite 3.25+), added ones added. Types need
//! no change (SQLite columns have an affinity, not a size), and columns the
//! source dropped stay with their values.
//!
//! Which target column holds which source column is kept in `siphon_columns`,
//! by the source's column id, so a rename is told from a drop and an add even
//! across runs. Columns added to a table that held rows wait there for the
//! source's values of them (see `siphon_core::Sink::unfilled`); for a source
//! without column ids (MySQL/MariaDB), they wait by name in `siphon_waiting`
//! instead.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, ToSql};
use siphon_core::{Error, Result, Row, SchemaOptions, TableSchema};

use crate::conn::{db_err, quote};
use crate::types::bind_value;

/// The table of source column ids per target table.
const COLUMNS: &str = "siphon_columns";

/// The table of columns, by name, that were added to a target table of a
/// source without column ids while it held rows, and wait for the source's
/// values of them.
const WAITING: &str = "siphon_waiting";

/// Brings the target table (`existing` as found) to the shape of `t`, in one
/// transaction, and records the source's column ids.
pub(super) fn evolve(
    c: &mut Connection,
    path: &Path,
    t: &TableSchema,
    existing: &TableSchema,
    options: &SchemaOptions,
) -> Result<()> {
    let name = &t.name.name;
    let ids = !t.columns.is_empty() && t.columns.iter().all(|c| c.source_id.is_some());
    let err = |e| db_err(path, "changing the target table", e);
    let tx = c.transaction().map_err(err)?;
    let mut known: Vec<(i64, String, bool)> = Vec::new();
    let mut unfilled: Vec<i64> = Vec::new();
    // Of a source without column ids, the added columns wait by name, when the
    // table held rows they can be found in by key.
    let mut waiting: Vec<String> = Vec::new();
    let by_name = !ids
        && options.evolve
        && t.row_key().is_some()
        && tx
            .query_row(
                &format!("SELECT 1 FROM {} LIMIT 1", quote(name)),
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(err)?
            .is_some();
    if ids {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {COLUMNS} (tbl TEXT NOT NULL, source_id INTEGER NOT NULL, \
             name TEXT NOT NULL, filled INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (tbl, source_id))"
        ))
        .map_err(err)?;
        let mut stmt = tx
            .prepare(&format!(
                "SELECT source_id, name, filled FROM {COLUMNS} WHERE tbl = ?1"
            ))
            .map_err(err)?;
        known = stmt
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?;
    }
    let mut names: Vec<String> = existing.columns.iter().map(|c| c.name.clone()).collect();
    let refuse = |column: &str, what: &str| {
        Error::bad_input(format!(
            "{what}; change the target table alike, or set `schema.evolve: true`"
        ))
        .table(&t.name)
        .column(column)
    };
    for col in &t.columns {
        if names.contains(&col.name) {
            continue;
        }
        let was = known
            .iter()
            .find(|(id, _, _)| Some(*id) == col.source_id)
            .map(|(_, n, _)| n.clone())
            .filter(|n| *n != col.name && names.contains(n) && t.column_index(n).is_none());
        if !options.evolve {
            let what = match &was {
                Some(n) => format!("the source renamed column {n} to {}", col.name),
                None => "the target table lacks this source column".to_string(),
            };
            return Err(refuse(&col.name, &what));
        }
        let sql = match &was {
            Some(n) => format!(
                "ALTER TABLE {} RENAME COLUMN {} TO {}",
                quote(name),
                quote(n),
                quote(&col.name)
            ),
            None => {
                let ty = siphon_core::typemap::native_type(
                    siphon_core::typemap::Engine::Sqlite,
                    t.origin,
                    col,
                );
                format!(
                    "ALTER TABLE {} ADD COLUMN {} {ty}",
                    quote(name),
                    quote(&col.name)
                )
            }
        };
        tx.execute_batch(&sql)
            .map_err(|e| db_err(path, "changing the target table", e))
            .map_err(|e| e.table(&t.name).column(&col.name))?;
        match was {
            Some(n) => {
                for x in names.iter_mut().filter(|x| **x == n) {
                    *x = col.name.clone();
                }
            }
            None => {
                names.push(col.name.clone());
                if !col.generated {
                    unfilled.extend(col.source_id);
                    if by_name {
                        waiting.push(col.name.clone());
                    }
                }
            }
        }
    }
    if ids {
        let rows: Vec<(i64, String, bool)> = t
            .columns
            .iter()
            .filter_map(|col| {
                let id = col.source_id?;
                let was_filled = known.iter().find(|k| k.0 == id).is_none_or(|k| k.2);
                Some((id, col.name.clone(), was_filled && !unfilled.contains(&id)))
            })
            .collect();
        // Written again only when it changed: most prepares change nothing.
        let same = rows.len() == known.len() && rows.iter().all(|r| known.contains(r));
        if !same {
            tx.execute(&format!("DELETE FROM {COLUMNS} WHERE tbl = ?1"), [name])
                .map_err(err)?;
            for (id, col, filled) in &rows {
                tx.execute(
                    &format!(
                        "INSERT INTO {COLUMNS} (tbl, source_id, name, filled) VALUES (?1, ?2, ?3, ?4)"
                    ),
                    params![name, id, col, filled],
                )
                .map_err(err)?;
            }
        }
    }
    if !waiting.is_empty() {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {WAITING} (tbl TEXT NOT NULL, name TEXT NOT NULL, \
             PRIMARY KEY (tbl, name))"
        ))
        .map_err(err)?;
        for col in &waiting {
            tx.execute(
                &format!("INSERT OR IGNORE INTO {WAITING} (tbl, name) VALUES (?1, ?2)"),
                params![name, col],
            )
            .map_err(err)?;
        }
    }
    tx.commit().map_err(err)
}

/// Whether the siphon table `table` exists in the file.
fn has_table(c: &Connection, table: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

/// Positions in `t` of the columns that wait for the source's values in rows
/// the table held when they were added (see `siphon_core::Sink::unfilled`).
pub(super) fn unfilled(c: &Connection, path: &Path, t: &TableSchema) -> Result<Vec<usize>> {
    let err = |e| db_err(path, "reading siphon_columns", e);
    let mut ids: Vec<i64> = Vec::new();
    if has_table(c, COLUMNS).map_err(err)? {
        let mut st = c
            .prepare(&format!(
                "SELECT source_id FROM {COLUMNS} WHERE tbl = ?1 AND NOT filled"
            ))
            .map_err(err)?;
        ids = st
            .query_map([&t.name.name], |r| r.get(0))
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?;
    }
    let mut names: Vec<String> = Vec::new();
    if has_table(c, WAITING).map_err(err)? {
        let mut st = c
            .prepare(&format!("SELECT name FROM {WAITING} WHERE tbl = ?1"))
            .map_err(err)?;
        names = st
            .query_map([&t.name.name], |r| r.get(0))
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?;
    }
    Ok(t.columns
        .iter()
        .enumerate()
        .filter(|(_, c)| match c.source_id {
            Some(id) => ids.contains(&id),
            None => names.iter().any(|n| n.eq_ignore_ascii_case(&c.name)),
        })
        .map(|(i, _)| i)
        .collect())
}

/// Sets `columns` of the rows with the keys of `rows` to the rows' values, in
/// one transaction; with `done`, the columns no longer wait.
pub(super) fn fill(
    c: &mut Connection,
    path: &Path,
    t: &TableSchema,
    columns: &[usize],
    rows: &[Row],
    done: bool,
) -> Result<()> {
    let err = |e| db_err(path, &format!("filling added columns of {}", t.name), e);
    let key = t.require_row_key()?.to_vec();
    let tx = c.transaction().map_err(err)?;
    if !columns.is_empty() {
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} = ?{}", quote(&t.columns[i].name), n + 1))
            .collect();
        let on: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} = ?{}", quote(&t.columns[i].name), columns.len() + n + 1))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE {}",
            quote(&t.name.name),
            sets.join(", "),
            on.join(" AND ")
        );
        let mut st = tx.prepare_cached(&sql).map_err(err)?;
        let mut scratch = String::new();
        for row in rows {
            for (n, &i) in columns.iter().chain(&key).enumerate() {
                bind_value(&mut st, n + 1, &row[i], &mut scratch).map_err(err)?;
            }
            st.raw_execute().map_err(err)?;
        }
    }
    if done {
        let (with_ids, by_name) = (
            has_table(&tx, COLUMNS).map_err(err)?,
            has_table(&tx, WAITING).map_err(err)?,
        );
        for &i in columns {
            let col = &t.columns[i];
            match col.source_id {
                Some(_) if with_ids => {
                    let id: &dyn ToSql = &col.source_id;
                    tx.execute(
                        &format!(
                            "UPDATE {COLUMNS} SET filled = 1 WHERE tbl = ?1 AND source_id = ?2"
                        ),
                        params![t.name.name, id],
                    )
                    .map_err(err)?;
                }
                None if by_name => {
                    tx.execute(
                        &format!(
                            "DELETE FROM {WAITING} WHERE tbl = ?1 AND name = ?2 COLLATE NOCASE"
                        ),
                        params![t.name.name, col.name],
                    )
                    .map_err(err)?;
                }
                _ => {}
            }
        }
    }
    tx.commit().map_err(err)
}
