//! The PostgreSQL store's tables, and the versioned migrations that create
//! and upgrade them. `siphon_migrations` lists the versions a schema has had;
//! migrations are only ever appended, never edited once released.
//!
//! Tables the original sync service's reports read, kept with its names:
//! - `sync_configurations`: one row per pipeline (a "sync"): its source and
//!   target connections, table selection, strategy (mode), conflict
//!   resolution, batch size, interval, and siphon's full spec (`spec`).
//! - `sync_executions`: one row per run, with its status, times, error and
//!   the rows it processed, inserted, updated and deleted and the bytes it
//!   read (`bytes_processed`) over all tables; `sync_execution_tables` holds
//!   each table's part.
//! - `sync_change_tracking`: the checkpoint of each table of each pipeline:
//!   its phase, its position and the lease epoch that wrote it.
//! - `sync_conflicts`: rows changed on both sides of a `merge` pipeline,
//!   `pending` until resolved.
//!
//! siphon's own: `connections`, `table_flags`, `stream_states`, `leases`,
//! `commit_lags`.

use tokio_postgres::Client;

use super::Step;
use siphon_core::ErrorKind;

/// Migration `n` (from 1) takes a schema from version n − 1 to n.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE connections (
        name text PRIMARY KEY,
        url  text NOT NULL
    );
    CREATE TABLE sync_configurations (
        id                    bigserial PRIMARY KEY,
        name                  text NOT NULL UNIQUE,
        source_connection     text NOT NULL,
        target_connection     text NOT NULL,
        source_table          text NOT NULL,
        target_table          text NOT NULL,
        sync_strategy         text NOT NULL,
        conflict_resolution   text NOT NULL,
        batch_size            integer NOT NULL,
        sync_interval_seconds integer,
        schedule              text NOT NULL,
        enabled               boolean NOT NULL DEFAULT true,
        spec                  jsonb NOT NULL,
        created_at            timestamptz NOT NULL DEFAULT now(),
        updated_at            timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE table_flags (
        pipeline  text NOT NULL,
        table_key text NOT NULL,
        flag      text NOT NULL,
        value     boolean NOT NULL,
        PRIMARY KEY (pipeline, table_key, flag)
    );
    CREATE TABLE stream_states (
        pipeline   text NOT NULL,
        table_key  text NOT NULL,
        table_name text NOT NULL,
        state      jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (pipeline, table_key)
    );
    CREATE TABLE sync_change_tracking (
        sync_name          text NOT NULL,
        table_key          text NOT NULL,
        table_name         text NOT NULL,
        phase              text NOT NULL,
        last_sync_position jsonb,
        lease_epoch        bigint NOT NULL,
        checkpoint         jsonb NOT NULL,
        last_synced_at     timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (sync_name, table_key)
    );
    CREATE TABLE sync_executions (
        id                    bigserial PRIMARY KEY,
        sync_configuration_id bigint,
        sync_name             text NOT NULL,
        status                text NOT NULL,
        started_at            timestamptz NOT NULL,
        completed_at          timestamptz,
        records_processed     bigint NOT NULL DEFAULT 0,
        records_inserted      bigint NOT NULL DEFAULT 0,
        records_updated       bigint NOT NULL DEFAULT 0,
        records_deleted       bigint NOT NULL DEFAULT 0,
        error_message         text,
        retained_log_bytes    bigint
    );
    CREATE INDEX sync_executions_by_name ON sync_executions (sync_name, id);
    CREATE TABLE sync_execution_tables (
        execution_id      bigint NOT NULL REFERENCES sync_executions (id) ON DELETE CASCADE,
        table_key         text NOT NULL,
        table_name        text NOT NULL,
        sync_strategy     text NOT NULL,
        records_processed bigint NOT NULL,
        records_inserted  bigint NOT NULL,
        records_updated   bigint NOT NULL,
        records_deleted   bigint NOT NULL,
        records_replaced  bigint NOT NULL,
        status            text NOT NULL,
        error_message     text,
        started_at        timestamptz NOT NULL,
        completed_at      timestamptz,
        stats             jsonb NOT NULL,
        PRIMARY KEY (execution_id, table_key)
    );
    CREATE TABLE sync_conflicts (
        id                    bigserial PRIMARY KEY,
        sync_configuration_id bigint,
        sync_name             text NOT NULL,
        table_key             text NOT NULL,
        table_name            text NOT NULL,
        record_key            jsonb NOT NULL,
        source_data           jsonb,
        target_data           jsonb,
        status                text NOT NULL DEFAULT 'pending',
        resolution            text,
        detected_at           timestamptz NOT NULL,
        resolved_at           timestamptz
    );
    CREATE INDEX sync_conflicts_by_name ON sync_conflicts (sync_name, id);
    CREATE TABLE leases (
        pipeline   text PRIMARY KEY,
        holder     text NOT NULL,
        epoch      bigint NOT NULL,
        expires_at timestamptz NOT NULL
    );
    "#,
    // 2: the bytes of row data each table stream's run read from the source
    // (`TableStats::bytes`), and their sum over a run's tables; runs recorded
    // before count 0.
    r#"
    ALTER TABLE sync_execution_tables ADD COLUMN bytes_processed bigint NOT NULL DEFAULT 0;
    ALTER TABLE sync_executions ADD COLUMN bytes_processed bigint NOT NULL DEFAULT 0;
    "#,
    // 3: beside each checkpoint, when the source committed the newest logged
    // change it covers and when the target committed it (`CommitLag`), for
    // the replication lag `status` shows.
    r#"
    CREATE TABLE commit_lags (
        pipeline         text NOT NULL,
        table_key        text NOT NULL,
        table_name       text NOT NULL,
        source_commit_at timestamptz NOT NULL,
        applied_at       timestamptz NOT NULL,
        PRIMARY KEY (pipeline, table_key)
    );
    "#,
];

/// The schema version this build writes.
pub(super) fn latest() -> i32 {
    MIGRATIONS.len() as i32
}

/// Creates the schema when missing and runs the migrations it has not had,
/// in one transaction under an advisory lock, so that of several processes
/// opening the store at once exactly one migrates and the others see its
/// result.
pub(super) async fn migrate(client: &mut Client, schema: &str, quoted: &str) -> Result<(), Step> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('siphon-state'), hashtext($1))",
        &[&schema],
    )
    .await?;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {quoted}"))
            .await
            .map_err(|e| match e.code() {
                Some(c) if *c == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => {
                    Step::Refused(
                        ErrorKind::Privilege,
                        format!(
                            "the user may not create schema {quoted}: GRANT CREATE ON DATABASE to it, \
                             or create the schema for it (CREATE SCHEMA {quoted} AUTHORIZATION user)"
                        ),
                    )
                }
                _ => Step::Db(e),
            })?;
    }
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO {quoted};
         CREATE TABLE IF NOT EXISTS siphon_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    let version: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM siphon_migrations",
            &[],
        )
        .await?
        .get(0);
    if version > latest() {
        return Err(Step::Refused(
            ErrorKind::Config,
            format!(
                "its schema version is {version}, and this siphon knows versions up to {}: \
                 upgrade siphon, or name another schema with schema=NAME",
                latest()
            ),
        ));
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(sql).await?;
        let applied = done as i32 + 1;
        tx.execute(
            "INSERT INTO siphon_migrations (version) VALUES ($1)",
            &[&applied],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
