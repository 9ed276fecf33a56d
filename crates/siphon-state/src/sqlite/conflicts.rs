//! Conflict records on SQLite: rows changed on both sides of a `merge`
//! pipeline, kept until a person or a policy resolves them.

use chrono::Utc;
use rusqlite::{params, Connection, Row};
use siphon_core::{Conflict, Side, TableName};

use super::sql::{Json, Stamp};
use super::Failure;

/// See [`siphon_core::StateStore::record_conflict`].
pub(super) fn record(conn: &mut Connection, c: &Conflict) -> Result<u64, Failure> {
    let id: i64 = conn.query_row(
        "INSERT INTO conflicts (pipeline, table_name, key, source_row, target_row, detected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![
            c.pipeline,
            c.table.key(),
            Json(&c.key),
            c.source_row.as_ref().map(Json),
            c.target_row.as_ref().map(Json),
            Stamp(c.detected_at),
        ],
        |r| r.get(0),
    )?;
    Ok(id.max(0) as u64)
}

/// See [`siphon_core::StateStore::conflicts`].
pub(super) fn list(
    conn: &mut Connection,
    pipeline: Option<&str>,
    unresolved_only: bool,
) -> Result<Vec<Conflict>, Failure> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, pipeline, table_name, key, source_row, target_row, detected_at,
             resolved_at, resolution
         FROM conflicts
         WHERE (?1 IS NULL OR pipeline = ?1) AND (NOT ?2 OR resolved_at IS NULL)
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![pipeline, unresolved_only], conflict_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// See [`siphon_core::StateStore::resolve_conflict`].
pub(super) fn resolve(conn: &mut Connection, id: u64, keep: Side) -> Result<bool, Failure> {
    let changed = conn.execute(
        "UPDATE conflicts SET resolved_at = ?2, resolution = ?3
         WHERE id = ?1 AND resolved_at IS NULL",
        params![
            i64::try_from(id).unwrap_or(i64::MAX),
            Stamp(Utc::now()),
            keep.as_str()
        ],
    )?;
    Ok(changed > 0)
}

fn conflict_row(r: &Row<'_>) -> rusqlite::Result<Conflict> {
    let table: String = r.get(2)?;
    let resolution: Option<String> = r.get(8)?;
    Ok(Conflict {
        id: r.get::<_, i64>(0)?.max(0) as u64,
        pipeline: r.get(1)?,
        table: TableName::from_key(&table).unwrap_or_else(|| TableName::parse(&table)),
        key: r.get::<_, Json<serde_json::Value>>(3)?.0,
        source_row: r.get::<_, Option<Json<serde_json::Value>>>(4)?.map(|j| j.0),
        target_row: r.get::<_, Option<Json<serde_json::Value>>>(5)?.map(|j| j.0),
        detected_at: r.get::<_, Stamp>(6)?.0,
        resolved_at: r.get::<_, Option<Stamp>>(7)?.map(|s| s.0),
        resolution: resolution.as_deref().and_then(Side::parse),
    })
}
