//! PostgreSQL → MariaDB types through the binary, in `full` mode, on the
//! testkit's real servers: numeric(38,10) and unbounded numeric, text with
//! emoji, bytea with every byte, timestamptz (the source database's time zone
//! `Asia/Kolkata`, so the target's datetime(6) must hold the UTC wall time),
//! timestamp, date, time, uuid, jsonb, an integer array, an enum, boolean,
//! integer extremes and floats, with a row of NULLs; read back with the
//! `mariadb` client and compared as text. Values MySQL cannot hold
//! (`infinity` dates, NaN, the year 10000) stop their own table with an error naming the
//! column while the other tables copy.

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{siphon, text};

const SOURCE: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE types (id int PRIMARY KEY, n38 numeric(38,10), nu numeric, t text, b bytea,
  tz timestamptz, ts timestamp, d date, tm time, u uuid, j jsonb, a integer[], m mood,
  flag boolean, s smallint, i integer, big bigint, r real, dp double precision);
INSERT INTO types SELECT 1, 9999999999999999999999999999.9999999999,
  99999999999999999999999999999999999.999999999999999999999999999999,
  'Zoë 🚀 emoji 👍🏽 ✓', decode(string_agg(lpad(to_hex(g), 2, '0'), '' ORDER BY g), 'hex'),
  '2026-03-01 05:30:00.123456+05:30', '9999-12-31 23:59:59.999999', '9999-12-31',
  '23:59:59.999999', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{\"a\": [1, 2.5, null, true], \"é\": \"🚀\"}', '{1,-2147483648,2147483647}', 'happy',
  true, 32767, 2147483647, 9223372036854775807, 1.5, 1.7976931348623157e308
  FROM generate_series(0, 255) g;
INSERT INTO types VALUES (2, -9999999999999999999999999999.9999999999,
  0.000000000000000000000000000001, '', '\\x', '1970-01-01 05:30:00+05:30',
  '0001-01-01 00:00:00', '0001-01-01', '00:00:00', '00000000-0000-0000-0000-000000000000',
  '[]', '{}', 'sad', false, -32768, -2147483648, -9223372036854775808, -1.25,
  -2.2250738585072014e-308);
INSERT INTO types (id) VALUES (3);
CREATE TABLE bad_date (id int PRIMARY KEY, d date);
INSERT INTO bad_date VALUES (1, '2026-01-01'), (2, 'infinity');
CREATE TABLE bad_number (id int PRIMARY KEY, x double precision);
INSERT INTO bad_number VALUES (1, 1), (2, 'NaN');
CREATE TABLE bad_year (id int PRIMARY KEY, at timestamptz);
INSERT INTO bad_year VALUES (1, '2026-01-01 00:00:00+00'), (2, '10000-01-01 00:00:00+00');
";

/// Each column of `types` on MariaDB as text, NULL as `NULL`, bytes in hex.
const READ_BACK: &str = "SET NAMES utf8mb4; SET time_zone = '+00:00'; SELECT CONCAT_WS('|', id, \
    IFNULL(n38, 'NULL'), IFNULL(nu, 'NULL'), IFNULL(t, 'NULL'), IFNULL(HEX(b), 'NULL'), \
    IFNULL(tz, 'NULL'), IFNULL(ts, 'NULL'), IFNULL(d, 'NULL'), IFNULL(tm, 'NULL'), \
    IFNULL(u, 'NULL'), IFNULL(j, 'NULL'), IFNULL(a, 'NULL'), IFNULL(m, 'NULL'), \
    IFNULL(flag + 0, 'NULL'), IFNULL(s, 'NULL'), IFNULL(i, 'NULL'), IFNULL(big, 'NULL'), \
    IFNULL(r, 'NULL'), IFNULL(dp, 'NULL')) FROM types ORDER BY id";

#[test]
fn postgres_types_arrive_in_mariadb_with_nulls_and_extremes() {
    let pg = Postgres::shared().unwrap();
    let my = MariaDb::shared().unwrap();
    let src = pg.create_database().unwrap();
    let pg_db = src.rsplit('/').next().unwrap().to_string();
    pg.query_in(&pg_db, SOURCE).unwrap();
    // Sessions of the source database run in India's time zone, not UTC.
    pg.query_in(
        &pg_db,
        &format!("ALTER DATABASE \"{pg_db}\" SET timezone = 'Asia/Kolkata'"),
    )
    .unwrap();
    assert_eq!(
        pg.query_in(&pg_db, "SHOW timezone").unwrap(),
        "Asia/Kolkata"
    );
    let dst = my.create_database().unwrap();
    let my_db = dst.rsplit('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
             pipelines:\n  types:\n    source: src\n    target: dst\n    mode: full\n\
             \x20   tables: ['public.*']\n"
        ),
    )
    .unwrap();
    let out = siphon(dir.path(), &["run", "--once"]);
    let printed = text(&out);
    assert!(!out.status.success(), "three tables must stop:\n{printed}");

    let every_byte: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    let expected = [
        format!(
            "1|9999999999999999999999999999.9999999999|\
             99999999999999999999999999999999999.999999999999999999999999999999|\
             Zoë 🚀 emoji 👍🏽 ✓|{every_byte}|2026-03-01 00:00:00.123456|\
             9999-12-31 23:59:59.999999|9999-12-31|23:59:59.999999|\
             a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|{{\"a\": [1, 2.5, null, true], \"é\": \"🚀\"}}|\
             [1,-2147483648,2147483647]|happy|1|32767|2147483647|9223372036854775807|1.5|\
             1.7976931348623157e308"
        ),
        "2|-9999999999999999999999999999.9999999999|\
         0.000000000000000000000000000001|||1970-01-01 00:00:00.000000|\
         0001-01-01 00:00:00.000000|0001-01-01|00:00:00.000000|\
         00000000-0000-0000-0000-000000000000|[]|[]|sad|0|-32768|-2147483648|\
         -9223372036854775808|-1.25|-2.2250738585072014e-308"
            .to_string(),
        "3|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL"
            .to_string(),
    ]
    .join("\n");
    assert_eq!(
        my.query_in(&my_db, READ_BACK).unwrap(),
        expected,
        "{printed}"
    );

    // Each unrepresentable value stops its own table, naming the column.
    for (table, column, value) in [
        ("bad_date", "d", "infinity"),
        ("bad_number", "x", "NaN"),
        ("bad_year", "at", "10000"),
    ] {
        let line = printed
            .lines()
            .find(|l| l.contains(&format!("public.{table}")) && l.contains("FAILED"))
            .unwrap_or_else(|| panic!("{table} did not stop:\n{printed}"));
        assert!(
            line.contains(&format!("column {column}")) && line.contains(value),
            "{table}: {line}"
        );
    }
}
