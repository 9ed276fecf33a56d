//! The binlog stream's byte cap ([`ChangeStream::limit_bytes`]) against the
//! testkit's real MariaDB: a transaction of wide rows is split where its row
//! images pass the cap, every batch inside it reports the position before
//! it (a resume replays the whole of it), and the batch that ends it the
//! position after it; small transactions stay whole and together.

use std::sync::Arc;

use siphon_core::{ChangeStream, LogSource, Op, Source, TableFilter, TableSchema};
use siphon_mysql::MySqlSource;
use siphon_testkit::MariaDb;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Bytes of each wide row's blob.
const WIDE: u64 = 1 << 20;

#[tokio::test]
async fn a_transaction_of_wide_rows_is_split_at_the_byte_cap() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = url.rsplit('/').next().unwrap_or_default().to_string();
    server.query_in(&db, "CREATE TABLE w (id INT PRIMARY KEY, body LONGBLOB)")?;
    let src = MySqlSource::connect(&url).await?;
    let filter = TableFilter {
        include: vec![format!("{db}.w")],
        exclude: Vec::new(),
    };
    let ts = src.discover(&filter).await?;
    let start = src.prepare_log("bytes", &ts).await?;
    // Five wide rows in one transaction, then two small transactions.
    let wide: String = (1..=5)
        .map(|i| format!("INSERT INTO w VALUES ({i}, REPEAT('x', {WIDE}));"))
        .collect();
    server.query_in(
        &db,
        &format!(
            "BEGIN; {wide} COMMIT; INSERT INTO w VALUES (10, 'a'); INSERT INTO w VALUES (11, 'b');"
        ),
    )?;
    let head = src.log_head().await?;
    let arcs: Vec<Arc<TableSchema>> = ts.iter().cloned().map(Arc::new).collect();
    let mut stream = src.stream("bytes", &arcs, &start).await?;
    // Two and a half rows: a batch ends after the third row.
    stream.limit_bytes(WIDE * 5 / 2);
    let mut batches = Vec::new();
    while let Some((b, pos)) = stream.next_batch(1000, Some(&head), None).await? {
        let ids: Vec<String> = b
            .changes
            .iter()
            .map(|c| match &c.op {
                Op::Insert(row) => format!("{:?}", row[0]),
                other => format!("{other:?}"),
            })
            .collect();
        batches.push((ids, pos));
    }
    stream.close().await?;
    let ids: Vec<Vec<String>> = batches.iter().map(|(ids, _)| ids.clone()).collect();
    let id = |n: i32| format!("{:?}", siphon_core::Value::Int32(n));
    assert_eq!(
        ids,
        vec![
            vec![id(1), id(2), id(3)],
            vec![id(4), id(5)],
            vec![id(10), id(11)],
        ],
        "batches: {batches:?}"
    );
    // Inside the transaction, the position stays before it; its last batch
    // moves past it.
    assert_eq!(batches[0].1, start);
    assert_ne!(batches[1].1, start);
    assert_ne!(batches[2].1, batches[1].1);
    Ok(())
}
