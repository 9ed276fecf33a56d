//! `connection test`'s report: whether a connection answers, which server it
//! is, and each setting and privilege replication needs there, with its fix
//! when it is missing. The CLI prints it and the REST API returns it as JSON.
//!
//! The checks are the connectors' own (`siphon_postgres::probe`,
//! `siphon_mysql::probe`); connectors without any (SQLite, files) are only
//! opened.

use serde::Serialize;
use siphon_core::Result;

use crate::registry::{named, Registry};
use crate::url::ConnectionUrl;

/// What [`probe`] found about one connection.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Probe {
    /// The connection's name.
    pub connection: String,
    /// Its URL, secrets masked.
    pub url: String,
    /// The connector that opens it (`postgres`, `mysql`, `sqlite`, `file`).
    pub connector: String,
    /// What the connection can be: `source`, `target`, `event target`,
    /// `state store`, `change log`.
    pub can_be: Vec<String>,
    /// Whether siphon opened it: `false` only for event targets, which are
    /// opened when a pipeline writes to them.
    pub reached: bool,
    /// The server and its version, where the connector tells
    /// (`PostgreSQL 15.8`, `MariaDB 10.11.6-MariaDB-0+deb12u1-log`).
    pub server: Option<String>,
    /// The server's flavour where one connector serves several:
    /// `MariaDB` or `MySQL`.
    pub server_kind: Option<String>,
    /// Each setting and privilege checked, in order.
    pub checks: Vec<Check>,
}

/// One setting or privilege, as found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// The setting (`wal_level`, `binlog_format`) or privilege (`REPLICATION`,
    /// `REPLICATION SLAVE`) checked.
    pub name: String,
    /// Whether it is as siphon needs it.
    pub ok: bool,
    /// What the server has now.
    pub value: String,
    /// What siphon needs.
    pub needed: String,
    /// The modes that need it: `cdc`, or `every mode`.
    pub needed_for: String,
    /// How to make it so; present exactly when `ok` is false.
    pub fix: Option<String>,
    /// What siphon does about it, when that is worth knowing (a setting it
    /// copes without).
    pub note: Option<String>,
}

impl Probe {
    /// The checks that are not as siphon needs them.
    pub fn missing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

/// Opens the connection `name` at `url` through `registry` and checks what
/// replication needs there. An error (naming the connection, never showing a
/// secret) only when it cannot be opened or read; a missing setting or
/// privilege is a check with `ok: false` and its fix, since `full` and
/// `incremental` pipelines need none of them.
///
/// PostgreSQL: `wal_level`, REPLICATION (or superuser), the right to create
/// the pipeline's publication (CREATE on the database, ownership of the
/// tables), a free replication slot and WAL sender, SELECT on the tables.
/// MySQL/MariaDB: `log_bin`, `binlog_format`, `binlog_row_image`, binlog
/// compression and encryption, `binlog_row_metadata` (a note when not FULL),
/// REPLICATION SLAVE and REPLICATION CLIENT.
pub async fn probe(registry: &Registry, name: &str, url: &ConnectionUrl) -> Result<Probe> {
    let connector = registry.connector(url.scheme());
    let caps = registry.capabilities(url);
    let mut probe = Probe {
        connection: name.to_string(),
        url: url.to_string(),
        connector: connector.map_or(url.scheme(), |c| c.name).to_string(),
        can_be: caps
            .map(|c| {
                c.to_string()
                    .split(", ")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        reached: true,
        server: None,
        server_kind: None,
        checks: Vec::new(),
    };
    match probe.connector.as_str() {
        "postgres" => {
            let report = siphon_postgres::probe::probe(url.expose())
                .await
                .map_err(|e| named(e, name, url))?;
            probe.server = Some(report.server);
            probe.checks = report
                .checks
                .into_iter()
                .map(|c| Check {
                    name: c.name.to_string(),
                    ok: c.ok,
                    value: c.value,
                    needed: c.needed,
                    needed_for: c.needed_for.to_string(),
                    fix: c.fix,
                    note: None,
                })
                .collect();
        }
        "mysql" => {
            let report = siphon_mysql::probe::probe(&crate::mysql_driver_url(url.expose()))
                .await
                .map_err(|e| named(e, name, url))?;
            probe.server = Some(report.server.to_string());
            probe.server_kind = Some(
                match report.server.flavor {
                    siphon_mysql::conn::Flavor::MariaDb => "MariaDB",
                    siphon_mysql::conn::Flavor::MySql => "MySQL",
                }
                .to_string(),
            );
            probe.checks = report
                .checks
                .into_iter()
                .map(|c| Check {
                    name: c.name.to_string(),
                    ok: c.ok,
                    value: c.value,
                    needed: c.needed,
                    needed_for: c.needed_for.to_string(),
                    fix: c.fix,
                    note: c.note,
                })
                .collect();
        }
        _ => match caps {
            Some(c) if c.source => {
                registry.open_source(name, url).await?;
            }
            Some(c) if c.sink && !c.events => {
                registry.open_sink(name, url).await?;
            }
            Some(c) if c.events => probe.reached = false,
            _ => {
                // Refused with the reason (a scheme no connector opens).
                registry.open_source(name, url).await?;
            }
        },
    }
    Ok(probe)
}
