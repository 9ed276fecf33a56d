//! Throwaway real servers for siphon's integration tests.
//!
//! Each server is started from the installed binaries (Debian packages
//! `postgresql`, `mariadb-server`, `redis-server`, `nats-server`; `scripts/test`
//! installs them) in its own temporary directory, on a free port of
//! 127.0.0.1. `start()` returns only once the server really accepts
//! connections, or fails with an error that quotes the end of the server's
//! log. Dropping the handle stops the server and deletes the directory.
//!
//! | server | handle | URL |
//! | --- | --- | --- |
//! | PostgreSQL 15, `wal_level=logical` | [`Postgres`] | `postgres://postgres@127.0.0.1:PORT/postgres` |
//! | MariaDB, binlog ROW + GTID strict | [`MariaDb`] | `mysql://root@127.0.0.1:PORT/` |
//! | Redis, no persistence | [`Redis`] | `redis://127.0.0.1:PORT/0` |
//! | NATS with JetStream | [`Nats`] | `nats://127.0.0.1:PORT` |
//!
//! Two ways to use them:
//!
//! ```no_run
//! use siphon_testkit::{MariaDb, Postgres};
//!
//! // A server of one's own, for tests that restart, fill or break it.
//! let pg = Postgres::start()?;
//! let url = pg.create_database()?;
//!
//! // One server per test binary, shared by its tests; each test takes its
//! // own database so parallel tests do not meet.
//! let maria = MariaDb::shared()?;
//! let url = maria.create_database()?;
//! # Ok::<(), siphon_testkit::Error>(())
//! ```
//!
//! A missing binary is an error that names it and says to run `scripts/test`:
//! tests never skip silently.
//!
//! Servers never outlive the test process. An owned server stops in `Drop`.
//! A shared server lives in a `static` and is never dropped, so it is stopped
//! (and its directory removed) by an exit handler when the test binary ends.
//! And every server has a watchdog process that does the same if the test
//! process dies without doing it, e.g. when it is killed.
//!
//! Environment: `SIPHON_PG_BINDIR` overrides the PostgreSQL binary directory
//! (default `/usr/lib/postgresql/15/bin`); `SIPHON_TESTKIT_TMPDIR` overrides
//! where the temporary directories go (default: the system temp dir).

pub mod conformance;
mod error;
mod instance;
mod mariadb;
mod nats;
mod postgres;
mod redis;
mod sys;
mod util;

pub use error::Error;
pub use mariadb::{MariaDb, SERVER_ID as MARIADB_SERVER_ID};
pub use nats::Nats;
pub use postgres::Postgres;
pub use redis::Redis;
pub use util::{free_port, unique_name, HOST};
