//! Commit lags on PostgreSQL (`commit_lags`, beside `sync_change_tracking`):
//! when the source committed the newest logged change a table stream's
//! checkpoint covers, and when the target committed it.

use chrono::{DateTime, SecondsFormat, Utc};
use siphon_core::{CommitLag, Result, StreamId, TableName};

use super::PostgresStateStore;

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl PostgresStateStore {
    /// See [`siphon_core::StateStore::record_commit_lags`].
    pub(super) async fn save_lags(&self, lags: &[(StreamId, CommitLag)]) -> Result<()> {
        let doing = "cannot record the replication lag of the streams";
        let mut client = self.client(doing).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.fail(doing, e))?;
        let stmt = tx
            .prepare(
                "INSERT INTO commit_lags (pipeline, table_key, table_name, source_commit_at, applied_at)
                 VALUES ($1, $2, $3, $4::text::timestamptz, $5::text::timestamptz)
                 ON CONFLICT (pipeline, table_key) DO UPDATE SET
                     table_name = excluded.table_name,
                     source_commit_at = excluded.source_commit_at,
                     applied_at = excluded.applied_at",
            )
            .await
            .map_err(|e| self.fail(doing, e))?;
        for (stream, lag) in lags {
            tx.execute(
                &stmt,
                &[
                    &stream.pipeline,
                    &stream.table.key(),
                    &stream.table.to_string(),
                    &stamp(lag.source_commit_at),
                    &stamp(lag.applied_at),
                ],
            )
            .await
            .map_err(|e| self.fail(doing, e))?;
        }
        tx.commit().await.map_err(|e| self.fail(doing, e))
    }

    /// See [`siphon_core::StateStore::commit_lags`]; ordered by pipeline,
    /// then table key.
    pub(super) async fn read_lags(&self) -> Result<Vec<(StreamId, CommitLag)>> {
        let doing = "cannot read the replication lag of the streams";
        let client = self.client(doing).await?;
        let rows = client
            .query(
                "SELECT pipeline, table_key,
                     (extract(epoch FROM source_commit_at) * 1000000)::int8,
                     (extract(epoch FROM applied_at) * 1000000)::int8
                 FROM commit_lags ORDER BY pipeline, table_key",
                &[],
            )
            .await
            .map_err(|e| self.fail(doing, e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let key: String = r.get(1);
                let stream = StreamId {
                    pipeline: r.get(0),
                    table: TableName::from_key(&key).unwrap_or_else(|| TableName::parse(&key)),
                };
                let lag = CommitLag {
                    source_commit_at: from_micros(r.get(2)),
                    applied_at: from_micros(r.get(3)),
                };
                (stream, lag)
            })
            .collect())
    }
}
