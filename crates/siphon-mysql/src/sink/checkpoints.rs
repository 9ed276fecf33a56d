//! The target's `siphon_checkpoints` table: one row per table stream, written
//! in the same transaction as the rows it covers, carrying the lease epoch of
//! its writer so that a worker that lost its lease is refused (fencing).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::{Checkpoint, Error, ErrorKind, Result, StreamId};

use crate::conn::{my_err, qualified, Flavor, Server};

/// The checkpoint table's name in the target database.
pub(crate) const CHECKPOINTS: &str = "siphon_checkpoints";

fn table(database: &str) -> String {
    qualified(Some(database), CHECKPOINTS)
}

/// Creates the table when missing. Its key compares names byte for byte,
/// trailing spaces included, so no two tables share a row.
pub(super) async fn ensure(conn: &mut Conn, database: &str, server: &Server) -> Result<()> {
    let collation = match server.flavor {
        Flavor::MariaDb => "utf8mb4_nopad_bin",
        Flavor::MySql => "utf8mb4_0900_bin",
    };
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {} (pipeline varchar(255) NOT NULL, tbl varchar(512) NOT NULL, \
         checkpoint longtext NOT NULL, updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
         epoch bigint unsigned NOT NULL DEFAULT 0, PRIMARY KEY (pipeline, tbl)) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}",
        table(database)
    ))
    .await
    .map_err(|e| my_err(e, "creating the siphon_checkpoints table in the target database"))
}

/// The stream's checkpoint.
pub(super) async fn read(
    conn: &mut Conn,
    database: &str,
    stream: &StreamId,
) -> Result<Option<Checkpoint>> {
    let text: Option<String> = conn
        .exec_first(
            format!(
                "SELECT checkpoint FROM {} WHERE pipeline = ? AND tbl = ?",
                table(database)
            ),
            (&stream.pipeline, stream.table.key()),
        )
        .await
        .map_err(|e| my_err(e, "reading a checkpoint"))?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            Error::bad_input("the checkpoint row is unreadable; force a full re-sync")
                .table(&stream.table)
                .source(e)
        })
    })
    .transpose()
}

/// Forgets the stream's checkpoint.
pub(super) async fn remove(conn: &mut Conn, database: &str, stream: &StreamId) -> Result<()> {
    conn.exec_drop(
        format!(
            "DELETE FROM {} WHERE pipeline = ? AND tbl = ?",
            table(database)
        ),
        (&stream.pipeline, stream.table.key()),
    )
    .await
    .map_err(|e| my_err(e, "removing a checkpoint"))
}

/// Raises the epoch of every checkpoint of `pipeline` to `epoch`, never
/// lowering one. The UPDATE waits for a transaction that holds one of these
/// rows ([`claim`]) and raises it after, so that writer's next claim fails.
pub(super) async fn fence(
    conn: &mut Conn,
    database: &str,
    pipeline: &str,
    epoch: u64,
) -> Result<()> {
    conn.exec_drop(
        format!(
            "UPDATE {} SET epoch = ? WHERE pipeline = ? AND epoch < ?",
            table(database)
        ),
        (epoch, pipeline, epoch),
    )
    .await
    .map_err(|e| my_err(e, "raising the lease epoch of the pipeline's checkpoints"))
}

/// Locks the stream's checkpoint row for the open transaction, and fails
/// with [`ErrorKind::Fenced`] when it carries a newer epoch than `cp`: the
/// caller then rolls back before writing anything. Called first in every
/// writing transaction, so a fence waits for it to end.
pub(super) async fn claim(conn: &mut Conn, database: &str, cp: &Checkpoint) -> Result<()> {
    let stored: Option<u64> = conn
        .exec_first(
            format!(
                "SELECT epoch FROM {} WHERE pipeline = ? AND tbl = ? FOR UPDATE",
                table(database)
            ),
            (&cp.stream.pipeline, cp.stream.table.key()),
        )
        .await
        .map_err(|e| my_err(e, "reading the checkpoint's epoch"))?;
    match stored {
        Some(stored) if stored > cp.epoch => Err(fenced(cp, stored)),
        _ => Ok(()),
    }
}

/// Writes the checkpoint in the open transaction, after [`claim`].
pub(super) async fn write(conn: &mut Conn, database: &str, cp: &Checkpoint) -> Result<()> {
    let json = serde_json::to_string(cp)
        .map_err(|e| Error::internal("encoding a checkpoint").source(e))?;
    conn.exec_drop(
        format!(
            "INSERT INTO {} (pipeline, tbl, checkpoint, updated_at, epoch) \
             VALUES (?, ?, ?, CURRENT_TIMESTAMP(6), ?) ON DUPLICATE KEY UPDATE \
             checkpoint = VALUES(checkpoint), updated_at = VALUES(updated_at), epoch = VALUES(epoch)",
            table(database)
        ),
        (&cp.stream.pipeline, cp.stream.table.key(), json, cp.epoch),
    )
    .await
    .map_err(|e| my_err(e, "writing the checkpoint").table(&cp.stream.table))
}

/// A checkpoint write refused because the target holds one of a newer lease.
fn fenced(cp: &Checkpoint, stored: u64) -> Error {
    Error::new(
        ErrorKind::Fenced,
        format!(
            "pipeline {}: the target's checkpoint was written under lease epoch {stored}, newer \
             than this worker's {}: another worker holds the pipeline's lease now, so this \
             worker's batch was rolled back and it stops",
            cp.stream.pipeline, cp.epoch
        ),
    )
    .table(&cp.stream.table)
}
