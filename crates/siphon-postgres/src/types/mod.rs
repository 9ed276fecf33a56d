//! PostgreSQL column types, and the codec between PostgreSQL's two wire formats
//! and siphon's [`Value`]: the binary format (binary COPY, binary results) and
//! the text output format (pgoutput tuples, simple-query results).
//!
//! Both formats decode to the same [`Value`] for the same datum, so a row read by
//! a snapshot (binary COPY) and the same row read from the replication stream
//! (text) compare equal:
//!
//! | PostgreSQL | [`Value`] |
//! | --- | --- |
//! | boolean | `Bool` |
//! | smallint, integer, bigint | `Int16`, `Int32`, `Int64` |
//! | oid | `Int64` |
//! | real, double precision | `Float32`, `Float64` (NaN and ±Infinity included) |
//! | numeric | `Decimal`, scale kept (`12.30`); NaN and ±Infinity as `Decimal`'s `NaN`, `Infinity`, `-Infinity` |
//! | text, varchar, char(n), name, "char", enums | `Text` |
//! | bytea | `Bytes` |
//! | date, time, timestamp, timestamptz | `Date`, `Time`, `Timestamp`, `TimestampTz`; `±infinity` is chrono's `MAX`/`MIN`, `24:00:00` is [`Value::END_OF_DAY`]; past chrono's last year (PostgreSQL reaches 294276 and 5874897) `Engine { type_name, text }` with PostgreSQL's text |
//! | interval | `Engine { type_name: "interval", text }`, ISO 8601 as IntervalStyle `iso_8601` prints it |
//! | json, jsonb | `Json` (jsonb as PostgreSQL prints it) |
//! | uuid | `Uuid` |
//! | citext and other types whose send and receive functions are text's | `Text` |
//! | arrays of the above | `Array`, one nesting level per dimension; an array with a lower bound other than 1 is `Engine { type_name, text }` with its text form (`[0:1]={7,8}`), which keeps the bounds |
//! | any other type (inet, money, ranges, geometry, xml, timetz, composites, hstore, …) | `Engine { type_name, text }`: no binary codec; written by text-format COPY (see [`encode_text`]) |
//!
//! Decoding never panics on malformed input and never allocates from a length
//! it has not checked against the bytes it holds.

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike};
use siphon_core::typemap::{parse_native, Engine};
use siphon_core::{Decimal, TypeKind, Value};
use uuid::Uuid;

mod array;
mod binary;
mod datetime;
pub(crate) mod defined;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use array::write_field;
use array::*;
use binary::{beyond_chrono, BAD_DATE, BAD_TIMESTAMP};

pub use binary::{decode_binary, encode_binary};
use datetime::*;

pub(crate) use text::push_hex;
pub use text::{decode_text, encode_text};

/// Why a value could not be decoded or encoded. Messages name the PostgreSQL type
/// and the offending value (cut short when long) or value kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A value of this kind has no lossless way into a column of this type.
    #[error("cannot write a {kind} value into a PostgreSQL {ty} column")]
    Mismatch {
        /// The PostgreSQL type, as `format_type()` names it.
        ty: String,
        /// [`Value::kind_name`] of the value.
        kind: &'static str,
    },
    /// `encode_binary` was handed NULL, which has no field bytes: binary COPY and
    /// the binary protocol write NULL as a length of -1 instead.
    #[error("NULL has no binary form for PostgreSQL {ty}; write it as a NULL field (length -1)")]
    Null {
        /// The PostgreSQL type.
        ty: String,
    },
    /// The value is of a fitting kind but outside what the type holds.
    #[error("value {value} does not fit PostgreSQL {ty}")]
    OutOfRange {
        /// The PostgreSQL type.
        ty: String,
        /// The value, cut short when long.
        value: String,
    },
    /// A valid PostgreSQL value that no siphon [`Value`] can hold.
    #[error("PostgreSQL {ty} value {value} has no siphon equivalent: {hint}")]
    Unrepresentable {
        /// The PostgreSQL type.
        ty: String,
        /// The value as PostgreSQL prints it.
        value: String,
        /// What the user can do about it.
        hint: &'static str,
    },
    /// Malformed bytes in the binary format.
    #[error("malformed binary PostgreSQL {ty} value: {reason}")]
    Binary {
        /// The PostgreSQL type.
        ty: String,
        /// What is wrong with the bytes.
        reason: &'static str,
    },
    /// Text that is not a valid text form of the type.
    #[error("malformed PostgreSQL {ty} text {text:?}: {reason}")]
    Text {
        /// The PostgreSQL type.
        ty: String,
        /// The text, cut short when long.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The type has no binary codec here (geometry, ranges, …). siphon reads and
    /// writes such columns in PostgreSQL's text form; this error means a value
    /// of it reached a binary-only path (a key or cursor parameter).
    #[error(
        "siphon has no binary form for PostgreSQL type {ty} (oid {oid}), needed here for a key or cursor value; \
         use a column of another type as the key or cursor, or report the table's definition"
    )]
    NoBinaryCodec {
        /// The PostgreSQL type.
        ty: String,
        /// Its OID.
        oid: u32,
    },
}

/// How a type's values look on the wire: one variant per binary format the
/// codec speaks. Types that share a format share a variant (text, varchar,
/// char(n), name and every enum are all [`Wire::Text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Wire {
    Bool,
    Int2,
    Int4,
    Int8,
    /// `oid`, an unsigned 32-bit integer, read as `Int64`.
    Oid,
    Float4,
    Float8,
    Numeric,
    /// UTF-8 text: text, varchar, bpchar, name, enums.
    Text,
    /// The one-byte `"char"` type.
    Char,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Json,
    Jsonb,
    Uuid,
    Array,
    /// No binary codec: the text form travels as [`Value::Engine`].
    TextOnly,
}

/// The wire format of a built-in scalar type. A `match`, not a table lookup:
/// it runs once per field on the hot path.
fn builtin_wire(oid: u32) -> Option<Wire> {
    Some(match oid {
        16 => Wire::Bool,
        17 => Wire::Bytea,
        18 => Wire::Char,
        19 | 25 | 1042 | 1043 => Wire::Text,
        20 => Wire::Int8,
        21 => Wire::Int2,
        23 => Wire::Int4,
        26 => Wire::Oid,
        114 => Wire::Json,
        700 => Wire::Float4,
        701 => Wire::Float8,
        1082 => Wire::Date,
        1083 => Wire::Time,
        1114 => Wire::Timestamp,
        1184 => Wire::TimestampTz,
        1186 => Wire::Interval,
        1700 => Wire::Numeric,
        2950 => Wire::Uuid,
        3802 => Wire::Jsonb,
        _ => return None,
    })
}

/// A column's PostgreSQL type, as discovery reads it from `pg_catalog`, with what
/// the codec needs to read and write its values.
///
/// The codec picks the format from the fields: an `element` makes an array; else
/// a built-in `oid` (see the module docs) its own format; else an enum `kind` (or
/// `labels`) travels as label text; else a user-defined OID (a domain) with a
/// base type's `kind` (and, for json and jsonb, `name`) that type's format;
/// anything else is text-only ([`PgType::binary_supported`] is false).
///
/// Discovery resolves a domain to its base type (name, kind, and OID or not). The
/// element of an array of a domain must keep the domain's OID, because
/// PostgreSQL checks the element OID of binary arrays on COPY FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    /// The type's OID; for an array's element it is the OID written in the array
    /// header (PostgreSQL checks it on COPY FROM: a domain's own OID for an array
    /// of a domain).
    pub oid: u32,
    /// The type as `format_type()` prints it: `numeric(12,2)`, `integer[]`, `mood`.
    pub name: String,
    /// The portable kind.
    pub kind: TypeKind,
    /// The element type of an array.
    pub element: Option<Box<PgType>>,
    /// An enum's labels in sort order (empty for other types).
    pub labels: Vec<String>,
}

/// Built-in types: OID, array OID, wire format, `format_type()` name without a
/// modifier.
const BUILTINS: &[(u32, u32, Wire, &str)] = &[
    (16, 1000, Wire::Bool, "boolean"),
    (17, 1001, Wire::Bytea, "bytea"),
    (18, 1002, Wire::Char, "\"char\""),
    (19, 1003, Wire::Text, "name"),
    (20, 1016, Wire::Int8, "bigint"),
    (21, 1005, Wire::Int2, "smallint"),
    (23, 1007, Wire::Int4, "integer"),
    (25, 1009, Wire::Text, "text"),
    (26, 1028, Wire::Oid, "oid"),
    (114, 199, Wire::Json, "json"),
    (700, 1021, Wire::Float4, "real"),
    (701, 1022, Wire::Float8, "double precision"),
    (1042, 1014, Wire::Text, "bpchar"),
    (1043, 1015, Wire::Text, "character varying"),
    (1082, 1182, Wire::Date, "date"),
    (1083, 1183, Wire::Time, "time without time zone"),
    (1114, 1115, Wire::Timestamp, "timestamp without time zone"),
    (1184, 1185, Wire::TimestampTz, "timestamp with time zone"),
    (1186, 1187, Wire::Interval, "interval"),
    (1700, 1231, Wire::Numeric, "numeric"),
    (2950, 2951, Wire::Uuid, "uuid"),
    (3802, 3807, Wire::Jsonb, "jsonb"),
];

/// The `type_name` of interval values ([`Value::Engine`]).
pub const INTERVAL: &str = "interval";

impl PgType {
    /// A built-in scalar type or an array of one, by OID (see the module docs for
    /// the list). `name` is the `format_type()` text; its modifiers give the kind's
    /// parameters (`numeric(12,2)`, `character varying(16)`). A domain over a
    /// built-in type passes the base type's OID and may keep its own name.
    /// `None` for any other OID.
    pub fn builtin(oid: u32, name: &str) -> Option<PgType> {
        if let Some(&(base, _, wire, default)) = BUILTINS.iter().find(|b| b.0 == oid) {
            let name = if name.is_empty() { default } else { name };
            return Some(PgType {
                oid: base,
                name: name.to_string(),
                kind: base_kind(base, wire, name),
                element: None,
                labels: Vec::new(),
            });
        }
        let &(base, _, _, default) = BUILTINS.iter().find(|b| b.1 == oid)?;
        // format_type() prints `integer[]` whatever the dimensions; the element's
        // name is the array's without the brackets, modifier included.
        let element_name = name.strip_suffix("[]").unwrap_or(default);
        let element = PgType::builtin(base, element_name)?;
        let name = if name.is_empty() {
            format!("{default}[]")
        } else {
            name.to_string()
        };
        Some(PgType::array(oid, &name, element))
    }

    /// An enum type (`typtype = 'e'`) with its labels in sort order; its values
    /// travel as their label text.
    pub fn enumeration(oid: u32, name: &str, labels: Vec<String>) -> PgType {
        PgType {
            oid,
            name: name.to_string(),
            kind: TypeKind::Enum {
                name: name.to_string(),
                labels: labels.clone(),
            },
            element: None,
            labels,
        }
    }

    /// An array type (`oid` is the array type's OID) of `element`.
    pub fn array(oid: u32, name: &str, element: PgType) -> PgType {
        PgType {
            oid,
            name: name.to_string(),
            kind: TypeKind::Array {
                element: Box::new(element.kind.clone()),
            },
            element: Some(Box::new(element)),
            labels: Vec::new(),
        }
    }

    /// A type siphon has no binary codec for (geometry, ranges, inet, …): its
    /// text form is carried as [`Value::Engine`] with `type_name` = `name`.
    pub fn text_only(oid: u32, name: &str) -> PgType {
        PgType {
            oid,
            name: name.to_string(),
            kind: TypeKind::Engine {
                name: name.to_string(),
            },
            element: None,
            labels: Vec::new(),
        }
    }

    /// A user-defined type whose binary format is text's (its send and receive
    /// functions are PostgreSQL's `textsend` and `textrecv`, as citext's are):
    /// its values are [`Value::Text`] and travel in binary.
    pub fn text_like(oid: u32, name: &str) -> PgType {
        PgType {
            oid,
            name: name.to_string(),
            kind: TypeKind::Text { max_len: None },
            element: None,
            labels: Vec::new(),
        }
    }

    /// The type of a column from what discovery reads in `pg_catalog`: the type's
    /// OID (a domain already resolved to its base type), its `format_type()` name,
    /// its `typtype`, its element type when it is an array, and its labels when it
    /// is an enum. For the element of an array of a domain, set the result's `oid`
    /// to the domain's OID afterwards (see [`PgType`]).
    pub fn from_catalog(
        oid: u32,
        name: &str,
        typtype: char,
        element: Option<PgType>,
        labels: Vec<String>,
    ) -> PgType {
        if typtype == 'e' {
            return PgType::enumeration(oid, name, labels);
        }
        if let Some(element) = element {
            return PgType::array(oid, name, element);
        }
        PgType::builtin(oid, name).unwrap_or_else(|| PgType::text_only(oid, name))
    }

    /// What identifies the type's binary format across databases, for passing
    /// values between two PostgreSQL databases without decoding them: a built-in
    /// type by OID and `format_type()` name (modifiers included), an enum by its
    /// qualified name (its values travel as label text). `None` for other user
    /// types (domains, composites, arrays of user types): their OIDs differ from
    /// one database to another, and binary arrays and records carry them.
    pub fn native_id(&self) -> Option<String> {
        /// PostgreSQL's `FirstNormalObjectId`: OIDs below it are built in.
        const FIRST_USER_OID: u32 = 16384;
        let element_builtin = self
            .element
            .as_deref()
            .is_none_or(|e| e.oid < FIRST_USER_OID && e.element.is_none());
        if self.oid < FIRST_USER_OID && element_builtin {
            return Some(format!("{}:{}", self.oid, self.name));
        }
        if self.element.is_none() && matches!(self.kind, TypeKind::Enum { .. }) {
            return Some(format!("enum:{}", self.name));
        }
        None
    }

    /// Whether [`decode_binary`] and [`encode_binary`] handle this type (and its
    /// elements); when not, read it in text format.
    pub fn binary_supported(&self) -> bool {
        match self.wire() {
            Wire::TextOnly => false,
            Wire::Array => self
                .element
                .as_deref()
                .is_some_and(|e| e.element.is_none() && e.binary_supported()),
            _ => true,
        }
    }

    fn wire(&self) -> Wire {
        use TypeKind as K;
        if self.element.is_some() {
            return Wire::Array;
        }
        if let Some(w) = builtin_wire(self.oid) {
            return w;
        }
        if matches!(self.kind, K::Enum { .. }) || !self.labels.is_empty() {
            return Wire::Text;
        }
        if self.oid < FIRST_USER_OID {
            // A built-in type without a codec (timetz, inet, …), whatever kind
            // its name parses to.
            return Wire::TextOnly;
        }
        // A user-defined OID with a base type's kind: a domain that kept its own
        // OID, as the element of an array of a domain must.
        match &self.kind {
            K::Bool => Wire::Bool,
            K::Int16 => Wire::Int2,
            K::Int32 => Wire::Int4,
            K::Int64 => Wire::Int8,
            K::Float32 => Wire::Float4,
            K::Float64 => Wire::Float8,
            K::Decimal { .. } => Wire::Numeric,
            K::Text { .. } | K::FixedText { .. } => Wire::Text,
            K::Bytes { .. } => Wire::Bytea,
            K::Date => Wire::Date,
            K::Time => Wire::Time,
            K::Timestamp => Wire::Timestamp,
            K::TimestampTz => Wire::TimestampTz,
            K::Uuid => Wire::Uuid,
            K::Json if self.name == "json" => Wire::Json,
            K::Json if self.name == "jsonb" => Wire::Jsonb,
            K::Engine { name } if name == INTERVAL => Wire::Interval,
            _ => Wire::TextOnly,
        }
    }
}

/// PostgreSQL's FirstNormalObjectId: OIDs from here on are user-defined.
const FIRST_USER_OID: u32 = 16384;

/// The kind of a built-in type; parameters come from the name when it carries
/// them (a domain's own name does not, and gets the unparameterised kind).
fn base_kind(oid: u32, wire: Wire, name: &str) -> TypeKind {
    use TypeKind as K;
    let parsed = || parse_native(Engine::Postgres, name);
    match wire {
        Wire::Bool => K::Bool,
        Wire::Int2 => K::Int16,
        Wire::Int4 => K::Int32,
        Wire::Int8 | Wire::Oid => K::Int64,
        Wire::Float4 => K::Float32,
        Wire::Float8 => K::Float64,
        Wire::Numeric => match parsed() {
            d @ K::Decimal { .. } => d,
            _ => K::Decimal {
                precision: None,
                scale: None,
            },
        },
        Wire::Text => match (oid, parsed()) {
            (1043, t @ K::Text { .. }) => t,
            (1042, f @ K::FixedText { .. }) if name.contains('(') => f,
            _ => K::Text { max_len: None },
        },
        Wire::Char => K::FixedText { len: 1 },
        Wire::Bytea => K::Bytes { max_len: None },
        Wire::Date => K::Date,
        Wire::Time => K::Time,
        Wire::Timestamp => K::Timestamp,
        Wire::TimestampTz => K::TimestampTz,
        Wire::Interval => K::Engine {
            name: INTERVAL.into(),
        },
        Wire::Json | Wire::Jsonb => K::Json,
        Wire::Uuid => K::Uuid,
        Wire::Array | Wire::TextOnly => K::Engine { name: name.into() },
    }
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn utf8(ty: &PgType, raw: &[u8]) -> Result<String, CodecError> {
    String::from_utf8(raw.to_vec()).map_err(|_| CodecError::Binary {
        ty: ty.name.clone(),
        reason: "not valid UTF-8",
    })
}

/// Text for a text-like type; a NUL byte is refused here because PostgreSQL
/// refuses it in every text type, with a message that would not name the value.
fn push_text(ty: &PgType, s: &str, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if s.as_bytes().contains(&0) {
        return Err(CodecError::OutOfRange {
            ty: ty.name.clone(),
            value: format!("{} (contains a NUL character)", excerpt(s)),
        });
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// An integer from any value that holds one exactly: `Ok(None)` for other kinds.
fn int_of(ty: &PgType, v: &Value) -> Result<Option<i64>, CodecError> {
    Ok(Some(match v {
        Value::Int16(i) => i64::from(*i),
        Value::Int32(i) => i64::from(*i),
        Value::Int64(i) => *i,
        Value::Decimal(d) => {
            let s = d.as_str();
            let (int, frac) = s.split_once('.').unwrap_or((s, ""));
            if !frac.bytes().all(|b| b == b'0') {
                return Err(out_of_range(ty, v));
            }
            match int {
                "" | "-" | "+" => 0,
                _ => int.parse().map_err(|_| out_of_range(ty, v))?,
            }
        }
        _ => return Ok(None),
    }))
}

/// The one-byte `"char"` as PostgreSQL 15 prints it: NUL is empty, high bytes are
/// `\ooo` octal.
fn char_text(b: u8) -> String {
    match b {
        0 => String::new(),
        b if b.is_ascii() => char::from(b).to_string(),
        b => format!("\\{b:03o}"),
    }
}

fn char_byte(ty: &PgType, s: &str) -> Result<u8, CodecError> {
    match *s.as_bytes() {
        [] => Ok(0),
        [b] => Ok(b),
        [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7'] => {
            Ok(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'))
        }
        _ => Err(CodecError::OutOfRange {
            ty: ty.name.clone(),
            value: excerpt(s),
        }),
    }
}

fn no_binary(ty: &PgType) -> CodecError {
    CodecError::NoBinaryCodec {
        ty: ty.name.clone(),
        oid: ty.oid,
    }
}

fn out_of_range(ty: &PgType, v: impl std::fmt::Display) -> CodecError {
    CodecError::OutOfRange {
        ty: ty.name.clone(),
        value: excerpt(&v.to_string()),
    }
}

fn text_error(ty: &PgType, text: &str, reason: &'static str) -> CodecError {
    CodecError::Text {
        ty: ty.name.clone(),
        text: excerpt(text),
        reason,
    }
}

/// A value cut to a readable length for an error message.
fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
