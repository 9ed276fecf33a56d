//! The binlog's table-map metadata on a real MariaDB 10.11 of its own
//! (`binlog_row_metadata` is server-wide): with `FULL` the stream maps a
//! logged row's columns by the names the binlog gives, so rows written before
//! a column was added in front of the others (read after the catalog
//! changed) arrive whole and in their right columns; with `MINIMAL`, set at
//! runtime, unsigned integers at their maximum, enum and set values still
//! decode exactly, from what `information_schema` says of the columns, and a
//! shape the binlog does not name stops with the fix.

use std::collections::BTreeMap;
use std::sync::Arc;

use siphon_core::{
    ChangeStream, ErrorKind, LogSource, Op, Position, Row, Source, TableFilter, TableSchema,
};
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

/// Every row of `t` as the source holds it now, by key (the first key column).
async fn source_rows(src: &MySqlSource, t: &TableSchema) -> Res<BTreeMap<String, Row>> {
    let k = t.primary_key[0];
    let chunk = src.read_chunk(t, None, 10_000).await?;
    Ok(chunk
        .rows
        .into_iter()
        .map(|r| (format!("{:?}", r[k]), r))
        .collect())
}

/// The changes of `now` from `start` to the log's head, applied in order to
/// an empty copy keyed like [`source_rows`]; or the stream's error.
async fn replay(
    src: &MySqlSource,
    pipeline: &str,
    now: &Arc<TableSchema>,
    start: &Position,
) -> Res<Result<BTreeMap<String, Row>, siphon_core::Error>> {
    let head = src.log_head().await?;
    let k = now.primary_key[0];
    let mut stream = src
        .stream(pipeline, std::slice::from_ref(now), start)
        .await?;
    let mut copy: BTreeMap<String, Row> = BTreeMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never reached the head"
        );
        let batch = match stream.next_batch(1000, Some(&head), None).await {
            Ok(Some((b, _))) => b,
            Ok(None) => break,
            Err(e) => return Ok(Err(e)),
        };
        for c in batch.changes {
            match c.op {
                Op::Insert(r) => {
                    assert_eq!(r.len(), now.columns.len(), "a row is not whole: {r:?}");
                    copy.insert(format!("{:?}", r[k]), r);
                }
                Op::Update { after, .. } => {
                    assert_eq!(after.len(), now.columns.len(), "{after:?}");
                    copy.insert(format!("{:?}", after[k]), after);
                }
                Op::Delete(r) => {
                    copy.remove(&format!("{:?}", r[k]));
                }
                _ => {}
            }
        }
    }
    stream.close().await?;
    Ok(Ok(copy))
}

const TABLE: &str = "CREATE TABLE m (id bigint unsigned NOT NULL PRIMARY KEY, a varchar(20), \
    e enum('x','y','z'), s set('p','q','r'), n tinyint unsigned, i int)";

/// Rows at the extremes: the largest unsigned bigint and tinyint, the last
/// enum label, several set members, the empty set, NULLs.
const ROWS: &str =
    "INSERT INTO m VALUES (18446744073709551615, 'max ✓', 'z', 'p,r', 255, -2147483648), \
    (1, 'one', 'x', '', 0, 2147483647), (2, NULL, NULL, NULL, NULL, NULL); \
    UPDATE m SET e = 'y', s = 'q,r', n = 254 WHERE id = 1;";

#[tokio::test]
async fn full_metadata_maps_columns_by_name_and_minimal_falls_back_to_the_catalog() -> Res {
    let server = MariaDb::start_with_args(&["--binlog-row-metadata=FULL"])?;
    assert_eq!(
        server.query("SELECT @@GLOBAL.binlog_row_metadata")?.trim(),
        "FULL"
    );
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(&db, TABLE)?;
    let src = MySqlSource::connect(&url).await?;
    let before = table(&src, &db, "m").await?;
    src.check_log_table(&before).await?;
    let start = src
        .prepare_log("meta", std::slice::from_ref(&before))
        .await?;

    // Written while siphon is stopped: rows of the first shape, then a
    // column added in front of every other (the rows logged before it no
    // longer line up with the table's columns by position), then rows of
    // the new shape.
    server.query_in(
        &db,
        &format!(
            "{ROWS} ALTER TABLE m ADD COLUMN z date FIRST; \
             INSERT INTO m VALUES ('2024-02-29', 3, 'three', 'z', 'p,q,r', 7, 0); \
             UPDATE m SET a = 'max again' WHERE id = 18446744073709551615;"
        ),
    )?;
    // The stream knows the table as it is now.
    let now = Arc::new(table(&src, &db, "m").await?);
    assert_eq!(now.columns[0].name, "z");
    let copy = replay(&src, "meta", &now, &start)
        .await?
        .map_err(|e| format!("FULL metadata names the columns, yet: {e}"))?;
    // Applied in order, the changes leave exactly the source's rows.
    assert_eq!(copy, source_rows(&src, &now).await?);
    assert_eq!(copy.len(), 4);

    // MINIMAL, at runtime (the variable is dynamic): the binlog names no
    // columns, and signedness and enum and set labels come from the
    // catalog. The same rows decode exactly.
    server.query("SET GLOBAL binlog_row_metadata = MINIMAL")?;
    assert_eq!(
        server.query("SELECT @@GLOBAL.binlog_row_metadata")?.trim(),
        "MINIMAL"
    );
    server.query_in(&db, "DROP TABLE m")?;
    server.query_in(&db, TABLE)?;
    let fresh = Arc::new(table(&src, &db, "m").await?);
    let start = src.prepare_log("meta2", &[(*fresh).clone()]).await?;
    server.query_in(&db, ROWS)?;
    let copy = replay(&src, "meta2", &fresh, &start).await??;
    assert_eq!(copy, source_rows(&src, &fresh).await?);
    assert_eq!(copy.len(), 3);
    assert!(
        copy.keys().any(|k| k.contains("18446744073709551615")),
        "{:?}",
        copy.keys()
    );

    // And a column added in front, without names, stops with the fix.
    server.query_in(
        &db,
        "INSERT INTO m VALUES (4, 'four', 'x', 'p', 1, 1); ALTER TABLE m ADD COLUMN z date FIRST;",
    )?;
    let now = Arc::new(table(&src, &db, "m").await?);
    let e = replay(&src, "meta2", &now, &start)
        .await?
        .expect_err("rows of an unnamed older shape were mapped");
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("binlog_row_metadata") && text.contains("must be copied again"),
        "{text}"
    );
    Ok(())
}
