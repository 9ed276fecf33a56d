//! Typed values as they travel between engines.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One column value. Exact decimals stay decimal text; nothing numeric passes through
/// `f64` unless it was a float at the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Decimal(Decimal),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Uuid(Uuid),
    /// JSON document text, kept as the source wrote it.
    Json(String),
    /// A value of an engine-specific type (an interval, a geometry, …), carried
    /// losslessly as the engine's own text form.
    Engine {
        type_name: String,
        text: String,
    },
    /// An array; a multi-dimensional array is an array of arrays.
    Array(Vec<Value>),
}

impl Value {
    /// PostgreSQL's `time '24:00:00'`, the end of a day. chrono has no time after
    /// 23:59:59.999999999 but a leap second, so siphon holds it as 23:59:59 plus
    /// one whole second, which no engine siphon reads produces otherwise.
    pub const END_OF_DAY: NaiveTime = match NaiveTime::from_hms_nano_opt(23, 59, 59, 1_000_000_000)
    {
        Some(t) => t,
        None => panic!("a leap second is a valid NaiveTime"),
    };

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The bytes this value counts for in a run's `bytes` statistic
    /// ([`crate::TableStats::bytes`]), without encoding it: the length in bytes
    /// of text, binary data, decimal text, JSON and an engine's own text form;
    /// the width of fixed-size kinds (NULL 0, bool 1, int16 2, int32 and
    /// float32 4, int64, float64, date, time, timestamp and timestamptz 8,
    /// uuid 16); the sum of an array's elements.
    pub fn size(&self) -> u64 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int16(_) => 2,
            Value::Int32(_) | Value::Float32(_) => 4,
            Value::Int64(_)
            | Value::Float64(_)
            | Value::Date(_)
            | Value::Time(_)
            | Value::Timestamp(_)
            | Value::TimestampTz(_) => 8,
            Value::Uuid(_) => 16,
            Value::Decimal(d) => d.as_str().len() as u64,
            Value::Text(s) | Value::Json(s) => s.len() as u64,
            Value::Bytes(b) => b.len() as u64,
            Value::Engine { text, .. } => text.len() as u64,
            Value::Array(items) => Value::row_size(items),
        }
    }

    /// The sum of [`Value::size`] over a row's values.
    pub fn row_size(row: &[Value]) -> u64 {
        row.iter().map(Value::size).sum()
    }

    /// Orders two values of one column's kind, as a watermark comparison
    /// needs: NULL first, numbers by value (decimals of any length exactly),
    /// dates and times in time order, text and bytes by their bytes (a tie
    /// break only: a server's collation is not known here), floats by
    /// `total_cmp`. `None` for values of different kinds, or of a kind without
    /// an order known here (JSON, arrays, an engine's own types).
    pub fn cmp_same_kind(&self, other: &Value) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        use Value as V;
        Some(match (self, other) {
            (V::Null, V::Null) => Ordering::Equal,
            (V::Null, _) => Ordering::Less,
            (_, V::Null) => Ordering::Greater,
            (V::Int16(x), V::Int16(y)) => x.cmp(y),
            (V::Int32(x), V::Int32(y)) => x.cmp(y),
            (V::Int64(x), V::Int64(y)) => x.cmp(y),
            (V::Decimal(x), V::Decimal(y)) => decimal_cmp(&x.normalized(), &y.normalized()),
            (V::Date(x), V::Date(y)) => x.cmp(y),
            (V::Timestamp(x), V::Timestamp(y)) => x.cmp(y),
            (V::TimestampTz(x), V::TimestampTz(y)) => x.cmp(y),
            (V::Text(x), V::Text(y)) => x.cmp(y),
            (V::Bytes(x), V::Bytes(y)) => x.cmp(y),
            (V::Uuid(x), V::Uuid(y)) => x.cmp(y),
            (V::Float64(x), V::Float64(y)) => x.total_cmp(y),
            (V::Float32(x), V::Float32(y)) => x.total_cmp(y),
            (V::Bool(x), V::Bool(y)) => x.cmp(y),
            _ => return None,
        })
    }

    /// The text an engine without the value itself stores for one of the special
    /// values siphon carries, `None` for every other value:
    ///
    /// | value | text |
    /// | --- | --- |
    /// | float or numeric NaN | `NaN` |
    /// | float or numeric ±infinity | `Infinity`, `-Infinity` |
    /// | date, timestamp, timestamptz `±infinity` (chrono's `MAX` and `MIN`) | `infinity`, `-infinity` |
    /// | time `24:00:00` ([`Value::END_OF_DAY`]) | `24:00:00` |
    ///
    /// These are PostgreSQL's own spellings; [`Value::from_special_text`] reads them
    /// back.
    pub fn special_text(&self) -> Option<&'static str> {
        fn float(f: f64) -> Option<&'static str> {
            if f.is_nan() {
                Some(NAN)
            } else if f.is_infinite() {
                Some(if f > 0.0 { INFINITY } else { NEG_INFINITY })
            } else {
                None
            }
        }
        fn ends<T: PartialEq>(v: &T, max: &T, min: &T) -> Option<&'static str> {
            if v == max {
                Some("infinity")
            } else if v == min {
                Some("-infinity")
            } else {
                None
            }
        }
        match self {
            Value::Float32(f) => float(f64::from(*f)),
            Value::Float64(f) => float(*f),
            Value::Decimal(d) => match d.as_str() {
                NAN => Some(NAN),
                INFINITY => Some(INFINITY),
                NEG_INFINITY => Some(NEG_INFINITY),
                _ => None,
            },
            Value::Date(d) => ends(d, &NaiveDate::MAX, &NaiveDate::MIN),
            Value::Timestamp(t) => ends(t, &NaiveDateTime::MAX, &NaiveDateTime::MIN),
            Value::TimestampTz(t) => ends(&t.naive_utc(), &NaiveDateTime::MAX, &NaiveDateTime::MIN),
            Value::Time(t) if *t == Value::END_OF_DAY => Some("24:00:00"),
            _ => None,
        }
    }

    /// The special value of a column of `kind` that `text` spells (see
    /// [`Value::special_text`]; case does not matter, and `inf` is read as
    /// `Infinity`), or `None` when `text` is no special value of that kind.
    pub fn from_special_text(kind: &crate::TypeKind, text: &str) -> Option<Value> {
        use crate::TypeKind as K;
        let t = text.trim();
        if t.len() > 9 {
            return None;
        }
        let lower = t.to_ascii_lowercase();
        let sign = match lower.as_str() {
            "infinity" | "+infinity" | "inf" | "+inf" => Some(false),
            "-infinity" | "-inf" => Some(true),
            _ => None,
        };
        let nan = lower == "nan";
        Some(match kind {
            K::Float32 if nan => Value::Float32(f32::NAN),
            K::Float32 => Value::Float32(match sign? {
                false => f32::INFINITY,
                true => f32::NEG_INFINITY,
            }),
            K::Float64 if nan => Value::Float64(f64::NAN),
            K::Float64 => Value::Float64(match sign? {
                false => f64::INFINITY,
                true => f64::NEG_INFINITY,
            }),
            K::Decimal { .. } if nan => Value::Decimal(Decimal::nan()),
            K::Decimal { .. } => Value::Decimal(Decimal::infinity(sign?)),
            K::Date => Value::Date(if sign? {
                NaiveDate::MIN
            } else {
                NaiveDate::MAX
            }),
            K::Timestamp => Value::Timestamp(if sign? {
                NaiveDateTime::MIN
            } else {
                NaiveDateTime::MAX
            }),
            K::TimestampTz => Value::TimestampTz(
                if sign? {
                    NaiveDateTime::MIN
                } else {
                    NaiveDateTime::MAX
                }
                .and_utc(),
            ),
            K::Time if matches!(t, "24:00:00" | "24:00") => Value::Time(Value::END_OF_DAY),
            _ => return None,
        })
    }

    /// A short name of the variant, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int16(_) => "int16",
            Value::Int32(_) => "int32",
            Value::Int64(_) => "int64",
            Value::Float32(_) => "float32",
            Value::Float64(_) => "float64",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
            Value::Engine { .. } => "engine",
            Value::Array(_) => "array",
        }
    }

    /// The value as JSON, for targets and event formats that hold arrays or
    /// documents: exact decimals become strings, bytes `\x`-prefixed hex, times
    /// ISO 8601 text, and JSON documents stay documents.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int16(v) => J::from(*v),
            Value::Int32(v) => J::from(*v),
            Value::Int64(v) => J::from(*v),
            Value::Float32(v) => serde_json::Number::from_f64(f64::from(*v))
                .map_or_else(|| J::String(v.to_string()), J::Number),
            Value::Float64(v) => {
                serde_json::Number::from_f64(*v).map_or_else(|| J::String(v.to_string()), J::Number)
            }
            Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                J::String(s)
            }
            Value::Date(d) => J::String(d.format("%Y-%m-%d").to_string()),
            Value::Time(t) => J::String(t.format("%H:%M:%S%.f").to_string()),
            Value::Timestamp(t) => J::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
            Value::TimestampTz(t) => J::String(t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()),
            Value::Array(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Decimal(_) | Value::Text(_) | Value::Uuid(_) | Value::Engine { .. } => {
                J::String(self.to_string())
            }
        }
    }

    /// Feeds a canonical encoding of the value into a hasher, so that equal values
    /// read from two different engines hash alike (used by checksums).
    pub fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        fn tagged(h: &mut xxhash_rust::xxh3::Xxh3, tag: u8, bytes: &[u8]) {
            h.update(&[tag]);
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        match self {
            Value::Null => h.update(&[0]),
            Value::Bool(b) => tagged(h, 1, &[*b as u8]),
            Value::Int16(v) => tagged(h, 2, &i64::from(*v).to_le_bytes()),
            Value::Int32(v) => tagged(h, 2, &i64::from(*v).to_le_bytes()),
            Value::Int64(v) => tagged(h, 2, &v.to_le_bytes()),
            Value::Float32(v) => tagged(h, 3, &f64::from(*v).to_bits().to_le_bytes()),
            Value::Float64(v) => tagged(h, 3, &v.to_bits().to_le_bytes()),
            Value::Decimal(d) => tagged(h, 4, d.normalized().as_bytes()),
            Value::Text(s) => tagged(h, 5, s.as_bytes()),
            Value::Bytes(b) => tagged(h, 6, b),
            Value::Date(d) => tagged(h, 7, d.to_string().as_bytes()),
            Value::Time(t) => tagged(h, 8, t.format("%H:%M:%S%.f").to_string().as_bytes()),
            Value::Timestamp(t) => tagged(
                h,
                9,
                t.format("%Y-%m-%d %H:%M:%S%.f").to_string().as_bytes(),
            ),
            Value::TimestampTz(t) => tagged(h, 10, &t.timestamp_micros().to_le_bytes()),
            Value::Uuid(u) => tagged(h, 11, u.as_bytes()),
            Value::Json(s) => tagged(h, 12, s.as_bytes()),
            Value::Engine { type_name, text } => {
                tagged(h, 13, type_name.as_bytes());
                tagged(h, 13, text.as_bytes());
            }
            Value::Array(items) => {
                tagged(h, 14, &(items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| v.hash_into(h));
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int16(v) => write!(f, "{v}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Float32(v) => write!(f, "{v}"),
            Value::Float64(v) => write!(f, "{v}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Text(s) | Value::Json(s) => f.write_str(s),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::Date(d) => write!(f, "{d}"),
            Value::Time(t) => write!(f, "{t}"),
            Value::Timestamp(t) => write!(f, "{t}"),
            Value::TimestampTz(t) => write!(f, "{}", t.to_rfc3339()),
            Value::Uuid(u) => write!(f, "{u}"),
            Value::Engine { text, .. } => f.write_str(text),
            Value::Array(_) => write!(f, "{}", self.to_json()),
        }
    }
}

/// An exact decimal number held as its decimal text (`-123.4500`), so that no digit
/// is lost between engines whatever the precision (38 digits and more). It may
/// also be one of PostgreSQL's numeric specials, held as `NaN`, `Infinity` or
/// `-Infinity` ([`Decimal::is_finite`] tells them apart).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Decimal(String);

const NAN: &str = "NaN";
const INFINITY: &str = "Infinity";
const NEG_INFINITY: &str = "-Infinity";

/// The text is not a plain decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a decimal number")]
pub struct DecimalParseError(String);

impl Decimal {
    /// The decimal text as stored: sign, digits, and the scale the source gave.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `NaN`: PostgreSQL's numeric not-a-number.
    pub fn nan() -> Decimal {
        Decimal(NAN.to_string())
    }

    /// `Infinity`, or `-Infinity` when `negative`: PostgreSQL's numeric infinities.
    pub fn infinity(negative: bool) -> Decimal {
        Decimal(if negative { NEG_INFINITY } else { INFINITY }.to_string())
    }

    /// Whether this is a number, not `NaN` or `±Infinity`.
    pub fn is_finite(&self) -> bool {
        !matches!(self.0.as_str(), NAN | INFINITY | NEG_INFINITY)
    }

    /// The value from an `f64` (a float read where a decimal was declared), in the
    /// shortest text that reads back as the same float; NaN and the infinities
    /// become the decimal ones.
    pub fn from_f64(v: f64) -> Option<Decimal> {
        if v.is_nan() {
            return Some(Decimal::nan());
        }
        if v.is_infinite() {
            return Some(Decimal::infinity(v < 0.0));
        }
        let s = format!("{v}");
        // `{}` never uses exponents for f64, so this is always plain digits.
        Decimal::from_str(&s).ok()
    }

    /// The same number with `scale` digits after the point, padding with zeros; a
    /// longer fraction is kept as it is, since cutting it would lose digits. `NaN`
    /// and `±Infinity` are returned as they are.
    pub fn with_min_scale(&self, scale: u32) -> Decimal {
        if !self.is_finite() {
            return self.clone();
        }
        let (int, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        if frac.len() >= scale as usize {
            return self.clone();
        }
        let mut s = String::with_capacity(int.len() + 1 + scale as usize);
        s.push_str(int);
        s.push('.');
        s.push_str(frac);
        s.extend(std::iter::repeat_n('0', scale as usize - frac.len()));
        Decimal(s)
    }

    /// The number without leading zeros, trailing fractional zeros or `-0`: equal
    /// numbers have equal normalized text (`NaN` and `±Infinity` as they are).
    pub fn normalized(&self) -> String {
        if !self.is_finite() {
            return self.0.clone();
        }
        let (neg, body) = match self.0.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.0.strip_prefix('+').unwrap_or(&self.0)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        let mut out = String::new();
        if neg && !(int == "0" && frac.is_empty()) {
            out.push('-');
        }
        out.push_str(int);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        out
    }
}

impl FromStr for Decimal {
    type Err = DecimalParseError;

    /// Reads a plain decimal (`-12.50`, `+7`, `.5`; no exponent), or `NaN`,
    /// `Infinity`, `-Infinity` in any case and with `inf` for `Infinity`, as
    /// PostgreSQL's numeric input does; the specials are kept in that spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.len() <= 9 {
            match t.to_ascii_lowercase().as_str() {
                "nan" => return Ok(Decimal::nan()),
                "infinity" | "+infinity" | "inf" | "+inf" => return Ok(Decimal::infinity(false)),
                "-infinity" | "-inf" => return Ok(Decimal::infinity(true)),
                _ => {}
            }
        }
        let body = t.strip_prefix(['-', '+']).unwrap_or(t);
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
            return Err(DecimalParseError(s.to_string()));
        }
        let t = t.strip_prefix('+').unwrap_or(t);
        Ok(Decimal(t.to_string()))
    }
}

impl TryFrom<String> for Decimal {
    type Error = DecimalParseError;
    /// As [`Decimal::from_str`]; plain digits with an optional `-` (what
    /// databases send) are kept in the string given, without a copy.
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let body = s.strip_prefix('-').unwrap_or(&s);
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac) {
            return Ok(Decimal(s));
        }
        Decimal::from_str(&s)
    }
}

impl From<Decimal> for String {
    fn from(d: Decimal) -> String {
        d.0
    }
}

impl From<i64> for Decimal {
    fn from(v: i64) -> Decimal {
        Decimal(v.to_string())
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Compares normalized decimal texts (`-12.5`, `3`) numerically, whatever
/// their length.
fn decimal_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (an, bn) = (a.starts_with('-'), b.starts_with('-'));
    if an != bn {
        return if an {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let split = |s: &str| {
        let s = s.trim_start_matches('-');
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        (i.to_string(), f.to_string())
    };
    let ((ai, af), (bi, bf)) = (split(a), split(b));
    let mag = ai
        .len()
        .cmp(&bi.len())
        .then_with(|| ai.cmp(&bi))
        .then_with(|| af.cmp(&bf));
    if an {
        mag.reverse()
    } else {
        mag
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_value_counts_its_encoded_bytes() {
        use super::Value as V;
        assert_eq!(V::Text("héllo".into()).size(), 6);
        assert_eq!(V::Bytes(vec![0; 10]).size(), 10);
        assert_eq!(V::Null.size(), 0);
        assert_eq!(V::Int32(7).size(), 4);
        assert_eq!(V::Int64(7).size(), 8);
        assert_eq!(V::Uuid(uuid::Uuid::nil()).size(), 16);
        assert_eq!(V::Decimal("-12.50".parse().unwrap()).size(), 6);
        let row = vec![
            V::Int16(1),
            V::Text("ab".into()),
            V::Array(vec![V::Bool(true); 3]),
        ];
        assert_eq!(V::row_size(&row), 2 + 2 + 3);
    }

    #[test]
    fn values_of_one_kind_order_as_their_kind_does() {
        use std::cmp::Ordering;
        let d = |s: &str| Value::Decimal(s.parse().unwrap());
        assert_eq!(
            d("18446744073709551615").cmp_same_kind(&d("9223372036854775808")),
            Some(Ordering::Greater)
        );
        assert_eq!(d("-2").cmp_same_kind(&d("-10")), Some(Ordering::Greater));
        assert_eq!(d("1.5").cmp_same_kind(&d("1.25")), Some(Ordering::Greater));
        assert_eq!(d("1.50").cmp_same_kind(&d("1.5")), Some(Ordering::Equal));
        assert_eq!(
            Value::Null.cmp_same_kind(&Value::Int64(1)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Value::Int64(1).cmp_same_kind(&Value::Text("1".into())),
            None
        );
        assert_eq!(
            Value::Json("1".into()).cmp_same_kind(&Value::Json("2".into())),
            None
        );
    }

    use super::*;

    #[test]
    fn decimal_keeps_every_digit() {
        let d: Decimal = "12345678901234567890123456789012345678.5".parse().unwrap();
        assert_eq!(d.as_str(), "12345678901234567890123456789012345678.5");
        let json = serde_json::to_string(&Value::Decimal(d.clone())).unwrap();
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Value::Decimal(d));
    }

    #[test]
    fn decimal_rejects_non_numbers() {
        for bad in ["", "-", "1.2.3", "1e5", "abc", "."] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn decimal_from_a_string_reads_as_from_str() {
        for good in ["-12.50", "0", ".5", "7.", "+7", " 3 ", "nan", "-Infinity"] {
            let d = Decimal::try_from(good.to_string()).unwrap();
            assert_eq!(d, good.parse::<Decimal>().unwrap(), "{good:?}");
        }
        assert_eq!(Decimal::try_from("+7".to_string()).unwrap().as_str(), "7");
        for bad in ["", "-", "1.2.3", "1e5", "abc", ".", "--1", "-.", "1,5"] {
            assert!(
                Decimal::try_from(bad.to_string()).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn decimal_normalizes_and_pads() {
        let d: Decimal = "-000120.500".parse().unwrap();
        assert_eq!(d.normalized(), "-120.5");
        assert_eq!("-0.00".parse::<Decimal>().unwrap().normalized(), "0");
        assert_eq!(
            "12.3"
                .parse::<Decimal>()
                .unwrap()
                .with_min_scale(2)
                .as_str(),
            "12.30"
        );
        assert_eq!(
            "7".parse::<Decimal>().unwrap().with_min_scale(2).as_str(),
            "7.00"
        );
        assert_eq!(Decimal::from_f64(0.1).unwrap().as_str(), "0.1");
        assert_eq!(Decimal::from_f64(f64::NAN), Some(Decimal::nan()));
        assert_eq!(
            Decimal::from_f64(f64::NEG_INFINITY),
            Some(Decimal::infinity(true))
        );
    }

    #[test]
    fn decimal_specials_are_read_in_postgresql_spellings_and_kept() {
        for (text, want) in [
            ("NaN", "NaN"),
            ("nan", "NaN"),
            (" Infinity ", "Infinity"),
            ("inf", "Infinity"),
            ("+infinity", "Infinity"),
            ("-Infinity", "-Infinity"),
            ("-INF", "-Infinity"),
        ] {
            let d: Decimal = text.parse().unwrap();
            assert_eq!(d.as_str(), want, "{text:?}");
            assert!(!d.is_finite());
            assert_eq!(d.normalized(), want);
            assert_eq!(d.with_min_scale(2).as_str(), want);
        }
        for bad in ["-nan", "infinite", "Infinityx", "+-inf"] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?} accepted");
        }
        assert!("12.50".parse::<Decimal>().unwrap().is_finite());
    }

    #[test]
    fn special_values_have_one_text_and_read_back() {
        use crate::TypeKind as K;
        let dec = K::Decimal {
            precision: Some(12),
            scale: Some(2),
        };
        let cases = [
            (K::Float64, Value::Float64(f64::INFINITY), "Infinity"),
            (K::Float64, Value::Float64(f64::NEG_INFINITY), "-Infinity"),
            (K::Float32, Value::Float32(f32::NEG_INFINITY), "-Infinity"),
            (dec.clone(), Value::Decimal(Decimal::nan()), "NaN"),
            (
                dec.clone(),
                Value::Decimal(Decimal::infinity(true)),
                "-Infinity",
            ),
            (K::Date, Value::Date(NaiveDate::MAX), "infinity"),
            (K::Date, Value::Date(NaiveDate::MIN), "-infinity"),
            (
                K::Timestamp,
                Value::Timestamp(NaiveDateTime::MAX),
                "infinity",
            ),
            (
                K::Timestamp,
                Value::Timestamp(NaiveDateTime::MIN),
                "-infinity",
            ),
            (
                K::TimestampTz,
                Value::TimestampTz(NaiveDateTime::MAX.and_utc()),
                "infinity",
            ),
            (K::Time, Value::Time(Value::END_OF_DAY), "24:00:00"),
        ];
        for (kind, v, text) in cases {
            assert_eq!(v.special_text(), Some(text), "{v:?}");
            assert_eq!(Value::from_special_text(&kind, text), Some(v.clone()));
        }
        assert_eq!(Value::Float64(f64::NAN).special_text(), Some("NaN"));
        assert!(matches!(
            Value::from_special_text(&K::Float64, "NaN"),
            Some(Value::Float64(f)) if f.is_nan()
        ));
        assert_eq!(Value::END_OF_DAY.to_string(), "23:59:60");
        for ordinary in [
            Value::Float64(1.5),
            Value::Decimal("1".parse().unwrap()),
            Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
            Value::Text("NaN".into()),
        ] {
            assert_eq!(ordinary.special_text(), None, "{ordinary:?}");
        }
        assert_eq!(Value::from_special_text(&K::Int64, "infinity"), None);
        assert_eq!(Value::from_special_text(&K::Date, "NaN"), None);
        assert_eq!(
            Value::from_special_text(&K::Text { max_len: None }, "NaN"),
            None
        );
    }

    #[test]
    fn arrays_become_json_arrays() {
        let v = Value::Array(vec![
            Value::Array(vec![Value::Int32(1), Value::Null]),
            Value::Array(vec![
                Value::Decimal("2.50".parse().unwrap()),
                Value::Text("é".into()),
            ]),
        ]);
        assert_eq!(v.to_json().to_string(), r#"[[1,null],["2.50","é"]]"#);
        assert_eq!(
            Value::Bytes(vec![0, 255]).to_json(),
            serde_json::json!("\\x00ff")
        );
        assert_eq!(
            Value::Json(r#"{"a":1}"#.into()).to_json(),
            serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn equal_values_hash_alike_across_int_widths() {
        let hash = |v: &Value| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            v.hash_into(&mut h);
            h.digest()
        };
        assert_eq!(hash(&Value::Int32(7)), hash(&Value::Int64(7)));
        assert_ne!(hash(&Value::Int64(7)), hash(&Value::Text("7".into())));
        assert_ne!(hash(&Value::Null), hash(&Value::Text(String::new())));
    }
}
