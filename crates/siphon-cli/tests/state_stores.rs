//! `siphon run --once` with its state in Redis and in PostgreSQL: the
//! catalog, the history and the checkpoints of event targets live in the
//! shared store, and a second run resumes from the checkpoints the first one
//! left there, copying only the rows added since.

use std::path::Path;

use rusqlite::Connection;
use siphon::{AnyStateStore, ConnectionUrl, Registry};
use siphon_core::{ExecutionStatus, StateStore, StreamId, TableName};
use siphon_testkit::{Postgres, Redis};

mod support;
use support::{ok, siphon};

/// Adds rows `from..=to` to the source's `items`, each stamped later than
/// the ones before and marked `row-N` in `v`.
fn add_rows(dir: &Path, from: i64, to: i64) {
    let db = Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, v TEXT NOT NULL, at TEXT NOT NULL)",
    )
    .unwrap();
    for n in from..=to {
        db.execute(
            "INSERT INTO items VALUES (?1, ?2, ?3)",
            rusqlite::params![n, format!("row-{n}"), format!("2026-01-01 00:00:{n:02}")],
        )
        .unwrap();
    }
}

/// How many times row `n` was published to the event file.
fn published(dir: &Path, n: i64) -> usize {
    let text = std::fs::read_to_string(dir.join("events").join("items.jsonl")).unwrap_or_default();
    let marker = format!("\"row-{n}\"");
    text.lines().filter(|l| l.contains(&marker)).count()
}

/// The target's `items`, by id; none while the table is not there.
fn target_rows(dir: &Path) -> Vec<(i64, String)> {
    let db = Connection::open(dir.join("dst.db")).unwrap();
    let made: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'items'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if made == 0 {
        return Vec::new();
    }
    let mut stmt = db.prepare("SELECT id, v FROM items ORDER BY id").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    rows
}

async fn open(state: &str) -> AnyStateStore {
    Registry::standard()
        .open_state("state", &ConnectionUrl::from_parts(state, state))
        .await
        .unwrap_or_else(|e| panic!("open {state}: {e}"))
}

/// Two incremental pipelines from one SQLite source: to a SQLite target
/// (checkpoints in the target) and to a file event target (checkpoints in
/// the state store), run twice with `state` as the store.
async fn runs_and_resumes(state: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_rows(d, 1, 3);
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: {state}\n\
             connections:\n  src: sqlite://src.db\n  dst: sqlite://dst.db\n  out: file://{}\n\
             pipelines:\n\
             \x20 to_db:\n    source: src\n    target: dst\n    mode: incremental\n    cursor: at\n\
             \x20 to_events:\n    source: src\n    target: out\n    mode: incremental\n    cursor: at\n",
            d.join("events").display()
        ),
    )
    .unwrap();

    ok(siphon(d, &["run", "--once"]));
    // Nothing of the run is in the working directory: no SQLite state file.
    assert!(!d.join(".siphon").exists(), "a local state file was made");
    let want: Vec<(i64, String)> = (1..=3).map(|n| (n, format!("row-{n}"))).collect();
    assert_eq!(target_rows(d), want);
    // Each row is published (the row at the copy's high-water mark may be
    // published again by the poll that follows the copy: at least once).
    let first: Vec<usize> = (1..=3).map(|n| published(d, n)).collect();
    assert!(first.iter().all(|&c| c >= 1), "{first:?}");

    let store = open(state).await;
    let pipelines = store.pipelines().await.unwrap();
    assert_eq!(
        pipelines.keys().collect::<Vec<_>>(),
        ["to_db", "to_events"],
        "the config was applied to the store"
    );
    let items = TableName::new(None, "items");
    let kept = store
        .checkpoint(&StreamId::new("to_events", &items))
        .await
        .unwrap();
    assert!(
        kept.is_some(),
        "the event target's checkpoint is kept in the store"
    );
    for p in ["to_db", "to_events"] {
        let runs = store.executions(Some(p), 10).await.unwrap();
        assert_eq!(runs.len(), 1, "{p}: {runs:?}");
        assert_eq!(runs[0].status, ExecutionStatus::Succeeded, "{p}");
        assert!(runs[0].tables[0].rows_read >= 3, "{p}: {:?}", runs[0]);
    }

    // The second run reads only what was added: it resumes from the
    // checkpoints, the event target's from the store.
    add_rows(d, 4, 5);
    ok(siphon(d, &["run", "--once"]));
    let want: Vec<(i64, String)> = (1..=5).map(|n| (n, format!("row-{n}"))).collect();
    assert_eq!(target_rows(d), want);
    for n in 1..=3 {
        assert_eq!(
            published(d, n),
            first[n as usize - 1],
            "row {n} was published again: the run started over"
        );
    }
    for n in 4..=5 {
        assert!(published(d, n) >= 1, "row {n} was never published");
    }
    for p in ["to_db", "to_events"] {
        let runs = store.executions(Some(p), 10).await.unwrap();
        assert_eq!(runs.len(), 2, "{p}: {runs:?}");
        assert_eq!(runs[0].status, ExecutionStatus::Succeeded, "{p}");
        assert_eq!(runs[0].tables[0].rows_read, 2, "{p}: {:?}", runs[0]);
    }
    assert_ne!(
        store
            .checkpoint(&StreamId::new("to_events", &items))
            .await
            .unwrap(),
        kept,
        "the event target's checkpoint moved on"
    );
}

/// A pipeline whose lease another worker holds in the shared store is not
/// run by `siphon run --once`, which says who holds it; once released, it runs.
async fn waits_for_another_workers_lease(state: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_rows(d, 1, 2);
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: {state}\n\
             connections:\n  src: sqlite://src.db\n  dst: sqlite://dst.db\n\
             pipelines:\n  copy:\n    source: src\n    target: dst\n"
        ),
    )
    .unwrap();
    let store = open(state).await;
    let held = store
        .acquire_lease(
            "copy",
            "other-host:4242:w",
            std::time::Duration::from_secs(120),
        )
        .await
        .unwrap()
        .expect("the free lease is granted");
    let out = support::siphon_with(d, &["run", "--once"], &[("SIPHON_LEASE_TTL", "1s")]);
    let text = support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("holds the pipeline's lease") && text.contains("other-host:4242:w"),
        "{text}"
    );
    assert!(target_rows(d).is_empty());
    assert_eq!(store.lease("copy").await.unwrap(), Some(held.clone()));

    store.release_lease(&held).await.unwrap();
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(target_rows(d).len(), 2);
    // The run's own lease had a greater epoch, and it gave it back.
    assert_eq!(store.lease("copy").await.unwrap(), None);
    let next = store
        .acquire_lease(
            "copy",
            "other-host:4242:w",
            std::time::Duration::from_secs(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(next.epoch > held.epoch + 1, "{next:?} after {held:?}");
}

#[tokio::test]
async fn a_redis_store_shares_leases_between_workers() {
    let redis = Redis::shared().unwrap();
    let prefix = siphon_testkit::unique_name("lease");
    waits_for_another_workers_lease(&format!("{}?prefix={prefix}", redis.url())).await;
}

#[tokio::test]
async fn a_postgres_store_shares_leases_between_workers() {
    let pg = Postgres::shared().unwrap();
    let db = pg.create_database().unwrap();
    waits_for_another_workers_lease(&db).await;
}

#[tokio::test]
async fn a_redis_state_store_runs_and_resumes() {
    let redis = Redis::shared().unwrap();
    let prefix = siphon_testkit::unique_name("cli");
    runs_and_resumes(&format!("{}?prefix={prefix}", redis.url())).await;
}

#[tokio::test]
async fn a_postgres_state_store_runs_and_resumes() {
    let pg = Postgres::shared().unwrap();
    let db = pg.create_database().unwrap();
    runs_and_resumes(&format!("{db}?schema=siphon_state")).await;
    assert_eq!(
        pg.query_in(
            db.rsplit('/').next().unwrap(),
            "SELECT string_agg(name, ',' ORDER BY name) FROM siphon_state.sync_configurations"
        )
        .unwrap(),
        "to_db,to_events"
    );
}

/// The SQL Server replicator's operator switches tables with `redis-cli`
/// under `mssql_sync:`; with that prefix siphon reads the same keys: a paused
/// table starts once `enabled` is "true", and `force_full_load` reloads it
/// and is deleted.
#[test]
fn redis_cli_switches_tables_of_siphon_runs() {
    let redis = Redis::shared().unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-h",
                redis.host(),
                "-p",
                &redis.port().to_string(),
                "-n",
                "3",
            ])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_rows(d, 1, 2);
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: {}?prefix=mssql_sync\n\
             connections:\n  src: sqlite://src.db\n  dst: sqlite://dst.db\n\
             pipelines:\n  mssql:\n    source: src\n    target: dst\n    mode: incremental\n\
             \x20   cursor: at\n    new_tables: paused\n",
            redis.url_db(3)
        ),
    )
    .unwrap();

    // Paused until enabled, as the original tool's tables were.
    ok(siphon(d, &["run", "--once"]));
    assert!(target_rows(d).is_empty());

    assert_eq!(cli(&["SET", "mssql_sync:enabled:items", "true"]), "OK");
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(target_rows(d).len(), 2);

    // A row lost on the target comes back only by a reload.
    Connection::open(d.join("dst.db"))
        .unwrap()
        .execute("DELETE FROM items WHERE id = 1", [])
        .unwrap();
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(target_rows(d).len(), 1);
    assert_eq!(
        cli(&["SET", "mssql_sync:force_full_load:items", "true"]),
        "OK"
    );
    ok(siphon(d, &["run", "--once"]));
    let want: Vec<(i64, String)> = (1..=2).map(|n| (n, format!("row-{n}"))).collect();
    assert_eq!(target_rows(d), want);
    assert_eq!(cli(&["EXISTS", "mssql_sync:force_full_load:items"]), "0");
    assert_eq!(cli(&["GET", "mssql_sync:enabled:items"]), "true");

    // Paused again by the same key: new rows wait.
    assert_eq!(cli(&["SET", "mssql_sync:enabled:items", "false"]), "OK");
    add_rows(d, 3, 3);
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(target_rows(d).len(), 2);
}

#[test]
fn a_tls_redis_url_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = siphon(
        dir.path(),
        &["--state", "rediss://:secret@127.0.0.1:1/0", "sync", "list"],
    );
    let text = support::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("rediss:// (Redis over TLS) is not built"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}
