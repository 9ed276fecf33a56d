//! Writing to MySQL and MariaDB: tables created, rows loaded, change batches applied, checkpoints kept in the target.
//!
//! Every table goes into the database the target URL names, whatever the
//! schema of its name: a MySQL database is a schema, and a source's schema
//! (`public` from PostgreSQL, or the source database from MySQL) means nothing
//! on the target. Chunks are loaded by `LOAD DATA LOCAL INFILE` streamed from
//! memory (multi-row `INSERT` where the server has `local_infile` off), change
//! batches as multi-row `INSERT … ON DUPLICATE KEY UPDATE` and batched
//! `DELETE … IN`, each in one transaction with the stream's checkpoint in
//! `siphon_checkpoints`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::{
    ApplyStats, Batch, Checkpoint, Error, ErrorKind, Result, Row, SchemaOptions, Sink,
    SinkCapabilities, StreamId, TableName, TableSchema,
};
use tokio::sync::MutexGuard;

use crate::conn::{self, my_err, qualified, ConnConfig, Server};

mod apply;
pub(crate) mod checkpoints;
mod ddl;
pub(crate) mod encode;
mod exact;
pub(crate) mod fill;
mod keys;
mod load;

use encode::FieldMode;

/// Statements each sink connection runs after the connector's own session
/// setup (UTC, utf8mb4): strict mode, so that a value the column cannot hold
/// fails instead of being cut; `NO_AUTO_VALUE_ON_ZERO`, so that a 0 written to
/// an `AUTO_INCREMENT` column stays 0; backslash escapes on, as the encoding
/// expects; and no foreign key checks, since a batch is applied table by table
/// and rows of one table may arrive before those they refer to; and
/// `@siphon_applying` ([`crate::objects::target::APPLYING_VARIABLE`]), so the
/// triggers siphon created on the target do not fire on the rows it writes.
/// The sessions keep every warning of a statement (up to the server's
/// largest `max_error_count`), so the expected ones can be told from others.
const SESSION: &[&str] = &[
    STRICT,
    "SET SESSION foreign_key_checks = 0",
    "SET @siphon_applying = 1",
    "SET SESSION max_error_count = 65535",
];

/// The sink sessions' `sql_mode` (see [`SESSION`]).
const STRICT: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'";

/// [`STRICT`] without strict mode, for the statements that write an enum's
/// error value (see `load::execute`), which no strict session can write.
const LENIENT: &str =
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'";

/// The most SQL text one multi-row statement carries, below any sane
/// `max_allowed_packet`.
const STATEMENT_BYTES: usize = 4 << 20;

/// A target table as written: its name, and for each source column (in
/// source order) the target column's name and how it travels.
#[derive(Debug, Clone)]
pub(crate) struct TargetTable {
    /// `` `database`.`table` ``.
    name: String,
    columns: Vec<String>,
    /// Source column positions of the row key; empty for a table without one.
    key: Vec<usize>,
    /// Source column positions that are written (generated target columns are not).
    write: Vec<usize>,
    /// How each column travels in `LOAD DATA` text.
    modes: Vec<FieldMode>,
    /// Columns whose target type is `json` (compared as documents on MySQL).
    json: Vec<bool>,
}

impl TargetTable {
    /// Fails when `row` has fewer values than the prepared table has columns
    /// (a row of an older shape of the table, which must be prepared again).
    fn check_shape(&self, row: &Row, table: &TableSchema) -> Result<()> {
        if row.len() < self.columns.len() {
            return Err(Error::internal(format!(
                "a row of {} values for the {} columns the target table was prepared with",
                row.len(),
                self.columns.len()
            ))
            .table(&table.name));
        }
        Ok(())
    }
}

/// Writes to a MySQL or MariaDB database. One connection per handle, opened
/// again when it was lost; [`Sink::another`] opens another for a parallel
/// worker.
#[derive(Debug, Clone)]
pub struct MySqlSink {
    config: Arc<ConnConfig>,
    conn: Arc<tokio::sync::Mutex<Option<Conn>>>,
    tables: Arc<Mutex<HashMap<TableName, Arc<TargetTable>>>>,
    server: Server,
    /// The URL's database, where every table and the checkpoints go.
    database: String,
    /// Whether the server takes `LOAD DATA LOCAL INFILE` (`local_infile=ON`).
    infile: Arc<AtomicBool>,
    /// The schema objects (indexes, views, routines, triggers) of the tables
    /// prepared, created on the target by `finish_tables`.
    objects: Arc<crate::objects::Registry>,
}

impl MySqlSink {
    /// Connects to the database a `mysql://` URL names (which must name one)
    /// and creates the checkpoint table there when missing.
    pub async fn connect(url: &str) -> Result<MySqlSink> {
        let config = ConnConfig::parse(url)?;
        let database = config.database().map(str::to_string).ok_or_else(|| {
            Error::config(
                "the MySQL target URL names no database: write mysql://USER@HOST:PORT/DATABASE, \
                 the database siphon creates the tables in",
            )
        })?;
        let mut conn = open(&config).await?;
        let server = conn::server(&mut conn).await?;
        let local: Option<i64> = conn
            .query_first("SELECT @@local_infile")
            .await
            .map_err(|e| my_err(e, "reading local_infile"))?;
        let infile = local == Some(1);
        if !infile {
            tracing::info!(
                server = %server,
                "the target has local_infile=OFF: chunks are loaded by multi-row INSERT (slower); \
                 SET GLOBAL local_infile=ON on the target to load them by LOAD DATA LOCAL INFILE"
            );
        }
        checkpoints::ensure(&mut conn, &database, &server).await?;
        tracing::info!(server = %server, endpoint = %config.endpoint(), database = %database, "connected to the target");
        Ok(MySqlSink {
            config: Arc::new(config),
            conn: Arc::new(tokio::sync::Mutex::new(Some(conn))),
            tables: Arc::default(),
            server,
            database,
            infile: Arc::new(AtomicBool::new(infile)),
            objects: Arc::default(),
        })
    }

    /// Which server this sink writes to.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The prepared table of `t`.
    fn target(&self, t: &TableSchema) -> Result<Arc<TargetTable>> {
        self.tables
            .lock()
            .ok()
            .and_then(|m| m.get(&t.name).cloned())
            .ok_or_else(|| Error::internal("the table was not prepared").table(&t.name))
    }

    /// The connection, opened again when the last one was lost.
    async fn session(&self) -> Result<MutexGuard<'_, Option<Conn>>> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(open(&self.config).await?);
        }
        Ok(guard)
    }

    /// Runs `work` in a transaction on the connection: committed when it
    /// succeeds, rolled back when it fails (and the connection dropped when it
    /// was lost, so the next call opens another).
    async fn in_transaction<T, F>(&self, work: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> futures_util::future::BoxFuture<'c, Result<T>>,
    {
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        let result: Result<T> = async {
            conn.query_drop("START TRANSACTION")
                .await
                .map_err(|e| my_err(e, "starting a transaction"))?;
            let out = work(conn).await?;
            conn.query_drop("COMMIT")
                .await
                .map_err(|e| my_err(e, "committing"))?;
            Ok(out)
        }
        .await;
        if let Err(e) = &result {
            let lost =
                e.kind() == ErrorKind::Connection || conn.query_drop("ROLLBACK").await.is_err();
            if lost {
                *guard = None;
            }
        }
        result
    }
}

/// Opens a connection with the sink's session settings.
async fn open(config: &ConnConfig) -> Result<Conn> {
    let mut conn = config.connect("target").await?;
    for stmt in SESSION {
        conn.query_drop(*stmt)
            .await
            .map_err(|e| my_err(e, "setting up the target session"))?;
    }
    // Under REPEATABLE READ, the locking read of a checkpoint row not written
    // yet locks the gap where it would go, and two transactions writing the
    // first checkpoints of two tables side by side (tables loaded in
    // parallel) then deadlock on their inserts. READ COMMITTED locks rows
    // only. A binlog in STATEMENT format cannot log writes made under it, so
    // such a target keeps the server's level.
    let (log_bin, format): (Option<i64>, Option<String>) = conn
        .query_first("SELECT @@log_bin, @@binlog_format")
        .await
        .map_err(|e| my_err(e, "setting up the target session"))?
        .unwrap_or((None, None));
    if log_bin != Some(1) || !format.is_some_and(|f| f.eq_ignore_ascii_case("STATEMENT")) {
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(|e| my_err(e, "setting up the target session"))?;
    }
    Ok(conn)
}

/// An error of the server while writing `table`: the table named, the column
/// too when the message names one, and for refused data what to do.
pub(crate) fn write_err(e: mysql_async::Error, table: &TableSchema, doing: &str) -> Error {
    let column = match &e {
        mysql_async::Error::Server(s) => column_in(&s.message),
        _ => None,
    };
    let mut err = conn::my_err_on(e, &format!("{doing} {}", table.name), conn::Side::Target);
    if err.kind() == ErrorKind::BadInput {
        err = Error::bad_input(format!(
            "{err}; the target refused the value: change the target column to hold it (or drop \
             the constraint), or change the value at the source, then `siphon sync resync` the table"
        ))
        .source(err);
    }
    let err = err.table(&table.name);
    match column {
        Some(c) => err.column(c),
        None => err,
    }
}

/// The column a server message names: `for column 'c'`, `Column 'c'`, or
/// MariaDB's `` for column `db`.`t`.`c` ``.
fn column_in(message: &str) -> Option<String> {
    for marker in ["for column '", "Column '"] {
        if let Some(at) = message.find(marker) {
            let rest = &message[at + marker.len()..];
            return rest.split('\'').next().map(str::to_string);
        }
    }
    let at = message.find("for column `")?;
    let rest = &message[at + "for column ".len()..];
    let end = rest.find(" at row").unwrap_or(rest.len());
    let last = rest[..end].rsplit('.').next()?;
    Some(last.trim_matches('`').replace("``", "`"))
}

impl Sink for MySqlSink {
    fn capabilities(&self) -> SinkCapabilities {
        // Keys can be listed, more connections opened and added columns
        // filled; no native format, no shadow tables.
        SinkCapabilities {
            read_keys: true,
            another: true,
            fill: true,
            ..SinkCapabilities::NONE
        }
    }

    async fn prepare(&self, table: &TableSchema, options: &SchemaOptions) -> Result<()> {
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        // Columns about to be added to rows the target holds wait for the
        // source's values of them (noted before the ALTER TABLE commits).
        fill::record(conn, &self.database, &self.server, table, options).await?;
        // A MySQL source's columns that changed type since the table was
        // created are widened first, or the table stops with what to do.
        crate::objects::drift::reconcile(conn, &self.database, table, options).await?;
        let t = ddl::prepare(conn, &self.database, &self.server, table, options).await?;
        self.objects.prepared(table);
        self.tables
            .lock()
            .map_err(|_| Error::internal("table cache poisoned"))?
            .insert(table.name.clone(), Arc::new(t));
        Ok(())
    }

    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        checkpoints::read(conn, &self.database, stream).await
    }

    async fn finish_tables(&self, options: &SchemaOptions) -> Result<()> {
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        self.objects
            .finish(conn, &self.database, options)
            .await
            .map(drop)
    }

    async fn reset(&self, stream: &StreamId) -> Result<()> {
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        checkpoints::remove(conn, &self.database, stream).await
    }

    async fn fence(&self, pipeline: &str, epoch: u64) -> Result<()> {
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        checkpoints::fence(conn, &self.database, pipeline, epoch).await
    }

    async fn load(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let t = self.target(table)?;
        for r in &rows {
            t.check_shape(r, table)?;
        }
        let infile = self.infile.load(Ordering::Relaxed);
        let db = self.database.clone();
        let cp = checkpoint.clone();
        let table = table.clone();
        let r = self
            .in_transaction(move |conn| {
                Box::pin(async move {
                    checkpoints::claim(conn, &db, &cp).await?;
                    let stats = if infile {
                        load::load_data(conn, &t, &table, &rows).await?
                    } else {
                        load::insert(conn, &t, &table, &rows).await?
                    };
                    checkpoints::write(conn, &db, &cp).await?;
                    Ok(stats)
                })
            })
            .await;
        if let Err(e) = &r {
            if load::infile_refused(e) {
                // The server turned local_infile off since: insert from now on.
                tracing::info!(
                    "the target refused LOAD DATA LOCAL INFILE: loading by multi-row INSERT from now on"
                );
                self.infile.store(false, Ordering::Relaxed);
            }
        }
        r
    }

    async fn another(&self) -> Result<Option<MySqlSink>> {
        let conn = open(&self.config).await?;
        Ok(Some(MySqlSink {
            conn: Arc::new(tokio::sync::Mutex::new(Some(conn))),
            ..self.clone()
        }))
    }

    async fn apply(&self, batch: Batch, checkpoint: &Checkpoint) -> Result<ApplyStats> {
        let mut targets = HashMap::new();
        for c in &batch.changes {
            if !targets.contains_key(&c.table.name) {
                targets.insert(c.table.name.clone(), self.target(&c.table)?);
            }
        }
        let db = self.database.clone();
        let cp = checkpoint.clone();
        let flavor = self.server.flavor;
        self.in_transaction(move |conn| {
            Box::pin(async move {
                checkpoints::claim(conn, &db, &cp).await?;
                let stats = apply::apply(conn, &targets, &batch.changes, flavor).await?;
                checkpoints::write(conn, &db, &cp).await?;
                Ok(stats)
            })
        })
        .await
    }

    async fn read_keys(
        &self,
        table: &TableSchema,
        after: Option<&Row>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let t = self.target(table)?;
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        keys::read(conn, &t, table, after, limit).await
    }

    async fn unfilled(&self, table: &TableSchema) -> Result<Vec<usize>> {
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        fill::unfilled(conn, &self.database, table).await
    }

    async fn fill(
        &self,
        table: &TableSchema,
        columns: &[usize],
        rows: Vec<Row>,
        done: bool,
    ) -> Result<()> {
        let t = self.target(table)?;
        // Generated target columns are computed there, never written.
        let columns: Vec<usize> = columns
            .iter()
            .copied()
            .filter(|i| t.write.contains(i))
            .collect();
        let staged = !rows.is_empty() && !columns.is_empty();
        if staged {
            let mut guard = self.session().await?;
            let conn = guard
                .as_mut()
                .ok_or_else(|| Error::internal("no target connection"))?;
            if let Err(e) = fill::stage(conn, &self.database, &t, table, &columns).await {
                if e.kind() == ErrorKind::Connection {
                    *guard = None;
                }
                return Err(e);
            }
        }
        let db = self.database.clone();
        let table = table.clone();
        let r = self
            .in_transaction(move |conn| {
                Box::pin(
                    async move { fill::fill(conn, &db, &t, &table, &columns, &rows, done).await },
                )
            })
            .await;
        if staged {
            if let Ok(mut guard) = self.session().await {
                if let Some(conn) = guard.as_mut() {
                    // A temporary table left behind goes with the session.
                    let _ = fill::unstage(conn, &self.database).await;
                }
            }
        }
        r
    }

    async fn count_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        let t = self.target(table)?;
        let mut guard = self.session().await?;
        let conn = guard
            .as_mut()
            .ok_or_else(|| Error::internal("no target connection"))?;
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {}", t.name))
            .await
            .map_err(|e| write_err(e, table, "counting the rows of"))?;
        Ok(n)
    }
}

/// `` `database`.`table` `` for a table of the sink's database.
pub(crate) fn target_name(database: &str, table: &TableSchema) -> String {
    qualified(Some(database), &table.name.name)
}

#[cfg(test)]
mod tests {
    use super::column_in;

    #[test]
    fn columns_are_found_in_server_messages() {
        assert_eq!(
            column_in("Data too long for column 'name' at row 3").as_deref(),
            Some("name")
        );
        assert_eq!(column_in("Column 'v' cannot be null").as_deref(), Some("v"));
        assert_eq!(
            column_in("Incorrect integer value: 'x' for column `db`.`t`.`n``m` at row 1")
                .as_deref(),
            Some("n`m")
        );
        assert_eq!(column_in("CONSTRAINT `c` failed for `db`.`t`"), None);
    }
}
