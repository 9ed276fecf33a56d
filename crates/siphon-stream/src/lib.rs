//! Event targets: siphon publishes each change, with an id that is the same on
//! every replay, to a file (JSON Lines) and, later, to NATS JetStream and Kafka.
//!
//! Every sink here implements [`siphon_core::EventSink`]: delivery is at least
//! once, in order per table, and the engine moves a table stream's checkpoint
//! (kept in the state store) only after the destination durably accepted the
//! events. See [`json`] for the one event format every destination carries.

mod file;
pub mod json;

pub use file::FileSink;
