//! The one place where connectors meet dynamic dispatch: [`AnySource`],
//! [`AnySink`], [`AnyEventSink`], [`AnyChangeStream`] and [`AnyStateStore`] hold any connector
//! behind a `dyn` object and implement siphon-core's traits by forwarding every method.
//!
//! Every method of a core trait is forwarded explicitly, default bodies
//! included: a method left to its default here would silently replace the
//! connector's own. The `forwarding` test reads the core traits' source and
//! fails when one of their methods is missing here.

mod events;
mod sink;
mod source;
mod state;

use std::future::Future;
use std::pin::Pin;

pub use events::{AnyEventSink, AnyTarget};
pub use sink::AnySink;
pub use source::{AnyChangeStream, AnySource};
pub use state::AnyStateStore;

/// A boxed, sendable future: what the `dyn` side of the boundary returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[cfg(test)]
mod forwarding;
