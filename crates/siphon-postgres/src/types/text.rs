//! PostgreSQL's text output format.

use super::*;

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
        Wire::Date => match parse_date_text(text) {
            Some(d) => Value::Date(d),
            None => {
                let days = days_of_text(text).ok_or_else(|| err(BAD_DATE))?;
                beyond_chrono(ty, date_text(days))
            }
        },
        Wire::Time => Value::Time(parse_time_text(ty, text)?),
        Wire::Timestamp => match parse_ts_text(text) {
            Some((t, false)) => Value::Timestamp(t),
            Some((t, true)) if t == NaiveDateTime::MAX || t == NaiveDateTime::MIN => {
                Value::Timestamp(t)
            }
            _ => match micros_of_text(text) {
                Some((micros, false)) => beyond_chrono(ty, timestamp_text(micros, false)),
                _ => return Err(err(BAD_TIMESTAMP)),
            },
        },
        Wire::TimestampTz => match parse_ts_text(text) {
            Some((t, true)) => Value::TimestampTz(t.and_utc()),
            _ => match micros_of_text(text) {
                Some((micros, true)) => beyond_chrono(ty, timestamp_text(micros, true)),
                _ => return Err(err(BAD_TIMESTAMP)),
            },
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

pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_float<F: FromStr>(s: &str) -> Option<F> {
    // Rust reads `NaN`, `Infinity` and `-Infinity` (case-insensitively) as well.
    s.trim().parse().ok()
}

/// bytea in `hex` output (`\x00ff`) or in `escape` output (`a\000\\`).
pub(super) fn parse_bytea(s: &str) -> Option<Vec<u8>> {
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

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex digits, two a byte (bytea's hex form
/// without its `\x`).
pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(2 * bytes.len());
    for &byte in bytes {
        out.push(HEX_DIGITS[usize::from(byte >> 4)]);
        out.push(HEX_DIGITS[usize::from(byte & 15)]);
    }
}

pub(super) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `v` in the text form PostgreSQL reads back as the same datum of
/// type `ty` (what `ty`'s input function takes): the inverse of
/// [`decode_text`]. Values past chrono's range, arrays with bounds and every
/// type without a codec are carried as that text already ([`Value::Engine`]).
/// NULL has no text form: COPY and the protocol mark it apart.
pub fn encode_text(ty: &PgType, v: &Value, out: &mut String) -> Result<(), CodecError> {
    if let Some(special) = v.special_text() {
        out.push_str(special);
        return Ok(());
    }
    match v {
        Value::Null => {
            return Err(CodecError::Null {
                ty: ty.name.clone(),
            })
        }
        Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Value::Int16(_)
        | Value::Int32(_)
        | Value::Int64(_)
        | Value::Float32(_)
        | Value::Float64(_) => {
            let _ = write!(out, "{v}");
        }
        Value::Decimal(d) => out.push_str(d.as_str()),
        Value::Text(s) | Value::Json(s) | Value::Engine { text: s, .. } => {
            if s.contains('\0') {
                return Err(CodecError::OutOfRange {
                    ty: ty.name.clone(),
                    value: format!("{} (contains a NUL character)", excerpt(s)),
                });
            }
            out.push_str(s);
        }
        Value::Bytes(b) => {
            out.reserve(2 + b.len() * 2);
            out.push_str("\\x");
            for &byte in b {
                out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
                out.push(char::from(HEX_DIGITS[usize::from(byte & 15)]));
            }
        }
        Value::Date(d) => push_date(out, *d),
        Value::Time(t) => push_time(out, *t),
        Value::Timestamp(t) => {
            let bc = push_date_part(out, t.date());
            out.push(' ');
            push_time(out, t.time());
            if bc {
                out.push_str(" BC");
            }
        }
        Value::TimestampTz(t) => {
            let t = t.naive_utc();
            let bc = push_date_part(out, t.date());
            out.push(' ');
            push_time(out, t.time());
            out.push_str("+00");
            if bc {
                out.push_str(" BC");
            }
        }
        Value::Uuid(u) => {
            let _ = write!(out, "{}", u.hyphenated());
        }
        Value::Array(items) => match ty.element.as_deref() {
            Some(elem) => push_literal(elem, items, out)?,
            None => {
                return Err(CodecError::Mismatch {
                    ty: ty.name.clone(),
                    kind: v.kind_name(),
                })
            }
        },
    }
    Ok(())
}

/// `YYYY-MM-DD`, the year as PostgreSQL counts it; true when it is BC.
fn push_date_part(out: &mut String, d: NaiveDate) -> bool {
    let y = d.year();
    let bc = y <= 0;
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}",
        if bc { 1 - y } else { y },
        d.month(),
        d.day()
    );
    bc
}

fn push_date(out: &mut String, d: NaiveDate) {
    if push_date_part(out, d) {
        out.push_str(" BC");
    }
}

/// `HH:MM:SS[.fffffffff]`: PostgreSQL rounds digits past the sixth itself.
fn push_time(out: &mut String, t: NaiveTime) {
    let _ = write!(out, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    let nanos = t.nanosecond();
    if nanos > 0 {
        let mut digits = format!("{nanos:09}");
        while digits.ends_with('0') {
            digits.pop();
        }
        out.push('.');
        out.push_str(&digits);
    }
}
