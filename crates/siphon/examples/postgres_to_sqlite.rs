//! Runs a PostgreSQL → SQLite `cdc` pipeline from Rust code and stops it
//! gracefully.
//!
//! ```sh
//! SIPHON_EXAMPLE_SOURCE=postgres://app@127.0.0.1:5432/app \
//! SIPHON_EXAMPLE_TARGET=copy.db \
//!     cargo run -p siphon --example postgres_to_sqlite
//! ```
//!
//! Every table of the source's `public` schema is copied into the SQLite file,
//! then its changes stream in as they are committed, until Ctrl-C (or, with
//! `SIPHON_EXAMPLE_ROWS=N`, until N rows were committed on the target). The
//! batch being applied then commits with its checkpoint, and a later run goes
//! on from there. `SIPHON_EXAMPLE_STATE` names the state store's file
//! (default `.siphon/example-state.db`).

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use siphon::{Connection, ErrorKind, Mode, Observer, Outcome, Pipeline, Siphon, StreamId};

/// The pipeline's name: its replication slot on the source is named after it.
pub const PIPELINE: &str = "pg_to_sqlite";

/// Counts and prints the rows committed on the target.
#[derive(Debug, Default)]
pub struct Progress {
    rows: AtomicU64,
    changed: tokio::sync::Notify,
}

impl Progress {
    /// The rows committed on the target so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::SeqCst)
    }

    /// Resolves once at least `n` rows were committed.
    pub async fn reached(&self, n: u64) {
        loop {
            let changed = self.changed.notified();
            if self.rows() >= n {
                return;
            }
            changed.await;
        }
    }
}

impl Observer for Progress {
    fn rows_committed(&self, stream: &StreamId, rows: u64) {
        let total = self.rows.fetch_add(rows, Ordering::SeqCst) + rows;
        println!("{stream}: {rows} rows committed ({total} in all)");
        self.changed.notify_waiters();
    }
}

/// Replicates the tables of `public` from `$SIPHON_EXAMPLE_SOURCE` into the
/// SQLite file `$SIPHON_EXAMPLE_TARGET` until `stop` resolves, then stops
/// gracefully and returns what the run did. The URLs are stored in the state
/// store as written; the variables are read when the connections open.
pub async fn replicate(
    state: &Path,
    progress: Arc<Progress>,
    stop: impl Future<Output = ()>,
) -> siphon::Result<Vec<Outcome>> {
    let siphon = Siphon::builder()
        .state_path(state)
        .connection(Connection::new("source", "${SIPHON_EXAMPLE_SOURCE}"))
        .connection(Connection::new(
            "target",
            "sqlite://${SIPHON_EXAMPLE_TARGET}",
        ))
        .pipeline(
            Pipeline::builder(PIPELINE)
                .source("source")
                .target("target")
                .mode(Mode::Cdc)
                .tables(["public.*"])
                .build()?,
        )
        .observer(progress)
        .init()
        .await?;
    let running = siphon.start().await?;
    stop.await;
    running.stop().await
}

#[tokio::main]
async fn main() -> ExitCode {
    for var in ["SIPHON_EXAMPLE_SOURCE", "SIPHON_EXAMPLE_TARGET"] {
        if std::env::var_os(var).is_none() {
            eprintln!(
                "set {var}: SIPHON_EXAMPLE_SOURCE to a postgres:// URL, SIPHON_EXAMPLE_TARGET to \
                 the SQLite file to write"
            );
            return ExitCode::from(2);
        }
    }
    let state = std::env::var("SIPHON_EXAMPLE_STATE")
        .unwrap_or_else(|_| ".siphon/example-state.db".to_string());
    let until = match std::env::var("SIPHON_EXAMPLE_ROWS").map(|n| n.parse::<u64>()) {
        Ok(Ok(n)) => Some(n),
        Ok(Err(_)) => {
            eprintln!("SIPHON_EXAMPLE_ROWS must be a number of rows");
            return ExitCode::from(2);
        }
        Err(_) => None,
    };
    let progress = Arc::new(Progress::default());
    let watched = progress.clone();
    let stop = async move {
        let enough = async {
            match until {
                Some(n) => watched.reached(n).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => eprintln!("stopping after the current batch"),
            _ = enough => eprintln!("{} rows committed: stopping", watched.rows()),
        }
    };
    match replicate(Path::new(&state), progress, stop).await {
        Ok(outcomes) => {
            let mut failed = false;
            for o in &outcomes {
                match &o.last_error {
                    Some(e) => {
                        eprintln!(
                            "pipeline {}: {} passes; it failed: {e}",
                            o.pipeline, o.passes
                        );
                        failed = true;
                    }
                    None => println!(
                        "pipeline {}: stopped (passes run: {})",
                        o.pipeline, o.passes
                    ),
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.kind() == ErrorKind::Config {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
