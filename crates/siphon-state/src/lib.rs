//! siphon's state stores: where the catalog (connections, pipelines), the operator
//! flags, copies of checkpoints and the execution history live.
//!
//! Every store implements [`siphon_core::StateStore`]. The embedded one,
//! [`SqliteStateStore`], keeps everything in one SQLite file (by default
//! [`DEFAULT_PATH`]) that several siphon processes may share. Stores that
//! several machines share: [`RedisStateStore`] (`redis://host:port/db?prefix=…`)
//! and [`PostgresStateStore`] (`postgres://…?schema=…`).

mod postgres;
mod redis;
mod sqlite;

pub use self::postgres::{PostgresStateStore, DEFAULT_SCHEMA};
pub use self::redis::{RedisStateStore, DEFAULT_PREFIX};
pub use sqlite::{SqliteStateStore, DEFAULT_PATH, KEPT_EXECUTIONS};
