//! The Redis state store: everything under one key prefix of one Redis
//! database, shared by every worker that opens the same URL.
//!
//! Each method is one command, one `MULTI`/`EXEC` block or one Lua script,
//! so that it is atomic against other workers. The per-table switches keep
//! the key shapes of the SQL Server replicator siphon replaces
//! (`{prefix}:enabled:{table}`, `{prefix}:force_full_load:{table}`, values
//! `"true"` / `"false"`), so its operators' `redis-cli` habits keep working;
//! see [`keys`] for the whole layout.

mod keys;
mod scripts;
mod store;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use siphon_core::{Error, ErrorKind, Result};

use keys::Keys;
pub use keys::DEFAULT_PREFIX;

/// How long connecting, and each command, may take before it fails.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A [`siphon_core::StateStore`] in Redis, under one key prefix.
///
/// Clones share one multiplexed connection, which reconnects by itself
/// after the server was restarted or the network dropped; a call made while
/// the server is away fails with [`ErrorKind::Connection`]. Several
/// processes may open the same URL: every method is atomic on the server.
#[derive(Clone)]
pub struct RedisStateStore {
    conn: ConnectionManager,
    keys: Keys,
    /// The URL without its password, for messages.
    shown: String,
    /// Executions kept per pipeline; older ones go as new ones start.
    kept_executions: u64,
}

impl std::fmt::Debug for RedisStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStateStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl RedisStateStore {
    /// Connects to the store a `redis://host:port/db?prefix=…` URL names
    /// (prefix [`DEFAULT_PREFIX`] when none is given; a password goes in the
    /// URL's user part, `redis://:secret@host/0`).
    ///
    /// Fails with [`ErrorKind::Config`] for a URL that is not `redis://`
    /// (`rediss://` is refused: this build has no TLS), and with
    /// [`ErrorKind::Connection`] when the server cannot be reached.
    pub async fn open_url(url: &str) -> Result<RedisStateStore> {
        let parsed = Parsed::from_url(url)?;
        let client = redis::Client::open(parsed.server.as_str()).map_err(|e| {
            Error::config(format!(
                "state store URL `{}` is not a Redis URL: {e}; write redis://host:port/db?prefix=NAME",
                parsed.shown
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| failure(format!("cannot connect to state store {}", parsed.shown), e))?;
        Ok(RedisStateStore {
            conn,
            keys: Keys::new(&parsed.prefix),
            shown: parsed.shown,
            kept_executions: crate::KEPT_EXECUTIONS,
        })
    }

    /// Keeps the newest `n` executions of each pipeline (at least 1) instead
    /// of [`crate::KEPT_EXECUTIONS`].
    pub fn keep_executions(mut self, n: u64) -> Self {
        self.kept_executions = n.max(1);
        self
    }

    /// The key prefix everything of this store lives under (`mssql_sync`).
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// A connection for one call (clones share the multiplexed one).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The error of a failed call: `doing` says what failed.
    fn fail(&self, doing: &str, e: redis::RedisError) -> Error {
        failure(format!("{doing} in state store {}", self.shown), e)
    }

    /// An error of this store that is not the server's: `doing` says what failed.
    fn fail_with(&self, kind: ErrorKind, doing: &str, why: String) -> Error {
        Error::new(
            kind,
            format!("{doing} in state store {}: {why}", self.shown),
        )
    }
}

/// The kind of a Redis failure: lost connections and time-outs are worth
/// retrying; what the server refused is the store's.
fn failure(message: String, e: redis::RedisError) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        ErrorKind::Connection
    } else {
        ErrorKind::State
    };
    Error::new(kind, message).source(e)
}

/// A state store URL taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    /// The URL the driver connects to: without `prefix`.
    server: String,
    prefix: String,
    /// The URL with its password masked.
    shown: String,
}

impl Parsed {
    fn from_url(url: &str) -> Result<Parsed> {
        let shown = mask(url);
        if url.starts_with("rediss://") {
            return Err(Error::config(format!(
                "state store URL `{shown}`: rediss:// (Redis over TLS) is not built into this siphon; \
                 use redis:// on a trusted network, or reach the server through a TLS tunnel \
                 (stunnel, spiped) on a local port"
            )));
        }
        if !url.starts_with("redis://") {
            return Err(Error::config(format!(
                "state store URL `{shown}` is not a redis:// URL; write redis://host:port/db?prefix=NAME"
            )));
        }
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut prefix = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("prefix", value)) => prefix = Some(decode(value, &shown)?),
                _ => rest.push(pair),
            }
        }
        let prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        if prefix.is_empty() {
            return Err(Error::config(format!(
                "state store URL `{shown}` has an empty prefix; write prefix=NAME or leave it out \
                 for `{DEFAULT_PREFIX}`"
            )));
        }
        let server = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        Ok(Parsed {
            server,
            prefix,
            shown,
        })
    }
}

/// `url` with the password of its user part replaced by `***`.
fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = match user.split_once(':') {
                Some((name, _)) => format!("{name}:***"),
                None => user.to_string(),
            };
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// Percent-decodes a query value (`prefix=a%3Ab` is `a:b`).
fn decode(value: &str, shown: &str) -> Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        Error::config(format!(
                            "state store URL `{shown}`: `{value}` has a `%` not followed by two hex digits"
                        ))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::config(format!(
            "state store URL `{shown}`: `{value}` does not decode to UTF-8"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_the_server_and_the_prefix() {
        let p = Parsed::from_url("redis://127.0.0.1:6379/2?prefix=mssql_sync").unwrap();
        assert_eq!(p.server, "redis://127.0.0.1:6379/2");
        assert_eq!(p.prefix, "mssql_sync");
        let p = Parsed::from_url("redis://:pw@h/0?protocol=resp3&prefix=a%3Ab").unwrap();
        assert_eq!(p.server, "redis://:pw@h/0?protocol=resp3");
        assert_eq!(p.prefix, "a:b");
        assert_eq!(p.shown, "redis://:***@h/0?protocol=resp3&prefix=a%3Ab");
        let p = Parsed::from_url("redis://h").unwrap();
        assert_eq!(p.prefix, DEFAULT_PREFIX);
    }

    #[test]
    fn tls_and_other_schemes_are_refused_clearly() {
        let e = Parsed::from_url("rediss://u:secret@h/0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let msg = e.to_string();
        assert!(
            msg.contains("rediss:// (Redis over TLS) is not built"),
            "{msg}"
        );
        assert!(!msg.contains("secret"), "{msg}");
        let e = Parsed::from_url("postgres://h/d").unwrap_err();
        assert!(e.to_string().contains("is not a redis:// URL"), "{e}");
        let e = Parsed::from_url("redis://h/0?prefix=").unwrap_err();
        assert!(e.to_string().contains("empty prefix"), "{e}");
    }
}
