//! A SQLite target's `siphon_checkpoints`: rows are keyed by `TableName::key`, and
//! rows an older siphon keyed by display form are moved once, on open.

use rusqlite::Connection;
use siphon_core::{Batch, Checkpoint, Phase, Sink, StreamId, TableName};
use siphon_sqlite::SqliteSink;

fn stream(schema: Option<&str>, name: &str) -> StreamId {
    StreamId::new("p", &TableName::new(schema, name))
}

fn checkpoint(s: &StreamId) -> Checkpoint {
    Checkpoint {
        stream: s.clone(),
        epoch: 0,
        phase: Phase::Streaming { position: None },
    }
}

/// The `(tbl, key_version)` rows, in key order.
fn rows(conn: &Connection) -> Vec<(String, Option<i64>)> {
    conn.prepare("SELECT tbl, key_version FROM siphon_checkpoints ORDER BY tbl")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[tokio::test]
async fn display_keys_an_older_siphon_wrote_are_moved_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.db");
    let orders = stream(Some("public"), "orders");
    let quoted = stream(None, "say \"hi\"");
    let (a_bc, ab_c) = (stream(Some("a"), "b.c"), stream(Some("a.b"), "c"));
    {
        // The table as an older siphon created it, with one row each: an
        // ordinary name, a bare name with a quote, and a key two tables shared.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE siphon_checkpoints (pipeline TEXT NOT NULL, tbl TEXT NOT NULL, \
             checkpoint TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (pipeline, tbl))",
        )
        .unwrap();
        for s in [&orders, &quoted, &ab_c] {
            conn.execute(
                "INSERT INTO siphon_checkpoints VALUES ('p', ?1, ?2, '2026-01-01T00:00:00Z')",
                [
                    s.table.to_string(),
                    serde_json::to_string(&checkpoint(s)).unwrap(),
                ],
            )
            .unwrap();
        }
    }
    // Two processes may open the target at once: they take turns.
    let opened: Vec<SqliteSink> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| SqliteSink::open(&path).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sink = &opened[0];
    assert_eq!(
        sink.checkpoint(&orders).await.unwrap(),
        Some(checkpoint(&orders))
    );
    assert_eq!(
        sink.checkpoint(&quoted).await.unwrap(),
        Some(checkpoint(&quoted))
    );
    // Neither table that displays as `a.b.c` resumes from the shared row.
    assert_eq!(sink.checkpoint(&a_bc).await.unwrap(), None);
    assert_eq!(sink.checkpoint(&ab_c).await.unwrap(), None);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(
        rows(&conn),
        [
            ("\"say \"\"hi\"\"\"".to_string(), Some(2)),
            ("public.orders".to_string(), Some(2)),
        ]
    );

    // Keys written now are never taken for old ones: opening again moves nothing.
    for s in [&a_bc, &ab_c] {
        let empty = Batch { changes: vec![] };
        sink.apply(empty, &checkpoint(s)).await.unwrap();
    }
    drop(opened);
    let sink = SqliteSink::open(&path).unwrap();
    for s in [&orders, &quoted, &a_bc, &ab_c] {
        assert_eq!(
            sink.checkpoint(s).await.unwrap(),
            Some(checkpoint(s)),
            "{s}"
        );
    }
    assert_eq!(rows(&conn).len(), 4);
}
