//! `PostgresStateStore` against a real PostgreSQL server: the state store
//! conformance suite (each store in a schema of its own), the migrations,
//! and the original sync service's tables as its users' reports read them.

use std::sync::OnceLock;

use siphon_core::{
    Checkpoint, Conflict, ErrorKind, ExecutionStatus, Mode, Phase, Position, StateStore, StreamId,
    TableName, TableStats,
};
use siphon_state::PostgresStateStore;
use siphon_testkit::conformance::state::{self, StoreHarness};
use siphon_testkit::conformance::HarnessError;
use siphon_testkit::Postgres;

/// One database for this test binary; each store is a schema of it.
fn database() -> &'static (String, String) {
    static DB: OnceLock<(String, String)> = OnceLock::new();
    DB.get_or_init(|| {
        let pg = Postgres::shared().expect("the shared PostgreSQL server");
        let name = siphon_testkit::unique_name("state");
        let url = pg
            .create_database_named(&name)
            .expect("create the test database");
        (name, url)
    })
}

/// `psql` in the test database; what it printed.
fn psql(sql: &str) -> String {
    let pg = Postgres::shared().unwrap();
    pg.query_in(&database().0, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn new_schema() -> String {
    siphon_testkit::unique_name("s")
}

fn url(schema: &str) -> String {
    format!("{}?schema={schema}", database().1)
}

struct PostgresStores;

impl StoreHarness for PostgresStores {
    type Store = PostgresStateStore;

    fn create_store(&self) -> Result<String, HarnessError> {
        Ok(url(&new_schema()))
    }

    async fn open_store(&self, locator: &str) -> siphon_core::Result<PostgresStateStore> {
        PostgresStateStore::open_url(locator).await
    }
}

#[tokio::test]
async fn connections() {
    state::connections(&PostgresStores).await;
}

#[tokio::test]
async fn pipelines() {
    state::pipelines(&PostgresStores).await;
}

#[tokio::test]
async fn flags() {
    state::flags(&PostgresStores).await;
}

#[tokio::test]
async fn stream_states() {
    state::stream_states(&PostgresStores).await;
}

#[tokio::test]
async fn checkpoints() {
    state::checkpoints(&PostgresStores).await;
}

#[tokio::test]
async fn executions() {
    state::executions(&PostgresStores).await;
}

#[tokio::test]
async fn prune_executions() {
    state::prune_executions(&PostgresStores).await;
}

#[tokio::test]
async fn leases() {
    state::leases(&PostgresStores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_race() {
    state::lease_race(&PostgresStores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn take_flag() {
    state::take_flag(&PostgresStores).await;
}

#[tokio::test]
async fn conflicts() {
    state::conflicts(&PostgresStores).await;
}

/// Several processes opening a new schema at once: one creates it and runs
/// the migrations, the others find it done; the version is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_migrate_once() {
    let schema = new_schema();
    let at = url(&schema);
    let opens = (0..5).map(|_| PostgresStateStore::open_url(&at));
    for opened in futures_util::future::join_all(opens).await {
        opened.expect("every open succeeds");
    }
    assert_eq!(
        psql(&format!(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM \"{schema}\".siphon_migrations"
        )),
        "1,2,3"
    );
    // A schema written by a newer siphon is refused, naming the way out.
    psql(&format!(
        "INSERT INTO \"{schema}\".siphon_migrations (version) VALUES (99)"
    ));
    let e = PostgresStateStore::open_url(&at).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("schema version is 99"), "{e}");
}

/// The original sync service's users read its metadata tables: a pipeline is
/// a row of `sync_configurations`, its runs rows of `sync_executions` with
/// their row counts summed over the tables, its checkpoints rows of
/// `sync_change_tracking`, and its conflicts rows of `sync_conflicts`.
#[tokio::test]
async fn the_enabled_column_is_the_pipelines_switch() {
    let schema = new_schema();
    let s = PostgresStateStore::open_url(&url(&schema)).await.unwrap();
    let mut spec: siphon_core::PipelineSpec =
        serde_json::from_str(r#"{"source":"app","target":"office"}"#).unwrap();
    let column = || {
        psql(&format!(
            "SELECT enabled FROM \"{schema}\".sync_configurations WHERE name = 'p'"
        ))
    };
    spec.enabled = false;
    s.put_pipeline("p", &spec).await.unwrap();
    assert_eq!(column(), "f");
    assert!(!s.pipelines().await.unwrap()["p"].enabled);
    // The original sync service's users switch a sync with the column.
    psql(&format!(
        "UPDATE \"{schema}\".sync_configurations SET enabled = true WHERE name = 'p'"
    ));
    assert!(s.pipelines().await.unwrap()["p"].enabled);
    psql(&format!(
        "UPDATE \"{schema}\".sync_configurations SET enabled = false WHERE name = 'p'"
    ));
    assert!(!s.pipelines().await.unwrap()["p"].enabled);
    spec.enabled = true;
    s.put_pipeline("p", &spec).await.unwrap();
    assert_eq!(column(), "t");
    assert!(s.pipelines().await.unwrap()["p"].enabled);
}

#[tokio::test]
async fn the_sync_services_tables_hold_what_reports_read() {
    let schema = new_schema();
    let s = PostgresStateStore::open_url(&url(&schema)).await.unwrap();
    let spec = serde_json::from_str(
        r#"{"source":"app","target":"office","mode":"incremental","tables":["public.users","public.orders"],
            "batch_size":1000,"schedule":"every 1h","cursor":"updated_at"}"#,
    )
    .unwrap();
    s.put_pipeline("users_sync", &spec).await.unwrap();
    assert_eq!(
        psql(&format!(
            "SELECT name, source_connection, target_connection, source_table, sync_strategy,
                    conflict_resolution, batch_size, sync_interval_seconds, enabled
             FROM \"{schema}\".sync_configurations"
        )),
        "users_sync|app|office|public.users, public.orders|incremental|source_wins|1000|3600|t"
    );

    let users = TableName::new(Some("public"), "users");
    let orders = TableName::new(Some("public"), "orders");
    let id = s.start_execution("users_sync").await.unwrap();
    for (table, rows) in [(&users, 10), (&orders, 4)] {
        let mut stats = TableStats::starting(table, Mode::Incremental);
        stats.rows_read = rows;
        stats.bytes = rows * 100;
        stats.inserted = rows - 1;
        stats.updated = 1;
        stats.status = ExecutionStatus::Succeeded;
        stats.finished_at = Some(chrono::Utc::now());
        s.record_table(id, &stats).await.unwrap();
    }
    s.finish_execution(id, ExecutionStatus::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(
        psql(&format!(
            "SELECT e.id, c.name, e.status, e.records_processed, e.records_inserted,
                    e.records_updated, e.records_deleted, e.bytes_processed,
                    e.completed_at >= e.started_at
             FROM \"{schema}\".sync_executions e
             JOIN \"{schema}\".sync_configurations c ON c.id = e.sync_configuration_id"
        )),
        format!("{id}|users_sync|succeeded|14|12|2|0|1400|t")
    );
    assert_eq!(
        psql(&format!(
            "SELECT table_name, records_processed, bytes_processed
             FROM \"{schema}\".sync_execution_tables
             WHERE execution_id = {id} ORDER BY table_name"
        )),
        "public.orders|4|400\npublic.users|10|1000"
    );

    let stream = StreamId::new("users_sync", &users);
    s.save_checkpoint(&Checkpoint::new(
        stream.clone(),
        Phase::Streaming {
            position: Some(Position(
                serde_json::json!({"cursor": "2025-01-29T00:00:00Z"}),
            )),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        psql(&format!(
            "SELECT sync_name, table_name, phase, last_sync_position->>'cursor', lease_epoch
             FROM \"{schema}\".sync_change_tracking"
        )),
        "users_sync|public.users|streaming|2025-01-29T00:00:00Z|0"
    );

    let cid = s
        .record_conflict(&Conflict {
            id: 0,
            pipeline: "users_sync".into(),
            table: users.clone(),
            key: serde_json::json!({"id": 7}),
            source_row: Some(serde_json::json!({"id": 7, "name": "a"})),
            target_row: Some(serde_json::json!({"id": 7, "name": "b"})),
            detected_at: chrono::Utc::now(),
            resolved_at: None,
            resolution: None,
        })
        .await
        .unwrap();
    let conflict_row = || {
        psql(&format!(
            "SELECT sync_name, table_name, record_key->>'id', source_data->>'name',
                    target_data->>'name', status, coalesce(resolution, '-')
             FROM \"{schema}\".sync_conflicts WHERE id = {cid}"
        ))
    };
    assert_eq!(conflict_row(), "users_sync|public.users|7|a|b|pending|-");
    assert!(s
        .resolve_conflict(cid, siphon_core::Side::Target)
        .await
        .unwrap());
    assert_eq!(
        conflict_row(),
        "users_sync|public.users|7|a|b|resolved|target"
    );
}

/// A checkpoint written with an older epoch than the lease's newest is
/// refused in the statement that would write it, leaving the row as it was.
#[tokio::test]
async fn a_fenced_checkpoint_leaves_the_row_alone() {
    let schema = new_schema();
    let s = PostgresStateStore::open_url(&url(&schema)).await.unwrap();
    let ttl = std::time::Duration::from_secs(60);
    let first = s.acquire_lease("p", "w1", ttl).await.unwrap().unwrap();
    s.release_lease(&first).await.unwrap();
    let second = s.acquire_lease("p", "w2", ttl).await.unwrap().unwrap();
    assert!(second.epoch > first.epoch);
    let stream = StreamId::new("p", &TableName::new(None, "t"));
    let at = |epoch: u64, n: i64| {
        Checkpoint::new(
            stream.clone(),
            Phase::Streaming {
                position: Some(Position(serde_json::json!(n))),
            },
        )
        .with_epoch(epoch)
    };
    s.save_checkpoint(&at(second.epoch, 2)).await.unwrap();
    let e = s.save_checkpoint(&at(first.epoch, 1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    assert!(
        e.to_string()
            .contains(&format!("lease is at epoch {}", second.epoch)),
        "{e}"
    );
    assert_eq!(
        psql(&format!(
            "SELECT lease_epoch, last_sync_position FROM \"{schema}\".sync_change_tracking"
        )),
        format!("{}|2", second.epoch)
    );
    assert_eq!(
        psql(&format!(
            "SELECT holder, epoch FROM \"{schema}\".leases WHERE pipeline = 'p'"
        )),
        format!("w2|{}", second.epoch)
    );
}

/// A lost connection (the server ended it) is opened again by the next call.
#[tokio::test]
async fn a_lost_connection_is_opened_again() {
    let schema = new_schema();
    let app = siphon_testkit::unique_name("lost");
    let s = PostgresStateStore::open_url(&format!("{}&application_name={app}", url(&schema)))
        .await
        .unwrap();
    s.put_connection("a", "sqlite://a.db").await.unwrap();
    assert_eq!(
        psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = '{app}'"
        )),
        "1"
    );
    // The first call after the loss may fail as a connection error (the
    // engine retries those); a later one succeeds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let found = loop {
        match s.connections().await {
            Ok(c) => break c,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "never reconnected: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(found.get("a").map(String::as_str), Some("sqlite://a.db"));
}
