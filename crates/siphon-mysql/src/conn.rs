//! Connections, the server's flavor, errors, and the SQL quoting every part of
//! the connector uses.
//!
//! Every connection siphon opens runs in UTC (`SET time_zone = '+00:00'`) with
//! `utf8mb4`, so a `timestamp` reads and writes as UTC whatever the server's or
//! the account's default zone, and a `datetime` (no zone) is never shifted.

use std::fmt;
use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder, Pool};
use siphon_core::{Error, ErrorKind, Result};

/// How long opening a connection may take when the URL has no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// URL parameters siphon reads itself; the driver does not know them.
const SIPHON_PARAMS: &[&str] = &["zero_dates", "connect_timeout"];

/// Statements run on every new connection.
const SESSION_INIT: &[&str] = &["SET time_zone = '+00:00'", "SET NAMES utf8mb4"];

/// Which server answers: MariaDB and MySQL share the protocol but differ in
/// GTIDs, binlog events and a few types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB (`VERSION()` ends in `-MariaDB`, GTIDs are `domain-server-seq`).
    MariaDb,
    /// MySQL (GTIDs are `uuid:interval` sets).
    MySql,
}

/// The server a connection reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// MariaDB or MySQL.
    pub flavor: Flavor,
    /// `VERSION()` as the server reports it (`10.11.6-MariaDB-0+deb12u1-log`).
    pub version: String,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.flavor {
            Flavor::MariaDb => write!(f, "MariaDB {}", self.version),
            Flavor::MySql => write!(f, "MySQL {}", self.version),
        }
    }
}

/// What a source does with MySQL's zero dates (`0000-00-00`,
/// `0000-00-00 00:00:00`, and dates with a zero month or day), which no other
/// engine holds. Set with the URL parameter `zero_dates=null|error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroDates {
    /// Read them as NULL.
    Null,
    /// Stop the table with an error naming the column and this setting (the default).
    #[default]
    Error,
}

/// A `mysql://` URL parsed, siphon's own parameters taken out. Its `Debug`
/// hides the password.
#[derive(Clone)]
pub struct ConnConfig {
    opts: Opts,
    zero_dates: ZeroDates,
    connect_timeout: Option<Duration>,
}

impl fmt::Debug for ConnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnConfig")
            .field("endpoint", &self.endpoint())
            .field("database", &self.database())
            .field("zero_dates", &self.zero_dates)
            .finish()
    }
}

/// Checks a MySQL connection URL the way opening it would, without
/// connecting. The error never shows the password.
pub fn check_url(url: &str) -> Result<()> {
    ConnConfig::parse(url).map(drop)
}

impl ConnConfig {
    /// Parses `mysql://user:password@host:port/database?params`. siphon's own
    /// parameters: `zero_dates=null|error`, `connect_timeout=SECONDS` (0: no
    /// limit); every other parameter goes to the driver.
    pub fn parse(url: &str) -> Result<ConnConfig> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut zero_dates = ZeroDates::default();
        let mut connect_timeout = Some(DEFAULT_CONNECT_TIMEOUT);
        let mut passed = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "zero_dates" => {
                    zero_dates = match value {
                        "null" => ZeroDates::Null,
                        "error" => ZeroDates::Error,
                        other => {
                            return Err(Error::config(format!(
                            "zero_dates={other:?} in a mysql:// URL: write zero_dates=null (read \
                                 zero dates as NULL) or zero_dates=error (stop the table)"
                        )))
                        }
                    }
                }
                "connect_timeout" => {
                    let secs: f64 = value.parse().ok().filter(|s: &f64| *s >= 0.0).ok_or_else(|| {
                        Error::config(format!(
                            "connect_timeout={value:?} in a mysql:// URL: write a number of seconds \
                             (0 for no limit)"
                        ))
                    })?;
                    connect_timeout = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
                }
                _ if SIPHON_PARAMS.contains(&key) => {}
                _ => passed.push(pair),
            }
        }
        let driver_url = if passed.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", passed.join("&"))
        };
        let opts = Opts::from_url(&driver_url).map_err(|e| {
            // The driver's message never holds the password; the URL might.
            Error::config(format!("not a valid mysql:// URL: {e}"))
        })?;
        let opts = OptsBuilder::from_opts(opts)
            // `setup`, not `init`: the pool resets a connection it takes back
            // (COM_RESET_CONNECTION), which drops session variables, and only
            // setup statements run again after a reset.
            .setup(SESSION_INIT.iter().map(|s| s.to_string()).collect())
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .into();
        Ok(ConnConfig {
            opts,
            zero_dates,
            connect_timeout,
        })
    }

    /// The database the URL names, if any.
    pub fn database(&self) -> Option<&str> {
        self.opts.db_name()
    }

    /// The user the URL names (`root` when none).
    pub fn user(&self) -> &str {
        self.opts.user().unwrap_or("root")
    }

    /// What to do with zero dates.
    pub fn zero_dates(&self) -> ZeroDates {
        self.zero_dates
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.opts.ip_or_hostname(), self.opts.tcp_port())
    }

    /// The driver's options (session setup included).
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    /// A pool of connections with the session setup; connections open lazily.
    pub fn pool(&self) -> Pool {
        Pool::new(self.opts.clone())
    }

    /// Opens one connection within the URL's `connect_timeout`, with an error
    /// that says where and why when it cannot. `what` names the role in
    /// errors ("source", "target").
    pub async fn connect(&self, what: &str) -> Result<Conn> {
        let at = format!("cannot connect to the MySQL {what} at {}", self.endpoint());
        let attempt = Conn::new(self.opts.clone());
        let result = match self.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, attempt).await.map_err(|_| {
                Error::new(
                    ErrorKind::Connection,
                    format!(
                        "{at}: timed out after {} s without an answer (is the host and port right, and \
                         the server up? raise connect_timeout=SECONDS in the URL for a slow network)",
                        limit.as_secs_f64()
                    ),
                )
            })?,
            None => attempt.await,
        };
        result.map_err(|e| my_err(e, &at))
    }
}

/// Which server a connection reached, from `VERSION()`.
pub async fn server(conn: &mut Conn) -> Result<Server> {
    use mysql_async::prelude::Queryable;
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| my_err(e, "reading the server's version"))?
        .unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    Ok(Server { flavor, version })
}

/// Maps a driver error to siphon's kinds, and so to the retry policy: lost
/// connections, deadlocks and lock waits are retried soon, a missing
/// privilege waits for an operator, refused data is never retried. The
/// server's message and code are kept; the driver error is the source.
pub fn my_err(e: mysql_async::Error, doing: &str) -> Error {
    if packet_too_large(&e) {
        return packet_err(e, doing, "server");
    }
    match &e {
        mysql_async::Error::Server(s) => {
            let kind = server_kind(s.code);
            let hint = match s.code {
                1045 => " (check the user and password in the URL)",
                1049 => " (create the database, or fix its name in the URL)",
                1142 | 1143 | 1227 | 1044 => {
                    " (grant the privilege to the user siphon connects as)"
                }
                // A binlog reader's error: `binlog_err` names the pipeline's fix.
                1236 => " (the source's binlog no longer holds the position asked for)",
                _ => "",
            };
            let message = format!("{doing}: {} (error {}){hint}", s.message, s.code);
            Error::new(kind, message).source(e)
        }
        mysql_async::Error::Io(_) => {
            Error::new(ErrorKind::Connection, format!("{doing}: {e}")).source(e)
        }
        mysql_async::Error::Driver(d) => {
            let kind = match d {
                mysql_async::DriverError::ConnectionClosed
                | mysql_async::DriverError::PoolDisconnected => ErrorKind::Connection,
                _ => ErrorKind::Database,
            };
            Error::new(kind, format!("{doing}: {e}")).source(e)
        }
        mysql_async::Error::Url(_) => Error::config(format!("{doing}: {e}")).source(e),
        mysql_async::Error::Other(_) => {
            Error::new(ErrorKind::Database, format!("{doing}: {e}")).source(e)
        }
    }
}

/// [`my_err`] for reading `pipeline`'s binlog: error 1236 (the server no
/// longer has the binlog from the pipeline's checkpoint on: purged, or the
/// checkpoint's GTIDs are gone) names the command that copies the pipeline's
/// tables again, `siphon sync resync` with the pipeline's name. Every table
/// of the pipeline reads the one binlog, so all of them stop with it.
///
/// The server's "A slave with the same server_uuid/server_id … has
/// connected" (any code) means another reader took this pipeline's
/// `server_id` (see [`crate::cdc::server_id`]): the error says so, and how
/// to end it, and is a connection error, retried, not a lost position.
pub fn binlog_err(e: mysql_async::Error, doing: &str, pipeline: &str) -> Error {
    match &e {
        mysql_async::Error::Server(s) if s.message.contains("same server_uuid/server_id") => {
            let message = format!(
                "{doing}: {} (error {}) (another binlog reader connected to the source with this \
                 pipeline's server_id {}, which siphon derives from the pipeline's name alone, and \
                 the server ended this connection: two siphon deployments, each with its own \
                 state store, run a pipeline named `{pipeline}` against this server (or a replica \
                 uses that server_id) and keep ending each other's connection; give one of the \
                 pipelines another name)",
                s.message,
                s.code,
                crate::cdc::server_id(pipeline)
            );
            Error::new(ErrorKind::Connection, message).source(e)
        }
        mysql_async::Error::Server(s) if s.code == 1236 => {
            let message = format!(
                "{doing}: {} (error 1236) (the source's binlog no longer holds the changes since \
                 the pipeline's checkpoint: copy its tables again with `{}`, and keep binlogs \
                 longer (binlog_expire_logs_seconds / expire_logs_days) than a pipeline may stop)",
                s.message,
                crate::cdc::resync(pipeline)
            );
            Error::new(ErrorKind::PositionLost, message).source(e)
        }
        _ => my_err(e, doing),
    }
}

/// Which server a statement ran on, for an error whose fix is a setting there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The server siphon reads from.
    Source,
    /// The server siphon writes to.
    Target,
}

/// [`my_err`] for a statement on `side`: a packet bigger than
/// `max_allowed_packet` names that side and the setting to raise there.
pub fn my_err_on(e: mysql_async::Error, doing: &str, side: Side) -> Error {
    if packet_too_large(&e) {
        return too_large_on(e, doing, side);
    }
    my_err(e, doing)
}

/// The error of a row bigger than `max_allowed_packet` on `side`, for a
/// caller that knows it was (the server drops the connection of a load whose
/// line is too long, with no error code).
pub fn too_large_on(e: mysql_async::Error, doing: &str, side: Side) -> Error {
    let side = match side {
        Side::Source => "source",
        Side::Target => "target",
    };
    packet_err(e, doing, side)
}

/// Whether `e` says a packet was bigger than `max_allowed_packet`: the
/// server's error 1153 (or 1301, a result larger than it), or the driver's
/// refusal to send or read one (it holds the server's value).
pub fn packet_too_large(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => matches!(s.code, 1153 | 1301),
        mysql_async::Error::Driver(mysql_async::DriverError::PacketTooLarge) => true,
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io
            .get_ref()
            .is_some_and(|inner| inner.to_string().contains("larger than max_allowed_packet")),
        _ => false,
    }
}

/// The error of a packet bigger than `max_allowed_packet` on the `side`
/// server: a setting an operator raises, never retried as a dropped connection.
fn packet_err(e: mysql_async::Error, doing: &str, side: &str) -> Error {
    Error::config(format!(
        "{doing}: a row is bigger than the {side}'s max_allowed_packet: raise it on the {side} \
         with `SET GLOBAL max_allowed_packet = 1073741824` (1 GiB, the most it takes; set it in \
         the server's configuration file too so that a restart keeps it), then run again"
    ))
    .source(e)
}

/// The kind of a server error, from its code.
pub fn server_kind(code: u16) -> ErrorKind {
    match code {
        // lock wait timeout, query interrupted by max_statement_time / max_execution_time
        1205 | 1969 | 3024 => ErrorKind::Timeout,
        // deadlock, too many connections, server shutting down, read-only for now
        1213 | 1040 | 1053 | 1290 => ErrorKind::Transient,
        // server gone away, lost connection, aborted, killed
        2006 | 2013 | 1927 | 1152 | 1317 => ErrorKind::Connection,
        // access denied to a database, a table, a column; a SUPER/REPLICATION privilege
        1044 | 1142 | 1143 | 1227 => ErrorKind::Privilege,
        // wrong user or password; unknown database
        1045 | 1049 => ErrorKind::Config,
        // the binlog was purged past the requested position (or GTID)
        1236 => ErrorKind::PositionLost,
        // duplicate key, foreign key, NOT NULL, CHECK, out of range, too long,
        // bad value, unknown column or table, syntax
        1048 | 1062 | 1064 | 1146 | 1054 | 1136 | 1264 | 1265 | 1292 | 1366 | 1406 | 1451
        | 1452 | 3819 | 4025 | 1690 | 1367 | 1411 => ErrorKind::BadInput,
        _ => ErrorKind::Database,
    }
}

/// `` `name` `` with inner backticks doubled.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `` `database`.`table` ``, or just `` `table` `` without a database.
pub fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", ident(s), ident(name)),
        None => ident(name),
    }
}

/// `'text'` with quotes and backslashes escaped, for the few places SQL
/// takes no parameters (correct whether or not `NO_BACKSLASH_ESCAPES` is set).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// `` `a`, `b` `` for column names.
pub fn column_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(ident).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphon_parameters_are_taken_out_and_checked() {
        let c = ConnConfig::parse("mysql://u:secret@db.example:3307/app?zero_dates=null").unwrap();
        assert_eq!(c.zero_dates(), ZeroDates::Null);
        assert_eq!(c.database(), Some("app"));
        assert_eq!(c.endpoint(), "db.example:3307");
        assert!(!format!("{c:?}").contains("secret"));
        let e = ConnConfig::parse("mysql://u:secret@h/app?zero_dates=maybe").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("zero_dates=null"), "{e}");
        assert!(!e.to_string().contains("secret"));
        let e = ConnConfig::parse("mysql://u:secret@h/app?no_such=1").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(
            ConnConfig::parse("mysql://h/app").unwrap().zero_dates(),
            ZeroDates::Error
        );
    }

    #[test]
    fn quoting_doubles_what_it_must() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(qualified(Some("d"), "t"), "`d`.`t`");
        assert_eq!(literal(r"it's \n"), r"'it''s \\n'");
    }

    #[test]
    fn server_codes_map_to_the_retry_policy() {
        assert_eq!(server_kind(1213), ErrorKind::Transient);
        assert_eq!(server_kind(1205), ErrorKind::Timeout);
        assert_eq!(server_kind(1142), ErrorKind::Privilege);
        assert_eq!(server_kind(1236), ErrorKind::PositionLost);
        assert_eq!(server_kind(3819), ErrorKind::BadInput);
        assert_eq!(server_kind(2013), ErrorKind::Connection);
    }

    fn server_error(code: u16, message: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn a_reader_under_the_same_server_id_is_named_with_the_fix() {
        let same = "A slave with the same server_uuid/server_id as this slave has connected to \
                    the master; the first event 'mysql-bin.000001' at 4";
        let e = binlog_err(server_error(1236, same), "reading the binlog", "p");
        assert_eq!(e.kind(), ErrorKind::Connection);
        let text = e.to_string();
        for part in [
            same,
            &format!("server_id {}", crate::cdc::server_id("p")),
            "run a pipeline named `p`",
            "give one of the pipelines another name",
        ] {
            assert!(text.contains(part), "{part:?}: {text}");
        }
        assert!(!text.contains("siphon sync resync"), "{text}");
    }

    #[test]
    fn a_purged_binlog_names_the_pipelines_resync() {
        let purged = "Could not find GTID state requested by slave in any binlog files";
        let e = binlog_err(server_error(1236, purged), "reading the binlog", "orders");
        assert_eq!(e.kind(), ErrorKind::PositionLost);
        let text = e.to_string();
        assert!(text.contains("`siphon sync resync orders`"), "{text}");
        assert!(
            text.contains(purged) && text.contains("binlog_expire_logs_seconds"),
            "{text}"
        );
        assert!(!text.contains("PIPELINE"), "{text}");
        // A name a shell would split is quoted.
        let e = binlog_err(
            server_error(1236, purged),
            "reading the binlog",
            "my orders",
        );
        assert!(
            e.to_string().contains("`siphon sync resync 'my orders'`"),
            "{e}"
        );
        // Without a pipeline, the mapping names no command at all.
        let e = my_err(server_error(1236, purged), "reading the binlog");
        assert_eq!(e.kind(), ErrorKind::PositionLost);
        assert!(!e.to_string().contains("PIPELINE"), "{e}");
        assert!(!e.to_string().contains("siphon sync resync"), "{e}");
        // Other errors map as ever.
        let e = binlog_err(
            server_error(1213, "Deadlock"),
            "reading the binlog",
            "orders",
        );
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(!e.to_string().contains("resync"), "{e}");
    }
}
