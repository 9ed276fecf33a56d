//! Regressions found by trying siphon as a production user would, through the
//! binary against the testkit's real MariaDB: a named unique index is created
//! once on a MariaDB target (not a second time under the column's name), a
//! copied trigger that inserts into an `AUTO_INCREMENT` table works on the
//! target, a polling pass over an unchanged table does not report more
//! rows updated than it read, and a column added with a default while siphon is
//! stopped holds the default on a SQLite target, and a table with a spatial
//! column created at the source stops only itself, not the whole stream, and
//! a pipeline copied again (`sync resync`) after a write with a minimal row
//! image streams on instead of reading that image again.

use siphon_testkit::MariaDb;

mod support;
use support::{config, db_name, ok, siphon};

/// The index names of `db`.`table`, sorted, one each.
fn index_names(my: &MariaDb, db: &str, table: &str) -> Vec<String> {
    let out = my
        .query(&format!(
            "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}' ORDER BY INDEX_NAME"
        ))
        .unwrap();
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_named_unique_index_is_created_once_on_a_mariadb_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE uq (id int PRIMARY KEY, email varchar(50) NOT NULL, \
           name varchar(50), price decimal(10,2), \
           UNIQUE KEY uq_email (email), UNIQUE KEY ux_np (name, price)); \
         INSERT INTO uq VALUES (1, 'a@x', 'a', 1.00), (2, 'b@x', 'b', 2.00);",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "full", &format!("[{db}.uq]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    // The target held `UNIQUE KEY email (email)` and `UNIQUE KEY name (name,
    // price)` beside `uq_email` and `ux_np`: the table was created with
    // unnamed unique keys, then the source's indexes were added by name.
    assert_eq!(
        index_names(my, &db_name(&dst), "uq"),
        index_names(my, &db, "uq"),
        "the target's indexes differ from the source's"
    );
}

#[test]
fn a_copied_trigger_inserting_into_an_auto_increment_table_works_on_the_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE item (id int PRIMARY KEY, qty int); \
         CREATE TABLE audit (id int AUTO_INCREMENT PRIMARY KEY, item_id int); \
         CREATE TRIGGER tr_item AFTER UPDATE ON item FOR EACH ROW \
           INSERT INTO audit (item_id) VALUES (NEW.id); \
         INSERT INTO item VALUES (1, 5), (2, 3); \
         UPDATE item SET qty = qty + 1 WHERE id = 1;",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        &dst,
        "full",
        &format!("[{db}.item, {db}.audit]"),
        "schema: { routines: true }",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my.query_in(
            &dst_db,
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
        )
        .unwrap()
        .trim(),
        "1"
    );
    // An application writing to the target (after a failover, say) fires the
    // copied trigger, whose insert leaves `id` to AUTO_INCREMENT: the target's
    // `audit.id` lost AUTO_INCREMENT, so the update failed with "Field 'id'
    // doesn't have a default value".
    my.query_in(&dst_db, "UPDATE item SET qty = qty + 1 WHERE id = 2")
        .expect("an update on the target fires the copied trigger");
    assert_eq!(
        my.query_in(&dst_db, "SELECT item_id FROM audit ORDER BY id")
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        vec!["1", "2"]
    );
}

/// The `read` and `updated` figures of the summary line of `table` in `out`.
fn read_and_updated(out: &str, table: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.contains(table) && l.contains(" read "))
        .unwrap_or_else(|| panic!("no summary line for {table} in:\n{out}"));
    let after = |word: &str| -> u64 {
        let rest = &line[line.find(word).expect(word) + word.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    (after(" read "), after(" updated "))
}

#[test]
fn a_pass_over_an_unchanged_table_reports_no_more_updates_than_reads() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE ev (id int PRIMARY KEY, updated_at datetime NOT NULL, v varchar(20)); \
         INSERT INTO ev SELECT seq, '2026-01-01 00:00:01', 'x' FROM seq_1_to_11;",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        &dst,
        "incremental",
        &format!("[{db}.ev]"),
        "cursor: updated_at\nlookback: 0s\nbatch_size: 3",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    // Nothing changed at the source: the second pass printed `read 0 …
    // updated 11`, counting rows as updated that it did not report reading.
    let out = ok(siphon(dir.path(), &["run", "--once"]));
    let (read, updated) = read_and_updated(&out, &format!("{db}.ev"));
    assert!(
        updated <= read,
        "a pass reported {updated} rows updated but {read} read:\n{out}"
    );
}

/// The rows of the SQLite table whose name ends in `suffix` in `file`, as
/// `row` (an SQL expression) prints them, sorted.
fn lite_rows(file: &std::path::Path, suffix: &str, row: &str) -> Vec<String> {
    let lite = rusqlite::Connection::open(file).unwrap();
    let name: String = lite
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?1",
            [format!("%{suffix}")],
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

#[test]
fn a_column_added_while_siphon_is_stopped_holds_the_default_on_a_sqlite_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE newt (id int PRIMARY KEY, v varchar(10)); \
         INSERT INTO newt VALUES (1, 'n1'), (2, 'n2');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        "sqlite://dst.db",
        "cdc",
        &format!("[{db}.newt]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    // While no siphon runs: a column with a default, one row changed after.
    my.query_in(
        &db,
        "ALTER TABLE newt ADD COLUMN dd int NOT NULL DEFAULT 42; \
         UPDATE newt SET v = 'n1x' WHERE id = 1;",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    // Row 2, which no change touched after the ALTER, stayed NULL in `dd` on
    // the SQLite target (a PostgreSQL target gets 42, and so does SQLite when
    // the ALTER is read by a running `siphon run`).
    let rows = "id || '|' || v || '|' || IFNULL(dd, 'null')";
    assert_eq!(
        lite_rows(&dir.path().join("dst.db"), "newt", rows),
        vec!["1|n1x|42", "2|n2|42"]
    );
}

#[test]
fn a_spatial_table_created_at_the_source_stops_only_itself_not_the_stream() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE plain (id int PRIMARY KEY, v int); INSERT INTO plain VALUES (1, 10);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        "sqlite://dst.db",
        "cdc",
        &format!("[\"{db}.*\"]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    // Someone creates a table with a `point` column in the replicated
    // database; the README says that table stops at discovery while the
    // pipeline's other tables go on.
    my.query_in(
        &db,
        "CREATE TABLE places (id int PRIMARY KEY, spot point); \
         INSERT INTO plain VALUES (2, 20);",
    )
    .unwrap();
    let out = siphon(dir.path(), &["run", "--once"]);
    let said = support::text(&out);
    assert!(
        said.contains(&format!("table {db}.places, column spot")),
        "{said}"
    );
    // The whole pipeline failed (`error: pipeline p: table ….places, column
    // spot: …`): `plain` was not streamed, so its new row never arrived.
    assert_eq!(
        lite_rows(&dir.path().join("dst.db"), "plain", "id || '|' || v"),
        vec!["1|10", "2|20"],
        "{said}"
    );
}

#[test]
fn a_resync_after_a_minimal_row_image_lets_the_stream_go_on() {
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
    // One session of the application writes with a minimal row image (the
    // server's global setting stays FULL, so siphon's start check passes).
    my.query_in(
        &db,
        "SET SESSION binlog_row_image = MINIMAL; UPDATE b SET v = 2 WHERE id = 1;",
    )
    .unwrap();
    my.query_in(&db, "INSERT INTO a VALUES (3, 3);").unwrap();
    let out = support::fails(siphon(dir.path(), &["run", "--once"]), 1);
    assert!(out.contains("binlog_row_image"), "{out}");
    // Only `b` stopped, with the fix naming the pipeline and the table;
    // `a` streamed on past the image.
    assert!(
        out.contains(&format!("siphon sync resync p --table {db}.b")),
        "{out}"
    );
    assert!(!out.contains("PIPELINE"), "{out}");
    let file = dir.path().join("dst.db");
    assert_eq!(lite_rows(&file, "a", "id || '|' || v"), vec!["1|1", "3|3"]);
    // The fix the error names: the whole pipeline copied again.
    ok(siphon(dir.path(), &["sync", "resync", "p"]));
    my.query_in(&db, "INSERT INTO a VALUES (2, 2); UPDATE b SET w = 'y';")
        .unwrap();
    // The copies were made, then the stream started again from the old
    // checkpoint, read the minimal image once more and failed every table
    // (`a` too, with `b`'s error), run after run.
    let out = siphon(dir.path(), &["run", "--once"]);
    let said = support::text(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(
        lite_rows(&file, "a", "id || '|' || v"),
        vec!["1|1", "2|2", "3|3"]
    );
    assert_eq!(
        lite_rows(&file, "b", "id || '|' || v || '|' || w"),
        vec!["1|2|y"]
    );
}
