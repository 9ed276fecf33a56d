//! Running a pipeline: one pass, or pass after pass on its schedule until a
//! stop is requested.

use std::future::Future;
use std::time::Duration;

use siphon_core::{
    Error, ErrorKind, ExecutionStatus, Flag, Mode, NewTables, PipelineSpec, Result, Schedule,
    StateStore, StreamState,
};
use siphon_engine::{
    follow_log_pass, run_log_pass, EventTarget, LogSession, Observer, PassReport, Shutdown,
};

use crate::dispatch::{AnyChangeStream, AnySource, AnyTarget};
use crate::registry::Registry;
use crate::url::ConnectionUrl;

/// What a following run says as it goes: the `siphon` binary prints it,
/// [`LogEvents`] logs it. Called from the run's task: keep each call short.
pub trait RunEvents: Send {
    /// The pipeline was removed from the catalog: its run stops.
    fn removed(&mut self, pipeline: &str);
    /// The pipeline changed in the catalog: its run goes on as it now is.
    fn changed(&mut self, pipeline: &str);
    /// A pass ended; table errors are in its report.
    fn pass_ended(&mut self, pipeline: &str, report: &PassReport);
    /// A pass was cut short by a stop request.
    fn pass_stopped(&mut self, pipeline: &str, error: &Error);
    /// A pass failed as a whole (a connection, discovery, the state store).
    fn pass_failed(&mut self, pipeline: &str, error: &Error);
    /// The pipeline was paused in the catalog (`enabled: false`): no pass
    /// runs, its connections and change stream are closed and its lease is
    /// given up until it is enabled again. `log`: it has `cdc` tables, whose
    /// source keeps the pipeline's log meanwhile. Said once per pause; logged
    /// by default.
    fn paused(&mut self, pipeline: &str, log: bool) {
        tracing::info!(pipeline, "paused in the catalog: no pass runs until it is enabled again (`siphon sync enable {pipeline}`)");
        if log {
            tracing::warn!(pipeline, "{}", kept_log_warning());
        }
    }
    /// The pipeline was enabled again after a pause: its passes resume from
    /// its checkpoints. Logged by default.
    fn resumed(&mut self, pipeline: &str) {
        tracing::info!(
            pipeline,
            "enabled again in the catalog: its passes resume from its checkpoints"
        );
    }
    /// Another live worker holds the pipeline's lease (`held`, when it could be
    /// read): this run waits until it gets it. Said once per wait; logged by
    /// default.
    fn waiting_for_lease(&mut self, pipeline: &str, held: Option<&siphon_core::Lease>) {
        match held {
            Some(l) => tracing::warn!(
                pipeline,
                "waits for the pipeline's lease, held by {} until {}",
                l.holder,
                crate::lease::shown(l)
            ),
            None => tracing::warn!(
                pipeline,
                "waits for the pipeline's lease, held by another worker"
            ),
        }
    }
}

/// Logs a run's events with `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogEvents;

impl RunEvents for LogEvents {
    fn removed(&mut self, pipeline: &str) {
        tracing::info!(pipeline, "removed from the catalog; its run stops");
    }
    fn changed(&mut self, pipeline: &str) {
        tracing::info!(pipeline, "changed in the catalog; it goes on as it now is");
    }
    fn pass_ended(&mut self, pipeline: &str, report: &PassReport) {
        tracing::info!(pipeline, status = %report.status.as_str(), tables = report.tables.len(), "pass ended");
    }
    fn pass_stopped(&mut self, pipeline: &str, error: &Error) {
        tracing::info!(pipeline, error = %error, "pass stopped");
    }
    fn pass_failed(&mut self, pipeline: &str, error: &Error) {
        tracing::warn!(pipeline, error = %error, "pass failed");
    }
}

/// What one pipeline's run did, once it ended.
#[derive(Debug)]
pub struct Outcome {
    /// The pipeline.
    pub pipeline: String,
    /// The passes that ran to their end (each recorded in the state store).
    pub passes: u64,
    /// What the last of them did.
    pub last_report: Option<PassReport>,
    /// The last error that stopped a pass, when the pass after it did not
    /// succeed (the run retries with a growing delay).
    pub last_error: Option<Error>,
}

/// How long a pass may go on after a stop request before it is abandoned: a
/// driver stops at its next chunk boundary, and a step that waits on a server
/// longer than this is cut short (an unfinished target transaction rolls back).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often a paused pipeline's run reads the catalog to see whether it was
/// enabled again, and how often a pass in flight reads it to see whether the
/// pipeline was paused.
const SWITCH_POLL: Duration = Duration::from_secs(2);

/// What a paused pipeline with `cdc` tables leaves at its source, said once
/// per pause.
pub fn kept_log_warning() -> &'static str {
    "the pipeline is paused and has cdc tables: the source keeps its change log from their \
     position until it is enabled again (a PostgreSQL replication slot retains WAL, which grows \
     with every write at the source: enable the pipeline again, or remove it, before the disk \
     fills; a MySQL or MariaDB binlog purged meanwhile makes its tables follow \
     `on_lost_position`)"
}

/// Whether any table of the pipeline reads the source's change log.
fn has_log(spec: &PipelineSpec) -> bool {
    spec.mode == Mode::Cdc
        || spec
            .tables_config
            .values()
            .any(|c| c.mode == Some(Mode::Cdc))
}

/// Runs `work` (a pass, or the wait before the next one) and, once the
/// pipeline is paused in the catalog (read every [`SWITCH_POLL`]), requests
/// `stop`, the work's own stop: a pass ends at its next batch or chunk
/// boundary, with what it committed and its checkpoint, as on a stop request,
/// and a following `cdc` pass ends its window of the log at once.
async fn until_paused<St: StateStore, F: Future>(
    name: &str,
    state: &St,
    stop: &Shutdown,
    work: F,
) -> F::Output {
    let watch = async {
        loop {
            tokio::time::sleep(SWITCH_POLL).await;
            // A failed read changes nothing: the next pass reads the catalog anyway.
            if let Ok(all) = state.pipelines().await {
                if all.get(name).is_some_and(|s| !s.enabled) {
                    tracing::info!(
                        pipeline = name,
                        "paused in the catalog: the pass in flight ends at its next batch or chunk boundary"
                    );
                    stop.request();
                    break;
                }
            }
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    tokio::select! {
        out = work => out,
        never = watch => match never {},
    }
}

/// Shows the tables of a paused pipeline as `paused` where they stream or
/// wait; a load under way and a failure keep their state, which the next pass
/// resumes or retries from.
async fn mark_paused<St: StateStore>(state: &St, name: &str) {
    let log = siphon_engine::log_stream(name);
    let states = match state.stream_states().await {
        Ok(states) => states,
        Err(e) => {
            tracing::warn!(pipeline = name, error = %e, "could not show the paused pipeline's tables as paused");
            return;
        }
    };
    for (stream, st) in states {
        if stream.pipeline != name
            || stream == log
            || !matches!(st, StreamState::Streaming | StreamState::Idle)
        {
            continue;
        }
        if let Err(e) = state.set_stream_state(&stream, &StreamState::Paused).await {
            tracing::warn!(%stream, error = %e, "could not show the table as paused");
        }
    }
}

/// Once the pipeline is enabled again: its tables shown `paused` whose own
/// switch is on are `idle` until the next pass says where they are (a table
/// that pass leaves alone, a `full` table holding its copy, stays idle).
async fn unmark_paused<St: StateStore>(state: &St, name: &str, spec: &PipelineSpec) {
    let Ok(states) = state.stream_states().await else {
        return;
    };
    for (stream, st) in states {
        if stream.pipeline != name || st != StreamState::Paused {
            continue;
        }
        let enabled = match state.flag(&stream, Flag::Enabled).await {
            Ok(Some(v)) => v,
            Ok(None) => spec.new_tables == NewTables::Enabled,
            Err(_) => continue,
        };
        if enabled {
            if let Err(e) = state.set_stream_state(&stream, &StreamState::Idle).await {
                tracing::warn!(%stream, error = %e, "could not show the table as no longer paused");
            }
        }
    }
}

/// How long one pass of a continuous pipeline streams its change log before
/// the pass is recorded and the next one begins on the same open stream.
const FOLLOW_WINDOW: Duration = Duration::from_secs(30);

/// Opens the pipeline's source and target, unless a stop is requested first.
async fn connect<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    registry: &Registry,
    shutdown: &Shutdown,
    epoch: u64,
) -> Result<(AnySource, AnyTarget)> {
    let open = async {
        let connections = state.connections().await?;
        let url = |conn: &str| -> Result<ConnectionUrl> {
            let written = connections.get(conn).ok_or_else(|| {
                Error::config(format!(
                    "pipelines.{name}: connection `{conn}` is not defined"
                ))
            })?;
            registry.parse_url(&format!("connections.{conn}"), written)
        };
        let source = registry
            .open_source(&spec.source, &url(&spec.source)?)
            .await?;
        let sink = match registry
            .open_target(&spec.target, &url(&spec.target)?)
            .await?
        {
            // Its checkpoints carry the lease's epoch, so that the target
            // refuses them once another worker took the lease over.
            AnyTarget::Table(sink) => {
                let sink = sink.under_lease(epoch);
                // A worker of an older epoch that still runs is refused from
                // now on, before this one reads a checkpoint.
                if epoch > 0 {
                    siphon_core::Sink::fence(&sink, name, epoch).await?;
                }
                AnyTarget::Table(sink)
            }
            events => events,
        };
        Ok((source, sink))
    };
    tokio::select! {
        r = open => r,
        _ = shutdown.stopped() => Err(Error::new(
            ErrorKind::Cancelled,
            "stopped while connecting to the source or the target; nothing was copied",
        )),
    }
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
                "stopped: the pass was waiting on a server and did not reach a chunk boundary \
                 within {}s of the stop request; what it committed stays, with its checkpoint",
                STOP_GRACE.as_secs()
            ),
        )),
    }
}

/// Takes the pipeline's lease, opens its connectors through `registry` and runs
/// one pass, as `siphon run --once` does, then gives the lease up. While
/// another live worker holds the lease it waits, up to the lease time (a dead
/// holder's lease expires by then), and then fails with
/// [`ErrorKind::LeaseLost`]. A stop request ends it at once while it waits or
/// connects, and at its next chunk boundary while it runs.
pub async fn run_pass<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    registry: &Registry,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) -> Result<PassReport> {
    let ttl = crate::lease::lease_ttl()?;
    // A little past the lease time, so that a lease that expires just then
    // is still taken.
    let wait = ttl + ttl / 10;
    let lease =
        crate::lease::acquire(state, name, ttl, shutdown, Some(wait), &mut LogEvents).await?;
    let Some(lease) = lease else {
        return Err(Error::new(
            ErrorKind::Cancelled,
            "stopped while waiting for the pipeline's lease; nothing was copied",
        ));
    };
    let mut held = crate::lease::Held::new(state, lease, ttl, shutdown);
    let stop = held.stop().clone();
    let mut raises = 0;
    let result = loop {
        let epoch = held.epoch();
        let result = held
            .keep(pass_under_lease(
                name, spec, state, registry, observer, &stop, epoch,
            ))
            .await;
        let stale = match &result {
            Err(e) => stale_epoch(e, &held),
            Ok(report) => !held.lost() && fenced_tables(state, name, report).await,
        };
        if !stale {
            break result;
        }
        if raises == MAX_EPOCH_RAISES {
            tracing::error!(pipeline = name, "{}", reset_store_hint(epoch));
            break match result {
                Err(e) => Err(Error::new(
                    ErrorKind::Fenced,
                    format!("{e}; {}", reset_store_hint(epoch)),
                )),
                ok => ok,
            };
        }
        raises += 1;
        if !raise_epoch(&mut held, name).await {
            break result;
        }
    };
    let result = match result {
        Err(e) if held.lost() && e.kind() == ErrorKind::Cancelled => Err(held.lost_error()),
        other => other,
    };
    held.release().await;
    result
}

/// How many times a run raises its lease's epoch (each time to above twice
/// the last) for a target that refuses it as stale while the state store
/// still grants the lease to this worker.
const MAX_EPOCH_RAISES: u32 = 8;

/// Whether a pass failed because the target holds checkpoints of a newer
/// lease epoch than the one this worker holds, while the state store has not
/// taken the lease from it: the store never granted that epoch, so it was
/// deleted or reset after they were written (or another siphon runs the
/// pipeline with a state store of its own).
fn stale_epoch<St: StateStore>(e: &Error, held: &crate::lease::Held<'_, St>) -> bool {
    e.kind() == ErrorKind::Fenced && !held.lost()
}

/// Takes the lease again under an epoch above the target's, with a warning
/// that says why; `false` when the lease is gone meanwhile.
async fn raise_epoch<St: StateStore>(held: &mut crate::lease::Held<'_, St>, name: &str) -> bool {
    let from = held.epoch();
    let raised = held.raise_epoch(from.saturating_mul(2)).await;
    if raised {
        tracing::warn!(
            pipeline = name,
            from,
            to = held.epoch(),
            "the target holds checkpoints of a newer lease epoch than this state store \
             granted: the state store was deleted or reset since; running on under a newer epoch"
        );
    }
    raised
}

/// Says why a target still refuses the lease's epoch after
/// [`MAX_EPOCH_RAISES`] raises, and what to do.
fn reset_store_hint(epoch: u64) -> String {
    format!(
        "the state store granted this worker the pipeline's lease, yet the target holds \
         checkpoints of a newer lease epoch than {epoch}, which this run raised its own to: \
         either another siphon with a state store of its own runs this pipeline against the \
         same target (stop it, or give both the same state store), or this state store was \
         deleted or reset after a long history (run again: each run raises the epoch further)"
    )
}

/// Whether a table of the pass failed because the target refused its
/// checkpoint as written under an older lease epoch; such tables are set idle
/// again, to run at once under a newer epoch.
async fn fenced_tables<St: StateStore>(state: &St, name: &str, report: &PassReport) -> bool {
    if !report
        .tables
        .iter()
        .any(|t| t.status == ExecutionStatus::Failed)
    {
        return false;
    }
    let Ok(states) = state.stream_states().await else {
        return false;
    };
    let mut any = false;
    for (stream, st) in states {
        if stream.pipeline == name
            && matches!(
                st,
                StreamState::Failed {
                    kind: Some(ErrorKind::Fenced),
                    ..
                }
            )
            && state
                .set_stream_state(&stream, &StreamState::Idle)
                .await
                .is_ok()
        {
            any = true;
        }
    }
    any
}

/// One pass whose checkpoints carry the lease's `epoch`.
async fn pass_under_lease<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    registry: &Registry,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    epoch: u64,
) -> Result<PassReport> {
    let (source, target) = connect(name, spec, state, registry, shutdown, epoch).await?;
    match &target {
        AnyTarget::Table(sink) => {
            bounded(
                shutdown,
                run_log_pass(name, spec, &source, sink, state, observer, shutdown),
            )
            .await
        }
        AnyTarget::Events(events) => {
            let sink = EventTarget::new(events, state).under_lease(epoch);
            bounded(
                shutdown,
                run_log_pass(name, spec, &source, &sink, state, observer, shutdown),
            )
            .await
        }
    }
}

/// A continuous pipeline's connectors and open change log, kept between passes.
struct Following {
    source: AnySource,
    sink: AnyTarget,
    session: LogSession<AnyChangeStream>,
}

impl Following {
    async fn close(mut self, name: &str) {
        if let Err(e) = self.session.close().await {
            tracing::warn!(pipeline = name, error = %e, "closing the change stream failed");
        }
    }
}

/// Runs one pipeline pass after pass on its schedule until shutdown, as
/// `siphon run` does. A continuous pipeline keeps its connections and its
/// change stream open from one pass to the next; they are opened again after
/// a failed pass. Before each pass the pipeline is read from the catalog
/// again: a removed pipeline stops, a changed one goes on as it now is.
#[allow(clippy::too_many_arguments)]
pub async fn follow<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    registry: &Registry,
    observer: &dyn Observer,
    shutdown: &Shutdown,
    events: &mut dyn RunEvents,
) -> Outcome {
    let mut outcome = Outcome {
        pipeline: name.to_string(),
        passes: 0,
        last_report: None,
        last_error: None,
    };
    let mut spec = spec.clone();
    let mut following: Option<Following> = None;
    let mut failures = 0u32;
    let mut raises = 0u32;
    let ttl = match crate::lease::lease_ttl() {
        Ok(ttl) => ttl,
        Err(e) => {
            events.pass_failed(name, &e);
            outcome.last_error = Some(e);
            return outcome;
        }
    };
    // The pipeline's lease, held from one pass to the next.
    let mut held: Option<crate::lease::Held<'_, St>> = None;
    // Paused in the catalog, and said so.
    let mut paused = false;
    while !shutdown.requested() {
        match state.pipelines().await {
            Ok(mut all) => match all.remove(name) {
                None => {
                    events.removed(name);
                    // `sync remove` forgot the pipeline's checkpoints on the
                    // target, but a pass running meanwhile may have written
                    // them again: this run forgets what it wrote.
                    let mut streams: Vec<siphon_core::StreamId> = outcome
                        .last_report
                        .iter()
                        .flat_map(|r| r.tables.iter())
                        .map(|t| siphon_core::StreamId::new(name, &t.table))
                        .collect();
                    streams.push(siphon_engine::log_stream(name));
                    if let Some(f) = following.take() {
                        for stream in &streams {
                            let reset = match &f.sink {
                                AnyTarget::Table(sink) => {
                                    siphon_core::Sink::reset(sink, stream).await
                                }
                                AnyTarget::Events(_) => state.remove_checkpoint(stream).await,
                            };
                            if let Err(e) = reset {
                                let e = e.to_string();
                                tracing::warn!(stream = %stream, error = %e, "could not forget the removed pipeline's checkpoint");
                            }
                        }
                        f.close(name).await;
                    }
                    break;
                }
                Some(now) if now != spec => {
                    // Its switch alone is said by `paused` and `resumed`.
                    let mut switched = now.clone();
                    switched.enabled = spec.enabled;
                    if switched != spec {
                        events.changed(name);
                        if let Some(f) = following.take() {
                            f.close(name).await;
                        }
                    }
                    spec = now;
                }
                Some(_) => {}
            },
            Err(e) => {
                tracing::warn!(pipeline = name, error = %e, "could not read the catalog; going on with the pipeline as it was");
            }
        }
        if !spec.enabled {
            // Paused: nothing held for it, neither connections nor a change
            // stream, nor the lease that another worker could use.
            if let Some(f) = following.take() {
                f.close(name).await;
            }
            // Its tables show `paused` before the lease goes, so whoever sees
            // the lease given up sees them paused.
            if !paused {
                paused = true;
                events.paused(name, has_log(&spec));
                mark_paused(state, name).await;
            }
            if let Some(lease) = held.take() {
                lease.release().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(SWITCH_POLL) => {}
                _ = shutdown.stopped() => {}
            }
            continue;
        }
        if paused {
            paused = false;
            unmark_paused(state, name, &spec).await;
            events.resumed(name);
        }
        if held.as_ref().is_none_or(|h| h.lost()) {
            // Lost: another worker runs the pipeline now, and may need the
            // source's log that this run holds open.
            if let Some(f) = following.take() {
                f.close(name).await;
            }
            match crate::lease::acquire(state, name, ttl, shutdown, None, events).await {
                Ok(Some(lease)) => {
                    held = Some(crate::lease::Held::new(state, lease, ttl, shutdown));
                }
                Ok(None) => break,
                Err(e) => {
                    record(&mut outcome, &mut failures, name, Err(e), events);
                    break;
                }
            }
        }
        let lease = held.as_mut().expect("acquired above");
        let (stop, epoch) = (lease.stop().clone(), lease.epoch());
        let shutdown = &stop;
        // The pass's own stop, requested too when the pipeline is paused.
        let pass_stop = stop.child();
        let spec = &spec;
        let started = chrono::Utc::now();
        let result = if spec.schedule == Schedule::Continuous {
            if following.is_none() {
                match connect(name, spec, state, registry, shutdown, epoch).await {
                    Ok((source, sink)) => {
                        following = Some(Following {
                            source,
                            sink,
                            // Short enough that a table created at the source is
                            // found within one schema check.
                            session: LogSession::follow(
                                FOLLOW_WINDOW.min(spec.schema_check_interval),
                            ),
                        });
                    }
                    Err(e) => {
                        record(&mut outcome, &mut failures, name, Err(e), events);
                        let wait = pass_stop.child();
                        lease
                            .keep(until_paused(
                                name,
                                state,
                                &wait,
                                pause(spec, started, false, failures, false, None, &wait),
                            ))
                            .await;
                        continue;
                    }
                }
            }
            let f = following.as_mut().expect("opened above");
            let pass = async {
                match &f.sink {
                    AnyTarget::Table(sink) => {
                        bounded(
                            &pass_stop,
                            follow_log_pass(
                                name,
                                spec,
                                &f.source,
                                sink,
                                state,
                                observer,
                                &pass_stop,
                                &mut f.session,
                            ),
                        )
                        .await
                    }
                    AnyTarget::Events(events) => {
                        let sink = EventTarget::new(events, state).under_lease(epoch);
                        bounded(
                            &pass_stop,
                            follow_log_pass(
                                name,
                                spec,
                                &f.source,
                                &sink,
                                state,
                                observer,
                                &pass_stop,
                                &mut f.session,
                            ),
                        )
                        .await
                    }
                }
            };
            lease
                .keep(until_paused(name, state, &pass_stop, pass))
                .await
        } else {
            lease
                .keep(until_paused(
                    name,
                    state,
                    &pass_stop,
                    pass_under_lease(name, spec, state, registry, observer, &pass_stop, epoch),
                ))
                .await
        };
        let stale = raises < MAX_EPOCH_RAISES
            && match &result {
                Err(e) => stale_epoch(e, lease),
                Ok(report) => !lease.lost() && fenced_tables(state, name, report).await,
            };
        if stale {
            // The store still grants this worker the lease the target refuses.
            raises += 1;
            if let Some(f) = following.take() {
                f.close(name).await;
            }
            if raise_epoch(lease, name).await {
                continue;
            }
        }
        let result = match result {
            Err(e) if lease.lost() && e.kind() == ErrorKind::Cancelled => Err(lease.lost_error()),
            // A target refused a checkpoint: a newer holder wrote one.
            Err(e) if matches!(e.kind(), ErrorKind::Fenced | ErrorKind::LeaseLost) => {
                lease.mark_lost();
                Err(e)
            }
            other => other,
        };
        let found_work = record(&mut outcome, &mut failures, name, result, events);
        if failures > 0 {
            // A failed pass may have left a connection broken: start afresh.
            if let Some(f) = following.take() {
                f.close(name).await;
            }
        }
        let streaming = following.as_ref().is_some_and(|f| f.session.is_open());
        // A timed pipeline wakes early for a table's retry.
        let retry_at = match spec.schedule {
            Schedule::Continuous => None,
            _ => siphon_engine::next_retry_at(state, name)
                .await
                .ok()
                .flatten(),
        };
        let wait = stop.child();
        lease
            .keep(until_paused(
                name,
                state,
                &wait,
                pause(
                    spec, started, streaming, failures, found_work, retry_at, &wait,
                ),
            ))
            .await;
    }
    if let Some(f) = following.take() {
        f.close(name).await;
    }
    if let Some(lease) = held.take() {
        lease.release().await;
    }
    tracing::info!(pipeline = name, passes = outcome.passes, "stopped");
    outcome
}

/// Notes what a pass did; whether it found work.
fn record(
    outcome: &mut Outcome,
    failures: &mut u32,
    name: &str,
    result: Result<PassReport>,
    events: &mut dyn RunEvents,
) -> bool {
    match result {
        Ok(report) => {
            events.pass_ended(name, &report);
            // Some tables failing while others go on is no reason to start
            // afresh: that would hold up the others.
            let all_failed = report.status == ExecutionStatus::Failed
                && report
                    .tables
                    .iter()
                    .all(|t| t.status == ExecutionStatus::Failed);
            *failures = if all_failed { *failures + 1 } else { 0 };
            let found = report.found_work();
            outcome.passes += 1;
            if !all_failed {
                outcome.last_error = None;
            }
            outcome.last_report = Some(report);
            found
        }
        Err(e) if e.kind() == ErrorKind::Cancelled => {
            events.pass_stopped(name, &e);
            false
        }
        Err(e) => {
            events.pass_failed(name, &e);
            siphon_engine::telemetry::pass_failed(name, e.kind());
            *failures += 1;
            outcome.last_error = Some(e);
            false
        }
    }
}

/// Waits until the next pass is due, or a stop is requested.
async fn pause(
    spec: &PipelineSpec,
    started: chrono::DateTime<chrono::Utc>,
    streaming: bool,
    failures: u32,
    found_work: bool,
    retry_at: Option<chrono::DateTime<chrono::Utc>>,
    shutdown: &Shutdown,
) {
    let mut delay = if streaming {
        // The pass already waited on the stream: go on reading it.
        Duration::ZERO
    } else {
        siphon_engine::next_delay(&spec.schedule, started, chrono::Utc::now(), found_work)
            .unwrap_or(Duration::from_secs(60))
    };
    if let Some(at) = retry_at {
        // A retry pass runs only the tables that are due.
        delay = delay.min((at - chrono::Utc::now()).to_std().unwrap_or_default());
    }
    if failures > 0 {
        // Failing passes back off as the retry policy does (doubling, with
        // jitter, up to five minutes). A pass that waits for an operator is
        // tried on the same backoff, so a fix is picked up without a restart.
        delay = delay.max(siphon_core::Backoff::STANDARD.delay(failures));
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.stopped() => {}
    }
}
