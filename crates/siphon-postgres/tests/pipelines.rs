//! Full and incremental pipelines with PostgreSQL on either side, against real
//! servers from the testkit: PostgreSQL→PostgreSQL (every declared type kept),
//! PostgreSQL→SQLite and SQLite→PostgreSQL.

use siphon_core::{ExecutionStatus, PipelineSpec, Sink, Source, TableFilter};
use siphon_engine::{run_pass, table_checksum, NoopObserver, PassReport, Shutdown, TableChecksum};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_sqlite::{SqliteSink, SqliteSource};
use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;

fn spec(json: &str) -> PipelineSpec {
    serde_json::from_str(json).unwrap()
}

async fn pass<S: Source, K: Sink>(
    spec: &PipelineSpec,
    source: &S,
    sink: &K,
    state: &SqliteStateStore,
) -> PassReport {
    let report = run_pass(
        "p",
        spec,
        source,
        sink,
        state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    for t in &report.tables {
        assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    }
    report
}

async fn checksum<S: Source>(s: &S, table: &str) -> TableChecksum {
    let filter = TableFilter {
        include: vec![table.into()],
        exclude: vec![],
    };
    let schema = s
        .discover(&filter)
        .await
        .unwrap()
        .pop()
        .unwrap_or_else(|| panic!("no table {table}"));
    table_checksum(s, &schema, 997).await.unwrap()
}

/// The database name at the end of a URL.
fn db(_pg: &Postgres, url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

const TYPES_DDL: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN money2 AS numeric(12,2) CHECK (VALUE > -1000000);
    CREATE TABLE everything (
      id bigint PRIMARY KEY,
      small smallint, plain integer, big bigint,
      exact numeric(38,0), money money2, free numeric, price numeric(12,2),
      r real, d double precision,
      t text, v varchar(16), c char(3),
      raw bytea, flag boolean,
      day date, at_time time, ts timestamp, tstz timestamptz, span interval,
      id2 uuid, doc json, docb jsonb,
      ints integer[], grid text[][], feelings mood, feeling_list mood[],
      total numeric GENERATED ALWAYS AS (price * 2) STORED,
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX everything_day ON everything (day);
    INSERT INTO everything (id, small, plain, big, exact, money, free, price, r, d, t, v, c, raw, flag, day, at_time,
        ts, tstz, span, id2, doc, docb, ints, grid, feelings, feeling_list, updated_at) VALUES
      (1, -32768, 2147483647, -9223372036854775808, 99999999999999999999999999999999999999, -999999.99,
       0.000000000000000000001, 12.30, 3.5, -1.5e300, '', 'naïve', 'ab', '\\x00ff00', true, '1969-07-20',
       '23:59:59.999999', '1900-01-01 00:00:00', 'infinity', '1 year 2 mons -3 days 04:05:06.5',
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2]}', '{\"b\": {\"c\": null}}', '{}', '{{a,b},{c,NULL}}',
       'happy', '{sad,ok}', '2026-01-01 00:00:00+00'),
      (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       '-infinity', NULL, NULL, NULL, NULL, '{1,NULL,3}', NULL, NULL, NULL, '2026-01-01 00:00:01+00'),
      (3, 1, 2, 3, -12345678901234567890123456789012345678, 0, -0.001, 0.00, 'NaN', 'Infinity', 'emoji 🙂 ✓',
       'x', 'xyz', '', false, '2000-01-01', '00:00:00', '2000-01-01 00:00:00.000001', '1999-12-31 23:59:59.5+05:30',
       '-1 days', '00000000-0000-0000-0000-000000000000', 'null', '[]', '{{1,2},{3,4}}', '{}', 'sad', '{}',
       '2026-01-01 00:00:02+00');
";

#[tokio::test]
async fn postgres_to_postgres_keeps_every_type_and_value() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src_db = db(pg, &src_url);
    let dst_db = db(pg, &dst_url);
    pg.query_in(&src_db, TYPES_DDL).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    let p = spec(
        r#"{"source":"a","target":"b","mode":"incremental","cursor":"updated_at","tables":["public.*"]}"#,
    );
    let report = pass(&p, &source, &sink, &state).await;
    assert_eq!(report.tables[0].inserted, 3);

    // Declared types are kept exactly, enums and arrays included; the generated
    // column stays generated.
    let columns = "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attgenerated::text, ', ' \
                   ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'everything'::regclass AND attnum > 0";
    let want = pg
        .query_in(&src_db, columns)
        .unwrap()
        .replace("money2", "numeric(12,2)");
    assert_eq!(pg.query_in(&dst_db, columns).unwrap(), want);
    assert_eq!(
        pg.query_in(
            &dst_db,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'everything_day'"
        )
        .unwrap(),
        "1"
    );

    // Every value is equal, compared by PostgreSQL's own text output.
    let dump = "SELECT string_agg(e::text, E'\\n' ORDER BY id) FROM everything e";
    assert_eq!(
        pg.query_in(&dst_db, dump).unwrap(),
        pg.query_in(&src_db, dump).unwrap()
    );
    let target = PostgresSource::connect(&dst_url).await.unwrap();
    assert_eq!(
        checksum(&source, "public.everything").await,
        checksum(&target, "public.everything").await
    );

    // Incremental: an update and an insert after the checkpoint.
    pg.query_in(
        &src_db,
        "UPDATE everything SET t = 'changed', updated_at = '2026-02-01 00:00:00+00' WHERE id = 2;
         INSERT INTO everything (id, price, updated_at) VALUES (4, 1.5, '2026-02-01 00:00:00+00');",
    )
    .unwrap();
    let report = pass(&p, &source, &sink, &state).await;
    assert_eq!(
        (report.tables[0].inserted, report.tables[0].updated),
        (1, 1)
    );
    assert_eq!(
        pg.query_in(&dst_db, dump).unwrap(),
        pg.query_in(&src_db, dump).unwrap()
    );
}

const ORDERS_DDL: &str = "
    CREATE TABLE orders (id bigint PRIMARY KEY, customer integer NOT NULL, amount numeric(12,2), note text,
      paid boolean, placed date, updated_at timestamptz NOT NULL, ref uuid, weight double precision);
    INSERT INTO orders SELECT i, i % 97, (i * 1.25)::numeric(12,2), CASE WHEN i % 5 = 0 THEN NULL ELSE 'note ' || i END,
      i % 2 = 0, date '2025-01-01' + (i % 365), timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second',
      md5(i::text)::uuid, i / 3.0 FROM generate_series(1, 12000) i;
";

#[tokio::test]
async fn postgres_to_sqlite_full_and_incremental() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let src_db = db(pg, &src_url);
    pg.query_in(&src_db, ORDERS_DDL).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = SqliteSink::open(dir.path().join("target.db")).unwrap();

    let full = spec(
        r#"{"source":"a","target":"b","mode":"full","tables":["public.orders"],"batch_size":5000}"#,
    );
    assert_eq!(
        pass(&full, &source, &sink, &state).await.tables[0].inserted,
        12000
    );
    let target = SqliteSource::open(dir.path().join("target.db")).unwrap();
    assert_eq!(
        checksum(&source, "public.orders").await,
        checksum(&target, "orders").await
    );

    let inc = spec(
        r#"{"source":"a","target":"b","mode":"incremental","cursor":"updated_at","delete_detection":"key_diff",
            "tables":["public.orders"]}"#,
    );
    pass(&inc, &source, &sink, &state).await;
    pg.query_in(
        &src_db,
        "UPDATE orders SET amount = amount + 1, updated_at = '2027-01-01 00:00:00+00' WHERE id % 100 = 0;
         INSERT INTO orders VALUES (20000, 1, 9.99, 'new ✓', true, '2027-01-01', '2027-01-01 00:00:01+00', NULL, 0.5);
         DELETE FROM orders WHERE id % 1000 = 1;",
    )
    .unwrap();
    let s = &pass(&inc, &source, &sink, &state).await.tables[0];
    assert_eq!(
        (s.rows_read, s.inserted, s.updated, s.deleted),
        (121, 1, 120, 12),
        "{s:?}"
    );
    assert_eq!(
        checksum(&source, "public.orders").await,
        checksum(&target, "orders").await
    );
}

#[tokio::test]
async fn sqlite_to_postgres_full_and_incremental() {
    let pg = Postgres::shared().unwrap();
    let dst_url = pg.create_database().unwrap();
    let dst_db = db(pg, &dst_url);
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("source.db");
    let c = rusqlite::Connection::open(&src_path).unwrap();
    c.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, price NUMERIC(10,2), qty SMALLINT,
           active BOOLEAN, added DATE, updated_at TIMESTAMP NOT NULL, tag UUID, meta JSON, blob BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 7000)
         INSERT INTO items SELECT i, 'item ' || i || ' é', printf('%d.%02d', i / 100, i % 100), i % 300, i % 2,
           date('2025-01-01', '+' || (i % 365) || ' days'), datetime(1767225600 + i, 'unixepoch'),
           printf('%08x-0000-4000-8000-%012x', i, i), '{\"n\":' || i || '}', x'00ff' FROM n;",
    )
    .unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = SqliteSource::open(&src_path).unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    let inc = spec(
        r#"{"source":"a","target":"b","mode":"incremental","cursor":"updated_at","target_schema":"shop"}"#,
    );
    assert_eq!(
        pass(&inc, &source, &sink, &state).await.tables[0].inserted,
        7000
    );
    let types = pg
        .query_in(
            &dst_db,
            "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'shop.items'::regclass AND attnum > 0",
        )
        .unwrap();
    assert_eq!(
        types,
        "bigint,character varying(40),numeric(10,2),smallint,boolean,date,timestamp without time zone,uuid,jsonb,bytea"
    );
    c.execute_batch(
        "UPDATE items SET price = price * 2, updated_at = '2027-01-01 00:00:00' WHERE id % 50 = 0;
         INSERT INTO items VALUES (9000, 'new', 1.00, 1, 1, '2027-01-01', '2027-01-01 00:00:01', NULL, NULL, NULL);",
    )
    .unwrap();
    let s = &pass(&inc, &source, &sink, &state).await.tables[0];
    assert_eq!((s.inserted, s.updated), (1, 140), "{s:?}");
    let target = PostgresSource::connect(&dst_url).await.unwrap();
    let a = checksum(&source, "items").await;
    let b = checksum(&target, "shop.items").await;
    assert_eq!(a.rows, b.rows);
    // JSON comes back from jsonb normalized ({"n": 1}), so compare the other columns by SQL.
    let sum: String = pg
        .query_in(
            &dst_db,
            "SELECT sum(price)::text || '/' || count(*) FROM shop.items WHERE name LIKE '%é'",
        )
        .unwrap();
    let want: String = c
        .query_row(
            "SELECT printf('%.2f', sum(price)) || '/' || count(*) FROM items WHERE name LIKE '%é'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sum, want);
}

/// Types the target lacks are made from what the source declares: an enum in
/// another schema used only inside an array (schema and type created), and an
/// array of a domain (an array of the domain's base type).
#[tokio::test]
async fn enum_arrays_from_other_schemas_and_domain_arrays_are_created() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let (src_db, dst_db) = (db(pg, &src_url), db(pg, &dst_url));
    pg.query_in(
        &src_db,
        "CREATE SCHEMA kinds;
         CREATE TYPE kinds.color AS ENUM ('red', 'green');
         CREATE DOMAIN cents AS numeric(12,2) CHECK (VALUE >= 0);
         CREATE TABLE palette (id int PRIMARY KEY, colors kinds.color[], prices cents[]);
         INSERT INTO palette VALUES (1, '{red,green}', '{1.50,2.00}'), (2, '{}', NULL), (3, NULL, '{{1,2},{3,4}}');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.palette"]}"#);
    let report = pass(&p, &source, &sink, &state).await;
    assert_eq!(report.tables[0].inserted, 3);
    let columns = "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
                   FROM pg_attribute WHERE attrelid = 'palette'::regclass AND attnum > 0";
    assert_eq!(
        pg.query_in(&dst_db, columns).unwrap(),
        "id integer, colors kinds.color[], prices numeric(12,2)[]"
    );
    let dump = "SELECT string_agg(p::text, E'\\n' ORDER BY id) FROM palette p";
    assert_eq!(
        pg.query_in(&dst_db, dump).unwrap(),
        pg.query_in(&src_db, dump).unwrap()
    );
}
