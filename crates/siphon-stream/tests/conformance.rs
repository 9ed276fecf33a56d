//! The file sink runs the event-target conformance suite of
//! `siphon_testkit::conformance::events`: `cdc` pipelines from a real
//! PostgreSQL 15 (one shared by this test binary, a database per case) to a
//! directory of JSON Lines files, with checkpoints in an SQLite state store.

use std::path::Path;

use serde_json::Value as J;
use siphon_core::TableName;
use siphon_postgres::PostgresSource;
use siphon_state::SqliteStateStore;
use siphon_stream::FileSink;
use siphon_testkit::conformance::events::{self, Delivered, EventHarness};
use siphon_testkit::conformance::HarnessError;
use siphon_testkit::Postgres;

struct Files {
    pg: &'static Postgres,
    /// Every destination of this binary is a directory under this one.
    root: tempfile::TempDir,
}

fn harness() -> Files {
    Files {
        pg: Postgres::shared().expect("the shared PostgreSQL server"),
        root: tempfile::tempdir().expect("a temporary directory"),
    }
}

/// The events of every `.jsonl` file under `dir`, each file in its order.
fn read_dir(dir: &Path) -> Result<Vec<Delivered>, HarnessError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        for (n, line) in text.lines().enumerate() {
            let body: J = serde_json::from_str(line).map_err(|e| {
                format!(
                    "{}:{}: not one JSON object ({e}): {line}",
                    f.display(),
                    n + 1
                )
            })?;
            let field = |k: &str| body[k].as_str().map(str::to_string).unwrap_or_default();
            out.push(Delivered {
                id: field("id"),
                table: field("table"),
                op: field("op"),
                key_id: body["key"]["id"].as_i64(),
                logged: !body["tx"].is_null(),
                body: body.clone(),
            });
        }
    }
    Ok(out)
}

impl EventHarness for Files {
    type Sink = FileSink;
    type Source = PostgresSource;
    type State = SqliteStateStore;

    fn create_destination(&self) -> Result<String, HarnessError> {
        let dir = tempfile::tempdir_in(self.root.path())?.keep();
        Ok(dir.join("events").display().to_string())
    }

    async fn open_sink(&self, dest: &str) -> siphon_core::Result<FileSink> {
        FileSink::open(dest)
    }

    fn read_back(&self, dest: &str) -> Result<Vec<Delivered>, HarnessError> {
        read_dir(Path::new(dest))
    }

    async fn open_state(&self, dest: &str) -> siphon_core::Result<SqliteStateStore> {
        SqliteStateStore::open(Path::new(dest).with_file_name("state.db")).await
    }

    fn create_database(&self) -> Result<String, HarnessError> {
        Ok(self.pg.create_database()?)
    }

    fn execute(&self, db: &str, sql: &str) -> Result<(), HarnessError> {
        self.pg.query_in(db.rsplit('/').next().unwrap_or(db), sql)?;
        Ok(())
    }

    async fn open_source(&self, db: &str) -> siphon_core::Result<PostgresSource> {
        PostgresSource::connect(db).await
    }

    fn table_name(&self, name: &str) -> TableName {
        TableName::new(Some("public"), name)
    }
}

#[tokio::test]
async fn snapshot_then_changes_in_order() {
    events::snapshot_then_changes_in_order(&harness()).await;
}

#[tokio::test]
async fn checkpoint_waits_for_the_ack() {
    events::checkpoint_waits_for_the_ack(&harness()).await;
}

#[tokio::test]
async fn replay_after_a_crash_keeps_ids() {
    events::replay_after_a_crash_keeps_ids(&harness()).await;
}
