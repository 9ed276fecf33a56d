//! Change data capture by logical replication: the pipeline's publication and
//! replication slot (`pgoutput`), and the change stream that reads the slot
//! (protocol version 1) and turns its messages into siphon changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use siphon_core::{
    Batch, Change, ChangeStream, Error, ErrorKind, LogSource, Op, Position, Result, Resume, Row,
    TableName, TableSchema, Transaction, Value,
};
use tokio_postgres::types::ToSql;

use crate::conn::{column_list, ident, pg_err, qualified};
use crate::partition;
use crate::pgoutput::{self, Decoder, Lsn, Message, TupleColumn, TupleData};
use crate::replication::{Event, ReplicationConfig, ReplicationStream};
use crate::source::{decode_row, name_of, Param, PostgresSource};
use crate::types::{self, PgType};

mod resume;
mod shape;
mod stream;

pub use stream::PostgresChangeStream;

/// The name of a pipeline's replication slot and publication: `siphon_` and the
/// pipeline's name lowered to `[a-z0-9_]`, at most 63 bytes (PostgreSQL's limit).
/// Names that only differ in case or punctuation share a slot, so a short hash
/// of the exact name is appended when the name had to be changed.
pub fn log_name(pipeline: &str) -> String {
    let clean: String = pipeline
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    let mut name = format!("siphon_{clean}");
    if clean != pipeline || name.len() > 63 {
        let hash = xxhash_rust::xxh3::xxh3_64(pipeline.as_bytes());
        name.truncate(54);
        name.push_str(&format!("_{:08x}", hash as u32));
    }
    name
}

/// The prefix of siphon's watermarks in the WAL
/// (`pg_logical_emit_message(true, 'siphon', mark)`).
const WATERMARK_PREFIX: &str = "siphon";

/// Logical decoding messages (watermarks) reach pgoutput from PostgreSQL 14.
const MESSAGES_SINCE: i32 = 140000;

/// A position in the WAL as stored in checkpoints: `{"lsn": "16/B374D848"}`.
#[derive(Debug, Serialize, Deserialize)]
struct LogPosition {
    lsn: String,
}

fn to_position(lsn: Lsn) -> Position {
    Position(serde_json::json!({ "lsn": lsn.to_string() }))
}

fn lsn_of(p: &Position) -> Result<Lsn> {
    let lp: LogPosition = serde_json::from_value(p.0.clone()).map_err(|e| {
        Error::bad_input(
            "the saved log position was not written by the PostgreSQL connector; force a full re-sync",
        )
        .source(e)
    })?;
    lp.lsn.parse().map_err(|e| {
        Error::bad_input("the saved log position is not an LSN; force a full re-sync").source(e)
    })
}

impl PostgresSource {
    /// Bytes of WAL the pipeline's slot keeps on the server
    /// (`pg_current_wal_lsn() - restart_lsn`), or `None` without a slot.
    async fn retained_wal(&self, pipeline: &str) -> Result<Option<u64>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&log_name(pipeline)],
            )
            .await
            .map_err(|e| pg_err(e, "reading the replication slot"))?;
        Ok(row
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|n| n.max(0) as u64))
    }

    /// The replication connection's settings, from the source's URL: protocol
    /// version 2 with large transactions streamed as they are written where the
    /// server has it (PostgreSQL 14+), else version 1.
    async fn replication_config(&self, slot: &str, start: Lsn) -> Result<ReplicationConfig> {
        let version: i32 = self
            .client()
            .await?
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| pg_err(e, "reading the server version"))?
            .get(0);
        let (proto, streaming) = if version >= 140000 {
            (2, true)
        } else {
            (1, false)
        };
        Ok(self
            .config
            .replication_config(slot, slot)?
            .with_start_lsn(start)
            .with_protocol(proto, streaming)
            .with_messages(version >= MESSAGES_SINCE)
            // Confirmed positions reach the server within half a second.
            .with_status_interval(Duration::from_millis(500))
            // Bounded read-ahead: a slow target slows the reader.
            .with_buffer(1024)
            .with_application_name(slot.to_string()))
    }
}

/// The error for a table without a key whose log does not carry whole old rows.
fn no_identity(table: &TableName) -> Error {
    Error::bad_input(
        "the table has no primary key and no unique index on NOT NULL columns, and its replica \
         identity does not log whole old rows, so PostgreSQL's log cannot say which row an UPDATE \
         or DELETE changed: run ALTER TABLE … REPLICA IDENTITY FULL (each update or delete is then \
         applied to one equal row), or add a primary key",
    )
    .table(table)
}

/// The error for a table with a key that PostgreSQL's log does not carry.
fn key_not_logged(table: &TableName) -> Error {
    Error::bad_input(
        "the table's key is a unique index, but its replica identity does not log it, so \
         PostgreSQL's log cannot say which row an UPDATE or DELETE changed: add a primary key, \
         or run ALTER TABLE … REPLICA IDENTITY USING INDEX <that index> (or REPLICA IDENTITY FULL)",
    )
    .table(table)
}

/// How long creating a slot may take before siphon says what it waits for.
const SLOT_WAIT_FIRST_REPORT: Duration = Duration::from_secs(2);

/// How often it says so again while it still waits.
const SLOT_WAIT_REPORT: Duration = Duration::from_secs(10);

/// Logs the source's open transactions a slot being created waits for: their
/// backend pid, how long they have been open and what they last ran. Reads
/// them on a connection of its own (`watcher`, opened on first use), since the
/// slot's connection is busy.
async fn report_slot_wait(
    config: &crate::conn::ConnConfig,
    watcher: &mut Option<tokio_postgres::Client>,
    pipeline: &str,
    slot: &str,
) {
    if watcher.is_none() {
        match crate::conn::connect_config(config, "source").await {
            Ok(c) => *watcher = Some(c),
            Err(e) => {
                tracing::warn!(pipeline, slot, error = %e, "creating the replication slot is taking long; cannot see why");
                return;
            }
        }
    }
    let Some(client) = watcher.as_ref() else {
        return;
    };
    let open = client
        .query(
            "SELECT pid, coalesce(extract(epoch FROM now() - xact_start)::bigint, 0), \
                    coalesce(datname::text, ''), left(coalesce(query, ''), 80) \
             FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
               AND coalesce(query, '') NOT LIKE '%pg_create_logical_replication_slot%' \
             ORDER BY xact_start LIMIT 5",
            &[],
        )
        .await;
    match open {
        Ok(rows) if !rows.is_empty() => {
            let list: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "pid {} in database {} open for {} s (last statement: {})",
                        r.get::<_, i32>(0),
                        r.get::<_, String>(2),
                        r.get::<_, i64>(1),
                        r.get::<_, String>(3)
                    )
                })
                .collect();
            tracing::warn!(
                pipeline,
                slot,
                "creating the replication slot waits for transactions open at the source to end: {}; \
                 it goes on as soon as they commit or roll back",
                list.join("; ")
            );
        }
        Ok(_) => tracing::info!(
            pipeline,
            slot,
            "creating the replication slot is taking long"
        ),
        Err(e) => {
            tracing::debug!(pipeline, slot, error = %e, "could not read the source's open transactions")
        }
    }
}

impl LogSource for PostgresSource {
    type Stream = PostgresChangeStream;

    async fn check_log_table(&self, table: &TableSchema) -> Result<()> {
        let schema = table.name.schema.clone().unwrap_or_else(|| "public".into());
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                        c.relkind = 'p', \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND NOT i.indimmediate) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &table.name.name],
            )
            .await
            .map_err(|e| pg_err(e, "reading the table's replica identity").table(&table.name))?;
        let ident: String = row.get(0);
        let has_pk: bool = row.get(1);
        if row.get::<_, bool>(2) {
            // Published through its root, a partitioned table's changes are
            // logged by each partition's replica identity.
            if table.row_key().is_none() {
                return Err(Error::bad_input(
                    "the table is partitioned and has no key: add a primary key (or a UNIQUE \
                     index on NOT NULL columns) to replicate it",
                )
                .table(&table.name));
            }
            return partition::check_logged(&*self.client().await?, &table.name).await;
        }
        // PostgreSQL logs no key for a DEFERRABLE primary key, and once the
        // table is published it refuses the application's UPDATE and DELETE.
        let deferrable_pk: bool = row.get(3);
        let ok = match ident.as_str() {
            "f" | "i" => true,
            "d" => has_pk && !deferrable_pk,
            _ => false,
        };
        if table.row_key().is_none() {
            // Without a key, only whole old rows say which row changed.
            if ident != "f" {
                return Err(no_identity(&table.name));
            }
            return Ok(());
        }
        if !ok && deferrable_pk && ident == "d" {
            return Err(Error::bad_input(
                "the table's primary key is DEFERRABLE, which PostgreSQL cannot use as its replica \
                 identity: published, the table's UPDATE and DELETE would fail at the source, so siphon \
                 leaves it out. Run ALTER TABLE … REPLICA IDENTITY FULL (or make the key NOT \
                 DEFERRABLE), or replicate the table with `mode: full` or `incremental`",
            )
            .table(&table.name));
        }
        if !ok {
            return Err(key_not_logged(&table.name));
        }
        Ok(())
    }

    async fn prepare_log(&self, pipeline: &str, tables: &[TableSchema]) -> Result<Position> {
        let name = log_name(pipeline);
        let level: String = self
            .client()
            .await?
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| pg_err(e, "reading wal_level"))?
            .get(0);
        if level != "logical" {
            return Err(Error::config(format!(
                "cdc needs wal_level = logical on the source (it is {level}): set it in postgresql.conf and restart the server"
            )));
        }
        let list: Vec<String> = tables
            .iter()
            .map(|t| {
                qualified(
                    Some(t.name.schema.as_deref().unwrap_or("public")),
                    &t.name.name,
                )
            })
            .collect();
        // Partitioned tables are published as themselves (PostgreSQL 13+):
        // otherwise their changes arrive under each partition's name.
        let version: i32 = self
            .client()
            .await?
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| pg_err(e, "reading the server version"))?
            .get(0);
        let via_root = version >= 130000;
        let found = self
            .client()
            .await?
            .query_opt(
                if via_root {
                    "SELECT pubviaroot FROM pg_publication WHERE pubname = $1"
                } else {
                    "SELECT true FROM pg_publication WHERE pubname = $1"
                },
                &[&name],
            )
            .await
            .map_err(|e| pg_err(e, "reading publications"))?;
        let exists = found.is_some();
        let root_ok = found.is_none_or(|r| r.get::<_, bool>(0));
        let with = if via_root {
            " WITH (publish_via_partition_root = true)"
        } else {
            ""
        };
        // Left alone when it already covers exactly these tables: altering it
        // makes every open replication session reload it.
        let same = exists && {
            let mut have: Vec<(String, String)> = self
                .client()
                .await?
                .query(
                    "SELECT schemaname::text, tablename::text FROM pg_publication_tables \
                     WHERE pubname = $1",
                    &[&name],
                )
                .await
                .map_err(|e| pg_err(e, "reading the publication's tables"))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let mut want: Vec<(String, String)> = tables
                .iter()
                .map(|t| {
                    let schema = t.name.schema.as_deref().unwrap_or("public");
                    (schema.to_string(), t.name.name.clone())
                })
                .collect();
            have.sort();
            want.sort();
            have == want
        };
        let mut sql = match (exists, list.is_empty()) {
            _ if same => String::new(),
            (false, true) => format!("CREATE PUBLICATION {}{with}", ident(&name)),
            (false, false) => format!(
                "CREATE PUBLICATION {} FOR TABLE {}{with}",
                ident(&name),
                list.join(", ")
            ),
            (true, false) => format!(
                "ALTER PUBLICATION {} SET TABLE {}",
                ident(&name),
                list.join(", ")
            ),
            (true, true) => String::new(),
        };
        if !root_ok {
            sql.push_str(&format!(
                "; ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
                ident(&name)
            ));
            for t in tables.iter().filter(|t| t.partitioning.is_some()) {
                tracing::warn!(
                    pipeline,
                    table = %t.name,
                    "the publication {name} sent the changes of {}'s partitions under their own names, which \
                     siphon did not apply: it now sends them as {}; copy the table again with \
                     `siphon sync resync {pipeline} --table {}`",
                    t.name,
                    t.name,
                    t.name
                );
            }
        }
        let sql = sql.trim_start_matches("; ");
        if !sql.is_empty() {
            self.client()
                .await?
                .batch_execute(sql)
                .await
                .map_err(|e| pg_err(e, "creating the publication"))?;
        }
        resume::drop_invalidated(self, pipeline).await?;
        let slot = self
            .client()
            .await?
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await
            .map_err(|e| pg_err(e, "reading replication slots"))?;
        let lsn: String = match slot {
            Some(r) => r.get::<_, Option<String>>(0).ok_or_else(|| {
                Error::config(format!(
                    "replication slot {name} exists but is not a logical slot; drop it"
                ))
            })?,
            None => {
                tracing::info!(pipeline, slot = %name, "creating the replication slot");
                let client = self.client().await?;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
                let create = client.query_one(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                    &params,
                );
                tokio::pin!(create);
                // The slot waits for every transaction open at the source to
                // end: say which ones, while it waits.
                let mut watcher = None;
                let start = tokio::time::Instant::now() + SLOT_WAIT_FIRST_REPORT;
                let mut tick = tokio::time::interval_at(start, SLOT_WAIT_REPORT);
                let row = loop {
                    tokio::select! {
                        row = &mut create => break row,
                        _ = tick.tick() => {
                            report_slot_wait(&self.config, &mut watcher, pipeline, &name).await
                        }
                    }
                };
                row.map_err(|e| pg_err(e, "creating the replication slot"))?
                    .get(0)
            }
        };
        let lsn: Lsn = lsn
            .parse()
            .map_err(|e| Error::internal("the server returned a bad LSN").source(e))?;
        Ok(to_position(lsn))
    }

    async fn log_head(&self) -> Result<Position> {
        // The insert position: the write position lags behind commits made
        // with synchronous_commit off.
        let lsn: String = self
            .client()
            .await?
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .map_err(|e| pg_err(e, "reading the WAL position"))?
            .get(0);
        let lsn: Lsn = lsn
            .parse()
            .map_err(|e| Error::internal("the server returned a bad LSN").source(e))?;
        Ok(to_position(lsn))
    }

    async fn stream(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        from: &Position,
    ) -> Result<PostgresChangeStream> {
        let start = lsn_of(from)?;
        let slot = log_name(pipeline);
        let mut known = HashMap::new();
        for t in tables {
            let pg = self.table(t).await?;
            known.insert(t.name.clone(), (t.clone(), pg.types.clone()));
        }
        let cfg = self.replication_config(&slot, start).await?;
        let client = ReplicationStream::connect(cfg).await?;
        tracing::debug!(pipeline, %slot, from = %start, "replication started");
        Ok(PostgresChangeStream {
            client: Some(client),
            query: self.clone(),
            slot,
            known,
            relations: HashMap::new(),
            start,
            committed: start,
            confirmed: start,
            pending: Vec::new(),
            todo: Vec::new(),
            in_txn: false,
            split: false,
            max_bytes: u64::MAX,
            marks: Vec::new(),
            marks_out: Vec::new(),
            tx: None,
            index: 0,
            done: false,
            decoder: Decoder::new(),
            moved: std::time::Instant::now(),
            streamed: HashMap::new(),
            block: None,
            replay: None,
        })
    }

    async fn drop_log(&self, pipeline: &str) -> Result<()> {
        let name = log_name(pipeline);
        // An active slot cannot be dropped: end the session that holds it first.
        self.client()
            .await?
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&name],
            )
            .await
            .map_err(|e| pg_err(e, "stopping the replication session"))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = self
                .client()
                .await?
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&name],
                )
                .await;
            match r {
                Ok(_) => break,
                // 55006: the slot is still active while its session ends.
                Err(e)
                    if e.code().map(|c| c.code()) == Some("55006")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(pg_err(e, "dropping the replication slot")),
            }
        }
        self.client()
            .await?
            .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", ident(&name)))
            .await
            .map_err(|e| pg_err(e, "dropping the publication"))?;
        Ok(())
    }

    async fn retained_log(&self, pipeline: &str) -> Result<Option<u64>> {
        self.retained_wal(pipeline).await
    }

    async fn pin_snapshot(&self, table: &TableSchema) -> Result<Position> {
        self.pin_physical(table).await.map(to_position)
    }

    async fn unpin_snapshot(&self, table: &TableSchema) -> Result<()> {
        self.unpin_physical(table);
        Ok(())
    }

    fn snapshot_holds(&self, snapshot: &Position, tx: &Transaction) -> Result<bool> {
        // The snapshot holds a transaction whose commit record starts before
        // the exporting slot's consistent point.
        Ok(lsn_of(&tx.position)? < lsn_of(snapshot)?)
    }

    async fn watermarks(&self) -> Result<bool> {
        // The function may be revoked from the user: then tables are copied
        // with the stream paused, as without watermarks.
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT current_setting('server_version_num')::int, \
                        has_function_privilege('pg_logical_emit_message(boolean, text, text)', 'execute')",
                &[],
            )
            .await
            .map_err(|e| pg_err(e, "reading the server version"))?;
        Ok(row.get::<_, i32>(0) >= MESSAGES_SINCE && row.get::<_, bool>(1))
    }

    async fn write_watermark(&self, pipeline: &str, mark: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "SELECT pg_logical_emit_message(true, $1, $2)",
                &[&WATERMARK_PREFIX, &mark],
            )
            .await
            .map_err(|e| pg_err(e, "writing a watermark into the WAL"))?;
        tracing::trace!(pipeline, mark, "watermark written");
        Ok(())
    }

    async fn resume(
        &self,
        pipeline: &str,
        from: &Position,
        tables: &[TableSchema],
    ) -> Result<Resume> {
        resume::resume(self, pipeline, from, tables).await
    }
}

/// How the columns of a Relation message map onto a table's schema.
#[cfg(test)]
mod tests {
    use super::stream::reached;
    use super::*;

    #[test]
    fn log_names_are_valid_identifiers_and_distinct() {
        assert_eq!(log_name("orders_sync"), "siphon_orders_sync");
        let odd = log_name("Orders-Sync");
        assert!(odd.starts_with("siphon_orders_sync_"), "{odd}");
        assert_ne!(odd, log_name("orders_sync"));
        assert_ne!(odd, log_name("orders.sync"));
        let long = log_name(&"p".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, log_name(&"p".repeat(99)));
        for n in [odd, long, log_name("é ü")] {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n}"
            );
        }
    }

    #[test]
    fn positions_round_trip_and_order() {
        let p = to_position(Lsn(0x16_B374_D848));
        assert_eq!(p.0, serde_json::json!({"lsn": "16/B374D848"}));
        assert_eq!(lsn_of(&p).unwrap(), Lsn(0x16_B374_D848));
        assert!(lsn_of(&Position(serde_json::json!({"key": [1]}))).is_err());
    }

    #[test]
    fn a_page_header_gap_counts_as_reached() {
        assert!(reached(Lsn(100), Lsn(100)));
        assert!(!reached(Lsn(100), Lsn(124)));
        // A record ended on a page boundary; the insert position is past the
        // next page's header.
        assert!(reached(Lsn(8192 * 3), Lsn(8192 * 3 + 24)));
        assert!(reached(Lsn(1 << 24), Lsn((1 << 24) + 40)));
        assert!(!reached(Lsn(8192 * 3), Lsn(8192 * 3 + 48)));
    }
}
