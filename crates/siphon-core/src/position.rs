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

    /// A log checkpoint's position while the target is inside a source
    /// transaction split over several batches: `self` (the source's position,
    /// before the transaction) wrapped as `{"inside_transaction":
    /// {"resume_from": self, "transaction": tx, "applied_through": index}}`,
    /// with the transaction's position ([`crate::Transaction::position`]) and
    /// the index ([`crate::Change::index`]) of its last change the target
    /// holds. Only the engine writes and reads it; the source is handed
    /// `resume_from` (see [`Position::outside_transaction`]).
    pub fn inside_transaction(&self, tx: &Position, index: u32) -> Position {
        Position(serde_json::json!({
            INSIDE: {
                "resume_from": self.0,
                "transaction": tx.0,
                "applied_through": index,
            }
        }))
    }

    /// Reads back what [`Position::inside_transaction`] made: the source's
    /// position, and the transaction's position and applied index. Any other
    /// position (every one outside a split, and those older versions wrote)
    /// is the source's own, returned as it is.
    pub fn outside_transaction(self) -> (Position, Option<(Position, u32)>) {
        let parts = self.0.get(INSIDE).and_then(|inner| {
            let at = inner.get("resume_from")?;
            let tx = inner.get("transaction")?;
            let index = u32::try_from(inner.get("applied_through")?.as_u64()?).ok()?;
            Some((Position(at.clone()), Position(tx.clone()), index))
        });
        match parts {
            Some((at, tx, index)) => (at, Some((tx, index))),
            None => (self, None),
        }
    }
}

/// The key of a log checkpoint's position that wraps the source's position
/// while the target is inside a split transaction.
const INSIDE: &str = "inside_transaction";

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
///
/// Reads the forms older versions wrote too, which kept the engine's own
/// fields inside the connector's `last_key`: a parallel load's ranges
/// (`{"parallel_ranges": [[after, until, done], …]}`) and a swap load's shadow
/// table (`{"swap_into": [shadow, key]}`) come back as the `ranges` and
/// `shadow` fields of [`Phase::Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case", from = "legacy::PhaseForm")]
pub enum Phase {
    /// A snapshot (full load) is under way. Rows up to `last_key` are on the target;
    /// `None` means the target was prepared (truncated) and no chunk has landed yet,
    /// or, for a load over key ranges, that `ranges` holds the progress.
    /// `resume_position` is where the change stream picks up once the snapshot ends.
    Snapshot {
        last_key: Option<Position>,
        resume_position: Option<Position>,
        /// A load over key ranges by parallel workers: each range's progress.
        /// Empty for a load in one key order (then `last_key` is its progress).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ranges: Vec<KeyRange>,
        /// A load into a shadow table that is swapped in when complete
        /// (`strategy: swap`): the shadow table, which holds the rows up to
        /// `last_key` (or `ranges`). `None` for a load into the table itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shadow: Option<TableName>,
    },
    /// The snapshot is done; changes up to `position` are on the target. A full
    /// load that finished has no position.
    Streaming { position: Option<Position> },
}

impl Phase {
    /// A snapshot in one key order, at `last_key`.
    pub fn snapshot(last_key: Option<Position>, resume_position: Option<Position>) -> Phase {
        Phase::Snapshot {
            last_key,
            resume_position,
            ranges: Vec::new(),
            shadow: None,
        }
    }
}

/// One key range of a snapshot loaded by parallel workers: rows after `after`
/// up to and including `until`. Bounds are the source's own key positions
/// ([`crate::Source::split_keys`] cuts, or the last key copied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// The key of the last row of the range on the target, or where the range
    /// starts (`None`: the table's start) when none is yet.
    pub after: Option<Position>,
    /// The last key the range holds (inclusive); `None`: the table's end.
    pub until: Option<Position>,
    /// Every row of the range is on the target.
    pub done: bool,
}

/// The checkpoint forms older versions wrote, read into today's [`Phase`].
mod legacy {
    use serde::Deserialize;

    use super::{KeyRange, Phase, Position, TableName};

    /// Where a load over key ranges used to keep them inside `last_key`.
    const RANGES: &str = "parallel_ranges";
    /// Where a swap load wraps its shadow table and key inside `last_key`.
    const SWAP: &str = "swap_into";

    #[derive(Deserialize)]
    #[serde(tag = "phase", rename_all = "snake_case")]
    pub(super) enum PhaseForm {
        Snapshot {
            last_key: Option<Position>,
            resume_position: Option<Position>,
            #[serde(default)]
            ranges: Vec<KeyRange>,
            #[serde(default)]
            shadow: Option<TableName>,
        },
        Streaming {
            position: Option<Position>,
        },
    }

    /// `[after, until, done]`, as the ranges were written inside `last_key`.
    type OldRange = (Option<Position>, Option<Position>, bool);

    /// What an old `last_key` held: the shadow table of a swap load, the
    /// connector's key, and the ranges of a parallel load.
    fn unwrap_key(key: Position) -> (Option<TableName>, Option<Position>, Vec<KeyRange>) {
        let mut json = key.0;
        let mut shadow = None;
        if let Some(swap) = json.get(SWAP) {
            if let Ok((table, inner)) =
                serde_json::from_value::<(TableName, Option<serde_json::Value>)>(swap.clone())
            {
                shadow = Some(table);
                match inner {
                    Some(inner) => json = inner,
                    None => return (shadow, None, Vec::new()),
                }
            }
        }
        if let Some(list) = json.get(RANGES) {
            if let Ok(old) = serde_json::from_value::<Vec<OldRange>>(list.clone()) {
                return (shadow, None, ranges(old));
            }
        }
        (shadow, Some(Position(json)), Vec::new())
    }

    fn ranges(old: Vec<OldRange>) -> Vec<KeyRange> {
        old.into_iter()
            .map(|(after, until, done)| KeyRange { after, until, done })
            .collect()
    }

    impl From<PhaseForm> for Phase {
        fn from(form: PhaseForm) -> Phase {
            match form {
                PhaseForm::Snapshot {
                    last_key: Some(key),
                    resume_position,
                    ranges,
                    shadow: None,
                } if ranges.is_empty() => {
                    let (shadow, last_key, ranges) = unwrap_key(key);
                    Phase::Snapshot {
                        last_key,
                        resume_position,
                        ranges,
                        shadow,
                    }
                }
                PhaseForm::Snapshot {
                    last_key,
                    resume_position,
                    ranges,
                    shadow,
                } => Phase::Snapshot {
                    last_key,
                    resume_position,
                    ranges,
                    shadow,
                },
                PhaseForm::Streaming { position } => Phase::Streaming { position },
            }
        }
    }
}

/// The position up to which a table stream's changes are durably on the target.
/// Written in the same target transaction as the data it covers, and never moved
/// backward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub stream: StreamId,
    /// The lease epoch of the worker that wrote it; 0 when written without a
    /// lease (library use). A table sink refuses a write whose epoch is older
    /// than the one its row holds ([`ErrorKind::Fenced`](crate::ErrorKind::Fenced)).
    #[serde(default)]
    pub epoch: u64,
    #[serde(flatten)]
    pub phase: Phase,
}

impl Checkpoint {
    /// A checkpoint of `stream` at `phase`, written without a lease (epoch 0).
    pub fn new(stream: StreamId, phase: Phase) -> Checkpoint {
        Checkpoint {
            stream,
            epoch: 0,
            phase,
        }
    }

    /// The same checkpoint, written by the lease holder of `epoch`.
    pub fn with_epoch(mut self, epoch: u64) -> Checkpoint {
        self.epoch = epoch;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_inside_a_split_transaction_reads_back() {
        let at = Position(serde_json::json!({"lsn": "0/16B3748"}));
        let tx = Position(serde_json::json!({"gtid": "0-1-42"}));
        let wrapped = at.inside_transaction(&tx, 41);
        assert_ne!(wrapped, at);
        let json = serde_json::to_string(&wrapped).unwrap();
        let read: Position = serde_json::from_str(&json).unwrap();
        assert_eq!(read.outside_transaction(), (at.clone(), Some((tx, 41))));
        // Any other position is the source's own.
        assert_eq!(at.clone().outside_transaction(), (at, None));
        let text = Position(serde_json::json!("mysql-bin.000003:4"));
        assert_eq!(text.clone().outside_transaction(), (text, None));
    }

    fn range(after: Option<i64>, until: Option<i64>, done: bool) -> KeyRange {
        let key = |v: i64| Position(serde_json::json!({"key": [{"Int64": v}]}));
        KeyRange {
            after: after.map(key),
            until: until.map(key),
            done,
        }
    }

    #[test]
    fn ranges_are_a_field_of_the_snapshot_phase() {
        let phase = Phase::Snapshot {
            last_key: None,
            resume_position: None,
            ranges: vec![range(Some(5), Some(10), false), range(Some(10), None, true)],
            shadow: Some(TableName::new(Some("public"), "items_shadow")),
        };
        let json = serde_json::to_value(&phase).unwrap();
        assert_eq!(json["shadow"]["name"], "items_shadow", "{json}");
        assert_eq!(json["ranges"][0]["until"]["key"][0]["Int64"], 10, "{json}");
        assert_eq!(json["ranges"][1]["done"], true, "{json}");
        assert_eq!(serde_json::from_value::<Phase>(json).unwrap(), phase);
        // A load in one key order writes no ranges.
        let serial = Phase::snapshot(Some(Position(serde_json::json!({"key": [1]}))), None);
        let json = serde_json::to_value(&serial).unwrap();
        assert!(json.get("ranges").is_none(), "{json}");
        assert!(json.get("shadow").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<Phase>(json).unwrap(), serial);
    }

    #[test]
    fn checkpoints_with_engine_fields_inside_the_key_are_read() {
        let old = r#"{"stream":{"pipeline":"p","table":{"schema":"public","name":"items"}},
            "phase":"snapshot","resume_position":null,
            "last_key":{"parallel_ranges":[[{"key":[{"Int64":5}]},{"key":[{"Int64":10}]},false],
                                           [{"key":[{"Int64":10}]},null,true]]}}"#;
        let cp: Checkpoint = serde_json::from_str(old).unwrap();
        assert_eq!(
            cp.phase,
            Phase::Snapshot {
                last_key: None,
                resume_position: None,
                ranges: vec![range(Some(5), Some(10), false), range(Some(10), None, true)],
                shadow: None,
            }
        );
        // A swap load kept its shadow table around them.
        let old = r#"{"stream":{"pipeline":"p","table":{"schema":"public","name":"items"}},
            "phase":"snapshot","resume_position":null,
            "last_key":{"swap_into":[{"schema":"public","name":"items_shadow"},
                {"parallel_ranges":[[null,{"key":[{"Int64":10}]},true],[{"key":[{"Int64":10}]},null,false]]}]}}"#;
        let cp: Checkpoint = serde_json::from_str(old).unwrap();
        assert_eq!(
            cp.phase,
            Phase::Snapshot {
                last_key: None,
                resume_position: None,
                ranges: vec![range(None, Some(10), true), range(Some(10), None, false)],
                shadow: Some(TableName::new(Some("public"), "items_shadow")),
            }
        );
        // A swap load in one key order, and one before its first chunk.
        let old = r#"{"stream":{"pipeline":"p","table":{"schema":null,"name":"t"}},
            "phase":"snapshot","resume_position":null,
            "last_key":{"swap_into":[{"schema":null,"name":"t_shadow"},{"key":[{"Int64":7}]}]}}"#;
        let cp: Checkpoint = serde_json::from_str(old).unwrap();
        assert_eq!(
            cp.phase,
            Phase::Snapshot {
                last_key: Some(Position(serde_json::json!({"key":[{"Int64":7}]}))),
                resume_position: None,
                ranges: Vec::new(),
                shadow: Some(TableName::new(None, "t_shadow")),
            }
        );
        let old = r#"{"stream":{"pipeline":"p","table":{"schema":null,"name":"t"}},
            "phase":"snapshot","resume_position":null,
            "last_key":{"swap_into":[{"schema":null,"name":"t_shadow"},null]}}"#;
        let cp: Checkpoint = serde_json::from_str(old).unwrap();
        assert_eq!(
            cp.phase,
            Phase::Snapshot {
                last_key: None,
                resume_position: None,
                ranges: Vec::new(),
                shadow: Some(TableName::new(None, "t_shadow")),
            }
        );
        // A serial key is left as it is.
        let serial = r#"{"stream":{"pipeline":"p","table":{"schema":null,"name":"t"}},
            "phase":"snapshot","resume_position":null,"last_key":{"key":[{"Int64":7}]}}"#;
        let cp: Checkpoint = serde_json::from_str(serial).unwrap();
        assert_eq!(
            cp.phase,
            Phase::snapshot(
                Some(Position(serde_json::json!({"key":[{"Int64":7}]}))),
                None
            )
        );
    }
}
