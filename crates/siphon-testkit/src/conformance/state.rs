//! The state store suite: every [`StateStore`] method behaves per its contract,
//! seen through two handles on one store, with tables whose names display alike
//! (`"a"."b.c"`, `"a.b"."c"`, `a.b.c`) kept apart.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, TimeZone, Utc};
use siphon_core::{
    Checkpoint, CommitLag, ExecutionStatus, Flag, Mode, Phase, PipelineSpec, Position, RowCounts,
    StateStore, StreamId, StreamState, TableName, TableStats,
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
            attempt: 2,
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
/// per stream whatever its name; so is the commit lag kept beside them.
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
            epoch: 0,
            phase: phase(i + 1),
        })
        .await
        .unwrap();
        a.save_checkpoint(&Checkpoint {
            stream: s.clone(),
            epoch: 0,
            phase: phase(i),
        })
        .await
        .unwrap();
    }
    for (i, s) in ours.iter().enumerate() {
        let want = Checkpoint {
            stream: s.clone(),
            epoch: 0,
            phase: phase(i),
        };
        assert_eq!(b.checkpoint(s).await.unwrap(), Some(want), "{s:?}");
    }
    b.remove_checkpoint(&ours[0]).await.unwrap();
    assert_eq!(a.checkpoint(&ours[0]).await.unwrap(), None);
    assert!(a.checkpoint(&ours[1]).await.unwrap().is_some());
    // Removing what is not there is not an error.
    b.remove_checkpoint(&ours[0]).await.unwrap();
    commit_lags(&a, &b, &ours).await;
}

/// The commit lag kept with each checkpoint: recorded for several streams at
/// once, replaced, read by the other handle to the microsecond, and removed
/// with its stream's checkpoint and its pipeline.
async fn commit_lags<S: StateStore>(a: &S, b: &S, ours: &[StreamId]) {
    assert!(a.commit_lags().await.unwrap().is_empty());
    let lag = |i: i64, behind_ms: i64| CommitLag {
        source_commit_at: at(i * 10),
        applied_at: at(i * 10) + chrono::Duration::milliseconds(behind_ms),
    };
    let theirs = StreamId::new("q", &ours[1].table);
    let mut first: Vec<(StreamId, CommitLag)> = ours
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), lag(i as i64, 250)))
        .collect();
    first.push((theirs.clone(), lag(9, 1500)));
    a.record_commit_lags(&first).await.unwrap();
    // A later checkpoint replaces the lag of the streams it covers only.
    let later = vec![(ours[1].clone(), lag(7, 40))];
    b.record_commit_lags(&later).await.unwrap();
    b.record_commit_lags(&[]).await.unwrap();
    let mut want = first.clone();
    want[1].1 = later[0].1;
    let sorted = |mut v: Vec<(StreamId, CommitLag)>| {
        v.sort_by(|x, y| (&x.0.pipeline, x.0.table.key()).cmp(&(&y.0.pipeline, y.0.table.key())));
        v
    };
    assert_eq!(sorted(b.commit_lags().await.unwrap()), sorted(want.clone()));
    assert_eq!(want[1].1.seconds(), 0.04);
    assert_eq!(want.last().unwrap().1.seconds(), 1.5);
    // A source clock ahead of siphon's shows no lag rather than a negative one.
    let ahead = CommitLag {
        source_commit_at: at(5),
        applied_at: at(4),
    };
    assert_eq!(ahead.seconds(), 0.0);

    a.remove_checkpoint(&ours[2]).await.unwrap();
    want.retain(|(s, _)| s != &ours[2]);
    assert_eq!(sorted(b.commit_lags().await.unwrap()), sorted(want.clone()));
    b.remove_pipeline("q").await.unwrap();
    want.retain(|(s, _)| s != &theirs);
    assert_eq!(sorted(a.commit_lags().await.unwrap()), sorted(want));
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_564_800 + secs, 123_456_000)
        .single()
        .expect("a valid instant")
}

/// Statistics of a table; odd `rows` make a `row_count` table's, whose
/// target count is missing when `rows` is also a multiple of 7.
fn stats(table: TableName, rows: u64, status: ExecutionStatus) -> TableStats {
    let row_counts = (!rows.is_multiple_of(2)).then(|| RowCounts {
        source: rows,
        target: (!rows.is_multiple_of(7)).then_some(rows + 1),
    });
    TableStats {
        table,
        mode: if row_counts.is_some() {
            Mode::RowCount
        } else {
            Mode::Full
        },
        rows_read: rows,
        inserted: rows / 2,
        updated: rows / 3,
        deleted: rows / 5,
        // Past 32 bits, and unlike any other count.
        bytes: rows * 3_000_000_017,
        replaced: rows / 7,
        row_counts,
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
    let mut bytes: Vec<u64> = got.iter().map(|t| t.bytes).collect();
    bytes.sort_unstable();
    assert_eq!(bytes, [failed.bytes, done.bytes], "the bytes a run read");
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

/// A pipeline's history is pruned by count and by age: the executions past
/// its newest `keep_last`, and those that started before `older_than`, go with
/// their tables; other pipelines keep theirs, and pruning again removes none.
pub async fn prune_executions<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    let other = a.start_execution("other").await.unwrap();
    let mut app = Vec::new();
    for _ in 0..4 {
        app.push(b.start_execution("app").await.unwrap());
    }
    let table = odd_tables()[0].clone();
    a.record_table(app[0], &stats(table, 3, ExecutionStatus::Succeeded))
        .await
        .unwrap();
    let ids = |v: Vec<siphon_core::Execution>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();

    assert_eq!(a.prune_executions("app", None, None).await.unwrap(), 0);
    assert_eq!(a.prune_executions("app", None, Some(3)).await.unwrap(), 1);
    assert_eq!(b.execution(app[0]).await.unwrap(), None);
    assert_eq!(
        ids(b.executions(Some("app"), 10).await.unwrap()),
        [app[3], app[2], app[1]]
    );
    assert_eq!(a.prune_executions("app", None, Some(3)).await.unwrap(), 0);

    // By age: the executions that started before the third one's start.
    let third = a
        .execution(app[2])
        .await
        .unwrap()
        .expect("the third execution");
    let at = Some(third.started_at);
    assert_eq!(a.prune_executions("app", at, Some(10)).await.unwrap(), 1);
    assert_eq!(
        ids(b.executions(Some("app"), 10).await.unwrap()),
        [app[3], app[2]]
    );
    assert_eq!(a.prune_executions("app", at, None).await.unwrap(), 0);

    // Both limits: whichever removes more.
    let later = Some(Utc::now() + chrono::Duration::days(1));
    assert_eq!(b.prune_executions("app", later, Some(1)).await.unwrap(), 2);
    assert!(a.executions(Some("app"), 10).await.unwrap().is_empty());
    assert_eq!(ids(a.executions(None, 10).await.unwrap()), [other]);
    assert!(a.execution(other).await.unwrap().is_some());
    // New executions after a prune still get growing ids.
    let next = a.start_execution("app").await.unwrap();
    assert!(next > app[3], "{next} after {}", app[3]);
}

const LONG: std::time::Duration = std::time::Duration::from_secs(60);

/// A pipeline's lease is granted to one holder at a time: refused to another
/// while live, extended with its epoch unchanged for its own holder, taken
/// over once expired or released with a greater epoch (never reused), and
/// renewable only by the holder of that epoch.
pub async fn leases<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    assert_eq!(a.lease("p").await.unwrap(), None);
    let first = a
        .acquire_lease("p", "w1", LONG)
        .await
        .unwrap()
        .expect("a free lease is granted");
    assert_eq!(
        (first.pipeline.as_str(), first.holder.as_str()),
        ("p", "w1")
    );
    assert!(first.epoch >= 1, "{first:?}");
    assert!(first.expires_at > Utc::now());
    assert_eq!(b.acquire_lease("p", "w2", LONG).await.unwrap(), None);
    assert_eq!(b.lease("p").await.unwrap(), Some(first.clone()));
    // Another pipeline's lease is its own.
    let other = b.acquire_lease("q", "w2", LONG).await.unwrap();
    assert_eq!(other.map(|l| l.holder), Some("w2".to_string()));
    // The holder asking again keeps its epoch.
    let again = a.acquire_lease("p", "w1", LONG).await.unwrap().unwrap();
    assert_eq!(again.epoch, first.epoch);
    assert!(again.expires_at >= first.expires_at);
    // Renewal by anyone but the holder of that epoch is refused.
    let forged = siphon_core::Lease {
        holder: "w2".to_string(),
        ..first.clone()
    };
    assert_eq!(b.renew_lease(&forged, LONG).await.unwrap(), None);
    let renewed = b.renew_lease(&first, LONG).await.unwrap().unwrap();
    assert_eq!(
        (renewed.epoch, renewed.holder.as_str()),
        (first.epoch, "w1")
    );

    // An expired lease goes to the next who asks, with a greater epoch, and
    // its former holder can neither renew nor release it any more.
    let short = a
        .acquire_lease("p", "w1", std::time::Duration::ZERO)
        .await
        .unwrap()
        .expect("the holder is granted its own lease");
    assert_eq!(short.epoch, first.epoch);
    let taken = b
        .acquire_lease("p", "w2", LONG)
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert_eq!(taken.holder, "w2");
    assert!(taken.epoch > first.epoch, "{taken:?} after {first:?}");
    assert_eq!(a.renew_lease(&short, LONG).await.unwrap(), None);
    a.release_lease(&short).await.unwrap();
    assert_eq!(a.lease("p").await.unwrap(), Some(taken.clone()));
    assert_eq!(a.acquire_lease("p", "w1", LONG).await.unwrap(), None);

    // A released lease is free at once, and its epoch is not given again,
    // not even to the holder that released it.
    b.release_lease(&taken).await.unwrap();
    assert_eq!(a.lease("p").await.unwrap(), None);
    assert_eq!(b.renew_lease(&taken, LONG).await.unwrap(), None);
    let back = b.acquire_lease("p", "w2", LONG).await.unwrap().unwrap();
    assert!(back.epoch > taken.epoch, "{back:?} after {taken:?}");

    // A lease that runs out by itself is taken over once its time is up.
    let brief = a
        .acquire_lease("r", "w1", std::time::Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.acquire_lease("r", "w2", LONG).await.unwrap(), None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        if let Some(l) = b.acquire_lease("r", "w2", LONG).await.unwrap() {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired lease was never granted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(after.epoch > brief.epoch);
    assert!(Utc::now() >= brief.expires_at);

    // Checkpoints kept in the store (event targets) are fenced too: the
    // worker of `taken`'s epoch lost pipeline `p` to `back`.
    let stream = StreamId::new("p", &TableName::new(None, "t"));
    let at = |epoch: u64| {
        Checkpoint::new(stream.clone(), Phase::Streaming { position: None }).with_epoch(epoch)
    };
    a.save_checkpoint(&at(back.epoch)).await.unwrap();
    let e = b
        .save_checkpoint(&at(taken.epoch))
        .await
        .expect_err("a checkpoint of an older lease epoch was saved");
    assert_eq!(e.kind(), siphon_core::ErrorKind::Fenced, "{e}");
    assert_eq!(a.checkpoint(&stream).await.unwrap(), Some(at(back.epoch)));
    // Without a lease (epoch 0: copies of a table target's checkpoints).
    a.save_checkpoint(&at(0)).await.unwrap();
    assert_eq!(a.checkpoint(&stream).await.unwrap(), Some(at(0)));
}

/// Of many handles asking at once for one free lease, exactly one is granted it.
pub async fn lease_race<H: StoreHarness>(h: &H) {
    let at = h
        .create_store()
        .unwrap_or_else(|e| panic!("creating a store: {e}"));
    let mut handles = Vec::new();
    for _ in 0..6 {
        handles.push(h.open_store(&at).await.expect("opening the store"));
    }
    let asks = handles
        .iter()
        .enumerate()
        .map(|(i, s)| async move { s.acquire_lease("p", &format!("w{i}"), LONG).await });
    let granted: Vec<_> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(
        handles[0].lease("p").await.unwrap(),
        Some(granted[0].clone())
    );
}

/// Taking a flag reads and clears it in one step: `true` once after it was set
/// to `true`; of two handles taking it at once, exactly one gets `true`.
pub async fn take_flag<H: StoreHarness>(h: &H) {
    let (a, b) = two_handles(h).await;
    let ours = streams("p");
    assert!(!a.take_flag(&ours[0], Flag::ForceFullLoad).await.unwrap());
    a.set_flag(&ours[0], Flag::ForceFullLoad, true)
        .await
        .unwrap();
    a.set_flag(&ours[1], Flag::ForceFullLoad, true)
        .await
        .unwrap();
    assert!(b.take_flag(&ours[0], Flag::ForceFullLoad).await.unwrap());
    assert_eq!(a.flag(&ours[0], Flag::ForceFullLoad).await.unwrap(), None);
    assert!(!a.take_flag(&ours[0], Flag::ForceFullLoad).await.unwrap());
    // Others stay set: another stream, another kind.
    assert_eq!(
        a.flag(&ours[1], Flag::ForceFullLoad).await.unwrap(),
        Some(true)
    );
    a.set_flag(&ours[0], Flag::Enabled, true).await.unwrap();
    assert!(!a.take_flag(&ours[0], Flag::ForceFullLoad).await.unwrap());
    assert_eq!(a.flag(&ours[0], Flag::Enabled).await.unwrap(), Some(true));
    // A flag set to false is cleared, and reads as not set.
    a.set_flag(&ours[2], Flag::ForceFullLoad, false)
        .await
        .unwrap();
    assert!(!b.take_flag(&ours[2], Flag::ForceFullLoad).await.unwrap());
    assert_eq!(a.flag(&ours[2], Flag::ForceFullLoad).await.unwrap(), None);

    for round in 0..20 {
        let s = &ours[round % ours.len()];
        a.set_flag(s, Flag::ForceFullLoad, true).await.unwrap();
        let (x, y) = futures_util::future::join(
            a.take_flag(s, Flag::ForceFullLoad),
            b.take_flag(s, Flag::ForceFullLoad),
        )
        .await;
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(
            x ^ y,
            "round {round}: both or neither took the flag ({x}, {y})"
        );
    }
}

/// Conflicts are recorded unresolved with growing ids, listed oldest first
/// per pipeline or all, and resolved once.
pub async fn conflicts<H: StoreHarness>(h: &H) {
    use siphon_core::{Conflict, Side};
    let (a, b) = two_handles(h).await;
    assert!(a.conflicts(None, false).await.unwrap().is_empty());
    let tables = odd_tables();
    let conflict = |pipeline: &str, table: &TableName, n: i64| Conflict {
        id: 0,
        pipeline: pipeline.to_string(),
        table: table.clone(),
        key: serde_json::json!({ "id": n, "name": "k\u{e9}y \"q\"" }),
        source_row: (n % 2 == 0).then(|| serde_json::json!({ "id": n, "v": "from source" })),
        target_row: Some(serde_json::json!({ "id": n, "v": null })),
        detected_at: at(n),
        resolved_at: Some(at(99)),
        resolution: Some(Side::Target),
    };
    let one = conflict("p", &tables[0], 1);
    let two = conflict("p", &tables[1], 2);
    let three = conflict("q", &tables[2], 3);
    let id1 = a.record_conflict(&one).await.unwrap();
    let id2 = b.record_conflict(&two).await.unwrap();
    let id3 = a.record_conflict(&three).await.unwrap();
    assert!(id1 < id2 && id2 < id3, "{id1} {id2} {id3}");
    let stored = |c: &Conflict, id: u64| Conflict {
        id,
        resolved_at: None,
        resolution: None,
        ..c.clone()
    };
    assert_eq!(
        b.conflicts(None, false).await.unwrap(),
        [stored(&one, id1), stored(&two, id2), stored(&three, id3)]
    );
    assert_eq!(
        b.conflicts(Some("p"), true).await.unwrap(),
        [stored(&one, id1), stored(&two, id2)]
    );
    assert!(b.conflicts(Some("none"), false).await.unwrap().is_empty());

    let before = Utc::now();
    assert!(a.resolve_conflict(id1, Side::Source).await.unwrap());
    assert!(!b.resolve_conflict(id1, Side::Target).await.unwrap());
    assert!(!b.resolve_conflict(id3 + 1000, Side::Target).await.unwrap());
    assert_eq!(
        b.conflicts(Some("p"), true).await.unwrap(),
        [stored(&two, id2)]
    );
    let all = b.conflicts(Some("p"), false).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].resolution, Some(Side::Source));
    let resolved_at = all[0].resolved_at.expect("resolved");
    assert!(resolved_at >= before, "{resolved_at} before {before}");
    assert_eq!(all[1], stored(&two, id2));
}
