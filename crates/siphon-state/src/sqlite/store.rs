//! [`StateStore`] on SQLite: each method is one statement or one transaction.
//!
//! Writes of more than one statement take the write lock up front (`BEGIN
//! IMMEDIATE`): a transaction that read first and upgraded later could fail at once
//! with SQLITE_BUSY in WAL mode, without waiting out the busy timeout.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::de::DeserializeOwned;
use siphon_core::{
    Checkpoint, CommitLag, Conflict, Execution, ExecutionStatus, Flag, Lease, PipelineSpec, Result,
    RowCounts, Side, StateStore, StreamId, StreamState, TableName, TableStats,
};

use super::sql::{Json, ModeName, Stamp, StatusName};
use super::{Failure, SqliteStateStore};

impl StateStore for SqliteStateStore {
    fn put_connection(&self, name: &str, url: &str) -> impl Future<Output = Result<()>> + Send {
        let (name, url) = (name.to_owned(), url.to_owned());
        let doing = format!("cannot save connection `{name}`");
        self.call(doing, move |conn| {
            conn.execute(
                "INSERT INTO connections (name, url) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET url = excluded.url",
                params![name, url],
            )?;
            Ok(())
        })
    }

    fn connections(&self) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send {
        let doing = "cannot list connections".to_owned();
        self.call(doing, |conn| {
            let mut stmt = conn.prepare_cached("SELECT name, url FROM connections")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn remove_connection(&self, name: &str) -> impl Future<Output = Result<bool>> + Send {
        let name = name.to_owned();
        let doing = format!("cannot remove connection `{name}`");
        self.call(doing, move |conn| {
            Ok(conn.execute("DELETE FROM connections WHERE name = ?1", [&name])? > 0)
        })
    }

    fn put_pipeline(
        &self,
        name: &str,
        spec: &PipelineSpec,
    ) -> impl Future<Output = Result<()>> + Send {
        let (name, spec) = (name.to_owned(), spec.clone());
        let doing = format!("cannot save pipeline `{name}`");
        self.call(doing, move |conn| {
            conn.execute(
                "INSERT INTO pipelines (name, spec) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
                params![name, Json(&spec)],
            )?;
            Ok(())
        })
    }

    fn pipelines(&self) -> impl Future<Output = Result<BTreeMap<String, PipelineSpec>>> + Send {
        let doing = "cannot list pipelines".to_owned();
        self.call(doing, |conn| {
            let mut stmt = conn.prepare_cached("SELECT name, spec FROM pipelines")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut pipelines = BTreeMap::new();
            for row in rows {
                let (name, spec) = row?;
                let spec = decode(&spec, || format!("pipeline `{name}`"))?;
                pipelines.insert(name, spec);
            }
            Ok(pipelines)
        })
    }

    /// Also forgets the pipeline's flags, stream states and checkpoint copies, so a
    /// pipeline added again under the same name starts afresh; its executions stay
    /// as history.
    fn remove_pipeline(&self, name: &str) -> impl Future<Output = Result<bool>> + Send {
        let name = name.to_owned();
        let doing = format!("cannot remove pipeline `{name}`");
        self.call(doing, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existed = tx.execute("DELETE FROM pipelines WHERE name = ?1", [&name])? > 0;
            for table in ["flags", "stream_states", "checkpoints", "commit_lags"] {
                tx.execute(&format!("DELETE FROM {table} WHERE pipeline = ?1"), [&name])?;
            }
            tx.commit()?;
            Ok(existed)
        })
    }

    fn flag(
        &self,
        stream: &StreamId,
        flag: Flag,
    ) -> impl Future<Output = Result<Option<bool>>> + Send {
        let (pipeline, table) = key(stream);
        let doing = format!("cannot read flag {} of {stream}", flag.as_str());
        self.call(doing, move |conn| {
            let value = conn.query_row(
                "SELECT value FROM flags
                 WHERE pipeline = ?1 AND table_name = ?2 AND flag = ?3",
                params![pipeline, table, flag.as_str()],
                |r| r.get(0),
            );
            Ok(value.optional()?)
        })
    }

    fn set_flag(
        &self,
        stream: &StreamId,
        flag: Flag,
        value: bool,
    ) -> impl Future<Output = Result<()>> + Send {
        let (pipeline, table) = key(stream);
        let doing = format!("cannot set flag {} of {stream}", flag.as_str());
        self.call(doing, move |conn| {
            conn.execute(
                "INSERT INTO flags (pipeline, table_name, flag, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pipeline, table_name, flag) DO UPDATE SET value = excluded.value",
                params![pipeline, table, flag.as_str(), value],
            )?;
            Ok(())
        })
    }

    fn clear_flag(&self, stream: &StreamId, flag: Flag) -> impl Future<Output = Result<()>> + Send {
        let (pipeline, table) = key(stream);
        let doing = format!("cannot clear flag {} of {stream}", flag.as_str());
        self.call(doing, move |conn| {
            conn.execute(
                "DELETE FROM flags WHERE pipeline = ?1 AND table_name = ?2 AND flag = ?3",
                params![pipeline, table, flag.as_str()],
            )?;
            Ok(())
        })
    }

    /// One `DELETE … RETURNING` statement, so no two callers see one set flag.
    fn take_flag(
        &self,
        stream: &StreamId,
        flag: Flag,
    ) -> impl Future<Output = Result<bool>> + Send {
        let (pipeline, table) = key(stream);
        let doing = format!("cannot take flag {} of {stream}", flag.as_str());
        self.call(doing, move |conn| {
            let value: Option<bool> = conn
                .query_row(
                    "DELETE FROM flags WHERE pipeline = ?1 AND table_name = ?2 AND flag = ?3
                     RETURNING value",
                    params![pipeline, table, flag.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(value == Some(true))
        })
    }

    fn set_stream_state(
        &self,
        stream: &StreamId,
        state: &StreamState,
    ) -> impl Future<Output = Result<()>> + Send {
        let (pipeline, table) = key(stream);
        let state = state.clone();
        let doing = format!("cannot save the state of {stream}");
        self.call(doing, move |conn| {
            conn.execute(
                "INSERT INTO stream_states (pipeline, table_name, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pipeline, table_name)
                 DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                params![pipeline, table, Json(&state), Stamp(Utc::now())],
            )?;
            Ok(())
        })
    }

    /// Ordered by pipeline, then table.
    fn stream_states(&self) -> impl Future<Output = Result<Vec<(StreamId, StreamState)>>> + Send {
        let doing = "cannot list stream states".to_owned();
        self.call(doing, |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT pipeline, table_name, state FROM stream_states
                 ORDER BY pipeline, table_name",
            )?;
            let rows = stmt.query_map([], |r| {
                let table = table_of(&r.get::<_, String>(1)?);
                let stream = StreamId {
                    pipeline: r.get(0)?,
                    table,
                };
                Ok((stream, r.get::<_, String>(2)?))
            })?;
            let mut states = Vec::new();
            for row in rows {
                let (stream, state) = row?;
                let state = decode(&state, || format!("the state of {stream}"))?;
                states.push((stream, state));
            }
            Ok(states)
        })
    }

    fn save_checkpoint(&self, checkpoint: &Checkpoint) -> impl Future<Output = Result<()>> + Send {
        let (pipeline, table) = key(&checkpoint.stream);
        let checkpoint = checkpoint.clone();
        let doing = format!("cannot save the checkpoint of {}", checkpoint.stream);
        self.call(doing, move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Fencing for checkpoints kept here (event targets): a worker whose
            // lease was taken over writes no more. Epoch 0 is a write outside
            // any lease (copies of a table target's checkpoints, library use).
            if checkpoint.epoch > 0 {
                let newest: Option<i64> = tx
                    .query_row(
                        "SELECT epoch FROM leases WHERE pipeline = ?1",
                        params![pipeline],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(newest) = newest.filter(|&n| n as u64 > checkpoint.epoch) {
                    return Err(Failure::Fenced(format!(
                        "the pipeline's lease is at epoch {newest}, and this worker's epoch {} is \
                         older: another worker took the pipeline over, so this one stops",
                        checkpoint.epoch
                    )));
                }
            }
            tx.execute(
                "INSERT INTO checkpoints (pipeline, table_name, checkpoint, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pipeline, table_name)
                 DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = excluded.updated_at",
                params![pipeline, table, Json(&checkpoint), Stamp(Utc::now())],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn checkpoint(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Checkpoint>>> + Send {
        let (pipeline, table) = key(stream);
        let doing = format!("cannot read the checkpoint of {stream}");
        self.call(doing, move |conn| {
            let found = conn.query_row(
                "SELECT checkpoint FROM checkpoints WHERE pipeline = ?1 AND table_name = ?2",
                params![pipeline, table],
                |r| r.get::<_, String>(0),
            );
            match found.optional()? {
                Some(json) => Ok(Some(decode(&json, || {
                    format!("the checkpoint of {pipeline}/{table}")
                })?)),
                None => Ok(None),
            }
        })
    }

    fn remove_checkpoint(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        let (pipeline, table) = key(stream);
        let doing = format!("cannot remove the checkpoint of {stream}");
        self.call(doing, move |conn| {
            conn.execute(
                "DELETE FROM checkpoints WHERE pipeline = ?1 AND table_name = ?2",
                params![pipeline, table],
            )?;
            super::lag::remove(conn, &pipeline, &table)
        })
    }

    fn record_commit_lags(
        &self,
        lags: &[(StreamId, CommitLag)],
    ) -> impl Future<Output = Result<()>> + Send {
        let lags = lags.to_vec();
        let doing = "cannot record the replication lag of the streams".to_owned();
        self.call(doing, move |conn| super::lag::record(conn, &lags))
    }

    fn commit_lags(&self) -> impl Future<Output = Result<Vec<(StreamId, CommitLag)>>> + Send {
        let doing = "cannot read the replication lag of the streams".to_owned();
        self.call(doing, super::lag::list)
    }

    /// The execution starts `running`, stamped now. Ids grow with each start, across
    /// every process that shares the file, and are never reused.
    fn start_execution(&self, pipeline: &str) -> impl Future<Output = Result<u64>> + Send {
        let pipeline = pipeline.to_owned();
        let kept = i64::try_from(self.kept_executions).unwrap_or(i64::MAX);
        let doing = format!("cannot start an execution of pipeline `{pipeline}`");
        self.call(doing, move |conn| {
            let id = conn.query_row(
                "INSERT INTO executions (pipeline, started_at, status) VALUES (?1, ?2, ?3)
                 RETURNING id",
                params![
                    pipeline,
                    Stamp(Utc::now()),
                    StatusName(ExecutionStatus::Running)
                ],
                |r| r.get(0),
            )?;
            // History is bounded: executions of the pipeline older than its
            // newest `kept` go (their tables with them).
            conn.execute(
                "DELETE FROM executions WHERE pipeline = ?1 AND id <= (SELECT id FROM executions \
                 WHERE pipeline = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![pipeline, kept],
            )?;
            Ok(id)
        })
    }

    /// Fails with [`siphon_core::ErrorKind::Internal`] when there is no such execution.
    fn record_table(
        &self,
        execution: u64,
        stats: &TableStats,
    ) -> impl Future<Output = Result<()>> + Send {
        let stats = stats.clone();
        let doing = format!(
            "cannot record table {} of execution {execution}",
            stats.table
        );
        self.call(doing, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require_execution(&tx, execution)?;
            tx.execute(
                "INSERT OR REPLACE INTO execution_tables (execution, table_name, mode, rows_read,
                     inserted, updated, deleted, started_at, finished_at, status, error, replaced,
                     count_source, count_target, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    execution,
                    stats.table.key(),
                    ModeName(stats.mode),
                    stats.rows_read,
                    stats.inserted,
                    stats.updated,
                    stats.deleted,
                    Stamp(stats.started_at),
                    stats.finished_at.map(Stamp),
                    StatusName(stats.status),
                    stats.error,
                    stats.replaced,
                    stats.row_counts.map(|c| c.source),
                    stats.row_counts.and_then(|c| c.target),
                    stats.bytes,
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Stamps the execution finished now, with `status` and `error`. Fails with
    /// [`siphon_core::ErrorKind::Internal`] when there is no such execution.
    fn record_retained_log(
        &self,
        execution: u64,
        bytes: u64,
    ) -> impl Future<Output = Result<()>> + Send {
        let doing = format!("cannot record the retained log of execution {execution}");
        self.call(doing, move |conn| {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            let changed = conn.execute(
                "UPDATE executions SET retained_log_bytes = ?1 WHERE id = ?2",
                params![bytes, execution],
            )?;
            if changed == 0 {
                return Err(missing(execution));
            }
            Ok(())
        })
    }

    fn finish_execution(
        &self,
        execution: u64,
        status: ExecutionStatus,
        error: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send {
        let error = error.map(str::to_owned);
        let doing = format!("cannot finish execution {execution}");
        self.call(doing, move |conn| {
            let changed = conn.execute(
                "UPDATE executions SET finished_at = ?1, status = ?2, error = ?3 WHERE id = ?4",
                params![Stamp(Utc::now()), StatusName(status), error, execution],
            )?;
            if changed == 0 {
                return Err(missing(execution));
            }
            Ok(())
        })
    }

    /// Newest first by start; each execution's tables in the order they started.
    fn executions(
        &self,
        pipeline: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Execution>>> + Send {
        let pipeline = pipeline.map(str::to_owned);
        let doing = match &pipeline {
            Some(p) => format!("cannot list executions of pipeline `{p}`"),
            None => "cannot list executions".to_owned(),
        };
        // More rows than SQLite can count is as good as no limit.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(doing, move |conn| {
            // One read transaction, so that the executions and their tables agree.
            let tx = conn.transaction()?;
            let mut executions = match &pipeline {
                Some(p) => {
                    let sql =
                        format!("{SELECT_EXECUTION} WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2");
                    let mut stmt = tx.prepare_cached(&sql)?;
                    let rows = stmt.query_map(params![p, limit], execution_row)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
                None => {
                    let sql = format!("{SELECT_EXECUTION} ORDER BY id DESC LIMIT ?1");
                    let mut stmt = tx.prepare_cached(&sql)?;
                    let rows = stmt.query_map([limit], execution_row)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
            };
            for execution in &mut executions {
                execution.tables = execution_tables(&tx, execution.id)?;
            }
            tx.commit()?;
            Ok(executions)
        })
    }

    /// With its tables in the order they started.
    fn execution(&self, id: u64) -> impl Future<Output = Result<Option<Execution>>> + Send {
        let doing = format!("cannot read execution {id}");
        self.call(doing, move |conn| {
            let tx = conn.transaction()?;
            let sql = format!("{SELECT_EXECUTION} WHERE id = ?1");
            let found = tx.query_row(&sql, [id], execution_row).optional()?;
            let found = match found {
                Some(mut execution) => {
                    execution.tables = execution_tables(&tx, id)?;
                    Some(execution)
                }
                None => None,
            };
            tx.commit()?;
            Ok(found)
        })
    }

    /// One write transaction; the tables of removed executions go with them.
    fn prune_executions(
        &self,
        pipeline: &str,
        older_than: Option<DateTime<Utc>>,
        keep_last: Option<u64>,
    ) -> impl Future<Output = Result<u64>> + Send {
        let pipeline = pipeline.to_owned();
        let doing = format!("cannot remove old executions of pipeline `{pipeline}`");
        self.call(doing, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut removed = 0;
            if let Some(before) = older_than {
                removed += tx.execute(
                    "DELETE FROM executions WHERE pipeline = ?1 AND started_at < ?2",
                    params![pipeline, Stamp(before)],
                )?;
            }
            if let Some(keep) = keep_last {
                let keep = i64::try_from(keep).unwrap_or(i64::MAX);
                removed += tx.execute(
                    "DELETE FROM executions WHERE pipeline = ?1 AND id NOT IN \
                     (SELECT id FROM executions WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2)",
                    params![pipeline, keep],
                )?;
            }
            tx.commit()?;
            Ok(removed as u64)
        })
    }

    fn acquire_lease(
        &self,
        pipeline: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send {
        let (pipeline, holder) = (pipeline.to_owned(), holder.to_owned());
        let doing = format!("cannot acquire the lease of pipeline `{pipeline}`");
        self.call(doing, move |conn| {
            super::lease::acquire(conn, &pipeline, &holder, ttl)
        })
    }

    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send {
        let lease = lease.clone();
        let doing = format!("cannot renew the lease of pipeline `{}`", lease.pipeline);
        self.call(doing, move |conn| super::lease::renew(conn, &lease, ttl))
    }

    fn release_lease(&self, lease: &Lease) -> impl Future<Output = Result<()>> + Send {
        let lease = lease.clone();
        let doing = format!("cannot release the lease of pipeline `{}`", lease.pipeline);
        self.call(doing, move |conn| super::lease::release(conn, &lease))
    }

    fn lease(&self, pipeline: &str) -> impl Future<Output = Result<Option<Lease>>> + Send {
        let pipeline = pipeline.to_owned();
        let doing = format!("cannot read the lease of pipeline `{pipeline}`");
        self.call(doing, move |conn| super::lease::live(conn, &pipeline))
    }

    fn record_conflict(&self, conflict: &Conflict) -> impl Future<Output = Result<u64>> + Send {
        let conflict = conflict.clone();
        let doing = format!(
            "cannot record a conflict of pipeline `{}` in table {}",
            conflict.pipeline, conflict.table
        );
        self.call(doing, move |conn| super::conflicts::record(conn, &conflict))
    }

    fn conflicts(
        &self,
        pipeline: Option<&str>,
        unresolved_only: bool,
    ) -> impl Future<Output = Result<Vec<Conflict>>> + Send {
        let pipeline = pipeline.map(str::to_owned);
        let doing = match &pipeline {
            Some(p) => format!("cannot list the conflicts of pipeline `{p}`"),
            None => "cannot list conflicts".to_owned(),
        };
        self.call(doing, move |conn| {
            super::conflicts::list(conn, pipeline.as_deref(), unresolved_only)
        })
    }

    fn resolve_conflict(&self, id: u64, keep: Side) -> impl Future<Output = Result<bool>> + Send {
        let doing = format!("cannot resolve conflict {id}");
        self.call(doing, move |conn| super::conflicts::resolve(conn, id, keep))
    }
}

/// The columns a stream is stored under: its pipeline and its table's key.
fn key(stream: &StreamId) -> (String, String) {
    (stream.pipeline.clone(), stream.table.key())
}

/// The table a stored key names. Execution history from before keys existed may
/// hold a display name that more than one table shares; it is read as
/// `schema.table` split at the first `.`.
pub(super) fn table_of(stored: &str) -> TableName {
    TableName::from_key(stored).unwrap_or_else(|| TableName::parse(stored))
}

/// Decodes JSON text; `what` names the value when it cannot.
fn decode<T: DeserializeOwned>(json: &str, what: impl FnOnce() -> String) -> Result<T, Failure> {
    serde_json::from_str(json).map_err(|source| Failure::Unreadable {
        what: what(),
        source,
    })
}

fn missing(execution: u64) -> Failure {
    Failure::Missing(format!(
        "there is no execution {execution}; use an id that start_execution returned"
    ))
}

fn require_execution(conn: &Connection, execution: u64) -> Result<(), Failure> {
    let found = conn.query_row(
        "SELECT 1 FROM executions WHERE id = ?1",
        [execution],
        |_| Ok(()),
    );
    found.optional()?.ok_or_else(|| missing(execution))
}

const SELECT_EXECUTION: &str =
    "SELECT id, pipeline, started_at, finished_at, status, error, retained_log_bytes FROM executions";

fn execution_row(r: &Row<'_>) -> rusqlite::Result<Execution> {
    Ok(Execution {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        started_at: r.get::<_, Stamp>(2)?.0,
        finished_at: r.get::<_, Option<Stamp>>(3)?.map(|s| s.0),
        status: r.get::<_, StatusName>(4)?.0,
        error: r.get(5)?,
        retained_log_bytes: r.get::<_, Option<i64>>(6)?.map(|n| n.max(0) as u64),
        tables: Vec::new(),
    })
}

fn execution_tables(conn: &Connection, execution: u64) -> rusqlite::Result<Vec<TableStats>> {
    let mut stmt = conn.prepare_cached(
        "SELECT table_name, mode, rows_read, inserted, updated, deleted, started_at,
             finished_at, status, error, replaced, count_source, count_target, bytes
         FROM execution_tables WHERE execution = ?1 ORDER BY started_at, table_name",
    )?;
    let rows = stmt.query_map([execution], |r| {
        Ok(TableStats {
            table: table_of(&r.get::<_, String>(0)?),
            mode: r.get::<_, ModeName>(1)?.0,
            rows_read: r.get(2)?,
            inserted: r.get(3)?,
            updated: r.get(4)?,
            deleted: r.get(5)?,
            bytes: r.get(13)?,
            replaced: r.get(10)?,
            row_counts: r
                .get::<_, Option<u64>>(11)?
                .map(|source| -> rusqlite::Result<RowCounts> {
                    Ok(RowCounts {
                        source,
                        target: r.get(12)?,
                    })
                })
                .transpose()?,
            started_at: r.get::<_, Stamp>(6)?.0,
            finished_at: r.get::<_, Option<Stamp>>(7)?.map(|s| s.0),
            status: r.get::<_, StatusName>(8)?.0,
            error: r.get(9)?,
        })
    })?;
    rows.collect()
}
