//! Keeps each pipeline's execution history within its `history` limits
//! (`keep_days`, `keep_runs`): after a pass, at most once a minute per
//! pipeline in this process (the first pass of the process always), the
//! state store removes the executions past them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use siphon_core::{PipelineSpec, StateStore};

/// The least time between two prunings of one pipeline's history.
const EVERY: Duration = Duration::from_secs(60);

/// When each pipeline's history was last pruned by this process.
static LAST: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

/// Whether `pipeline`'s history is due for pruning at `now`, counting it done.
fn take_due(pipeline: &str, now: Instant) -> bool {
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let last = last.get_or_insert_with(HashMap::new);
    match last.get(pipeline) {
        Some(at) if now.saturating_duration_since(*at) < EVERY => false,
        _ => {
            last.insert(pipeline.to_string(), now);
            true
        }
    }
}

/// Removes the pipeline's executions past its `history` limits, when due. A
/// failure is logged, never the pass's: the history is tried again later.
pub(crate) async fn prune<St: StateStore>(pipeline: &str, spec: &PipelineSpec, state: &St) {
    let limits = spec.history;
    if (limits.max_age().is_none() && limits.max_runs().is_none())
        || !take_due(pipeline, Instant::now())
    {
        return;
    }
    let older_than = limits
        .max_age()
        .and_then(|age| chrono::Duration::from_std(age).ok())
        .and_then(|age| Utc::now().checked_sub_signed(age));
    match state
        .prune_executions(pipeline, older_than, limits.max_runs())
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(
            pipeline,
            removed = n,
            "old executions removed from the history"
        ),
        Err(e) => {
            tracing::warn!(pipeline, error = %e, "could not remove old executions from the history")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_is_due_first_then_once_a_minute() {
        let t0 = Instant::now();
        assert!(take_due("h_due", t0));
        assert!(!take_due("h_due", t0 + Duration::from_secs(59)));
        assert!(take_due("h_due", t0 + EVERY));
        assert!(take_due("h_other", t0));
    }
}
