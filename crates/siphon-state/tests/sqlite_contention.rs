//! Two siphon processes on one SQLite state store: one holds a pipeline's lease and
//! streams (renewing the lease, saving checkpoints, recording executions) while the
//! other keeps opening the file afresh, as a second `siphon run` does, and asks
//! for the lease. Every call of both waits for the other's lock within the busy
//! timeout: none fails with "database is locked".

use std::path::PathBuf;
use std::time::Duration;

use siphon_core::{Checkpoint, Lease, Phase, Position, StateStore, StreamId, TableName};
use siphon_state::SqliteStateStore;

const ROUNDS: usize = 300;
const TTL: Duration = Duration::from_secs(600);

fn checkpoint(table: &str, epoch: u64, n: usize) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new("app", &TableName::parse(table)),
        epoch,
        phase: Phase::Streaming {
            position: Some(Position(serde_json::json!({ "pos": n }))),
        },
    }
}

/// The streaming process: renews its lease and saves checkpoints under it.
async fn stream(store: SqliteStateStore, mut lease: Lease) -> Result<(), String> {
    for n in 0..ROUNDS {
        lease = store
            .renew_lease(&lease, TTL)
            .await
            .map_err(|e| format!("renewing the lease, round {n}: {e}"))?
            .ok_or("the first process lost its lease")?;
        store
            .save_checkpoint(&checkpoint("public.orders", lease.epoch, n))
            .await
            .map_err(|e| format!("saving a checkpoint, round {n}: {e}"))?;
        if n % 10 == 0 {
            store
                .start_execution("app")
                .await
                .map_err(|e| format!("starting an execution, round {n}: {e}"))?;
        }
    }
    Ok(())
}

/// The second process, started again and again: opens the file, finds the lease
/// taken, reads what `status` shows, and writes a checkpoint outside any lease.
async fn knock(path: PathBuf) -> Result<(), String> {
    for n in 0..ROUNDS {
        let store = SqliteStateStore::open(&path)
            .await
            .map_err(|e| format!("opening the store, round {n}: {e}"))?;
        if let Some(l) = store
            .acquire_lease("app", "second", TTL)
            .await
            .map_err(|e| format!("asking for the lease, round {n}: {e}"))?
        {
            return Err(format!(
                "the second process was granted a held lease: {l:?}"
            ));
        }
        store
            .lease("app")
            .await
            .map_err(|e| format!("reading the lease, round {n}: {e}"))?;
        store
            .save_checkpoint(&checkpoint("public.users", 0, n))
            .await
            .map_err(|e| format!("saving a checkpoint, round {n}: {e}"))?;
        store
            .executions(Some("app"), 5)
            .await
            .map_err(|e| format!("listing executions, round {n}: {e}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_process_waits_for_the_first_instead_of_failing_locked() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("state.db");
    // The first process holds the pipeline's lease and streams.
    let store = SqliteStateStore::open(&path).await.unwrap();
    let lease = store
        .acquire_lease("app", "first", TTL)
        .await
        .unwrap()
        .expect("the free lease is granted");
    let first = tokio::spawn(stream(store, lease));
    let second = tokio::spawn(knock(path.clone()));
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first, Ok(()), "the streaming process");
    assert_eq!(second, Ok(()), "the second process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_creating_the_file_together_all_open_it() {
    for round in 0..ROUNDS {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("state.db");
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move {
                    let store = SqliteStateStore::open(&path)
                        .await
                        .map_err(|e| e.to_string())?;
                    store
                        .acquire_lease("app", "someone", TTL)
                        .await
                        .map_err(|e| e.to_string())
                        .map(|_| ())
                })
            })
            .collect();
        for open in opens {
            assert_eq!(open.await.unwrap(), Ok(()), "round {round}");
        }
    }
}
