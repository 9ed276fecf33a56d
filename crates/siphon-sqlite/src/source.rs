//! SQLite as a source: keyset snapshots and cursor polling.

use std::cmp::Ordering;
use std::path::Path;

use rusqlite::{Connection, ToSql};
use serde::{Deserialize, Serialize};
use siphon_core::{
    Chunk, CursorSpec, CursorStrategy, Error, Lookback, NativeChunk, NativeFormat, Position,
    Result, Row, Source, TableFilter, TableSchema, TypeKind,
};

use crate::conn::{column_list, db_err, placeholders, quote, Db};
use crate::types::{decode_or_err, decode_or_err_with, rewind_text_timestamp, Bind, Raw};

/// Reads tables from a SQLite file, opened read-only.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    db: Db,
}

/// Where a snapshot resumes: the stored key of the last row copied.
#[derive(Debug, Serialize, Deserialize)]
struct KeyPosition {
    key: Vec<Raw>,
}

/// Where polling resumes: the stored cursor and key of the last row read. An empty
/// key means "every row with this cursor value".
#[derive(Debug, Serialize, Deserialize)]
struct Watermark {
    cursor: Raw,
    key: Vec<Raw>,
}

/// The cursor column's position, checked against the strategy.
fn cursor_column(table: &TableSchema, cursor: &CursorSpec) -> Result<usize> {
    let i = cursor.column_in(table)?;
    let kind = &table.columns[i].data_type.kind;
    let fits = match cursor.strategy {
        CursorStrategy::Timestamp => !matches!(
            kind,
            TypeKind::Bool | TypeKind::Bytes { .. } | TypeKind::Json | TypeKind::Uuid
        ),
        CursorStrategy::Sequence | CursorStrategy::Version => matches!(
            kind,
            TypeKind::Int16
                | TypeKind::Int32
                | TypeKind::Int64
                | TypeKind::Decimal { .. }
                | TypeKind::Engine { .. }
        ),
    };
    if !fits {
        return Err(Error::bad_input(format!(
            "a {kind:?} column cannot be a `{}` cursor; choose a date or timestamp column for `timestamp`, \
             an integer column for `sequence` or `version`",
            cursor.strategy
        ))
        .table(&table.name)
        .column(&cursor.column));
    }
    Ok(i)
}

/// Runs a row query, decoding every column, and returns the rows with the stored
/// values of `keep` in the last one.
fn read_rows(
    conn: &Connection,
    path: &Path,
    table: &TableSchema,
    sql: &str,
    params: &[&dyn ToSql],
    keep: &[usize],
) -> Result<(Vec<Row>, Vec<Raw>)> {
    let err = |e| db_err(path, &format!("reading {}", table.name), e);
    let mut st = conn.prepare_cached(sql).map_err(err)?;
    let mut rows = st.query(params).map_err(err)?;
    let mut out = Vec::new();
    let mut last = vec![Raw::Null; keep.len()];
    let mut scratch = String::new();
    while let Some(r) = rows.next().map_err(err)? {
        let mut row = Vec::with_capacity(table.columns.len());
        for (i, c) in table.columns.iter().enumerate() {
            let v = r.get_ref(i).map_err(err)?;
            row.push(decode_or_err_with(
                &c.data_type.kind,
                v,
                &table.name,
                &c.name,
                &mut scratch,
            )?);
        }
        out.push(row);
        // Only the last row's key is kept; reusing the slots spares an allocation
        // per row for text keys.
        for (slot, &k) in last.iter_mut().zip(keep) {
            slot.set_from_ref(r.get_ref(k).map_err(err)?);
        }
    }
    if out.is_empty() {
        last.clear();
    }
    Ok((out, last))
}

/// Runs a row query and returns every column's stored value in the native
/// encoding, the number of rows, and the stored values of `keep` in the last one.
fn read_stored(
    conn: &Connection,
    path: &Path,
    table: &TableSchema,
    sql: &str,
    params: &[&dyn ToSql],
    keep: &[usize],
) -> Result<(Vec<u8>, usize, Vec<Raw>)> {
    let err = |e| db_err(path, &format!("reading {}", table.name), e);
    let mut st = conn.prepare_cached(sql).map_err(err)?;
    let mut rows = st.query(params).map_err(err)?;
    let mut data = Vec::new();
    let mut n = 0;
    let mut last = vec![Raw::Null; keep.len()];
    while let Some(r) = rows.next().map_err(err)? {
        for i in 0..table.columns.len() {
            crate::native::push(&mut data, r.get_ref(i).map_err(err)?);
        }
        for (slot, &k) in last.iter_mut().zip(keep) {
            slot.set_from_ref(r.get_ref(k).map_err(err)?);
        }
        n += 1;
    }
    Ok((data, n, last))
}

/// How a snapshot reads `table`: the positions of the values a chunk's
/// position keeps (in the selected columns), the columns it is ordered by and
/// the columns it selects. By key; a table without a key by its `rowid` (its
/// physical order), selected after the table's columns.
fn read_order(table: &TableSchema) -> (Vec<usize>, String, String) {
    let cols = column_list(table.columns.iter().map(|c| c.name.as_str()));
    match table.row_key() {
        Some(key) => (
            key.to_vec(),
            column_list(key.iter().map(|&i| table.columns[i].name.as_str())),
            cols,
        ),
        None => (
            vec![table.columns.len()],
            "rowid".to_string(),
            format!("{cols}, rowid"),
        ),
    }
}

impl SqliteSource {
    /// Opens the file read-only; it must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteSource> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::config(format!(
                "SQLite source {} does not exist",
                path.display()
            )));
        }
        Ok(SqliteSource {
            db: Db::open(path, true)?,
        })
    }
}

impl Source for SqliteSource {
    async fn discover(&self, filter: &TableFilter) -> Result<Vec<TableSchema>> {
        let filter = filter.clone();
        let path = self.db.path().to_path_buf();
        self.db
            .run(move |c| crate::schema::discover(c, &path, &filter))
            .await
    }

    async fn count_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        // SQLite keeps no statistics: the estimate is the exact count.
        self.estimate_rows(table).await
    }

    async fn estimate_rows(&self, table: &TableSchema) -> Result<Option<u64>> {
        let sql = format!("SELECT count(*) FROM {}", quote(&table.name.name));
        let path = self.db.path().to_path_buf();
        let n: i64 = self
            .db
            .run(move |c| {
                c.query_row(&sql, [], |r| r.get(0))
                    .map_err(|e| db_err(&path, "counting rows", e))
            })
            .await?;
        Ok(Some(n as u64))
    }

    async fn read_chunk(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        let (key, key_cols, cols) = read_order(table);
        let after: Option<KeyPosition> = after.map(|p| p.decode(&table.name)).transpose()?;
        let t = quote(&table.name.name);
        let sql = match &after {
            None => format!("SELECT {cols} FROM {t} ORDER BY {key_cols} LIMIT ?"),
            Some(_) => format!(
                "SELECT {cols} FROM {t} WHERE ({key_cols}) > ({}) ORDER BY {key_cols} LIMIT ?",
                placeholders(key.len())
            ),
        };
        let table = table.clone();
        let path = self.db.path().to_path_buf();
        let (rows, last) = self
            .db
            .run(move |c| {
                let limit = limit as i64;
                let mut params: Vec<&dyn ToSql> = Vec::new();
                if let Some(a) = &after {
                    params.extend(a.key.iter().map(|r| r as &dyn ToSql));
                }
                params.push(&limit);
                read_rows(c, &path, &table, &sql, &params, &key)
            })
            .await?;
        let last = if rows.is_empty() {
            None
        } else {
            Some(Position::encode(&KeyPosition { key: last })?)
        };
        Ok(Chunk { rows, last })
    }

    /// Tables read from SQLite offer their stored values, described by each
    /// column's declared type: a SQLite target whose columns are declared the
    /// same stores them unchanged.
    async fn native_format(&self, table: &TableSchema) -> Result<Option<NativeFormat>> {
        if table.origin != siphon_core::typemap::Engine::Sqlite {
            return Ok(None);
        }
        Ok(Some(NativeFormat {
            encoding: crate::native::ENCODING.to_string(),
            columns: table
                .columns
                .iter()
                .map(|c| c.native_type.clone())
                .collect(),
        }))
    }

    async fn read_native(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> Result<NativeChunk> {
        let (key, key_cols, cols) = read_order(table);
        let after: Option<KeyPosition> = after.map(|p| p.decode(&table.name)).transpose()?;
        let until: Option<KeyPosition> = until.map(|p| p.decode(&table.name)).transpose()?;
        let tuple = format!("({})", placeholders(key.len()));
        let mut filters = Vec::new();
        if after.is_some() {
            filters.push(format!("({key_cols}) > {tuple}"));
        }
        if until.is_some() {
            filters.push(format!("({key_cols}) <= {tuple}"));
        }
        let filter = if filters.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filters.join(" AND "))
        };
        let sql = format!(
            "SELECT {cols} FROM {} {filter} ORDER BY {key_cols} LIMIT ?",
            quote(&table.name.name)
        );
        let table = table.clone();
        let path = self.db.path().to_path_buf();
        let (data, rows, last) = self
            .db
            .run(move |c| {
                let limit = limit as i64;
                let mut params: Vec<&dyn ToSql> = Vec::new();
                for p in [&after, &until].into_iter().flatten() {
                    params.extend(p.key.iter().map(|r| r as &dyn ToSql));
                }
                params.push(&limit);
                read_stored(c, &path, &table, &sql, &params, &key)
            })
            .await?;
        let last = if rows == 0 {
            None
        } else {
            Some(Position::encode(&KeyPosition { key: last })?)
        };
        Ok(NativeChunk { data, rows, last })
    }

    async fn read_range(
        &self,
        table: &TableSchema,
        after: Option<&Position>,
        until: Option<&Position>,
        limit: usize,
    ) -> Result<Chunk> {
        let key = table.require_row_key()?.to_vec();
        let after: Option<KeyPosition> = after.map(|p| p.decode(&table.name)).transpose()?;
        let until: Option<KeyPosition> = until.map(|p| p.decode(&table.name)).transpose()?;
        let cols = column_list(table.columns.iter().map(|c| c.name.as_str()));
        let key_cols = column_list(key.iter().map(|&i| table.columns[i].name.as_str()));
        let mut filters = Vec::new();
        for (bound, op) in [(&after, ">"), (&until, "<=")] {
            if let Some(b) = bound {
                // A cut from `split_keys` holds a prefix of the key.
                let n = b.key.len().min(key.len());
                filters.push(format!(
                    "({}) {op} ({})",
                    column_list(key[..n].iter().map(|&i| table.columns[i].name.as_str())),
                    placeholders(n)
                ));
            }
        }
        let filter = if filters.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filters.join(" AND "))
        };
        let sql = format!(
            "SELECT {cols} FROM {} {filter} ORDER BY {key_cols} LIMIT ?",
            quote(&table.name.name)
        );
        let table = table.clone();
        let path = self.db.path().to_path_buf();
        let (rows, last) = self
            .db
            .run(move |c| {
                let limit = limit as i64;
                let mut params: Vec<&dyn ToSql> = Vec::new();
                for p in [&after, &until].into_iter().flatten() {
                    let n = p.key.len().min(key.len());
                    params.extend(p.key[..n].iter().map(|r| r as &dyn ToSql));
                }
                params.push(&limit);
                read_rows(c, &path, &table, &sql, &params, &key)
            })
            .await?;
        let last = if rows.is_empty() {
            None
        } else {
            Some(Position::encode(&KeyPosition { key: last })?)
        };
        Ok(Chunk { rows, last })
    }

    /// Cuts on the first key column when it is an integer (an `INTEGER PRIMARY
    /// KEY` is the table's rowid), evenly between its least and greatest value.
    async fn split_keys(&self, table: &TableSchema, parts: usize) -> Result<Vec<Position>> {
        let key = table.require_row_key()?;
        let first = &table.columns[key[0]];
        if parts < 2
            || !matches!(
                first.data_type.kind,
                TypeKind::Int16 | TypeKind::Int32 | TypeKind::Int64
            )
        {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT min({c}), max({c}) FROM {} WHERE typeof({c}) = 'integer'",
            quote(&table.name.name),
            c = quote(&first.name)
        );
        let path = self.db.path().to_path_buf();
        let (lo, hi): (Option<i64>, Option<i64>) = self
            .db
            .run(move |c| {
                c.query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(|e| db_err(&path, "reading the key range", e))
            })
            .await?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(Vec::new());
        };
        let width = i128::from(hi) - i128::from(lo);
        let mut cuts: Vec<i64> = (1..parts as i128)
            .map(|i| (i128::from(lo) + width * i / parts as i128) as i64)
            .filter(|&c| c < hi)
            .collect();
        cuts.dedup();
        cuts.into_iter()
            .map(|c| {
                Position::encode(&KeyPosition {
                    key: vec![Raw::Int(c)],
                })
            })
            .collect()
    }

    /// Another read-only connection to the same file: SQLite serves readers in
    /// parallel.
    async fn another(&self) -> Result<Option<SqliteSource>> {
        Ok(Some(SqliteSource {
            db: Db::open(self.db.path(), true)?,
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
        let after: Option<Watermark> = after.map(|p| p.decode(&table.name)).transpose()?;
        let c = quote(&cursor.column);
        let order = format!(
            "{c}, {}",
            column_list(key.iter().map(|&i| table.columns[i].name.as_str()))
        );
        let cols = column_list(table.columns.iter().map(|c| c.name.as_str()));
        let t = quote(&table.name.name);
        let filter = match &after {
            None => format!("{c} IS NOT NULL"),
            Some(w) if w.key.is_empty() => format!("{c} >= ?"),
            Some(w) => format!("({order}) > ({})", placeholders(1 + w.key.len())),
        };
        let sql = format!("SELECT {cols} FROM {t} WHERE {filter} ORDER BY {order} LIMIT ?");
        let mut keep = vec![ci];
        keep.extend(&key);
        let table = table.clone();
        let path = self.db.path().to_path_buf();
        let (rows, mut last) = self
            .db
            .run(move |conn| {
                let limit = limit as i64;
                let mut params: Vec<&dyn ToSql> = Vec::new();
                if let Some(w) = &after {
                    params.push(&w.cursor);
                    params.extend(w.key.iter().map(|r| r as &dyn ToSql));
                }
                params.push(&limit);
                read_rows(conn, &path, &table, &sql, &params, &keep)
            })
            .await?;
        if rows.is_empty() {
            return Ok(Chunk { rows, last: None });
        }
        let key = last.split_off(1);
        let cursor = last.pop().unwrap_or(Raw::Null);
        Ok(Chunk {
            rows,
            last: Some(Position::encode(&Watermark { cursor, key })?),
        })
    }

    async fn cursor_high(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
    ) -> Result<Option<Position>> {
        cursor_column(table, cursor)?;
        let c = quote(&cursor.column);
        let sql = format!(
            "SELECT {c} FROM {} WHERE {c} IS NOT NULL ORDER BY {c} DESC LIMIT 1",
            quote(&table.name.name)
        );
        let path = self.db.path().to_path_buf();
        let high = self
            .db
            .run(move |conn| {
                let mut st = conn
                    .prepare(&sql)
                    .map_err(|e| db_err(&path, "reading the highest cursor", e))?;
                let mut rows = st
                    .query([])
                    .map_err(|e| db_err(&path, "reading the highest cursor", e))?;
                Ok(
                    match rows
                        .next()
                        .map_err(|e| db_err(&path, "reading the highest cursor", e))?
                    {
                        Some(r) => Some(Raw::from_ref(
                            r.get_ref(0).map_err(|e| db_err(&path, "reading", e))?,
                        )),
                        None => None,
                    },
                )
            })
            .await?;
        high.map(|cursor| {
            Position::encode(&Watermark {
                cursor,
                key: vec![],
            })
        })
        .transpose()
    }

    fn rewind(
        &self,
        table: &TableSchema,
        cursor: &CursorSpec,
        from: &Position,
    ) -> Result<Position> {
        let w: Watermark = from.decode(&table.name)?;
        let Some(lookback) = cursor.lookback else {
            return Ok(from.clone());
        };
        let bad = |what: &str| {
            Error::bad_input(format!("cannot apply lookback {lookback:?} to {what}; remove `lookback` or change the column"))
                .table(&table.name)
                .column(&cursor.column)
        };
        let secs = |d: std::time::Duration| d.as_secs() as i64;
        let cursor_back = match (&w.cursor, lookback) {
            (Raw::Int(i), Lookback::Amount(n)) => Raw::Int(i.saturating_sub(n)),
            (Raw::Int(i), Lookback::Duration(d)) => Raw::Int(i.saturating_sub(secs(d))),
            (Raw::Real(f), Lookback::Amount(n)) => Raw::Real(f - n as f64),
            (Raw::Real(f), Lookback::Duration(d)) => Raw::Real(f - d.as_secs_f64()),
            // ±infinity moved back by any time is itself.
            (Raw::Text(s), Lookback::Duration(_))
                if matches!(s.as_str(), "infinity" | "-infinity") =>
            {
                Raw::Text(s.clone())
            }
            (Raw::Text(s), Lookback::Duration(d)) => Raw::Text(
                rewind_text_timestamp(s, secs(d))
                    .ok_or_else(|| bad(&format!("the value '{s}'")))?,
            ),
            (other, _) => return Err(bad(&format!("a stored {other:?}"))),
        };
        Position::encode(&Watermark {
            cursor: cursor_back,
            key: vec![],
        })
    }

    fn compare(&self, table: &TableSchema, a: &Position, b: &Position) -> Result<Ordering> {
        let a: Watermark = a.decode(&table.name)?;
        let b: Watermark = b.decode(&table.name)?;
        let mut ord = a.cursor.sqlite_cmp(&b.cursor);
        let mut i = 0;
        while ord == Ordering::Equal {
            ord = match (a.key.get(i), b.key.get(i)) {
                (None, None) => break,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => x.sqlite_cmp(y),
            };
            i += 1;
        }
        Ok(ord)
    }

    async fn existing_keys(&self, table: &TableSchema, keys: &[Row]) -> Result<Vec<bool>> {
        let key = table.require_row_key()?.to_vec();
        let key_cols = column_list(key.iter().map(|&i| table.columns[i].name.as_str()));
        let t = quote(&table.name.name);
        let keys = keys.to_vec();
        let table = table.clone();
        let path = self.db.path().to_path_buf();
        self.db
            .run(move |conn| {
                let mut found = std::collections::HashSet::new();
                let per = (500 / key.len()).max(1);
                for part in keys.chunks(per) {
                    let tuple = format!("({})", placeholders(key.len()));
                    let sql = format!(
                        "SELECT {key_cols} FROM {t} WHERE ({key_cols}) IN (VALUES {})",
                        vec![tuple.as_str(); part.len()].join(", ")
                    );
                    let binds: Vec<Bind<'_>> = part.iter().flatten().map(Bind).collect();
                    let params: Vec<&dyn ToSql> = binds.iter().map(|b| b as &dyn ToSql).collect();
                    let err = |e| db_err(&path, &format!("looking up keys of {}", table.name), e);
                    let mut st = conn.prepare_cached(&sql).map_err(err)?;
                    let mut rows = st.query(params.as_slice()).map_err(err)?;
                    while let Some(r) = rows.next().map_err(err)? {
                        let mut h = xxhash_rust::xxh3::Xxh3::new();
                        for (j, &ci) in key.iter().enumerate() {
                            let c = &table.columns[ci];
                            let v = r.get_ref(j).map_err(err)?;
                            decode_or_err(&c.data_type.kind, v, &table.name, &c.name)?
                                .hash_into(&mut h);
                        }
                        found.insert(h.digest());
                    }
                }
                Ok(keys
                    .iter()
                    .map(|k| {
                        let mut h = xxhash_rust::xxh3::Xxh3::new();
                        k.iter().for_each(|v| v.hash_into(&mut h));
                        found.contains(&h.digest())
                    })
                    .collect())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_core::Value;

    #[tokio::test]
    async fn polling_with_lookback_goes_past_an_infinite_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, at TIMESTAMP);
                 INSERT INTO t VALUES (1, '-infinity'), (2, '2024-01-01 00:00:00'), (3, 'infinity');",
            )
            .unwrap();
        let source = SqliteSource::open(&path).unwrap();
        let table = source
            .discover(&TableFilter {
                include: vec!["t".into()],
                exclude: vec![],
            })
            .await
            .unwrap()
            .pop()
            .unwrap();
        let cursor = CursorSpec {
            column: "at".into(),
            strategy: CursorStrategy::Timestamp,
            lookback: Some(Lookback::Duration(std::time::Duration::from_secs(300))),
        };
        let all = source.poll(&table, &cursor, None, 10).await.unwrap();
        let ats: Vec<&Value> = all.rows.iter().map(|r| &r[1]).collect();
        assert_eq!(
            ats,
            [
                &Value::Timestamp(chrono::NaiveDateTime::MIN),
                &Value::Timestamp("2024-01-01T00:00:00".parse().unwrap()),
                &Value::Timestamp(chrono::NaiveDateTime::MAX),
            ],
            "±infinity sort as the ends of time"
        );
        let high = source.cursor_high(&table, &cursor).await.unwrap().unwrap();
        let back = source.rewind(&table, &cursor, &high).unwrap();
        let again = source.poll(&table, &cursor, Some(&back), 10).await.unwrap();
        assert_eq!(again.rows.len(), 1);
        assert_eq!(again.rows[0][0], Value::Int64(3));
    }
}
