//! What the engine-level PostgreSQL tests share: a source and a target
//! database on the shared test server, a pipeline name and an embedded state
//! store in a folder of their own.
//!
//! A test file uses it with `mod support;` and adds its own methods to
//! [`Env`] (`impl Env { … }` works from any file of the test binary).
#![allow(dead_code)]

use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;

/// Two fresh databases on the shared server and a state store.
pub struct Env {
    pub pg: &'static Postgres,
    pub src_url: String,
    /// The source database's name.
    pub src: String,
    pub dst_url: String,
    /// The target database's name.
    pub dst: String,
    /// A pipeline name unique to this test (the source database's name).
    pub pipeline: String,
    pub state: SqliteStateStore,
    /// The folder holding the state store; removed on drop.
    pub dir: tempfile::TempDir,
}

/// A new [`Env`].
pub async fn env() -> Env {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    let dst = dst_url.rsplit('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    Env {
        pg,
        pipeline: src.clone(),
        src_url,
        src,
        dst_url,
        dst,
        state,
        dir,
    }
}

impl Env {
    /// Runs SQL in the source database; what psql printed.
    pub fn src_sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.src, sql).unwrap()
    }

    /// Runs SQL in the target database; what psql printed.
    pub fn dst_sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.dst, sql).unwrap()
    }
}
