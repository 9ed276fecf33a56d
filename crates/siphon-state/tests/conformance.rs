//! The embedded SQLite state store runs the state store conformance suite of
//! `siphon_testkit::conformance::state`, on SQLite files in a temporary directory.

use siphon_state::SqliteStateStore;
use siphon_testkit::conformance::state::{self, StoreHarness};
use siphon_testkit::conformance::HarnessError;
use tempfile::TempDir;

/// Stores are files in one temporary directory, removed with the harness.
struct Sqlite {
    dir: TempDir,
}

fn harness() -> Sqlite {
    Sqlite {
        dir: TempDir::new().expect("a temporary directory"),
    }
}

impl StoreHarness for Sqlite {
    type Store = SqliteStateStore;

    fn create_store(&self) -> Result<String, HarnessError> {
        let name = format!("{}.db", siphon_testkit::unique_name("state"));
        let path = self.dir.path().join(name);
        Ok(path
            .to_str()
            .ok_or("a temporary path that is not UTF-8")?
            .to_string())
    }

    async fn open_store(&self, locator: &str) -> siphon_core::Result<SqliteStateStore> {
        SqliteStateStore::open(locator).await
    }
}

#[tokio::test]
async fn connections() {
    state::connections(&harness()).await;
}

#[tokio::test]
async fn pipelines() {
    state::pipelines(&harness()).await;
}

#[tokio::test]
async fn flags() {
    state::flags(&harness()).await;
}

#[tokio::test]
async fn stream_states() {
    state::stream_states(&harness()).await;
}

#[tokio::test]
async fn checkpoints() {
    state::checkpoints(&harness()).await;
}

#[tokio::test]
async fn executions() {
    state::executions(&harness()).await;
}

#[tokio::test]
async fn prune_executions() {
    state::prune_executions(&harness()).await;
}

#[tokio::test]
async fn leases() {
    state::leases(&harness()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_race() {
    state::lease_race(&harness()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn take_flag() {
    state::take_flag(&harness()).await;
}

#[tokio::test]
async fn conflicts() {
    state::conflicts(&harness()).await;
}
