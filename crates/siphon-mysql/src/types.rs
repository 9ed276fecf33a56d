//! Values between MySQL's binary protocol ([`mysql_async::Value`], as prepared
//! statements return and take them) and siphon's [`siphon_core::Value`].
//!
//! What a column reads as follows its kind ([`siphon_core::typemap::parse_native`]):
//!
//! | MySQL / MariaDB | siphon value |
//! | --- | --- |
//! | `tinyint(1)`, `bit(1)` | `Bool` (a `tinyint(1)` holding anything but 0 or 1 is an error, never a guess) |
//! | `tinyint`, `smallint`, `year` | `Int16` |
//! | `smallint unsigned`, `mediumint` (signed or not), `int` | `Int32` |
//! | `int unsigned`, `bigint`, `bit(2)`–`bit(63)` | `Int64` |
//! | `bigint unsigned`, `bit(64)` | `Decimal` of scale 0 (up to 18446744073709551615) |
//! | `decimal(p,s)` | `Decimal`, every digit |
//! | `float`, `double` | `Float32`, `Float64` |
//! | `char`, `varchar`, `text`, `enum`, `set` | `Text` (the session is utf8mb4: the server converts latin1 and others) |
//! | `binary`, `varbinary`, `blob` | `Bytes` |
//! | `json` (MariaDB: `longtext` checked by `json_valid`) | `Json` |
//! | `date`, `datetime(n)` | `Date`, `Timestamp` (wall clock, never shifted) |
//! | `timestamp(n)` | `TimestampTz` (UTC: the session's `time_zone` is `+00:00`) |
//! | `time(n)` | `Engine { type_name: "time" }` with MySQL's text form, e.g. `-838:59:59.000000` |
//!
//! Zero dates (`0000-00-00`, a zero month or day) are NULL or an error by the
//! connection's `zero_dates` setting.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use mysql_async::Value as M;
use siphon_core::typemap::MYSQL_TIME;
use siphon_core::{Column, Decimal, Error, Result, TypeKind, Value};

use crate::conn::ZeroDates;

/// Why a value read from the server cannot be a siphon value; the caller names
/// the table and column.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// A zero date while the setting is `zero_dates=error`.
    ZeroDate(String),
    /// Anything else, said in a sentence.
    Bad(String),
}

impl DecodeError {
    /// The error for `column` of `table`, with what to do.
    pub(crate) fn into_error(self, table: &siphon_core::TableName, column: &Column) -> Error {
        match self {
            DecodeError::ZeroDate(text) => Error::bad_input(format!(
                "the {} column holds the zero date {text}, which no other engine can hold: add \
                 zero_dates=null to the connection URL to read zero dates as NULL, or update the \
                 rows to a real date or NULL",
                column.native_type
            )),
            DecodeError::Bad(msg) => Error::bad_input(msg),
        }
        .table(table)
        .column(&column.name)
    }
}

fn bad(column: &Column, what: impl std::fmt::Display) -> DecodeError {
    DecodeError::Bad(format!(
        "cannot read a {} column as {}: {what}",
        column.native_type,
        siphon_core::typemap::kind_name(&column.data_type.kind)
    ))
}

/// Whether the column is declared `bit(n)`, whose values arrive as big-endian bytes.
fn is_bit(column: &Column) -> bool {
    // No lowercased copy: this runs for every decimal and bytes value read.
    column
        .native_type
        .as_bytes()
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"bit"))
}

/// An integer from the wire: a signed or unsigned integer, a `bit(n)` value,
/// or (for a decimal of scale 0) its digits.
fn integer(column: &Column, raw: &M) -> std::result::Result<i128, DecodeError> {
    match raw {
        M::Int(i) => Ok(i128::from(*i)),
        M::UInt(u) => Ok(i128::from(*u)),
        M::Bytes(b) if is_bit(column) => {
            if b.len() > 8 {
                return Err(bad(column, format!("{} bytes for a bit value", b.len())));
            }
            Ok(b.iter()
                .fold(0i128, |acc, byte| (acc << 8) | i128::from(*byte)))
        }
        M::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                bad(
                    column,
                    format!("{:?} is not an integer", String::from_utf8_lossy(b)),
                )
            }),
        other => Err(bad(column, format!("unexpected {other:?}"))),
    }
}

fn text(column: &Column, raw: M) -> std::result::Result<String, DecodeError> {
    match raw {
        M::Bytes(b) => String::from_utf8(b).map_err(|e| {
            bad(
                column,
                format!("the server sent bytes that are not UTF-8 ({e}); is the column's character set binary?"),
            )
        }),
        M::Int(i) => Ok(i.to_string()),
        M::UInt(u) => Ok(u.to_string()),
        M::Float(f) => Ok(f.to_string()),
        M::Double(f) => Ok(f.to_string()),
        other => Err(bad(column, format!("unexpected {other:?}"))),
    }
}

/// An integer as a decimal of scale 0.
fn whole(v: i128) -> Decimal {
    // Digits with an optional sign always parse.
    v.to_string()
        .parse()
        .unwrap_or_else(|_| Decimal::from(0i64))
}

/// A decimal the server sent as its digits (`-12.50`), kept in the driver's
/// buffer (no copy). A `zerofill` column's leading zeros (`00001.500`) are
/// dropped, as the binlog's digits have none.
fn decimal_digits(column: &Column, bytes: Vec<u8>) -> std::result::Result<Decimal, DecodeError> {
    let mut s = String::from_utf8(bytes).map_err(|e| bad(column, e))?;
    if s.len() > 1 && s.starts_with('0') && !s.starts_with("0.") {
        let digits = s.trim_start_matches('0');
        s = if digits.is_empty() || digits.starts_with('.') {
            format!("0{digits}")
        } else {
            digits.to_string()
        };
    }
    Decimal::try_from(s).map_err(|e| bad(column, e))
}

/// The date part of a wire date, or the zero date's text.
fn date_of(y: u16, m: u8, d: u8) -> std::result::Result<NaiveDate, Option<String>> {
    if y == 0 || m == 0 || d == 0 {
        return Err(Some(format!("{y:04}-{m:02}-{d:02}")));
    }
    NaiveDate::from_ymd_opt(i32::from(y), u32::from(m), u32::from(d)).ok_or(None)
}

/// A wire date and time; `Ok(None)` for a zero date read as NULL.
fn datetime(
    column: &Column,
    raw: &M,
    zero: ZeroDates,
) -> std::result::Result<Option<NaiveDateTime>, DecodeError> {
    let M::Date(y, mo, d, h, mi, s, us) = *raw else {
        return Err(bad(column, format!("unexpected {raw:?}")));
    };
    let date = match date_of(y, mo, d) {
        Ok(date) => date,
        Err(Some(zero_text)) => {
            return match zero {
                ZeroDates::Null => Ok(None),
                ZeroDates::Error => Err(DecodeError::ZeroDate(format!(
                    "{zero_text} {h:02}:{mi:02}:{s:02}"
                ))),
            }
        }
        Err(None) => return Err(bad(column, format!("{y}-{mo}-{d} is no date"))),
    };
    let time = NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(mi), u32::from(s), us)
        .ok_or_else(|| bad(column, format!("{h}:{mi}:{s}.{us} is no time of day")))?;
    Ok(Some(date.and_time(time)))
}

/// MySQL's text form of a `time` value: `[-]HH:MM:SS`, hours up to 838, and
/// `.ffffff` when there are microseconds.
pub fn time_text(negative: bool, hours: u32, minutes: u8, seconds: u8, micros: u32) -> String {
    let zero = hours == 0 && minutes == 0 && seconds == 0 && micros == 0;
    let sign = if negative && !zero { "-" } else { "" };
    let mut s = format!("{sign}{hours:02}:{minutes:02}:{seconds:02}");
    if micros != 0 {
        s.push_str(&format!(".{micros:06}"));
    }
    s
}

/// Parses [`time_text`] (and `[-]H:MM[:SS[.f]]` as MySQL writes it) into its
/// sign, hours, minutes, seconds and microseconds.
pub fn parse_time_text(text: &str) -> Option<(bool, u32, u8, u8, u32)> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let mut parts = whole.split(':');
    let hours: u32 = parts.next()?.parse().ok()?;
    let minutes: u8 = parts.next()?.parse().ok()?;
    let seconds: u8 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || minutes > 59 || seconds > 59 || frac.len() > 6 {
        return None;
    }
    let micros = if frac.is_empty() {
        0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{frac:0<6}").parse().ok()?
    };
    Some((negative, hours, minutes, seconds, micros))
}

/// The siphon value of one column's wire value, by the column's kind.
pub(crate) fn decode(
    column: &Column,
    raw: M,
    zero: ZeroDates,
) -> std::result::Result<Value, DecodeError> {
    use TypeKind as K;
    if raw == M::NULL {
        return Ok(Value::Null);
    }
    let range = |v: i128| bad(column, format!("{v} is out of range"));
    Ok(match &column.data_type.kind {
        K::Bool => match integer(column, &raw)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            v => {
                return Err(DecodeError::Bad(format!(
                    "the {} column holds {v}, which is not a boolean: declare the column \
                     `tinyint` instead of `tinyint(1)` to copy it as a number",
                    column.native_type
                )))
            }
        },
        K::Int16 => {
            let v = integer(column, &raw)?;
            Value::Int16(i16::try_from(v).map_err(|_| range(v))?)
        }
        K::Int32 => {
            let v = integer(column, &raw)?;
            Value::Int32(i32::try_from(v).map_err(|_| range(v))?)
        }
        K::Int64 => {
            let v = integer(column, &raw)?;
            Value::Int64(i64::try_from(v).map_err(|_| range(v))?)
        }
        K::Decimal { .. } => match raw {
            M::Int(_) | M::UInt(_) => Value::Decimal(whole(integer(column, &raw)?)),
            M::Bytes(_) if is_bit(column) => Value::Decimal(whole(integer(column, &raw)?)),
            M::Bytes(b) => Value::Decimal(decimal_digits(column, b)?),
            M::Double(f) => Value::Decimal(
                Decimal::from_f64(f).ok_or_else(|| bad(column, format!("{f} is no decimal")))?,
            ),
            other => return Err(bad(column, format!("unexpected {other:?}"))),
        },
        K::Float32 => match raw {
            M::Float(f) => Value::Float32(f),
            M::Double(f) => Value::Float32(f as f32),
            other => return Err(bad(column, format!("unexpected {other:?}"))),
        },
        K::Float64 => match raw {
            M::Double(f) => Value::Float64(f),
            M::Float(f) => Value::Float64(f64::from(f)),
            other => return Err(bad(column, format!("unexpected {other:?}"))),
        },
        K::Text { .. } | K::FixedText { .. } | K::Enum { .. } => Value::Text(text(column, raw)?),
        K::Json => Value::Json(text(column, raw)?),
        K::Bytes { .. } => match raw {
            M::Bytes(b) => Value::Bytes(b),
            other => return Err(bad(column, format!("unexpected {other:?}"))),
        },
        K::Uuid => {
            let s = text(column, raw)?;
            Value::Uuid(s.parse().map_err(|e| bad(column, e))?)
        }
        K::Date => match datetime(column, &raw, zero)? {
            Some(t) => Value::Date(t.date()),
            None => Value::Null,
        },
        K::Timestamp => match datetime(column, &raw, zero)? {
            Some(t) => Value::Timestamp(t),
            None => Value::Null,
        },
        K::TimestampTz => match datetime(column, &raw, zero)? {
            Some(t) => Value::TimestampTz(t.and_utc()),
            None => Value::Null,
        },
        K::Engine { name } if name == MYSQL_TIME => match raw {
            M::Time(negative, days, h, m, s, us) => Value::Engine {
                type_name: MYSQL_TIME.to_string(),
                text: time_text(negative, days * 24 + u32::from(h), m, s, us),
            },
            other => return Err(bad(column, format!("unexpected {other:?}"))),
        },
        K::Time => match raw {
            M::Time(false, 0, h, m, s, us) => Value::Time(
                NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(m), u32::from(s), us)
                    .ok_or_else(|| bad(column, "no time of day"))?,
            ),
            other => return Err(bad(column, format!("{other:?} is no time of day"))),
        },
        K::Engine { name } => Value::Engine {
            type_name: name.clone(),
            text: text(column, raw)?,
        },
        K::Array { .. } => Value::Json(text(column, raw)?),
    })
}

/// Decodes one row in column order; errors name the table and column.
pub(crate) fn decode_row(
    table: &siphon_core::TableSchema,
    row: mysql_async::Row,
    zero: ZeroDates,
) -> Result<Vec<Value>> {
    let mut row = row;
    if row.len() != table.columns.len() {
        return Err(Error::internal(format!(
            "a row of {} values for {} columns",
            row.len(),
            table.columns.len()
        ))
        .table(&table.name));
    }
    // Each value is taken out of the driver's row in place (no list of them
    // is built first) and decoded straight into the row's own list.
    let mut out = Vec::with_capacity(table.columns.len());
    for (i, c) in table.columns.iter().enumerate() {
        let raw = row.take::<M, usize>(i).ok_or_else(|| {
            Error::internal(format!("the value of column {i} was taken from the row"))
                .table(&table.name)
                .column(&c.name)
        })?;
        out.push(decode(c, raw, zero).map_err(|e| e.into_error(&table.name, c))?);
    }
    Ok(out)
}

/// A siphon value as a statement parameter, for any column it can be
/// written to (the caller names the table and column in an error):
///
/// - decimals with no fraction that fit 64 bits go as integers (so a
///   `bigint unsigned` or `bit(64)` column takes them exactly), others as
///   their digits;
/// - `Timestamp` and `TimestampTz` go as a date and time (a `TimestampTz` in
///   UTC, which the session's `time_zone` is), `Time` as a time (`24:00:00`
///   included), MySQL `time` text as that text;
/// - text, JSON, UUIDs and engine text go as strings, bytes as bytes, arrays
///   as JSON text;
/// - NaN and infinities, and dates outside years 0–9999, are refused: MySQL
///   holds none of them.
///
/// The MySQL sink writes its parameters with it too.
pub(crate) fn encode(value: &Value) -> Result<M> {
    let refusal = |why: &str| Error::bad_input(format!("{value:?}: {why}"));
    let refuse = |why: &str| Err(refusal(why));
    Ok(match value {
        Value::Null => M::NULL,
        Value::Bool(b) => M::Int(i64::from(*b)),
        Value::Int16(i) => M::Int(i64::from(*i)),
        Value::Int32(i) => M::Int(i64::from(*i)),
        Value::Int64(i) => M::Int(*i),
        Value::Float32(f) if f.is_finite() => M::Float(*f),
        Value::Float64(f) if f.is_finite() => M::Double(*f),
        Value::Float32(_) | Value::Float64(_) => {
            return refuse("MySQL holds no NaN or infinity in a float column")
        }
        Value::Decimal(d) if !d.is_finite() => {
            return refuse("MySQL holds no NaN or infinity in a decimal column")
        }
        Value::Decimal(d) => {
            let s = d.as_str();
            if let Ok(i) = s.parse::<i64>() {
                M::Int(i)
            } else if let Ok(u) = s.parse::<u64>() {
                M::UInt(u)
            } else {
                M::Bytes(s.as_bytes().to_vec())
            }
        }
        Value::Text(s) | Value::Json(s) => M::Bytes(s.as_bytes().to_vec()),
        Value::Engine { text, .. } => M::Bytes(text.as_bytes().to_vec()),
        Value::Bytes(b) => M::Bytes(b.clone()),
        Value::Uuid(u) => M::Bytes(u.hyphenated().to_string().into_bytes()),
        Value::Date(d) => {
            let (y, m, day) = ymd(*d).ok_or_else(|| refusal(YEARS))?;
            M::Date(y, m, day, 0, 0, 0, 0)
        }
        Value::Timestamp(t) => wire_datetime(*t).ok_or_else(|| refusal(YEARS))?,
        Value::TimestampTz(t) => wire_datetime(t.naive_utc()).ok_or_else(|| refusal(YEARS))?,
        Value::Time(t) if *t == Value::END_OF_DAY => M::Time(false, 1, 0, 0, 0, 0),
        Value::Time(t) => M::Time(
            false,
            0,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.nanosecond() / 1000,
        ),
        Value::Array(_) => M::Bytes(value.to_json().to_string().into_bytes()),
    })
}

const YEARS: &str = "MySQL dates run from year 0 to 9999";

fn ymd(d: NaiveDate) -> Option<(u16, u8, u8)> {
    let y = u16::try_from(d.year()).ok().filter(|y| *y <= 9999)?;
    Some((y, d.month() as u8, d.day() as u8))
}

fn wire_datetime(t: NaiveDateTime) -> Option<M> {
    let (y, m, d) = ymd(t.date())?;
    // A leap second (chrono's 60th second) has no MySQL form: the last microsecond.
    let micros = (t.nanosecond() / 1000).min(999_999);
    Some(M::Date(
        y,
        m,
        d,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        micros,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_core::DataType;

    fn col(native: &str) -> Column {
        Column {
            name: "c".into(),
            data_type: DataType::new(
                siphon_core::typemap::parse_native(siphon_core::typemap::Engine::Mysql, native),
                true,
            ),
            native_type: native.into(),
            generated: false,
            source_id: None,
        }
    }

    fn read(native: &str, raw: M) -> Value {
        decode(&col(native), raw, ZeroDates::Error).unwrap()
    }

    #[test]
    fn integers_keep_every_value() {
        assert_eq!(
            read("bigint(20) unsigned", M::UInt(u64::MAX)),
            Value::Decimal("18446744073709551615".parse().unwrap())
        );
        assert_eq!(
            read("int(10) unsigned", M::UInt(4294967295)),
            Value::Int64(4294967295)
        );
        assert_eq!(read("tinyint(1)", M::Int(1)), Value::Bool(true));
        assert!(decode(&col("tinyint(1)"), M::Int(2), ZeroDates::Error).is_err());
        assert_eq!(read("bit(1)", M::Bytes(vec![1])), Value::Bool(true));
        assert_eq!(
            read("bit(64)", M::Bytes(vec![0xff; 8])),
            Value::Decimal("18446744073709551615".parse().unwrap())
        );
        assert_eq!(read("bit(10)", M::Bytes(vec![3, 0xff])), Value::Int64(1023));
        assert_eq!(read("year(4)", M::Int(2155)), Value::Int16(2155));
    }

    #[test]
    fn times_beyond_a_day_keep_their_text() {
        let v = read("time(6)", M::Time(true, 34, 22, 59, 59, 0));
        assert_eq!(
            v,
            Value::Engine {
                type_name: "time".into(),
                text: "-838:59:59".into()
            }
        );
        assert_eq!(
            read("time(3)", M::Time(false, 0, 1, 2, 3, 500_000)),
            Value::Engine {
                type_name: "time".into(),
                text: "01:02:03.500000".into()
            }
        );
        assert_eq!(
            parse_time_text("-838:59:59.5"),
            Some((true, 838, 59, 59, 500_000))
        );
        assert_eq!(parse_time_text("12:61:00"), None);
    }

    #[test]
    fn zero_dates_follow_the_setting() {
        let zero = M::Date(0, 0, 0, 0, 0, 0, 0);
        assert_eq!(
            decode(&col("datetime"), zero.clone(), ZeroDates::Null).unwrap(),
            Value::Null
        );
        let e = decode(&col("date"), zero, ZeroDates::Error)
            .unwrap_err()
            .into_error(&siphon_core::TableName::new(Some("d"), "t"), &col("date"));
        assert!(e.to_string().contains("zero_dates=null"), "{e}");
        assert_eq!(e.column_name(), Some("c"));
    }

    #[test]
    fn parameters_are_exact() {
        let d = |s: &str| Value::Decimal(s.parse().unwrap());
        assert_eq!(
            encode(&d("18446744073709551615")).unwrap(),
            M::UInt(u64::MAX)
        );
        assert_eq!(encode(&d("-5")).unwrap(), M::Int(-5));
        assert_eq!(encode(&d("1.50")).unwrap(), M::Bytes(b"1.50".to_vec()));
        assert!(encode(&Value::Float64(f64::NAN)).is_err());
        assert_eq!(
            encode(&Value::Time(Value::END_OF_DAY)).unwrap(),
            M::Time(false, 1, 0, 0, 0, 0)
        );
    }

    #[test]
    fn zerofill_decimals_lose_their_leading_zeros() {
        let c = col("decimal(8,3) unsigned zerofill");
        let d = |s: &str| {
            decimal_digits(&c, s.as_bytes().to_vec())
                .map(|d| d.to_string())
                .unwrap_or_default()
        };
        assert_eq!(d("00001.500"), "1.500");
        assert_eq!(d("00000.250"), "0.250");
        assert_eq!(d("00000000"), "0");
        assert_eq!(d("0"), "0");
        assert_eq!(d("0.5"), "0.5");
        assert_eq!(d("12.50"), "12.50");
        assert_eq!(d("-12.50"), "-12.50");
    }
}
