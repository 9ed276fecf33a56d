//! siphon's state stores: where the catalog (connections, pipelines), the operator
//! flags, copies of checkpoints and the execution history live.
//!
//! Every store implements [`siphon_core::StateStore`]. The embedded one,
//! [`SqliteStateStore`], keeps everything in one SQLite file (by default
//! [`DEFAULT_PATH`]) that several siphon processes may share.

mod sqlite;

pub use sqlite::{SqliteStateStore, DEFAULT_PATH, KEPT_EXECUTIONS};
