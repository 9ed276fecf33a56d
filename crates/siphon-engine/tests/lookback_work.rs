//! Rows a pass reads again behind its watermark (`lookback`) are not new work:
//! a continuous pipeline whose passes only re-read that window pauses between
//! them instead of polling again at once.

use rusqlite::Connection;
use siphon_core::PipelineSpec;
use siphon_engine::{run_pass, NoopObserver, PassReport, Shutdown};
use siphon_sqlite::{SqliteSink, SqliteSource};
use siphon_state::SqliteStateStore;

async fn pass(dir: &std::path::Path, state: &SqliteStateStore) -> PassReport {
    let spec: PipelineSpec = serde_json::from_str(
        r#"{"source":"s","target":"t","mode":"incremental","cursor":"updated_at","lookback":"5m"}"#,
    )
    .unwrap();
    let source = SqliteSource::open(dir.join("source.db")).unwrap();
    let sink = SqliteSink::open(dir.join("target.db")).unwrap();
    run_pass(
        "p",
        &spec,
        &source,
        &sink,
        state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn rows_read_again_behind_the_watermark_are_not_new_work() {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let src = Connection::open(dir.path().join("source.db")).unwrap();
    src.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
         INSERT INTO t VALUES (1, '2026-01-01 00:10:00'), (2, '2026-01-01 00:09:00');",
    )
    .unwrap();
    assert!(pass(dir.path(), &state).await.found_work());
    // Nothing new: the window is read again, and that is no work.
    let idle = pass(dir.path(), &state).await;
    assert_eq!(idle.tables[0].rows_read, 0, "{:?}", idle.tables[0]);
    assert!(!idle.found_work());
    // A new row is work, and a late one in the window is still copied.
    src.execute_batch(
        "INSERT INTO t VALUES (3, '2026-01-01 00:11:00'), (4, '2026-01-01 00:08:00');",
    )
    .unwrap();
    let busy = pass(dir.path(), &state).await;
    assert!(busy.found_work());
    assert_eq!(busy.tables[0].inserted, 2, "{:?}", busy.tables[0]);
}
