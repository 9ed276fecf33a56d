//! What a replication session connects with: the server's address, the
//! user, the slot and publication, the protocol version and the time limits,
//! read from a libpq-style configuration.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use siphon_core::{Error, Result};
use tokio_postgres::config::{Host, SslMode};

use super::{
    quote_ident, quote_literal, Lsn, DEFAULT_BUFFER, DEFAULT_BUFFER_BYTES, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_STATUS_INTERVAL, DEFAULT_TIMEOUT,
};

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// A host name or IP address, reached over TCP.
    Tcp(String),
    /// The directory of the server's unix socket (`.s.PGSQL.<port>` in it).
    Unix(PathBuf),
}

/// What [`ReplicationStream::connect`] needs.
#[derive(Clone)]
pub struct ReplicationConfig {
    /// The server.
    pub addr: ServerAddr,
    /// Its port (also names the unix socket).
    pub port: u16,
    /// The role; it needs the `REPLICATION` attribute.
    pub user: String,
    /// The password, if the server asks for one.
    pub password: Option<Vec<u8>>,
    /// The database whose changes the slot decodes.
    pub dbname: String,
    /// The logical replication slot (made with the `pgoutput` plugin).
    pub slot: String,
    /// The publication whose tables are streamed.
    pub publication: String,
    /// Where to start; [`Lsn::INVALID`] starts at the slot's confirmed
    /// position. It is also the applied position reported until
    /// [`ReplicationStream::set_applied`] moves it, so it must be applied already.
    pub start_lsn: Lsn,
    /// The `pgoutput` protocol version: 1, or 2 for streamed transactions.
    pub proto_version: u32,
    /// Whether large in-progress transactions are streamed (`streaming 'on'`,
    /// protocol version 2 only).
    pub streaming: bool,
    /// Whether logical decoding messages are sent (`messages 'true'`,
    /// PostgreSQL 14+): siphon's watermarks.
    pub messages: bool,
    /// Shown in `pg_stat_replication` and the server log.
    pub application_name: String,
    /// How often the applied position is reported to the server; must stay
    /// well under the server's `wal_sender_timeout`.
    pub status_interval: Duration,
    /// How many events are read ahead of the caller.
    pub buffer: usize,
    /// How many bytes of messages are read ahead of the caller: once the
    /// events not taken yet hold this many, nothing more is read from the
    /// server until the caller takes one (a single larger message is read
    /// whole). Bounds memory where `buffer` events of huge rows would not.
    pub buffer_bytes: usize,
    /// How long connecting, starting up and authenticating may take;
    /// unbounded when `None`.
    pub connect_timeout: Option<Duration>,
    /// How long the server may send nothing (no data, no keepalive) before the
    /// stream fails with a [`ErrorKind::Connection`] error; at half of it the
    /// server is asked for a reply. Also bounds `START_REPLICATION` and each
    /// write. Unbounded when `None`.
    pub timeout: Option<Duration>,
    /// Server settings for the session (the startup `options` parameter,
    /// e.g. `-c logical_decoding_work_mem=64kB`), as in the URL's `options`.
    pub options: Option<String>,
}

impl fmt::Debug for ReplicationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationConfig")
            .field("addr", &self.addr)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("slot", &self.slot)
            .field("publication", &self.publication)
            .field("start_lsn", &self.start_lsn)
            .field("proto_version", &self.proto_version)
            .field("streaming", &self.streaming)
            .field("messages", &self.messages)
            .field("application_name", &self.application_name)
            .field("status_interval", &self.status_interval)
            .field("buffer", &self.buffer)
            .field("buffer_bytes", &self.buffer_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("options", &self.options)
            .finish()
    }
}

impl ReplicationConfig {
    /// The connection settings of `config` (its first host and port, user,
    /// password, database, connect timeout, else [`DEFAULT_CONNECT_TIMEOUT`]),
    /// streaming `slot` for `publication` with protocol version 1 from the
    /// slot's confirmed position, failing after [`DEFAULT_TIMEOUT`] of silence.
    /// The application name is the config's, else the slot's name.
    ///
    /// Fails when the config requires TLS (`sslmode=require`), which this
    /// client does not support.
    pub fn from_pg_config(
        config: &tokio_postgres::Config,
        slot: &str,
        publication: &str,
    ) -> Result<Self> {
        match config.get_ssl_mode() {
            SslMode::Disable | SslMode::Prefer => {}
            _ => {
                return Err(Error::config(
                    "the replication connection does not support TLS, but the URL requires it \
                     (sslmode=require): use sslmode=disable or prefer, or connect over a unix socket",
                ))
            }
        }
        let addr = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => ServerAddr::Tcp(h.clone()),
            Some(Host::Unix(p)) => ServerAddr::Unix(p.clone()),
            None => ServerAddr::Tcp("localhost".to_string()),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres").to_string();
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let application_name = config.get_application_name().unwrap_or(slot).to_string();
        Ok(ReplicationConfig {
            addr,
            port,
            password: config.get_password().map(<[u8]>::to_vec),
            user,
            dbname,
            slot: slot.to_string(),
            publication: publication.to_string(),
            start_lsn: Lsn::INVALID,
            proto_version: 1,
            streaming: false,
            messages: false,
            application_name,
            status_interval: DEFAULT_STATUS_INTERVAL,
            buffer: DEFAULT_BUFFER,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            connect_timeout: Some(
                config
                    .get_connect_timeout()
                    .copied()
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            ),
            timeout: Some(DEFAULT_TIMEOUT),
            options: config.get_options().map(str::to_string),
        })
    }

    /// Starts at `lsn` (the end of the last applied transaction).
    pub fn with_start_lsn(mut self, lsn: Lsn) -> Self {
        self.start_lsn = lsn;
        self
    }

    /// The `pgoutput` protocol version and whether to stream large
    /// transactions (version 2 only; checked by [`ReplicationStream::connect`]).
    pub fn with_protocol(mut self, proto_version: u32, streaming: bool) -> Self {
        self.proto_version = proto_version;
        self.streaming = streaming;
        self
    }

    /// Whether logical decoding messages are sent (PostgreSQL 14+).
    pub fn with_messages(mut self, messages: bool) -> Self {
        self.messages = messages;
        self
    }

    /// The name shown in `pg_stat_replication`.
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// How often the applied position is reported.
    pub fn with_status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// How many events are read ahead of the caller.
    pub fn with_buffer(mut self, events: usize) -> Self {
        self.buffer = events;
        self
    }

    /// How many bytes of messages are read ahead of the caller (see
    /// [`ReplicationConfig::buffer_bytes`]).
    pub fn with_buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    /// How long the server may stay silent; `None`: no limit.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where the server is, for messages: `host:port` or the socket's path.
    pub(super) fn endpoint(&self) -> String {
        match &self.addr {
            ServerAddr::Tcp(host) if host.contains(':') => format!("[{host}]:{}", self.port),
            ServerAddr::Tcp(host) => format!("{host}:{}", self.port),
            ServerAddr::Unix(dir) => dir
                .join(format!(".s.PGSQL.{}", self.port))
                .display()
                .to_string(),
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        if !matches!(self.proto_version, 1 | 2) {
            return Err(Error::config(format!(
                "pgoutput protocol version {} is not supported (use 1 or 2)",
                self.proto_version
            )));
        }
        if self.streaming && self.proto_version < 2 {
            return Err(Error::config(
                "streaming of in-progress transactions needs pgoutput protocol version 2",
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::config(
                "the replication timeout must be positive (or none)",
            ));
        }
        if self.status_interval.is_zero() {
            return Err(Error::config("the status interval must be positive"));
        }
        if self.buffer == 0 {
            return Err(Error::config(
                "the read-ahead buffer must hold at least one event",
            ));
        }
        if self.buffer_bytes == 0 {
            return Err(Error::config(
                "the read-ahead buffer must hold at least one byte",
            ));
        }
        for (what, value) in [
            ("slot", &self.slot),
            ("publication", &self.publication),
            ("user", &self.user),
            ("database", &self.dbname),
            ("application name", &self.application_name),
            ("options", self.options.as_ref().unwrap_or(&String::new())),
        ] {
            if value.contains('\0') {
                return Err(Error::config(format!(
                    "the {what} setting contains a NUL byte"
                )));
            }
        }
        if self.slot.is_empty() || self.publication.is_empty() {
            return Err(Error::config(
                "the slot and publication names must not be empty",
            ));
        }
        Ok(())
    }

    /// The `START_REPLICATION` command for this configuration.
    pub fn start_replication_command(&self) -> String {
        let mut options = vec![
            format!(
                "proto_version {}",
                quote_literal(&self.proto_version.to_string())
            ),
            // pgoutput splits the list as identifiers: quote the name inside the literal.
            format!(
                "publication_names {}",
                quote_literal(&quote_ident(&self.publication))
            ),
        ];
        if self.streaming {
            options.push("streaming 'on'".to_string());
        }
        if self.messages {
            options.push("messages 'true'".to_string());
        }
        format!(
            "START_REPLICATION SLOT {} LOGICAL {} ({})",
            quote_ident(&self.slot),
            self.start_lsn,
            options.join(", ")
        )
    }
}
