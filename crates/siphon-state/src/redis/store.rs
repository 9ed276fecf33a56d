//! [`StateStore`] on Redis: each method is one command, one `MULTI`/`EXEC`
//! block or one Lua script (see [`super::scripts`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use redis::FromRedisValue;
use serde::de::DeserializeOwned;
use siphon_core::{
    Checkpoint, CommitLag, Conflict, ErrorKind, Execution, ExecutionStatus, Flag, Lease,
    PipelineSpec, Result, Side, StateStore, StreamId, StreamState, TableName, TableStats,
};

use super::keys::{parse_switch, switch_text, Keys};
use super::scripts;
use super::RedisStateStore;

/// A timestamp as RFC 3339 text in UTC with nanoseconds: lossless.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The table a stored key names (as the SQLite store reads them).
fn table_of(stored: &str) -> TableName {
    TableName::from_key(stored).unwrap_or_else(|| TableName::parse(stored))
}

impl RedisStateStore {
    /// Runs one command.
    async fn run<T: FromRedisValue>(&self, doing: &str, cmd: &redis::Cmd) -> Result<T> {
        cmd.query_async(&mut self.conn())
            .await
            .map_err(|e| self.fail(doing, e))
    }

    /// Runs commands in one round trip (as one `MULTI`/`EXEC` block when
    /// `pipe` is atomic).
    async fn atomic<T: FromRedisValue>(&self, doing: &str, pipe: &redis::Pipeline) -> Result<T> {
        pipe.query_async(&mut self.conn())
            .await
            .map_err(|e| self.fail(doing, e))
    }

    /// Runs a script.
    async fn script<T: FromRedisValue>(
        &self,
        doing: &str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        inv.invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.fail(doing, e))
    }

    /// Decodes JSON kept in the store; `what` names it when it cannot.
    /// What the hashes of every pipeline in the set `pipelines` hold, one JSON
    /// value per table key (`hash_of(pipeline)` names a pipeline's hash),
    /// ordered by pipeline, then table key; `what` names a value in errors
    /// (`the state` of a stream).
    async fn per_stream<T: DeserializeOwned>(
        &self,
        doing: &str,
        pipelines: String,
        hash_of: impl Fn(&str) -> String,
        what: &str,
    ) -> Result<Vec<(StreamId, T)>> {
        let mut names: Vec<String> = self
            .run(doing, redis::cmd("SMEMBERS").arg(pipelines))
            .await?;
        names.sort();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for p in &names {
            pipe.hgetall(hash_of(p));
        }
        let all: Vec<BTreeMap<String, String>> = self.atomic(doing, &pipe).await?;
        let mut out = Vec::new();
        for (pipeline, tables) in names.iter().zip(all) {
            for (table, json) in tables {
                let stream = StreamId {
                    pipeline: pipeline.clone(),
                    table: table_of(&table),
                };
                let value = self.decode(doing, &format!("{what} of {stream}"), &json)?;
                out.push((stream, value));
            }
        }
        Ok(out)
    }

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

    /// A switch's value read at `key`; an error names the key and the fix.
    fn switch(&self, doing: &str, found: Option<(String, String)>) -> Result<Option<bool>> {
        match found {
            None => Ok(None),
            Some((text, key)) => parse_switch(&text).map(Some).ok_or_else(|| {
                self.fail_with(
                    ErrorKind::Config,
                    doing,
                    format!(
                        "key `{key}` holds `{text}`, which is neither \"true\" nor \"false\": \
                         SET it to \"true\" or \"false\", or DEL it"
                    ),
                )
            }),
        }
    }

    fn flag_script<'s>(
        &self,
        script: &'s redis::Script,
        stream: &StreamId,
        flag: Flag,
    ) -> redis::ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(self.keys.flags(&stream.pipeline));
        for k in self.keys.table_switches(&stream.table, flag) {
            inv.key(k);
        }
        inv.arg(Keys::flag_field(stream, flag));
        inv
    }

    /// An execution from its hash; `None` when there is none.
    fn execution_of(
        &self,
        doing: &str,
        id: u64,
        fields: HashMap<String, String>,
    ) -> Result<Option<Execution>> {
        if fields.is_empty() {
            return Ok(None);
        }
        let time = |name: &str| -> Result<Option<DateTime<Utc>>> {
            match fields.get(name) {
                None => Ok(None),
                Some(t) => DateTime::parse_from_rfc3339(t)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(|e| {
                        self.fail_with(
                            ErrorKind::State,
                            doing,
                            format!("execution {id}: `{name}` is not a timestamp: `{t}`"),
                        )
                        .source(e)
                    }),
            }
        };
        let status = fields.get("status").map(String::as_str).unwrap_or("");
        let status = ExecutionStatus::parse(status).ok_or_else(|| {
            self.fail_with(
                ErrorKind::State,
                doing,
                format!("execution {id}: `{status}` is not an execution status"),
            )
        })?;
        let mut tables = Vec::new();
        for (field, json) in &fields {
            if let Some(table) = field.strip_prefix("table:") {
                let what = format!("table {table} of execution {id}");
                tables.push(self.decode::<TableStats>(doing, &what, json)?);
            }
        }
        tables.sort_by_key(|t| (t.started_at, t.table.key()));
        Ok(Some(Execution {
            id,
            pipeline: fields.get("pipeline").cloned().unwrap_or_default(),
            started_at: time("started_at")?.unwrap_or(DateTime::<Utc>::MIN_UTC),
            finished_at: time("finished_at")?,
            status,
            error: fields.get("error").cloned(),
            retained_log_bytes: fields
                .get("retained_log_bytes")
                .and_then(|b| b.parse().ok()),
            tables,
        }))
    }

    /// Reads the executions of `ids`, in that order, in one round trip.
    async fn executions_by_id(&self, doing: &str, ids: &[u64]) -> Result<Vec<Execution>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.execution(*id));
        }
        let all: Vec<HashMap<String, String>> = self.atomic(doing, &pipe).await?;
        let mut out = Vec::new();
        for (id, fields) in ids.iter().zip(all) {
            // Trimmed between the listing and the read: gone, not an error.
            if let Some(e) = self.execution_of(doing, *id, fields)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Fails as a caller's bug when `changed` says the execution was missing.
    fn require_execution(&self, doing: &str, execution: u64, existed: i64) -> Result<()> {
        if existed == 0 {
            return Err(self.fail_with(
                ErrorKind::Internal,
                doing,
                format!(
                    "there is no execution {execution}; use an id that start_execution returned"
                ),
            ));
        }
        Ok(())
    }

    fn conflict_of(
        &self,
        doing: &str,
        id: u64,
        fields: HashMap<String, String>,
    ) -> Result<Option<Conflict>> {
        if fields.is_empty() {
            return Ok(None);
        }
        let json = |name: &str| -> Result<Option<serde_json::Value>> {
            fields
                .get(name)
                .map(|j| self.decode(doing, &format!("`{name}` of conflict {id}"), j))
                .transpose()
        };
        let time = |name: &str| -> Result<Option<DateTime<Utc>>> {
            fields
                .get(name)
                .map(|t| {
                    DateTime::parse_from_rfc3339(t)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| {
                            self.fail_with(
                                ErrorKind::State,
                                doing,
                                format!("conflict {id}: `{name}` is not a timestamp: `{t}`"),
                            )
                            .source(e)
                        })
                })
                .transpose()
        };
        Ok(Some(Conflict {
            id,
            pipeline: fields.get("pipeline").cloned().unwrap_or_default(),
            table: table_of(fields.get("table").map(String::as_str).unwrap_or("")),
            key: json("key")?.unwrap_or(serde_json::Value::Null),
            source_row: json("source_row")?,
            target_row: json("target_row")?,
            detected_at: time("detected_at")?.unwrap_or(DateTime::<Utc>::MIN_UTC),
            resolved_at: time("resolved_at")?,
            resolution: fields.get("resolution").and_then(|r| Side::parse(r)),
        }))
    }

    fn lease_of(&self, pipeline: &str, holder: &str, granted: Option<(u64, i64)>) -> Option<Lease> {
        granted.map(|(epoch, expires)| Lease {
            pipeline: pipeline.to_string(),
            holder: holder.to_string(),
            epoch,
            expires_at: from_ms(expires),
        })
    }
}

/// Adds `name` and `value` as arguments, or nothing for `None`.
fn pair(args: &mut Vec<String>, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        args.push(name.to_string());
        args.push(v.to_string());
    }
}

impl StateStore for RedisStateStore {
    async fn put_connection(&self, name: &str, url: &str) -> Result<()> {
        let doing = format!("cannot save connection `{name}`");
        self.run(
            &doing,
            redis::cmd("HSET")
                .arg(self.keys.connections())
                .arg(name)
                .arg(url),
        )
        .await
    }

    async fn connections(&self) -> Result<BTreeMap<String, String>> {
        self.run(
            "cannot list connections",
            redis::cmd("HGETALL").arg(self.keys.connections()),
        )
        .await
    }

    async fn remove_connection(&self, name: &str) -> Result<bool> {
        let doing = format!("cannot remove connection `{name}`");
        let n: i64 = self
            .run(
                &doing,
                redis::cmd("HDEL").arg(self.keys.connections()).arg(name),
            )
            .await?;
        Ok(n > 0)
    }

    async fn put_pipeline(&self, name: &str, spec: &PipelineSpec) -> Result<()> {
        let doing = format!("cannot save pipeline `{name}`");
        let json = self.encode(&doing, spec)?;
        self.run(
            &doing,
            redis::cmd("HSET")
                .arg(self.keys.pipelines())
                .arg(name)
                .arg(json),
        )
        .await
    }

    async fn pipelines(&self) -> Result<BTreeMap<String, PipelineSpec>> {
        let doing = "cannot list pipelines";
        let stored: BTreeMap<String, String> = self
            .run(doing, redis::cmd("HGETALL").arg(self.keys.pipelines()))
            .await?;
        stored
            .into_iter()
            .map(|(name, json)| {
                let spec = self.decode(doing, &format!("pipeline `{name}`"), &json)?;
                Ok((name, spec))
            })
            .collect()
    }

    /// Also forgets the pipeline's own switches, stream states and checkpoint
    /// copies, so a pipeline added again under the same name starts afresh;
    /// its executions stay as history, and the operator's table-wide
    /// switches stay for the other pipelines.
    async fn remove_pipeline(&self, name: &str) -> Result<bool> {
        let doing = format!("cannot remove pipeline `{name}`");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.keys.pipelines(), name)
            .del(self.keys.flags(name))
            .ignore()
            .del(self.keys.states(name))
            .ignore()
            .srem(self.keys.state_pipelines(), name)
            .ignore()
            .del(self.keys.checkpoints(name))
            .ignore()
            .del(self.keys.commit_lags(name))
            .ignore()
            .srem(self.keys.lag_pipelines(), name)
            .ignore();
        let (removed,): (i64,) = self.atomic(&doing, &pipe).await?;
        Ok(removed > 0)
    }

    /// The pipeline's own switch when it has one, else the operator's
    /// table-wide key (`{prefix}:enabled:{table}`).
    async fn flag(&self, stream: &StreamId, flag: Flag) -> Result<Option<bool>> {
        let doing = format!("cannot read flag {} of {stream}", flag.as_str());
        let inv = self.flag_script(&scripts::READ_FLAG, stream, flag);
        let found: Option<(String, String)> = self.script(&doing, &inv).await?;
        self.switch(&doing, found)
    }

    /// Sets the pipeline's own switch; the operator's table-wide keys are
    /// left as they are (a pipeline's own switch is read first).
    async fn set_flag(&self, stream: &StreamId, flag: Flag, value: bool) -> Result<()> {
        let doing = format!("cannot set flag {} of {stream}", flag.as_str());
        self.run(
            &doing,
            redis::cmd("HSET")
                .arg(self.keys.flags(&stream.pipeline))
                .arg(Keys::flag_field(stream, flag))
                .arg(switch_text(value)),
        )
        .await
    }

    /// Clears the pipeline's own switch and the operator's table-wide keys of
    /// the table, so that the flag reads as not set.
    async fn clear_flag(&self, stream: &StreamId, flag: Flag) -> Result<()> {
        let doing = format!("cannot clear flag {} of {stream}", flag.as_str());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(
                self.keys.flags(&stream.pipeline),
                Keys::flag_field(stream, flag),
            )
            .ignore();
        for k in self.keys.table_switches(&stream.table, flag) {
            pipe.del(k).ignore();
        }
        self.atomic::<()>(&doing, &pipe).await
    }

    /// One script: the pipeline's own switch, else the operator's table-wide
    /// key, is read and deleted in one step (`redis-cli SET
    /// mssql_sync:force_full_load:Product "true"` is taken by the reload).
    async fn take_flag(&self, stream: &StreamId, flag: Flag) -> Result<bool> {
        let doing = format!("cannot take flag {} of {stream}", flag.as_str());
        let inv = self.flag_script(&scripts::TAKE_FLAG, stream, flag);
        let found: Option<(String, String)> = self.script(&doing, &inv).await?;
        Ok(self.switch(&doing, found)? == Some(true))
    }

    async fn set_stream_state(&self, stream: &StreamId, state: &StreamState) -> Result<()> {
        let doing = format!("cannot save the state of {stream}");
        let json = self.encode(&doing, state)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(self.keys.states(&stream.pipeline), stream.table.key(), json)
            .ignore()
            .sadd(self.keys.state_pipelines(), &stream.pipeline)
            .ignore();
        self.atomic::<()>(&doing, &pipe).await
    }

    /// Ordered by pipeline, then table key.
    async fn stream_states(&self) -> Result<Vec<(StreamId, StreamState)>> {
        self.per_stream(
            "cannot list stream states",
            self.keys.state_pipelines(),
            |p| self.keys.states(p),
            "the state",
        )
        .await
    }

    /// One script compares the checkpoint's epoch with the pipeline's newest
    /// lease epoch and saves it only when it is not older.
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let stream = &checkpoint.stream;
        let doing = format!("cannot save the checkpoint of {stream}");
        let json = self.encode(&doing, checkpoint)?;
        let mut inv = scripts::SAVE_CHECKPOINT.prepare_invoke();
        inv.key(self.keys.checkpoints(&stream.pipeline))
            .key(self.keys.lease_epoch(&stream.pipeline))
            .arg(stream.table.key())
            .arg(json)
            .arg(checkpoint.epoch);
        let newest: u64 = self.script(&doing, &inv).await?;
        if newest > 0 {
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
        let json: Option<String> = self
            .run(
                &doing,
                redis::cmd("HGET")
                    .arg(self.keys.checkpoints(&stream.pipeline))
                    .arg(stream.table.key()),
            )
            .await?;
        json.map(|j| self.decode(&doing, &format!("the checkpoint of {stream}"), &j))
            .transpose()
    }

    async fn remove_checkpoint(&self, stream: &StreamId) -> Result<()> {
        let doing = format!("cannot remove the checkpoint of {stream}");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.keys.checkpoints(&stream.pipeline), stream.table.key())
            .ignore()
            .hdel(self.keys.commit_lags(&stream.pipeline), stream.table.key())
            .ignore();
        self.atomic::<()>(&doing, &pipe).await
    }

    async fn record_commit_lags(&self, lags: &[(StreamId, CommitLag)]) -> Result<()> {
        let doing = "cannot record the replication lag of the streams";
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (stream, lag) in lags {
            let json = self.encode(doing, lag)?;
            pipe.hset(
                self.keys.commit_lags(&stream.pipeline),
                stream.table.key(),
                json,
            )
            .ignore()
            .sadd(self.keys.lag_pipelines(), &stream.pipeline)
            .ignore();
        }
        self.atomic::<()>(doing, &pipe).await
    }

    /// Ordered by pipeline, then table key.
    async fn commit_lags(&self) -> Result<Vec<(StreamId, CommitLag)>> {
        self.per_stream(
            "cannot read the replication lag of the streams",
            self.keys.lag_pipelines(),
            |p| self.keys.commit_lags(p),
            "the replication lag",
        )
        .await
    }

    /// The execution starts `running`, stamped now; ids come from one counter
    /// that every worker shares, so they grow and are never reused.
    async fn start_execution(&self, pipeline: &str) -> Result<u64> {
        let doing = format!("cannot start an execution of pipeline `{pipeline}`");
        let mut inv = scripts::START_EXECUTION.prepare_invoke();
        inv.key(self.keys.execution_id())
            .key(self.keys.executions())
            .key(self.keys.executions_of(pipeline))
            .arg(self.keys.execution_base())
            .arg(pipeline)
            .arg(stamp(Utc::now()))
            .arg(self.kept_executions);
        self.script(&doing, &inv).await
    }

    /// Fails with [`ErrorKind::Internal`] when there is no such execution.
    async fn record_table(&self, execution: u64, stats: &TableStats) -> Result<()> {
        let doing = format!(
            "cannot record table {} of execution {execution}",
            stats.table
        );
        let json = self.encode(&doing, stats)?;
        let mut inv = scripts::UPDATE_IF_EXISTS.prepare_invoke();
        inv.key(self.keys.execution(execution))
            .arg(1)
            .arg(format!("table:{}", stats.table.key()))
            .arg(json);
        let existed: i64 = self.script(&doing, &inv).await?;
        self.require_execution(&doing, execution, existed)
    }

    /// Fails with [`ErrorKind::Internal`] when there is no such execution.
    async fn record_retained_log(&self, execution: u64, bytes: u64) -> Result<()> {
        let doing = format!("cannot record the retained log of execution {execution}");
        let mut inv = scripts::UPDATE_IF_EXISTS.prepare_invoke();
        inv.key(self.keys.execution(execution))
            .arg(1)
            .arg("retained_log_bytes")
            .arg(bytes);
        let existed: i64 = self.script(&doing, &inv).await?;
        self.require_execution(&doing, execution, existed)
    }

    /// Stamps the execution finished now. Fails with [`ErrorKind::Internal`]
    /// when there is no such execution.
    async fn finish_execution(
        &self,
        execution: u64,
        status: ExecutionStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let doing = format!("cannot finish execution {execution}");
        let mut args = vec![
            "finished_at".to_string(),
            stamp(Utc::now()),
            "status".to_string(),
            status.as_str().to_string(),
        ];
        pair(&mut args, "error", error);
        let pairs = args.len() / 2;
        if error.is_none() {
            args.push("error".to_string());
        }
        let mut inv = scripts::UPDATE_IF_EXISTS.prepare_invoke();
        inv.key(self.keys.execution(execution)).arg(pairs).arg(args);
        let existed: i64 = self.script(&doing, &inv).await?;
        self.require_execution(&doing, execution, existed)
    }

    /// Newest first; each execution's tables in the order they started.
    async fn executions(&self, pipeline: Option<&str>, limit: usize) -> Result<Vec<Execution>> {
        let doing = match pipeline {
            Some(p) => format!("cannot list executions of pipeline `{p}`"),
            None => "cannot list executions".to_owned(),
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match pipeline {
            Some(p) => self.keys.executions_of(p),
            None => self.keys.executions(),
        };
        let last = isize::try_from(limit - 1).unwrap_or(isize::MAX);
        let ids: Vec<u64> = self
            .run(&doing, redis::cmd("ZREVRANGE").arg(index).arg(0).arg(last))
            .await?;
        self.executions_by_id(&doing, &ids).await
    }

    async fn execution(&self, id: u64) -> Result<Option<Execution>> {
        let doing = format!("cannot read execution {id}");
        let fields: HashMap<String, String> = self
            .run(&doing, redis::cmd("HGETALL").arg(self.keys.execution(id)))
            .await?;
        self.execution_of(&doing, id, fields)
    }

    /// One script, atomic against other workers.
    async fn prune_executions(
        &self,
        pipeline: &str,
        older_than: Option<DateTime<Utc>>,
        keep_last: Option<u64>,
    ) -> Result<u64> {
        let doing = format!("cannot remove old executions of pipeline `{pipeline}`");
        let mut inv = scripts::PRUNE_EXECUTIONS.prepare_invoke();
        inv.key(self.keys.executions())
            .key(self.keys.executions_of(pipeline))
            .arg(self.keys.execution_base())
            .arg(older_than.map(stamp).unwrap_or_default())
            .arg(keep_last.map_or(-1, |k| i64::try_from(k).unwrap_or(i64::MAX)));
        self.script(&doing, &inv).await
    }

    async fn acquire_lease(
        &self,
        pipeline: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let doing = format!("cannot acquire the lease of pipeline `{pipeline}`");
        let mut inv = scripts::ACQUIRE_LEASE.prepare_invoke();
        inv.key(self.keys.lease(pipeline))
            .key(self.keys.lease_epoch(pipeline))
            .arg(holder)
            .arg(ms(ttl));
        let granted: Option<(u64, i64)> = self.script(&doing, &inv).await?;
        Ok(self.lease_of(pipeline, holder, granted))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let doing = format!("cannot renew the lease of pipeline `{}`", lease.pipeline);
        let mut inv = scripts::RENEW_LEASE.prepare_invoke();
        inv.key(self.keys.lease(&lease.pipeline))
            .key(self.keys.lease_epoch(&lease.pipeline))
            .arg(&lease.holder)
            .arg(lease.epoch)
            .arg(ms(ttl));
        let granted: Option<(u64, i64)> = self.script(&doing, &inv).await?;
        Ok(self.lease_of(&lease.pipeline, &lease.holder, granted))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let doing = format!("cannot release the lease of pipeline `{}`", lease.pipeline);
        let mut inv = scripts::RELEASE_LEASE.prepare_invoke();
        inv.key(self.keys.lease(&lease.pipeline))
            .key(self.keys.lease_epoch(&lease.pipeline))
            .arg(&lease.holder)
            .arg(lease.epoch);
        self.script::<i64>(&doing, &inv).await.map(drop)
    }

    async fn lease(&self, pipeline: &str) -> Result<Option<Lease>> {
        #[derive(serde::Deserialize)]
        struct Live {
            holder: String,
            epoch: f64,
            expires_ms: f64,
        }
        let doing = format!("cannot read the lease of pipeline `{pipeline}`");
        let json: Option<String> = self
            .run(&doing, redis::cmd("GET").arg(self.keys.lease(pipeline)))
            .await?;
        let Some(json) = json else { return Ok(None) };
        let live: Live = self.decode(&doing, &format!("the lease of `{pipeline}`"), &json)?;
        let lease = Lease {
            pipeline: pipeline.to_string(),
            holder: live.holder,
            epoch: live.epoch as u64,
            expires_at: from_ms(live.expires_ms as i64),
        };
        Ok((lease.expires_at > Utc::now()).then_some(lease))
    }

    async fn record_conflict(&self, conflict: &Conflict) -> Result<u64> {
        let doing = format!(
            "cannot record a conflict of pipeline `{}` in table {}",
            conflict.pipeline, conflict.table
        );
        let mut args = vec![
            "pipeline".to_string(),
            conflict.pipeline.clone(),
            "table".to_string(),
            conflict.table.key(),
            "key".to_string(),
            self.encode(&doing, &conflict.key)?,
            "detected_at".to_string(),
            stamp(conflict.detected_at),
        ];
        for (name, row) in [
            ("source_row", &conflict.source_row),
            ("target_row", &conflict.target_row),
        ] {
            if let Some(row) = row {
                args.push(name.to_string());
                args.push(self.encode(&doing, row)?);
            }
        }
        let mut inv = scripts::RECORD_CONFLICT.prepare_invoke();
        inv.key(self.keys.conflict_id())
            .key(self.keys.conflicts())
            .key(self.keys.conflicts_of(&conflict.pipeline))
            .arg(self.keys.conflict_base())
            .arg(args);
        self.script(&doing, &inv).await
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
        let index = match pipeline {
            Some(p) => self.keys.conflicts_of(p),
            None => self.keys.conflicts(),
        };
        let ids: Vec<u64> = self
            .run(&doing, redis::cmd("ZRANGE").arg(index).arg(0).arg(-1))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.conflict(*id));
        }
        let all: Vec<HashMap<String, String>> = self.atomic(&doing, &pipe).await?;
        let mut out = Vec::new();
        for (id, fields) in ids.iter().zip(all) {
            if let Some(c) = self.conflict_of(&doing, *id, fields)? {
                if !(unresolved_only && c.resolved_at.is_some()) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    async fn resolve_conflict(&self, id: u64, keep: Side) -> Result<bool> {
        let doing = format!("cannot resolve conflict {id}");
        let mut inv = scripts::RESOLVE_CONFLICT.prepare_invoke();
        inv.key(self.keys.conflict(id))
            .arg(stamp(Utc::now()))
            .arg(keep.as_str());
        let changed: i64 = self.script(&doing, &inv).await?;
        Ok(changed > 0)
    }
}
