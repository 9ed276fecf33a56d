//! The PostgreSQL state store: siphon's catalog, switches, checkpoint copies,
//! history, conflicts and leases in tables of one schema of its own
//! (`siphon` unless the URL's `schema=` names another), created and
//! upgraded by versioned migrations ([`schema`]).
//!
//! The catalog, the history, the checkpoints and the conflicts are kept in
//! the tables the original sync service's users report on
//! (`sync_configurations`, `sync_executions`, `sync_change_tracking`,
//! `sync_conflicts`); siphon's own tables sit beside them.

mod lag;
mod schema;
mod store;

use std::sync::Arc;
use std::time::Duration;

use siphon_core::{Error, ErrorKind, Result};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

/// The schema when the URL names none.
pub const DEFAULT_SCHEMA: &str = "siphon";

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`siphon_core::StateStore`] in one schema of a PostgreSQL database.
///
/// Clones share one connection; calls through it run one at a time, and a
/// connection that was lost is opened again by the next call. Several
/// processes may open the same URL: every method is one statement or one
/// transaction, and leases take row locks, so no two workers are granted one
/// lease.
#[derive(Clone)]
pub struct PostgresStateStore {
    inner: Arc<Inner>,
    /// Executions kept per pipeline; older ones go as new ones start.
    kept_executions: u64,
}

struct Inner {
    config: Config,
    /// The schema's name, quoted as an identifier.
    schema: String,
    /// Where the store is, for messages: host, port, database and schema.
    shown: String,
    client: Mutex<Client>,
}

impl std::fmt::Debug for PostgresStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStateStore")
            .field("at", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

impl PostgresStateStore {
    /// Connects to the store a `postgres://user:password@host:port/db?schema=NAME`
    /// URL names, creating its schema and tables or bringing them up to date.
    ///
    /// Fails with [`ErrorKind::Config`] for a URL that does not parse, asks
    /// for TLS, or holds tables of a newer siphon; with
    /// [`ErrorKind::Connection`] when the server cannot be reached; with
    /// [`ErrorKind::Privilege`] when the user may not create the schema.
    pub async fn open_url(url: &str) -> Result<PostgresStateStore> {
        let (driver_url, schema) = split_schema(url)?;
        let mut config: Config = driver_url.parse().map_err(|e| {
            Error::config(
                "the state store's PostgreSQL URL cannot be parsed; write \
                 postgres://user:password@host:port/database?schema=NAME",
            )
            .source(e)
        })?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(Error::config(
                "the state store's PostgreSQL URL asks for TLS (sslmode=require), which siphon does \
                 not support for PostgreSQL yet: use sslmode=disable or prefer on a trusted network, \
                 or reach the server through a TLS tunnel",
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("siphon-state");
        }
        let shown = shown(&config, &schema);
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        let doing = format!("cannot open state store {shown}");
        let mut client = connect(&config)
            .await
            .map_err(|e| failure(doing.clone(), e))?;
        schema::migrate(&mut client, &schema, &quoted)
            .await
            .map_err(|e| match e {
                Step::Db(e) => failure(doing.clone(), e),
                Step::Refused(kind, why) => Error::new(kind, format!("{doing}: {why}")),
            })?;
        set_path(&client, &quoted)
            .await
            .map_err(|e| failure(doing, e))?;
        Ok(PostgresStateStore {
            inner: Arc::new(Inner {
                config,
                schema: quoted,
                shown,
                client: Mutex::new(client),
            }),
            kept_executions: crate::KEPT_EXECUTIONS,
        })
    }

    /// Keeps the newest `n` executions of each pipeline (at least 1) instead
    /// of [`crate::KEPT_EXECUTIONS`].
    pub fn keep_executions(mut self, n: u64) -> Self {
        self.kept_executions = n.max(1);
        self
    }

    /// The connection for one call, opened again when it was lost.
    async fn client(&self, doing: &str) -> Result<MutexGuard<'_, Client>> {
        let mut client = self.inner.client.lock().await;
        if client.is_closed() {
            let fresh = connect(&self.inner.config)
                .await
                .map_err(|e| self.fail(doing, e))?;
            set_path(&fresh, &self.inner.schema)
                .await
                .map_err(|e| self.fail(doing, e))?;
            *client = fresh;
        }
        Ok(client)
    }

    /// The error of a failed statement: `doing` says what failed.
    fn fail(&self, doing: &str, e: tokio_postgres::Error) -> Error {
        failure(format!("{doing} in state store {}", self.inner.shown), e)
    }

    /// An error of this store that is not the server's.
    fn fail_with(&self, kind: ErrorKind, doing: &str, why: String) -> Error {
        Error::new(
            kind,
            format!("{doing} in state store {}: {why}", self.inner.shown),
        )
    }
}

async fn connect(config: &Config) -> std::result::Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "the state store's PostgreSQL connection ended");
        }
    });
    Ok(client)
}

async fn set_path(client: &Client, quoted: &str) -> std::result::Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("SET search_path TO {quoted}"))
        .await
}

/// Why a migration step failed.
enum Step {
    Db(tokio_postgres::Error),
    Refused(ErrorKind, String),
}

impl From<tokio_postgres::Error> for Step {
    fn from(e: tokio_postgres::Error) -> Step {
        Step::Db(e)
    }
}

/// The kind of a PostgreSQL failure.
fn failure(message: String, e: tokio_postgres::Error) -> Error {
    let kind = match e.code() {
        Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") => {
            ErrorKind::Connection
        }
        Some(c)
            if [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::LOCK_NOT_AVAILABLE,
            ]
            .contains(c) =>
        {
            ErrorKind::Transient
        }
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => ErrorKind::Privilege,
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            ErrorKind::Config
        }
        Some(c) if *c == SqlState::QUERY_CANCELED => ErrorKind::Timeout,
        Some(_) => ErrorKind::State,
        None if e.is_closed() => ErrorKind::Connection,
        None => {
            let io = std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
            if io || e.to_string().contains("timeout") {
                ErrorKind::Connection
            } else {
                ErrorKind::State
            }
        }
    };
    Error::new(kind, message).source(e)
}

/// The URL without its `schema=` parameter, and that schema.
fn split_schema(url: &str) -> Result<(String, String)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_SCHEMA.to_string()));
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => schema = Some(value.to_string()),
            _ => rest.push(pair),
        }
    }
    let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
    if schema.is_empty() || schema.contains('%') || schema.len() > 63 {
        return Err(Error::config(format!(
            "the state store's PostgreSQL URL names schema `{schema}`: write schema=NAME with a \
             name of 1 to 63 characters, without `%` escapes"
        )));
    }
    let driver = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((driver, schema))
}

/// `postgres://host:port/database (schema NAME)`: no user, no password.
fn shown(config: &Config, schema: &str) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("postgres://{host}:{port}/{db} (schema {schema})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_siphons_not_the_drivers() {
        let (url, schema) =
            split_schema("postgres://u:pw@h:5/db?schema=ops&sslmode=disable").unwrap();
        assert_eq!(url, "postgres://u:pw@h:5/db?sslmode=disable");
        assert_eq!(schema, "ops");
        let (url, schema) = split_schema("postgres://h/db").unwrap();
        assert_eq!(
            (url.as_str(), schema.as_str()),
            ("postgres://h/db", DEFAULT_SCHEMA)
        );
        let e = split_schema("postgres://h/db?schema=").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let config: Config = "postgres://u:secret@h:5/db".parse().unwrap();
        let s = shown(&config, "ops");
        assert_eq!(s, "postgres://h:5/db (schema ops)");
    }

    #[tokio::test]
    async fn tls_is_refused_with_the_way_out() {
        let e = PostgresStateStore::open_url("postgres://h/db?sslmode=require")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("TLS tunnel"), "{e}");
    }
}
