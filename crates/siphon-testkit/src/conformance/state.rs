//! The state store suite: every [`StateStore`] method behaves per its contract,
//! seen through two handles on one store, with tables whose names display alike
//! (`"a"."b.c"`, `"a.b"."c"`, `a.b.c`) kept apart.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, TimeZone, Utc};
use siphon_core::{
    Checkpoint, ExecutionStatus, Flag, Mode, Phase, PipelineSpec, Position, StateStore, StreamId,
    StreamState, TableName, TableStats,
};

use super::HarnessError;

/// How the suite reaches one state store on its real server. Implemented once
/// per store, in its `tests/conformance.rs`.
pub trait StoreHarness: Send + Sync {
    /// The state store.
    type Store: StateStore;

    /// A new, empty store (a file, a database, a key prefix); its locator.
    fn create_store(&self) -> Result<String, HarnessError>;

    /// A handle on the store at `locator`; a new one on every call, as another
    /// worker sharing the store would open it.
    fn open_store(
        &self,
        locator: &str,
    ) -> impl Future<Output = siphon_core::Result<Self::Store>> + Send;
}

/// Two handles on one new store.
async fn two_handles<H: StoreHarness>(h: &H) -> (H::Store, H::Store) {
    let at = h
        .create_store()
        .unwrap_or_else(|e| panic!("creating a store: {e}"));
    let open = || async {
        h.open_store(&at)
            .await
            .unwrap_or_else(|e| panic!("opening the store {at}: {e}"))
    };
    (open().await, open().await)
}

/// Table names that must be keys of their own, though several display alike.
pub fn odd_tables() -> Vec<TableName> {
    vec![
        TableName::new(Some("a"), "b.c"),
        TableName::new(Some("a.b"), "c"),
        TableName::new(None, "a.b.c"),
        TableName::new(Some("public"), "say \"hi\""),
        TableName::new(Some("public"), "it's"),
        TableName::new(None, "日本 Größe"),
        TableName::new(Some("public"), "users"),
        TableName::new(None, "users"),
    ]
}

fn streams(pipeline: &str) -> Vec<StreamId> {
    odd_tables()
        .iter()
        .map(|t| StreamId::new(pipeline, t))
        .collect()
}

/// Connections are added, replaced, listed and removed; URLs are kept as
/// written (`${VAR}` unexpanded); the other handle sees every write.
pub async fn connections<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    assert!(a.connections().await.unwrap().is_empty());
    a.put_connection("app", "postgres://app:${APP_PASSWORD}@127.0.0.1/app")
        .await
        .unwrap();
    a.put_connection("Größe office", "sqlite://office.db")
        .await
        .unwrap();
    a.put_connection("app", "postgres://app:${NEW}@127.0.0.1/app")
        .await
        .unwrap();
    let want = BTreeMap::from([
        (
            "app".to_string(),
            "postgres://app:${NEW}@127.0.0.1/app".to_string(),
        ),
        ("Größe office".to_string(), "sqlite://office.db".to_string()),
    ]);
    assert_eq!(b.connections().await.unwrap(), want);
    assert!(b.remove_connection("app").await.unwrap());
    assert!(!a.remove_connection("app").await.unwrap());
    assert_eq!(a.connections().await.unwrap().len(), 1);
}

/// Pipelines are added, replaced, listed and removed.
pub async fn pipelines<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    let spec = |json: &str| -> PipelineSpec { serde_json::from_str(json).unwrap() };
    assert!(a.pipelines().await.unwrap().is_empty());
    let full = spec(r#"{"source":"app","target":"office","tables":["public.*"]}"#);
    let incremental = spec(r#"{"source":"app","target":"app","mode":"incremental"}"#);
    a.put_pipeline("one", &full).await.unwrap();
    a.put_pipeline("two", &full).await.unwrap();
    a.put_pipeline("two", &incremental).await.unwrap();
    let all = b.pipelines().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["one"], full);
    assert_eq!(all["two"], incremental);
    assert!(b.remove_pipeline("one").await.unwrap());
    assert!(!a.remove_pipeline("one").await.unwrap());
    assert_eq!(
        a.pipelines().await.unwrap().into_keys().collect::<Vec<_>>(),
        ["two"]
    );
}

/// A flag is `None` until set, reads back what was set last, and `None` again
/// once cleared; flags of other streams, pipelines and kinds stay as they are.
pub async fn flags<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    let ours = streams("p");
    let other = StreamId::new("q", &ours[0].table);
    for s in ours.iter().chain([&other]) {
        assert_eq!(a.flag(s, Flag::Enabled).await.unwrap(), None, "{s:?}");
    }
    for (i, s) in ours.iter().enumerate() {
        a.set_flag(s, Flag::Enabled, i % 2 == 0).await.unwrap();
    }
    a.set_flag(&ours[1], Flag::ForceFullLoad, true)
        .await
        .unwrap();
    for (i, s) in ours.iter().enumerate() {
        assert_eq!(
            b.flag(s, Flag::Enabled).await.unwrap(),
            Some(i % 2 == 0),
            "{s:?}"
        );
        let force = (i == 1).then_some(true);
        assert_eq!(
            b.flag(s, Flag::ForceFullLoad).await.unwrap(),
            force,
            "{s:?}"
        );
    }
    assert_eq!(b.flag(&other, Flag::Enabled).await.unwrap(), None);

    b.set_flag(&ours[0], Flag::Enabled, false).await.unwrap();
    assert_eq!(a.flag(&ours[0], Flag::Enabled).await.unwrap(), Some(false));
    b.clear_flag(&ours[1], Flag::ForceFullLoad).await.unwrap();
    assert_eq!(a.flag(&ours[1], Flag::ForceFullLoad).await.unwrap(), None);
    assert_eq!(a.flag(&ours[1], Flag::Enabled).await.unwrap(), Some(false));
    // Clearing what is not set is not an error.
    b.clear_flag(&other, Flag::ForceFullLoad).await.unwrap();
    assert_eq!(a.flag(&ours[2], Flag::Enabled).await.unwrap(), Some(true));
}

/// Each stream has the state set last, whatever its name; every state kind
/// reads back as written.
pub async fn stream_states<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    assert!(a.stream_states().await.unwrap().is_empty());
    let kinds = [
        StreamState::Paused,
        StreamState::Snapshotting { rows: 5000 },
        StreamState::Streaming,
        StreamState::Idle,
        StreamState::Failed {
            error: "table public.\"it's\": no primary key; add one ✗".into(),
            kind: Some(siphon_core::ErrorKind::Transient),
            next_retry: Some(Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 5).unwrap()),
        },
    ];
    let ours = streams("p");
    let mut want = Vec::new();
    for (i, s) in ours.iter().enumerate() {
        a.set_stream_state(s, &StreamState::Snapshotting { rows: 1 })
            .await
            .unwrap();
        let state = kinds[i % kinds.len()].clone();
        a.set_stream_state(s, &state).await.unwrap();
        want.push((s.clone(), state));
    }
    let mut got = b.stream_states().await.unwrap();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got, want);
}

/// Checkpoints of every phase are saved, read back, replaced and removed, one
/// per stream whatever its name.
pub async fn checkpoints<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    let ours = streams("p");
    let phase = |i: usize| match i % 4 {
        0 => Phase::Snapshot {
            last_key: None,
            resume_position: None,
            ranges: Vec::new(),
            shadow: None,
        },
        1 => Phase::Snapshot {
            last_key: Some(Position(serde_json::json!([i, "k\u{e9}y \"q\""]))),
            resume_position: Some(Position(serde_json::json!({ "lsn": "0/16B3748" }))),
            // A parallel load's ranges are kept with it.
            ranges: vec![siphon_core::KeyRange {
                after: Some(Position(serde_json::json!({ "key": [i] }))),
                until: None,
                done: false,
            }],
            // So is a swap load's shadow table.
            shadow: Some(siphon_core::TableName::new(Some("public"), "t_shadow")),
        },
        2 => Phase::Streaming { position: None },
        _ => Phase::Streaming {
            position: Some(Position(serde_json::json!({ "n": i }))),
        },
    };
    for s in &ours {
        assert_eq!(a.checkpoint(s).await.unwrap(), None, "{s:?}");
    }
    for (i, s) in ours.iter().enumerate() {
        a.save_checkpoint(&Checkpoint {
            stream: s.clone(),
            phase: phase(i + 1),
        })
        .await
        .unwrap();
        a.save_checkpoint(&Checkpoint {
            stream: s.clone(),
            phase: phase(i),
        })
        .await
        .unwrap();
    }
    for (i, s) in ours.iter().enumerate() {
        let want = Checkpoint {
            stream: s.clone(),
            phase: phase(i),
        };
        assert_eq!(b.checkpoint(s).await.unwrap(), Some(want), "{s:?}");
    }
    b.remove_checkpoint(&ours[0]).await.unwrap();
    assert_eq!(a.checkpoint(&ours[0]).await.unwrap(), None);
    assert!(a.checkpoint(&ours[1]).await.unwrap().is_some());
    // Removing what is not there is not an error.
    b.remove_checkpoint(&ours[0]).await.unwrap();
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_564_800 + secs, 123_456_000)
        .single()
        .expect("a valid instant")
}

fn stats(table: TableName, rows: u64, status: ExecutionStatus) -> TableStats {
    TableStats {
        table,
        mode: Mode::Full,
        rows_read: rows,
        inserted: rows / 2,
        updated: rows / 3,
        deleted: rows / 5,
        replaced: rows / 7,
        started_at: at(rows as i64),
        finished_at: (status != ExecutionStatus::Running).then(|| at(rows as i64 + 60)),
        status,
        error: (status == ExecutionStatus::Failed).then(|| "table users: refused".to_string()),
    }
}

/// Executions get growing ids, keep their tables (a second record of a table
/// replaces the first), their retained log and how they ended, and are listed
/// newest first, per pipeline and up to a limit.
pub async fn executions<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    assert!(a.executions(None, 10).await.unwrap().is_empty());
    let first = a.start_execution("app").await.unwrap();
    let second = b.start_execution("other").await.unwrap();
    let third = a.start_execution("app").await.unwrap();
    assert!(first < second && second < third, "{first} {second} {third}");

    let tables = odd_tables();
    let running = stats(tables[0].clone(), 10, ExecutionStatus::Running);
    let done = stats(tables[0].clone(), 100, ExecutionStatus::Succeeded);
    let failed = stats(tables[1].clone(), 7, ExecutionStatus::Failed);
    a.record_table(first, &running).await.unwrap();
    a.record_table(first, &failed).await.unwrap();
    b.record_table(first, &done).await.unwrap();
    a.record_retained_log(first, 4096).await.unwrap();
    a.finish_execution(first, ExecutionStatus::Failed, Some("1 of 2 tables failed"))
        .await
        .unwrap();
    b.finish_execution(second, ExecutionStatus::Stopped, None)
        .await
        .unwrap();

    let one = b
        .execution(first)
        .await
        .unwrap()
        .expect("the first execution");
    assert_eq!(one.id, first);
    assert_eq!(one.pipeline, "app");
    assert_eq!(one.status, ExecutionStatus::Failed);
    assert_eq!(one.error.as_deref(), Some("1 of 2 tables failed"));
    assert!(one.finished_at.is_some());
    assert_eq!(one.retained_log_bytes, Some(4096));
    let mut got = one.tables.clone();
    got.sort_by(|x, y| x.table.cmp(&y.table));
    let mut want = vec![done, failed];
    want.sort_by(|x, y| x.table.cmp(&y.table));
    assert_eq!(got, want);

    let open = a
        .execution(third)
        .await
        .unwrap()
        .expect("the third execution");
    assert_eq!(open.status, ExecutionStatus::Running);
    assert_eq!(open.finished_at, None);
    assert!(open.tables.is_empty());
    assert_eq!(a.execution(third + 1000).await.unwrap(), None);

    let ids = |v: Vec<siphon_core::Execution>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(a.executions(None, 10).await.unwrap()),
        [third, second, first]
    );
    assert_eq!(
        ids(a.executions(Some("app"), 10).await.unwrap()),
        [third, first]
    );
    assert_eq!(ids(a.executions(Some("app"), 1).await.unwrap()), [third]);
    assert_eq!(ids(a.executions(None, 0).await.unwrap()), Vec::<u64>::new());
    assert!(a.executions(Some("none"), 10).await.unwrap().is_empty());
    assert_eq!(a.executions(Some("app"), 10).await.unwrap()[1], one);
}
