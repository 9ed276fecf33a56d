//! Row images of the binlog turned into siphon values. Each binlog value is
//! first put in the form the server's binary protocol sends for the same
//! column (what a snapshot read gets), then decoded by
//! [`crate::types::decode`], so a value streamed equals the value a snapshot
//! read of the same row. What the binlog leaves out comes from
//! `information_schema`: signedness, ENUM and SET labels and the character
//! set, which MariaDB's TABLE_MAP events do not carry
//! (`binlog_row_metadata=NO_LOG` by default).

use chrono::DateTime;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value as M;
use siphon_core::{Column, Error, Result, TableName, Value};

use crate::conn::ZeroDates;

/// What decoding a column's binlog values needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    /// The column as the table's schema has it.
    pub column: Column,
    /// `information_schema.COLUMNS.DATA_TYPE`, lower case (`bigint`, `enum`).
    pub data_type: String,
    /// Declared `unsigned`.
    pub unsigned: bool,
    /// The labels of an ENUM or a SET, in declaration order.
    pub labels: Vec<String>,
    /// The character set of a text column (`utf8mb4`, `latin1`), `None`
    /// for other columns.
    pub charset: Option<String>,
}

impl ColumnInfo {
    /// Reads a column from `DATA_TYPE`, `COLUMN_TYPE` (`bigint(20) unsigned`,
    /// `enum('a','b''c')`) and `CHARACTER_SET_NAME`.
    pub fn new(
        column: &Column,
        data_type: &str,
        column_type: &str,
        charset: Option<&str>,
    ) -> ColumnInfo {
        let data_type = data_type.to_ascii_lowercase();
        let labels = if data_type == "enum" || data_type == "set" {
            labels_of(column_type)
        } else {
            Vec::new()
        };
        ColumnInfo {
            column: column.clone(),
            unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
            data_type,
            labels,
            charset: charset.map(|c| c.to_ascii_lowercase()),
        }
    }
}

/// The quoted labels of `enum('a','b''c')` or `set(…)`, quotes undone.
pub fn labels_of(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = column_type[open + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        loop {
            match chars.next() {
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                Some('\\') => {
                    if let Some(n) = chars.next() {
                        label.push(n);
                    }
                }
                Some('\'') | None => break,
                Some(c) => label.push(c),
            }
        }
        out.push(label);
    }
    out
}

fn bad(col: &ColumnInfo, what: impl std::fmt::Display) -> Error {
    Error::bad_input(format!("cannot read the value from the binlog: {what}"))
        .column(&col.column.name)
}

/// Bits of an integer type, for reading an unsigned value the binlog wrote as signed.
fn width(data_type: &str) -> u32 {
    match data_type {
        "tinyint" => 8,
        "smallint" => 16,
        "mediumint" => 24,
        "int" | "integer" => 32,
        _ => 64,
    }
}

/// Text bytes in the column's character set as UTF-8 bytes (the snapshot's
/// session is utf8mb4, so the server converts there).
fn utf8(col: &ColumnInfo, bytes: Vec<u8>) -> Result<Vec<u8>> {
    match col.charset.as_deref() {
        Some("latin1") => Ok(bytes
            .iter()
            .map(|&b| cp1252(b))
            .collect::<String>()
            .into_bytes()),
        Some("ascii" | "utf8mb4" | "utf8mb3" | "utf8" | "binary") | None => Ok(bytes),
        Some(other) => match String::from_utf8(bytes) {
            Ok(s) => Ok(s.into_bytes()),
            Err(_) => Err(bad(
                col,
                format!(
                    "the column's character set {other} is not one siphon reads from the binlog \
                     (utf8mb4, utf8mb3, latin1, ascii): convert the column to utf8mb4"
                ),
            )),
        },
    }
}

/// MySQL's `latin1` is Windows-1252 (its five undefined bytes kept as the
/// C1 controls of the same number).
fn cp1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(HIGH[(b - 0x80) as usize] as u32).unwrap_or('\u{FFFD}'),
        _ => b as char,
    }
}

/// A binlog value in the form the binary protocol sends for the column.
pub fn wire(col: &ColumnInfo, value: Option<BinlogValue<'_>>) -> Result<M> {
    let v = match value {
        None => return Ok(M::NULL),
        Some(BinlogValue::Jsonb(j)) => {
            let json = serde_json::Value::try_from(j).map_err(|e| bad(col, e))?;
            return Ok(M::Bytes(json.to_string().into_bytes()));
        }
        Some(BinlogValue::JsonDiff(_)) => {
            return Err(bad(
                col,
                "a partial JSON update (binlog_row_value_options=PARTIAL_JSON): set \
                 binlog_row_value_options='' on the source",
            ))
        }
        Some(BinlogValue::Value(v)) => v,
    };
    let dt = col.data_type.as_str();
    Ok(match (dt, v) {
        (_, M::NULL) => M::NULL,
        ("tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint", M::Int(n))
            if col.unsigned =>
        {
            let bits = width(dt);
            let u = if bits == 64 {
                n as u64
            } else {
                (n as u64) & ((1u64 << bits) - 1)
            };
            M::UInt(u)
        }
        // mysql_common reads a signed MEDIUMINT without extending its sign.
        ("mediumint", M::Int(n)) if n > 0x7f_ffff => M::Int(n - 0x100_0000),
        ("year", M::Bytes(b)) => {
            // mysql_common prints 1900 + the stored byte; 0 is the year 0000.
            let y: i64 = String::from_utf8_lossy(&b)
                .parse()
                .map_err(|e| bad(col, e))?;
            M::Int(if y == 1900 { 0 } else { y })
        }
        ("timestamp", M::Bytes(b)) => {
            // TIMESTAMP2: seconds since the epoch, and microseconds; in UTC,
            // as the snapshot's session (time_zone '+00:00') reads it.
            let s = String::from_utf8_lossy(&b).into_owned();
            let (secs, frac) = s.split_once('.').unwrap_or((&s, "0"));
            let secs: i64 = secs.parse().map_err(|e| bad(col, e))?;
            let micros: u32 = format!("{frac:0<6}")[..6]
                .parse()
                .map_err(|e| bad(col, e))?;
            timestamp(col, secs, micros)?
        }
        ("timestamp", M::Int(secs)) => timestamp(col, secs, 0)?,
        ("enum", M::Int(i)) => {
            // 0 is the empty string MySQL stores for a value it refused.
            let label = match i {
                0 => String::new(),
                i => col.labels.get(i as usize - 1).cloned().ok_or_else(|| {
                    bad(col, format!("ENUM index {i} is past the column's labels"))
                })?,
            };
            M::Bytes(label.into_bytes())
        }
        ("set", M::Bytes(b)) => {
            let mut parts = Vec::new();
            for (i, label) in col.labels.iter().enumerate() {
                if b.get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0) {
                    parts.push(label.as_str());
                }
            }
            M::Bytes(parts.join(",").into_bytes())
        }
        ("bit", M::Bytes(b)) => M::Bytes(b),
        // MariaDB's data-type plugins log their binary form as a BINARY of
        // fixed length (trailing zero bytes dropped); a read has their text.
        ("uuid" | "inet6" | "inet4", M::Bytes(b)) => {
            M::Bytes(plugin_text(col, dt, b)?.into_bytes())
        }
        // The binlog drops a BINARY(n)'s trailing zero bytes; a read has them.
        ("binary", M::Bytes(mut b)) => {
            let n = declared_length(&col.column.native_type).unwrap_or(b.len());
            if b.len() < n {
                b.resize(n, 0);
            }
            M::Bytes(b)
        }
        (_, M::Bytes(b)) => M::Bytes(utf8(col, b)?),
        (_, other) => other,
    })
}

/// The text MariaDB prints for a `uuid`, `inet6` or `inet4` value from the
/// bytes the binlog holds: the value's binary form (for a `uuid`, in the
/// order of its text, whatever order the row stores it in), its trailing
/// zero bytes dropped.
fn plugin_text(col: &ColumnInfo, data_type: &str, mut b: Vec<u8>) -> Result<String> {
    let n = if data_type == "inet4" { 4 } else { 16 };
    if b.len() > n {
        return Err(bad(
            col,
            format!("a {data_type} value of {} bytes, not {n}", b.len()),
        ));
    }
    b.resize(n, 0);
    Ok(match data_type {
        "uuid" => {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&b);
            uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
        }
        "inet6" => inet6_text(&b),
        _ => inet4_text(&b),
    })
}

/// An IPv4 address as MariaDB prints an `inet4`: `10.1.2.3`.
fn inet4_text(b: &[u8]) -> String {
    b.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
}

/// An IPv6 address (16 bytes) as MariaDB prints an `inet6` (`Inet6::to_string`,
/// as INET6_NTOA): lower-case hex groups without leading zeros, the first
/// longest run of zero groups (even a single one) as `::`, and an
/// IPv4-compatible (`::1.2.3.4`) or IPv4-mapped (`::ffff:1.2.3.4`) address
/// with its last 4 bytes in dotted form.
fn inet6_text(b: &[u8]) -> String {
    let words: Vec<u16> = b
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    // The gap: the first longest run of zero words.
    let (mut gap_pos, mut gap_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < words.len() {
        if words[i] == 0 {
            let start = i;
            while i < words.len() && words[i] == 0 {
                i += 1;
            }
            if i - start > gap_len {
                (gap_pos, gap_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < words.len() {
        if i == gap_pos {
            if i == 0 {
                out.push(':');
            }
            out.push(':');
            i += gap_len;
            continue;
        }
        if i == 6 && gap_pos == 0 && (gap_len == 6 || (gap_len == 5 && words[5] == 0xffff)) {
            out.push_str(&inet4_text(&b[12..]));
            break;
        }
        out.push_str(&format!("{:x}", words[i]));
        if i + 1 != words.len() {
            out.push(':');
        }
        i += 1;
    }
    out
}

/// The `n` of a declared `binary(n)`.
fn declared_length(native: &str) -> Option<usize> {
    let (_, rest) = native.split_once('(')?;
    rest.split(')').next()?.trim().parse().ok()
}

/// A TIMESTAMP as the date and time in UTC; 0 is the zero date.
fn timestamp(col: &ColumnInfo, secs: i64, micros: u32) -> Result<M> {
    if secs == 0 && micros == 0 {
        return Ok(M::Date(0, 0, 0, 0, 0, 0, 0));
    }
    use chrono::{Datelike, Timelike};
    let at = DateTime::from_timestamp(secs, micros * 1000)
        .ok_or_else(|| bad(col, "timestamp out of range"))?;
    Ok(M::Date(
        at.year() as u16,
        at.month() as u8,
        at.day() as u8,
        at.hour() as u8,
        at.minute() as u8,
        at.second() as u8,
        micros,
    ))
}

/// Converts one binlog value of `col` of `table` to a siphon value; `None`
/// (a column the image does not hold) reads as NULL.
pub fn convert(
    table: &TableName,
    col: &ColumnInfo,
    value: Option<BinlogValue<'_>>,
    zero: ZeroDates,
) -> Result<Value> {
    let raw = wire(col, value).map_err(|e| e.table(table))?;
    crate::types::decode(&col.column, raw, zero).map_err(|e| e.into_error(table, &col.column))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveTime};
    use mysql_async::binlog::jsonb;
    use mysql_common::constants::ColumnType;
    use mysql_common::io::ParseBuf;
    use mysql_common::proto::MyDeserialize;
    use siphon_core::typemap::{parse_native, Engine};
    use siphon_core::DataType;

    /// A column as discovery gives it, from its declared type.
    fn col(dt: &str, ct: &str, charset: Option<&str>) -> ColumnInfo {
        let column = Column {
            name: "c".into(),
            data_type: DataType::new(parse_native(Engine::Mysql, ct), true),
            native_type: ct.into(),
            generated: false,
            source_id: None,
        };
        ColumnInfo::new(&column, dt, ct, charset)
    }

    fn t() -> TableName {
        TableName::new(Some("d"), "t")
    }

    /// Decodes `bytes` as mysql_common reads a row image value of `ty` with
    /// `meta`, without the signedness MariaDB does not log.
    fn parse(ty: ColumnType, meta: &[u8], bytes: &[u8]) -> BinlogValue<'static> {
        let mut buf = ParseBuf(bytes);
        BinlogValue::deserialize((ty, meta, false, false), &mut buf)
            .unwrap()
            .into_owned()
    }

    fn read(c: &ColumnInfo, v: BinlogValue<'static>) -> Value {
        convert(&t(), c, Some(v), ZeroDates::Error).unwrap()
    }

    #[test]
    fn labels_are_unquoted() {
        assert_eq!(labels_of("enum('a','b''c','d,e')"), vec!["a", "b'c", "d,e"]);
        assert_eq!(labels_of("set('x')"), vec!["x"]);
    }

    #[test]
    fn unsigned_integers_logged_without_signedness_read_back_unsigned() {
        let big = col("bigint", "bigint(20) unsigned", None);
        let v = parse(
            ColumnType::MYSQL_TYPE_LONGLONG,
            &[],
            &u64::MAX.to_le_bytes(),
        );
        assert_eq!(
            read(&big, v),
            Value::Decimal("18446744073709551615".parse().unwrap())
        );
        let tiny = col("tinyint", "tinyint(3) unsigned", None);
        let v = parse(ColumnType::MYSQL_TYPE_TINY, &[], &[255]);
        assert_eq!(read(&tiny, v), Value::Int16(255));
        let medium = col("mediumint", "mediumint(8) unsigned", None);
        let v = parse(ColumnType::MYSQL_TYPE_INT24, &[], &[0xff, 0xff, 0xff]);
        assert_eq!(read(&medium, v), Value::Int32(16_777_215));
        let int = col("int", "int(10) unsigned", None);
        let v = parse(ColumnType::MYSQL_TYPE_LONG, &[], &u32::MAX.to_le_bytes());
        assert_eq!(read(&int, v), Value::Int64(4_294_967_295));
        let medium = col("mediumint", "mediumint(9)", None);
        let v = parse(ColumnType::MYSQL_TYPE_INT24, &[], &[0x00, 0x00, 0x80]);
        assert_eq!(read(&medium, v), Value::Int32(-8_388_608));
        let v = parse(ColumnType::MYSQL_TYPE_INT24, &[], &[0xff, 0xff, 0xff]);
        assert_eq!(read(&medium, v), Value::Int32(-1));
        let signed = col("int", "int(11)", None);
        let v = parse(ColumnType::MYSQL_TYPE_LONG, &[], &(-5i32).to_le_bytes());
        assert_eq!(read(&signed, v), Value::Int32(-5));
    }

    #[test]
    fn mysql8_timestamp2_and_datetime2_with_fractions() {
        // TIMESTAMP(6): 4 bytes big-endian seconds, 3 bytes big-endian microseconds.
        let secs: u32 = 1_700_000_000;
        let mut b = secs.to_be_bytes().to_vec();
        b.extend_from_slice(&[0x01, 0xE2, 0x40]); // 123456
        let v = parse(ColumnType::MYSQL_TYPE_TIMESTAMP2, &[6], &b);
        let ts = col("timestamp", "timestamp(6)", None);
        assert_eq!(
            read(&ts, v),
            Value::TimestampTz(DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap())
        );
        // TIMESTAMP(3): 2 bytes of fraction in units of 100 µs: 1234 → .123400.
        let mut b = secs.to_be_bytes().to_vec();
        b.extend_from_slice(&[0x04, 0xD2]);
        let v = parse(ColumnType::MYSQL_TYPE_TIMESTAMP2, &[3], &b);
        assert_eq!(
            read(&ts, v),
            Value::TimestampTz(DateTime::from_timestamp(1_700_000_000, 123_400_000).unwrap())
        );
        // The zero timestamp follows the zero-date policy.
        let v = parse(ColumnType::MYSQL_TYPE_TIMESTAMP2, &[0], &[0, 0, 0, 0]);
        assert_eq!(
            convert(&t(), &ts, Some(v.clone()), ZeroDates::Null).unwrap(),
            Value::Null
        );
        let e = convert(&t(), &ts, Some(v), ZeroDates::Error).unwrap_err();
        assert!(e.to_string().contains("zero_dates=null"), "{e}");

        // DATETIME(6) 2024-02-29 13:14:15.000001: 5 bytes packed (sign bit,
        // year*13+month 17 bits, day 5, hour 5, minute 6, second 6), then 3
        // bytes of fraction.
        let ym: u64 = 2024 * 13 + 2;
        let packed: u64 = (1 << 39) | (ym << 22) | (29 << 17) | (13 << 12) | (14 << 6) | 15;
        let mut b = packed.to_be_bytes()[3..].to_vec();
        b.extend_from_slice(&[0, 0, 1]);
        let v = parse(ColumnType::MYSQL_TYPE_DATETIME2, &[6], &b);
        let dt = col("datetime", "datetime(6)", None);
        let want = NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_time(NaiveTime::from_hms_micro_opt(13, 14, 15, 1).unwrap());
        assert_eq!(read(&dt, v), Value::Timestamp(want));
    }

    #[test]
    fn time_beyond_a_day_and_negative() {
        let t2 = col("time", "time", None);
        // TIME2(0): 3 bytes big-endian, offset 0x800000; 25:00:01 = (25<<12)|1.
        let packed: u32 = 0x80_0000 + ((25 << 12) | 1);
        let v = parse(
            ColumnType::MYSQL_TYPE_TIME2,
            &[0],
            &packed.to_be_bytes()[1..],
        );
        assert_eq!(
            read(&t2, v),
            Value::Engine {
                type_name: "time".into(),
                text: "25:00:01".into()
            }
        );
        let neg: i64 = 0x80_0000 - ((838 << 12) | (59 << 6) | 59);
        let v = parse(
            ColumnType::MYSQL_TYPE_TIME2,
            &[0],
            &(neg as u32).to_be_bytes()[1..],
        );
        assert_eq!(
            read(&t2, v),
            Value::Engine {
                type_name: "time".into(),
                text: "-838:59:59".into()
            }
        );
    }

    #[test]
    fn mysql8_binary_json_decodes_to_its_text() {
        // {"a": 1}: small object, 1 element, 12 bytes, key entry (offset 11,
        // length 1), value entry (int16 inline, 1), the key.
        let body: Vec<u8> = vec![
            0x00, 0x01, 0x00, 0x0c, 0x00, 0x0b, 0x00, 0x01, 0x00, 0x05, 0x01, 0x00, b'a',
        ];
        let mut image = (body.len() as u32).to_le_bytes().to_vec();
        image.extend_from_slice(&body);
        let v = parse(ColumnType::MYSQL_TYPE_JSON, &[4], &image);
        assert!(matches!(
            v,
            BinlogValue::Jsonb(jsonb::Value::SmallObject(_))
        ));
        let j = col("json", "json", None);
        assert_eq!(read(&j, v), Value::Json(r#"{"a":1}"#.into()));
    }

    #[test]
    fn mariadb_uuid_and_inet_values_read_as_the_server_prints_them() {
        // Logged as BINARY(16) / BINARY(4), trailing zero bytes dropped.
        let u = col("uuid", "uuid", None);
        let mut b = vec![
            0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17,
            0x40,
        ];
        let v = BinlogValue::Value(M::Bytes(b.clone()));
        assert_eq!(
            read(&u, v),
            Value::Uuid("123e4567-e89b-12d3-a456-426614174000".parse().unwrap())
        );
        b.truncate(0);
        assert_eq!(
            read(&u, BinlogValue::Value(M::Bytes(b))),
            Value::Uuid(uuid::Uuid::nil())
        );
        let ip = |bytes: &[u8]| {
            inet6_text(&{
                let mut b = bytes.to_vec();
                b.resize(16, 0);
                b
            })
        };
        let words = |w: [u16; 8]| -> String {
            inet6_text(&w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>())
        };
        assert_eq!(ip(&[]), "::");
        assert_eq!(words([0, 0, 0, 0, 0, 0, 0, 1]), "::1");
        assert_eq!(words([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), "2001:db8::1");
        assert_eq!(words([1, 0, 0, 0, 0, 0, 0, 0]), "1::");
        assert_eq!(words([1, 0, 2, 0, 0, 3, 0, 0]), "1:0:2::3:0:0");
        assert_eq!(words([1, 2, 3, 4, 5, 6, 0, 8]), "1:2:3:4:5:6::8");
        assert_eq!(
            words([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]),
            "::ffff:1.2.3.4"
        );
        assert_eq!(words([0, 0, 0, 0, 0, 0, 0x0a01, 0x0203]), "::10.1.2.3");
        assert_eq!(
            words([0xfe80, 0, 0, 0, 0xabcd, 0xef, 0x1234, 0xffff]),
            "fe80::abcd:ef:1234:ffff"
        );
        let i6 = col("inet6", "inet6", None);
        let v = BinlogValue::Value(M::Bytes(vec![0x20, 0x01, 0x0d, 0xb8]));
        assert_eq!(
            read(&i6, v),
            Value::Engine {
                type_name: "inet6".into(),
                text: "2001:db8::".into()
            }
        );
        let i4 = col("inet4", "inet4", None);
        let v = BinlogValue::Value(M::Bytes(vec![10, 1]));
        assert_eq!(
            read(&i4, v),
            Value::Engine {
                type_name: "inet4".into(),
                text: "10.1.0.0".into()
            }
        );
        let v = BinlogValue::Value(M::Bytes(vec![1; 5]));
        assert!(convert(&t(), &i4, Some(v), ZeroDates::Error).is_err());
    }

    #[test]
    fn enums_sets_bits_years_and_latin1() {
        let e = col("enum", "enum('small','large')", Some("utf8mb4"));
        let v = parse(ColumnType::MYSQL_TYPE_ENUM, &[247, 1], &[2]);
        assert_eq!(read(&e, v), Value::Text("large".into()));
        let s = col("set", "set('a','b','c')", Some("utf8mb4"));
        let v = parse(ColumnType::MYSQL_TYPE_SET, &[248, 1], &[0b101]);
        assert_eq!(read(&s, v), Value::Text("a,c".into()));
        let b = col("bit", "bit(12)", None);
        let v = parse(ColumnType::MYSQL_TYPE_BIT, &[4, 1], &[0x0a, 0xbc]);
        assert_eq!(read(&b, v), Value::Int64(0xabc));
        let y = col("year", "year(4)", None);
        let v = parse(ColumnType::MYSQL_TYPE_YEAR, &[], &[124]);
        assert_eq!(read(&y, v), Value::Int16(2024));
        let v = parse(ColumnType::MYSQL_TYPE_YEAR, &[], &[0]);
        assert_eq!(read(&y, v), Value::Int16(0));
        let bn = col("binary", "binary(4)", None);
        let v = BinlogValue::Value(M::Bytes(vec![0, 0xff]));
        assert_eq!(read(&bn, v), Value::Bytes(vec![0, 0xff, 0, 0]));
        let l = col("varchar", "varchar(10)", Some("latin1"));
        let v = BinlogValue::Value(M::Bytes(vec![b'c', 0xe9, 0x80]));
        assert_eq!(read(&l, v), Value::Text("cé€".into()));
        let d = col("decimal", "decimal(5,2)", None);
        let v = BinlogValue::Value(M::Bytes(b"-123.45".to_vec()));
        assert_eq!(read(&d, v), Value::Decimal("-123.45".parse().unwrap()));
    }
}
