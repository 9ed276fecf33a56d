//! Changes, batches and what applying them did.

use std::sync::Arc;

use crate::{TableSchema, Value};

/// A row's values in the order of its table's columns.
pub type Row = Vec<Value>;

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

/// One change to one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: Arc<TableSchema>,
    pub op: Op,
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
