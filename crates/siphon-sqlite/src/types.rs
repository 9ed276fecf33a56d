//! Values between SQLite's storage classes and siphon's typed values.
//!
//! SQLite stores any value in any column; the declared type only suggests. Reading
//! decodes by the declared kind and accepts every storage form SQLite itself would
//! produce for it; a value that cannot be read as its column's kind is an error
//! naming the table, column and value. Writing uses one canonical text form per
//! kind, which reading accepts.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use serde::{Deserialize, Serialize};
use siphon_core::{Decimal, Error, Result, TypeKind, Value};

const TS_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

/// A value exactly as SQLite stored it: positions keep these, so that resuming
/// compares with what is in the file, whatever form it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Raw {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Raw {
    pub(crate) fn from_ref(v: ValueRef<'_>) -> Raw {
        match v {
            ValueRef::Null => Raw::Null,
            ValueRef::Integer(i) => Raw::Int(i),
            ValueRef::Real(f) => Raw::Real(f),
            ValueRef::Text(t) => Raw::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Raw::Blob(b.to_vec()),
        }
    }

    /// SQLite's own order: NULL, numbers, text (binary collation), blobs.
    pub(crate) fn sqlite_cmp(&self, other: &Raw) -> Ordering {
        fn class(r: &Raw) -> u8 {
            match r {
                Raw::Null => 0,
                Raw::Int(_) | Raw::Real(_) => 1,
                Raw::Text(_) => 2,
                Raw::Blob(_) => 3,
            }
        }
        match (self, other) {
            (Raw::Int(a), Raw::Int(b)) => a.cmp(b),
            (Raw::Int(a), Raw::Real(b)) => (*a as f64).total_cmp(b),
            (Raw::Real(a), Raw::Int(b)) => a.total_cmp(&(*b as f64)),
            (Raw::Real(a), Raw::Real(b)) => a.total_cmp(b),
            (Raw::Text(a), Raw::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Raw::Blob(a), Raw::Blob(b)) => a.cmp(b),
            _ => class(self).cmp(&class(other)),
        }
    }
}

impl rusqlite::ToSql for Raw {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Raw::Null => ToSqlOutput::Owned(SqlValue::Null),
            Raw::Int(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
            Raw::Real(f) => ToSqlOutput::Owned(SqlValue::Real(*f)),
            Raw::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Raw::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// A typed value bound in its canonical SQLite form.
pub(crate) struct Bind<'a>(pub &'a Value);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let text = |s: String| ToSqlOutput::Owned(SqlValue::Text(s));
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Owned(SqlValue::Null),
            Value::Bool(b) => ToSqlOutput::Owned(SqlValue::Integer(*b as i64)),
            Value::Int16(v) => ToSqlOutput::Owned(SqlValue::Integer(i64::from(*v))),
            Value::Int32(v) => ToSqlOutput::Owned(SqlValue::Integer(i64::from(*v))),
            Value::Int64(v) => ToSqlOutput::Owned(SqlValue::Integer(*v)),
            Value::Float32(v) => ToSqlOutput::Owned(SqlValue::Real(f64::from(*v))),
            Value::Float64(v) => ToSqlOutput::Owned(SqlValue::Real(*v)),
            Value::Decimal(d) => ToSqlOutput::Borrowed(ValueRef::Text(d.as_str().as_bytes())),
            Value::Text(s) | Value::Json(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Engine { text: s, .. } => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Date(d) => text(d.format("%Y-%m-%d").to_string()),
            Value::Time(t) => text(t.format("%H:%M:%S%.f").to_string()),
            Value::Timestamp(t) => text(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
            Value::TimestampTz(t) => text(t.format("%Y-%m-%d %H:%M:%S%.f+00:00").to_string()),
            Value::Uuid(u) => text(u.hyphenated().to_string()),
            Value::Array(_) => text(self.0.to_json().to_string()),
        })
    }
}

/// Why a stored value could not be read as its column's kind.
pub(crate) fn unreadable(kind: &TypeKind, v: ValueRef<'_>) -> String {
    let shown = match v {
        ValueRef::Null => "NULL".to_string(),
        ValueRef::Integer(i) => format!("integer {i}"),
        ValueRef::Real(f) => format!("real {f}"),
        ValueRef::Text(t) => format!("text '{}'", String::from_utf8_lossy(&t[..t.len().min(64)])),
        ValueRef::Blob(b) => format!("a blob of {} bytes", b.len()),
    };
    format!(
        "{shown} cannot be read as {kind:?}; correct the value, or declare the column with a \
         type that fits it (TEXT keeps anything)"
    )
}

/// Decodes a stored value by its column's declared kind. `None` when it does not fit.
pub(crate) fn decode(kind: &TypeKind, v: ValueRef<'_>) -> Option<Value> {
    use TypeKind as K;
    fn text(t: &[u8]) -> Option<&str> {
        std::str::from_utf8(t).ok().map(str::trim)
    }
    Some(match (kind, v) {
        (_, ValueRef::Null) => Value::Null,
        (K::Bool, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (K::Bool, ValueRef::Real(f)) => Value::Bool(f != 0.0),
        (K::Bool, ValueRef::Text(t)) => match text(t)?.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "y" | "yes" => Value::Bool(true),
            "0" | "f" | "false" | "n" | "no" => Value::Bool(false),
            _ => return None,
        },
        (K::Int16 | K::Int32 | K::Int64, _) => {
            let i = match v {
                ValueRef::Integer(i) => i,
                ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
                ValueRef::Text(t) => text(t)?.parse().ok()?,
                _ => return None,
            };
            match kind {
                K::Int16 => Value::Int16(i16::try_from(i).ok()?),
                K::Int32 => Value::Int32(i32::try_from(i).ok()?),
                _ => Value::Int64(i),
            }
        }
        (K::Float32 | K::Float64, _) => {
            let f = match v {
                ValueRef::Real(f) => f,
                ValueRef::Integer(i) => i as f64,
                ValueRef::Text(t) => text(t)?.parse().ok()?,
                _ => return None,
            };
            if matches!(kind, K::Float32) {
                Value::Float32(f as f32)
            } else {
                Value::Float64(f)
            }
        }
        (K::Decimal { scale, .. }, _) => {
            let d = match v {
                ValueRef::Integer(i) => Decimal::from(i),
                ValueRef::Real(f) => Decimal::from_f64(f)?,
                ValueRef::Text(t) => text(t)?.parse().ok()?,
                _ => return None,
            };
            Value::Decimal(match scale {
                Some(s) => d.with_min_scale(*s),
                None => d,
            })
        }
        (K::Text { .. } | K::FixedText { .. } | K::Enum { .. }, _) => Value::Text(match v {
            ValueRef::Text(t) => std::str::from_utf8(t).ok()?.to_string(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(f) => f.to_string(),
            ValueRef::Blob(b) => std::str::from_utf8(b).ok()?.to_string(),
            ValueRef::Null => return None,
        }),
        (K::Json, _) => Value::Json(match v {
            ValueRef::Text(t) => std::str::from_utf8(t).ok()?.to_string(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(f) => f.to_string(),
            _ => return None,
        }),
        (K::Bytes { .. }, ValueRef::Blob(b)) => Value::Bytes(b.to_vec()),
        (K::Bytes { .. }, ValueRef::Text(t)) => Value::Bytes(t.to_vec()),
        (K::Date, ValueRef::Text(t)) => {
            let s = text(t)?;
            Value::Date(
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .or_else(|| parse_timestamp(s).map(|ts| ts.date()))?,
            )
        }
        (K::Time, ValueRef::Text(t)) => {
            let s = text(t)?;
            Value::Time(
                NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                    .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
                    .ok()?,
            )
        }
        (K::Timestamp, ValueRef::Text(t)) => Value::Timestamp(parse_timestamp(text(t)?)?),
        (K::Timestamp, ValueRef::Integer(i)) => {
            Value::Timestamp(DateTime::from_timestamp(i, 0)?.naive_utc())
        }
        (K::TimestampTz, ValueRef::Text(t)) => Value::TimestampTz(parse_timestamptz(text(t)?)?),
        (K::TimestampTz, ValueRef::Integer(i)) => {
            Value::TimestampTz(DateTime::from_timestamp(i, 0)?)
        }
        (K::Uuid, ValueRef::Text(t)) => Value::Uuid(uuid::Uuid::try_parse_ascii(t).ok()?),
        (K::Uuid, ValueRef::Blob(b)) => Value::Uuid(uuid::Uuid::from_slice(b).ok()?),
        (K::Engine { .. }, ValueRef::Integer(i)) => Value::Int64(i),
        (K::Engine { .. }, ValueRef::Real(f)) => Value::Float64(f),
        (K::Engine { .. }, ValueRef::Text(t)) => {
            Value::Text(std::str::from_utf8(t).ok()?.to_string())
        }
        (K::Engine { .. }, ValueRef::Blob(b)) => Value::Bytes(b.to_vec()),
        _ => return None,
    })
}

/// A timestamp in any of the text forms SQLite's date functions write or read;
/// one with an offset is taken as the UTC instant.
pub(crate) fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    TS_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| parse_with_offset(s).map(|t| t.naive_utc()))
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

fn parse_with_offset(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A timestamp with time zone; text without an offset is taken as UTC.
pub(crate) fn parse_timestamptz(s: &str) -> Option<DateTime<Utc>> {
    parse_with_offset(s)
        .or_else(|| {
            s.strip_suffix('Z')
                .and_then(parse_timestamp)
                .map(|t| t.and_utc())
        })
        .or_else(|| parse_timestamp(s).map(|t| t.and_utc()))
}

/// `text` moved back by `secs` seconds, written in the same shape as it came (same
/// separator, fraction digits and suffix), so that it compares with the stored
/// values as SQLite compares text.
pub(crate) fn rewind_text_timestamp(text: &str, secs: i64) -> Option<String> {
    const SHAPES: &[&str] = &[
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.3f",
        "%Y-%m-%d %H:%M:%S%.6f",
        "%Y-%m-%d %H:%M:%S%.9f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.3f",
        "%Y-%m-%dT%H:%M:%S%.6f",
        "%Y-%m-%dT%H:%M:%S%.9f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    let suffixes = ["", "Z", "+00:00"];
    for suffix in suffixes {
        let Some(body) = text.strip_suffix(suffix) else {
            continue;
        };
        for shape in SHAPES {
            if let Ok(t) = NaiveDateTime::parse_from_str(body, shape) {
                if t.format(shape).to_string() == body {
                    let back = t - chrono::Duration::seconds(secs);
                    return Some(format!("{}{suffix}", back.format(shape)));
                }
            }
        }
    }
    let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let back = d.and_hms_opt(0, 0, 0)? - chrono::Duration::seconds(secs);
    Some(back.date().format("%Y-%m-%d").to_string())
}

pub(crate) fn decode_or_err(
    kind: &TypeKind,
    v: ValueRef<'_>,
    table: &impl std::fmt::Display,
    column: &str,
) -> Result<Value> {
    decode(kind, v).ok_or_else(|| {
        Error::bad_input(unreadable(kind, v))
            .table(table)
            .column(column)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ToSql;
    use TypeKind as K;

    fn round_trip(kind: &TypeKind, v: Value) {
        let bind = Bind(&v);
        let out = bind.to_sql().unwrap();
        let back = match &out {
            ToSqlOutput::Borrowed(r) => decode(kind, *r),
            ToSqlOutput::Owned(o) => decode(kind, ValueRef::from(o)),
            _ => unreachable!("only borrowed and owned outputs are made"),
        };
        assert_eq!(back, Some(v), "{kind:?}");
    }

    #[test]
    fn canonical_forms_read_back_as_written() {
        round_trip(&K::Bool, Value::Bool(true));
        round_trip(&K::Int16, Value::Int16(-32768));
        round_trip(&K::Int64, Value::Int64(i64::MAX));
        round_trip(&K::Float64, Value::Float64(-1.5e300));
        round_trip(
            &K::Decimal {
                precision: Some(38),
                scale: Some(2),
            },
            Value::Decimal("-123456789012345678901234567890123456.78".parse().unwrap()),
        );
        round_trip(&K::Text { max_len: None }, Value::Text("naïve 🙂".into()));
        round_trip(&K::Text { max_len: None }, Value::Text(String::new()));
        round_trip(
            &K::Bytes { max_len: None },
            Value::Bytes(vec![0, 1, 0, 255]),
        );
        round_trip(
            &K::Date,
            Value::Date(NaiveDate::from_ymd_opt(1969, 7, 20).unwrap()),
        );
        round_trip(
            &K::Time,
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 123456).unwrap()),
        );
        let ts = NaiveDate::from_ymd_opt(1900, 1, 1)
            .unwrap()
            .and_hms_micro_opt(0, 0, 1, 5)
            .unwrap();
        round_trip(&K::Timestamp, Value::Timestamp(ts));
        round_trip(&K::TimestampTz, Value::TimestampTz(ts.and_utc()));
        round_trip(
            &K::Uuid,
            Value::Uuid(uuid::Uuid::from_u128(
                0x1234_5678_9abc_def0_1234_5678_9abc_def0,
            )),
        );
        round_trip(&K::Json, Value::Json(r#"{"a":[1,2]}"#.into()));
    }

    #[test]
    fn stored_forms_sqlite_writes_are_read() {
        let dec = K::Decimal {
            precision: Some(12),
            scale: Some(2),
        };
        assert_eq!(
            decode(&dec, ValueRef::Real(12.3)),
            Some(Value::Decimal("12.30".parse().unwrap()))
        );
        assert_eq!(
            decode(&dec, ValueRef::Integer(7)),
            Some(Value::Decimal("7.00".parse().unwrap()))
        );
        let ts = decode(&K::Timestamp, ValueRef::Text(b"2024-02-29T10:11:12Z")).unwrap();
        assert_eq!(ts.to_string(), "2024-02-29 10:11:12");
        assert_eq!(decode(&K::Int32, ValueRef::Integer(1 << 40)), None);
        assert_eq!(decode(&K::Date, ValueRef::Text(b"not a date")), None);
    }

    #[test]
    fn rewinding_keeps_the_stored_shape() {
        assert_eq!(
            rewind_text_timestamp("2024-01-01 00:00:30", 60).unwrap(),
            "2023-12-31 23:59:30"
        );
        assert_eq!(
            rewind_text_timestamp("2024-01-01T10:00:00.500Z", 1).unwrap(),
            "2024-01-01T09:59:59.500Z"
        );
        assert_eq!(
            rewind_text_timestamp("2024-01-02", 86400).unwrap(),
            "2024-01-01"
        );
        assert!(rewind_text_timestamp("yesterday", 1).is_none());
    }

    #[test]
    fn raw_values_order_as_sqlite_does() {
        assert_eq!(Raw::Null.sqlite_cmp(&Raw::Int(0)), Ordering::Less);
        assert_eq!(Raw::Int(2).sqlite_cmp(&Raw::Real(1.5)), Ordering::Greater);
        assert_eq!(
            Raw::Int(99).sqlite_cmp(&Raw::Text("1".into())),
            Ordering::Less
        );
        assert_eq!(
            Raw::Text("B".into()).sqlite_cmp(&Raw::Text("a".into())),
            Ordering::Less
        );
    }
}
