//! Pipeline leases on SQLite: who runs a pipeline, until when, and with which
//! epoch. Each step is one `BEGIN IMMEDIATE` transaction, so processes sharing
//! the file take turns and no two of them are granted one lease.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use siphon_core::Lease;

use super::sql::Stamp;
use super::Failure;

/// `now + ttl`, saturating at the latest instant chrono can hold.
fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The stored lease row of `pipeline`, live or not.
fn stored(conn: &Connection, pipeline: &str) -> Result<Option<Lease>, Failure> {
    let found = conn
        .query_row(
            "SELECT holder, epoch, expires_at FROM leases WHERE pipeline = ?1",
            [pipeline],
            |r| {
                Ok(Lease {
                    pipeline: pipeline.to_owned(),
                    holder: r.get(0)?,
                    epoch: r.get::<_, i64>(1)?.max(0) as u64,
                    expires_at: r.get::<_, Stamp>(2)?.0,
                })
            },
        )
        .optional()?;
    Ok(found)
}

fn write(conn: &Connection, lease: &Lease) -> Result<(), Failure> {
    conn.execute(
        "INSERT INTO leases (pipeline, holder, epoch, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (pipeline) DO UPDATE SET holder = excluded.holder,
             epoch = excluded.epoch, expires_at = excluded.expires_at",
        params![
            lease.pipeline,
            lease.holder,
            i64::try_from(lease.epoch).unwrap_or(i64::MAX),
            Stamp(lease.expires_at)
        ],
    )?;
    Ok(())
}

/// See [`siphon_core::StateStore::acquire_lease`].
pub(super) fn acquire(
    conn: &mut Connection,
    pipeline: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Lease>, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = Utc::now();
    let epoch = match stored(&tx, pipeline)? {
        Some(l) if l.expires_at > now && l.holder != holder => return Ok(None),
        Some(l) if l.expires_at > now => l.epoch,
        // Free, expired or released: a new holding, so a new epoch.
        Some(l) => l.epoch + 1,
        None => 1,
    };
    let lease = Lease {
        pipeline: pipeline.to_owned(),
        holder: holder.to_owned(),
        epoch,
        expires_at: until(now, ttl),
    };
    write(&tx, &lease)?;
    tx.commit()?;
    Ok(Some(lease))
}

/// See [`siphon_core::StateStore::renew_lease`].
pub(super) fn renew(
    conn: &mut Connection,
    lease: &Lease,
    ttl: Duration,
) -> Result<Option<Lease>, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = Utc::now();
    match stored(&tx, &lease.pipeline)? {
        // Past its expiry, a lease nobody took is still this holder's; a
        // released one has no holder.
        Some(l) if l.holder == lease.holder && l.epoch == lease.epoch => {
            let renewed = Lease {
                expires_at: until(now, ttl),
                ..l
            };
            write(&tx, &renewed)?;
            tx.commit()?;
            Ok(Some(renewed))
        }
        _ => Ok(None),
    }
}

/// See [`siphon_core::StateStore::release_lease`]. The row stays, without a
/// holder and expired, so that the next holder's epoch is greater.
pub(super) fn release(conn: &mut Connection, lease: &Lease) -> Result<(), Failure> {
    let now = Utc::now();
    conn.execute(
        "UPDATE leases SET holder = '', expires_at = ?4
         WHERE pipeline = ?1 AND holder = ?2 AND epoch = ?3",
        params![
            lease.pipeline,
            lease.holder,
            i64::try_from(lease.epoch).unwrap_or(i64::MAX),
            Stamp(now)
        ],
    )?;
    Ok(())
}

/// See [`siphon_core::StateStore::lease`].
pub(super) fn live(conn: &mut Connection, pipeline: &str) -> Result<Option<Lease>, Failure> {
    Ok(stored(conn, pipeline)?.filter(|l| l.expires_at > Utc::now()))
}
