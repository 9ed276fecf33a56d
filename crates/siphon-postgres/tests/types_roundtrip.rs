//! The type codec and binary COPY framing against a real PostgreSQL 15: a table
//! with a column of every supported type (an enum, a domain over numeric and an
//! array of it, arrays of up to three dimensions), filled with edge values by SQL
//! literals, is read with `COPY … TO STDOUT (FORMAT binary)` and compared value
//! by value with what the literals mean; written back with `COPY … FROM STDIN
//! (FORMAT binary)` and compared by SQL; and read in text format under several
//! session settings (time zones, interval styles, bytea output), which must
//! decode to the same values as the binary format.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use futures_util::{SinkExt, StreamExt};
use siphon_core::Value;
use siphon_postgres::copy::{CopyInWriter, CopyOutReader};
use siphon_postgres::types::{decode_text, PgType};
use siphon_testkit::Postgres;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use uuid::Uuid;

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// A column: its SQL type and, per row, an SQL literal and the value it means.
struct Col {
    name: &'static str,
    sql_type: &'static str,
    cells: Vec<(&'static str, Value)>,
}

/// Rows with literals; one more row, all NULL, is added after them.
const ROWS: usize = 5;

fn b(v: bool) -> Value {
    Value::Bool(v)
}
fn t(s: &str) -> Value {
    Value::Text(s.into())
}
fn dec(s: &str) -> Value {
    Value::Decimal(s.parse().unwrap())
}
fn json(s: &str) -> Value {
    Value::Json(s.into())
}
fn iv(s: &str) -> Value {
    Value::Engine {
        type_name: "interval".into(),
        text: s.into(),
    }
}
fn a(items: Vec<Value>) -> Value {
    Value::Array(items)
}
fn date(y: i32, m: u32, d: u32) -> Value {
    Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
}
fn naive(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}
fn ts(s: &str) -> Value {
    Value::Timestamp(naive(s))
}
/// A timestamptz given in UTC.
fn tstz(s: &str) -> Value {
    Value::TimestampTz(Utc.from_utc_datetime(&naive(s)))
}
fn time(s: &str) -> Value {
    Value::Time(chrono::NaiveTime::parse_from_str(s, "%H:%M:%S%.f").unwrap())
}
fn uuid(s: &str) -> Value {
    Value::Uuid(Uuid::parse_str(s).unwrap())
}
fn bc(y: i32, m: u32, d: u32, hms: (u32, u32, u32)) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1 - y, m, d)
        .unwrap()
        .and_hms_opt(hms.0, hms.1, hms.2)
        .unwrap()
}
const NULL: Value = Value::Null;

fn col(name: &'static str, sql_type: &'static str, cells: Vec<(&'static str, Value)>) -> Col {
    assert_eq!(cells.len(), ROWS, "{name}");
    Col {
        name,
        sql_type,
        cells,
    }
}

fn columns() -> Vec<Col> {
    let big = "12345678901234567890123456789012345678.123456789012345678901234567890";
    vec![
        col(
            "c_bool",
            "boolean",
            vec![
                ("true", b(true)),
                ("false", b(false)),
                ("true", b(true)),
                ("false", b(false)),
                ("'t'", b(true)),
            ],
        ),
        col(
            "c_bytea",
            "bytea",
            vec![
                (r"'\x00ff00'", Value::Bytes(vec![0, 255, 0])),
                ("''", Value::Bytes(vec![])),
                (r"'\x00'", Value::Bytes(vec![0])),
                (r"'\xdeadbeef'", Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef])),
                (r"'\x5c'", Value::Bytes(vec![b'\\'])),
            ],
        ),
        col(
            "c_char",
            "\"char\"",
            vec![
                ("'a'", t("a")),
                (r"'\351'", t(r"\351")),
                ("''", t("")),
                ("'Z'", t("Z")),
                ("'\"'", t("\"")),
            ],
        ),
        col(
            "c_name",
            "name",
            vec![
                ("'pg_class'", t("pg_class")),
                ("'héllo'", t("héllo")),
                ("''", t("")),
                ("'a b'", t("a b")),
                ("'NULL'", t("NULL")),
            ],
        ),
        col(
            "c_int2",
            "smallint",
            vec![
                ("-32768", Value::Int16(i16::MIN)),
                ("32767", Value::Int16(i16::MAX)),
                ("0", Value::Int16(0)),
                ("-1", Value::Int16(-1)),
                ("1", Value::Int16(1)),
            ],
        ),
        col(
            "c_int4",
            "integer",
            vec![
                ("-2147483648", Value::Int32(i32::MIN)),
                ("2147483647", Value::Int32(i32::MAX)),
                ("0", Value::Int32(0)),
                ("42", Value::Int32(42)),
                ("-42", Value::Int32(-42)),
            ],
        ),
        col(
            "c_int8",
            "bigint",
            vec![
                ("-9223372036854775808", Value::Int64(i64::MIN)),
                ("9223372036854775807", Value::Int64(i64::MAX)),
                ("0", Value::Int64(0)),
                ("1", Value::Int64(1)),
                ("-1", Value::Int64(-1)),
            ],
        ),
        col(
            "c_oid",
            "oid",
            vec![
                ("4294967295", Value::Int64(4_294_967_295)),
                ("0", Value::Int64(0)),
                ("12345", Value::Int64(12345)),
                ("1", Value::Int64(1)),
                ("2147483648", Value::Int64(2_147_483_648)),
            ],
        ),
        col(
            "c_text",
            "text",
            vec![
                ("'héllo wörld 🎉'", t("héllo wörld 🎉")),
                ("''", t("")),
                (
                    r#"'quote"back\slash{},NULL'"#,
                    t(r#"quote"back\slash{},NULL"#),
                ),
                (r"E'tab\there\nnewline'", t("tab\there\nnewline")),
                ("'NULL'", t("NULL")),
            ],
        ),
        col(
            "c_json",
            "json",
            vec![
                (
                    r#"'{"b": 1,  "a": [1,2]}'"#,
                    json(r#"{"b": 1,  "a": [1,2]}"#),
                ),
                ("'[]'", json("[]")),
                (r#"'"é🎉"'"#, json(r#""é🎉""#)),
                ("'null'", json("null")),
                ("'1.50'", json("1.50")),
            ],
        ),
        col(
            "c_float4",
            "real",
            vec![
                ("'3.4028235e38'", Value::Float32(f32::MAX)),
                ("'NaN'", Value::Float32(f32::NAN)),
                ("'-Infinity'", Value::Float32(f32::NEG_INFINITY)),
                ("'1.5'", Value::Float32(1.5)),
                ("'1e-45'", Value::Float32(f32::from_bits(1))),
            ],
        ),
        col(
            "c_float8",
            "double precision",
            vec![
                ("'1e-300'", Value::Float64(1e-300)),
                ("'Infinity'", Value::Float64(f64::INFINITY)),
                ("'NaN'", Value::Float64(f64::NAN)),
                ("'-0.1'", Value::Float64(-0.1)),
                ("'5e-324'", Value::Float64(f64::from_bits(1))),
            ],
        ),
        col(
            "c_bpchar",
            "character(5)",
            vec![
                ("'ab'", t("ab   ")),
                ("''", t("     ")),
                ("'héllo'", t("héllo")),
                ("'a'", t("a    ")),
                ("'NULL'", t("NULL ")),
            ],
        ),
        col(
            "c_varchar",
            "character varying(20)",
            vec![
                ("'ü'", t("ü")),
                ("''", t("")),
                ("'x y'", t("x y")),
                ("'NULL'", t("NULL")),
                ("'{}'", t("{}")),
            ],
        ),
        col(
            "c_date",
            "date",
            vec![
                ("'1969-12-31'", date(1969, 12, 31)),
                ("'2000-01-01'", date(2000, 1, 1)),
                ("'infinity'", Value::Date(NaiveDate::MAX)),
                ("'0044-03-15 BC'", date(-43, 3, 15)),
                ("'-infinity'", Value::Date(NaiveDate::MIN)),
            ],
        ),
        col(
            "c_time",
            "time",
            vec![
                ("'00:00:00'", time("00:00:00")),
                ("'23:59:59.999999'", time("23:59:59.999999")),
                ("'12:34:56.5'", time("12:34:56.5")),
                ("'00:00:00.000001'", time("00:00:00.000001")),
                ("'10:00'", time("10:00:00")),
            ],
        ),
        col(
            "c_ts",
            "timestamp",
            vec![
                (
                    "'1969-07-20 20:17:40.123456'",
                    ts("1969-07-20 20:17:40.123456"),
                ),
                ("'2000-01-01 00:00:00'", ts("2000-01-01 00:00:00")),
                ("'infinity'", Value::Timestamp(NaiveDateTime::MAX)),
                ("'-infinity'", Value::Timestamp(NaiveDateTime::MIN)),
                (
                    "'0044-03-15 12:00:00 BC'",
                    Value::Timestamp(bc(44, 3, 15, (12, 0, 0))),
                ),
            ],
        ),
        col(
            "c_tstz",
            "timestamp with time zone",
            vec![
                ("'2024-01-01 10:00:00.5+02'", tstz("2024-01-01 08:00:00.5")),
                ("'1900-01-01 00:00:00+00'", tstz("1900-01-01 00:00:00")),
                ("'infinity'", Value::TimestampTz(DateTime::<Utc>::MAX_UTC)),
                (
                    "'0044-03-15 12:00:00+00 BC'",
                    Value::TimestampTz(bc(44, 3, 15, (12, 0, 0)).and_utc()),
                ),
                (
                    "'1999-12-31 23:59:59.999999-08'",
                    tstz("2000-01-01 07:59:59.999999"),
                ),
            ],
        ),
        col(
            "c_interval",
            "interval",
            vec![
                ("'1 year 2 mons 3 days 04:05:06.5'", iv("P1Y2M3DT4H5M6.5S")),
                ("'-1 days +02:00:00'", iv("P-1DT2H")),
                ("'0'", iv("PT0S")),
                (
                    "'-1 year -2 mons +3 days -00:00:05.5'",
                    iv("P-1Y-2M3DT-5.5S"),
                ),
                ("'100 hours 0.000001 seconds'", iv("PT100H0.000001S")),
            ],
        ),
        col(
            "c_num",
            "numeric",
            vec![
                ("0", dec("0")),
                ("-0.001", dec("-0.001")),
                ("0.000", dec("0.000")),
                (big, dec(big)),
                ("1e-20", dec("0.00000000000000000001")),
            ],
        ),
        col(
            "c_num38",
            "numeric(38,0)",
            vec![
                (
                    "99999999999999999999999999999999999999",
                    dec("99999999999999999999999999999999999999"),
                ),
                (
                    "-12345678901234567890123456789012345678",
                    dec("-12345678901234567890123456789012345678"),
                ),
                ("0", dec("0")),
                ("1", dec("1")),
                ("-1", dec("-1")),
            ],
        ),
        col(
            "c_num122",
            "numeric(12,2)",
            vec![
                ("12.3", dec("12.30")),
                ("-0.001", dec("0.00")),
                ("9999999999.99", dec("9999999999.99")),
                ("0", dec("0.00")),
                ("-1.5", dec("-1.50")),
            ],
        ),
        col(
            "c_dom",
            "money_amount",
            vec![
                ("1234.5", dec("1234.50")),
                ("0", dec("0.00")),
                ("-0.01", dec("-0.01")),
                ("100", dec("100.00")),
                ("0.1", dec("0.10")),
            ],
        ),
        col(
            "c_uuid",
            "uuid",
            vec![
                (
                    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                    uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                ),
                (
                    "'00000000-0000-0000-0000-000000000000'",
                    uuid("00000000-0000-0000-0000-000000000000"),
                ),
                (
                    "'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'",
                    uuid("ffffffff-ffff-ffff-ffff-ffffffffffff"),
                ),
                (
                    "'{12345678-1234-1234-1234-123456789abc}'",
                    uuid("12345678-1234-1234-1234-123456789abc"),
                ),
                (
                    "'00000000-0000-0000-0000-000000000001'",
                    uuid("00000000-0000-0000-0000-000000000001"),
                ),
            ],
        ),
        col(
            "c_jsonb",
            "jsonb",
            vec![
                (r#"'{"b":1,"a":[1,2]}'"#, json(r#"{"a": [1, 2], "b": 1}"#)),
                ("'[]'", json("[]")),
                (r#"'"é🎉"'"#, json(r#""é🎉""#)),
                ("'null'", json("null")),
                (r#"'{"x": {"y": 1.50}}'"#, json(r#"{"x": {"y": 1.50}}"#)),
            ],
        ),
        col(
            "c_mood",
            "mood",
            vec![
                ("'sad'", t("sad")),
                ("'très bien'", t("très bien")),
                ("'ok'", t("ok")),
                ("'happy'", t("happy")),
                ("'sad'", t("sad")),
            ],
        ),
        col(
            "a_bool",
            "boolean[]",
            vec![
                ("'{t,f,NULL}'", a(vec![b(true), b(false), NULL])),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    "'{{t,f},{f,t}}'",
                    a(vec![a(vec![b(true), b(false)]), a(vec![b(false), b(true)])]),
                ),
                ("'{t}'", a(vec![b(true)])),
            ],
        ),
        col(
            "a_bytea",
            "bytea[]",
            vec![
                (
                    r#"'{"\\x00ff",NULL}'"#,
                    a(vec![Value::Bytes(vec![0, 255]), NULL]),
                ),
                ("'{}'", a(vec![])),
                (r#"'{"\\x"}'"#, a(vec![Value::Bytes(vec![])])),
                ("NULL", NULL),
                (r#"'{"\\x5c22"}'"#, a(vec![Value::Bytes(vec![0x5c, 0x22])])),
            ],
        ),
        col(
            "a_int2",
            "smallint[]",
            vec![
                (
                    "'{1,-32768,NULL}'",
                    a(vec![Value::Int16(1), Value::Int16(i16::MIN), NULL]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    "'{{1},{2}}'",
                    a(vec![a(vec![Value::Int16(1)]), a(vec![Value::Int16(2)])]),
                ),
                ("'{0}'", a(vec![Value::Int16(0)])),
            ],
        ),
        col(
            "a_int4",
            "integer[]",
            vec![
                (
                    "'{1,2,NULL}'",
                    a(vec![Value::Int32(1), Value::Int32(2), NULL]),
                ),
                ("'{}'", a(vec![])),
                (
                    "'{{1,2},{3,4}}'",
                    a(vec![
                        a(vec![Value::Int32(1), Value::Int32(2)]),
                        a(vec![Value::Int32(3), Value::Int32(4)]),
                    ]),
                ),
                ("'{-2147483648}'", a(vec![Value::Int32(i32::MIN)])),
                ("'{NULL}'", a(vec![NULL])),
            ],
        ),
        col(
            "a_int8",
            "bigint[]",
            vec![
                ("'{9223372036854775807}'", a(vec![Value::Int64(i64::MAX)])),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                ("'{{{1}}}'", a(vec![a(vec![a(vec![Value::Int64(1)])])])),
                ("'{NULL,NULL}'", a(vec![NULL, NULL])),
            ],
        ),
        col(
            "a_text",
            "text[][]",
            vec![
                (
                    r#"'{{"a b","c\"d"},{NULL,"NULL"}}'"#,
                    a(vec![a(vec![t("a b"), t("c\"d")]), a(vec![NULL, t("NULL")])]),
                ),
                ("'{}'", a(vec![])),
                (r#"'{"é🎉",""}'"#, a(vec![t("é🎉"), t("")])),
                (
                    r#"'{"back\\slash","{}",",", " x "}'"#,
                    a(vec![t(r"back\slash"), t("{}"), t(","), t(" x ")]),
                ),
                ("'{{{x}}}'", a(vec![a(vec![a(vec![t("x")])])])),
            ],
        ),
        col(
            "a_float4",
            "real[]",
            vec![
                (
                    "'{NaN,Infinity,-Infinity,1.5}'",
                    a(vec![
                        Value::Float32(f32::NAN),
                        Value::Float32(f32::INFINITY),
                        Value::Float32(f32::NEG_INFINITY),
                        Value::Float32(1.5),
                    ]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                ("'{0}'", a(vec![Value::Float32(0.0)])),
                ("'{-0.25}'", a(vec![Value::Float32(-0.25)])),
            ],
        ),
        col(
            "a_float8",
            "double precision[]",
            vec![
                (
                    "'{NaN,1e-300}'",
                    a(vec![Value::Float64(f64::NAN), Value::Float64(1e-300)]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    "'{{1,2},{3,4}}'",
                    a(vec![
                        a(vec![Value::Float64(1.0), Value::Float64(2.0)]),
                        a(vec![Value::Float64(3.0), Value::Float64(4.0)]),
                    ]),
                ),
                ("'{-Infinity}'", a(vec![Value::Float64(f64::NEG_INFINITY)])),
            ],
        ),
        col(
            "a_bpchar",
            "character(3)[]",
            vec![
                ("'{ab,NULL}'", a(vec![t("ab "), NULL])),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (r#"'{"a b"}'"#, a(vec![t("a b")])),
                (r#"'{""}'"#, a(vec![t("   ")])),
            ],
        ),
        col(
            "a_varchar",
            "character varying(10)[]",
            vec![
                (r#"'{ü,"",NULL}'"#, a(vec![t("ü"), t(""), NULL])),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (r#"'{"NULL"}'"#, a(vec![t("NULL")])),
                ("'{x}'", a(vec![t("x")])),
            ],
        ),
        col(
            "a_date",
            "date[]",
            vec![
                (
                    "'{2000-01-01,infinity,-infinity,NULL}'",
                    a(vec![
                        date(2000, 1, 1),
                        Value::Date(NaiveDate::MAX),
                        Value::Date(NaiveDate::MIN),
                        NULL,
                    ]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (r#"'{"0044-03-15 BC"}'"#, a(vec![date(-43, 3, 15)])),
                ("'{1969-12-31}'", a(vec![date(1969, 12, 31)])),
            ],
        ),
        col(
            "a_time",
            "time[]",
            vec![
                (
                    "'{00:00:00,23:59:59.999999}'",
                    a(vec![time("00:00:00"), time("23:59:59.999999")]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                ("'{12:00}'", a(vec![time("12:00:00")])),
                ("'{NULL}'", a(vec![NULL])),
            ],
        ),
        col(
            "a_ts",
            "timestamp[]",
            vec![
                (
                    r#"'{"2000-01-01 10:00:00",infinity}'"#,
                    a(vec![
                        ts("2000-01-01 10:00:00"),
                        Value::Timestamp(NaiveDateTime::MAX),
                    ]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    r#"'{"1969-07-20 20:17:40.5"}'"#,
                    a(vec![ts("1969-07-20 20:17:40.5")]),
                ),
                (
                    "'{-infinity}'",
                    a(vec![Value::Timestamp(NaiveDateTime::MIN)]),
                ),
            ],
        ),
        col(
            "a_tstz",
            "timestamp with time zone[]",
            vec![
                (
                    r#"'{"2024-01-01 10:00:00+02",-infinity}'"#,
                    a(vec![
                        tstz("2024-01-01 08:00:00"),
                        Value::TimestampTz(DateTime::<Utc>::MIN_UTC),
                    ]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    r#"'{"1900-01-01 00:00:00+00"}'"#,
                    a(vec![tstz("1900-01-01 00:00:00")]),
                ),
                (
                    "'{infinity}'",
                    a(vec![Value::TimestampTz(DateTime::<Utc>::MAX_UTC)]),
                ),
            ],
        ),
        col(
            "a_interval",
            "interval[]",
            vec![
                (
                    r#"'{"1 day","-1 days +02:00:00",NULL}'"#,
                    a(vec![iv("P1D"), iv("P-1DT2H"), NULL]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (r#"'{"0"}'"#, a(vec![iv("PT0S")])),
                (r#"'{"1 mon"}'"#, a(vec![iv("P1M")])),
            ],
        ),
        col(
            "a_num",
            "numeric[]",
            vec![
                (
                    "'{1.50,-0.001,NULL,0.000}'",
                    a(vec![dec("1.50"), dec("-0.001"), NULL, dec("0.000")]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    "'{{1,2},{3,4}}'",
                    a(vec![
                        a(vec![dec("1"), dec("2")]),
                        a(vec![dec("3"), dec("4")]),
                    ]),
                ),
                (
                    "'{12345678901234567890123456789012345678}'",
                    a(vec![dec("12345678901234567890123456789012345678")]),
                ),
            ],
        ),
        col(
            "a_num52",
            "numeric(5,2)[]",
            vec![
                (
                    "'{1.5,-0.01,NULL}'",
                    a(vec![dec("1.50"), dec("-0.01"), NULL]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    "'{{1},{2}}'",
                    a(vec![a(vec![dec("1.00")]), a(vec![dec("2.00")])]),
                ),
                ("'{0}'", a(vec![dec("0.00")])),
            ],
        ),
        col(
            "a_uuid",
            "uuid[]",
            vec![
                (
                    "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'",
                    a(vec![uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), NULL]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    "'{00000000-0000-0000-0000-000000000000}'",
                    a(vec![uuid("00000000-0000-0000-0000-000000000000")]),
                ),
                (
                    "'{ffffffff-ffff-ffff-ffff-ffffffffffff}'",
                    a(vec![uuid("ffffffff-ffff-ffff-ffff-ffffffffffff")]),
                ),
            ],
        ),
        col(
            "a_json",
            "json[]",
            vec![
                (
                    r#"'{"{\"a\": 1}","[]"}'"#,
                    a(vec![json(r#"{"a": 1}"#), json("[]")]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                ("'{null}'", a(vec![NULL])),
                (r#"'{"null"}'"#, a(vec![json("null")])),
            ],
        ),
        col(
            "a_jsonb",
            "jsonb[]",
            vec![
                (
                    r#"'{"{\"b\":1,\"a\":2}"}'"#,
                    a(vec![json(r#"{"a": 2, "b": 1}"#)]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (r#"'{"null"}'"#, a(vec![json("null")])),
                (r#"'{"[1,2]",NULL}'"#, a(vec![json("[1, 2]"), NULL])),
            ],
        ),
        col(
            "a_mood",
            "mood[]",
            vec![
                (
                    r#"'{sad,"très bien",NULL}'"#,
                    a(vec![t("sad"), t("très bien"), NULL]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                ("'{ok}'", a(vec![t("ok")])),
                (
                    "'{{happy},{sad}}'",
                    a(vec![a(vec![t("happy")]), a(vec![t("sad")])]),
                ),
            ],
        ),
        col(
            "a_dom",
            "money_amount[]",
            vec![
                (
                    "'{1.5,NULL,-0.01}'",
                    a(vec![dec("1.50"), NULL, dec("-0.01")]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (
                    "'{{1},{2}}'",
                    a(vec![a(vec![dec("1.00")]), a(vec![dec("2.00")])]),
                ),
                ("'{0}'", a(vec![dec("0.00")])),
            ],
        ),
        col(
            "a_oid",
            "oid[]",
            vec![
                (
                    "'{0,4294967295}'",
                    a(vec![Value::Int64(0), Value::Int64(4_294_967_295)]),
                ),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                ("'{1}'", a(vec![Value::Int64(1)])),
                ("'{NULL}'", a(vec![NULL])),
            ],
        ),
        col(
            "a_name",
            "name[]",
            vec![
                (r#"'{pg_class,"a b"}'"#, a(vec![t("pg_class"), t("a b")])),
                ("'{}'", a(vec![])),
                ("NULL", NULL),
                (r#"'{""}'"#, a(vec![t("")])),
                ("'{x}'", a(vec![t("x")])),
            ],
        ),
    ]
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

/// The expected rows: `id` first, then each column's cells; the last row is NULLs.
fn expected_rows(cols: &[Col]) -> Vec<Vec<Value>> {
    (0..=ROWS)
        .map(|r| {
            let mut row = vec![Value::Int32(r as i32 + 1)];
            row.extend(
                cols.iter()
                    .map(|c| c.cells.get(r).map_or(NULL, |cell| cell.1.clone())),
            );
            row
        })
        .collect()
}

/// A fresh database with tables `t` (filled) and `t2`, `t3` (empty, same shape),
/// a connection to it, and the column types as discovery would read them.
async fn setup() -> TestResult<(Client, Vec<PgType>, Vec<Col>)> {
    let pg = Postgres::shared()?;
    let url = pg.create_database()?;
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection: {e}");
        }
    });
    let cols = columns();
    let defs: Vec<String> = cols
        .iter()
        .map(|c| format!("{} {}", c.name, c.sql_type))
        .collect();
    let mut sql = String::from(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'très bien');\n\
         CREATE DOMAIN money_amount AS numeric(12,2) CHECK (VALUE > -1000000);\n",
    );
    sql.push_str(&format!(
        "CREATE TABLE t (id integer PRIMARY KEY, {});\n",
        defs.join(", ")
    ));
    sql.push_str(
        "CREATE TABLE t2 (LIKE t INCLUDING ALL);\nCREATE TABLE t3 (LIKE t INCLUDING ALL);\n",
    );
    for r in 0..=ROWS {
        let literals: Vec<&str> = cols
            .iter()
            .map(|c| c.cells.get(r).map_or("NULL", |cell| cell.0))
            .collect();
        sql.push_str(&format!(
            "INSERT INTO t VALUES ({}, {});\n",
            r + 1,
            literals.join(", ")
        ));
    }
    client.batch_execute(&sql).await?;

    let attrs = client
        .query(
            "SELECT attname::text, atttypid, atttypmod FROM pg_attribute \
             WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[],
        )
        .await?;
    let mut types = Vec::new();
    for row in &attrs {
        types.push(pg_type(&client, row.get(1), row.get(2)).await?);
    }
    assert_eq!(types.len(), cols.len() + 1);
    Ok((client, types, cols))
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A column type from pg_catalog as discovery reads it: domains resolved to
/// their base type, arrays with their element, enums with their labels.
fn pg_type(client: &Client, oid: u32, typmod: i32) -> BoxFuture<'_, TestResult<PgType>> {
    Box::pin(async move {
        let row = client
            .query_one(
                "SELECT typtype::text, typbasetype, typtypmod, typelem, typcategory::text, format_type(oid, $2::int4) \
                 FROM pg_type WHERE oid = $1::oid",
                &[&oid, &typmod],
            )
            .await?;
        let typtype: String = row.get(0);
        if typtype == "d" {
            // The base type's codec under the domain's own OID, which binary
            // arrays of the domain must carry.
            let mut base = pg_type(client, row.get(1), row.get(2)).await?;
            base.oid = oid;
            return Ok(base);
        }
        let elem: u32 = row.get(3);
        let category: String = row.get(4);
        let name: String = row.get(5);
        let element = if category == "A" && elem != 0 {
            Some(pg_type(client, elem, typmod).await?)
        } else {
            None
        };
        let labels = if typtype == "e" {
            client
                .query("SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1::oid ORDER BY enumsortorder", &[&oid])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            vec![]
        };
        let typtype = typtype.chars().next().unwrap_or('b');
        Ok(PgType::from_catalog(oid, &name, typtype, element, labels))
    })
}

/// `SELECT` list of every column of `t`, with json cast to text where the
/// comparison needs equality (json has none).
fn comparable(types: &[PgType], cols: &[Col]) -> String {
    let mut list = vec!["id".to_string()];
    for (c, ty) in cols.iter().zip(&types[1..]) {
        if ty.name.starts_with("json[") || ty.name == "json" {
            list.push(format!("{}::text", c.name));
        } else {
            list.push(c.name.to_string());
        }
    }
    list.join(", ")
}

/// Reads `query` with binary COPY through the reader, decoding every row.
async fn copy_out(client: &Client, query: &str, types: &[PgType]) -> TestResult<Vec<Vec<Value>>> {
    let stream = client
        .copy_out(&format!("COPY ({query}) TO STDOUT (FORMAT binary)"))
        .await?;
    futures_util::pin_mut!(stream);
    let mut reader = CopyOutReader::with_columns(types.len());
    let mut rows = Vec::new();
    while let Some(chunk) = stream.next().await {
        reader.push(chunk?);
        while let Some(row) = reader.next_values(types)? {
            rows.push(row);
        }
    }
    reader.finish()?;
    Ok(rows)
}

async fn copy_in(client: &Client, table: &str, data: Vec<Bytes>) -> TestResult<u64> {
    let sink = client
        .copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await?;
    futures_util::pin_mut!(sink);
    for chunk in data {
        sink.send(chunk).await?;
    }
    Ok(sink.finish().await?)
}

async fn count(client: &Client, sql: &str) -> TestResult<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// `t` and `other` hold the same rows, by equality and by each row's text.
async fn assert_same_table(
    client: &Client,
    other: &str,
    types: &[PgType],
    cols: &[Col],
) -> TestResult {
    let list = comparable(types, cols);
    for (x, y) in [("t", other), (other, "t")] {
        let n = count(
            client,
            &format!(
                "SELECT count(*) FROM (SELECT {list} FROM {x} EXCEPT SELECT {list} FROM {y}) d"
            ),
        )
        .await?;
        assert_eq!(n, 0, "rows of {x} missing from {y}");
    }
    let n = count(
        client,
        &format!("SELECT count(*) FROM t FULL JOIN {other} o USING (id) WHERE t::text IS DISTINCT FROM o::text"),
    )
    .await?;
    assert_eq!(n, 0, "t and {other} differ in some row's text");
    Ok(())
}

#[tokio::test]
async fn binary_copy_out_decodes_every_type() -> TestResult {
    let (client, types, cols) = setup().await?;
    assert!(types.iter().all(PgType::binary_supported));
    let rows = copy_out(&client, "SELECT * FROM t ORDER BY id", &types).await?;
    let want = expected_rows(&cols);
    assert_eq!(rows.len(), want.len());
    let mut failures = Vec::new();
    for (r, (got, want)) in rows.iter().zip(&want).enumerate() {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            if !same(g, w) {
                let name = if i == 0 { "id" } else { cols[i - 1].name };
                failures.push(format!(
                    "row {} {name} ({}): got {g:?}, want {w:?}",
                    r + 1,
                    types[i].name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn binary_copy_in_writes_what_was_read() -> TestResult {
    let (client, types, cols) = setup().await?;

    // The expected values, encoded by the writer, sent in several chunks.
    let mut writer = CopyInWriter::with_capacity(256);
    let mut chunks = Vec::new();
    for row in expected_rows(&cols) {
        writer.write_row(&types, &row)?;
        chunks.push(writer.take());
    }
    chunks.push(writer.finish());
    assert_eq!(copy_in(&client, "t2", chunks).await?, ROWS as u64 + 1);
    assert_same_table(&client, "t2", &types, &cols).await?;

    // Rows passed through undecoded, the PostgreSQL-to-PostgreSQL fast path.
    let stream = client.copy_out("COPY t TO STDOUT (FORMAT binary)").await?;
    futures_util::pin_mut!(stream);
    let mut reader = CopyOutReader::new();
    let mut writer = CopyInWriter::new();
    while let Some(chunk) = stream.next().await {
        reader.push(chunk?);
        while let Some(row) = reader.next_row()? {
            writer.write_raw(row);
        }
    }
    reader.finish()?;
    assert_eq!(
        copy_in(&client, "t3", vec![writer.finish()]).await?,
        ROWS as u64 + 1
    );
    assert_same_table(&client, "t3", &types, &cols).await?;
    Ok(())
}

/// Every row of `t` in text format (simple query protocol), as PostgreSQL
/// prints it under the session's settings.
async fn text_rows(client: &Client) -> TestResult<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    for m in client.simple_query("SELECT * FROM t ORDER BY id").await? {
        if let SimpleQueryMessage::Row(r) = m {
            rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    Ok(rows)
}

#[tokio::test]
async fn text_output_decodes_like_binary() -> TestResult {
    let (client, types, cols) = setup().await?;
    let binary = copy_out(&client, "SELECT * FROM t ORDER BY id", &types).await?;
    let settings = [
        ("UTC", "postgres", "hex"),
        ("Asia/Kolkata", "postgres_verbose", "escape"),
        ("America/St_Johns", "sql_standard", "hex"),
        ("Europe/Paris", "iso_8601", "escape"),
    ];
    let mut failures = Vec::new();
    for (zone, style, bytea) in settings {
        client
            .batch_execute(&format!(
                "SET TimeZone = '{zone}'; SET IntervalStyle = {style}; SET bytea_output = {bytea}; SET DateStyle = ISO"
            ))
            .await?;
        let text = text_rows(&client).await?;
        assert_eq!(text.len(), binary.len());
        for (r, (trow, brow)) in text.iter().zip(&binary).enumerate() {
            for (i, (tv, bv)) in trow.iter().zip(brow).enumerate() {
                let name = if i == 0 { "id" } else { cols[i - 1].name };
                let got = match tv {
                    None => NULL,
                    Some(s) => match decode_text(&types[i], s) {
                        Ok(v) => v,
                        Err(e) => {
                            failures.push(format!(
                                "{zone}/{style}/{bytea} row {} {name}: {s:?}: {e}",
                                r + 1
                            ));
                            continue;
                        }
                    },
                };
                if !same(&got, bv) {
                    failures.push(format!("{zone}/{style}/{bytea} row {} {name}: text {tv:?} gave {got:?}, binary {bv:?}", r + 1));
                }
                // With IntervalStyle iso_8601 PostgreSQL prints exactly our text.
                if style == "iso_8601" && types[i].name == "interval" {
                    if let (Some(s), Value::Engine { text, .. }) = (tv, bv) {
                        assert_eq!(s, text, "row {} {name}", r + 1);
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// Values that arrive as text (another engine's strings, or PostgreSQL's own
/// text output) are written into typed columns by parsing them.
#[tokio::test]
async fn text_values_encode_into_typed_columns() -> TestResult {
    let (client, types, cols) = setup().await?;
    client
        .batch_execute("SET TimeZone = 'Asia/Kolkata'; SET IntervalStyle = postgres")
        .await?;
    let mut writer = CopyInWriter::new();
    for row in text_rows(&client).await? {
        let values: Vec<Value> = row
            .into_iter()
            .map(|v| v.map_or(NULL, Value::Text))
            .collect();
        writer.write_row(&types, &values)?;
    }
    assert_eq!(
        copy_in(&client, "t2", vec![writer.finish()]).await?,
        ROWS as u64 + 1
    );
    assert_same_table(&client, "t2", &types, &cols).await?;
    Ok(())
}
