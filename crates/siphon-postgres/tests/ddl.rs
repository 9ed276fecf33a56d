//! Schema changes at a PostgreSQL source while a `cdc` pipeline streams:
//! added columns with defaults (volatile ones too), renames, drops, widened
//! types and changes siphon refuses, with nothing queued in the log and with
//! rows of the old shape (TOASTed values among them) still in it. Against a
//! real PostgreSQL 15 from the testkit; each test names its pipeline after its
//! own fresh source database, since slots are server-wide.

use siphon_core::{ExecutionStatus, PipelineSpec, Sink};
use siphon_engine::{run_log_pass, NoopObserver, PassReport, Shutdown};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_sqlite::SqliteSink;

mod support;
use support::{env, Env};

fn spec(tables: &str) -> PipelineSpec {
    serde_json::from_str(&format!(
        r#"{{"source":"a","target":"b","mode":"cdc","tables":[{tables}]}}"#
    ))
    .unwrap()
}

impl Env {
    /// `columns` of every row of `table`, as PostgreSQL prints them, sorted.
    fn rows(&self, db: &str, table: &str, columns: &str) -> String {
        self.pg
            .query_in(
                db,
                &format!(
                    "SELECT coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '') \
                     FROM (SELECT {columns} FROM {table}) r"
                ),
            )
            .unwrap()
    }

    /// The target holds the source's rows, compared on the source's columns.
    fn assert_same(&self, table: &str) {
        let columns = self.src_sql(&format!(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
        ));
        let src = self.rows(&self.src, table, &columns);
        assert!(!src.is_empty(), "the source {table} is empty");
        assert_eq!(
            self.rows(&self.dst, table, &columns),
            src,
            "target {table} differs from the source"
        );
    }

    /// The target table's columns and types, in order.
    fn dst_columns(&self, table: &str) -> String {
        self.dst_sql(&format!(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
             FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
        ))
    }

    async fn pass<K: Sink>(
        &self,
        spec: &PipelineSpec,
        source: &PostgresSource,
        sink: &K,
    ) -> PassReport {
        run_log_pass(
            &self.pipeline,
            spec,
            source,
            sink,
            &self.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap()
    }

    async fn connect(&self) -> (PostgresSource, PostgresSink) {
        (
            PostgresSource::connect(&self.src_url).await.unwrap(),
            PostgresSink::connect(&self.dst_url).await.unwrap(),
        )
    }
}

fn succeeded(report: &PassReport) {
    for t in &report.tables {
        assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    }
}

/// The error a table's stream stopped with.
fn failure(report: &PassReport, name: &str) -> String {
    let t = report
        .tables
        .iter()
        .find(|t| t.table.to_string() == name)
        .unwrap_or_else(|| panic!("no stats for {name}: {report:?}"));
    assert_eq!(t.status, ExecutionStatus::Failed, "{t:?}");
    t.error.clone().unwrap_or_default()
}

/// Random text of `n` bytes that does not compress, so it is TOASTed
/// out of line.
const RANDOM_TEXT: &str =
    "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 100))";

#[tokio::test]
async fn an_added_column_takes_the_source_values_of_its_default_in_existing_rows() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE people (id int PRIMARY KEY, name text);
         INSERT INTO people SELECT g, 'p' || g FROM generate_series(1, 20) g;",
    );
    let (source, sink) = e.connect().await;
    let p = spec(r#""public.people""#);
    succeeded(&e.pass(&p, &source, &sink).await);
    // Rows of the old shape still in the log, then the added columns: a
    // constant default and volatile ones, whose values only the source knows.
    e.src_sql(
        "UPDATE people SET name = 'changed' WHERE id = 1;
         ALTER TABLE people ADD COLUMN c int DEFAULT 7;
         ALTER TABLE people ADD COLUMN r float8 DEFAULT random();
         ALTER TABLE people ADD COLUMN at timestamptz NOT NULL DEFAULT clock_timestamp();
         INSERT INTO people (id, name) VALUES (21, 'new');
         UPDATE people SET c = 8 WHERE id = 2;",
    );
    succeeded(&e.pass(&p, &source, &sink).await);
    e.assert_same("people");
    assert_eq!(e.dst_sql("SELECT count(*) FROM people WHERE c = 7"), "20");
    assert_eq!(
        e.dst_sql("SELECT count(*) FROM people WHERE r IS NULL OR at IS NULL"),
        "0"
    );

    // Added with nothing else in the log.
    e.src_sql("ALTER TABLE people ADD COLUMN u uuid DEFAULT gen_random_uuid();");
    succeeded(&e.pass(&p, &source, &sink).await);
    e.assert_same("people");
    assert_eq!(
        e.dst_sql("SELECT count(*) FROM people WHERE u IS NULL"),
        "0"
    );
}

#[tokio::test]
async fn a_renamed_column_is_renamed_on_the_target() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, qty int);
         INSERT INTO items SELECT g, 'i' || g, g FROM generate_series(1, 10) g;",
    );
    let (source, sink) = e.connect().await;
    let p = spec(r#""public.items""#);
    succeeded(&e.pass(&p, &source, &sink).await);

    // Nothing queued in the log.
    e.src_sql("ALTER TABLE items RENAME COLUMN label TO title;");
    succeeded(&e.pass(&p, &source, &sink).await);
    assert_eq!(
        e.dst_columns("items"),
        "id integer, title text, qty integer"
    );
    e.assert_same("items");

    // Changes after the rename, and a rename between changes.
    e.src_sql(
        "UPDATE items SET title = 'x' WHERE id = 1;
         ALTER TABLE items RENAME COLUMN qty TO amount;
         INSERT INTO items VALUES (11, 'eleven', 11);
         UPDATE items SET amount = 0 WHERE id = 2;",
    );
    succeeded(&e.pass(&p, &source, &sink).await);
    assert_eq!(
        e.dst_columns("items"),
        "id integer, title text, amount integer"
    );
    e.assert_same("items");
    // What siphon keeps on the target to tell renames apart is not a table
    // to replicate from it.
    let target = PostgresSource::connect(&e.dst_url).await.unwrap();
    let found: Vec<String> = siphon_core::Source::discover(
        &target,
        &siphon_core::TableFilter {
            include: vec!["public.*".into()],
            exclude: vec![],
        },
    )
    .await
    .unwrap()
    .iter()
    .map(|t| t.name.to_string())
    .collect();
    assert_eq!(found, ["public.items"]);
}

/// Rows whose TOASTed values did not change are in the log in the old shape
/// when a column is dropped or renamed: the stream goes on and the target
/// ends with the source's values.
#[tokio::test]
async fn old_shape_rows_with_unchanged_toast_values_outlive_a_drop_and_a_rename() {
    let e = env().await;
    e.src_sql(&format!(
        "CREATE TABLE docs (id int PRIMARY KEY, body text, d text, n int);
         INSERT INTO docs SELECT g, {RANDOM_TEXT}, {RANDOM_TEXT}, 0 FROM generate_series(1, 6) g;
         CREATE TABLE notes (id int PRIMARY KEY, body text, e text, n int);
         INSERT INTO notes SELECT g, {RANDOM_TEXT}, {RANDOM_TEXT}, 0 FROM generate_series(1, 6) g;"
    ));
    assert_eq!(
        e.src_sql(
            "SELECT count(*) FROM docs WHERE pg_column_size(body) >= 3000 AND pg_column_size(d) >= 3000"
        ),
        "6",
        "the values must be stored uncompressed out of line"
    );
    let (source, sink) = e.connect().await;
    let p = spec(r#""public.docs", "public.notes""#);
    succeeded(&e.pass(&p, &source, &sink).await);

    // siphon is not running: updates that leave the TOASTed values alone,
    // then the shape changes.
    e.src_sql(
        "UPDATE docs SET n = n + 1 WHERE id <= 4;
         UPDATE notes SET n = n + 1 WHERE id <= 4;
         DELETE FROM docs WHERE id = 4;
         ALTER TABLE docs DROP COLUMN d;
         ALTER TABLE notes RENAME COLUMN e TO f;
         UPDATE docs SET n = n + 10 WHERE id = 5;
         UPDATE notes SET n = n + 10 WHERE id = 5;",
    );
    succeeded(&e.pass(&p, &source, &sink).await);
    e.assert_same("docs");
    e.assert_same("notes");
    assert_eq!(
        e.dst_columns("notes"),
        "id integer, body text, f text, n integer"
    );

    // And on: the next changes apply to the new shape.
    e.src_sql(
        "UPDATE docs SET n = 100 WHERE id = 1;
         INSERT INTO docs VALUES (7, 'b', 7);
         UPDATE notes SET n = 100 WHERE id = 1;",
    );
    succeeded(&e.pass(&p, &source, &sink).await);
    e.assert_same("docs");
    e.assert_same("notes");
}

#[tokio::test]
async fn widened_types_are_widened_on_the_target() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE w (id int PRIMARY KEY, big int, code varchar(10), free int, amount numeric(8,2));
         INSERT INTO w SELECT g, g, 'c' || g, g, g FROM generate_series(1, 5) g;",
    );
    let (source, sink) = e.connect().await;
    let p = spec(r#""public.w""#);
    succeeded(&e.pass(&p, &source, &sink).await);
    // Rows of the old shape in the log, then the types widen and take values
    // only the wider types hold.
    e.src_sql(
        "UPDATE w SET big = big + 1 WHERE id = 1;
         ALTER TABLE w ALTER COLUMN big TYPE bigint, ALTER COLUMN code TYPE varchar(20),
           ALTER COLUMN free TYPE text, ALTER COLUMN amount TYPE numeric(12,2);
         INSERT INTO w VALUES (6, 10000000000, 'fifteen chars!!', 'words', 1234567890.12);
         UPDATE w SET big = 20000000000, code = 'a longer code 1' WHERE id = 2;",
    );
    succeeded(&e.pass(&p, &source, &sink).await);
    assert_eq!(
        e.dst_columns("w"),
        "id integer, big bigint, code character varying(20), free text, amount numeric(12,2)"
    );
    e.assert_same("w");
}

/// A type change that is not a widening, and another primary key, stop that
/// table with the statement to run; the pipeline's other tables go on.
#[tokio::test]
async fn a_change_siphon_cannot_apply_stops_that_table_with_the_fix() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE flags (id int PRIMARY KEY, flag int);
         CREATE TABLE keyed (id int PRIMARY KEY, k int NOT NULL, v text);
         CREATE TABLE fine (id int PRIMARY KEY, v text);
         INSERT INTO flags VALUES (1, 0), (2, 1);
         INSERT INTO keyed VALUES (1, 1, 'a'), (2, 2, 'b');
         INSERT INTO fine VALUES (1, 'a');",
    );
    let (source, sink) = e.connect().await;
    let p = spec(r#""public.*""#);
    succeeded(&e.pass(&p, &source, &sink).await);
    e.src_sql(
        "ALTER TABLE flags ALTER COLUMN flag TYPE boolean USING flag <> 0;
         ALTER TABLE keyed DROP CONSTRAINT keyed_pkey, ADD PRIMARY KEY (id, k);
         INSERT INTO flags VALUES (3, true);
         INSERT INTO keyed VALUES (1, 2, 'c');
         INSERT INTO fine VALUES (2, 'b');",
    );
    let report = e.pass(&p, &source, &sink).await;
    let flags = failure(&report, "public.flags");
    assert!(flags.contains("flag"), "{flags}");
    assert!(
        flags.contains(r#"ALTER TABLE "public"."flags" ALTER COLUMN "flag" TYPE boolean"#),
        "{flags}"
    );
    assert!(flags.contains("siphon sync resync"), "{flags}");
    let keyed = failure(&report, "public.keyed");
    assert!(
        keyed.contains(r#"ALTER TABLE "public"."keyed" DROP CONSTRAINT "keyed_pkey", ADD PRIMARY KEY ("id", "k")"#),
        "{keyed}"
    );
    // The other table streamed.
    let fine = report
        .tables
        .iter()
        .find(|t| t.table.to_string() == "public.fine")
        .unwrap();
    assert_eq!(fine.status, ExecutionStatus::Succeeded, "{fine:?}");
    e.assert_same("fine");

    // With the statements run on the target, the tables are copied again.
    e.dst_sql(r#"ALTER TABLE "public"."flags" ALTER COLUMN "flag" TYPE boolean USING "flag" <> 0"#);
    e.dst_sql(
        r#"ALTER TABLE "public"."keyed" DROP CONSTRAINT "keyed_pkey", ADD PRIMARY KEY ("id", "k")"#,
    );
    succeeded(&e.pass(&p, &source, &sink).await);
    e.assert_same("flags");
    e.assert_same("keyed");
}

#[tokio::test]
async fn a_sqlite_target_follows_renames_and_added_columns() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE items (id int PRIMARY KEY, label text, qty int);
         INSERT INTO items SELECT g, 'i' || g, g FROM generate_series(1, 5) g;",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let path = e.dir.path().join("target.db");
    let sink = SqliteSink::open(&path).unwrap();
    let p = spec(r#""public.items""#);
    succeeded(&e.pass(&p, &source, &sink).await);
    e.src_sql(
        "ALTER TABLE items RENAME COLUMN label TO title;
         ALTER TABLE items ALTER COLUMN qty TYPE bigint;
         UPDATE items SET title = 'x', qty = 10000000000 WHERE id = 1;
         ALTER TABLE items ADD COLUMN r float8 DEFAULT random();",
    );
    succeeded(&e.pass(&p, &source, &sink).await);
    let db = rusqlite::Connection::open(&path).unwrap();
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('items') ORDER BY cid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(columns, ["id", "title", "qty", "r"]);
    // The volatile default's values are the source's.
    let r: Vec<String> = db
        .prepare("SELECT r FROM items ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get::<_, f64>(0))
        .unwrap()
        .map(|v| v.unwrap().to_string())
        .collect();
    assert_eq!(
        r.join(","),
        e.src_sql("SELECT string_agg(r::text, ',' ORDER BY id) FROM items")
    );
    let rows: Vec<(i64, String, i64)> = db
        .prepare("SELECT id, title, qty FROM items ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows[0], (1, "x".to_string(), 10_000_000_000));
    assert_eq!(rows[4], (5, "i5".to_string(), 5));
    let target = siphon_sqlite::SqliteSource::open(&path).unwrap();
    let found: Vec<String> = siphon_core::Source::discover(
        &target,
        &siphon_core::TableFilter {
            include: vec!["*".into()],
            exclude: vec![],
        },
    )
    .await
    .unwrap()
    .iter()
    .map(|t| t.name.to_string())
    .collect();
    assert_eq!(found, ["items"]);
}

/// A stream kept open between passes learns the new shape from the log itself:
/// the changes before and after the schema change in one transaction reach
/// the target in the new shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_follows_shape_changes_inside_a_transaction() {
    use siphon_engine::{follow_log_pass, LogSession};
    use std::time::Duration;

    let e = env().await;
    e.src_sql(
        "CREATE TABLE ev (id int PRIMARY KEY, v int, note text);
         INSERT INTO ev SELECT g, g, 'n' || g FROM generate_series(1, 5) g;",
    );
    let (source, sink) = e.connect().await;
    let p = spec(r#""public.ev""#);
    let shutdown = Shutdown::new();
    let mut session = LogSession::follow(Duration::from_millis(300));
    let report = follow_log_pass(
        &e.pipeline,
        &p,
        &source,
        &sink,
        &e.state,
        &NoopObserver,
        &shutdown,
        &mut session,
    )
    .await
    .unwrap();
    succeeded(&report);
    assert!(session.is_open());
    e.src_sql(
        "BEGIN;
         UPDATE ev SET v = 10 WHERE id = 1;
         ALTER TABLE ev RENAME COLUMN note TO remark;
         ALTER TABLE ev ALTER COLUMN v TYPE bigint;
         ALTER TABLE ev ADD COLUMN r float8 DEFAULT random();
         INSERT INTO ev (id, v, remark) VALUES (6, 60000000000, 'six');
         UPDATE ev SET remark = 'two' WHERE id = 2;
         COMMIT;",
    );
    // Passes go on until the target holds the source's rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let report = follow_log_pass(
            &e.pipeline,
            &p,
            &source,
            &sink,
            &e.state,
            &NoopObserver,
            &shutdown,
            &mut session,
        )
        .await
        .unwrap();
        succeeded(&report);
        if e.dst_sql("SELECT count(*) FROM ev") == "6" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new row never arrived"
        );
    }
    assert_eq!(
        e.dst_columns("ev"),
        "id integer, v bigint, remark text, r double precision"
    );
    e.assert_same("ev");
    session.close().await.unwrap();
}

/// Runs schema changes at the source once, right after the first batch of a
/// pass is committed: the stream reads them in the same pass, so the target
/// is evolved (and its rows filled) from the log, not at a pass's start.
struct ChangeShapeOnce<'a> {
    env: &'a Env,
    sql: &'a str,
    done: std::sync::atomic::AtomicBool,
}

impl siphon_engine::Observer for ChangeShapeOnce<'_> {
    fn rows_committed(&self, _stream: &siphon_core::StreamId, _rows: u64) {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.env.src_sql(self.sql);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shape_change_read_while_streaming_evolves_the_target_before_its_rows() {
    use siphon_engine::{follow_log_pass, LogSession};
    use std::time::Duration;

    let e = env().await;
    e.src_sql(
        "CREATE TABLE ev (id int PRIMARY KEY, v int, note text);
         INSERT INTO ev SELECT g, g, 'n' || g FROM generate_series(1, 50) g;",
    );
    let (source, sink) = e.connect().await;
    let p = spec(r#""public.ev""#);
    let shutdown = Shutdown::new();
    let mut session = LogSession::follow(Duration::from_secs(2));
    let report = follow_log_pass(
        &e.pipeline,
        &p,
        &source,
        &sink,
        &e.state,
        &NoopObserver,
        &shutdown,
        &mut session,
    )
    .await
    .unwrap();
    succeeded(&report);
    let observer = ChangeShapeOnce {
        env: &e,
        sql: "ALTER TABLE ev RENAME COLUMN note TO remark;
              ALTER TABLE ev ADD COLUMN r float8 DEFAULT random();
              INSERT INTO ev (id, v, remark) VALUES (51, 51, 'new');",
        done: Default::default(),
    };
    e.src_sql("UPDATE ev SET v = 0 WHERE id = 1;");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let report = follow_log_pass(
            &e.pipeline,
            &p,
            &source,
            &sink,
            &e.state,
            &observer,
            &shutdown,
            &mut session,
        )
        .await
        .unwrap();
        succeeded(&report);
        if e.dst_sql("SELECT count(*) FROM ev") == "51" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new row never arrived"
        );
    }
    assert_eq!(
        e.dst_columns("ev"),
        "id integer, v integer, remark text, r double precision"
    );
    e.assert_same("ev");
    session.close().await.unwrap();
}
