//! How log lines look: plain text for people (the default) or one JSON
//! object a line for machines (`--log-format json`), on stderr and in the
//! service's log files alike. The format is chosen once per process, and
//! passed on to the processes siphon starts (a daemon) through
//! `SIPHON_LOG_FORMAT`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The environment variable that carries the format to a started process.
pub const LOG_FORMAT_ENV: &str = "SIPHON_LOG_FORMAT";

/// The look of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-02T12:00:00Z  INFO message key=value`, for people.
    #[default]
    Text,
    /// One JSON object a line (`timestamp`, `level`, `fields`, `spans`), for log collectors.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Chooses the format for this process and the processes it starts; the
/// first choice holds.
pub fn choose(format: LogFormat) {
    let _ = FORMAT.set(format);
    // Read by a daemon started from here, before its runtime starts threads.
    if format == LogFormat::Json {
        std::env::set_var(LOG_FORMAT_ENV, "json");
    }
}

/// The format chosen ([`LogFormat::Text`] when none was).
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// A formatting layer writing to `writer` in the chosen format, with colours
/// when `ansi` (never in JSON).
pub fn layer<S, W>(writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format() {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false)
            .boxed(),
    }
}

/// Logs to stderr at `level` (`RUST_LOG` overrides) in the chosen format;
/// colours only when stderr is a terminal and `NO_COLOR` is unset.
pub fn to_stderr(level: &str) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::registry()
        .with(layer(std::io::stderr, ansi).with_filter(filter))
        .init();
}
