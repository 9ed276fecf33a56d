//! Binlog CDC from the testkit's real MariaDB: inserts, updates, deletes and
//! truncates of two tables in transactions, ids stable on replay, resuming by
//! GTID over two domains, a purged binlog reported per table, start checks
//! with their fixes, a large transaction in bounded batches, every type
//! streamed as a snapshot reads it, and a column added at the source.

use std::sync::Arc;

use siphon_core::{
    Batch, Change, ChangeStream, ErrorKind, LogSource, Op, Position, Source, TableFilter,
    TableSchema, Value,
};
use siphon_mysql::MySqlSource;
use siphon_testkit::MariaDb;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn db_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

/// The tables `names` of the source's database, as discovery gives them.
async fn tables(src: &MySqlSource, db: &str, names: &[&str]) -> Res<Vec<TableSchema>> {
    let filter = TableFilter {
        include: names.iter().map(|n| format!("{db}.{n}")).collect(),
        exclude: Vec::new(),
    };
    let mut found = src.discover(&filter).await?;
    found.sort_by_key(|t| names.iter().position(|n| *n == t.name.name));
    assert_eq!(found.len(), names.len(), "{found:?}");
    Ok(found)
}

/// Every batch from `from` up to `until`, in batches of at most `max`.
async fn read(
    src: &MySqlSource,
    pipeline: &str,
    tables: &[TableSchema],
    from: &Position,
    until: &Position,
    max: usize,
) -> Res<Vec<(Batch, Position)>> {
    let arcs: Vec<Arc<TableSchema>> = tables.iter().cloned().map(Arc::new).collect();
    let mut stream = src.stream(pipeline, &arcs, from).await?;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while let Some(b) = stream.next_batch(max, Some(until), None).await? {
        out.push(b);
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never reached `until`"
        );
    }
    stream.close().await?;
    Ok(out)
}

fn changes(batches: &[(Batch, Position)]) -> Vec<Change> {
    batches
        .iter()
        .flat_map(|(b, _)| b.changes.clone())
        .collect()
}

/// `(table, op name, first value)` of each row change.
fn summary(cs: &[Change]) -> Vec<(String, &'static str, Option<Value>)> {
    cs.iter()
        .map(|c| {
            let (op, first) = match &c.op {
                Op::Insert(r) => ("insert", r.first().cloned()),
                Op::Update { after, .. } => ("update", after.first().cloned()),
                Op::Delete(r) => ("delete", r.first().cloned()),
                Op::Truncate => ("truncate", None),
                Op::Schema(_) => ("schema", None),
            };
            (c.table.name.name.clone(), op, first)
        })
        .collect()
}

fn tx_of(c: &Change) -> String {
    c.tx.as_ref()
        .map(|t| t.position.0.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn changes_of_two_tables_stream_in_their_transactions() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(&db, "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20)); CREATE TABLE b (id BIGINT UNSIGNED PRIMARY KEY, n INT); CREATE TABLE other (id INT PRIMARY KEY)")?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["a", "b"]).await?;
    for t in &ts {
        src.check_log_table(t).await?;
    }
    let start = src.prepare_log("two", &ts).await?;
    server.query_in(
        &db,
        "BEGIN; INSERT INTO a VALUES (1, 'one'), (2, 'two'); INSERT INTO other VALUES (1); INSERT INTO b VALUES (18446744073709551615, 5); COMMIT; \
         UPDATE a SET v = 'uno' WHERE id = 1; \
         BEGIN; DELETE FROM b; INSERT INTO a VALUES (3, 'three'); COMMIT; \
         TRUNCATE TABLE a;",
    )?;
    let head = src.log_head().await?;
    let batches = read(&src, "two", &ts, &start, &head, 1000).await?;
    let all = changes(&batches);
    let big = Value::Decimal("18446744073709551615".parse()?);
    assert_eq!(
        summary(&all),
        vec![
            ("a".into(), "insert", Some(Value::Int32(1))),
            ("a".into(), "insert", Some(Value::Int32(2))),
            ("b".into(), "insert", Some(big.clone())),
            ("a".into(), "update", Some(Value::Int32(1))),
            ("b".into(), "delete", Some(big)),
            ("a".into(), "insert", Some(Value::Int32(3))),
            ("a".into(), "truncate", None),
        ]
    );
    // The update carries its old row.
    match &all[3].op {
        Op::Update {
            before: Some(b),
            after,
        } => {
            assert_eq!(b[1], Value::Text("one".into()));
            assert_eq!(after[1], Value::Text("uno".into()));
        }
        other => panic!("{other:?}"),
    }
    // Four transactions; the skipped table's row still takes an index.
    let txs: Vec<String> = all.iter().map(tx_of).collect();
    assert_eq!(txs[0], txs[1]);
    assert_eq!(txs[1], txs[2]);
    assert_ne!(txs[2], txs[3]);
    assert_eq!(txs[4], txs[5]);
    assert_ne!(txs[5], txs[6]);
    assert!(txs[0].contains("gtid"), "{}", txs[0]);
    let idx: Vec<u32> = all.iter().map(|c| c.index).collect();
    assert_eq!(idx, vec![0, 1, 3, 0, 0, 1, 0]);
    assert!(all
        .iter()
        .all(|c| c.tx.as_ref().unwrap().commit_time.is_some()));
    // Batches end on transaction boundaries: read one transaction at a time.
    let one = read(&src, "two", &ts, &start, &head, 1).await?;
    for (b, _) in one.iter().filter(|(b, _)| !b.changes.is_empty()) {
        let first = tx_of(&b.changes[0]);
        assert!(
            b.changes.iter().all(|c| tx_of(c) == first),
            "a batch mixes transactions: {:?}",
            one.iter()
                .map(|(b, p)| (
                    summary(&b.changes),
                    b.changes.iter().map(tx_of).collect::<Vec<_>>(),
                    p
                ))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(summary(&changes(&one)), summary(&all));
    Ok(())
}

#[tokio::test]
async fn ids_are_the_same_when_replayed_from_a_checkpoint() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["t"]).await?;
    let start = src.prepare_log("replay", &ts).await?;
    server.query_in(
        &db,
        "INSERT INTO t VALUES (1, 1); BEGIN; INSERT INTO t VALUES (2, 2), (3, 3), (4, 4), (5, 5), (6, 6); COMMIT; UPDATE t SET v = 9 WHERE id = 1;",
    )?;
    let head = src.log_head().await?;
    let whole = changes(&read(&src, "replay", &ts, &start, &head, 100).await?);
    let ids: Vec<String> = whole.iter().map(|c| c.id().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 7);
    // In batches of 2 the five-row transaction is split; a batch ending inside
    // it keeps the position before it, so resuming there replays all of it.
    let small = read(&src, "replay", &ts, &start, &head, 2).await?;
    assert!(small.iter().all(|(b, _)| b.changes.len() <= 2));
    let small_ids: Vec<String> = changes(&small)
        .iter()
        .map(|c| c.id().unwrap().to_string())
        .collect();
    assert_eq!(small_ids, ids);
    let (_, after_first) = &small[0];
    let (_, inside) = &small[1];
    assert_eq!(
        after_first, inside,
        "a batch inside a transaction moved the position"
    );
    let replay = changes(&read(&src, "replay", &ts, inside, &head, 100).await?);
    let replay_ids: Vec<String> = replay.iter().map(|c| c.id().unwrap().to_string()).collect();
    assert_eq!(replay_ids, ids[1..].to_vec());
    assert_eq!(summary(&replay), summary(&whole[1..]));
    // From the end, nothing is left.
    let (_, last) = small.last().unwrap();
    assert!(changes(&read(&src, "replay", &ts, last, &head, 100).await?).is_empty());
    Ok(())
}

#[tokio::test]
async fn two_gtid_domains_resume_from_one_checkpoint() -> Res {
    let server = MariaDb::start()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(&db, "CREATE TABLE t (id INT PRIMARY KEY, d INT)")?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["t"]).await?;
    let start = src.prepare_log("domains", &ts).await?;
    server.query_in(
        &db,
        "INSERT INTO t VALUES (1, 0); SET SESSION gtid_domain_id = 2; INSERT INTO t VALUES (2, 2); INSERT INTO t VALUES (3, 2); SET SESSION gtid_domain_id = 0; INSERT INTO t VALUES (4, 0);",
    )?;
    let head = src.log_head().await?;
    let first = read(&src, "domains", &ts, &start, &head, 100).await?;
    assert_eq!(changes(&first).len(), 4);
    let checkpoint = first.last().unwrap().1.clone();
    let gtid = checkpoint.0["gtid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        gtid.contains("0-1-") && gtid.contains("2-1-"),
        "{checkpoint:?}"
    );
    // Both domains move on; resuming from the checkpoint reads exactly the new rows.
    server.query_in(
        &db,
        "SET SESSION gtid_domain_id = 2; INSERT INTO t VALUES (5, 2); SET SESSION gtid_domain_id = 0; INSERT INTO t VALUES (6, 0); SET SESSION gtid_domain_id = 2; INSERT INTO t VALUES (7, 2);",
    )?;
    let resume = src.resume("domains", &checkpoint, &ts).await?;
    assert!(resume.lost.is_empty(), "{:?}", resume.lost);
    assert_eq!(resume.from, checkpoint);
    let head = src.log_head().await?;
    let next = changes(&read(&src, "domains", &ts, &resume.from, &head, 100).await?);
    let ids: Vec<Option<Value>> = summary(&next).into_iter().map(|s| s.2).collect();
    assert_eq!(
        ids,
        vec![
            Some(Value::Int32(5)),
            Some(Value::Int32(6)),
            Some(Value::Int32(7))
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_purged_binlog_names_the_lost_tables_and_the_fix() -> Res {
    let server = MariaDb::start()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY); CREATE TABLE u (id INT PRIMARY KEY)",
    )?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["t", "u"]).await?;
    let checkpoint = src.prepare_log("purged", &ts).await?;
    assert!(src
        .resume("purged", &checkpoint, &ts)
        .await?
        .lost
        .is_empty());
    server.query_in(
        &db,
        "INSERT INTO t VALUES (1); FLUSH BINARY LOGS; INSERT INTO t VALUES (2); FLUSH BINARY LOGS;",
    )?;
    let current: String = {
        let status = server.query("SHOW MASTER STATUS")?;
        status
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    // MariaDB keeps a file until its binlog checkpoint passed it: retry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = server.query(&format!("PURGE BINARY LOGS TO '{current}'; SHOW WARNINGS"))?;
        let first = server.query("SHOW BINARY LOGS")?;
        if first.split_whitespace().next() == Some(current.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the binlog was never purged: {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let resume = src.resume("purged", &checkpoint, &ts).await?;
    let lost: Vec<String> = resume.lost.iter().map(|(t, _)| t.name.clone()).collect();
    assert_eq!(lost, vec!["t".to_string(), "u".to_string()]);
    for (_, e) in &resume.lost {
        assert_eq!(e.kind(), ErrorKind::PositionLost);
        assert!(
            e.to_string().contains("binlog_expire_logs_seconds")
                && !e.to_string().contains("PIPELINE"),
            "{e}"
        );
    }
    assert_ne!(resume.from, checkpoint);
    // Reading from the lost checkpoint fails the same way (error 1236).
    let arcs: Vec<Arc<TableSchema>> = ts.iter().cloned().map(Arc::new).collect();
    let mut stream = src.stream("purged", &arcs, &checkpoint).await?;
    let e = stream
        .next_batch(100, None, Some(std::time::Duration::from_secs(30)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PositionLost, "{e}");
    assert!(e.to_string().contains("`siphon sync resync purged`"), "{e}");
    Ok(())
}

#[tokio::test]
async fn start_checks_fail_with_their_fixes() -> Res {
    let minimal = MariaDb::start_with_args(&["--binlog-row-image=MINIMAL"])?;
    let url = minimal.create_database()?;
    let db = db_of(&url);
    minimal.query_in(&db, "CREATE TABLE t (id INT PRIMARY KEY)")?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["t"]).await?;
    let e = src.prepare_log("checks", &ts).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("binlog-row-image=FULL"), "{e}");
    drop(minimal);

    // A user without REPLICATION SLAVE is told the GRANT to run.
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY); CREATE TABLE k (v INT)",
    )?;
    let user = format!("reader_{db}");
    server.query(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON `{db}`.* TO '{user}'@'%'"
    ))?;
    let weak = url.replacen("root@", &format!("{user}:pw@"), 1);
    let src = MySqlSource::connect(&weak).await?;
    let ts = tables(&src, &db, &["t", "k"]).await?;
    let e = src.prepare_log("checks", &ts[..1]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Privilege);
    assert!(e.to_string().contains("GRANT REPLICATION SLAVE"), "{e}");
    // A table without a key is refused, with what to do.
    let e = src.check_log_table(&ts[1]).await.unwrap_err();
    assert!(e.to_string().contains("add a primary key"), "{e}");
    Ok(())
}

#[tokio::test]
async fn a_large_transaction_streams_in_bounded_batches() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(
        &db,
        "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(40))",
    )?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["big"]).await?;
    let start = src.prepare_log("big", &ts).await?;
    server.query_in(
        &db,
        "INSERT INTO big SELECT seq, REPEAT('x', 40) FROM seq_1_to_200000; INSERT INTO big VALUES (0, 'after');",
    )?;
    let head = src.log_head().await?;
    let arcs: Vec<Arc<TableSchema>> = ts.iter().cloned().map(Arc::new).collect();
    let mut stream = src.stream("big", &arcs, &start).await?;
    let max = 10_000;
    let (mut total, mut next_index, mut batches) = (0usize, 0u32, 0usize);
    let mut last_pos = start.clone();
    let mut mid: Option<Position> = None;
    while let Some((b, pos)) = stream.next_batch(max, Some(&head), None).await? {
        assert!(
            b.changes.len() <= max,
            "a batch of {} changes",
            b.changes.len()
        );
        batches += 1;
        for c in &b.changes {
            if total < 200_000 {
                assert_eq!(c.index, next_index);
                next_index += 1;
            }
            total += 1;
        }
        if total < 200_000 {
            // Inside the transaction: the position stays before it.
            let inside = mid.get_or_insert_with(|| pos.clone());
            assert_eq!(&pos, inside);
        }
        last_pos = pos;
    }
    stream.close().await?;
    assert_eq!(total, 200_001);
    assert!(batches >= 20, "{batches}");
    assert_ne!(Some(last_pos), mid);
    Ok(())
}

/// Every type, with extremes and NULLs: streamed values equal what a
/// snapshot (`read_chunk`) reads of the same rows.
#[tokio::test]
async fn every_type_streams_as_the_snapshot_reads_it() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(
        &db,
        "CREATE TABLE ty (id INT PRIMARY KEY, \
           b TINYINT(1), ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, \
           mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, \
           de DECIMAL(65,30), d2 DECIMAL(12,2), f FLOAT, dbl DOUBLE, \
           c CHAR(5), vc VARCHAR(50), tx TEXT, l1 VARCHAR(20) CHARACTER SET latin1, \
           bn BINARY(4), vb VARBINARY(20), bl BLOB, \
           dt DATE, tm TIME, tm6 TIME(6), dtt DATETIME, dt6 DATETIME(6), ts TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL, \
           y YEAR, e ENUM('small','large','x''y'), s SET('a','b','c'), j JSON, \
           b1 BIT(1), b12 BIT(12), b64 BIT(64), \
           g BIGINT AS (i + 1) VIRTUAL, gs BIGINT AS (i * 2) STORED)",
    )?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["ty"]).await?;
    let start = src.prepare_log("types", &ts).await?;
    server.query_in(
        &db,
        "SET NAMES utf8mb4; SET time_zone = '+05:30'; \
         INSERT INTO ty (id, b, ti, tu, si, su, mi, mu, i, iu, bi, bu, de, d2, f, dbl, c, vc, tx, l1, bn, vb, bl, dt, tm, tm6, dtt, dt6, ts, ts6, y, e, s, j, b1, b12, b64) VALUES \
         (1, 1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, \
          '-99999999999999999999999999999999999.999999999999999999999999999999', 1234567890.12, 1.5, 2.25e300, \
          'ab', 'emoji 😀 ok', 'long text', 'café €', x'00ff10', x'deadbeef', x'0102', \
          '2024-02-29', '-838:59:59', '25:00:00.000001', '2024-02-29 13:14:15', '1000-01-01 00:00:00.123456', '2038-01-19 03:14:07', '2001-02-03 04:05:06.654321', \
          2155, 'x''y', 'a,c', '{\"k\": [1, 2.5, \"s\", null, true]}', b'1', b'101010101010', b'1111111111111111111111111111111111111111111111111111111111111111'), \
         (2, 0, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0, 0, -0.01, -3.25, -1e-300, \
          '', '', '', '', x'', x'', x'', '1000-01-01', '00:00:00', '12:34:56.5', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999', '1970-01-01 05:30:01', '2038-01-19 03:14:07.999999', \
          1901, 'small', '', '[]', b'0', b'0', b'0'), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL); \
         UPDATE ty SET vc = 'changed' WHERE id = 2;",
    )?;
    let head = src.log_head().await?;
    let all = changes(&read(&src, "types", &ts, &start, &head, 100).await?);
    let snap = src.read_chunk(&ts[0], None, 100).await?.rows;
    assert_eq!(snap.len(), 3);
    assert_eq!(all.len(), 4);
    let mut streamed: Vec<Vec<Value>> = Vec::new();
    for c in &all[..3] {
        let Op::Insert(r) = &c.op else {
            panic!("{c:?}")
        };
        streamed.push(r.clone());
    }
    let Op::Update { after, .. } = &all[3].op else {
        panic!("{:?}", all[3])
    };
    streamed[1] = after.clone();
    let gen: Vec<usize> = ts[0]
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.generated)
        .map(|(i, _)| i)
        .collect();
    for (row, (s, want)) in streamed.iter().zip(&snap).enumerate() {
        for (i, col) in ts[0].columns.iter().enumerate() {
            if gen.contains(&i) && s[i] == Value::Null {
                // A virtual column the server does not log; never written on a target.
                continue;
            }
            assert_eq!(s[i], want[i], "row {} column {}", row + 1, col.name);
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_column_added_at_the_source_announces_the_new_shape() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["t"]).await?;
    let start = src.prepare_log("ddl", &ts).await?;
    server.query_in(&db, "INSERT INTO t VALUES (1, 1); ALTER TABLE t ADD COLUMN w VARCHAR(10) DEFAULT 'd'; INSERT INTO t VALUES (2, 2, 'two');")?;
    let head = src.log_head().await?;
    let all = changes(&read(&src, "ddl", &ts, &start, &head, 100).await?);
    assert_eq!(
        summary(&all).iter().map(|s| s.1).collect::<Vec<_>>(),
        vec!["insert", "schema", "insert"]
    );
    let Op::Schema(next) = &all[1].op else {
        panic!()
    };
    assert_eq!(next.columns.len(), 3);
    let Op::Insert(r) = &all[2].op else { panic!() };
    assert_eq!(
        r,
        &vec![Value::Int32(2), Value::Int32(2), Value::Text("two".into())]
    );
    assert_eq!(all[2].table.columns.len(), 3);
    // A dropped table stops the stream with what to do.
    server.query_in(&db, "DROP TABLE t")?;
    let head = src.log_head().await?;
    let e = read(
        &src,
        "ddl",
        &ts,
        &all.last().map(|_| start.clone()).unwrap(),
        &head,
        100,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("dropped or renamed"), "{e}");
    Ok(())
}

#[tokio::test]
async fn waiting_gives_up_when_idle_and_reads_on_afterwards() -> Res {
    let server = MariaDb::shared()?;
    let url = server.create_database()?;
    let db = db_of(&url);
    server.query_in(&db, "CREATE TABLE t (id INT PRIMARY KEY)")?;
    let src = MySqlSource::connect(&url).await?;
    let ts = tables(&src, &db, &["t"]).await?;
    let start = src.prepare_log("wait", &ts).await?;
    let arcs: Vec<Arc<TableSchema>> = ts.iter().cloned().map(Arc::new).collect();
    let mut stream = src.stream("wait", &arcs, &start).await?;
    // Nothing of this table yet: every call within `wait` ends without a
    // change (an empty batch may move the checkpoint past other tables).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match stream
            .next_batch(10, None, Some(std::time::Duration::from_millis(300)))
            .await?
        {
            None => break,
            Some((b, _)) => assert!(b.changes.is_empty(), "{:?}", b.changes),
        }
        assert!(std::time::Instant::now() < deadline, "never idle");
    }
    server.query_in(&db, "INSERT INTO t VALUES (42)")?;
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the insert never came"
        );
        if let Some((b, _)) = stream
            .next_batch(10, None, Some(std::time::Duration::from_secs(5)))
            .await?
        {
            got.extend(b.changes);
        }
    }
    assert_eq!(
        summary(&got),
        vec![("t".into(), "insert", Some(Value::Int32(42)))]
    );
    stream.close().await?;
    Ok(())
}
