//! Decoder of PostgreSQL's logical replication output plugin `pgoutput`
//! (protocol versions 1 and 2, including streamed in-progress transactions),
//! and of the streaming replication envelope around it: pure byte parsing, no I/O.
//!
//! The layouts are those of PostgreSQL's "Logical Replication Message Formats"
//! and "Streaming Replication Protocol" (XLogData, Primary keepalive, Standby
//! status update). All integers are big-endian; strings are NUL-terminated.
//!
//! In protocol version 2, the messages sent between Stream Start and Stream
//! Stop (Relation, Type, Insert, Update, Delete, Truncate, logical Message)
//! carry the xid of their transaction right after the type byte; outside a
//! stream they do not. The bytes alone cannot tell which, so [`decode`] takes
//! `in_stream`, and [`Decoder`] tracks it from the Stream Start and Stream Stop
//! messages it sees.
//!
//! Every malformed input (truncated, unknown type, bad UTF-8 in a name,
//! trailing bytes) is a [`DecodeError`] that names the message, the field and
//! the offset; decoding never panics, and no length or count field makes it
//! allocate more than the input's size. Column values are [`Bytes`] slices of
//! the input, so decoding copies no row data.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// A PostgreSQL WAL position (`XLogRecPtr`), shown as PostgreSQL does: `16/B374D848`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, PostgreSQL's `InvalidXLogRecPtr`.
    pub const INVALID: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    /// Parses `X/Y`, two hexadecimal numbers of up to 8 digits each (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u32::from_str_radix(part, 16).map_err(|_| err())
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

/// A string that is not an LSN of the form `X/Y` (hexadecimal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hexadecimal numbers as X/Y, e.g. 16/B374D848")]
pub struct ParseLsnError(pub String);

/// The PostgreSQL epoch (2000-01-01 00:00:00 UTC) in microseconds since the Unix epoch.
/// PostgreSQL timestamps in these messages are microseconds since the PostgreSQL epoch.
pub const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// `time` as a PostgreSQL timestamp (microseconds since 2000-01-01 UTC), e.g. for
/// the `time` of [`standby_status_update`]. Saturates far outside ±292,000 years.
pub fn postgres_timestamp(time: SystemTime) -> i64 {
    let unix_micros = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    };
    unix_micros.saturating_sub(POSTGRES_EPOCH_UNIX_MICROS)
}

/// Bit of [`RelationColumn::flags`]: the column is part of the replica identity key.
pub const COLUMN_FLAG_KEY: u8 = 1;
/// Bit of [`Message::Truncate`]'s `options`: `TRUNCATE … CASCADE`.
pub const TRUNCATE_CASCADE: u8 = 1;
/// Bit of [`Message::Truncate`]'s `options`: `TRUNCATE … RESTART IDENTITY`.
pub const TRUNCATE_RESTART_IDENTITY: u8 = 2;

/// One `pgoutput` message.
///
/// `xid` fields that are `Option`s are `Some` exactly for messages inside a
/// stream (protocol version 2). Timestamps are microseconds since 2000-01-01 UTC
/// (see [`POSTGRES_EPOCH_UNIX_MICROS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `B`: a transaction starts; its changes follow, up to [`Message::Commit`].
    Begin {
        /// The LSN of the transaction's commit record.
        final_lsn: Lsn,
        /// The commit time.
        commit_time: i64,
        /// The transaction id.
        xid: u32,
    },
    /// `C`: the transaction opened by the last [`Message::Begin`] committed.
    Commit {
        /// Unused by PostgreSQL so far (0).
        flags: u8,
        /// The LSN of the commit record.
        commit_lsn: Lsn,
        /// The end of the commit record: where to resume after this transaction.
        end_lsn: Lsn,
        /// The commit time.
        commit_time: i64,
    },
    /// `O`: the transaction came from another node through replication origin `name`.
    Origin {
        /// The commit LSN on the origin server.
        lsn: Lsn,
        /// The origin's name.
        name: String,
    },
    /// `R`: the shape of a table, sent before the first change to it in a
    /// session and again after the table changed (e.g. `ALTER TABLE`).
    Relation {
        /// The streamed transaction's xid, inside a stream.
        xid: Option<u32>,
        /// The table's oid; changes refer to it.
        oid: u32,
        /// The schema (empty for `pg_catalog`).
        namespace: String,
        /// The table name.
        name: String,
        /// `REPLICA IDENTITY`: `b'd'` default (primary key), `b'n'` nothing,
        /// `b'f'` full, `b'i'` index.
        replica_identity: u8,
        /// The published columns, in the order of tuple data.
        columns: Vec<RelationColumn>,
    },
    /// `Y`: a non-built-in data type used by a following [`Message::Relation`].
    Type {
        /// The streamed transaction's xid, inside a stream.
        xid: Option<u32>,
        /// The type's oid.
        oid: u32,
        /// The type's schema (empty for `pg_catalog`).
        namespace: String,
        /// The type's name.
        name: String,
    },
    /// `I`: a row was inserted.
    Insert {
        /// The streamed transaction's xid, inside a stream.
        xid: Option<u32>,
        /// The table's oid (see [`Message::Relation`]).
        oid: u32,
        /// The new row.
        new: TupleData,
    },
    /// `U`: a row was updated. At most one of `key` and `old` is set.
    Update {
        /// The streamed transaction's xid, inside a stream.
        xid: Option<u32>,
        /// The table's oid (see [`Message::Relation`]).
        oid: u32,
        /// `K`: the old key columns (others null), sent when the key changed.
        key: Option<TupleData>,
        /// `O`: the whole old row, with `REPLICA IDENTITY FULL`.
        old: Option<TupleData>,
        /// The new row; unchanged TOASTed values are [`TupleColumn::UnchangedToast`].
        new: TupleData,
    },
    /// `D`: a row was deleted. Exactly one of `key` and `old` is set.
    Delete {
        /// The streamed transaction's xid, inside a stream.
        xid: Option<u32>,
        /// The table's oid (see [`Message::Relation`]).
        oid: u32,
        /// `K`: the key columns of the deleted row (others null).
        key: Option<TupleData>,
        /// `O`: the whole deleted row, with `REPLICA IDENTITY FULL`.
        old: Option<TupleData>,
    },
    /// `T`: tables were truncated.
    Truncate {
        /// The streamed transaction's xid, inside a stream.
        xid: Option<u32>,
        /// [`TRUNCATE_CASCADE`] and [`TRUNCATE_RESTART_IDENTITY`] bits.
        options: u8,
        /// The truncated tables' oids.
        oids: Vec<u32>,
    },
    /// `M`: a message from `pg_logical_emit_message` (needs the plugin option
    /// `messages 'true'`).
    LogicalMessage {
        /// The streamed transaction's xid, inside a stream.
        xid: Option<u32>,
        /// Whether the message belongs to a transaction (else it was sent at once).
        transactional: bool,
        /// The LSN of the message.
        lsn: Lsn,
        /// The message's prefix.
        prefix: String,
        /// The message's content.
        content: Bytes,
    },
    /// `S`: a block of a large in-progress transaction's changes starts
    /// (protocol version 2, `streaming 'on'`); it ends at [`Message::StreamStop`].
    StreamStart {
        /// The streamed transaction's xid.
        xid: u32,
        /// Whether this is the transaction's first block.
        first_segment: bool,
    },
    /// `E`: the current stream block ends.
    StreamStop,
    /// `c`: a streamed transaction committed; apply its blocks.
    StreamCommit {
        /// The streamed transaction's xid.
        xid: u32,
        /// Unused by PostgreSQL so far (0).
        flags: u8,
        /// The LSN of the commit record.
        commit_lsn: Lsn,
        /// The end of the commit record: where to resume after this transaction.
        end_lsn: Lsn,
        /// The commit time.
        commit_time: i64,
    },
    /// `A`: a streamed transaction (`subxid == xid`) or one of its
    /// subtransactions aborted; discard its changes.
    StreamAbort {
        /// The streamed transaction's xid.
        xid: u32,
        /// The aborted (sub)transaction's xid.
        subxid: u32,
        /// The abort's LSN and time, sent only by protocol version 4
        /// (PostgreSQL 16+, `streaming 'parallel'`).
        abort: Option<(Lsn, i64)>,
    },
}

/// A column of a [`Message::Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// [`COLUMN_FLAG_KEY`] when the column is part of the replica identity key.
    pub flags: u8,
    /// The column name.
    pub name: String,
    /// The oid of the column's type.
    pub type_oid: u32,
    /// The type modifier (`atttypmod`), -1 when none.
    pub type_modifier: i32,
}

impl RelationColumn {
    /// Whether the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & COLUMN_FLAG_KEY != 0
    }
}

/// The columns of one row, in the order of the table's [`Message::Relation`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TupleData(pub Vec<TupleColumn>);

/// One column value of a [`TupleData`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleColumn {
    /// `n`: SQL NULL.
    Null,
    /// `u`: a TOASTed value that did not change; its value is not sent.
    UnchangedToast,
    /// `t`: the value in the type's text output format (in the database encoding).
    Text(Bytes),
    /// `b`: the value in the type's binary send format (plugin option `binary 'true'`).
    Binary(Bytes),
}

impl TupleColumn {
    /// The value's bytes, for [`TupleColumn::Text`] and [`TupleColumn::Binary`].
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            TupleColumn::Text(b) | TupleColumn::Binary(b) => Some(b),
            TupleColumn::Null | TupleColumn::UnchangedToast => None,
        }
    }
}

/// A replication CopyData message from the server (after `START_REPLICATION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `w`: WAL data; for a logical slot, one `pgoutput` message ([`decode`] it).
    XLogData {
        /// The WAL position of the data.
        start: Lsn,
        /// The server's current end of WAL.
        end: Lsn,
        /// The server's clock when sending (PostgreSQL timestamp).
        time: i64,
        /// The `pgoutput` message.
        payload: Bytes,
    },
    /// `k`: the server's heartbeat.
    Keepalive {
        /// The server's current end of WAL.
        end: Lsn,
        /// The server's clock when sending (PostgreSQL timestamp).
        time: i64,
        /// The server asks for a [`standby_status_update`] at once (else it
        /// disconnects after `wal_sender_timeout`).
        reply: bool,
    },
}

/// Input that is not a well-formed message. `message` names the message kind
/// being decoded, `what` the field, `offset` the byte position in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input was empty.
    #[error("empty {message} message")]
    Empty {
        /// `pgoutput` or `replication`.
        message: &'static str,
    },
    /// The first byte is no known message type.
    #[error("unknown {message} message type '{}' (0x{tag:02x})", .tag.escape_ascii())]
    UnknownMessage {
        /// `pgoutput` or `replication`.
        message: &'static str,
        /// The type byte.
        tag: u8,
    },
    /// The input ended inside a field.
    #[error("truncated {message} message: {what} at offset {offset} needs {needed} bytes, {remaining} left")]
    Truncated {
        /// The message kind.
        message: &'static str,
        /// The field.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A string ran to the end of the input without its NUL terminator.
    #[error("{message} message: {what} at offset {offset} has no NUL terminator")]
    UnterminatedString {
        /// The message kind.
        message: &'static str,
        /// The field.
        what: &'static str,
        /// Where the string starts.
        offset: usize,
    },
    /// A name is not UTF-8.
    #[error("{message} message: {what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The message kind.
        message: &'static str,
        /// The field.
        what: &'static str,
        /// Where the string starts.
        offset: usize,
    },
    /// A marker byte (tuple kind, column kind) has a value the format does not allow.
    #[error("{message} message: unexpected {what} '{}' (0x{found:02x}) at offset {offset}", .found.escape_ascii())]
    UnexpectedByte {
        /// The message kind.
        message: &'static str,
        /// The field.
        what: &'static str,
        /// Where the byte is.
        offset: usize,
        /// The byte found.
        found: u8,
    },
    /// A length or count field is negative.
    #[error("{message} message: {what} at offset {offset} is negative ({value})")]
    NegativeLength {
        /// The message kind.
        message: &'static str,
        /// The field.
        what: &'static str,
        /// Where the field is.
        offset: usize,
        /// The value read.
        value: i32,
    },
    /// Bytes follow the end of the message (often: the stream state is wrong,
    /// e.g. a message with an xid decoded as if outside a stream).
    #[error("{message} message: {remaining} unexpected bytes after its end at offset {offset}")]
    TrailingBytes {
        /// The message kind.
        message: &'static str,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        remaining: usize,
    },
    /// [`Decoder`] met a message that cannot come at this point: Stream Start
    /// inside a stream, Stream Stop outside one, or Begin, Commit, Stream
    /// Commit or Stream Abort inside one.
    #[error("{message} message {}", if *.in_stream { "inside a stream block" } else { "outside a stream block" })]
    UnexpectedMessage {
        /// The message kind.
        message: &'static str,
        /// Whether the decoder was inside a stream block.
        in_stream: bool,
    },
}

/// Decodes one `pgoutput` message. `in_stream` says whether it lies between a
/// Stream Start and a Stream Stop (protocol version 2): there, changes carry
/// an xid. Use [`Decoder`] to track that from the messages themselves.
///
/// The message must fill `buf` exactly. Pass a slice with `Bytes::copy_from_slice`.
pub fn decode(buf: Bytes, in_stream: bool) -> Result<Message, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Err(DecodeError::Empty {
            message: "pgoutput",
        });
    };
    let message = match message_name(tag) {
        Some(name) => name,
        None => {
            return Err(DecodeError::UnknownMessage {
                message: "pgoutput",
                tag,
            })
        }
    };
    let mut r = Reader {
        buf,
        pos: 1,
        message,
    };
    let decoded = match tag {
        b'B' => Message::Begin {
            final_lsn: r.lsn("final LSN")?,
            commit_time: r.i64("commit timestamp")?,
            xid: r.u32("xid")?,
        },
        b'C' => Message::Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.i64("commit timestamp")?,
        },
        b'O' => Message::Origin {
            lsn: r.lsn("origin commit LSN")?,
            name: r.string("origin name")?,
        },
        b'R' => {
            let xid = r.stream_xid(in_stream)?;
            let oid = r.u32("relation oid")?;
            let namespace = r.string("namespace")?;
            let name = r.string("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            // Each column takes at least 10 bytes: flags, an empty name, type oid, modifier.
            let count = r.count16("column count", 10)?;
            let mut columns = Vec::with_capacity(count);
            for _ in 0..count {
                columns.push(RelationColumn {
                    flags: r.u8("column flags")?,
                    name: r.string("column name")?,
                    type_oid: r.u32("column type oid")?,
                    type_modifier: r.i32("column type modifier")?,
                });
            }
            Message::Relation {
                xid,
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            }
        }
        b'Y' => Message::Type {
            xid: r.stream_xid(in_stream)?,
            oid: r.u32("type oid")?,
            namespace: r.string("namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let xid = r.stream_xid(in_stream)?;
            let oid = r.u32("relation oid")?;
            r.expect(b'N', "new tuple marker (expected 'N')")?;
            Message::Insert {
                xid,
                oid,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let xid = r.stream_xid(in_stream)?;
            let oid = r.u32("relation oid")?;
            let (mut key, mut old) = (None, None);
            let at = r.pos;
            match r.u8("tuple marker")? {
                b'K' => key = Some(r.tuple()?),
                b'O' => old = Some(r.tuple()?),
                b'N' => r.pos = at,
                found => {
                    return Err(r.unexpected("tuple marker (expected 'K', 'O' or 'N')", at, found))
                }
            }
            r.expect(b'N', "new tuple marker (expected 'N')")?;
            Message::Update {
                xid,
                oid,
                key,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let xid = r.stream_xid(in_stream)?;
            let oid = r.u32("relation oid")?;
            let at = r.pos;
            let (key, old) = match r.u8("tuple marker")? {
                b'K' => (Some(r.tuple()?), None),
                b'O' => (None, Some(r.tuple()?)),
                found => return Err(r.unexpected("tuple marker (expected 'K' or 'O')", at, found)),
            };
            Message::Delete { xid, oid, key, old }
        }
        b'T' => {
            let xid = r.stream_xid(in_stream)?;
            let count = r.len32("relation count")?;
            let options = r.u8("options")?;
            r.ensure(count.saturating_mul(4), "relation oids")?;
            let mut oids = Vec::with_capacity(count);
            for _ in 0..count {
                oids.push(r.u32("relation oid")?);
            }
            Message::Truncate { xid, options, oids }
        }
        b'M' => {
            let xid = r.stream_xid(in_stream)?;
            let flags = r.u8("flags")?;
            let lsn = r.lsn("message LSN")?;
            let prefix = r.string("prefix")?;
            let len = r.len32("content length")?;
            let content = r.take(len, "content")?;
            Message::LogicalMessage {
                xid,
                transactional: flags & 1 != 0,
                lsn,
                prefix,
                content,
            }
        }
        b'S' => Message::StreamStart {
            xid: r.u32("xid")?,
            first_segment: r.u8("first segment flag")? == 1,
        },
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit {
            xid: r.u32("xid")?,
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.i64("commit timestamp")?,
        },
        b'A' => {
            let xid = r.u32("xid")?;
            let subxid = r.u32("subtransaction xid")?;
            let abort = if r.remaining() > 0 {
                Some((r.lsn("abort LSN")?, r.i64("abort timestamp")?))
            } else {
                None
            };
            Message::StreamAbort { xid, subxid, abort }
        }
        _ => {
            return Err(DecodeError::UnknownMessage {
                message: "pgoutput",
                tag,
            })
        }
    };
    r.finish()?;
    Ok(decoded)
}

fn message_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        b'S' => "Stream Start",
        b'E' => "Stream Stop",
        b'c' => "Stream Commit",
        b'A' => "Stream Abort",
        _ => return None,
    })
}

/// Decodes a sequence of `pgoutput` messages, tracking whether it is inside a
/// stream block (between Stream Start and Stream Stop) so that it knows which
/// messages carry an xid.
///
/// It rejects messages that cannot come at the current point (see
/// [`DecodeError::UnexpectedMessage`]); the state is unchanged by any error.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    in_stream: bool,
}

impl Decoder {
    /// A decoder outside any stream block, as at the start of replication.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the last message decoded left the decoder inside a stream block.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    /// Decodes the next message (see [`decode`]).
    pub fn decode(&mut self, buf: Bytes) -> Result<Message, DecodeError> {
        let message = decode(buf, self.in_stream)?;
        let allowed = match message {
            Message::StreamStart { .. } => !self.in_stream,
            Message::StreamStop => self.in_stream,
            Message::Begin { .. }
            | Message::Commit { .. }
            | Message::StreamCommit { .. }
            | Message::StreamAbort { .. } => !self.in_stream,
            _ => true,
        };
        if !allowed {
            return Err(DecodeError::UnexpectedMessage {
                message: message.name(),
                in_stream: self.in_stream,
            });
        }
        match message {
            Message::StreamStart { .. } => self.in_stream = true,
            Message::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(message)
    }
}

impl Message {
    /// The (sub)transaction xid a message inside a stream block carries.
    pub fn stream_xid(&self) -> Option<u32> {
        match self {
            Message::Relation { xid, .. }
            | Message::Type { xid, .. }
            | Message::Insert { xid, .. }
            | Message::Update { xid, .. }
            | Message::Delete { xid, .. }
            | Message::Truncate { xid, .. }
            | Message::LogicalMessage { xid, .. } => *xid,
            _ => None,
        }
    }

    /// The message kind as PostgreSQL's documentation names it, e.g. `Stream Commit`.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Begin { .. } => "Begin",
            Message::Commit { .. } => "Commit",
            Message::Origin { .. } => "Origin",
            Message::Relation { .. } => "Relation",
            Message::Type { .. } => "Type",
            Message::Insert { .. } => "Insert",
            Message::Update { .. } => "Update",
            Message::Delete { .. } => "Delete",
            Message::Truncate { .. } => "Truncate",
            Message::LogicalMessage { .. } => "Message",
            Message::StreamStart { .. } => "Stream Start",
            Message::StreamStop => "Stream Stop",
            Message::StreamCommit { .. } => "Stream Commit",
            Message::StreamAbort { .. } => "Stream Abort",
        }
    }
}

/// Decodes the content of a CopyData message the server sends during
/// `START_REPLICATION`: XLogData (`w`) or Primary keepalive (`k`).
pub fn decode_replication_message(buf: Bytes) -> Result<ReplicationMessage, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Err(DecodeError::Empty {
            message: "replication",
        });
    };
    let message = match tag {
        b'w' => "XLogData",
        b'k' => "Primary keepalive",
        _ => {
            return Err(DecodeError::UnknownMessage {
                message: "replication",
                tag,
            })
        }
    };
    let mut r = Reader {
        buf,
        pos: 1,
        message,
    };
    if tag == b'w' {
        let start = r.lsn("start LSN")?;
        let end = r.lsn("end LSN")?;
        let time = r.i64("send time")?;
        let payload = r.take(r.remaining(), "payload")?;
        return Ok(ReplicationMessage::XLogData {
            start,
            end,
            time,
            payload,
        });
    }
    let decoded = ReplicationMessage::Keepalive {
        end: r.lsn("end LSN")?,
        time: r.i64("send time")?,
        reply: r.u8("reply flag")? != 0,
    };
    r.finish()?;
    Ok(decoded)
}

/// Encodes a Standby status update (`r`), the content of a CopyData message
/// to the server: WAL up to `write` is received, up to `flush` durably stored,
/// up to `apply` applied. For a logical slot, `flush` is what the server may
/// discard, so it must not pass the last committed checkpoint. `time` is a
/// PostgreSQL timestamp ([`postgres_timestamp`]); `reply` asks the server to
/// answer at once with a keepalive.
pub fn standby_status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    time: i64,
    reply: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(34);
    out.push(b'r');
    out.extend_from_slice(&write.0.to_be_bytes());
    out.extend_from_slice(&flush.0.to_be_bytes());
    out.extend_from_slice(&apply.0.to_be_bytes());
    out.extend_from_slice(&time.to_be_bytes());
    out.push(u8::from(reply));
    out
}

/// A cursor over one message; every read checks the remaining length first.
struct Reader {
    buf: Bytes,
    pos: usize,
    message: &'static str,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn ensure(&self, needed: usize, what: &'static str) -> Result<(), DecodeError> {
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                message: self.message,
                what,
                offset: self.pos,
                needed,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.ensure(len, what)?;
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        self.ensure(N, what)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(what)?)))
    }

    fn stream_xid(&mut self, in_stream: bool) -> Result<Option<u32>, DecodeError> {
        if in_stream {
            self.u32("xid").map(Some)
        } else {
            Ok(None)
        }
    }

    /// A non-negative Int32 length or count.
    fn len32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let value = self.i32(what)?;
        usize::try_from(value).map_err(|_| DecodeError::NegativeLength {
            message: self.message,
            what,
            offset,
            value,
        })
    }

    /// A non-negative Int16 count of items that take at least `min_item_len`
    /// bytes each, checked against the remaining input before anyone allocates.
    fn count16(&mut self, what: &'static str, min_item_len: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let value = self.i16(what)?;
        let count = usize::try_from(value).map_err(|_| DecodeError::NegativeLength {
            message: self.message,
            what,
            offset,
            value: i32::from(value),
        })?;
        self.ensure(count * min_item_len, what)?;
        Ok(count)
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let offset = self.pos;
        let rest = self.buf.get(offset..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            return Err(DecodeError::UnterminatedString {
                message: self.message,
                what,
                offset,
            });
        };
        let text = std::str::from_utf8(&rest[..len])
            .map_err(|_| DecodeError::InvalidUtf8 {
                message: self.message,
                what,
                offset,
            })?
            .to_owned();
        self.pos += len + 1;
        Ok(text)
    }

    fn unexpected(&self, what: &'static str, offset: usize, found: u8) -> DecodeError {
        DecodeError::UnexpectedByte {
            message: self.message,
            what,
            offset,
            found,
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), DecodeError> {
        let offset = self.pos;
        match self.u8(what)? {
            found if found == byte => Ok(()),
            found => Err(self.unexpected(what, offset, found)),
        }
    }

    fn tuple(&mut self) -> Result<TupleData, DecodeError> {
        // Each column takes at least its kind byte.
        let count = self.count16("tuple column count", 1)?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = self.pos;
            let column = match self.u8("tuple column kind")? {
                b'n' => TupleColumn::Null,
                b'u' => TupleColumn::UnchangedToast,
                b't' => {
                    let len = self.len32("text value length")?;
                    TupleColumn::Text(self.take(len, "text value")?)
                }
                b'b' => {
                    let len = self.len32("binary value length")?;
                    TupleColumn::Binary(self.take(len, "binary value")?)
                }
                found => {
                    return Err(self.unexpected(
                        "tuple column kind (expected 'n', 'u', 't' or 'b')",
                        offset,
                        found,
                    ))
                }
            };
            columns.push(column);
        }
        Ok(TupleData(columns))
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            remaining => Err(DecodeError::TrailingBytes {
                message: self.message,
                offset: self.pos,
                remaining,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds messages the way PostgreSQL's `proto.c` writes them.
    #[derive(Default)]
    struct Out(Vec<u8>);

    impl Out {
        fn tag(tag: u8) -> Self {
            Out(vec![tag])
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i64(mut self, v: i64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn str(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        fn raw(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        fn xid(self, xid: Option<u32>) -> Self {
            match xid {
                Some(x) => self.u32(x),
                None => self,
            }
        }
        /// A tuple of (id int '7', NULL, unchanged toast, binary 00 2a).
        fn tuple(self) -> Self {
            self.i16(4)
                .u8(b't')
                .i32(1)
                .raw(b"7")
                .u8(b'n')
                .u8(b'u')
                .u8(b'b')
                .i32(2)
                .raw(&[0, 42])
        }
        fn bytes(self) -> Bytes {
            Bytes::from(self.0)
        }
    }

    fn sample_tuple() -> TupleData {
        TupleData(vec![
            TupleColumn::Text(Bytes::from_static(b"7")),
            TupleColumn::Null,
            TupleColumn::UnchangedToast,
            TupleColumn::Binary(Bytes::from_static(&[0, 42])),
        ])
    }

    fn key_tuple() -> (Out, TupleData) {
        (
            Out::default().i16(2).u8(b't').i32(2).raw(b"42").u8(b'n'),
            TupleData(vec![
                TupleColumn::Text(Bytes::from_static(b"42")),
                TupleColumn::Null,
            ]),
        )
    }

    const TIME: i64 = 784_111_777_000_123;

    #[test]
    fn begin_commit_origin() {
        let begin = Out::tag(b'B')
            .u64(0x16_B374_D848)
            .i64(TIME)
            .u32(735)
            .bytes();
        assert_eq!(
            decode(begin, false).unwrap(),
            Message::Begin {
                final_lsn: Lsn(0x16_B374_D848),
                commit_time: TIME,
                xid: 735
            }
        );
        let commit = Out::tag(b'C').u8(0).u64(100).u64(200).i64(TIME).bytes();
        assert_eq!(
            decode(commit, false).unwrap(),
            Message::Commit {
                flags: 0,
                commit_lsn: Lsn(100),
                end_lsn: Lsn(200),
                commit_time: TIME
            }
        );
        let origin = Out::tag(b'O').u64(300).str("node_a").bytes();
        assert_eq!(
            decode(origin, false).unwrap(),
            Message::Origin {
                lsn: Lsn(300),
                name: "node_a".into()
            }
        );
    }

    #[test]
    fn relation_and_type_v1_and_v2() {
        for xid in [None, Some(9001)] {
            let relation = Out::tag(b'R')
                .xid(xid)
                .u32(16384)
                .str("public")
                .str("items")
                .u8(b'd')
                .i16(2)
                .u8(1)
                .str("id")
                .u32(23)
                .i32(-1)
                .u8(0)
                .str("name")
                .u32(1043)
                .i32(68)
                .bytes();
            let decoded = decode(relation, xid.is_some()).unwrap();
            assert_eq!(
                decoded,
                Message::Relation {
                    xid,
                    oid: 16384,
                    namespace: "public".into(),
                    name: "items".into(),
                    replica_identity: b'd',
                    columns: vec![
                        RelationColumn {
                            flags: 1,
                            name: "id".into(),
                            type_oid: 23,
                            type_modifier: -1
                        },
                        RelationColumn {
                            flags: 0,
                            name: "name".into(),
                            type_oid: 1043,
                            type_modifier: 68
                        },
                    ],
                }
            );
            let Message::Relation { columns, .. } = decoded else {
                unreachable!()
            };
            assert!(columns[0].is_key() && !columns[1].is_key());

            let ty = Out::tag(b'Y')
                .xid(xid)
                .u32(50000)
                .str("public")
                .str("mood")
                .bytes();
            assert_eq!(
                decode(ty, xid.is_some()).unwrap(),
                Message::Type {
                    xid,
                    oid: 50000,
                    namespace: "public".into(),
                    name: "mood".into()
                }
            );
        }
    }

    #[test]
    fn insert_update_delete_v1_and_v2() {
        for xid in [None, Some(77)] {
            let s = xid.is_some();
            let insert = Out::tag(b'I').xid(xid).u32(16384).u8(b'N').tuple().bytes();
            assert_eq!(
                decode(insert, s).unwrap(),
                Message::Insert {
                    xid,
                    oid: 16384,
                    new: sample_tuple()
                }
            );

            let plain = Out::tag(b'U').xid(xid).u32(16384).u8(b'N').tuple().bytes();
            assert_eq!(
                decode(plain, s).unwrap(),
                Message::Update {
                    xid,
                    oid: 16384,
                    key: None,
                    old: None,
                    new: sample_tuple()
                }
            );
            let (key_out, key) = key_tuple();
            let with_key = Out::tag(b'U')
                .xid(xid)
                .u32(16384)
                .u8(b'K')
                .raw(&key_out.0)
                .u8(b'N')
                .tuple()
                .bytes();
            assert_eq!(
                decode(with_key, s).unwrap(),
                Message::Update {
                    xid,
                    oid: 16384,
                    key: Some(key.clone()),
                    old: None,
                    new: sample_tuple()
                }
            );
            let with_old = Out::tag(b'U')
                .xid(xid)
                .u32(16384)
                .u8(b'O')
                .tuple()
                .u8(b'N')
                .tuple()
                .bytes();
            assert_eq!(
                decode(with_old, s).unwrap(),
                Message::Update {
                    xid,
                    oid: 16384,
                    key: None,
                    old: Some(sample_tuple()),
                    new: sample_tuple()
                }
            );

            let delete_key = Out::tag(b'D')
                .xid(xid)
                .u32(16384)
                .u8(b'K')
                .raw(&key_out.0)
                .bytes();
            assert_eq!(
                decode(delete_key, s).unwrap(),
                Message::Delete {
                    xid,
                    oid: 16384,
                    key: Some(key),
                    old: None
                }
            );
            let delete_old = Out::tag(b'D').xid(xid).u32(16384).u8(b'O').tuple().bytes();
            assert_eq!(
                decode(delete_old, s).unwrap(),
                Message::Delete {
                    xid,
                    oid: 16384,
                    key: None,
                    old: Some(sample_tuple())
                }
            );
        }
    }

    #[test]
    fn truncate_and_logical_message_v1_and_v2() {
        for xid in [None, Some(5)] {
            let s = xid.is_some();
            let truncate = Out::tag(b'T')
                .xid(xid)
                .i32(2)
                .u8(TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY)
                .u32(16384)
                .u32(16390)
                .bytes();
            assert_eq!(
                decode(truncate, s).unwrap(),
                Message::Truncate {
                    xid,
                    options: 3,
                    oids: vec![16384, 16390]
                }
            );
            let message = Out::tag(b'M')
                .xid(xid)
                .u8(1)
                .u64(0x1_0000_0010)
                .str("siphon")
                .i32(5)
                .raw(b"hello")
                .bytes();
            assert_eq!(
                decode(message, s).unwrap(),
                Message::LogicalMessage {
                    xid,
                    transactional: true,
                    lsn: Lsn(0x1_0000_0010),
                    prefix: "siphon".into(),
                    content: Bytes::from_static(b"hello"),
                }
            );
        }
    }

    #[test]
    fn stream_messages() {
        let start = Out::tag(b'S').u32(900).u8(1).bytes();
        assert_eq!(
            decode(start, false).unwrap(),
            Message::StreamStart {
                xid: 900,
                first_segment: true
            }
        );
        let again = Out::tag(b'S').u32(900).u8(0).bytes();
        assert_eq!(
            decode(again, false).unwrap(),
            Message::StreamStart {
                xid: 900,
                first_segment: false
            }
        );
        assert_eq!(
            decode(Out::tag(b'E').bytes(), true).unwrap(),
            Message::StreamStop
        );
        let commit = Out::tag(b'c')
            .u32(900)
            .u8(0)
            .u64(10)
            .u64(20)
            .i64(TIME)
            .bytes();
        assert_eq!(
            decode(commit, false).unwrap(),
            Message::StreamCommit {
                xid: 900,
                flags: 0,
                commit_lsn: Lsn(10),
                end_lsn: Lsn(20),
                commit_time: TIME
            }
        );
        let abort = Out::tag(b'A').u32(900).u32(901).bytes();
        assert_eq!(
            decode(abort, false).unwrap(),
            Message::StreamAbort {
                xid: 900,
                subxid: 901,
                abort: None
            }
        );
        let abort_v4 = Out::tag(b'A').u32(900).u32(900).u64(30).i64(TIME).bytes();
        assert_eq!(
            decode(abort_v4, false).unwrap(),
            Message::StreamAbort {
                xid: 900,
                subxid: 900,
                abort: Some((Lsn(30), TIME))
            }
        );
    }

    #[test]
    fn decoder_tracks_stream_blocks() {
        let mut d = Decoder::new();
        let insert_in_stream = Out::tag(b'I').u32(900).u32(16384).u8(b'N').tuple().bytes();
        // Outside a stream the xid is read as the oid and the rest does not fit.
        assert!(d.decode(insert_in_stream.clone()).is_err());
        assert!(d.decode(Out::tag(b'E').bytes()).is_err());

        d.decode(Out::tag(b'S').u32(900).u8(1).bytes()).unwrap();
        assert!(d.in_stream());
        assert_eq!(
            d.decode(insert_in_stream).unwrap(),
            Message::Insert {
                xid: Some(900),
                oid: 16384,
                new: sample_tuple()
            }
        );
        let err = d.decode(Out::tag(b'S').u32(901).u8(1).bytes()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnexpectedMessage {
                message: "Stream Start",
                in_stream: true
            }
        );
        let err = d
            .decode(Out::tag(b'B').u64(1).i64(2).u32(3).bytes())
            .unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnexpectedMessage {
                message: "Begin",
                in_stream: true
            }
        );
        assert!(d.in_stream());
        assert_eq!(
            d.decode(Out::tag(b'E').bytes()).unwrap(),
            Message::StreamStop
        );
        assert!(!d.in_stream());
        let commit = Out::tag(b'c')
            .u32(900)
            .u8(0)
            .u64(10)
            .u64(20)
            .i64(TIME)
            .bytes();
        assert!(matches!(
            d.decode(commit).unwrap(),
            Message::StreamCommit { xid: 900, .. }
        ));
        let insert = Out::tag(b'I').u32(16384).u8(b'N').tuple().bytes();
        assert!(matches!(
            d.decode(insert).unwrap(),
            Message::Insert { xid: None, .. }
        ));
    }

    #[test]
    fn errors_name_the_field_and_offset() {
        assert_eq!(
            decode(Bytes::new(), false).unwrap_err(),
            DecodeError::Empty {
                message: "pgoutput"
            }
        );
        assert_eq!(
            decode(Bytes::from_static(b"Z"), false).unwrap_err(),
            DecodeError::UnknownMessage {
                message: "pgoutput",
                tag: b'Z'
            }
        );
        let err = decode(Out::tag(b'B').u64(1).u32(0).bytes(), false).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                message: "Begin",
                what: "commit timestamp",
                offset: 9,
                needed: 8,
                remaining: 4
            }
        );
        assert_eq!(
            err.to_string(),
            "truncated Begin message: commit timestamp at offset 9 needs 8 bytes, 4 left"
        );
        let bad_utf8 = Out::tag(b'O').u64(1).raw(&[0xff, 0xfe, 0]).bytes();
        assert_eq!(
            decode(bad_utf8, false).unwrap_err(),
            DecodeError::InvalidUtf8 {
                message: "Origin",
                what: "origin name",
                offset: 9
            }
        );
        let unterminated = Out::tag(b'O').u64(1).raw(b"abc").bytes();
        assert!(matches!(
            decode(unterminated, false).unwrap_err(),
            DecodeError::UnterminatedString {
                what: "origin name",
                offset: 9,
                ..
            }
        ));
        let bad_kind = Out::tag(b'I').u32(1).u8(b'N').i16(1).u8(b'x').bytes();
        let err = decode(bad_kind, false).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnexpectedByte {
                offset: 8,
                found: b'x',
                ..
            }
        ));
        assert!(err.to_string().contains("'x' (0x78)"), "{err}");
        let negative = Out::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(-1)
            .bytes();
        assert!(matches!(
            decode(negative, false).unwrap_err(),
            DecodeError::NegativeLength {
                value: -1,
                offset: 9,
                ..
            }
        ));
        let trailing = Out::tag(b'E').u8(0).bytes();
        assert_eq!(
            decode(trailing, false).unwrap_err(),
            DecodeError::TrailingBytes {
                message: "Stream Stop",
                offset: 1,
                remaining: 1
            }
        );
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let truncate = Out::tag(b'T').i32(i32::MAX).u8(0).u32(1).bytes();
        assert!(matches!(
            decode(truncate, false).unwrap_err(),
            DecodeError::Truncated { what: "relation oids", needed, remaining: 4, .. } if needed == 4 * i32::MAX as usize
        ));
        let tuple = Out::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(i16::MAX)
            .u8(b'n')
            .bytes();
        assert!(matches!(
            decode(tuple, false).unwrap_err(),
            DecodeError::Truncated {
                what: "tuple column count",
                ..
            }
        ));
        let relation = Out::tag(b'R')
            .u32(1)
            .str("s")
            .str("t")
            .u8(b'd')
            .i16(i16::MAX)
            .bytes();
        assert!(matches!(
            decode(relation, false).unwrap_err(),
            DecodeError::Truncated {
                what: "column count",
                ..
            }
        ));
        let text = Out::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(i32::MAX)
            .raw(b"ab")
            .bytes();
        assert!(matches!(
            decode(text, false).unwrap_err(),
            DecodeError::Truncated {
                what: "text value",
                remaining: 2,
                ..
            }
        ));
    }

    #[test]
    fn replication_envelope() {
        let payload = Out::tag(b'B').u64(5).i64(TIME).u32(1).0;
        let xlog = Out::tag(b'w').u64(5).u64(9).i64(TIME).raw(&payload).bytes();
        let decoded = decode_replication_message(xlog).unwrap();
        assert_eq!(
            decoded,
            ReplicationMessage::XLogData {
                start: Lsn(5),
                end: Lsn(9),
                time: TIME,
                payload: Bytes::from(payload.clone()),
            }
        );
        let ReplicationMessage::XLogData { payload, .. } = decoded else {
            unreachable!()
        };
        assert!(matches!(
            decode(payload, false).unwrap(),
            Message::Begin { xid: 1, .. }
        ));

        let keepalive = Out::tag(b'k').u64(0x2_0000_0001).i64(TIME).u8(1).bytes();
        assert_eq!(
            decode_replication_message(keepalive).unwrap(),
            ReplicationMessage::Keepalive {
                end: Lsn(0x2_0000_0001),
                time: TIME,
                reply: true
            }
        );
        let keepalive = Out::tag(b'k').u64(1).i64(TIME).u8(0).bytes();
        assert!(matches!(
            decode_replication_message(keepalive).unwrap(),
            ReplicationMessage::Keepalive { reply: false, .. }
        ));
        assert!(decode_replication_message(Out::tag(b'k').u64(1).bytes()).is_err());
        assert!(matches!(
            decode_replication_message(Bytes::from_static(b"r")).unwrap_err(),
            DecodeError::UnknownMessage {
                message: "replication",
                tag: b'r'
            }
        ));

        let update = standby_status_update(Lsn(1), Lsn(2), Lsn(3), TIME, true);
        let expected = Out::tag(b'r').u64(1).u64(2).u64(3).i64(TIME).u8(1).0;
        assert_eq!(update, expected);
        assert_eq!(update.len(), 34);
        assert_eq!(
            *standby_status_update(Lsn(1), Lsn(2), Lsn(3), 0, false)
                .last()
                .unwrap(),
            0
        );
    }

    #[test]
    fn lsn_text_round_trips() {
        for (text, value) in [
            ("0/0", 0u64),
            ("16/B374D848", 0x16_B374_D848),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("1/0", 1 << 32),
            ("0/1", 1),
        ] {
            assert_eq!(Lsn(value).to_string(), text);
            assert_eq!(text.parse::<Lsn>().unwrap(), Lsn(value));
        }
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "g/0",
            "1/2/3",
            "123456789/0",
            "+1/0",
            " 1/0",
            "1/-0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..10_000 {
            let lsn = Lsn(rng.next());
            assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }
        assert!(Lsn(1) < Lsn(1 << 32));
    }

    #[test]
    fn postgres_timestamps() {
        assert_eq!(postgres_timestamp(UNIX_EPOCH), -POSTGRES_EPOCH_UNIX_MICROS);
        let y2k = UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
        assert_eq!(postgres_timestamp(y2k), 0);
        assert_eq!(
            postgres_timestamp(y2k + std::time::Duration::from_micros(5)),
            5
        );
        assert!(postgres_timestamp(SystemTime::now()) > 0);
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Valid messages of every kind, with whether they are stream-block messages.
    fn samples() -> Vec<(Vec<u8>, bool)> {
        let (key, _) = key_tuple();
        let mut out = Vec::new();
        for xid in [None, Some(77)] {
            let s = xid.is_some();
            out.push((
                Out::tag(b'R')
                    .xid(xid)
                    .u32(1)
                    .str("public")
                    .str("t")
                    .u8(b'f')
                    .i16(1)
                    .u8(1)
                    .str("id")
                    .u32(23)
                    .i32(-1)
                    .0,
                s,
            ));
            out.push((
                Out::tag(b'Y').xid(xid).u32(1).str("public").str("mood").0,
                s,
            ));
            out.push((Out::tag(b'I').xid(xid).u32(1).u8(b'N').tuple().0, s));
            out.push((
                Out::tag(b'U')
                    .xid(xid)
                    .u32(1)
                    .u8(b'K')
                    .raw(&key.0)
                    .u8(b'N')
                    .tuple()
                    .0,
                s,
            ));
            out.push((
                Out::tag(b'U')
                    .xid(xid)
                    .u32(1)
                    .u8(b'O')
                    .tuple()
                    .u8(b'N')
                    .tuple()
                    .0,
                s,
            ));
            out.push((Out::tag(b'D').xid(xid).u32(1).u8(b'K').raw(&key.0).0, s));
            out.push((Out::tag(b'T').xid(xid).i32(2).u8(1).u32(1).u32(2).0, s));
            out.push((
                Out::tag(b'M')
                    .xid(xid)
                    .u8(1)
                    .u64(1)
                    .str("p")
                    .i32(3)
                    .raw(b"abc")
                    .0,
                s,
            ));
        }
        out.push((Out::tag(b'B').u64(1).i64(2).u32(3).0, false));
        out.push((Out::tag(b'C').u8(0).u64(1).u64(2).i64(3).0, false));
        out.push((Out::tag(b'O').u64(1).str("origin").0, false));
        out.push((Out::tag(b'S').u32(1).u8(1).0, false));
        out.push((Out::tag(b'E').0, true));
        out.push((Out::tag(b'c').u32(1).u8(0).u64(1).u64(2).i64(3).0, false));
        out.push((Out::tag(b'A').u32(1).u32(2).0, false));
        out
    }

    fn decode_everything(bytes: &[u8]) {
        let buf = Bytes::copy_from_slice(bytes);
        let _ = decode(buf.clone(), false);
        let _ = decode(buf.clone(), true);
        let _ = Decoder::new().decode(buf.clone());
        if let Ok(ReplicationMessage::XLogData { payload, .. }) = decode_replication_message(buf) {
            let _ = decode(payload, false);
        }
    }

    #[test]
    fn every_strict_prefix_of_a_valid_message_is_an_error() {
        for (bytes, in_stream) in samples() {
            decode(Bytes::from(bytes.clone()), in_stream).unwrap();
            for len in 0..bytes.len() {
                let prefix = Bytes::copy_from_slice(&bytes[..len]);
                assert!(
                    decode(prefix, in_stream).is_err(),
                    "prefix {len} of {bytes:?} decoded"
                );
            }
        }
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let tags = b"BCORYIUDTMSEcAwkKONntub";
        // Random bytes, usually starting with a known type byte.
        for _ in 0..20_000 {
            let len = rng.below(48);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                if rng.below(4) != 0 {
                    *first = tags[rng.below(tags.len())];
                }
            }
            decode_everything(&bytes);
        }
        // Valid messages with bytes flipped, inserted, deleted or cut, and
        // wrapped in XLogData.
        let samples = samples();
        for _ in 0..30_000 {
            let (mut bytes, _) = samples[rng.below(samples.len())].clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(5) {
                    0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                    1 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
                    2 => bytes.insert(at, tags[rng.below(tags.len())]),
                    3 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            decode_everything(&bytes);
            let wrapped = Out::tag(b'w').u64(1).u64(2).i64(3).raw(&bytes).0;
            decode_everything(&wrapped);
        }
    }
}
