//! The engine's Prometheus metrics, recorded through the `metrics` facade
//! where things happen (a no-op until a process installs a recorder, as
//! `siphon service` does for `/metrics`). The drivers call the small functions
//! here rather than the macros, so that every name and label is spelled once.
//!
//! | metric | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `siphon_rows_applied_total` | counter | pipeline, table, op | rows committed on the target, by operation: `insert`, `update`, `delete` (cdc), `upsert` (incremental polling, and its `delete`s found by key diff), `copy` (full loads and snapshots) |
//! | `siphon_replication_lag_seconds` | gauge | pipeline, table | cdc: seconds from the source's commit of the newest transaction the table's last applied batch held to the target's commit of that batch |
//! | `siphon_batch_apply_duration_seconds` | histogram | pipeline, mode | seconds the target took to apply one batch with its checkpoint (`cdc` log batches, `incremental` polled batches) |
//! | `siphon_errors_total` | counter | pipeline, table, kind | table streams stopped by an error, by its kind (`connection`, `bad_input`, …) |
//! | `siphon_pass_errors_total` | counter | pipeline, kind | passes that failed as a whole (a source or target not reached, a refused config), by kind |
//! | `siphon_snapshot_rows_done` | gauge | pipeline, table | rows a full load or snapshot has copied so far |
//! | `siphon_snapshot_rows_total` | gauge | pipeline, table | rows it copies in all: the source's estimate while it copies, the rows copied once it is complete |
//! | `siphon_source_position` | gauge | pipeline | cdc: the source log position applied last: a PostgreSQL LSN as a number, or the offset in the current MySQL binlog file |
//! | `siphon_source_binlog_file` | gauge | pipeline | cdc from MySQL/MariaDB: the number of the current binlog file (`mysql-bin.000042` → 42) |
//! | `siphon_source_retained_log_bytes` | gauge | pipeline | cdc: bytes of log the source keeps for the pipeline (PostgreSQL: its replication slot's WAL) |

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use siphon_core::{Change, CommitLag, ErrorKind, Position, StreamId};

/// Rows committed on the target, by pipeline, table and operation.
pub const ROWS_APPLIED: &str = "siphon_rows_applied_total";
/// cdc replication lag in seconds, by pipeline and table.
pub const REPLICATION_LAG: &str = "siphon_replication_lag_seconds";
/// Batch apply duration histogram, by pipeline and mode.
pub const BATCH_APPLY_SECONDS: &str = "siphon_batch_apply_duration_seconds";
/// Table streams stopped by an error, by pipeline, table and error kind.
pub const ERRORS: &str = "siphon_errors_total";
/// Passes that failed as a whole (a source or target that cannot be reached, a
/// refused config), by error kind.
pub const PASS_ERRORS: &str = "siphon_pass_errors_total";
/// Rows a load has copied so far, by pipeline and table.
pub const SNAPSHOT_ROWS_DONE: &str = "siphon_snapshot_rows_done";
/// Rows a load copies in all, by pipeline and table.
pub const SNAPSHOT_ROWS_TOTAL: &str = "siphon_snapshot_rows_total";
/// The source log position applied last, by pipeline.
pub const SOURCE_POSITION: &str = "siphon_source_position";
/// The number of the MySQL binlog file of [`SOURCE_POSITION`], by pipeline.
pub const SOURCE_BINLOG_FILE: &str = "siphon_source_binlog_file";
/// Bytes of log the source keeps for a pipeline.
pub const RETAINED_LOG_BYTES: &str = "siphon_source_retained_log_bytes";

/// The operation of rows committed on the target (the `op` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    Insert,
    Update,
    Delete,
    Upsert,
    Copy,
}

impl Applied {
    fn as_str(self) -> &'static str {
        match self {
            Applied::Insert => "insert",
            Applied::Update => "update",
            Applied::Delete => "delete",
            Applied::Upsert => "upsert",
            Applied::Copy => "copy",
        }
    }
}

/// Gives each metric its help text and unit in the installed recorder. Call
/// once after installing a recorder (before, it has nothing to describe to).
pub fn describe_metrics() {
    describe_counter!(ROWS_APPLIED, "Rows committed on the target, by operation");
    describe_gauge!(
        REPLICATION_LAG,
        metrics::Unit::Seconds,
        "cdc: seconds from the source's commit of the last applied transaction to its commit on the target"
    );
    describe_histogram!(
        BATCH_APPLY_SECONDS,
        metrics::Unit::Seconds,
        "Seconds the target took to apply one batch with its checkpoint"
    );
    describe_counter!(ERRORS, "Table streams stopped by an error, by error kind");
    describe_counter!(
        PASS_ERRORS,
        "Pipeline passes that failed as a whole (a server not reached, a refused config), by error kind"
    );
    describe_gauge!(
        SNAPSHOT_ROWS_DONE,
        "Rows a full load or snapshot has copied so far"
    );
    describe_gauge!(
        SNAPSHOT_ROWS_TOTAL,
        "Rows a full load or snapshot copies: the source's estimate, exact once complete"
    );
    describe_gauge!(
        SOURCE_POSITION,
        "cdc: the source log position applied last (PostgreSQL LSN, MySQL binlog offset)"
    );
    describe_gauge!(
        SOURCE_BINLOG_FILE,
        "cdc from MySQL/MariaDB: the number of the binlog file of siphon_source_position"
    );
    describe_gauge!(
        RETAINED_LOG_BYTES,
        metrics::Unit::Bytes,
        "cdc: bytes of log the source keeps for the pipeline (PostgreSQL: the slot's WAL)"
    );
}

/// `rows` rows of `stream` committed on the target as `op`.
pub(crate) fn rows_applied(stream: &StreamId, op: Applied, rows: u64) {
    if rows > 0 {
        counter!(ROWS_APPLIED, "pipeline" => stream.pipeline.clone(),
            "table" => stream.table.to_string(), "op" => op.as_str())
        .increment(rows);
    }
}

/// The rows of a batch of polled rows (`incremental`), counted before it goes
/// to the target: inserts are upserts there, deletes those a key diff found.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Polled {
    upserts: u64,
    updates: u64,
    deletes: u64,
}

impl Polled {
    pub(crate) fn of(batch: &siphon_core::Batch) -> Polled {
        let mut n = Polled::default();
        for c in &batch.changes {
            match c.op {
                siphon_core::Op::Insert(_) => n.upserts += 1,
                siphon_core::Op::Update { .. } => n.updates += 1,
                siphon_core::Op::Delete(_) => n.deletes += 1,
                siphon_core::Op::Truncate | siphon_core::Op::Schema(_) => {}
            }
        }
        n
    }

    /// The target committed the batch, taking `took`.
    pub(crate) fn applied(self, stream: &StreamId, took: Duration) {
        if self.upserts + self.updates + self.deletes == 0 {
            return;
        }
        rows_applied(stream, Applied::Upsert, self.upserts);
        rows_applied(stream, Applied::Update, self.updates);
        rows_applied(stream, Applied::Delete, self.deletes);
        batch_applied(&stream.pipeline, "incremental", took);
    }
}

/// The target applied one batch of `pipeline` in `took`.
pub(crate) fn batch_applied(pipeline: &str, mode: &'static str, took: Duration) {
    histogram!(BATCH_APPLY_SECONDS, "pipeline" => pipeline.to_string(), "mode" => mode)
        .record(took.as_secs_f64());
}

/// A table stream stopped with an error of `kind`.
pub(crate) fn table_failed(stream: &StreamId, kind: ErrorKind) {
    counter!(ERRORS, "pipeline" => stream.pipeline.clone(),
        "table" => stream.table.to_string(), "kind" => kind.to_string())
    .increment(1);
}

/// A pass of `pipeline` failed as a whole with an error of `kind`.
pub fn pass_failed(pipeline: &str, kind: ErrorKind) {
    counter!(PASS_ERRORS, "pipeline" => pipeline.to_string(), "kind" => kind.to_string())
        .increment(1);
}

/// A load of `stream` starts (or resumes having copied `done` rows); the
/// source estimates `total` rows.
pub(crate) fn snapshot_started(stream: &StreamId, total: Option<u64>, done: u64) {
    if let Some(total) = total {
        snapshot_gauge(SNAPSHOT_ROWS_TOTAL, stream).set(total as f64);
    }
    snapshot_done(stream, done);
}

/// A load of `stream` has copied `done` rows so far.
pub(crate) fn snapshot_done(stream: &StreamId, done: u64) {
    snapshot_gauge(SNAPSHOT_ROWS_DONE, stream).set(done as f64);
}

/// A load of `stream` is complete, having copied `done` rows in all: the
/// total is no longer an estimate.
pub(crate) fn snapshot_finished(stream: &StreamId, done: u64) {
    snapshot_gauge(SNAPSHOT_ROWS_TOTAL, stream).set(done as f64);
    snapshot_done(stream, done);
}

fn snapshot_gauge(name: &'static str, stream: &StreamId) -> metrics::Gauge {
    gauge!(name, "pipeline" => stream.pipeline.clone(), "table" => stream.table.to_string())
}

/// The source keeps `bytes` of log for `pipeline`.
pub(crate) fn retained_log(pipeline: &str, bytes: u64) {
    gauge!(RETAINED_LOG_BYTES, "pipeline" => pipeline.to_string()).set(bytes as f64);
}

/// The source log position `pipeline` applied last: `{"lsn": "X/Y"}`
/// (PostgreSQL) as the LSN's number, or `{"file": …, "pos": N}` (a binlog) as
/// the offset and the file's number. Other positions are not shown.
pub(crate) fn source_position(pipeline: &str, position: &Position) {
    let Some((at, file)) = position_number(position) else {
        return;
    };
    gauge!(SOURCE_POSITION, "pipeline" => pipeline.to_string()).set(at as f64);
    if let Some(file) = file {
        gauge!(SOURCE_BINLOG_FILE, "pipeline" => pipeline.to_string()).set(file as f64);
    }
}

/// A position as a number, and for a binlog its file's number.
fn position_number(position: &Position) -> Option<(u64, Option<u64>)> {
    let v = &position.0;
    if let Some(lsn) = v.get("lsn").and_then(|l| l.as_str()) {
        let (hi, lo) = lsn.split_once('/')?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        return Some(((hi << 32) | lo, None));
    }
    let pos = v.get("pos").and_then(|p| p.as_u64())?;
    let file = v.get("file").and_then(|f| f.as_str()).and_then(|f| {
        let digits = f.rsplit('.').next()?;
        digits.parse::<u64>().ok()
    });
    Some((pos, file))
}

/// What a batch of logged changes holds for each table it touches, gathered
/// as its changes are routed: the newest source commit time, for the lag,
/// and the rows by operation, counted once the target committed it.
#[derive(Debug, Default)]
pub(crate) struct Commits {
    tables: HashMap<usize, Logged>,
}

/// One table's part of a batch.
#[derive(Debug, Default)]
struct Logged {
    newest: Option<DateTime<Utc>>,
    inserts: u64,
    updates: u64,
    deletes: u64,
}

impl Commits {
    /// Notes `change`, routed to table `i`. Only logged changes count: rows
    /// of a snapshot chunk that joined the batch are counted as copied
    /// where the chunk is.
    pub(crate) fn note(&mut self, i: usize, change: &Change) {
        let Some(tx) = &change.tx else {
            return;
        };
        let t = self.tables.entry(i).or_default();
        match change.op {
            siphon_core::Op::Insert(_) => t.inserts += 1,
            siphon_core::Op::Update { .. } => t.updates += 1,
            siphon_core::Op::Delete(_) => t.deletes += 1,
            siphon_core::Op::Truncate | siphon_core::Op::Schema(_) => {}
        }
        if let Some(at) = tx.commit_time {
            t.newest = Some(t.newest.map_or(at, |n| n.max(at)));
        }
    }

    /// The target committed the batch at `applied_at`: counts each touched
    /// table's rows, sets its lag gauge, and returns the lags to keep with
    /// the checkpoints, the log's (`log`, of the newest transaction) first.
    /// Empty when the batch carried no commit times.
    pub(crate) fn committed(
        &self,
        log: &StreamId,
        stream_of: impl Fn(usize) -> StreamId,
        applied_at: DateTime<Utc>,
    ) -> Vec<(StreamId, CommitLag)> {
        let mut lags = Vec::with_capacity(self.tables.len() + 1);
        if let Some(newest) = self.tables.values().filter_map(|t| t.newest).max() {
            lags.push((
                log.clone(),
                CommitLag {
                    source_commit_at: newest,
                    applied_at,
                },
            ));
        }
        for (&i, t) in &self.tables {
            let stream = stream_of(i);
            if let Some(at) = t.newest {
                let lag = CommitLag {
                    source_commit_at: at,
                    applied_at,
                };
                gauge!(REPLICATION_LAG, "pipeline" => stream.pipeline.clone(),
                    "table" => stream.table.to_string())
                .set(lag.seconds());
                lags.push((stream.clone(), lag));
            }
            rows_applied(&stream, Applied::Insert, t.inserts);
            rows_applied(&stream, Applied::Update, t.updates);
            rows_applied(&stream, Applied::Delete, t.deletes);
        }
        lags
    }
}

/// How often a drain that has batches queued behind the one it applied
/// writes the commit lags to the state store: each write is a durable one,
/// and the lag there is for display.
const LAG_WRITE_EVERY: Duration = Duration::from_secs(1);

/// The commit lags a drain keeps in the state store: written after a batch
/// when nothing waits behind it (the drain caught up, or ends), otherwise at
/// most every [`LAG_WRITE_EVERY`], so that a busy stream does not double its
/// durable writes per batch.
#[derive(Debug)]
pub(crate) struct LagWrites {
    pending: Vec<(StreamId, CommitLag)>,
    written: std::time::Instant,
}

impl Default for LagWrites {
    fn default() -> LagWrites {
        LagWrites {
            pending: Vec::new(),
            written: std::time::Instant::now(),
        }
    }
}

impl LagWrites {
    /// Adds the lags of a committed batch (replacing those of the same
    /// streams), and writes what is pending when `caught_up` or when the last
    /// write is [`LAG_WRITE_EVERY`] old. A failed write is logged, not fatal.
    pub(crate) async fn add<St: siphon_core::StateStore>(
        &mut self,
        state: &St,
        pipeline: &str,
        lags: Vec<(StreamId, CommitLag)>,
        caught_up: bool,
    ) {
        for (stream, lag) in lags {
            match self.pending.iter_mut().find(|(s, _)| *s == stream) {
                Some(kept) => kept.1 = lag,
                None => self.pending.push((stream, lag)),
            }
        }
        if self.pending.is_empty() || !(caught_up || self.written.elapsed() >= LAG_WRITE_EVERY) {
            return;
        }
        if let Err(e) = state.record_commit_lags(&self.pending).await {
            tracing::warn!(pipeline, error = %e, "could not record the replication lag in the state store");
        }
        self.pending.clear();
        self.written = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_as_numbers() {
        let pg = Position(serde_json::json!({"lsn": "1/16B3748"}));
        assert_eq!(position_number(&pg), Some(((1 << 32) | 0x16B3748, None)));
        let binlog = Position(serde_json::json!({"file": "mysql-bin.000042", "pos": 1234}));
        assert_eq!(position_number(&binlog), Some((1234, Some(42))));
        let gtid = Position(serde_json::json!({"gtid": "0-1-5"}));
        assert_eq!(position_number(&gtid), None);
        assert_eq!(
            position_number(&Position(serde_json::json!({"lsn": "nope"}))),
            None
        );
    }
}
