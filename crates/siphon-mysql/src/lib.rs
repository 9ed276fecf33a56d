//! MySQL and MariaDB as a siphon source and sink.
//!
//! One connector serves both servers; [`conn`] tells them apart at connect time
//! (`VERSION()` ending in `-MariaDB`), and the binlog reader (`cdc`) decodes
//! MariaDB's own events (GTID, GTID list, binlog checkpoint) beside MySQL's.

mod cdc;
pub mod conn;
pub mod objects;
mod poll;
pub mod probe;
pub mod schema;
mod sink;
mod source;
pub mod types;

pub use cdc::{server_id, BinlogPos, MySqlChangeStream};
pub use sink::MySqlSink;
pub use source::MySqlSource;
