//! Values that SQLite has no type for, PostgreSQL→SQLite→PostgreSQL against a
//! real PostgreSQL from the testkit: exact decimals of any precision and the
//! special values (NaN, ±Infinity, ±infinity) are stored as documented and come
//! back unchanged, and a SQLite column that would change a value stops the table
//! with an error naming the column.

use siphon_core::{ExecutionStatus, PipelineSpec, Sink, Source};
use siphon_engine::{drop_log, run_log_pass, run_pass, NoopObserver, PassReport, Shutdown};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_sqlite::{SqliteSink, SqliteSource};
use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;

fn spec(json: &str) -> PipelineSpec {
    serde_json::from_str(json).unwrap()
}

async fn pass<S: Source, K: Sink>(
    pipeline: &str,
    spec: &PipelineSpec,
    source: &S,
    sink: &K,
    state: &SqliteStateStore,
) -> PassReport {
    run_pass(
        pipeline,
        spec,
        source,
        sink,
        state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap()
}

fn succeeded(report: &PassReport) {
    assert!(!report.tables.is_empty(), "no table ran: {report:?}");
    for t in &report.tables {
        assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    }
}

fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// Every row of `table` as PostgreSQL prints it, in key order.
fn dump(pg: &Postgres, db: &str, table: &str) -> String {
    pg.query_in(
        db,
        &format!("SELECT string_agg(t::text, E'\\n' ORDER BY id) FROM {table} t"),
    )
    .unwrap()
}

/// `SELECT` of one column per row from a SQLite file, as `quote()` shows the
/// stored value, in key order.
fn stored(path: &std::path::Path, table: &str, expr: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c
        .prepare(&format!("SELECT {expr} FROM {table} ORDER BY id"))
        .unwrap();
    let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

fn declared(path: &std::path::Path, table: &str) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        &format!(
            "SELECT group_concat(name || ' ' || type, ', ') FROM pragma_table_info('{table}')"
        ),
        [],
        |r| r.get(0),
    )
    .unwrap()
}

const NUMBERS: &str = "
    CREATE TABLE numbers (
      id int PRIMARY KEY,
      wide numeric(48,10),
      price numeric(12,2),
      free numeric
    );
    INSERT INTO numbers VALUES
      (1, 12345678901234567890.1234567891, 1234567890.12, 12345678901234567890.1234567891),
      (2, -12345678901234567890123456789012345678.0000000001, -0.01, -0.000000000000000000000000000001),
      (3, 0, 0.00, 0),
      (4, NULL, NULL, NULL),
      (5, 99999999999999999999999999999999999999.9999999999, 9999999999.99, 'NaN'),
      (6, 0.0000000001, 0.10, 'Infinity'),
      (7, 1, 1.00, '-Infinity'),
      (8, 'NaN', 'NaN', 100000000000000000000000000000000000000000000000000);
";

/// numeric of every size, scale 10, negative, zero, NULL, NaN and ±Infinity:
/// PostgreSQL→SQLite keeps every digit as text in a column whose declared type
/// names the precision and scale, and SQLite→PostgreSQL gives the same rows.
#[tokio::test]
async fn numeric_round_trips_postgres_sqlite_postgres_exactly() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let back_url = pg.create_database().unwrap();
    let (src, back) = (db_name(&src_url), db_name(&back_url));
    pg.query_in(&src, NUMBERS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("middle.db");
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();

    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = SqliteSink::open(&file).unwrap();
    let full = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.numbers"]}"#);
    let report = pass("to_sqlite", &full, &source, &sink, &state).await;
    succeeded(&report);
    assert_eq!(report.tables[0].inserted, 8);

    assert_eq!(
        declared(&file, "numbers"),
        "id INT, wide DECIMAL_TEXT(48,10), price DECIMAL_TEXT(12,2), free DECIMAL_TEXT"
    );
    assert_eq!(
        stored(&file, "numbers", "quote(wide)"),
        [
            "'12345678901234567890.1234567891'",
            "'-12345678901234567890123456789012345678.0000000001'",
            "'0.0000000000'",
            "NULL",
            "'99999999999999999999999999999999999999.9999999999'",
            "'0.0000000001'",
            "'1.0000000000'",
            "'NaN'",
        ]
    );
    assert_eq!(
        stored(&file, "numbers", "quote(free)"),
        [
            "'12345678901234567890.1234567891'",
            "'-0.000000000000000000000000000001'",
            "'0'",
            "NULL",
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "'100000000000000000000000000000000000000000000000000'",
        ]
    );
    assert_eq!(
        stored(&file, "numbers", "typeof(price)"),
        ["text", "text", "text", "null", "text", "text", "text", "text"]
    );

    // Back to PostgreSQL: the same declared types and the same values.
    let middle = SqliteSource::open(&file).unwrap();
    let target = PostgresSink::connect(&back_url).await.unwrap();
    let full_back = spec(
        r#"{"source":"b","target":"c","mode":"full","tables":["numbers"],"target_schema":"public"}"#,
    );
    succeeded(&pass("to_postgres", &full_back, &middle, &target, &state).await);
    let types = "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
                 FROM pg_attribute WHERE attrelid = 'numbers'::regclass AND attnum > 1";
    assert_eq!(
        pg.query_in(&back, types).unwrap(),
        "wide numeric(48,10), price numeric(12,2), free numeric"
    );
    assert_eq!(
        dump(pg, &back, "numbers"),
        dump(pg, &src, "numbers"),
        "numbers changed on the way PostgreSQL→SQLite→PostgreSQL"
    );
}

const SPECIALS: &str = "
    CREATE TABLE specials (
      id int PRIMARY KEY,
      f double precision, r real, n numeric,
      d date, ts timestamp, tstz timestamptz
    );
    INSERT INTO specials VALUES
      (1, 'NaN', 'NaN', 'NaN', 'infinity', 'infinity', 'infinity'),
      (2, 'Infinity', 'Infinity', 'Infinity', '-infinity', '-infinity', '-infinity'),
      (3, '-Infinity', '-Infinity', '-Infinity', '2024-02-29', '2024-02-29 10:11:12.5', '2024-02-29 10:11:12.5+02'),
      (4, 1.5, 0.25, 12.50, '0044-03-15 BC', '0044-03-15 12:00:00 BC', '10000-01-01 00:00:00+00'),
      (5, NULL, NULL, NULL, NULL, NULL, NULL);
";

/// What SQLite stores for each special value, in the order of `SPECIALS`' rows,
/// for the columns f, n, d, ts and tstz.
fn assert_specials_stored(file: &std::path::Path) {
    assert_eq!(
        stored(
            file,
            "specials",
            "quote(f) || ' ' || quote(r) || ' ' || quote(n)"
        ),
        [
            "'NaN' 'NaN' 'NaN'",
            "9.0e+999 9.0e+999 'Infinity'",
            "-9.0e+999 -9.0e+999 '-Infinity'",
            "1.5 0.25 '12.50'",
            "NULL NULL NULL",
        ]
    );
    assert_eq!(
        stored(
            file,
            "specials",
            "quote(d) || ' ' || quote(ts) || ' ' || quote(tstz)"
        ),
        [
            "'infinity' 'infinity' 'infinity'",
            "'-infinity' '-infinity' '-infinity'",
            "'2024-02-29' '2024-02-29 10:11:12.500' '2024-02-29 08:11:12.500+00:00'",
            "'-0043-03-15' '-0043-03-15 12:00:00' '+10000-01-01 00:00:00+00:00'",
            "NULL NULL NULL",
        ]
    );
}

/// NaN, ±Infinity and ±infinity into SQLite: stored as text SQLite keeps (or as
/// its REAL infinity), read back by siphon's SQLite source as the same values,
/// so SQLite→PostgreSQL gives back the source's rows.
#[tokio::test]
async fn special_values_are_stored_in_sqlite_exactly_and_come_back() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let back_url = pg.create_database().unwrap();
    let (src, back) = (db_name(&src_url), db_name(&back_url));
    pg.query_in(&src, SPECIALS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("middle.db");
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();

    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = SqliteSink::open(&file).unwrap();
    let full = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.specials"]}"#);
    succeeded(&pass("to_sqlite", &full, &source, &sink, &state).await);
    assert_specials_stored(&file);

    let middle = SqliteSource::open(&file).unwrap();
    let target = PostgresSink::connect(&back_url).await.unwrap();
    let full_back = spec(
        r#"{"source":"b","target":"c","mode":"full","tables":["specials"],"target_schema":"public"}"#,
    );
    succeeded(&pass("to_postgres", &full_back, &middle, &target, &state).await);
    // real comes back as double precision: compare the values as doubles.
    let rows =
        "SELECT string_agg(concat_ws(' ', id, f, r::float8, n, d, ts, tstz), E'\\n' ORDER BY id) \
                FROM specials";
    assert_eq!(
        pg.query_in(&back, rows).unwrap(),
        pg.query_in(&src, rows).unwrap()
    );
}

/// The same values arriving through `cdc` (decoded from the replication
/// stream's text, not from binary COPY) are stored alike.
#[tokio::test]
async fn special_values_streamed_by_cdc_are_stored_alike() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let src = db_name(&src_url);
    pg.query_in(
        &src,
        "CREATE TABLE specials (id int PRIMARY KEY, f double precision, r real, n numeric, \
           d date, ts timestamp, tstz timestamptz)",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.db");
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = SqliteSink::open(&file).unwrap();
    let cdc = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.specials"]}"#);
    let shutdown = Shutdown::new();
    let run = || run_log_pass(&src, &cdc, &source, &sink, &state, &NoopObserver, &shutdown);
    succeeded(&run().await.unwrap());
    let inserts = SPECIALS
        .split_once("INSERT")
        .map(|(_, rows)| format!("INSERT{rows}"))
        .unwrap();
    pg.query_in(&src, &inserts).unwrap();
    let report = run().await.unwrap();
    succeeded(&report);
    assert_eq!(report.tables[0].inserted, 5, "{report:?}");
    assert_specials_stored(&file);
    drop_log(&src, &source, &sink).await.unwrap();
}

/// A SQLite table made with a `NUMERIC(38,10)` column (before siphon declared
/// exact decimals `DECIMAL_TEXT`, or by hand) would turn a 30-digit value into a
/// 15-digit REAL: the table stops with an error naming the column and the type
/// to declare, and the value is not written.
#[tokio::test]
async fn a_sqlite_column_that_would_round_a_decimal_stops_the_table() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let src = db_name(&src_url);
    pg.query_in(
        &src,
        "CREATE TABLE amounts (id int PRIMARY KEY, amount numeric(38,10));
         INSERT INTO amounts VALUES (1, 12.5), (2, 12345678901234567890.1234567891);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.db");
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch("CREATE TABLE amounts (id INTEGER PRIMARY KEY, amount NUMERIC(38,10))")
        .unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = SqliteSink::open(&file).unwrap();
    let full = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.amounts"]}"#);
    let report = pass("p", &full, &source, &sink, &state).await;
    let t = &report.tables[0];
    assert_eq!(t.status, ExecutionStatus::Failed, "{t:?}");
    let err = t.error.clone().unwrap_or_default();
    for part in [
        "amount",
        "NUMERIC(38,10)",
        "DECIMAL_TEXT(38,10)",
        "12345678901234567890.1234567891",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    let rounded = stored(&file, "amounts", "quote(amount)");
    assert!(
        !rounded.iter().any(|v| v.starts_with("1.23456789")),
        "a rounded value was written: {rounded:?}"
    );
}

/// Decimals another program wrote as text into a SQLite column declared
/// `DECIMAL_TEXT(p,s)` are read exactly, and a text that is no number stops the
/// table with an error naming the column and the value.
#[tokio::test]
async fn decimals_other_programs_wrote_as_text_reach_postgres_exactly() {
    let pg = Postgres::shared().unwrap();
    let dst_url = pg.create_database().unwrap();
    let dst = db_name(&dst_url);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    let c = rusqlite::Connection::open(&file).unwrap();
    c.execute_batch(
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount DECIMAL_TEXT(40,10), note TEXT);
         INSERT INTO ledger VALUES
           (1, '123456789012345678901234567890.1234567891', 'a'),
           (2, '-0.0000000001', 'b'),
           (3, ' 42 ', 'c'),
           (4, 'nan', 'd');",
    )
    .unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = SqliteSource::open(&file).unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    let full = spec(
        r#"{"source":"a","target":"b","mode":"full","tables":["ledger"],"target_schema":"public"}"#,
    );
    succeeded(&pass("p", &full, &source, &sink, &state).await);
    assert_eq!(
        pg.query_in(
            &dst,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'ledger'::regclass AND attname = 'amount'"
        )
        .unwrap(),
        "numeric(40,10)"
    );
    assert_eq!(
        pg.query_in(
            &dst,
            "SELECT string_agg(amount::text, ' ' ORDER BY id) FROM ledger"
        )
        .unwrap(),
        "123456789012345678901234567890.1234567891 -0.0000000001 42.0000000000 NaN"
    );

    c.execute("INSERT INTO ledger VALUES (5, '12,50', 'e')", [])
        .unwrap();
    let report = pass("p", &full, &source, &sink, &state).await;
    let t = &report.tables[0];
    assert_eq!(t.status, ExecutionStatus::Failed, "{t:?}");
    let err = t.error.clone().unwrap_or_default();
    for part in ["ledger", "amount", "'12,50'", "decimal(40,10)"] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
}

/// Values past what SQLite's dates and chrono hold (time 24:00:00, PostgreSQL's
/// last timestamp and date) and ±infinity go PostgreSQL→SQLite→PostgreSQL
/// unchanged.
#[tokio::test]
async fn far_and_infinite_times_round_trip_through_sqlite() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let back_url = pg.create_database().unwrap();
    let (src, back) = (db_name(&src_url), db_name(&back_url));
    pg.query_in(
        &src,
        "CREATE TABLE far (id int PRIMARY KEY, t time, ts timestamp, tstz timestamptz, d date);
         INSERT INTO far VALUES
           (1, '24:00:00', '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00', '5874897-12-31'),
           (2, '00:00:00', 'infinity', '-infinity', 'infinity'),
           (3, '23:59:59.999999', '4713-01-01 00:00:00 BC', '2000-01-01 00:00:00+00', '4713-01-01 BC');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("middle.db");
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = SqliteSink::open(&file).unwrap();
    let full = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.far"]}"#);
    succeeded(&pass("to_sqlite", &full, &source, &sink, &state).await);
    assert_eq!(
        stored(&file, "far", "t || ' ' || ts || ' ' || d"),
        [
            "24:00:00 294276-12-31 23:59:59.999999 5874897-12-31",
            "00:00:00 infinity infinity",
            "23:59:59.999999 -4712-01-01 00:00:00 -4712-01-01",
        ]
    );
    let middle = SqliteSource::open(&file).unwrap();
    let target = PostgresSink::connect(&back_url).await.unwrap();
    let full_back = spec(
        r#"{"source":"b","target":"c","mode":"full","tables":["far"],"target_schema":"public"}"#,
    );
    succeeded(&pass("to_postgres", &full_back, &middle, &target, &state).await);
    assert_eq!(dump(pg, &back, "far"), dump(pg, &src, "far"));
}
