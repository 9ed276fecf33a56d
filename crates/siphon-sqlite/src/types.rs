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

use crate::datetime;

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

    /// Sets `self` to `v` as [`Raw::from_ref`] would, reusing its text or blob
    /// allocation when it has one.
    pub(crate) fn set_from_ref(&mut self, v: ValueRef<'_>) {
        match (self, v) {
            (Raw::Text(s), ValueRef::Text(t)) => {
                s.clear();
                match std::str::from_utf8(t) {
                    Ok(t) => s.push_str(t),
                    Err(_) => s.push_str(&String::from_utf8_lossy(t)),
                }
            }
            (Raw::Blob(b), ValueRef::Blob(v)) => {
                b.clear();
                b.extend_from_slice(v);
            }
            (r, v) => *r = Raw::from_ref(v),
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
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Owned(SqlValue::Null),
            Value::Bool(b) => ToSqlOutput::Owned(SqlValue::Integer(*b as i64)),
            Value::Int16(v) => ToSqlOutput::Owned(SqlValue::Integer(i64::from(*v))),
            Value::Int32(v) => ToSqlOutput::Owned(SqlValue::Integer(i64::from(*v))),
            Value::Int64(v) => ToSqlOutput::Owned(SqlValue::Integer(*v)),
            // SQLite turns a bound NaN into NULL: it is stored as the text `NaN`.
            Value::Float32(v) if v.is_nan() => ToSqlOutput::Borrowed(ValueRef::Text(b"NaN")),
            Value::Float64(v) if v.is_nan() => ToSqlOutput::Borrowed(ValueRef::Text(b"NaN")),
            Value::Float32(v) => ToSqlOutput::Owned(SqlValue::Real(f64::from(*v))),
            Value::Float64(v) => ToSqlOutput::Owned(SqlValue::Real(*v)),
            Value::Decimal(d) => ToSqlOutput::Borrowed(ValueRef::Text(d.as_str().as_bytes())),
            Value::Text(s) | Value::Json(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Engine { text: s, .. } => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Array(_) => ToSqlOutput::Owned(SqlValue::Text(self.0.to_json().to_string())),
            v @ (Value::Date(_)
            | Value::Time(_)
            | Value::Timestamp(_)
            | Value::TimestampTz(_)
            | Value::Uuid(_)) => {
                let mut s = String::with_capacity(40);
                write_formatted(v, &mut s);
                ToSqlOutput::Owned(SqlValue::Text(s))
            }
        })
    }
}

/// Appends the canonical text of a date, time, timestamp or UUID, the kinds
/// siphon writes as text it formats itself; returns false (and appends nothing)
/// for any other kind. The special values among them (`±infinity`, `24:00:00`)
/// are written as [`Value::special_text`] spells them.
fn write_formatted(v: &Value, out: &mut String) -> bool {
    if let (
        Value::Date(_) | Value::Time(_) | Value::Timestamp(_) | Value::TimestampTz(_),
        Some(t),
    ) = (v, v.special_text())
    {
        out.push_str(t);
        return true;
    }
    match v {
        Value::Date(d) => datetime::write_date(d, out),
        Value::Time(t) => datetime::write_time(t, out),
        Value::Timestamp(t) => datetime::write_timestamp(t, out),
        Value::TimestampTz(t) => {
            datetime::write_timestamp(&t.naive_utc(), out);
            out.push_str("+00:00");
        }
        Value::Uuid(u) => out.push_str(
            u.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        ),
        _ => return false,
    }
    true
}

/// Binds `v` at `index` exactly as [`Bind`] would, formatting the kinds written
/// as formatted text into `scratch` instead of a new string for each value
/// (SQLite copies bound text, so `scratch` is free again at once).
pub(crate) fn bind_value(
    st: &mut rusqlite::Statement<'_>,
    index: usize,
    v: &Value,
    scratch: &mut String,
) -> rusqlite::Result<()> {
    scratch.clear();
    if write_formatted(v, scratch) {
        st.raw_bind_parameter(index, scratch.as_str())
    } else {
        st.raw_bind_parameter(index, Bind(v))
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
        "{shown} cannot be read as {}; correct the value, or declare the column with a \
         type that fits it (TEXT keeps anything)",
        siphon_core::typemap::kind_name(kind)
    )
}

/// Decodes a stored value by its column's declared kind. `None` when it does not fit.
#[cfg(test)]
pub(crate) fn decode(kind: &TypeKind, v: ValueRef<'_>) -> Option<Value> {
    decode_with(kind, v, &mut String::new())
}

/// `n` as an exact decimal with at least `scale` fraction digits, the same value
/// as `Decimal::from_…(n).with_min_scale(scale)`, built in `scratch` so that
/// only the result is allocated.
fn decimal_from_number(
    n: impl std::fmt::Display,
    scale: Option<u32>,
    scratch: &mut String,
) -> Option<Decimal> {
    use std::fmt::Write;
    scratch.clear();
    // Neither i64 nor a finite f64 prints an exponent: this is plain digits.
    write!(scratch, "{n}").ok()?;
    if let Some(scale) = scale {
        let frac = scratch.split_once('.').map_or(0, |(_, f)| f.len());
        if frac < scale as usize {
            if !scratch.contains('.') {
                scratch.push('.');
            }
            scratch.extend(std::iter::repeat_n('0', scale as usize - frac));
        }
    }
    scratch.parse().ok()
}

/// Like [`decode`], with `scratch` for the text decimals are built in.
pub(crate) fn decode_with(kind: &TypeKind, v: ValueRef<'_>, scratch: &mut String) -> Option<Value> {
    use TypeKind as K;
    fn text(t: &[u8]) -> Option<&str> {
        std::str::from_utf8(t).ok().map(str::trim)
    }
    Some(match (kind, v) {
        (_, ValueRef::Null) => Value::Null,
        // Another number is not a boolean: reading 2 as true would change it.
        (K::Bool, ValueRef::Integer(i @ (0 | 1))) => Value::Bool(i == 1),
        (K::Bool, ValueRef::Real(f)) if f == 0.0 || f == 1.0 => Value::Bool(f == 1.0),
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
                // Beyond 2^53 an integer has no exact float.
                ValueRef::Integer(i) if i.unsigned_abs() <= 1 << 53 => i as f64,
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
            Value::Decimal(match v {
                ValueRef::Integer(i) => decimal_from_number(i, *scale, scratch)?,
                ValueRef::Real(f) if f.is_finite() => decimal_from_number(f, *scale, scratch)?,
                ValueRef::Real(f) => Decimal::from_f64(f)?,
                ValueRef::Text(t) => {
                    let d: Decimal = text(t)?.parse().ok()?;
                    let frac = d.as_str().split_once('.').map_or(0, |(_, f)| f.len());
                    match scale {
                        // with_min_scale copies even when there is nothing to pad.
                        Some(s) if frac < *s as usize => d.with_min_scale(*s),
                        _ => d,
                    }
                }
                _ => return None,
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
            match datetime::parse_date_fast(s)
                .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .or_else(|| parse_timestamp(s).map(|ts| ts.date()))
            {
                Some(d) => Value::Date(d),
                None => Value::from_special_text(kind, s).or_else(|| beyond_chrono(kind, s))?,
            }
        }
        (K::Time, ValueRef::Text(t)) => {
            let s = text(t)?;
            match datetime::parse_time_fast(s).or_else(|| {
                NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                    .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
                    .ok()
            }) {
                Some(t) => Value::Time(t),
                None => Value::from_special_text(kind, s)?,
            }
        }
        (K::Timestamp, ValueRef::Text(t)) => {
            let s = text(t)?;
            match parse_timestamp(s) {
                Some(t) => Value::Timestamp(t),
                None => Value::from_special_text(kind, s).or_else(|| beyond_chrono(kind, s))?,
            }
        }
        (K::Timestamp, ValueRef::Integer(i)) => {
            Value::Timestamp(DateTime::from_timestamp(i, 0)?.naive_utc())
        }
        (K::TimestampTz, ValueRef::Text(t)) => {
            let s = text(t)?;
            match parse_timestamptz(s) {
                Some(t) => Value::TimestampTz(t),
                None => Value::from_special_text(kind, s).or_else(|| beyond_chrono(kind, s))?,
            }
        }
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

/// A date or timestamp past chrono's last year (262142) as PostgreSQL writes it,
/// which reaches year 5874897 for dates and 294276 for timestamps
/// (`294276-12-31 23:59:59.999999`): carried as that text, which PostgreSQL
/// reads back as the same value. Only a year of six or seven digits followed by
/// `-` is taken; anything else is not a date.
fn beyond_chrono(kind: &TypeKind, s: &str) -> Option<Value> {
    let year = s.bytes().take_while(u8::is_ascii_digit).count();
    if !(6..=7).contains(&year) || s.as_bytes().get(year) != Some(&b'-') {
        return None;
    }
    let type_name = match kind {
        TypeKind::Date => "date",
        TypeKind::Timestamp => "timestamp",
        TypeKind::TimestampTz => "timestamptz",
        _ => return None,
    };
    Some(Value::Engine {
        type_name: type_name.into(),
        text: s.to_string(),
    })
}

/// A timestamp in any of the text forms SQLite's date functions write or read;
/// one with an offset is taken as the UTC instant.
pub(crate) fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    datetime::parse_timestamp_fast(s)
        .or_else(|| {
            TS_FORMATS
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        })
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
    decode_or_err_with(kind, v, table, column, &mut String::new())
}

/// Like [`decode_or_err`], with `scratch` for the text decimals are built in.
pub(crate) fn decode_or_err_with(
    kind: &TypeKind,
    v: ValueRef<'_>,
    table: &impl std::fmt::Display,
    column: &str,
    scratch: &mut String,
) -> Result<Value> {
    decode_with(kind, v, scratch).ok_or_else(|| {
        Error::bad_input(unreadable(kind, v))
            .table(table)
            .column(column)
    })
}

pub(crate) use siphon_core::typemap::SqliteAffinity as Affinity;

/// Whether SQLite turns numeric-looking text into a number in a column of `a`.
fn converts_text(a: Affinity) -> bool {
    matches!(a, Affinity::Integer | Affinity::Real | Affinity::Numeric)
}

/// The number SQLite makes of `s` in a column of `affinity` (which converts text):
/// `None` when `s` is no integer or real literal (SQLite keeps it as text).
fn numeric_form(s: &str, affinity: Affinity) -> Option<SqlValue> {
    let t = s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'));
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
        integer = false;
    }
    if mantissa == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
        integer = false;
    }
    if i != b.len() {
        return None;
    }
    let real = |f: f64| {
        if affinity != Affinity::Real && f.fract() == 0.0 && f.abs() < 9.2e18 {
            SqlValue::Integer(f as i64)
        } else {
            SqlValue::Real(f)
        }
    };
    Some(match (integer, t.parse::<i64>()) {
        (true, Ok(n)) if affinity == Affinity::Real => SqlValue::Real(n as f64),
        (true, Ok(n)) => SqlValue::Integer(n),
        _ => real(t.parse::<f64>().ok()?),
    })
}

/// How a stored number reads back as text (what siphon's reader makes of it).
fn number_text(v: &SqlValue) -> Option<String> {
    match v {
        SqlValue::Integer(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(f.to_string()),
        _ => None,
    }
}

/// The form to bind `v` in, for a column of `affinity`, so that SQLite stores
/// what siphon reads back as `v`: `Ok(None)` to bind it as [`bind_value`] does,
/// `Ok(Some(form))` to bind `form` instead, and `Err(why)` when SQLite would
/// change it whatever the form (the text `007` in a `NUMERIC` column becomes 7; a
/// 30-digit decimal in a `NUMERIC(38,10)` column becomes a 15-digit real).
pub(crate) fn fit(v: &Value, affinity: Affinity) -> std::result::Result<Option<SqlValue>, String> {
    const EXACT_IN_F64: u64 = 1 << 53;
    match (affinity, v) {
        // SQLite would write the real with 15 digits: write every digit.
        (Affinity::Text, Value::Float32(f)) => Ok(Some(SqlValue::Text(
            v.special_text()
                .map_or_else(|| f.to_string(), str::to_string),
        ))),
        (Affinity::Text, Value::Float64(f)) => Ok(Some(SqlValue::Text(
            v.special_text()
                .map_or_else(|| f.to_string(), str::to_string),
        ))),
        (Affinity::Real, Value::Int64(i)) if i.unsigned_abs() > EXACT_IN_F64 => Err(format!(
            "the integer {i} would be stored as a float, which holds 53 bits"
        )),
        (a, Value::Decimal(d)) if converts_text(a) && d.is_finite() => {
            let n = d.normalized();
            let int = (!n.contains('.')).then(|| n.parse::<i64>().ok()).flatten();
            match int {
                Some(i) if a != Affinity::Real || i.unsigned_abs() <= EXACT_IN_F64 => {
                    Ok(Some(SqlValue::Integer(i)))
                }
                _ => {
                    let f: f64 = n.parse().map_err(|_| format!("{d} is not a number"))?;
                    match Decimal::from_f64(f) {
                        Some(back) if back.normalized() == n => Ok(Some(SqlValue::Real(f))),
                        _ => Err(format!(
                            "the decimal {d} would be stored as the float {f:e}, which keeps about 15 digits"
                        )),
                    }
                }
            }
        }
        (a, Value::Text(t) | Value::Json(t) | Value::Engine { text: t, .. })
            if converts_text(a) =>
        {
            match numeric_form(t, a) {
                None => Ok(None),
                Some(n) if number_text(&n).as_deref() == Some(t.as_str()) => Ok(Some(n)),
                Some(n) => Err(format!(
                    "the text '{}' would be stored as the number {}",
                    t.chars().take(64).collect::<String>(),
                    number_text(&n).unwrap_or_default()
                )),
            }
        }
        _ => Ok(None),
    }
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
        assert_eq!(decode(&K::Bool, ValueRef::Integer(2)), None);
        assert_eq!(decode(&K::Bool, ValueRef::Real(0.5)), None);
        assert_eq!(
            decode(&K::Bool, ValueRef::Integer(1)),
            Some(Value::Bool(true))
        );
        assert_eq!(decode(&K::Float64, ValueRef::Integer((1 << 53) + 1)), None);
        assert_eq!(
            decode(&K::Float64, ValueRef::Integer(-(1 << 53))),
            Some(Value::Float64(-9007199254740992.0))
        );
        assert_eq!(decode(&K::Date, ValueRef::Text(b"not a date")), None);
    }

    #[test]
    fn decimals_are_read_as_from_f64_and_with_min_scale_read_them() {
        let reference = |v: ValueRef<'_>, scale: Option<u32>| {
            let d = match v {
                ValueRef::Integer(i) => Decimal::from(i),
                ValueRef::Real(f) => Decimal::from_f64(f)?,
                ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok()?,
                _ => return None,
            };
            Some(Value::Decimal(match scale {
                Some(s) => d.with_min_scale(s),
                None => d,
            }))
        };
        let reals = [
            0.0,
            -0.0,
            0.1,
            12.3,
            -12.345,
            1e-7,
            123456789.5,
            1e21,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
        ];
        let ints = [0, 7, -7, i64::MIN, i64::MAX];
        let texts: [&[u8]; 9] = [
            b"12.3",
            b" 7 ",
            b"+5.5",
            b"-0.000",
            b".",
            b"1e5",
            b"12.345678",
            b"abc",
            b"",
        ];
        for scale in [None, Some(0), Some(2), Some(5)] {
            let kind = K::Decimal {
                precision: Some(38),
                scale,
            };
            let mut values: Vec<ValueRef<'_>> = vec![ValueRef::Null, ValueRef::Blob(b"1")];
            values.extend(reals.iter().map(|&f| ValueRef::Real(f)));
            values.extend(ints.iter().map(|&i| ValueRef::Integer(i)));
            values.extend(texts.iter().map(|&t| ValueRef::Text(t)));
            for v in values {
                let want = match v {
                    ValueRef::Null => Some(Value::Null),
                    v => reference(v, scale),
                };
                assert_eq!(decode(&kind, v), want, "{v:?} at scale {scale:?}");
            }
        }
    }

    #[test]
    fn values_bound_by_bind_value_are_stored_as_bind_stores_them() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let ts = NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap();
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int16(-3),
            Value::Int64(i64::MIN),
            Value::Float32(1.5),
            Value::Float64(-2.25),
            Value::Decimal("12.50".parse().unwrap()),
            Value::Text("naïve".into()),
            Value::Json(r#"{"a":1}"#.into()),
            Value::Bytes(vec![0, 1, 2]),
            Value::Bytes(vec![]),
            Value::Date(ts.date()),
            Value::Date(NaiveDate::from_ymd_opt(-44, 3, 15).unwrap()),
            Value::Time(ts.time()),
            Value::Timestamp(ts),
            Value::TimestampTz(ts.and_utc()),
            Value::Uuid(uuid::Uuid::from_u128(
                0xABCD_EF01_2345_6789_ABCD_EF01_2345_6789,
            )),
            Value::Engine {
                type_name: "interval".into(),
                text: "1 day".into(),
            },
            Value::Array(vec![Value::Int32(1), Value::Text("a".into())]),
        ];
        let last = Bind(values.last().unwrap());
        let array = last.to_sql().unwrap();
        assert!(
            matches!(array, ToSqlOutput::Owned(SqlValue::Text(ref t)) if t == r#"[1,"a"]"#),
            "{array:?}"
        );
        let mut scratch = String::from("left over");
        for decl in ["", "TEXT", "NUMERIC", "INTEGER", "REAL", "BLOB"] {
            conn.execute_batch(&format!(
                "DROP TABLE IF EXISTS t; CREATE TABLE t (a {decl}, b {decl})"
            ))
            .unwrap();
            for v in &values {
                let mut st = conn.prepare("INSERT INTO t VALUES (?1, ?2)").unwrap();
                st.raw_bind_parameter(1, Bind(v)).unwrap();
                bind_value(&mut st, 2, v, &mut scratch).unwrap();
                st.raw_execute().unwrap();
            }
            let differ: i64 = conn
                .query_row(
                    "SELECT count(*) FROM t WHERE a IS NOT b OR typeof(a) <> typeof(b)",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(differ, 0, "declared {decl:?}");
        }
    }

    /// Writes `v` into a fresh column declared `declared` as the sink does, and
    /// returns how SQLite stored it (`typeof`, `quote`) and what reads back.
    fn store(declared: &str, kind: &TypeKind, v: &Value) -> (String, String, Option<Value>) {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("CREATE TABLE t (c {declared})"))
            .unwrap();
        let mut st = conn.prepare("INSERT INTO t VALUES (?1)").unwrap();
        match fit(v, Affinity::of(declared)).unwrap() {
            Some(form) => st.raw_bind_parameter(1, form).unwrap(),
            None => bind_value(&mut st, 1, v, &mut String::new()).unwrap(),
        }
        st.raw_execute().unwrap();
        conn.query_row("SELECT typeof(c), quote(c), c FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?, decode(kind, r.get_ref(2)?)))
        })
        .unwrap()
    }

    #[test]
    fn special_values_are_stored_as_text_and_read_back() {
        let dec = K::Decimal {
            precision: Some(12),
            scale: Some(2),
        };
        let cases = [
            ("DOUBLE", K::Float64, Value::Float64(f64::NAN), "'NaN'"),
            (
                "DOUBLE",
                K::Float64,
                Value::Float64(f64::INFINITY),
                "9.0e+999",
            ),
            (
                "DOUBLE",
                K::Float64,
                Value::Float64(f64::NEG_INFINITY),
                "-9.0e+999",
            ),
            ("DOUBLE", K::Float64, Value::Float32(f32::NAN), "'NaN'"),
            (
                "DECIMAL_TEXT(12,2)",
                dec.clone(),
                Value::Decimal(Decimal::nan()),
                "'NaN'",
            ),
            (
                "DECIMAL_TEXT(12,2)",
                dec.clone(),
                Value::Decimal(Decimal::infinity(false)),
                "'Infinity'",
            ),
            (
                "NUMERIC(12,2)",
                dec.clone(),
                Value::Decimal(Decimal::infinity(true)),
                "'-Infinity'",
            ),
            ("DATE", K::Date, Value::Date(NaiveDate::MAX), "'infinity'"),
            ("DATE", K::Date, Value::Date(NaiveDate::MIN), "'-infinity'"),
            (
                "TIMESTAMP",
                K::Timestamp,
                Value::Timestamp(NaiveDateTime::MAX),
                "'infinity'",
            ),
            (
                "TIMESTAMP",
                K::Timestamp,
                Value::Timestamp(NaiveDateTime::MIN),
                "'-infinity'",
            ),
            (
                "TIMESTAMPTZ",
                K::TimestampTz,
                Value::TimestampTz(NaiveDateTime::MIN.and_utc()),
                "'-infinity'",
            ),
            (
                "TIME",
                K::Time,
                Value::Time(Value::END_OF_DAY),
                "'24:00:00'",
            ),
        ];
        for (declared, kind, v, quoted) in cases {
            let (_, stored, back) = store(declared, &kind, &v);
            assert_eq!(stored, quoted, "{v:?} in {declared}");
            let back = back.unwrap_or_else(|| panic!("{v:?} in {declared} unreadable"));
            match (&v, &back) {
                (Value::Float32(a), Value::Float64(b)) => assert!(a.is_nan() && b.is_nan()),
                (Value::Float64(a), Value::Float64(b)) if a.is_nan() => assert!(b.is_nan()),
                _ => assert_eq!(back, v, "{declared}"),
            }
        }
        // Text other tools write for them is read too.
        assert_eq!(
            decode(&K::Timestamp, ValueRef::Text(b"Infinity")),
            Some(Value::Timestamp(NaiveDateTime::MAX))
        );
        assert_eq!(
            decode(&dec, ValueRef::Text(b"-inf")),
            Some(Value::Decimal(Decimal::infinity(true)))
        );
        assert_eq!(
            decode(&dec, ValueRef::Real(f64::INFINITY)),
            Some(Value::Decimal(Decimal::infinity(false)))
        );
        assert_eq!(decode(&K::Date, ValueRef::Text(b"NaN")), None);
    }

    #[test]
    fn dates_past_chronos_years_are_carried_as_postgresqls_text() {
        for (kind, text) in [
            (K::Timestamp, "294276-12-31 23:59:59.999999"),
            (K::Date, "5874897-12-31"),
            (K::TimestampTz, "294276-12-31 23:59:59.999999+00"),
        ] {
            let Some(Value::Engine { text: got, .. }) =
                decode(&kind, ValueRef::Text(text.as_bytes()))
            else {
                panic!("{text} not carried");
            };
            assert_eq!(got, text);
        }
        for not_a_date in ["12345678-01-01", "294276", "294276/12/31", "x294276-12-31"] {
            assert_eq!(
                decode(&K::Date, ValueRef::Text(not_a_date.as_bytes())),
                None,
                "{not_a_date}"
            );
        }
        assert_eq!(decode(&K::Time, ValueRef::Text(b"294276-12-31")), None);
    }

    #[test]
    fn dates_outside_four_digit_years_read_back() {
        for (y, m, d) in [(-44, 3, 15), (10_000, 1, 1), (0, 2, 29), (262_000, 12, 31)] {
            let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let ts = day.and_hms_micro_opt(23, 59, 59, 999_999).unwrap();
            for (declared, kind, v) in [
                ("DATE", K::Date, Value::Date(day)),
                ("TIMESTAMP", K::Timestamp, Value::Timestamp(ts)),
                (
                    "TIMESTAMPTZ",
                    K::TimestampTz,
                    Value::TimestampTz(ts.and_utc()),
                ),
            ] {
                let (_, stored, back) = store(declared, &kind, &v);
                assert_eq!(back, Some(v.clone()), "{declared} stored as {stored}");
            }
        }
    }

    #[test]
    fn exact_decimals_keep_every_digit_in_text_columns() {
        let kind = K::Decimal {
            precision: Some(38),
            scale: Some(10),
        };
        for text in [
            "12345678901234567890.1234567891",
            "-1234567890123456789012345678.0000000001",
            "0.0000000000",
            "9999999999999999999999999999.9999999999",
        ] {
            let v = Value::Decimal(text.parse().unwrap());
            let (ty, stored, back) = store("DECIMAL_TEXT(38,10)", &kind, &v);
            assert_eq!((ty.as_str(), back), ("text", Some(v)), "{stored}");
        }
    }

    #[test]
    fn values_sqlite_would_change_are_refused_or_written_so_they_survive() {
        let dec = |s: &str| Value::Decimal(s.parse().unwrap());
        // A NUMERIC column keeps what a number holds exactly, as a number.
        assert_eq!(
            fit(&dec("12.50"), Affinity::Numeric),
            Ok(Some(SqlValue::Real(12.5)))
        );
        assert_eq!(
            fit(&dec("-42"), Affinity::Numeric),
            Ok(Some(SqlValue::Integer(-42)))
        );
        let err = fit(&dec("12345678901234567890.1234567891"), Affinity::Numeric).unwrap_err();
        assert!(err.contains("12345678901234567890.1234567891"), "{err}");
        assert!(fit(&dec("9007199254740993"), Affinity::Real).is_err());
        assert!(fit(&Value::Int64((1 << 53) + 1), Affinity::Real).is_err());
        assert_eq!(fit(&Value::Int64(1 << 53), Affinity::Real), Ok(None));
        // Text that SQLite would read as a number.
        assert!(fit(&Value::Text("007".into()), Affinity::Integer).is_err());
        assert!(fit(&Value::Json("1.0".into()), Affinity::Numeric).is_err());
        assert!(fit(&Value::Text(" 12".into()), Affinity::Numeric).is_err());
        assert_eq!(
            fit(&Value::Json("12".into()), Affinity::Numeric),
            Ok(Some(SqlValue::Integer(12)))
        );
        assert_eq!(fit(&Value::Text("12a".into()), Affinity::Integer), Ok(None));
        assert_eq!(fit(&Value::Text("007".into()), Affinity::Text), Ok(None));
        // A float into a TEXT column gets every digit, not SQLite's 15.
        assert_eq!(
            fit(&Value::Float64(0.1 + 0.2), Affinity::Text),
            Ok(Some(SqlValue::Text("0.30000000000000004".into())))
        );
        let (_, stored, _) = store(
            "TEXT",
            &K::Text { max_len: None },
            &Value::Float64(0.1 + 0.2),
        );
        assert_eq!(stored, "'0.30000000000000004'");
        // What `fit` says SQLite does is what SQLite does.
        for (declared, v) in [
            ("NUMERIC(12,2)", dec("12.50")),
            ("NUMERIC", dec("7")),
            ("REAL", dec("0.1")),
            ("INTEGER", Value::Text("12".into())),
            ("JSON", Value::Json("1.5".into())),
            ("JSON", Value::Json("{\"a\":1}".into())),
        ] {
            let kind = match &v {
                Value::Json(_) => K::Json,
                Value::Text(_) => K::Text { max_len: None },
                _ => K::Decimal {
                    precision: None,
                    scale: None,
                },
            };
            let (_, stored, back) = store(declared, &kind, &v);
            let same = match (&back, &v) {
                (Some(Value::Decimal(a)), Value::Decimal(b)) => a.normalized() == b.normalized(),
                (b, v) => b.as_ref() == Some(v),
            };
            assert!(
                same,
                "{v:?} in {declared} stored as {stored}, read as {back:?}"
            );
        }
    }

    #[test]
    fn negative_zero_is_stored_as_zero() {
        let (ty, _, back) = store("DOUBLE", &K::Float64, &Value::Float64(-0.0));
        assert_eq!(ty, "real");
        let Some(Value::Float64(f)) = back else {
            panic!("{back:?}")
        };
        assert_eq!(f, 0.0);
        assert!(
            f.is_sign_positive(),
            "SQLite kept the sign of -0.0: update the README"
        );
    }

    #[test]
    fn unreadable_values_are_described_in_words() {
        let msg = unreadable(&K::Timestamp, ValueRef::Text(b"+262142-12-31"));
        assert!(msg.contains("cannot be read as timestamp;"), "{msg}");
        assert!(!msg.contains("Timestamp"), "{msg}");
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
