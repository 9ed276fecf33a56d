//! [`StateStore`] on PostgreSQL: each method is one statement or one
//! transaction on the tables of [`super::schema`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use siphon_core::{
    Checkpoint, CommitLag, Conflict, ErrorKind, Execution, ExecutionStatus, Flag, Lease, Phase,
    PipelineSpec, Result, Schedule, Side, StateStore, StreamId, StreamState, TableName, TableStats,
};
use tokio_postgres::Row;

use super::PostgresStateStore;

/// A timestamp as text PostgreSQL reads as `timestamptz` (`$1::text::timestamptz`).
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A `timestamptz` column read as microseconds since the epoch.
fn micros(column: &str) -> String {
    format!("(extract(epoch FROM {column}) * 1000000)::int8")
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The table a stored key names.
fn table_of(stored: &str) -> TableName {
    TableName::from_key(stored).unwrap_or_else(|| TableName::parse(stored))
}

/// The name serde gives a value that serializes as a string (`full`, `source_wins`).
fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

impl PostgresStateStore {
    fn decode<T: DeserializeOwned>(&self, doing: &str, what: &str, json: &str) -> Result<T> {
        serde_json::from_str(json).map_err(|e| {
            self.fail_with(
                ErrorKind::State,
                doing,
                format!("{what} is stored as JSON this siphon cannot read"),
            )
            .source(e)
        })
    }

    fn encode<T: serde::Serialize>(&self, doing: &str, value: &T) -> Result<String> {
        serde_json::to_string(value).map_err(|e| {
            self.fail_with(
                ErrorKind::Internal,
                doing,
                "cannot encode it as JSON".into(),
            )
            .source(e)
        })
    }

    fn missing(&self, doing: &str, execution: u64) -> siphon_core::Error {
        self.fail_with(
            ErrorKind::Internal,
            doing,
            format!("there is no execution {execution}; use an id that start_execution returned"),
        )
    }

    fn execution_row(&self, r: &Row) -> Result<Execution> {
        let status: String = r.get(4);
        let id = r.get::<_, i64>(0).max(0) as u64;
        let status = ExecutionStatus::parse(&status).ok_or_else(|| {
            self.fail_with(
                ErrorKind::State,
                "cannot read executions",
                format!("execution {id}: `{status}` is not an execution status"),
            )
        })?;
        Ok(Execution {
            id,
            pipeline: r.get(1),
            started_at: from_micros(r.get(2)),
            finished_at: r.get::<_, Option<i64>>(3).map(from_micros),
            status,
            error: r.get(5),
            retained_log_bytes: r.get::<_, Option<i64>>(6).map(|n| n.max(0) as u64),
            tables: Vec::new(),
        })
    }

    /// The executions the query selects, with their tables, in one read-only
    /// transaction so that both agree.
    async fn executions_where(
        &self,
        doing: &str,
        filter: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Execution>> {
        let mut client = self.client(doing).await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.fail(doing, e))?;
        let sql = format!(
            "SELECT id, sync_name, {}, {}, status, error_message, retained_log_bytes
             FROM sync_executions {filter}",
            micros("started_at"),
            micros("completed_at")
        );
        let rows = tx
            .query(&sql, params)
            .await
            .map_err(|e| self.fail(doing, e))?;
        let mut executions = rows
            .iter()
            .map(|r| self.execution_row(r))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = executions.iter().map(|e| int(e.id)).collect();
        let tables = tx
            .query(
                "SELECT execution_id, stats::text FROM sync_execution_tables
                 WHERE execution_id = ANY($1) ORDER BY started_at, table_key",
                &[&ids],
            )
            .await
            .map_err(|e| self.fail(doing, e))?;
        tx.commit().await.map_err(|e| self.fail(doing, e))?;
        for r in tables {
            let id = r.get::<_, i64>(0).max(0) as u64;
            let json: String = r.get(1);
            let stats: TableStats =
                self.decode(doing, &format!("a table of execution {id}"), &json)?;
            if let Some(e) = executions.iter_mut().find(|e| e.id == id) {
                e.tables.push(stats);
            }
        }
        Ok(executions)
    }

    fn conflict_row(&self, doing: &str, r: &Row) -> Result<Conflict> {
        let id = r.get::<_, i64>(0).max(0) as u64;
        let json = |i: usize, name: &str| -> Result<Option<serde_json::Value>> {
            r.get::<_, Option<String>>(i)
                .map(|j| self.decode(doing, &format!("`{name}` of conflict {id}"), &j))
                .transpose()
        };
        Ok(Conflict {
            id,
            pipeline: r.get(1),
            table: table_of(&r.get::<_, String>(2)),
            key: json(3, "record_key")?.unwrap_or(serde_json::Value::Null),
            source_row: json(4, "source_data")?,
            target_row: json(5, "target_data")?,
            detected_at: from_micros(r.get(6)),
            resolved_at: r.get::<_, Option<i64>>(7).map(from_micros),
            resolution: r.get::<_, Option<String>>(8).and_then(|s| Side::parse(&s)),
        })
    }
}

impl StateStore for PostgresStateStore {
    async fn put_connection(&self, name: &str, url: &str) -> Result<()> {
        let doing = format!("cannot save connection `{name}`");
        let client = self.client(&doing).await?;
        client
            .execute(
                "INSERT INTO connections (name, url) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET url = excluded.url",
                &[&name, &url],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(())
    }

    async fn connections(&self) -> Result<BTreeMap<String, String>> {
        let doing = "cannot list connections";
        let client = self.client(doing).await?;
        let rows = client
            .query("SELECT name, url FROM connections", &[])
            .await
            .map_err(|e| self.fail(doing, e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn remove_connection(&self, name: &str) -> Result<bool> {
        let doing = format!("cannot remove connection `{name}`");
        let client = self.client(&doing).await?;
        let n = client
            .execute("DELETE FROM connections WHERE name = $1", &[&name])
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(n > 0)
    }

    /// One row of `sync_configurations`: the spec as siphon reads it
    /// (`spec`), and its parts as the original sync service's reports read
    /// them. `target_table` is the selection too: tables keep their names on
    /// the target.
    async fn put_pipeline(&self, name: &str, spec: &PipelineSpec) -> Result<()> {
        let doing = format!("cannot save pipeline `{name}`");
        let json = self.encode(&doing, spec)?;
        let tables = spec.tables.join(", ");
        let target_tables = match &spec.target_schema {
            Some(s) => format!("{tables} (in schema {s})"),
            None => tables.clone(),
        };
        let strategy = name_of(&spec.mode);
        let resolution = spec
            .conflict
            .as_ref()
            .map(|c| name_of(&c.policy))
            .unwrap_or_else(|| "source_wins".to_string());
        let batch = i32::try_from(spec.batch_size).unwrap_or(i32::MAX);
        let interval = match &spec.schedule {
            Schedule::Every(d) => Some(i32::try_from(d.as_secs()).unwrap_or(i32::MAX)),
            _ => None,
        };
        let schedule = name_of(&spec.schedule);
        let client = self.client(&doing).await?;
        client
            .execute(
                "INSERT INTO sync_configurations (name, source_connection, target_connection,
                     source_table, target_table, sync_strategy, conflict_resolution, batch_size,
                     sync_interval_seconds, schedule, spec, enabled)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb, $12)
                 ON CONFLICT (name) DO UPDATE SET source_connection = excluded.source_connection,
                     target_connection = excluded.target_connection,
                     source_table = excluded.source_table, target_table = excluded.target_table,
                     sync_strategy = excluded.sync_strategy,
                     conflict_resolution = excluded.conflict_resolution,
                     batch_size = excluded.batch_size,
                     sync_interval_seconds = excluded.sync_interval_seconds,
                     schedule = excluded.schedule, spec = excluded.spec,
                     enabled = excluded.enabled, updated_at = now()",
                &[
                    &name,
                    &spec.source,
                    &spec.target,
                    &tables,
                    &target_tables,
                    &strategy,
                    &resolution,
                    &batch,
                    &interval,
                    &schedule,
                    &json,
                    &spec.enabled,
                ],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(())
    }

    async fn pipelines(&self) -> Result<BTreeMap<String, PipelineSpec>> {
        let doing = "cannot list pipelines";
        let client = self.client(doing).await?;
        let rows = client
            .query(
                "SELECT name, spec::text, enabled FROM sync_configurations",
                &[],
            )
            .await
            .map_err(|e| self.fail(doing, e))?;
        rows.iter()
            .map(|r| {
                let name: String = r.get(0);
                let json: String = r.get(1);
                let mut spec: PipelineSpec =
                    self.decode(doing, &format!("pipeline `{name}`"), &json)?;
                // The original sync service's switch: `UPDATE sync_configurations
                // SET enabled = false` pauses the pipeline as `sync disable` does.
                spec.enabled = r.get(2);
                Ok((name, spec))
            })
            .collect()
    }

    /// Also forgets the pipeline's switches, stream states and checkpoint
    /// copies, so a pipeline added again under the same name starts afresh;
    /// its executions and conflicts stay as history.
    async fn remove_pipeline(&self, name: &str) -> Result<bool> {
        let doing = format!("cannot remove pipeline `{name}`");
        let mut client = self.client(&doing).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.fail(&doing, e))?;
        let existed = tx
            .execute("DELETE FROM sync_configurations WHERE name = $1", &[&name])
            .await
            .map_err(|e| self.fail(&doing, e))?
            > 0;
        for sql in [
            "DELETE FROM table_flags WHERE pipeline = $1",
            "DELETE FROM stream_states WHERE pipeline = $1",
            "DELETE FROM sync_change_tracking WHERE sync_name = $1",
            "DELETE FROM commit_lags WHERE pipeline = $1",
        ] {
            tx.execute(sql, &[&name])
                .await
                .map_err(|e| self.fail(&doing, e))?;
        }
        tx.commit().await.map_err(|e| self.fail(&doing, e))?;
        Ok(existed)
    }

    async fn flag(&self, stream: &StreamId, flag: Flag) -> Result<Option<bool>> {
        let doing = format!("cannot read flag {} of {stream}", flag.as_str());
        let client = self.client(&doing).await?;
        let row = client
            .query_opt(
                "SELECT value FROM table_flags WHERE pipeline = $1 AND table_key = $2 AND flag = $3",
                &[&stream.pipeline, &stream.table.key(), &flag.as_str()],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_flag(&self, stream: &StreamId, flag: Flag, value: bool) -> Result<()> {
        let doing = format!("cannot set flag {} of {stream}", flag.as_str());
        let client = self.client(&doing).await?;
        client
            .execute(
                "INSERT INTO table_flags (pipeline, table_key, flag, value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (pipeline, table_key, flag) DO UPDATE SET value = excluded.value",
                &[
                    &stream.pipeline,
                    &stream.table.key(),
                    &flag.as_str(),
                    &value,
                ],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(())
    }

    async fn clear_flag(&self, stream: &StreamId, flag: Flag) -> Result<()> {
        let doing = format!("cannot clear flag {} of {stream}", flag.as_str());
        let client = self.client(&doing).await?;
        client
            .execute(
                "DELETE FROM table_flags WHERE pipeline = $1 AND table_key = $2 AND flag = $3",
                &[&stream.pipeline, &stream.table.key(), &flag.as_str()],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(())
    }

    /// One `DELETE … RETURNING` statement, so no two callers see one set flag.
    async fn take_flag(&self, stream: &StreamId, flag: Flag) -> Result<bool> {
        let doing = format!("cannot take flag {} of {stream}", flag.as_str());
        let client = self.client(&doing).await?;
        let row = client
            .query_opt(
                "DELETE FROM table_flags WHERE pipeline = $1 AND table_key = $2 AND flag = $3
                 RETURNING value",
                &[&stream.pipeline, &stream.table.key(), &flag.as_str()],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
    }

    async fn set_stream_state(&self, stream: &StreamId, state: &StreamState) -> Result<()> {
        let doing = format!("cannot save the state of {stream}");
        let json = self.encode(&doing, state)?;
        let client = self.client(&doing).await?;
        client
            .execute(
                "INSERT INTO stream_states (pipeline, table_key, table_name, state)
                 VALUES ($1, $2, $3, $4::text::jsonb)
                 ON CONFLICT (pipeline, table_key)
                 DO UPDATE SET state = excluded.state, updated_at = now()",
                &[
                    &stream.pipeline,
                    &stream.table.key(),
                    &stream.table.to_string(),
                    &json,
                ],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(())
    }

    /// Ordered by pipeline, then table key.
    async fn stream_states(&self) -> Result<Vec<(StreamId, StreamState)>> {
        let doing = "cannot list stream states";
        let client = self.client(doing).await?;
        let rows = client
            .query(
                "SELECT pipeline, table_key, state::text FROM stream_states
                 ORDER BY pipeline, table_key",
                &[],
            )
            .await
            .map_err(|e| self.fail(doing, e))?;
        rows.iter()
            .map(|r| {
                let stream = StreamId {
                    pipeline: r.get(0),
                    table: table_of(&r.get::<_, String>(1)),
                };
                let json: String = r.get(2);
                let state = self.decode(doing, &format!("the state of {stream}"), &json)?;
                Ok((stream, state))
            })
            .collect()
    }

    /// One statement: the pipeline's lease row is share-locked and the
    /// checkpoint written only when its epoch is 0 or not older than the
    /// lease's; otherwise [`ErrorKind::Fenced`].
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let stream = &checkpoint.stream;
        let doing = format!("cannot save the checkpoint of {stream}");
        let json = self.encode(&doing, checkpoint)?;
        let (phase, position) = match &checkpoint.phase {
            Phase::Snapshot { last_key, .. } => ("snapshot", last_key.as_ref()),
            Phase::Streaming { position } => ("streaming", position.as_ref()),
        };
        let position = position.map(|p| self.encode(&doing, &p.0)).transpose()?;
        let epoch = int(checkpoint.epoch);
        let client = self.client(&doing).await?;
        let row = client
            .query_one(
                "WITH newest AS (
                     SELECT epoch FROM leases WHERE pipeline = $1 FOR SHARE
                 ), saved AS (
                     INSERT INTO sync_change_tracking (sync_name, table_key, table_name, phase,
                         last_sync_position, lease_epoch, checkpoint, last_synced_at)
                     SELECT $1, $2, $3, $4, $5::text::jsonb, $6::int8, $7::text::jsonb, now()
                     WHERE $6::int8 = 0 OR NOT EXISTS (SELECT 1 FROM newest WHERE epoch > $6::int8)
                     ON CONFLICT (sync_name, table_key) DO UPDATE SET
                         table_name = excluded.table_name, phase = excluded.phase,
                         last_sync_position = excluded.last_sync_position,
                         lease_epoch = excluded.lease_epoch, checkpoint = excluded.checkpoint,
                         last_synced_at = excluded.last_synced_at
                     RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM saved), (SELECT max(epoch) FROM newest)",
                &[
                    &stream.pipeline,
                    &stream.table.key(),
                    &stream.table.to_string(),
                    &phase,
                    &position,
                    &epoch,
                    &json,
                ],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        if row.get::<_, i64>(0) == 0 {
            let newest = row.get::<_, Option<i64>>(1).unwrap_or_default();
            return Err(self.fail_with(
                ErrorKind::Fenced,
                &doing,
                format!(
                    "the pipeline's lease is at epoch {newest}, and this worker's epoch {} is \
                     older: another worker took the pipeline over, so this one stops",
                    checkpoint.epoch
                ),
            ));
        }
        Ok(())
    }

    async fn checkpoint(&self, stream: &StreamId) -> Result<Option<Checkpoint>> {
        let doing = format!("cannot read the checkpoint of {stream}");
        let client = self.client(&doing).await?;
        let row = client
            .query_opt(
                "SELECT checkpoint::text FROM sync_change_tracking
                 WHERE sync_name = $1 AND table_key = $2",
                &[&stream.pipeline, &stream.table.key()],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        row.map(|r| {
            let json: String = r.get(0);
            self.decode(&doing, &format!("the checkpoint of {stream}"), &json)
        })
        .transpose()
    }

    async fn remove_checkpoint(&self, stream: &StreamId) -> Result<()> {
        let doing = format!("cannot remove the checkpoint of {stream}");
        let mut client = self.client(&doing).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.fail(&doing, e))?;
        for sql in [
            "DELETE FROM sync_change_tracking WHERE sync_name = $1 AND table_key = $2",
            "DELETE FROM commit_lags WHERE pipeline = $1 AND table_key = $2",
        ] {
            tx.execute(sql, &[&stream.pipeline, &stream.table.key()])
                .await
                .map_err(|e| self.fail(&doing, e))?;
        }
        tx.commit().await.map_err(|e| self.fail(&doing, e))
    }

    async fn record_commit_lags(&self, lags: &[(StreamId, CommitLag)]) -> Result<()> {
        self.save_lags(lags).await
    }

    async fn commit_lags(&self) -> Result<Vec<(StreamId, CommitLag)>> {
        self.read_lags().await
    }

    /// The execution starts `running`, stamped now; ids come from one
    /// sequence, so they grow and are never reused.
    async fn start_execution(&self, pipeline: &str) -> Result<u64> {
        let doing = format!("cannot start an execution of pipeline `{pipeline}`");
        let kept = int(self.kept_executions);
        let client = self.client(&doing).await?;
        let id: i64 = client
            .query_one(
                "INSERT INTO sync_executions (sync_configuration_id, sync_name, status, started_at)
                 VALUES ((SELECT id FROM sync_configurations WHERE name = $1), $1, 'running',
                     $2::text::timestamptz)
                 RETURNING id",
                &[&pipeline, &stamp(Utc::now())],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?
            .get(0);
        // History is bounded: executions of the pipeline older than its newest
        // `kept` go, their tables with them.
        client
            .execute(
                "DELETE FROM sync_executions WHERE sync_name = $1 AND id <= (
                     SELECT id FROM sync_executions WHERE sync_name = $1
                     ORDER BY id DESC OFFSET $2 LIMIT 1)",
                &[&pipeline, &kept],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(id.max(0) as u64)
    }

    /// Also sums the execution's rows and bytes over its tables in `sync_executions`.
    /// Fails with [`ErrorKind::Internal`] when there is no such execution.
    async fn record_table(&self, execution: u64, stats: &TableStats) -> Result<()> {
        let doing = format!(
            "cannot record table {} of execution {execution}",
            stats.table
        );
        let json = self.encode(&doing, stats)?;
        let id = int(execution);
        let mut client = self.client(&doing).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.fail(&doing, e))?;
        let found = tx
            .query_opt(
                "SELECT 1 FROM sync_executions WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        if found.is_none() {
            return Err(self.missing(&doing, execution));
        }
        tx.execute(
            "INSERT INTO sync_execution_tables (execution_id, table_key, table_name, sync_strategy,
                 records_processed, records_inserted, records_updated, records_deleted,
                 records_replaced, status, error_message, started_at, completed_at, stats,
                 bytes_processed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::timestamptz,
                 $13::text::timestamptz, $14::text::jsonb, $15)
             ON CONFLICT (execution_id, table_key) DO UPDATE SET
                 table_name = excluded.table_name, sync_strategy = excluded.sync_strategy,
                 records_processed = excluded.records_processed,
                 records_inserted = excluded.records_inserted,
                 records_updated = excluded.records_updated,
                 records_deleted = excluded.records_deleted,
                 records_replaced = excluded.records_replaced, status = excluded.status,
                 error_message = excluded.error_message, started_at = excluded.started_at,
                 completed_at = excluded.completed_at, stats = excluded.stats,
                 bytes_processed = excluded.bytes_processed",
            &[
                &id,
                &stats.table.key(),
                &stats.table.to_string(),
                &stats.mode.to_string(),
                &int(stats.rows_read),
                &int(stats.inserted),
                &int(stats.updated),
                &int(stats.deleted),
                &int(stats.replaced),
                &stats.status.as_str(),
                &stats.error,
                &stamp(stats.started_at),
                &stats.finished_at.map(stamp),
                &json,
                &int(stats.bytes),
            ],
        )
        .await
        .map_err(|e| self.fail(&doing, e))?;
        tx.execute(
            "UPDATE sync_executions e SET records_processed = t.processed,
                 records_inserted = t.inserted, records_updated = t.updated,
                 records_deleted = t.deleted, bytes_processed = t.bytes
             FROM (SELECT coalesce(sum(records_processed), 0)::int8 AS processed,
                          coalesce(sum(bytes_processed), 0)::int8 AS bytes,
                          coalesce(sum(records_inserted), 0)::int8 AS inserted,
                          coalesce(sum(records_updated), 0)::int8 AS updated,
                          coalesce(sum(records_deleted), 0)::int8 AS deleted
                   FROM sync_execution_tables WHERE execution_id = $1) t
             WHERE e.id = $1",
            &[&id],
        )
        .await
        .map_err(|e| self.fail(&doing, e))?;
        tx.commit().await.map_err(|e| self.fail(&doing, e))?;
        Ok(())
    }

    /// Fails with [`ErrorKind::Internal`] when there is no such execution.
    async fn record_retained_log(&self, execution: u64, bytes: u64) -> Result<()> {
        let doing = format!("cannot record the retained log of execution {execution}");
        let client = self.client(&doing).await?;
        let n = client
            .execute(
                "UPDATE sync_executions SET retained_log_bytes = $1 WHERE id = $2",
                &[&int(bytes), &int(execution)],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        if n == 0 {
            return Err(self.missing(&doing, execution));
        }
        Ok(())
    }

    /// Stamps the execution completed now. Fails with
    /// [`ErrorKind::Internal`] when there is no such execution.
    async fn finish_execution(
        &self,
        execution: u64,
        status: ExecutionStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let doing = format!("cannot finish execution {execution}");
        let client = self.client(&doing).await?;
        let n = client
            .execute(
                "UPDATE sync_executions SET completed_at = clock_timestamp(), status = $1,
                     error_message = $2
                 WHERE id = $3",
                &[&status.as_str(), &error, &int(execution)],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        if n == 0 {
            return Err(self.missing(&doing, execution));
        }
        Ok(())
    }

    /// Newest first; each execution's tables in the order they started.
    async fn executions(&self, pipeline: Option<&str>, limit: usize) -> Result<Vec<Execution>> {
        let doing = match pipeline {
            Some(p) => format!("cannot list executions of pipeline `{p}`"),
            None => "cannot list executions".to_owned(),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.executions_where(
            &doing,
            "WHERE ($1::text IS NULL OR sync_name = $1) ORDER BY id DESC LIMIT $2",
            &[&pipeline, &limit],
        )
        .await
    }

    async fn execution(&self, id: u64) -> Result<Option<Execution>> {
        let doing = format!("cannot read execution {id}");
        let found = self
            .executions_where(&doing, "WHERE id = $1", &[&int(id)])
            .await?;
        Ok(found.into_iter().next())
    }

    /// One `INSERT … ON CONFLICT DO UPDATE … WHERE` statement: the lease row
    /// is locked, and taken only when free, expired, or this holder's.
    /// One statement; the tables of removed executions go with them.
    async fn prune_executions(
        &self,
        pipeline: &str,
        older_than: Option<DateTime<Utc>>,
        keep_last: Option<u64>,
    ) -> Result<u64> {
        let doing = format!("cannot remove old executions of pipeline `{pipeline}`");
        let before = older_than.map(stamp);
        let keep = keep_last.map(int);
        let client = self.client(&doing).await?;
        client
            .execute(
                "DELETE FROM sync_executions WHERE sync_name = $1 AND (
                     started_at < $2::text::timestamptz
                     OR id NOT IN (SELECT id FROM sync_executions WHERE sync_name = $1
                                   ORDER BY id DESC LIMIT $3))",
                &[&pipeline, &before, &keep],
            )
            .await
            .map_err(|e| self.fail(&doing, e))
    }

    async fn acquire_lease(
        &self,
        pipeline: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let doing = format!("cannot acquire the lease of pipeline `{pipeline}`");
        let client = self.client(&doing).await?;
        let row = client
            .query_opt(
                &format!(
                    "INSERT INTO leases AS l (pipeline, holder, epoch, expires_at)
                     VALUES ($1, $2, 1, clock_timestamp() + $3::int8 * interval '1 millisecond')
                     ON CONFLICT (pipeline) DO UPDATE SET
                         epoch = CASE WHEN l.holder = excluded.holder
                                       AND l.expires_at > clock_timestamp()
                                      THEN l.epoch ELSE l.epoch + 1 END,
                         holder = excluded.holder,
                         expires_at = excluded.expires_at
                     WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp()
                     RETURNING epoch, {}",
                    micros("expires_at")
                ),
                &[&pipeline, &holder, &ms(ttl)],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(row.map(|r| Lease {
            pipeline: pipeline.to_string(),
            holder: holder.to_string(),
            epoch: r.get::<_, i64>(0).max(0) as u64,
            expires_at: from_micros(r.get(1)),
        }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let doing = format!("cannot renew the lease of pipeline `{}`", lease.pipeline);
        let client = self.client(&doing).await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE leases SET expires_at = clock_timestamp() + $4::int8 * interval '1 millisecond'
                     WHERE pipeline = $1 AND holder = $2 AND epoch = $3
                     RETURNING {}",
                    micros("expires_at")
                ),
                &[&lease.pipeline, &lease.holder, &int(lease.epoch), &ms(ttl)],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(row.map(|r| Lease {
            expires_at: from_micros(r.get(0)),
            ..lease.clone()
        }))
    }

    /// The row stays, without a holder and expired, so that the next
    /// holder's epoch is greater.
    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let doing = format!("cannot release the lease of pipeline `{}`", lease.pipeline);
        let client = self.client(&doing).await?;
        client
            .execute(
                "UPDATE leases SET holder = '', expires_at = clock_timestamp()
                 WHERE pipeline = $1 AND holder = $2 AND epoch = $3",
                &[&lease.pipeline, &lease.holder, &int(lease.epoch)],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(())
    }

    async fn lease(&self, pipeline: &str) -> Result<Option<Lease>> {
        let doing = format!("cannot read the lease of pipeline `{pipeline}`");
        let client = self.client(&doing).await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT holder, epoch, {} FROM leases
                     WHERE pipeline = $1 AND expires_at > clock_timestamp()",
                    micros("expires_at")
                ),
                &[&pipeline],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(row.map(|r| Lease {
            pipeline: pipeline.to_string(),
            holder: r.get(0),
            epoch: r.get::<_, i64>(1).max(0) as u64,
            expires_at: from_micros(r.get(2)),
        }))
    }

    async fn record_conflict(&self, conflict: &Conflict) -> Result<u64> {
        let doing = format!(
            "cannot record a conflict of pipeline `{}` in table {}",
            conflict.pipeline, conflict.table
        );
        let key = self.encode(&doing, &conflict.key)?;
        let source = conflict
            .source_row
            .as_ref()
            .map(|r| self.encode(&doing, r))
            .transpose()?;
        let target = conflict
            .target_row
            .as_ref()
            .map(|r| self.encode(&doing, r))
            .transpose()?;
        let client = self.client(&doing).await?;
        let id: i64 = client
            .query_one(
                "INSERT INTO sync_conflicts (sync_configuration_id, sync_name, table_key,
                     table_name, record_key, source_data, target_data, detected_at)
                 VALUES ((SELECT id FROM sync_configurations WHERE name = $1), $1, $2, $3,
                     $4::text::jsonb, $5::text::jsonb, $6::text::jsonb, $7::text::timestamptz)
                 RETURNING id",
                &[
                    &conflict.pipeline,
                    &conflict.table.key(),
                    &conflict.table.to_string(),
                    &key,
                    &source,
                    &target,
                    &stamp(conflict.detected_at),
                ],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?
            .get(0);
        Ok(id.max(0) as u64)
    }

    async fn conflicts(
        &self,
        pipeline: Option<&str>,
        unresolved_only: bool,
    ) -> Result<Vec<Conflict>> {
        let doing = match pipeline {
            Some(p) => format!("cannot list the conflicts of pipeline `{p}`"),
            None => "cannot list conflicts".to_owned(),
        };
        let client = self.client(&doing).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT id, sync_name, table_key, record_key::text, source_data::text,
                         target_data::text, {}, {}, resolution
                     FROM sync_conflicts
                     WHERE ($1::text IS NULL OR sync_name = $1)
                       AND (NOT $2 OR resolved_at IS NULL)
                     ORDER BY id",
                    micros("detected_at"),
                    micros("resolved_at")
                ),
                &[&pipeline, &unresolved_only],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        rows.iter().map(|r| self.conflict_row(&doing, r)).collect()
    }

    async fn resolve_conflict(&self, id: u64, keep: Side) -> Result<bool> {
        let doing = format!("cannot resolve conflict {id}");
        let client = self.client(&doing).await?;
        let n = client
            .execute(
                "UPDATE sync_conflicts SET resolved_at = clock_timestamp(), resolution = $2,
                     status = 'resolved'
                 WHERE id = $1 AND resolved_at IS NULL",
                &[&int(id), &keep.as_str()],
            )
            .await
            .map_err(|e| self.fail(&doing, e))?;
        Ok(n > 0)
    }
}
