//! Connections, errors and the small SQL helpers every part of the connector uses.
//!
//! Every connection is bounded in time: opening it (`connect_timeout`, 10 s by
//! default, covering the TCP connect, the startup and the authentication), a
//! server that vanishes while a query runs (TCP keepalives and `tcp_user_timeout`,
//! detected within about a minute without limiting how long a query may run), and
//! a replication stream that goes silent (`replication_timeout`, 60 s by default).

use std::io;
use std::time::Duration;

use siphon_core::{Error, ErrorKind, Result};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls};

use crate::replication::ReplicationConfig;

/// How long opening a connection may take when the URL has no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replication stream may stay silent when the URL has no
/// `replication_timeout` (PostgreSQL's own `wal_receiver_timeout` default).
pub const DEFAULT_REPLICATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle time before the first TCP keepalive probe, when the URL has no `keepalives_idle`.
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// Time between keepalive probes, when the URL has no `keepalives_interval`.
const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is dropped, when the URL has no `keepalives_retries`.
const DEFAULT_KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged, when the URL has no `tcp_user_timeout`.
const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// URL parameters siphon reads itself; the driver does not know them.
const SIPHON_PARAMS: &[&str] = &["replication_timeout"];

/// A `postgres://` URL (or a `key=value` connection string) parsed, with
/// siphon's defaults applied for the timeouts it does not set. Dereferences to
/// the driver's config; its `Debug` hides the password.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pg: tokio_postgres::Config,
    /// Per host tried; `None`: no limit (`connect_timeout=0`).
    connect_timeout: Option<Duration>,
    /// `None`: no limit (`replication_timeout=0`).
    replication_timeout: Option<Duration>,
}

impl std::ops::Deref for ConnConfig {
    type Target = tokio_postgres::Config;

    fn deref(&self) -> &tokio_postgres::Config {
        &self.pg
    }
}

/// Checks a PostgreSQL connection URL the way opening it would (parameters,
/// values, TLS), without connecting. The error never shows the password.
pub fn check_url(url: &str) -> Result<()> {
    ConnConfig::parse(url).map(|_| ())
}

/// Whether two PostgreSQL URLs name the same database on the same server, as
/// far as their text tells without connecting: the same database name and a
/// host and port in common (`localhost`, `127.0.0.1` and `::1` are one host; a
/// unix socket is one host per folder). A URL that does not parse names no
/// database, so the answer is then `false`.
pub fn same_database(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (ConnConfig::parse(a), ConnConfig::parse(b)) else {
        return false;
    };
    let db = |c: &ConnConfig| c.get_dbname().or(c.get_user()).map(str::to_string);
    if db(&a) != db(&b) {
        return false;
    }
    let (a, b) = (a.places(), b.places());
    a.iter().any(|p| b.contains(p))
}

impl ConnConfig {
    /// Each host (or unix socket folder) and port the URL may connect to, with
    /// the loopback names made one.
    fn places(&self) -> Vec<(String, u16)> {
        let ports = self.pg.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let loopback = |h: &str| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            if matches!(h, "localhost" | "127.0.0.1" | "::1") {
                "loopback".to_string()
            } else {
                h.to_ascii_lowercase()
            }
        };
        let mut out: Vec<(String, u16)> = self
            .pg
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| match h {
                Host::Tcp(name) => (loopback(name), port(i)),
                Host::Unix(dir) => (format!("unix:{}", dir.display()), port(i)),
            })
            .collect();
        out.extend(
            self.pg
                .get_hostaddrs()
                .iter()
                .enumerate()
                .map(|(i, a)| (loopback(&a.to_string()), port(i))),
        );
        out
    }

    /// Parses `url`: the driver's parameters, plus `replication_timeout`.
    pub(crate) fn parse(url: &str) -> Result<ConnConfig> {
        let params = Params::scan(url);
        let mut replication_timeout = Some(DEFAULT_REPLICATION_TIMEOUT);
        for p in params.0.iter().filter(|p| p.key == "replication_timeout") {
            replication_timeout = seconds(&p.value).ok_or_else(|| {
                Error::config(format!(
                    "the PostgreSQL URL's replication_timeout `{}` is not a whole number of seconds \
                     (0 for no limit)",
                    p.value
                ))
            })?;
        }
        let driver_url = params.without(url, SIPHON_PARAMS);
        let mut pg = driver_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| Error::config("the PostgreSQL URL cannot be parsed").source(e))?;
        if pg.get_ssl_mode() == SslMode::Require {
            return Err(Error::config(
                "the PostgreSQL URL asks for TLS (sslmode=require), which siphon does not support for \
                 PostgreSQL yet: use sslmode=disable or prefer on a trusted network, or reach the server \
                 through a TLS tunnel (stunnel, an SSH tunnel) and connect to the tunnel's local end",
            ));
        }
        let connect_timeout = if params.has("connect_timeout") {
            pg.get_connect_timeout().copied()
        } else {
            pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
            Some(DEFAULT_CONNECT_TIMEOUT)
        };
        if !params.has("keepalives_idle") {
            pg.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        if !params.has("keepalives_interval") {
            pg.keepalives_interval(DEFAULT_KEEPALIVES_INTERVAL);
        }
        if !params.has("keepalives_retries") {
            pg.keepalives_retries(DEFAULT_KEEPALIVES_RETRIES);
        }
        if !params.has("tcp_user_timeout") {
            pg.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
        }
        Ok(ConnConfig {
            pg,
            connect_timeout,
            replication_timeout,
        })
    }

    /// Where the URL points, for messages: `host:port`, or the unix socket's
    /// path; several hosts are separated by commas. Never holds a secret.
    pub(crate) fn endpoint(&self) -> String {
        let ports = self.pg.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts = self.pg.get_hosts();
        if hosts.is_empty() {
            return self
                .pg
                .get_hostaddrs()
                .iter()
                .enumerate()
                .map(|(i, a)| host_port(&a.to_string(), port(i)))
                .collect::<Vec<_>>()
                .join(", ");
        }
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| match h {
                Host::Tcp(name) => host_port(name, port(i)),
                Host::Unix(dir) => dir
                    .join(format!(".s.PGSQL.{}", port(i)))
                    .display()
                    .to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The replication connection's settings for `slot` and `publication`,
    /// with this URL's timeouts.
    pub(crate) fn replication_config(
        &self,
        slot: &str,
        publication: &str,
    ) -> Result<ReplicationConfig> {
        let mut cfg = ReplicationConfig::from_pg_config(&self.pg, slot, publication)?;
        cfg.connect_timeout = self.connect_timeout;
        cfg.timeout = self.replication_timeout;
        Ok(cfg)
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A whole number of seconds; 0 or less means no limit.
fn seconds(value: &str) -> Option<Option<Duration>> {
    let n: i64 = value.trim().parse().ok()?;
    Some((n > 0).then(|| Duration::from_secs(n as u64)))
}

/// One `key=value` parameter of a connection URL or string, and where it is.
struct Param {
    key: String,
    value: String,
    /// Byte range of the whole parameter in the text.
    span: std::ops::Range<usize>,
}

/// The parameters of a URL's query, or of a `key=value` connection string.
struct Params(Vec<Param>);

impl Params {
    fn scan(url: &str) -> Params {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if is_url {
            let Some(q) = url.find('?') else {
                return Params(Vec::new());
            };
            let mut out = Vec::new();
            let mut at = q + 1;
            for part in url[q + 1..].split('&') {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                out.push(Param {
                    key: key.to_string(),
                    value: value.to_string(),
                    span: at..at + part.len(),
                });
                at += part.len() + 1;
            }
            return Params(out);
        }
        Params(scan_keywords(url))
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|p| p.key == key)
    }

    /// `url` without the parameters named `keys`.
    fn without(&self, url: &str, keys: &[&str]) -> String {
        let drop: Vec<&Param> = self
            .0
            .iter()
            .filter(|p| keys.contains(&p.key.as_str()))
            .collect();
        if drop.is_empty() {
            return url.to_string();
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let q = url.find('?').unwrap_or(url.len());
            let kept: Vec<&str> = self
                .0
                .iter()
                .filter(|p| !keys.contains(&p.key.as_str()))
                .map(|p| &url[p.span.clone()])
                .collect();
            if kept.is_empty() {
                url[..q].to_string()
            } else {
                format!("{}?{}", &url[..q], kept.join("&"))
            }
        } else {
            let mut out = url.to_string();
            for p in drop.iter().rev() {
                out.replace_range(p.span.clone(), "");
            }
            out
        }
    }
}

/// The parameters of a `key=value key2='quoted value'` connection string.
fn scan_keywords(s: &str) -> Vec<Param> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i >= bytes.len() {
            return out;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s[start..i].to_string();
        i = skip_ws(i);
        if i >= bytes.len() || bytes[i] != b'=' {
            // Not a parameter: the driver reports it.
            return out;
        }
        i = skip_ws(i + 1);
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                let c = s[i..].chars().next().unwrap_or_default();
                value.push(c);
                i += c.len_utf8();
            }
            i = (i + 1).min(bytes.len());
        } else {
            let v = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            value.push_str(&s[v..i]);
        }
        out.push(Param {
            key,
            value,
            span: start..i,
        });
    }
}

/// Opens a connection and drives it on a background task. `url` may hold a
/// password: it never appears in an error.
pub(crate) async fn connect(url: &str, what: &str) -> Result<Client> {
    connect_config(&ConnConfig::parse(url)?, what).await
}

/// Like [`connect`], from an already parsed URL. Fails within the URL's
/// `connect_timeout` (per host tried) with an error that says why, where.
pub(crate) async fn connect_config(config: &ConnConfig, what: &str) -> Result<Client> {
    let at = format!("cannot connect to the {what} at {}", config.endpoint());
    let attempt = config.pg.connect(NoTls);
    let result = match config.connect_timeout {
        Some(limit) => {
            let hosts = config
                .pg
                .get_hosts()
                .len()
                .max(config.pg.get_hostaddrs().len())
                .max(1);
            tokio::time::timeout(limit * hosts as u32, attempt)
                .await
                .map_err(|_| timed_out(&at, limit))?
        }
        None => attempt.await,
    };
    let (client, connection) = match result {
        Ok(pair) => pair,
        Err(e) => {
            let tls = match (e.as_db_error(), config.pg.get_hosts().first()) {
                (Some(db), Some(Host::Tcp(host)))
                    if without_encryption(db.code().code(), db.message()) =>
                {
                    let port = config.pg.get_ports().first().copied().unwrap_or(5432);
                    offers_tls(host, port).await
                }
                _ => None,
            };
            return Err(connect_err(e, &at, config, tls));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// The error for a connection not opened within `limit`.
pub(crate) fn timed_out(at: &str, limit: Duration) -> Error {
    Error::new(
        ErrorKind::Connection,
        format!(
            "{at}: timed out after {} s without an answer from the server (is the host and port right, and \
             the server up? a firewall or a stopped server can swallow connections; raise \
             connect_timeout=SECONDS in the URL for a slow network)",
            limit.as_secs_f64()
        ),
    )
}

/// Why a connection could not be opened, from the driver's error.
fn connect_err(
    e: tokio_postgres::Error,
    at: &str,
    config: &ConnConfig,
    offers_tls: Option<bool>,
) -> Error {
    let user = config.pg.get_user().unwrap_or("postgres");
    let dbname = config.pg.get_dbname().unwrap_or(user);
    if let Some(db) = e.as_db_error() {
        let (kind, why) = refusal(db.code().code(), db.message(), user, dbname, offers_tls);
        return with_cause(Error::new(kind, format!("{at}: {why}")), e);
    }
    if let Some(io) = io_cause(&e) {
        let (kind, why) = io_refusal(io);
        return with_cause(Error::new(kind, format!("{at}: {why}")), e);
    }
    let cause = std::error::Error::source(&e).map(ToString::to_string);
    if cause.as_deref() == Some("password missing") {
        return Error::config(format!(
            "{at}: the server asks for a password for user {user:?} and the URL has none: \
             write it as postgres://{user}:PASSWORD@host/db (or ${{VAR}} from the environment)"
        ));
    }
    if e.is_closed() {
        return Error::new(
            ErrorKind::Connection,
            format!("{at}: the server closed the connection during startup"),
        );
    }
    with_cause(Error::new(ErrorKind::Connection, format!("{at}: {e}")), e)
}

/// The first I/O error in `e`'s chain of causes.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

/// What a socket error while connecting means, and its kind.
pub(crate) fn io_refusal(e: &io::Error) -> (ErrorKind, String) {
    let text = e.to_string();
    let why = match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            "connection refused: nothing listens on that port (is PostgreSQL running, and on that port?)"
                .to_string()
        }
        io::ErrorKind::TimedOut => {
            "timed out: the server did not answer (is the host and port right? a firewall may drop the \
             packets)"
                .to_string()
        }
        io::ErrorKind::NotFound => {
            "no server socket there (is PostgreSQL running, and is the socket directory right?)".to_string()
        }
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => "the server closed the connection during startup".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied opening the connection".to_string(),
        _ if text.contains("lookup address") || text.contains("resolve") => {
            "the host name cannot be resolved (name not found: check the host in the URL and the DNS)"
                .to_string()
        }
        _ if text.contains("unreachable") => "the host is unreachable from here".to_string(),
        _ => format!("the connection failed ({text})"),
    };
    (ErrorKind::Connection, why)
}

/// Whether a refusal says no pg_hba.conf line allows a connection without TLS.
pub(crate) fn without_encryption(code: &str, message: &str) -> bool {
    code == "28000" && message.contains("no encryption")
}

/// Whether the server at `host:port` offers TLS: it answers an SSLRequest
/// with `S`. `None` when that cannot be told within a few seconds.
pub(crate) async fn offers_tls(host: &str, port: u16) -> Option<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        // Length 8, then the SSLRequest code 80877103.
        s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .ok()?;
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await.ok()?;
        Some(answer[0] == b'S')
    };
    tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .ok()
        .flatten()
}

/// What a server's refusal to open a session means, from its SQLSTATE `code`
/// and `message`, and its kind. `offers_tls`: whether the server accepts TLS,
/// when known. Shared by query and replication connections.
pub(crate) fn refusal(
    code: &str,
    message: &str,
    user: &str,
    dbname: &str,
    offers_tls: Option<bool>,
) -> (ErrorKind, String) {
    match code {
        "28P01" => (
            ErrorKind::Config,
            format!(
                "authentication failed for user {user:?}: the server rejected the password; check the \
                 user and password in the URL"
            ),
        ),
        _ if without_encryption(code, message) && offers_tls == Some(true) => (
            ErrorKind::Config,
            format!(
                "TLS required: no line of the server's pg_hba.conf lets user {user:?} into database \
                 {dbname:?} without encryption, and the server offers TLS, so it expects it; siphon does \
                 not support TLS to PostgreSQL yet: allow this client with a `host` line in pg_hba.conf, \
                 or reach the server through a TLS tunnel (stunnel, an SSH tunnel)"
            ),
        ),
        "28000" if message.starts_with("role ") && message.ends_with("does not exist") => (
            ErrorKind::Config,
            format!(
                "user {user:?} does not exist on the server: fix the user in the URL, or create it \
                 (CREATE ROLE … LOGIN)"
            ),
        ),
        c if c.starts_with("28") => (
            ErrorKind::Config,
            format!(
                "authentication failed for user {user:?}: the server does not let this user connect to \
                 database {dbname:?} from this address; add a pg_hba.conf entry for it or use another \
                 user"
            ),
        ),
        "3D000" => (
            ErrorKind::Config,
            format!(
                "database {dbname:?} does not exist: create it (CREATE DATABASE) or fix the database name \
                 in the URL"
            ),
        ),
        "53300" => (
            ErrorKind::Transient,
            "the server has too many connections already".to_string(),
        ),
        "57P03" => (
            ErrorKind::Connection,
            "the server is starting up or shutting down".to_string(),
        ),
        "42501" => (
            ErrorKind::Privilege,
            format!(
                "user {user:?} may not connect: {message}; grant it CONNECT on the database (or \
                 LOGIN), or use another user"
            ),
        ),
        _ => (ErrorKind::Database, message.to_string()),
    }
}

/// Maps a driver error to siphon's kinds, and so to the retry policy: lost
/// connections, deadlocks, serialization failures and timeouts are retried
/// soon, a missing privilege waits for an operator, refused data is never
/// retried; the server's message and code are kept, and the driver error is
/// the source.
pub(crate) fn pg_err(e: tokio_postgres::Error, doing: &str) -> Error {
    let kind = if e.is_closed() || e.as_db_error().is_none() && e.code().is_none() {
        ErrorKind::Connection
    } else {
        e.code()
            .map_or(ErrorKind::Database, |c| sqlstate_kind(c.code()))
    };
    match e.as_db_error() {
        Some(db) => {
            let detail = format!("{}: {} ({})", doing, db.message(), db.code().code());
            Error::new(kind, detail).source(e)
        }
        // The driver's own text names only the kind ("error communicating with
        // the server"); its cause says what happened (e.g. "Connection timed out").
        None => with_cause(Error::new(kind, format!("{doing}: {e}")), e),
    }
}

/// The kind of a server error, from its SQLSTATE.
pub(crate) fn sqlstate_kind(code: &str) -> ErrorKind {
    match code {
        // admin shutdown, crash shutdown, cannot connect now, and the whole
        // connection exception class
        "57P01" | "57P02" | "57P03" => ErrorKind::Connection,
        c if c.starts_with("08") => ErrorKind::Connection,
        // serialization failure, deadlock, too many connections
        "40001" | "40P01" | "53300" => ErrorKind::Transient,
        // statement_timeout (query canceled), lock_timeout
        "57014" | "55P03" => ErrorKind::Timeout,
        // insufficient privilege: an operator grants it
        "42501" => ErrorKind::Privilege,
        // Data exceptions, integrity constraint violations (a CHECK, a
        // foreign key), and statements the schema refuses: the same input
        // fails again until someone fixes it.
        c if c.starts_with("22") || c.starts_with("23") || c.starts_with("42") => {
            ErrorKind::BadInput
        }
        _ => ErrorKind::Database,
    }
}

/// `error` with the driver error's inner cause (an I/O error, the server's
/// refusal) as its source, or the driver error itself when it has none.
fn with_cause(error: Error, e: tokio_postgres::Error) -> Error {
    if std::error::Error::source(&e).is_none() {
        return error.source(e);
    }
    match e.into_source() {
        Some(cause) => error.boxed_source(cause),
        None => error,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_default_when_absent_and_follow_the_url() {
        let c = ConnConfig::parse("postgres://u:pw@db.example:6543/shop").unwrap();
        assert_eq!(c.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(c.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(c.replication_timeout, Some(DEFAULT_REPLICATION_TIMEOUT));
        assert!(c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(
            c.get_keepalives_interval(),
            Some(DEFAULT_KEEPALIVES_INTERVAL)
        );
        assert_eq!(c.get_keepalives_retries(), Some(DEFAULT_KEEPALIVES_RETRIES));
        assert_eq!(c.get_tcp_user_timeout(), Some(&DEFAULT_TCP_USER_TIMEOUT));
        assert_eq!(c.endpoint(), "db.example:6543");

        let c = ConnConfig::parse(
            "postgres://u@h/db?connect_timeout=3&replication_timeout=7&application_name=x&keepalives_idle=5",
        )
        .unwrap();
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.replication_timeout, Some(Duration::from_secs(7)));
        assert_eq!(c.get_application_name(), Some("x"));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(c.endpoint(), "h:5432");
        let r = c.replication_config("s", "p").unwrap();
        assert_eq!(r.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(r.timeout, Some(Duration::from_secs(7)));

        // 0 means no limit, as in libpq.
        let c =
            ConnConfig::parse("postgres://u@h/db?replication_timeout=0&connect_timeout=0").unwrap();
        assert_eq!(c.connect_timeout, None);
        assert_eq!(c.replication_timeout, None);
        assert_eq!(c.get_connect_timeout(), None);
        let r = c.replication_config("s", "p").unwrap();
        assert_eq!((r.connect_timeout, r.timeout), (None, None));

        // Only siphon's parameter is taken out of a keyword string.
        let c = ConnConfig::parse(
            "host=/tmp port=5433 user=bob replication_timeout = 9 options='-c a=b' dbname=d",
        )
        .unwrap();
        assert_eq!(c.replication_timeout, Some(Duration::from_secs(9)));
        assert_eq!(c.get_options(), Some("-c a=b"));
        assert_eq!(c.get_dbname(), Some("d"));
        assert_eq!(c.endpoint(), "/tmp/.s.PGSQL.5433");
    }

    #[test]
    fn bad_values_and_tls_are_config_errors_without_the_password() {
        for url in [
            "postgres://u:hunter2@h/db?replication_timeout=soon",
            "postgres://u:hunter2@h/db?connect_timeout=x",
            "postgres://u:hunter2@h/db?sslmode=require",
            "postgres://u:hunter2@h/db?colour=red",
        ] {
            let e = check_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let e = check_url("postgres://u@h/db?sslmode=require").unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        assert!(check_url("postgres://u@h/db?sslmode=prefer&replication_timeout=30").is_ok());
    }

    #[test]
    fn refusals_name_the_cause() {
        let (kind, why) = refusal(
            "28P01",
            "password authentication failed",
            "app",
            "shop",
            None,
        );
        assert_eq!(kind, ErrorKind::Config);
        assert!(
            why.contains("authentication failed for user \"app\""),
            "{why}"
        );
        let msg = "no pg_hba.conf entry for host \"10.0.0.1\", user \"app\", database \"shop\", no encryption";
        let (_, why) = refusal("28000", msg, "app", "shop", Some(true));
        assert!(why.starts_with("TLS required"), "{why}");
        let (_, why) = refusal("28000", msg, "app", "shop", Some(false));
        assert!(why.contains("pg_hba.conf entry"), "{why}");
        assert!(!why.contains("TLS required"), "{why}");
        let (kind, why) = refusal(
            "3D000",
            "database \"shop\" does not exist",
            "app",
            "shop",
            None,
        );
        assert_eq!(kind, ErrorKind::Config);
        assert!(why.contains("database \"shop\" does not exist"), "{why}");
        let (kind, why) = refusal(
            "28000",
            "role \"ghost\" does not exist",
            "ghost",
            "shop",
            None,
        );
        assert_eq!(kind, ErrorKind::Config);
        assert!(why.starts_with("user \"ghost\" does not exist"), "{why}");
        assert!(!why.contains("pg_hba"), "{why}");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(io_refusal(&refused).1.starts_with("connection refused"));
        let (kind, why) = refusal("42501", "permission denied", "app", "shop", None);
        assert_eq!(kind, ErrorKind::Privilege);
        assert!(why.contains("grant it CONNECT"), "{why}");
        assert_eq!(
            refusal("53300", "too many", "a", "b", None).0,
            ErrorKind::Transient
        );
    }

    #[test]
    fn sqlstates_map_to_the_retry_policy() {
        use siphon_core::Action::*;
        for (code, kind, action) in [
            ("08006", ErrorKind::Connection, RetrySoon),
            ("08P01", ErrorKind::Connection, RetrySoon),
            ("57P01", ErrorKind::Connection, RetrySoon),
            ("57P02", ErrorKind::Connection, RetrySoon),
            ("57P03", ErrorKind::Connection, RetrySoon),
            ("40001", ErrorKind::Transient, RetrySoon),
            ("40P01", ErrorKind::Transient, RetrySoon),
            ("53300", ErrorKind::Transient, RetrySoon),
            ("57014", ErrorKind::Timeout, RetrySoon),
            ("55P03", ErrorKind::Timeout, RetrySoon),
            ("53100", ErrorKind::Database, RetrySoon),
            ("42501", ErrorKind::Privilege, WaitForOperator),
            ("22003", ErrorKind::BadInput, Never),
            ("23514", ErrorKind::BadInput, Never),
            ("42P01", ErrorKind::BadInput, Never),
        ] {
            let k = sqlstate_kind(code);
            assert_eq!((k, k.action()), (kind, action), "{code}");
        }
    }

    /// The errors a real server gives for a serialization failure, a
    /// terminated backend, a statement timeout and a missing privilege are
    /// classed as the retry policy needs, and keep the driver error as their
    /// source.
    #[tokio::test]
    async fn a_real_servers_errors_are_classed_for_the_retry_policy() {
        let pg = siphon_testkit::Postgres::shared().unwrap();
        let url = pg.create_database().unwrap();
        let a = connect(&url, "source").await.unwrap();
        let b = connect(&url, "source").await.unwrap();
        a.batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1);
             CREATE ROLE siphon_no_grants_test; GRANT siphon_no_grants_test TO CURRENT_USER;",
        )
        .await
        .or_else(|e| {
            // The role is shared by the cluster: another database's run made it.
            if e.code().map(|c| c.code()) == Some("42710") {
                Ok(())
            } else {
                Err(e)
            }
        })
        .unwrap();

        // A concurrent update under REPEATABLE READ: 40001.
        a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM t")
            .await
            .unwrap();
        b.batch_execute("UPDATE t SET v = 2 WHERE id = 1")
            .await
            .unwrap();
        let e = a
            .batch_execute("UPDATE t SET v = 3 WHERE id = 1")
            .await
            .unwrap_err();
        let e = pg_err(e, "applying a batch");
        assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
        assert!(e.to_string().contains("40001"), "{e}");
        assert!(matches!(e.retry(), siphon_core::Retry::After(_)), "{e}");
        let source = std::error::Error::source(&e).expect("the driver error is kept");
        assert!(source.downcast_ref::<tokio_postgres::Error>().is_some());
        a.batch_execute("ROLLBACK").await.unwrap();

        // A statement that runs past statement_timeout: 57014.
        let e = a
            .batch_execute("SET statement_timeout = 50; SELECT pg_sleep(5)")
            .await
            .unwrap_err();
        let e = pg_err(e, "reading");
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        a.batch_execute("RESET statement_timeout").await.unwrap();

        // A role without a grant on the table: 42501, for an operator.
        let e = a
            .batch_execute("SET ROLE siphon_no_grants_test; SELECT * FROM t")
            .await
            .unwrap_err();
        let e = pg_err(e, "reading");
        assert_eq!(e.kind(), ErrorKind::Privilege, "{e}");
        assert_eq!(e.retry(), siphon_core::Retry::WaitForOperator);
        a.batch_execute("RESET ROLE").await.unwrap();

        // A backend terminated by an administrator: 57P01 or a closed connection.
        let pid = a
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get::<_, i32>(0);
        b.execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let e = a.batch_execute("SELECT 1").await.unwrap_err();
        let e = pg_err(e, "reading");
        assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
        assert!(matches!(e.retry(), siphon_core::Retry::After(_)), "{e}");
    }
}
