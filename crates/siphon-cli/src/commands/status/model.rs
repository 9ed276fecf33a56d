//! What `siphon status` knows about each pipeline and table, read from the
//! state store alone, and the JSON document `status --json` prints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use siphon_core::{
    Checkpoint, CommitLag, Error, Execution, ExecutionStatus, Flag, Mode, NewTables, Phase,
    PipelineSpec, Result, Source, StateStore, StreamId, StreamState, TableName, TableStats,
};

use crate::config::ConnUrl;

/// Executions read per pipeline: the history every figure is taken from. A
/// continuous pipeline records about one a second, so this reaches back a
/// minute or two there, and much further on timed schedules.
const EXECUTIONS_READ: usize = 100;

/// Executions of each pipeline listed in the document, newest first.
const EXECUTIONS_SHOWN: usize = 10;

/// Runs of each table listed in the document, newest first.
const RUNS_SHOWN: usize = 10;

/// The window of recent runs whose rows make a table's rate.
const RATE_WINDOW: chrono::Duration = chrono::Duration::seconds(60);

/// How long the source may take to estimate a loading table's rows.
const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(3);

/// The document `siphon status --json` prints: one JSON object, the same shape
/// on every run (fields are added, never renamed or removed). Times are RFC 3339
/// in UTC; a field that is not known is `null`.
///
/// ```text
/// {
///   "generated_at": "2026-12-02T06:00:00Z",
///   "pipelines": [{
///     "name": "app_to_replica", "source": "app", "target": "replica",
///     "mode": "cdc", "schedule": "continuous", "enabled": true,
///     "lease": {"holder": "host:4242:ab12", "epoch": 3, "expires_at": "…"} | null,
///     "log_checkpoint": <checkpoint> | null,   // cdc: the pipeline's log position
///     "retained_log_bytes": 1048576 | null,    // cdc: log the source keeps for it
///     "lag": <lag> | null,                     // cdc: of the newest batch the pipeline applied
///     "tables": [{
///       "table": "public.orders", "mode": "cdc",
///       "state": "idle" | "streaming" | "snapshotting" | "paused" | "failed" | "not_run",
///       "enabled": true, "resync_requested": false,
///       "error": {"message": "…", "kind": "bad_input" | null, "next_retry": "…" | null} | null,
///       "snapshot": {"rows_done": 5000, "rows_total": 12000 | null} | null,
///       "rows_per_second": 1234.5 | null,
///       "checkpoint": <checkpoint> | null,
///       "checkpoint_at": "…" | null,
///       "lag": <lag> | null,                   // cdc: of the newest batch that held its changes
///       "last_run": <run> | null,
///       "runs": [<run>, …]                     // newest first, up to 10
///     }],
///     "executions": [{"id": 7, "started_at": "…", "finished_at": "…" | null,
///       "duration_ms": 812 | null, "status": "succeeded", "error": null,
///       "retained_log_bytes": null, "tables": ["public.orders"]}]   // newest first, up to 10
///   }]
/// }
/// <lag> = {"seconds": 0.012, "source_commit_at": "…", "applied_at": "…"}
/// <checkpoint> = {"phase": "snapshot" | "streaming", "position": <connector JSON> | null, "epoch": 3}
/// <run> = {"execution": 7, "mode": "cdc", "status": "running" | "succeeded" | "failed" | "stopped",
///   "error": "…" | null, "started_at": "…", "finished_at": "…" | null, "duration_ms": 812 | null,
///   "rows_read": 10, "bytes": 1040, "inserted": 8, "updated": 2, "deleted": 0, "replaced": 0}
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the state store was read.
    pub generated_at: DateTime<Utc>,
    /// The pipelines asked for (all by default), by name.
    pub pipelines: Vec<PipelineStatus>,
}

/// One pipeline: its catalog entry, its lease, its tables and its recent executions.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub name: String,
    pub source: String,
    pub target: String,
    pub mode: String,
    pub schedule: String,
    /// The pipeline's own switch: `false` while it is paused (`siphon sync
    /// disable NAME`), when no pass of it runs whatever its tables' switches say.
    pub enabled: bool,
    /// The worker running the pipeline now; `None` when none holds a live lease.
    pub lease: Option<LeaseStatus>,
    /// `cdc`: the checkpoint of the pipeline's change log, shared by its tables.
    pub log_checkpoint: Option<CheckpointStatus>,
    /// `cdc`: the bytes of log the source kept for the pipeline at the end of
    /// the newest execution that measured it (PostgreSQL: the slot's WAL).
    pub retained_log_bytes: Option<u64>,
    /// `cdc`: the replication lag of the newest batch the pipeline applied
    /// (of its newest transaction); `None` before its first logged change.
    pub lag: Option<LagStatus>,
    /// The tables that have a state or ran in the executions read, by name.
    pub tables: Vec<TableStatus>,
    /// The newest executions first.
    pub executions: Vec<ExecutionSummary>,
}

/// Who holds a pipeline's lease.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseStatus {
    /// `hostname:pid:random` of the `siphon run` or service process.
    pub holder: String,
    pub epoch: u64,
    pub expires_at: DateTime<Utc>,
}

/// One table stream.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    /// `schema.table`, or `table` where the engine has no schemas.
    pub table: String,
    /// The mode of its newest run, else the one its pipeline gives it.
    pub mode: String,
    /// `idle`, `streaming`, `snapshotting`, `paused`, `failed`, or `not_run`
    /// (an execution lists it but no state was recorded).
    pub state: &'static str,
    /// Its `enabled` flag, or the pipeline's `new_tables` when never set.
    pub enabled: bool,
    /// A reload was asked for (`sync resync`) and is not done yet.
    pub resync_requested: bool,
    /// Set when `state` is `failed`.
    pub error: Option<ErrorStatus>,
    /// Set when `state` is `snapshotting`.
    pub snapshot: Option<SnapshotProgress>,
    /// Rows a second: while loading, the rows copied since the previous read
    /// (`--watch`) or since the load's run started; otherwise the rows its runs
    /// of the last minute read over the time since the first of them started,
    /// or, when none ran in the last minute, its last run's rows over its
    /// duration. `None` when nothing was read.
    pub rows_per_second: Option<f64>,
    /// The copy of its checkpoint kept in the state store.
    pub checkpoint: Option<CheckpointStatus>,
    /// When the checkpoint was last seen to move: with `--watch`, the read at
    /// which it changed; otherwise the end of its newest succeeded run, which
    /// committed its checkpoint as it ended.
    pub checkpoint_at: Option<DateTime<Utc>>,
    /// `cdc`: the replication lag of the newest batch that held changes of
    /// the table; `None` before its first logged change was applied.
    pub lag: Option<LagStatus>,
    /// Its newest run.
    pub last_run: Option<TableRun>,
    /// Its newest runs first, up to 10.
    pub runs: Vec<TableRun>,
}

/// Why a table stream stopped.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorStatus {
    /// The error, naming the table, the column and the fix.
    pub message: String,
    /// The error's kind (`connection`, `bad_input`, …); `None` for states
    /// recorded before kinds were.
    pub kind: Option<String>,
    /// When the engine tries it again; `None` when it waits for an operator.
    pub next_retry: Option<DateTime<Utc>>,
}

/// Replication lag, as kept with a checkpoint ([`CommitLag`]): how long
/// after the source committed a change the target committed it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LagStatus {
    /// Seconds from the source's commit to the target's (0 when the source's
    /// clock is ahead of siphon's).
    pub seconds: f64,
    /// When the source committed the newest change applied.
    pub source_commit_at: DateTime<Utc>,
    /// When the target committed it.
    pub applied_at: DateTime<Utc>,
}

impl From<&CommitLag> for LagStatus {
    fn from(l: &CommitLag) -> LagStatus {
        LagStatus {
            seconds: l.seconds(),
            source_commit_at: l.source_commit_at,
            applied_at: l.applied_at,
        }
    }
}

/// The lag kept for `stream`, if any.
fn lag_of(lags: &[(StreamId, CommitLag)], stream: &StreamId) -> Option<LagStatus> {
    lags.iter()
        .find(|(s, _)| s == stream)
        .map(|(_, l)| LagStatus::from(l))
}

/// How far a load has come.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SnapshotProgress {
    /// Rows copied and committed so far.
    pub rows_done: u64,
    /// The source's estimate of the table's rows, else the rows of the table's
    /// previous complete copy; `None` when neither is known.
    pub rows_total: Option<u64>,
}

impl SnapshotProgress {
    /// The share done, from 0 to 1, when the total is known.
    pub fn ratio(&self) -> Option<f64> {
        self.rows_total
            .filter(|&t| t > 0)
            .map(|t| (self.rows_done as f64 / t as f64).min(1.0))
    }
}

/// A checkpoint as shown: its phase and its connector's position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointStatus {
    /// `snapshot` while a load is under way, `streaming` after.
    pub phase: &'static str,
    /// The connector's position (an LSN, a binlog file and offset, a cursor
    /// value); in a snapshot, the last key copied.
    pub position: Option<serde_json::Value>,
    /// The lease epoch of the worker that wrote it.
    pub epoch: u64,
}

impl From<&Checkpoint> for CheckpointStatus {
    fn from(cp: &Checkpoint) -> CheckpointStatus {
        let (phase, position) = match &cp.phase {
            Phase::Snapshot { last_key, .. } => ("snapshot", last_key.as_ref()),
            Phase::Streaming { position } => ("streaming", position.as_ref()),
        };
        CheckpointStatus {
            phase,
            position: position.map(|p| p.0.clone()),
            epoch: cp.epoch,
        }
    }
}

/// One run of one table: what one execution did to it.
#[derive(Debug, Clone, Serialize)]
pub struct TableRun {
    /// The execution's id.
    pub execution: u64,
    pub mode: String,
    /// `running`, `succeeded`, `failed` or `stopped`.
    pub status: &'static str,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub rows_read: u64,
    /// Bytes of row data read from the source (see `TableStats::bytes`).
    pub bytes: u64,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Rows of the target's previous copy a full load replaced.
    pub replaced: u64,
}

impl TableRun {
    fn new(execution: u64, t: &TableStats) -> TableRun {
        TableRun {
            execution,
            mode: t.mode.to_string(),
            status: t.status.as_str(),
            error: t.error.clone(),
            started_at: t.started_at,
            finished_at: t.finished_at,
            duration_ms: duration_ms(t.started_at, t.finished_at),
            rows_read: t.rows_read,
            bytes: t.bytes,
            inserted: t.inserted,
            updated: t.updated,
            deleted: t.deleted,
            replaced: t.replaced,
        }
    }
}

/// One execution (a pass over a pipeline's tables).
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionSummary {
    pub id: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    /// `running`, `succeeded`, `failed` or `stopped`.
    pub status: &'static str,
    pub error: Option<String>,
    pub retained_log_bytes: Option<u64>,
    /// The tables it ran.
    pub tables: Vec<String>,
}

fn duration_ms(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Option<u64> {
    end.map(|e| (e - start).num_milliseconds().max(0) as u64)
}

/// What one `status` keeps from one read of the store to the next (`--watch`):
/// row estimates asked of sources, and what it saw of each stream.
#[derive(Debug, Default)]
pub struct Memory {
    /// Row estimates of loading tables by pipeline and table, asked of their
    /// source once (a failure too, so a source that is down slows one read only).
    estimates: HashMap<(String, String), Option<u64>>,
    /// Rows a load had copied at the previous read, and when.
    loaded: HashMap<StreamId, (u64, DateTime<Utc>)>,
    /// Each stream's checkpoint at the previous read, and since when it was there.
    checkpoints: HashMap<StreamId, (CheckpointStatus, Option<DateTime<Utc>>)>,
}

/// Reads the state store into a report of `wanted` pipelines (every pipeline
/// when empty). An unknown name is a `Config` error naming it.
pub async fn read<St: StateStore>(
    state: &St,
    wanted: &[String],
    memory: &mut Memory,
) -> Result<Report> {
    let mut pipelines = state.pipelines().await?;
    if !wanted.is_empty() {
        for name in wanted {
            if !pipelines.contains_key(name) {
                return Err(Error::config(format!(
                    "status: no pipeline `{name}`; `siphon sync list` lists the stored ones"
                )));
            }
        }
        pipelines.retain(|name, _| wanted.contains(name));
    }
    let states = state.stream_states().await?;
    let lags = state.commit_lags().await?;
    let now = Utc::now();
    let mut report = Report {
        generated_at: now,
        pipelines: Vec::new(),
    };
    let mut connections = None;
    for (name, spec) in pipelines {
        let executions = state.executions(Some(&name), EXECUTIONS_READ).await?;
        let seen = Seen {
            states: &states,
            lags: &lags,
            executions: &executions,
        };
        let mut status = pipeline(state, &name, &spec, seen, now, memory).await?;
        let loading: Vec<usize> = status
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.snapshot.is_some())
            .map(|(i, _)| i)
            .collect();
        if !loading.is_empty() {
            if connections.is_none() {
                connections = Some(state.connections().await?);
            }
            let connections = connections.as_ref().expect("read above");
            for i in loading {
                let t = &mut status.tables[i];
                let total = estimate(connections, &name, &spec, &t.table, memory).await;
                let snapshot = t.snapshot.as_mut().expect("loading");
                snapshot.rows_total = total.or(snapshot.rows_total);
            }
        }
        report.pipelines.push(status);
    }
    Ok(report)
}

/// What one read found in the store, for every pipeline.
#[derive(Debug, Clone, Copy)]
struct Seen<'a> {
    states: &'a [(StreamId, StreamState)],
    lags: &'a [(StreamId, CommitLag)],
    /// The pipeline's executions, newest first.
    executions: &'a [Execution],
}

async fn pipeline<St: StateStore>(
    state: &St,
    name: &str,
    spec: &PipelineSpec,
    seen: Seen<'_>,
    now: DateTime<Utc>,
    memory: &mut Memory,
) -> Result<PipelineStatus> {
    let Seen {
        states,
        lags,
        executions,
    } = seen;
    let lease = state.lease(name).await?.map(|l| LeaseStatus {
        holder: l.holder,
        epoch: l.epoch,
        expires_at: l.expires_at,
    });
    let log = siphon_engine::log_stream(name);
    let log_checkpoint = state
        .checkpoint(&log)
        .await?
        .map(|cp| CheckpointStatus::from(&cp));
    let lag = lag_of(lags, &log);
    let retained_log_bytes = executions.iter().find_map(|e| e.retained_log_bytes);

    // Every table with a state, and every table a recent execution ran.
    let mut names: BTreeSet<TableName> = states
        .iter()
        .filter(|(s, _)| s.pipeline == name && s.table.name != "*")
        .map(|(s, _)| s.table.clone())
        .collect();
    let mut runs: BTreeMap<TableName, Vec<(u64, &TableStats)>> = BTreeMap::new();
    for e in executions {
        for t in &e.tables {
            names.insert(t.table.clone());
            runs.entry(t.table.clone()).or_default().push((e.id, t));
        }
    }
    let mut tables = Vec::new();
    for table in names {
        let stream = StreamId::new(name, &table);
        let stored = states
            .iter()
            .find(|(s, _)| *s == stream)
            .map(|(_, st)| st.clone());
        let table_runs = runs.remove(&table).unwrap_or_default();
        let lag = lag_of(lags, &stream);
        let mut status =
            table_status(state, spec, stream, stored, &table_runs, now, memory).await?;
        status.lag = lag;
        tables.push(status);
    }
    Ok(PipelineStatus {
        name: name.to_string(),
        source: spec.source.clone(),
        target: spec.target.clone(),
        mode: spec.mode.to_string(),
        schedule: spec.schedule.to_string(),
        enabled: spec.enabled,
        lease,
        log_checkpoint,
        retained_log_bytes,
        lag,
        tables,
        executions: executions
            .iter()
            .take(EXECUTIONS_SHOWN)
            .map(|e| ExecutionSummary {
                id: e.id,
                started_at: e.started_at,
                finished_at: e.finished_at,
                duration_ms: duration_ms(e.started_at, e.finished_at),
                status: e.status.as_str(),
                error: e.error.clone(),
                retained_log_bytes: e.retained_log_bytes,
                tables: e.tables.iter().map(|t| t.table.to_string()).collect(),
            })
            .collect(),
    })
}

/// One table's status; `runs` are its runs, newest first.
async fn table_status<St: StateStore>(
    state: &St,
    spec: &PipelineSpec,
    stream: StreamId,
    stored: Option<StreamState>,
    runs: &[(u64, &TableStats)],
    now: DateTime<Utc>,
    memory: &mut Memory,
) -> Result<TableStatus> {
    let enabled = match state.flag(&stream, Flag::Enabled).await? {
        Some(v) => v,
        None => spec.new_tables == NewTables::Enabled,
    };
    let resync_requested = state.flag(&stream, Flag::ForceFullLoad).await? == Some(true);
    let (label, error, snapshot) = match &stored {
        None => ("not_run", None, None),
        Some(StreamState::Idle) => ("idle", None, None),
        Some(StreamState::Streaming) => ("streaming", None, None),
        Some(StreamState::Paused) => ("paused", None, None),
        Some(StreamState::Snapshotting { rows }) => (
            "snapshotting",
            None,
            Some(SnapshotProgress {
                rows_done: *rows,
                rows_total: previous_copy(runs),
            }),
        ),
        Some(StreamState::Failed {
            error,
            kind,
            next_retry,
            ..
        }) => (
            "failed",
            Some(ErrorStatus {
                message: error.clone(),
                kind: kind.map(|k| k.to_string()),
                next_retry: *next_retry,
            }),
            None,
        ),
    };
    let rows_per_second = match snapshot {
        Some(s) => load_rate(&stream, s.rows_done, runs, now, memory),
        None => {
            memory.loaded.remove(&stream);
            history_rate(runs, now)
        }
    };
    let checkpoint = state
        .checkpoint(&stream)
        .await?
        .map(|cp| CheckpointStatus::from(&cp));
    let checkpoint_at = checkpoint_at(&stream, checkpoint.as_ref(), runs, now, memory);
    let mode = runs
        .first()
        .map(|(_, t)| t.mode)
        .unwrap_or_else(|| spec.table_config(&stream.table).mode.unwrap_or(spec.mode));
    let runs: Vec<TableRun> = runs
        .iter()
        .take(RUNS_SHOWN)
        .map(|(id, t)| TableRun::new(*id, t))
        .collect();
    Ok(TableStatus {
        table: stream.table.to_string(),
        mode: mode_name(mode),
        state: label,
        enabled,
        resync_requested,
        error,
        snapshot,
        rows_per_second,
        checkpoint,
        checkpoint_at,
        lag: None,
        last_run: runs.first().cloned(),
        runs,
    })
}

fn mode_name(mode: Mode) -> String {
    mode.to_string()
}

/// The rows of the table's newest complete copy: what a reload will likely copy.
fn previous_copy(runs: &[(u64, &TableStats)]) -> Option<u64> {
    runs.iter()
        .find(|(_, t)| {
            t.status == ExecutionStatus::Succeeded
                && matches!(t.mode, Mode::Full | Mode::Cdc)
                && t.rows_read > 0
        })
        .map(|(_, t)| t.rows_read)
}

/// A load's rate: since the previous read when there was one, else since its
/// run started.
fn load_rate(
    stream: &StreamId,
    rows: u64,
    runs: &[(u64, &TableStats)],
    now: DateTime<Utc>,
    memory: &mut Memory,
) -> Option<f64> {
    let before = memory.loaded.insert(stream.clone(), (rows, now));
    if let Some((was, at)) = before {
        let secs = (now - at).num_milliseconds() as f64 / 1000.0;
        if rows >= was && secs > 0.0 {
            return Some((rows - was) as f64 / secs);
        }
    }
    let started = runs
        .iter()
        .find(|(_, t)| t.status == ExecutionStatus::Running)
        .map(|(_, t)| t.started_at)?;
    let secs = (now - started).num_milliseconds() as f64 / 1000.0;
    (secs > 0.0).then(|| rows as f64 / secs)
}

/// A table's rate from its finished runs (see [`TableStatus::rows_per_second`]).
fn history_rate(runs: &[(u64, &TableStats)], now: DateTime<Utc>) -> Option<f64> {
    let recent: Vec<&TableStats> = runs
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| t.finished_at.is_some_and(|f| now - f <= RATE_WINDOW))
        .collect();
    if let Some(first) = recent.iter().map(|t| t.started_at).min() {
        let rows: u64 = recent.iter().map(|t| t.rows_read).sum();
        let secs = (now - first).num_milliseconds() as f64 / 1000.0;
        return Some(if secs > 0.0 { rows as f64 / secs } else { 0.0 });
    }
    let last = runs
        .iter()
        .map(|(_, t)| *t)
        .find(|t| t.finished_at.is_some())?;
    let ms = duration_ms(last.started_at, last.finished_at)?;
    (last.rows_read > 0 && ms > 0).then(|| last.rows_read as f64 * 1000.0 / ms as f64)
}

/// See [`TableStatus::checkpoint_at`].
fn checkpoint_at(
    stream: &StreamId,
    now_at: Option<&CheckpointStatus>,
    runs: &[(u64, &TableStats)],
    now: DateTime<Utc>,
    memory: &mut Memory,
) -> Option<DateTime<Utc>> {
    let Some(cp) = now_at else {
        memory.checkpoints.remove(stream);
        return None;
    };
    let at = match memory.checkpoints.get(stream) {
        Some((seen, at)) if seen == cp => *at,
        Some(_) => Some(now),
        None => runs
            .iter()
            .find(|(_, t)| t.status == ExecutionStatus::Succeeded)
            .and_then(|(_, t)| t.finished_at),
    };
    memory.checkpoints.insert(stream.clone(), (cp.clone(), at));
    at
}

/// The source's row estimate of a loading table, asked once per `status` (a
/// source that cannot be reached in a few seconds gives none).
async fn estimate(
    connections: &BTreeMap<String, String>,
    pipeline: &str,
    spec: &PipelineSpec,
    table: &str,
    memory: &mut Memory,
) -> Option<u64> {
    let key = (pipeline.to_string(), table.to_string());
    if let Some(known) = memory.estimates.get(&key) {
        return *known;
    }
    let total = ask_estimate(connections, pipeline, spec, table).await;
    memory.estimates.insert(key, total);
    total
}

async fn ask_estimate(
    connections: &BTreeMap<String, String>,
    pipeline: &str,
    spec: &PipelineSpec,
    table: &str,
) -> Option<u64> {
    let written = connections.get(&spec.source)?;
    let url = ConnUrl::parse(&format!("connections.{}", spec.source), written).ok()?;
    let asked = async {
        let source = crate::connect::open_source(&spec.source, &url).await?;
        let tables = source.discover(&spec.filter()).await?;
        match tables.iter().find(|t| t.name.to_string() == table) {
            Some(t) => source.estimate_rows(t).await,
            None => Ok(None),
        }
    };
    match tokio::time::timeout(ESTIMATE_TIMEOUT, asked).await {
        Ok(Ok(total)) => total,
        Ok(Err(e)) => {
            tracing::debug!(pipeline, table, error = %e, "no row estimate from the source");
            None
        }
        Err(_) => {
            tracing::debug!(
                pipeline,
                table,
                "the source did not estimate the rows in time"
            );
            None
        }
    }
}
