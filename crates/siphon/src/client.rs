//! The client: [`Siphon::builder`] declares connections and pipelines,
//! `init` stores them in the state store, `start` runs every pipeline on its
//! schedule until [`Running::stop`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use siphon_core::{Error, Mode, PipelineSpec, Result, StateStore};
use siphon_engine::{NoopObserver, Observer, PassReport, Shutdown};
use tokio::task::JoinHandle;

use crate::dispatch::AnyStateStore;
use crate::pipeline::{Connection, Pipeline};
use crate::registry::Registry;
use crate::run::{follow, run_pass, LogEvents, Outcome};
use crate::url::ConnectionUrl;

/// Declares what a [`Siphon`] client runs; [`SiphonBuilder::init`] opens the
/// state store and stores it.
#[derive(Clone)]
pub struct SiphonBuilder {
    state: String,
    connections: Vec<Connection>,
    pipelines: Vec<Pipeline>,
    registry: Registry,
    observer: Arc<dyn Observer>,
}

impl std::fmt::Debug for SiphonBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiphonBuilder")
            .field("state", &self.state)
            .field("connections", &self.connections)
            .field("pipelines", &self.pipelines)
            .finish_non_exhaustive()
    }
}

/// A client of siphon's engine: a state store, the connections and pipelines
/// it holds, and the registry that opens them.
#[derive(Clone)]
pub struct Siphon {
    state: Arc<AnyStateStore>,
    shown_state: String,
    pipelines: Vec<String>,
    registry: Arc<Registry>,
    observer: Arc<dyn Observer>,
}

impl std::fmt::Debug for Siphon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Siphon")
            .field("state", &self.shown_state)
            .field("pipelines", &self.pipelines)
            .finish_non_exhaustive()
    }
}

impl Siphon {
    /// Starts declaring a client: its state store is `sqlite://.siphon/state.db`
    /// in the working directory, or the URL in `SIPHON_STATE` when that is set
    /// (as for the `siphon` binary).
    pub fn builder() -> SiphonBuilder {
        let state = std::env::var("SIPHON_STATE")
            .unwrap_or_else(|_| format!("sqlite://{}", siphon_state::DEFAULT_PATH));
        SiphonBuilder {
            state,
            connections: Vec::new(),
            pipelines: Vec::new(),
            registry: Registry::standard(),
            observer: Arc::new(NoopObserver),
        }
    }

    /// The state store: catalog, executions, stream states.
    pub fn state(&self) -> &Arc<AnyStateStore> {
        &self.state
    }

    /// The pipelines this client runs: the ones declared, or every pipeline of
    /// the state store when none was.
    pub fn pipelines(&self) -> &[String] {
        &self.pipelines
    }

    /// The specs of the pipelines to run, read from the state store now.
    async fn specs(&self) -> Result<Vec<(String, PipelineSpec)>> {
        let mut all = self.state.pipelines().await?;
        self.pipelines
            .iter()
            .map(|name| {
                all.remove(name)
                    .map(|spec| (name.clone(), spec))
                    .ok_or_else(|| {
                        Error::config(format!(
                            "pipeline `{name}` is not in the state store {} any more; declare it \
                         again with `.pipeline(…)` and call `init`",
                            self.shown_state
                        ))
                    })
            })
            .collect()
    }

    /// Runs each pipeline once, in turn, as `siphon run --once` does: `full`
    /// tables are copied, `incremental` ones polled until the source has no
    /// newer row, `cdc` ones stream until they applied everything the source
    /// had committed when the pass began. Table errors are in each report.
    pub async fn run_once(&self) -> Result<Vec<(String, PassReport)>> {
        let shutdown = Shutdown::new();
        let mut reports = Vec::new();
        for (name, spec) in self.specs().await? {
            let report = run_pass(
                &name,
                &spec,
                self.state.as_ref(),
                &self.registry,
                self.observer.as_ref(),
                &shutdown,
            )
            .await?;
            reports.push((name, report));
        }
        Ok(reports)
    }

    /// Starts every pipeline on its schedule, each in its own task, as
    /// `siphon run` does: a continuous `cdc` pipeline keeps its change stream
    /// open from one pass to the next. Call within a tokio runtime.
    pub async fn start(&self) -> Result<Running> {
        let shutdown = Shutdown::new();
        let mut tasks = Vec::new();
        for (name, spec) in self.specs().await? {
            let (state, registry, observer, shutdown) = (
                self.state.clone(),
                self.registry.clone(),
                self.observer.clone(),
                shutdown.clone(),
            );
            let task = tokio::spawn(async move {
                follow(
                    &name,
                    &spec,
                    state.as_ref(),
                    &registry,
                    observer.as_ref(),
                    &shutdown,
                    &mut LogEvents,
                )
                .await
            });
            tasks.push(task);
        }
        Ok(Running { shutdown, tasks })
    }
}

impl SiphonBuilder {
    /// The state store's URL (`sqlite://path/state.db`; a relative path is
    /// relative to the working directory), opened through the registry.
    /// `${VAR}` is read from the environment.
    pub fn state(mut self, url: impl Into<String>) -> Self {
        self.state = url.into();
        self
    }

    /// The state store in the SQLite file at `path`.
    pub fn state_path(self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.state(format!("sqlite://{}", path.display()))
    }

    /// Adds (or replaces, by name) a connection.
    pub fn connection(mut self, connection: Connection) -> Self {
        self.connections.retain(|c| c.name() != connection.name());
        self.connections.push(connection);
        self
    }

    /// Adds (or replaces, by name) a pipeline.
    pub fn pipeline(mut self, pipeline: Pipeline) -> Self {
        self.pipelines.retain(|p| p.name() != pipeline.name());
        self.pipelines.push(pipeline);
        self
    }

    /// The registry that opens connections (default: [`Registry::standard`]).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Receives progress as passes run (default: none).
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Checks what was declared, opens the state store and stores the
    /// connections (as written, `${VAR}` unexpanded) and the pipelines in it.
    /// Each pipeline must name connections declared here or stored already,
    /// whose connector can be its source (with a change log for `cdc`) and
    /// its target.
    pub async fn init(self) -> Result<Siphon> {
        let url = ConnectionUrl::parse("state", &self.state)?;
        let state = self.registry.open_state("state", &url).await?;
        let mut known: BTreeMap<String, String> = state.connections().await?;
        for c in &self.connections {
            known.insert(c.name().to_string(), c.written().to_string());
        }
        for p in &self.pipelines {
            self.check(p, &known)?;
        }
        for c in &self.connections {
            state.put_connection(c.name(), c.written()).await?;
        }
        for p in &self.pipelines {
            state.put_pipeline(p.name(), p.spec()).await?;
        }
        let pipelines = if self.pipelines.is_empty() {
            state.pipelines().await?.into_keys().collect()
        } else {
            self.pipelines
                .iter()
                .map(|p| p.name().to_string())
                .collect()
        };
        Ok(Siphon {
            state: Arc::new(state),
            shown_state: url.to_string(),
            pipelines,
            registry: Arc::new(self.registry),
            observer: self.observer,
        })
    }

    /// Checks that the pipeline's connections exist and that their connectors
    /// can do what it asks of them.
    fn check(&self, p: &Pipeline, known: &BTreeMap<String, String>) -> Result<()> {
        let spec = p.spec();
        let name = p.name();
        for (role, conn) in [("source", &spec.source), ("target", &spec.target)] {
            let written = known.get(conn).ok_or_else(|| {
                Error::config(format!(
                    "pipeline `{name}`: its {role} connection `{conn}` is not declared; add it \
                     with `.connection(Connection::new(\"{conn}\", URL))`"
                ))
            })?;
            let scheme_known = written.contains("://") && !written.starts_with("${");
            if !scheme_known {
                // The scheme itself comes from a variable: checked when opened.
                continue;
            }
            let scheme = written.split("://").next().unwrap_or_default();
            let Some(connector) = self.registry.connector(scheme) else {
                return Err(Error::config(format!(
                    "pipeline `{name}`: connection `{conn}` ({}) has scheme `{scheme}`, which no \
                     registered connector opens",
                    crate::url::redact(written)
                )));
            };
            let caps = connector.capabilities();
            let lacks = match role {
                "source" if !caps.source => Some("be a source"),
                "source" if spec.mode == Mode::Cdc && !caps.log => {
                    Some("be a `cdc` source: it has no change log siphon reads")
                }
                "target" if !caps.sink => Some("be a target"),
                _ => None,
            };
            if let Some(lacks) = lacks {
                return Err(Error::config(format!(
                    "pipeline `{name}`: connection `{conn}` ({}) cannot {lacks}; the {} connector \
                     can be: {caps}",
                    crate::url::redact(written),
                    connector.name
                )));
            }
        }
        Ok(())
    }
}

/// Pipelines running in the background, started by [`Siphon::start`].
#[derive(Debug)]
pub struct Running {
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<Outcome>>,
}

impl Running {
    /// The stop request the runs share: `request()` on it is [`Running::stop`]
    /// without waiting (for a signal handler).
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Stops gracefully: each run commits the batch it is applying, with its
    /// checkpoint, closes its connections and ends. Returns what each did.
    pub async fn stop(self) -> Result<Vec<Outcome>> {
        self.shutdown.request();
        self.wait().await
    }

    /// Waits until every run ended (after a stop request, or a pipeline
    /// removed from the catalog). Returns what each did.
    pub async fn wait(self) -> Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        for task in self.tasks {
            let outcome = task
                .await
                .map_err(|e| Error::internal("a pipeline's run ended abnormally").source(e))?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_db(dir: &std::path::Path, name: &str, sql: &str) -> String {
        let path = dir.join(name);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        format!("sqlite://{}", path.display())
    }

    #[tokio::test]
    async fn init_refuses_what_a_connector_cannot_do_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let lite = sqlite_db(
            dir.path(),
            "a.db",
            "CREATE TABLE t (id INTEGER PRIMARY KEY);",
        );
        let builder = Siphon::builder()
            .state_path(dir.path().join("state.db"))
            .connection(Connection::new("lite", lite.clone()))
            .connection(Connection::new("copy", lite));
        let cdc = Pipeline::builder("p")
            .source("lite")
            .target("copy")
            .mode(Mode::Cdc)
            .build()
            .unwrap();
        let e = builder.clone().pipeline(cdc).init().await.unwrap_err();
        assert!(
            e.to_string().contains("connection `lite` (sqlite://")
                && e.to_string().contains("cannot be a `cdc` source"),
            "{e}"
        );
        let undeclared = Pipeline::builder("p")
            .source("nowhere")
            .target("copy")
            .build()
            .unwrap();
        let e = builder.pipeline(undeclared).init().await.unwrap_err();
        assert!(e.to_string().contains("`nowhere` is not declared"), "{e}");
    }

    #[tokio::test]
    async fn a_full_pipeline_runs_once_from_code() {
        let dir = tempfile::tempdir().unwrap();
        let source = sqlite_db(
            dir.path(),
            "src.db",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');",
        );
        let target = format!("sqlite://{}", dir.path().join("dst.db").display());
        let siphon = Siphon::builder()
            .state_path(dir.path().join("state.db"))
            .connection(Connection::new("src", source))
            .connection(Connection::new("dst", target))
            .pipeline(
                Pipeline::builder("copy")
                    .source("src")
                    .target("dst")
                    .build()
                    .unwrap(),
            )
            .init()
            .await
            .unwrap();
        let reports = siphon.run_once().await.unwrap();
        assert_eq!(reports.len(), 1);
        let (name, report) = &reports[0];
        assert_eq!(name, "copy");
        assert_eq!(
            report.status,
            siphon_core::ExecutionStatus::Succeeded,
            "{report:?}"
        );
        let copied: i64 = rusqlite::Connection::open(dir.path().join("dst.db"))
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(copied, 3);
        // The catalog holds what was declared, for the CLI and later runs.
        let stored = siphon.state().pipelines().await.unwrap();
        assert_eq!(stored.keys().collect::<Vec<_>>(), ["copy"]);
    }
}
