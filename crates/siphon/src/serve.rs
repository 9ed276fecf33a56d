//! The service's supervisor: runs every pipeline of the state store on its
//! schedule, starts the pipelines added to the catalog while it runs, and lets
//! the removed ones stop, without a restart; a [`Supervisor`] handle lets
//! the REST API ask it to read the catalog or run a pipeline now.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siphon_core::{Error, ExecutionStatus, Result, StateStore};
use siphon_engine::{Observer, PassReport, Shutdown};
use tokio::task::JoinHandle;

use crate::registry::Registry;
use crate::run::{follow, Outcome, RunEvents};

/// How often the supervisor reads the catalog when nothing else is said.
pub const DEFAULT_CATALOG_POLL: Duration = Duration::from_secs(5);

/// How a [`serve`] supervisor works.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How often the catalog is read for added pipelines, and for pipelines
    /// whose run ended while they are still in the catalog.
    pub catalog_poll: Duration,
    /// The handle through which others (the REST API) reach this supervisor.
    pub supervisor: Supervisor,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            catalog_poll: DEFAULT_CATALOG_POLL,
            supervisor: Supervisor::default(),
        }
    }
}

/// A handle on a running [`serve`] supervisor, cheap to clone: asks it to
/// read the catalog at once, or to start a pipeline's next pass now. A handle
/// whose supervisor does not run (or no longer runs) changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Supervisor(Arc<Handles>);

#[derive(Debug, Default)]
struct Handles {
    /// Wakes the supervisor's wait between two reads of the catalog.
    wake: tokio::sync::Notify,
    /// The stop of each pipeline's run in this process.
    runs: Mutex<HashMap<String, Shutdown>>,
    /// Pipelines whose run was stopped to run again at once.
    again: Mutex<HashSet<String>>,
}

/// What [`Supervisor::run_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNow {
    /// The pipeline's run in this process was asked to stop at its next batch
    /// or wait (what it committed stays, with its checkpoint) and starts
    /// again at once with a new pass.
    Restarted,
    /// No run of the pipeline is in this process yet: the catalog is read at
    /// once, and a pipeline found there starts with a pass.
    Starting,
}

impl Supervisor {
    /// Asks the supervisor to read the catalog now rather than at its next
    /// poll: a pipeline just added starts at once.
    pub fn reload(&self) {
        self.0.wake.notify_one();
    }

    /// Starts the next pass of `pipeline` now: its run in this process is
    /// stopped and started again (a new run begins with a pass), or, when it
    /// has none yet, the catalog is read at once. A worker elsewhere that
    /// holds the pipeline's lease keeps it: then the pass runs there on its
    /// own schedule.
    pub fn run_now(&self, pipeline: &str) -> RunNow {
        let runs = self.0.runs.lock().unwrap_or_else(|e| e.into_inner());
        match runs.get(pipeline) {
            Some(stop) => {
                siphon_engine::run_afresh(pipeline);
                self.0
                    .again
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(pipeline.to_string());
                stop.request();
                RunNow::Restarted
            }
            None => {
                siphon_engine::run_afresh(pipeline);
                self.reload();
                RunNow::Starting
            }
        }
    }

    /// Notes the stop of a run that starts.
    fn started(&self, pipeline: &str, stop: &Shutdown) {
        self.0
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pipeline.to_string(), stop.clone());
    }

    /// Forgets a run that ended; whether it was asked to run again.
    fn ended(&self, pipeline: &str) -> bool {
        self.0
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pipeline);
        self.0
            .again
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pipeline)
    }
}

/// Runs every pipeline of the state store, each in its own task with
/// [`follow`], until `shutdown` is requested; then waits for each run to
/// commit the batch in flight and end, and returns what each run did (a
/// pipeline started twice, after it was removed and added again, has two).
///
/// The catalog is read every [`ServeOptions::catalog_poll`]: a pipeline added
/// since (by `siphon apply`, `siphon sync add`, the API) is started; one
/// removed is stopped by its own run, which reads the catalog before each pass
/// (and one changed goes on as it now is). A pipeline never has two runs in
/// this process: a new run starts only once the previous one of the same name
/// ended. A run that ended while its pipeline is still in the catalog is
/// started again at the next read. Several services may share a state store:
/// the pipelines' leases keep each pipeline on one of them.
///
/// Fails at once, starting nothing, when the lease time is misconfigured
/// (`SIPHON_LEASE_TTL`); a catalog that cannot be read is logged and read
/// again at the next poll.
pub async fn serve<St: StateStore + 'static>(
    state: Arc<St>,
    registry: Arc<Registry>,
    observer: Arc<dyn Observer>,
    shutdown: &Shutdown,
    options: &ServeOptions,
) -> Result<Vec<Outcome>> {
    crate::lease::lease_ttl()?;
    let mut runs: BTreeMap<String, JoinHandle<Outcome>> = BTreeMap::new();
    let mut outcomes = Vec::new();
    let mut catalog_failed = false;
    while !shutdown.requested() {
        reap(&mut runs, &mut outcomes, false).await;
        match state.pipelines().await {
            Ok(all) => {
                if catalog_failed {
                    tracing::info!("the catalog can be read again");
                    catalog_failed = false;
                }
                for (name, spec) in all {
                    if runs.contains_key(&name) || shutdown.requested() {
                        continue;
                    }
                    let again = outcomes.iter().any(|o: &Outcome| o.pipeline == name);
                    if again {
                        tracing::info!(pipeline = %name, "starts again");
                    } else {
                        tracing::info!(pipeline = %name, source = %spec.source, target = %spec.target, mode = %spec.mode, schedule = %spec.schedule, "starts");
                    }
                    let (state, registry, observer, stop, supervisor) = (
                        state.clone(),
                        registry.clone(),
                        observer.clone(),
                        shutdown.clone(),
                        options.supervisor.clone(),
                    );
                    let task_name = name.clone();
                    let task = tokio::spawn(async move {
                        let mut events = ServiceEvents::default();
                        loop {
                            // Its own stop, so that `run_now` restarts it alone.
                            let run_stop = stop.child();
                            supervisor.started(&task_name, &run_stop);
                            let outcome = follow(
                                &task_name,
                                &spec,
                                state.as_ref(),
                                &registry,
                                observer.as_ref(),
                                &run_stop,
                                &mut events,
                            )
                            .await;
                            if !supervisor.ended(&task_name) || stop.requested() {
                                break outcome;
                            }
                            tracing::info!(pipeline = %task_name, "runs now, as asked");
                        }
                    });
                    runs.insert(name, task);
                }
            }
            Err(e) => {
                if !catalog_failed {
                    tracing::warn!(error = %e, "could not read the catalog; the pipelines running go on, and it is read again");
                    catalog_failed = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(options.catalog_poll) => {}
            _ = shutdown.stopped() => {}
            _ = options.supervisor.0.wake.notified() => {}
        }
    }
    reap(&mut runs, &mut outcomes, true).await;
    Ok(outcomes)
}

/// Collects the runs that ended (every run, waiting for each, when `all`).
async fn reap(
    runs: &mut BTreeMap<String, JoinHandle<Outcome>>,
    outcomes: &mut Vec<Outcome>,
    all: bool,
) {
    let ended: Vec<String> = runs
        .iter()
        .filter(|(_, task)| all || task.is_finished())
        .map(|(name, _)| name.clone())
        .collect();
    for name in ended {
        let Some(task) = runs.remove(&name) else {
            continue;
        };
        match task.await {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                tracing::error!(pipeline = %name, error = %e, "the pipeline's run ended abnormally");
                outcomes.push(Outcome {
                    pipeline: name,
                    passes: 0,
                    last_report: None,
                    last_error: Some(
                        Error::internal("the pipeline's run ended abnormally").source(e),
                    ),
                });
            }
        }
    }
}

/// What a service logs as its runs go: failures once, at error level, until
/// they are over; tables that found work at info level.
#[derive(Debug, Default)]
pub struct ServiceEvents {
    /// The last failure logged, per table key (`""` for the pipeline itself).
    failed: HashMap<String, String>,
}

impl ServiceEvents {
    /// Whether `error` is news for `key` (and notes it).
    fn news(&mut self, key: &str, error: &str) -> bool {
        if self.failed.get(key).map(String::as_str) == Some(error) {
            return false;
        }
        self.failed.insert(key.to_string(), error.to_string());
        true
    }
}

impl RunEvents for ServiceEvents {
    fn removed(&mut self, pipeline: &str) {
        tracing::info!(pipeline, "removed from the catalog; its run stops");
    }

    fn changed(&mut self, pipeline: &str) {
        tracing::info!(pipeline, "changed in the catalog; it goes on as it now is");
    }

    fn pass_ended(&mut self, pipeline: &str, report: &PassReport) {
        if self.failed.remove("").is_some() {
            tracing::info!(pipeline, "its passes run again");
        }
        for t in &report.tables {
            let key = t.table.key();
            match (&t.status, &t.error) {
                (ExecutionStatus::Failed, Some(error)) => {
                    if self.news(&key, error) {
                        tracing::error!(pipeline, table = %key, error = %error, "table failed");
                    }
                }
                _ => {
                    if self.failed.remove(&key).is_some() {
                        tracing::info!(pipeline, table = %key, "table recovered");
                    }
                    if t.rows_read > 0 || t.deleted > 0 || t.replaced > 0 {
                        tracing::info!(
                            pipeline,
                            table = %key,
                            mode = %t.mode,
                            read = t.rows_read,
                            inserted = t.inserted,
                            updated = t.updated,
                            deleted = t.deleted,
                            status = t.status.as_str(),
                            "applied"
                        );
                    }
                }
            }
        }
    }

    fn pass_stopped(&mut self, pipeline: &str, error: &Error) {
        tracing::info!(pipeline, error = %error, "pass stopped");
    }

    fn pass_failed(&mut self, pipeline: &str, error: &Error) {
        let shown = error.to_string();
        if self.news("", &shown) {
            tracing::error!(pipeline, error = %shown, "pass failed; retried with a growing delay");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    use siphon_core::{Schedule, StreamId, TableStats};

    use super::*;
    use crate::{Connection, Pipeline, Siphon};

    /// The passes each pipeline's table went through, and whether two of
    /// one pipeline ever ran at once.
    #[derive(Default)]
    struct Seen {
        open: Mutex<HashMap<String, usize>>,
        finished: Mutex<HashMap<String, usize>>,
        overlapped: AtomicBool,
    }

    impl Seen {
        fn finished(&self, pipeline: &str) -> usize {
            self.finished
                .lock()
                .unwrap()
                .get(pipeline)
                .copied()
                .unwrap_or(0)
        }
    }

    impl Observer for Seen {
        fn table_started(&self, stream: &StreamId, _total: Option<u64>) {
            let mut open = self.open.lock().unwrap();
            let n = open.entry(stream.pipeline.clone()).or_default();
            if *n > 0 {
                self.overlapped.store(true, Ordering::SeqCst);
            }
            *n += 1;
        }

        fn table_finished(&self, stream: &StreamId, _stats: &TableStats) {
            let mut open = self.open.lock().unwrap();
            let n = open.entry(stream.pipeline.clone()).or_default();
            *n = n.saturating_sub(1);
            *self
                .finished
                .lock()
                .unwrap()
                .entry(stream.pipeline.clone())
                .or_default() += 1;
        }
    }

    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_added_pipeline_starts_and_no_pipeline_runs_twice_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        rusqlite::Connection::open(&src)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
                 INSERT INTO t SELECT i, 'row ' || i FROM n;",
            )
            .unwrap();
        let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        let pipeline = |name: &str, target: &str| {
            Pipeline::builder(name)
                .source("src")
                .target(target)
                .batch_size(500)
                .schedule(Schedule::Every(Duration::from_millis(20)))
                .build()
                .unwrap()
        };
        let siphon = Siphon::builder()
            .state_path(dir.path().join("state.db"))
            .connection(Connection::new("src", url("src.db")))
            .connection(Connection::new("dst", url("dst.db")))
            .connection(Connection::new("dst2", url("dst2.db")))
            .pipeline(pipeline("a", "dst"))
            .init()
            .await
            .unwrap();
        let state = siphon.state().clone();
        let seen = Arc::new(Seen::default());
        let shutdown = Shutdown::new();
        // Read far more often than a pass takes: a supervisor that started a
        // pipeline again while its run goes on would overlap two passes.
        let options = ServeOptions {
            catalog_poll: Duration::from_millis(5),
            ..ServeOptions::default()
        };
        let task = tokio::spawn({
            let (state, seen, shutdown) = (state.clone(), seen.clone(), shutdown.clone());
            async move {
                serve(
                    state,
                    Arc::new(Registry::standard()),
                    seen,
                    &shutdown,
                    &options,
                )
                .await
            }
        });
        until("`a` ran three passes", || seen.finished("a") >= 3).await;
        state
            .put_pipeline("b", pipeline("b", "dst2").spec())
            .await
            .unwrap();
        until("`b`, added while serving, ran three passes", || {
            seen.finished("b") >= 3
        })
        .await;
        shutdown.request();
        let outcomes = task.await.unwrap().unwrap();
        assert!(
            !seen.overlapped.load(Ordering::SeqCst),
            "two passes of one pipeline ran at once"
        );
        let mut ran: Vec<&str> = outcomes.iter().map(|o| o.pipeline.as_str()).collect();
        ran.sort();
        assert_eq!(ran, ["a", "b"], "one run per pipeline");
    }
}
