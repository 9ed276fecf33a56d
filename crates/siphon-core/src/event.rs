//! The contract of an event target (files, NATS, Kafka): changes published in
//! order, each with an id that is the same on every replay.

use std::fmt;
use std::future::Future;

use crate::{Change, Checkpoint, Op, Phase, Result, Row, TableSchema};

/// What an event sink promises about each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every change is delivered at least once, in order per table: after a
    /// crash the changes since the last checkpoint are published again, with
    /// the ids they had the first time, so a consumer (or a broker's
    /// de-duplication, such as JetStream's `Nats-Msg-Id`) drops the repeats by
    /// id.
    AtLeastOnce,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::AtLeastOnce => f.write_str("at least once, with ids for de-duplication"),
        }
    }
}

/// One change ready to publish, with its stable id.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Identical on every replay of the same change (see [`Event::from_change`]).
    pub id: String,
    pub change: Change,
}

impl Event {
    /// The event of `change`, which reaches `checkpoint`. Its id:
    ///
    /// - a logged change: its [`crate::ChangeId`] (`<transaction position>#<index>`);
    /// - a row copied by a snapshot: `snapshot:<scope>:<table>:<key>`, where the
    ///   scope is the log position the snapshot hands over to (a `cdc` table)
    ///   or `full`, and the key is the row key's values as JSON (the whole row
    ///   for a table without a key). A snapshot resumed after a crash gives the
    ///   same ids; a later snapshot of a `cdc` table starts from another
    ///   position and gives new ones. A `full` table copied again gives its
    ///   unchanged rows the same ids as the last copy: consumers de-duplicate
    ///   a `full` table's rows within one copy (between its `truncate` events);
    /// - a polled row: `poll:<position>:<table>:<key>`, the position being the
    ///   watermark its batch reaches;
    /// - a schema announcement outside a log: `schema:<table>:<hash of the shape>`.
    pub fn from_change(change: Change, checkpoint: &Checkpoint) -> Event {
        if let Some(id) = change.id() {
            return Event {
                id: id.to_string(),
                change,
            };
        }
        let table = change.table.name.key();
        let id = match (&change.op, &checkpoint.phase) {
            (Op::Schema(shape), _) => schema_id(shape),
            (
                op,
                Phase::Snapshot {
                    resume_position, ..
                },
            ) => {
                let scope = resume_position
                    .as_ref()
                    .map_or_else(|| "full".to_string(), |p| p.0.to_string());
                format!("snapshot:{scope}:{table}:{}", op_key(&change.table, op))
            }
            (op, Phase::Streaming { position }) => {
                let at = position
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |p| p.0.to_string());
                format!("poll:{at}:{table}:{}", op_key(&change.table, op))
            }
        };
        Event { id, change }
    }

    /// The announcement of a table's shape when a pipeline prepares it (its
    /// id depends on the shape only, so announcing an unchanged table again
    /// repeats an id).
    pub fn schema(table: &TableSchema) -> Event {
        let shape = std::sync::Arc::new(table.clone());
        Event {
            id: schema_id(&shape),
            change: Change::new(shape.clone(), Op::Schema(shape)),
        }
    }
}

/// `schema:<table>:<xxh3 of the shape's JSON>`.
fn schema_id(table: &TableSchema) -> String {
    let json = serde_json::to_vec(table).unwrap_or_default();
    format!(
        "schema:{}:{:016x}",
        table.name.key(),
        xxhash_rust::xxh3::xxh3_64(&json)
    )
}

/// The JSON of the row key a change addresses (`truncate` for a truncate).
fn op_key(table: &TableSchema, op: &Op) -> String {
    let row: &Row = match op {
        Op::Insert(r) | Op::Delete(r) => r,
        Op::Update { after, .. } => after,
        Op::Truncate => return "truncate".to_string(),
        Op::Schema(_) => return "schema".to_string(),
    };
    let key: Vec<serde_json::Value> = match table.row_key() {
        Some(k) => k.iter().map(|&i| row[i].to_json()).collect(),
        None => row.iter().map(crate::Value::to_json).collect(),
    };
    serde_json::Value::Array(key).to_string()
}

/// Publishes changes to an event destination (a file, a NATS subject, a Kafka
/// topic). The checkpoint lives in the state store, not at the destination:
/// the engine moves it only after [`EventSink::publish`] returned, that is
/// after the destination durably accepted every event of the batch.
///
/// Delivery is at least once ([`Delivery`]): a crash between the
/// destination's acknowledgement and the checkpoint, or during a publish,
/// replays the events since the last checkpoint with the same ids.
///
/// Concurrency, the one rule of [`crate::Sink`]: calls for one table never
/// overlap and come in order; calls for different tables may overlap, and
/// the sink keeps each call's events in order and contiguous.
pub trait EventSink: Send + Sync {
    /// The guarantee this sink gives. Its documentation says how a consumer
    /// uses the ids.
    fn delivery(&self) -> Delivery {
        Delivery::AtLeastOnce
    }

    /// Publishes `events` in order and returns once the destination has
    /// durably accepted all of them (a file: written and fsync'd; a broker:
    /// acknowledged). An error means some, none or all may have been
    /// accepted; the engine then publishes them again from the checkpoint.
    /// An empty list returns at once.
    fn publish(&self, events: Vec<Event>) -> impl Future<Output = Result<()>> + Send;
}
