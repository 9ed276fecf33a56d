//! The target's `public.siphon_checkpoints` table: created when missing, and rows
//! an older siphon keyed by a table's display form moved to [`TableName::key`](siphon_core::TableName::key).

use siphon_core::{LegacyKey, Result};
use tokio_postgres::Client;

use super::CHECKPOINTS;
use crate::conn::pg_err;

/// The `key_version` of a row whose `tbl` is [`TableName::key`](siphon_core::TableName::key). Rows an older
/// siphon wrote have none: their `tbl` is the table's display form, which two
/// tables can share (`"a"."b.c"` and `"a.b"."c"` both read `a.b.c`).
pub(super) const KEY_VERSION: i16 = 2;

/// Creates the table when missing and moves rows without a `key_version` (see
/// [`LegacyKey`]): an ordinary name keeps its row, a name with a quote is
/// renamed, and a key with more than one `.` is removed with a warning, so that
/// no table resumes from another's position (that table is copied again; the
/// sink upserts). Idempotent. Processes that connect at once take turns on an
/// advisory lock for the whole transaction: `CREATE TABLE IF NOT EXISTS` alone
/// fails on the catalog's unique index when two create it together.
pub(super) async fn ensure(client: &mut Client) -> Result<()> {
    let doing = "creating the siphon_checkpoints table";
    let tx = client.transaction().await.map_err(|e| pg_err(e, doing))?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock(hashtext('siphon.{CHECKPOINTS}')); \
         CREATE TABLE IF NOT EXISTS public.{CHECKPOINTS} (pipeline text NOT NULL, tbl text NOT NULL, \
         checkpoint text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), key_version smallint, \
         epoch bigint NOT NULL DEFAULT 0, PRIMARY KEY (pipeline, tbl))"
    ))
    .await
    .map_err(|e| pg_err(e, doing))?;
    // ALTER TABLE waits for every open transaction that wrote a checkpoint:
    // only a table from an older siphon needs it.
    let has_version: bool = tx
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.{CHECKPOINTS}'::regclass \
                 AND attname = 'key_version' AND NOT attisdropped)"
            ),
            &[],
        )
        .await
        .map_err(|e| pg_err(e, doing))?
        .get(0);
    if !has_version {
        tx.batch_execute(&format!(
            "ALTER TABLE public.{CHECKPOINTS} ADD COLUMN key_version smallint"
        ))
        .await
        .map_err(|e| pg_err(e, doing))?;
    }
    // The lease epoch of the checkpoint's writer (fencing), added to a table
    // from a siphon before leases: its rows were written without one.
    let has_epoch: bool = tx
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.{CHECKPOINTS}'::regclass \
                 AND attname = 'epoch' AND NOT attisdropped)"
            ),
            &[],
        )
        .await
        .map_err(|e| pg_err(e, doing))?
        .get(0);
    if !has_epoch {
        tx.batch_execute(&format!(
            "ALTER TABLE public.{CHECKPOINTS} ADD COLUMN epoch bigint NOT NULL DEFAULT 0"
        ))
        .await
        .map_err(|e| pg_err(e, doing))?;
    }
    let doing = "moving siphon_checkpoints rows to unambiguous table keys";
    let legacy = tx
        .query(
            &format!(
                "SELECT pipeline, tbl FROM public.{CHECKPOINTS} WHERE key_version IS NULL FOR UPDATE"
            ),
            &[],
        )
        .await
        .map_err(|e| pg_err(e, doing))?;
    for row in legacy {
        let (pipeline, tbl): (String, String) = (row.get(0), row.get(1));
        match LegacyKey::of(&tbl) {
            LegacyKey::Kept => {
                tx.execute(
                    &format!(
                        "UPDATE public.{CHECKPOINTS} SET key_version = $3 WHERE pipeline = $1 AND tbl = $2"
                    ),
                    &[&pipeline, &tbl, &KEY_VERSION],
                )
                .await
            }
            // A row already under the new key was written since, by a newer
            // siphon: it wins, and the old one goes below.
            LegacyKey::Renamed(key) => {
                tx.execute(
                    &format!(
                        "UPDATE public.{CHECKPOINTS} SET tbl = $3, key_version = $4 \
                         WHERE pipeline = $1 AND tbl = $2 AND NOT EXISTS \
                         (SELECT 1 FROM public.{CHECKPOINTS} WHERE pipeline = $1 AND tbl = $3)"
                    ),
                    &[&pipeline, &tbl, &key, &KEY_VERSION],
                )
                .await
            }
            LegacyKey::Ambiguous => {
                tracing::warn!(
                    pipeline = %pipeline,
                    table = %tbl,
                    "removed the checkpoint of `{tbl}` from public.{CHECKPOINTS}: several tables have \
                     names that read `{tbl}` and any of them may have written it; such a table is copied again"
                );
                Ok(0)
            }
        }
        .map_err(|e| pg_err(e, doing))?;
    }
    tx.execute(
        &format!("DELETE FROM public.{CHECKPOINTS} WHERE key_version IS NULL"),
        &[],
    )
    .await
    .map_err(|e| pg_err(e, doing))?;
    tx.commit().await.map_err(|e| pg_err(e, doing))
}
