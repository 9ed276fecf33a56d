//! PostgreSQL as a siphon source and sink.
//!
//! Reads and writes use PostgreSQL's binary format, decoded and encoded by the
//! connector's own codec (`types`), so every declared type keeps its exact value.

mod cdc;
mod conn;
pub mod copy;
mod objects;
mod partition;
pub mod pgoutput;
mod poll;
pub mod probe;
pub mod replication;
mod schema;
mod sink;
mod source;
pub mod types;

pub use cdc::{log_name, PostgresChangeStream};
pub use conn::{check_url, same_database};
pub use objects::target::sync_sequences;
pub use sink::PostgresSink;
pub use source::PostgresSource;
