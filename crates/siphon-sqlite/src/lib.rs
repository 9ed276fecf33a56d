//! SQLite as a siphon source and sink.
//!
//! rusqlite is synchronous: each handle owns one connection and runs every call on
//! tokio's blocking pool, so a source and a sink work in parallel.

mod conn;
mod datetime;
mod native;
mod schema;
mod sink;
mod source;
mod types;
mod wal;

pub use conn::path_from_url;
pub use sink::SqliteSink;
pub use source::SqliteSource;
