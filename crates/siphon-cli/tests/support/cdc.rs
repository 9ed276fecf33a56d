//! A MariaDB source database, a target database on MariaDB or PostgreSQL and
//! a working directory, for tests of a continuous `cdc` pipeline run in the
//! background.

use std::path::Path;

use siphon_testkit::{MariaDb, Postgres};

use super::{db_name, Running};

/// Where the pipeline writes.
#[derive(Debug)]
pub enum Target {
    /// A database at this PostgreSQL server.
    Postgres(&'static Postgres),
    /// A database at the shared MariaDB server, beside the source.
    MariaDb,
}

/// A new source database at the shared MariaDB server, a new target
/// database, and an empty working directory.
#[derive(Debug)]
pub struct Databases {
    /// The shared MariaDB server.
    pub my: &'static MariaDb,
    /// Where the pipeline writes.
    pub target: Target,
    /// The source database's name.
    pub src: String,
    /// The target database's name.
    pub dst: String,
    /// The working directory (config, state store, log).
    pub dir: tempfile::TempDir,
}

impl Databases {
    /// Creates both databases and the directory.
    pub fn new(target: Target) -> Databases {
        let my = MariaDb::shared().unwrap();
        let src = db_name(&my.create_database().unwrap());
        let dst = match &target {
            Target::Postgres(pg) => db_name(&pg.create_database().unwrap()),
            Target::MariaDb => db_name(&my.create_database().unwrap()),
        };
        Databases {
            my,
            target,
            src,
            dst,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The working directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The source database's URL.
    pub fn src_url(&self) -> String {
        self.my.url_for(&self.src)
    }

    /// The target database's URL.
    pub fn dst_url(&self) -> String {
        match &self.target {
            Target::Postgres(pg) => pg.url_for(&self.dst),
            Target::MariaDb => self.my.url_for(&self.dst),
        }
    }

    /// The target's answer to `sql`, where `{t}` names `table` (PostgreSQL
    /// keeps it in a schema named after the source database).
    pub fn dst_sql(&self, table: &str, sql: &str) -> Result<String, siphon_testkit::Error> {
        match &self.target {
            Target::Postgres(pg) => pg.query_in(
                &self.dst,
                &sql.replace("{t}", &format!("\"{}\".{table}", self.src)),
            ),
            Target::MariaDb => self.my.query_in(&self.dst, &sql.replace("{t}", table)),
        }
    }

    /// The state the store shows for the source's table `table` in
    /// `pipeline`; empty while it shows none.
    pub fn stream_state(&self, pipeline: &str, table: &str) -> String {
        super::stream_state(self.path(), pipeline, &format!("{}.{table}", self.src))
    }

    /// `siphon run -f siphon.yaml` in the background (see [`super::spawn_run`]).
    pub fn spawn(&self) -> Running {
        super::spawn_run(self.path())
    }

    /// What the runs logged so far.
    pub fn log(&self) -> String {
        super::run_log(self.path())
    }
}
