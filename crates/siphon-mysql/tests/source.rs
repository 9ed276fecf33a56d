//! The MySQL source against a real MariaDB: keyset order under
//! case-insensitive collations, unsigned keys near 2^64, zero dates, time
//! zones, generated columns, keys and indexes, and polling.

use std::collections::HashSet;

use chrono::{NaiveDateTime, TimeZone, Utc};
use siphon_core::{
    CursorSpec, CursorStrategy, ErrorKind, Position, Row, Source, TableFilter, TableName,
    TableSchema, Value,
};
use siphon_mysql::MySqlSource;
use siphon_testkit::MariaDb;

fn server() -> &'static MariaDb {
    MariaDb::shared().expect("the shared MariaDB server")
}

fn db_of(url: &str) -> String {
    url.rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string()
}

/// A new database with `sql` run in it; its URL.
fn database_with(sql: &str) -> String {
    let url = server().create_database().unwrap();
    // The client's own character set is not utf8mb4: say it is.
    server()
        .query_in(&db_of(&url), &format!("SET NAMES utf8mb4; {sql}"))
        .unwrap();
    url
}

async fn table(source: &MySqlSource, url: &str, name: &str) -> TableSchema {
    let name = TableName::new(Some(&db_of(url)), name);
    let all = TableFilter {
        include: vec!["*".into()],
        exclude: vec![],
    };
    let found = source.discover(&all).await.unwrap();
    found
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("table {name} not discovered"))
}

/// Every row, `chunk` at a time, from `after` up to `until`.
async fn read_range(
    source: &MySqlSource,
    t: &TableSchema,
    mut after: Option<Position>,
    until: Option<&Position>,
    chunk: usize,
) -> Vec<Row> {
    let mut rows = Vec::new();
    loop {
        let c = source
            .read_range(t, after.as_ref(), until, chunk)
            .await
            .unwrap();
        assert!(c.rows.len() <= chunk);
        if c.rows.is_empty() {
            assert!(c.last.is_none());
            return rows;
        }
        rows.extend(c.rows);
        after = c.last;
    }
}

/// Reads the table whole, then split into `parts` ranges; the ranges hold
/// every row once, in order.
async fn read_split(source: &MySqlSource, t: &TableSchema, parts: usize) -> (Vec<Row>, usize) {
    let cuts = source.split_keys(t, parts).await.unwrap();
    let mut bounds: Vec<Option<Position>> = vec![None];
    bounds.extend(cuts.iter().cloned().map(Some));
    bounds.push(None);
    let mut rows = Vec::new();
    for w in bounds.windows(2) {
        rows.extend(read_range(source, t, w[0].clone(), w[1].as_ref(), 2).await);
    }
    (rows, cuts.len())
}

#[tokio::test]
async fn case_insensitive_keys_are_read_in_the_servers_order_without_skips_or_repeats() {
    let names = [
        "a", "A", "b", "B", "ß", "ss", "s", "S", "é", "e", "E", "ä", "z", "Z", "", " x", "x",
    ];
    let values: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("('{n}', {i})"))
        .collect();
    let url = database_with(&format!(
        "CREATE TABLE ci (name varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, \
         n int NOT NULL, PRIMARY KEY (name, n)); INSERT INTO ci VALUES {};",
        values.join(", ")
    ));
    let source = MySqlSource::connect(&url).await.unwrap();
    let t = table(&source, &url, "ci").await;
    let whole = read_range(&source, &t, None, None, 1000).await;
    assert_eq!(whole.len(), names.len());
    // The server's own order: equal names (`a`, `A`) tie-broken by n.
    let order = server()
        .query_in(&db_of(&url), "SELECT n FROM ci ORDER BY name, n")
        .unwrap();
    let want: Vec<Value> = order
        .lines()
        .map(|l| Value::Int32(l.parse().unwrap()))
        .collect();
    let got: Vec<Value> = whole.iter().map(|r| r[1].clone()).collect();
    assert_eq!(got, want, "whole read in the server's order");
    for chunk in [1, 2, 3] {
        let paged = read_range(&source, &t, None, None, chunk).await;
        assert_eq!(paged, whole, "read {chunk} at a time");
    }
    let (split, cuts) = read_split(&source, &t, 4).await;
    assert!(cuts > 0, "a text key is cut by sampling");
    assert_eq!(split, whole, "read in key ranges");
    // Keys are looked up by the server's comparison too.
    let keys = vec![
        vec![Value::Text("A".into()), Value::Int32(0)],
        vec![Value::Text("SS".into()), Value::Int32(5)],
        vec![Value::Text("a".into()), Value::Int32(99)],
    ];
    assert_eq!(
        source.existing_keys(&t, &keys).await.unwrap(),
        vec![true, true, false]
    );
}

#[tokio::test]
async fn unsigned_bigint_keys_near_two_to_the_64_are_chunked_and_split() {
    let ids: [u64; 8] = [
        0,
        1,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 1,
        u64::MAX - 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    let values: Vec<String> = ids.iter().map(|i| format!("({i}, 'v{i}')")).collect();
    let url = database_with(&format!(
        "CREATE TABLE big (id bigint unsigned PRIMARY KEY, v varchar(40)); INSERT INTO big VALUES {};",
        values.join(", ")
    ));
    let source = MySqlSource::connect(&url).await.unwrap();
    let t = table(&source, &url, "big").await;
    let want: Vec<Value> = ids
        .iter()
        .map(|i| Value::Decimal(i.to_string().parse().unwrap()))
        .collect();
    for chunk in [1, 3] {
        let rows = read_range(&source, &t, None, None, chunk).await;
        let got: Vec<Value> = rows.iter().map(|r| r[0].clone()).collect();
        assert_eq!(got, want, "read {chunk} at a time");
    }
    let (split, cuts) = read_split(&source, &t, 4).await;
    assert_eq!(cuts, 3, "three cuts between 0 and 2^64-1");
    let got: Vec<Value> = split.iter().map(|r| r[0].clone()).collect();
    assert_eq!(got, want, "read in key ranges");
    let keys = vec![
        vec![want[7].clone()],
        vec![want[3].clone()],
        vec![Value::Decimal("18446744073709551612".parse().unwrap())],
    ];
    assert_eq!(
        source.existing_keys(&t, &keys).await.unwrap(),
        vec![true, true, false]
    );
}

const ZERO_DATES: &str = "SET sql_mode = ''; \
    CREATE TABLE z (id int PRIMARY KEY, d date, dt datetime(3), ts timestamp NULL); \
    INSERT INTO z VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00'), \
    (2, '2024-01-02', '2024-01-02 03:04:05.678', '2024-01-02 03:04:05');";

#[tokio::test]
async fn zero_dates_stop_the_table_with_the_fix_by_default() {
    let url = database_with(ZERO_DATES);
    let source = MySqlSource::connect(&url).await.unwrap();
    let t = table(&source, &url, "z").await;
    let e = source.read_chunk(&t, None, 10).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.column_name(), Some("d"), "{e}");
    assert!(e.table_name().unwrap().ends_with(".z"), "{e}");
    assert!(e.to_string().contains("zero_dates=null"), "{e}");
}

#[tokio::test]
async fn zero_dates_read_as_null_when_asked() {
    let url = database_with(ZERO_DATES);
    let source = MySqlSource::connect(&format!("{url}?zero_dates=null"))
        .await
        .unwrap();
    let t = table(&source, &url, "z").await;
    let rows = source.read_chunk(&t, None, 10).await.unwrap().rows;
    let naive = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Value::Int32(1), Value::Null, Value::Null, Value::Null],
            vec![
                Value::Int32(2),
                Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
                Value::Timestamp(naive("2024-01-02 03:04:05.678")),
                Value::TimestampTz(Utc.from_utc_datetime(&naive("2024-01-02 03:04:05"))),
            ],
        ]
    );
}

#[tokio::test]
async fn a_server_in_another_time_zone_still_reads_timestamps_as_utc_and_datetimes_unshifted() {
    // Bootstraps running at once on this machine sometimes collide in /tmp.
    let mut own = MariaDb::start_with_args(&["--default-time-zone=+05:30"]);
    for _ in 0..2 {
        if own.is_ok() {
            break;
        }
        own = MariaDb::start_with_args(&["--default-time-zone=+05:30"]);
    }
    let own = own.unwrap();
    assert_eq!(own.query("SELECT @@global.time_zone").unwrap(), "+05:30");
    let url = own.create_database().unwrap();
    // Written by a session in the server's zone: `ts` is stored as 04:30 UTC.
    own.query_in(
        &db_of(&url),
        "CREATE TABLE tz (id int PRIMARY KEY, ts timestamp(6) NULL, dt datetime(6)); \
         INSERT INTO tz VALUES (1, '2024-01-01 10:00:00.5', '2024-01-01 10:00:00.5');",
    )
    .unwrap();
    let source = MySqlSource::connect(&url).await.unwrap();
    let t = table(&source, &url, "tz").await;
    let naive = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    let want = vec![vec![
        Value::Int32(1),
        Value::TimestampTz(Utc.from_utc_datetime(&naive("2024-01-01 04:30:00.5"))),
        Value::Timestamp(naive("2024-01-01 10:00:00.5")),
    ]];
    // Several reads, so pooled connections are reused after their reset.
    for _ in 0..4 {
        let rows = source.read_chunk(&t, None, 10).await.unwrap().rows;
        assert_eq!(rows, want);
    }
    // A bound compared in SQL is in UTC too: polling after 04:00 UTC finds it.
    let cursor = CursorSpec {
        column: "ts".into(),
        strategy: CursorStrategy::Timestamp,
        lookback: None,
    };
    let high = source.cursor_high(&t, &cursor).await.unwrap().unwrap();
    let polled = source.poll(&t, &cursor, Some(&high), 10).await.unwrap();
    assert_eq!(polled.rows, want, "polled from the high mark");
}

#[tokio::test]
async fn generated_columns_keys_indexes_and_json_are_discovered() {
    let url = database_with(
        "CREATE TABLE g (id int PRIMARY KEY, a int, b int AS (a * 2) VIRTUAL, \
         c int AS (a + 1) STORED, doc json, note text, \
         t timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, \
         KEY by_note (note(10)), KEY by_a (a)); \
         CREATE TABLE k (code varchar(10) NOT NULL, other int, UNIQUE KEY by_code (code)); \
         CREATE VIEW v AS SELECT id FROM g; \
         CREATE TABLE siphon_checkpoints (pipeline varchar(10) PRIMARY KEY); \
         CREATE TABLE siphon_columns (tbl varchar(10) PRIMARY KEY); \
         INSERT INTO g (id, a, doc, note) VALUES (1, 20, '{\"x\": 1}', 'n');",
    );
    let source = MySqlSource::connect(&url).await.unwrap();
    let all = TableFilter {
        include: vec!["*".into()],
        exclude: vec![],
    };
    let found = source.discover(&all).await.unwrap();
    let names: HashSet<String> = found.iter().map(|t| t.name.name.clone()).collect();
    assert_eq!(
        names,
        HashSet::from(["g".into(), "k".into()]),
        "views are not tables"
    );
    let g = table(&source, &url, "g").await;
    let generated: Vec<&str> = g
        .columns
        .iter()
        .filter(|c| c.generated)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(generated, vec!["b", "c"]);
    assert_eq!(g.primary_key, vec![0]);
    let doc = &g.columns[g.column_index("doc").unwrap()];
    assert_eq!(doc.data_type.kind, siphon_core::TypeKind::Json);
    assert_eq!(doc.native_type, "json");
    assert!(g
        .indexes
        .iter()
        .any(|i| i.name == "by_a" && i.columns == ["a"]));
    let prefixed = g
        .objects
        .iter()
        .find(|o| o.name == "by_note")
        .expect("the prefix index as an object");
    assert!(
        prefixed.definition.contains("`note`(10)"),
        "{}",
        prefixed.definition
    );
    let rows = source.read_chunk(&g, None, 10).await.unwrap().rows;
    assert_eq!(rows[0][2], Value::Int32(40));
    assert_eq!(rows[0][3], Value::Int32(21));
    assert_eq!(rows[0][4], Value::Json("{\"x\": 1}".into()));

    let k = table(&source, &url, "k").await;
    assert!(k.primary_key.is_empty());
    assert_eq!(k.unique_keys, vec![vec![0]]);
    assert_eq!(k.row_key(), Some(&[0usize][..]));
}

#[tokio::test]
async fn polling_by_timestamp_reads_rows_sharing_a_time_once_in_cursor_and_key_order() {
    let url = database_with(
        "CREATE TABLE ev (id int PRIMARY KEY, at datetime(6) NOT NULL, v int); \
         INSERT INTO ev VALUES (5, '2024-01-01 00:00:01', 1), (1, '2024-01-01 00:00:02', 2), \
         (3, '2024-01-01 00:00:01', 3), (2, '2024-01-01 00:00:01', 4), (4, '2024-01-01 00:00:03', 5);",
    );
    let source = MySqlSource::connect(&url).await.unwrap();
    let t = table(&source, &url, "ev").await;
    let cursor = CursorSpec {
        column: "at".into(),
        strategy: CursorStrategy::Timestamp,
        lookback: None,
    };
    let mut after = None;
    let mut ids = Vec::new();
    let mut marks: Vec<Position> = Vec::new();
    loop {
        let c = source.poll(&t, &cursor, after.as_ref(), 2).await.unwrap();
        if c.rows.is_empty() {
            break;
        }
        ids.extend(c.rows.iter().map(|r| r[0].clone()));
        marks.push(c.last.clone().unwrap());
        after = c.last;
    }
    let want: Vec<Value> = [2, 3, 5, 1, 4].into_iter().map(Value::Int32).collect();
    assert_eq!(ids, want);
    for w in marks.windows(2) {
        assert_eq!(
            source.compare(&t, &w[0], &w[1]).unwrap(),
            std::cmp::Ordering::Less
        );
    }
    // A later row is found from the last watermark; a row written late
    // with an earlier time is found again from the rewound one.
    server()
        .query_in(
            &db_of(&url),
            "INSERT INTO ev VALUES (9, '2024-01-01 00:00:04', 6), (8, '2024-01-01 00:00:02', 7)",
        )
        .unwrap();
    let last = after.unwrap();
    let next = source.poll(&t, &cursor, Some(&last), 10).await.unwrap();
    assert_eq!(next.rows.len(), 1);
    assert_eq!(next.rows[0][0], Value::Int32(9));
    let back = source.rewind(&t, &cursor, &last).unwrap();
    let again = source.poll(&t, &cursor, Some(&back), 10).await.unwrap();
    let again: Vec<Value> = again.rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        again,
        [2, 3, 5, 1, 8, 4, 9]
            .into_iter()
            .map(Value::Int32)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn polling_by_an_unsigned_sequence_beyond_two_to_the_63() {
    let base: u64 = 1 << 63;
    let url = database_with(&format!(
        "CREATE TABLE seq (id int PRIMARY KEY, s bigint unsigned NOT NULL); \
         INSERT INTO seq VALUES (1, {}), (2, {}), (3, {}), (4, {});",
        base + 2,
        base - 1,
        u64::MAX,
        base + 2
    ));
    let source = MySqlSource::connect(&url).await.unwrap();
    let t = table(&source, &url, "seq").await;
    let cursor = CursorSpec {
        column: "s".into(),
        strategy: CursorStrategy::Sequence,
        lookback: None,
    };
    let mut after = None;
    let mut ids = Vec::new();
    loop {
        let c = source.poll(&t, &cursor, after.as_ref(), 1).await.unwrap();
        if c.rows.is_empty() {
            break;
        }
        ids.extend(c.rows.iter().map(|r| r[0].clone()));
        after = c.last;
    }
    assert_eq!(
        ids,
        [2, 1, 4, 3]
            .into_iter()
            .map(Value::Int32)
            .collect::<Vec<_>>()
    );
    let high = source.cursor_high(&t, &cursor).await.unwrap().unwrap();
    let top = source.poll(&t, &cursor, Some(&high), 10).await.unwrap();
    assert_eq!(top.rows.len(), 1);
    assert_eq!(top.rows[0][0], Value::Int32(3));
}
