//! The state store's tables, and the migrations that bring an older file up to date.
//!
//! `PRAGMA user_version` counts the migrations a file has had. Migrations are only
//! ever appended: a released one is never edited, since files out there ran it.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::Failure;

/// One step of the schema: statements, or code where rows must be rewritten.
enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> Result<(), Failure>),
}

use Migration::{Code, Sql};

/// Migration `n` (from 1) takes a file from `user_version` n − 1 to n.
const MIGRATIONS: &[Migration] = &[
    // 1: the first schema. Tables are named by `TableName`'s Display (`schema.table`
    // or a bare name), timestamps are RFC 3339 text in UTC.
    Sql(r#"
    CREATE TABLE connections (
        name TEXT PRIMARY KEY NOT NULL,
        url  TEXT NOT NULL
    );
    CREATE TABLE pipelines (
        name TEXT PRIMARY KEY NOT NULL,
        spec TEXT NOT NULL
    );
    CREATE TABLE flags (
        pipeline   TEXT NOT NULL,
        table_name TEXT NOT NULL,
        flag       TEXT NOT NULL,
        value      INTEGER NOT NULL,
        PRIMARY KEY (pipeline, table_name, flag)
    );
    CREATE TABLE stream_states (
        pipeline   TEXT NOT NULL,
        table_name TEXT NOT NULL,
        state      TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, table_name)
    );
    CREATE TABLE checkpoints (
        pipeline   TEXT NOT NULL,
        table_name TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, table_name)
    );
    CREATE TABLE executions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline    TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        status      TEXT NOT NULL,
        error       TEXT
    );
    CREATE INDEX executions_by_pipeline ON executions (pipeline, id);
    CREATE TABLE execution_tables (
        execution   INTEGER NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        table_name  TEXT NOT NULL,
        mode        TEXT NOT NULL,
        rows_read   INTEGER NOT NULL,
        inserted    INTEGER NOT NULL,
        updated     INTEGER NOT NULL,
        deleted     INTEGER NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        status      TEXT NOT NULL,
        error       TEXT,
        PRIMARY KEY (execution, table_name)
    );
    "#),
    // 2: the log a cdc pipeline's source kept, recorded with each execution.
    Sql(r#"
    ALTER TABLE executions ADD COLUMN retained_log_bytes INTEGER;
    "#),
    // 3: rows of the target's previous copy a full load replaced (emptied or
    // swapped out), counted apart from rows deleted one by one.
    Sql(r#"
    ALTER TABLE execution_tables ADD COLUMN replaced INTEGER NOT NULL DEFAULT 0;
    "#),
    // 4: tables are keyed by `TableName::key`, which no two tables share.
    Code(super::keys::migrate),
    // 5: pipeline leases (a released lease keeps its row, without a holder, so
    // that epochs are never reused) and merge conflicts.
    Sql(r#"
    CREATE TABLE leases (
        pipeline   TEXT PRIMARY KEY NOT NULL,
        holder     TEXT NOT NULL,
        epoch      INTEGER NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE conflicts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline    TEXT NOT NULL,
        table_name  TEXT NOT NULL,
        key         TEXT NOT NULL,
        source_row  TEXT,
        target_row  TEXT,
        detected_at TEXT NOT NULL,
        resolved_at TEXT,
        resolution  TEXT
    );
    CREATE INDEX conflicts_by_pipeline ON conflicts (pipeline, id);
    "#),
    // 6: the row counts a `row_count` table's pass compared (the target's is
    // NULL when it held no complete copy; both are NULL for other modes).
    Sql(r#"
    ALTER TABLE execution_tables ADD COLUMN count_source INTEGER;
    ALTER TABLE execution_tables ADD COLUMN count_target INTEGER;
    "#),
    // 7: the bytes of row data a table stream's run read from the source
    // (`TableStats::bytes`); runs recorded before count 0.
    Sql(r#"
    ALTER TABLE execution_tables ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
    "#),
    // 8: beside each checkpoint, when the source committed the newest logged
    // change it covers and when the target committed it (`CommitLag`), for
    // the replication lag `status` shows.
    Sql(r#"
    CREATE TABLE commit_lags (
        pipeline         TEXT NOT NULL,
        table_name       TEXT NOT NULL,
        source_commit_at TEXT NOT NULL,
        applied_at       TEXT NOT NULL,
        PRIMARY KEY (pipeline, table_name)
    );
    "#),
];

/// Brings the file's schema up to date. Safe when several processes open the same
/// file at once: the check and the migrations run under the write lock, so exactly
/// one of them migrates and the others see its result.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), Failure> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Brings the file's schema to version `target` (at most the latest), as
/// [`migrate`] does.
pub(super) fn migrate_to(conn: &mut Connection, target: usize) -> Result<(), Failure> {
    let latest = MIGRATIONS.len() as i64;
    let target = target.min(MIGRATIONS.len());
    // Up to date is the common case; checking it first needs no write lock.
    if user_version(conn)? == latest {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version = user_version(&tx)?;
    if version > latest {
        return Err(Failure::TooNew(format!(
            "its schema version is {version}, and this siphon knows versions up to {latest}: \
             upgrade siphon, or point --state at another file"
        )));
    }
    for (done, step) in MIGRATIONS[..target]
        .iter()
        .enumerate()
        .skip(version.max(0) as usize)
    {
        match step {
            Sql(sql) => tx.execute_batch(sql)?,
            Code(run) => run(&tx)?,
        }
        tx.pragma_update(None, "user_version", done as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64, Failure> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// The schema version this build writes.
#[cfg(test)]
pub(super) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}
