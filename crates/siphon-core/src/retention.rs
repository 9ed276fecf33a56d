//! Pipeline options for retrying a failed table stream (`max_retries`,
//! `retry_delay`) and for how long its execution history is kept (`history`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The default of `max_retries`: three retries, as the MySQL sync daemon siphon
/// replaces made.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// The default of `retry_delay`: 5 seconds before the first retry.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);

pub(crate) fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

pub(crate) fn is_default_max_retries(n: &u32) -> bool {
    *n == DEFAULT_MAX_RETRIES
}

pub(crate) fn default_retry_delay() -> Duration {
    DEFAULT_RETRY_DELAY
}

pub(crate) fn is_default_retry_delay(d: &Duration) -> bool {
    *d == DEFAULT_RETRY_DELAY
}

/// `retry_delay` written as a duration (`5s`, `500ms`, `1m`), longer than zero.
pub(crate) mod retry_delay_text {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let text = if d.subsec_millis() != 0 || d.as_secs() == 0 {
            format!("{}ms", d.as_millis())
        } else {
            format!("{}s", d.as_secs())
        };
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        match crate::parse_duration(&text) {
            Ok(v) if v.is_zero() => Err(serde::de::Error::custom(
                "`retry_delay` must be longer than zero, as `5s`",
            )),
            Ok(v) => Ok(v),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

/// How much of a pipeline's execution history the state store keeps
/// (`history: { keep_days: 30, keep_runs: 20000 }`). After a pass, the engine
/// removes the pipeline's executions (with their tables' statistics) that
/// started more than `keep_days` days ago, and those past its newest
/// `keep_runs`; whichever limit is reached first applies. 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryRetention {
    /// Days an execution is kept after it started; 30 by default, 0: no age limit.
    pub keep_days: u32,
    /// Executions kept at most, the newest; 20,000 by default (about a week of a
    /// continuous `cdc` pipeline, which records one per 30 s of streaming),
    /// 0: no count limit.
    pub keep_runs: u64,
}

impl HistoryRetention {
    /// How long executions are kept, or `None` without an age limit.
    pub fn max_age(&self) -> Option<Duration> {
        (self.keep_days > 0).then(|| Duration::from_secs(u64::from(self.keep_days) * 86_400))
    }

    /// How many executions are kept, or `None` without a count limit.
    pub fn max_runs(&self) -> Option<u64> {
        (self.keep_runs > 0).then_some(self.keep_runs)
    }
}

impl Default for HistoryRetention {
    fn default() -> Self {
        HistoryRetention {
            keep_days: 30,
            keep_runs: 20_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::PipelineSpec;

    use super::*;

    #[test]
    fn retries_and_history_default_and_parse() {
        let spec: PipelineSpec = serde_json::from_str(r#"{"source": "a", "target": "b"}"#).unwrap();
        assert_eq!(spec.max_retries, 3);
        assert_eq!(spec.retry_delay, Duration::from_secs(5));
        assert_eq!(spec.history, HistoryRetention::default());
        assert_eq!(
            spec.history.max_age(),
            Some(Duration::from_secs(30 * 86_400))
        );
        // Defaults are left out when written back.
        let back = serde_json::to_value(&spec).unwrap();
        assert!(back.get("max_retries").is_none() && back.get("history").is_none());

        let spec: PipelineSpec = serde_json::from_str(
            r#"{"source": "a", "target": "b", "max_retries": 0, "retry_delay": "250ms",
                "history": {"keep_runs": 10, "keep_days": 0}}"#,
        )
        .unwrap();
        assert_eq!(spec.max_retries, 0);
        assert_eq!(spec.retry_delay, Duration::from_millis(250));
        assert_eq!(spec.history.max_age(), None);
        assert_eq!(spec.history.max_runs(), Some(10));
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["retry_delay"], "250ms");
        assert_eq!(serde_json::from_value::<PipelineSpec>(back).unwrap(), spec);

        let e = serde_json::from_str::<PipelineSpec>(
            r#"{"source": "a", "target": "b", "retry_delay": "0s"}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("`retry_delay` must be longer"),
            "{e}"
        );
        let e = serde_json::from_str::<PipelineSpec>(
            r#"{"source": "a", "target": "b", "history": {"keep": 3}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
