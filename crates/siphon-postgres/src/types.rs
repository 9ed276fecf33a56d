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
//! | date, time, timestamp, timestamptz | `Date`, `Time`, `Timestamp`, `TimestampTz`; `±infinity` is chrono's `MAX`/`MIN` |
//! | interval | `Engine { type_name: "interval", text }`, ISO 8601 as IntervalStyle `iso_8601` prints it |
//! | json, jsonb | `Json` (jsonb as PostgreSQL prints it) |
//! | uuid | `Uuid` |
//! | arrays of the above | `Array`, one nesting level per dimension (lower bounds are not kept) |
//! | any other type | `Engine { type_name, text }`, text format only |
//!
//! Decoding never panics on malformed input and never allocates from a length
//! it has not checked against the bytes it holds.

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike};
use siphon_core::typemap::{parse_native, Engine};
use siphon_core::{Decimal, TypeKind, Value};
use uuid::Uuid;

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
    /// The type has no binary codec here (geometry, ranges, …): read and write it
    /// in text format.
    #[error("PostgreSQL type {ty} (oid {oid}) has no binary codec in siphon; read and write it in text format")]
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

// ---------------------------------------------------------------------------
// Binary format
// ---------------------------------------------------------------------------

/// Decodes one field in PostgreSQL's binary format (the bytes after the length
/// prefix of a binary COPY field or a binary result column).
pub fn decode_binary(ty: &PgType, raw: &[u8]) -> Result<Value, CodecError> {
    let bad = |reason| CodecError::Binary {
        ty: ty.name.clone(),
        reason,
    };
    let fixed = |n: usize| -> Result<&[u8], CodecError> {
        if raw.len() == n {
            Ok(raw)
        } else {
            Err(bad("wrong length"))
        }
    };
    Ok(match ty.wire() {
        // boolrecv takes any non-zero byte as true.
        Wire::Bool => Value::Bool(fixed(1)?[0] != 0),
        Wire::Int2 => Value::Int16(i16::from_be_bytes(arr(fixed(2)?))),
        Wire::Int4 => Value::Int32(i32::from_be_bytes(arr(fixed(4)?))),
        Wire::Int8 => Value::Int64(i64::from_be_bytes(arr(fixed(8)?))),
        Wire::Oid => Value::Int64(i64::from(u32::from_be_bytes(arr(fixed(4)?)))),
        Wire::Float4 => Value::Float32(f32::from_be_bytes(arr(fixed(4)?))),
        Wire::Float8 => Value::Float64(f64::from_be_bytes(arr(fixed(8)?))),
        Wire::Numeric => Value::Decimal(decode_numeric(ty, raw)?),
        Wire::Text => Value::Text(utf8(ty, raw)?),
        Wire::Char => Value::Text(char_text(fixed(1)?[0])),
        Wire::Bytea => Value::Bytes(raw.to_vec()),
        Wire::Date => {
            let days = i32::from_be_bytes(arr(fixed(4)?));
            Value::Date(date_from_days(days).ok_or_else(|| out_of_range(ty, days))?)
        }
        Wire::Time => {
            let micros = i64::from_be_bytes(arr(fixed(8)?));
            Value::Time(time_from_micros(ty, micros)?)
        }
        Wire::Timestamp => {
            let micros = i64::from_be_bytes(arr(fixed(8)?));
            Value::Timestamp(ts_from_micros(micros).ok_or_else(|| out_of_range(ty, micros))?)
        }
        Wire::TimestampTz => {
            let micros = i64::from_be_bytes(arr(fixed(8)?));
            let ts = ts_from_micros(micros).ok_or_else(|| out_of_range(ty, micros))?;
            Value::TimestampTz(ts.and_utc())
        }
        Wire::Interval => {
            let raw = fixed(16)?;
            let iv = Interval {
                micros: i64::from_be_bytes(arr(&raw[0..8])),
                days: i32::from_be_bytes(arr(&raw[8..12])),
                months: i32::from_be_bytes(arr(&raw[12..16])),
            };
            interval_value(iv)
        }
        Wire::Json => Value::Json(utf8(ty, raw)?),
        Wire::Jsonb => match raw.split_first() {
            Some((1, text)) => Value::Json(utf8(ty, text)?),
            Some(_) => return Err(bad("unknown jsonb version (expected 1)")),
            None => return Err(bad("empty jsonb value")),
        },
        Wire::Uuid => Value::Uuid(Uuid::from_bytes(arr(fixed(16)?))),
        Wire::Array => decode_array(ty, raw)?,
        Wire::TextOnly => return Err(no_binary(ty)),
    })
}

/// Appends one value in PostgreSQL's binary format to `out` (the field bytes,
/// without the length prefix). Besides the variant [`decode_binary`] yields for
/// the type, it takes other variants where nothing is lost: narrower integers,
/// integral decimals into integer types, integers and floats into numeric, text
/// in the type's text form, a date into timestamp. Anything else is a
/// [`CodecError`] naming the type and the value kind. On error, `out` may hold
/// part of the value: the caller truncates.
pub fn encode_binary(ty: &PgType, v: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mismatch = || CodecError::Mismatch {
        ty: ty.name.clone(),
        kind: v.kind_name(),
    };
    if let Value::Null = v {
        return Err(CodecError::Null {
            ty: ty.name.clone(),
        });
    }
    let wire = ty.wire();
    // Text into a non-text type: read it as that type's text form, so that
    // anything PostgreSQL would print is accepted back.
    if let Value::Text(s) = v {
        if !matches!(
            wire,
            Wire::Text | Wire::Char | Wire::Json | Wire::Jsonb | Wire::Numeric | Wire::TextOnly
        ) {
            let parsed = decode_text(ty, s)?;
            if matches!(parsed, Value::Text(_)) {
                return Err(mismatch());
            }
            return encode_binary(ty, &parsed, out);
        }
    }
    match wire {
        Wire::Bool => match v {
            Value::Bool(b) => out.push(u8::from(*b)),
            _ => return Err(mismatch()),
        },
        Wire::Int2 => {
            let n = int_of(ty, v)?.ok_or_else(mismatch)?;
            let n = i16::try_from(n).map_err(|_| out_of_range(ty, v))?;
            out.extend_from_slice(&n.to_be_bytes());
        }
        Wire::Int4 => {
            let n = int_of(ty, v)?.ok_or_else(mismatch)?;
            let n = i32::try_from(n).map_err(|_| out_of_range(ty, v))?;
            out.extend_from_slice(&n.to_be_bytes());
        }
        Wire::Int8 => {
            let n = int_of(ty, v)?.ok_or_else(mismatch)?;
            out.extend_from_slice(&n.to_be_bytes());
        }
        Wire::Oid => {
            let n = int_of(ty, v)?.ok_or_else(mismatch)?;
            let n = u32::try_from(n).map_err(|_| out_of_range(ty, v))?;
            out.extend_from_slice(&n.to_be_bytes());
        }
        Wire::Float4 => {
            let f = match *v {
                Value::Float32(f) => f,
                // Only where the narrower float holds the very same number.
                Value::Float64(f) if f.is_nan() || f64::from(f as f32) == f => f as f32,
                Value::Int16(i) => f32::from(i),
                Value::Int32(i) if i.unsigned_abs() <= 1 << 24 => i as f32,
                Value::Int64(i) if i.unsigned_abs() <= 1 << 24 => i as f32,
                Value::Float64(_) | Value::Int32(_) | Value::Int64(_) => {
                    return Err(out_of_range(ty, v))
                }
                _ => return Err(mismatch()),
            };
            out.extend_from_slice(&f.to_be_bytes());
        }
        Wire::Float8 => {
            let f = match *v {
                Value::Float64(f) => f,
                Value::Float32(f) => f64::from(f),
                Value::Int16(i) => f64::from(i),
                Value::Int32(i) => f64::from(i),
                Value::Int64(i) if i.unsigned_abs() <= 1 << 53 => i as f64,
                Value::Int64(_) => return Err(out_of_range(ty, v)),
                _ => return Err(mismatch()),
            };
            out.extend_from_slice(&f.to_be_bytes());
        }
        Wire::Numeric => encode_numeric_value(ty, v, out)?,
        Wire::Text => {
            let s = match v {
                Value::Text(s) | Value::Json(s) | Value::Engine { text: s, .. } => s.as_str(),
                Value::Decimal(d) => d.as_str(),
                Value::Uuid(u) => return push_text(ty, &u.to_string(), out),
                Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => {
                    return push_text(ty, &v.to_string(), out)
                }
                _ => return Err(mismatch()),
            };
            push_text(ty, s, out)?;
        }
        Wire::Char => match v {
            Value::Text(s) => out.push(char_byte(ty, s)?),
            _ => return Err(mismatch()),
        },
        Wire::Bytea => match v {
            Value::Bytes(b) => out.extend_from_slice(b),
            _ => return Err(mismatch()),
        },
        Wire::Date => match v {
            Value::Date(d) => out.extend_from_slice(&days_from_date(*d).to_be_bytes()),
            _ => return Err(mismatch()),
        },
        Wire::Time => match v {
            Value::Time(t) => {
                let micros = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                    + round_nanos(i64::from(t.nanosecond()));
                if micros > MICROS_PER_DAY {
                    return Err(out_of_range(ty, v));
                }
                out.extend_from_slice(&micros.to_be_bytes());
            }
            _ => return Err(mismatch()),
        },
        Wire::Timestamp => {
            let ts = match v {
                Value::Timestamp(t) => *t,
                Value::Date(d) if *d == NaiveDate::MAX => NaiveDateTime::MAX,
                Value::Date(d) if *d == NaiveDate::MIN => NaiveDateTime::MIN,
                Value::Date(d) => d.and_time(NaiveTime::MIN),
                _ => return Err(mismatch()),
            };
            let micros = micros_from_ts(ts).ok_or_else(|| out_of_range(ty, v))?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        Wire::TimestampTz => match v {
            Value::TimestampTz(t) => {
                let micros = micros_from_ts(t.naive_utc()).ok_or_else(|| out_of_range(ty, v))?;
                out.extend_from_slice(&micros.to_be_bytes());
            }
            _ => return Err(mismatch()),
        },
        Wire::Interval => match v {
            Value::Engine { text, .. } => {
                let iv = Interval::parse(text).ok_or_else(|| text_error(ty, text, BAD_INTERVAL))?;
                out.extend_from_slice(&iv.micros.to_be_bytes());
                out.extend_from_slice(&iv.days.to_be_bytes());
                out.extend_from_slice(&iv.months.to_be_bytes());
            }
            _ => return Err(mismatch()),
        },
        Wire::Json | Wire::Jsonb => match v {
            Value::Json(s) | Value::Text(s) => {
                if wire == Wire::Jsonb {
                    out.push(1);
                }
                push_text(ty, s, out)?;
            }
            _ => return Err(mismatch()),
        },
        Wire::Uuid => match v {
            Value::Uuid(u) => out.extend_from_slice(u.as_bytes()),
            Value::Bytes(b) if b.len() == 16 => out.extend_from_slice(b),
            _ => return Err(mismatch()),
        },
        Wire::Array => match v {
            Value::Array(items) => encode_array(ty, items, out)?,
            _ => return Err(mismatch()),
        },
        Wire::TextOnly => return Err(no_binary(ty)),
    }
    Ok(())
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

// ---------------------------------------------------------------------------
// numeric
// ---------------------------------------------------------------------------

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
const NUMERIC_DSCALE_MASK: u16 = 0x3FFF;

/// numeric's binary form: ndigits, weight (of the first digit, in base-10000
/// places), sign, display scale, then base-10000 digits; printed exactly as
/// PostgreSQL prints it, `dscale` digits after the point.
fn decode_numeric(ty: &PgType, raw: &[u8]) -> Result<Decimal, CodecError> {
    let bad = |reason| CodecError::Binary {
        ty: ty.name.clone(),
        reason,
    };
    if raw.len() < 8 {
        return Err(bad("shorter than its header"));
    }
    let ndigits = usize::from(u16::from_be_bytes(arr(&raw[0..2])));
    let weight = i64::from(i16::from_be_bytes(arr(&raw[2..4])));
    let sign = u16::from_be_bytes(arr(&raw[4..6]));
    let dscale = u16::from_be_bytes(arr(&raw[6..8]));
    if raw.len() != 8 + 2 * ndigits {
        return Err(bad("length does not match the digit count"));
    }
    match sign {
        NUMERIC_POS | NUMERIC_NEG => {}
        NUMERIC_NAN => return Ok(Decimal::nan()),
        NUMERIC_PINF => return Ok(Decimal::infinity(false)),
        NUMERIC_NINF => return Ok(Decimal::infinity(true)),
        _ => return Err(bad("unknown sign")),
    }
    if dscale & NUMERIC_DSCALE_MASK != dscale {
        return Err(bad("display scale out of range"));
    }
    let digits = &raw[8..];
    if digits
        .chunks_exact(2)
        .any(|d| u16::from_be_bytes(arr(d)) >= 10_000)
    {
        return Err(bad("digit out of range"));
    }
    let digit = |i: i64| -> u16 {
        match usize::try_from(i) {
            Ok(i) if i < ndigits => u16::from_be_bytes(arr(&digits[2 * i..])),
            _ => 0,
        }
    };
    let dscale = usize::from(dscale);
    let int_groups = if ndigits == 0 { 0 } else { weight + 1 };
    let mut s = String::with_capacity(2 + 4 * int_groups.max(1) as usize + dscale);
    if sign == NUMERIC_NEG && ndigits > 0 {
        s.push('-');
    }
    if int_groups <= 0 {
        s.push('0');
    }
    for i in 0..int_groups {
        let d = digit(i);
        if i == 0 {
            // The first group without its leading zeros (at least one digit).
            let skip = match d {
                0..=9 => 3,
                10..=99 => 2,
                100..=999 => 1,
                _ => 0,
            };
            push_digits(&mut s, d, skip, 4);
        } else {
            push_digits(&mut s, d, 0, 4);
        }
    }
    if dscale > 0 {
        s.push('.');
        let mut left = dscale;
        let mut i = if ndigits == 0 { i64::MAX } else { weight + 1 };
        while left > 0 {
            let take = left.min(4);
            push_digits(&mut s, digit(i), 0, take);
            left -= take;
            i = i.saturating_add(1);
        }
    }
    Decimal::from_str(&s).map_err(|_| bad("not a decimal number"))
}

/// Pushes digits `from..to` of the four decimal digits of `d` (0..10000).
fn push_digits(s: &mut String, d: u16, from: usize, to: usize) {
    let ds = [d / 1000, d / 100 % 10, d / 10 % 10, d % 10];
    for x in &ds[from..to] {
        s.push(char::from(b'0' + *x as u8));
    }
}

fn encode_numeric_value(ty: &PgType, v: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let special = |f: f64| {
        if f.is_nan() {
            Some(NUMERIC_NAN)
        } else if f == f64::INFINITY {
            Some(NUMERIC_PINF)
        } else if f == f64::NEG_INFINITY {
            Some(NUMERIC_NINF)
        } else {
            None
        }
    };
    let float = match *v {
        Value::Float32(f) => Some(f64::from(f)),
        Value::Float64(f) => Some(f),
        _ => None,
    };
    if let Some(f) = float {
        // numeric has NaN and ±Infinity, so a float keeps them; a finite float
        // goes by the shortest text that reads back as the same float.
        if let Some(sign) = special(f) {
            numeric_header(out, 0, 0, sign, 0);
            return Ok(());
        }
        let d = match *v {
            Value::Float32(f) => Decimal::from_str(&format!("{f}")).ok(),
            _ => Decimal::from_f64(f),
        };
        let d = d.ok_or_else(|| out_of_range(ty, v))?;
        return encode_numeric_text(ty, d.as_str(), out);
    }
    match v {
        Value::Decimal(d) if !d.is_finite() => {
            let sign = match d.as_str() {
                "NaN" => NUMERIC_NAN,
                "Infinity" => NUMERIC_PINF,
                _ => NUMERIC_NINF,
            };
            numeric_header(out, 0, 0, sign, 0);
            Ok(())
        }
        Value::Decimal(d) => encode_numeric_text(ty, d.as_str(), out),
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => {
            encode_numeric_text(ty, &v.to_string(), out)
        }
        Value::Text(s) => {
            let sign = match s.trim() {
                "NaN" => NUMERIC_NAN,
                "Infinity" => NUMERIC_PINF,
                "-Infinity" => NUMERIC_NINF,
                t => return encode_numeric_text(ty, t, out),
            };
            numeric_header(out, 0, 0, sign, 0);
            Ok(())
        }
        _ => Err(CodecError::Mismatch {
            ty: ty.name.clone(),
            kind: v.kind_name(),
        }),
    }
}

fn numeric_header(out: &mut Vec<u8>, ndigits: u16, weight: i16, sign: u16, dscale: u16) {
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
}

/// Plain decimal text (`-0012.3400`) as numeric's binary form, with the display
/// scale of the text so that `12.30` comes back as `12.30`.
fn encode_numeric_text(ty: &PgType, s: &str, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return Err(text_error(ty, s, "not a decimal number"));
    }
    let int = int.trim_start_matches('0');
    let dscale = u16::try_from(frac.len())
        .ok()
        .filter(|d| *d <= NUMERIC_DSCALE_MASK)
        .ok_or_else(|| out_of_range(ty, s))?;
    let start = out.len();
    numeric_header(out, 0, 0, 0, 0);
    // Base-10000 groups are aligned on the decimal point: pad the integer part
    // in front and the fraction behind to whole groups.
    let lead = (4 - int.len() % 4) % 4;
    let trail = (4 - frac.len() % 4) % 4;
    let mut weight = int.len().div_ceil(4) as i64 - 1;
    let mut ndigits = 0usize;
    let mut group = 0u16;
    let mut in_group = 0;
    let all = std::iter::repeat_n(0u8, lead)
        .chain(int.bytes().map(|b| b - b'0'))
        .chain(frac.bytes().map(|b| b - b'0'))
        .chain(std::iter::repeat_n(0u8, trail));
    for d in all {
        group = group * 10 + u16::from(d);
        in_group += 1;
        if in_group == 4 {
            if ndigits == 0 && group == 0 {
                // Leading zero groups are not stored: they move the weight.
                weight -= 1;
            } else {
                out.extend_from_slice(&group.to_be_bytes());
                ndigits += 1;
            }
            group = 0;
            in_group = 0;
        }
    }
    while ndigits > 0 && out[out.len() - 2..] == [0, 0] {
        out.truncate(out.len() - 2);
        ndigits -= 1;
    }
    let (weight, sign) = if ndigits == 0 {
        (0, NUMERIC_POS)
    } else {
        let sign = if neg { NUMERIC_NEG } else { NUMERIC_POS };
        (weight, sign)
    };
    let weight = i16::try_from(weight).map_err(|_| out_of_range(ty, s))?;
    let ndigits = u16::try_from(ndigits)
        .ok()
        .filter(|n| *n <= i16::MAX as u16)
        .ok_or_else(|| out_of_range(ty, s))?;
    out[start..start + 2].copy_from_slice(&ndigits.to_be_bytes());
    out[start + 2..start + 4].copy_from_slice(&weight.to_be_bytes());
    out[start + 4..start + 6].copy_from_slice(&sign.to_be_bytes());
    out[start + 6..start + 8].copy_from_slice(&dscale.to_be_bytes());
    Ok(())
}

// ---------------------------------------------------------------------------
// date and time
// ---------------------------------------------------------------------------

/// 2000-01-01, PostgreSQL's epoch, in chrono's days from 0001-01-01 (day 1).
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;
/// 2000-01-01 in microseconds from the Unix epoch.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// PostgreSQL's `±infinity` dates are i32::MAX/MIN days, and chrono's MAX/MIN here.
fn date_from_days(days: i32) -> Option<NaiveDate> {
    match days {
        i32::MAX => Some(NaiveDate::MAX),
        i32::MIN => Some(NaiveDate::MIN),
        d => NaiveDate::from_num_days_from_ce_opt(PG_EPOCH_DAYS_FROM_CE.checked_add(d)?),
    }
}

fn days_from_date(d: NaiveDate) -> i32 {
    if d == NaiveDate::MAX {
        i32::MAX
    } else if d == NaiveDate::MIN {
        i32::MIN
    } else {
        // chrono's range is ±262,143 years: far inside i32 days.
        d.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE
    }
}

/// PostgreSQL's `±infinity` timestamps are i64::MAX/MIN microseconds.
fn ts_from_micros(micros: i64) -> Option<NaiveDateTime> {
    match micros {
        i64::MAX => Some(NaiveDateTime::MAX),
        i64::MIN => Some(NaiveDateTime::MIN),
        m => DateTime::from_timestamp_micros(m.checked_add(PG_EPOCH_UNIX_MICROS)?)
            .map(|t| t.naive_utc()),
    }
}

fn micros_from_ts(t: NaiveDateTime) -> Option<i64> {
    if t == NaiveDateTime::MAX {
        return Some(i64::MAX);
    }
    if t == NaiveDateTime::MIN {
        return Some(i64::MIN);
    }
    let t = t.and_utc();
    let micros = t
        .timestamp()
        .checked_mul(1_000_000)?
        .checked_add(round_nanos(i64::from(t.timestamp_subsec_nanos())))?;
    micros.checked_sub(PG_EPOCH_UNIX_MICROS)
}

/// Nanoseconds to whole microseconds, half to even as PostgreSQL rounds input.
fn round_nanos(nanos: i64) -> i64 {
    let (q, r) = (nanos / 1000, nanos % 1000);
    if r > 500 || (r == 500 && q % 2 == 1) {
        q + 1
    } else {
        q
    }
}

fn time_from_micros(ty: &PgType, micros: i64) -> Result<NaiveTime, CodecError> {
    if micros == MICROS_PER_DAY {
        return Err(CodecError::Unrepresentable {
            ty: ty.name.clone(),
            value: "24:00:00".into(),
            hint: "siphon times end at 23:59:59.999999; update the row to 23:59:59.999999 or cast the column to interval",
        });
    }
    if !(0..MICROS_PER_DAY).contains(&micros) {
        return Err(out_of_range(ty, micros));
    }
    let secs = (micros / 1_000_000) as u32;
    let nanos = (micros % 1_000_000) as u32 * 1000;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .ok_or_else(|| out_of_range(ty, micros))
}

/// A cursor over ASCII text for the date, time and interval parsers.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            s: s.as_bytes(),
            i: 0,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    /// An unsigned decimal of `min..=max` digits.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        let mut n: i64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.i - start == max {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            self.i += 1;
        }
        (self.i - start >= min).then_some(n)
    }
    /// `.ffffff` after seconds, as nanoseconds (up to nine digits).
    fn fraction_nanos(&mut self) -> Option<u32> {
        if !self.eat(b'.') {
            return Some(0);
        }
        let start = self.i;
        let n = self.digits(1, 9)?;
        let len = (self.i - start) as u32;
        Some(n as u32 * 10u32.pow(9 - len))
    }
}

/// `YYYY-MM-DD` (a year of four or more digits), the date part of ISO output.
fn parse_ymd(c: &mut Cursor) -> Option<(i32, u32, u32)> {
    let y = c.digits(1, 9)?;
    if !c.eat(b'-') {
        return None;
    }
    let m = c.digits(1, 2)?;
    if !c.eat(b'-') {
        return None;
    }
    let d = c.digits(1, 2)?;
    Some((i32::try_from(y).ok()?, m as u32, d as u32))
}

/// `HH:MM:SS[.ffffff]`, as (seconds from midnight, nanoseconds).
fn parse_hms(c: &mut Cursor) -> Option<(u32, u32)> {
    let h = c.digits(1, 2)?;
    if !c.eat(b':') {
        return None;
    }
    let m = c.digits(2, 2)?;
    let s = if c.eat(b':') { c.digits(2, 2)? } else { 0 };
    let nanos = c.fraction_nanos()?;
    if h > 24 || m > 59 || s > 60 || (h == 24 && (m, s, nanos) != (0, 0, 0)) {
        return None;
    }
    Some(((h * 3600 + m * 60 + s) as u32, nanos))
}

/// The year as chrono counts it: `N BC` is year `1 - N` (1 BC is year 0).
fn make_date(y: i32, m: u32, d: u32, bc: bool) -> Option<NaiveDate> {
    let y = if bc { 1 - y } else { y };
    NaiveDate::from_ymd_opt(y, m, d)
}

fn strip_bc(s: &str) -> (&str, bool) {
    match s.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

fn parse_date_text(s: &str) -> Option<NaiveDate> {
    match s {
        "infinity" => return Some(NaiveDate::MAX),
        "-infinity" => return Some(NaiveDate::MIN),
        _ => {}
    }
    let (s, bc) = strip_bc(s.trim());
    let mut c = Cursor::new(s);
    let (y, m, d) = parse_ymd(&mut c)?;
    c.done().then_some(())?;
    make_date(y, m, d, bc)
}

fn parse_time_text(ty: &PgType, s: &str) -> Result<NaiveTime, CodecError> {
    let mut c = Cursor::new(s.trim());
    let (secs, nanos) = parse_hms(&mut c)
        .filter(|_| c.done())
        .ok_or_else(|| text_error(ty, s, "expected HH:MM:SS[.ffffff]"))?;
    if secs == 86_400 && nanos == 0 {
        return time_from_micros(ty, MICROS_PER_DAY);
    }
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .ok_or_else(|| text_error(ty, s, "time out of range"))
}

/// A timestamp in ISO output (`2024-01-01 10:00:00.5`, `+02`, `+05:30`,
/// `-03:30:15`, ` BC`), as UTC when it carries an offset. Returns the naive time
/// and whether an offset was present.
fn parse_ts_text(s: &str) -> Option<(NaiveDateTime, bool)> {
    match s {
        "infinity" => return Some((NaiveDateTime::MAX, true)),
        "-infinity" => return Some((NaiveDateTime::MIN, true)),
        _ => {}
    }
    let (s, bc) = strip_bc(s.trim());
    let mut c = Cursor::new(s);
    let (y, m, d) = parse_ymd(&mut c)?;
    if !(c.eat(b' ') || c.eat(b'T')) {
        return None;
    }
    let (secs, nanos) = parse_hms(&mut c)?;
    let date = make_date(y, m, d, bc)?;
    let (time, extra_day) = if secs >= 86_400 {
        // 24:00:00 is midnight of the next day in timestamp input.
        (
            NaiveTime::from_num_seconds_from_midnight_opt(secs - 86_400, nanos)?,
            1,
        )
    } else {
        (
            NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)?,
            0,
        )
    };
    let mut ts = date
        .and_time(time)
        .checked_add_signed(TimeDelta::days(extra_day))?;
    let offset = if c.eat(b'Z') {
        Some(0)
    } else {
        match c.peek() {
            Some(sign @ (b'+' | b'-')) => {
                c.i += 1;
                let h = c.digits(1, 2)?;
                let m = if c.eat(b':') { c.digits(2, 2)? } else { 0 };
                let s = if c.eat(b':') { c.digits(2, 2)? } else { 0 };
                let secs = h * 3600 + m * 60 + s;
                Some(if sign == b'-' { -secs } else { secs })
            }
            _ => None,
        }
    };
    c.done().then_some(())?;
    if let Some(off) = offset {
        ts = ts.checked_sub_signed(TimeDelta::try_seconds(off)?)?;
    }
    Some((ts, offset.is_some()))
}

// ---------------------------------------------------------------------------
// interval
// ---------------------------------------------------------------------------

const BAD_INTERVAL: &str =
    "not an interval in ISO 8601, postgres, postgres_verbose or sql_standard style";

/// An interval as PostgreSQL stores it: months, days and microseconds, each with
/// its own sign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Interval {
    months: i32,
    days: i32,
    micros: i64,
}

fn interval_value(iv: Interval) -> Value {
    Value::Engine {
        type_name: INTERVAL.into(),
        text: iv.to_iso(),
    }
}

impl Interval {
    /// ISO 8601 exactly as PostgreSQL prints it with IntervalStyle `iso_8601`:
    /// each part carries its own sign (`P-1DT2H`), zero is `PT0S`.
    fn to_iso(self) -> String {
        let (year, mon, mday) = (self.months / 12, self.months % 12, self.days);
        let mut t = self.micros;
        let hour = t / 3_600_000_000;
        t -= hour * 3_600_000_000;
        let min = t / 60_000_000;
        t -= min * 60_000_000;
        let sec = t / 1_000_000;
        let fsec = t - sec * 1_000_000;
        if year == 0 && mon == 0 && mday == 0 && self.micros == 0 {
            return "PT0S".into();
        }
        let mut s = String::with_capacity(24);
        s.push('P');
        // Writing to a String cannot fail.
        for (n, unit) in [(year, 'Y'), (mon, 'M'), (mday, 'D')] {
            if n != 0 {
                let _ = write!(s, "{n}{unit}");
            }
        }
        if self.micros != 0 {
            s.push('T');
        }
        for (n, unit) in [(hour, 'H'), (min, 'M')] {
            if n != 0 {
                let _ = write!(s, "{n}{unit}");
            }
        }
        if sec != 0 || fsec != 0 {
            if sec < 0 || fsec < 0 {
                s.push('-');
            }
            let _ = write!(s, "{}", sec.unsigned_abs());
            push_fraction(&mut s, fsec.unsigned_abs());
            s.push('S');
        }
        s
    }

    /// Any of PostgreSQL's interval output styles, or ISO 8601.
    fn parse(text: &str) -> Option<Interval> {
        let t = text.trim();
        if t.starts_with('P') {
            Interval::parse_iso(t)
        } else {
            Interval::parse_words(t)
        }
    }

    fn parse_iso(t: &str) -> Option<Interval> {
        let mut c = Cursor::new(t);
        if !c.eat(b'P') || c.done() {
            return None;
        }
        let mut iv = Acc::default();
        let mut in_time = false;
        // `P` and `T` must each be followed by at least one part.
        let mut parts_after_mark = 0;
        while !c.done() {
            if !in_time && c.eat(b'T') {
                if c.done() {
                    return None;
                }
                in_time = true;
                continue;
            }
            parts_after_mark += 1;
            let num = Num::parse(&mut c)?;
            let unit = c.peek()?;
            c.i += 1;
            match (in_time, unit) {
                (false, b'Y') => iv.months(num.whole()?.checked_mul(12)?)?,
                (false, b'M') => iv.months(num.whole()?)?,
                (false, b'W') => iv.days(num.whole()?.checked_mul(7)?)?,
                (false, b'D') => iv.days(num.whole()?)?,
                (true, b'H') => iv.micros(num.whole()?.checked_mul(3_600_000_000)?)?,
                (true, b'M') => iv.micros(num.whole()?.checked_mul(60_000_000)?)?,
                (true, b'S') => iv.micros(num.micros()?)?,
                _ => return None,
            }
        }
        if parts_after_mark == 0 {
            return None;
        }
        iv.finish()
    }

    /// The `postgres` (`1 year 2 mons -3 days +04:05:06.5`), `postgres_verbose`
    /// (`@ 1 year 2 mons 6.5 secs ago`) and `sql_standard` (`1-2 3 4:05:06`)
    /// styles.
    fn parse_words(t: &str) -> Option<Interval> {
        let tokens: Vec<&str> = t.split_ascii_whitespace().filter(|w| *w != "@").collect();
        if tokens.is_empty() {
            return None;
        }
        let mut iv = Acc::default();
        let mut ago = false;
        let has_unit = tokens
            .iter()
            .any(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()));
        // In sql_standard output a single leading minus applies to every field.
        let negate_all = !has_unit
            && tokens[0].starts_with('-')
            && tokens[1..].iter().all(|w| !w.starts_with(['-', '+']));
        let mut i = 0;
        while i < tokens.len() {
            let w = tokens[i];
            i += 1;
            if w == "ago" {
                if i != tokens.len() {
                    return None;
                }
                ago = true;
                continue;
            }
            let w_unsigned = if negate_all {
                w.trim_start_matches('-')
            } else {
                w
            };
            if w.contains(':') {
                iv.micros(parse_clock(w_unsigned)?)?;
                continue;
            }
            if !has_unit {
                if let Some((y, m)) = split_year_month(w_unsigned) {
                    iv.months(
                        y.checked_mul(12)?
                            .checked_add(m)?
                            .checked_mul(sign_of(w_unsigned))?,
                    )?;
                    continue;
                }
            }
            let mut c = Cursor::new(w_unsigned);
            let num = Num::parse(&mut c)?;
            // A unit may follow without a space (`1day`), or as the next word.
            let unit = if c.done() {
                match tokens.get(i) {
                    Some(u) if u.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                        i += 1;
                        *u
                    }
                    _ => "",
                }
            } else {
                &w_unsigned[c.i..]
            };
            match unit.to_ascii_lowercase().as_str() {
                "year" | "years" | "yr" | "yrs" | "y" => {
                    iv.months(num.whole()?.checked_mul(12)?)?
                }
                "mon" | "mons" | "month" | "months" => iv.months(num.whole()?)?,
                "week" | "weeks" | "w" => iv.days(num.whole()?.checked_mul(7)?)?,
                "day" | "days" | "d" => iv.days(num.whole()?)?,
                "hour" | "hours" | "hr" | "hrs" | "h" => {
                    iv.micros(num.whole()?.checked_mul(3_600_000_000)?)?
                }
                "min" | "mins" | "minute" | "minutes" | "m" => {
                    iv.micros(num.whole()?.checked_mul(60_000_000)?)?
                }
                "sec" | "secs" | "second" | "seconds" | "s" => iv.micros(num.micros()?)?,
                "millisecond" | "milliseconds" | "msec" | "msecs" | "ms" => {
                    iv.micros(num.micros()? / 1000)?
                }
                "microsecond" | "microseconds" | "usec" | "usecs" | "us" => {
                    iv.micros(num.whole()?)?
                }
                // sql_standard: a bare number before the clock is days; alone, seconds.
                "" if tokens.get(i).is_some_and(|n| n.contains(':')) => iv.days(num.whole()?)?,
                "" => iv.micros(num.micros()?)?,
                _ => return None,
            }
        }
        let mut iv = iv.finish()?;
        if ago || negate_all {
            iv = Interval {
                months: iv.months.checked_neg()?,
                days: iv.days.checked_neg()?,
                micros: iv.micros.checked_neg()?,
            };
        }
        Some(iv)
    }
}

/// `1-2` (years-months) of sql_standard style, without its sign.
fn split_year_month(w: &str) -> Option<(i64, i64)> {
    let body = w.strip_prefix(['-', '+']).unwrap_or(w);
    let (y, m) = body.split_once('-')?;
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(y) || !all_digits(m) {
        return None;
    }
    Some((y.parse().ok()?, m.parse().ok()?))
}

fn sign_of(w: &str) -> i64 {
    if w.starts_with('-') {
        -1
    } else {
        1
    }
}

/// `[+-]H:MM[:SS[.ffffff]]` with any number of hours, as signed microseconds.
fn parse_clock(w: &str) -> Option<i64> {
    let neg = w.starts_with('-');
    let mut c = Cursor::new(w.strip_prefix(['-', '+']).unwrap_or(w));
    let h = c.digits(1, 18)?;
    if !c.eat(b':') {
        return None;
    }
    let m = c.digits(1, 2)?;
    let (s, nanos) = if c.eat(b':') {
        (c.digits(1, 2)?, c.fraction_nanos()?)
    } else {
        (0, 0)
    };
    if !c.done() || nanos % 1000 != 0 {
        return None;
    }
    let micros = h
        .checked_mul(3_600_000_000)?
        .checked_add(m * 60_000_000 + s * 1_000_000 + i64::from(nanos / 1000))?;
    Some(if neg { -micros } else { micros })
}

/// Appends `.ffffff` without trailing zeros, nothing for zero.
fn push_fraction(s: &mut String, micros: u64) {
    if micros == 0 {
        return;
    }
    let mut digits = format!("{micros:06}");
    while digits.ends_with('0') {
        digits.pop();
    }
    s.push('.');
    s.push_str(&digits);
}

/// A signed number with an optional fraction of up to six digits.
#[derive(Debug, Clone, Copy)]
struct Num {
    neg: bool,
    whole: i64,
    frac_micros: i64,
    has_frac: bool,
}

impl Num {
    fn parse(c: &mut Cursor) -> Option<Num> {
        let neg = if c.eat(b'-') {
            true
        } else {
            c.eat(b'+');
            false
        };
        let whole = c.digits(1, 18)?;
        let (frac_micros, has_frac) = if c.eat(b'.') {
            let start = c.i;
            let mut f = 0i64;
            while let Some(d @ b'0'..=b'9') = c.peek() {
                let pos = c.i - start;
                if pos < 6 {
                    f = f * 10 + i64::from(d - b'0');
                } else if d != b'0' {
                    // Below a microsecond: PostgreSQL never prints it.
                    return None;
                }
                c.i += 1;
            }
            let len = (c.i - start).min(6) as u32;
            (f * 10i64.pow(6 - len), true)
        } else {
            (0, false)
        };
        Some(Num {
            neg,
            whole,
            frac_micros,
            has_frac,
        })
    }
    fn whole(self) -> Option<i64> {
        if self.has_frac && self.frac_micros != 0 {
            return None;
        }
        Some(if self.neg { -self.whole } else { self.whole })
    }
    fn micros(self) -> Option<i64> {
        let m = self
            .whole
            .checked_mul(1_000_000)?
            .checked_add(self.frac_micros)?;
        Some(if self.neg { -m } else { m })
    }
}

/// Sums interval parts with overflow checks.
#[derive(Debug, Default)]
struct Acc {
    months: i64,
    days: i64,
    micros: i64,
}

impl Acc {
    fn months(&mut self, n: i64) -> Option<()> {
        self.months = self.months.checked_add(n)?;
        Some(())
    }
    fn days(&mut self, n: i64) -> Option<()> {
        self.days = self.days.checked_add(n)?;
        Some(())
    }
    fn micros(&mut self, n: i64) -> Option<()> {
        self.micros = self.micros.checked_add(n)?;
        Some(())
    }
    fn finish(self) -> Option<Interval> {
        Some(Interval {
            months: i32::try_from(self.months).ok()?,
            days: i32::try_from(self.days).ok()?,
            micros: self.micros,
        })
    }
}

// ---------------------------------------------------------------------------
// arrays
// ---------------------------------------------------------------------------

/// PostgreSQL's MAXDIM.
const MAX_DIMS: usize = 6;

fn element_of(ty: &PgType) -> Result<&PgType, CodecError> {
    match ty.element.as_deref() {
        Some(e) if e.element.is_none() => Ok(e),
        _ => Err(CodecError::Binary {
            ty: ty.name.clone(),
            reason: "array type without a scalar element type",
        }),
    }
}

/// The binary array format: ndim, has-null flag, element OID, (size, lower
/// bound) per dimension, then the elements in row-major order, each with an i32
/// length (-1 for NULL).
fn decode_array(ty: &PgType, raw: &[u8]) -> Result<Value, CodecError> {
    let elem = element_of(ty)?;
    let bad = |reason| CodecError::Binary {
        ty: ty.name.clone(),
        reason,
    };
    let mut r = Reader { b: raw };
    let ndim = r.i32().ok_or_else(|| bad("truncated header"))?;
    let flags = r.i32().ok_or_else(|| bad("truncated header"))?;
    // The element OID is not checked: an array of a domain names the domain,
    // while the codec reads its base type.
    r.take(4).ok_or_else(|| bad("truncated header"))?;
    if !(0..=MAX_DIMS as i32).contains(&ndim) {
        return Err(bad("more than 6 dimensions, or a negative count"));
    }
    if flags != 0 && flags != 1 {
        return Err(bad("invalid flags"));
    }
    let mut dims = [0usize; MAX_DIMS];
    let mut total: usize = if ndim == 0 { 0 } else { 1 };
    for d in dims.iter_mut().take(ndim as usize) {
        let size = r.i32().ok_or_else(|| bad("truncated dimensions"))?;
        r.i32().ok_or_else(|| bad("truncated dimensions"))?;
        *d = usize::try_from(size).map_err(|_| bad("negative dimension"))?;
        total = total
            .checked_mul(*d)
            .ok_or_else(|| bad("too many elements"))?;
    }
    if total == 0 {
        return if r.b.is_empty() {
            Ok(Value::Array(Vec::new()))
        } else {
            Err(bad("bytes after an empty array"))
        };
    }
    // Every element takes at least its 4-byte length: this bounds what the
    // header may make us allocate by the bytes actually here.
    if total > r.b.len() / 4 {
        return Err(bad("more elements than bytes"));
    }
    let v = build_array(elem, &dims[..ndim as usize], &mut r).map_err(|e| match e {
        Some(e) => e,
        None => bad("truncated element"),
    })?;
    if !r.b.is_empty() {
        return Err(bad("bytes after the last element"));
    }
    Ok(v)
}

fn build_array(elem: &PgType, dims: &[usize], r: &mut Reader) -> Result<Value, Option<CodecError>> {
    let mut items = Vec::with_capacity(dims[0]);
    for _ in 0..dims[0] {
        if dims.len() > 1 {
            items.push(build_array(elem, &dims[1..], r)?);
            continue;
        }
        let len = r.i32().ok_or(None)?;
        if len == -1 {
            items.push(Value::Null);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| None)?;
        let raw = r.take(len).ok_or(None)?;
        items.push(decode_binary(elem, raw).map_err(Some)?);
    }
    Ok(Value::Array(items))
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes(arr(b)))
    }
}

fn encode_array(ty: &PgType, items: &[Value], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let elem = element_of(ty)?;
    let ragged = |why: &str| CodecError::OutOfRange {
        ty: ty.name.clone(),
        value: format!("an array that {why}"),
    };
    let mut dims = [0usize; MAX_DIMS];
    let mut ndim = 0;
    let mut level = items;
    loop {
        if ndim == MAX_DIMS {
            return Err(ragged("has more than 6 dimensions"));
        }
        dims[ndim] = level.len();
        ndim += 1;
        match level.first() {
            Some(Value::Array(inner)) => level = inner,
            _ => break,
        }
    }
    if items.is_empty() {
        ndim = 0;
    }
    if dims[..ndim].iter().skip(1).any(|d| *d == 0) {
        return Err(ragged("holds an empty inner array"));
    }
    out.extend_from_slice(&(ndim as i32).to_be_bytes());
    let flags_at = out.len();
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&elem.oid.to_be_bytes());
    for d in &dims[..ndim] {
        let d = i32::try_from(*d).map_err(|_| ragged("is too long"))?;
        out.extend_from_slice(&d.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
    }
    if ndim == 0 {
        return Ok(());
    }
    let mut has_null = false;
    write_elements(elem, items, &dims[..ndim], out, &mut has_null).map_err(|e| {
        e.unwrap_or_else(|| ragged("is not rectangular (sub-arrays differ in length or depth)"))
    })?;
    if has_null {
        out[flags_at..flags_at + 4].copy_from_slice(&1i32.to_be_bytes());
    }
    Ok(())
}

/// `Err(None)` when the array is not rectangular.
fn write_elements(
    elem: &PgType,
    items: &[Value],
    dims: &[usize],
    out: &mut Vec<u8>,
    has_null: &mut bool,
) -> Result<(), Option<CodecError>> {
    if items.len() != dims[0] {
        return Err(None);
    }
    for item in items {
        match (dims.len(), item) {
            (1, Value::Array(_)) => return Err(None),
            (1, Value::Null) => {
                *has_null = true;
                out.extend_from_slice(&(-1i32).to_be_bytes());
            }
            (1, v) => write_field(elem, v, out).map_err(Some)?,
            (_, Value::Array(inner)) => write_elements(elem, inner, &dims[1..], out, has_null)?,
            _ => return Err(None),
        }
    }
    Ok(())
}

/// A length-prefixed field: the length is written after the value, in place.
pub(crate) fn write_field(ty: &PgType, v: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = encode_binary(ty, v, out) {
        out.truncate(at);
        return Err(e);
    }
    let len = i32::try_from(out.len() - at - 4).map_err(|_| {
        out.truncate(at);
        CodecError::OutOfRange {
            ty: ty.name.clone(),
            value: "a value of 2 GiB or more".into(),
        }
    })?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

// ---------------------------------------------------------------------------
// Text format
// ---------------------------------------------------------------------------

/// Decodes a value from PostgreSQL's text output (what pgoutput sends, and what
/// `col::text` prints with DateStyle `ISO`), giving the same [`Value`] as
/// [`decode_binary`] gives for the same datum. Intervals are read in any
/// IntervalStyle; timestamps with time zone in any TimeZone.
pub fn decode_text(ty: &PgType, text: &str) -> Result<Value, CodecError> {
    let err = |reason| text_error(ty, text, reason);
    Ok(match ty.wire() {
        Wire::Bool => Value::Bool(parse_bool(text).ok_or_else(|| err("expected t or f"))?),
        Wire::Int2 => Value::Int16(text.trim().parse().map_err(|_| err("not a smallint"))?),
        Wire::Int4 => Value::Int32(text.trim().parse().map_err(|_| err("not an integer"))?),
        Wire::Int8 => Value::Int64(text.trim().parse().map_err(|_| err("not a bigint"))?),
        Wire::Oid => Value::Int64(i64::from(
            text.trim().parse::<u32>().map_err(|_| err("not an oid"))?,
        )),
        // Parsed at its own width: through f64 a few values would round twice.
        Wire::Float4 => Value::Float32(parse_float(text).ok_or_else(|| err("not a real"))?),
        Wire::Float8 => Value::Float64(parse_float(text).ok_or_else(|| err("not a double"))?),
        // NaN, Infinity and -Infinity included.
        Wire::Numeric => {
            Value::Decimal(Decimal::from_str(text).map_err(|_| err("not a decimal number"))?)
        }
        Wire::Text | Wire::Char => Value::Text(text.to_string()),
        Wire::Bytea => Value::Bytes(
            parse_bytea(text).ok_or_else(|| err("not bytea hex (\\x…) or escape text"))?,
        ),
        Wire::Date => Value::Date(parse_date_text(text).ok_or_else(|| err("expected YYYY-MM-DD"))?),
        Wire::Time => Value::Time(parse_time_text(ty, text)?),
        Wire::Timestamp => match parse_ts_text(text) {
            Some((t, false)) => Value::Timestamp(t),
            Some((t, true)) if t == NaiveDateTime::MAX || t == NaiveDateTime::MIN => {
                Value::Timestamp(t)
            }
            _ => return Err(err("expected YYYY-MM-DD HH:MM:SS[.ffffff]")),
        },
        Wire::TimestampTz => match parse_ts_text(text) {
            Some((t, true)) => Value::TimestampTz(t.and_utc()),
            _ => return Err(err("expected YYYY-MM-DD HH:MM:SS[.ffffff]+TZ")),
        },
        Wire::Interval => interval_value(Interval::parse(text).ok_or_else(|| err(BAD_INTERVAL))?),
        Wire::Json | Wire::Jsonb => Value::Json(text.to_string()),
        Wire::Uuid => Value::Uuid(Uuid::parse_str(text.trim()).map_err(|_| err("not a uuid"))?),
        Wire::Array => parse_array_text(ty, text)?,
        Wire::TextOnly => Value::Engine {
            type_name: ty.name.clone(),
            text: text.to_string(),
        },
    })
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_float<F: FromStr>(s: &str) -> Option<F> {
    // Rust reads `NaN`, `Infinity` and `-Infinity` (case-insensitively) as well.
    s.trim().parse().ok()
}

/// bytea in `hex` output (`\x00ff`) or in `escape` output (`a\000\\`).
fn parse_bytea(s: &str) -> Option<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut nibbles = hex.bytes().filter(|b| !b.is_ascii_whitespace());
        while let Some(hi) = nibbles.next() {
            let lo = nibbles.next()?;
            out.push(hex_val(hi)? << 4 | hex_val(lo)?);
        }
        return Some(out);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            match b.get(i + 1..i + 4)? {
                [a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7'] => {
                    out.push(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'));
                }
                _ => return None,
            }
            i += 4;
        }
    }
    Some(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Array text output: `{1,2,NULL}`, `{{1,2},{3,4}}`, `{"a b","c\"d"}`, `{}`,
/// optionally after bounds decoration (`[0:1]={5,6}`, whose bounds are not kept).
fn parse_array_text(ty: &PgType, text: &str) -> Result<Value, CodecError> {
    let elem = element_of(ty)?;
    let err = |reason| text_error(ty, text, reason);
    let mut s = text.trim();
    if s.starts_with('[') {
        let (_, rest) = s.split_once('=').ok_or_else(|| err("bounds without `=`"))?;
        s = rest.trim_start();
    }
    let mut p = ArrayText {
        s: s.as_bytes(),
        i: 0,
        buf: String::new(),
    };
    if !p.eat(b'{') {
        return Err(err("expected `{`"));
    }
    let v = p
        .list(elem, 1)
        .map_err(|e| e.unwrap_or_else(|| err("malformed array")))?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(err("text after the closing `}`"));
    }
    Ok(v)
}

struct ArrayText<'a> {
    s: &'a [u8],
    i: usize,
    /// The current element, unescaped; reused across elements.
    buf: String,
}

impl ArrayText<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// The items of a list whose `{` has been read, up to and including its `}`.
    fn list(&mut self, elem: &PgType, depth: usize) -> Result<Value, Option<CodecError>> {
        let mut items = Vec::new();
        if self.eat(b'}') {
            return Ok(Value::Array(items));
        }
        loop {
            if self.eat(b'{') {
                if depth >= MAX_DIMS {
                    return Err(None);
                }
                items.push(self.list(elem, depth + 1)?);
            } else {
                items.push(self.element(elem)?);
            }
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Ok(Value::Array(items));
            }
            return Err(None);
        }
    }

    fn element(&mut self, elem: &PgType) -> Result<Value, Option<CodecError>> {
        self.skip_ws();
        self.buf.clear();
        let start = self.i;
        if self.s.get(self.i) == Some(&b'"') {
            self.i += 1;
            let mut run = self.i;
            loop {
                match self.s.get(self.i) {
                    None => return Err(None),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        self.push_run(run)?;
                        self.i += 1;
                        run = self.i;
                        // The escaped byte (possibly the start of a multi-byte
                        // character) is kept by the next run.
                        if self.i >= self.s.len() {
                            return Err(None);
                        }
                        self.i += 1;
                    }
                    Some(_) => self.i += 1,
                }
            }
            self.push_run(run)?;
            self.i += 1;
        } else {
            let mut run = self.i;
            let mut escaped = false;
            loop {
                match self.s.get(self.i) {
                    None => return Err(None),
                    Some(b',' | b'}') => break,
                    Some(b'{' | b'"') => return Err(None),
                    Some(b'\\') => {
                        self.push_run(run)?;
                        escaped = true;
                        self.i += 1;
                        run = self.i;
                        if self.i >= self.s.len() {
                            return Err(None);
                        }
                        self.i += 1;
                    }
                    Some(_) => self.i += 1,
                }
            }
            self.push_run(run)?;
            let trimmed = self
                .buf
                .trim_end_matches(|c: char| c.is_ascii_whitespace())
                .len();
            self.buf.truncate(trimmed);
            if self.i == start || (self.buf.is_empty() && !escaped) {
                return Err(None);
            }
            if !escaped && self.buf.eq_ignore_ascii_case("NULL") {
                return Ok(Value::Null);
            }
        }
        decode_text(elem, &self.buf).map_err(Some)
    }

    fn push_run(&mut self, from: usize) -> Result<(), Option<CodecError>> {
        let run = std::str::from_utf8(&self.s[from..self.i]).map_err(|_| None)?;
        self.buf.push_str(run);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn ty(oid: u32, name: &str) -> PgType {
        PgType::builtin(oid, name).unwrap()
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(s.parse().unwrap())
    }

    fn iv(s: &str) -> Value {
        Value::Engine {
            type_name: INTERVAL.into(),
            text: s.into(),
        }
    }

    fn ts(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Equality that takes NaN for equal to NaN.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float32(x), Value::Float32(y)) => x.to_bits() == y.to_bits() || x == y,
            (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits() || x == y,
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            _ => a == b,
        }
    }

    /// Binary encode → decode gives the value back, and decode_text of `text`
    /// gives it too.
    fn check(t: &PgType, v: Value, text: &str) {
        let mut out = Vec::new();
        encode_binary(t, &v, &mut out).unwrap_or_else(|e| panic!("{} {v:?}: {e}", t.name));
        let back = decode_binary(t, &out).unwrap_or_else(|e| panic!("{} {v:?}: {e}", t.name));
        assert!(
            same(&back, &v),
            "{}: binary gave {back:?}, wanted {v:?}",
            t.name
        );
        let from_text = decode_text(t, text).unwrap_or_else(|e| panic!("{} {text:?}: {e}", t.name));
        assert!(
            same(&from_text, &v),
            "{}: text {text:?} gave {from_text:?}, wanted {v:?}",
            t.name
        );
    }

    /// The binary form of numeric text, as (ndigits, weight, sign, dscale, digits).
    fn numeric_parts(s: &str) -> (u16, i16, u16, u16, Vec<u16>) {
        let mut out = Vec::new();
        encode_numeric_text(&ty(1700, "numeric"), s, &mut out).unwrap();
        let digits = out[8..]
            .chunks(2)
            .map(|c| u16::from_be_bytes(arr(c)))
            .collect();
        (
            u16::from_be_bytes(arr(&out[0..])),
            i16::from_be_bytes(arr(&out[2..])),
            u16::from_be_bytes(arr(&out[4..])),
            u16::from_be_bytes(arr(&out[6..])),
            digits,
        )
    }

    #[test]
    fn scalars_round_trip() {
        check(&ty(16, "boolean"), Value::Bool(true), "t");
        check(&ty(16, "boolean"), Value::Bool(false), "f");
        check(&ty(21, "smallint"), Value::Int16(i16::MIN), "-32768");
        check(&ty(23, "integer"), Value::Int32(i32::MAX), "2147483647");
        check(
            &ty(20, "bigint"),
            Value::Int64(i64::MIN),
            "-9223372036854775808",
        );
        check(&ty(26, "oid"), Value::Int64(4_294_967_295), "4294967295");
        check(
            &ty(700, "real"),
            Value::Float32(3.402_823_5e38),
            "3.4028235e+38",
        );
        check(&ty(700, "real"), Value::Float32(f32::NAN), "NaN");
        check(
            &ty(701, "double precision"),
            Value::Float64(f64::NEG_INFINITY),
            "-Infinity",
        );
        check(
            &ty(701, "double precision"),
            Value::Float64(f64::INFINITY),
            "Infinity",
        );
        check(&ty(701, "double precision"), Value::Float64(-0.0), "-0");
        check(
            &ty(701, "double precision"),
            Value::Float64(1e-300),
            "1e-300",
        );
        check(
            &ty(25, "text"),
            Value::Text("héllo wörld 🎉".into()),
            "héllo wörld 🎉",
        );
        check(&ty(25, "text"), Value::Text(String::new()), "");
        check(
            &ty(1043, "character varying(8)"),
            Value::Text("ü".into()),
            "ü",
        );
        check(&ty(1042, "character(3)"), Value::Text("ab ".into()), "ab ");
        check(&ty(19, "name"), Value::Text("pg_class".into()), "pg_class");
        check(&ty(18, "\"char\""), Value::Text("a".into()), "a");
        check(&ty(18, "\"char\""), Value::Text("\\351".into()), "\\351");
        check(&ty(18, "\"char\""), Value::Text(String::new()), "");
        check(
            &ty(17, "bytea"),
            Value::Bytes(vec![0, 255, 0, 1]),
            "\\x00ff0001",
        );
        check(&ty(17, "bytea"), Value::Bytes(vec![]), "\\x");
        check(
            &ty(114, "json"),
            Value::Json(r#"{"b": 1,  "a": [1,2]}"#.into()),
            r#"{"b": 1,  "a": [1,2]}"#,
        );
        check(
            &ty(3802, "jsonb"),
            Value::Json(r#"{"a": "é"}"#.into()),
            r#"{"a": "é"}"#,
        );
        let u = Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        check(
            &ty(2950, "uuid"),
            Value::Uuid(u),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        );
        let mood = PgType::enumeration(16500, "mood", vec!["sad".into(), "très bien".into()]);
        check(&mood, Value::Text("très bien".into()), "très bien");
    }

    #[test]
    fn bytea_escape_format_and_empty_vs_null() {
        assert_eq!(
            parse_bytea("a\\000\\\\b\\377"),
            Some(vec![b'a', 0, b'\\', b'b', 255])
        );
        assert_eq!(parse_bytea("\\x 00 ff"), Some(vec![0, 255]));
        assert_eq!(parse_bytea("\\x0"), None);
        assert_eq!(parse_bytea("\\9"), None);
        // An empty string is a value, not NULL: it encodes to zero bytes.
        let mut out = Vec::new();
        encode_binary(&ty(25, "text"), &Value::Text(String::new()), &mut out).unwrap();
        assert!(out.is_empty());
        assert!(matches!(
            encode_binary(&ty(25, "text"), &Value::Null, &mut out),
            Err(CodecError::Null { .. })
        ));
    }

    #[test]
    fn numeric_keeps_every_digit_and_the_scale() {
        let n = ty(1700, "numeric");
        for s in [
            "0",
            "0.000",
            "-0.001",
            "12.30",
            "1234.50",
            "99999999999999999999999999999999999999",
            "-12345678901234567890123456789012345678",
            "12345678901234567890123456789012345678.123456789012345678901234567890",
            "0.00000000000000000001",
            "10000",
            "100000000",
            "-1",
            "9999.9999",
            "1.0001",
        ] {
            check(&n, dec(s), s);
        }
        assert_eq!(
            numeric_parts("12.30"),
            (2, 0, NUMERIC_POS, 2, vec![12, 3000])
        );
        assert_eq!(numeric_parts("-0.001"), (1, -1, NUMERIC_NEG, 3, vec![10]));
        assert_eq!(numeric_parts("0.000"), (0, 0, NUMERIC_POS, 3, vec![]));
        assert_eq!(numeric_parts("-0"), (0, 0, NUMERIC_POS, 0, vec![]));
        assert_eq!(numeric_parts("100000000"), (1, 2, NUMERIC_POS, 0, vec![1]));
        assert_eq!(
            numeric_parts("0.00000001"),
            (1, -2, NUMERIC_POS, 8, vec![1])
        );
        assert_eq!(
            numeric_parts("00012.5"),
            (2, 0, NUMERIC_POS, 1, vec![12, 5000])
        );
        // Scale is what the digits after the point say, even past the digits.
        let raw = [0, 1, 0, 0, 0, 0, 0, 4, 0, 7];
        assert_eq!(decode_binary(&n, &raw).unwrap(), dec("7.0000"));
    }

    #[test]
    fn numeric_specials_and_conversions() {
        let n = ty(1700, "numeric");
        for (sign, name) in [
            (NUMERIC_NAN, "NaN"),
            (NUMERIC_PINF, "Infinity"),
            (NUMERIC_NINF, "-Infinity"),
        ] {
            let mut raw = Vec::new();
            numeric_header(&mut raw, 0, 0, sign, 0);
            let special = Value::Decimal(name.parse().unwrap());
            assert_eq!(decode_binary(&n, &raw).unwrap(), special);
            assert_eq!(decode_text(&n, name).unwrap(), special);
            let mut out = Vec::new();
            encode_binary(&n, &special, &mut out).unwrap();
            assert_eq!(out, raw);
            // Text keeps them on the way in.
            let mut out = Vec::new();
            encode_binary(&n, &Value::Text(name.into()), &mut out).unwrap();
            assert_eq!(out, raw);
        }
        let mut out = Vec::new();
        encode_binary(&n, &Value::Float64(f64::NAN), &mut out).unwrap();
        assert_eq!(&out[4..6], &NUMERIC_NAN.to_be_bytes());
        let enc = |v: Value| {
            let mut out = Vec::new();
            encode_binary(&n, &v, &mut out).unwrap();
            decode_binary(&n, &out).unwrap()
        };
        assert_eq!(enc(Value::Int64(i64::MIN)), dec("-9223372036854775808"));
        assert_eq!(enc(Value::Float64(0.1)), dec("0.1"));
        assert_eq!(enc(Value::Float32(0.1)), dec("0.1"));
        assert_eq!(enc(Value::Text(" 12.30".into())), dec("12.30"));
        assert!(encode_binary(&n, &Value::Text("1e5".into()), &mut out).is_err());
        assert!(encode_binary(&n, &Value::Bool(true), &mut out).is_err());
    }

    #[test]
    fn integers_accept_narrower_and_integral_values() {
        let enc = |t: &PgType, v: Value| {
            let mut out = Vec::new();
            encode_binary(t, &v, &mut out).map(|_| decode_binary(t, &out).unwrap())
        };
        let i2 = ty(21, "smallint");
        let i4 = ty(23, "integer");
        let i8 = ty(20, "bigint");
        assert_eq!(enc(&i8, Value::Int16(-5)), Ok(Value::Int64(-5)));
        assert_eq!(enc(&i4, Value::Int64(7)), Ok(Value::Int32(7)));
        assert_eq!(enc(&i4, dec("42.000")), Ok(Value::Int32(42)));
        assert_eq!(enc(&i2, Value::Text("12".into())), Ok(Value::Int16(12)));
        let e = enc(&i2, Value::Int32(40_000)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "value 40000 does not fit PostgreSQL smallint"
        );
        assert!(enc(&i4, dec("1.5")).is_err());
        let e = enc(&i4, Value::Bool(true)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot write a bool value into a PostgreSQL integer column"
        );
        assert!(enc(&ty(26, "oid"), Value::Int64(-1)).is_err());
        assert_eq!(
            enc(&ty(701, "double precision"), Value::Int32(3)),
            Ok(Value::Float64(3.0))
        );
        assert!(enc(&ty(700, "real"), Value::Float64(0.1)).is_err());
        assert_eq!(
            enc(&ty(700, "real"), Value::Float64(0.5)),
            Ok(Value::Float32(0.5))
        );
    }

    #[test]
    fn dates_and_timestamps() {
        let d = ty(1082, "date");
        check(&d, Value::Date(date(2000, 1, 1)), "2000-01-01");
        check(&d, Value::Date(date(1969, 12, 31)), "1969-12-31");
        check(&d, Value::Date(date(1999, 12, 31)), "1999-12-31");
        check(&d, Value::Date(date(0, 1, 1)), "0001-01-01 BC");
        check(&d, Value::Date(date(-43, 3, 15)), "0044-03-15 BC");
        check(&d, Value::Date(date(10000, 1, 1)), "10000-01-01");
        check(&d, Value::Date(NaiveDate::MAX), "infinity");
        check(&d, Value::Date(NaiveDate::MIN), "-infinity");
        let mut out = Vec::new();
        encode_binary(&d, &Value::Date(date(2000, 1, 2)), &mut out).unwrap();
        assert_eq!(out, 1i32.to_be_bytes());
        out.clear();
        encode_binary(&d, &Value::Date(NaiveDate::MAX), &mut out).unwrap();
        assert_eq!(out, i32::MAX.to_be_bytes());

        let t = ty(1114, "timestamp without time zone");
        check(
            &t,
            Value::Timestamp(ts("2000-01-01 00:00:00")),
            "2000-01-01 00:00:00",
        );
        check(
            &t,
            Value::Timestamp(ts("1969-07-20 20:17:40.123456")),
            "1969-07-20 20:17:40.123456",
        );
        check(
            &t,
            Value::Timestamp(ts("1999-12-31 23:59:59.999999")),
            "1999-12-31 23:59:59.999999",
        );
        check(
            &t,
            Value::Timestamp(ts("1900-01-01 00:00:00.5")),
            "1900-01-01 00:00:00.5",
        );
        check(&t, Value::Timestamp(NaiveDateTime::MAX), "infinity");
        check(&t, Value::Timestamp(NaiveDateTime::MIN), "-infinity");
        check(
            &t,
            Value::Timestamp(date(-43, 3, 15).and_hms_opt(12, 0, 0).unwrap()),
            "0044-03-15 12:00:00 BC",
        );
        out.clear();
        encode_binary(&t, &Value::Timestamp(ts("2000-01-01 00:00:01")), &mut out).unwrap();
        assert_eq!(out, 1_000_000i64.to_be_bytes());
        out.clear();
        encode_binary(&t, &Value::Timestamp(NaiveDateTime::MIN), &mut out).unwrap();
        assert_eq!(out, i64::MIN.to_be_bytes());
        // Sub-microsecond time rounds half to even, as PostgreSQL's input does.
        out.clear();
        let nanos = date(2000, 1, 1).and_hms_nano_opt(0, 0, 0, 1500).unwrap();
        encode_binary(&t, &Value::Timestamp(nanos), &mut out).unwrap();
        assert_eq!(out, 2i64.to_be_bytes());
        // Beyond chrono's years.
        let e = decode_binary(&t, &(i64::MAX - 1).to_be_bytes()).unwrap_err();
        assert!(matches!(e, CodecError::OutOfRange { .. }), "{e}");

        let tz = ty(1184, "timestamp with time zone");
        let utc = |s: &str| Value::TimestampTz(Utc.from_utc_datetime(&ts(s)));
        check(
            &tz,
            utc("2024-01-01 08:00:00.5"),
            "2024-01-01 10:00:00.5+02",
        );
        check(&tz, utc("2024-01-01 04:30:00"), "2024-01-01 10:00:00+05:30");
        check(
            &tz,
            utc("1900-01-01 03:30:15"),
            "1900-01-01 00:00:00-03:30:15",
        );
        check(
            &tz,
            utc("1960-06-30 23:59:59.000001"),
            "1960-06-30 23:59:59.000001+00",
        );
        check(
            &tz,
            Value::TimestampTz(DateTime::<Utc>::MAX_UTC),
            "infinity",
        );
        check(
            &tz,
            Value::TimestampTz(DateTime::<Utc>::MIN_UTC),
            "-infinity",
        );
        assert!(decode_text(&tz, "2024-01-01 10:00:00").is_err());
        assert!(decode_text(&t, "2024-01-01 10:00:00+02").is_err());
        assert_eq!(
            decode_text(&tz, "2024-01-01T08:00:00Z").unwrap(),
            utc("2024-01-01 08:00:00")
        );

        let tm = ty(1083, "time without time zone");
        check(&tm, Value::Time(NaiveTime::MIN), "00:00:00");
        check(
            &tm,
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap()),
            "23:59:59.999999",
        );
        check(
            &tm,
            Value::Time(NaiveTime::from_hms_milli_opt(12, 34, 56, 500).unwrap()),
            "12:34:56.5",
        );
        let e = decode_text(&tm, "24:00:00").unwrap_err();
        assert!(e.to_string().contains("24:00:00"), "{e}");
        assert!(decode_binary(&tm, &MICROS_PER_DAY.to_be_bytes()).is_err());
        assert!(decode_binary(&tm, &(-1i64).to_be_bytes()).is_err());
    }

    #[test]
    fn intervals_in_every_style() {
        let t = ty(1186, "interval");
        let raw = |micros: i64, days: i32, months: i32| {
            let mut b = micros.to_be_bytes().to_vec();
            b.extend_from_slice(&days.to_be_bytes());
            b.extend_from_slice(&months.to_be_bytes());
            b
        };
        let cases: &[(i64, i32, i32, &str, &[&str])] = &[
            (
                14_706_500_000,
                3,
                14,
                "P1Y2M3DT4H5M6.5S",
                &[
                    "1 year 2 mons 3 days 04:05:06.5",
                    "@ 1 year 2 mons 3 days 4 hours 5 mins 6.5 secs",
                    "+1-2 +3 +4:05:06.5",
                ],
            ),
            (
                7_200_000_000,
                -1,
                0,
                "P-1DT2H",
                &["-1 days +02:00:00", "@ 1 day -2 hours ago", "-1 +2:00:00"],
            ),
            (0, 0, 0, "PT0S", &["00:00:00", "@ 0", "0"]),
            (
                -5_500_000,
                3,
                -14,
                "P-1Y-2M3DT-5.5S",
                &[
                    "-1 years -2 mons +3 days -00:00:05.5",
                    "@ 1 year 2 mons -3 days 5.5 secs ago",
                    "-1-2 +3 -0:00:05.5",
                ],
            ),
            (
                -500_000,
                0,
                0,
                "PT-0.5S",
                &["-00:00:00.5", "@ 0.5 secs ago", "-0:00:00.5"],
            ),
            (
                360_000_000_000,
                0,
                0,
                "PT100H",
                &["100:00:00", "@ 100 hours", "100:00:00"],
            ),
            (
                0,
                0,
                -14,
                "P-1Y-2M",
                &["-1 years -2 mons", "@ 1 year 2 mons ago", "-1-2"],
            ),
            (
                -3_723_000_001,
                -3,
                0,
                "P-3DT-1H-2M-3.000001S",
                &[
                    "-3 days -01:02:03.000001",
                    "@ 3 days 1 hour 2 mins 3.000001 secs ago",
                    "-3 1:02:03.000001",
                ],
            ),
            (1, 0, 0, "PT0.000001S", &["00:00:00.000001"]),
            (
                i64::MAX,
                i32::MAX,
                i32::MIN,
                "P-178956970Y-8M2147483647DT2562047788H54.775807S",
                &["-178956970 years -8 mons +2147483647 days 2562047788:00:54.775807"],
            ),
        ];
        for (micros, days, months, iso, texts) in cases {
            let bytes = raw(*micros, *days, *months);
            let v = decode_binary(&t, &bytes).unwrap();
            assert_eq!(v, iv(iso), "{micros} {days} {months}");
            let mut out = Vec::new();
            encode_binary(&t, &v, &mut out).unwrap();
            assert_eq!(out, bytes, "{iso}");
            for text in *texts {
                assert_eq!(decode_text(&t, text).unwrap(), iv(iso), "{text:?}");
            }
            assert_eq!(decode_text(&t, iso).unwrap(), iv(iso));
        }
        assert_eq!(decode_text(&t, "P1W").unwrap(), iv("P7D"));
        for bad in [
            "",
            "P",
            "PT",
            "1 fortnight",
            "P1.5Y",
            "PT1H2",
            "1 day ago ago",
            "P1Y2M3DT4H5M6.0000001S",
        ] {
            assert!(decode_text(&t, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn arrays() {
        let i4 = ty(1007, "integer[]");
        assert_eq!(i4.element.as_ref().unwrap().name, "integer");
        let a = |v: Vec<Value>| Value::Array(v);
        check(
            &i4,
            a(vec![Value::Int32(1), Value::Int32(2), Value::Null]),
            "{1,2,NULL}",
        );
        check(&i4, a(vec![]), "{}");
        check(
            &i4,
            a(vec![
                a(vec![Value::Int32(1), Value::Int32(2)]),
                a(vec![Value::Int32(3), Value::Int32(4)]),
            ]),
            "{{1,2},{3,4}}",
        );
        check(
            &i4,
            a(vec![Value::Int32(5), Value::Int32(6)]),
            "[0:1]={5,6}",
        );
        let txt = ty(1009, "text[]");
        check(
            &txt,
            a(vec![
                Value::Text("a b".into()),
                Value::Text("c\"d".into()),
                Value::Text("NULL".into()),
                Value::Null,
                Value::Text(String::new()),
                Value::Text("é🎉\\{},".into()),
            ]),
            r#"{"a b","c\"d","NULL",NULL,"","é🎉\\{},"}"#,
        );
        check(
            &txt,
            a(vec![a(vec![a(vec![Value::Text("x".into())])])]),
            "{{{x}}}",
        );
        let num = ty(1231, "numeric(5,2)[]");
        assert_eq!(num.element.as_ref().unwrap().name, "numeric(5,2)");
        check(&num, a(vec![dec("1.50"), dec("-0.01")]), "{1.50,-0.01}");
        let by = ty(1001, "bytea[]");
        check(
            &by,
            a(vec![Value::Bytes(vec![0, 1]), Value::Null]),
            r#"{"\\x0001",NULL}"#,
        );
        let tsa = ty(1115, "timestamp without time zone[]");
        check(
            &tsa,
            a(vec![
                Value::Timestamp(ts("2000-01-01 10:00:00")),
                Value::Timestamp(NaiveDateTime::MAX),
            ]),
            r#"{"2000-01-01 10:00:00",infinity}"#,
        );
        let ia = ty(1187, "interval[]");
        check(&ia, a(vec![iv("P-1DT2H")]), r#"{"-1 days +02:00:00"}"#);
        let moods = PgType::array(16499, "mood[]", PgType::enumeration(16500, "mood", vec![]));
        check(&moods, a(vec![Value::Text("sad".into())]), "{sad}");

        // Binary header: ndim, has-null flag, element oid, dims with lower bound 1.
        let mut out = Vec::new();
        encode_binary(&i4, &a(vec![Value::Null]), &mut out).unwrap();
        assert_eq!(
            out,
            [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 23, 0, 0, 0, 1, 0, 0, 0, 1, 255, 255, 255, 255]
        );
        out.clear();
        encode_binary(&i4, &a(vec![]), &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23]);

        // Ragged arrays are refused.
        for ragged in [
            a(vec![
                a(vec![Value::Int32(1)]),
                a(vec![Value::Int32(1), Value::Int32(2)]),
            ]),
            a(vec![a(vec![Value::Int32(1)]), Value::Int32(2)]),
            a(vec![Value::Int32(2), a(vec![Value::Int32(1)])]),
            a(vec![a(vec![]), a(vec![])]),
            a(vec![Value::Null, a(vec![Value::Int32(1)])]),
        ] {
            let e = encode_binary(&i4, &ragged, &mut out).unwrap_err();
            assert!(
                matches!(e, CodecError::OutOfRange { .. }),
                "{ragged:?}: {e}"
            );
        }
        let deep = (0..7).fold(Value::Int32(1), |v, _| a(vec![v]));
        assert!(encode_binary(&i4, &deep, &mut out).is_err());
        assert!(decode_text(&i4, "{{{{{{{1}}}}}}}").is_err());
        for bad in ["", "{", "{1,}", "{1 2}", "1", "{1}x", "{\"1}", "{,}", "{a}"] {
            assert!(decode_text(&i4, bad).is_err(), "{bad:?} accepted");
        }
        // Text in array form goes in by parsing.
        out.clear();
        encode_binary(&i4, &Value::Text("{7}".into()), &mut out).unwrap();
        assert_eq!(decode_binary(&i4, &out).unwrap(), a(vec![Value::Int32(7)]));
    }

    #[test]
    fn catalog_construction() {
        let dom = PgType::from_catalog(1700, "money_amount", 'd', None, vec![]);
        assert_eq!(dom.wire(), Wire::Numeric);
        assert_eq!(
            dom.kind,
            TypeKind::Decimal {
                precision: None,
                scale: None
            }
        );
        let n = PgType::from_catalog(1700, "numeric(12,2)", 'b', None, vec![]);
        assert_eq!(
            n.kind,
            TypeKind::Decimal {
                precision: Some(12),
                scale: Some(2)
            }
        );
        let v = PgType::from_catalog(1043, "character varying(16)", 'b', None, vec![]);
        assert_eq!(v.kind, TypeKind::Text { max_len: Some(16) });
        let c = PgType::from_catalog(1042, "character(3)", 'b', None, vec![]);
        assert_eq!(c.kind, TypeKind::FixedText { len: 3 });
        let e = PgType::from_catalog(16500, "mood", 'e', None, vec!["sad".into()]);
        assert_eq!(
            e.kind,
            TypeKind::Enum {
                name: "mood".into(),
                labels: vec!["sad".into()]
            }
        );
        let ea = PgType::from_catalog(16499, "mood[]", 'b', Some(e), vec![]);
        assert_eq!(ea.wire(), Wire::Array);
        assert!(ea.binary_supported());
        let p = PgType::from_catalog(600, "point", 'b', None, vec![]);
        assert!(!p.binary_supported());
        assert_eq!(
            decode_text(&p, "(1,2)").unwrap(),
            Value::Engine {
                type_name: "point".into(),
                text: "(1,2)".into()
            }
        );
        assert!(matches!(
            decode_binary(&p, &[]),
            Err(CodecError::NoBinaryCodec { oid: 600, .. })
        ));
        let pa = PgType::from_catalog(1017, "point[]", 'b', Some(p), vec![]);
        assert!(!pa.binary_supported());
        assert_eq!(
            ty(1186, "interval").kind,
            TypeKind::Engine {
                name: "interval".into()
            }
        );
        assert_eq!(ty(1007, "").name, "integer[]");
        assert!(PgType::builtin(600, "point").is_none());
        for &(oid, array, wire, _) in BUILTINS {
            assert_eq!(builtin_wire(oid), Some(wire), "{oid}");
            assert_eq!(ty(array, "").wire(), Wire::Array, "{array}");
        }
        // What discovery may build by hand: the brief's struct literal.
        let lit = PgType {
            oid: 16500,
            name: "public.mood".into(),
            kind: TypeKind::Enum {
                name: "public.mood".into(),
                labels: vec![],
            },
            element: None,
            labels: vec![],
        };
        assert_eq!(lit.wire(), Wire::Text);
        // A domain keeping its own OID reads as its base type; a built-in OID
        // without a codec stays text-only whatever its name parses to.
        let mut dom = ty(1700, "numeric(12,2)");
        dom.oid = 16600;
        assert_eq!(dom.wire(), Wire::Numeric);
        let mut dom = ty(3802, "jsonb");
        dom.oid = 16601;
        assert_eq!(dom.wire(), Wire::Jsonb);
        let timetz = PgType {
            oid: 1266,
            name: "time(3) with time zone".into(),
            kind: TypeKind::Time,
            element: None,
            labels: vec![],
        };
        assert_eq!(timetz.wire(), Wire::TextOnly);
        let citext = PgType {
            oid: 16700,
            kind: TypeKind::Engine {
                name: "citext".into(),
            },
            ..timetz
        };
        assert_eq!(citext.wire(), Wire::TextOnly);
    }

    #[test]
    fn malformed_binary_is_an_error() {
        let n = ty(1700, "numeric");
        assert!(decode_binary(&n, &[0, 1, 0, 0, 0, 0, 0, 0]).is_err()); // digit missing
        assert!(decode_binary(&n, &[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_err()); // 10000
        assert!(decode_binary(&n, &[0, 0, 0, 0, 0x12, 0, 0, 0]).is_err()); // sign
        assert!(decode_binary(&ty(23, "integer"), &[0, 0, 1]).is_err());
        assert!(decode_binary(&ty(25, "text"), &[0xff]).is_err());
        assert!(decode_binary(&ty(3802, "jsonb"), b"\x02{}").is_err());
        let i4 = ty(1007, "integer[]");
        // A header claiming 2^31 elements with nothing behind it.
        let mut raw = vec![
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 23, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1,
        ];
        assert!(decode_binary(&i4, &raw).is_err());
        raw[12..16].copy_from_slice(&1i32.to_be_bytes());
        raw.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0]);
        assert!(decode_binary(&i4, &raw).is_err());
        raw.push(9);
        assert_eq!(
            decode_binary(&i4, &raw).unwrap(),
            Value::Array(vec![Value::Int32(9)])
        );
        raw.push(0);
        assert!(decode_binary(&i4, &raw).is_err());
    }

    /// A small deterministic generator, so the fuzz cases are the same each run.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = (self.next() % (max as u64 + 1)) as usize;
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn all_types() -> Vec<PgType> {
        let mut v: Vec<PgType> = BUILTINS
            .iter()
            .flat_map(|b| [ty(b.0, ""), ty(b.1, "")])
            .collect();
        v.push(PgType::enumeration(1, "e", vec![]));
        v
    }

    #[test]
    fn random_bytes_never_panic() {
        let types = all_types();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let raw = rng.bytes(40);
            for t in &types {
                let _ = decode_binary(t, &raw);
                if let Ok(s) = std::str::from_utf8(&raw) {
                    let _ = decode_text(t, s);
                }
            }
        }
        // Plausible array and numeric headers with random tails reach deeper.
        for _ in 0..20_000 {
            let mut raw = vec![
                0,
                0,
                0,
                (rng.next() % 3) as u8,
                0,
                0,
                0,
                (rng.next() % 2) as u8,
                0,
                0,
                0,
                23,
            ];
            raw.extend(rng.bytes(40));
            let _ = decode_binary(&ty(1007, ""), &raw);
            let _ = decode_binary(&ty(1700, ""), &raw[(rng.next() % 8) as usize..]);
        }
        // Text built from the characters the parsers care about.
        let alphabet = b"{}\",\\ NUL0123456789-+:.PTYMDHSWdaysmonagoBCinfty@x";
        for _ in 0..50_000 {
            let s: String = (0..rng.next() % 24)
                .map(|_| char::from(alphabet[(rng.next() % alphabet.len() as u64) as usize]))
                .collect();
            for t in &types {
                let _ = decode_text(t, &s);
            }
        }
    }
}
