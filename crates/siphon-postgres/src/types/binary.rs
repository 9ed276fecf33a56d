//! PostgreSQL's binary format: scalar values and numeric.

use super::*;

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
            match date_from_days(days) {
                Some(d) => Value::Date(d),
                None if date_in_range(i64::from(days)) => beyond_chrono(ty, date_text(days)),
                None => return Err(out_of_range(ty, days)),
            }
        }
        Wire::Time => {
            let micros = i64::from_be_bytes(arr(fixed(8)?));
            Value::Time(time_from_micros(ty, micros)?)
        }
        Wire::Timestamp => {
            let micros = i64::from_be_bytes(arr(fixed(8)?));
            match ts_from_micros(micros) {
                Some(t) => Value::Timestamp(t),
                None if timestamp_in_range(micros) => {
                    beyond_chrono(ty, timestamp_text(micros, false))
                }
                None => return Err(out_of_range(ty, micros)),
            }
        }
        Wire::TimestampTz => {
            let micros = i64::from_be_bytes(arr(fixed(8)?));
            match ts_from_micros(micros) {
                Some(t) => Value::TimestampTz(t.and_utc()),
                None if timestamp_in_range(micros) => {
                    beyond_chrono(ty, timestamp_text(micros, true))
                }
                None => return Err(out_of_range(ty, micros)),
            }
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
            Value::Engine { text, .. } => {
                let days = days_of_text(text).ok_or_else(|| text_error(ty, text, BAD_DATE))?;
                out.extend_from_slice(&days.to_be_bytes());
            }
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
                Value::Engine { text, .. } => {
                    let (micros, _) =
                        micros_of_text(text).ok_or_else(|| text_error(ty, text, BAD_TIMESTAMP))?;
                    out.extend_from_slice(&micros.to_be_bytes());
                    return Ok(());
                }
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
            Value::Engine { text, .. } => {
                let (micros, _) =
                    micros_of_text(text).ok_or_else(|| text_error(ty, text, BAD_TIMESTAMP))?;
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
            Value::Array(items) => encode_array(ty, items, &[], out)?,
            Value::Engine { text, .. } => encode_array_text(ty, text, out)?,
            _ => return Err(mismatch()),
        },
        Wire::TextOnly => return Err(no_binary(ty)),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// numeric
// ---------------------------------------------------------------------------

pub(super) const NUMERIC_POS: u16 = 0x0000;
pub(super) const NUMERIC_NEG: u16 = 0x4000;
pub(super) const NUMERIC_NAN: u16 = 0xC000;
pub(super) const NUMERIC_PINF: u16 = 0xD000;
pub(super) const NUMERIC_NINF: u16 = 0xF000;
pub(super) const NUMERIC_DSCALE_MASK: u16 = 0x3FFF;

/// numeric's binary form: ndigits, weight (of the first digit, in base-10000
/// places), sign, display scale, then base-10000 digits; printed exactly as
/// PostgreSQL prints it, `dscale` digits after the point.
pub(super) fn decode_numeric(ty: &PgType, raw: &[u8]) -> Result<Decimal, CodecError> {
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
pub(super) fn push_digits(s: &mut String, d: u16, from: usize, to: usize) {
    let ds = [d / 1000, d / 100 % 10, d / 10 % 10, d % 10];
    for x in &ds[from..to] {
        s.push(char::from(b'0' + *x as u8));
    }
}

pub(super) fn encode_numeric_value(
    ty: &PgType,
    v: &Value,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
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

pub(super) fn numeric_header(out: &mut Vec<u8>, ndigits: u16, weight: i16, sign: u16, dscale: u16) {
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
}

/// Plain decimal text (`-0012.3400`) as numeric's binary form, with the display
/// scale of the text so that `12.30` comes back as `12.30`.
pub(super) fn encode_numeric_text(
    ty: &PgType,
    s: &str,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
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

/// A date or timestamp past chrono's last year (PostgreSQL's reach further),
/// carried as its text form.
pub(super) fn beyond_chrono(ty: &PgType, text: String) -> Value {
    Value::Engine {
        type_name: ty.name.clone(),
        text,
    }
}

/// What a date's text must look like.
pub(super) const BAD_DATE: &str = "expected YYYY-MM-DD[ BC]";
/// What a timestamp's text must look like.
pub(super) const BAD_TIMESTAMP: &str = "expected YYYY-MM-DD HH:MM:SS[.ffffff][+TZ][ BC]";
