//! The execution history records the bytes of row data each table stream's
//! run read from the source (`TableStats::bytes`): for a cdc pipeline's
//! snapshot and its log, with the history in a PostgreSQL state store, and for
//! an incremental pipeline's first copy and its polls, with the history in the
//! SQLite state file.

use std::path::Path;

use rusqlite::Connection;
use siphon::{AnyStateStore, ConnectionUrl, Registry};
use siphon_core::{ExecutionStatus, StateStore, TableStats};
use siphon_testkit::Postgres;

mod support;
use support::{ok, siphon};

async fn open(state: &str) -> AnyStateStore {
    Registry::standard()
        .open_state("state", &ConnectionUrl::from_parts(state, state))
        .await
        .unwrap_or_else(|e| panic!("open {state}: {e}"))
}

/// The one table of the newest run of `pipeline`, which succeeded.
async fn last_run(store: &AnyStateStore, pipeline: &str) -> TableStats {
    let runs = store.executions(Some(pipeline), 1).await.unwrap();
    let run = runs
        .first()
        .unwrap_or_else(|| panic!("no run of {pipeline}"));
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    assert_eq!(run.tables.len(), 1, "{run:?}");
    run.tables[0].clone()
}

/// A row of `t` is an int4 (4 bytes) and a text of 100 characters.
const ROW: u64 = 4 + 100;

#[tokio::test]
async fn a_cdc_pipelines_runs_record_the_bytes_they_read() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let state_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    let state_db = state_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO t SELECT n, repeat('x', 100) FROM generate_series(1, 200) n;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = format!("{state_url}?schema=siphon_state");
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: {state}\nconnections:\n  src: {src_url}\n  dst: {dst_url}\n\
             pipelines:\n  bytes:\n    source: src\n    target: dst\n    mode: cdc\n    tables: [public.t]\n"
        ),
    )
    .unwrap();

    // The snapshot: at least the text the rows hold, and not more than twice
    // their values (a native copy counts its own framing too).
    ok(siphon(d, &["run", "--once"]));
    let store = open(&state).await;
    let copy = last_run(&store, "bytes").await;
    assert_eq!(copy.rows_read, 200, "{copy:?}");
    assert!(
        (200 * 100..=200 * ROW * 2).contains(&copy.bytes),
        "not the snapshot's bytes: {copy:?}"
    );

    // From the log: each inserted row's values, exactly.
    pg.query_in(
        &src,
        "INSERT INTO t SELECT n, repeat('y', 100) FROM generate_series(201, 250) n;",
    )
    .unwrap();
    let out = ok(siphon(d, &["run", "--once"]));
    let streamed = last_run(&store, "bytes").await;
    assert_eq!(streamed.rows_read, 50, "{streamed:?}");
    assert_eq!(streamed.bytes, 50 * ROW, "{streamed:?}");
    // 5,200 bytes on the run's summary line, and in the sync service's tables.
    assert!(out.contains("(   5.1 KiB)"), "{out}");
    assert_eq!(
        pg.query_in(
            &state_db,
            "SELECT string_agg(bytes_processed::text, ',' ORDER BY id)
             FROM siphon_state.sync_executions"
        )
        .unwrap(),
        format!("{},{}", copy.bytes, 50 * ROW)
    );
}

/// Adds rows `from..=to` to the source's `items`: an INTEGER key, a TEXT of
/// 50 characters and an INTEGER cursor, 66 bytes a row.
fn add_rows(dir: &Path, from: i64, to: i64) {
    let db = Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL)",
    )
    .unwrap();
    for n in from..=to {
        db.execute(
            "INSERT INTO items VALUES (?1, ?2, ?1)",
            rusqlite::params![n, format!("{n:0>50}")],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn an_incremental_pipelines_runs_record_the_bytes_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_rows(d, 1, 30);
    std::fs::write(
        d.join("siphon.yaml"),
        "state: sqlite://state.db\n\
         connections:\n  src: sqlite://src.db\n  dst: sqlite://dst.db\n\
         pipelines:\n  polled:\n    source: src\n    target: dst\n    mode: incremental\n    cursor: n\n",
    )
    .unwrap();
    ok(siphon(d, &["run", "--once"]));
    let state = format!("sqlite://{}", d.join("state.db").display());
    let first = last_run(&open(&state).await, "polled").await;
    // The first copy (SQLite to SQLite copies in its own encoding): at
    // least the text the rows hold, and not more than twice their values.
    assert!(first.rows_read >= 30, "{first:?}");
    assert!(
        (30 * 50..=first.rows_read * 66 * 2).contains(&first.bytes),
        "{first:?}"
    );

    add_rows(d, 31, 40);
    ok(siphon(d, &["run", "--once"]));
    let second = last_run(&open(&state).await, "polled").await;
    // Polled rows: each one's values, exactly.
    assert_eq!(second.rows_read, 10, "{second:?}");
    assert_eq!(second.bytes, 10 * 66, "{second:?}");
}
