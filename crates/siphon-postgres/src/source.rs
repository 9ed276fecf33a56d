//! PostgreSQL as a source: keyset snapshots and cursor polling, read in the binary
//! format and decoded by the connector's own codec.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use siphon_core::{
    Chunk, CursorSpec, CursorStrategy, Error, Lookback, NativeChunk, NativeFormat, Position,
    Result, Row, Source, TableFilter, TableName, TableSchema, TypeKind, Value,
};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::Client;

use crate::conn::{column_list, connect, connect_config, ident, pg_err, qualified};
use crate::schema::{self, PgTable};
use crate::types::{self, PgType};

mod physical;

/// A field's bytes exactly as the server sent them in binary format.
pub(crate) struct RawField<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for RawField<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawField(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A value sent as a parameter in binary format, encoded for its column's type.
#[derive(Debug)]
pub(crate) struct Param<'a>(pub &'a Value, pub &'a PgType);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if self.0.is_null() {
            return Ok(IsNull::Yes);
        }
        let mut buf = Vec::new();
        types::encode_binary(self.1, self.0, &mut buf)?;
        out.extend_from_slice(&buf);
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

/// Decodes the binary fields of a result row.
pub(crate) fn decode_row(
    row: &tokio_postgres::Row,
    types: &[PgType],
    table: &TableSchema,
) -> Result<Row> {
    let mut out = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        let raw: Option<RawField<'_>> = row.try_get(i).map_err(|e| pg_err(e, "reading a row"))?;
        out.push(match raw {
            None => Value::Null,
            Some(RawField(b)) if !ty.binary_supported() => std::str::from_utf8(b)
                .map_err(|e| e.to_string())
                .and_then(|t| types::decode_text(ty, t).map_err(|e| e.to_string()))
                .map_err(|e| {
                    Error::bad_input(format!("cannot read the value: {e}"))
                        .table(&table.name)
                        .column(&table.columns[i].name)
                })?,
            Some(RawField(b)) => types::decode_binary(ty, b).map_err(|e| {
                Error::bad_input(format!("cannot read the value: {e}"))
                    .table(&table.name)
                    .column(&table.columns[i].name)
            })?,
        });
    }
    Ok(out)
}

/// The encoding of the native path: binary COPY tuples (field count, then each
/// field's length and bytes), without the stream's header and trailer.
pub(crate) const NATIVE_ENCODING: &str = "postgresql-binary-tuples";

/// Where a snapshot resumes: the key of the last row copied.
#[derive(Debug, Serialize, Deserialize)]
struct KeyPosition {
    key: Vec<Value>,
}

/// Where polling resumes: cursor and key of the last row read; an empty key
/// means "every row with this cursor value".
#[derive(Debug, Serialize, Deserialize)]
struct Watermark {
    cursor: Value,
    key: Vec<Value>,
    /// Set when the poll that made it saw every transaction still open and read
    /// only rows below the oldest one's start (see [`crate::poll`]): no row
    /// below it can commit later. Otherwise a pass by a timestamp cursor with no
    /// `lookback` re-reads [`crate::poll::DEFAULT_LOOKBACK`] behind it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    settled: bool,
}

/// The bound a poll of `table` by `cursor` at column `ci` reads below, for
/// timestamp cursors of type `timestamp` or `timestamptz`; `None` otherwise.
async fn poll_bound(
    client: &Client,
    table: &TableSchema,
    cursor: &CursorSpec,
    ci: usize,
) -> Result<Option<crate::poll::Bound>> {
    let timed = matches!(
        table.columns[ci].data_type.kind,
        TypeKind::Timestamp | TypeKind::TimestampTz
    );
    if cursor.strategy != CursorStrategy::Timestamp {
        if cursor.lookback.is_none() {
            crate::poll::unbounded(table, &cursor.column);
        }
        return Ok(None);
    }
    if !timed {
        return Ok(None);
    }
    crate::poll::bound(client, table).await.map(Some)
}

/// Reads tables from a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    /// The query connection; see [`PostgresSource::client`].
    conn: Arc<QueryConn>,
    tables: Arc<Mutex<HashMap<TableName, Arc<PgTable>>>>,
    /// The parsed URL, for replication connections (its `Debug` hides the password).
    pub(crate) config: Arc<crate::conn::ConnConfig>,
    /// Bytes of the last full native chunk read, to size the next one's buffer.
    native_bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// Tables whose reads are pinned to a snapshot, with the connection whose
    /// transaction holds it (see [`siphon_core::LogSource::pin_snapshot`]).
    pinned: Arc<Mutex<HashMap<TableName, Arc<Client>>>>,
}

/// A source's query connection, opened again when the server closed it (a
/// restart, a terminated backend, an idle timeout): the next query after that
/// reconnects instead of failing the pass.
#[derive(Debug)]
struct QueryConn {
    current: std::sync::RwLock<Arc<Client>>,
    reconnecting: tokio::sync::Mutex<()>,
}

impl QueryConn {
    fn new(client: Client) -> QueryConn {
        QueryConn {
            current: std::sync::RwLock::new(Arc::new(client)),
            reconnecting: tokio::sync::Mutex::new(()),
        }
    }

    fn get(&self) -> Arc<Client> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl PostgresSource {
    /// The query connection, reconnected first if the server closed it.
    pub(crate) async fn client(&self) -> Result<Arc<Client>> {
        let c = self.conn.get();
        if !c.is_closed() {
            return Ok(c);
        }
        let _one = self.conn.reconnecting.lock().await;
        let c = self.conn.get();
        if !c.is_closed() {
            return Ok(c);
        }
        tracing::info!("the source connection was closed; reconnecting");
        let fresh = Arc::new(connect_config(&self.config, "source").await?);
        match self.conn.current.write() {
            Ok(mut w) => *w = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        Ok(fresh)
    }

    /// Connects to the database named by a `postgres://` URL.
    pub async fn connect(url: &str) -> Result<PostgresSource> {
        let config = crate::conn::ConnConfig::parse(url)?;
        Ok(PostgresSource {
            conn: Arc::new(QueryConn::new(connect(url, "source").await?)),
            tables: Arc::default(),
            config: Arc::new(config),
            native_bytes: Arc::default(),
            pinned: Arc::default(),
        })
    }

    /// Who holds the replication slot of `pipeline` open right now, as
    /// `process N (application A, from ADDRESS)`, or `None` when no session uses
    /// it (or there is no slot). A holder is normally a running `siphon run` of
    /// that pipeline.
    pub async fn log_in_use(&self, pipeline: &str) -> Result<Option<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT s.active_pid, coalesce(a.application_name, ''), \
                        coalesce(host(a.client_addr), 'a local socket') \
                 FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid \
                 WHERE s.slot_name = $1 AND s.active_pid IS NOT NULL",
                &[&crate::log_name(pipeline)],
            )
            .await
            .map_err(|e| pg_err(e, "reading who uses the replication slot"))?;
        Ok(rows.first().map(|r| {
            format!(
                "process {} (application `{}`, from {})",
                r.get::<_, i32>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        }))
    }

    /// The column types of a discovered table (discovering it when needed).
    pub(crate) async fn table(&self, t: &TableSchema) -> Result<Arc<PgTable>> {
        // A table whose shape changed since it was read (a column added,
        // renamed or widened while streaming) is read again.
        let same_shape = |p: &PgTable| {
            p.schema.columns.len() == t.columns.len()
                && p.schema
                    .columns
                    .iter()
                    .zip(&t.columns)
                    .all(|(a, b)| a.name == b.name && a.native_type == b.native_type)
        };
        if let Some(found) = self
            .tables
            .lock()
            .ok()
            .and_then(|m| m.get(&t.name).cloned())
            .filter(|p| same_shape(p))
        {
            return Ok(found);
        }
        let found = schema::find(&*self.client().await?, &t.name)
            .await?
            .ok_or_else(|| {
                Error::bad_input("the table no longer exists at the source").table(&t.name)
            })?;
        let found = Arc::new(found);
        if let Ok(mut m) = self.tables.lock() {
            m.insert(t.name.clone(), found.clone());
        }
        Ok(found)
    }

    async fn rows(
        &self,
        t: &TableSchema,
        pg: &PgTable,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>> {
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let stmt = self
            .client()
            .await?
            .prepare(sql)
            .await
            .map_err(|e| pg_err(e, &format!("reading {}", t.name)))?;
        let rows = self
            .client()
            .await?
            .query(&stmt, &refs)
            .await
            .map_err(|e| pg_err(e, &format!("reading {}", t.name)))?;
        rows.iter().map(|r| decode_row(r, &pg.types, t)).collect()
    }
}

/// The columns to select: types without a binary codec are read as text.
pub(crate) fn select_list(table: &TableSchema, pg: &PgTable) -> String {
    table
        .columns
        .iter()
        .zip(&pg.types)
        .map(|(c, ty)| {
            if ty.binary_supported() {
                ident(&c.name)
            } else {
                format!("{}::text", ident(&c.name))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn name_of(t: &TableSchema) -> String {
    qualified(t.name.schema.as_deref(), &t.name.name)
}

fn cursor_column(table: &TableSchema, cursor: &CursorSpec) -> Result<usize> {
    let i = cursor.column_in(table)?;
    let kind = &table.columns[i].data_type.kind;
    let fits = match cursor.strategy {
        CursorStrategy::Timestamp => matches!(
            kind,
            TypeKind::Date | TypeKind::Timestamp | TypeKind::TimestampTz
        ),
        CursorStrategy::Sequence | CursorStrategy::Version => {
            matches!(
                kind,
                TypeKind::Int16 | TypeKind::Int32 | TypeKind::Int64 | TypeKind::Decimal { .. }
            )
        }
    };
    if !fits {
        return Err(Error::bad_input(format!(
            "a {} column cannot be a `{}` cursor; choose a date or timestamp column for `timestamp`, an integer \
             column for `sequence` or `version`",
            table.columns[i].native_type, cursor.strategy
        ))
        .table(&table.name)
        .column(&cursor.column));
    }
    Ok(i)
}

/// The ` WHERE …` clause (empty when both bounds are open) and its parameters
/// that keep a keyset read to keys after `after` and up to `until`. A cut from
/// `split_keys` may hold only a prefix of the key.
fn key_range<'a>(
    table: &TableSchema,
    key: &[usize],
    pg: &'a PgTable,
    after: &'a Option<KeyPosition>,
    until: &'a Option<KeyPosition>,
) -> (String, Vec<Param<'a>>) {
    let mut params = Vec::new();
    let mut filters = Vec::new();
    for (bound, op) in [(after, ">"), (until, "<=")] {
        if let Some(b) = bound {
            let n = b.key.len().min(key.len());
            filters.push(format!(
                "({}) {op} ({})",
                column_list(key[..n].iter().map(|&i| table.columns[i].name.as_str())),
                placeholders(params.len() + 1, n)
            ));
            params.extend(b.key.iter().zip(key).map(|(v, &i)| Param(v, &pg.types[i])));
        }
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    (filter, params)
}

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Source for PostgresSource {
    async fn discover(&self, filter: &TableFilter) -> Result<Vec<TableSchema>> {
        let tables = schema::discover(&*self.client().await?, filter).await?;
        let mut cache = self
            .tables
            .lock()
            .map_err(|_| Error::internal("table cache poisoned"))?;
        Ok(tables
            .into_iter()
            .map(|t| {
                let schema = t.schema.clone();
                cache.insert(schema.name.clone(), Arc::new(t));
                schema
            })
            .collect())
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT GREATEST(c.reltuples, 0)::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&table.name.schema.clone().unwrap_or_else(|| "public".into()), &table.name.name],
            )
            .await
            .map_err(|e| pg_err(e, "estimating rows"))?;
        let n: i64 = row.get(0);
        // A never-analyzed table reports 0; count it then (bounded by the table).
        if n > 0 {
            return Ok(Some(n as u64));
        }
        // A partitioned table's own statistics stay empty: its partitions have them.
        if table.partitioning.is_some() {
            let client = self.client().await?;
            if let Some(n) = crate::partition::estimate_rows(&client, &table.name).await? {
                return Ok(Some(n));
            }
        }
        let row = self
            .client()
            .await?
            .query_one(&format!("SELECT count(*) FROM {}", name_of(table)), &[])
            .await
            .map_err(|e| pg_err(e, "counting rows"))?;
        Ok(Some(row.get::<_, i64>(0) as u64))
    }

    async fn count_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        let row = self
            .client()
            .await?
            .query_one(&format!("SELECT count(*) FROM {}", name_of(table)), &[])
            .await
            .map_err(|e| pg_err(e, "counting rows").table(&table.name))?;
        Ok(Some(row.get::<_, i64>(0) as u64))
    }

    async fn read_chunk(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        if table.row_key().is_none() {
            return self.read_physical(table, after, limit).await;
        }
        let key = table.require_row_key()?.to_vec();
        let pg = self.table(table).await?;
        let after: Option<KeyPosition> = after.map(|p| p.decode(&table.name)).transpose()?;
        let key_cols = column_list(key.iter().map(|&i| table.columns[i].name.as_str()));
        let cols = select_list(table, &pg);
        let t = name_of(table);
        let (sql, params) = match &after {
            None => (format!("SELECT {cols} FROM {t} ORDER BY {key_cols} LIMIT {limit}"), vec![]),
            Some(a) => (
                format!(
                    "SELECT {cols} FROM {t} WHERE ({key_cols}) > ({}) ORDER BY {key_cols} LIMIT {limit}",
                    placeholders(1, key.len())
                ),
                a.key.iter().zip(&key).map(|(v, &i)| Param(v, &pg.types[i])).collect(),
            ),
        };
        let rows = self.rows(table, &pg, &sql, &params).await?;
        let last = match rows.last() {
            Some(r) => Some(Position::encode(&KeyPosition {
                key: table.key_of(&key, r),
            })?),
            None => None,
        };
        Ok(Chunk { rows, last })
    }

    async fn native_format(&self, table: &TableSchema) -> Result<Option<NativeFormat>> {
        // A table without a key is read by blocks: no key to decode.
        let key = table.row_key().unwrap_or_default();
        let pg = self.table(table).await?;
        // The checkpoint holds the last row's key, decoded.
        if key.iter().any(|&i| !pg.types[i].binary_supported()) {
            return Ok(None);
        }
        let columns: Option<Vec<String>> = pg.types.iter().map(PgType::native_id).collect();
        Ok(columns.map(|columns| NativeFormat {
            encoding: NATIVE_ENCODING.to_string(),
            columns,
        }))
    }

    async fn read_native(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> Result<NativeChunk> {
        if table.row_key().is_none() {
            return self.read_physical_native(table, after, limit).await;
        }
        let key = table.require_row_key()?.to_vec();
        let pg = self.table(table).await?;
        let after: Option<KeyPosition> = after.map(|p| p.decode(&table.name)).transpose()?;
        let until: Option<KeyPosition> = until.map(|p| p.decode(&table.name)).transpose()?;
        let key_cols = column_list(key.iter().map(|&i| table.columns[i].name.as_str()));
        let (filter, params) = key_range(table, &key, &pg, &after, &until);
        // Every column in binary, whether or not siphon has a codec for its type:
        // the values are not decoded here, and the target's type is the same.
        let sql = format!(
            "SELECT {} FROM {}{filter} ORDER BY {key_cols} LIMIT {limit}",
            column_list(table.columns.iter().map(|c| c.name.as_str())),
            name_of(table)
        );
        let rerr = |e| pg_err(e, &format!("reading {}", table.name));
        let stmt = self.client().await?.prepare(&sql).await.map_err(rerr)?;
        let rows = self
            .client()
            .await?
            .query_raw(&stmt, params.iter().map(|p| p as &(dyn ToSql + Sync)))
            .await
            .map_err(rerr)?;
        futures_util::pin_mut!(rows);
        let width = table.columns.len();
        let count = i16::try_from(width)
            .map_err(|_| Error::bad_input("too many columns for binary COPY").table(&table.name))?
            .to_be_bytes();
        // Sized like the last full chunk, so the buffer is not grown (and its
        // capacity doubled) while rows arrive.
        let hint = self.native_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let mut chunk = NativeChunk {
            data: Vec::with_capacity(if hint > 0 {
                hint + hint / 16
            } else {
                limit.min(1 << 16) * 128
            }),
            ..NativeChunk::default()
        };
        let mut last = None;
        while let Some(row) = rows.next().await {
            let row = row.map_err(rerr)?;
            // A binary COPY tuple: the field count, then each field's length
            // (-1 for NULL) and bytes, exactly as the server sent them.
            chunk.data.extend_from_slice(&count);
            for i in 0..width {
                let raw: Option<RawField<'_>> = row.try_get(i).map_err(rerr)?;
                match raw {
                    None => chunk.data.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(RawField(b)) => {
                        let len = i32::try_from(b.len()).map_err(|_| {
                            Error::bad_input("a value is too large for binary COPY")
                                .table(&table.name)
                                .column(&table.columns[i].name)
                        })?;
                        chunk.data.extend_from_slice(&len.to_be_bytes());
                        chunk.data.extend_from_slice(b);
                    }
                }
            }
            chunk.rows += 1;
            last = Some(row);
        }
        if chunk.rows == limit {
            self.native_bytes
                .store(chunk.data.len(), std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(row) = last {
            let mut k = Vec::with_capacity(key.len());
            for &i in &key {
                let raw: Option<RawField<'_>> = row.try_get(i).map_err(rerr)?;
                k.push(match raw {
                    None => Value::Null,
                    Some(RawField(b)) => types::decode_binary(&pg.types[i], b).map_err(|e| {
                        Error::bad_input(format!("cannot read the key: {e}"))
                            .table(&table.name)
                            .column(&table.columns[i].name)
                    })?,
                });
            }
            chunk.last = Some(Position::encode(&KeyPosition { key: k })?);
        }
        Ok(chunk)
    }

    async fn read_range(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        let key = table.require_row_key()?.to_vec();
        let pg = self.table(table).await?;
        let after: Option<KeyPosition> = after.map(|p| p.decode(&table.name)).transpose()?;
        let until: Option<KeyPosition> = until.map(|p| p.decode(&table.name)).transpose()?;
        let key_cols = column_list(key.iter().map(|&i| table.columns[i].name.as_str()));
        let (filter, params) = key_range(table, &key, &pg, &after, &until);
        let sql = format!(
            "SELECT {} FROM {}{filter} ORDER BY {key_cols} LIMIT {limit}",
            select_list(table, &pg),
            name_of(table)
        );
        let rows = self.rows(table, &pg, &sql, &params).await?;
        let last = match rows.last() {
            Some(r) => Some(Position::encode(&KeyPosition {
                key: table.key_of(&key, r),
            })?),
            None => None,
        };
        Ok(Chunk { rows, last })
    }

    async fn split_keys(&self, table: &TableSchema, parts: usize) -> Result<Vec<Position>> {
        let Some(key) = table.row_key() else {
            return Ok(Vec::new());
        };
        let first = &table.columns[key[0]];
        let make: fn(i64) -> Value = match first.data_type.kind {
            TypeKind::Int16 => |v| Value::Int16(v as i16),
            TypeKind::Int32 => |v| Value::Int32(v as i32),
            TypeKind::Int64 => Value::Int64,
            _ => return Ok(Vec::new()),
        };
        if parts < 2 {
            return Ok(Vec::new());
        }
        let row = self
            .client()
            .await?
            .query_one(
                &format!(
                    "SELECT min({c})::int8, max({c})::int8 FROM {}",
                    name_of(table),
                    c = ident(&first.name)
                ),
                &[],
            )
            .await
            .map_err(|e| pg_err(e, &format!("reading the key range of {}", table.name)))?;
        let (Some(lo), Some(hi)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
        else {
            return Ok(Vec::new());
        };
        let width = i128::from(hi) - i128::from(lo);
        let mut cuts: Vec<i64> = (1..parts as i128)
            .map(|i| (i128::from(lo) + width * i / parts as i128) as i64)
            .filter(|&c| c < hi)
            .collect();
        cuts.dedup();
        cuts.into_iter()
            .map(|c| Position::encode(&KeyPosition { key: vec![make(c)] }))
            .collect()
    }

    async fn another(&self) -> Result<Option<PostgresSource>> {
        Ok(Some(PostgresSource {
            conn: Arc::new(QueryConn::new(
                connect_config(&self.config, "source").await?,
            )),
            tables: self.tables.clone(),
            config: self.config.clone(),
            native_bytes: Arc::default(),
            pinned: self.pinned.clone(),
        }))
    }

    async fn poll(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        let key = table.require_row_key()?.to_vec();
        let ci = cursor_column(table, cursor)?;
        let pg = self.table(table).await?;
        let after: Option<Watermark> = after.map(|p| p.decode(&table.name)).transpose()?;
        let c = ident(&cursor.column);
        let order = format!(
            "{c}, {}",
            column_list(key.iter().map(|&i| table.columns[i].name.as_str()))
        );
        let cols = select_list(table, &pg);
        let bound = poll_bound(&*self.client().await?, table, cursor, ci).await?;
        let mut params = Vec::new();
        let filter = match &after {
            None => format!("{c} IS NOT NULL"),
            Some(w) if w.key.is_empty() => {
                params.push(Param(&w.cursor, &pg.types[ci]));
                format!("{c} >= $1")
            }
            Some(w) => {
                params.push(Param(&w.cursor, &pg.types[ci]));
                params.extend(w.key.iter().zip(&key).map(|(v, &i)| Param(v, &pg.types[i])));
                format!("({order}) > ({})", placeholders(1, 1 + key.len()))
            }
        };
        let native = &table.columns[ci].native_type;
        let below = match bound.as_ref().and_then(|b| b.sql(native)) {
            Some(at) => format!(" AND {c} < {at}"),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {cols} FROM {} WHERE {filter}{below} ORDER BY {order} LIMIT {limit}",
            name_of(table)
        );
        let rows = self.rows(table, &pg, &sql, &params).await?;
        let last = match rows.last() {
            Some(r) => Some(Position::encode(&Watermark {
                cursor: r[ci].clone(),
                key: table.key_of(&key, r),
                settled: bound.as_ref().is_some_and(|b| b.exact),
            })?),
            None => None,
        };
        Ok(Chunk { rows, last })
    }

    async fn cursor_high(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
    ) -> Result<Option<Position>> {
        let ci = cursor_column(table, cursor)?;
        let pg = self.table(table).await?;
        let client = self.client().await?;
        // Rows of transactions open now may commit below the highest value
        // later: polling after the snapshot starts at the oldest one's start.
        let bound = poll_bound(&client, table, cursor, ci).await?;
        let c = ident(&cursor.column);
        let native = &table.columns[ci].native_type;
        let high = match bound.as_ref().and_then(|b| b.sql(native)) {
            Some(at) => format!("least(max({c}), {at}::{})", pg.types[ci].name),
            None => format!("max({c})"),
        };
        let sql = format!(
            "SELECT CASE WHEN max({c}) IS NULL THEN NULL ELSE {high} END FROM {}",
            name_of(table)
        );
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| pg_err(e, "reading the highest cursor"))?;
        let raw: Option<RawField<'_>> = rows[0]
            .try_get(0)
            .map_err(|e| pg_err(e, "reading the highest cursor"))?;
        match raw {
            None => Ok(None),
            Some(RawField(b)) => {
                let v = types::decode_binary(&pg.types[ci], b).map_err(|e| {
                    Error::bad_input(e.to_string())
                        .table(&table.name)
                        .column(&cursor.column)
                })?;
                Position::encode(&Watermark {
                    cursor: v,
                    key: vec![],
                    settled: bound.as_ref().is_some_and(|b| b.exact),
                })
                .map(Some)
            }
        }
    }

    fn rewind(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        from: &Position,
    ) -> Result<Position> {
        let w: Watermark = from.decode(&table.name)?;
        // A timestamp cursor without a `lookback` of its own re-reads a default
        // window behind a watermark that did not see every open transaction
        // (see `crate::poll`), and behind those older siphons wrote. Behind one
        // that did, a column of less than microseconds re-reads the rows that
        // share its cursor value: a transaction begun since may have written
        // that value again (rounded to it) with a lower key.
        let lookback = match cursor.lookback {
            Some(l) => l,
            None if cursor.strategy == CursorStrategy::Timestamp
                && matches!(
                    w.cursor,
                    Value::Timestamp(_) | Value::TimestampTz(_) | Value::Date(_)
                ) =>
            {
                if !w.settled {
                    Lookback::Duration(crate::poll::DEFAULT_LOOKBACK)
                } else if table.column_index(&cursor.column).is_some_and(|i| {
                    crate::poll::fraction_digits(&table.columns[i].native_type) < 6
                }) {
                    return Position::encode(&Watermark {
                        cursor: w.cursor,
                        key: vec![],
                        settled: true,
                    });
                } else {
                    return Ok(from.clone());
                }
            }
            None => return Ok(from.clone()),
        };
        let bad = || {
            Error::bad_input(format!(
                "cannot apply lookback {lookback:?} to this cursor; remove `lookback`"
            ))
            .table(&table.name)
            .column(&cursor.column)
        };
        let back = lookback.rewind(&w.cursor).ok_or_else(bad)?;
        Position::encode(&Watermark {
            cursor: back,
            key: vec![],
            settled: false,
        })
    }

    fn compare(&self, table: &TableSchema, a: &Position, b: &Position) -> Result<Ordering> {
        let a: Watermark = a.decode(&table.name)?;
        let b: Watermark = b.decode(&table.name)?;
        let incomparable =
            || Error::internal("positions hold values that cannot be compared").table(&table.name);
        let mut ord = a.cursor.cmp_same_kind(&b.cursor).ok_or_else(incomparable)?;
        let mut i = 0;
        while ord == Ordering::Equal {
            ord = match (a.key.get(i), b.key.get(i)) {
                (None, None) => break,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => x.cmp_same_kind(y).ok_or_else(incomparable)?,
            };
            i += 1;
        }
        Ok(ord)
    }

    async fn existing_keys(&self, table: &TableSchema, keys: &[Row]) -> Result<Vec<bool>> {
        let key = table.require_row_key()?.to_vec();
        let pg = self.table(table).await?;
        let key_cols = column_list(key.iter().map(|&i| table.columns[i].name.as_str()));
        let mut found = std::collections::HashSet::new();
        let hash = |k: &[Value]| xxhash(k).digest();
        for part in keys.chunks((1000 / key.len()).max(1)) {
            let mut params = Vec::new();
            let mut tuples = Vec::new();
            for k in part {
                let mut tuple = Vec::new();
                for (v, &i) in k.iter().zip(&key) {
                    params.push(Param(v, &pg.types[i]));
                    tuple.push(format!("${}::{}", params.len(), pg.types[i].name));
                }
                tuples.push(format!("({})", tuple.join(", ")));
            }
            let sql = format!(
                "SELECT {key_cols} FROM {} WHERE ({key_cols}) IN (VALUES {})",
                name_of(table),
                tuples.join(", ")
            );
            let key_types: Vec<PgType> = key.iter().map(|&i| pg.types[i].clone()).collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = self
                .client()
                .await?
                .query(&sql, &refs)
                .await
                .map_err(|e| pg_err(e, "looking up keys"))?;
            for r in rows {
                let mut k = Vec::with_capacity(key.len());
                for (j, ty) in key_types.iter().enumerate() {
                    let raw: Option<RawField<'_>> =
                        r.try_get(j).map_err(|e| pg_err(e, "reading a key"))?;
                    k.push(match raw {
                        None => Value::Null,
                        Some(RawField(b)) => types::decode_binary(ty, b)
                            .map_err(|e| Error::bad_input(e.to_string()).table(&table.name))?,
                    });
                }
                found.insert(hash(&k));
            }
        }
        Ok(keys.iter().map(|k| found.contains(&hash(k))).collect())
    }
}

fn xxhash(k: &[Value]) -> xxhash_rust::xxh3::Xxh3 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    k.iter().for_each(|v| v.hash_into(&mut h));
    h
}
