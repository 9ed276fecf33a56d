//! The contract of a state store: catalog, flags, checkpoint copies and history.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Checkpoint, Mode, PipelineSpec, Result, StreamId, TableName};

/// Operator switches on a table stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// The stream runs (`true`) or is paused (`false`).
    Enabled,
    /// The next run reloads the table; cleared when the reload is done.
    ForceFullLoad,
}

impl Flag {
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Enabled => "enabled",
            Flag::ForceFullLoad => "force_full_load",
        }
    }
}

/// Where a table stream is, as shown by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StreamState {
    /// Waiting until enabled.
    Paused,
    /// A snapshot is copying rows.
    Snapshotting { rows: u64 },
    /// Following the source's changes.
    Streaming,
    /// Up to date as of its last run; waiting for the next one.
    Idle,
    /// Stopped by an error. Rows written before kinds were recorded read
    /// with `kind` and `next_retry` empty.
    Failed {
        /// The error, naming the table, the column and the fix.
        error: String,
        /// The error's kind, which decides whether and when it is retried.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<crate::ErrorKind>,
        /// When the engine tries the table again; `None` when it waits for an
        /// operator or is never retried (see [`crate::ErrorKind::action`]).
        #[serde(default)]
        next_retry: Option<DateTime<Utc>>,
        /// Failures in a row so far (1 after the first); the engine retries a
        /// transient failure until this passes the pipeline's `max_retries`.
        /// 0 in rows written before attempts were counted, and after `siphon
        /// sync resync` cleared the count.
        #[serde(default)]
        attempt: u32,
    },
}

impl StreamState {
    /// The state of a table stream stopped by `e` at `now`, after its
    /// `attempt`th failure in a row (counted from 1): its kind, and when the
    /// retry policy tries it again.
    pub fn failed(e: &crate::Error, now: DateTime<Utc>, attempt: u32) -> StreamState {
        let next_retry = match crate::retry_policy(e.kind(), attempt) {
            crate::Retry::After(delay) => {
                Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
            }
            crate::Retry::WaitForOperator | crate::Retry::Never => None,
        };
        StreamState::Failed {
            error: e.to_string(),
            kind: Some(e.kind()),
            next_retry,
            attempt,
        }
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamState::Paused => f.write_str("paused"),
            StreamState::Snapshotting { rows } => write!(f, "snapshotting ({rows} rows)"),
            StreamState::Streaming => f.write_str("streaming"),
            StreamState::Idle => f.write_str("idle"),
            StreamState::Failed {
                error,
                kind: Some(kind),
                next_retry,
                ..
            } => match next_retry {
                Some(at) => write!(
                    f,
                    "failed ({kind}, retried at {}): {error}",
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => write!(f, "failed ({kind}, {}): {error}", kind.action()),
            },
            StreamState::Failed {
                error, kind: None, ..
            } => write!(f, "failed: {error}"),
        }
    }
}

/// How an execution or one of its tables ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    /// Ended early on a stop request (Ctrl-C, SIGTERM): what it committed stays,
    /// with its checkpoint, and the next run goes on from there.
    Stopped,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        match s {
            "running" => Some(ExecutionStatus::Running),
            "succeeded" => Some(ExecutionStatus::Succeeded),
            "failed" => Some(ExecutionStatus::Failed),
            "stopped" => Some(ExecutionStatus::Stopped),
            _ => None,
        }
    }
}

/// What one execution did to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    pub table: TableName,
    pub mode: Mode,
    pub rows_read: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Rows deleted one by one (replicated deletes, rows gone from the source).
    pub deleted: u64,
    /// The bytes of row data the run read from the source: the sum over the
    /// rows it counted in `rows_read` of each value's [`crate::Value::size`]
    /// (text and binary lengths, fixed widths for numbers, dates and times);
    /// for a logged update, its old row image too when the source sent one.
    /// Rows copied on a native path (one engine's own copy format on both
    /// ends) count the length of that encoded data, framing included. Records
    /// written before this was kept read as 0.
    #[serde(default)]
    pub bytes: u64,
    /// Rows of the target's previous copy that a full load replaced: emptied
    /// (`truncate`) or swapped out (`swap`). Not counted in `deleted`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replaced: u64,
    /// `row_count` tables: the exact row counts the pass compared. Equal
    /// counts mean the table was left alone; otherwise it was copied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<RowCounts>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: ExecutionStatus,
    pub error: Option<String>,
}

impl TableStats {
    /// The statistics of a table stream that starts now: nothing counted yet,
    /// `running`.
    pub fn starting(table: &TableName, mode: Mode) -> TableStats {
        TableStats {
            table: table.clone(),
            mode,
            rows_read: 0,
            inserted: 0,
            updated: 0,
            deleted: 0,
            bytes: 0,
            replaced: 0,
            row_counts: None,
            started_at: Utc::now(),
            finished_at: None,
            status: ExecutionStatus::Running,
            error: None,
        }
    }
}

/// What a `row_count` pass found when it counted a table's rows on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    /// The rows of the source table (`SELECT count(*)`).
    pub source: u64,
    /// The rows of the target's complete copy; `None` when the target held
    /// none (a new table, or a copy that was interrupted), so none was counted.
    pub target: Option<u64>,
}

impl RowCounts {
    /// Whether the target's complete copy holds as many rows as the source:
    /// then a `row_count` pass leaves the table alone.
    pub fn equal(&self) -> bool {
        self.target == Some(self.source)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How far behind the source a table stream's target was when it last
/// committed changes read from the source's log (`cdc`): kept with each
/// checkpoint that covers logged changes, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitLag {
    /// When the source committed the newest transaction the checkpoint covers
    /// (PostgreSQL: the commit timestamp of pgoutput's Begin; a binlog: the
    /// transaction's commit timestamp, else its event header's second).
    pub source_commit_at: DateTime<Utc>,
    /// When the target committed it, with the checkpoint.
    pub applied_at: DateTime<Utc>,
}

impl CommitLag {
    /// The replication lag it shows: seconds from the source's commit to the
    /// target's, 0 when the source's clock runs ahead of siphon's.
    pub fn seconds(&self) -> f64 {
        let micros = (self.applied_at - self.source_commit_at)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        micros.max(0) as f64 / 1e6
    }
}

/// One run of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub id: u64,
    pub pipeline: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: ExecutionStatus,
    pub error: Option<String>,
    /// `cdc`: the bytes of log the source kept for the pipeline at the end of the
    /// execution (PostgreSQL: the replication slot's retained WAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_log_bytes: Option<u64>,
    pub tables: Vec<TableStats>,
}

/// The right of one worker to run one pipeline, granted by a state store.
///
/// `epoch` grows with every new holder of the pipeline's lease and is never
/// reused; the checkpoints the holder writes carry it, so that a target refuses
/// a checkpoint from a holder that lost the lease (fencing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub pipeline: String,
    /// Who holds it: `hostname:pid:random` for a `siphon run` process.
    pub holder: String,
    pub epoch: u64,
    /// Until when it holds unless renewed; after that any worker may take it.
    pub expires_at: DateTime<Utc>,
}

/// One side of a two-way (`merge`) pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "source" => Some(Side::Source),
            "target" => Some(Side::Target),
            _ => None,
        }
    }
}

/// A row changed on both sides of a `merge` pipeline since its last run, kept
/// until resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// Assigned by the store; grows with each conflict recorded, never reused.
    pub id: u64,
    pub pipeline: String,
    pub table: TableName,
    /// The row's key, as a JSON object of key column to value.
    pub key: serde_json::Value,
    /// The source's row as JSON; `None` when the source deleted it.
    pub source_row: Option<serde_json::Value>,
    /// The target's row as JSON; `None` when the target deleted it.
    pub target_row: Option<serde_json::Value>,
    pub detected_at: DateTime<Utc>,
    /// When it was resolved; `None` while it waits for a decision.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The side whose row was kept.
    pub resolution: Option<Side>,
}

/// Where siphon keeps its catalog, flags, checkpoint copies and history. Several
/// workers may share one store: every method is a single atomic update or read.
/// The checkpoint that counts is the target's; the copy here is for display and for
/// targets that cannot hold one.
pub trait StateStore: Send + Sync {
    /// Adds or replaces a connection. `url` is kept as written, `${VAR}` unexpanded,
    /// so secrets taken from the environment are never stored.
    fn put_connection(&self, name: &str, url: &str) -> impl Future<Output = Result<()>> + Send;
    fn connections(&self) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send;
    /// Returns whether it existed.
    fn remove_connection(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;

    fn put_pipeline(
        &self,
        name: &str,
        spec: &PipelineSpec,
    ) -> impl Future<Output = Result<()>> + Send;
    fn pipelines(&self) -> impl Future<Output = Result<BTreeMap<String, PipelineSpec>>> + Send;
    /// Returns whether it existed.
    fn remove_pipeline(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;

    /// The flag's value, or `None` when it was never set.
    fn flag(
        &self,
        stream: &StreamId,
        flag: Flag,
    ) -> impl Future<Output = Result<Option<bool>>> + Send;
    fn set_flag(
        &self,
        stream: &StreamId,
        flag: Flag,
        value: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    fn clear_flag(&self, stream: &StreamId, flag: Flag) -> impl Future<Output = Result<()>> + Send;
    /// Reads and clears the flag in one atomic step: `true` when it was set to
    /// `true`. Of several callers racing on one set flag, exactly one gets `true`;
    /// a flag set again afterwards is seen by the next call.
    fn take_flag(&self, stream: &StreamId, flag: Flag)
        -> impl Future<Output = Result<bool>> + Send;

    fn set_stream_state(
        &self,
        stream: &StreamId,
        state: &StreamState,
    ) -> impl Future<Output = Result<()>> + Send;
    fn stream_states(&self) -> impl Future<Output = Result<Vec<(StreamId, StreamState)>>> + Send;

    /// Records a copy of a checkpoint the target committed, or, for an event
    /// target, the checkpoint itself. A checkpoint whose epoch is not 0 and is
    /// older than the pipeline's newest lease epoch is refused (`Fenced`): the
    /// worker that wrote it lost the pipeline to another.
    fn save_checkpoint(&self, checkpoint: &Checkpoint) -> impl Future<Output = Result<()>> + Send;
    fn checkpoint(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Checkpoint>>> + Send;
    fn remove_checkpoint(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send;

    /// Records, for each stream, when the source committed the newest logged
    /// change its checkpoint now covers and when the target committed it, in
    /// one atomic step; replaces what each stream had. Removed with the
    /// stream's checkpoint ([`StateStore::remove_checkpoint`]).
    fn record_commit_lags(
        &self,
        lags: &[(StreamId, CommitLag)],
    ) -> impl Future<Output = Result<()>> + Send;
    /// What [`StateStore::record_commit_lags`] recorded last for each stream.
    fn commit_lags(&self) -> impl Future<Output = Result<Vec<(StreamId, CommitLag)>>> + Send;

    /// Opens an execution of a pipeline and returns its id.
    fn start_execution(&self, pipeline: &str) -> impl Future<Output = Result<u64>> + Send;
    /// Adds or replaces the statistics of one table of an execution.
    fn record_table(
        &self,
        execution: u64,
        stats: &TableStats,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Records how many bytes of log the source keeps for the execution's pipeline.
    fn record_retained_log(
        &self,
        execution: u64,
        bytes: u64,
    ) -> impl Future<Output = Result<()>> + Send;
    fn finish_execution(
        &self,
        execution: u64,
        status: ExecutionStatus,
        error: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The newest executions first, optionally of one pipeline.
    fn executions(
        &self,
        pipeline: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Execution>>> + Send;
    fn execution(&self, id: u64) -> impl Future<Output = Result<Option<Execution>>> + Send;
    /// Removes, with their tables' statistics, the pipeline's executions that
    /// started before `older_than` and those past its newest `keep_last` (by
    /// id); `None` leaves that limit out. Other pipelines' executions are not
    /// touched. Returns how many were removed; a second call with the same
    /// limits removes none.
    fn prune_executions(
        &self,
        pipeline: &str,
        older_than: Option<DateTime<Utc>>,
        keep_last: Option<u64>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Grants `holder` the pipeline's lease for `ttl`, in one atomic step, when
    /// no live lease is held by another: a free or expired lease (or one that was
    /// released) is granted with an epoch greater than every earlier one, and a
    /// live lease `holder` holds already is extended with its epoch unchanged.
    /// `None` when another holder's lease is live (see [`StateStore::lease`]).
    fn acquire_lease(
        &self,
        pipeline: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send;
    /// Extends `lease` to `ttl` from now while the store still holds it for the
    /// same holder and epoch (even past its expiry, as long as nobody took it).
    /// `None` when it was lost: its holder must stop, since another may run the
    /// pipeline now.
    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send;
    /// Gives the lease up, so that another worker gets it at once; nothing when
    /// it is no longer held with `lease`'s holder and epoch. Its epoch is not
    /// reused.
    fn release_lease(&self, lease: &Lease) -> impl Future<Output = Result<()>> + Send;
    /// The pipeline's live lease, for display; `None` when free or expired.
    fn lease(&self, pipeline: &str) -> impl Future<Output = Result<Option<Lease>>> + Send;

    /// Records a conflict, unresolved, and returns its id. The given `id`,
    /// `resolved_at` and `resolution` are ignored.
    fn record_conflict(&self, conflict: &Conflict) -> impl Future<Output = Result<u64>> + Send;
    /// Conflicts oldest first, of one pipeline or all; only those still waiting
    /// for a decision when `unresolved_only`.
    fn conflicts(
        &self,
        pipeline: Option<&str>,
        unresolved_only: bool,
    ) -> impl Future<Output = Result<Vec<Conflict>>> + Send;
    /// Marks a conflict resolved now, keeping `keep`'s row. Returns whether an
    /// unresolved conflict with that id was there: resolving twice, or an
    /// unknown id, changes nothing and returns `false`.
    fn resolve_conflict(&self, id: u64, keep: Side) -> impl Future<Output = Result<bool>> + Send;
}

#[cfg(test)]
mod stream_state_tests {
    use super::*;
    use crate::{Error, ErrorKind};

    #[test]
    fn a_failed_state_records_kind_and_next_retry_and_reads_old_rows() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let refused = StreamState::failed(&Error::bad_input("fix it").table("t"), now, 1);
        assert_eq!(
            refused,
            StreamState::Failed {
                error: "table t: fix it".into(),
                kind: Some(ErrorKind::BadInput),
                next_retry: None,
                attempt: 1,
            }
        );
        assert_eq!(
            refused.to_string(),
            "failed (bad_input, not retried): table t: fix it"
        );
        let json = serde_json::to_string(&refused).unwrap();
        assert_eq!(
            json,
            r#"{"state":"failed","error":"table t: fix it","kind":"bad_input","next_retry":null,"attempt":1}"#
        );
        assert_eq!(serde_json::from_str::<StreamState>(&json).unwrap(), refused);

        let lost = StreamState::failed(&Error::new(ErrorKind::Connection, "reset"), now, 1);
        let StreamState::Failed { next_retry, .. } = &lost else {
            panic!("{lost:?}")
        };
        let at = next_retry.expect("a connection loss is retried");
        assert!(at > now && at <= now + chrono::Duration::seconds(1), "{at}");
        assert!(lost
            .to_string()
            .starts_with("failed (connection, retried at 2026-12-01 10:00:0"));

        let grant = StreamState::failed(&Error::privilege("GRANT SELECT"), now, 1);
        assert_eq!(
            grant.to_string(),
            "failed (privilege, waits for an operator): GRANT SELECT"
        );

        // A row written before kinds were recorded still reads.
        let old: StreamState =
            serde_json::from_str(r#"{"state":"failed","error":"boom"}"#).unwrap();
        assert_eq!(
            old,
            StreamState::Failed {
                error: "boom".into(),
                kind: None,
                next_retry: None,
                attempt: 0,
            }
        );
        assert_eq!(old.to_string(), "failed: boom");
    }

    #[test]
    fn table_stats_recorded_before_bytes_was_kept_read_as_zero() {
        let mut stats = TableStats::starting(&TableName::new(Some("public"), "t"), Mode::Full);
        stats.bytes = 1234;
        let mut json: serde_json::Value = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["bytes"], 1234);
        json.as_object_mut().unwrap().remove("bytes");
        let old: TableStats = serde_json::from_value(json).unwrap();
        assert_eq!(old.bytes, 0);
        assert_eq!(TableStats { bytes: 0, ..stats }, old);
    }
}
