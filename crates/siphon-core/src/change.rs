//! Changes, batches and what applying them did.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::{Position, TableSchema, Value};

/// A row's values in the order of its table's columns.
pub type Row = Vec<Value>;

/// The values of `row` at the columns `key`, as bytes to compare or hash keys
/// by: two keys' bytes are equal exactly when their values are. Integers (the
/// usual key) are a tag byte and their bytes, with no allocation beyond the
/// key's own; other values their JSON form, length-prefixed so that the values
/// of a key of several columns never run together.
pub fn key_bytes(row: &Row, key: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 * key.len());
    for &i in key {
        match &row[i] {
            Value::Int64(n) => {
                out.push(1);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Int32(n) => {
                out.push(2);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Int16(n) => {
                out.push(3);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Null => out.push(4),
            other => {
                let json = serde_json::to_vec(other).unwrap_or_default();
                out.push(0);
                out.extend_from_slice(&(json.len() as u64).to_le_bytes());
                out.extend_from_slice(&json);
            }
        }
    }
    out
}

/// What happened to one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Insert(Row),
    /// `before` is the old row where the source knows it (a log with full images).
    Update {
        before: Option<Row>,
        after: Row,
    },
    /// The deleted row; only its key columns are guaranteed to be set.
    Delete(Row),
    Truncate,
    /// The table's shape changed; rows after this change use the new schema.
    Schema(Arc<TableSchema>),
}

impl Op {
    /// The bytes of the row images this change carries, as
    /// [`Value::row_size`] counts them: an update counts its old row (when the
    /// source sent it) and its new one; a truncate or schema change counts 0.
    pub fn size(&self) -> u64 {
        match self {
            Op::Insert(row) | Op::Delete(row) => Value::row_size(row),
            Op::Update { before, after } => {
                before.as_deref().map_or(0, Value::row_size) + Value::row_size(after)
            }
            Op::Truncate | Op::Schema(_) => 0,
        }
    }
}

/// The source transaction a logged change belongs to: the same on every replay
/// of the log, whatever batches the engine grouped transactions into.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    /// Where the transaction commits in the source's log, in the connector's own
    /// form (PostgreSQL: the commit record's LSN; a binlog: the GTID or the
    /// file and position of its end). Unique per transaction of one source.
    pub position: Position,
    /// When the source committed it, where the log says.
    pub commit_time: Option<DateTime<Utc>>,
    /// Who made it when not a local client of the source: a replication origin
    /// (PostgreSQL `pg_replication_origin` name, a MySQL server id). Merge uses
    /// it to skip changes siphon itself wrote.
    pub origin: Option<String>,
}

/// One change to one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: Arc<TableSchema>,
    pub op: Op,
    /// The source transaction, for changes read from a log; `None` for rows
    /// read by a snapshot or by polling, and for [`Op::Schema`] changes a
    /// connector announces when it finds a table's shape changed (they are not
    /// logged changes, and a replay may announce them at another place or not
    /// at all).
    pub tx: Option<Arc<Transaction>>,
    /// The change's index in its transaction: unique in it, increasing in log
    /// order from 0, and the same on every replay (a transaction split over
    /// batches keeps counting). A connector may leave gaps, so that a change
    /// keeps its index whichever of the pipeline's tables a stream reads
    /// (PostgreSQL: changes of tables the stream was not opened for, and the
    /// second index an update with its old row reserves for a key change).
    pub index: u32,
}

impl Change {
    /// A change outside any logged transaction (snapshot rows, polled rows).
    pub fn new(table: Arc<TableSchema>, op: Op) -> Change {
        Change {
            table,
            op,
            tx: None,
            index: 0,
        }
    }

    /// The change's id, identical on every replay: its transaction's position
    /// and its index in it. `None` outside a logged transaction.
    pub fn id(&self) -> Option<ChangeId> {
        self.tx.as_ref().map(|tx| ChangeId {
            transaction: tx.position.clone(),
            index: self.index,
        })
    }
}

/// The id of a logged change: its source transaction's position and its index in
/// that transaction. Displayed as the position's compact JSON, `#` and the index
/// (`"0/16B3748"#3`), which is what event sinks publish as a de-duplication id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeId {
    pub transaction: Position,
    pub index: u32,
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.transaction.0, self.index)
    }
}

/// Changes that end on a committed source transaction boundary, applied to a target
/// as one target transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub changes: Vec<Change>,
}

/// What applying a batch or loading a chunk did on the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub inserted: u64,
    pub updated: u64,
    /// Rows deleted one by one (by key, or one matching row).
    pub deleted: u64,
    /// Rows removed by emptying a table (`Op::Truncate`), apart from `deleted`.
    pub emptied: u64,
}

impl std::ops::AddAssign for ApplyStats {
    fn add_assign(&mut self, o: ApplyStats) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.emptied += o.emptied;
    }
}

#[cfg(test)]
mod tests {
    use super::key_bytes;
    use crate::Value;

    #[test]
    fn keys_are_equal_exactly_when_their_values_are() {
        let rows = [
            vec![Value::Int64(1), Value::Text("a".into())],
            vec![Value::Int64(1), Value::Text("b".into())],
            vec![Value::Int64(256), Value::Text("a".into())],
            vec![Value::Int32(1), Value::Text("a".into())],
            vec![Value::Null, Value::Text("a".into())],
            vec![Value::Int64(-1), Value::Text("a".into())],
            vec![Value::Text("1".into()), Value::Text("a".into())],
            vec![Value::Text("ab".into()), Value::Text("".into())],
            vec![Value::Text("a".into()), Value::Text("b".into())],
        ];
        for (i, a) in rows.iter().enumerate() {
            for (j, b) in rows.iter().enumerate() {
                assert_eq!(
                    key_bytes(a, &[0, 1]) == key_bytes(b, &[0, 1]),
                    i == j,
                    "{a:?} vs {b:?}"
                );
            }
            assert_eq!(key_bytes(a, &[0, 1]), key_bytes(&a.clone(), &[0, 1]));
        }
        assert_ne!(key_bytes(&rows[0], &[0]), key_bytes(&rows[0], &[0, 1]));
    }
}
