//! siphon as a Rust library.
//!
//! ```no_run
//! use siphon::{Connection, Mode, Pipeline, Siphon};
//!
//! # async fn demo() -> siphon::Result<()> {
//! let siphon = Siphon::builder()
//!     .state_path(".siphon/state.db")
//!     .connection(Connection::new("app", "postgres://app:${APP_PASSWORD}@db/app"))
//!     .connection(Connection::new("copy", "sqlite://copy.db"))
//!     .pipeline(
//!         Pipeline::builder("app_to_copy")
//!             .source("app")
//!             .target("copy")
//!             .mode(Mode::Cdc)
//!             .tables(["public.*"])
//!             .build()?,
//!     )
//!     .init()
//!     .await?;
//! let running = siphon.start().await?;
//! // … until it is time to stop: the batch being applied commits first.
//! let outcomes = running.stop().await?;
//! # let _ = outcomes;
//! # Ok(())
//! # }
//! ```
//!
//! Connections and the state store are opened from URLs through one
//! [`Registry`] (URL scheme → connector); what it opens are [`AnySource`],
//! [`AnySink`] and [`AnyStateStore`], which implement siphon-core's
//! [`Source`], [`LogSource`], [`Sink`] and [`StateStore`] so the engine drives
//! them like any other.

mod client;
mod dispatch;
mod lease;
mod pipeline;
pub mod probe;
mod registry;
mod run;
mod serve;
mod url;

pub use client::{Running, Siphon, SiphonBuilder};
pub use lease::{holder_id, lease_ttl, DEFAULT_LEASE_TTL, LEASE_TTL_ENV};
pub use pipeline::{Connection, Pipeline, PipelineBuilder};
pub use run::{follow, kept_log_warning, run_pass, LogEvents, Outcome, RunEvents};
pub use serve::{serve, RunNow, ServeOptions, ServiceEvents, Supervisor, DEFAULT_CATALOG_POLL};

pub use dispatch::{
    AnyChangeStream, AnyEventSink, AnySink, AnySource, AnyStateStore, AnyTarget, BoxFuture,
};
pub use registry::{
    mysql_driver_url, named, Capabilities, Connector, OpenEvents, OpenSink, OpenSource, OpenState,
    ParseUrl, Registry, FILE, MYSQL, POSTGRES, REDIS, SQLITE,
};
pub use url::{expand_env, redact, ConnectionUrl};

pub use siphon_core::{
    ChangeStream, Checkpoint, Error, ErrorKind, ExecutionStatus, LogSource, Mode, OnLostPosition,
    Phase, PipelineSpec, Position, Result, Schedule, Sink, Source, StateStore, StreamId, TableName,
    TableStats,
};
pub use siphon_engine::{NoopObserver, Observer, PassReport, Shutdown};
