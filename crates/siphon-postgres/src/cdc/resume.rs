//! Whether a pipeline's replication slot still holds what came after its
//! checkpoint, and replacing a slot the server invalidated.

use std::time::Duration;

use siphon_core::{Error, ErrorKind, Position, Result, Resume, TableSchema};

use super::{log_name, lsn_of, to_position};
use crate::conn::pg_err;
use crate::pgoutput::Lsn;
use crate::source::PostgresSource;

/// The slot's `confirmed_flush_lsn` and `wal_status` (`lost` once the server
/// removed WAL the slot needed; NULL before PostgreSQL 13, which has no such
/// column), or `None` without a slot.
async fn slot_state(
    source: &PostgresSource,
    slot: &str,
) -> Result<Option<(Option<Lsn>, Option<String>)>> {
    // `to_jsonb` reads `wal_status` where the server has it, NULL elsewhere.
    let row = source
        .client()
        .await?
        .query_opt(
            "SELECT confirmed_flush_lsn::text, to_jsonb(s) ->> 'wal_status' \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| pg_err(e, "reading the replication slot"))?;
    let Some(row) = row else { return Ok(None) };
    let flushed = row
        .get::<_, Option<String>>(0)
        .map(|l| {
            l.parse::<Lsn>()
                .map_err(|e| Error::internal("the server returned a bad LSN").source(e))
        })
        .transpose()?;
    Ok(Some((flushed, row.get(1))))
}

/// [`siphon_core::LogSource::resume`] for PostgreSQL. One slot carries every
/// table of the pipeline, so either all of `tables` can go on or all lost
/// their history: the slot is gone or invalidated, or it confirms a position
/// after the checkpoint (it was dropped and created again, or another reader
/// moved it), so the changes in between are no longer in the log.
pub(super) async fn resume(
    source: &PostgresSource,
    pipeline: &str,
    from: &Position,
    tables: &[TableSchema],
) -> Result<Resume> {
    let slot = log_name(pipeline);
    let at = lsn_of(from)?;
    let (why, resume_at) = match slot_state(source, &slot).await? {
        None => (
            Some(format!(
                "the replication slot {slot} that kept the pipeline's place in the source's log \
                 (at {at}) no longer exists"
            )),
            at,
        ),
        Some((_, Some(status))) if status == "lost" => (
            Some(format!(
                "the source invalidated the replication slot {slot}: it removed WAL the slot still \
                 needed (max_slot_wal_keep_size), so the changes after the pipeline's checkpoint \
                 ({at}) are gone"
            )),
            at,
        ),
        Some((Some(flushed), _)) if flushed > at => (
            Some(format!(
                "the replication slot {slot} starts at {flushed}, after the pipeline's checkpoint \
                 ({at}): the slot was dropped (or invalidated) and created again, or another \
                 reader moved it on, so the changes in between are gone"
            )),
            flushed,
        ),
        Some((None, _)) => {
            return Err(Error::config(format!(
                "replication slot {slot} exists but is not a logical slot; drop it"
            )))
        }
        Some(_) => (None, at),
    };
    let Some(why) = why else {
        return Ok(Resume {
            from: from.clone(),
            lost: Vec::new(),
        });
    };
    let lost = tables
        .iter()
        .map(|t| {
            let e = Error::new(ErrorKind::PositionLost, why.clone()).table(&t.name);
            (t.name.clone(), e)
        })
        .collect();
    Ok(Resume {
        from: to_position(resume_at),
        lost,
    })
}

/// Drops the pipeline's slot when the server invalidated it (`wal_status =
/// 'lost'`): it can never be read again, and [`super::LogSource::prepare_log`]
/// then creates a new one. Which tables lost their history is for
/// [`resume`] to say. A slot in another state is left alone.
pub(super) async fn drop_invalidated(source: &PostgresSource, pipeline: &str) -> Result<()> {
    let slot = log_name(pipeline);
    match slot_state(source, &slot).await? {
        Some((_, Some(status))) if status == "lost" => {}
        _ => return Ok(()),
    }
    tracing::warn!(
        pipeline,
        slot = %slot,
        "the source invalidated the replication slot (it removed WAL the slot still needed, \
         past max_slot_wal_keep_size): dropping it and creating a new one"
    );
    let client = source.client().await?;
    client
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&slot],
        )
        .await
        .map_err(|e| pg_err(e, "stopping the replication session"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        match r {
            Ok(_) => return Ok(()),
            // 55006: the slot is still active while its session ends.
            Err(e)
                if e.code().map(|c| c.code()) == Some("55006")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(pg_err(e, "dropping the invalidated replication slot")),
        }
    }
}
