//! SQLite as a target: table creation, upserts and deletes by key, and checkpoints
//! committed in the same transaction as the rows.

use std::path::Path;
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, CachedStatement, OptionalExtension, ToSql, Transaction};
use siphon_core::{
    ApplyStats, Batch, Checkpoint, Error, NativeChunk, NativeFormat, Op, Result, Row,
    SchemaOptions, Sink, StreamId, TableSchema, Value,
};

use crate::conn::{column_list, db_err, placeholders, quote, Db};
use crate::schema::{
    create_table_sql, describe, ensure_checkpoints, exists, CHECKPOINTS, KEY_VERSION,
};
use crate::types::{bind_value, decode_or_err, fit, Affinity, Bind};
use crate::wal::Checkpointer;

mod evolve;
mod exact;
mod swap;

/// Writes to a SQLite file, created when missing. The file is switched to WAL
/// journaling so readers are not blocked while siphon writes, and the WAL is
/// copied into the file on a thread of its own (see the `wal` module).
#[derive(Debug, Clone)]
pub struct SqliteSink {
    db: Db,
    wal: Option<Arc<Checkpointer>>,
}

impl SqliteSink {
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteSink> {
        let path = path.as_ref();
        let db = Db::open(path, false)?;
        let wal = db.run_now(|c| {
            c.pragma_update(None, "journal_mode", "WAL")
                .and_then(|_| c.pragma_update(None, "synchronous", "NORMAL"))
                .map_err(|e| db_err(path, "setting journal mode", e))?;
            ensure_checkpoints(c, path)?;
            let mode: String = c
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .map_err(|e| db_err(path, "reading the journal mode", e))?;
            Ok(if mode.eq_ignore_ascii_case("wal") {
                Checkpointer::start(c, path).map(Arc::new)
            } else {
                None
            })
        })?;
        Ok(SqliteSink { db, wal })
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
    /// Each column's affinity in the target table, which decides how a value is
    /// bound so that SQLite keeps it (see [`fit`]).
    affinity: Vec<Affinity>,
    /// Each column's declared type in the target table, for messages.
    declared: Vec<String>,
}

/// Why a row could not be written.
enum WriteError {
    Sql(rusqlite::Error),
    /// SQLite would change the value of this column (by position): why.
    Unfit(usize, String),
    /// Another error, complete.
    Other(Error),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> WriteError {
        WriteError::Sql(e)
    }
}

impl TableSql {
    /// The statements for `t`, and how its target table (read on `conn`) stores
    /// each column.
    fn new(t: &TableSchema, conn: &rusqlite::Connection) -> rusqlite::Result<Result<TableSql>> {
        let declared = TableSql::declared(t, conn)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        Ok(TableSql::with_declared(t, declared))
    }

    /// The declared type of each of `t`'s columns in the target table, `None`
    /// for a column the target lacks.
    fn declared(
        t: &TableSchema,
        conn: &rusqlite::Connection,
    ) -> rusqlite::Result<Vec<Option<String>>> {
        let mut in_target = std::collections::HashMap::new();
        let mut st = conn.prepare_cached("SELECT name, type FROM pragma_table_info(?1)")?;
        let mut rows = st.query([&t.name.name])?;
        while let Some(r) = rows.next()? {
            in_target.insert(r.get::<_, String>(0)?, r.get::<_, String>(1)?);
        }
        Ok(t.columns
            .iter()
            .map(|c| in_target.remove(&c.name))
            .collect())
    }

    fn with_declared(t: &TableSchema, declared: Vec<String>) -> Result<TableSql> {
        // Empty for a table without a key: rows are then found by value.
        let key = t.row_key().unwrap_or_default().to_vec();
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
        if key.is_empty() {
            return Ok(TableSql {
                insert: format!(
                    "INSERT INTO {name} ({cols}) VALUES ({})",
                    placeholders(t.columns.len())
                ),
                update: Some(exact::update_sql(t)),
                delete: exact::delete_sql(t),
                truncate: format!("DELETE FROM {name}"),
                key,
                ncols: t.columns.len(),
                affinity: declared.iter().map(|d| Affinity::of(d)).collect(),
                declared,
            });
        }
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
            affinity: declared.iter().map(|d| Affinity::of(d)).collect(),
            declared,
        })
    }

    /// The error for a value SQLite would change: names the column, what would
    /// happen, and the type to declare instead.
    fn unfit(&self, path: &Path, t: &TableSchema, column: usize, why: &str) -> Error {
        let c = &t.columns[column];
        let fix =
            siphon_core::typemap::native_type(siphon_core::typemap::Engine::Sqlite, t.origin, c);
        Error::bad_input(format!(
            "{why} in this column, declared `{}` in the target {} (SQLite's {:?} affinity); siphon \
             refuses to change a value: declare the column `{fix}` (drop the target table to have siphon \
             create it so), or change the value at the source",
            self.declared[column],
            path.display(),
            self.affinity[column],
        ))
        .table(&t.name)
        .column(&c.name)
    }

    /// `e` as a siphon error naming the table (and the column, when a value would
    /// have been changed).
    fn write_error(&self, path: &Path, t: &TableSchema, e: WriteError) -> Error {
        match e {
            WriteError::Sql(e) => write_err(path, t, e),
            WriteError::Unfit(i, why) => self.unfit(path, t, i, &why),
            WriteError::Other(e) => e,
        }
    }

    /// Prepares the table's upsert statements on `tx`, for many rows.
    fn upserter<'a>(&'a self, tx: &'a Transaction<'_>) -> rusqlite::Result<Upserter<'a>> {
        Ok(Upserter {
            sql: self,
            tx,
            insert: tx.prepare_cached(&self.insert)?,
            update: None,
            scratch: String::new(),
        })
    }

    fn delete(&self, tx: &Transaction<'_>, row: &Row) -> rusqlite::Result<u64> {
        let keys: Vec<Bind<'_>> = self.key.iter().map(|&i| Bind(&row[i])).collect();
        let params: Vec<&dyn ToSql> = keys.iter().map(|b| b as &dyn ToSql).collect();
        Ok(tx
            .prepare_cached(&self.delete)?
            .execute(params.as_slice())? as u64)
    }
}

/// One table's upsert statements held prepared for a run of rows, with their
/// values bound one by one: no statement-cache lookup and no parameter list per row.
struct Upserter<'a> {
    sql: &'a TableSql,
    tx: &'a Transaction<'a>,
    insert: CachedStatement<'a>,
    /// Prepared at the first row whose key exists.
    update: Option<CachedStatement<'a>>,
    /// Where dates, times and UUIDs are formatted before binding.
    scratch: String,
}

/// Binds `v`, the value of column `column`, at `index` in the form that its
/// target column keeps unchanged.
fn bind_fitting(
    st: &mut rusqlite::Statement<'_>,
    index: usize,
    v: &Value,
    affinity: Affinity,
    column: usize,
    scratch: &mut String,
) -> std::result::Result<(), WriteError> {
    match fit(v, affinity) {
        Ok(None) => bind_value(st, index, v, scratch)?,
        Ok(Some(form)) => st.raw_bind_parameter(index, form)?,
        Err(why) => return Err(WriteError::Unfit(column, why)),
    }
    Ok(())
}

impl Upserter<'_> {
    /// Like [`Upserter::upsert`], for a row of stored values bound as they are
    /// (the native path between SQLite files).
    fn upsert_stored(&mut self, row: &[ValueRef<'_>]) -> rusqlite::Result<(u64, u64)> {
        let sql = self.sql;
        for (i, v) in row.iter().enumerate() {
            self.insert
                .raw_bind_parameter(i + 1, ToSqlOutput::Borrowed(*v))?;
        }
        if self.insert.raw_execute()? == 1 {
            return Ok((1, 0));
        }
        let Some(update_sql) = &sql.update else {
            return Ok((0, 0));
        };
        let update = match &mut self.update {
            Some(st) => st,
            None => self.update.insert(self.tx.prepare_cached(update_sql)?),
        };
        for (i, v) in row.iter().enumerate() {
            update.raw_bind_parameter(i + 1, ToSqlOutput::Borrowed(*v))?;
        }
        for (j, &i) in sql.key.iter().enumerate() {
            update.raw_bind_parameter(sql.ncols + j + 1, ToSqlOutput::Borrowed(row[i]))?;
        }
        Ok((0, update.raw_execute()? as u64))
    }

    /// Inserts the row, or updates it when its key exists: returns (inserted, updated).
    fn upsert(&mut self, row: &Row) -> std::result::Result<(u64, u64), WriteError> {
        let sql = self.sql;
        if row.len() != sql.ncols {
            return Err(rusqlite::Error::InvalidParameterCount(row.len(), sql.ncols).into());
        }
        for (i, v) in row.iter().enumerate() {
            bind_fitting(
                &mut self.insert,
                i + 1,
                v,
                sql.affinity[i],
                i,
                &mut self.scratch,
            )?;
        }
        // `ON CONFLICT DO NOTHING`: no change means the key exists.
        if self.insert.raw_execute()? == 1 {
            return Ok((1, 0));
        }
        let Some(update_sql) = &sql.update else {
            return Ok((0, 0));
        };
        let update = match &mut self.update {
            Some(st) => st,
            None => self.update.insert(self.tx.prepare_cached(update_sql)?),
        };
        for (i, v) in row.iter().enumerate() {
            bind_fitting(update, i + 1, v, sql.affinity[i], i, &mut self.scratch)?;
        }
        for (j, &i) in sql.key.iter().enumerate() {
            let index = sql.ncols + j + 1;
            bind_fitting(
                update,
                index,
                &row[i],
                sql.affinity[i],
                i,
                &mut self.scratch,
            )?;
        }
        Ok((0, update.raw_execute()? as u64))
    }
}

/// Writes the checkpoint in the caller's transaction. The inner error is
/// [`siphon_core::ErrorKind::Fenced`] when the stored row carries a newer lease
/// epoch: the caller must then roll back, data included.
fn write_checkpoint(tx: &Transaction<'_>, cp: &Checkpoint) -> rusqlite::Result<Result<()>> {
    let json = serde_json::to_string(cp)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let epoch = i64::try_from(cp.epoch).unwrap_or(i64::MAX);
    let tbl = cp.stream.table.key();
    let written = tx
        .prepare_cached(&format!(
            "INSERT INTO {CHECKPOINTS} (pipeline, tbl, checkpoint, updated_at, key_version, epoch) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (pipeline, tbl) DO UPDATE SET checkpoint = excluded.checkpoint, \
             updated_at = excluded.updated_at, key_version = excluded.key_version, epoch = excluded.epoch \
             WHERE {CHECKPOINTS}.epoch <= excluded.epoch"
        ))?
        .execute(params![
            cp.stream.pipeline,
            tbl,
            json,
            chrono::Utc::now().to_rfc3339(),
            KEY_VERSION,
            epoch
        ])?;
    if written == 0 {
        let stored: i64 = tx.query_row(
            &format!("SELECT epoch FROM {CHECKPOINTS} WHERE pipeline = ?1 AND tbl = ?2"),
            params![cp.stream.pipeline, tbl],
            |r| r.get(0),
        )?;
        return Ok(Err(Error::new(
            siphon_core::ErrorKind::Fenced,
            format!(
                "pipeline {}: the target's checkpoint was written under lease epoch {stored}, newer \
                 than this worker's {}: another worker holds the pipeline's lease now, so this \
                 worker's batch was rolled back and it stops",
                cp.stream.pipeline, cp.epoch
            ),
        )
        .table(&cp.stream.table)));
    }
    Ok(Ok(()))
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
    fn capabilities(&self) -> siphon_core::SinkCapabilities {
        // One writer per file: no second handle for parallel workers.
        siphon_core::SinkCapabilities {
            another: false,
            ..siphon_core::SinkCapabilities::ALL
        }
    }

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
                }
                let existing = describe(c, &path, name)?.unwrap_or_else(|| t.clone());
                evolve::evolve(c, &path, &t, &existing, &options)
            })
            .await
    }

    async fn unfilled(&self, table: &TableSchema) -> Result<Vec<usize>> {
        let (t, path) = (table.clone(), self.db.path().to_path_buf());
        self.db.run(move |c| evolve::unfilled(c, &path, &t)).await
    }

    async fn fill(
        &self,
        table: &TableSchema,
        columns: &[usize],
        rows: Vec<Row>,
        done: bool,
    ) -> Result<()> {
        let (t, path, columns) = (
            table.clone(),
            self.db.path().to_path_buf(),
            columns.to_vec(),
        );
        self.db
            .run(move |c| evolve::fill(c, &path, &t, &columns, &rows, done))
            .await
    }

    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        let path = self.db.path().to_path_buf();
        let (p, t) = (stream.pipeline.clone(), stream.table.key());
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
        let (p, t) = (stream.pipeline.clone(), stream.table.key());
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

    async fn fence(&self, pipeline: &str, epoch: u64) -> Result<()> {
        let path = self.db.path().to_path_buf();
        let (p, e) = (
            pipeline.to_string(),
            i64::try_from(epoch).unwrap_or(i64::MAX),
        );
        self.db
            .run(move |c| {
                c.execute(
                    &format!(
                        "UPDATE {CHECKPOINTS} SET epoch = ?2 WHERE pipeline = ?1 AND epoch < ?2"
                    ),
                    rusqlite::params![p, e],
                )
                .map(|_| ())
                .map_err(|e| {
                    db_err(
                        &path,
                        "raising the lease epoch of the pipeline's checkpoints",
                        e,
                    )
                })
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
        let wal = self.wal.clone();
        let (stats, rows) = self
            .db
            .run(move |c| {
                let werr = |e| write_err(&path, &t, e);
                let tx = c.transaction().map_err(werr)?;
                let sql = TableSql::new(&t, &tx).map_err(werr)??;
                let mut stats = ApplyStats::default();
                let mut upserter = sql.upserter(&tx).map_err(werr)?;
                for row in &rows {
                    let (i, u) = upserter
                        .upsert(row)
                        .map_err(|e| sql.write_error(&path, &t, e))?;
                    stats.inserted += i;
                    stats.updated += u;
                }
                drop(upserter);
                write_checkpoint(&tx, &cp).map_err(werr)??;
                tx.commit().map_err(werr)?;
                if let Some(wal) = &wal {
                    wal.committed(c);
                }
                Ok((stats, rows))
            })
            .await?;
        // Freeing a chunk's values takes about a tenth of the time spent writing
        // them: do it on another thread, so the engine can hand over the next chunk
        // at once. It holds one chunk for a moment, not more.
        drop(tokio::task::spawn_blocking(move || drop(rows)));
        Ok(stats)
    }

    /// Stored values from a SQLite source, when every column of the target table
    /// is declared exactly as at the source (so has the same affinity, which
    /// stores those values unchanged) and none is generated.
    async fn accepts_native(&self, table: &TableSchema, format: &NativeFormat) -> Result<bool> {
        if format.encoding != crate::native::ENCODING
            || format.columns.len() != table.columns.len()
            || table.columns.iter().any(|c| c.generated)
        {
            return Ok(false);
        }
        let t = table.clone();
        let wanted = format.columns.clone();
        let path = self.db.path().to_path_buf();
        self.db
            .run(move |c| {
                let declared = TableSql::declared(&t, c)
                    .map_err(|e| db_err(&path, "reading the target's columns", e))?;
                Ok(declared
                    .iter()
                    .zip(&wanted)
                    .all(|(have, want)| have.as_deref() == Some(want.as_str())))
            })
            .await
    }

    async fn load_native(
        &self,
        table: &TableSchema,
        chunk: NativeChunk,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let t = table.clone();
        let cp = checkpoint.clone();
        let path = self.db.path().to_path_buf();
        let wal = self.wal.clone();
        self.db
            .run(move |c| {
                let werr = |e| write_err(&path, &t, e);
                let tx = c.transaction().map_err(werr)?;
                let sql = TableSql::new(&t, &tx).map_err(werr)??;
                let mut stats = ApplyStats::default();
                let mut upserter = sql.upserter(&tx).map_err(werr)?;
                let mut values = crate::native::Values::new(&chunk.data);
                let mut row = Vec::with_capacity(sql.ncols);
                for _ in 0..chunk.rows {
                    row.clear();
                    for _ in 0..sql.ncols {
                        row.push(values.next_value().ok_or_else(|| {
                            Error::internal("a native chunk ended inside a row").table(&t.name)
                        })?);
                    }
                    let (i, u) = upserter.upsert_stored(&row).map_err(werr)?;
                    stats.inserted += i;
                    stats.updated += u;
                }
                if !values.is_empty() {
                    return Err(
                        Error::internal("a native chunk holds more rows than it says")
                            .table(&t.name),
                    );
                }
                drop(upserter);
                write_checkpoint(&tx, &cp).map_err(werr)??;
                tx.commit().map_err(werr)?;
                if let Some(wal) = &wal {
                    wal.committed(c);
                }
                Ok(stats)
            })
            .await
    }

    async fn apply(&self, batch: Batch, checkpoint: &Checkpoint) -> Result<ApplyStats> {
        let cp = checkpoint.clone();
        let path = self.db.path().to_path_buf();
        let wal = self.wal.clone();
        self.db
            .run(move |c| {
                let tx = c
                    .transaction()
                    .map_err(|e| db_err(&path, "starting a transaction", e))?;
                let mut stats = ApplyStats::default();
                // Changes come in runs of one table; each run gets its statements once.
                let mut rest = batch.changes.as_slice();
                while let Some(first) = rest.first() {
                    let t = &first.table;
                    let len = rest
                        .iter()
                        .take_while(|ch| Arc::ptr_eq(&ch.table, t))
                        .count();
                    let (run, tail) = rest.split_at(len);
                    rest = tail;
                    let werr = |e| write_err(&path, t, e);
                    let sql = TableSql::new(t, &tx).map_err(werr)??;
                    let mut upserter = None;
                    let mut scratch = String::new();
                    for ch in run {
                        match &ch.op {
                            // A table without a key: one equal row changes.
                            Op::Update { before, after } if sql.key.is_empty() => {
                                stats.updated += exact::update(
                                    &tx,
                                    &sql,
                                    t,
                                    before.as_ref(),
                                    after,
                                    &mut scratch,
                                )
                                .map_err(|e| sql.write_error(&path, t, e))?;
                            }
                            Op::Delete(row) if sql.key.is_empty() => {
                                stats.deleted += exact::delete(&tx, &sql, row, &mut scratch)
                                    .map_err(|e| sql.write_error(&path, t, e))?;
                            }
                            Op::Insert(row) | Op::Update { after: row, .. } => {
                                let w = match &mut upserter {
                                    Some(w) => w,
                                    None => upserter.insert(sql.upserter(&tx).map_err(werr)?),
                                };
                                let (i, u) =
                                    w.upsert(row).map_err(|e| sql.write_error(&path, t, e))?;
                                stats.inserted += i;
                                stats.updated += u;
                            }
                            Op::Delete(row) => {
                                stats.deleted += sql.delete(&tx, row).map_err(werr)?
                            }
                            Op::Truncate => {
                                stats.emptied +=
                                    tx.execute(&sql.truncate, []).map_err(werr)? as u64;
                            }
                            Op::Schema(_) => {
                                return Err(Error::internal(
                                    "schema changes are applied through prepare",
                                )
                                .table(&t.name))
                            }
                        }
                    }
                }
                write_checkpoint(&tx, &cp)
                    .map_err(|e| db_err(&path, "writing the checkpoint", e))??;
                tx.commit().map_err(|e| db_err(&path, "committing", e))?;
                if let Some(wal) = &wal {
                    wal.committed(c);
                }
                Ok(stats)
            })
            .await
    }

    async fn swap_refusal(&self, _table: &TableSchema) -> Result<Option<String>> {
        Ok(None)
    }

    async fn open_shadow(
        &self,
        table: &TableSchema,
        resume: Option<&siphon_core::TableName>,
    ) -> Result<(TableSchema, bool)> {
        self.shadow_open(table, resume).await
    }

    async fn swap_in(
        &self,
        table: &TableSchema,
        shadow: &TableSchema,
        checkpoint: &Checkpoint,
    ) -> Result<u64> {
        self.shadow_swap_in(table, shadow, checkpoint).await
    }

    async fn drop_shadow(&self, shadow: &siphon_core::TableName) -> Result<()> {
        self.shadow_drop(shadow).await
    }

    async fn count_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        let sql = format!("SELECT count(*) FROM {}", quote(&table.name.name));
        let path = self.db.path().to_path_buf();
        let name = table.name.clone();
        let n: i64 = self
            .db
            .run(move |c| {
                c.query_row(&sql, [], |r| r.get(0))
                    .map_err(|e| db_err(&path, &format!("counting the rows of {name}"), e))
            })
            .await?;
        Ok(Some(n as u64))
    }

    async fn read_keys(
        &self,
        table: &TableSchema,
        after: Option<&Row>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let key = table.require_row_key()?.to_vec();
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

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_core::{Phase, Value};

    fn checkpoint(table: &TableSchema) -> Checkpoint {
        Checkpoint {
            stream: StreamId::new("p", &table.name),
            epoch: 0,
            phase: Phase::Snapshot {
                last_key: None,
                resume_position: None,
                ranges: Vec::new(),
                shadow: None,
            },
        }
    }

    fn row(id: i64, amount: &str, at: &str) -> Row {
        vec![
            Value::Int64(id),
            Value::Decimal(amount.parse().unwrap()),
            Value::Timestamp(crate::types::parse_timestamp(at).unwrap()),
        ]
    }

    #[tokio::test]
    async fn loading_inserts_new_keys_and_updates_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.db");
        let sink = SqliteSink::open(&path).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, amount NUMERIC(12,2) NOT NULL, at TIMESTAMP);
             INSERT INTO t VALUES (2, 1, '2000-01-01 00:00:00'), (4, 1, NULL);",
        )
        .unwrap();
        let table = describe(&conn, &path, "t").unwrap().unwrap();

        let rows: Vec<Row> = (1..=5)
            .map(|id| row(id, "12.50", "2024-02-29 10:11:12.5"))
            .collect();
        let cp = checkpoint(&table);
        let stats = sink.load(&table, rows, &cp).await.unwrap();
        assert_eq!((stats.inserted, stats.updated), (3, 2));
        let got: Vec<(i64, f64, String)> = conn
            .prepare("SELECT id, amount, at FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(got.len(), 5);
        assert!(got
            .iter()
            .all(|(_, a, at)| *a == 12.5 && at == "2024-02-29 10:11:12.500"));
        assert_eq!(sink.checkpoint(&cp.stream).await.unwrap(), Some(cp.clone()));

        // A row that does not fit the table fails the whole chunk, checkpoint included.
        let bad = vec![row(6, "1", "2024-01-01 00:00:00"), vec![Value::Int64(7)]];
        let mut later = cp.clone();
        later.phase = Phase::Streaming { position: None };
        assert!(sink.load(&table, bad, &later).await.is_err());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(sink.checkpoint(&cp.stream).await.unwrap(), Some(cp));
    }

    #[tokio::test]
    async fn a_value_the_target_column_would_change_is_refused_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.db");
        let sink = SqliteSink::open(&path).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        // A table made before decimals were stored as text: NUMERIC affinity.
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, amount NUMERIC(38,10), at TIMESTAMP)",
        )
        .unwrap();
        let mut table = describe(&conn, &path, "t").unwrap().unwrap();
        table.origin = siphon_core::typemap::Engine::Postgres;
        let cp = checkpoint(&table);
        let exact = vec![row(1, "12.5000000000", "2024-01-01 00:00:00")];
        sink.load(&table, exact, &cp).await.unwrap();
        let wide = vec![row(
            2,
            "12345678901234567890.1234567891",
            "2024-01-01 00:00:00",
        )];
        let err = sink.load(&table, wide, &cp).await.unwrap_err().to_string();
        for part in [
            "amount",
            "t",
            "12345678901234567890.1234567891",
            "DECIMAL_TEXT(38,10)",
        ] {
            assert!(err.contains(part), "{part:?} missing from: {err}");
        }
        let stored: Vec<String> = conn
            .prepare("SELECT quote(amount) FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(stored, ["12.5"]);
    }

    /// Every row of `table` as SQLite stores it (`quote()` of each column).
    fn stored_rows(path: &Path, table: &str, cols: &str) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let quoted: Vec<String> = cols.split(',').map(|c| format!("quote({c})")).collect();
        let sql = format!(
            "SELECT {} FROM {table} ORDER BY id",
            quoted.join(" || ' ' || ")
        );
        let mut st = conn.prepare(&sql).unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    #[tokio::test]
    async fn sqlite_to_sqlite_full_loads_keep_stored_values_exactly() {
        use siphon_core::{Source, TableFilter};
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("source.db"), dir.path().join("target.db"));
        let cols = "id,u,at,tz,flag,amount,note,raw,doc,other";
        rusqlite::Connection::open(&src)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, u UUID, at TIMESTAMP, tz TIMESTAMPTZ, flag BOOLEAN,
                   amount NUMERIC(12,2), note TEXT, raw BLOB, doc JSON, other);
                 INSERT INTO t VALUES
                   (1, x'00112233445566778899aabbccddeeff', '2024-02-29T10:11:12Z', '2024-02-29 10:11:12+02:00',
                    'yes', 12.5, '007', x'00ff', '{ \"a\" : 1 }', 1.5),
                   (2, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 1700000000, '2024-02-29T10:11:12.5Z', 1,
                    '12.345', 'naïve', x'', '[1, 2]', x'01'),
                   (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
            )
            .unwrap();
        let source = crate::SqliteSource::open(&src).unwrap();
        let table = source
            .discover(&TableFilter {
                include: vec!["t".into()],
                exclude: vec![],
            })
            .await
            .unwrap()
            .pop()
            .unwrap();
        let sink = SqliteSink::open(&dst).unwrap();
        sink.prepare(&table, &SchemaOptions::default())
            .await
            .unwrap();
        let format = source.native_format(&table).await.unwrap().unwrap();
        assert!(sink.accepts_native(&table, &format).await.unwrap());
        let cp = checkpoint(&table);
        let mut after = None;
        let mut inserted = 0;
        loop {
            let chunk = source
                .read_native(&table, after.as_ref(), None, 2)
                .await
                .unwrap();
            if chunk.rows == 0 {
                break;
            }
            after = chunk.last.clone();
            inserted += sink.load_native(&table, chunk, &cp).await.unwrap().inserted;
        }
        assert_eq!(inserted, 3);
        let want = stored_rows(&src, "t", cols);
        assert!(want[0].starts_with("1 X'00112233"), "{want:?}");
        assert_eq!(stored_rows(&dst, "t", cols), want);

        // A target column declared otherwise (here TEXT for the UUID) may store
        // the values otherwise: no native path.
        let other = dir.path().join("other.db");
        rusqlite::Connection::open(&other)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, u TEXT, at TIMESTAMP, tz TIMESTAMPTZ, flag BOOLEAN,
                   amount NUMERIC(12,2), note TEXT, raw BLOB, doc JSON, other)",
            )
            .unwrap();
        let sink = SqliteSink::open(&other).unwrap();
        assert!(!sink.accepts_native(&table, &format).await.unwrap());
    }

    #[tokio::test]
    async fn created_tables_keep_decimals_as_text_with_their_declared_scale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.db");
        let sink = SqliteSink::open(&path).unwrap();
        let scratch = rusqlite::Connection::open_in_memory().unwrap();
        scratch
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, amount NUMERIC(38,10), at TIMESTAMP)",
            )
            .unwrap();
        let mut table = describe(&scratch, Path::new(":memory:"), "t")
            .unwrap()
            .unwrap();
        table.origin = siphon_core::typemap::Engine::Postgres;
        sink.prepare(&table, &SchemaOptions::default())
            .await
            .unwrap();
        let cp = checkpoint(&table);
        let rows = vec![row(
            1,
            "12345678901234567890.1234567891",
            "2024-01-01 00:00:00",
        )];
        sink.load(&table, rows, &cp).await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let (declared, stored): (String, String) = conn
            .query_row(
                "SELECT (SELECT type FROM pragma_table_info('t') WHERE name = 'amount'), quote(amount) FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(declared, "DECIMAL_TEXT(38,10)");
        assert_eq!(stored, "'12345678901234567890.1234567891'");
        let back = describe(&conn, &path, "t").unwrap().unwrap();
        assert_eq!(
            back.columns[1].data_type.kind,
            siphon_core::TypeKind::Decimal {
                precision: Some(38),
                scale: Some(10)
            }
        );
    }
}
