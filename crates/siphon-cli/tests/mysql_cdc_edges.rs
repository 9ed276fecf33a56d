//! `mode: cdc` from MariaDB's binlog through the binary, on the testkit's real
//! servers, with tables a user may well have: a table partitioned by range,
//! a table without any key (refused with the fix, while the pipeline's other
//! tables stream), a column added at the source (the target gains it), one
//! dropped while siphon was stopped (that table stops with what to do while
//! the other streams, and the next run copies it again, as the message
//! says), rows the binlog holds from before a column was added while siphon
//! was stopped (taken whole; a shape that cannot be mapped stops that table
//! alone, with the resync to run and the copy the next run makes by itself),
//! and a 20 MB LONGBLOB value. Each target is compared with its source row
//! for row.

use std::path::Path;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{db_name, fails, my_rows, ok, pg_rows, siphon};

/// Writes a one-pipeline (`p`, cdc) config in `dir`: `tables` is YAML, `extra`
/// more lines of the pipeline.
fn config(dir: &Path, source: &str, target: &str, tables: &str, extra: &str) {
    support::config(dir, source, target, "cdc", tables, extra);
}

/// The state the store shows for table `table` of pipeline `p`.
fn stream_state(dir: &Path, table: &str) -> String {
    support::stream_state(dir, "p", table)
}

/// A MariaDB database with tables `t (id, v)` and `other (id)` of a row
/// each, copied by a first run of a pipeline streaming every table of it
/// into a new PostgreSQL database: the source database's name, the target's,
/// and the pipeline's folder.
fn t_and_other_streamed(my: &MariaDb, pg: &Postgres) -> (String, String, tempfile::TempDir) {
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    let dst = pg.create_database().unwrap();
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(20)); INSERT INTO t VALUES (1, 'one'); \
         CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (1);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, &format!("[\"{db}.*\"]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    (db, db_name(&dst), dir)
}

#[test]
fn a_table_partitioned_by_range_streams_like_any_other() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    let dst = pg.create_database().unwrap();
    let pg_db = db_name(&dst);
    my.query_in(
        &db,
        "CREATE TABLE events (id int NOT NULL, day date NOT NULL, what varchar(40), \
           PRIMARY KEY (id, day)) \
         PARTITION BY RANGE (YEAR(day)) (PARTITION p2024 VALUES LESS THAN (2025), \
           PARTITION p2025 VALUES LESS THAN (2026), PARTITION pmax VALUES LESS THAN MAXVALUE); \
         INSERT INTO events VALUES (1, '2024-03-01', 'a'), (2, '2025-03-01', 'b'), (3, '2026-03-01', 'c');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, &format!("[{db}.events]"), "");
    let out = ok(siphon(dir.path(), &["run", "--once"]));
    let row = "id, day, coalesce(what, 'null')";
    let my_row = "id, day, IFNULL(what, 'null')";
    let table = format!("\"{db}\".events");
    assert_eq!(
        pg_rows(pg, &pg_db, row, &table),
        my_rows(my, &db, my_row, "events"),
        "{out}"
    );
    // Changes in every partition, one moving a row from one to another, and
    // partition operations that keep the rows (one that removes rows stops
    // the table: mysql_trials2.rs).
    my.query_in(
        &db,
        "INSERT INTO events VALUES (4, '2024-12-31', 'd'), (5, '2030-01-01', 'e'); \
         UPDATE events SET day = '2026-06-01', what = 'moved' WHERE id = 1; \
         DELETE FROM events WHERE id = 2; \
         ALTER TABLE events REORGANIZE PARTITION pmax INTO \
           (PARTITION p2026 VALUES LESS THAN (2027), PARTITION pmax VALUES LESS THAN MAXVALUE); \
         INSERT INTO events VALUES (6, '2026-12-31', 'f');",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        pg_rows(pg, &pg_db, row, &table),
        my_rows(my, &db, my_row, "events")
    );
    assert_eq!(my_rows(my, &db, my_row, "events").len(), 5);
}

#[test]
fn a_table_without_a_key_is_refused_with_the_fix_and_the_others_stream() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    let dst = pg.create_database().unwrap();
    let pg_db = db_name(&dst);
    my.query_in(
        &db,
        "CREATE TABLE keyed (id int PRIMARY KEY, v text); INSERT INTO keyed VALUES (1, 'one'); \
         CREATE TABLE loose (a int, b text); INSERT INTO loose VALUES (1, 'x'), (1, 'x');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, &format!("[\"{db}.*\"]"), "");
    let out = fails(siphon(dir.path(), &["run", "--once"]), 1);
    let loose = format!("{db}.loose");
    assert!(out.contains(&loose), "the table is not named: {out}");
    assert!(
        out.contains("add a primary key") && out.contains("mode: full"),
        "the fix is not named: {out}"
    );
    let state = stream_state(dir.path(), &loose);
    assert!(
        state.contains("failed") && state.contains("add a primary key"),
        "{state}"
    );
    // The keyed table is copied and streams.
    my.query_in(
        &db,
        "INSERT INTO keyed VALUES (2, 'two'); UPDATE keyed SET v = 'uno' WHERE id = 1",
    )
    .unwrap();
    fails(siphon(dir.path(), &["run", "--once"]), 1);
    assert_eq!(
        pg_rows(pg, &pg_db, "id, v", &format!("\"{db}\".keyed")),
        my_rows(my, &db, "id, v", "keyed")
    );
    // The fix it names works: the key-less table in `full` mode.
    config(
        dir.path(),
        &src,
        &dst,
        &format!("[\"{db}.*\"]"),
        &format!("tables_config:\n  {loose}: {{ mode: full }}"),
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        pg_rows(pg, &pg_db, "a, b", &format!("\"{db}\".loose")),
        my_rows(my, &db, "a, b", "loose")
    );
}

#[test]
fn a_column_added_evolves_the_target_and_a_dropped_one_stops_the_table() {
    let (my, pg) = (MariaDb::shared().unwrap(), Postgres::shared().unwrap());
    let (db, pg_db, dir) = t_and_other_streamed(my, pg);
    let table = format!("\"{db}\".t");

    // The column and rows of the new shape, in the binlog siphon reads next.
    my.query_in(
        &db,
        "ALTER TABLE t ADD COLUMN w int DEFAULT 7; \
         INSERT INTO t VALUES (3, 'three', 33); UPDATE t SET w = 11 WHERE id = 1;",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        pg_rows(pg, &pg_db, "id, v, w", &table),
        my_rows(my, &db, "id, v, w", "t")
    );

    // A dropped column stops that table alone, naming the column, what
    // changed and the fix; the other table streams on. The table was read
    // after the statement ran (siphon was stopped): the statement says it.
    my.query_in(
        &db,
        "ALTER TABLE t DROP COLUMN v; INSERT INTO t VALUES (5, 55); \
         INSERT INTO other VALUES (2);",
    )
    .unwrap();
    let out = fails(siphon(dir.path(), &["run", "--once"]), 1);
    let t = format!("{db}.t");
    for part in [
        format!("table {t}, column v"),
        "the source dropped column `v`".to_string(),
        "drop column `v` on the target as well".to_string(),
        format!("siphon sync resync p --table {t}"),
        "copies it again from the start by itself the next time it starts this pipeline"
            .to_string(),
    ] {
        assert!(out.contains(&part), "{part:?} is not said: {out}");
    }
    assert!(stream_state(dir.path(), &t).contains("failed"));
    assert_eq!(
        pg_rows(pg, &pg_db, "id", &format!("\"{db}\".other")),
        my_rows(my, &db, "id", "other")
    );
    assert_eq!(pg_rows(pg, &pg_db, "id", &table).len(), 2, "t moved on");
    // As the message says, the next run copies it again.
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        pg_rows(pg, &pg_db, "id, w", &table),
        my_rows(my, &db, "id, w", "t")
    );
    assert!(!stream_state(dir.path(), &t).contains("failed"));
}

#[test]
fn rows_logged_before_a_column_was_added_while_stopped_reach_the_target_whole() {
    let (my, pg) = (MariaDb::shared().unwrap(), Postgres::shared().unwrap());
    let (db, pg_db, dir) = t_and_other_streamed(my, pg);
    let table = format!("\"{db}\".t");
    let other = format!("\"{db}\".other");

    // While siphon is stopped: rows of the old shape, a column added with a
    // default (the rows before it hold the default at the source), rows of
    // the new shape. The binlog siphon reads next holds all of it.
    my.query_in(
        &db,
        "INSERT INTO t VALUES (2, 'two'), (5, 'five'); UPDATE t SET v = 'uno' WHERE id = 1; \
         ALTER TABLE t ADD COLUMN w varchar(10) NOT NULL DEFAULT 'dflt'; \
         INSERT INTO t VALUES (3, 'three', 'new'); UPDATE t SET w = 'set' WHERE id = 5; \
         INSERT INTO other VALUES (2);",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        pg_rows(pg, &pg_db, "id, v, w", &table),
        my_rows(my, &db, "id, v, w", "t")
    );
    assert_eq!(
        pg_rows(pg, &pg_db, "id", &other),
        my_rows(my, &db, "id", "other")
    );

    // A column dropped: rows logged before it cannot be mapped without the
    // names binlog_row_metadata=FULL logs (which column went?). Only that
    // table stops, with the resync to run; the other streams on.
    my.query_in(
        &db,
        "INSERT INTO t VALUES (4, 'four', 'x'); INSERT INTO other VALUES (3); \
         ALTER TABLE t DROP COLUMN v; \
         INSERT INTO t VALUES (6, 'y'); INSERT INTO other VALUES (4);",
    )
    .unwrap();
    let out = fails(siphon(dir.path(), &["run", "--once"]), 1);
    let t = format!("{db}.t");
    assert!(out.contains(&t), "the table is not named: {out}");
    assert!(
        out.contains(&format!("siphon sync resync p --table {t}")),
        "the fix is not named: {out}"
    );
    // It says what happens next, as it happens: the next run copies it again.
    assert!(
        out.contains(
            "copies it again from the start by itself the next time it starts this pipeline"
        ),
        "{out}"
    );
    let state = stream_state(dir.path(), &t);
    assert!(
        state.contains("failed") && state.contains("copies it again from the start by itself"),
        "{state}"
    );
    assert_eq!(
        pg_rows(pg, &pg_db, "id", &other),
        my_rows(my, &db, "id", "other")
    );
    // The stopped table forgot its place in the log: the next run copies it
    // afresh, as the message said, and both tables equal their sources.
    my.query_in(&db, "INSERT INTO other VALUES (5);").unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        pg_rows(pg, &pg_db, "id", &other),
        my_rows(my, &db, "id", "other")
    );
    assert_eq!(
        pg_rows(pg, &pg_db, "id, w", &table),
        my_rows(my, &db, "id, w", "t")
    );
}

#[test]
fn a_20_mb_longblob_streams_whole() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    let dst = pg.create_database().unwrap();
    let pg_db = db_name(&dst);
    my.query_in(
        &db,
        "CREATE TABLE files (id int PRIMARY KEY, body longblob); \
         INSERT INTO files VALUES (1, REPEAT(X'00FF', 10 * 1024 * 1024));",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, &format!("[{db}.files]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    // Every byte differs from its neighbours' position: a hash of the whole value.
    my.query_in(
        &db,
        "INSERT INTO files SELECT 2, CONCAT(REPEAT(UNHEX(SHA2('a', 256)), 655360), X'0001'); \
         UPDATE files SET body = CONCAT(body, 'tail') WHERE id = 1;",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let my_sums = my_rows(my, &db, "id, LENGTH(body), MD5(body)", "files");
    assert_eq!(my_sums.len(), 2);
    assert!(my_sums[1].starts_with("2|20971522|"), "{my_sums:?}");
    assert_eq!(
        pg_rows(
            pg,
            &pg_db,
            "id, length(body), md5(body)",
            &format!("\"{db}\".files")
        ),
        my_sums
    );
}
