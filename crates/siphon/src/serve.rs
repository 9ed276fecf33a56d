//! The service's supervisor: runs every pipeline of the state store on its
//! schedule, starts the pipelines added to the catalog while it runs, and lets
//! the removed ones stop, without a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
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
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            catalog_poll: DEFAULT_CATALOG_POLL,
        }
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
                    let (state, registry, observer, stop) = (
                        state.clone(),
                        registry.clone(),
                        observer.clone(),
                        shutdown.clone(),
                    );
                    let task_name = name.clone();
                    let task = tokio::spawn(async move {
                        let mut events = ServiceEvents::default();
                        follow(
                            &task_name,
                            &spec,
                            state.as_ref(),
                            &registry,
                            observer.as_ref(),
                            &stop,
                            &mut events,
                        )
                        .await
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
