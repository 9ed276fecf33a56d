//! Binlog rows written in an older shape of their table, read by a stream
//! opened with the table as it is now (a column added while siphon was
//! stopped), on the testkit's real MariaDB: rows of the older shape come at
//! the table's full width, their added columns as the source holds them
//! (applied in order they leave a copy equal to the source), and a shape that
//! cannot be mapped stops with an error naming the table and the resync.

use std::collections::BTreeMap;
use std::sync::Arc;

use siphon_core::{ChangeStream, ErrorKind, LogSource, Op, Row, Source, TableFilter, TableSchema};
use siphon_mysql::MySqlSource;
use siphon_testkit::MariaDb;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn db_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

async fn table(src: &MySqlSource, db: &str, name: &str) -> Res<TableSchema> {
    let filter = TableFilter {
        include: vec![format!("{db}.{name}")],
        exclude: Vec::new(),
    };
    let found = src.discover(&filter).await?;
    Ok(found.into_iter().next().ok_or("table not found")?)
}

/// Every row of `t` as the source holds it now, by key (the first column).
async fn source_rows(src: &MySqlSource, t: &TableSchema) -> Res<BTreeMap<String, Row>> {
    let chunk = src.read_chunk(t, None, 10_000).await?;
    Ok(chunk
        .rows
        .into_iter()
        .map(|r| (format!("{:?}", r[0]), r))
        .collect())
}

#[tokio::test]
async fn rows_written_before_a_column_was_added_arrive_whole() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20)); INSERT INTO t VALUES (1, 'one')",
    )?;
    let src = MySqlSource::connect(&url).await?;
    let before = table(&src, &db, "t").await?;
    src.check_log_table(&before).await?;
    let start = src
        .prepare_log("shapes", std::slice::from_ref(&before))
        .await?;
    // Written while siphon is stopped: rows of the old shape, the ALTER,
    // rows of the new one, and a row of the old shape changed after it.
    server.query_in(
        &db,
        "INSERT INTO t VALUES (2, 'two'), (3, 'three'); UPDATE t SET a = 'uno' WHERE id = 1; \
         DELETE FROM t WHERE id = 3; \
         ALTER TABLE t ADD COLUMN c VARCHAR(10) NOT NULL DEFAULT 'dflt'; \
         INSERT INTO t VALUES (4, 'four', 'new'); UPDATE t SET c = 'later' WHERE id = 2;",
    )?;
    let head = src.log_head().await?;
    // The next run knows the table as it is now.
    let now = Arc::new(table(&src, &db, "t").await?);
    assert_eq!(now.columns.len(), 3);
    let mut stream = src
        .stream("shapes", std::slice::from_ref(&now), &start)
        .await?;
    let mut copy: BTreeMap<String, Row> = BTreeMap::new();
    let mut inserted = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while let Some((batch, _)) = stream.next_batch(1000, Some(&head), None).await? {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never reached `until`"
        );
        for c in batch.changes {
            match c.op {
                Op::Insert(r) => {
                    assert_eq!(r.len(), 3, "a row of the old shape is not whole: {r:?}");
                    inserted.push(r.clone());
                    copy.insert(format!("{:?}", r[0]), r);
                }
                Op::Update { after, .. } => {
                    assert_eq!(after.len(), 3, "{after:?}");
                    copy.insert(format!("{:?}", after[0]), after);
                }
                Op::Delete(r) => {
                    copy.remove(&format!("{:?}", r[0]));
                }
                _ => {}
            }
        }
    }
    stream.close().await?;
    // Row 2 was inserted before the column existed: the source holds it
    // with the value set later ('later'), which the later update carries
    // too; row 3, deleted since, has no value to take.
    assert_eq!(
        inserted
            .iter()
            .map(|r| format!("{:?}", r[2]))
            .collect::<Vec<_>>(),
        vec!["Text(\"later\")", "Null", "Text(\"new\")"],
        "{inserted:?}"
    );
    // Every row of the source was changed in the binlog read: applied in
    // order, the changes leave exactly the source's rows, all columns.
    let want = source_rows(&src, &now).await?;
    assert_eq!(copy, want, "the copy differs from the source");
    Ok(())
}

#[tokio::test]
async fn a_shape_that_cannot_be_mapped_stops_with_the_resync() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(&db, "CREATE TABLE u (id INT PRIMARY KEY, a VARCHAR(20))")?;
    let src = MySqlSource::connect(&url).await?;
    let before = table(&src, &db, "u").await?;
    let start = src.prepare_log("shapes2", &[before]).await?;
    server.query_in(
        &db,
        "INSERT INTO u VALUES (1, 'one'); ALTER TABLE u ADD COLUMN z DATE FIRST; \
         INSERT INTO u VALUES ('2024-01-01', 2, 'two');",
    )?;
    let head = src.log_head().await?;
    let now = Arc::new(table(&src, &db, "u").await?);
    let mut stream = src.stream("shapes2", &[now], &start).await?;
    let mut err = None;
    loop {
        match stream.next_batch(1000, Some(&head), None).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err.ok_or("rows of a shape that cannot be mapped were read")?;
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.table_name(), Some(format!("{db}.u").as_str()), "{e}");
    assert!(
        e.to_string().contains("must be copied again") && !e.to_string().contains("PIPELINE"),
        "{e}"
    );
    // It says why: the binlog names no columns, and the logged ones are not
    // the first ones of the table now.
    assert!(
        e.to_string().contains("binlog_row_metadata") && e.to_string().contains("FIRST"),
        "{e}"
    );
    Ok(())
}
