//! Moving rows keyed by a table's display form (`schema.table`, which two tables
//! can share) to [`TableName::key`], once, as schema migration 4.

use rusqlite::types::Value;
use rusqlite::{params, Transaction};
use siphon_core::{LegacyKey, TableName};

use super::Failure;

/// Rewrites every stored table key to [`TableName::key`]. A key whose parts hold
/// no `.` and no `"` is already one and stays. A key with more than one `.` may
/// have been written by any of several tables:
/// - its checkpoint copy and its stream state go, so that no table resumes from
///   another's position (the table is copied again; the sink upserts);
/// - its flags are set on every table that may have written it, as every such
///   table read them before;
/// - its execution history stays as written, for people to read.
///
/// Each key that goes is named in a warning.
pub(super) fn migrate(tx: &Transaction<'_>) -> Result<(), Failure> {
    for (table, owner) in [
        ("flags", "pipeline"),
        ("stream_states", "pipeline"),
        ("checkpoints", "pipeline"),
        ("execution_tables", "execution"),
    ] {
        let stored: Vec<(Value, String)> = {
            let mut stmt =
                tx.prepare(&format!("SELECT DISTINCT {owner}, table_name FROM {table}"))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (of, name) in stored {
            match LegacyKey::of(&name) {
                LegacyKey::Kept => {}
                LegacyKey::Renamed(key) => {
                    tx.execute(
                        &format!(
                            "UPDATE OR REPLACE {table} SET table_name = ?1
                             WHERE {owner} = ?2 AND table_name = ?3"
                        ),
                        params![key, of, name],
                    )?;
                }
                LegacyKey::Ambiguous if table == "execution_tables" => {}
                LegacyKey::Ambiguous if table == "flags" => {
                    for reading in readings(&name) {
                        tx.execute(
                            "INSERT OR IGNORE INTO flags (pipeline, table_name, flag, value)
                             SELECT pipeline, ?1, flag, value FROM flags
                             WHERE pipeline = ?2 AND table_name = ?3",
                            params![reading.key(), of, name],
                        )?;
                    }
                    tx.execute(
                        "DELETE FROM flags WHERE pipeline = ?1 AND table_name = ?2",
                        params![of, name],
                    )?;
                    tracing::warn!(
                        pipeline = %text(&of),
                        table = %name,
                        "the flags of `{name}` now apply to each table whose name reads `{name}`, \
                         as they did before; set them again with `siphon sync enable|disable|resync --table`"
                    );
                }
                LegacyKey::Ambiguous => {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE {owner} = ?1 AND table_name = ?2"),
                        params![of, name],
                    )?;
                    let what = if table == "checkpoints" {
                        "checkpoint copy"
                    } else {
                        "stream state"
                    };
                    tracing::warn!(
                        pipeline = %text(&of),
                        table = %name,
                        "removed the {what} stored for `{name}`: several tables have names that read \
                         `{name}`, and any of them may have written it; such a table is copied again"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Every name whose display form is `stored`: a bare name, or a schema and a
/// name split at any `.`.
fn readings(stored: &str) -> Vec<TableName> {
    let mut names = vec![TableName::new(None, stored)];
    names.extend(
        stored
            .match_indices('.')
            .map(|(i, _)| TableName::new(Some(&stored[..i]), &stored[i + 1..])),
    );
    names
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStateStore;
    use siphon_core::{Checkpoint, Flag, Phase, StateStore, StreamId, StreamState};

    fn checkpoint(table: TableName) -> String {
        serde_json::to_string(&Checkpoint {
            stream: StreamId::new("p", &table),
            epoch: 0,
            phase: Phase::Streaming { position: None },
        })
        .unwrap()
    }

    /// A file written by a siphon that keyed tables by display form, with rows
    /// for an ordinary name, a name with a quote and a name two tables share.
    #[tokio::test]
    async fn display_keys_of_an_older_file_are_kept_renamed_or_dropped() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            super::super::schema::migrate_to(&mut conn, 3).unwrap();
            let quoted = TableName::new(Some("x\"y"), "z");
            let shared = TableName::new(Some("a.b"), "c");
            for (name, table) in [
                ("public.orders", TableName::new(Some("public"), "orders")),
                ("x\"y.z", quoted),
                ("a.b.c", shared),
            ] {
                conn.execute("INSERT INTO flags VALUES ('p', ?1, 'enabled', 0)", [name])
                    .unwrap();
                conn.execute(
                    "INSERT INTO stream_states VALUES ('p', ?1, '{\"state\":\"idle\"}', '2026-01-01T00:00:00Z')",
                    [name],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO checkpoints VALUES ('p', ?1, ?2, '2026-01-01T00:00:00Z')",
                    [name, &checkpoint(table)],
                )
                .unwrap();
            }
        }
        let store = SqliteStateStore::open(&path).await.unwrap();
        let stream =
            |schema: &str, name: &str| StreamId::new("p", &TableName::new(Some(schema), name));
        let (orders, quoted) = (stream("public", "orders"), stream("x\"y", "z"));
        let (abc, a_bc) = (stream("a.b", "c"), stream("a", "b.c"));

        // Ordinary and quoted names resume where they were.
        for s in [&orders, &quoted] {
            let cp = store.checkpoint(s).await.unwrap().unwrap();
            assert_eq!(&cp.stream, s);
            assert_eq!(store.flag(s, Flag::Enabled).await.unwrap(), Some(false));
        }
        // Neither table that may have written `a.b.c` resumes from it.
        assert_eq!(store.checkpoint(&abc).await.unwrap(), None);
        assert_eq!(store.checkpoint(&a_bc).await.unwrap(), None);
        // Both stay paused, as the flag paused both before.
        for s in [&abc, &a_bc] {
            assert_eq!(store.flag(s, Flag::Enabled).await.unwrap(), Some(false));
        }
        let states: Vec<StreamId> = store
            .stream_states()
            .await
            .unwrap()
            .into_iter()
            .map(|(s, st)| {
                assert_eq!(st, StreamState::Idle);
                s
            })
            .collect();
        assert_eq!(states, [quoted, orders]);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let keys: Vec<String> = conn
            .prepare("SELECT table_name FROM checkpoints ORDER BY table_name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(keys, ["\"x\"\"y\".\"z\"", "public.orders"]);
    }

    #[tokio::test]
    async fn tables_that_display_alike_keep_their_own_rows() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SqliteStateStore::open(dir.path().join("state.db"))
            .await
            .unwrap();
        let a = StreamId::new("p", &TableName::new(Some("a"), "b.c"));
        let b = StreamId::new("p", &TableName::new(Some("a.b"), "c"));
        let cp = Checkpoint {
            stream: a.clone(),
            epoch: 0,
            phase: Phase::Streaming { position: None },
        };
        store.save_checkpoint(&cp).await.unwrap();
        store.set_flag(&a, Flag::Enabled, false).await.unwrap();
        store
            .set_stream_state(&a, &StreamState::Idle)
            .await
            .unwrap();
        store
            .set_stream_state(&b, &StreamState::Streaming)
            .await
            .unwrap();
        assert_eq!(store.checkpoint(&a).await.unwrap(), Some(cp));
        assert_eq!(store.checkpoint(&b).await.unwrap(), None);
        assert_eq!(store.flag(&b, Flag::Enabled).await.unwrap(), None);
        let states = store.stream_states().await.unwrap();
        assert_eq!(
            states,
            [(a, StreamState::Idle), (b, StreamState::Streaming)]
        );
    }

    #[test]
    fn a_display_form_reads_as_every_name_that_shows_it() {
        let keys: Vec<String> = readings("a.b.c").iter().map(TableName::key).collect();
        assert_eq!(keys, [r#""a.b.c""#, r#""a"."b.c""#, r#""a.b"."c""#]);
    }
}
