//! The schema check schedule (`schema_check_interval`, 5 minutes by default):
//! how often a pipeline's tables that a pass would otherwise leave alone (a
//! `full` table that holds a complete copy and waits for `siphon sync
//! resync`) are prepared on the target again, so the sink compares them with
//! the source and brings the target in step (added and widened columns,
//! indexes, and with `schema.routines` views, routines and triggers). Tables
//! that run in a pass (`incremental`, `row_count`, `cdc`, a `full` copy) are
//! prepared by that run every pass already.
//!
//! A change the sink cannot apply safely (a narrowing type change) is its
//! `prepare` error: the table stops with it, recorded as failed with the
//! error's kind, and the pipeline's other tables go on.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use siphon_core::{
    Mode, PipelineSpec, Result, Sink, StateStore, StreamId, StreamState, TableSchema, TableStats,
};

use crate::cdc::Outcome;

/// When each pipeline of this process was last checked.
static LAST: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

/// Whether `pipeline` is due for a schema check at `now` (its first pass in
/// this process always is, then once every `interval`); a due check counts
/// as done from `now`.
pub(crate) fn take_due(pipeline: &str, interval: Duration, now: Instant) -> bool {
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let last = last.get_or_insert_with(HashMap::new);
    match last.get(pipeline) {
        Some(at) if now.saturating_duration_since(*at) < interval => false,
        _ => {
            last.insert(pipeline.to_string(), now);
            true
        }
    }
}

/// Prepares each of `tables` (source shapes, left alone by this pass) on the
/// sink under its target name, as a check. Returns the outcomes to record: a
/// table the check stopped, with the sink's error (which names the table),
/// and a table that failed before and passes now (so it is idle again);
/// a table that passes as before is left out of the pass's report.
pub(crate) async fn check_tables<K: Sink, St: StateStore>(
    pipeline: &str,
    spec: &PipelineSpec,
    sink: &K,
    state: &St,
    tables: Vec<TableSchema>,
) -> Result<Outcome> {
    let failed: HashSet<StreamId> = state
        .stream_states()
        .await?
        .into_iter()
        .filter(|(_, s)| matches!(s, StreamState::Failed { .. }))
        .map(|(id, _)| id)
        .collect();
    let mut out = Vec::new();
    for table in tables {
        let stream = StreamId::new(pipeline, &table.name);
        let mut stats = TableStats::starting(&table.name, Mode::Full);
        let mut target = table.clone();
        if let Some(schema) = &spec.target_schema {
            target.name.schema = Some(schema.clone());
        }
        let result = sink.prepare(&target, &spec.schema).await.map_err(|e| {
            if e.table_name().is_some() {
                e
            } else {
                e.table(&table.name)
            }
        });
        stats.finished_at = Some(Utc::now());
        match result {
            Ok(()) if failed.contains(&stream) => out.push((stream, stats, None)),
            Ok(()) => tracing::debug!(%stream, "schema checked"),
            Err(e) => {
                tracing::warn!(%stream, error = %e, "the schema check stopped the table");
                out.push((stream, stats, Some(e)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_due_first_then_once_an_interval() {
        let t0 = Instant::now();
        let every = Duration::from_secs(300);
        assert!(take_due("p_due", every, t0));
        assert!(!take_due("p_due", every, t0 + Duration::from_secs(299)));
        assert!(take_due("p_due", every, t0 + Duration::from_secs(300)));
        assert!(!take_due("p_due", every, t0 + Duration::from_secs(301)));
        // Each pipeline has its own schedule.
        assert!(take_due("p_other", every, t0 + Duration::from_secs(301)));
    }

    #[test]
    fn the_interval_is_a_pipeline_option_of_five_minutes_by_default() {
        let spec: PipelineSpec = serde_json::from_str(r#"{"source": "a", "target": "b"}"#).unwrap();
        assert_eq!(spec.schema_check_interval, Duration::from_secs(300));
        let spec: PipelineSpec = serde_json::from_str(
            r#"{"source": "a", "target": "b", "schema_check_interval": "30s"}"#,
        )
        .unwrap();
        assert_eq!(spec.schema_check_interval, Duration::from_secs(30));
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["schema_check_interval"], "30s");
        let e = serde_json::from_str::<PipelineSpec>(
            r#"{"source": "a", "target": "b", "schema_check_interval": "soon"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }
}
