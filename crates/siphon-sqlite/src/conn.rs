//! One SQLite connection shared by the calls of a handle, run off the async threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use siphon_core::{Error, ErrorKind, Result};

/// The file a `sqlite://` URL names: `sqlite://data/app.db` is relative to the
/// working directory, `sqlite:///var/lib/app.db` is absolute.
pub fn path_from_url(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .ok_or_else(|| Error::config(format!("`{url}` is not a sqlite:// URL")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(Error::config(format!(
            "`{url}` names no file: write sqlite://relative/path.db or sqlite:///absolute/path.db"
        )));
    }
    Ok(PathBuf::from(path))
}

/// How long a statement waits for another connection or process to release
/// a lock on the file before it fails.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub(crate) struct Db {
    path: Arc<PathBuf>,
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    pub(crate) fn open(path: &Path, read_only: bool) -> Result<Db> {
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::new(
                        ErrorKind::Database,
                        format!("cannot create directory {}", dir.display()),
                    )
                    .source(e)
                })?;
            }
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(path, flags).map_err(|e| {
            Error::new(
                ErrorKind::Connection,
                format!("cannot open SQLite database {}", path.display()),
            )
            .source(e)
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| db_err(path, "busy_timeout", e))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Db {
            path: Arc::new(path.to_path_buf()),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| Error::internal("SQLite connection lock poisoned"))?;
            f(&mut c)
        })
        .await
        .map_err(|e| Error::internal("SQLite task failed").source(e))?
    }

    /// Runs `f` with the connection on the calling thread (for short calls made
    /// outside the async runtime).
    pub(crate) fn run_now<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R>) -> Result<R> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| Error::internal("SQLite connection lock poisoned"))?;
        f(&mut c)
    }
}

/// A database error with what was being done and the file it concerns.
pub(crate) fn db_err(path: &Path, doing: &str, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        // Another writer holds the file: retried soon by the retry policy.
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Error::new(
                ErrorKind::Transient,
                format!(
                "{doing} ({}): the file is locked by another connection or process, still after \
                 waiting {} s; run again once it is released",
                path.display(),
                BUSY_TIMEOUT.as_secs()
            ),
            )
            .source(e)
        }
        // A CHECK, NOT NULL or foreign key refused the row: it fails again
        // until someone fixes it.
        Some(rusqlite::ErrorCode::ConstraintViolation) => {
            Error::new(ErrorKind::BadInput, format!("{doing} ({})", path.display())).source(e)
        }
        _ => Error::new(ErrorKind::Database, format!("{doing} ({})", path.display())).source(e),
    }
}

/// `"name"` with inner quotes doubled.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `"a", "b"` for column names.
pub(crate) fn column_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(quote).collect::<Vec<_>>().join(", ")
}

/// `?, ?, ?` for `n` parameters.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_relative_and_absolute_files() {
        assert_eq!(
            path_from_url("sqlite://data/app.db").unwrap(),
            PathBuf::from("data/app.db")
        );
        assert_eq!(
            path_from_url("sqlite:///var/lib/app.db").unwrap(),
            PathBuf::from("/var/lib/app.db")
        );
        assert!(path_from_url("sqlite://").is_err());
        assert!(path_from_url("postgres://x").is_err());
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn a_locked_file_is_retried_soon_and_a_refused_row_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch("CREATE TABLE t (v int CHECK (v < 10)); BEGIN EXCLUSIVE;")
            .unwrap();
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let busy = other.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        let e = db_err(&path, "writing rows", busy);
        assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
        assert_eq!(e.action(), siphon_core::Action::RetrySoon);
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        holder.execute_batch("COMMIT").unwrap();
        let refused = other.execute("INSERT INTO t VALUES (50)", []).unwrap_err();
        let e = db_err(&path, "writing rows", refused);
        assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
        assert_eq!(e.action(), siphon_core::Action::Never);
    }
}
