//! `siphon apply` and `siphon run`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use siphon_core::{Error, ErrorKind, ExecutionStatus, PipelineSpec, Result, Schedule, StateStore};
use siphon_engine::{follow_log_pass, run_log_pass, LogSession, Observer, PassReport, Shutdown};
use siphon_state::SqliteStateStore;

use crate::config::{validate_pipeline, ConfigFile, ConnUrl};
use crate::connect::{open_sink, open_source, AnyChangeStream, AnySink, AnySource};
use crate::progress::{summary_line, Bars};

/// Loads a config file's connections and pipelines into the state store. URLs are
/// stored as written, `${VAR}` unexpanded.
pub async fn apply<St: StateStore>(state: &St, file: &ConfigFile) -> Result<()> {
    let known = state.connections().await?;
    file.validate(&known)?;
    for (name, url) in &file.connections {
        state.put_connection(name, url).await?;
    }
    for (name, spec) in &file.pipelines {
        state.put_pipeline(name, spec).await?;
    }
    tracing::info!(
        connections = file.connections.len(),
        pipelines = file.pipelines.len(),
        "applied the config to the state store"
    );
    Ok(())
}

/// The pipelines to run: the named ones (each must exist), or all.
async fn selected<St: StateStore>(
    state: &St,
    names: &[String],
) -> Result<BTreeMap<String, PipelineSpec>> {
    let all = state.pipelines().await?;
    if names.is_empty() {
        if all.is_empty() {
            return Err(Error::config(
                "no pipelines are defined: write them in siphon.yaml and pass it with -f, or run `siphon apply -f`",
            ));
        }
        return Ok(all);
    }
    let mut out = BTreeMap::new();
    for n in names {
        let spec = all.get(n).ok_or_else(|| {
            Error::config(format!(
                "unknown pipeline `{n}`; defined: {}",
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        validate_pipeline(n, spec)?;
        out.insert(n.clone(), spec.clone());
    }
    Ok(out)
}

/// Opens the pipeline's source and target.
async fn connectors<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
) -> Result<(AnySource, AnySink)> {
    let connections = state.connections().await?;
    let url = |conn: &str| -> Result<ConnUrl> {
        let written = connections.get(conn).ok_or_else(|| {
            Error::config(format!(
                "pipelines.{name}: connection `{conn}` is not defined"
            ))
        })?;
        ConnUrl::parse(&format!("connections.{conn}"), written)
    };
    let source = open_source(&spec.source, &url(&spec.source)?).await?;
    let sink = open_sink(&spec.target, &url(&spec.target)?).await?;
    Ok((source, sink))
}

/// Opens the pipeline's connectors and runs one pass.
pub async fn pass<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) -> Result<PassReport> {
    let (source, sink) = connectors(name, spec, state).await?;
    run_log_pass(name, spec, &source, &sink, state, observer, shutdown).await
}

/// A continuous pipeline's connectors and open change log, kept between passes.
struct Following {
    source: AnySource,
    sink: AnySink,
    session: LogSession<AnyChangeStream>,
}

impl Following {
    async fn close(mut self, name: &str) {
        if let Err(e) = self.session.close().await {
            tracing::warn!(pipeline = name, error = %e, "closing the change stream failed");
        }
    }
}

/// How long one pass of a continuous pipeline streams its change log before the
/// pass is recorded and the next one begins (on the same open stream).
const FOLLOW_WINDOW: Duration = Duration::from_secs(30);

fn print_report(name: &str, report: &PassReport) {
    for t in &report.tables {
        println!("{}", summary_line(name, t));
    }
}

/// Runs the pipelines once, or on their schedules until Ctrl-C or SIGTERM.
pub async fn run(state: Arc<SqliteStateStore>, names: &[String], once: bool) -> Result<ExitCode> {
    let pipelines = selected(state.as_ref(), names).await?;
    let shutdown = Shutdown::new();
    watch_signals(shutdown.clone());
    let bars = Arc::new(Bars::new());
    if once {
        let mut failed = false;
        let mut config_error = false;
        for (name, spec) in &pipelines {
            match pass(name, spec, state.as_ref(), bars.as_ref(), &shutdown).await {
                Ok(report) => {
                    print_report(name, &report);
                    failed |= report.status == ExecutionStatus::Failed;
                }
                Err(e) => {
                    eprintln!("error: pipeline {name}: {e}");
                    failed = true;
                    config_error |= e.kind() == ErrorKind::Config;
                }
            }
        }
        return Ok(match (config_error, failed) {
            (true, _) => ExitCode::from(2),
            (false, true) => ExitCode::FAILURE,
            _ => ExitCode::SUCCESS,
        });
    }

    let mut tasks = Vec::new();
    for (name, spec) in pipelines {
        let (state, bars, shutdown) = (state.clone(), bars.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            follow(&name, &spec, state.as_ref(), bars.as_ref(), &shutdown).await
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "a pipeline task ended abnormally");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one pipeline pass after pass on its schedule until shutdown. A
/// continuous pipeline keeps its connections and its change stream open from one
/// pass to the next; they are opened again after a failed pass.
async fn follow<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) {
    let continuous = spec.schedule == Schedule::Continuous;
    let mut following: Option<Following> = None;
    let mut failures = 0u32;
    while !shutdown.requested() {
        let started = chrono::Utc::now();
        let result = if continuous {
            if following.is_none() {
                following = connectors(name, spec, state)
                    .await
                    .map(|(source, sink)| Following {
                        source,
                        sink,
                        session: LogSession::follow(FOLLOW_WINDOW),
                    })
                    .map_err(|e| tracing::error!(pipeline = name, error = %e, "cannot connect"))
                    .ok();
            }
            match following.as_mut() {
                Some(f) => {
                    follow_log_pass(
                        name,
                        spec,
                        &f.source,
                        &f.sink,
                        state,
                        observer,
                        shutdown,
                        &mut f.session,
                    )
                    .await
                }
                None => Err(Error::new(
                    ErrorKind::Connection,
                    "the pipeline's connections could not be opened",
                )),
            }
        } else {
            pass(name, spec, state, observer, shutdown).await
        };
        let found_work = match result {
            Ok(report) => {
                if report.found_work() {
                    print_report(name, &report);
                }
                failures = if report.status == ExecutionStatus::Failed {
                    failures + 1
                } else {
                    0
                };
                report.found_work()
            }
            Err(e) => {
                tracing::error!(pipeline = name, error = %e, "pass failed");
                failures += 1;
                false
            }
        };
        if failures > 0 {
            // A failed pass may have left a connection broken: start afresh.
            if let Some(f) = following.take() {
                f.close(name).await;
            }
        }
        let streaming = following.as_ref().is_some_and(|f| f.session.is_open());
        let mut delay = if streaming {
            // The pass already waited on the stream: go on reading it.
            Duration::ZERO
        } else {
            siphon_engine::next_delay(&spec.schedule, started, chrono::Utc::now(), found_work)
                .unwrap_or(Duration::from_secs(60))
        };
        if failures > 0 {
            // Failing passes back off, doubling up to five minutes.
            delay = delay
                .max(Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300)));
        }
        sleep_unless_stopped(delay, shutdown).await;
    }
    if let Some(f) = following.take() {
        f.close(name).await;
    }
    tracing::info!(pipeline = name, "stopped");
}

async fn sleep_unless_stopped(d: Duration, shutdown: &Shutdown) {
    let until = tokio::time::Instant::now() + d;
    while !shutdown.requested() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100).min(until - tokio::time::Instant::now()))
            .await;
    }
}

/// The first Ctrl-C or SIGTERM asks every driver to stop after its current chunk;
/// a second one exits at once (committed chunks and their checkpoints stay).
fn watch_signals(shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for round in 0..2 {
            let term_fut = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term_fut => {}
            }
            if round == 0 {
                eprintln!("stopping after the current chunk (press Ctrl-C again to exit now)");
                shutdown.request();
            } else {
                std::process::exit(130);
            }
        }
    });
}
