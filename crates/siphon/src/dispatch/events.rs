//! Any event target, and a target of either kind.

use std::any::Any;
use std::fmt;

use siphon_core::{Delivery, Event, EventSink, Result};

use super::{AnySink, BoxFuture};

/// The `dyn`-compatible mirror of [`EventSink`].
trait DynEventSink: fmt::Debug + Send + Sync {
    fn delivery(&self) -> Delivery;
    fn publish(&self, events: Vec<Event>) -> BoxFuture<'_, Result<()>>;
    /// The connector itself, to reach what only it offers.
    fn as_any(&self) -> &dyn Any;
}

/// A connector's event sink.
#[derive(Debug)]
struct Publisher<T>(T);

impl<T: EventSink + fmt::Debug + 'static> DynEventSink for Publisher<T> {
    fn delivery(&self) -> Delivery {
        self.0.delivery()
    }
    fn publish(&self, events: Vec<Event>) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.0.publish(events))
    }
    fn as_any(&self) -> &dyn Any {
        &self.0
    }
}

/// Any event target siphon can publish to (files; later NATS, Kafka), opened
/// through the [`Registry`](crate::Registry). It implements [`EventSink`] by
/// forwarding every method to its connector.
#[derive(Debug)]
pub struct AnyEventSink(Box<dyn DynEventSink>);

impl AnyEventSink {
    /// Wraps a connector's event sink.
    pub fn new<T: EventSink + fmt::Debug + 'static>(sink: T) -> AnyEventSink {
        AnyEventSink(Box::new(Publisher(sink)))
    }

    /// The connector itself, when it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}

impl EventSink for AnyEventSink {
    fn delivery(&self) -> Delivery {
        self.0.delivery()
    }

    async fn publish(&self, events: Vec<Event>) -> Result<()> {
        self.0.publish(events).await
    }
}

/// A pipeline's target, of either kind: a table target keeps its checkpoints
/// itself, in the same transaction as the data; an event target publishes
/// changes, and the engine keeps its checkpoints in the state store
/// ([`siphon_engine::EventTarget`]).
#[derive(Debug)]
pub enum AnyTarget {
    /// A SQL database.
    Table(AnySink),
    /// A file, a broker.
    Events(AnyEventSink),
}
