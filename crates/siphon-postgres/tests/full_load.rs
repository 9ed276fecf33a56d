//! Full loads between two PostgreSQL databases against a real server from the
//! testkit: rows pass through in binary without being decoded when every column
//! has the same type on both sides, and a parallel load over key ranges that is
//! stopped halfway resumes every range.

use std::sync::atomic::{AtomicUsize, Ordering};

use siphon_core::{
    Checkpoint, ExecutionStatus, Phase, PipelineSpec, Position, SchemaOptions, Sink, Source,
    StreamId, TableFilter, TableName, TableSchema,
};
use siphon_engine::{run_pass, NoopObserver, Observer, Shutdown};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;

fn db(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

async fn table<S: Source>(s: &S, name: &str) -> TableSchema {
    let filter = TableFilter {
        include: vec![name.into()],
        exclude: vec![],
    };
    s.discover(&filter).await.unwrap().pop().unwrap()
}

fn options() -> SchemaOptions {
    serde_json::from_str(r#"{"create":true,"evolve":true,"indexes":true}"#).unwrap()
}

fn checkpoint(table: &str, last: &Position) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new("p", &TableName::parse(table)),
        epoch: 0,
        phase: Phase::Snapshot {
            last_key: Some(last.clone()),
            resume_position: None,
            ranges: Vec::new(),
            shadow: None,
        },
    }
}

const DUMP: &str = "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY id), '') FROM items t";

#[tokio::test]
async fn rows_pass_through_only_when_every_column_type_matches() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let (src_db, dst_db) = (db(&src_url), db(&dst_url));
    // inet and point have no codec in siphon: they pass through all the same.
    pg.query_in(
        &src_db,
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
         CREATE TABLE items (id bigint PRIMARY KEY, price numeric(12,2), feeling mood, tags integer[],
           addr inet, at point, note text, doc jsonb);
         INSERT INTO items SELECT i, i * 0.25, (ARRAY['sad','ok','happy']::mood[])[1 + i % 3],
           ARRAY[i, NULL], ('10.0.0.' || i % 250)::inet, point(i, -i),
           CASE WHEN i % 4 = 0 THEN NULL ELSE 'note ✓ ' || i END, jsonb_build_object('i', i)
         FROM generate_series(1, 1000) i;
         CREATE TABLE counted (id integer PRIMARY KEY, n positive);
         INSERT INTO counted VALUES (1, 1);",
    )
    .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();

    let items = table(&source, "public.items").await;
    let format = source
        .native_format(&items)
        .await
        .unwrap()
        .expect("every column of items has a portable binary format");
    sink.prepare(&items, &options()).await.unwrap();
    assert!(sink.accepts_native(&items, &format).await.unwrap());
    // A domain's OID differs from one database to the next: no native path.
    let counted = table(&source, "public.counted").await;
    assert_eq!(source.native_format(&counted).await.unwrap(), None);

    // Read in chunks and ranges, load as read: the target equals the source.
    let first = source.read_native(&items, None, None, 400).await.unwrap();
    assert_eq!(first.rows, 400);
    let last = first.last.clone().unwrap();
    assert_eq!(last.0["key"][0]["value"], 400);
    let done = sink
        .load_native(&items, first, &checkpoint("public.items", &last))
        .await
        .unwrap();
    assert_eq!((done.inserted, done.updated), (400, 0));
    let cuts = source.split_keys(&items, 2).await.unwrap();
    assert_eq!(cuts.len(), 1);
    let middle = source
        .read_native(&items, Some(&last), Some(&cuts[0]), 1000)
        .await
        .unwrap();
    let cut: i64 = cuts[0].0["key"][0]["value"].as_i64().unwrap();
    assert_eq!(middle.rows as i64, cut - 400);
    let rest = source
        .read_native(&items, Some(&cuts[0]), None, 1000)
        .await
        .unwrap();
    assert_eq!(rest.rows as i64, 1000 - cut);
    assert_eq!(rest.last.as_ref().unwrap().0["key"][0]["value"], 1000);
    for chunk in [middle, rest] {
        let last = chunk.last.clone().unwrap();
        sink.load_native(&items, chunk, &checkpoint("public.items", &last))
            .await
            .unwrap();
    }
    assert_eq!(
        pg.query_in(&dst_db, DUMP).unwrap(),
        pg.query_in(&src_db, DUMP).unwrap()
    );
    let saved = sink
        .checkpoint(&StreamId::new("p", &TableName::parse("public.items")))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(saved.phase, Phase::Snapshot { last_key: Some(ref k), .. } if k.0["key"][0]["value"] == 1000)
    );

    // Rows whose keys are there already are upserted, not refused.
    pg.query_in(&src_db, "UPDATE items SET note = 'changed' WHERE id <= 10")
        .unwrap();
    let again = source.read_native(&items, None, None, 10).await.unwrap();
    let last = again.last.clone().unwrap();
    let done = sink
        .load_native(&items, again, &checkpoint("public.items", &last))
        .await
        .unwrap();
    assert_eq!((done.inserted, done.updated), (0, 10));
    assert_eq!(
        pg.query_in(&dst_db, DUMP).unwrap(),
        pg.query_in(&src_db, DUMP).unwrap()
    );

    // A target column of another type (a different numeric scale) refuses the
    // native rows: they would not mean the same there.
    let other_url = pg.create_database().unwrap();
    pg.query_in(
        &db(&other_url),
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE items (id bigint PRIMARY KEY, price numeric(14,4), feeling mood, tags integer[],
           addr inet, at point, note text, doc jsonb);",
    )
    .unwrap();
    let other = PostgresSink::connect(&other_url).await.unwrap();
    other.prepare(&items, &options()).await.unwrap();
    assert!(!other.accepts_native(&items, &format).await.unwrap());
}

/// Stops the pass once `left` chunks have committed.
struct StopAfter {
    left: AtomicUsize,
    shutdown: Shutdown,
}

impl Observer for StopAfter {
    fn rows_committed(&self, _stream: &StreamId, _rows: u64) {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shutdown.request();
        }
    }
}

#[tokio::test]
async fn a_parallel_load_stopped_halfway_resumes_every_range() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let (src_db, dst_db) = (db(&src_url), db(&dst_url));
    pg.query_in(
        &src_db,
        "CREATE TABLE items (id bigint PRIMARY KEY, price numeric(12,2), note text);
         INSERT INTO items SELECT i, i * 0.25, 'note ' || i FROM generate_series(1, 12000) i;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let spec: PipelineSpec = serde_json::from_str(
        r#"{"source":"a","target":"b","mode":"full","tables":["public.items"],"batch_size":250,
            "tables_config":{"public.items":{"parallel":3}}}"#,
    )
    .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();

    let stop = StopAfter {
        left: AtomicUsize::new(12),
        shutdown: Shutdown::new(),
    };
    let report = run_pass("p", &spec, &source, &sink, &state, &stop, &stop.shutdown)
        .await
        .unwrap();
    assert_eq!(report.tables[0].status, ExecutionStatus::Stopped);
    let copied: i64 = pg
        .query_in(&dst_db, "SELECT count(*) FROM items")
        .unwrap()
        .parse()
        .unwrap();
    // At least a row per committed chunk, not all (the first chunks of a
    // table with an unbounded column are small, see the 16 MiB budget).
    assert!((12..12000).contains(&copied), "{copied}");
    // The stopped pass reports the rows its workers committed.
    assert_eq!(report.tables[0].rows_read, copied as u64);

    // The checkpoint holds the progress of three ranges, and never more than
    // the target has: every key up to a range's progress is there.
    let saved = sink
        .checkpoint(&StreamId::new("p", &TableName::parse("public.items")))
        .await
        .unwrap()
        .unwrap();
    let Phase::Snapshot {
        last_key: None,
        ranges,
        ..
    } = saved.phase
    else {
        panic!("not a snapshot checkpoint over key ranges: {saved:?}");
    };
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    let key = |v: &Option<Position>| v.as_ref().and_then(|p| p.0["key"][0]["value"].as_i64());
    let mut start = 0;
    let mut claimed = 0;
    for r in &ranges {
        let progress = key(&r.after).unwrap_or(start);
        let present: i64 = pg
            .query_in(
                &dst_db,
                &format!("SELECT count(*) FROM items WHERE id > {start} AND id <= {progress}"),
            )
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(present, progress - start, "{ranges:?}");
        claimed += progress - start;
        start = key(&r.until).unwrap_or(i64::MAX);
    }
    assert!(claimed > 0 && claimed <= copied, "{claimed} {copied}");

    // Resumed, every range goes on from its own progress; none starts over.
    let report = run_pass(
        "p",
        &spec,
        &source,
        &sink,
        &state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    let t = &report.tables[0];
    assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    assert!(t.rows_read <= 12000 - claimed as u64, "{t:?}");
    let dump = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) || ' ' || count(*) FROM items t";
    assert_eq!(
        pg.query_in(&dst_db, dump).unwrap(),
        pg.query_in(&src_db, dump).unwrap()
    );
    let done = sink
        .checkpoint(&StreamId::new("p", &TableName::parse("public.items")))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(done.phase, Phase::Streaming { .. }), "{done:?}");
}
