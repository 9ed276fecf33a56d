//! PostgreSQL as a target: table creation, loads by binary COPY, set-based upserts
//! and deletes through a staging table, and checkpoints in the same transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::SinkExt;
use siphon_core::{
    ApplyStats, Batch, Checkpoint, Error, NativeChunk, NativeFormat, Result, Row, SchemaOptions,
    Sink, StreamId, TableName, TableSchema, Value,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement, Transaction};

use crate::conn::{column_list, connect, connect_config, ident, pg_err, qualified};
use crate::copy;
use crate::schema::{self, create_statements};
use crate::source::{Param, RawField, NATIVE_ENCODING};
use crate::types::{self, PgType};

mod checkpoints;
mod evolve;
mod swap;

mod apply;
mod exact;
mod staging;

use staging::Staging;

const CHECKPOINTS: &str = "siphon_checkpoints";

/// A target table as written: its name, and for each source column (in source
/// order) the target column's type; generated target columns are never written.
#[derive(Debug, Clone)]
struct TargetTable {
    name: String,
    columns: Vec<String>,
    types: Vec<PgType>,
    key: Vec<usize>,
    /// Source column positions that are written.
    write: Vec<usize>,
    /// A partitioned table, whose `RETURNING` cannot read system columns.
    partitioned: bool,
}

/// Writes to a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresSink {
    client: Arc<tokio::sync::Mutex<Client>>,
    tables: Arc<Mutex<HashMap<TableName, Arc<TargetTable>>>>,
    /// The checkpoint upsert, prepared once: every chunk writes one.
    write_checkpoint: Statement,
    /// Per table, its `COPY … FROM STDIN` of every column, prepared once for
    /// native loads.
    native_copy: Arc<Mutex<HashMap<TableName, Statement>>>,
    /// The parsed URL, for further connections (its `Debug` hides the password).
    config: Arc<crate::conn::ConnConfig>,
    /// This connection's staging tables and statements for change batches.
    staging: Arc<Staging>,
    /// Whether this connection applies with `session_replication_role = replica`.
    replica: bool,
    /// The prepared tables' constraints, sequences, indexes and views.
    pub(crate) objects: Arc<crate::objects::Registry>,
}

fn schema_of(t: &TableSchema) -> String {
    t.name
        .schema
        .clone()
        .unwrap_or_else(|| "public".to_string())
}

impl PostgresSink {
    /// Connects to the database named by a `postgres://` URL and creates the
    /// checkpoint table when missing.
    pub async fn connect(url: &str) -> Result<PostgresSink> {
        let config = crate::conn::ConnConfig::parse(url)?;
        let client = connect(url, "target").await?;
        PostgresSink::with_client(client, Arc::new(config), Arc::default()).await
    }

    async fn with_client(
        client: Client,
        config: Arc<crate::conn::ConnConfig>,
        tables: Arc<Mutex<HashMap<TableName, Arc<TargetTable>>>>,
    ) -> Result<PostgresSink> {
        let mut client = client;
        checkpoints::ensure(&mut client).await?;
        let write_checkpoint = client
            .prepare(&format!(
                "INSERT INTO public.{CHECKPOINTS} (pipeline, tbl, checkpoint, updated_at, key_version, epoch) \
                 VALUES ($1, $2, $3, now(), {}, $4) ON CONFLICT (pipeline, tbl) DO UPDATE SET \
                 checkpoint = EXCLUDED.checkpoint, updated_at = now(), key_version = EXCLUDED.key_version, \
                 epoch = EXCLUDED.epoch WHERE {CHECKPOINTS}.epoch <= EXCLUDED.epoch",
                checkpoints::KEY_VERSION
            ))
            .await
            .map_err(|e| pg_err(e, "preparing the checkpoint statement"))?;
        let replica = crate::objects::replica_role(&client).await;
        Ok(PostgresSink {
            replica,
            objects: Arc::default(),
            client: Arc::new(tokio::sync::Mutex::new(client)),
            tables,
            write_checkpoint,
            native_copy: Arc::default(),
            config,
            staging: Arc::default(),
        })
    }

    fn target(&self, t: &TableSchema) -> Result<Arc<TargetTable>> {
        self.tables
            .lock()
            .ok()
            .and_then(|m| m.get(&t.name).cloned())
            .ok_or_else(|| Error::internal("the table was not prepared").table(&t.name))
    }
}

/// Encodes rows (their columns `cols`) as COPY data, in binary where siphon has
/// a binary codec for every column's type, else in text (see [`copy::Format`]).
fn copy_data(
    t: &TargetTable,
    rows: &[&Row],
    cols: &[usize],
    table: &TableSchema,
) -> Result<(Bytes, copy::Format)> {
    let types: Vec<&PgType> = cols.iter().map(|&i| &t.types[i]).collect();
    let format = copy::Format::of(&types);
    // Sized for the rows' values: a buffer of huge values is never grown.
    let len = rows
        .iter()
        .map(|r| format.row_len(cols.iter().map(|&i| &r[i])));
    let mut buf = Vec::with_capacity(64 + len.sum::<usize>());
    format.write_header(&mut buf);
    for row in rows {
        format
            .write_row(&mut buf, cols.iter().map(|&i| &row[i]), &types)
            .map_err(|e| {
                let column = match &e {
                    copy::CopyError::Column { column, .. } => cols.get(*column),
                    _ => None,
                };
                let err = Error::bad_input(format!(
                    "a value does not fit the target column: {e}; change the target column's type to hold it, \
                     or change the value at the source"
                ))
                .table(&table.name);
                match column {
                    Some(&i) => err.column(&t.columns[i]),
                    None => err,
                }
            })?;
    }
    format.write_trailer(&mut buf);
    Ok((Bytes::from(buf), format))
}

/// COPY data of a load is handed to the connection in pieces of about this
/// size, each sent while the next is encoded, so PostgreSQL parses a chunk's
/// first rows while siphon encodes its last ones.
const LOAD_PIECE: usize = 256 * 1024;

/// Sends `rows` (their columns `cols`) by `COPY … FROM STDIN` into `into`, the
/// data encoded as it is sent (see [`copy::Format`] for the format) in pieces
/// of about [`LOAD_PIECE`] bytes: no buffer of the whole chunk, and no pass
/// over the rows to size one. A piece grows beyond that size only for a row
/// larger than it, and is then allocated once at that row's size. A value that
/// does not fit its column aborts the COPY (the caller's transaction is then
/// void) with an error naming the table and column.
async fn copy_rows_into(
    tx: &Transaction<'_>,
    t: &TargetTable,
    rows: &[Row],
    cols: &[usize],
    table: &TableSchema,
    into: &str,
) -> Result<u64> {
    let types: Vec<&PgType> = cols.iter().map(|&i| &t.types[i]).collect();
    let format = copy::Format::of(&types);
    let sql = format!(
        "COPY {into} ({}) FROM STDIN (FORMAT {})",
        column_list(cols.iter().map(|&i| t.columns[i].as_str())),
        format.as_sql()
    );
    let werr = |e| pg_err(e, &format!("loading {}", table.name));
    let sink = tx.copy_in(sql.as_str()).await.map_err(werr)?;
    futures_util::pin_mut!(sink);
    let mut buf = Vec::with_capacity(LOAD_PIECE + 64);
    format.write_header(&mut buf);
    for row in rows {
        let values = cols.iter().map(|&i| &row[i]);
        // The row is measured as it is written (its values are in the CPU's
        // cache then): what is buffered goes first when the row would not fit.
        let need = format.row_len(values.clone());
        if buf.len() + need > buf.capacity() {
            if buf.is_empty() {
                buf.reserve_exact(need + 64);
            } else {
                let full =
                    std::mem::replace(&mut buf, Vec::with_capacity(need.max(LOAD_PIECE) + 64));
                sink.feed(Bytes::from(full)).await.map_err(werr)?;
            }
        }
        format
            .write_row(&mut buf, values, &types)
            .map_err(|e| unfit_value(e, t, cols, table))?;
    }
    format.write_trailer(&mut buf);
    copy::send_in_pieces(sink.as_mut(), Bytes::from(buf))
        .await
        .map_err(werr)?;
    sink.finish().await.map_err(werr)
}

/// The error for a row that cannot be encoded for the target's columns `cols`.
fn unfit_value(e: copy::CopyError, t: &TargetTable, cols: &[usize], table: &TableSchema) -> Error {
    let column = match &e {
        copy::CopyError::Column { column, .. } => cols.get(*column),
        _ => None,
    };
    let err = Error::bad_input(format!(
        "a value does not fit the target column: {e}; change the target column's type to hold it, \
         or change the value at the source"
    ))
    .table(&table.name);
    match column {
        Some(&i) => err.column(&t.columns[i]),
        None => err,
    }
}

async fn copy_into<T>(
    tx: &Transaction<'_>,
    copy: &T,
    data: Bytes,
) -> std::result::Result<u64, tokio_postgres::Error>
where
    T: ?Sized + tokio_postgres::ToStatement,
{
    let sink = tx.copy_in(copy).await?;
    futures_util::pin_mut!(sink);
    // In pieces: a huge value must not be copied whole into the connection.
    copy::send_in_pieces(sink.as_mut(), data).await?;
    sink.finish().await
}

/// `COPY` of every column of the table into `into` (the table or its staging
/// copy), in binary.
fn native_copy_sql(t: &TargetTable, into: &str) -> String {
    format!(
        "COPY {into} ({}) FROM STDIN (FORMAT binary)",
        column_list(t.columns.iter().map(String::as_str))
    )
}

/// Sends native rows (binary COPY tuples) framed as a whole binary COPY stream.
async fn copy_native_into<T>(
    tx: &Transaction<'_>,
    copy: &T,
    tuples: Bytes,
) -> std::result::Result<u64, tokio_postgres::Error>
where
    T: ?Sized + tokio_postgres::ToStatement,
{
    let sink = tx.copy_in(copy).await?;
    futures_util::pin_mut!(sink);
    let mut header = Vec::with_capacity(19);
    copy::write_header(&mut header);
    let mut trailer = Vec::with_capacity(2);
    copy::write_trailer(&mut trailer);
    sink.feed(Bytes::from(header)).await?;
    copy::send_in_pieces(sink.as_mut(), tuples).await?;
    sink.send(Bytes::from(trailer)).await?;
    sink.finish().await
}

/// Writes the checkpoint with the sink's prepared statement. Fails with
/// [`ErrorKind::Fenced`](siphon_core::ErrorKind::Fenced) when the stored row
/// carries a newer lease epoch: the caller's transaction, data included, must
/// then roll back.
async fn write_checkpoint(tx: &Transaction<'_>, stmt: &Statement, cp: &Checkpoint) -> Result<()> {
    let json = serde_json::to_string(cp)
        .map_err(|e| Error::internal("encoding a checkpoint").source(e))?;
    let epoch = i64::try_from(cp.epoch).unwrap_or(i64::MAX);
    let tbl = cp.stream.table.key();
    let written = tx
        .execute(stmt, &[&cp.stream.pipeline, &tbl, &json, &epoch])
        .await
        .map_err(|e| pg_err(e, "writing the checkpoint"))?;
    if written == 0 {
        let stored: i64 = tx
            .query_one(
                &format!("SELECT epoch FROM public.{CHECKPOINTS} WHERE pipeline = $1 AND tbl = $2"),
                &[&cp.stream.pipeline, &tbl],
            )
            .await
            .map_err(|e| pg_err(e, "reading the checkpoint's epoch"))?
            .get(0);
        return Err(fenced(cp, stored.max(0) as u64));
    }
    Ok(())
}

/// Whether a load failed on a key the target holds already (a chunk copied
/// again after a crash), which an upsert then absorbs.
fn unique_violation(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
        .and_then(tokio_postgres::Error::code)
        == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// A checkpoint write refused because the target holds one of a newer lease.
pub(crate) fn fenced(cp: &Checkpoint, stored: u64) -> Error {
    Error::new(
        siphon_core::ErrorKind::Fenced,
        format!(
            "pipeline {}: the target's checkpoint was written under lease epoch {stored}, newer \
             than this worker's {}: another worker holds the pipeline's lease now, so this \
             worker's batch was rolled back and it stops",
            cp.stream.pipeline, cp.epoch
        ),
    )
    .table(&cp.stream.table)
}

impl PostgresSink {
    /// Loads a chunk of rows and its checkpoint in one transaction: by COPY, or
    /// by upsert when some keys are there already.
    async fn load_rows(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let t = self.target(table)?;
        let mut client = self.client.lock().await;
        let werr = |e| pg_err(e, &format!("loading {}", table.name));
        let tx = client.transaction().await.map_err(werr)?;
        self.staging.begin();
        let refs: Vec<&Row> = rows.iter().collect();
        // Most chunks land in a table that does not hold their keys yet: COPY them
        // straight in. If a key is there already, fall back to the upsert path.
        tx.batch_execute("SAVEPOINT siphon_load")
            .await
            .map_err(werr)?;
        let copied = copy_rows_into(&tx, &t, &rows, &t.write, table, &t.name).await;
        let stats = match copied {
            Ok(n) => {
                tx.batch_execute("RELEASE SAVEPOINT siphon_load")
                    .await
                    .map_err(werr)?;
                ApplyStats {
                    inserted: n,
                    ..Default::default()
                }
            }
            Err(e) if unique_violation(&e) && !t.key.is_empty() => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT siphon_load")
                    .await
                    .map_err(werr)?;
                let (inserted, updated) =
                    apply::upsert(&tx, &t, table, &refs, &self.staging).await?;
                ApplyStats {
                    inserted,
                    updated,
                    ..Default::default()
                }
            }
            Err(e) => return Err(e),
        };
        write_checkpoint(&tx, &self.write_checkpoint, checkpoint).await?;
        tx.commit().await.map_err(werr)?;
        Ok(stats)
    }

    /// Upserts native rows through the table's staging table, with the
    /// checkpoint, in one transaction.
    async fn upsert_native(
        &self,
        client: &mut Client,
        t: &TargetTable,
        table: &TableSchema,
        tuples: Bytes,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let werr = |e| pg_err(e, &format!("loading {}", table.name));
        let tx = client.transaction().await.map_err(werr)?;
        self.staging.begin();
        let cols = column_list(t.columns.iter().map(String::as_str));
        let staged = async {
            let stage = self
                .staging
                .stage(&tx, t, tuples.len())
                .await
                .map_err(werr)?;
            let copy = self
                .staging
                .statement(&tx, &native_copy_sql(t, &stage))
                .await
                .map_err(werr)?;
            copy_native_into(&tx, &copy, tuples).await.map_err(werr)?;
            let counts = apply::merge_stage(&tx, t, &stage, &cols, &self.staging)
                .await
                .map_err(werr)?;
            write_checkpoint(&tx, &self.write_checkpoint, checkpoint).await?;
            Ok::<_, Error>(counts)
        };
        let staged = match staged.await {
            Ok(counts) => tx.commit().await.map_err(werr).map(|()| counts),
            Err(e) => Err(e),
        };
        let (inserted, updated) = staged.inspect_err(|_| {
            // The transaction rolled back, with any staging table it created.
            self.staging.clear();
        })?;
        Ok(ApplyStats {
            inserted,
            updated,
            ..Default::default()
        })
    }
}

impl Sink for PostgresSink {
    fn capabilities(&self) -> siphon_core::SinkCapabilities {
        // Keys, COPY BINARY, more connections, shadow tables, column fills.
        siphon_core::SinkCapabilities::ALL
    }

    async fn prepare(&self, table: &TableSchema, options: &SchemaOptions) -> Result<()> {
        let schema = schema_of(table);
        let target_name = TableName::new(Some(&schema), &table.name.name);
        let mut client = self.client.lock().await;
        let mut found = schema::find(&client, &target_name).await?;
        let created = found.is_none();
        if found.is_none() {
            if !options.create {
                return Err(Error::bad_input(
                    "the target table does not exist; create it or set `schema.create: true`",
                )
                .table(&target_name));
            }
            // Composite and extension types the columns use come first.
            let mut ddl = crate::types::defined::statements_for(table);
            ddl.extend(create_statements(table, &schema));
            if options.indexes {
                // Indexes the source defines exactly come with its objects.
                for ix in table
                    .indexes
                    .iter()
                    .filter(|ix| !crate::objects::defines_index(table, &ix.name))
                {
                    ddl.push(format!(
                        "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                        if ix.unique { "UNIQUE " } else { "" },
                        ident(&ix.name),
                        qualified(Some(&schema), &table.name.name),
                        column_list(ix.columns.iter().map(String::as_str))
                    ));
                }
            }
            for stmt in ddl {
                client
                    .batch_execute(&stmt)
                    .await
                    .map_err(|e| pg_err(e, "creating the target table").table(&target_name))?;
            }
            found = schema::find(&client, &target_name).await?;
        }
        crate::partition::add_missing(&client, table, &schema).await?;
        let mut target = found
            .ok_or_else(|| Error::internal("the created table is missing").table(&target_name))?;
        if evolve::evolve(&mut client, table, &schema, &target, options, created).await? {
            target = evolve::reread(&client, &target_name).await?;
        }
        // Empty for a table without a key, whose changes are applied by value.
        let key = table.row_key().unwrap_or_default().to_vec();
        let mut types = Vec::with_capacity(table.columns.len());
        let mut write = Vec::new();
        for (i, col) in table.columns.iter().enumerate() {
            let j = target
                .schema
                .column_index(&col.name)
                .ok_or_else(|| Error::internal("column vanished"))?;
            if !target.schema.columns[j].generated {
                write.push(i);
            }
            types.push(target.types[j].clone());
        }
        let tt = TargetTable {
            name: qualified(Some(&schema), &table.name.name),
            columns: table.columns.iter().map(|c| c.name.clone()).collect(),
            types,
            key,
            write,
            partitioned: target.schema.partitioning.is_some(),
        };
        self.tables
            .lock()
            .map_err(|_| Error::internal("table cache poisoned"))?
            .insert(table.name.clone(), Arc::new(tt));
        self.objects
            .prepared(&client, table, &schema, options, created)
            .await;
        Ok(())
    }

    async fn unfilled(&self, table: &TableSchema) -> Result<Vec<usize>> {
        self.unfilled_columns(table).await
    }

    async fn fill(
        &self,
        table: &TableSchema,
        columns: &[usize],
        rows: Vec<Row>,
        done: bool,
    ) -> Result<()> {
        self.fill_columns(table, columns, rows, done).await
    }

    async fn finish_tables(&self, options: &SchemaOptions) -> Result<()> {
        let client = self.client.lock().await;
        self.objects.finish(&client, options, self.replica).await
    }

    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        let client = self.client.lock().await;
        let row = client
            .query_opt(
                &format!(
                    "SELECT checkpoint FROM public.{CHECKPOINTS} WHERE pipeline = $1 AND tbl = $2"
                ),
                &[&stream.pipeline, &stream.table.key()],
            )
            .await
            .map_err(|e| pg_err(e, "reading a checkpoint"))?;
        row.map(|r| {
            serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| {
                Error::bad_input("the checkpoint row is unreadable; force a full re-sync")
                    .table(&stream.table)
                    .source(e)
            })
        })
        .transpose()
    }

    async fn reset(&self, stream: &StreamId) -> Result<()> {
        let client = self.client.lock().await;
        client
            .execute(
                &format!("DELETE FROM public.{CHECKPOINTS} WHERE pipeline = $1 AND tbl = $2"),
                &[&stream.pipeline, &stream.table.key()],
            )
            .await
            .map_err(|e| pg_err(e, "removing a checkpoint"))?;
        Ok(())
    }

    async fn fence(&self, pipeline: &str, epoch: u64) -> Result<()> {
        let epoch = i64::try_from(epoch).unwrap_or(i64::MAX);
        let client = self.client.lock().await;
        // The UPDATE waits for a transaction still writing one of these rows
        // and then raises it, so that transaction's next write is refused.
        client
            .execute(
                &format!(
                    "UPDATE public.{CHECKPOINTS} SET epoch = $2 WHERE pipeline = $1 AND epoch < $2"
                ),
                &[&pipeline, &epoch],
            )
            .await
            .map_err(|e| pg_err(e, "raising the lease epoch of the pipeline's checkpoints"))?;
        Ok(())
    }

    async fn load(
        &self,
        table: &TableSchema,
        rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let r = self.load_rows(table, rows, checkpoint).await;
        if r.is_err() {
            // The transaction rolled back, with any staging table it created.
            self.staging.clear();
        }
        r
    }

    async fn accepts_native(&self, table: &TableSchema, format: &NativeFormat) -> Result<bool> {
        let t = self.target(table)?;
        // Generated target columns are not written, so their values cannot pass.
        let accepted = format.encoding == NATIVE_ENCODING
            && t.write.len() == t.columns.len()
            && format.columns.len() == t.types.len()
            && t.types
                .iter()
                .zip(&format.columns)
                .all(|(ty, id)| ty.native_id().as_deref() == Some(id.as_str()));
        if accepted {
            let client = self.client.lock().await;
            let copy = client
                .prepare(&native_copy_sql(&t, &t.name))
                .await
                .map_err(|e| pg_err(e, "preparing a COPY").table(&table.name))?;
            self.native_copy
                .lock()
                .map_err(|_| Error::internal("statement cache poisoned"))?
                .insert(table.name.clone(), copy);
        }
        Ok(accepted)
    }

    async fn load_native(
        &self,
        table: &TableSchema,
        chunk: NativeChunk,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let t = self.target(table)?;
        let copy = self
            .native_copy
            .lock()
            .ok()
            .and_then(|m| m.get(&table.name).cloned())
            .ok_or_else(|| Error::internal("native loads were not accepted").table(&table.name))?;
        let mut client = self.client.lock().await;
        let werr = |e| pg_err(e, &format!("loading {}", table.name));
        let tuples = Bytes::from(chunk.data);
        let tx = client.transaction().await.map_err(werr)?;
        // Most chunks land in a table that does not hold their keys yet: COPY
        // them straight in. If a key is there already, the transaction is void:
        // upsert through a staging table in a new one (keyset chunks never repeat
        // a key within themselves).
        let stats = match copy_native_into(&tx, &copy, tuples.clone()).await {
            Ok(n) => ApplyStats {
                inserted: n,
                ..Default::default()
            },
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                    && !t.key.is_empty() =>
            {
                tx.rollback().await.map_err(werr)?;
                return self
                    .upsert_native(&mut client, &t, table, tuples, checkpoint)
                    .await;
            }
            Err(e) => return Err(werr(e)),
        };
        write_checkpoint(&tx, &self.write_checkpoint, checkpoint).await?;
        tx.commit().await.map_err(werr)?;
        Ok(stats)
    }

    async fn another(&self) -> Result<Option<PostgresSink>> {
        let client = connect_config(&self.config, "target").await?;
        let mut sink =
            PostgresSink::with_client(client, self.config.clone(), self.tables.clone()).await?;
        // Tables prepared on any handle (tables run in parallel each prepare
        // on their own) are finished together by `finish_tables`.
        sink.objects = self.objects.clone();
        Ok(Some(sink))
    }

    async fn apply(&self, batch: Batch, checkpoint: &Checkpoint) -> Result<ApplyStats> {
        let r = self.apply_changes(batch, checkpoint).await;
        if r.is_err() {
            // The transaction rolled back, with any staging table it created.
            self.staging.clear();
        }
        r
    }
    async fn swap_refusal(&self, table: &TableSchema) -> Result<Option<String>> {
        self.refuse_swap(table).await
    }

    async fn open_shadow(
        &self,
        table: &TableSchema,
        resume: Option<&TableName>,
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

    async fn drop_shadow(&self, shadow: &TableName) -> Result<()> {
        self.shadow_drop(shadow).await
    }

    async fn count_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        let t = self.target(table)?;
        let client = self.client.lock().await;
        let row = client
            .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])
            .await
            .map_err(|e| pg_err(e, "counting rows").table(&table.name))?;
        Ok(Some(row.get::<_, i64>(0) as u64))
    }

    async fn read_keys(
        &self,
        table: &TableSchema,
        after: Option<&Row>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let t = self.target(table)?;
        let keys = column_list(t.key.iter().map(|&i| t.columns[i].as_str()));
        let client = self.client.lock().await;
        let params: Vec<Param<'_>> = match after {
            Some(a) => a
                .iter()
                .zip(&t.key)
                .map(|(v, &i)| Param(v, &t.types[i]))
                .collect(),
            None => vec![],
        };
        let filter = if params.is_empty() {
            String::new()
        } else {
            let ph: Vec<String> = (1..=params.len()).map(|i| format!("${i}")).collect();
            format!("WHERE ({keys}) > ({})", ph.join(", "))
        };
        let sql = format!(
            "SELECT {keys} FROM {} {filter} ORDER BY {keys} LIMIT {limit}",
            t.name
        );
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = client
            .query(&sql, &refs)
            .await
            .map_err(|e| pg_err(e, "reading keys"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut k = Vec::with_capacity(t.key.len());
            for (j, &i) in t.key.iter().enumerate() {
                let raw: Option<RawField<'_>> =
                    r.try_get(j).map_err(|e| pg_err(e, "reading a key"))?;
                k.push(match raw {
                    None => Value::Null,
                    Some(RawField(b)) => types::decode_binary(&t.types[i], b)
                        .map_err(|e| Error::bad_input(e.to_string()).table(&table.name))?,
                });
            }
            out.push(k);
        }
        Ok(out)
    }
}
