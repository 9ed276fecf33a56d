//! SQLite as a target: table creation, upserts and deletes by key, and checkpoints
//! committed in the same transaction as the rows.

use std::path::Path;

use rusqlite::{params, OptionalExtension, ToSql, Transaction};
use siphon_core::{
    ApplyStats, Batch, Checkpoint, Error, Op, Result, Row, SchemaOptions, Sink, StreamId,
    TableSchema,
};

use crate::db::{column_list, db_err, placeholders, quote, Db};
use crate::schema::{create_table_sql, describe, ensure_checkpoints, exists, CHECKPOINTS};
use crate::source::require_key;
use crate::types::{decode_or_err, Bind};

/// Writes to a SQLite file, created when missing. The file is switched to WAL
/// journaling so readers are not blocked while siphon writes.
#[derive(Debug, Clone)]
pub struct SqliteSink {
    db: Db,
}

impl SqliteSink {
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteSink> {
        let db = Db::open(path.as_ref(), false)?;
        db.run_now(|c| {
            c.pragma_update(None, "journal_mode", "WAL")
                .and_then(|_| c.pragma_update(None, "synchronous", "NORMAL"))
                .map_err(|e| db_err(path.as_ref(), "setting journal mode", e))?;
            ensure_checkpoints(c, path.as_ref())
        })?;
        Ok(SqliteSink { db })
    }
}

/// Statements for one table, built once per call.
struct TableSql {
    insert: String,
    update: Option<String>,
    delete: String,
    truncate: String,
    /// Columns written (all of them), and the key positions.
    key: Vec<usize>,
    ncols: usize,
}

impl TableSql {
    fn new(t: &TableSchema) -> Result<TableSql> {
        let key = require_key(t)?.to_vec();
        let name = quote(&t.name.name);
        let cols = column_list(t.columns.iter().map(|c| c.name.as_str()));
        let key_cols = column_list(key.iter().map(|&i| t.columns[i].name.as_str()));
        let key_where = key
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                format!(
                    "{} = ?{}",
                    quote(&t.columns[i].name),
                    t.columns.len() + j + 1
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let sets: Vec<String> = t
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !key.contains(i))
            .map(|(i, c)| format!("{} = ?{}", quote(&c.name), i + 1))
            .collect();
        let update = (!sets.is_empty())
            .then(|| format!("UPDATE {name} SET {} WHERE {key_where}", sets.join(", ")));
        let del_where = key
            .iter()
            .enumerate()
            .map(|(j, &i)| format!("{} = ?{}", quote(&t.columns[i].name), j + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        Ok(TableSql {
            insert: format!(
                "INSERT INTO {name} ({cols}) VALUES ({}) ON CONFLICT ({key_cols}) DO NOTHING",
                placeholders(t.columns.len())
            ),
            update,
            delete: format!("DELETE FROM {name} WHERE {del_where}"),
            truncate: format!("DELETE FROM {name}"),
            key,
            ncols: t.columns.len(),
        })
    }

    /// Inserts the row, or updates it when its key exists: returns (inserted, updated).
    fn upsert(&self, tx: &Transaction<'_>, row: &Row) -> rusqlite::Result<(u64, u64)> {
        if row.len() != self.ncols {
            return Err(rusqlite::Error::InvalidParameterCount(
                row.len(),
                self.ncols,
            ));
        }
        let binds: Vec<Bind<'_>> = row.iter().map(Bind).collect();
        let params: Vec<&dyn ToSql> = binds.iter().map(|b| b as &dyn ToSql).collect();
        if tx
            .prepare_cached(&self.insert)?
            .execute(params.as_slice())?
            == 1
        {
            return Ok((1, 0));
        }
        let Some(update) = &self.update else {
            return Ok((0, 0));
        };
        let keys: Vec<Bind<'_>> = self.key.iter().map(|&i| Bind(&row[i])).collect();
        let mut all = params;
        all.extend(keys.iter().map(|b| b as &dyn ToSql));
        Ok((
            0,
            tx.prepare_cached(update)?.execute(all.as_slice())? as u64,
        ))
    }

    fn delete(&self, tx: &Transaction<'_>, row: &Row) -> rusqlite::Result<u64> {
        let keys: Vec<Bind<'_>> = self.key.iter().map(|&i| Bind(&row[i])).collect();
        let params: Vec<&dyn ToSql> = keys.iter().map(|b| b as &dyn ToSql).collect();
        Ok(tx
            .prepare_cached(&self.delete)?
            .execute(params.as_slice())? as u64)
    }
}

fn write_checkpoint(tx: &Transaction<'_>, cp: &Checkpoint) -> rusqlite::Result<()> {
    let json = serde_json::to_string(cp)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(&format!(
        "INSERT INTO {CHECKPOINTS} (pipeline, tbl, checkpoint, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (pipeline, tbl) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = excluded.updated_at"
    ))?
    .execute(params![cp.stream.pipeline, cp.stream.table.to_string(), json, chrono::Utc::now().to_rfc3339()])?;
    Ok(())
}

/// Names the table in a write error, with a hint for the common causes.
fn write_err(path: &Path, t: &TableSchema, e: rusqlite::Error) -> Error {
    let msg = e.to_string();
    let hint = if msg.contains("ON CONFLICT clause does not match") {
        "the target table has no primary key or unique constraint on the source's key columns; \
         add one, or drop the table so siphon creates it"
    } else if msg.contains("has no column named") {
        "the target table lacks a source column; enable `schema.evolve` or add the column"
    } else {
        "writing rows"
    };
    db_err(path, hint, e).table(&t.name)
}

impl Sink for SqliteSink {
    async fn prepare(&self, table: &TableSchema, options: &SchemaOptions) -> Result<()> {
        let t = table.clone();
        let options = *options;
        let path = self.db.path().to_path_buf();
        self.db
            .run(move |c| {
                let name = &t.name.name;
                if !exists(c, &path, name)? {
                    if !options.create {
                        return Err(Error::bad_input(
                            "the target table does not exist; create it or set `schema.create: true`",
                        )
                        .table(&t.name));
                    }
                    let tx = c.transaction().map_err(|e| db_err(&path, "creating a table", e))?;
                    tx.execute_batch(&create_table_sql(&t)).map_err(|e| write_err(&path, &t, e))?;
                    if options.indexes {
                        for ix in &t.indexes {
                            let sql = format!(
                                "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                                if ix.unique { "UNIQUE " } else { "" },
                                quote(&ix.name),
                                quote(name),
                                column_list(ix.columns.iter().map(String::as_str))
                            );
                            tx.execute_batch(&sql).map_err(|e| write_err(&path, &t, e))?;
                        }
                    }
                    tx.commit().map_err(|e| db_err(&path, "creating a table", e))?;
                    return Ok(());
                }
                let existing = describe(c, &path, name)?.unwrap_or_else(|| t.clone());
                for col in &t.columns {
                    if existing.column_index(&col.name).is_some() {
                        continue;
                    }
                    if !options.evolve {
                        return Err(Error::bad_input(
                            "the target table lacks this source column; add it or set `schema.evolve: true`",
                        )
                        .table(&t.name)
                        .column(&col.name));
                    }
                    let ty = siphon_core::typemap::native_type(siphon_core::typemap::Engine::Sqlite, t.origin, col);
                    c.execute_batch(&format!("ALTER TABLE {} ADD COLUMN {} {ty}", quote(name), quote(&col.name)))
                        .map_err(|e| write_err(&path, &t, e))?;
                }
                Ok(())
            })
            .await
    }

    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        let path = self.db.path().to_path_buf();
        let (p, t) = (stream.pipeline.clone(), stream.table.to_string());
        let json: Option<String> = self
            .db
            .run(move |c| {
                c.query_row(
                    &format!(
                        "SELECT checkpoint FROM {CHECKPOINTS} WHERE pipeline = ?1 AND tbl = ?2"
                    ),
                    [&p, &t],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| db_err(&path, "reading a checkpoint", e))
            })
            .await?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| {
                Error::bad_input("the checkpoint row is unreadable; force a full re-sync")
                    .table(&stream.table)
                    .source(e)
            })
        })
        .transpose()
    }

    async fn reset(&self, stream: &StreamId) -> Result<()> {
        let path = self.db.path().to_path_buf();
        let (p, t) = (stream.pipeline.clone(), stream.table.to_string());
        self.db
            .run(move |c| {
                c.execute(
                    &format!("DELETE FROM {CHECKPOINTS} WHERE pipeline = ?1 AND tbl = ?2"),
                    [&p, &t],
                )
                .map(|_| ())
                .map_err(|e| db_err(&path, "removing a checkpoint", e))
            })
            .await
    }

    async fn load(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let t = table.clone();
        let cp = checkpoint.clone();
        let path = self.db.path().to_path_buf();
        self.db
            .run(move |c| {
                let sql = TableSql::new(&t)?;
                let werr = |e| write_err(&path, &t, e);
                let tx = c.transaction().map_err(werr)?;
                let mut stats = ApplyStats::default();
                for row in &rows {
                    let (i, u) = sql.upsert(&tx, row).map_err(werr)?;
                    stats.inserted += i;
                    stats.updated += u;
                }
                write_checkpoint(&tx, &cp).map_err(werr)?;
                tx.commit().map_err(werr)?;
                Ok(stats)
            })
            .await
    }

    async fn apply(&self, batch: Batch, checkpoint: &Checkpoint) -> Result<ApplyStats> {
        let cp = checkpoint.clone();
        let path = self.db.path().to_path_buf();
        self.db
            .run(move |c| {
                let tx = c
                    .transaction()
                    .map_err(|e| db_err(&path, "starting a transaction", e))?;
                let mut stats = ApplyStats::default();
                let mut current: Option<(std::sync::Arc<TableSchema>, TableSql)> = None;
                for ch in &batch.changes {
                    let t = &ch.table;
                    if current
                        .as_ref()
                        .is_none_or(|(ct, _)| !std::sync::Arc::ptr_eq(ct, t))
                    {
                        current = Some((t.clone(), TableSql::new(t)?));
                    }
                    let sql = &current
                        .as_ref()
                        .map(|(_, s)| s)
                        .ok_or_else(|| Error::internal("no statements"))?;
                    let werr = |e| write_err(&path, t, e);
                    match &ch.op {
                        Op::Insert(row) | Op::Update { after: row, .. } => {
                            let (i, u) = sql.upsert(&tx, row).map_err(werr)?;
                            stats.inserted += i;
                            stats.updated += u;
                        }
                        Op::Delete(row) => stats.deleted += sql.delete(&tx, row).map_err(werr)?,
                        Op::Truncate => {
                            stats.deleted += tx.execute(&sql.truncate, []).map_err(werr)? as u64;
                        }
                        Op::Schema(_) => {
                            return Err(Error::internal(
                                "schema changes are applied through prepare",
                            )
                            .table(&t.name))
                        }
                    }
                }
                write_checkpoint(&tx, &cp)
                    .map_err(|e| db_err(&path, "writing the checkpoint", e))?;
                tx.commit().map_err(|e| db_err(&path, "committing", e))?;
                Ok(stats)
            })
            .await
    }

    async fn read_keys(
        &self,
        table: &TableSchema,
        after: Option<&Row>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let key = require_key(table)?.to_vec();
        let key_cols = column_list(key.iter().map(|&i| table.columns[i].name.as_str()));
        let t = quote(&table.name.name);
        let sql = match after {
            None => format!("SELECT {key_cols} FROM {t} ORDER BY {key_cols} LIMIT ?"),
            Some(_) => format!(
                "SELECT {key_cols} FROM {t} WHERE ({key_cols}) > ({}) ORDER BY {key_cols} LIMIT ?",
                placeholders(key.len())
            ),
        };
        let after = after.cloned();
        let table = table.clone();
        let path = self.db.path().to_path_buf();
        self.db
            .run(move |c| {
                let err = |e| db_err(&path, &format!("reading keys of {}", table.name), e);
                let binds: Vec<Bind<'_>> = after.iter().flatten().map(Bind).collect();
                let limit = limit as i64;
                let mut params: Vec<&dyn ToSql> = binds.iter().map(|b| b as &dyn ToSql).collect();
                params.push(&limit);
                let mut st = c.prepare_cached(&sql).map_err(err)?;
                let mut rows = st.query(params.as_slice()).map_err(err)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(err)? {
                    let mut k = Vec::with_capacity(key.len());
                    for (j, &ci) in key.iter().enumerate() {
                        let col = &table.columns[ci];
                        k.push(decode_or_err(
                            &col.data_type.kind,
                            r.get_ref(j).map_err(err)?,
                            &table.name,
                            &col.name,
                        )?);
                    }
                    out.push(k);
                }
                Ok(out)
            })
            .await
    }
}
