//! WAL checkpoints of a sink's file, run on a thread of their own.
//!
//! Left to itself, SQLite checkpoints inside the commit that takes the WAL past
//! 1000 pages: the writer stops to copy those pages into the database file and to
//! wait for the disk. A full load writes every page twice (into the WAL, then into
//! the file), so those stops were a large share of its time, and most of it when
//! the disk is busy. Here the sink's connection does not checkpoint; after each
//! commit it wakes a second connection that copies the WAL into the file while the
//! writer goes on. SQLite's WAL mode allows this: a PASSIVE checkpoint blocks
//! neither writers nor readers, and what is durable when is unchanged (a commit is
//! in the WAL, a checkpoint only moves it).
//!
//! The WAL stays bounded: when the last copy found more than [`BEHIND_PAGES`] in
//! the WAL, the writer waits after its commit until a copy that started after that
//! commit has finished, as it would have waited for its own checkpoint. Should the
//! second connection fail, the sink's connection checkpoints itself again.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// WAL pages past which the writer waits for the copier (16 MiB of 4 KiB pages).
const BEHIND_PAGES: i64 = 4000;

/// SQLite's own automatic checkpoint threshold, restored when the copier fails.
const SQLITE_AUTOCHECKPOINT: i64 = 1000;

#[derive(Debug, Default)]
struct State {
    /// A commit happened that no started copy covers yet.
    wanted: bool,
    /// Copies started and copies finished.
    started: u64,
    finished: u64,
    /// Pages in the WAL when the last copy ended.
    wal_pages: i64,
    /// The copier could not checkpoint and has stopped.
    failed: bool,
    /// The sink's connection checkpoints itself again.
    fallen_back: bool,
    /// The sink is being dropped: the copier ends.
    closing: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // The state is a few counters, consistent after any panic: keep going.
    shared.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// The copier of one sink's file.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the copier's connection to `path` and turns off the automatic
    /// checkpoints of `conn`, the sink's connection. `None`, with `conn`
    /// unchanged, when the copier cannot start: SQLite then checkpoints as usual.
    pub(crate) fn start(conn: &Connection, path: &Path) -> Option<Checkpointer> {
        let copier = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        copier.busy_timeout(Duration::from_secs(30)).ok()?;
        let shared: Shared = Arc::default();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("siphon-sqlite-wal".into())
            .spawn(move || copy_loop(&copier, &theirs))
            .ok()?;
        let mut started = Checkpointer {
            shared,
            thread: Some(thread),
        };
        if conn.pragma_update(None, "wal_autocheckpoint", 0).is_err() {
            started.stop();
            return None;
        }
        Some(started)
    }

    /// Tells the copier that `conn` committed, and waits for it when the WAL has
    /// grown too long. Call it after each commit on the sink's connection, off
    /// the async threads.
    pub(crate) fn committed(&self, conn: &Connection) {
        let mut st = lock(&self.shared);
        if st.failed {
            if !st.fallen_back {
                st.fallen_back = true;
                drop(st);
                // If even this fails the WAL grows until the connection closes,
                // which checkpoints it; nothing is lost either way.
                let _ = conn.pragma_update(None, "wal_autocheckpoint", SQLITE_AUTOCHECKPOINT);
            }
            return;
        }
        st.wanted = true;
        self.shared.1.notify_all();
        if st.wal_pages > BEHIND_PAGES {
            // The next copy to start covers this commit.
            let covering = st.started + 1;
            while st.finished < covering && !st.failed && !st.closing {
                st = self.shared.1.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    fn stop(&mut self) {
        lock(&self.shared).closing = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            // At most one copy is under way; the copier's connection closes after
            // it, and the last connection to close folds what is left into the file.
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn copy_loop(copier: &Connection, shared: &Shared) {
    loop {
        {
            let mut st = lock(shared);
            while !st.wanted && !st.closing {
                st = shared.1.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.closing {
                return;
            }
            st.wanted = false;
            st.started += 1;
        }
        let done = copier.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
        let mut st = lock(shared);
        st.finished += 1;
        match done {
            Ok(pages) => st.wal_pages = pages,
            Err(_) => st.failed = true,
        }
        shared.1.notify_all();
        if st.failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_pages(conn: &Connection) -> i64 {
        let len = |suffix: &str| {
            let db: String = conn
                .query_row("PRAGMA database_list", [], |r| r.get(2))
                .unwrap();
            std::fs::metadata(format!("{db}{suffix}")).map_or(0, |m| m.len() as i64)
        };
        len("-wal") / 4096
    }

    #[test]
    fn the_wal_stays_bounded_and_every_commit_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT)")
            .unwrap();
        let copier = Checkpointer::start(&conn, &path).unwrap();
        let pad = "x".repeat(3000);
        for chunk in 0..400 {
            let tx = conn.transaction().unwrap();
            for i in 0..50 {
                tx.execute("INSERT INTO t VALUES (?1, ?2)", (chunk * 50 + i, &pad))
                    .unwrap();
            }
            tx.commit().unwrap();
            copier.committed(&conn);
        }
        // 20,000 pages were written; the WAL never held more than the bound
        // plus the commits made while the last copy ran.
        assert!(wal_pages(&conn) < 3 * BEHIND_PAGES, "{}", wal_pages(&conn));
        drop(copier);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20_000);
        drop(conn);
        let fresh = Connection::open(&path).unwrap();
        let n: i64 = fresh
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20_000);
    }

    #[test]
    fn a_failed_copier_hands_checkpoints_back_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        let copier = Checkpointer::start(&conn, &path).unwrap();
        let auto = |c: &Connection| -> i64 {
            c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(auto(&conn), 0);
        lock(&copier.shared).failed = true;
        copier.committed(&conn);
        assert_eq!(auto(&conn), SQLITE_AUTOCHECKPOINT);
    }
}
