//! A snapshot of the database exported at a known WAL position: a temporary
//! logical slot created on a replication connection with `EXPORT_SNAPSHOT`.
//! Transactions that committed before the slot's consistent point are visible
//! in the snapshot; every later one is decoded from that point on.

use postgres_protocol::message::backend;
use postgres_protocol::message::frontend;
use siphon_core::{Error, Result};
use tokio_postgres::fallible_iterator::FallibleIterator;

use super::{protocol_err, quote_ident, Backend, Conn, ReplicationConfig, ServerError};
use crate::pgoutput::Lsn;

/// An exported snapshot, valid while this value lives (its replication
/// connection stays open and idle); dropping it closes the connection, and
/// the server drops the temporary slot with it.
pub struct ExportedSnapshot {
    _conn: Conn,
    /// The snapshot's name, for `SET TRANSACTION SNAPSHOT`.
    pub name: String,
    /// The slot's consistent point: a transaction whose commit record starts
    /// before it is in the snapshot, any other is not.
    pub at: Lsn,
}

impl std::fmt::Debug for ExportedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedSnapshot")
            .field("name", &self.name)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl ExportedSnapshot {
    /// Creates the temporary slot `cfg.slot` with an exported snapshot. Like
    /// any logical slot, it waits for the transactions open at the source to
    /// end first.
    pub async fn create(cfg: &ReplicationConfig) -> Result<ExportedSnapshot> {
        cfg.validate()?;
        let opening = async {
            let mut conn = Conn::open(cfg).await?;
            conn.startup(cfg).await?;
            Ok::<_, Error>(conn)
        };
        let mut conn = match cfg.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, opening).await.map_err(|_| {
                crate::conn::timed_out(
                    &format!(
                        "cannot connect to PostgreSQL at {} for replication",
                        cfg.endpoint()
                    ),
                    limit,
                )
            })??,
            None => opening.await?,
        };
        // The older spelling, which PostgreSQL 10 to 16 all accept.
        let command = format!(
            "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT",
            quote_ident(&cfg.slot)
        );
        frontend::query(&command, &mut conn.wbuf).map_err(protocol_err)?;
        conn.send("creating a temporary replication slot").await?;
        let mut found: Option<(String, String)> = None;
        loop {
            use backend::Message as M;
            match conn.read().await? {
                Backend::Message(M::DataRow(body)) => {
                    let buf = body.buffer();
                    let fields: Vec<Option<String>> = body
                        .ranges()
                        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())))
                        .collect()
                        .map_err(protocol_err)?;
                    // slot_name, consistent_point, snapshot_name, output_plugin
                    if let (Some(Some(point)), Some(Some(name))) = (fields.get(1), fields.get(2)) {
                        found = Some((point.clone(), name.clone()));
                    }
                }
                Backend::Message(
                    M::RowDescription(_)
                    | M::CommandComplete(_)
                    | M::NoticeResponse(_)
                    | M::ParameterStatus(_),
                ) => {}
                Backend::Message(M::ReadyForQuery(_)) => break,
                Backend::Message(M::ErrorResponse(body)) => {
                    return Err(ServerError::parse(body.fields())
                        .into_error("creating a temporary replication slot", &cfg.slot))
                }
                other => {
                    return Err(protocol_err(format!(
                        "{other:?} in answer to CREATE_REPLICATION_SLOT"
                    )))
                }
            }
        }
        let (point, name) =
            found.ok_or_else(|| protocol_err("CREATE_REPLICATION_SLOT returned no row"))?;
        let at = point
            .parse()
            .map_err(|e| Error::internal("the server returned a bad LSN").source(e))?;
        Ok(ExportedSnapshot {
            _conn: conn,
            name,
            at,
        })
    }
}
