//! Every type PostgreSQL can output, with NULLs and extreme values, replicated
//! PostgreSQL→PostgreSQL in `full`, `incremental` and `cdc` modes against a real
//! PostgreSQL 15 from the testkit; source and target compared by the text form
//! of whole rows.

use siphon_core::{ExecutionStatus, PipelineSpec};
use siphon_engine::{run_log_pass, run_pass, NoopObserver, PassReport, Shutdown};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;

mod support;
use support::Env;

fn spec(json: &str) -> PipelineSpec {
    serde_json::from_str(json).unwrap()
}

/// A table with a column of every built-in type siphon has no binary codec for,
/// the special values of those it has, arrays with bounds and dimensions, a
/// composite, an enum and two extension types.
const DDL: &str = "
    CREATE EXTENSION hstore;
    CREATE EXTENSION citext;
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TYPE comp AS (a int, b text, c numeric(6,2)[]);
    CREATE TABLE every (
      id int PRIMARY KEY,
      rev bigint NOT NULL,
      c_inet inet, c_cidr cidr, c_mac macaddr, c_mac8 macaddr8, c_money money,
      c_bit bit(5), c_varbit varbit, c_tsv tsvector, c_tsq tsquery,
      r_int4 int4range, r_int8 int8range, r_num numrange, r_ts tsrange, r_tstz tstzrange, r_date daterange,
      m_int4 int4multirange, m_int8 int8multirange, m_num nummultirange, m_ts tsmultirange,
      m_tstz tstzmultirange, m_date datemultirange,
      g_point point, g_line line, g_lseg lseg, g_box box, g_path path, g_polygon polygon, g_circle circle,
      c_xml xml, c_timetz timetz, c_lsn pg_lsn, c_interval interval,
      c_time time, c_ts timestamp, c_tstz timestamptz, c_date date,
      c_num numeric, c_num2 numeric(10,2), c_f8 double precision, c_f4 real,
      a_int int[], a_text text[], a_inet inet[], a_ts timestamp[], a_num numeric[],
      c_comp comp, a_comp comp[], c_hstore hstore, c_citext citext, c_mood mood, a_mood mood[],
      c_json jsonb, c_uuid uuid, c_bytea bytea, a_box box[]
    );
";

/// Row 1 holds ordinary values, row 2 NULLs, rows 3 and 4 extremes.
const ROWS: &str = "
    INSERT INTO every VALUES (1, 1,
      '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', '-12.34',
      B'10101', B'1', 'a fat cat:2 sat', 'fat & (rat | !cat)',
      '[1,5)', '(,10]', '[1.5,2.5]', '[2020-01-01,2021-01-01)', '[2020-01-01 00:00+00,)', 'empty',
      '{[1,3),[5,7)}', '{}', '{[1,2]}', '{[2020-01-01,2020-02-01)}', '{(,)}', '{[2020-01-01,2020-01-05)}',
      '(1.5,-2)', '{1,2,3}', '[(0,0),(1,1)]', '(2,2),(0,0)', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(1,1),5>',
      '<a b=\"1\">x &amp; y</a>', '12:34:56.789+05:30', '16/B374D848', '1 year 2 mons -3 days 04:05:06.5',
      '12:00', '2020-02-29 12:34:56.123456', '2020-02-29 12:34:56.123456+00', '2020-02-29',
      12.5, 3.10, 0.1, 0.1,
      '[0:1]={7,8}', '{{a,b},{\"c d\",NULL}}', '{127.0.0.1,::1/128}', '{\"2020-01-01 00:00:00\",infinity}', '{NaN,1.5,-Infinity}',
      ROW(1, 'x \"y\"', '{1.50,NULL}'), ARRAY[ROW(2, NULL, NULL)::comp, NULL], 'a=>1, \"b c\"=>NULL', 'MiXeD', 'ok', '{sad,happy}',
      '{\"k\": [1, null]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff',
      '{(2,2),(0,0);NULL;(1,1),(0,0)}');
    INSERT INTO every (id, rev) VALUES (2, 2);
    INSERT INTO every (id, rev, c_money, c_varbit, c_tsv, c_xml, c_timetz, c_lsn, c_interval,
      c_time, c_ts, c_tstz, c_date, c_num, c_num2, c_f8, c_f4, a_int, a_text, c_comp, c_hstore, c_citext)
    VALUES (3, 3, '92233720368547758.07', B'', '', '', '24:00:00-15:59', 'FFFFFFFF/FFFFFFFF', '-178000000 years',
      '24:00:00', '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00', '5874897-12-31',
      'NaN', 'NaN', 'NaN', 'Infinity', '[-2:-1][3:3]={{1},{2}}', '{}', ROW(NULL, NULL, NULL), '', '');
    INSERT INTO every (id, rev, c_money, c_timetz, c_lsn, c_interval, c_time, c_ts, c_tstz, c_date,
      c_num, c_num2, c_f8, c_f4, a_int, a_num)
    VALUES (4, 4, '-92233720368547758.08', '00:00:00+15:59', '0/0', '178000000 years',
      '00:00:00', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC', '4713-01-01 BC',
      '-Infinity', -99999999.99, '-Infinity', '-Infinity', '{{1,2},{3,4}}', '{}');
    INSERT INTO every (id, rev, c_ts, c_tstz, c_date, c_f8, c_f4, c_num)
    VALUES (5, 5, 'infinity', '-infinity', 'infinity', 'Infinity', 'NaN', '-0.000');
    INSERT INTO every (id, rev, c_ts, c_tstz, c_date) VALUES (6, 6, '-infinity', 'infinity', '-infinity');
";

/// Changes to apply after the first pass: updates touching every kind of
/// column, an insert copying a whole row and a delete.
const CHANGES: &str = "
    UPDATE every SET rev = 10, c_inet = '::ffff:1.2.3.4', c_bit = B'00000', r_num = '(,)', g_point = '(0,0)',
      c_time = '24:00:00', c_num = 'NaN', a_int = '[5:6]={1,NULL}', c_hstore = c_hstore || 'z=>9'::hstore,
      c_comp = ROW(3, 'three', NULL), c_tsq = 'x:* <-> y',
      a_box = a_box || '(5,5),(4,4)'::box WHERE id = 1;
    UPDATE every SET rev = 11, c_ts = '-infinity', c_date = '5874897-12-31', c_f8 = 'NaN' WHERE id = 3;
    UPDATE every SET rev = 12, c_citext = 'UPPER' WHERE id = 2;
    INSERT INTO every SELECT 7, 13, c_inet, c_cidr, c_mac, c_mac8, c_money, c_bit, c_varbit, c_tsv, c_tsq,
      r_int4, r_int8, r_num, r_ts, r_tstz, r_date, m_int4, m_int8, m_num, m_ts, m_tstz, m_date,
      g_point, g_line, g_lseg, g_box, g_path, g_polygon, g_circle, c_xml, c_timetz, c_lsn, c_interval,
      '24:00:00', '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00', c_date,
      'Infinity', c_num2, c_f8, c_f4, a_int, a_text, a_inet, a_ts, a_num, c_comp, a_comp, c_hstore, c_citext,
      c_mood, a_mood, c_json, c_uuid, c_bytea, a_box FROM every WHERE id = 1;
    DELETE FROM every WHERE id = 4;
";

async fn env() -> Env {
    let e = support::env().await;
    e.src_sql(DDL);
    e.src_sql(ROWS);
    e
}

impl Env {
    /// Every row as PostgreSQL prints it, in key order.
    fn rows(&self, db: &str) -> String {
        self.pg
            .query_in(
                db,
                "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY id), '') FROM every t",
            )
            .unwrap()
    }

    fn assert_same(&self) {
        let src = self.rows(&self.src);
        let dst = self.rows(&self.dst);
        for (s, d) in src.lines().zip(dst.lines()) {
            assert_eq!(d, s, "a target row differs from the source");
        }
        assert_eq!(dst, src, "the target differs from the source");
        // The bounds of arrays are kept: the same element under the same index.
        let probe = "SELECT coalesce(string_agg(id || ':' || coalesce(a_int[0]::text, '-') || ',' \
                     || coalesce(a_int[5]::text, '-'), ' ' ORDER BY id), '') FROM every";
        assert_eq!(
            self.pg.query_in(&self.dst, probe).unwrap(),
            self.pg.query_in(&self.src, probe).unwrap()
        );
    }

    fn succeeded(report: &PassReport) {
        assert_eq!(report.tables.len(), 1, "{report:?}");
        for t in &report.tables {
            assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
        }
    }

    async fn pass(&self, spec: &PipelineSpec) -> PassReport {
        let source = PostgresSource::connect(&self.src_url).await.unwrap();
        let sink = PostgresSink::connect(&self.dst_url).await.unwrap();
        let report = run_pass(
            "p",
            spec,
            &source,
            &sink,
            &self.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap();
        Env::succeeded(&report);
        report
    }

    async fn log_pass(&self, spec: &PipelineSpec) -> PassReport {
        let source = PostgresSource::connect(&self.src_url).await.unwrap();
        let sink = PostgresSink::connect(&self.dst_url).await.unwrap();
        let report = run_log_pass(
            &self.src,
            spec,
            &source,
            &sink,
            &self.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap();
        Env::succeeded(&report);
        report
    }
}

#[tokio::test]
async fn every_type_in_a_full_load() {
    let e = env().await;
    let p = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.every"]}"#);
    let report = e.pass(&p).await;
    assert_eq!(report.tables[0].inserted, 6);
    e.assert_same();
    // The composite, enum and extension types exist on the target, column types equal.
    let columns = "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
                   FROM pg_attribute WHERE attrelid = 'every'::regclass AND attnum > 0 AND NOT attisdropped";
    assert_eq!(
        e.pg.query_in(&e.dst, columns).unwrap(),
        e.pg.query_in(&e.src, columns).unwrap()
    );
    // A second full run over the loaded table replaces it with the same rows.
    e.pg.query_in(&e.src, CHANGES).unwrap();
    e.pass(&p).await;
    e.assert_same();
}

#[tokio::test]
async fn every_type_incrementally() {
    let e = env().await;
    let p = spec(
        r#"{"source":"a","target":"b","mode":"incremental","cursor":"rev","strategy":"version",
            "tables":["public.every"]}"#,
    );
    let report = e.pass(&p).await;
    assert_eq!(report.tables[0].inserted, 6);
    e.assert_same();
    // Deletes are not replicated incrementally: delete on the target too.
    e.pg.query_in(&e.src, CHANGES).unwrap();
    e.pg.query_in(&e.dst, "DELETE FROM every WHERE id = 4")
        .unwrap();
    let report = e.pass(&p).await;
    let t = &report.tables[0];
    assert_eq!((t.inserted, t.updated), (1, 3), "{t:?}");
    e.assert_same();
}

#[tokio::test]
async fn every_type_through_cdc() {
    let e = env().await;
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.every"]}"#);
    e.log_pass(&p).await;
    e.assert_same();
    e.pg.query_in(&e.src, CHANGES).unwrap();
    let report = e.log_pass(&p).await;
    let t = &report.tables[0];
    assert_eq!((t.inserted, t.updated, t.deleted), (1, 3, 1), "{t:?}");
    e.assert_same();
    // Every value of row 1 written by the stream again, from one statement.
    e.pg.query_in(&e.src, "UPDATE every SET rev = rev + 100")
        .unwrap();
    e.log_pass(&p).await;
    e.assert_same();
}

#[tokio::test]
async fn a_value_the_target_column_cannot_hold_names_table_column_and_fix() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    let dst = dst_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE narrow (id int PRIMARY KEY, addr inet, n bigint);
         INSERT INTO narrow VALUES (1, '10.0.0.1', 1), (2, '10.0.0.2', 1099511627776);",
    )
    .unwrap();
    // The target's column is narrower than the source's.
    pg.query_in(
        &dst,
        "CREATE TABLE narrow (id int PRIMARY KEY, addr inet, n integer);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.narrow"]}"#);
    let report = run_pass(
        "p",
        &p,
        &source,
        &sink,
        &state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    let t = &report.tables[0];
    assert_eq!(t.status, ExecutionStatus::Failed, "{t:?}");
    let error = t.error.clone().unwrap();
    assert!(error.contains("public.narrow"), "{error}");
    assert!(error.contains("column n"), "{error}");
    assert!(error.contains("1099511627776"), "{error}");
    assert!(error.contains("change the target column's type"), "{error}");
    assert!(!error.contains("0-based"), "{error}");
    assert!(!error.contains("text format"), "{error}");
}

/// The values past what other engines hold reach SQLite as PostgreSQL's own
/// text, unchanged: the end of a day, the last timestamp and date, an array's
/// bounds.
#[tokio::test]
async fn far_values_reach_sqlite_as_their_exact_text() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE far (id int PRIMARY KEY, t time, ts timestamp, d date, a int[]);
         INSERT INTO far VALUES (1, '24:00:00', '294276-12-31 23:59:59.999999', '5874897-12-31', '[0:1]={7,8}'),
           (2, '12:00:00', '2020-01-01 00:00:00', '2020-01-01', '{1,2}');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.db");
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = siphon_sqlite::SqliteSink::open(&file).unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.far"]}"#);
    let report = run_pass(
        "p",
        &p,
        &source,
        &sink,
        &state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    Env::succeeded(&report);
    let c = rusqlite::Connection::open(&file).unwrap();
    let row: (String, String, String, String) = c
        .query_row("SELECT t, ts, d, a FROM far WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!(
        row,
        (
            "24:00:00".to_string(),
            "294276-12-31 23:59:59.999999".to_string(),
            "5874897-12-31".to_string(),
            "[0:1]={7,8}".to_string()
        )
    );
}

/// A citext primary key (an extension type whose binary form is text's) works
/// as a key: snapshot in chunks resumed after a key, streamed updates and
/// deletes, and incremental passes.
#[tokio::test]
async fn an_extension_type_as_the_primary_key() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let dst2_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    let dst = dst_url.rsplit('/').next().unwrap().to_string();
    let dst2 = dst2_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE EXTENSION citext;
         CREATE TABLE people (email citext PRIMARY KEY, addr inet, rev bigint NOT NULL);
         INSERT INTO people SELECT 'User' || g || '@Example.com', ('10.0.0.' || g)::inet, g
           FROM generate_series(1, 25) g;",
    )
    .unwrap();
    let dump = "SELECT string_agg(p::text, E'\\n' ORDER BY email) FROM people p";
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();

    // cdc, the snapshot in chunks of 10 rows.
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    let p = spec(
        r#"{"source":"a","target":"b","mode":"cdc","tables":["public.people"],"batch_size":10}"#,
    );
    let shutdown = Shutdown::new();
    let run = || run_log_pass(&src, &p, &source, &sink, &state, &NoopObserver, &shutdown);
    Env::succeeded(&run().await.unwrap());
    assert_eq!(
        pg.query_in(&dst, dump).unwrap(),
        pg.query_in(&src, dump).unwrap()
    );
    pg.query_in(
        &src,
        "UPDATE people SET addr = '::1', rev = 100 WHERE email = 'USER1@example.com';
         DELETE FROM people WHERE email = 'user2@EXAMPLE.com';
         INSERT INTO people VALUES ('New@Example.com', NULL, 101);",
    )
    .unwrap();
    let report = run().await.unwrap();
    Env::succeeded(&report);
    let t = &report.tables[0];
    assert_eq!((t.inserted, t.updated, t.deleted), (1, 1, 1), "{t:?}");
    assert_eq!(
        pg.query_in(&dst, dump).unwrap(),
        pg.query_in(&src, dump).unwrap()
    );

    // incremental, in chunks of 10 rows resumed after a cursor and key.
    let sink2 = PostgresSink::connect(&dst2_url).await.unwrap();
    let inc = spec(
        r#"{"source":"a","target":"b","mode":"incremental","cursor":"rev","strategy":"version",
            "tables":["public.people"],"batch_size":10}"#,
    );
    let report = run_pass(
        "inc",
        &inc,
        &source,
        &sink2,
        &state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    Env::succeeded(&report);
    assert_eq!(
        pg.query_in(&dst2, dump).unwrap(),
        pg.query_in(&src, dump).unwrap()
    );
}
