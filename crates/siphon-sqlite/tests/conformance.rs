//! SQLite runs the connector conformance suite of `siphon_testkit::conformance`,
//! on SQLite files in a temporary directory.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use siphon_core::{
    ApplyStats, Batch, Checkpoint, Decimal, Op, Row, SchemaOptions, Sink, StreamId, TableName,
    TableSchema, Value,
};
use siphon_sqlite::{SqliteSink, SqliteSource};
use siphon_testkit::conformance::{
    identifiers, sink, source, types, Harness, HarnessError, TypeCase,
};
use tempfile::TempDir;

/// Databases are files in one temporary directory, removed with the harness.
struct Sqlite {
    dir: TempDir,
}

fn harness() -> Sqlite {
    Sqlite {
        dir: TempDir::new().expect("a temporary directory"),
    }
}

impl Harness for Sqlite {
    type Source = SqliteSource;
    type Sink = SqliteSink;

    fn create_database(&self) -> Result<String, HarnessError> {
        let path = self
            .dir
            .path()
            .join(format!("{}.db", siphon_testkit::unique_name("db")));
        rusqlite::Connection::open(&path)?;
        Ok(path
            .to_str()
            .ok_or("a temporary path that is not UTF-8")?
            .to_string())
    }

    fn execute(&self, db: &str, sql: &str) -> Result<(), HarnessError> {
        Ok(rusqlite::Connection::open(db)?.execute_batch(sql)?)
    }

    async fn open_source(&self, db: &str) -> siphon_core::Result<SqliteSource> {
        SqliteSource::open(db)
    }

    async fn open_sink(&self, db: &str) -> siphon_core::Result<SqliteSink> {
        SqliteSink::open(db)
    }

    fn table_name(&self, name: &str) -> TableName {
        TableName::new(None, name)
    }

    fn has_native_path(&self) -> bool {
        true
    }

    fn integer_type(&self) -> &str {
        "INTEGER"
    }

    fn text_type(&self) -> &str {
        "TEXT"
    }

    fn types(&self) -> Vec<TypeCase> {
        sqlite_types()
    }
}

fn lit(sql: &str, v: Value) -> (String, Value) {
    (sql.to_string(), v)
}

fn dec(s: &str) -> Value {
    Value::Decimal(s.parse::<Decimal>().unwrap())
}

fn text(s: &str) -> (String, Value) {
    (
        format!("'{}'", s.replace('\'', "''")),
        Value::Text(s.to_string()),
    )
}

fn date(y: i32, m: u32, d: u32) -> Value {
    Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
}

fn naive(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

fn time(s: &str) -> Value {
    Value::Time(NaiveTime::parse_from_str(s, "%H:%M:%S%.f").unwrap())
}

/// Every declared type the connector maps (see the README's type table), with
/// the extremes SQLite stores for it.
fn sqlite_types() -> Vec<TypeCase> {
    let long: String = "Größe 日本 ✓ ".repeat(2000);
    let all_bytes: Vec<u8> = (0..=255).collect();
    let hex: String = all_bytes.iter().map(|b| format!("{b:02X}")).collect();
    let ints = |min: i64, max: i64, v: fn(i64) -> Value| {
        vec![
            lit(&format!("({min} + 0)"), v(min)),
            lit(&max.to_string(), v(max)),
            lit("0", v(0)),
            lit("-1", v(-1)),
        ]
    };
    let timestamps = || {
        vec![
            lit(
                "'0001-01-01 00:00:00'",
                Value::Timestamp(naive("0001-01-01 00:00:00")),
            ),
            lit(
                "'9999-12-31 23:59:59.999999'",
                Value::Timestamp(naive("9999-12-31 23:59:59.999999")),
            ),
            lit(
                "'2024-02-29 12:34:56.123456'",
                Value::Timestamp(naive("2024-02-29 12:34:56.123456")),
            ),
            lit("'infinity'", Value::Timestamp(NaiveDateTime::MAX)),
            lit("'-infinity'", Value::Timestamp(NaiveDateTime::MIN)),
        ]
    };
    let json = || {
        vec![
            lit(
                r#"'{"a":[1,2,{"b":null}],"é":"日本"}'"#,
                Value::Json(r#"{"a":[1,2,{"b":null}],"é":"日本"}"#.into()),
            ),
            lit("'[]'", Value::Json("[]".into())),
            lit(r#"'"it''s"'"#, Value::Json(r#""it's""#.into())),
        ]
    };
    vec![
        TypeCase::new(
            "BOOLEAN",
            vec![lit("1", Value::Bool(true)), lit("0", Value::Bool(false))],
        ),
        TypeCase::new(
            "SMALLINT",
            ints(i16::MIN.into(), i16::MAX.into(), |v| Value::Int16(v as i16)),
        ),
        TypeCase::new(
            "INT",
            ints(i32::MIN.into(), i32::MAX.into(), |v| Value::Int32(v as i32)),
        ),
        TypeCase::new(
            "INTEGER",
            vec![
                lit("(-9223372036854775807 - 1)", Value::Int64(i64::MIN)),
                lit("9223372036854775807", Value::Int64(i64::MAX)),
                lit("0", Value::Int64(0)),
            ],
        ),
        TypeCase::new("BIGINT", ints(i64::MIN + 1, i64::MAX, Value::Int64)),
        TypeCase::new(
            "REAL",
            vec![
                lit("1.7976931348623157e308", Value::Float64(f64::MAX)),
                lit("-1.7976931348623157e308", Value::Float64(f64::MIN)),
                lit("2.2250738585072014e-308", Value::Float64(f64::MIN_POSITIVE)),
                lit("5e-324", Value::Float64(5e-324)),
                lit("'NaN'", Value::Float64(f64::NAN)),
                lit("9.0e+999", Value::Float64(f64::INFINITY)),
                lit("-9.0e+999", Value::Float64(f64::NEG_INFINITY)),
                lit("0.1", Value::Float64(0.1)),
            ],
        ),
        TypeCase::new(
            "DOUBLE",
            vec![
                lit("-0.5", Value::Float64(-0.5)),
                lit("'NaN'", Value::Float64(f64::NAN)),
                lit("9.0e+999", Value::Float64(f64::INFINITY)),
            ],
        ),
        TypeCase::new(
            "NUMERIC(12,2)",
            vec![
                lit("'9999999999.99'", dec("9999999999.99")),
                lit("'-9999999999.99'", dec("-9999999999.99")),
                lit("'0.01'", dec("0.01")),
                lit("'NaN'", Value::Decimal(Decimal::nan())),
                lit("'-Infinity'", Value::Decimal(Decimal::infinity(true))),
            ],
        ),
        TypeCase::new(
            "DECIMAL_TEXT(38,10)",
            vec![
                lit(
                    "'9999999999999999999999999999.9999999999'",
                    dec("9999999999999999999999999999.9999999999"),
                ),
                lit("'-0.0000000001'", dec("-0.0000000001")),
                lit("'Infinity'", Value::Decimal(Decimal::infinity(false))),
            ],
        ),
        TypeCase::new(
            "VARCHAR(16)",
            vec![text("exactly sixteen!"), text(""), text("Größe 日本")],
        ),
        TypeCase::new(
            "TEXT",
            vec![
                text(""),
                text(&long),
                text("it's \"quoted\"\n\ttabbed \\ 🦀"),
                text("NULL"),
            ],
        ),
        TypeCase::new("CHAR(3)", vec![text("abc"), text("日本語")]),
        TypeCase::new(
            "BLOB",
            vec![
                lit("X''", Value::Bytes(vec![])),
                lit(&format!("X'{hex}'"), Value::Bytes(all_bytes)),
                lit("X'00'", Value::Bytes(vec![0])),
            ],
        ),
        TypeCase::new(
            "DATE",
            vec![
                lit("'0001-01-01'", date(1, 1, 1)),
                lit("'9999-12-31'", date(9999, 12, 31)),
                lit("'2024-02-29'", date(2024, 2, 29)),
                lit("'infinity'", Value::Date(NaiveDate::MAX)),
                lit("'-infinity'", Value::Date(NaiveDate::MIN)),
            ],
        ),
        TypeCase::new(
            "TIME",
            vec![
                lit("'00:00:00'", time("00:00:00")),
                lit("'23:59:59.999999'", time("23:59:59.999999")),
                lit("'24:00:00'", Value::Time(Value::END_OF_DAY)),
            ],
        ),
        TypeCase::new("TIMESTAMP", timestamps()),
        TypeCase::new("DATETIME", timestamps()),
        TypeCase::new(
            "TIMESTAMPTZ",
            vec![
                lit(
                    "'2024-02-29T12:34:56.123456Z'",
                    Value::TimestampTz(Utc.from_utc_datetime(&naive("2024-02-29 12:34:56.123456"))),
                ),
                lit(
                    "'2024-03-01T02:04:56.000001+05:30'",
                    Value::TimestampTz(Utc.from_utc_datetime(&naive("2024-02-29 20:34:56.000001"))),
                ),
                lit(
                    "'infinity'",
                    Value::TimestampTz(NaiveDateTime::MAX.and_utc()),
                ),
            ],
        ),
        TypeCase::new(
            "UUID",
            vec![
                lit(
                    "'00000000-0000-0000-0000-000000000000'",
                    Value::Uuid(uuid::Uuid::nil()),
                ),
                lit(
                    "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
                    Value::Uuid(uuid::Uuid::max()),
                ),
            ],
        ),
        TypeCase::new("JSON", json()),
        TypeCase::new("JSON_TEXT", json()),
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

/// A promise of the [`Sink`] contract that [`Broken`] breaks.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `apply` skips deletes.
    DropsDeletes,
    /// `load` commits all but the last row on their own before the chunk.
    SplitsChunks,
    /// Checkpoints are kept under the table's display name (`a.b.c`).
    KeysByDisplayName,
    /// `load` writes a float NaN as NULL.
    NanAsNull,
}

/// The SQLite sink with one fault, so the suite is seen to catch it.
struct Broken {
    inner: SqliteSink,
    fault: Fault,
}

impl Broken {
    fn stream(&self, s: &StreamId) -> StreamId {
        match self.fault {
            Fault::KeysByDisplayName => {
                StreamId::new(&s.pipeline, &TableName::parse(&s.table.to_string()))
            }
            _ => s.clone(),
        }
    }

    fn checkpoint_of(&self, c: &Checkpoint) -> Checkpoint {
        Checkpoint {
            stream: self.stream(&c.stream),
            epoch: 0,
            phase: c.phase.clone(),
        }
    }
}

impl Sink for Broken {
    fn capabilities(&self) -> siphon_core::SinkCapabilities {
        siphon_core::SinkCapabilities {
            read_keys: true,
            ..siphon_core::SinkCapabilities::NONE
        }
    }

    async fn prepare(
        &self,
        table: &TableSchema,
        options: &SchemaOptions,
    ) -> siphon_core::Result<()> {
        self.inner.prepare(table, options).await
    }

    async fn checkpoint(&self, stream: &StreamId) -> siphon_core::Result<Option<Checkpoint>> {
        let found = self.inner.checkpoint(&self.stream(stream)).await?;
        Ok(found.map(|c| Checkpoint {
            stream: stream.clone(),
            epoch: 0,
            phase: c.phase,
        }))
    }

    async fn reset(&self, stream: &StreamId) -> siphon_core::Result<()> {
        self.inner.reset(&self.stream(stream)).await
    }

    async fn load(
        &self,
        table: &TableSchema,
        mut rows: Vec<Row>,
        checkpoint: &Checkpoint,
    ) -> siphon_core::Result<ApplyStats> {
        let checkpoint = self.checkpoint_of(checkpoint);
        match self.fault {
            Fault::SplitsChunks if rows.len() > 1 => {
                let before = self.inner.checkpoint(&checkpoint.stream).await?;
                let before = before.unwrap_or_else(|| checkpoint.clone());
                let head = rows[..rows.len() - 1].to_vec();
                self.inner.load(table, head, &before).await?;
            }
            Fault::NanAsNull => {
                for v in rows.iter_mut().flatten() {
                    if matches!(v, Value::Float64(f) if f.is_nan()) {
                        *v = Value::Null;
                    }
                }
            }
            _ => {}
        }
        self.inner.load(table, rows, &checkpoint).await
    }

    async fn apply(
        &self,
        mut batch: Batch,
        checkpoint: &Checkpoint,
    ) -> siphon_core::Result<ApplyStats> {
        if let Fault::DropsDeletes = self.fault {
            batch.changes.retain(|c| !matches!(c.op, Op::Delete(_)));
        }
        self.inner
            .apply(batch, &self.checkpoint_of(checkpoint))
            .await
    }

    async fn read_keys(
        &self,
        table: &TableSchema,
        after: Option<&Row>,
        limit: usize,
    ) -> siphon_core::Result<Vec<Row>> {
        self.inner.read_keys(table, after, limit).await
    }
}

/// [`Sqlite`] with a [`Broken`] sink.
struct BrokenSqlite {
    base: Sqlite,
    fault: Fault,
}

impl Harness for BrokenSqlite {
    type Source = SqliteSource;
    type Sink = Broken;

    fn create_database(&self) -> Result<String, HarnessError> {
        self.base.create_database()
    }

    fn execute(&self, db: &str, sql: &str) -> Result<(), HarnessError> {
        self.base.execute(db, sql)
    }

    async fn open_source(&self, db: &str) -> siphon_core::Result<SqliteSource> {
        self.base.open_source(db).await
    }

    async fn open_sink(&self, db: &str) -> siphon_core::Result<Broken> {
        Ok(Broken {
            inner: self.base.open_sink(db).await?,
            fault: self.fault,
        })
    }

    fn table_name(&self, name: &str) -> TableName {
        self.base.table_name(name)
    }

    fn integer_type(&self) -> &str {
        self.base.integer_type()
    }

    fn text_type(&self) -> &str {
        self.base.text_type()
    }

    fn types(&self) -> Vec<TypeCase> {
        self.base.types()
    }
}

/// Runs a case on a sink with `fault`; true when the case failed.
async fn caught<F, Fut>(fault: Fault, case: F) -> bool
where
    F: FnOnce(BrokenSqlite) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let h = BrokenSqlite {
        base: harness(),
        fault,
    };
    let run = tokio::spawn(case(h)).await;
    matches!(run, Err(e) if e.is_panic())
}

#[tokio::test]
async fn the_suite_catches_a_sink_that_breaks_its_contract() {
    assert!(
        caught(Fault::DropsDeletes, |h| async move {
            sink::replay_is_idempotent(&h).await
        })
        .await,
        "a sink that skips deletes passed the replay case"
    );
    assert!(
        caught(Fault::DropsDeletes, |h| async move {
            types::round_trip_by_apply(&h).await
        })
        .await,
        "a sink that skips deletes passed the apply round trip"
    );
    assert!(
        caught(Fault::SplitsChunks, |h| async move {
            sink::resume_after_a_kill_inside_a_chunk(&h).await
        })
        .await,
        "a sink that commits half a chunk passed the resume case"
    );
    assert!(
        caught(Fault::KeysByDisplayName, |h| async move {
            identifiers::checkpoints_of_look_alike_names(&h).await
        })
        .await,
        "a sink that keys checkpoints by display name passed"
    );
    assert!(
        caught(Fault::NanAsNull, |h| async move {
            types::round_trip_by_load(&h).await
        })
        .await,
        "a sink that writes NaN as NULL passed the load round trip"
    );
}
