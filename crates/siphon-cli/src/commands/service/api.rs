//! The REST API beside the service (`service start --listen ADDR`): the
//! [`Backend`] that gives the API what only the CLI knows (its config format,
//! how it opens connections, the status document, the table switches of
//! `siphon sync`), and the listener that runs until the service stops.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use siphon::{AnyStateStore, RunNow, Supervisor};
use siphon_api::{Backend, BoxFuture, ConnectionTest, RunStarted, TableAction, Token};
use siphon_core::{
    Error, ExecutionStatus, Flag, PipelineSpec, Result, Schedule, StateStore, StreamId,
};
use siphon_engine::Shutdown;

use crate::commands::catalog;
use crate::commands::status::model;
use crate::config::{redact, resolve_url, validate_endpoints, ConfigFile, ConnUrl};
use crate::connect::registry;

/// The addresses `--listen ADDR` names (`127.0.0.1:8080`, `[::1]:8080`,
/// `localhost:8080`, `0.0.0.0:8080`), checked: a non-loopback one only with a
/// token in `SIPHON_API_TOKEN` (a config error, exit status 2, otherwise).
pub fn listen_addr(listen: &str, token: &Token) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| {
            Error::config(format!(
                "--listen {listen}: not an address to listen on ({e}); write HOST:PORT, such as 127.0.0.1:8080"
            ))
        })?
        .collect();
    let first = *addrs.first().ok_or_else(|| {
        Error::config(format!(
            "--listen {listen}: the name resolves to no address"
        ))
    })?;
    for a in &addrs {
        siphon_api::check_listen(a, token).map_err(Error::config)?;
    }
    Ok(first)
}

/// Binds `addr` (a busy port is a config error naming it), so that a service
/// that cannot serve its API does not start.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::config(format!(
            "--listen {addr}: cannot listen there ({e}); pick another port or address"
        ))
    })
}

/// Serves the API on `listener` until `shutdown`; a failure is logged, and
/// the pipelines go on.
pub fn spawn(
    listener: tokio::net::TcpListener,
    state: Arc<AnyStateStore>,
    supervisor: Supervisor,
    token: Token,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let backend = Arc::new(CliBackend {
        state: state.clone(),
        supervisor,
        memory: tokio::sync::Mutex::new(model::Memory::default()),
    });
    let app = siphon_api::app(state, backend, token);
    tokio::spawn(async move {
        if let Err(e) = siphon_api::serve(listener, app, shutdown).await {
            tracing::error!(error = %e, "the REST API stopped serving; the pipelines go on");
        }
    })
}

/// How long a removal waits for the pipeline's run to end after pausing it.
const RUN_ENDS_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

impl CliBackend {
    /// Pauses pipeline `name` when it is enabled and waits (up to
    /// [`RUN_ENDS_WITHIN`]) until no worker holds its lease, so that its
    /// replication stream is closed; returns its spec as it was when it paused
    /// it. An unknown pipeline is left to the removal to report.
    async fn pause_for_removal(&self, name: &str) -> Result<Option<PipelineSpec>> {
        let state = self.state.as_ref();
        let Some(spec) = state.pipelines().await?.remove(name) else {
            return Ok(None);
        };
        if !spec.enabled {
            return Ok(None);
        }
        let mut off = spec.clone();
        off.enabled = false;
        state.put_pipeline(name, &off).await?;
        self.supervisor.reload();
        let deadline = tokio::time::Instant::now() + RUN_ENDS_WITHIN;
        loop {
            let held = state
                .lease(name)
                .await?
                .is_some_and(|l| l.expires_at > chrono::Utc::now());
            if !held || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(Some(spec))
    }
}

/// What the API asks of the CLI, on the service's state store and supervisor.
struct CliBackend {
    state: Arc<AnyStateStore>,
    supervisor: Supervisor,
    /// What the status document remembers between reads (rows a second).
    memory: tokio::sync::Mutex<model::Memory>,
}

impl Backend for CliBackend {
    fn check_connection<'a>(
        &'a self,
        name: &'a str,
        url: &'a str,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            // The service would fill a `${VAR}` from its own environment, and a
            // client could then send any of the service's secrets to a host of
            // its choosing (`connection test`): references are for config files
            // and the CLI, which run with the operator's environment.
            if url.contains("${") {
                return Err(Error::config(format!(
                    "connections.{name}: `${{VAR}}` references are not taken through the REST API \
                     (they would be filled from the service's environment); write the value, or add \
                     the connection with `siphon connection add` or a config file"
                )));
            }
            ConnUrl::check_stored(&format!("connections.{name}"), url)?;
            let cwd = std::env::current_dir().map_err(|e| {
                Error::config("cannot read the working directory, which relative paths need")
                    .source(e)
            })?;
            let url = resolve_url(url, &cwd);
            // As `connection add`: the new URL must not make a pipeline read
            // and write one database.
            let mut connections = self.state.connections().await?;
            connections.insert(name.to_string(), url.clone());
            for (p, spec) in self.state.pipelines().await? {
                if spec.source != name && spec.target != name {
                    continue;
                }
                if let (Some(s), Some(t)) =
                    (connections.get(&spec.source), connections.get(&spec.target))
                {
                    validate_endpoints(&p, &spec, s, t)?;
                }
            }
            Ok(url)
        })
    }

    fn mask(&self, url: &str) -> String {
        redact(url)
    }

    fn test_connection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ConnectionTest>> {
        Box::pin(async move {
            let connections = self.state.connections().await?;
            let written = connections
                .get(name)
                .ok_or_else(|| Error::config(format!("unknown connection `{name}`")))?;
            let registry = registry();
            let probed = match registry.parse_url(&format!("connections.{name}"), written) {
                Ok(url) => siphon::probe::probe(&registry, name, &url).await,
                Err(e) => Err(e),
            };
            Ok(match probed {
                Ok(report) => ConnectionTest {
                    name: name.to_string(),
                    reachable: report.reached,
                    detail: None,
                    report: Some(serde_json::to_value(&report).map_err(|e| {
                        Error::internal("writing the connection report as JSON").source(e)
                    })?),
                },
                Err(e) => ConnectionTest {
                    name: name.to_string(),
                    reachable: false,
                    detail: Some(e.to_string()),
                    report: None,
                },
            })
        })
    }

    fn parse_pipeline<'a>(
        &'a self,
        name: &'a str,
        body: serde_json::Value,
    ) -> BoxFuture<'a, Result<PipelineSpec>> {
        Box::pin(async move {
            let spec: PipelineSpec = serde_json::from_value(body)
                .map_err(|e| Error::config(format!("pipelines.{name}: {e}")))?;
            // Checked as `siphon apply` checks a file holding only this pipeline.
            let file = ConfigFile {
                pipelines: BTreeMap::from([(name.to_string(), spec.clone())]),
                ..ConfigFile::default()
            };
            file.validate(&self.state.connections().await?)?;
            Ok(spec)
        })
    }

    fn remove_pipeline<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let state = self.state.as_ref();
            // A pipeline this service runs holds its replication stream (and
            // slot) open: pause it first, so that its run ends and lets go.
            let paused = self.pause_for_removal(name).await?;
            match catalog::remove(state, name, true, false, false).await {
                Ok(_) => Ok(vec![format!(
                    "pipeline {name} removed as `siphon sync remove {name} --yes` does: its \
                     replication slot and publication dropped where it had them, its checkpoints \
                     on the target forgotten, its flags and table states removed"
                )]),
                Err(e) => {
                    if let Some(mut spec) = paused {
                        // Nothing was removed: the pipeline runs on as before.
                        spec.enabled = true;
                        state.put_pipeline(name, &spec).await?;
                        self.supervisor.reload();
                    }
                    Err(e)
                }
            }
        })
    }

    fn table_action<'a>(
        &'a self,
        pipeline: &'a str,
        table: &'a str,
        action: TableAction,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let state = self.state.as_ref();
            let mut all = state.pipelines().await?;
            let spec = all
                .remove(pipeline)
                .ok_or_else(|| Error::config(format!("unknown pipeline `{pipeline}`")))?;
            let (flag, value) = match action {
                TableAction::Enable => (Flag::Enabled, true),
                TableAction::Disable => (Flag::Enabled, false),
                TableAction::Resync => (Flag::ForceFullLoad, true),
            };
            let streams: Vec<StreamId> =
                catalog::streams(state, pipeline, &spec, Some(table)).await?;
            let mut set = Vec::new();
            for s in streams {
                state.set_flag(&s, flag, value).await?;
                if action == TableAction::Resync {
                    // As `sync resync`: a failed table runs again at once, its
                    // retries counted afresh.
                    siphon_engine::clear_attempts(state, &s).await?;
                }
                tracing::info!(stream = %s, flag = flag.as_str(), value, "table switch set through the API");
                set.push(s.to_string());
            }
            Ok(set)
        })
    }

    fn run_now<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<RunStarted>> {
        Box::pin(async move {
            let state = self.state.as_ref();
            let spec = state
                .pipelines()
                .await?
                .remove(pipeline)
                .ok_or_else(|| Error::config(format!("unknown pipeline `{pipeline}`")))?;
            let answer = |run: &str, execution: Option<u64>, detail: String| RunStarted {
                pipeline: pipeline.to_string(),
                run: run.to_string(),
                execution,
                detail,
            };
            if !spec.enabled {
                return Err(Error::config(format!(
                    "pipeline `{pipeline}` is paused: enable it first (`siphon sync enable \
                     {pipeline}`, or PUT it with \"enabled\": true)"
                )));
            }
            if spec.schedule == Schedule::Continuous {
                return Ok(answer(
                    "continuous",
                    None,
                    format!("pipeline `{pipeline}` runs all the time (schedule: continuous): there is no next pass to bring forward"),
                ));
            }
            // A pass runs when its execution is open and a worker holds the
            // lease (an execution left open by a worker that died does not count).
            let newest = state
                .executions(Some(pipeline), 1)
                .await?
                .into_iter()
                .next();
            if let Some(e) = newest.filter(|e| e.status == ExecutionStatus::Running) {
                if state.lease(pipeline).await?.is_some() {
                    return Ok(answer(
                        "running",
                        Some(e.id),
                        format!("a pass of `{pipeline}` is running (execution {}): nothing else was started", e.id),
                    ));
                }
            }
            let detail = match self.supervisor.run_now(pipeline) {
                RunNow::Restarted => format!(
                    "the next pass of `{pipeline}` starts now; its execution appears in GET /api/v1/executions?pipeline={pipeline}"
                ),
                RunNow::Starting => format!(
                    "`{pipeline}` is starting in this service with a pass; its execution appears in GET /api/v1/executions?pipeline={pipeline}"
                ),
            };
            Ok(answer("started", None, detail))
        })
    }

    fn catalog_changed(&self) {
        self.supervisor.reload();
    }

    fn status(&self) -> BoxFuture<'_, Result<serde_json::Value>> {
        Box::pin(async move {
            let mut memory = self.memory.lock().await;
            let report = model::read(self.state.as_ref(), &[], &mut memory).await?;
            serde_json::to_value(&report)
                .map_err(|e| Error::internal("writing the status as JSON").source(e))
        })
    }
}
