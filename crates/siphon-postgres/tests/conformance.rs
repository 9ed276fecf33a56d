//! PostgreSQL runs the connector conformance suite of `siphon_testkit::conformance`,
//! against one PostgreSQL 15 shared by this test binary, a database per case.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use siphon_core::{Decimal, TableName, Value};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_testkit::conformance::{
    identifiers, log, sink, source, types, Harness, HarnessError, TypeCase,
};
use siphon_testkit::Postgres;

struct Pg(&'static Postgres);

fn harness() -> Pg {
    Pg(Postgres::shared().expect("the shared PostgreSQL server"))
}

/// The database a URL of the shared server names.
fn database_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

impl Harness for Pg {
    type Source = PostgresSource;
    type Sink = PostgresSink;

    fn create_database(&self) -> Result<String, HarnessError> {
        Ok(self.0.create_database()?)
    }

    fn execute(&self, db: &str, sql: &str) -> Result<(), HarnessError> {
        self.0.query_in(database_of(db), sql)?;
        Ok(())
    }

    async fn open_source(&self, db: &str) -> siphon_core::Result<PostgresSource> {
        PostgresSource::connect(db).await
    }

    async fn open_sink(&self, db: &str) -> siphon_core::Result<PostgresSink> {
        PostgresSink::connect(db).await
    }

    fn table_name(&self, name: &str) -> TableName {
        TableName::new(Some("public"), name)
    }

    fn create_schema_sql(&self, name: &str) -> Option<String> {
        Some(format!("CREATE SCHEMA {}", self.quote(name)))
    }

    fn has_native_path(&self) -> bool {
        true
    }

    fn integer_type(&self) -> &str {
        "bigint"
    }

    fn text_type(&self) -> &str {
        "text"
    }

    fn types(&self) -> Vec<TypeCase> {
        pg_types()
    }
}

fn lit(sql: &str, v: Value) -> (String, Value) {
    (sql.to_string(), v)
}

fn dec(s: &str) -> Value {
    Value::Decimal(s.parse::<Decimal>().unwrap())
}

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn date(y: i32, m: u32, d: u32) -> Value {
    Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
}

fn naive(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

fn tstz(s: &str) -> Value {
    Value::TimestampTz(Utc.from_utc_datetime(&naive(s)))
}

fn time(s: &str) -> Value {
    Value::Time(NaiveTime::parse_from_str(s, "%H:%M:%S%.f").unwrap())
}

fn far(type_name: &str, text: &str) -> Value {
    Value::Engine {
        type_name: type_name.into(),
        text: text.into(),
    }
}

/// A representative of every family the connector carries (the full list is
/// `types_roundtrip.rs`), with PostgreSQL's extremes.
fn pg_types() -> Vec<TypeCase> {
    let all_bytes: Vec<u8> = (0..=255).collect();
    let hex: String = all_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let nines = "9".repeat(1000);
    vec![
        TypeCase::new(
            "boolean",
            vec![
                lit("true", Value::Bool(true)),
                lit("false", Value::Bool(false)),
            ],
        ),
        TypeCase::new(
            "smallint",
            vec![
                lit("-32768", Value::Int16(i16::MIN)),
                lit("32767", Value::Int16(i16::MAX)),
            ],
        ),
        TypeCase::new(
            "integer",
            vec![
                lit("-2147483648", Value::Int32(i32::MIN)),
                lit("2147483647", Value::Int32(i32::MAX)),
            ],
        ),
        TypeCase::new(
            "bigint",
            vec![
                lit("-9223372036854775808", Value::Int64(i64::MIN)),
                lit("9223372036854775807", Value::Int64(i64::MAX)),
                lit("0", Value::Int64(0)),
            ],
        ),
        TypeCase::new(
            "real",
            vec![
                lit("'3.4028235e38'", Value::Float32(f32::MAX)),
                lit("'-3.4028235e38'", Value::Float32(f32::MIN)),
                lit("'NaN'", Value::Float32(f32::NAN)),
                lit("'Infinity'", Value::Float32(f32::INFINITY)),
                lit("'-Infinity'", Value::Float32(f32::NEG_INFINITY)),
                lit("'1e-45'", Value::Float32(f32::from_bits(1))),
            ],
        ),
        TypeCase::new(
            "double precision",
            vec![
                lit("'1.7976931348623157e308'", Value::Float64(f64::MAX)),
                lit("'-1.7976931348623157e308'", Value::Float64(f64::MIN)),
                lit("'NaN'", Value::Float64(f64::NAN)),
                lit("'Infinity'", Value::Float64(f64::INFINITY)),
                lit("'-Infinity'", Value::Float64(f64::NEG_INFINITY)),
                lit("'5e-324'", Value::Float64(f64::from_bits(1))),
                lit("'-0.1'", Value::Float64(-0.1)),
            ],
        ),
        TypeCase::new(
            "numeric",
            vec![
                lit("'NaN'", Value::Decimal(Decimal::nan())),
                lit("'Infinity'", Value::Decimal(Decimal::infinity(false))),
                lit("'-Infinity'", Value::Decimal(Decimal::infinity(true))),
                lit("0.000", dec("0.000")),
                lit("1e-20", dec("0.00000000000000000001")),
            ],
        ),
        TypeCase::new(
            "numeric(1000,0)",
            vec![
                lit(&nines, dec(&nines)),
                lit(&format!("-{nines}"), dec(&format!("-{nines}"))),
            ],
        ),
        TypeCase::new(
            "numeric(12,2)",
            vec![
                lit("9999999999.99", dec("9999999999.99")),
                lit("12.3", dec("12.30")),
                lit("-0.01", dec("-0.01")),
            ],
        ),
        TypeCase::new(
            "text",
            vec![
                lit("''", t("")),
                lit(
                    "repeat('Größe 日本 ✓ ', 20000)",
                    t(&"Größe 日本 ✓ ".repeat(20000)),
                ),
                lit(
                    r#"'quote"back\slash{},NULL it''s'"#,
                    t(r#"quote"back\slash{},NULL it's"#),
                ),
                lit(r"E'tab\there\nnewline'", t("tab\there\nnewline")),
                lit("'NULL'", t("NULL")),
            ],
        ),
        TypeCase::new(
            "character varying(20)",
            vec![
                lit("'ü'", t("ü")),
                lit("''", t("")),
                lit("'exactly twenty chars'", t("exactly twenty chars")),
            ],
        ),
        TypeCase::new(
            "character(5)",
            vec![lit("'ab'", t("ab   ")), lit("'héllo'", t("héllo"))],
        ),
        TypeCase::new(
            "bytea",
            vec![
                lit(r"'\x'", Value::Bytes(vec![])),
                lit(&format!(r"'\x{hex}'"), Value::Bytes(all_bytes)),
                lit(
                    "decode(repeat('00ff', 50000), 'hex')",
                    Value::Bytes([0u8, 255].repeat(50000)),
                ),
            ],
        ),
        TypeCase::new(
            "date",
            vec![
                lit("'4713-01-01 BC'", date(-4712, 1, 1)),
                lit("'5874897-12-31'", far("date", "5874897-12-31")),
                lit("'2024-02-29'", date(2024, 2, 29)),
                lit("'infinity'", Value::Date(NaiveDate::MAX)),
                lit("'-infinity'", Value::Date(NaiveDate::MIN)),
            ],
        ),
        TypeCase::new(
            "time",
            vec![
                lit("'00:00:00'", time("00:00:00")),
                lit("'23:59:59.999999'", time("23:59:59.999999")),
                lit("'24:00:00'", Value::Time(Value::END_OF_DAY)),
            ],
        ),
        TypeCase::new(
            "timestamp",
            vec![
                lit(
                    "'4713-01-01 00:00:00 BC'",
                    Value::Timestamp(
                        NaiveDate::from_ymd_opt(-4712, 1, 1)
                            .unwrap()
                            .and_hms_opt(0, 0, 0)
                            .unwrap(),
                    ),
                ),
                lit(
                    "'294276-12-31 23:59:59.999999'",
                    far(
                        "timestamp without time zone",
                        "294276-12-31 23:59:59.999999",
                    ),
                ),
                lit(
                    "'2024-02-29 12:34:56.123456'",
                    Value::Timestamp(naive("2024-02-29 12:34:56.123456")),
                ),
                lit("'infinity'", Value::Timestamp(NaiveDateTime::MAX)),
                lit("'-infinity'", Value::Timestamp(NaiveDateTime::MIN)),
            ],
        ),
        TypeCase::new(
            "timestamp with time zone",
            vec![
                lit("'2024-01-01 10:00:00.5+02'", tstz("2024-01-01 08:00:00.5")),
                lit(
                    "'1999-12-31 23:59:59.999999-08'",
                    tstz("2000-01-01 07:59:59.999999"),
                ),
                lit("'infinity'", Value::TimestampTz(DateTime::<Utc>::MAX_UTC)),
                lit("'-infinity'", Value::TimestampTz(DateTime::<Utc>::MIN_UTC)),
            ],
        ),
        TypeCase::new(
            "interval",
            vec![
                lit(
                    "'1 year 2 mons 3 days 04:05:06.5'",
                    far("interval", "P1Y2M3DT4H5M6.5S"),
                ),
                lit("'-1 days +02:00:00'", far("interval", "P-1DT2H")),
            ],
        ),
        TypeCase::new(
            "inet",
            vec![
                lit("'192.168.0.1/24'", far("inet", "192.168.0.1/24")),
                lit("'2001:db8::/32'", far("inet", "2001:db8::/32")),
            ],
        ),
        TypeCase::new(
            "money",
            vec![lit(
                "'-92233720368547758.08'",
                far("money", "-$92,233,720,368,547,758.08"),
            )],
        ),
        TypeCase::new(
            "bit varying(8)",
            vec![
                lit("B'1011'", far("bit varying(8)", "1011")),
                lit("B''", far("bit varying(8)", "")),
            ],
        ),
        TypeCase::new(
            "time with time zone",
            vec![lit(
                "'23:59:59.999999-15:59'",
                far("time with time zone", "23:59:59.999999-15:59"),
            )],
        ),
        TypeCase::new(
            "int4range",
            vec![
                lit("'[1,10)'", far("int4range", "[1,10)")),
                lit("'empty'", far("int4range", "empty")),
            ],
        ),
        TypeCase::new(
            "xml",
            vec![lit("'<a b=\"ü\">x</a>'", far("xml", "<a b=\"ü\">x</a>"))],
        ),
        TypeCase::new(
            "tsvector",
            vec![lit("'a fat cat'", far("tsvector", "'a' 'cat' 'fat'"))],
        ),
        TypeCase::new(
            "numeric[]",
            vec![lit(
                "'{NaN,1.50,NULL,-Infinity}'",
                Value::Array(vec![
                    Value::Decimal(Decimal::nan()),
                    dec("1.50"),
                    Value::Null,
                    Value::Decimal(Decimal::infinity(true)),
                ]),
            )],
        ),
        TypeCase::new(
            "uuid",
            vec![
                lit(
                    "'00000000-0000-0000-0000-000000000000'",
                    Value::Uuid(uuid::Uuid::nil()),
                ),
                lit(
                    "'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'",
                    Value::Uuid(uuid::Uuid::max()),
                ),
            ],
        ),
        TypeCase::new(
            "json",
            vec![
                lit(
                    r#"'{"b": 1,  "a": [1,2]}'"#,
                    Value::Json(r#"{"b": 1,  "a": [1,2]}"#.into()),
                ),
                lit(r#"'"é🎉"'"#, Value::Json(r#""é🎉""#.into())),
            ],
        ),
        TypeCase::new(
            "jsonb",
            vec![
                lit(
                    r#"'{"b":1,"a":[1,2]}'"#,
                    Value::Json(r#"{"a": [1, 2], "b": 1}"#.into()),
                ),
                lit("'null'", Value::Json("null".into())),
            ],
        ),
        TypeCase::new(
            "integer[]",
            vec![
                lit(
                    "'{1,NULL,-2147483648}'",
                    Value::Array(vec![Value::Int32(1), Value::Null, Value::Int32(i32::MIN)]),
                ),
                lit("'{}'", Value::Array(vec![])),
                lit(
                    "'{{1,2},{3,4}}'",
                    Value::Array(vec![
                        Value::Array(vec![Value::Int32(1), Value::Int32(2)]),
                        Value::Array(vec![Value::Int32(3), Value::Int32(4)]),
                    ]),
                ),
            ],
        ),
        TypeCase::new(
            "text[]",
            vec![lit(
                r#"'{"a b",NULL,"Größe","\"q\""}'"#,
                Value::Array(vec![t("a b"), Value::Null, t("Größe"), t("\"q\"")]),
            )],
        ),
    ]
}

#[tokio::test]
async fn types_round_trip_by_load() {
    types::round_trip_by_load(&harness()).await;
}

#[tokio::test]
async fn types_round_trip_by_native_load() {
    types::round_trip_by_native_load(&harness()).await;
}

#[tokio::test]
async fn composite_text_key() {
    source::composite_text_key(&harness()).await;
}

#[tokio::test]
async fn poll_in_cursor_order() {
    source::poll_in_cursor_order(&harness()).await;
}

#[tokio::test]
async fn types_round_trip_by_apply() {
    types::round_trip_by_apply(&harness()).await;
}

#[tokio::test]
async fn resume_after_a_kill_inside_a_chunk() {
    sink::resume_after_a_kill_inside_a_chunk(&harness()).await;
}

#[tokio::test]
async fn replay_is_idempotent() {
    sink::replay_is_idempotent(&harness()).await;
}

#[tokio::test]
async fn stale_epoch_is_fenced() {
    sink::stale_epoch_is_fenced(&harness()).await;
}

#[tokio::test]
async fn empty_table() {
    source::empty_table(&harness()).await;
}

#[tokio::test]
async fn unique_not_null_key() {
    source::unique_not_null_key(&harness()).await;
}

#[tokio::test]
async fn keyless_table() {
    source::keyless_table(&harness()).await;
}

#[tokio::test]
async fn odd_identifiers() {
    identifiers::odd_identifiers(&harness()).await;
}

#[tokio::test]
async fn checkpoints_of_look_alike_names() {
    identifiers::checkpoints_of_look_alike_names(&harness()).await;
}

#[tokio::test]
async fn look_alike_tables_in_odd_schemas() {
    identifiers::look_alike_tables_in_odd_schemas(&harness()).await;
}

#[tokio::test]
async fn replayed_changes_keep_their_ids() {
    log::replayed_changes_keep_their_ids(&harness()).await;
}

#[tokio::test]
async fn a_dropped_log_loses_the_tables_history() {
    log::a_dropped_log_loses_the_tables_history(&harness()).await;
}
