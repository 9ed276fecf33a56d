//! SQLite as the source of a parallel load: an integer key (the rowid) is split
//! into ranges that, read with `read_range` by connections of their own, give
//! every row exactly once.

use siphon_core::{Position, Source, TableFilter, TableSchema, Value};
use siphon_sqlite::SqliteSource;

async fn table(source: &SqliteSource, name: &str) -> TableSchema {
    let filter = TableFilter {
        include: vec![name.into()],
        exclude: vec![],
    };
    source.discover(&filter).await.unwrap().pop().unwrap()
}

/// The ids of the rows of one range, read in chunks of 37.
async fn read_ids(
    source: &SqliteSource,
    t: &TableSchema,
    after: Option<Position>,
    until: Option<Position>,
) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after = after;
    loop {
        let chunk = source
            .read_range(t, after.as_ref(), until.as_ref(), 37)
            .await
            .unwrap();
        ids.extend(chunk.rows.iter().map(|r| match r[0] {
            Value::Int64(id) => id,
            ref v => panic!("id {v:?}"),
        }));
        if chunk.rows.len() < 37 {
            return ids;
        }
        after = chunk.last;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integer_key_splits_into_ranges_that_hold_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT -200 UNION ALL SELECT i + 1 FROM n WHERE i < 999)
         INSERT INTO items SELECT i, 'item ' || i FROM n;
         CREATE TABLE named (name TEXT PRIMARY KEY, v TEXT);
         INSERT INTO named VALUES ('a', '1'), ('b', '2');",
    )
    .unwrap();
    drop(conn);
    let source = SqliteSource::open(&path).unwrap();
    let t = table(&source, "items").await;
    let cuts = source.split_keys(&t, 4).await.unwrap();
    assert_eq!(cuts.len(), 3, "{cuts:?}");

    let mut bounds = vec![None];
    bounds.extend(cuts.into_iter().map(Some));
    bounds.push(None);
    let mut all = Vec::new();
    for w in bounds.windows(2) {
        // Each range by a connection of its own, as a parallel worker reads it.
        let worker = source.another().await.unwrap().expect("another connection");
        let ids = read_ids(&worker, &t, w[0].clone(), w[1].clone()).await;
        assert!(!ids.is_empty(), "an empty range between {w:?}");
        assert!(ids.windows(2).all(|p| p[0] < p[1]), "not in key order");
        all.extend(ids);
    }
    assert_eq!(all, (-200..=999).collect::<Vec<_>>());

    // A text key is not split: the table is read whole.
    let named = table(&source, "named").await;
    assert!(source.split_keys(&named, 4).await.unwrap().is_empty());
}
