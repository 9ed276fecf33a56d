//! Unit tests of the codec: both formats, every type, malformed input.

use super::binary::*;
use super::encode_text;
use super::text::*;
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
    // The text siphon writes reads back as the same value.
    let mut written = String::new();
    encode_text(t, &v, &mut written).unwrap_or_else(|e| panic!("{} {v:?}: {e}", t.name));
    let again = decode_text(t, &written).unwrap_or_else(|e| panic!("{} {written:?}: {e}", t.name));
    assert!(
        same(&again, &v),
        "{}: written as {written:?}, read back as {again:?}, wanted {v:?}",
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
    // Beyond chrono's years, up to PostgreSQL's last: carried as text.
    let far = |name: &str, text: &str| Value::Engine {
        type_name: name.into(),
        text: text.into(),
    };
    let last = "294276-12-31 23:59:59.999999";
    check(&t, far(&t.name, last), last);
    let mut out = Vec::new();
    encode_binary(&t, &far(&t.name, last), &mut out).unwrap();
    let pg_last = 9_223_371_331_199_999_999i64;
    assert_eq!(i64::from_be_bytes(out[..8].try_into().unwrap()), pg_last);
    // Past PostgreSQL's range is an error, not a value.
    let e = decode_binary(&t, &(i64::MAX - 1).to_be_bytes()).unwrap_err();
    assert!(matches!(e, CodecError::OutOfRange { .. }), "{e}");
    assert!(decode_text(&t, "294277-01-01 00:00:00").is_err());
    let d = ty(1082, "date");
    check(&d, far("date", "5874897-12-31"), "5874897-12-31");
    assert!(decode_text(&d, "5874898-01-01").is_err());

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
    // 24:00:00, the end of a day, is kept.
    check(&tm, Value::Time(Value::END_OF_DAY), "24:00:00");
    assert_eq!(
        decode_binary(&tm, &MICROS_PER_DAY.to_be_bytes()).unwrap(),
        Value::Time(Value::END_OF_DAY)
    );
    assert!(decode_binary(&tm, &(MICROS_PER_DAY + 1).to_be_bytes()).is_err());
    assert!(decode_text(&tm, "24:00:01").is_err());
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
    // Lower bounds other than 1 are kept: the array travels as its text form.
    let bounded = |text: &str| Value::Engine {
        type_name: "integer[]".into(),
        text: text.into(),
    };
    check(&i4, bounded("[0:1]={5,6}"), "[0:1]={5,6}");
    check(
        &i4,
        bounded("[-2:-1][3:4]={{1,NULL},{3,4}}"),
        "[-2:-1][3:4]={{1,NULL},{3,4}}",
    );
    let mut out = Vec::new();
    encode_binary(&i4, &bounded("[0:1]={5,6}"), &mut out).unwrap();
    assert_eq!(
        &out[12..20],
        &[0, 0, 0, 2, 0, 0, 0, 0],
        "size 2, lower bound 0"
    );
    assert!(decode_text(&i4, "[0:1={5,6}").is_err());
    // box arrays separate elements with `;`, whose text holds commas.
    let boxes = PgType::array(1020, "box[]", PgType::text_only(603, "box"));
    let b = |t: &str| Value::Engine {
        type_name: "box".into(),
        text: t.into(),
    };
    let v = a(vec![b("(2,2),(0,0)"), Value::Null, b("(1,1),(0,0)")]);
    assert_eq!(
        decode_text(&boxes, "{(2,2),(0,0);NULL;(1,1),(0,0)}").unwrap(),
        v
    );
    let mut written = String::new();
    encode_text(&boxes, &v, &mut written).unwrap();
    assert_eq!(written, "{(2,2),(0,0);NULL;(1,1),(0,0)}");
    assert!(decode_text(&i4, "[0:1]={5,x}").is_err());
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
