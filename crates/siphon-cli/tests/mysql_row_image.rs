//! A write with a minimal row image (a session's `binlog_row_image=MINIMAL`
//! while the server's is FULL), through the binary against the testkit's real
//! MariaDB: it stops only its table, and the fix its error names, `siphon sync
//! resync` of the table or of the pipeline, lets the stream go on past it,
//! also when that table is the pipeline's only one.

use siphon_testkit::MariaDb;

mod support;
use support::{config, db_name, fails, my_rows, ok, siphon};

/// The rows of `table` on the SQLite target `file`, as `row` renders them, sorted.
fn lite_rows(file: &std::path::Path, table: &str, row: &str) -> Vec<String> {
    let lite = rusqlite::Connection::open(file).unwrap();
    let name: String = lite
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?1",
            [format!("%{table}")],
            |r| r.get(0),
        )
        .unwrap();
    let mut st = lite
        .prepare(&format!("SELECT {row} FROM \"{name}\""))
        .unwrap();
    let mut rows: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

/// Updates `b` from a session that logs minimal row images.
fn minimal_update(my: &MariaDb, db: &str, set: &str) {
    my.query_in(
        db,
        &format!("SET SESSION binlog_row_image = MINIMAL; UPDATE b SET {set} WHERE id = 1;"),
    )
    .unwrap();
}

#[test]
fn a_resync_of_the_table_lets_the_stream_go_on_past_a_minimal_image() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE a (id int PRIMARY KEY, v int); \
         CREATE TABLE b (id int PRIMARY KEY, v int, w varchar(10)); \
         INSERT INTO a VALUES (1, 1); INSERT INTO b VALUES (1, 1, 'x');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        "sqlite://dst.db",
        "cdc",
        &format!("[{db}.a, {db}.b]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    minimal_update(my, &db, "v = 2");
    let out = fails(siphon(dir.path(), &["run", "--once"]), 1);
    assert!(out.contains("binlog_row_image"), "{out}");
    let fix = format!("siphon sync resync p --table {db}.b");
    assert!(out.contains(&fix), "{out}");
    ok(siphon(
        dir.path(),
        &["sync", "resync", "p", "--table", &format!("{db}.b")],
    ));
    my.query_in(&db, "INSERT INTO a VALUES (2, 2); UPDATE b SET w = 'y';")
        .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    // A second run reads on from where the first ended.
    my.query_in(&db, "UPDATE b SET w = 'z';").unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let file = dir.path().join("dst.db");
    assert_eq!(lite_rows(&file, "a", "id || '|' || v"), vec!["1|1", "2|2"]);
    assert_eq!(
        lite_rows(&file, "b", "id || '|' || v || '|' || w"),
        my_rows(my, &db, "id, v, w", "b")
    );
    assert_eq!(
        lite_rows(&file, "b", "id || '|' || v || '|' || w"),
        vec!["1|2|z"]
    );
}

#[test]
fn a_pipeline_of_one_table_copied_again_streams_past_a_minimal_image() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE b (id int PRIMARY KEY, v int, w varchar(10)); \
         INSERT INTO b VALUES (1, 1, 'x');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        "sqlite://dst.db",
        "cdc",
        &format!("[{db}.b]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    minimal_update(my, &db, "v = 2");
    let out = fails(siphon(dir.path(), &["run", "--once"]), 1);
    assert!(out.contains("binlog_row_image"), "{out}");
    // The table stopped alone and the log moved on without it: no table
    // moved the pipeline's checkpoint past the image. The copy made for the
    // resync holds the image's row, so the log is read from the copy on.
    ok(siphon(dir.path(), &["sync", "resync", "p"]));
    my.query_in(&db, "UPDATE b SET w = 'y';").unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    my.query_in(&db, "INSERT INTO b VALUES (2, 2, 'n');")
        .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let file = dir.path().join("dst.db");
    assert_eq!(
        lite_rows(&file, "b", "id || '|' || v || '|' || w"),
        vec!["1|2|y", "2|2|n"]
    );
}
