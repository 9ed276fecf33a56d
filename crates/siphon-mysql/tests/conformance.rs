//! MariaDB runs the connector conformance suite of `siphon_testkit::conformance`
//! with the MySQL source and sink.
//!
//! A MySQL database is siphon's schema, so a table's name carries its
//! database (`t_123_4.orders`), and the suite reads a table copied from a
//! source database back from the target under the same name. Each case's
//! source and target are therefore databases of one name on two servers: the
//! first database a case asks for is made on the shared server, the second,
//! of the same name, on a second server of this test binary (the pairing is
//! per thread, and every case runs on a thread of its own).

use std::cell::RefCell;
use std::sync::OnceLock;

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use siphon_core::{Decimal, TableName, Value};
use siphon_mysql::{MySqlSink, MySqlSource};
use siphon_testkit::conformance::{
    assert_rows, create_table, discover_one, identifiers, name_of, read_all, source, types,
    ColumnSpec, Harness, HarnessError, KeySpec, Literal, TableSpec, TypeCase,
};
use siphon_testkit::{unique_name, MariaDb};

struct Maria;

thread_local! {
    /// The database name this thread's case uses, and how many of its
    /// databases were made (the first on the shared server, the second on
    /// the other one).
    static PAIR: RefCell<(String, usize)> = const { RefCell::new((String::new(), 0)) };
}

/// The second server: targets.
fn second() -> &'static MariaDb {
    static SECOND: OnceLock<MariaDb> = OnceLock::new();
    SECOND.get_or_init(|| MariaDb::start().expect("a second MariaDB server"))
}

fn first() -> &'static MariaDb {
    MariaDb::shared().expect("the shared MariaDB server")
}

/// The server and database a URL names.
fn server_of(url: &str) -> (&'static MariaDb, &str) {
    let db = url.rsplit('/').next().unwrap_or(url);
    let db = db.split('?').next().unwrap_or(db);
    let server = if url.contains(&format!(":{}/", first().port())) {
        first()
    } else {
        second()
    };
    (server, db)
}

impl Harness for Maria {
    type Source = MySqlSource;
    type Sink = MySqlSink;

    fn create_database(&self) -> Result<String, HarnessError> {
        let (name, n) = PAIR.with(|p| {
            let mut p = p.borrow_mut();
            if p.1 % 2 == 0 {
                p.0 = unique_name("c");
            }
            p.1 += 1;
            (p.0.clone(), p.1)
        });
        let server = if n % 2 == 1 { first() } else { second() };
        Ok(server.create_database_named(&name)?)
    }

    fn execute(&self, db: &str, sql: &str) -> Result<(), HarnessError> {
        let (server, name) = server_of(db);
        server.query_in(
            name,
            &format!("SET time_zone = '+00:00'; SET NAMES utf8mb4;\n{sql}"),
        )?;
        Ok(())
    }

    async fn open_source(&self, db: &str) -> siphon_core::Result<MySqlSource> {
        MySqlSource::connect(db).await
    }

    async fn open_sink(&self, db: &str) -> siphon_core::Result<MySqlSink> {
        MySqlSink::connect(db).await
    }

    fn table_name(&self, name: &str) -> TableName {
        let db = PAIR.with(|p| p.borrow().0.clone());
        TableName::new(Some(&db), name)
    }

    fn integer_type(&self) -> &str {
        "bigint"
    }

    fn text_type(&self) -> &str {
        // Binary and without padding, so the suite's keys `a`/`A` and ``/` `
        // are distinct; case-insensitive keys are tested in tests/source.rs.
        "varchar(700) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
    }

    fn quote(&self, name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    fn literal(&self, value: &Literal) -> String {
        match value {
            Literal::Null => "NULL".to_string(),
            Literal::Int(n) => n.to_string(),
            Literal::Text(s) => mysql_string(s),
            Literal::Sql(s) => s.clone(),
        }
    }

    fn types(&self) -> Vec<TypeCase> {
        mysql_types()
    }
}

/// A MySQL string literal (backslashes are escapes in MySQL strings).
fn mysql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn lit(sql: &str, v: Value) -> (String, Value) {
    (sql.to_string(), v)
}

fn text(s: &str) -> (String, Value) {
    (mysql_string(s), Value::Text(s.to_string()))
}

fn dec(s: &str) -> Value {
    Value::Decimal(s.parse::<Decimal>().unwrap())
}

fn naive(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

fn date(y: i32, m: u32, d: u32) -> Value {
    Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
}

fn time(text: &str) -> Value {
    Value::Engine {
        type_name: "time".into(),
        text: text.into(),
    }
}

/// Every MySQL type the source maps, with the extremes MariaDB holds.
fn mysql_types() -> Vec<TypeCase> {
    let long: String = "Größe 日本 ✓ 🦀 ".repeat(2000);
    let all_bytes: Vec<u8> = (0..=255).collect();
    let hex: String = all_bytes.iter().map(|b| format!("{b:02X}")).collect();
    let u64max = "18446744073709551615";
    let d65 = format!("{}.{}", "9".repeat(35), "9".repeat(30));
    vec![
        TypeCase::new(
            "tinyint(1)",
            vec![lit("1", Value::Bool(true)), lit("0", Value::Bool(false))],
        ),
        TypeCase::new(
            "tinyint",
            vec![
                lit("-128", Value::Int16(-128)),
                lit("127", Value::Int16(127)),
            ],
        ),
        TypeCase::new(
            "tinyint unsigned",
            vec![lit("255", Value::Int16(255)), lit("0", Value::Int16(0))],
        ),
        TypeCase::new(
            "smallint",
            vec![
                lit("-32768", Value::Int16(i16::MIN)),
                lit("32767", Value::Int16(i16::MAX)),
            ],
        ),
        TypeCase::new("smallint unsigned", vec![lit("65535", Value::Int32(65535))]),
        TypeCase::new(
            "mediumint",
            vec![
                lit("-8388608", Value::Int32(-8388608)),
                lit("8388607", Value::Int32(8388607)),
            ],
        ),
        TypeCase::new(
            "mediumint unsigned",
            vec![lit("16777215", Value::Int32(16777215))],
        ),
        TypeCase::new(
            "int",
            vec![
                lit("-2147483648", Value::Int32(i32::MIN)),
                lit("2147483647", Value::Int32(i32::MAX)),
            ],
        ),
        TypeCase::new(
            "int unsigned",
            vec![lit("4294967295", Value::Int64(4294967295))],
        ),
        TypeCase::new(
            "bigint",
            vec![
                lit("-9223372036854775808", Value::Int64(i64::MIN)),
                lit("9223372036854775807", Value::Int64(i64::MAX)),
            ],
        ),
        TypeCase::new(
            "bigint unsigned",
            vec![
                lit(u64max, dec(u64max)),
                lit("9223372036854775808", dec("9223372036854775808")),
                lit("0", dec("0")),
            ],
        ),
        TypeCase::new(
            "decimal(65,30)",
            vec![
                lit(&d65, dec(&d65)),
                lit(&format!("-{d65}"), dec(&format!("-{d65}"))),
                lit(
                    "-0.000000000000000000000000000001",
                    dec("-0.000000000000000000000000000001"),
                ),
                lit("12.5", dec("12.500000000000000000000000000000")),
            ],
        ),
        TypeCase::new(
            "decimal(12,2)",
            vec![
                lit("9999999999.99", dec("9999999999.99")),
                lit("-0.01", dec("-0.01")),
            ],
        ),
        TypeCase::new(
            "float",
            vec![
                lit("1.5", Value::Float32(1.5)),
                lit("-0.25", Value::Float32(-0.25)),
            ],
        ),
        TypeCase::new(
            "double",
            vec![
                lit("1.7976931348623157e308", Value::Float64(f64::MAX)),
                lit(
                    "-2.2250738585072014e-308",
                    Value::Float64(-f64::MIN_POSITIVE),
                ),
                lit("0.1", Value::Float64(0.1)),
            ],
        ),
        TypeCase::new(
            "varchar(16) CHARACTER SET utf8mb4",
            vec![text("exactly sixteen!"), text(""), text("🦀👍🏽 Größe")],
        ),
        TypeCase::new(
            "varchar(32) CHARACTER SET latin1",
            vec![text("Größe café ÿ"), text("plain")],
        ),
        TypeCase::new(
            "longtext",
            vec![
                text(&long),
                text("it's \"quoted\"\n\ttabbed \\ 🦀"),
                text("NULL"),
            ],
        ),
        TypeCase::new("char(3)", vec![text("abc"), text("日本語")]),
        TypeCase::new(
            "varbinary(16)",
            vec![
                lit("X''", Value::Bytes(vec![])),
                lit("X'00FF'", Value::Bytes(vec![0, 255])),
            ],
        ),
        TypeCase::new(
            "blob",
            vec![lit(&format!("X'{hex}'"), Value::Bytes(all_bytes))],
        ),
        TypeCase::new(
            "binary(4)",
            vec![lit("X'01'", Value::Bytes(vec![1, 0, 0, 0]))],
        ),
        TypeCase::new(
            "date",
            vec![
                lit("'1000-01-01'", date(1000, 1, 1)),
                lit("'9999-12-31'", date(9999, 12, 31)),
                lit("'2024-02-29'", date(2024, 2, 29)),
            ],
        ),
        TypeCase::new(
            "time(6)",
            vec![
                lit("'-838:59:59.000000'", time("-838:59:59")),
                lit("'838:59:59'", time("838:59:59")),
                lit("'-00:00:00.000001'", time("-00:00:00.000001")),
                lit("'12:34:56.123456'", time("12:34:56.123456")),
            ],
        ),
        TypeCase::new("time", vec![lit("'100:00:00'", time("100:00:00"))]),
        TypeCase::new(
            "datetime(6)",
            vec![
                lit(
                    "'1000-01-01 00:00:00.000000'",
                    Value::Timestamp(naive("1000-01-01 00:00:00")),
                ),
                lit(
                    "'9999-12-31 23:59:59.999999'",
                    Value::Timestamp(naive("9999-12-31 23:59:59.999999")),
                ),
            ],
        ),
        TypeCase::new(
            "datetime",
            vec![lit(
                "'2024-02-29 12:34:56'",
                Value::Timestamp(naive("2024-02-29 12:34:56")),
            )],
        ),
        TypeCase::new(
            "timestamp(6) NULL",
            vec![
                lit(
                    "'1970-01-01 00:00:01.000000'",
                    Value::TimestampTz(Utc.from_utc_datetime(&naive("1970-01-01 00:00:01"))),
                ),
                lit(
                    "'2038-01-19 03:14:07.999999'",
                    Value::TimestampTz(Utc.from_utc_datetime(&naive("2038-01-19 03:14:07.999999"))),
                ),
            ],
        ),
        TypeCase::new(
            "year",
            vec![
                lit("1901", Value::Int16(1901)),
                lit("2155", Value::Int16(2155)),
            ],
        ),
        TypeCase::new(
            "enum('small','Medium','it''s')",
            vec![text("Medium"), text("it's")],
        ),
        TypeCase::new("set('a','b','c')", vec![text("a,c"), text("")]),
        TypeCase::new(
            "json",
            vec![
                lit(
                    r#"'{"a":[1,2,{"b":null}],"é":"日本"}'"#,
                    Value::Json(r#"{"a":[1,2,{"b":null}],"é":"日本"}"#.into()),
                ),
                lit("'[]'", Value::Json("[]".into())),
            ],
        ),
        TypeCase::new(
            "bit(1)",
            vec![
                lit("b'1'", Value::Bool(true)),
                lit("b'0'", Value::Bool(false)),
            ],
        ),
        TypeCase::new("bit(10)", vec![lit("b'1111111111'", Value::Int64(1023))]),
        TypeCase::new(
            "bit(64)",
            vec![
                lit(u64max, dec(u64max)),
                lit(
                    "b'1000000000000000000000000000000000000000000000000000000000000000'",
                    dec("9223372036854775808"),
                ),
            ],
        ),
    ]
}

fn harness() -> Maria {
    Maria
}

/// Every type the source maps reads back with its extremes and NULLs, in
/// chunks of two rows.
#[tokio::test]
async fn types_read_by_the_source() {
    let h = harness();
    let cases = h.types();
    let mut columns = vec![ColumnSpec {
        name: "id".into(),
        native_type: "bigint".into(),
        not_null: true,
    }];
    columns.extend(cases.iter().enumerate().map(|(i, c)| ColumnSpec {
        name: format!("c{i}"),
        native_type: c.native_type.clone(),
        not_null: false,
    }));
    let depth = cases.iter().map(|c| c.values.len()).max().unwrap();
    let (mut literals, mut want) = (Vec::new(), Vec::new());
    for r in 0..=depth {
        let id = r as i64 + 1;
        let (mut l, mut v) = (vec![Literal::Int(id)], vec![Value::Int64(id)]);
        for c in &cases {
            match c.values.get(r) {
                Some((sql, value)) => {
                    l.push(Literal::Sql(sql.clone()));
                    v.push(value.clone());
                }
                None => {
                    l.push(Literal::Null);
                    v.push(Value::Null);
                }
            }
        }
        literals.push(l);
        want.push(v);
    }
    let spec = TableSpec {
        schema: None,
        name: "all_types".into(),
        columns,
        key: KeySpec::Primary(vec![0]),
    };
    let db = siphon_testkit::conformance::database(&h);
    create_table(&h, &db, &spec, &literals);
    let src = source(&h, &db).await;
    let table = discover_one(&src, &name_of(&h, &spec)).await;
    let got = read_all(&src, &table, 2).await;
    assert_rows("read from MariaDB", &table, &got, &want);
}

#[tokio::test]
async fn types_round_trip_by_load() {
    types::round_trip_by_load(&harness()).await;
}

#[tokio::test]
async fn types_round_trip_by_apply() {
    types::round_trip_by_apply(&harness()).await;
}

#[tokio::test]
async fn composite_text_key() {
    siphon_testkit::conformance::source::composite_text_key(&harness()).await;
}

#[tokio::test]
async fn poll_in_cursor_order() {
    siphon_testkit::conformance::source::poll_in_cursor_order(&harness()).await;
}

#[tokio::test]
async fn empty_table() {
    siphon_testkit::conformance::source::empty_table(&harness()).await;
}

#[tokio::test]
async fn unique_not_null_key() {
    siphon_testkit::conformance::source::unique_not_null_key(&harness()).await;
}

#[tokio::test]
async fn keyless_table() {
    siphon_testkit::conformance::source::keyless_table(&harness()).await;
}

#[tokio::test]
async fn odd_identifiers() {
    identifiers::odd_identifiers(&harness()).await;
}

#[tokio::test]
async fn resume_after_a_kill_inside_a_chunk() {
    siphon_testkit::conformance::sink::resume_after_a_kill_inside_a_chunk(&harness()).await;
}

#[tokio::test]
async fn replay_is_idempotent() {
    siphon_testkit::conformance::sink::replay_is_idempotent(&harness()).await;
}

#[tokio::test]
async fn stale_epoch_is_fenced() {
    siphon_testkit::conformance::sink::stale_epoch_is_fenced(&harness()).await;
}

#[tokio::test]
async fn checkpoints_of_look_alike_names() {
    identifiers::checkpoints_of_look_alike_names(&harness()).await;
}
