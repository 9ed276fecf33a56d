//! Incremental polling by a timestamp cursor without `lookback`: a row that an
//! open transaction wrote with an older cursor value and a lower key than a row
//! already read is still copied once that transaction commits.

use siphon_core::{ExecutionStatus, PipelineSpec, Source};
use siphon_engine::{run_pass, NoopObserver, Shutdown};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;
use tokio_postgres::{Client, NoTls};

fn db(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

async fn client(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn pass<S: Source>(source: &S, sink: &PostgresSink, state: &SqliteStateStore) {
    let spec: PipelineSpec = serde_json::from_str(
        r#"{"source":"a","target":"b","mode":"incremental","cursor":"updated_at","tables":["public.events"]}"#,
    )
    .unwrap();
    let report = run_pass(
        "p",
        &spec,
        source,
        sink,
        state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    for t in &report.tables {
        assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    }
}

/// T1 writes key 1 and stays open; T2 writes key 100 later and commits; a pass
/// runs (the table's first, which copies it, when `first_copy`); T1 commits;
/// the next pass must copy key 1. `source_url` is the URL siphon reads the
/// source with; the writers connect as the superuser.
async fn late_commit_is_copied(source_url: &str, src_url: &str, dst_url: &str, first_copy: bool) {
    let (src_db, dst_db) = (db(src_url), db(dst_url));
    let pg = Postgres::shared().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(source_url).await.unwrap();
    let sink = PostgresSink::connect(dst_url).await.unwrap();
    if !first_copy {
        pass(&source, &sink, &state).await;
        assert_eq!(
            pg.query_in(&dst_db, "SELECT count(*) FROM events").unwrap(),
            "10"
        );
    }

    let t1 = client(src_url).await;
    t1.batch_execute("BEGIN; INSERT INTO events (id, note) VALUES (1, 'late')")
        .await
        .unwrap();
    let t2 = client(src_url).await;
    t2.batch_execute("INSERT INTO events (id, note) VALUES (100, 'early')")
        .await
        .unwrap();
    // T2's cursor value is not below T1's: T1 began first.
    let order = pg
        .query_in(
            &src_db,
            "SELECT (SELECT updated_at FROM events WHERE id = 100) >= xact_start \
             FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()",
        )
        .unwrap();
    assert_eq!(order, "t");
    pass(&source, &sink, &state).await;
    t1.batch_execute("COMMIT").await.unwrap();
    pass(&source, &sink, &state).await;

    let ids = "SELECT string_agg(id::text, ',' ORDER BY id) FROM events WHERE id IN (1, 100)";
    assert_eq!(pg.query_in(&dst_db, ids).unwrap(), "1,100");
    let dump = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM events t";
    assert_eq!(
        pg.query_in(&dst_db, dump).unwrap(),
        pg.query_in(&src_db, dump).unwrap()
    );
}

const EVENTS: &str = "
    CREATE TABLE events (id bigint PRIMARY KEY, note text,
                         updated_at timestamptz NOT NULL DEFAULT now());
    INSERT INTO events (id, note, updated_at)
      SELECT i, 'old ' || i, now() - interval '1 hour' FROM generate_series(2, 11) i;
";

#[tokio::test]
async fn a_row_committed_late_below_the_watermark_is_copied() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    pg.query_in(&db(&src_url), EVENTS).unwrap();
    late_commit_is_copied(&src_url, &src_url, &dst_url, false).await;
}

/// A source role that cannot see other roles' transactions in
/// `pg_stat_activity` (no `pg_read_all_stats`) falls back to re-reading a
/// window behind the watermark, which covers the same late commit.
#[tokio::test]
async fn without_pg_read_all_stats_a_window_is_read_again() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src_db = db(&src_url);
    let role = format!("{src_db}_reader");
    pg.query_in(&src_db, EVENTS).unwrap();
    pg.query_in(
        &src_db,
        &format!(
            "CREATE ROLE \"{role}\" LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{role}\";"
        ),
    )
    .unwrap();
    let reader_url = src_url.replacen(&format!("{}@", pg.user()), &format!("{role}@"), 1);
    assert_ne!(reader_url, src_url);
    late_commit_is_copied(&reader_url, &src_url, &dst_url, false).await;
}

/// The same late commit while the table's first copy runs: polling after the
/// copy starts below the open transaction, not at the highest cursor value.
#[tokio::test]
async fn a_row_committed_late_during_the_first_copy_is_copied() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    pg.query_in(&db(&src_url), EVENTS).unwrap();
    late_commit_is_copied(&src_url, &src_url, &dst_url, true).await;
}

/// A row written after a pass with the same cursor value as the last row it
/// read and a lower key (a `timestamp(0)` column gives transactions of one
/// second the same value) is copied by the next pass.
#[tokio::test]
async fn a_later_row_with_the_watermark_value_and_a_lower_key_is_copied() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let (src_db, dst_db) = (db(&src_url), db(&dst_url));
    pg.query_in(
        &src_db,
        "CREATE TABLE events (id bigint PRIMARY KEY, note text,
                              updated_at timestamp(0) with time zone NOT NULL DEFAULT now());
         INSERT INTO events (id, note, updated_at) VALUES (100, 'first', '2026-01-01 00:00:00+00');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    pass(&source, &sink, &state).await;
    pass(&source, &sink, &state).await;
    pg.query_in(
        &src_db,
        "INSERT INTO events (id, note, updated_at) VALUES (1, 'same second', '2026-01-01 00:00:00+00')",
    )
    .unwrap();
    pass(&source, &sink, &state).await;
    let ids = "SELECT string_agg(id::text, ',' ORDER BY id) FROM events";
    assert_eq!(pg.query_in(&dst_db, ids).unwrap(), "1,100");
}
