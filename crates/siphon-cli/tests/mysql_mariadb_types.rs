//! MariaDB's own table kinds through the binlog (`mode: cdc`), against the
//! testkit's real servers: `uuid`, `inet6` and `inet4` columns (data-type
//! plugins the binlog logs as fixed-length binary) stream to PostgreSQL and
//! MariaDB targets as the snapshot copies them, with the default row
//! metadata and with `binlog_row_metadata=FULL`; a system-versioned table
//! (`WITH SYSTEM VERSIONING`) is refused in `mode: cdc`, naming the table
//! and the ways on, while `mode: full` copies its current rows.

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{config, db_name, my_rows, pg_rows, siphon, text, BothTargets};

/// The columns compared, as `my_rows` and `pg_rows` print them.
const N_ROW: &str = "id, u, ip, ip4";
const K_ROW: &str = "u, ip, v";

/// Creates `n` (keyed by an int) and `k` (keyed by a uuid) at a new
/// database of `my`, with one row each; returns the URL and the database.
fn plugin_source(my: &MariaDb) -> (String, String) {
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE n (id int PRIMARY KEY, u uuid, ip inet6, ip4 inet4); \
         INSERT INTO n VALUES (1, '123e4567-e89b-12d3-a456-426614174000', '2001:db8::1', '10.1.2.3'); \
         CREATE TABLE k (u uuid PRIMARY KEY, ip inet6, v int); \
         INSERT INTO k VALUES ('123e4567-e89b-12d3-a456-426614174000', '::1', 1);",
    )
    .unwrap();
    (src, db)
}

/// Inserts, updates and deletes at the source covering the values whose
/// binary forms are special: UUIDs MariaDB stores with their segments
/// swapped or not, trailing zero bytes the binlog drops, IPv4-mapped and
/// -compatible IPv6 addresses, runs of zero groups, and NULLs.
fn plugin_changes(my: &MariaDb, db: &str) {
    my.query_in(
        db,
        "INSERT INTO n VALUES \
           (2, '00000000-0000-0000-0000-000000000002', '::ffff:1.2.3.4', '192.168.0.1'), \
           (3, 'f47ac10b-58cc-4372-a567-0e02b2c3d479', '::', '0.0.0.0'), \
           (4, '12345678-0000-0000-0000-000000000000', '2001:db8::', '10.0.0.0'), \
           (5, '00000000-0000-0000-0000-000000000000', '::10.1.2.3', '255.255.255.255'), \
           (6, NULL, '1:0:2:0:0:3:0:0', NULL), \
           (7, 'AAAAAAAA-0000-1000-8000-000000000000', '1:2:3:4:5:6:0:8', '1.2.3.4'), \
           (8, '6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'FE80::ABCD:EF:1234:FFFF', '8.8.8.8'), \
           (9, NULL, NULL, NULL); \
         UPDATE n SET u = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', ip = '::1' WHERE id = 1; \
         UPDATE n SET ip4 = '127.0.0.1' WHERE u = 'f47ac10b-58cc-4372-a567-0e02b2c3d479'; \
         DELETE FROM n WHERE id = 9; \
         INSERT INTO k VALUES ('6ba7b810-9dad-11d1-80b4-00c04fd430c8', '2001:db8::1', 2), \
           ('f47ac10b-58cc-4372-a567-0e02b2c3d479', NULL, 3); \
         UPDATE k SET v = 10 WHERE u = '123e4567-e89b-12d3-a456-426614174000'; \
         UPDATE k SET u = '00000000-0000-0000-0000-000000000001' \
           WHERE u = 'f47ac10b-58cc-4372-a567-0e02b2c3d479'; \
         DELETE FROM k WHERE u = '6ba7b810-9dad-11d1-80b4-00c04fd430c8';",
    )
    .unwrap();
}

/// Copies `n` and `k` of a new source at `my` into MariaDB and PostgreSQL
/// (`mode: cdc`), changes them, streams the changes, and checks that both
/// targets hold the source's rows as MariaDB prints them.
fn plugin_types_stream(my: &MariaDb, pg: &Postgres) {
    let (src, db) = plugin_source(my);
    let both = BothTargets::new(my, pg, &src, "cdc", &format!("[{db}.n, {db}.k]"), "");
    both.run_once();
    let source_n = || my_rows(my, &db, N_ROW, "n");
    let source_k = || my_rows(my, &db, K_ROW, "k");
    // The snapshot's rows.
    assert_eq!(my_rows(my, &both.my_db, N_ROW, "n"), source_n());
    assert_eq!(
        pg_rows(pg, &both.pg_db, N_ROW, &format!("\"{db}\".n")),
        source_n()
    );
    plugin_changes(my, &db);
    both.run_once();
    assert_eq!(source_n().len(), 8);
    assert_eq!(my_rows(my, &both.my_db, N_ROW, "n"), source_n());
    assert_eq!(my_rows(my, &both.my_db, K_ROW, "k"), source_k());
    assert_eq!(
        pg_rows(pg, &both.pg_db, N_ROW, &format!("\"{db}\".n")),
        source_n()
    );
    assert_eq!(
        pg_rows(pg, &both.pg_db, K_ROW, &format!("\"{db}\".k")),
        source_k()
    );
    // And a later change streams too (the table was not stopped).
    my.query_in(&db, "UPDATE n SET ip = '::ffff:10.0.0.1' WHERE id = 2")
        .unwrap();
    both.run_once();
    assert_eq!(my_rows(my, &both.my_db, N_ROW, "n"), source_n());
    assert_eq!(
        pg_rows(pg, &both.pg_db, N_ROW, &format!("\"{db}\".n")),
        source_n()
    );
}

#[test]
fn uuid_and_inet_columns_stream_to_postgres_and_mariadb() {
    plugin_types_stream(MariaDb::shared().unwrap(), Postgres::shared().unwrap());
}

#[test]
fn uuid_and_inet_columns_stream_with_full_row_metadata() {
    // The TABLE_MAP events name the columns and log these as BINARY: the
    // shape check must take them for the table's columns now.
    let my = MariaDb::start_with_args(&["--binlog-row-metadata=FULL"]).unwrap();
    plugin_types_stream(&my, Postgres::shared().unwrap());
}

/// A system-versioned table and a plain one at a new source database.
fn versioned_source(my: &MariaDb) -> (String, String) {
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(10)) WITH SYSTEM VERSIONING; \
         INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c'); \
         CREATE TABLE plain (id int PRIMARY KEY, v int); INSERT INTO plain VALUES (1, 10);",
    )
    .unwrap();
    (src, db)
}

/// Checks the refusal of `db`.t in `said`: the table, why, and the ways on.
fn assert_refused(said: &str, db: &str) {
    assert!(said.contains(&format!("{db}.t")), "{said}");
    assert!(said.contains("system-versioned"), "{said}");
    assert!(said.contains("mode: full"), "{said}");
    assert!(said.contains(&format!("exclude: [\"{db}.t\"]")), "{said}");
}

/// Refused in `mode: cdc` with `server`'s row metadata, before its target
/// table is created; the plain table streams on.
fn versioned_table_refused(my: &MariaDb) {
    let (src, db) = versioned_source(my);
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "cdc", &format!("[\"{db}.*\"]"), "");
    let out = siphon(dir.path(), &["run", "--once"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_refused(&said, &db);
    let tables = my
        .query(&format!(
            "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = '{dst_db}' AND TABLE_NAME IN ('t', 'plain')"
        ))
        .unwrap();
    assert_eq!(tables.trim(), "plain");
    my.query_in(
        &db,
        "DELETE FROM t WHERE id = 2; UPDATE t SET v = 'A' WHERE id = 1; \
         INSERT INTO plain VALUES (2, 20);",
    )
    .unwrap();
    let out = siphon(dir.path(), &["run", "--once"]);
    let said = text(&out);
    assert_refused(&said, &db);
    assert_eq!(my_rows(my, &dst_db, "id, v", "plain"), vec!["1|10", "2|20"]);
}

#[test]
fn a_system_versioned_table_is_refused_in_cdc_mode() {
    versioned_table_refused(MariaDb::shared().unwrap());
}

#[test]
fn a_system_versioned_table_is_refused_in_cdc_mode_with_full_row_metadata() {
    let my = MariaDb::start_with_args(&["--binlog-row-metadata=FULL"]).unwrap();
    versioned_table_refused(&my);
}

#[test]
fn a_system_versioned_table_is_copied_with_its_current_rows_in_full_mode() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let (src, db) = versioned_source(my);
    let both = BothTargets::new(my, pg, &src, "full", &format!("[{db}.t]"), "");
    both.run_once();
    my.query_in(
        &db,
        "DELETE FROM t WHERE id = 2; UPDATE t SET v = 'A' WHERE id = 1; INSERT INTO t VALUES (4, 'd');",
    )
    .unwrap();
    both.run_once();
    let want = vec!["1|A", "3|c", "4|d"];
    assert_eq!(my_rows(my, &db, "id, v", "t"), want);
    assert_eq!(my_rows(my, &both.my_db, "id, v", "t"), want);
    assert_eq!(
        pg_rows(pg, &both.pg_db, "id, v", &format!("\"{db}\".t")),
        want
    );
    // The target tables hold no history columns.
    let cols = my
        .query(&format!(
            "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM \
             information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 't'",
            both.my_db
        ))
        .unwrap();
    assert_eq!(cols.trim(), "id,v");
}
