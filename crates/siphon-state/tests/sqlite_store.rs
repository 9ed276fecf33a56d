//! `SqliteStateStore` against real SQLite files in temporary directories: every
//! method round-trips, the file keeps everything across reopening, and handles that
//! share a file see each other's writes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use siphon_core::{
    Checkpoint, ErrorKind, ExecutionStatus, Flag, Mode, Phase, PipelineSpec, Position, StateStore,
    StreamId, StreamState, TableName, TableStats,
};
use siphon_state::SqliteStateStore;
use tempfile::TempDir;

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("state.db")
}

fn stream(pipeline: &str, table: &str) -> StreamId {
    StreamId::new(pipeline, &TableName::parse(table))
}

fn spec(json: &str) -> PipelineSpec {
    serde_json::from_str(json).unwrap()
}

fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_564_800 + secs, nanos).unwrap()
}

fn stats(
    table: &str,
    mode: Mode,
    rows: u64,
    status: ExecutionStatus,
    error: Option<&str>,
) -> TableStats {
    TableStats {
        table: TableName::parse(table),
        mode,
        rows_read: rows,
        inserted: rows / 2,
        updated: rows / 3,
        deleted: rows / 5,
        bytes: rows * 40,
        replaced: rows / 7,
        row_counts: None,
        started_at: at(rows as i64, 123_456_789),
        finished_at: (status != ExecutionStatus::Running)
            .then(|| at(rows as i64 + 60, 987_654_321)),
        status,
        error: error.map(str::to_owned),
    }
}

fn snapshot_checkpoint() -> Checkpoint {
    Checkpoint {
        stream: stream("app", "public.users"),
        epoch: 0,
        phase: Phase::Snapshot {
            last_key: Some(Position(serde_json::json!([42, "k\u{e9}y"]))),
            resume_position: Some(Position(serde_json::json!({"lsn": "0/16B3748"}))),
            ranges: Vec::new(),
            shadow: None,
        },
    }
}

fn streaming_checkpoint() -> Checkpoint {
    Checkpoint {
        stream: stream("app", "orders"),
        epoch: 0,
        phase: Phase::Streaming {
            position: Some(Position(
                serde_json::json!({"file": "binlog.000003", "pos": 154}),
            )),
        },
    }
}

#[tokio::test]
async fn connections_round_trip() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStateStore::open(db(&dir)).await.unwrap();
    assert!(store.connections().await.unwrap().is_empty());

    store
        .put_connection("app", "postgres://app@127.0.0.1:5432/app")
        .await
        .unwrap();
    store
        .put_connection(
            "replica",
            "mysql://root:${REPLICA_PASSWORD}@127.0.0.1/replica",
        )
        .await
        .unwrap();
    store
        .put_connection("app", "postgres://app@10.0.0.1:5432/app")
        .await
        .unwrap();
    let expected: BTreeMap<String, String> = [
        (
            "app".to_string(),
            "postgres://app@10.0.0.1:5432/app".to_string(),
        ),
        // Kept as written: the variable is not expanded.
        (
            "replica".to_string(),
            "mysql://root:${REPLICA_PASSWORD}@127.0.0.1/replica".to_string(),
        ),
    ]
    .into();
    assert_eq!(store.connections().await.unwrap(), expected);

    assert!(store.remove_connection("app").await.unwrap());
    assert!(!store.remove_connection("app").await.unwrap());
    assert_eq!(
        store
            .connections()
            .await
            .unwrap()
            .into_keys()
            .collect::<Vec<_>>(),
        ["replica"]
    );
}

#[tokio::test]
async fn pipelines_round_trip() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStateStore::open(db(&dir)).await.unwrap();
    assert!(store.pipelines().await.unwrap().is_empty());

    let cdc = spec(
        r#"{"source":"app","target":"replica","mode":"cdc","tables":["public.*"],
            "exclude":["public.audit_*"],"batch_size":1000,"schedule":"every 5s","new_tables":"paused",
            "tables_config":{"public.events":{"mode":"incremental","cursor":"updated_at","lookback":"30s"}}}"#,
    );
    let merge = spec(
        r#"{"source":"app","target":"office","mode":"merge","conflict":{"policy":"newest","column":"updated_at"}}"#,
    );
    store.put_pipeline("app_to_replica", &cdc).await.unwrap();
    store.put_pipeline("field_office", &cdc).await.unwrap();
    store.put_pipeline("field_office", &merge).await.unwrap();

    let all = store.pipelines().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["app_to_replica"], cdc);
    assert_eq!(all["field_office"], merge);

    assert!(store.remove_pipeline("field_office").await.unwrap());
    assert!(!store.remove_pipeline("field_office").await.unwrap());
    assert_eq!(
        store
            .pipelines()
            .await
            .unwrap()
            .into_keys()
            .collect::<Vec<_>>(),
        ["app_to_replica"]
    );
}

#[tokio::test]
async fn removing_a_pipeline_forgets_its_streams_but_keeps_its_history() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStateStore::open(db(&dir)).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b"}"#);
    store.put_pipeline("app", &p).await.unwrap();
    store.put_pipeline("other", &p).await.unwrap();
    let users = stream("app", "public.users");
    let kept = stream("other", "public.users");
    for s in [&users, &kept] {
        store.set_flag(s, Flag::Enabled, true).await.unwrap();
        store.set_stream_state(s, &StreamState::Idle).await.unwrap();
    }
    store.save_checkpoint(&snapshot_checkpoint()).await.unwrap();
    let run = store.start_execution("app").await.unwrap();

    assert!(store.remove_pipeline("app").await.unwrap());
    assert_eq!(store.flag(&users, Flag::Enabled).await.unwrap(), None);
    assert_eq!(store.checkpoint(&users).await.unwrap(), None);
    assert_eq!(
        store.stream_states().await.unwrap(),
        vec![(kept.clone(), StreamState::Idle)]
    );
    assert_eq!(store.flag(&kept, Flag::Enabled).await.unwrap(), Some(true));
    assert_eq!(store.execution(run).await.unwrap().unwrap().pipeline, "app");
}

#[tokio::test]
async fn flags_set_get_and_clear() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStateStore::open(db(&dir)).await.unwrap();
    let users = stream("app", "public.users");
    let bare = stream("app", "users");
    let elsewhere = stream("other", "public.users");

    assert_eq!(store.flag(&users, Flag::Enabled).await.unwrap(), None);
    store.set_flag(&users, Flag::Enabled, true).await.unwrap();
    store
        .set_flag(&users, Flag::ForceFullLoad, true)
        .await
        .unwrap();
    store.set_flag(&bare, Flag::Enabled, false).await.unwrap();
    assert_eq!(store.flag(&users, Flag::Enabled).await.unwrap(), Some(true));
    assert_eq!(
        store.flag(&users, Flag::ForceFullLoad).await.unwrap(),
        Some(true)
    );
    assert_eq!(store.flag(&bare, Flag::Enabled).await.unwrap(), Some(false));
    assert_eq!(store.flag(&bare, Flag::ForceFullLoad).await.unwrap(), None);
    assert_eq!(store.flag(&elsewhere, Flag::Enabled).await.unwrap(), None);

    store.set_flag(&users, Flag::Enabled, false).await.unwrap();
    assert_eq!(
        store.flag(&users, Flag::Enabled).await.unwrap(),
        Some(false)
    );

    store.clear_flag(&users, Flag::ForceFullLoad).await.unwrap();
    assert_eq!(store.flag(&users, Flag::ForceFullLoad).await.unwrap(), None);
    assert_eq!(
        store.flag(&users, Flag::Enabled).await.unwrap(),
        Some(false)
    );
    // Clearing a flag that is not set is not an error.
    store
        .clear_flag(&elsewhere, Flag::ForceFullLoad)
        .await
        .unwrap();
}

#[tokio::test]
async fn stream_states_round_trip_in_order() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStateStore::open(db(&dir)).await.unwrap();
    assert!(store.stream_states().await.unwrap().is_empty());

    let failed = StreamState::Failed {
        error: "table public.orders: no primary key; add one".into(),
        kind: Some(siphon_core::ErrorKind::BadInput),
        next_retry: None,
        attempt: 1,
    };
    store
        .set_stream_state(&stream("b", "public.orders"), &failed)
        .await
        .unwrap();
    store
        .set_stream_state(&stream("a", "users"), &StreamState::Paused)
        .await
        .unwrap();
    store
        .set_stream_state(
            &stream("a", "public.items"),
            &StreamState::Snapshotting { rows: 5000 },
        )
        .await
        .unwrap();
    store
        .set_stream_state(
            &stream("a", "public.items"),
            &StreamState::Snapshotting { rows: 10_000 },
        )
        .await
        .unwrap();
    store
        .set_stream_state(&stream("b", "events"), &StreamState::Streaming)
        .await
        .unwrap();

    assert_eq!(
        store.stream_states().await.unwrap(),
        vec![
            (
                stream("a", "public.items"),
                StreamState::Snapshotting { rows: 10_000 }
            ),
            (stream("a", "users"), StreamState::Paused),
            (stream("b", "events"), StreamState::Streaming),
            (stream("b", "public.orders"), failed),
        ]
    );
}

#[tokio::test]
async fn checkpoints_save_load_and_remove() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStateStore::open(db(&dir)).await.unwrap();
    let snap = snapshot_checkpoint();
    let streaming = streaming_checkpoint();
    assert_eq!(store.checkpoint(&snap.stream).await.unwrap(), None);

    store.save_checkpoint(&snap).await.unwrap();
    store.save_checkpoint(&streaming).await.unwrap();
    assert_eq!(
        store.checkpoint(&snap.stream).await.unwrap(),
        Some(snap.clone())
    );
    assert_eq!(
        store.checkpoint(&streaming.stream).await.unwrap(),
        Some(streaming.clone())
    );

    // A snapshot that was prepared but has no chunk yet, then one that finished.
    let prepared = Checkpoint {
        stream: snap.stream.clone(),
        epoch: 0,
        phase: Phase::Snapshot {
            last_key: None,
            resume_position: None,
            ranges: Vec::new(),
            shadow: None,
        },
    };
    store.save_checkpoint(&prepared).await.unwrap();
    assert_eq!(
        store.checkpoint(&snap.stream).await.unwrap(),
        Some(prepared)
    );
    let loaded = Checkpoint {
        stream: snap.stream.clone(),
        epoch: 0,
        phase: Phase::Streaming { position: None },
    };
    store.save_checkpoint(&loaded).await.unwrap();
    assert_eq!(store.checkpoint(&snap.stream).await.unwrap(), Some(loaded));

    store.remove_checkpoint(&snap.stream).await.unwrap();
    assert_eq!(store.checkpoint(&snap.stream).await.unwrap(), None);
    assert_eq!(
        store.checkpoint(&streaming.stream).await.unwrap(),
        Some(streaming.clone())
    );
    // Removing what is not there is not an error.
    store.remove_checkpoint(&snap.stream).await.unwrap();
}

#[tokio::test]
async fn executions_record_newest_first_with_their_tables() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStateStore::open(db(&dir)).await.unwrap();
    assert!(store.executions(None, 10).await.unwrap().is_empty());

    let before = Utc::now();
    let first = store.start_execution("app").await.unwrap();
    let second = store.start_execution("office").await.unwrap();
    let third = store.start_execution("app").await.unwrap();
    assert!(first < second && second < third, "{first} {second} {third}");

    let users = stats(
        "public.users",
        Mode::Cdc,
        300,
        ExecutionStatus::Running,
        None,
    );
    store.record_table(first, &users).await.unwrap();
    let users = stats(
        "public.users",
        Mode::Cdc,
        900,
        ExecutionStatus::Succeeded,
        None,
    );
    store.record_table(first, &users).await.unwrap();
    let orders = stats(
        "orders",
        Mode::Full,
        30,
        ExecutionStatus::Failed,
        Some("table orders: no key"),
    );
    store.record_table(first, &orders).await.unwrap();
    store
        .finish_execution(first, ExecutionStatus::Failed, Some("1 of 2 tables failed"))
        .await
        .unwrap();
    let items = stats(
        "public.items",
        Mode::Incremental,
        7,
        ExecutionStatus::Succeeded,
        None,
    );
    store.record_table(second, &items).await.unwrap();
    store
        .finish_execution(second, ExecutionStatus::Succeeded, None)
        .await
        .unwrap();
    let after = Utc::now();

    let one = store.execution(first).await.unwrap().unwrap();
    assert_eq!(one.id, first);
    assert_eq!(one.pipeline, "app");
    assert_eq!(one.status, ExecutionStatus::Failed);
    assert_eq!(one.error.as_deref(), Some("1 of 2 tables failed"));
    assert!(
        before <= one.started_at && one.started_at <= after,
        "{}",
        one.started_at
    );
    let finished = one.finished_at.unwrap();
    assert!(
        one.started_at <= finished && finished <= after,
        "{finished}"
    );
    // In the order they started; the replaced row, not the first one recorded.
    assert_eq!(one.tables, vec![orders.clone(), users.clone()]);

    let running = store.execution(third).await.unwrap().unwrap();
    assert_eq!(
        (running.status, running.finished_at, running.error),
        (ExecutionStatus::Running, None, None)
    );
    assert!(running.tables.is_empty());
    assert_eq!(store.execution(third + 100).await.unwrap(), None);

    let all = store.executions(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        [third, second, first]
    );
    assert_eq!(all[1].tables, vec![items]);
    assert_eq!(all[1].status, ExecutionStatus::Succeeded);
    assert_eq!(all[2], one);

    let app = store.executions(Some("app"), 10).await.unwrap();
    assert_eq!(app.iter().map(|e| e.id).collect::<Vec<_>>(), [third, first]);
    assert_eq!(app[1], one);
    assert_eq!(
        store
            .executions(None, 2)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [third, second]
    );
    assert_eq!(store.executions(Some("app"), 1).await.unwrap()[0].id, third);
    assert!(store.executions(None, 0).await.unwrap().is_empty());
    assert!(store
        .executions(Some("nobody"), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.executions(None, usize::MAX).await.unwrap().len(), 3);
}

#[tokio::test]
async fn unknown_executions_are_refused_with_the_store_path() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    let store = SqliteStateStore::open(&path).await.unwrap();
    let id = store.start_execution("app").await.unwrap();

    let err = store
        .finish_execution(id + 1, ExecutionStatus::Succeeded, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("cannot finish execution {}", id + 1)),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    let stats = stats("users", Mode::Full, 1, ExecutionStatus::Succeeded, None);
    let err = store.record_table(id + 1, &stats).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(
        err.to_string()
            .contains(&format!("there is no execution {}", id + 1)),
        "{err}"
    );
    // Nothing was half done to the execution that exists.
    assert_eq!(
        store.execution(id).await.unwrap().unwrap().status,
        ExecutionStatus::Running
    );
}

/// Writes one of everything, so that reading it back checks every table.
async fn fill(store: &SqliteStateStore) -> u64 {
    store
        .put_connection("app", "sqlite://app.db")
        .await
        .unwrap();
    store
        .put_pipeline(
            "app",
            &spec(r#"{"source":"app","target":"app","mode":"incremental"}"#),
        )
        .await
        .unwrap();
    store
        .set_flag(&stream("app", "users"), Flag::ForceFullLoad, true)
        .await
        .unwrap();
    store
        .set_stream_state(
            &stream("app", "users"),
            &StreamState::Snapshotting { rows: 12 },
        )
        .await
        .unwrap();
    store
        .save_checkpoint(&streaming_checkpoint())
        .await
        .unwrap();
    let id = store.start_execution("app").await.unwrap();
    store
        .record_table(
            id,
            &stats(
                "users",
                Mode::Incremental,
                12,
                ExecutionStatus::Succeeded,
                None,
            ),
        )
        .await
        .unwrap();
    store
        .finish_execution(id, ExecutionStatus::Succeeded, None)
        .await
        .unwrap();
    id
}

async fn assert_filled(store: &SqliteStateStore, id: u64) {
    assert_eq!(store.connections().await.unwrap()["app"], "sqlite://app.db");
    assert_eq!(
        store.pipelines().await.unwrap()["app"].mode,
        Mode::Incremental
    );
    assert_eq!(
        store
            .flag(&stream("app", "users"), Flag::ForceFullLoad)
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        store.stream_states().await.unwrap(),
        vec![(
            stream("app", "users"),
            StreamState::Snapshotting { rows: 12 }
        )]
    );
    assert_eq!(
        store
            .checkpoint(&streaming_checkpoint().stream)
            .await
            .unwrap(),
        Some(streaming_checkpoint())
    );
    let run = store.execution(id).await.unwrap().unwrap();
    assert_eq!(run.status, ExecutionStatus::Succeeded);
    assert_eq!(
        run.tables,
        vec![stats(
            "users",
            Mode::Incremental,
            12,
            ExecutionStatus::Succeeded,
            None
        )]
    );
}

#[tokio::test]
async fn reopening_the_file_keeps_everything() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested/dirs/state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(store.path(), path);
    let id = fill(&store).await;
    drop(store);

    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_filled(&store, id).await;
    // Ids keep growing after a reopen.
    assert!(store.start_execution("app").await.unwrap() > id);
}

#[tokio::test]
async fn open_url_takes_absolute_sqlite_urls() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    assert!(path.is_absolute());
    let id = fill(&SqliteStateStore::open(&path).await.unwrap()).await;

    let url = format!("sqlite://{}", path.display());
    assert!(url.starts_with("sqlite:///"), "{url}");
    let store = SqliteStateStore::open_url(&url).await.unwrap();
    assert_eq!(store.path(), path);
    assert_filled(&store, id).await;

    let err = SqliteStateStore::open_url("postgres://127.0.0.1/siphon")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn handles_on_one_file_see_each_others_writes() {
    let dir = TempDir::new().unwrap();
    let a = SqliteStateStore::open(db(&dir)).await.unwrap();
    let b = SqliteStateStore::open(db(&dir)).await.unwrap();

    let id = fill(&a).await;
    assert_filled(&b, id).await;

    b.put_connection("office", "sqlite://office.db")
        .await
        .unwrap();
    b.set_flag(&stream("app", "users"), Flag::ForceFullLoad, false)
        .await
        .unwrap();
    b.remove_checkpoint(&streaming_checkpoint().stream)
        .await
        .unwrap();
    b.finish_execution(id, ExecutionStatus::Failed, Some("stopped"))
        .await
        .unwrap();
    assert_eq!(a.connections().await.unwrap().len(), 2);
    assert_eq!(
        a.flag(&stream("app", "users"), Flag::ForceFullLoad)
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        a.checkpoint(&streaming_checkpoint().stream).await.unwrap(),
        None
    );
    assert_eq!(
        a.execution(id).await.unwrap().unwrap().error.as_deref(),
        Some("stopped")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_handles_get_distinct_execution_ids() {
    let dir = TempDir::new().unwrap();
    let stores = [
        SqliteStateStore::open(db(&dir)).await.unwrap(),
        SqliteStateStore::open(db(&dir)).await.unwrap(),
    ];
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let id = store.start_execution(&format!("p{}", i % 2)).await.unwrap();
            store
                .record_table(
                    id,
                    &stats("t", Mode::Full, i as u64, ExecutionStatus::Succeeded, None),
                )
                .await
                .unwrap();
            store
                .finish_execution(id, ExecutionStatus::Succeeded, None)
                .await
                .unwrap();
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40);

    let all = stores[1].executions(None, 100).await.unwrap();
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert!(all
        .iter()
        .all(|e| e.status == ExecutionStatus::Succeeded && e.tables.len() == 1));
    assert_eq!(
        stores[0].executions(Some("p1"), 100).await.unwrap().len(),
        20
    );
}

#[tokio::test]
async fn opening_a_directory_fails_with_the_path() {
    let dir = TempDir::new().unwrap();
    let err = SqliteStateStore::open(dir.path()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State);
    assert!(
        err.to_string()
            .contains(&format!("cannot open state store {}", dir.path().display())),
        "{err}"
    );
}

#[tokio::test]
async fn history_keeps_the_newest_executions_of_each_pipeline() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStateStore::open(db(&dir))
        .await
        .unwrap()
        .keep_executions(3);
    let mut app = Vec::new();
    for n in 0..6 {
        let id = store.start_execution("app").await.unwrap();
        let t = stats(
            "public.users",
            Mode::Cdc,
            n,
            ExecutionStatus::Succeeded,
            None,
        );
        store.record_table(id, &t).await.unwrap();
        store.record_retained_log(id, 100 + n).await.unwrap();
        store
            .finish_execution(id, ExecutionStatus::Succeeded, None)
            .await
            .unwrap();
        app.push(id);
        if n < 2 {
            store.start_execution("office").await.unwrap();
        }
    }
    let kept: Vec<u64> = store
        .executions(Some("app"), 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kept, vec![app[5], app[4], app[3]]);
    // The other pipeline's history is its own.
    assert_eq!(
        store.executions(Some("office"), 100).await.unwrap().len(),
        2
    );
    // Removed with their tables; kept ones whole.
    assert_eq!(store.execution(app[0]).await.unwrap(), None);
    let newest = store.execution(app[5]).await.unwrap().unwrap();
    assert_eq!(newest.tables.len(), 1);
    assert_eq!(newest.retained_log_bytes, Some(105));
}
