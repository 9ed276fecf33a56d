//! Prometheus metrics: what the engine records, and `/metrics` that renders it.
//!
//! The engine records through the `metrics` facade (a no-op until a recorder is
//! installed); [`install`] puts one Prometheus recorder behind that facade for the
//! whole process and [`render`] turns what it holds into the Prometheus text format.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The batch apply duration histogram, whose buckets [`install`] sets.
pub const BATCH_APPLY_SECONDS: &str = siphon_engine::telemetry::BATCH_APPLY_SECONDS;

/// Upper bounds (seconds) of the batch apply duration histogram's buckets: from a
/// millisecond (a one-row batch on a local target) to a minute (a large batch on a
/// slow or remote one).
pub const BATCH_APPLY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often the recorder drains histogram samples between scrapes, so memory
/// stays bounded when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder behind the `metrics` facade,
/// with the help text and units of the engine's metrics
/// ([`siphon_engine::telemetry`] lists them).
///
/// Idempotent: the first call installs it, later calls do nothing. If another
/// recorder was installed in this process beforehand (not by this function), a
/// warning is logged and [`render`] serves an empty recorder of its own rather
/// than failing.
pub fn install() {
    handle();
}

/// Renders every metric recorded so far in the Prometheus text exposition
/// format, installing the recorder first if [`install`] was not called yet.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// The one recorder's handle, built and installed on first use.
fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = match builder().install_recorder() {
            Ok(handle) => handle,
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "another metrics recorder is already installed in this process; /metrics serves an empty one"
                );
                builder().build_recorder().handle()
            }
        };
        siphon_engine::telemetry::describe_metrics();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("siphon-metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "could not start the metrics upkeep thread; histograms drain on scrape only");
        }
        handle
    })
}

/// The recorder's configuration: explicit buckets for the batch apply duration,
/// so it renders as a Prometheus histogram rather than a summary.
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(BATCH_APPLY_SECONDS.to_string()),
            BATCH_APPLY_BUCKETS,
        )
        .expect("the batch apply duration buckets are a non-empty constant")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_render_shows_the_histogram_buckets() {
        install();
        install();
        metrics::histogram!(BATCH_APPLY_SECONDS, "pipeline" => "unit", "table" => "public.t")
            .record(0.003);
        let text = render();
        assert!(
            text.contains(&format!(
                "{BATCH_APPLY_SECONDS}_bucket{{pipeline=\"unit\",table=\"public.t\",le=\"0.005\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{BATCH_APPLY_SECONDS}_bucket{{pipeline=\"unit\",table=\"public.t\",le=\"0.0025\"}} 0"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{BATCH_APPLY_SECONDS}_count{{pipeline=\"unit\",table=\"public.t\"}} 1"
            )),
            "{text}"
        );
    }
}
