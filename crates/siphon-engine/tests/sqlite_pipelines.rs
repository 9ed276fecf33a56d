//! The engine's drivers against real SQLite files: incremental polling, resumed
//! snapshots, delete detection, forced reloads and per-table failures.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{params, Connection};
use siphon_core::{
    ExecutionStatus, Flag, PipelineSpec, Source, StateStore, StreamId, TableFilter, TableName,
};
use siphon_engine::{run_pass, table_checksum, NoopObserver, Observer, Shutdown};
use siphon_sqlite::{SqliteSink, SqliteSource};
use siphon_state::SqliteStateStore;

struct Fixture {
    dir: tempfile::TempDir,
    state: SqliteStateStore,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = SqliteStateStore::open(dir.path().join("state.db"))
            .await
            .unwrap();
        Fixture { dir, state }
    }

    fn source_conn(&self) -> Connection {
        Connection::open(self.dir.path().join("source.db")).unwrap()
    }

    fn target_conn(&self) -> Connection {
        Connection::open(self.dir.path().join("target.db")).unwrap()
    }

    async fn pass(&self, spec: &PipelineSpec) -> siphon_engine::PassReport {
        self.pass_observed(spec, &NoopObserver, &Shutdown::new())
            .await
    }

    async fn pass_observed(
        &self,
        spec: &PipelineSpec,
        obs: &dyn Observer,
        stop: &Shutdown,
    ) -> siphon_engine::PassReport {
        let source = SqliteSource::open(self.dir.path().join("source.db")).unwrap();
        let sink = SqliteSink::open(self.dir.path().join("target.db")).unwrap();
        run_pass("p", spec, &source, &sink, &self.state, obs, stop)
            .await
            .unwrap()
    }

    /// Row count and checksum of a table on both sides.
    async fn sides(
        &self,
        table: &str,
    ) -> (siphon_engine::TableChecksum, siphon_engine::TableChecksum) {
        let source = SqliteSource::open(self.dir.path().join("source.db")).unwrap();
        let target = SqliteSource::open(self.dir.path().join("target.db")).unwrap();
        let filter = TableFilter {
            include: vec![table.into()],
            exclude: vec![],
        };
        let schema = source.discover(&filter).await.unwrap().remove(0);
        (
            table_checksum(&source, &schema, 1000).await.unwrap(),
            table_checksum(&target, &schema, 1000).await.unwrap(),
        )
    }
}

fn spec(yaml: &str) -> PipelineSpec {
    serde_json::from_value(serde_json::from_str::<serde_json::Value>(yaml).unwrap()).unwrap()
}

fn stats<'a>(r: &'a siphon_engine::PassReport, table: &str) -> &'a siphon_core::TableStats {
    r.tables
        .iter()
        .find(|t| t.table.name == table)
        .unwrap_or_else(|| panic!("no stats for {table}"))
}

#[tokio::test]
async fn rows_sharing_a_timestamp_across_chunk_boundaries_are_not_skipped() {
    let f = Fixture::new().await;
    let src = f.source_conn();
    src.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, v TEXT, updated_at TIMESTAMP NOT NULL)",
    )
    .unwrap();
    // Ten rows with one timestamp, read three at a time: every chunk boundary falls
    // inside the run of equal cursor values.
    for i in 1..=10 {
        src.execute(
            "INSERT INTO events VALUES (?1, 'a', '2026-01-01 00:00:00')",
            [i],
        )
        .unwrap();
    }
    let p = spec(
        r#"{"source":"s","target":"t","mode":"incremental","cursor":"updated_at","batch_size":3}"#,
    );
    let first = f.pass(&p).await;
    assert_eq!(first.status, ExecutionStatus::Succeeded);
    assert_eq!(stats(&first, "events").inserted, 10);

    // More rows with the same timestamp as the watermark, and with a later one,
    // plus updates after the checkpoint.
    for i in 11..=17 {
        src.execute(
            "INSERT INTO events VALUES (?1, 'b', '2026-01-01 00:00:00')",
            [i],
        )
        .unwrap();
    }
    for i in 18..=20 {
        src.execute(
            "INSERT INTO events VALUES (?1, 'c', '2026-01-01 00:00:05')",
            [i],
        )
        .unwrap();
    }
    src.execute(
        "UPDATE events SET v = 'changed', updated_at = '2026-01-01 00:00:09' WHERE id IN (2, 4)",
        [],
    )
    .unwrap();
    let second = f.pass(&p).await;
    let s = stats(&second, "events");
    assert_eq!((s.inserted, s.updated), (10, 2), "{s:?}");
    let (a, b) = f.sides("events").await;
    assert_eq!(a, b);
    assert_eq!(a.rows, 20);
    let changed: i64 = f
        .target_conn()
        .query_row("SELECT count(*) FROM events WHERE v = 'changed'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(changed, 2);

    // Nothing new: nothing read.
    let third = f.pass(&p).await;
    assert_eq!(stats(&third, "events").rows_read, 0);
}

#[tokio::test]
async fn a_missing_cursor_column_fails_that_table_and_the_others_go_on() {
    let f = Fixture::new().await;
    let src = f.source_conn();
    src.execute_batch(
        "CREATE TABLE good (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
         CREATE TABLE bad (id INTEGER PRIMARY KEY, modified TIMESTAMP);
         INSERT INTO good VALUES (1, '2026-01-01 00:00:00'), (2, '2026-01-02 00:00:00');
         INSERT INTO bad VALUES (1, '2026-01-01 00:00:00');",
    )
    .unwrap();
    let p = spec(r#"{"source":"s","target":"t","mode":"incremental","cursor":"updated_at"}"#);
    let report = f.pass(&p).await;
    assert_eq!(report.status, ExecutionStatus::Failed);
    let bad = stats(&report, "bad");
    assert_eq!(bad.status, ExecutionStatus::Failed);
    let err = bad.error.as_deref().unwrap();
    assert!(
        err.contains("table bad") && err.contains("column updated_at") && err.contains("modified"),
        "{err}"
    );
    let good = stats(&report, "good");
    assert_eq!(
        (good.status, good.inserted),
        (ExecutionStatus::Succeeded, 2)
    );
    // The failure is recorded in the execution history and the stream state.
    let exec = f.state.execution(report.execution).await.unwrap().unwrap();
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert!(exec.error.unwrap().contains("1 of 2 tables failed"));
    let states = f.state.stream_states().await.unwrap();
    let bad_state = states.iter().find(|(s, _)| s.table.name == "bad").unwrap();
    let shown = bad_state.1.to_string();
    assert!(
        shown.starts_with("failed (bad_input, ") && shown.contains("table bad, column updated_at"),
        "{shown}"
    );
}

/// Asks the run to stop once `after` rows were committed.
struct StopAfter {
    rows: AtomicU64,
    after: u64,
    stop: Shutdown,
}

impl Observer for StopAfter {
    fn rows_committed(&self, _s: &StreamId, rows: u64) {
        if self.rows.fetch_add(rows, Ordering::SeqCst) + rows >= self.after {
            self.stop.request();
        }
    }
}

/// Remembers where a resumed load's progress starts.
#[derive(Default)]
struct ResumedAt(AtomicU64);

impl Observer for ResumedAt {
    fn table_resumed(&self, _s: &StreamId, rows: u64) {
        self.0.store(rows, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn an_interrupted_full_load_resumes_from_its_last_chunk() {
    let f = Fixture::new().await;
    let mut src = f.source_conn();
    src.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price NUMERIC(10,2))",
    )
    .unwrap();
    let tx = src.transaction().unwrap();
    for i in 1..=20_000i64 {
        tx.execute(
            "INSERT INTO items VALUES (?1, ?2, ?3)",
            params![i, format!("item {i}"), format!("{i}.25")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let p = spec(r#"{"source":"s","target":"t","mode":"full","batch_size":1000}"#);

    let stop = Shutdown::new();
    let obs = StopAfter {
        rows: AtomicU64::new(0),
        after: 7000,
        stop: stop.clone(),
    };
    let first = f.pass_observed(&p, &obs, &stop).await;
    let s = stats(&first, "items");
    assert_eq!(s.status, ExecutionStatus::Stopped);
    assert_eq!(first.status, ExecutionStatus::Stopped);
    assert!(s.error.as_deref().unwrap().contains("stopped on request"));
    let copied: i64 = f
        .target_conn()
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert!((7000..20_000).contains(&copied), "copied {copied}");
    // A stopped pass reports the rows it committed.
    assert_eq!(s.rows_read, copied as u64);
    assert_eq!(s.inserted, copied as u64);

    let resumed = ResumedAt::default();
    let second = f.pass_observed(&p, &resumed, &Shutdown::new()).await;
    let s = stats(&second, "items");
    assert_eq!(s.status, ExecutionStatus::Succeeded);
    // Its progress starts at the rows the stopped pass had copied.
    assert_eq!(resumed.0.load(Ordering::SeqCst), copied as u64);
    // It read only what was missing: it did not start over.
    assert_eq!(s.rows_read, 20_000 - copied as u64);
    let (a, b) = f.sides("items").await;
    assert_eq!(a, b);

    // A finished full load starts over on the next run: into a shadow table
    // swapped in at the end, the previous copy counted as replaced, not deleted.
    let third = f.pass(&p).await;
    let s = stats(&third, "items");
    assert_eq!(
        (s.rows_read, s.deleted, s.replaced, s.inserted),
        (20_000, 0, 20_000, 20_000)
    );
    let (a, b) = f.sides("items").await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn key_diff_deletes_what_the_source_deleted_and_nothing_else() {
    let f = Fixture::new().await;
    let src = f.source_conn();
    src.execute_batch(
        "CREATE TABLE t (a INTEGER, b TEXT, updated_at TIMESTAMP, PRIMARY KEY (a, b))",
    )
    .unwrap();
    for i in 0..50 {
        src.execute(
            "INSERT INTO t VALUES (?1, ?2, '2026-01-01 00:00:00')",
            params![i % 10, format!("k{i}")],
        )
        .unwrap();
    }
    let p = spec(
        r#"{"source":"s","target":"t","mode":"incremental","cursor":"updated_at","delete_detection":"key_diff","batch_size":7}"#,
    );
    f.pass(&p).await;
    src.execute("DELETE FROM t WHERE a = 3 OR b = 'k49'", [])
        .unwrap();
    let report = f.pass(&p).await;
    assert_eq!(stats(&report, "t").deleted, 6);
    let (a, b) = f.sides("t").await;
    assert_eq!(a, b);
    assert_eq!(a.rows, 44);
}

#[tokio::test]
async fn a_forced_full_load_reloads_and_clears_its_flag() {
    let f = Fixture::new().await;
    let src = f.source_conn();
    src.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
         INSERT INTO t VALUES (1, '2026-01-01 00:00:00'), (2, '2026-01-01 00:00:01');",
    )
    .unwrap();
    let p = spec(r#"{"source":"s","target":"t","mode":"incremental","cursor":"updated_at"}"#);
    f.pass(&p).await;
    // A row changed behind siphon's back on the target is put right by a reload.
    f.target_conn()
        .execute("DELETE FROM t WHERE id = 1", [])
        .unwrap();
    let stream = StreamId::new("p", &TableName::new(None, "t"));
    f.state
        .set_flag(&stream, Flag::ForceFullLoad, true)
        .await
        .unwrap();
    let report = f.pass(&p).await;
    assert_eq!(stats(&report, "t").inserted, 2);
    assert_eq!(
        f.state.flag(&stream, Flag::ForceFullLoad).await.unwrap(),
        None
    );
    let (a, b) = f.sides("t").await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn paused_tables_wait_until_enabled() {
    let f = Fixture::new().await;
    f.source_conn()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
        .unwrap();
    let p = spec(r#"{"source":"s","target":"t","new_tables":"paused"}"#);
    let report = f.pass(&p).await;
    assert!(report.tables.is_empty());
    let stream = StreamId::new("p", &TableName::new(None, "t"));
    f.state
        .set_flag(&stream, Flag::Enabled, true)
        .await
        .unwrap();
    let report = f.pass(&p).await;
    assert_eq!(stats(&report, "t").inserted, 1);
}

#[tokio::test]
async fn lookback_rereads_late_rows_behind_the_watermark() {
    let f = Fixture::new().await;
    let src = f.source_conn();
    src.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
         INSERT INTO t VALUES (1, '2026-01-01 00:10:00');",
    )
    .unwrap();
    let with = spec(
        r#"{"source":"s","target":"t","mode":"incremental","cursor":"updated_at","lookback":"5m"}"#,
    );
    f.pass(&with).await;
    // A transaction that committed late, with a cursor value behind the watermark.
    src.execute("INSERT INTO t VALUES (2, '2026-01-01 00:07:00')", [])
        .unwrap();
    let report = f.pass(&with).await;
    assert_eq!(stats(&report, "t").inserted, 1);
    let (a, b) = f.sides("t").await;
    assert_eq!(a, b);
    // Outside the window it is not seen: that is what lookback bounds.
    src.execute("INSERT INTO t VALUES (3, '2026-01-01 00:01:00')", [])
        .unwrap();
    let report = f.pass(&with).await;
    assert_eq!(stats(&report, "t").inserted, 0);
}

#[tokio::test]
async fn a_table_without_a_key_is_copied_whole_and_refused_for_polling() {
    let f = Fixture::new().await;
    f.source_conn()
        .execute_batch(
            "CREATE TABLE loose (a TEXT, n INTEGER); \
             INSERT INTO loose VALUES ('x', 1), ('x', 1), ('y', NULL), (NULL, 2);",
        )
        .unwrap();
    // A full load copies it in rowid order, duplicates included.
    let report = f.pass(&spec(r#"{"source":"s","target":"t"}"#)).await;
    assert_eq!(stats(&report, "loose").status, ExecutionStatus::Succeeded);
    let rows: Vec<(Option<String>, Option<i64>)> = f
        .target_conn()
        .prepare("SELECT a, n FROM loose ORDER BY a, n")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            (None, Some(2)),
            (s("x"), Some(1)),
            (s("x"), Some(1)),
            (s("y"), None)
        ]
    );
    // Polling cannot resume between rows without a key: refused with the fix.
    let report = f
        .pass(&spec(
            r#"{"source":"s","target":"t","mode":"incremental","cursor":"n"}"#,
        ))
        .await;
    let err = stats(&report, "loose").error.clone().unwrap();
    assert!(
        err.contains("table loose")
            && err.contains("PRIMARY KEY")
            && err.contains("`mode: row_count` in `tables_config`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_stopped_swap_reload_keeps_the_live_copy_and_resumes_into_its_shadow() {
    let f = Fixture::new().await;
    let mut src = f.source_conn();
    src.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        .unwrap();
    let tx = src.transaction().unwrap();
    for i in 1..=20_000i64 {
        tx.execute(
            "INSERT INTO items VALUES (?1, ?2)",
            params![i, format!("item {i}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let p =
        spec(r#"{"source":"s","target":"t","mode":"full","strategy":"swap","batch_size":1000}"#);
    assert_eq!(
        stats(&f.pass(&p).await, "items").status,
        ExecutionStatus::Succeeded
    );
    src.execute("UPDATE items SET name = 'new'", []).unwrap();

    // A reload stopped part way: the live table keeps its complete copy.
    let stop = Shutdown::new();
    let obs = StopAfter {
        rows: AtomicU64::new(0),
        after: 7000,
        stop: stop.clone(),
    };
    let stopped = f.pass_observed(&p, &obs, &stop).await;
    let s = stats(&stopped, "items");
    assert_eq!(s.status, ExecutionStatus::Stopped);
    let t = f.target_conn();
    let count = |sql: &str| t.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(
        count("SELECT count(*) FROM items WHERE name LIKE 'item %'"),
        20_000
    );
    let shadowed = count("SELECT count(*) FROM items_siphon_new");
    assert_eq!(shadowed as u64, s.rows_read);
    assert!((7000..20_000).contains(&shadowed), "{shadowed}");

    // The next pass resumes into the same shadow and swaps it in.
    let resumed = f.pass(&p).await;
    let s = stats(&resumed, "items");
    assert_eq!(s.status, ExecutionStatus::Succeeded);
    assert_eq!(s.rows_read, 20_000 - shadowed as u64);
    assert_eq!((s.deleted, s.replaced), (0, 20_000));
    assert_eq!(
        count("SELECT count(*) FROM items WHERE name = 'new'"),
        20_000
    );
    assert_eq!(
        count("SELECT count(*) FROM sqlite_schema WHERE name = 'items_siphon_new'"),
        0
    );
}
