//! Connections, errors and the small SQL helpers every part of the connector uses.

use siphon_core::{Error, ErrorKind, Result};
use tokio_postgres::{Client, NoTls};

/// Opens a connection and drives it on a background task. `url` may hold a
/// password: it never appears in an error.
pub(crate) async fn connect(url: &str, what: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| pg_err(e, &format!("cannot connect to the {what}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Like [`connect`], from an already parsed URL.
pub(crate) async fn connect_config(config: &tokio_postgres::Config, what: &str) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| pg_err(e, &format!("cannot connect to the {what}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Maps a driver error to siphon's kinds: lost connections are retried, the rest
/// are database errors; the server's message and code are kept.
pub(crate) fn pg_err(e: tokio_postgres::Error, doing: &str) -> Error {
    let kind = if e.is_closed() || e.as_db_error().is_none() && e.code().is_none() {
        ErrorKind::Connection
    } else {
        match e.code().map(|c| c.code()) {
            // admin shutdown, crash shutdown, cannot connect now
            Some("57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006" | "08001" | "08004") => {
                ErrorKind::Connection
            }
            _ => ErrorKind::Database,
        }
    };
    let detail = match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", doing, db.message(), db.code().code()),
        None => doing.to_string(),
    };
    Error::new(kind, detail).source(e)
}

/// `"name"` with inner quotes doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`, or just `"table"` without a schema.
pub(crate) fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", ident(s), ident(name)),
        None => ident(name),
    }
}

/// `'text'` with inner quotes doubled, for the few places SQL takes no parameters.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"a", "b"` for column names.
pub(crate) fn column_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(ident).collect::<Vec<_>>().join(", ")
}
