//! A logical replication client: one walsender session streaming a logical
//! slot with the `pgoutput` plugin, protocol version 1 or 2 (version 2 with
//! `streaming 'on'` sends large in-progress transactions in blocks).
//!
//! The client speaks the wire protocol itself (messages framed and parsed by
//! `postgres-protocol`): startup with `replication=database`, authentication
//! (trust, cleartext password, md5, SCRAM-SHA-256), `START_REPLICATION`, then
//! the CopyBoth stream. A background task reads the stream ahead into a
//! bounded channel, answers the server's keepalives and reports the applied
//! position every status interval. The `pgoutput` payloads are handed over
//! undecoded ([`crate::pgoutput::decode`] them).
//!
//! TLS is not supported: a configuration that requires it is refused rather
//! than connected in plain text.
//!
//! Time is bounded throughout: connecting, starting up and authenticating
//! take at most [`ReplicationConfig::connect_timeout`]; once streaming, a
//! server that sends nothing for half of [`ReplicationConfig::timeout`] is
//! asked for a reply, and one still silent at the full timeout fails the
//! stream (as PostgreSQL's own `wal_receiver_timeout` does).
//!
//! ```no_run
//! # async fn run(config: tokio_postgres::Config) -> siphon_core::Result<()> {
//! use siphon_postgres::replication::{Event, ReplicationConfig, ReplicationStream};
//! let cfg = ReplicationConfig::from_pg_config(&config, "my_slot", "my_pub")?.with_protocol(2, true);
//! let mut stream = ReplicationStream::connect(cfg).await?;
//! while let Some(event) = stream.recv().await? {
//!     if let Event::Data { wal_end, data, .. } = event {
//!         // decode `data`, apply it, then:
//!         stream.set_applied(wal_end);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{self, ErrorFields, Header};
use postgres_protocol::message::frontend;
use siphon_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use tokio_postgres::fallible_iterator::FallibleIterator;

use crate::pgoutput::{
    decode_replication_message, postgres_timestamp, standby_status_update, Lsn, ReplicationMessage,
};

mod config;
mod export;
mod reader;

pub use config::{ReplicationConfig, ServerAddr};
pub use export::ExportedSnapshot;

use reader::Reader;

/// How many events the background task reads ahead of the caller by default.
pub const DEFAULT_BUFFER: usize = 1024;
/// How many bytes of `pgoutput` messages the background task reads ahead of
/// the caller by default (see [`ReplicationConfig::buffer_bytes`]).
pub const DEFAULT_BUFFER_BYTES: usize = 16 << 20;
/// A message longer than this gets a read buffer of its own, freed with the
/// message: the connection's buffer never keeps a huge message's memory.
const OWN_BUFFER_ABOVE: usize = 1 << 20;
/// The connection's read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// How often the applied position is reported by default.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_millis(500);
/// How long [`ReplicationStream::shutdown`] waits for the server to end the copy.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take by default (see [`ReplicationConfig::connect_timeout`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = crate::conn::DEFAULT_CONNECT_TIMEOUT;
/// How long the stream may stay silent by default (see [`ReplicationConfig::timeout`]).
pub const DEFAULT_TIMEOUT: Duration = crate::conn::DEFAULT_REPLICATION_TIMEOUT;

/// What the server sent, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// XLogData: one `pgoutput` message (undecoded).
    Data {
        /// The WAL position of the message.
        wal_start: Lsn,
        /// The server's end of WAL when it sent the message.
        wal_end: Lsn,
        /// The server's clock when sending (microseconds since 2000-01-01 UTC).
        server_time: i64,
        /// The `pgoutput` message.
        data: Bytes,
    },
    /// Primary keepalive: the server is alive and its WAL ends at `wal_end`.
    /// Replies are sent by the client itself.
    KeepAlive {
        /// The server's end of WAL.
        wal_end: Lsn,
        /// The server's clock when sending.
        server_time: i64,
        /// The server asked for a reply (already sent, with the applied
        /// position): it waits for the applied position to reach `wal_end`,
        /// e.g. to shut down.
        reply_requested: bool,
    },
}

/// The bytes of the messages read ahead and not taken by the caller yet,
/// shared by the stream and its background task.
#[derive(Debug, Default)]
struct Queued {
    bytes: AtomicUsize,
    /// Signalled each time the caller takes a message.
    taken: tokio::sync::Notify,
}

impl Queued {
    /// Counts a message read.
    fn add(&self, event: &Event) {
        if let Event::Data { data, .. } = event {
            self.bytes.fetch_add(data.len(), Ordering::AcqRel);
        }
    }

    /// Counts a message taken by the caller, and wakes the reader.
    fn take(&self, event: &Event) {
        if let Event::Data { data, .. } = event {
            self.bytes.fetch_sub(data.len(), Ordering::AcqRel);
            self.taken.notify_one();
        }
    }

    /// Whether `budget` bytes or more wait for the caller.
    fn full(&self, budget: usize) -> bool {
        self.bytes.load(Ordering::Acquire) >= budget
    }
}

/// What the background task passes to the caller.
enum Item {
    Event(Event),
    /// The server ended the copy; nothing follows.
    End,
    /// The session failed; nothing follows.
    Failed(Error),
}

/// A running logical replication session; see the module docs.
///
/// Dropping it aborts the background task and closes the connection at once;
/// [`ReplicationStream::shutdown`] ends the session properly.
#[derive(Debug)]
pub struct ReplicationStream {
    events: mpsc::Receiver<Item>,
    queued: Arc<Queued>,
    applied: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<oneshot::Sender<Result<()>>>>,
    task: Option<JoinHandle<()>>,
    ended: bool,
    slot: String,
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Event(e) => e.fmt(f),
            Item::End => f.write_str("End"),
            Item::Failed(e) => write!(f, "Failed({e})"),
        }
    }
}

impl ReplicationStream {
    /// Connects, authenticates, starts replication and the background reader.
    /// Returns once the server accepted `START_REPLICATION`.
    pub async fn connect(cfg: ReplicationConfig) -> Result<Self> {
        cfg.validate()?;
        let opening = async {
            let mut conn = Conn::open(&cfg).await?;
            conn.startup(&cfg).await?;
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
        conn.io_timeout = cfg.timeout;
        conn.start_replication(&cfg).await?;
        tracing::debug!(slot = %cfg.slot, from = %cfg.start_lsn, proto = cfg.proto_version,
            streaming = cfg.streaming, "replication started");

        let applied = Arc::new(AtomicU64::new(cfg.start_lsn.0));
        let (tx, rx) = mpsc::channel(cfg.buffer);
        let (stop_tx, stop_rx) = oneshot::channel();
        let queued = Arc::new(Queued::default());
        let reader = Reader {
            conn,
            tx,
            queued: queued.clone(),
            budget: cfg.buffer_bytes,
            applied: applied.clone(),
            interval: cfg.status_interval,
            silence: cfg.timeout,
            slot: cfg.slot.clone(),
        };
        let task = tokio::spawn(reader.run(stop_rx));
        Ok(ReplicationStream {
            events: rx,
            queued,
            applied,
            stop: Some(stop_tx),
            task: Some(task),
            ended: false,
            slot: cfg.slot,
        })
    }

    /// The next event; `Ok(None)` once the server ended the stream (or after
    /// an error was returned). Cancel-safe: a dropped call loses no event.
    pub async fn recv(&mut self) -> Result<Option<Event>> {
        if self.ended {
            return Ok(None);
        }
        match self.events.recv().await {
            Some(Item::Event(event)) => {
                self.queued.take(&event);
                Ok(Some(event))
            }
            Some(Item::End) => {
                self.ended = true;
                Ok(None)
            }
            Some(Item::Failed(e)) => {
                self.ended = true;
                Err(e)
            }
            None => {
                self.ended = true;
                Err(Error::new(
                    ErrorKind::Connection,
                    format!(
                        "the replication session of slot {:?} ended unexpectedly",
                        self.slot
                    ),
                ))
            }
        }
    }

    /// Confirms that everything up to `lsn` is applied: the server may then
    /// discard that WAL. Reported with the next status update (every status
    /// interval, and when the server asks). Never moves back.
    pub fn set_applied(&self, lsn: Lsn) {
        self.applied.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// The position reported as applied.
    pub fn applied(&self) -> Lsn {
        Lsn(self.applied.load(Ordering::Acquire))
    }

    /// Ends the session: reports the applied position, ends the copy, waits
    /// until the server ended it too and closes the connection. Events not
    /// received yet are discarded. A session that already failed ends quietly.
    pub async fn shutdown(mut self) -> Result<()> {
        let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) else {
            return Ok(());
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        if stop.send(reply_tx).is_err() {
            // The copy already ended; the task may still wait to pass on why
            // (to a receiver nobody reads now).
            task.abort();
            return Ok(());
        }
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, reply_rx).await {
            Ok(Ok(result)) => {
                let _ = task.await;
                result
            }
            // The task ended without answering: it had failed already.
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                task.abort();
                Err(Error::new(
                    ErrorKind::Connection,
                    format!(
                        "the server did not end the replication session of slot {:?} within {}s",
                        self.slot,
                        SHUTDOWN_TIMEOUT.as_secs()
                    ),
                ))
            }
        }
    }
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// Quoting

/// `"name"` with inner double quotes doubled: an identifier for the
/// replication command grammar and for pgoutput's `publication_names` list.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner single quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// ---------------------------------------------------------------------------
// Server errors

/// The fields of an ErrorResponse that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ServerError {
    severity: String,
    code: String,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.severity, self.message, self.code)?;
        if let Some(d) = &self.detail {
            write!(f, "; detail: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    fn parse(mut fields: ErrorFields<'_>) -> ServerError {
        let mut e = ServerError::default();
        // A malformed field list keeps what was read so far.
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => e.severity = value,
                b'S' if e.severity.is_empty() => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'H' => e.hint = Some(value),
                _ => {}
            }
        }
        e
    }

    /// The siphon error for this server error, `doing` says what failed.
    fn into_error(self, doing: &str, slot: &str) -> Error {
        let code = self.code.as_str();
        let (kind, what) = match code {
            // undefined_object: a missing slot loses the position it kept.
            "42704" if self.message.contains("replication slot") => (
                ErrorKind::PositionLost,
                format!("replication slot {slot:?} does not exist (dropped, or never created)"),
            ),
            // object_in_use: another session streams the slot.
            "55006" => (
                ErrorKind::Connection,
                format!("replication slot {slot:?} is in use by another session"),
            ),
            // admin/crash shutdown, cannot connect now, connection exceptions,
            // too many connections, timeouts, a missing privilege: as on a
            // query connection (retried soon, or waiting for an operator)
            "57P01" | "57P02" | "57P03" | "53300" | "57014" | "42501" => {
                (crate::conn::sqlstate_kind(code), doing.to_string())
            }
            c if c.starts_with("08") => (ErrorKind::Connection, doing.to_string()),
            // authorization / password / missing database: fix the configuration
            c if c.starts_with("28") || c == "3D000" => (ErrorKind::Config, doing.to_string()),
            _ => (ErrorKind::Database, doing.to_string()),
        };
        Error::new(kind, what).source(self)
    }
}

fn io_err(e: std::io::Error, doing: &str) -> Error {
    Error::new(ErrorKind::Connection, doing.to_string()).source(e)
}

fn protocol_err(what: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Connection,
        format!("unexpected reply from the server: {what}"),
    )
}

// ---------------------------------------------------------------------------
// The connection

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A backend message: those `postgres-protocol` parses, and CopyBothResponse,
/// which it does not know.
enum Backend {
    Message(backend::Message),
    CopyBothResponse,
}

impl fmt::Debug for Backend {
    /// The message's name (for errors about unexpected messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use backend::Message as M;
        let name = match self {
            Backend::CopyBothResponse => "CopyBothResponse",
            Backend::Message(m) => match m {
                M::AuthenticationOk
                | M::AuthenticationCleartextPassword
                | M::AuthenticationMd5Password(_)
                | M::AuthenticationSasl(_)
                | M::AuthenticationSaslContinue(_)
                | M::AuthenticationSaslFinal(_)
                | M::AuthenticationGss
                | M::AuthenticationGssContinue(_)
                | M::AuthenticationKerberosV5
                | M::AuthenticationScmCredential
                | M::AuthenticationSspi => "Authentication",
                M::BackendKeyData(_) => "BackendKeyData",
                M::BindComplete => "BindComplete",
                M::CloseComplete => "CloseComplete",
                M::CommandComplete(_) => "CommandComplete",
                M::CopyData(_) => "CopyData",
                M::CopyDone => "CopyDone",
                M::CopyInResponse(_) => "CopyInResponse",
                M::CopyOutResponse(_) => "CopyOutResponse",
                M::DataRow(_) => "DataRow",
                M::EmptyQueryResponse => "EmptyQueryResponse",
                M::ErrorResponse(_) => "ErrorResponse",
                M::NoData => "NoData",
                M::NoticeResponse(_) => "NoticeResponse",
                M::NotificationResponse(_) => "NotificationResponse",
                M::ParameterDescription(_) => "ParameterDescription",
                M::ParameterStatus(_) => "ParameterStatus",
                M::ParseComplete => "ParseComplete",
                M::PortalSuspended => "PortalSuspended",
                M::ReadyForQuery(_) => "ReadyForQuery",
                M::RowDescription(_) => "RowDescription",
                _ => "an unknown message",
            },
        };
        f.write_str(name)
    }
}

/// One framed connection: a socket, what was read and not parsed yet, what is
/// to be written.
struct Conn {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bounds each wait for the server in [`Conn::read`] and [`Conn::send`].
    io_timeout: Option<Duration>,
    /// `host:port` or the socket's path, for messages.
    endpoint: String,
}

const COPY_BOTH_RESPONSE_TAG: u8 = b'W';

/// Splits the next backend message off `buf`, `None` until it is complete.
///
/// A message longer than [`OWN_BUFFER_ABOVE`] is read into a buffer of exactly
/// its size, which it takes along: `buf` is then a new small buffer, so the
/// message's memory is freed with the message (a buffer grown for it and
/// shared with it would stay allocated as long as the connection).
fn parse_backend(buf: &mut BytesMut) -> std::io::Result<Option<Backend>> {
    let Some(header) = Header::parse(buf)? else {
        return Ok(None);
    };
    let total = header.len() as usize + 1;
    if buf.len() < total {
        if total > OWN_BUFFER_ABOVE && buf.capacity() != total {
            let mut own = BytesMut::with_capacity(total);
            own.extend_from_slice(buf);
            *buf = own;
        } else {
            buf.reserve(total - buf.len());
        }
        return Ok(None);
    }
    let message = if header.tag() == COPY_BOTH_RESPONSE_TAG {
        // Format and column formats: always binary for replication; unused.
        let _ = buf.split_to(total);
        Some(Backend::CopyBothResponse)
    } else {
        backend::Message::parse(buf)?.map(Backend::Message)
    };
    if total > OWN_BUFFER_ABOVE {
        let mut rest = BytesMut::with_capacity(READ_BUFFER.max(buf.len()));
        rest.extend_from_slice(buf);
        *buf = rest;
    }
    Ok(message)
}

impl Conn {
    /// Opens the socket (unbounded in time: the caller bounds the whole startup).
    async fn open(cfg: &ReplicationConfig) -> Result<Conn> {
        let endpoint = cfg.endpoint();
        let io: std::io::Result<Box<dyn Io>> = match &cfg.addr {
            ServerAddr::Tcp(host) => {
                match tokio::net::TcpStream::connect((host.as_str(), cfg.port)).await {
                    Ok(s) => s.set_nodelay(true).map(|()| Box::new(s) as Box<dyn Io>),
                    Err(e) => Err(e),
                }
            }
            ServerAddr::Unix(dir) => {
                tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{}", cfg.port)))
                    .await
                    .map(|s| Box::new(s) as Box<dyn Io>)
            }
        };
        let io = io.map_err(|e| {
            let (kind, why) = crate::conn::io_refusal(&e);
            Error::new(
                kind,
                format!("cannot connect to PostgreSQL at {endpoint} for replication: {why}"),
            )
            .source(e)
        })?;
        Ok(Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_BUFFER),
            wbuf: BytesMut::with_capacity(1024),
            io_timeout: None,
            endpoint,
        })
    }

    /// The error for a server that sent nothing for `limit`.
    fn silent(&self, limit: Duration, doing: &str) -> Error {
        Error::new(
            ErrorKind::Connection,
            format!(
                "the PostgreSQL server at {} timed out: nothing received for {} s while {doing} \
                 (replication_timeout={} in the URL); the server or the network may be down",
                self.endpoint,
                limit.as_secs_f64(),
                limit.as_secs()
            ),
        )
    }

    /// Writes out everything queued in `wbuf`.
    async fn flush(&mut self) -> std::io::Result<()> {
        self.io.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        self.io.flush().await
    }

    /// The next complete message already read, if any.
    fn next_buffered(&mut self) -> Result<Option<Backend>> {
        parse_backend(&mut self.rbuf).map_err(protocol_err)
    }

    /// Reads more from the socket; cancel-safe. Fails at end of input.
    async fn fill(&mut self) -> Result<()> {
        let n = self.io.read_buf(&mut self.rbuf).await.map_err(|e| {
            io_err(
                e,
                &format!(
                    "reading from the replication connection to {}",
                    self.endpoint
                ),
            )
        })?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::Connection,
                format!(
                    "the server at {} closed the replication connection",
                    self.endpoint
                ),
            ));
        }
        Ok(())
    }

    /// The next message, waiting at most the I/O timeout for each read.
    async fn read(&mut self) -> Result<Backend> {
        loop {
            if let Some(m) = self.next_buffered()? {
                return Ok(m);
            }
            match self.io_timeout {
                Some(limit) => tokio::time::timeout(limit, self.fill())
                    .await
                    .map_err(|_| self.silent(limit, "waiting for an answer"))??,
                None => self.fill().await?,
            }
        }
    }

    /// Writes out `wbuf`, waiting at most the I/O timeout.
    async fn send(&mut self, doing: &str) -> Result<()> {
        match self.io_timeout {
            Some(limit) => match tokio::time::timeout(limit, self.flush()).await {
                Ok(r) => r.map_err(|e| io_err(e, doing)),
                Err(_) => Err(self.silent(limit, doing)),
            },
            None => self.flush().await.map_err(|e| io_err(e, doing)),
        }
    }

    /// Startup and authentication, up to ReadyForQuery.
    async fn startup(&mut self, cfg: &ReplicationConfig) -> Result<()> {
        let mut params = vec![
            ("user", cfg.user.as_str()),
            ("database", cfg.dbname.as_str()),
            ("replication", "database"),
            ("application_name", cfg.application_name.as_str()),
            ("client_encoding", "UTF8"),
        ];
        if let Some(options) = &cfg.options {
            params.push(("options", options.as_str()));
        }
        frontend::startup_message(params, &mut self.wbuf).map_err(protocol_err)?;
        self.send("sending the startup message").await?;

        let password = || {
            cfg.password.as_deref().ok_or_else(|| {
                Error::config(format!(
                    "the server asks for a password for user {:?} and none is configured",
                    cfg.user
                ))
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            use backend::Message as M;
            match self.read().await? {
                Backend::Message(M::AuthenticationOk) => {}
                Backend::Message(M::AuthenticationCleartextPassword) => {
                    frontend::password_message(password()?, &mut self.wbuf)
                        .map_err(protocol_err)?;
                    self.send("sending the password").await?;
                }
                Backend::Message(M::AuthenticationMd5Password(body)) => {
                    let hash = md5_hash(cfg.user.as_bytes(), password()?, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.wbuf)
                        .map_err(protocol_err)?;
                    self.send("sending the password").await?;
                }
                Backend::Message(M::AuthenticationSasl(body)) => {
                    let mechanisms: Vec<String> = body
                        .mechanisms()
                        .map(|m| Ok(m.to_string()))
                        .collect()
                        .map_err(protocol_err)?;
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(Error::config(format!(
                            "the server offers SASL authentication with {} only; \
                             only {SCRAM_SHA_256} without channel binding (no TLS) is supported",
                            mechanisms.join(", ")
                        )));
                    }
                    let s = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.wbuf)
                        .map_err(protocol_err)?;
                    self.send("sending the SCRAM first message").await?;
                    scram = Some(s);
                }
                Backend::Message(M::AuthenticationSaslContinue(body)) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| protocol_err("SASL continue before SASL start"))?;
                    s.update(body.data()).map_err(|e| {
                        Error::new(ErrorKind::Config, "SCRAM authentication failed").source(e)
                    })?;
                    frontend::sasl_response(s.message(), &mut self.wbuf).map_err(protocol_err)?;
                    self.send("sending the SCRAM proof").await?;
                }
                Backend::Message(M::AuthenticationSaslFinal(body)) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| protocol_err("SASL final before SASL start"))?;
                    // Checks the server's signature: it knows the password too.
                    s.finish(body.data()).map_err(|e| {
                        Error::new(
                            ErrorKind::Config,
                            "SCRAM authentication failed: the server's signature is wrong",
                        )
                        .source(e)
                    })?;
                }
                Backend::Message(
                    M::AuthenticationKerberosV5
                    | M::AuthenticationGss
                    | M::AuthenticationGssContinue(_)
                    | M::AuthenticationSspi
                    | M::AuthenticationScmCredential,
                ) => {
                    return Err(Error::config(
                        "the server asks for an authentication method the replication client does not \
                         support (Kerberos, GSSAPI, SSPI or SCM credentials); supported: trust, password, \
                         md5, scram-sha-256",
                    ))
                }
                Backend::Message(M::ErrorResponse(body)) => {
                    let server = ServerError::parse(body.fields());
                    let tls = match &cfg.addr {
                        ServerAddr::Tcp(host)
                            if crate::conn::without_encryption(&server.code, &server.message) =>
                        {
                            crate::conn::offers_tls(host, cfg.port).await
                        }
                        _ => None,
                    };
                    let (kind, why) = crate::conn::refusal(
                        &server.code,
                        &server.message,
                        &cfg.user,
                        &cfg.dbname,
                        tls,
                    );
                    return Err(Error::new(
                        kind,
                        format!(
                            "cannot connect to PostgreSQL at {} for replication: {why}",
                            self.endpoint
                        ),
                    )
                    .source(server));
                }
                Backend::Message(
                    M::ParameterStatus(_) | M::BackendKeyData(_) | M::NoticeResponse(_),
                ) => {}
                Backend::Message(M::ReadyForQuery(_)) => return Ok(()),
                other => return Err(protocol_err(format!("{other:?} during startup"))),
            }
        }
    }

    /// Sends `START_REPLICATION` and waits until the copy starts.
    async fn start_replication(&mut self, cfg: &ReplicationConfig) -> Result<()> {
        let command = cfg.start_replication_command();
        frontend::query(&command, &mut self.wbuf).map_err(protocol_err)?;
        self.send("sending START_REPLICATION").await?;
        loop {
            use backend::Message as M;
            match self.read().await? {
                Backend::CopyBothResponse => return Ok(()),
                Backend::Message(M::ErrorResponse(body)) => {
                    return Err(ServerError::parse(body.fields()).into_error(
                        &format!("cannot start replication from slot {:?}", cfg.slot),
                        &cfg.slot,
                    ))
                }
                Backend::Message(M::NoticeResponse(_) | M::ParameterStatus(_)) => {}
                other => {
                    return Err(protocol_err(format!(
                        "{other:?} in answer to START_REPLICATION"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ReplicationConfig {
        let pg: tokio_postgres::Config = "postgres://alice:secret@db.example:6543/shop"
            .parse()
            .unwrap();
        ReplicationConfig::from_pg_config(&pg, "my_slot", "my_pub").unwrap()
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("slot"), "\"slot\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            quote_literal(&quote_ident("My\"Pub's")),
            "'\"My\"\"Pub''s\"'"
        );
    }

    #[test]
    fn start_replication_command_per_protocol() {
        let cfg = config().with_start_lsn("16/B374D848".parse().unwrap());
        assert_eq!(
            cfg.start_replication_command(),
            "START_REPLICATION SLOT \"my_slot\" LOGICAL 16/B374D848 (proto_version '1', publication_names '\"my_pub\"')"
        );
        let cfg = config().with_protocol(2, true);
        assert_eq!(
            cfg.start_replication_command(),
            "START_REPLICATION SLOT \"my_slot\" LOGICAL 0/0 (proto_version '2', publication_names '\"my_pub\"', streaming 'on')"
        );
        let mut cfg = config();
        cfg.slot = "we\"ird".into();
        cfg.publication = "O'Pub".into();
        assert_eq!(
            cfg.start_replication_command(),
            "START_REPLICATION SLOT \"we\"\"ird\" LOGICAL 0/0 (proto_version '1', publication_names '\"O''Pub\"')"
        );
    }

    #[test]
    fn config_from_url() {
        let cfg = config();
        assert_eq!(cfg.addr, ServerAddr::Tcp("db.example".into()));
        assert_eq!(cfg.port, 6543);
        assert_eq!(cfg.user, "alice");
        assert_eq!(cfg.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(cfg.dbname, "shop");
        assert_eq!(cfg.application_name, "my_slot");
        assert_eq!(cfg.status_interval, Duration::from_millis(500));
        assert!(!format!("{cfg:?}").contains("secret"), "{cfg:?}");

        let pg: tokio_postgres::Config =
            "host=/var/run/postgresql port=5433 user=bob application_name=app"
                .parse()
                .unwrap();
        let cfg = ReplicationConfig::from_pg_config(&pg, "s", "p").unwrap();
        assert_eq!(cfg.addr, ServerAddr::Unix("/var/run/postgresql".into()));
        assert_eq!(cfg.dbname, "bob");
        assert_eq!(cfg.password, None);
        assert_eq!(cfg.application_name, "app");
    }

    #[test]
    fn tls_required_is_refused() {
        let pg: tokio_postgres::Config = "postgres://u@h/db?sslmode=require".parse().unwrap();
        let e = ReplicationConfig::from_pg_config(&pg, "s", "p").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("TLS"), "{e}");
        for mode in ["disable", "prefer"] {
            let pg: tokio_postgres::Config =
                format!("postgres://u@h/db?sslmode={mode}").parse().unwrap();
            assert!(ReplicationConfig::from_pg_config(&pg, "s", "p").is_ok());
        }
    }

    #[test]
    fn invalid_protocol_settings_are_refused() {
        for (version, streaming) in [(1, true), (3, false), (0, false)] {
            let e = config()
                .with_protocol(version, streaming)
                .validate()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{version} {streaming}");
        }
        assert!(config().with_protocol(2, true).validate().is_ok());
        assert!(config().with_protocol(2, false).validate().is_ok());
        let e = config()
            .with_status_interval(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    /// A backend message as the server frames it.
    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn backend_framing_waits_for_whole_messages() {
        // CopyBothResponse (which postgres-protocol does not parse), then a
        // keepalive in CopyData, then ReadyForQuery.
        let mut keepalive = vec![b'k'];
        keepalive.extend_from_slice(&0x1_0000_0010u64.to_be_bytes());
        keepalive.extend_from_slice(&7i64.to_be_bytes());
        keepalive.push(1);
        let mut wire = frame(b'W', &[0, 0, 0]);
        wire.extend(frame(b'd', &keepalive));
        wire.extend(frame(b'Z', b"I"));

        // Fed one byte at a time, every message comes out exactly once, whole.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for byte in wire {
            buf.extend_from_slice(&[byte]);
            while let Some(m) = parse_backend(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(out[0], Backend::CopyBothResponse));
        let Backend::Message(backend::Message::CopyData(body)) = &out[1] else {
            panic!("{:?}", out[1]);
        };
        assert_eq!(
            decode_replication_message(Bytes::copy_from_slice(body.data())).unwrap(),
            ReplicationMessage::Keepalive {
                end: Lsn(0x1_0000_0010),
                time: 7,
                reply: true
            }
        );
        assert!(matches!(
            out[2],
            Backend::Message(backend::Message::ReadyForQuery(_))
        ));
    }

    #[test]
    fn a_huge_message_takes_its_own_buffer_along() {
        // A CopyData of 3 MiB, then ReadyForQuery, read as a socket fills the
        // buffer: at most its spare capacity at a time.
        let mut wire = frame(b'd', &vec![7u8; 3 << 20]);
        wire.extend(frame(b'Z', b"I"));
        let mut wire = &wire[..];
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let mut out = Vec::new();
        while out.len() < 2 {
            match parse_backend(&mut buf).unwrap() {
                Some(m) => out.push(m),
                None => {
                    if buf.capacity() == buf.len() {
                        buf.reserve(64);
                    }
                    let n = (buf.capacity() - buf.len()).min(wire.len());
                    buf.extend_from_slice(&wire[..n]);
                    wire = &wire[n..];
                }
            }
        }
        let Backend::Message(backend::Message::CopyData(body)) = out.remove(0) else {
            panic!("not CopyData");
        };
        let data = body.into_bytes();
        assert_eq!(data.len(), 3 << 20);
        // The message's memory is its own, and the buffer is small again.
        assert!(data.is_unique(), "the read buffer still holds the message");
        assert!(buf.capacity() <= READ_BUFFER, "{}", buf.capacity());
        assert!(matches!(
            out[0],
            Backend::Message(backend::Message::ReadyForQuery(_))
        ));
    }

    #[test]
    fn bad_length_is_an_error() {
        let mut buf = BytesMut::from(&[b'd', 0, 0, 0, 2][..]);
        assert!(parse_backend(&mut buf).is_err());
    }

    #[test]
    fn error_response_fields_and_kinds() {
        let mut body = Vec::new();
        for (t, v) in [
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "42704"),
            (b'M', "replication slot \"gone\" does not exist"),
        ] {
            body.push(t);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut buf = BytesMut::from(&frame(b'E', &body)[..]);
        let Some(Backend::Message(backend::Message::ErrorResponse(e))) =
            parse_backend(&mut buf).unwrap()
        else {
            panic!("not an error response");
        };
        let server = ServerError::parse(e.fields());
        assert_eq!(server.code, "42704");
        let e = server.into_error("starting", "gone");
        assert_eq!(e.kind(), ErrorKind::PositionLost);
        assert!(e.to_string().contains("\"gone\" does not exist"), "{e}");

        let busy = ServerError {
            code: "55006".into(),
            message: "replication slot \"s\" is active for PID 42".into(),
            ..Default::default()
        };
        let e = busy.into_error("starting", "s");
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.to_string().contains("\"s\" is in use"), "{e}");

        let auth = ServerError {
            code: "28P01".into(),
            ..Default::default()
        };
        assert_eq!(auth.into_error("x", "s").kind(), ErrorKind::Config);

        // As on query connections: the retry policy sees the same kinds.
        for (code, kind) in [
            ("53300", ErrorKind::Transient),
            ("57014", ErrorKind::Timeout),
            ("42501", ErrorKind::Privilege),
            ("57P01", ErrorKind::Connection),
        ] {
            let e = ServerError {
                code: code.into(),
                ..Default::default()
            };
            assert_eq!(e.into_error("x", "s").kind(), kind, "{code}");
        }
    }

    #[test]
    fn status_update_frame() {
        let mut wbuf = BytesMut::new();
        let body = standby_status_update(Lsn(5), Lsn(5), Lsn(5), 9, false);
        frontend::CopyData::new(&body[..]).unwrap().write(&mut wbuf);
        assert_eq!(wbuf[0], b'd');
        assert_eq!(&wbuf[1..5], &(4 + 34i32).to_be_bytes());
        assert_eq!(wbuf[5], b'r');
        for i in 0..3 {
            let at = 6 + 8 * i;
            assert_eq!(&wbuf[at..at + 8], &5u64.to_be_bytes());
        }
        assert_eq!(wbuf.len(), 1 + 4 + 34);
    }
}
