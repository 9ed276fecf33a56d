//! Where a table stream is: positions and checkpoints.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TableName;

/// A place in a source: an LSN, a binlog coordinate, a polling watermark or the last
/// key a snapshot copied. Opaque JSON that only the connector that made it reads,
/// and that only it can order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub serde_json::Value);

impl Position {
    /// A connector's own position value as a `Position`.
    pub fn encode<T: Serialize>(value: &T) -> crate::Result<Position> {
        serde_json::to_value(value)
            .map(Position)
            .map_err(|e| crate::Error::internal("encoding a position").source(e))
    }

    /// Reads back what [`Position::encode`] made; an error names the table when
    /// the position was written by another connector (or an older siphon).
    pub fn decode<T: serde::de::DeserializeOwned>(&self, table: &TableName) -> crate::Result<T> {
        serde_json::from_value(self.0.clone()).map_err(|e| {
            crate::Error::bad_input(
                "the saved position was not written by this connector; force a full re-sync of the table",
            )
            .table(table)
            .source(e)
        })
    }
}

/// One table inside one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    pub pipeline: String,
    pub table: TableName,
}

impl StreamId {
    pub fn new(pipeline: &str, table: &TableName) -> StreamId {
        StreamId {
            pipeline: pipeline.to_string(),
            table: table.clone(),
        }
    }
}

/// What a table key stored before [`TableName::key`] existed becomes. Such keys
/// were a table's display form (`schema.table`), which two tables can share:
/// `"a"."b.c"` and `"a.b"."c"` both wrote `a.b.c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyKey {
    /// The stored string is the table's key today (no part holds `.` or `"`).
    Kept,
    /// The table's key today; the stored row moves to it.
    Renamed(String),
    /// More than one `.`: any of several tables may have written it, so no table
    /// may resume from it. Its rows go, and the table is copied again.
    Ambiguous,
}

impl LegacyKey {
    /// Classifies `stored`, a table key written by a siphon that keyed tables by
    /// their display form. Only for rows known to be of that form: a key that
    /// [`TableName::key`] wrote may be classified wrongly.
    pub fn of(stored: &str) -> LegacyKey {
        if stored.matches('.').count() > 1 {
            return LegacyKey::Ambiguous;
        }
        let key = TableName::parse(stored).key();
        if key == stored {
            LegacyKey::Kept
        } else {
            LegacyKey::Renamed(key)
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pipeline, self.table)
    }
}

/// The phase a table stream has durably reached on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// A snapshot (full load) is under way. Rows up to `last_key` are on the target;
    /// `None` means the target was prepared (truncated) and no chunk has landed yet.
    /// `resume_position` is where the change stream picks up once the snapshot ends.
    Snapshot {
        last_key: Option<Position>,
        resume_position: Option<Position>,
    },
    /// The snapshot is done; changes up to `position` are on the target. A full
    /// load that finished has no position.
    Streaming { position: Option<Position> },
}

/// The position up to which a table stream's changes are durably on the target.
/// Written in the same target transaction as the data it covers, and never moved
/// backward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub stream: StreamId,
    #[serde(flatten)]
    pub phase: Phase,
}
