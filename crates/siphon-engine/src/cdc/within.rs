//! A source transaction split over several target transactions (larger than
//! `batch_size`, or than the byte budget of a batch): how far into it the
//! target has committed. A batch that ends inside a transaction leaves the
//! log position before it ([`siphon_core::ChangeStream::next_batch`]), so a
//! resume replays the transaction from its start; its checkpoint also records
//! the transaction and the index of its last change the target holds, and
//! the replayed changes up to that index are dropped before they reach the
//! sink. Without this, a table without a key (whose inserts no upsert
//! absorbs) would get the rows of the parts applied before a stop again.
//!
//! The record rides in the log checkpoint's position, which only the engine
//! reads and hands to the source: wrapped as
//! `{"inside_transaction": {"resume_from": <the source's position>,
//! "transaction": <the transaction's position>, "applied_through": <index>}}`
//! while the target is inside a transaction, and the source's own position
//! alone otherwise, so checkpoints outside a split look as they always did.

use siphon_core::{Change, Position};

/// How far into one source transaction the target has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Within {
    /// The transaction's position ([`siphon_core::Transaction::position`]),
    /// which is the same on every replay of the log.
    pub(super) tx: Position,
    /// The index ([`Change::index`]) of the last change of it that the target
    /// holds: the replayed changes up to this one are dropped.
    pub(super) index: u32,
}

/// The position a log checkpoint holds: the source's position `at`, wrapped
/// with `within` when there is one ([`Position::inside_transaction`]).
pub(super) fn wrap(at: &Position, within: Option<&Within>) -> Position {
    match within {
        None => at.clone(),
        Some(w) => at.inside_transaction(&w.tx, w.index),
    }
}

/// A log checkpoint's position read back: the source's position, and how
/// far into a split transaction the target is. A position without the
/// wrapping (every checkpoint outside a split, and those older versions
/// wrote) is the source's own.
pub(super) fn unwrap(p: Position) -> (Position, Option<Within>) {
    let (at, inside) = p.outside_transaction();
    (at, inside.map(|(tx, index)| Within { tx, index }))
}

/// Whether `change` is a replay of one the target holds already: of the
/// transaction `within` names, at or before its last applied index.
pub(super) fn applied(within: Option<&Within>, change: &Change) -> bool {
    match (within, &change.tx) {
        (Some(w), Some(tx)) => change.index <= w.index && tx.position == w.tx,
        _ => false,
    }
}

/// Where the target stands once a batch of `changes` (as the stream returned
/// them) is committed, having stood at `before`. `moved`: the batch's
/// position is not the one before it; `full`: it holds as many changes (or
/// bytes) as a batch may, so it may have been cut inside a transaction even
/// though its position moved past the whole transactions before that one.
///
/// A batch that may end inside a transaction records its last transaction
/// and the highest index of it applied; should that transaction have ended in
/// the batch after all, the record is harmless, since a resume from the
/// batch's position never replays it. A batch whose position moved and that
/// is not full ended on a transaction's end: nothing is recorded. A batch
/// without logged changes leaves the record as it was unless it moved.
pub(super) fn after(
    changes: &[Change],
    before: Option<&Within>,
    moved: bool,
    full: bool,
) -> Option<Within> {
    let last = changes.iter().rev().find_map(|c| c.tx.as_ref());
    match last {
        Some(tx) if !moved || full => {
            let mut index = changes
                .iter()
                .filter(|c| c.tx.as_ref().is_some_and(|t| t.position == tx.position))
                .map(|c| c.index)
                .max()
                .unwrap_or(0);
            if let Some(b) = before.filter(|b| b.tx == tx.position) {
                index = index.max(b.index);
            }
            Some(Within {
                tx: tx.position.clone(),
                index,
            })
        }
        Some(_) => None,
        None if moved => None,
        None => before.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use siphon_core::{Op, TableName, TableSchema, Transaction, Value};

    use super::*;

    fn pos(n: i64) -> Position {
        Position(serde_json::json!({ "lsn": n }))
    }

    fn tx(n: i64) -> Arc<Transaction> {
        Arc::new(Transaction {
            position: pos(n),
            commit_time: None,
            origin: None,
        })
    }

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            name: TableName::new(Some("public"), "kb"),
            origin: siphon_core::typemap::Engine::Postgres,
            columns: Vec::new(),
            primary_key: Vec::new(),
            unique_keys: Vec::new(),
            indexes: Vec::new(),
            partitioning: None,
            objects: Vec::new(),
        })
    }

    fn change(of: &Arc<Transaction>, index: u32) -> Change {
        Change {
            table: table(),
            op: Op::Insert(vec![Value::Null]),
            tx: Some(of.clone()),
            index,
        }
    }

    #[test]
    fn a_position_outside_a_split_is_written_and_read_as_it_is() {
        let p = pos(7);
        assert_eq!(wrap(&p, None), p);
        assert_eq!(unwrap(p.clone()), (p, None));
        let text = Position(serde_json::json!("0/16B3748"));
        assert_eq!(unwrap(text.clone()), (text, None));
    }

    #[test]
    fn a_split_is_written_into_the_position_and_read_back() {
        let w = Within {
            tx: pos(90),
            index: 41,
        };
        let wrapped = wrap(&pos(7), Some(&w));
        assert_ne!(wrapped, pos(7));
        let json = serde_json::to_string(&wrapped).unwrap();
        let read: Position = serde_json::from_str(&json).unwrap();
        assert_eq!(unwrap(read), (pos(7), Some(w)));
    }

    #[test]
    fn replayed_changes_up_to_the_applied_index_are_dropped() {
        let w = Within {
            tx: pos(90),
            index: 9,
        };
        let (t, other) = (tx(90), tx(91));
        assert!(applied(Some(&w), &change(&t, 0)));
        assert!(applied(Some(&w), &change(&t, 9)));
        assert!(!applied(Some(&w), &change(&t, 10)));
        assert!(!applied(Some(&w), &change(&other, 3)));
        assert!(!applied(None, &change(&t, 0)));
        let mut unlogged = change(&t, 0);
        unlogged.tx = None;
        assert!(!applied(Some(&w), &unlogged));
    }

    #[test]
    fn a_batch_that_ends_inside_a_transaction_records_it() {
        let t = tx(90);
        let part: Vec<Change> = (10..20).map(|i| change(&t, i)).collect();
        // A part after the first: the position did not move.
        let before = Within {
            tx: pos(90),
            index: 9,
        };
        assert_eq!(
            after(&part, Some(&before), false, true),
            Some(Within {
                tx: pos(90),
                index: 19
            })
        );
        // The first part, after whole transactions of other tables moved the
        // position: full, so recorded.
        assert_eq!(
            after(&part, None, true, true),
            Some(Within {
                tx: pos(90),
                index: 19
            })
        );
        // Replayed changes already applied keep the record where it was.
        let replay: Vec<Change> = (0..10).map(|i| change(&t, i)).collect();
        let far = Within {
            tx: pos(90),
            index: 29,
        };
        assert_eq!(after(&replay, Some(&far), false, true), Some(far.clone()));
        // Nothing logged, position unmoved: unchanged; moved: cleared.
        assert_eq!(after(&[], Some(&far), false, false), Some(far.clone()));
        assert_eq!(after(&[], Some(&far), true, false), None);
    }

    #[test]
    fn a_batch_that_ends_a_transaction_clears_the_record() {
        let t = tx(90);
        let tail: Vec<Change> = (20..25).map(|i| change(&t, i)).collect();
        let before = Within {
            tx: pos(90),
            index: 19,
        };
        assert_eq!(after(&tail, Some(&before), true, false), None);
    }
}
