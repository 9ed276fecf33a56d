//! Reading table shapes from a SQLite file, and creating them on one.

use rusqlite::{Connection, OptionalExtension};
use siphon_core::typemap::{self, Engine};
use siphon_core::{Column, DataType, Index, Result, TableFilter, TableName, TableSchema};

use crate::conn::{db_err, quote};

/// The table where a SQLite target keeps its checkpoints.
pub(crate) const CHECKPOINTS: &str = "siphon_checkpoints";

/// Every user table the filter selects.
pub(crate) fn discover(
    conn: &Connection,
    path: &std::path::Path,
    filter: &TableFilter,
) -> Result<Vec<TableSchema>> {
    let names: Vec<String> = (|| {
        let mut st = conn.prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND name <> ?1 AND name <> 'siphon_columns' AND name <> 'siphon_waiting' ORDER BY name",
        )?;
        let rows = st.query_map([CHECKPOINTS], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
    })()
    .map_err(|e| db_err(path, "listing tables", e))?;
    let mut out = Vec::new();
    for name in names {
        let table = TableName::new(None, &name);
        if filter.matches(&table) {
            if let Some(schema) = describe(conn, path, &name)? {
                out.push(schema);
            }
        }
    }
    Ok(out)
}

/// The shape of one table, or `None` when it does not exist.
pub(crate) fn describe(
    conn: &Connection,
    path: &std::path::Path,
    name: &str,
) -> Result<Option<TableSchema>> {
    let err = |e| db_err(path, &format!("reading the columns of {name}"), e);
    let mut st = conn
        .prepare("SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1)")
        .map_err(err)?;
    let cols: Vec<(String, String, bool, i64, i64)> = st
        .query_map([name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(err)?;
    if cols.is_empty() {
        return Ok(None);
    }
    let mut pk: Vec<(i64, usize)> = Vec::new();
    let mut columns = Vec::with_capacity(cols.len());
    for (i, (cname, declared, notnull, pk_pos, hidden)) in cols.iter().enumerate() {
        if *pk_pos > 0 {
            pk.push((*pk_pos, i));
        }
        let kind = typemap::parse_native(Engine::Sqlite, declared);
        columns.push(Column {
            name: cname.clone(),
            data_type: DataType::new(kind, !*notnull && *pk_pos == 0),
            native_type: declared.clone(),
            generated: *hidden == 2 || *hidden == 3,
            source_id: None,
        });
    }
    pk.sort();
    let primary_key: Vec<usize> = pk.into_iter().map(|(_, i)| i).collect();

    let mut unique_keys = Vec::new();
    let mut indexes = Vec::new();
    let list: Vec<(String, bool, String)> = conn
        .prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1) ORDER BY seq DESC")
        .and_then(|mut s| {
            s.query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(err)?;
    for (iname, unique, origin) in list {
        if origin == "pk" {
            continue;
        }
        let cids: Vec<i64> = conn
            .prepare("SELECT cid FROM pragma_index_info(?1) ORDER BY seqno")
            .and_then(|mut s| s.query_map([&iname], |r| r.get(0))?.collect())
            .map_err(err)?;
        // Expression indexes (cid < 0) have no portable form.
        if cids.iter().any(|&c| c < 0) {
            continue;
        }
        let positions: Vec<usize> = cids.iter().map(|&c| c as usize).collect();
        if unique {
            unique_keys.push(positions.clone());
        }
        if origin == "c" {
            indexes.push(Index {
                name: iname,
                columns: positions.iter().map(|&p| columns[p].name.clone()).collect(),
                unique,
            });
        }
    }
    Ok(Some(TableSchema {
        name: TableName::new(None, name),
        origin: Engine::Sqlite,
        columns,
        primary_key,
        unique_keys,
        indexes,
        partitioning: None,
        objects: Vec::new(),
    }))
}

/// `CREATE TABLE` for a schema read from any engine.
pub(crate) fn create_table_sql(t: &TableSchema) -> String {
    let mut parts: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            // SQLite keeps any declared name, even none; between SQLite files the
            // declared name (and so the column's affinity) is kept exactly.
            let ty = if t.origin == Engine::Sqlite {
                c.native_type.clone()
            } else {
                typemap::native_type(Engine::Sqlite, t.origin, c)
            };
            let null = if c.data_type.nullable {
                ""
            } else {
                " NOT NULL"
            };
            format!("{} {ty}{null}", quote(&c.name)).replace("  ", " ")
        })
        .collect();
    if !t.primary_key.is_empty() {
        let cols: Vec<String> = t
            .primary_key
            .iter()
            .map(|&i| quote(&t.columns[i].name))
            .collect();
        parts.push(format!("PRIMARY KEY ({})", cols.join(", ")));
    }
    for key in &t.unique_keys {
        let cols: Vec<String> = key.iter().map(|&i| quote(&t.columns[i].name)).collect();
        parts.push(format!("UNIQUE ({})", cols.join(", ")));
    }
    format!(
        "CREATE TABLE {} (\n  {}\n)",
        quote(&t.name.name),
        parts.join(",\n  ")
    )
}

/// The `key_version` of a checkpoint row whose `tbl` is [`TableName::key`]; rows
/// an older siphon wrote have none (`tbl` is the table's display form).
pub(crate) const KEY_VERSION: i64 = 2;

/// Creates the checkpoint table when missing, and moves rows an older siphon
/// keyed by display form to [`TableName::key`] (see [`siphon_core::LegacyKey`]):
/// a key with more than one `.` is removed with a warning, since two tables may
/// have shared it, and that table is copied again. Idempotent; when several
/// processes open the file at once, the write lock taken first makes them take
/// turns.
pub(crate) fn ensure_checkpoints(conn: &mut Connection, path: &std::path::Path) -> Result<()> {
    let err = |e| db_err(path, "creating the siphon_checkpoints table", e);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (\
           pipeline TEXT NOT NULL, tbl TEXT NOT NULL, checkpoint TEXT NOT NULL, updated_at TEXT NOT NULL, \
           key_version INTEGER, epoch INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (pipeline, tbl))"
    ))
    .map_err(err)?;
    let has_version: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = 'key_version'",
            [CHECKPOINTS],
            |r| r.get(0),
        )
        .map_err(err)?;
    if !has_version {
        tx.execute_batch(&format!(
            "ALTER TABLE {CHECKPOINTS} ADD COLUMN key_version INTEGER"
        ))
        .map_err(err)?;
    }
    // The lease epoch of the checkpoint's writer (fencing), added to a table
    // from a siphon before leases: its rows were written without one.
    let has_epoch: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = 'epoch'",
            [CHECKPOINTS],
            |r| r.get(0),
        )
        .map_err(err)?;
    if !has_epoch {
        tx.execute_batch(&format!(
            "ALTER TABLE {CHECKPOINTS} ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0"
        ))
        .map_err(err)?;
    }
    let err = |e| {
        db_err(
            path,
            "moving siphon_checkpoints rows to unambiguous table keys",
            e,
        )
    };
    let legacy: Vec<(String, String)> = tx
        .prepare(&format!(
            "SELECT pipeline, tbl FROM {CHECKPOINTS} WHERE key_version IS NULL"
        ))
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(err)?;
    for (pipeline, tbl) in legacy {
        let done = match siphon_core::LegacyKey::of(&tbl) {
            siphon_core::LegacyKey::Kept => tx.execute(
                &format!(
                    "UPDATE {CHECKPOINTS} SET key_version = ?3 WHERE pipeline = ?1 AND tbl = ?2"
                ),
                rusqlite::params![pipeline, tbl, KEY_VERSION],
            ),
            // A row already under the new key is the newer siphon's: it wins.
            siphon_core::LegacyKey::Renamed(key) => tx.execute(
                &format!(
                    "UPDATE OR IGNORE {CHECKPOINTS} SET tbl = ?3, key_version = ?4 \
                     WHERE pipeline = ?1 AND tbl = ?2"
                ),
                rusqlite::params![pipeline, tbl, key, KEY_VERSION],
            ),
            siphon_core::LegacyKey::Ambiguous => {
                tracing::warn!(
                    target_db = %path.display(),
                    pipeline = %pipeline,
                    table = %tbl,
                    "removed the checkpoint of `{tbl}` from {CHECKPOINTS}: several tables have \
                     names that read `{tbl}` and any of them may have written it; such a table is copied again"
                );
                Ok(0)
            }
        };
        done.map_err(err)?;
    }
    // What is left unmoved: ambiguous keys, and renames a newer row took.
    tx.execute(
        &format!("DELETE FROM {CHECKPOINTS} WHERE key_version IS NULL"),
        [],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// Whether a table exists.
pub(crate) fn exists(conn: &Connection, path: &std::path::Path, name: &str) -> Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(|e| db_err(path, "looking up a table", e))
}
