//! Staging tables for change batches and upserts: one per target table shape
//! and connection, created once, reused by every run of changes and every
//! transaction, and only a bounded number kept per connection.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio_postgres::{Statement, Transaction};

use super::TargetTable;
use crate::conn::column_list;

/// How many staging tables a connection keeps beyond those its current
/// transaction uses; the least recently used ones beyond it are dropped.
const KEPT: usize = 64;

/// COPY data a staging table takes before it is truncated. Each use empties
/// it by `DELETE`, which leaves dead rows and pages behind; a `TRUNCATE` (a new
/// file, a catalog update) once per this much data gives the space back.
const TRUNCATE_AFTER: usize = 1 << 20;

/// The staging tables of one connection and the statements prepared on them.
///
/// A staging table has the written and key columns of one target table, typed
/// as the target types them. Each use fills it by COPY and empties it again in
/// the statement that merges or deletes its rows, so every run of changes and
/// every transaction finds it empty. So a transaction holds at most one
/// staging table per target table, whatever the number of runs, and a
/// connection a bounded number: a batch costs no catalog change and no lock
/// per run, commits cost nothing per staging table (unlike `ON COMMIT DELETE
/// ROWS`, which truncates every one of them at every commit), and the tables go
/// with the session when it ends or is lost.
///
/// Calls come from one transaction at a time (the sink's connection lock);
/// [`Staging::begin`] starts each transaction's use.
#[derive(Debug, Default)]
pub(super) struct Staging {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Staging tables known to exist.
    tables: HashMap<String, Table>,
    /// Uses so far, for least-recently-used order.
    uses: u64,
    /// Tables the current transaction used: never dropped by it.
    used: HashSet<String>,
    /// `tables` may be wrong (a transaction rolled back): read the catalog.
    stale: bool,
    /// Prepared statements by their SQL.
    statements: HashMap<String, Statement>,
}

#[derive(Debug, Clone, Copy)]
struct Table {
    /// The count of uses at its last use.
    last_use: u64,
    /// COPY data it took since it was created or truncated.
    bytes: usize,
}

impl Staging {
    /// Starts a transaction's use of the staging tables.
    pub(super) fn begin(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.used.clear();
        }
    }

    /// The name of the empty staging table for target `t` (in the session's
    /// temporary schema), created when missing, about to take `bytes` of COPY
    /// data. Its columns are the target's written and key columns, typed as
    /// the target types them. The caller empties it again before the
    /// transaction ends (see [`Staging`]).
    pub(super) async fn stage(
        &self,
        tx: &Transaction<'_>,
        t: &TargetTable,
        bytes: usize,
    ) -> std::result::Result<String, tokio_postgres::Error> {
        let mut columns: Vec<usize> = t.write.clone();
        columns.extend(t.key.iter().filter(|k| !t.write.contains(k)));
        columns.sort_unstable();
        let list = column_list(columns.iter().map(|&i| t.columns[i].as_str()));
        // The target's types are part of the shape: a widened column gets a new
        // staging table rather than one that cannot hold its values.
        let mut shape = format!("{}\0{list}", t.name);
        for &i in &columns {
            shape.push('\0');
            shape.push_str(&t.types[i].name);
            shape.push_str(&t.types[i].oid.to_string());
        }
        let name = format!(
            "siphon_stage_{:016x}",
            xxhash_rust::xxh3::xxh3_64(shape.as_bytes())
        );

        if self.state.lock().map(|s| s.stale).unwrap_or(true) {
            let rows = tx
                .query(
                    "SELECT relname::text FROM pg_class WHERE relnamespace = pg_my_temp_schema() \
                     AND relkind = 'r' AND relname LIKE 'siphon\\_stage\\_%'",
                    &[],
                )
                .await?;
            if let Ok(mut s) = self.state.lock() {
                // Their dead rows are unknown: each is truncated at its next use.
                let found = Table {
                    last_use: 0,
                    bytes: TRUNCATE_AFTER,
                };
                s.tables = rows.iter().map(|r| (r.get(0), found)).collect();
                s.stale = false;
            }
        }
        let (known, evict) = match self.state.lock() {
            Ok(s) => (s.tables.get(&name).copied(), s.evictable()),
            Err(_) => (None, Vec::new()),
        };
        let bytes = match known {
            Some(k) if k.bytes >= TRUNCATE_AFTER => {
                tx.batch_execute(&format!("TRUNCATE {name}")).await?;
                bytes
            }
            Some(k) => k.bytes + bytes,
            None => {
                for old in &evict {
                    tx.batch_execute(&format!("DROP TABLE IF EXISTS {old}"))
                        .await?;
                    if let Ok(mut s) = self.state.lock() {
                        s.tables.remove(old);
                        s.statements.retain(|sql, _| !sql.contains(old.as_str()));
                    }
                }
                tx.batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {name} AS SELECT {list} FROM {} WITH NO DATA",
                    t.name
                ))
                .await?;
                bytes
            }
        };
        if let Ok(mut s) = self.state.lock() {
            s.uses += 1;
            let last_use = s.uses;
            s.tables.insert(name.clone(), Table { last_use, bytes });
            s.used.insert(name.clone());
        }
        Ok(name)
    }

    /// `sql`, prepared once per connection.
    pub(super) async fn statement(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
    ) -> std::result::Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.statements.get(sql).cloned())
        {
            return Ok(s);
        }
        let s = tx.prepare(sql).await?;
        if let Ok(mut state) = self.state.lock() {
            state.statements.insert(sql.to_string(), s.clone());
        }
        Ok(s)
    }

    /// Forgets what this connection knows of its staging tables, after a
    /// transaction that rolled back (tables it created or dropped are as
    /// before it) or a change of the target tables: the next use reads them
    /// from the catalog.
    pub(super) fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.tables.clear();
            s.used.clear();
            s.statements.clear();
            s.stale = true;
        }
    }
}

impl State {
    /// Staging tables to drop before one more is created: the least recently
    /// used beyond [`KEPT`], among those the current transaction has not used.
    fn evictable(&self) -> Vec<String> {
        let over = (self.tables.len() + 1).saturating_sub(KEPT);
        if over == 0 {
            return Vec::new();
        }
        let mut idle: Vec<(&String, &Table)> = self
            .tables
            .iter()
            .filter(|(name, _)| !self.used.contains(*name))
            .collect();
        idle.sort_by_key(|(name, t)| (t.last_use, (*name).clone()));
        idle.into_iter()
            .take(over)
            .map(|(name, _)| name.clone())
            .collect()
    }
}
