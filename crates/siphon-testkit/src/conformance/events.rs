//! Cases for event targets ([`EventSink`]): a `cdc` pipeline from a real
//! source with a change log publishes its snapshot, then its changes, in
//! order, each with its id; the checkpoint moves only after the destination
//! acknowledged; after a crash the events since the checkpoint come again with
//! the ids they had.
//!
//! A connector's test file implements [`EventHarness`] (its destination, a
//! state store, and a source database with a change log) and runs one
//! `#[tokio::test]` per case. The pipeline runs through the engine
//! ([`siphon_engine::run_log_pass`] with an [`EventTarget`]), as `siphon run`
//! runs it; a crash is the pass dropped at a publish, with nothing after it run.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as J;
use siphon_core::{
    Event, EventSink, ExecutionStatus, LogSource, Op, PipelineSpec, StateStore, StreamId,
    TableName, Value,
};
use siphon_engine::{run_log_pass, EventTarget, NoopObserver, Shutdown};

use super::HarnessError;

/// One event as the destination holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The event's id.
    pub id: String,
    /// The table's key ([`TableName::key`]).
    pub table: String,
    /// `insert`, `update`, `delete`, `truncate` or `schema`.
    pub op: String,
    /// The row key's value of column `id` (every table of these cases has it).
    pub key_id: Option<i64>,
    /// Whether it carries its source transaction (a change read from the log).
    pub logged: bool,
    /// The whole event as the destination holds it, to compare repeats.
    pub body: J,
}

/// How the suite reaches one event connector, a state store and a source.
pub trait EventHarness: Send + Sync {
    /// The connector's event sink.
    type Sink: EventSink;
    /// A source with a change log the pipelines read.
    type Source: LogSource;
    /// Where checkpoints are kept.
    type State: StateStore;

    /// A new, empty destination; its locator.
    fn create_destination(&self) -> Result<String, HarnessError>;

    /// The connector's sink on `dest`: a new handle on every call, as a
    /// restarted process opens it.
    fn open_sink(&self, dest: &str)
        -> impl Future<Output = siphon_core::Result<Self::Sink>> + Send;

    /// Every event `dest` durably holds, in the order it holds them (at least
    /// per table).
    fn read_back(&self, dest: &str) -> Result<Vec<Delivered>, HarnessError>;

    /// A state store of its own for the destination `dest`, the same one on
    /// every call.
    fn open_state(
        &self,
        dest: &str,
    ) -> impl Future<Output = siphon_core::Result<Self::State>> + Send;

    /// A new, empty source database; its locator (a URL or a name).
    fn create_database(&self) -> Result<String, HarnessError>;

    /// Runs `sql` in the source database `db`, committed when it returns.
    fn execute(&self, db: &str, sql: &str) -> Result<(), HarnessError>;

    /// The source on `db`: a new connection on every call.
    fn open_source(
        &self,
        db: &str,
    ) -> impl Future<Output = siphon_core::Result<Self::Source>> + Send;

    /// The name a table called `name` has in the source database's default
    /// schema (`public.name`).
    fn table_name(&self, name: &str) -> TableName;
}

/// What a case sets up: a source table `items (id bigint primary key, v text)`
/// with rows 1..=`rows`, a destination, and the pipeline's name and spec.
struct Case {
    db: String,
    dest: String,
    pipeline: String,
    spec: PipelineSpec,
    table: TableName,
}

async fn case<H: EventHarness>(h: &H, rows: i64) -> Case {
    let db = h
        .create_database()
        .unwrap_or_else(|e| panic!("creating a source database: {e}"));
    let dest = h
        .create_destination()
        .unwrap_or_else(|e| panic!("creating a destination: {e}"));
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, 'v{i}')")).collect();
    let mut sql = "CREATE TABLE items (id bigint PRIMARY KEY, v text);".to_string();
    if !values.is_empty() {
        sql.push_str(&format!(
            "INSERT INTO items (id, v) VALUES {};",
            values.join(", ")
        ));
    }
    h.execute(&db, &sql)
        .unwrap_or_else(|e| panic!("creating table items: {e}"));
    let table = h.table_name("items");
    // One log per database: cases running at once never share one.
    let tail: String = db
        .rsplit('/')
        .next()
        .unwrap_or(&db)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let pipeline = format!("events_{tail}");
    let spec: PipelineSpec = serde_json::from_value(serde_json::json!({
        "source": "src",
        "target": "events",
        "mode": "cdc",
        "tables": [table.to_string()],
        "batch_size": 2,
    }))
    .unwrap_or_else(|e| panic!("the case's pipeline: {e}"));
    Case {
        db,
        dest,
        pipeline,
        spec,
        table,
    }
}

/// When a [`Gate`] stops a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Before the destination received the events.
    BeforeAck,
    /// After the destination acknowledged them, before the engine goes on.
    AfterAck,
}

/// An event sink that stops for ever at the first publish `trigger` picks,
/// and says so: the pass around it is then dropped, as a process dies.
struct Gate<'a, E> {
    inner: &'a E,
    stop: Stop,
    trigger: fn(&[Event]) -> bool,
    reached: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
}

impl<E: EventSink> EventSink for Gate<'_, E> {
    async fn publish(&self, events: Vec<Event>) -> siphon_core::Result<()> {
        let fire = (self.trigger)(&events) && !self.reached.swap(true, Ordering::SeqCst);
        if fire && self.stop == Stop::BeforeAck {
            self.notify.notify_one();
            return std::future::pending().await;
        }
        self.inner.publish(events).await?;
        if fire {
            self.notify.notify_one();
            return std::future::pending().await;
        }
        Ok(())
    }
}

/// Runs one pass to its end, again while it fails (a slot still held by a
/// dropped pass's connection is released within seconds), up to a deadline.
async fn pass<H: EventHarness>(h: &H, c: &Case) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let source = h
            .open_source(&c.db)
            .await
            .unwrap_or_else(|e| panic!("opening the source: {e}"));
        let sink = h
            .open_sink(&c.dest)
            .await
            .unwrap_or_else(|e| panic!("opening the event sink: {e}"));
        let state = h
            .open_state(&c.dest)
            .await
            .unwrap_or_else(|e| panic!("opening the state store: {e}"));
        let target = EventTarget::new(&sink, &state);
        let r = run_log_pass(
            &c.pipeline,
            &c.spec,
            &source,
            &target,
            &state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await;
        let why = match r {
            Ok(report) if report.status == ExecutionStatus::Succeeded => return,
            Ok(report) => format!("{:?}", report.tables),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "a pass of {} did not succeed within 60 s: {why}",
            c.pipeline
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a pass whose sink stops at the publish `trigger` picks, and drops it
/// there (a crash).
async fn crash<H: EventHarness>(h: &H, c: &Case, stop: Stop, trigger: fn(&[Event]) -> bool) {
    let source = h
        .open_source(&c.db)
        .await
        .unwrap_or_else(|e| panic!("opening the source: {e}"));
    let sink = h
        .open_sink(&c.dest)
        .await
        .unwrap_or_else(|e| panic!("opening the event sink: {e}"));
    let state = h
        .open_state(&c.dest)
        .await
        .unwrap_or_else(|e| panic!("opening the state store: {e}"));
    let reached = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(tokio::sync::Notify::new());
    let gate = Gate {
        inner: &sink,
        stop,
        trigger,
        reached: reached.clone(),
        notify: notify.clone(),
    };
    let target = EventTarget::new(&gate, &state);
    let shutdown = Shutdown::new();
    let run = run_log_pass(
        &c.pipeline,
        &c.spec,
        &source,
        &target,
        &state,
        &NoopObserver,
        &shutdown,
    );
    tokio::select! {
        r = run => panic!(
            "the pass ended ({:?}) without publishing the events the case stops at",
            r.map(|r| r.tables)
        ),
        _ = notify.notified() => {}
        _ = tokio::time::sleep(Duration::from_secs(60)) => {
            panic!("the pass did not reach the events the case stops at within 60 s")
        }
    }
    // The pass is dropped here, with everything it held: nothing after the
    // publish ran.
}

/// Drops the case's log at the source.
async fn cleanup<H: EventHarness>(h: &H, c: &Case) {
    let source = h
        .open_source(&c.db)
        .await
        .unwrap_or_else(|e| panic!("opening the source: {e}"));
    if let Err(e) = source.drop_log(&c.pipeline).await {
        panic!("dropping the log of {}: {e}", c.pipeline);
    }
}

/// The row changes (inserts, updates, deletes) the destination holds for the
/// case's table, in order.
fn row_events<H: EventHarness>(h: &H, c: &Case) -> Vec<Delivered> {
    let key = c.table.key();
    h.read_back(&c.dest)
        .unwrap_or_else(|e| panic!("reading the destination back: {e}"))
        .into_iter()
        .filter(|d| d.table == key && matches!(d.op.as_str(), "insert" | "update" | "delete"))
        .collect()
}

/// Every repeated id carries the same event as its first occurrence; returns
/// the events with repeats dropped, in first-occurrence order.
fn first_of_each(events: &[Delivered]) -> Vec<Delivered> {
    let mut seen: BTreeMap<&str, &Delivered> = BTreeMap::new();
    let mut out = Vec::new();
    for d in events {
        match seen.get(d.id.as_str()) {
            Some(first) => assert_eq!(
                first.body, d.body,
                "id {} was delivered twice with different contents",
                d.id
            ),
            None => {
                seen.insert(&d.id, d);
                out.push(d.clone());
            }
        }
    }
    out
}

/// `(op, id column)` of each event.
fn ops(events: &[Delivered]) -> Vec<(String, Option<i64>)> {
    events.iter().map(|d| (d.op.clone(), d.key_id)).collect()
}

fn expect(list: &[(&str, i64)]) -> Vec<(String, Option<i64>)> {
    list.iter()
        .map(|(o, k)| (o.to_string(), Some(*k)))
        .collect()
}

/// A publish holding a row of key `id` = 3 copied by the snapshot.
fn snapshot_row_3(events: &[Event]) -> bool {
    events.iter().any(|e| {
        e.change.tx.is_none()
            && matches!(&e.change.op, Op::Insert(r) if r.first() == Some(&Value::Int64(3)))
    })
}

/// A publish holding a change read from the log.
fn logged_change(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| e.change.tx.is_some() && !matches!(e.change.op, Op::Schema(_)))
}

/// A snapshot, then the log: the table's rows, then its changes in the order
/// the source committed them, each exactly once, the logged ones with their
/// transaction; ids are unique.
pub async fn snapshot_then_changes_in_order<H: EventHarness>(h: &H) {
    let c = case(h, 3).await;
    pass(h, &c).await;
    h.execute(
        &c.db,
        "BEGIN; INSERT INTO items VALUES (4, 'v4'), (5, 'v5'); COMMIT;
         BEGIN; UPDATE items SET v = 'x' WHERE id = 1; DELETE FROM items WHERE id = 2; COMMIT;",
    )
    .unwrap_or_else(|e| panic!("changing items: {e}"));
    pass(h, &c).await;
    cleanup(h, &c).await;

    let events = row_events(h, &c);
    assert_eq!(
        ops(&events),
        expect(&[
            ("insert", 1),
            ("insert", 2),
            ("insert", 3),
            ("insert", 4),
            ("insert", 5),
            ("update", 1),
            ("delete", 2)
        ]),
        "the destination's events of {}: {events:#?}",
        c.table
    );
    let logged: Vec<bool> = events.iter().map(|d| d.logged).collect();
    assert_eq!(
        logged,
        [false, false, false, true, true, true, true],
        "snapshot rows carry no transaction, logged changes do: {events:#?}"
    );
    let unique = first_of_each(&events);
    assert_eq!(
        unique.len(),
        events.len(),
        "two events share an id: {events:#?}"
    );
    let all = h
        .read_back(&c.dest)
        .unwrap_or_else(|e| panic!("reading the destination back: {e}"));
    let first = all.iter().find(|d| d.table == c.table.key());
    assert_eq!(
        first.map(|d| d.op.as_str()),
        Some("schema"),
        "the table's shape is announced before its first row: {all:#?}"
    );
}

/// A pass that dies before the destination acknowledged a batch has not
/// moved the checkpoint past it, and the next pass delivers it: nothing lost,
/// in the snapshot (which resumes from the checkpoint alone) and in the log.
pub async fn checkpoint_waits_for_the_ack<H: EventHarness>(h: &H) {
    let c = case(h, 4).await;
    // Had the checkpoint of the chunk of rows 3 and 4 been saved before the
    // destination took it, the snapshot would resume after row 4.
    crash(h, &c, Stop::BeforeAck, snapshot_row_3).await;
    pass(h, &c).await;
    let state = h
        .open_state(&c.dest)
        .await
        .unwrap_or_else(|e| panic!("opening the state store: {e}"));
    let stream = StreamId::new(&c.pipeline, &c.table);
    let snapshot = state
        .checkpoint(&stream)
        .await
        .unwrap_or_else(|e| panic!("reading the checkpoint: {e}"));
    assert!(
        snapshot.is_some(),
        "the snapshot left no checkpoint in the state store"
    );
    h.execute(
        &c.db,
        "INSERT INTO items VALUES (5, 'v5'); INSERT INTO items VALUES (6, 'v6');",
    )
    .unwrap_or_else(|e| panic!("changing items: {e}"));
    crash(h, &c, Stop::BeforeAck, logged_change).await;
    pass(h, &c).await;
    cleanup(h, &c).await;
    let events = first_of_each(&row_events(h, &c));
    assert_eq!(
        ops(&events),
        expect(&[
            ("insert", 1),
            ("insert", 2),
            ("insert", 3),
            ("insert", 4),
            ("insert", 5),
            ("insert", 6)
        ]),
        "after the crashes: {events:#?}"
    );
}

/// A pass that dies after the destination acknowledged a batch but before its
/// checkpoint was saved: the next pass delivers the batch again with the same
/// ids, in the snapshot and in the log. Every change is there, and a
/// repeated id carries the same change.
pub async fn replay_after_a_crash_keeps_ids<H: EventHarness>(h: &H) {
    let c = case(h, 5).await;
    // In the snapshot: the chunk of rows 3 and 4 is acknowledged, then the
    // process dies.
    crash(h, &c, Stop::AfterAck, snapshot_row_3).await;
    pass(h, &c).await;
    h.execute(
        &c.db,
        "BEGIN; INSERT INTO items VALUES (6, 'v6'); UPDATE items SET v = 'y' WHERE id = 6; COMMIT;
         DELETE FROM items WHERE id = 1;",
    )
    .unwrap_or_else(|e| panic!("changing items: {e}"));
    // In the log: the first batch is acknowledged, then the process dies.
    crash(h, &c, Stop::AfterAck, logged_change).await;
    pass(h, &c).await;
    cleanup(h, &c).await;

    let all = row_events(h, &c);
    let events = first_of_each(&all);
    assert_eq!(
        ops(&events),
        expect(&[
            ("insert", 1),
            ("insert", 2),
            ("insert", 3),
            ("insert", 4),
            ("insert", 5),
            ("insert", 6),
            ("update", 6),
            ("delete", 1)
        ]),
        "after two crashes: {all:#?}"
    );
    let repeated = |k: i64, logged: bool| {
        all.iter()
            .filter(|d| d.key_id == Some(k) && d.logged == logged && d.op == "insert")
            .count()
    };
    assert!(
        repeated(3, false) >= 2,
        "the acknowledged snapshot chunk was not replayed under the same id: {all:#?}"
    );
    assert!(
        repeated(6, true) >= 2,
        "the acknowledged log batch was not replayed under the same id: {all:#?}"
    );
}
