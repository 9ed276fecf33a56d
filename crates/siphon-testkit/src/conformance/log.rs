//! Cases for sources with a change log ([`LogSource`]): the ids of logged
//! changes are the same on every read of the log, and the source says which
//! tables lost their history when a checkpoint can no longer be resumed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use siphon_core::{ChangeStream, LogSource, Op, Position};

use super::{
    create_table, database, discover_one, keyed_text_table, name_of, source, text_literals, Harness,
};

/// Every change read from the log, in order: its id, and its operation.
async fn read_log<S: LogSource>(
    source: &S,
    pipeline: &str,
    tables: &[Arc<siphon_core::TableSchema>],
    from: &Position,
    until: &Position,
    max_changes: usize,
) -> Vec<(String, u32, Op)> {
    let mut stream = source
        .stream(pipeline, tables, from)
        .await
        .unwrap_or_else(|e| panic!("opening the log at {from:?}: {e}"));
    let mut out = Vec::new();
    while let Some((batch, _)) = stream
        .next_batch(max_changes, Some(until), None)
        .await
        .unwrap_or_else(|e| panic!("reading the log with batches of {max_changes}: {e}"))
    {
        for change in batch.changes {
            if matches!(change.op, Op::Schema(_)) {
                continue;
            }
            let id = change.id().unwrap_or_else(|| {
                panic!(
                    "a change read from the log has no id (no transaction): {:?}",
                    change.op
                )
            });
            out.push((id.transaction.0.to_string(), id.index, change.op));
        }
    }
    stream
        .close()
        .await
        .unwrap_or_else(|e| panic!("closing the log: {e}"));
    out
}

/// Reading the same stretch of log twice, in batches of different sizes (so
/// transactions are grouped and split differently), gives every change the
/// same id both times; ids are unique, and the indexes in each transaction
/// increase in log order (a connector may leave gaps, see
/// [`siphon_core::Change::index`]). The source's [`LogSource::drop_log`]
/// removes the case's log at the end.
pub async fn replayed_changes_keep_their_ids<H: Harness>(h: &H)
where
    H::Source: LogSource,
{
    let db = database(h);
    let spec = keyed_text_table(h, "logged");
    create_table(h, &db, &spec, &[text_literals(0, "seed")]);
    let src = source(h, &db).await;
    let table = discover_one(&src, &name_of(h, &spec)).await;
    // One log per database: cases running at once never share one.
    let pipeline = format!("conformance_{db}");
    let start = src
        .prepare_log(&pipeline, std::slice::from_ref(&table))
        .await
        .unwrap_or_else(|e| panic!("preparing the log: {e}"));
    let name = h.table_sql(&spec);
    let rows: Vec<_> = (1..=5).map(|i| text_literals(i, "a")).collect();
    h.execute(&db, &h.insert_sql(&spec, &rows))
        .unwrap_or_else(|e| panic!("inserting: {e}"));
    h.execute(&db, &format!("UPDATE {name} SET v = 'b' WHERE id <= 3"))
        .unwrap_or_else(|e| panic!("updating: {e}"));
    h.execute(&db, &format!("DELETE FROM {name} WHERE id = 2"))
        .unwrap_or_else(|e| panic!("deleting: {e}"));
    let until = src
        .log_head()
        .await
        .unwrap_or_else(|e| panic!("reading the log's head: {e}"));
    let tables = vec![Arc::new(table)];

    let whole = read_log(&src, &pipeline, &tables, &start, &until, 1000).await;
    let split = read_log(&src, &pipeline, &tables, &start, &until, 2).await;
    src.drop_log(&pipeline)
        .await
        .unwrap_or_else(|e| panic!("dropping the log: {e}"));

    assert_eq!(
        whole.len(),
        5 + 4 + 1,
        "the log holds 5 inserts, 4 updates (ids 0 to 3) and 1 delete: {whole:?}"
    );
    assert_eq!(
        whole, split,
        "the same changes got other ids when read in batches of 2 than in batches of 1000"
    );
    let ids: BTreeSet<(&str, u32)> = whole.iter().map(|(t, i, _)| (t.as_str(), *i)).collect();
    assert_eq!(ids.len(), whole.len(), "two changes share an id: {whole:?}");
    let mut per_tx: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, i, _) in &whole {
        per_tx.entry(t.as_str()).or_default().push(*i);
    }
    for (t, indexes) in per_tx {
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "transaction {t}: indexes do not increase in log order: {indexes:?}"
        );
    }
}

/// [`LogSource::resume`]: from the position [`LogSource::prepare_log`]
/// returned, the log goes on for the table with nothing lost, from that same
/// position. Once the log was dropped ([`LogSource::drop_log`]), changes were
/// made and the log was prepared again, the old position cannot be resumed:
/// the table is in [`siphon_core::Resume::lost`] with a `PositionLost` error
/// that names it, and a position of the new log resumes with nothing lost.
pub async fn a_dropped_log_loses_the_tables_history<H: Harness>(h: &H)
where
    H::Source: LogSource,
{
    let db = database(h);
    let spec = keyed_text_table(h, "resumed");
    create_table(h, &db, &spec, &[text_literals(0, "seed")]);
    let src = source(h, &db).await;
    let table = discover_one(&src, &name_of(h, &spec)).await;
    let tables = std::slice::from_ref(&table);
    let pipeline = format!("conformance_resume_{db}");
    let prepare = |what: &'static str| {
        let src = &src;
        let pipeline = &pipeline;
        async move {
            src.prepare_log(pipeline, tables)
                .await
                .unwrap_or_else(|e| panic!("preparing the log ({what}): {e}"))
        }
    };
    let resume = |from: Position| {
        let src = &src;
        let pipeline = &pipeline;
        async move {
            src.resume(pipeline, &from, tables)
                .await
                .unwrap_or_else(|e| panic!("asking whether the log resumes from {from:?}: {e}"))
        }
    };
    let start = prepare("first").await;
    h.execute(&db, &h.insert_sql(&spec, &[text_literals(1, "a")]))
        .unwrap_or_else(|e| panic!("inserting: {e}"));
    let r = resume(start.clone()).await;
    assert!(
        r.lost.is_empty(),
        "the log's own start cannot be resumed: {:?}",
        r.lost
    );
    assert_eq!(r.from, start, "reading does not go on from the checkpoint");

    src.drop_log(&pipeline)
        .await
        .unwrap_or_else(|e| panic!("dropping the log: {e}"));
    h.execute(&db, &h.insert_sql(&spec, &[text_literals(2, "lost")]))
        .unwrap_or_else(|e| panic!("inserting: {e}"));
    let again = prepare("again").await;
    let r = resume(start.clone()).await;
    let lost: Vec<_> = r.lost.iter().map(|(t, e)| (t.clone(), e.kind())).collect();
    assert_eq!(
        lost,
        [(table.name.clone(), siphon_core::ErrorKind::PositionLost)],
        "a checkpoint of a dropped log resumed"
    );
    let named = r.lost[0].1.table_name().map(str::to_string);
    assert_eq!(named, Some(table.name.to_string()), "{}", r.lost[0].1);
    let r = resume(again).await;
    assert!(
        r.lost.is_empty(),
        "the new log's start cannot be resumed: {:?}",
        r.lost
    );
    src.drop_log(&pipeline)
        .await
        .unwrap_or_else(|e| panic!("dropping the log: {e}"));
}
