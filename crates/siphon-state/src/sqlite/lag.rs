//! Commit lags on SQLite: when the source committed the newest logged change
//! a table stream's checkpoint covers, and when the target committed it.

use rusqlite::{params, Connection, TransactionBehavior};
use siphon_core::{CommitLag, StreamId};

use super::sql::Stamp;
use super::Failure;

/// See [`siphon_core::StateStore::record_commit_lags`].
pub(super) fn record(conn: &mut Connection, lags: &[(StreamId, CommitLag)]) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO commit_lags (pipeline, table_name, source_commit_at, applied_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pipeline, table_name) DO UPDATE SET
                 source_commit_at = excluded.source_commit_at,
                 applied_at = excluded.applied_at",
        )?;
        for (stream, lag) in lags {
            stmt.execute(params![
                stream.pipeline,
                stream.table.key(),
                Stamp(lag.source_commit_at),
                Stamp(lag.applied_at)
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// See [`siphon_core::StateStore::commit_lags`]; ordered by pipeline, then table.
pub(super) fn list(conn: &mut Connection) -> Result<Vec<(StreamId, CommitLag)>, Failure> {
    let mut stmt = conn.prepare_cached(
        "SELECT pipeline, table_name, source_commit_at, applied_at FROM commit_lags
         ORDER BY pipeline, table_name",
    )?;
    let rows = stmt.query_map([], |r| {
        let stream = StreamId {
            pipeline: r.get(0)?,
            table: super::store::table_of(&r.get::<_, String>(1)?),
        };
        let lag = CommitLag {
            source_commit_at: r.get::<_, Stamp>(2)?.0,
            applied_at: r.get::<_, Stamp>(3)?.0,
        };
        Ok((stream, lag))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Forgets the lag kept with a stream's checkpoint, as the checkpoint goes.
pub(super) fn remove(conn: &Connection, pipeline: &str, table: &str) -> Result<(), Failure> {
    conn.execute(
        "DELETE FROM commit_lags WHERE pipeline = ?1 AND table_name = ?2",
        params![pipeline, table],
    )?;
    Ok(())
}
