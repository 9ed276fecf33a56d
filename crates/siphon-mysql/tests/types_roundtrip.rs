//! MariaDB's types, written by a session whose `time_zone` is not UTC, read
//! by the MySQL source and loaded into PostgreSQL by its sink: each value
//! arrives as PostgreSQL shows it for the mapped type.

use siphon_core::{Checkpoint, Phase, SchemaOptions, Sink, Source, StreamId, TableFilter};
use siphon_mysql::MySqlSource;
use siphon_postgres::PostgresSink;
use siphon_testkit::{MariaDb, Postgres};

fn db_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// Column, MySQL type, literal, and the text PostgreSQL shows for it.
const COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("flag", "tinyint(1)", "1", "true"),
    ("bit1", "bit(1)", "b'1'", "true"),
    ("small_u", "smallint unsigned", "65535", "65535"),
    ("int_u", "int unsigned", "4294967295", "4294967295"),
    (
        "big_u",
        "bigint unsigned",
        "18446744073709551615",
        "18446744073709551615",
    ),
    (
        "bit64",
        "bit(64)",
        "18446744073709551615",
        "18446744073709551615",
    ),
    (
        "exact",
        "decimal(65,30)",
        "-12345678901234567890123456789012345.123456789012345678901234567890",
        "-12345678901234567890123456789012345.123456789012345678901234567890",
    ),
    ("dbl", "double", "0.1", "0.1"),
    (
        "emoji",
        "varchar(8) CHARACTER SET utf8mb4",
        "'🦀ok'",
        "🦀ok",
    ),
    (
        "latin",
        "varchar(8) CHARACTER SET latin1",
        "'Größe'",
        "Größe",
    ),
    ("raw", "varbinary(4)", "X'00FF'", "\\x00ff"),
    ("day", "date", "'2024-02-29'", "2024-02-29"),
    ("neg", "time(6)", "'-838:59:59.000000'", "-838:59:59"),
    ("hours", "time", "'100:00:01'", "100:00:01"),
    (
        "wall",
        "datetime(6)",
        "'2024-01-01 10:00:00.5'",
        "2024-01-01 10:00:00.5",
    ),
    (
        "instant",
        "timestamp(6) NULL",
        "'2024-01-01 10:00:00.5'",
        "2024-01-01 04:30:00.5+00",
    ),
    ("yr", "year", "2155", "2155"),
    ("size", "enum('small','Medium')", "'Medium'", "Medium"),
    ("tags", "set('a','b','c')", "'a,c'", "a,c"),
    ("doc", "json", "'{\"a\": [1, 2]}'", "{\"a\": [1, 2]}"),
];

#[tokio::test]
async fn mariadb_types_arrive_in_postgresql_exactly() {
    let maria = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let url = maria.create_database().unwrap();
    let db = db_of(&url);
    let defs: Vec<String> = COLUMNS
        .iter()
        .map(|(c, t, _, _)| format!("`{c}` {t}"))
        .collect();
    let names: Vec<&str> = COLUMNS.iter().map(|(c, ..)| *c).collect();
    let lits: Vec<&str> = COLUMNS.iter().map(|(_, _, l, _)| *l).collect();
    let nulls = vec!["NULL"; COLUMNS.len()];
    maria
        .query_in(
            &db,
            &format!(
                "SET NAMES utf8mb4; SET time_zone = '+05:30'; \
                 CREATE TABLE t (id int PRIMARY KEY, {}); \
                 INSERT INTO t (id, {}) VALUES (1, {}), (2, {});",
                defs.join(", "),
                names.join(", "),
                lits.join(", "),
                nulls.join(", ")
            ),
        )
        .unwrap();

    let source = MySqlSource::connect(&url).await.unwrap();
    let filter = TableFilter {
        include: vec!["*".into()],
        exclude: vec![],
    };
    let table = source.discover(&filter).await.unwrap().remove(0);
    let rows = source.read_chunk(&table, None, 10).await.unwrap();

    let pg_url = pg.create_database().unwrap();
    let pg_db = db_of(&pg_url);
    pg.query_in(&pg_db, &format!("CREATE SCHEMA \"{db}\""))
        .unwrap();
    let sink = PostgresSink::connect(&pg_url).await.unwrap();
    sink.prepare(&table, &SchemaOptions::default())
        .await
        .unwrap();
    let checkpoint = Checkpoint {
        stream: StreamId::new("roundtrip", &table.name),
        epoch: 0,
        phase: Phase::snapshot(rows.last.clone(), None),
    };
    sink.load(&table, rows.rows, &checkpoint).await.unwrap();

    let shown: Vec<String> = names
        .iter()
        .map(|c| format!("coalesce({c}::text, 'NULL')"))
        .collect();
    let out = pg
        .query_in(
            &pg_db,
            &format!(
                "SET TimeZone = 'UTC'; SELECT concat_ws('|', {}) FROM \"{db}\".t ORDER BY id",
                shown.join(", ")
            ),
        )
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let got: Vec<&str> = lines[0].split('|').collect();
    for (i, (c, t, _, want)) in COLUMNS.iter().enumerate() {
        assert_eq!(got[i], *want, "column {c} ({t})");
    }
    assert!(
        lines[1].split('|').all(|v| v == "NULL"),
        "NULLs: {}",
        lines[1]
    );
}
