//! `siphon apply` and `siphon run`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use siphon_core::{
    Error, ErrorKind, ExecutionStatus, Mode, PipelineSpec, Result, Schedule, StateStore,
};
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

/// How long a pass may go on after a stop request before it is abandoned: a
/// driver stops at its next chunk boundary, and a step that waits on a server
/// longer than this is cut short (an unfinished target transaction rolls back).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `work`, unless a stop is requested first: then `None` at once.
async fn unless_stopped<F: Future>(shutdown: &Shutdown, work: F) -> Option<F::Output> {
    tokio::select! {
        r = work => Some(r),
        _ = shutdown.stopped() => None,
    }
}

/// Opens the pipeline's connectors, unless a stop is requested first.
async fn connect<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    shutdown: &Shutdown,
) -> Result<(AnySource, AnySink)> {
    unless_stopped(shutdown, connectors(name, spec, state))
        .await
        .unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Cancelled,
                "stopped while connecting to the source or the target; nothing was copied",
            ))
        })
}

/// Runs a pass, and gives it [`STOP_GRACE`] to end once a stop is requested.
async fn bounded<F: Future<Output = Result<PassReport>>>(
    shutdown: &Shutdown,
    pass: F,
) -> Result<PassReport> {
    let grace = async {
        shutdown.stopped().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        r = pass => r,
        _ = grace => Err(Error::new(
            ErrorKind::Cancelled,
            format!(
                "stopped: the pass was waiting on a server and did not reach a chunk boundary within {}s of \
                 the stop request; what it committed stays, with its checkpoint",
                STOP_GRACE.as_secs()
            ),
        )),
    }
}

/// Opens the pipeline's connectors and runs one pass. A stop request ends it
/// while it connects at once, and while it runs at its next chunk boundary.
pub async fn pass<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) -> Result<PassReport> {
    let (source, sink) = connect(name, spec, state, shutdown).await?;
    bounded(
        shutdown,
        run_log_pass(name, spec, &source, &sink, state, observer, shutdown),
    )
    .await
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

/// What a continuous run does with the pipeline, said once at its start.
fn plan_line(name: &str, spec: &PipelineSpec) -> String {
    let mut modes = vec![spec.mode];
    modes.extend(spec.tables_config.values().filter_map(|c| c.mode));
    modes.sort_by_key(|m| m.to_string());
    modes.dedup();
    let continuous = spec.schedule == Schedule::Continuous;
    let does: Vec<String> = modes
        .iter()
        .map(|m| match (m, continuous) {
            (Mode::Full, true) => "full tables are copied once (when they have no complete copy), \
                                   then again only after `siphon sync resync`"
                .to_string(),
            (Mode::Full, false) => {
                format!("full tables are copied at each run ({})", spec.schedule)
            }
            (Mode::Incremental, true) => "incremental tables are polled continuously".to_string(),
            (Mode::Incremental, false) => {
                format!(
                    "incremental tables are polled at each run ({})",
                    spec.schedule
                )
            }
            (Mode::Cdc, true) => "cdc tables stream their changes continuously".to_string(),
            (Mode::Cdc, false) => format!(
                "cdc tables catch up with the change log at each run ({})",
                spec.schedule
            ),
            (Mode::Merge, _) => "merge tables are not available in this version".to_string(),
        })
        .collect();
    format!(
        "pipeline {name}: {} -> {}, mode {}, tables {}, schedule {}: {}; Ctrl-C stops",
        spec.source,
        spec.target,
        spec.mode,
        spec.tables.join(", "),
        spec.schedule,
        does.join("; ")
    )
}

/// The failures a following pipeline printed, per table (`""` for the
/// pipeline itself), so each is printed once when it happens and once when
/// it is over, not again at every pass.
#[derive(Default)]
struct Failures(HashMap<String, String>);

impl Failures {
    /// Prints a failure unless it is the one printed last for `key`.
    fn failed(&mut self, key: &str, error: &str, line: String) {
        if self.0.get(key).map(String::as_str) != Some(error) {
            eprintln!("{line}");
            self.0.insert(key.to_string(), error.to_string());
        }
    }

    /// Forgets `key`'s failure; whether there was one.
    fn recovered(&mut self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }

    /// Prints what a pass did: tables that found work, failures once, and
    /// recoveries.
    fn report(&mut self, name: &str, report: &PassReport) {
        if self.recovered("") {
            eprintln!("pipeline {name}: its passes run again");
        }
        for t in &report.tables {
            let key = t.table.key();
            let line = summary_line(name, t);
            match (&t.status, &t.error) {
                (ExecutionStatus::Failed, Some(e)) => self.failed(&key, e, line),
                _ if self.recovered(&key) => println!("{line}  (recovered)"),
                _ if t.rows_read > 0 || t.deleted > 0 || t.replaced > 0 => println!("{line}"),
                _ => {}
            }
        }
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
            if shutdown.requested() {
                eprintln!("pipeline {name}: not run: stopped on request");
                continue;
            }
            match pass(name, spec, state.as_ref(), bars.as_ref(), &shutdown).await {
                Ok(report) => {
                    print_report(name, &report);
                    failed |= report.status == ExecutionStatus::Failed;
                }
                Err(e) if e.kind() == ErrorKind::Cancelled => {
                    eprintln!("pipeline {name}: {e}");
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
            // Stopped by Ctrl-C or SIGTERM, as shells report it.
            _ if shutdown.requested() => ExitCode::from(130),
            _ => ExitCode::SUCCESS,
        });
    }

    for (name, spec) in &pipelines {
        eprintln!("{}", plan_line(name, spec));
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
    // A following run ends on Ctrl-C or SIGTERM: that is its normal end.
    Ok(ExitCode::SUCCESS)
}

/// What the catalog holds for a running pipeline now.
enum Catalogued {
    Same,
    Changed(Box<PipelineSpec>),
    Removed,
}

/// Reads the pipeline's spec from the state store again, so a run follows
/// `sync remove` and edits made while it runs. A state store that cannot be
/// read leaves the spec as it was.
async fn catalogued<St: StateStore>(name: &str, spec: &PipelineSpec, state: &St) -> Catalogued {
    match state.pipelines().await {
        Ok(mut all) => match all.remove(name) {
            None => Catalogued::Removed,
            Some(now) if &now != spec => Catalogued::Changed(Box::new(now)),
            Some(_) => Catalogued::Same,
        },
        Err(e) => {
            tracing::warn!(pipeline = name, error = %e, "could not read the catalog; going on with the pipeline as it was");
            Catalogued::Same
        }
    }
}

/// Runs one pipeline pass after pass on its schedule until shutdown. A
/// continuous pipeline keeps its connections and its change stream open from one
/// pass to the next; they are opened again after a failed pass. Before each
/// pass the pipeline is read from the catalog again: a removed pipeline stops,
/// a changed one goes on as it now is.
async fn follow<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) {
    let mut spec = spec.clone();
    let mut following: Option<Following> = None;
    let mut failures = 0u32;
    let mut printed = Failures::default();
    while !shutdown.requested() {
        match catalogued(name, &spec, state).await {
            Catalogued::Same => {}
            Catalogued::Removed => {
                eprintln!("pipeline {name}: removed from the catalog; this run stops it");
                break;
            }
            Catalogued::Changed(now) => {
                eprintln!("pipeline {name}: changed in the catalog; it goes on as it now is");
                if let Some(f) = following.take() {
                    f.close(name).await;
                }
                spec = *now;
            }
        }
        let spec = &spec;
        let continuous = spec.schedule == Schedule::Continuous;
        let started = chrono::Utc::now();
        let result = if continuous {
            let opened = match following {
                Some(_) => Ok(()),
                None => connect(name, spec, state, shutdown)
                    .await
                    .map(|(source, sink)| {
                        following = Some(Following {
                            source,
                            sink,
                            session: LogSession::follow(FOLLOW_WINDOW),
                        });
                    }),
            };
            match (opened, following.as_mut()) {
                (Ok(()), Some(f)) => {
                    bounded(
                        shutdown,
                        follow_log_pass(
                            name,
                            spec,
                            &f.source,
                            &f.sink,
                            state,
                            observer,
                            shutdown,
                            &mut f.session,
                        ),
                    )
                    .await
                }
                (Err(e), _) => Err(e),
                (Ok(()), None) => Err(Error::internal("the pipeline's connections are missing")),
            }
        } else {
            pass(name, spec, state, observer, shutdown).await
        };
        let found_work = match result {
            Ok(report) => {
                printed.report(name, &report);
                // Some tables failing while others go on is no reason to
                // start afresh: that would hold up the others.
                let all_failed = report.status == ExecutionStatus::Failed
                    && report
                        .tables
                        .iter()
                        .all(|t| t.status == ExecutionStatus::Failed);
                failures = if all_failed { failures + 1 } else { 0 };
                report.found_work()
            }
            Err(e) if e.kind() == ErrorKind::Cancelled => {
                eprintln!("pipeline {name}: {e}");
                false
            }
            Err(e) => {
                let msg = e.to_string();
                printed.failed("", &msg, format!("error: pipeline {name}: {msg}"));
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
