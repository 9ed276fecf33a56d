//! The embedded state store: one SQLite file that every siphon process naming it shares.
//!
//! rusqlite is synchronous, so a handle owns one connection behind a mutex and runs
//! each call on tokio's blocking pool. Sharing between processes rests on SQLite
//! itself: WAL journal mode (readers never wait for the writer), a busy timeout (a
//! writer waits for another's lock instead of failing), write transactions that
//! take the write lock up front, and, where SQLite refuses at once rather than
//! wait (opening a file another process is creating or checkpointing), the step
//! run again until the same timeout.

mod conflicts;
mod keys;
mod lag;
mod lease;
mod schema;
mod sql;
mod store;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use siphon_core::{Error, ErrorKind, Result};

/// The state store's file when neither `--state` nor `SIPHON_STATE` names one,
/// relative to the working directory.
pub const DEFAULT_PATH: &str = ".siphon/state.db";

/// How long a call waits for another connection's lock before it fails. Every
/// transaction here is a handful of small statements, so a long wait means a stuck
/// process rather than a busy one.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`siphon_core::StateStore`] on one SQLite file.
///
/// Clones share one connection, and calls through it run one at a time on tokio's
/// blocking pool; every method must therefore be awaited inside a tokio runtime.
/// Other handles, in this process or in others, may open the same file at the same
/// time: each method is one SQLite transaction, so each sees and leaves a consistent
/// store, and a write is visible to every handle as soon as its method returns.
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    path: Arc<PathBuf>,
    conn: Arc<Mutex<Connection>>,
    /// Executions kept per pipeline; older ones are removed as new ones start.
    pub(crate) kept_executions: u64,
}

/// Executions kept per pipeline by default: about a week of a continuous `cdc`
/// pipeline, which records one execution per 30 s of streaming.
pub const KEPT_EXECUTIONS: u64 = 20_000;

impl SqliteStateStore {
    /// Opens the store at `path`, creating the file and its parent directories when
    /// missing and bringing its schema up to date.
    ///
    /// Async because opening may wait (up to the busy timeout) for another process
    /// that is migrating the same file; it runs on tokio's blocking pool, so it must
    /// be awaited inside a tokio runtime, like every other method. Fails with
    /// [`ErrorKind::Config`] when the file was written by a newer siphon, and with
    /// [`ErrorKind::State`] when it cannot be created, opened or migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStateStore> {
        let path = Arc::new(path.as_ref().to_path_buf());
        let at = Arc::clone(&path);
        let conn = tokio::task::spawn_blocking(move || until_not_busy(|| open_connection(&at)))
            .await
            .map_err(|e| {
                Error::internal(format!(
                    "opening state store {} did not finish",
                    path.display()
                ))
                .source(e)
            })?
            .map_err(|f| failure(format!("cannot open state store {}", path.display()), f))?;
        Ok(SqliteStateStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
            kept_executions: KEPT_EXECUTIONS,
        })
    }

    /// Keeps the newest `n` executions of each pipeline (at least 1) instead of
    /// [`KEPT_EXECUTIONS`].
    pub fn keep_executions(mut self, n: u64) -> Self {
        self.kept_executions = n.max(1);
        self
    }

    /// Opens the store a `sqlite://` URL names: `sqlite://.siphon/state.db` is
    /// relative to the working directory, `sqlite:///var/lib/siphon/state.db` is
    /// absolute. A query string (`?…`) is ignored. Otherwise as [`Self::open`].
    pub async fn open_url(url: &str) -> Result<SqliteStateStore> {
        SqliteStateStore::open(path_from_url(url)?).await
    }

    /// The file this store was opened at, as it was given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool. `doing` says what failed
    /// ("cannot save connection `app`") when it fails.
    fn call<T, F>(&self, doing: String, f: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        let mut f = f;
        let conn = Arc::clone(&self.conn);
        let path = Arc::clone(&self.path);
        async move {
            let outcome = tokio::task::spawn_blocking(move || {
                // A panic inside `f` rolled its transaction back while unwinding, so
                // the connection behind a poisoned lock is still sound.
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                // Each `f` is one transaction, rolled back when it fails, so one
                // refused for another connection's lock is simply run again.
                until_not_busy(|| f(&mut conn))
            })
            .await;
            match outcome {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(f)) => Err(failure(
                    format!("{doing} in state store {}", path.display()),
                    f,
                )),
                Err(e) => Err(Error::internal(format!(
                    "{doing} in state store {}: the call did not finish",
                    path.display()
                ))
                .source(e)),
            }
        }
    }
}

/// The file a `sqlite://` URL names.
fn path_from_url(url: &str) -> Result<PathBuf> {
    let rest = url.strip_prefix("sqlite://").ok_or_else(|| {
        Error::config(format!(
            "state store URL `{url}` is not a sqlite:// URL: write sqlite://relative/path.db or sqlite:///absolute/path.db"
        ))
    })?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(Error::config(format!(
            "state store URL `{url}` names no file: write sqlite://relative/path.db or sqlite:///absolute/path.db"
        )));
    }
    Ok(PathBuf::from(path))
}

/// Runs `step` again while it fails because another connection holds a lock it
/// needs, for up to [`BUSY_TIMEOUT`] in all. SQLite's busy handler covers most
/// waits, but not all: it is skipped when a read lock would have to be upgraded
/// (a deferred transaction that writes), when a file is switched to WAL mode or
/// recovered, and while the last connection closing a WAL file checkpoints it.
/// A second process opening the store while the first streams hits those.
fn until_not_busy<T>(mut step: impl FnMut() -> Result<T, Failure>) -> Result<T, Failure> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match step() {
            Err(f) if f.is_busy() && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            outcome => return outcome,
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection, Failure> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Switching to WAL takes an exclusive lock: only a file not in WAL yet needs it.
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    let mode = if mode.eq_ignore_ascii_case("wal") {
        mode
    } else {
        conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Failure::Unsupported(format!(
            "SQLite kept journal mode `{mode}` instead of `wal`; put the state store on a local file system"
        )));
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Why a call failed, before it is told what was being done and where.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file cannot serve as a state store here.
    #[error("{0}")]
    Unsupported(String),
    /// The file's schema is newer than this build knows.
    #[error("{0}")]
    TooNew(String),
    /// A write under a lease epoch older than the pipeline's newest.
    #[error("{0}")]
    Fenced(String),
    /// The caller named a record that does not exist: a bug in the caller.
    #[error("{0}")]
    Missing(String),
    /// A stored value this siphon cannot decode, with what it is.
    #[error("{what} is stored as JSON this siphon cannot read: {source}")]
    Unreadable {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Failure {
    /// Whether SQLite refused for a lock another connection holds, so that the
    /// same step may succeed when run again.
    fn is_busy(&self) -> bool {
        matches!(
            self,
            Failure::Sql(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
        )
    }
}

/// `message` says what failed and names the store's file.
fn failure(message: String, f: Failure) -> Error {
    let kind = match f {
        Failure::Sql(_) | Failure::Io(_) | Failure::Unsupported(_) | Failure::Unreadable { .. } => {
            ErrorKind::State
        }
        Failure::TooNew(_) => ErrorKind::Config,
        Failure::Fenced(_) => ErrorKind::Fenced,
        Failure::Missing(_) => ErrorKind::Internal,
    };
    Error::new(kind, message).source(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_relative_and_absolute_files() {
        assert_eq!(
            path_from_url("sqlite://.siphon/state.db").unwrap(),
            PathBuf::from(".siphon/state.db")
        );
        assert_eq!(
            path_from_url("sqlite:///var/lib/s.db").unwrap(),
            PathBuf::from("/var/lib/s.db")
        );
        assert_eq!(
            path_from_url("sqlite://s.db?mode=rwc").unwrap(),
            PathBuf::from("s.db")
        );
        let empty = path_from_url("sqlite://").unwrap_err();
        assert_eq!(empty.kind(), ErrorKind::Config);
        assert!(empty.to_string().contains("names no file"), "{empty}");
        let other = path_from_url("redis://127.0.0.1/0").unwrap_err();
        assert_eq!(other.kind(), ErrorKind::Config);
        assert!(other.to_string().contains("redis://127.0.0.1/0"), "{other}");
    }

    fn raw(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    #[tokio::test]
    async fn the_file_is_in_wal_mode_at_the_latest_schema() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join(".siphon/state.db");
        let store = SqliteStateStore::open(&path).await.unwrap();
        let conn = raw(&path);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema::latest());
        let timeout = store.call("reading busy_timeout".into(), |c| {
            Ok(c.pragma_query_value(None, "busy_timeout", |r| r.get::<_, i64>(0))?)
        });
        assert_eq!(timeout.await.unwrap(), BUSY_TIMEOUT.as_millis() as i64);
        drop(store);
        // Opening an up-to-date file again changes nothing.
        SqliteStateStore::open(&path).await.unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema::latest());
    }

    #[tokio::test]
    async fn a_file_from_a_newer_siphon_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("state.db");
        raw(&path).pragma_update(None, "user_version", 99).unwrap();
        let err = SqliteStateStore::open(&path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("cannot open state store {}", path.display())),
            "{msg}"
        );
        assert!(msg.contains("schema version is 99"), "{msg}");
    }

    #[tokio::test]
    async fn unreadable_rows_fail_with_what_and_where() {
        use siphon_core::StateStore;
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStateStore::open(&path).await.unwrap();
        raw(&path)
            .execute(
                "INSERT INTO pipelines (name, spec) VALUES ('p', '{\"colour\":1}')",
                [],
            )
            .unwrap();
        let err = store.pipelines().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::State);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot list pipelines in state store {}: ",
                path.display()
            )),
            "{msg}"
        );
        assert!(
            msg.contains("pipeline `p` is stored as JSON this siphon cannot read"),
            "{msg}"
        );
        assert!(msg.contains("unknown field `colour`"), "{msg}");
    }
}
