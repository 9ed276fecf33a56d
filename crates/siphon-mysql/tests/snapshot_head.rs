//! The binlog point a snapshot starts from, on the testkit's real MariaDB:
//! past 16 MiB of the current binlog file, a new file is started (`FLUSH
//! BINARY LOGS`) before the point is taken, so `BINLOG_GTID_POS` reads a
//! small file, and the GTID position is still exactly the one of the point;
//! a small file is not rotated again; a user without the privilege gets the
//! exact point from the big file; and a copy taken after the point, with
//! writes going on throughout, plus the changes streamed from the point,
//! equals the source, whether the stream starts from the GTID position or
//! from the file and offset.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use siphon_core::{ChangeStream, LogSource, Op, Position, Source, TableFilter, Value};
use siphon_mysql::{BinlogPos, MySqlSource};
use siphon_testkit::MariaDb;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The tests share the server's binlog and rotate it: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binlog file offset past which the source rotates before its point.
const ROTATE_ABOVE: u64 = 16 << 20;

fn db_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

/// The server's current binlog file and offset.
fn master_status(my: &MariaDb) -> Res<(String, u64)> {
    let out = my.query("SHOW MASTER STATUS")?;
    let mut cols = out.split('\t');
    let file = cols.next().unwrap_or_default().trim().to_string();
    let pos = cols.next().unwrap_or_default().trim().parse()?;
    Ok((file, pos))
}

/// The number of a binlog file (`mysql-bin.000012` is 12).
fn index(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Writes rows of 512 KiB into a table `filler` of `db` until the current
/// binlog file is past the rotation threshold.
fn fill_binlog(my: &MariaDb, db: &str) -> Res {
    my.query_in(
        db,
        "CREATE TABLE IF NOT EXISTS filler (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         v longtext NOT NULL)",
    )?;
    while master_status(my)?.1 <= ROTATE_ABOVE + (1 << 20) {
        my.query_in(
            db,
            &"INSERT INTO filler (v) VALUES (REPEAT('x', 524288));".repeat(8),
        )?;
    }
    Ok(())
}

/// The exact GTID position the server gives for a binlog point.
fn gtid_at(my: &MariaDb, head: &BinlogPos) -> Res<Option<String>> {
    let g = my.query(&format!(
        "SELECT BINLOG_GTID_POS('{}', {})",
        head.file, head.pos
    ))?;
    let g = g.trim();
    Ok((!g.is_empty() && g != "NULL").then(|| g.to_string()))
}

#[tokio::test]
async fn a_big_binlog_file_is_rotated_before_the_point_and_its_gtid_is_exact() -> Res {
    let _serial = SERIAL.lock().await;
    let my = MariaDb::shared()?;
    let url = my.create_database()?;
    let db = db_of(&url);
    fill_binlog(my, &db)?;
    let (before, at) = master_status(my)?;
    assert!(at > ROTATE_ABOVE, "the binlog file is not big: {at}");

    let src = MySqlSource::connect(&url).await?;
    let head = BinlogPos::from_position(&src.log_head().await?)?;
    assert!(
        index(&head.file) > index(&before),
        "no new binlog file: {before} then {head:?}"
    );
    assert!(head.pos < ROTATE_ABOVE, "{head:?}");
    assert!(head.gtid.is_some(), "{head:?}");
    assert_eq!(head.gtid, gtid_at(my, &head)?, "{head:?}");

    // The new file is small: not rotated again.
    my.query_in(&db, "INSERT INTO filler (v) VALUES ('small')")?;
    let again = BinlogPos::from_position(&src.log_head().await?)?;
    assert_eq!(again.file, head.file, "{again:?}");
    assert!(again.pos > head.pos, "{again:?} {head:?}");
    assert_eq!(again.gtid, gtid_at(my, &again)?, "{again:?}");
    Ok(())
}

#[tokio::test]
async fn without_the_privilege_the_point_is_read_from_the_big_file() -> Res {
    let _serial = SERIAL.lock().await;
    let my = MariaDb::shared()?;
    let url = my.create_database()?;
    let db = db_of(&url);
    for host in ["%", "localhost", "127.0.0.1"] {
        my.query(&format!(
            "CREATE USER IF NOT EXISTS 'norotate'@'{host}'; \
             GRANT SELECT ON `{db}`.* TO 'norotate'@'{host}'; \
             GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'norotate'@'{host}'"
        ))?;
    }
    fill_binlog(my, &db)?;
    let (before, _) = master_status(my)?;
    let low = url.replacen("mysql://root@", "mysql://norotate@", 1);
    assert_ne!(low, url);
    let src = MySqlSource::connect(&low).await?;
    for _ in 0..2 {
        let head = BinlogPos::from_position(&src.log_head().await?)?;
        assert_eq!(head.file, before, "rotated without the privilege: {head:?}");
        assert!(head.pos > ROTATE_ABOVE, "{head:?}");
        assert_eq!(head.gtid, gtid_at(my, &head)?, "{head:?}");
    }
    Ok(())
}

/// `acct` as a map of id to n, read now.
async fn rows(conn: &mut mysql_async::Conn) -> Res<BTreeMap<i64, i64>> {
    let r: Vec<(i64, i64)> = conn.query("SELECT id, n FROM acct").await?;
    Ok(r.into_iter().collect())
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int16(i) => i64::from(*i),
        Value::Int32(i) => i64::from(*i),
        Value::Int64(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// The changes of `acct` from `from` up to `until`, as (op, id, n).
async fn changes(
    src: &MySqlSource,
    pipeline: &str,
    table: &siphon_core::TableSchema,
    from: &Position,
    until: &Position,
) -> Res<Vec<(&'static str, i64, i64)>> {
    let mut stream = src
        .stream(pipeline, &[Arc::new(table.clone())], from)
        .await?;
    let mut out = Vec::new();
    while let Some((batch, _)) = stream.next_batch(1000, Some(until), None).await? {
        for c in batch.changes {
            match c.op {
                Op::Insert(r) => out.push(("insert", int(&r[0]), int(&r[1]))),
                Op::Update { after, .. } => out.push(("update", int(&after[0]), int(&after[1]))),
                Op::Delete(r) => out.push(("delete", int(&r[0]), int(&r[1]))),
                Op::Truncate | Op::Schema(_) => {}
            }
        }
    }
    stream.close().await?;
    Ok(out)
}

#[tokio::test]
async fn a_copy_after_the_point_and_the_stream_from_it_equal_the_source_under_writes() -> Res {
    let _serial = SERIAL.lock().await;
    let my = MariaDb::shared()?;
    let url = my.create_database()?;
    let db = db_of(&url);
    let values: Vec<String> = (1..=100).map(|i| format!("({i}, 0)")).collect();
    my.query_in(
        &db,
        &format!(
            "CREATE TABLE acct (id int NOT NULL PRIMARY KEY, n int NOT NULL); \
             INSERT INTO acct VALUES {};",
            values.join(", ")
        ),
    )?;
    fill_binlog(my, &db)?;
    let (before, _) = master_status(my)?;

    // Transactions of updates, inserts and deletes, throughout.
    let pool = mysql_async::Pool::new(url.as_str());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (pool, stop, done) = (pool.clone(), stop.clone(), done.clone());
        tokio::spawn(async move {
            let mut conn = pool.get_conn().await?;
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let a = i % 100 + 1;
                let mut tx = conn
                    .start_transaction(mysql_async::TxOpts::default())
                    .await?;
                tx.query_drop(format!("UPDATE acct SET n = n + 1 WHERE id = {a}"))
                    .await?;
                tx.query_drop(format!("INSERT INTO acct VALUES ({}, {i})", 1000 + i))
                    .await?;
                if i.is_multiple_of(3) {
                    tx.query_drop(format!("DELETE FROM acct WHERE id = {}", 1000 + i - 2))
                        .await?;
                }
                tx.commit().await?;
                done.store(i, Ordering::Relaxed);
            }
            Ok::<_, mysql_async::Error>(())
        })
    };
    let wait_done = |n: u64| {
        let done = done.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while done.load(Ordering::Relaxed) < n {
                assert!(std::time::Instant::now() < deadline, "the writer stalled");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    wait_done(50).await;

    let src = MySqlSource::connect(&url).await?;
    let filter = TableFilter {
        include: vec![format!("{db}.acct")],
        exclude: Vec::new(),
    };
    let table = src.discover(&filter).await?.remove(0);
    let start = src
        .prepare_log("snapshot_head", std::slice::from_ref(&table))
        .await?;
    let head = BinlogPos::from_position(&start)?;
    assert!(
        index(&head.file) > index(&before),
        "no new binlog file under writes: {before} then {head:?}"
    );
    assert_eq!(head.gtid, gtid_at(my, &head)?, "{head:?}");

    // The copy, taken after the point while the writes go on.
    let at = done.load(Ordering::Relaxed);
    let mut conn = pool.get_conn().await?;
    let mut copy = rows(&mut conn).await?;
    wait_done(at + 50).await;
    stop.store(true, Ordering::Relaxed);
    writer.await??;
    let until = src.log_head().await?;

    let streamed = changes(&src, "snapshot_head", &table, &start, &until).await?;
    assert!(!streamed.is_empty());
    for (op, id, n) in &streamed {
        match *op {
            "delete" => copy.remove(id),
            _ => copy.insert(*id, *n),
        };
    }
    assert_eq!(
        copy,
        rows(&mut conn).await?,
        "the copy and the stream differ from the source"
    );

    // The GTID position and the file and offset are the same point.
    let by_file = BinlogPos {
        gtid: None,
        ..head.clone()
    };
    let from_file = changes(
        &src,
        "snapshot_head_file",
        &table,
        &by_file.to_position(),
        &until,
    )
    .await?;
    assert_eq!(from_file, streamed);
    drop(conn);
    pool.disconnect().await?;
    Ok(())
}
