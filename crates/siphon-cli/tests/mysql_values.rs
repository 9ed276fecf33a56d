//! Values that must arrive unchanged, through the binary against the
//! testkit's real MariaDB and PostgreSQL: a MariaDB column with attributes
//! after its parameters (`decimal(10,2) unsigned`, `zerofill`, `float(7,3)
//! unsigned`, `char(10) binary`, enum labels holding commas and parentheses)
//! keeps its scale, length and labels on PostgreSQL and SQLite targets, in
//! full and in cdc (a zerofill decimal without its leading zeros); and a
//! table without a key streamed into MariaDB has each update and delete
//! change the row equal to the old one byte for byte, not one equal under
//! the target column's case-insensitive, space-padding collation.

use std::path::Path;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{config, config_named, db_name, my_rows, ok, pg_rows, siphon};

#[test]
fn an_unsigned_decimal_keeps_its_scale_on_a_postgres_target() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE d (id int PRIMARY KEY, p decimal(10,2) unsigned, q decimal(8,3) zerofill); \
         INSERT INTO d VALUES (1, 5.01, 1.5), (2, 0.99, 2.25);",
    )
    .unwrap();
    let dst = pg.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "cdc", &format!("[{db}.d]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    my.query_in(&db, "INSERT INTO d VALUES (3, 7.77, 3.333);")
        .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    // Before: 1|5|2, 2|1|2, 3|8|3 in numeric(10,0) and numeric(8,0).
    assert_eq!(
        pg_rows(pg, &db_name(&dst), "id, p, q", &format!("\"{db}\".d")),
        vec!["1|5.01|1.500", "2|0.99|2.250", "3|7.77|3.333"]
    );
}

#[test]
fn attributes_after_the_parameters_keep_every_type_on_a_postgres_target() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE a (id int PRIMARY KEY, f float(7,3) unsigned, g double(10,2) unsigned, \
           i int(10) unsigned zerofill, b bigint(20) unsigned, c char(10) binary, \
           v varchar(20) character set latin1, e enum('x) unsigned','b,(c)','it''s')); \
         INSERT INTO a VALUES (1, 1.5, 2.25, 42, 18446744073709551615, 'Ab', 'é', 'b,(c)');",
    )
    .unwrap();
    let dst = pg.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "cdc", &format!("[{db}.a]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    my.query_in(
        &db,
        "INSERT INTO a VALUES (2, 3.125, 4.5, 4294967295, 7, 'Long text', 'ü', 'x) unsigned');",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let dst_db = db_name(&dst);
    assert_eq!(
        pg_rows(
            pg,
            &dst_db,
            "id, f, g, i, b, rtrim(c), v, e",
            &format!("\"{db}\".a")
        ),
        vec![
            "1|1.5|2.25|42|18446744073709551615|Ab|é|b,(c)",
            "2|3.125|4.5|4294967295|7|Long text|ü|x) unsigned",
        ]
    );
    // Before: c was char(1) and b's zerofill was lost on nothing else; the
    // declared types show each parameter kept.
    assert_eq!(
        pg_rows(
            pg,
            &dst_db,
            "column_name, format_type(atttypid, atttypmod)",
            &format!(
                "(SELECT attname AS column_name, atttypid, atttypmod, attnum FROM pg_attribute \
                 WHERE attrelid = '\"{db}\".a'::regclass AND attnum > 0) s"
            )
        ),
        vec![
            "b|numeric(20,0)",
            "c|character(10)",
            "e|text",
            "f|real",
            "g|double precision",
            "id|integer",
            "i|bigint",
            "v|character varying(20)",
        ]
    );
}

#[test]
fn an_unsigned_decimal_keeps_its_scale_on_a_sqlite_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE d (id int PRIMARY KEY, p decimal(10,2) unsigned, q decimal(8,3) unsigned zerofill); \
         INSERT INTO d VALUES (1, 5.01, 1.5);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        "sqlite://dst.db",
        "cdc",
        &format!("[{db}.d]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    my.query_in(&db, "INSERT INTO d VALUES (2, 7.77, 3.333);")
        .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let target = rusqlite::Connection::open(dir.path().join("dst.db")).unwrap();
    let rows = |sql: &str| -> Vec<String> {
        let mut st = target.prepare(sql).unwrap();
        let mut rows: Vec<String> = st
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        rows
    };
    // Before: DECIMAL_TEXT(10,0) and DECIMAL_TEXT(8,0), the values rounded.
    assert_eq!(
        rows("SELECT name || '|' || type FROM pragma_table_info('d')"),
        vec!["id|INT", "p|DECIMAL_TEXT(10,2)", "q|DECIMAL_TEXT(8,3)"]
    );
    assert_eq!(
        rows("SELECT id || '|' || p || '|' || q FROM d"),
        vec!["1|5.01|1.500", "2|7.77|3.333"]
    );
}

/// Makes the keyless PostgreSQL table `logs` in a new database with
/// `create`, runs it into a new MariaDB database once with pipeline
/// `pipeline` (its replication slot's name), applies `changes` at the
/// source, runs again and returns the target database.
fn keyless_from_postgres(
    dir: &Path,
    pipeline: &str,
    my: &MariaDb,
    pg: &Postgres,
    create: &str,
    changes: &str,
) -> String {
    let src = pg.create_database().unwrap();
    let src_db = db_name(&src);
    pg.query_in(
        &src_db,
        &format!("{create}; ALTER TABLE logs REPLICA IDENTITY FULL;"),
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    config_named(dir, pipeline, &src, &dst, "cdc", "[public.logs]", "");
    ok(siphon(dir, &["run", "--once"]));
    pg.query_in(&src_db, changes).unwrap();
    ok(siphon(dir, &["run", "--once"]));
    db_name(&dst)
}

#[test]
fn a_keyless_table_from_postgres_changes_the_row_equal_byte_for_byte() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dst_db = keyless_from_postgres(
        dir.path(),
        "mv_bytes",
        my,
        pg,
        "CREATE TABLE logs (who text, n int); \
         INSERT INTO logs VALUES ('A', 1), ('a', 1), ('x ', 2), ('x', 2), ('é', 3), ('e', 3), \
           ('E', 3), (NULL, 4), ('', 4)",
        "DELETE FROM logs WHERE who = 'a'; DELETE FROM logs WHERE who = 'x'; \
         UPDATE logs SET n = 5 WHERE who = 'A'; DELETE FROM logs WHERE who = 'e'; \
         UPDATE logs SET n = 6 WHERE who = 'é'; UPDATE logs SET n = 7 WHERE who IS NULL; \
         DELETE FROM logs WHERE who = '';",
    );
    // Before: "[a]|5", "[x]|2", and 'é' or 'E' taken for 'e'.
    assert_eq!(
        my_rows(
            my,
            &dst_db,
            "CONCAT('[', IFNULL(who, 'NULL'), ']'), n",
            "logs"
        ),
        vec![
            "[A]|5".to_string(),
            "[E]|3".to_string(),
            "[NULL]|7".to_string(),
            "[x ]|2".to_string(),
            "[é]|6".to_string(),
        ]
    );
}

#[test]
fn a_keyless_table_from_postgres_finds_its_fixed_length_text_by_case() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL's char(4) pads 'ab' to 'ab  '; MariaDB's char(4) returns it
    // without the spaces: the row is still found, and only by its case.
    let dst_db = keyless_from_postgres(
        dir.path(),
        "mv_fixed",
        my,
        pg,
        "CREATE TABLE logs (code char(4), n int); \
         INSERT INTO logs VALUES ('AB', 1), ('ab', 1), ('cd', 2), ('CD', 2)",
        "DELETE FROM logs WHERE code = 'ab'; UPDATE logs SET n = 3 WHERE code = 'CD';",
    );
    assert_eq!(
        my_rows(my, &dst_db, "CONCAT('[', code, ']'), n", "logs"),
        vec![
            "[AB]|1".to_string(),
            "[CD]|3".to_string(),
            "[cd]|2".to_string()
        ]
    );
}

/// A latin1 target column (a table the user made) converts to utf8mb4
/// without loss: 'ä' finds 'ä' and neither 'Ä' nor 'a'.
#[test]
fn a_keyless_table_into_an_existing_latin1_column_changes_the_row_equal_byte_for_byte() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = pg.create_database().unwrap();
    let src_db = db_name(&src);
    pg.query_in(
        &src_db,
        "CREATE TABLE logs (who varchar(10), n int); ALTER TABLE logs REPLICA IDENTITY FULL; \
         INSERT INTO logs VALUES ('Ä', 1), ('ä', 1), ('a', 1), ('y ', 2), ('y', 2);",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    my.query_in(
        &dst_db,
        "CREATE TABLE logs (who varchar(10) CHARACTER SET latin1 COLLATE latin1_swedish_ci, n int)",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config_named(
        dir.path(),
        "mv_latin1",
        &src,
        &dst,
        "cdc",
        "[public.logs]",
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    pg.query_in(
        &src_db,
        "DELETE FROM logs WHERE who = 'ä'; UPDATE logs SET n = 5 WHERE who = 'y'; \
         UPDATE logs SET n = 6 WHERE who = 'Ä';",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &dst_db, "CONCAT('[', who, ']'), n", "logs"),
        vec![
            "[a]|1".to_string(),
            "[y ]|2".to_string(),
            "[y]|5".to_string(),
            "[Ä]|6".to_string(),
        ]
    );
    assert_eq!(
        my.query_in(
            &dst_db,
            "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'logs' AND COLUMN_NAME = 'who'"
        )
        .unwrap()
        .trim(),
        "latin1",
        "the target table was made again"
    );
}
