//! The PostgreSQL change stream's byte cap ([`ChangeStream::limit_bytes`])
//! against the testkit's real PostgreSQL: a transaction of wide rows is split
//! where its row images pass the cap, every batch inside it reports the
//! position before it (a resume replays the whole of it), the batch that ends
//! it the position after it, and every row arrives once, in order.

use std::sync::Arc;

use siphon_core::{ChangeStream, LogSource, Op, Source, TableFilter, Value};
use siphon_postgres::PostgresSource;

mod support;
use support::env;

/// Bytes of each wide row's text.
const WIDE: u64 = 1 << 20;

#[tokio::test]
async fn a_transaction_of_wide_rows_is_split_at_the_byte_cap() {
    let e = env().await;
    e.src_sql("CREATE TABLE w (id int PRIMARY KEY, body text);");
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let filter = TableFilter {
        include: vec!["public.w".into()],
        exclude: vec![],
    };
    let schemas = source.discover(&filter).await.unwrap();
    let start = source.prepare_log(&e.pipeline, &schemas).await.unwrap();
    // Five wide rows in one transaction, then two small transactions.
    e.src_sql(&format!(
        "BEGIN; INSERT INTO w SELECT g, repeat('x', {WIDE}) FROM generate_series(1, 5) g; COMMIT;"
    ));
    e.src_sql("INSERT INTO w VALUES (10, 'a');");
    e.src_sql("INSERT INTO w VALUES (11, 'b');");
    let until = source.log_head().await.unwrap();
    let tables: Vec<Arc<_>> = schemas.into_iter().map(Arc::new).collect();
    let mut stream = source.stream(&e.pipeline, &tables, &start).await.unwrap();
    // Two and a half rows: a batch ends after the third row.
    stream.limit_bytes(WIDE * 5 / 2);
    // Each batch with changes: its ids, and the position before it and its own.
    let mut batches = Vec::new();
    let mut previous = start.clone();
    while let Some((batch, pos)) = stream.next_batch(1000, Some(&until), None).await.unwrap() {
        let ids: Vec<i32> = batch
            .changes
            .iter()
            .map(|c| match &c.op {
                Op::Insert(row) => match row[0] {
                    Value::Int32(id) => id,
                    ref v => panic!("{v:?}"),
                },
                op => panic!("{op:?}"),
            })
            .collect();
        // An idle moment can bring a batch with no change that only moves the
        // position forward (a keepalive): it says nothing about the splits.
        if !ids.is_empty() {
            batches.push((ids, previous.clone(), pos.clone()));
        }
        previous = pos;
    }
    stream.close().await.unwrap();

    let all: Vec<i32> = batches.iter().flat_map(|(ids, _, _)| ids.clone()).collect();
    assert_eq!(all, vec![1, 2, 3, 4, 5, 10, 11], "{batches:?}");
    assert_eq!(batches[0].0, vec![1, 2, 3], "{batches:?}");
    assert_eq!(batches[1].0, vec![4, 5], "{batches:?}");
    // Inside the transaction, the position stays before it (a resume from it
    // replays the whole transaction); its last batch moves past it.
    assert_eq!(batches[0].2, batches[0].1, "{batches:?}");
    assert_ne!(batches[1].2, batches[0].2, "{batches:?}");
    // The small transactions come after it, past its position.
    assert_ne!(batches[2].2, batches[1].2, "{batches:?}");
}
