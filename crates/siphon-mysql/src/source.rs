//! Reading tables: discovery, keyset chunks and key ranges for full loads.
//!
//! Every read is a prepared statement (the binary protocol), so values arrive
//! typed; [`crate::types`] turns them into siphon values. Key order is the
//! server's own: bounds are compared in SQL (`(a, b) > (?, ?)`), never in
//! Rust, so a key under a case- or accent-insensitive collation is neither
//! skipped nor repeated between chunks.

mod keyset;

use std::cmp::Ordering;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Pool};
use serde::{Deserialize, Serialize};
use siphon_core::{
    Chunk, CursorSpec, Error, Position, Result, Row, Source, TableFilter, TableSchema, Value,
};

use crate::conn::{self, my_err, ConnConfig, Server};
use crate::schema::key_list;
use crate::types::{decode_row, encode};

pub(crate) use keyset::{placeholder, select_list, table_sql};

/// A MySQL or MariaDB database as a siphon source. Every read runs on a
/// connection of its own pool, in UTC.
#[derive(Debug, Clone)]
pub struct MySqlSource {
    /// The URL parsed (siphon's parameters taken out).
    pub(crate) config: ConnConfig,
    /// Connections for reads.
    pub(crate) pool: Pool,
    /// Which server answered at connect time.
    pub(crate) server: Server,
}

/// Where a keyset read resumes: the key of the last row read (or a cut from
/// [`Source::split_keys`], which may hold a prefix of it).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyPosition {
    pub key: Vec<Value>,
}

/// Where a read of a table with no row key resumes: how many rows of the
/// table, ordered by every column, were read.
#[derive(Debug, Serialize, Deserialize)]
struct OffsetPosition {
    offset: u64,
}

impl MySqlSource {
    /// Connects to the database a `mysql://` URL names and finds out which
    /// server it is. Fails with an error naming the cause (refused, wrong
    /// password, unknown database) and never showing the password.
    pub async fn connect(url: &str) -> Result<MySqlSource> {
        let config = ConnConfig::parse(url)?;
        let mut first = config.connect("source").await?;
        let server = conn::server(&mut first).await?;
        drop(first);
        tracing::info!(server = %server, endpoint = %config.endpoint(), "connected to the source");
        let pool = config.pool();
        Ok(MySqlSource {
            config,
            pool,
            server,
        })
    }

    /// Which server this source reads (MariaDB or MySQL, and its version).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// A connection of the pool (session in UTC, utf8mb4).
    pub(crate) async fn conn(&self) -> Result<Conn> {
        self.pool.get_conn().await.map_err(|e| {
            my_err(
                e,
                &format!(
                    "cannot connect to the MySQL source at {}",
                    self.config.endpoint()
                ),
            )
        })
    }

    /// The database the URL names: siphon's schema for every table here.
    pub(crate) fn database(&self) -> Result<&str> {
        self.config.database().ok_or_else(|| {
            Error::config(
                "the mysql:// URL names no database: add it to the path (mysql://user@host:3306/DATABASE)",
            )
        })
    }

    /// Runs `sql` with `params` and decodes every row as a row of `table`.
    pub(crate) async fn rows(
        &self,
        table: &TableSchema,
        sql: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<Vec<Row>> {
        self.rows_expected(table, sql, params, 0).await
    }

    /// Like [`MySqlSource::rows`], for a statement that returns up to
    /// `expected` rows (its `LIMIT`): the list of rows is allocated once at
    /// that size rather than grown row by row.
    pub(crate) async fn rows_expected(
        &self,
        table: &TableSchema,
        sql: &str,
        params: Vec<mysql_async::Value>,
        expected: usize,
    ) -> Result<Vec<Row>> {
        crate::schema::refuse_spatial(table)?;
        let mut conn = self.conn().await?;
        let failed = |e| {
            conn::my_err_on(
                e,
                &format!("reading table {}", table.name),
                conn::Side::Source,
            )
            .table(&table.name)
        };
        let zero = self.config.zero_dates();
        // Each row is decoded as it arrives, while its bytes are still in the
        // CPU's cache, rather than after the whole chunk (20,000 rows by
        // default) was read. After a row that cannot be decoded the rest are
        // read and dropped, so the connection goes back to the pool clean.
        let result = conn
            .exec_iter(sql, params_of(params))
            .await
            .map_err(failed)?;
        // A limit far above a chunk's size does not reserve memory up front.
        let mut rows = Vec::with_capacity(expected.min(100_000));
        let mut error = None;
        result
            .for_each_and_drop(|r| {
                if error.is_none() {
                    match decode_row(table, r, zero) {
                        Ok(row) => rows.push(row),
                        Err(e) => error = Some(e),
                    }
                }
            })
            .await
            .map_err(failed)?;
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Runs `sql` and returns its rows undecoded.
    pub(crate) async fn raw_rows(
        &self,
        table: &TableSchema,
        sql: &str,
        params: Vec<mysql_async::Value>,
        doing: &str,
    ) -> Result<Vec<mysql_async::Row>> {
        let mut conn = self.conn().await?;
        conn.exec(sql, params_of(params)).await.map_err(|e| {
            conn::my_err_on(e, &format!("{doing} of {}", table.name), conn::Side::Source)
                .table(&table.name)
        })
    }

    /// A table with no row key, read in the order of all its columns by offset.
    async fn read_by_offset(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        let offset = match after {
            Some(p) => p.decode::<OffsetPosition>(&table.name)?.offset,
            None => 0,
        };
        let order: Vec<String> = (1..=table.columns.len()).map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT {limit} OFFSET {offset}",
            select_list(table),
            table_sql(table),
            order.join(", ")
        );
        let rows = self.rows_expected(table, &sql, Vec::new(), limit).await?;
        let last = match rows.len() {
            0 => None,
            n => Some(Position::encode(&OffsetPosition {
                offset: offset + n as u64,
            })?),
        };
        Ok(Chunk { rows, last })
    }
}

/// Parameters as the driver takes them; none is `Params::Empty`.
pub(crate) fn params_of(values: Vec<mysql_async::Value>) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values)
    }
}

/// The position after the last of `rows`, by `key`.
fn key_position(table: &TableSchema, key: &[usize], rows: &[Row]) -> Result<Option<Position>> {
    rows.last()
        .map(|r| {
            Position::encode(&KeyPosition {
                key: table.key_of(key, r),
            })
        })
        .transpose()
}

impl Source for MySqlSource {
    async fn discover(&self, filter: &TableFilter) -> Result<Vec<TableSchema>> {
        let database = self.database()?;
        let mut conn = self.conn().await?;
        let mut tables =
            crate::schema::discover(&mut conn, database, self.server.flavor, filter).await?;
        // Indexes, views, routines and triggers ride with the tables; only a
        // MySQL target recreates them (`schema.routines`, `schema.indexes`).
        crate::objects::attach_objects(&mut conn, &mut tables).await?;
        Ok(tables)
    }

    /// Refuses a table with a spatial column ([`crate::schema::refuse_spatial`])
    /// before the engine creates its target table.
    async fn check_table(&self, table: &TableSchema) -> Result<()> {
        crate::schema::refuse_spatial(table)
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        let database = table.name.schema.as_deref().unwrap_or(self.database()?);
        let mut conn = self.conn().await?;
        let n: Option<Option<u64>> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (database, table.name.name.as_str()),
            )
            .await
            .map_err(|e| my_err(e, "estimating rows").table(&table.name))?;
        match n.flatten() {
            Some(n) if n > 0 => Ok(Some(n)),
            // InnoDB reports 0 until its statistics are first taken: count then.
            _ => self.count_rows(table).await,
        }
    }

    async fn count_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        let mut conn = self.conn().await?;
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {}", table_sql(table)))
            .await
            .map_err(|e| my_err(e, "counting rows").table(&table.name))?;
        Ok(Some(n.unwrap_or(0)))
    }

    async fn read_chunk(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        if table.row_key().is_none() {
            return self.read_by_offset(table, after, limit).await;
        }
        self.read_range(table, after, None, limit).await
    }

    async fn read_range(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        let Some(key) = table.row_key().map(<[usize]>::to_vec) else {
            if until.is_none() {
                return self.read_by_offset(table, after, limit).await;
            }
            return Err(Error::internal("a key range of a table without a key").table(&table.name));
        };
        let after: Option<KeyPosition> = after.map(|p| p.decode(&table.name)).transpose()?;
        let until: Option<KeyPosition> = until.map(|p| p.decode(&table.name)).transpose()?;
        let (filter, params) = keyset::range_filter(
            table,
            &key,
            after.as_ref().map(|a| a.key.as_slice()),
            until.as_ref().map(|u| u.key.as_slice()),
        )?;
        let sql = format!(
            "SELECT {} FROM {}{filter} ORDER BY {} LIMIT {limit}",
            select_list(table),
            table_sql(table),
            key_list(table, &key)
        );
        let rows = self.rows_expected(table, &sql, params, limit).await?;
        let last = key_position(table, &key, &rows)?;
        Ok(Chunk { rows, last })
    }

    async fn split_keys(&self, table: &TableSchema, parts: usize) -> Result<Vec<Position>> {
        keyset::split_keys(self, table, parts).await
    }

    async fn another(&self) -> Result<Option<MySqlSource>> {
        Ok(Some(MySqlSource {
            config: self.config.clone(),
            pool: self.config.pool(),
            server: self.server.clone(),
        }))
    }

    async fn poll(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        crate::poll::poll(self, table, cursor, after, limit).await
    }

    async fn cursor_high(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
    ) -> Result<Option<Position>> {
        crate::poll::cursor_high(self, table, cursor).await
    }

    fn rewind(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        from: &Position,
    ) -> Result<Position> {
        crate::poll::rewind(table, cursor, from)
    }

    fn compare(&self, table: &TableSchema, a: &Position, b: &Position) -> Result<Ordering> {
        crate::poll::compare(table, a, b)
    }

    async fn existing_keys(&self, table: &TableSchema, keys: &[Row]) -> Result<Vec<bool>> {
        let key = table.require_row_key()?.to_vec();
        let mut found = vec![false; keys.len()];
        // One lookup per key, compared by the server (so by its collation), in
        // one statement per batch; each answers with the key's index.
        let condition = keyset::equal_condition(table, &key);
        for (batch_no, batch) in keys.chunks(200).enumerate() {
            let mut parts = Vec::with_capacity(batch.len());
            let mut params = Vec::with_capacity(batch.len() * key.len());
            for (j, k) in batch.iter().enumerate() {
                let n = batch_no * 200 + j;
                parts.push(format!(
                    "(SELECT {n} FROM {} WHERE {condition} LIMIT 1)",
                    table_sql(table)
                ));
                for v in k {
                    params.push(encode(v).map_err(|e| e.table(&table.name))?);
                }
            }
            let sql = parts.join(" UNION ALL ");
            let mut conn = self.conn().await?;
            let hits: Vec<i64> = conn
                .exec(sql, params_of(params))
                .await
                .map_err(|e| my_err(e, "looking up keys").table(&table.name))?;
            for n in hits {
                if let Some(f) = usize::try_from(n).ok().and_then(|n| found.get_mut(n)) {
                    *f = true;
                }
            }
        }
        Ok(found)
    }
}
