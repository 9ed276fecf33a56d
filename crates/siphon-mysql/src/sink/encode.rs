//! Values as MySQL takes them: SQL literals for multi-row statements, and
//! fields of `LOAD DATA` text (tab-separated, backslash-escaped, `\N` for NULL).
//!
//! Both forms rely on the sink's session: `utf8mb4`, `time_zone = '+00:00'`
//! and a `sql_mode` without `NO_BACKSLASH_ESCAPES` (see `sink::SESSION`).

use std::fmt::Write as _;

use siphon_core::Value;

/// Why a value cannot be written to MySQL; the caller names table and column.
pub(crate) type Refusal = String;

/// Appends `v` as a SQL literal. Numbers stay unquoted (a quoted number
/// written to a `bit` column would be stored as its characters), bytes are hex
/// literals, everything else a quoted, escaped string.
pub(crate) fn literal(v: &Value, out: &mut String) -> Result<(), Refusal> {
    match v {
        Value::Null => out.push_str("NULL"),
        Value::Bool(b) => out.push_str(if *b { "1" } else { "0" }),
        Value::Int16(i) => write_display(out, i),
        Value::Int32(i) => write_display(out, i),
        Value::Int64(i) => write_display(out, i),
        Value::Float32(f) => float(f64::from(*f), out)?,
        Value::Float64(f) => float(*f, out)?,
        Value::Decimal(d) => {
            let s = d.as_str();
            if !d.is_finite() {
                return Err(format!("MySQL has no numeric {s}"));
            }
            if plain_number(s) {
                out.push_str(s);
            } else {
                quoted(s, out);
            }
        }
        Value::Bytes(b) => {
            out.push_str("X'");
            hex(b, out);
            out.push('\'');
        }
        Value::Array(_) => quoted(&v.to_json().to_string(), out),
        // Digits and separators only: nothing to escape, no text in between.
        Value::Date(_) | Value::Timestamp(_) | Value::TimestampTz(_) => {
            out.push('\'');
            text_form(v, out)?;
            out.push('\'');
        }
        other => {
            let mut text = String::new();
            text_form(other, &mut text)?;
            quoted(&text, out);
        }
    }
    Ok(())
}

/// How a column's fields travel in `LOAD DATA` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldMode {
    /// Text, escaped: read straight into the column.
    Plain,
    /// Hex digits into a user variable, stored with `UNHEX(@v)`: any byte passes.
    Hex,
    /// A number into a user variable, stored with `CAST(@v AS UNSIGNED)`: a
    /// `bit` column would otherwise store the digits' characters.
    Bits,
}

/// Appends `v` as one `LOAD DATA` field in `mode` (no separator).
pub(crate) fn field(v: &Value, mode: FieldMode, out: &mut Vec<u8>) -> Result<(), Refusal> {
    match (v, mode) {
        (Value::Null, _) => out.extend_from_slice(b"\\N"),
        (Value::Bytes(b), FieldMode::Hex) => {
            out.reserve(b.len() * 2);
            for byte in b {
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 15) as usize]);
            }
        }
        (Value::Bytes(b), _) => escape_field(b, out),
        (Value::Bool(b), _) => out.push(if *b { b'1' } else { b'0' }),
        (Value::Int16(_) | Value::Int32(_) | Value::Int64(_) | Value::Float32(_), _)
        | (Value::Float64(_) | Value::Decimal(_), _) => {
            let mut s = String::new();
            literal(v, &mut s)?;
            out.extend_from_slice(s.trim_matches('\'').as_bytes());
        }
        (Value::Array(_), _) => escape_field(v.to_json().to_string().as_bytes(), out),
        (other, _) => {
            let mut text = String::new();
            text_form(other, &mut text)?;
            if mode == FieldMode::Hex {
                // A text value in a bytes column: its UTF-8 bytes.
                return field(&Value::Bytes(text.into_bytes()), mode, out);
            }
            escape_field(text.as_bytes(), out);
        }
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex(b: &[u8], out: &mut String) {
    out.reserve(b.len() * 2);
    for byte in b {
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 15) as usize] as char);
    }
}

fn write_display(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

/// A finite float in exponent form, which MySQL reads as a double exactly
/// (the shortest form that reads back as the same double).
fn float(f: f64, out: &mut String) -> Result<(), Refusal> {
    if !f.is_finite() {
        return Err(format!("MySQL has no floating-point {f}"));
    }
    let _ = write!(out, "{f:e}");
    Ok(())
}

/// `-123.45` and the like, which MySQL reads as an exact decimal literal.
fn plain_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// The text MySQL parses into the column for a value that is not a number
/// or bytes: dates and times in ISO form with microseconds (a timestamp with
/// a zone as its UTC time), UUIDs hyphenated, documents and engine values as
/// their text.
fn text_form(v: &Value, out: &mut String) -> Result<(), Refusal> {
    match v {
        Value::Text(s) | Value::Json(s) => out.push_str(s),
        Value::Engine { text, .. } => out.push_str(text),
        Value::Uuid(u) => write_display(out, u.hyphenated()),
        Value::Date(d) => {
            check_year(v, chrono::Datelike::year(d))?;
            push_date(out, d);
        }
        Value::Time(t) => {
            if *t == Value::END_OF_DAY {
                out.push_str("24:00:00");
            } else {
                write_display(out, t.format("%H:%M:%S%.6f"));
            }
        }
        Value::Timestamp(t) => {
            check_year(v, chrono::Datelike::year(t))?;
            push_timestamp(out, t);
        }
        Value::TimestampTz(t) => {
            check_year(v, chrono::Datelike::year(t))?;
            push_timestamp(out, &t.naive_utc());
        }
        other => write_display(out, other),
    }
    Ok(())
}

/// Appends `n` in decimal, zero-padded to `width` digits (`n` has at most that many).
fn push_digits(out: &mut String, mut n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(buf[..width].iter().map(|&b| b as char));
}

/// `YYYY-MM-DD` of a date whose year is 0 to 9999 (see [`check_year`]).
fn push_date(out: &mut String, d: &chrono::NaiveDate) {
    use chrono::Datelike;
    push_digits(out, d.year().clamp(0, 9999) as u32, 4);
    out.push('-');
    push_digits(out, d.month(), 2);
    out.push('-');
    push_digits(out, d.day(), 2);
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, as chrono's `%Y-%m-%d %H:%M:%S%.6f` writes
/// it, without parsing a format for each value; a leap second goes through
/// chrono.
fn push_timestamp(out: &mut String, t: &chrono::NaiveDateTime) {
    use chrono::Timelike;
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        write_display(out, t.format("%Y-%m-%d %H:%M:%S%.6f"));
        return;
    }
    push_date(out, &t.date());
    out.push(' ');
    push_digits(out, t.hour(), 2);
    out.push(':');
    push_digits(out, t.minute(), 2);
    out.push(':');
    push_digits(out, t.second(), 2);
    out.push('.');
    push_digits(out, nanos / 1000, 6);
}

/// MySQL's dates run from year 0 to 9999, with no infinity.
fn check_year(v: &Value, year: i32) -> Result<(), Refusal> {
    if let Some(special) = v.special_text() {
        return Err(format!("MySQL has no date or time `{special}`"));
    }
    if !(0..=9999).contains(&year) {
        return Err(format!("{v} is outside MySQL's dates (years 0 to 9999)"));
    }
    Ok(())
}

/// `'text'` escaped for the sink's session (backslash escapes on).
fn quoted(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// Bytes of one `LOAD DATA` field, escaped with `ESCAPED BY '\\'`: the
/// separators, the escape itself and NUL never appear raw.
fn escape_field(b: &[u8], out: &mut Vec<u8>) {
    out.reserve(b.len());
    for &byte in b {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_core::Decimal;

    fn lit(v: Value) -> String {
        let mut s = String::new();
        literal(&v, &mut s).unwrap();
        s
    }

    fn fld(v: Value, mode: FieldMode) -> Vec<u8> {
        let mut out = Vec::new();
        field(&v, mode, &mut out).unwrap();
        out
    }

    #[test]
    fn dates_and_times_are_written_as_chrono_formats_them() {
        use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
        let days = [
            (0, 1, 1),
            (33, 2, 28),
            (999, 12, 31),
            (2025, 6, 7),
            (9999, 12, 31),
        ];
        let times = [
            (0, 0, 0, 0),
            (23, 59, 59, 999_999_000),
            (7, 5, 9, 123_456_789),
            (12, 30, 0, 1_000),
            (23, 59, 59, 1_500_000_000),
        ];
        for (y, m, d) in days {
            let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(
                lit(Value::Date(day)),
                format!("'{}'", day.format("%Y-%m-%d"))
            );
            for (h, mi, s, n) in times {
                let t = NaiveDateTime::new(day, NaiveTime::from_hms_nano_opt(h, mi, s, n).unwrap());
                let want = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
                assert_eq!(lit(Value::Timestamp(t)), format!("'{want}'"));
                assert_eq!(lit(Value::TimestampTz(t.and_utc())), format!("'{want}'"));
                assert_eq!(fld(Value::Timestamp(t), FieldMode::Plain), want.as_bytes());
            }
        }
        assert_eq!(
            lit(Value::Timestamp(
                NaiveDate::from_ymd_opt(2025, 1, 2)
                    .unwrap()
                    .and_hms_micro_opt(3, 4, 5, 60)
                    .unwrap()
            )),
            "'2025-01-02 03:04:05.000060'"
        );
    }

    #[test]
    fn literals_quote_and_escape_what_they_must() {
        assert_eq!(lit(Value::Text("it's \\ \n".into())), r"'it\'s \\ \n'");
        assert_eq!(lit(Value::Bytes(vec![0, 255, 16])), "X'00ff10'");
        assert_eq!(lit(Value::Decimal("-12.50".parse().unwrap())), "-12.50");
        assert_eq!(lit(Value::Float64(0.1)), "1e-1");
        assert_eq!(lit(Value::Bool(true)), "1");
        assert_eq!(lit(Value::Null), "NULL");
        let mut s = String::new();
        assert!(literal(&Value::Float64(f64::NAN), &mut s).is_err());
        assert!(literal(&Value::Decimal(Decimal::nan()), &mut s).is_err());
    }

    #[test]
    fn fields_escape_separators_and_null() {
        assert_eq!(fld(Value::Null, FieldMode::Plain), b"\\N");
        assert_eq!(
            fld(Value::Text("a\tb\nc\\d\0".into()), FieldMode::Plain),
            b"a\\tb\\nc\\\\d\\0"
        );
        assert_eq!(fld(Value::Text("\\N".into()), FieldMode::Plain), b"\\\\N");
        assert_eq!(
            fld(Value::Bytes(vec![9, 10, 0xab]), FieldMode::Hex),
            b"090aab"
        );
        assert_eq!(fld(Value::Int64(-5), FieldMode::Bits), b"-5");
    }

    #[test]
    fn plain_numbers_are_told_from_others() {
        assert!(plain_number("12"));
        assert!(plain_number("-0.5"));
        assert!(!plain_number("1e5"));
        assert!(!plain_number("."));
        assert!(!plain_number("1."));
    }
}
