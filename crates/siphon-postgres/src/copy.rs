//! Binary COPY framing: reading `COPY … TO STDOUT (FORMAT binary)` output as it
//! arrives in chunks, and writing data for `COPY … FROM STDIN (FORMAT binary)`.
//!
//! The stream is a header (the 11-byte signature `PGCOPY\n\377\r\n\0`, a flags
//! word, a header-extension length and that many bytes), then one tuple per row
//! (an i16 field count, then per field an i32 length, -1 for NULL, and that many
//! bytes in the type's binary format, see [`crate::types`]), then the trailer,
//! a field count of -1.
//!
//! This is the hot path of full loads, so neither side allocates per row: the
//! reader reads tuples in place from the chunk they arrived in (it copies only a
//! tuple split across chunks) and reuses one field table; the writer appends to
//! one buffer.
//!
//! ```no_run
//! # async fn demo(client: &tokio_postgres::Client, types: &[siphon_postgres::types::PgType])
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::{SinkExt, StreamExt};
//! use siphon_postgres::copy::{CopyInWriter, CopyOutReader};
//!
//! let mut reader = CopyOutReader::new();
//! let mut writer = CopyInWriter::new();
//! let stream = client.copy_out("COPY t TO STDOUT (FORMAT binary)").await?;
//! futures_util::pin_mut!(stream);
//! while let Some(chunk) = stream.next().await {
//!     reader.push(chunk?);
//!     while let Some(row) = reader.next_row()? {
//!         let values = row.decode(types)?; // Vec<Value>
//!         writer.write_row(types, &values)?;
//!     }
//! }
//! reader.finish()?;
//! let sink = client.copy_in("COPY t2 FROM STDIN (FORMAT binary)").await?;
//! futures_util::pin_mut!(sink);
//! sink.send(writer.finish()).await?;
//! sink.finish().await?;
//! # Ok(()) }
//! ```

use std::borrow::Borrow;

use bytes::Bytes;
use siphon_core::Value;

use crate::types::{
    decode_binary, encode_binary, encode_text, push_hex, write_field, CodecError, PgType,
};

/// The first 11 bytes of every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Header flag bit 16: every tuple carries an OID (servers before 12 only).
const FLAG_OIDS: u32 = 1 << 16;
/// Bits 17–31 are critical: a reader must refuse data with an unknown one set.
const CRITICAL_FLAGS: u32 = 0xFFFF_0000;
/// Signature, flags and extension length.
const HEADER_LEN: usize = 19;

/// The most [`send_in_pieces`] hands to the connection at once.
pub const SEND_PIECE: usize = 1 << 20;

/// Sends COPY data to a `COPY … FROM STDIN` sink (as `Transaction::copy_in`
/// gives) in pieces of at most [`SEND_PIECE`] bytes, each a slice of `data`,
/// and flushes. One send of all of it would copy it whole into the
/// connection's write buffer, which would keep that size as long as the
/// connection lives: a huge row would then take memory twice over, for good.
pub async fn send_in_pieces<S>(mut sink: std::pin::Pin<&mut S>, data: Bytes) -> Result<(), S::Error>
where
    S: futures_util::Sink<Bytes>,
{
    use futures_util::SinkExt;
    let mut at = 0;
    while at < data.len() {
        let end = data.len().min(at + SEND_PIECE);
        sink.feed(data.slice(at..end)).await?;
        at = end;
    }
    sink.flush().await
}

/// Why binary COPY data could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// The stream does not start with [`SIGNATURE`].
    #[error("not binary COPY data: the stream does not start with the PGCOPY signature")]
    Signature,
    /// The header sets flags this reader does not understand (OIDs included, or
    /// an unknown critical flag).
    #[error(
        "binary COPY header sets unsupported flags {0:#010x} (rows with OIDs, or a newer format)"
    )]
    Flags(u32),
    /// The bytes break the framing.
    #[error("malformed binary COPY data at byte {offset}: {reason}")]
    Malformed {
        /// Where the offending tuple (or header) starts in the stream.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A row has a different number of fields than the columns.
    #[error("binary COPY row has {got} fields, expected {expected}")]
    FieldCount {
        /// The number of columns.
        expected: usize,
        /// The number of fields in the row.
        got: usize,
    },
    /// The data ended before the trailer.
    #[error("binary COPY data ended before its trailer (after {rows} rows)")]
    Truncated {
        /// Rows read before the end.
        rows: u64,
    },
    /// A field's value could not be decoded or encoded. The message does not
    /// name the column: the caller, who knows its name, adds it.
    #[error("{source}")]
    Column {
        /// The column's position in the row (0 is the first).
        column: usize,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Header,
    Rows,
    Done,
}

/// Position and length of a non-NULL field inside its tuple.
type Field = Option<(usize, usize)>;

/// Reads binary COPY output pushed to it chunk by chunk, whatever the chunk
/// boundaries, and hands out one row at a time, borrowed from the chunk.
///
/// Use: [`push`](Self::push) a chunk, call [`next_row`](Self::next_row) until it
/// returns `None` (it needs the next chunk, or the trailer was read), repeat;
/// at the end [`finish`](Self::finish) checks the trailer was there.
#[derive(Debug, Default)]
pub struct CopyOutReader {
    /// The chunk being read in place, while no tuple is carried over.
    chunk: Bytes,
    /// A tuple (or the header) that began in an earlier chunk; while non-empty
    /// it is read instead of `chunk`, and new chunks are appended to it.
    carry: Vec<u8>,
    /// Read position in the active buffer.
    pos: usize,
    state: State,
    fields: Vec<Field>,
    /// The field count every row must have: given, or the first row's.
    columns: Option<usize>,
    /// Stream offset of the active buffer's first byte, for error messages.
    base: u64,
    rows: u64,
}

/// Outcome of scanning the active buffer for one tuple.
enum Scan {
    /// A whole tuple of this many bytes.
    Row(usize),
    Trailer,
    NeedMore,
}

impl CopyOutReader {
    /// A reader that learns the field count from the first row.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader that checks every row has `columns` fields.
    pub fn with_columns(columns: usize) -> Self {
        CopyOutReader {
            columns: Some(columns),
            ..Self::default()
        }
    }

    /// Adds the next chunk of the stream (as `Client::copy_out` yields them).
    /// Reading every row of the previous chunks first is cheapest: then a chunk
    /// is read in place; otherwise the unread bytes are copied to go on with.
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if !self.carry.is_empty() {
            self.carry.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
            if !self.carry.is_empty() {
                self.carry.extend_from_slice(&chunk);
                return;
            }
        }
        let rest = self.chunk.len() - self.pos.min(self.chunk.len());
        self.base += (self.chunk.len() - rest) as u64;
        if rest == 0 {
            // The common case (PostgreSQL sends one tuple per message): no copy.
            self.chunk = chunk;
        } else {
            self.carry.reserve(rest + chunk.len());
            self.carry.extend_from_slice(&self.chunk[self.pos..]);
            self.carry.extend_from_slice(&chunk);
            self.chunk = Bytes::new();
        }
        self.pos = 0;
    }

    /// Like [`push`](Self::push), for a borrowed slice (copied).
    pub fn push_slice(&mut self, chunk: &[u8]) {
        self.push(Bytes::copy_from_slice(chunk));
    }

    /// The next whole row, `None` when the buffered bytes end inside a row (push
    /// more) or the trailer has been read.
    pub fn next_row(&mut self) -> Result<Option<RawRow<'_>>, CopyError> {
        if self.state == State::Header {
            let buf: &[u8] = if self.carry.is_empty() {
                &self.chunk
            } else {
                &self.carry
            };
            let at = self.base + self.pos as u64;
            match scan_header(&buf[self.pos..], at)? {
                Some(len) => {
                    self.pos += len;
                    self.state = State::Rows;
                }
                None => return Ok(None),
            }
        }
        let buf: &[u8] = if self.carry.is_empty() {
            &self.chunk
        } else {
            &self.carry
        };
        let at = self.base + self.pos as u64;
        let rest = &buf[self.pos..];
        match self.state {
            State::Done if rest.is_empty() => return Ok(None),
            State::Done => {
                return Err(CopyError::Malformed {
                    offset: at,
                    reason: "data after the trailer",
                })
            }
            State::Header | State::Rows => {}
        }
        match scan_tuple(rest, at, self.columns, &mut self.fields)? {
            Scan::NeedMore => Ok(None),
            Scan::Trailer => {
                self.pos += 2;
                self.state = State::Done;
                if buf.len() > self.pos {
                    return Err(CopyError::Malformed {
                        offset: at + 2,
                        reason: "data after the trailer",
                    });
                }
                Ok(None)
            }
            Scan::Row(len) => {
                self.columns.get_or_insert(self.fields.len());
                self.pos += len;
                self.rows += 1;
                Ok(Some(RawRow {
                    data: &rest[..len],
                    fields: &self.fields,
                }))
            }
        }
    }

    /// The next row decoded with `types` (one per column), `None` as for
    /// [`next_row`](Self::next_row).
    pub fn next_values<T: Borrow<PgType>>(
        &mut self,
        types: &[T],
    ) -> Result<Option<Vec<Value>>, CopyError> {
        match self.next_row()? {
            Some(row) => row.decode(types).map(Some),
            None => Ok(None),
        }
    }

    /// Whether the trailer has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Checks, once the stream has ended, that it ended with the trailer and
    /// nothing after it.
    pub fn finish(&self) -> Result<(), CopyError> {
        let len = if self.carry.is_empty() {
            self.chunk.len()
        } else {
            self.carry.len()
        };
        match self.state {
            State::Done if len == self.pos => Ok(()),
            State::Done => Err(CopyError::Malformed {
                offset: self.base + self.pos as u64,
                reason: "data after the trailer",
            }),
            _ => Err(CopyError::Truncated { rows: self.rows }),
        }
    }
}

/// The header's length once it is all there; checks the signature as soon as
/// its first bytes arrive.
fn scan_header(b: &[u8], at: u64) -> Result<Option<usize>, CopyError> {
    let n = b.len().min(SIGNATURE.len());
    if b[..n] != SIGNATURE[..n] {
        return Err(CopyError::Signature);
    }
    if b.len() < HEADER_LEN {
        return Ok(None);
    }
    let flags = u32::from_be_bytes([b[11], b[12], b[13], b[14]]);
    if flags & (FLAG_OIDS | CRITICAL_FLAGS) != 0 {
        return Err(CopyError::Flags(flags));
    }
    let ext = u32::from_be_bytes([b[15], b[16], b[17], b[18]]);
    let ext = usize::try_from(ext)
        .ok()
        .filter(|e| *e <= i32::MAX as usize)
        .ok_or(CopyError::Malformed {
            offset: at + 15,
            reason: "header extension length out of range",
        })?;
    // The extension's contents are skipped: no extension is defined.
    let len = HEADER_LEN + ext;
    Ok((b.len() >= len).then_some(len))
}

/// Finds the extent of the tuple at the start of `b`, recording its fields.
fn scan_tuple(
    b: &[u8],
    at: u64,
    columns: Option<usize>,
    fields: &mut Vec<Field>,
) -> Result<Scan, CopyError> {
    let Some(count) = b.get(..2) else {
        return Ok(Scan::NeedMore);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Scan::Trailer);
    }
    let count = usize::try_from(count).map_err(|_| CopyError::Malformed {
        offset: at,
        reason: "negative field count",
    })?;
    if let Some(expected) = columns {
        if count != expected {
            return Err(CopyError::FieldCount {
                expected,
                got: count,
            });
        }
    }
    fields.clear();
    let mut p = 2;
    for _ in 0..count {
        let Some(len) = b.get(p..p + 4) else {
            return Ok(Scan::NeedMore);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        p += 4;
        if len == -1 {
            fields.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| CopyError::Malformed {
            offset: at,
            reason: "negative field length",
        })?;
        // Only a length that the buffered bytes cover is used; a longer one
        // waits for more data rather than allocating.
        if b.len() - p < len {
            return Ok(Scan::NeedMore);
        }
        fields.push(Some((p, len)));
        p += len;
    }
    Ok(Scan::Row(p))
}

/// One row of binary COPY data, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawRow<'a> {
    data: &'a [u8],
    fields: &'a [Field],
}

impl<'a> RawRow<'a> {
    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the row has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `i`'s bytes, `Some(None)` for NULL, `None` past the last field.
    pub fn get(&self, i: usize) -> Option<Option<&'a [u8]>> {
        let data = self.data;
        self.fields.get(i).map(|f| f.map(|(p, n)| &data[p..p + n]))
    }

    /// The fields in order, `None` for NULL.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&'a [u8]>> + 'a {
        let data = self.data;
        self.fields
            .iter()
            .map(move |f| f.map(|(p, n)| &data[p..p + n]))
    }

    /// The fields as a vector, `None` for NULL.
    pub fn to_vec(&self) -> Vec<Option<&'a [u8]>> {
        self.iter().collect()
    }

    /// The tuple exactly as it was framed (field count, lengths and bytes), for
    /// passing it through to [`CopyInWriter::write_raw`] unchanged.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The row decoded with `types`, one per column.
    pub fn decode<T: Borrow<PgType>>(&self, types: &[T]) -> Result<Vec<Value>, CopyError> {
        let mut out = Vec::with_capacity(self.len());
        self.decode_into(types, &mut out)?;
        Ok(out)
    }

    /// Appends the row decoded with `types` to `out` (reuse it across rows).
    pub fn decode_into<T: Borrow<PgType>>(
        &self,
        types: &[T],
        out: &mut Vec<Value>,
    ) -> Result<(), CopyError> {
        if types.len() != self.len() {
            return Err(CopyError::FieldCount {
                expected: types.len(),
                got: self.len(),
            });
        }
        out.reserve(self.len());
        for (column, (field, ty)) in self.iter().zip(types).enumerate() {
            out.push(match field {
                None => Value::Null,
                Some(raw) => decode_binary(ty.borrow(), raw)
                    .map_err(|source| CopyError::Column { column, source })?,
            });
        }
        Ok(())
    }
}

/// The data format of a `COPY … FROM STDIN` siphon writes: binary where siphon
/// has a binary codec for every column's type, else PostgreSQL's text format,
/// in which every type has a form (its input function's) that gives back the
/// very same datum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The binary format: header, tuples of length-prefixed fields, trailer.
    Binary,
    /// The text format: tab-separated fields in each type's text form, `\N`
    /// for NULL, backslash escapes, one line per row.
    Text,
}

impl Format {
    /// The format for columns of `types`: [`Format::Binary`] when
    /// [`PgType::binary_supported`] holds for each.
    pub fn of<T: Borrow<PgType>>(types: &[T]) -> Format {
        if types.iter().all(|t| t.borrow().binary_supported()) {
            Format::Binary
        } else {
            Format::Text
        }
    }

    /// The `FORMAT` option of the COPY statement: `binary` or `text`.
    pub fn as_sql(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Text => "text",
        }
    }

    /// Appends what comes before the first row.
    pub fn write_header(self, out: &mut Vec<u8>) {
        if self == Format::Binary {
            write_header(out);
        }
    }

    /// Appends one row, as [`write_row`] does for the binary format. On error
    /// `out` is left as it was.
    pub fn write_row<V, T>(
        self,
        out: &mut Vec<u8>,
        row: impl IntoIterator<Item = V>,
        types: &[T],
    ) -> Result<(), CopyError>
    where
        V: Borrow<Value>,
        T: Borrow<PgType>,
    {
        if self == Format::Binary {
            return write_row(out, row, types);
        }
        let start = out.len();
        let result = write_text_row(out, row, types);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// The bytes [`Format::write_row`] appends for a row of `values`, or a few
    /// more: reserve it (and the header and trailer, 64 bytes) before writing,
    /// so that a buffer holding a huge value is allocated once at its size,
    /// never grown (each growth doubles the buffer and copies it).
    pub fn row_len<'a>(self, values: impl IntoIterator<Item = &'a Value>) -> usize {
        values
            .into_iter()
            .map(|v| FIELD_SLACK + self.value_len(v))
            .sum::<usize>()
            + FIELD_SLACK
    }

    /// The length of a value's variable part in this format: its bytes, or
    /// for the text format its text with escapes (bytea in hex).
    fn value_len(self, v: &Value) -> usize {
        let text = |s: &str| match self {
            Format::Binary => s.len(),
            Format::Text => s.len() + escapes(s.as_bytes()),
        };
        match v {
            Value::Text(s) | Value::Json(s) | Value::Engine { text: s, .. } => text(s),
            Value::Bytes(b) => match self {
                Format::Binary => b.len(),
                // `\\x` (the backslash escaped) and two digits a byte.
                Format::Text => 3 + 2 * b.len(),
            },
            Value::Array(items) => items.iter().map(|v| FIELD_SLACK + self.value_len(v)).sum(),
            _ => 0,
        }
    }

    /// Appends what ends the data.
    pub fn write_trailer(self, out: &mut Vec<u8>) {
        if self == Format::Binary {
            write_trailer(out);
        }
    }
}

/// Bytes a field may take besides its variable part: its length prefix and a
/// fixed-size value (numbers, dates, uuids in either format), a separator.
const FIELD_SLACK: usize = 48;

/// A scratch buffer larger than this is freed once used, not kept for the
/// next value.
const KEEP_SCRATCH: usize = 1 << 20;

/// Appends text with the text format's escapes.
fn write_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let mut rest = text;
    while let Some(at) = rest
        .iter()
        .position(|&c| matches!(c, b'\\' | b'\n' | b'\r' | b'\t'))
    {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(match rest[at] {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => b"\\t",
        });
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// How many bytes of `b` the text format escapes (each then takes two).
fn escapes(b: &[u8]) -> usize {
    b.iter()
        .filter(|&&c| matches!(c, b'\\' | b'\n' | b'\r' | b'\t'))
        .count()
}

fn write_text_row<V, T>(
    out: &mut Vec<u8>,
    row: impl IntoIterator<Item = V>,
    types: &[T],
) -> Result<(), CopyError>
where
    V: Borrow<Value>,
    T: Borrow<PgType>,
{
    let mut row = row.into_iter();
    let mut text = String::new();
    let mut scratch = Vec::new();
    for (column, ty) in types.iter().enumerate() {
        let Some(v) = row.next() else {
            return Err(CopyError::FieldCount {
                expected: types.len(),
                got: column,
            });
        };
        if column > 0 {
            out.push(b'\t');
        }
        if v.borrow().is_null() {
            out.extend_from_slice(b"\\N");
            continue;
        }
        // A value the binary format would refuse (a number too large for the
        // column, …) is refused here as well, with the same error.
        if ty.borrow().binary_supported() {
            scratch.clear();
            encode_binary(ty.borrow(), v.borrow(), &mut scratch)
                .map_err(|source| CopyError::Column { column, source })?;
            if scratch.capacity() > KEEP_SCRATCH {
                scratch = Vec::new();
            }
        }
        // Text and bytes are written straight from the value, as
        // `encode_text` writes them: a huge value is not copied once more.
        match v.borrow() {
            Value::Text(s) | Value::Json(s) | Value::Engine { text: s, .. }
                if !s.contains('\0') =>
            {
                write_escaped(out, s.as_bytes())
            }
            Value::Bytes(b) => {
                // `\x` with its backslash escaped, then the digits.
                out.reserve(3 + 2 * b.len());
                out.extend_from_slice(b"\\\\x");
                push_hex(out, b);
            }
            v => {
                text.clear();
                encode_text(ty.borrow(), v, &mut text)
                    .map_err(|source| CopyError::Column { column, source })?;
                write_escaped(out, text.as_bytes());
            }
        }
    }
    let extra = row.count();
    if extra > 0 {
        return Err(CopyError::FieldCount {
            expected: types.len(),
            got: types.len() + extra,
        });
    }
    out.push(b'\n');
    Ok(())
}

/// Appends the binary COPY header (signature, no flags, no extension).
pub fn write_header(out: &mut Vec<u8>) {
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&[0; 8]);
}

/// Appends one row: `row` yields a value per column, encoded for the matching
/// entry of `types` (NULL as a NULL field). On error `out` is left as it was.
pub fn write_row<V, T>(
    out: &mut Vec<u8>,
    row: impl IntoIterator<Item = V>,
    types: &[T],
) -> Result<(), CopyError>
where
    V: Borrow<Value>,
    T: Borrow<PgType>,
{
    let start = out.len();
    let result = write_row_inner(out, row, types);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_row_inner<V, T>(
    out: &mut Vec<u8>,
    row: impl IntoIterator<Item = V>,
    types: &[T],
) -> Result<(), CopyError>
where
    V: Borrow<Value>,
    T: Borrow<PgType>,
{
    let count = i16::try_from(types.len()).map_err(|_| CopyError::FieldCount {
        expected: i16::MAX as usize,
        got: types.len(),
    })?;
    out.extend_from_slice(&count.to_be_bytes());
    let mut row = row.into_iter();
    for (column, ty) in types.iter().enumerate() {
        let Some(v) = row.next() else {
            return Err(CopyError::FieldCount {
                expected: types.len(),
                got: column,
            });
        };
        match v.borrow() {
            Value::Null => out.extend_from_slice(&(-1i32).to_be_bytes()),
            v => write_field(ty.borrow(), v, out)
                .map_err(|source| CopyError::Column { column, source })?,
        }
    }
    let extra = row.count();
    if extra > 0 {
        return Err(CopyError::FieldCount {
            expected: types.len(),
            got: types.len() + extra,
        });
    }
    Ok(())
}

/// Appends the trailer that ends the data.
pub fn write_trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// Builds binary COPY data for `Client::copy_in`: the header on creation, then
/// rows; [`take`](Self::take) hands out what is buffered so far (to send while
/// encoding goes on), [`finish`](Self::finish) the rest with the trailer.
#[derive(Debug)]
pub struct CopyInWriter {
    buf: Vec<u8>,
    rows: u64,
}

impl Default for CopyInWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyInWriter {
    /// A writer with the header already written.
    pub fn new() -> Self {
        Self::with_capacity(64 * 1024)
    }

    /// Like [`new`](Self::new), with a buffer of `bytes` to start with.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_LEN));
        write_header(&mut buf);
        CopyInWriter { buf, rows: 0 }
    }

    /// Appends a row of values, one per entry of `types`. A row that fails to
    /// encode leaves nothing behind, so the caller may skip it and go on.
    pub fn write_row<V, T>(
        &mut self,
        types: &[T],
        row: impl IntoIterator<Item = V>,
    ) -> Result<(), CopyError>
    where
        V: Borrow<Value>,
        T: Borrow<PgType>,
    {
        write_row(&mut self.buf, row, types)?;
        self.rows += 1;
        Ok(())
    }

    /// Appends a row read by [`CopyOutReader`] unchanged: the fast path between
    /// two PostgreSQL tables with the same column types in the same order.
    pub fn write_raw(&mut self, row: RawRow<'_>) {
        self.buf.extend_from_slice(row.as_bytes());
        self.rows += 1;
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes buffered and not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Everything buffered so far (the header the first time), leaving the
    /// buffer empty: whole rows, ready to send while more are encoded.
    pub fn take(&mut self) -> Bytes {
        let fresh = Vec::with_capacity(self.buf.capacity());
        // Vec → Bytes keeps the allocation: no copy.
        Bytes::from(std::mem::replace(&mut self.buf, fresh))
    }

    /// The rest of the data with the trailer: the last bytes to send.
    pub fn finish(mut self) -> Bytes {
        write_trailer(&mut self.buf);
        Bytes::from(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PgType;

    fn types() -> Vec<PgType> {
        vec![
            PgType::builtin(23, "integer").unwrap(),
            PgType::builtin(25, "text").unwrap(),
            PgType::builtin(1700, "numeric(12,2)").unwrap(),
            PgType::builtin(1007, "integer[]").unwrap(),
            PgType::builtin(17, "bytea").unwrap(),
        ]
    }

    fn rows() -> Vec<Vec<Value>> {
        let a = Value::Array;
        vec![
            vec![
                Value::Int32(1),
                Value::Text("héllo 🎉".into()),
                Value::Decimal("12.30".parse().unwrap()),
                a(vec![Value::Int32(1), Value::Null]),
                Value::Bytes(vec![0, 0, 255]),
            ],
            vec![
                Value::Int32(2),
                Value::Text(String::new()),
                Value::Null,
                a(vec![]),
                Value::Bytes(vec![]),
            ],
            vec![
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        ]
    }

    fn stream() -> Vec<u8> {
        let types = types();
        let mut w = CopyInWriter::new();
        for r in rows() {
            w.write_row(&types, &r).unwrap();
        }
        assert_eq!(w.rows(), 3);
        w.finish().to_vec()
    }

    /// Feeds `chunks` and collects the decoded rows.
    fn read_all(chunks: &[&[u8]]) -> Result<Vec<Vec<Value>>, CopyError> {
        let types = types();
        let mut r = CopyOutReader::with_columns(types.len());
        let mut out = Vec::new();
        for c in chunks {
            r.push_slice(c);
            while let Some(v) = r.next_values(&types)? {
                out.push(v);
            }
        }
        r.finish()?;
        Ok(out)
    }

    #[test]
    fn frames_as_postgres_does() {
        let s = stream();
        assert_eq!(&s[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&s[11..19], &[0; 8]);
        assert_eq!(&s[s.len() - 2..], &[0xff, 0xff]);
        // Row 3: five NULL fields.
        let last = &s[s.len() - 2 - 22..s.len() - 2];
        let mut want = vec![0, 5];
        for _ in 0..5 {
            want.extend_from_slice(&[0xff; 4]);
        }
        assert_eq!(last, &want[..]);
    }

    #[test]
    fn splits_at_every_byte_boundary() {
        let s = stream();
        let want = rows();
        assert_eq!(read_all(&[&s]).unwrap(), want);
        for k in 0..=s.len() {
            assert_eq!(read_all(&[&s[..k], &s[k..]]).unwrap(), want, "split at {k}");
        }
        for k in 1..s.len() {
            for j in k..s.len() {
                if (j - k) % 7 == 0 {
                    assert_eq!(read_all(&[&s[..k], &s[k..j], &s[j..]]).unwrap(), want);
                }
            }
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(read_all(&bytes).unwrap(), want);
    }

    #[test]
    fn raw_rows_pass_through() {
        let s = stream();
        let mut r = CopyOutReader::new();
        let mut w = CopyInWriter::with_capacity(0);
        for c in s.chunks(5) {
            r.push(Bytes::copy_from_slice(c));
            while let Some(row) = r.next_row().unwrap() {
                assert_eq!(row.len(), 5);
                assert_eq!(row.get(5), None);
                w.write_raw(row);
            }
        }
        r.finish().unwrap();
        assert_eq!(r.rows(), 3);
        let mut out = w.take().to_vec();
        out.extend_from_slice(&w.finish());
        assert_eq!(out, s);
    }

    #[test]
    fn raw_fields() {
        let s = stream();
        let mut r = CopyOutReader::new();
        r.push(Bytes::from(s));
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.get(0), Some(Some(&[0u8, 0, 0, 1][..])));
        assert_eq!(row.to_vec()[4], Some(&[0u8, 0, 255][..]));
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.get(1), Some(Some(&[][..])), "empty text is not NULL");
        assert_eq!(row.get(2), Some(None));
        assert!(r.next_row().unwrap().is_some());
        assert!(r.next_row().unwrap().is_none());
        assert!(r.is_done());
    }

    #[test]
    fn header_extension_is_skipped() {
        let s = stream();
        let mut with_ext = s[..15].to_vec();
        with_ext.extend_from_slice(&3u32.to_be_bytes());
        with_ext.extend_from_slice(b"abc");
        with_ext.extend_from_slice(&s[19..]);
        for k in 0..with_ext.len() {
            assert_eq!(read_all(&[&with_ext[..k], &with_ext[k..]]).unwrap(), rows());
        }
    }

    #[test]
    fn bad_streams_are_errors() {
        let s = stream();
        assert_eq!(read_all(&[b"PGCOPY\n\xfe"]), Err(CopyError::Signature));
        assert_eq!(read_all(&[b"x"]), Err(CopyError::Signature));
        let mut oids = s.clone();
        oids[12] = 1;
        assert_eq!(read_all(&[&oids]), Err(CopyError::Flags(1 << 16)));
        // The lower 16 flag bits are not critical.
        let mut minor = s.clone();
        minor[14] = 1;
        assert!(read_all(&[&minor]).is_ok());
        assert_eq!(
            read_all(&[&s[..s.len() - 2]]),
            Err(CopyError::Truncated { rows: 3 })
        );
        assert_eq!(read_all(&[&s[..10]]), Err(CopyError::Truncated { rows: 0 }));
        let mut after = s.clone();
        after.push(0);
        assert!(matches!(
            read_all(&[&after]),
            Err(CopyError::Malformed { .. })
        ));
        assert!(matches!(
            read_all(&[&s, &[0]]),
            Err(CopyError::Malformed { .. })
        ));
        let mut neg = s.clone();
        neg[19..21].copy_from_slice(&(-2i16).to_be_bytes());
        assert!(matches!(
            read_all(&[&neg]),
            Err(CopyError::Malformed { .. })
        ));
        let mut count = s.clone();
        count[20] = 4;
        assert_eq!(
            read_all(&[&count]),
            Err(CopyError::FieldCount {
                expected: 5,
                got: 4
            })
        );
        let mut bad_len = s.clone();
        bad_len[21..25].copy_from_slice(&(-7i32).to_be_bytes());
        assert!(matches!(
            read_all(&[&bad_len]),
            Err(CopyError::Malformed { .. })
        ));
        // A text field that is not UTF-8 names its column.
        let mut bad_text = s.clone();
        bad_text[33] = 0xff;
        assert!(matches!(
            read_all(&[&bad_text]),
            Err(CopyError::Column { column: 1, .. })
        ));
    }

    #[test]
    fn write_errors_leave_the_buffer_whole() {
        let types = types();
        let mut w = CopyInWriter::new();
        let before = w.buffered();
        let mut bad = rows()[0].clone();
        bad[0] = Value::Text("not a number".into());
        let e = w.write_row(&types, &bad).unwrap_err();
        assert!(matches!(e, CopyError::Column { column: 0, .. }), "{e}");
        assert!(e.to_string().contains("integer"), "{e}");
        let e = w.write_row(&types, &rows()[0][..4]).unwrap_err();
        assert_eq!(
            e,
            CopyError::FieldCount {
                expected: 5,
                got: 4
            }
        );
        let mut long = rows()[0].clone();
        long.push(Value::Null);
        assert!(w.write_row(&types, &long).is_err());
        assert_eq!(w.buffered(), before);
        assert_eq!(w.rows(), 0);
        // Free functions, with borrowed types as discovery holds them.
        let refs: Vec<&PgType> = types.iter().collect();
        let mut buf = Vec::new();
        write_header(&mut buf);
        write_row(&mut buf, rows()[0].iter(), &refs).unwrap();
        write_trailer(&mut buf);
        assert_eq!(read_all(&[&buf]).unwrap(), vec![rows()[0].clone()]);
    }

    #[test]
    fn random_bytes_never_panic() {
        let types = types();
        let s = stream();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..5_000 {
            // A valid stream with random bytes overwritten, or random bytes
            // after a valid header, cut into random chunks.
            let mut data = if round % 2 == 0 {
                s.clone()
            } else {
                let mut d = s[..19].to_vec();
                d.extend((0..next() % 64).map(|_| next() as u8));
                d
            };
            for _ in 0..1 + next() % 4 {
                let i = (next() % data.len() as u64) as usize;
                data[i] = next() as u8;
            }
            let mut r = CopyOutReader::new();
            let mut rest = &data[..];
            'feed: while !rest.is_empty() {
                let n = 1 + (next() % rest.len() as u64) as usize;
                r.push_slice(&rest[..n]);
                rest = &rest[n..];
                loop {
                    match r.next_row() {
                        Ok(Some(row)) => {
                            let _ = row.decode(&types);
                        }
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
            let _ = r.finish();
        }
    }

    #[test]
    fn text_format_for_types_without_a_binary_codec() {
        let inet = PgType::text_only(869, "inet");
        let int = PgType::builtin(23, "integer").unwrap();
        let text = PgType::builtin(25, "text").unwrap();
        assert_eq!(Format::of(&[&int, &text]), Format::Binary);
        assert_eq!(Format::of(&[&int, &inet]), Format::Text);
        assert_eq!(Format::Text.as_sql(), "text");
        let types = [&int, &inet, &text];
        let row = [
            Value::Int32(7),
            Value::Engine {
                type_name: "inet".into(),
                text: "10.0.0.1/8".into(),
            },
            Value::Text("tab\there\nline \\N".into()),
        ];
        let mut out = Vec::new();
        Format::Text.write_header(&mut out);
        Format::Text.write_row(&mut out, &row, &types).unwrap();
        Format::Text
            .write_row(&mut out, [Value::Null, Value::Null, Value::Null], &types)
            .unwrap();
        Format::Text.write_trailer(&mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "7\t10.0.0.1/8\ttab\\there\\nline \\\\N\n\\N\t\\N\t\\N\n"
        );
        // A value that cannot be written names its column's position and leaves
        // the buffer as it was.
        let bad = [Value::Text("x\0".into()), Value::Null, Value::Null];
        let before = out.len();
        let types = [&text, &inet, &text];
        match Format::Text.write_row(&mut out, &bad, &types) {
            Err(CopyError::Column { column: 0, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(out.len(), before);
    }
}
