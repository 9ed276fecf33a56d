//! Per-table retries: when a failed table stream runs again.
//!
//! The error's kind decides ([`ErrorKind::action`], the one policy): a
//! transient failure ([`Action::RetrySoon`]) is retried after `retry_delay`,
//! doubling with each failure in a row (at most [`MAX_DELAY`]) plus up to a
//! quarter more at random, until it has been retried `max_retries` times. The
//! count lives in the stream's [`StreamState::Failed`] (`attempt`), so it
//! survives a restart and every worker sees it. Until its `next_retry`, passes
//! leave the table out and the pipeline's other tables go on.
//!
//! A permanent failure (config, bad input, privilege…), or a transient one
//! whose retries are spent, has no `next_retry`: the table waits, `failed`
//! with its message, until the pipeline's next run: the next scheduled pass
//! of a timed (`every …`, cron) pipeline, the first pass of this process or
//! of a changed pipeline (a fix applied with `siphon apply`), or `siphon sync
//! resync` ([`clear_attempts`]). Each of those starts the count afresh.
//!
//! A timed pipeline whose table waits for a retry sooner than the next
//! scheduled pass is woken for it ([`next_retry_at`]); such a retry pass runs
//! the tables that are due, and leaves the others (which ran on schedule)
//! alone, except `cdc` tables, which share one log and run together.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use siphon_core::{
    Action, Error, Mode, PipelineSpec, Result, Schedule, StateStore, StreamId, StreamState,
};

/// The longest delay between two retries of a table.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// How the runs of each pipeline in this process went: when its last
/// scheduled pass started, and the spec it ran with.
static RUNS: Mutex<Option<HashMap<String, Run>>> = Mutex::new(None);

/// When a run of a pipeline started, and a fingerprint of its spec.
type Run = (DateTime<Utc>, u64);

/// Makes the next pass of `pipeline` in this process start a new run, as a
/// pass its schedule calls for does (every table runs; failed ones with their
/// count cleared), rather than a retry pass: for a pass asked for by an
/// operator ahead of its schedule (the REST API's `run`).
pub fn run_afresh(pipeline: &str) {
    if let Some(runs) = RUNS.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        runs.remove(pipeline);
    }
}

/// The delay before retry `attempt` (counted from 1) of a table whose first
/// retry waits `first`: `first × 2^(attempt−1)`, at most [`MAX_DELAY`], plus
/// `jitter` (in `0.0..=1.0`) times a quarter of that.
pub fn retry_delay(first: Duration, attempt: u32, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    let full = first
        .checked_mul(1u32 << doublings)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY);
    full + full.mul_f64(jitter.clamp(0.0, 1.0)) / 4
}

/// The state of a table stream that failed with `e` at `now`, after
/// `previous` failures in a row, under `spec`'s `max_retries` and
/// `retry_delay`: a transient error is retried (its `next_retry` set) while
/// its retries are not spent; any other has no `next_retry`. `jitter` as in
/// [`retry_delay`].
pub fn failed_state(
    spec: &PipelineSpec,
    e: &Error,
    now: DateTime<Utc>,
    previous: u32,
    jitter: f64,
) -> StreamState {
    failed_with(spec.max_retries, spec.retry_delay, e, now, previous, jitter)
}

fn failed_with(
    max_retries: u32,
    first: Duration,
    e: &Error,
    now: DateTime<Utc>,
    previous: u32,
    jitter: f64,
) -> StreamState {
    let attempt = previous.saturating_add(1);
    let retried = e.action() == Action::RetrySoon && attempt <= max_retries;
    let next_retry = retried.then(|| {
        let delay = retry_delay(first, attempt, jitter);
        now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
    });
    StreamState::Failed {
        error: e.to_string(),
        kind: Some(e.kind()),
        next_retry,
        attempt,
    }
}

/// The retry settings of each pipeline, as its last pass read them, for
/// recording a failure where only the stream is known.
static POLICIES: Mutex<Option<HashMap<String, (u32, Duration)>>> = Mutex::new(None);

/// The failures in a row of each failed stream as its pipeline's last pass
/// found them at its start (a run sets the state to `streaming` or
/// `snapshotting` before it fails again, so the count is read before).
static ATTEMPTS: Mutex<Option<HashMap<StreamId, u32>>> = Mutex::new(None);

/// Which failed tables of a pipeline a pass leaves out, decided once at its
/// start.
#[derive(Debug, Clone, Default)]
pub(crate) struct Retries {
    /// The failed streams of the pipeline this pass leaves out.
    held: HashSet<StreamId>,
    /// The failed streams of the pipeline this pass runs.
    due: HashSet<StreamId>,
    /// A retry pass of a timed pipeline: only failed tables that are due run.
    retry_only: bool,
}

impl Retries {
    /// Reads the pipeline's stream states and decides, as of `now`, which
    /// failed tables this pass runs. A pass that starts a new run clears the
    /// failure count of every failed table of the pipeline and runs them all.
    pub(crate) async fn load<St: StateStore>(
        pipeline: &str,
        spec: &PipelineSpec,
        state: &St,
        now: DateTime<Utc>,
    ) -> Result<Retries> {
        POLICIES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(pipeline.to_string(), (spec.max_retries, spec.retry_delay));
        let fresh = new_run(pipeline, spec, now);
        let mut r = Retries {
            retry_only: !fresh && spec.schedule != Schedule::Continuous,
            ..Retries::default()
        };
        let mut attempts = HashMap::new();
        for (stream, s) in state.stream_states().await? {
            if stream.pipeline != pipeline {
                continue;
            }
            if let StreamState::Failed { attempt, .. } = &s {
                attempts.insert(stream.clone(), if fresh { 0 } else { *attempt });
            }
            if let StreamState::Failed {
                error,
                kind,
                next_retry,
                attempt,
            } = s
            {
                if fresh {
                    if attempt != 0 || next_retry.is_none() {
                        let cleared = StreamState::Failed {
                            error,
                            kind,
                            next_retry: Some(now),
                            attempt: 0,
                        };
                        state.set_stream_state(&stream, &cleared).await?;
                    }
                    r.due.insert(stream);
                } else if next_retry.is_some_and(|at| at <= now) {
                    r.due.insert(stream);
                } else {
                    r.held.insert(stream);
                }
            }
        }
        let mut known = ATTEMPTS.lock().unwrap_or_else(|p| p.into_inner());
        let known = known.get_or_insert_with(HashMap::new);
        known.retain(|s, _| s.pipeline != pipeline);
        known.extend(attempts);
        Ok(r)
    }

    /// Whether this pass leaves `stream` (a table in `mode`) out: a failed
    /// table not due for a retry; in a retry pass also a table that did not
    /// fail. Never a `cdc` table: those share one log, whose publication a
    /// table left out would leave (see the module's doc).
    pub(crate) fn holds(&self, stream: &StreamId, mode: Mode) -> bool {
        if mode == Mode::Cdc {
            return false;
        }
        self.held.contains(stream) || (self.retry_only && !self.due.contains(stream))
    }
}

/// The state of `stream` after it failed with `e` at `now`: its failures in a
/// row before are those its pipeline's last pass found at its start, and its
/// pipeline's retry settings those that pass read (the defaults when none did).
pub(crate) fn failed(stream: &StreamId, e: &Error, now: DateTime<Utc>) -> StreamState {
    let previous = ATTEMPTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(stream).copied())
        .unwrap_or(0);
    let (max_retries, delay) = POLICIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(&stream.pipeline).copied())
        .unwrap_or((
            siphon_core::DEFAULT_MAX_RETRIES,
            siphon_core::DEFAULT_RETRY_DELAY,
        ));
    failed_with(
        max_retries,
        delay,
        e,
        now,
        previous,
        siphon_core::random_fraction(),
    )
}

/// Whether a pass of `pipeline` at `now` starts a new run, noting it: the
/// first pass in this process, the first with a changed spec, and for a timed
/// pipeline a pass its schedule called for (rather than a retry pass).
fn new_run(pipeline: &str, spec: &PipelineSpec, now: DateTime<Utc>) -> bool {
    let print = fingerprint(spec);
    let mut runs = RUNS.lock().unwrap_or_else(|p| p.into_inner());
    let runs = runs.get_or_insert_with(HashMap::new);
    let fresh = match runs.get(pipeline) {
        None => true,
        Some((_, p)) if *p != print => true,
        Some((last, _)) => scheduled_since(&spec.schedule, *last, now),
    };
    if fresh {
        runs.insert(pipeline.to_string(), (now, print));
    }
    fresh
}

/// Whether the schedule called for a pass between `last` and `now`, with a
/// little slack for the time a pass takes to get here.
fn scheduled_since(schedule: &Schedule, last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let elapsed = (now - last).to_std().unwrap_or_default();
    match schedule {
        Schedule::Continuous => false,
        Schedule::Every(every) => elapsed + (*every / 10).min(Duration::from_secs(1)) >= *every,
        Schedule::Cron(line) => match line.parse::<croner::Cron>() {
            Ok(cron) => cron
                .find_next_occurrence(&last, false)
                .is_ok_and(|next| next <= now + chrono::Duration::seconds(1)),
            Err(_) => true,
        },
    }
}

fn fingerprint(spec: &PipelineSpec) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{spec:?}").hash(&mut h);
    h.finish()
}

/// The earliest `next_retry` of the pipeline's failed tables, if any: a timed
/// pipeline's run wakes then for a retry pass, when that comes before its next
/// scheduled pass.
pub async fn next_retry_at<St: StateStore>(
    state: &St,
    pipeline: &str,
) -> Result<Option<DateTime<Utc>>> {
    Ok(state
        .stream_states()
        .await?
        .into_iter()
        .filter(|(s, _)| s.pipeline == pipeline)
        .filter_map(|(_, st)| match st {
            StreamState::Failed { next_retry, .. } => next_retry,
            _ => None,
        })
        .min())
}

/// Clears the failure count of a failed table stream and makes it due now,
/// as `siphon sync resync` does: its next pass runs it, and a failure then
/// is its first. Returns whether the stream was failed; other states are left
/// alone.
pub async fn clear_attempts<St: StateStore>(state: &St, stream: &StreamId) -> Result<bool> {
    let now = Utc::now();
    for (s, st) in state.stream_states().await? {
        if s != *stream {
            continue;
        }
        if let StreamState::Failed { error, kind, .. } = st {
            let cleared = StreamState::Failed {
                error,
                kind,
                next_retry: Some(now),
                attempt: 0,
            };
            state.set_stream_state(stream, &cleared).await?;
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use siphon_core::{ErrorKind, TableName};

    use super::*;

    fn spec(json: &str) -> PipelineSpec {
        serde_json::from_str(json).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    #[test]
    fn delays_double_from_the_first_with_jitter_up_to_a_cap() {
        let five = Duration::from_secs(5);
        assert_eq!(retry_delay(five, 1, 0.0), five);
        assert_eq!(retry_delay(five, 1, 1.0), Duration::from_millis(6250));
        assert_eq!(retry_delay(five, 2, 0.0), Duration::from_secs(10));
        assert_eq!(retry_delay(five, 3, 0.0), Duration::from_secs(20));
        assert_eq!(retry_delay(five, 20, 0.0), MAX_DELAY);
        assert_eq!(retry_delay(five, u32::MAX, 1.0), MAX_DELAY + MAX_DELAY / 4);
        let half = retry_delay(five, 2, 0.5);
        assert!(half > Duration::from_secs(10) && half < Duration::from_millis(12500));
    }

    #[test]
    fn transient_failures_are_retried_until_max_retries_then_wait() {
        let p = spec(r#"{"source": "a", "target": "b"}"#);
        let lost = Error::new(ErrorKind::Connection, "reset").table("t");
        let mut previous = 0;
        for (attempt, delay) in [(1, 5), (2, 10), (3, 20)] {
            let s = failed_state(&p, &lost, at(0), previous, 0.0);
            assert_eq!(
                s,
                StreamState::Failed {
                    error: "table t: reset".into(),
                    kind: Some(ErrorKind::Connection),
                    next_retry: Some(at(delay)),
                    attempt,
                }
            );
            previous = attempt;
        }
        // The fourth failure in a row: the three retries are spent.
        let spent = failed_state(&p, &lost, at(0), previous, 0.0);
        assert!(
            matches!(
                spent,
                StreamState::Failed {
                    next_retry: None,
                    attempt: 4,
                    ..
                }
            ),
            "{spent:?}"
        );
        // No retries at all.
        let none = spec(r#"{"source": "a", "target": "b", "max_retries": 0}"#);
        let s = failed_state(&none, &lost, at(0), 0, 0.0);
        assert!(matches!(
            s,
            StreamState::Failed {
                next_retry: None,
                attempt: 1,
                ..
            }
        ));
        // The first delay is the pipeline's.
        let quick = spec(r#"{"source": "a", "target": "b", "retry_delay": "1s"}"#);
        let s = failed_state(&quick, &lost, at(0), 0, 0.0);
        assert!(matches!(s, StreamState::Failed { next_retry: Some(t), .. } if t == at(1)));
    }

    #[test]
    fn permanent_failures_are_never_retried() {
        let p = spec(r#"{"source": "a", "target": "b"}"#);
        for e in [
            Error::config("set `cursor`"),
            Error::bad_input("no key"),
            Error::privilege("GRANT SELECT"),
        ] {
            let s = failed_state(&p, &e, at(0), 0, 0.5);
            assert!(
                matches!(&s, StreamState::Failed { next_retry: None, attempt: 1, kind: Some(k), .. } if *k == e.kind()),
                "{s:?}"
            );
        }
    }

    fn stream(p: &str, t: &str) -> StreamId {
        StreamId::new(p, &TableName::new(None, t))
    }

    fn retries(held: &[&StreamId], due: &[&StreamId], retry_only: bool) -> Retries {
        Retries {
            held: held.iter().map(|s| (*s).clone()).collect(),
            due: due.iter().map(|s| (*s).clone()).collect(),
            retry_only,
        }
    }

    #[test]
    fn a_pass_holds_failed_tables_until_due_and_retry_passes_run_only_those() {
        let (waits, due, ok) = (stream("p", "waits"), stream("p", "due"), stream("p", "ok"));
        let r = retries(&[&waits], &[&due], false);
        assert!(r.holds(&waits, Mode::Full));
        assert!(!r.holds(&waits, Mode::Cdc), "cdc tables share one log");
        assert!(!r.holds(&due, Mode::Incremental));
        assert!(!r.holds(&ok, Mode::Full));
        let retry = retries(&[&waits], &[&due], true);
        assert!(
            retry.holds(&ok, Mode::Full),
            "a retry pass copies no healthy table"
        );
        assert!(!retry.holds(&ok, Mode::Cdc), "cdc tables share one log");
        assert!(!retry.holds(&due, Mode::Full));
    }

    #[test]
    fn runs_start_afresh_on_a_new_process_a_changed_spec_or_the_schedule() {
        let every = spec(r#"{"source": "a", "target": "b", "schedule": "every 1m"}"#);
        assert!(
            new_run("retry_sched", &every, at(0)),
            "first pass of the process"
        );
        assert!(!new_run("retry_sched", &every, at(5)), "a retry pass");
        assert!(
            new_run("retry_sched", &every, at(60)),
            "the next scheduled pass"
        );
        assert!(!new_run("retry_sched", &every, at(65)));
        let changed = spec(r#"{"source": "a", "target": "b", "schedule": "every 2m"}"#);
        assert!(
            new_run("retry_sched", &changed, at(66)),
            "a changed pipeline"
        );

        let cont = spec(r#"{"source": "a", "target": "b"}"#);
        assert!(new_run("retry_cont", &cont, at(0)));
        assert!(
            !new_run("retry_cont", &cont, at(3600)),
            "continuous passes are one run"
        );

        let cron = spec(r#"{"source": "a", "target": "b", "schedule": "*/5 * * * *"}"#);
        assert!(new_run("retry_cron", &cron, at(0)));
        assert!(!new_run("retry_cron", &cron, at(10)));
        assert!(new_run("retry_cron", &cron, at(300)));
    }
}
