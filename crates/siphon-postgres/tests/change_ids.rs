//! Changes read from PostgreSQL's log carry their transaction (commit LSN,
//! commit time, replication origin) and an index in it, so that their ids are
//! the same on every read of the log: in batches of any size, after a reopen
//! in the middle of a transaction, and whether or not the server streamed the
//! transaction before it committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use siphon_core::{
    Change, ChangeStream, LogSource, Op, Position, Source, TableFilter, TableSchema,
};
use siphon_postgres::{log_name, PostgresSource};
use siphon_testkit::Postgres;

/// A change as the test compares it: its id, its transaction's commit time and
/// origin, and its operation.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    table: String,
    tx: String,
    index: u32,
    commit_time: Option<DateTime<Utc>>,
    origin: Option<String>,
    op: Op,
}

fn seen(c: &Change) -> Seen {
    let id = c
        .id()
        .unwrap_or_else(|| panic!("a logged change without an id: {c:?}"));
    let tx = c.tx.as_ref().unwrap();
    Seen {
        table: c.table.name.name.clone(),
        tx: id.transaction.0.to_string(),
        index: id.index,
        commit_time: tx.commit_time,
        origin: tx.origin.clone(),
        op: c.op.clone(),
    }
}

/// Reads the log from `from` to `until` in batches of `max`. With `reopen_at`,
/// drops the stream (no close, nothing confirmed: as a crash would) once it has
/// returned a batch that ends inside a transaction after that many changes,
/// and reads on from the last position returned. Returns the changes in
/// order (the interrupted transaction once, as the reopened stream read it),
/// and what the first stream had returned of that transaction.
async fn read(
    source: &PostgresSource,
    pipeline: &str,
    tables: &[Arc<TableSchema>],
    from: &Position,
    until: &Position,
    max: usize,
    reopen_at: Option<usize>,
) -> (Vec<Seen>, Vec<Seen>) {
    let mut out: Vec<Seen> = Vec::new();
    let mut stream = source.stream(pipeline, tables, from).await.unwrap();
    let mut partial = Vec::new();
    let mut last = from.clone();
    while let Some((batch, pos)) = stream.next_batch(max, Some(until), None).await.unwrap() {
        let changes: Vec<Seen> = batch.changes.iter().map(seen).collect();
        // A batch whose position did not move ended inside a transaction.
        let inside = !changes.is_empty() && pos == last;
        out.extend(changes);
        last = pos;
        if partial.is_empty() && inside && reopen_at.is_some_and(|n| out.len() >= n) {
            drop(stream);
            // The replay starts at the transaction's first change again: keep
            // what came before it only.
            let tx = out.last().unwrap().tx.clone();
            let at = out.iter().position(|s| s.tx == tx).unwrap();
            partial = out.split_off(at);
            stream = source.stream(pipeline, tables, &last).await.unwrap();
        }
    }
    stream.close().await.unwrap();
    (out, partial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_changes_carry_the_same_ids() {
    let pg = Postgres::shared().unwrap();
    let url = pg.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    let pipeline = db.clone();
    pg.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (0, 'seed');
         CREATE TABLE u (id int PRIMARY KEY);",
    )
    .unwrap();
    let source = PostgresSource::connect(&url).await.unwrap();
    let filter = TableFilter {
        include: vec!["public.t".into(), "public.u".into()],
        exclude: vec![],
    };
    let schemas = source.discover(&filter).await.unwrap();
    let start = source.prepare_log(&pipeline, &schemas).await.unwrap();
    let origin = format!("siphon_ids_{db}");

    let before = Utc::now();
    for i in 1..=3 {
        pg.query_in(&db, &format!("INSERT INTO t VALUES ({i}, 'small')"))
            .unwrap();
    }
    // A large transaction (beyond 64 kB of changes: streamed by a session with
    // a small logical_decoding_work_mem), with updates that change the key
    // (each a delete and an insert), and a rolled back subtransaction.
    pg.query_in(
        &db,
        "BEGIN;
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(100, 2099) g;
         SAVEPOINT s;
         INSERT INTO t SELECT g, 'rolled back' FROM generate_series(5000, 5999) g;
         ROLLBACK TO s;
         UPDATE t SET id = id + 10000 WHERE id % 250 = 0 AND id >= 100;
         DELETE FROM t WHERE id BETWEEN 200 AND 209;
         COMMIT;",
    )
    .unwrap();
    // A transaction committed by a session with a replication origin.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for sql in [
        format!("SELECT pg_replication_origin_create('{origin}')"),
        format!("SELECT pg_replication_origin_session_setup('{origin}')"),
        "INSERT INTO t VALUES (3000, 'from elsewhere'), (3001, 'from elsewhere')".to_string(),
        "SELECT pg_replication_origin_session_reset()".to_string(),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    // A transaction over both tables.
    pg.query_in(
        &db,
        "BEGIN; INSERT INTO u VALUES (1); UPDATE t SET v = 'last' WHERE id = 1; COMMIT;",
    )
    .unwrap();
    let after = Utc::now();
    let until = source.log_head().await.unwrap();
    let tables: Vec<Arc<TableSchema>> = schemas.into_iter().map(Arc::new).collect();

    // Whole, in large batches, the large transaction sent at its commit.
    let (whole, _) = read(&source, &pipeline, &tables, &start, &until, 10_000, None).await;
    // In batches of 7, streamed before its commit, with a crash-like reopen
    // inside the large transaction, and for table t only (u's changes are
    // skipped): t's changes keep their ids.
    let streaming_url = format!("{url}?options=-c%20logical_decoding_work_mem%3D64kB");
    let streaming = PostgresSource::connect(&streaming_url).await.unwrap();
    let only_t: Vec<Arc<TableSchema>> = tables
        .iter()
        .filter(|t| t.name.name == "t")
        .cloned()
        .collect();
    let (split, partial) = read(&streaming, &pipeline, &only_t, &start, &until, 7, Some(500)).await;
    // What the first session returned of the transaction it was reading when
    // dropped is what the reopened one returned first of it.
    assert!(
        partial.len() > 7,
        "the second read was not reopened inside a large transaction: {partial:?}"
    );
    assert_eq!(partial[0].index, 0);
    let at = split
        .iter()
        .position(|s| s.tx == partial[0].tx)
        .expect("the interrupted transaction was read again");
    assert_eq!(
        &split[at..at + partial.len()],
        &partial[..],
        "the replay after the reopen gave the same changes other ids"
    );
    let streamed: i64 = pg
        .query(&format!(
            "SELECT coalesce(stream_txns, 0) FROM pg_stat_replication_slots WHERE slot_name = '{}'",
            log_name(&pipeline)
        ))
        .unwrap()
        .parse()
        .unwrap_or(0);
    source.drop_log(&pipeline).await.unwrap();
    // The origin's name is looked up when the log is read: dropped only now.
    client
        .batch_execute(&format!("SELECT pg_replication_origin_drop('{origin}')"))
        .await
        .unwrap();

    // 3 + 2000 inserts, 8 key changes (250, 500, …, 2000) as a delete and an
    // insert each, 10 deletes, 2 inserts, 1 insert into u and 1 update.
    assert_eq!(whole.len(), 3 + 2000 + 16 + 10 + 2 + 1 + 1);
    let whole_t: Vec<Seen> = whole.iter().filter(|s| s.table == "t").cloned().collect();
    assert_eq!(
        whole_t, split,
        "the changes got other ids, times or origins on the second read"
    );
    assert!(
        streamed >= 1,
        "PostgreSQL streamed {streamed} transactions: the test did not read a streamed one"
    );

    // Ids are unique, and each transaction's indexes count from 0 in log order.
    let mut per_tx: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for s in &whole {
        per_tx.entry(&s.tx).or_default().push(s.index);
    }
    assert_eq!(per_tx.len(), 3 + 1 + 1 + 1, "{:?}", per_tx.keys());
    for (tx, indexes) in &per_tx {
        let want: Vec<u32> = (0..indexes.len() as u32).collect();
        assert_eq!(indexes, &want, "indexes of transaction {tx}");
    }
    // The transaction's position is in the stream's position form.
    let start_lsn = start.0["lsn"].as_str().unwrap().to_string();
    for tx in per_tx.keys() {
        let p: serde_json::Value = serde_json::from_str(tx).unwrap();
        let lsn = p["lsn"].as_str().unwrap();
        let later: String = pg
            .query(&format!("SELECT '{lsn}'::pg_lsn > '{start_lsn}'::pg_lsn"))
            .unwrap();
        assert_eq!(later, "t", "transaction position {tx} after {start_lsn}");
    }
    // Commit times within the test's writes; the origin only where set.
    let by_tx: HashMap<&str, &Seen> = whole.iter().map(|s| (s.tx.as_str(), s)).collect();
    for s in by_tx.values() {
        let t = s.commit_time.expect("a commit time");
        assert!(
            t >= before - chrono::Duration::seconds(1) && t <= after + chrono::Duration::seconds(1),
            "commit time {t} outside {before} .. {after}"
        );
    }
    for s in &whole {
        let from_elsewhere = matches!(&s.op, Op::Insert(r) if r[0] == siphon_core::Value::Int32(3000) || r[0] == siphon_core::Value::Int32(3001));
        let want = from_elsewhere.then(|| origin.clone());
        assert_eq!(s.origin, want, "origin of {:?}", s.op);
    }
}
