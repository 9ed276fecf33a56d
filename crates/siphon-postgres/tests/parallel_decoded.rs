//! Parallel full loads (`parallel: 4`) on the decoded path, where rows are
//! decoded and written by value rather than passed through in PostgreSQL's
//! binary encoding: to SQLite (one writer, reads in parallel) and to a
//! PostgreSQL table whose column types differ from the source's. A load stopped
//! inside its ranges resumes each range from its own progress, kept in the
//! snapshot checkpoint's `ranges`, and copies every row exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};

use siphon_core::{
    ExecutionStatus, KeyRange, Phase, PipelineSpec, Position, Sink, Source, StreamId, TableFilter,
    TableName, Value,
};
use siphon_engine::{run_pass, table_checksum, NoopObserver, Observer, Shutdown, TableChecksum};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_sqlite::{SqliteSink, SqliteSource};
use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;

const ROWS: i64 = 12_000;

/// Requests a stop once `left` chunks committed.
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

fn spec() -> PipelineSpec {
    serde_json::from_str(
        r#"{"source":"a","target":"b","mode":"full","tables":["public.items"],"batch_size":250,
            "parallel":4}"#,
    )
    .unwrap()
}

async fn checksum<S: Source>(s: &S, table: &str) -> TableChecksum {
    let filter = TableFilter {
        include: vec![table.into()],
        exclude: vec![],
    };
    let schema = s.discover(&filter).await.unwrap().pop().unwrap();
    table_checksum(s, &schema, 997).await.unwrap()
}

/// The ids the target holds, read with the target's own source.
async fn target_ids<S: Source>(target: &S, table: &str) -> Vec<i64> {
    let filter = TableFilter {
        include: vec![table.into()],
        exclude: vec![],
    };
    let schema = target.discover(&filter).await.unwrap().pop().unwrap();
    siphon_testkit::conformance::read_all(target, &schema, 1000)
        .await
        .into_iter()
        .map(|r| match r[0] {
            Value::Int64(id) => id,
            ref v => panic!("id {v:?}"),
        })
        .collect()
}

/// A source database with `items` (`v` declared as `v_type`) of ROWS rows.
fn source_db(pg: &Postgres, v_type: &str) -> String {
    let url = pg.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap();
    pg.query_in(
        db,
        &format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, v {v_type}, n integer);
             INSERT INTO items SELECT i, 'item ' || i, i % 1000 FROM generate_series(1, {ROWS}) i;"
        ),
    )
    .unwrap();
    url
}

/// Loads `items` with four workers, stops it after 12 chunks, checks what the
/// checkpoint claims against what `target` holds, resumes the load to its end
/// and checks the target holds every source row once. Returns the ranges the
/// stopped load's checkpoint held.
async fn stop_and_resume<K: Sink, T: Source>(
    source: &PostgresSource,
    sink: &K,
    target: &T,
    target_table: &str,
) -> Vec<KeyRange> {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let spec = spec();
    let stop = StopAfter {
        left: AtomicUsize::new(12),
        shutdown: Shutdown::new(),
    };
    let report = run_pass("p", &spec, source, sink, &state, &stop, &stop.shutdown)
        .await
        .unwrap();
    let t = &report.tables[0];
    assert_eq!(t.status, ExecutionStatus::Stopped, "{t:?}");
    let ids = target_ids(target, target_table).await;
    let copied = ids.len() as i64;
    // At least a row per committed chunk, not all (the first chunks of a
    // table with an unbounded column are small, see the 16 MiB budget).
    assert!((12..ROWS).contains(&copied), "{copied}");
    assert_eq!(t.rows_read, copied as u64, "{t:?}");

    // The checkpoint holds the progress of four ranges, as a typed part of the
    // snapshot phase, and claims no row the target lacks.
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
    assert_eq!(ranges.len(), 4, "{ranges:?}");
    let key = |p: &Option<Position>| p.as_ref().and_then(|p| p.0["key"][0]["value"].as_i64());
    let mut start = 0;
    let mut claimed = 0;
    let mut advanced = 0;
    for r in &ranges {
        let progress = key(&r.after).unwrap_or(start);
        let present = ids
            .iter()
            .filter(|&&id| id > start && id <= progress)
            .count() as i64;
        assert_eq!(present, progress - start, "{ranges:?}");
        if progress > start {
            advanced += 1;
        }
        claimed += progress - start;
        start = key(&r.until).unwrap_or(i64::MAX);
    }
    assert!(
        advanced >= 2,
        "only {advanced} ranges were loaded: {ranges:?}"
    );
    assert!(claimed > 0 && claimed <= copied, "{claimed} {copied}");

    // Resumed, every range goes on from its own progress; none starts over.
    let report = run_pass(
        "p",
        &spec,
        source,
        sink,
        &state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    let t = &report.tables[0];
    assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    assert!(t.rows_read <= (ROWS - claimed) as u64, "{t:?}");
    let mut ids = target_ids(target, target_table).await;
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=ROWS).collect::<Vec<_>>(),
        "every row exactly once"
    );
    let done = sink
        .checkpoint(&StreamId::new("p", &TableName::parse("public.items")))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(done.phase, Phase::Streaming { .. }), "{done:?}");
    ranges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_load_to_sqlite_reads_ranges_in_parallel_and_resumes_each() {
    let pg = Postgres::shared().unwrap();
    let src = source_db(pg, "text");
    let source = PostgresSource::connect(&src).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.db");
    let sink = SqliteSink::open(&path).unwrap();
    // The file exists once the sink opened it.
    let target = SqliteSource::open(&path).unwrap();
    stop_and_resume(&source, &sink, &target, "items").await;
    assert_eq!(
        checksum(&source, "public.items").await,
        checksum(&target, "items").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_postgres_load_with_other_column_types_is_decoded_and_resumes_each_range() {
    let pg = Postgres::shared().unwrap();
    let src = source_db(pg, "varchar(50)");
    let dst = pg.create_database().unwrap();
    // A wider type on the target: the rows cannot pass through in binary.
    pg.query_in(
        dst.rsplit('/').next().unwrap(),
        "CREATE TABLE items (id bigint PRIMARY KEY, v text, n integer);",
    )
    .unwrap();
    let source = PostgresSource::connect(&src).await.unwrap();
    let sink = PostgresSink::connect(&dst).await.unwrap();
    let target = PostgresSource::connect(&dst).await.unwrap();
    stop_and_resume(&source, &sink, &target, "public.items").await;
    let digest = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) || ' ' || count(*) FROM items t";
    assert_eq!(
        pg.query_in(dst.rsplit('/').next().unwrap(), digest)
            .unwrap(),
        pg.query_in(src.rsplit('/').next().unwrap(), digest)
            .unwrap()
    );
}
