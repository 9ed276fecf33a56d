//! Tables whose names display alike (`"a"."b.c"` and `"a.b"."c"` both read
//! `a.b.c`) keep checkpoints of their own on PostgreSQL and SQLite targets, and
//! checkpoint rows an older siphon keyed by display form are moved on connect.

use std::sync::atomic::{AtomicUsize, Ordering};

use siphon_core::{
    Checkpoint, ExecutionStatus, Phase, PipelineSpec, Sink, Source, StreamId, TableFilter,
    TableName,
};
use siphon_engine::{run_pass, table_checksum, Observer, Shutdown, TableChecksum};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_sqlite::{SqliteSink, SqliteSource};
use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;

fn db(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// Two tables of 1,000 rows whose names display as `a.b.c`, with different
/// rows. Their columns are bounded, so every chunk holds `batch_size` rows (a
/// table with an unbounded column starts with smaller ones).
const TWO_TABLES: &str = r#"
    CREATE SCHEMA a;
    CREATE SCHEMA "a.b";
    CREATE TABLE a."b.c" (id bigint PRIMARY KEY, note varchar(40));
    CREATE TABLE "a.b".c (id bigint PRIMARY KEY, note varchar(40));
    INSERT INTO a."b.c" SELECT i, 'first ' || i FROM generate_series(1, 1000) i;
    INSERT INTO "a.b".c SELECT i, 'second ' || i FROM generate_series(1, 1000) i;
"#;

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

/// Runs a pass that stops after `chunks` chunks (none: to the end), and returns
/// each table's status and rows read.
async fn pass<S: Source, K: Sink>(
    spec: &PipelineSpec,
    source: &S,
    sink: &K,
    state: &SqliteStateStore,
    chunks: Option<usize>,
) -> Vec<(TableName, ExecutionStatus, u64)> {
    let stop = StopAfter {
        left: AtomicUsize::new(chunks.unwrap_or(usize::MAX)),
        shutdown: Shutdown::new(),
    };
    let report = run_pass("p", spec, source, sink, state, &stop, &stop.shutdown)
        .await
        .unwrap();
    for t in &report.tables {
        assert_ne!(t.status, ExecutionStatus::Failed, "{t:?}");
    }
    report
        .tables
        .into_iter()
        .map(|t| (t.table, t.status, t.rows_read))
        .collect()
}

async fn checksum<S: Source>(s: &S, name: &TableName) -> TableChecksum {
    let all = TableFilter {
        include: vec!["*".into()],
        exclude: vec![],
    };
    let schema = s
        .discover(&all)
        .await
        .unwrap()
        .into_iter()
        .find(|t| &t.name == name)
        .unwrap_or_else(|| panic!("no table {name:?}"));
    table_checksum(s, &schema, 997).await.unwrap()
}

/// Copies both tables, one after the other (`max_parallel: 1`), in chunks of
/// 100 rows with two interruptions: the first inside the first table, the
/// second inside the second one after the first finished. `batch_size` gives chunks of 100 rows on the sink's path (the
/// native path reads several batches a chunk). Returns the source's two names.
async fn copy_with_interruptions<K: Sink>(
    src_url: &str,
    sink: &K,
    state: &SqliteStateStore,
    batch_size: usize,
    rows_on_target: impl Fn(&TableName) -> i64,
) -> [TableName; 2] {
    let source = PostgresSource::connect(src_url).await.unwrap();
    let spec: PipelineSpec = serde_json::from_str(&format!(
        r#"{{"source":"a","target":"b","mode":"full","tables":["*"],"batch_size":{batch_size},"max_parallel":1}}"#
    ))
    .unwrap();
    let first = TableName::new(Some("a"), "b.c");
    let second = TableName::new(Some("a.b"), "c");

    use ExecutionStatus::{Stopped, Succeeded};
    let stopped = pass(&spec, &source, sink, state, Some(3)).await;
    assert_eq!(
        stopped,
        [(first.clone(), Stopped, 300), (second.clone(), Stopped, 0)]
    );
    assert_eq!(rows_on_target(&first), 300);
    // The first table's 700 rows left, then 300 of the second.
    let stopped = pass(&spec, &source, sink, state, Some(10)).await;
    assert_eq!(
        stopped,
        [
            (first.clone(), Succeeded, 700),
            (second.clone(), Stopped, 300)
        ]
    );
    assert_eq!(rows_on_target(&second), 300);
    // The second resumes from its own checkpoint, not from the first table's.
    let done = pass(&spec, &source, sink, state, None).await;
    // (A pass copies a complete full table again.)
    assert_eq!(
        done,
        [
            (first.clone(), Succeeded, 1000),
            (second.clone(), Succeeded, 700)
        ]
    );
    for t in [&first, &second] {
        let cp = sink
            .checkpoint(&StreamId::new("p", t))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&cp.stream.table, t);
        assert!(matches!(cp.phase, Phase::Streaming { .. }), "{cp:?}");
    }
    [first, second]
}

#[tokio::test]
async fn tables_that_display_alike_resume_on_their_own_into_postgres() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let (src_db, dst_db) = (db(&src_url), db(&dst_url));
    pg.query_in(&src_db, TWO_TABLES).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    let sql_name = |t: &TableName| {
        format!(
            "\"{}\".\"{}\"",
            t.schema.as_deref().unwrap(),
            t.name.replace('"', "\"\"")
        )
    };
    let count = |t: &TableName| -> i64 {
        pg.query_in(&dst_db, &format!("SELECT count(*) FROM {}", sql_name(t)))
            .unwrap()
            .parse()
            .unwrap()
    };
    let names = copy_with_interruptions(&src_url, &sink, &state, 25, count).await;
    for t in &names {
        let dump = format!(
            "SELECT md5(string_agg(t::text, ',' ORDER BY id)) || ' ' || count(*) FROM {} t",
            sql_name(t)
        );
        assert_eq!(
            pg.query_in(&dst_db, &dump).unwrap(),
            pg.query_in(&src_db, &dump).unwrap(),
            "{t:?}"
        );
    }
    let keys = pg
        .query_in(
            &dst_db,
            "SELECT string_agg(tbl || ' ' || key_version, ', ' ORDER BY tbl) FROM public.siphon_checkpoints",
        )
        .unwrap();
    assert_eq!(keys, r#""a"."b.c" 2, "a.b"."c" 2"#);
}

#[tokio::test]
async fn tables_that_display_alike_resume_on_their_own_into_sqlite() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    pg.query_in(&db(&src_url), TWO_TABLES).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let path = dir.path().join("target.db");
    let sink = SqliteSink::open(&path).unwrap();
    let count = |t: &TableName| -> i64 {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row(&format!("SELECT count(*) FROM \"{}\"", t.name), [], |r| {
            r.get(0)
        })
        .unwrap_or(0)
    };
    let names = copy_with_interruptions(&src_url, &sink, &state, 100, count).await;
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let target = SqliteSource::open(&path).unwrap();
    for t in &names {
        let on_target = TableName::new(None, &t.name);
        let want = checksum(&source, t).await;
        assert_eq!(want.rows, 1000);
        assert_eq!(checksum(&target, &on_target).await, want, "{t:?}");
    }
}

/// `public.siphon_checkpoints` as an older siphon made it, with a row for an
/// ordinary name, one for a name with a quote and one two tables shared: on
/// connect (by two sinks at once) the first stays, the second is renamed and
/// the third is removed; connecting again moves nothing.
#[tokio::test]
async fn display_keys_an_older_siphon_wrote_are_moved_once() {
    let pg = Postgres::shared().unwrap();
    let url = pg.create_database().unwrap();
    let name = db(&url);
    let stream =
        |schema: &str, table: &str| StreamId::new("p", &TableName::new(Some(schema), table));
    let (orders, quoted) = (stream("public", "orders"), stream("x\"y", "z"));
    let (a_bc, ab_c) = (stream("a", "b.c"), stream("a.b", "c"));
    let cp = |s: &StreamId| Checkpoint {
        stream: s.clone(),
        epoch: 0,
        phase: Phase::Streaming { position: None },
    };
    let mut legacy = String::from(
        "CREATE TABLE public.siphon_checkpoints (pipeline text NOT NULL, tbl text NOT NULL, \
         checkpoint text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, tbl));",
    );
    for s in [&orders, &quoted, &a_bc] {
        let json = serde_json::to_string(&cp(s)).unwrap();
        legacy.push_str(&format!(
            "INSERT INTO public.siphon_checkpoints (pipeline, tbl, checkpoint) VALUES ('p', '{}', '{}');",
            s.table.to_string().replace('\'', "''"),
            json.replace('\'', "''")
        ));
    }
    pg.query_in(&name, &legacy).unwrap();

    let (one, two) = tokio::join!(PostgresSink::connect(&url), PostgresSink::connect(&url));
    let (sink, _other) = (one.unwrap(), two.unwrap());
    assert_eq!(sink.checkpoint(&orders).await.unwrap(), Some(cp(&orders)));
    assert_eq!(sink.checkpoint(&quoted).await.unwrap(), Some(cp(&quoted)));
    assert_eq!(sink.checkpoint(&a_bc).await.unwrap(), None);
    assert_eq!(sink.checkpoint(&ab_c).await.unwrap(), None);
    let rows =
        "SELECT string_agg(tbl || ' ' || coalesce(key_version::text, '-'), ', ' ORDER BY tbl) \
                FROM public.siphon_checkpoints";
    assert_eq!(
        pg.query_in(&name, rows).unwrap(),
        r#""x""y"."z" 2, public.orders 2"#
    );

    // Rows under new keys are never taken for old ones.
    for s in [&a_bc, &ab_c] {
        let empty = siphon_core::Batch { changes: vec![] };
        sink.apply(empty, &cp(s)).await.unwrap();
    }
    let again = PostgresSink::connect(&url).await.unwrap();
    for s in [&orders, &quoted, &a_bc, &ab_c] {
        assert_eq!(again.checkpoint(s).await.unwrap(), Some(cp(s)), "{s}");
    }
}
