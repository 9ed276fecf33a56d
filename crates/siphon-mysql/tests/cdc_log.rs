//! Where the MySQL source's change log starts, against the testkit's real
//! MariaDB: [`LogSource::prepare_log`] gives the binlog point from which
//! every later commit is in the binlog and no earlier one is (the head, as of
//! a consistent snapshot), anew on every call and creating nothing on the
//! server; and once the binlog was purged past a checkpoint,
//! [`LogSource::resume`] goes on from the head, so a table copied again is
//! not fed the retained binlog's rows of its older shape. An update that
//! changes a row's key arrives as the old row's delete and the new one's insert.

use std::sync::Arc;
use std::time::{Duration, Instant};

use siphon_core::{
    Batch, ChangeStream, LogSource, Op, Position, Source, TableFilter, TableSchema, Value,
};
use siphon_mysql::{BinlogPos, MySqlSource};
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
    Ok(found.into_iter().next().expect("the table is discovered"))
}

/// The first column of every row change from `from` up to `until`.
async fn ids(
    src: &MySqlSource,
    pipeline: &str,
    t: &TableSchema,
    from: &Position,
    until: &Position,
) -> Res<Vec<Value>> {
    let arcs = vec![Arc::new(t.clone())];
    let mut stream = src.stream(pipeline, &arcs, from).await?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some((Batch { changes }, _)) = stream.next_batch(100, Some(until), None).await? {
        for c in changes {
            match c.op {
                Op::Insert(r) | Op::Delete(r) | Op::Update { after: r, .. } => {
                    out.push(r[0].clone())
                }
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "the stream never reached `until`"
        );
    }
    stream.close().await?;
    Ok(out)
}

/// `SHOW MASTER STATUS`'s file and offset.
fn master_status(server: &MariaDb) -> Res<(String, u64)> {
    let status = server.query("SHOW MASTER STATUS")?;
    let mut cols = status.split('\t');
    let file = cols.next().unwrap_or_default().to_string();
    let pos = cols.next().unwrap_or_default().parse()?;
    Ok((file, pos))
}

#[tokio::test]
async fn prepare_log_gives_the_point_after_every_commit_so_far_on_every_call() -> Res {
    let server = MariaDb::start()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    )?;
    let src = MySqlSource::connect(&url).await?;
    let t = table(&src, &db, "t").await?;
    let tables = std::slice::from_ref(&t);

    let first = src.prepare_log("p", tables).await?;
    let at = BinlogPos::from_position(&first)?;
    // On an idle server, exactly the binlog's end, with its GTID state.
    assert_eq!((at.file.clone(), at.pos), master_status(&server)?);
    let gtid = server.query("SELECT @@gtid_binlog_pos")?;
    assert_eq!(at.gtid.as_deref(), Some(gtid.as_str()));

    server.query_in(&db, "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)")?;
    // Called again, it creates nothing and gives the point after those.
    let second = src.prepare_log("p", tables).await?;
    let later = BinlogPos::from_position(&second)?;
    assert!(later.reached(&at) && later != at, "{later:?} {at:?}");
    assert_eq!((later.file.clone(), later.pos), master_status(&server)?);
    for from in [&first, &second] {
        let r = src.resume("p", from, tables).await?;
        assert!(r.lost.is_empty(), "{:?}", r.lost);
        assert_eq!(&r.from, from);
    }

    server.query_in(&db, "INSERT INTO t VALUES (4)")?;
    let head = src.log_head().await?;
    // Everything committed after each point, and nothing before it.
    assert_eq!(
        ids(&src, "p", &t, &first, &head).await?,
        vec![Value::Int32(2), Value::Int32(3), Value::Int32(4)]
    );
    assert_eq!(
        ids(&src, "p", &t, &second, &head).await?,
        vec![Value::Int32(4)]
    );
    Ok(())
}

#[tokio::test]
async fn after_a_purge_reading_goes_on_from_the_head_past_older_shapes() -> Res {
    let server = MariaDb::start()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")?;
    let src = MySqlSource::connect(&url).await?;
    let old = table(&src, &db, "t").await?;
    let checkpoint = src.prepare_log("p", std::slice::from_ref(&old)).await?;
    server.query_in(
        &db,
        "INSERT INTO t VALUES (1, 1); FLUSH BINARY LOGS; INSERT INTO t VALUES (2, 2); FLUSH BINARY LOGS;",
    )?;
    let (current, _) = master_status(&server)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        server.query(&format!("PURGE BINARY LOGS TO '{current}'"))?;
        let oldest = server.query("SHOW BINARY LOGS")?;
        if oldest.split_whitespace().next() == Some(current.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "the binlog was never purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The binlog still kept holds rows of the table's older shape.
    server.query_in(
        &db,
        "INSERT INTO t VALUES (3, 3); ALTER TABLE t ADD COLUMN w INT DEFAULT 0; INSERT INTO t VALUES (4, 4, 4);",
    )?;
    let now = table(&src, &db, "t").await?;
    let r = src
        .resume("p", &checkpoint, std::slice::from_ref(&now))
        .await?;
    assert_eq!(r.lost.len(), 1, "{:?}", r.lost);
    let head = src.log_head().await?;
    assert_eq!(r.from, head, "reading does not go on from the head");
    // The table, copied again now, streams on from there in its new shape.
    server.query_in(&db, "INSERT INTO t VALUES (5, 5, 5)")?;
    let until = src.log_head().await?;
    assert_eq!(
        ids(&src, "p", &now, &r.from, &until).await?,
        vec![Value::Int32(5)]
    );
    Ok(())
}

#[tokio::test]
async fn an_update_of_the_key_deletes_the_old_row_and_inserts_the_new() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1), (2, 2)",
    )?;
    let src = MySqlSource::connect(&url).await?;
    let t = table(&src, &db, "t").await?;
    let start = src.prepare_log("keys", std::slice::from_ref(&t)).await?;
    server.query_in(
        &db,
        "UPDATE t SET id = 10 WHERE id = 1; UPDATE t SET v = 20 WHERE id = 2",
    )?;
    let until = src.log_head().await?;
    let arcs = vec![Arc::new(t.clone())];
    let mut stream = src.stream("keys", &arcs, &start).await?;
    let mut ops = Vec::new();
    while let Some((b, _)) = stream.next_batch(100, Some(&until), None).await? {
        for c in b.changes {
            let op = match c.op {
                Op::Delete(r) => format!("delete {:?}", r[0]),
                Op::Insert(r) => format!("insert {:?}", r[0]),
                Op::Update { after, .. } => format!("update {:?}", after[0]),
                other => format!("{other:?}"),
            };
            ops.push((op, c.index));
        }
    }
    stream.close().await?;
    let want = [
        ("delete Int32(1)", 0),
        ("insert Int32(10)", 1),
        ("update Int32(2)", 0),
    ];
    let got: Vec<(&str, u32)> = ops.iter().map(|(o, i)| (o.as_str(), *i)).collect();
    assert_eq!(got, want);
    Ok(())
}
