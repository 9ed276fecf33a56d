//! MySQL/MariaDB cases a production user meets, through the binary against the
//! testkit's real MariaDB and PostgreSQL, each target compared with its source
//! row for row: `year` values of `0000` in a MariaDB→MariaDB copy and
//! streamed to MariaDB, PostgreSQL and SQLite, a column
//! added with a default while a table streams (rows the stream never touches
//! hold the default at the source), a warning of `ON DELETE CASCADE` (whose
//! deletes MariaDB does not write to the binlog), `point`/`geometry` columns
//! refused naming the column and the fix, an `enum` holding the error value
//! `''` that a server outside strict mode stored, copied and streamed, varchar keys under several collations copied in
//! tiny chunks, and a case-insensitive key changed only in case while
//! streaming and while polling with `delete_detection: key_diff`, and a
//! transaction that swaps values of a unique secondary index between rows,
//! and a streamed table dropped and created again between runs.

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{config, db_name, my_rows, ok, pg_rows, siphon, sorted, text, BothTargets};

#[test]
fn year_zero_stays_zero_in_a_mariadb_to_mariadb_copy() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE y (id int PRIMARY KEY, y year); \
         INSERT INTO y VALUES (1, 0), (2, 1901), (3, 2000), (4, 2155), (5, NULL);",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "full", &format!("[{db}.y]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    let rows = "id, IFNULL(y, 'null')";
    assert_eq!(my_rows(my, &db, rows, "y")[0], "1|0000");
    assert_eq!(my_rows(my, &dst_db, rows, "y"), my_rows(my, &db, rows, "y"));
}

#[test]
fn year_zero_stays_zero_streamed_to_mariadb_postgresql_and_sqlite() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE y (id int PRIMARY KEY, y year); \
         INSERT INTO y VALUES (1, 0), (2, 1999);",
    )
    .unwrap();
    let my_dst = my.create_database().unwrap();
    let pg_dst = pg.create_database().unwrap();
    let (to_my, to_pg, to_lite) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let tables = format!("[{db}.y]");
    config(to_my.path(), &src, &my_dst, "cdc", &tables, "");
    config(to_pg.path(), &src, &pg_dst, "cdc", &tables, "");
    config(to_lite.path(), &src, "sqlite://dst.db", "cdc", &tables, "");
    let runs = || {
        for dir in [&to_my, &to_pg, &to_lite] {
            ok(siphon(dir.path(), &["run", "--once"]));
        }
    };
    // Copied first (LOAD DATA to MariaDB), then streamed (INSERT).
    runs();
    my.query_in(
        &db,
        "UPDATE y SET y = 0 WHERE id = 2; INSERT INTO y VALUES (3, 0), (4, 2000);",
    )
    .unwrap();
    runs();
    let source = my_rows(my, &db, "id, y", "y");
    assert_eq!(source, vec!["1|0000", "2|0000", "3|0000", "4|2000"]);
    assert_eq!(my_rows(my, &db_name(&my_dst), "id, y", "y"), source);
    let numbers = vec!["1|0", "2|0", "3|0", "4|2000"];
    assert_eq!(
        pg_rows(pg, &db_name(&pg_dst), "id, y", &format!("\"{db}\".y")),
        numbers
    );
    let lite = rusqlite::Connection::open(to_lite.path().join("dst.db")).unwrap();
    let name = lite
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%y'",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap();
    let mut st = lite
        .prepare(&format!("SELECT id || '|' || y FROM \"{name}\""))
        .unwrap();
    let rows: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sorted(&rows.join("\n")), numbers);
}

#[test]
fn a_column_added_with_a_default_while_streaming_holds_the_default_on_untouched_rows() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(20)); \
         INSERT INTO t VALUES (1, 'one'), (2, 'two'), (4, 'four');",
    )
    .unwrap();
    let both = BothTargets::new(my, pg, &src, "cdc", &format!("[{db}.t]"), "");
    both.run_once();

    // Rows 2 and 4 are never touched after the ALTER: at the source they
    // hold the default, so the targets must too (row 4 is deleted later in
    // the log, and must stay deleted).
    my.query_in(
        &db,
        "ALTER TABLE t ADD COLUMN w int NOT NULL DEFAULT 7, \
           ADD COLUMN e enum('x','y') NOT NULL DEFAULT 'y'; \
         INSERT INTO t VALUES (3, 'three', 33, 'x'); UPDATE t SET w = 11 WHERE id = 1; \
         DELETE FROM t WHERE id = 4;",
    )
    .unwrap();
    both.run_once();
    let want = my_rows(my, &db, "id, v, IFNULL(w, 'null'), IFNULL(e, 'null')", "t");
    assert_eq!(
        want,
        ["1|one|11|y", "2|two|7|y", "3|three|33|x"],
        "the source"
    );
    assert_eq!(
        pg_rows(
            pg,
            &both.pg_db,
            "id, v, coalesce(w::text, 'null'), coalesce(e::text, 'null')",
            &format!("\"{db}\".t")
        ),
        want,
        "the PostgreSQL target"
    );
    assert_eq!(
        my_rows(
            my,
            &both.my_db,
            "id, v, IFNULL(w, 'null'), IFNULL(e, 'null')",
            "t"
        ),
        want,
        "the MariaDB target"
    );
    // Nothing waits any more: a later start fills nothing again.
    assert_eq!(
        my.query_in(&both.my_db, "SELECT COUNT(*) FROM siphon_columns")
            .unwrap(),
        "0"
    );
}

/// InnoDB carries out `ON DELETE CASCADE` itself and MariaDB never writes the
/// child rows it deletes to the binlog, so no change stream can see them:
/// siphon says so, naming the table, the constraint and what to do, rather
/// than letting the target drift without a word.
#[test]
fn foreign_keys_whose_cascades_the_binlog_never_carries_are_warned_of() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE orders (id int PRIMARY KEY, total decimal(12,2)) ENGINE=InnoDB; \
         CREATE TABLE order_items (order_id int NOT NULL, line int NOT NULL, sku varchar(20), \
           PRIMARY KEY (order_id, line), \
           CONSTRAINT items_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE) ENGINE=InnoDB; \
         CREATE TABLE notes (id int PRIMARY KEY, order_id int, \
           FOREIGN KEY (order_id) REFERENCES orders (id)) ENGINE=InnoDB; \
         INSERT INTO orders VALUES (1, 1.50), (2, 2.50); \
         INSERT INTO order_items VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c');",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        &dst,
        "cdc",
        &format!("[{db}.orders, {db}.order_items, {db}.notes]"),
        "",
    );
    let out = ok(siphon(dir.path(), &["run", "--once"]));
    let warning = out
        .lines()
        .find(|l| l.contains("never writes them to the binlog"))
        .unwrap_or_else(|| panic!("no warning of the cascading foreign key:\n{out}"));
    for part in [
        "items_order",
        "order_items",
        "ON DELETE CASCADE",
        "orders",
        "siphon sync resync p --table",
    ] {
        assert!(warning.contains(part), "{part} missing from: {warning}");
    }
    // A plain foreign key (RESTRICT) is nothing to warn of.
    assert_eq!(
        out.matches("never writes them to the binlog").count(),
        1,
        "{out}"
    );

    // The order's own delete is streamed; the children InnoDB removed are not
    // in the binlog, as the warning said, until the table is copied again.
    my.query_in(&db, "DELETE FROM orders WHERE id = 1").unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(my_rows(my, &dst_db, "id", "orders"), vec!["2"]);
    let items = "order_id, line, sku";
    assert_eq!(my_rows(my, &db, items, "order_items"), vec!["2|1|c"]);
    ok(siphon(
        dir.path(),
        &[
            "sync",
            "resync",
            "p",
            "--table",
            &format!("{db}.order_items"),
        ],
    ));
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &dst_db, items, "order_items"),
        my_rows(my, &db, items, "order_items"),
    );
}

#[test]
fn geometry_columns_are_refused_naming_the_column_and_the_fix() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE places (id int PRIMARY KEY, spot point, shape geometry); \
         INSERT INTO places VALUES (1, ST_PointFromText('POINT(1 2)', 4326), \
           ST_GeomFromText('LINESTRING(0 0,1 1)')), (2, NULL, NULL); \
         CREATE TABLE plain (id int PRIMARY KEY, v int); INSERT INTO plain VALUES (1, 10);",
    )
    .unwrap();
    // Neither another MariaDB database nor PostgreSQL gets a server error
    // without a column name, or a shape turned silently into text.
    for dst in [my.create_database().unwrap(), pg.create_database().unwrap()] {
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &src,
            &dst,
            "full",
            &format!("[{db}.places, {db}.plain]"),
            "",
        );
        let out = siphon(dir.path(), &["run", "--once"]);
        let said = text(&out);
        assert!(!out.status.success(), "geometry was copied: {said}");
        assert!(
            said.contains(&format!("table {db}.places, column spot")),
            "the error names no table and column: {said}"
        );
        assert!(
            said.contains(&format!("exclude: [\"{db}.places\"]")),
            "the error names no fix: {said}"
        );
        // The fix it names works: the other tables copy.
        config(
            dir.path(),
            &src,
            &dst,
            "full",
            &format!("[{db}.*]"),
            &format!("exclude: [{db}.places]"),
        );
        ok(siphon(dir.path(), &["run", "--once"]));
    }
    let dst = my.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        &dst,
        "full",
        &format!("[{db}.*]"),
        &format!("exclude: [{db}.places]"),
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &db_name(&dst), "id, v", "plain"),
        vec!["1|10".to_string()]
    );
}

#[test]
fn an_enum_error_value_stored_without_strict_mode_copies_between_mariadb_databases() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    // Outside strict mode the server stores a value no member matches as
    // '' (index 0), the enum's error value; a strict target refuses ''.
    my.query_in(
        &db,
        "CREATE TABLE flags (id int PRIMARY KEY, e enum('a','b') NOT NULL, f enum('x','y')); \
         SET SESSION sql_mode = ''; \
         INSERT INTO flags VALUES (1, 'zz', 'x'), (2, 'b', 'nope'), (3, 'a', NULL);",
    )
    .unwrap();
    let rows = "id, e, e+0, IFNULL(f, 'null'), IFNULL(f+0, 'null')";
    assert_eq!(
        my_rows(my, &db, rows, "flags"),
        vec!["1||0|x|1", "2|b|2||0", "3|a|1|null|null"]
    );
    let dst = my.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "full", &format!("[{db}.flags]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &db_name(&dst), rows, "flags"),
        my_rows(my, &db, rows, "flags")
    );
}

#[test]
fn an_enum_error_value_streams_between_mariadb_databases_as_index_zero() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE flags (id int PRIMARY KEY, e enum('a','b') NOT NULL, v int); \
         INSERT INTO flags VALUES (1, 'a', 1), (2, 'b', 1);",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "cdc", &format!("[{db}.flags]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));

    // Outside strict mode a value no member matches is stored as '' (index
    // 0); the log carries index 0, which a strict target must store as 0.
    my.query_in(
        &db,
        "SET SESSION sql_mode = ''; \
         UPDATE flags SET e = 'zz', v = 2 WHERE id = 1; \
         INSERT INTO flags VALUES (3, 'nope', 3);",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let rows = "id, e, e+0, v";
    let source = my_rows(my, &db, rows, "flags");
    assert_eq!(source, vec!["1||0|2", "2|b|2|1", "3||0|3"]);
    assert_eq!(my_rows(my, &db_name(&dst), rows, "flags"), source);
}

#[test]
fn varchar_keys_under_several_collations_are_copied_whole_in_tiny_chunks() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    let keys = "('a',1),('B',2),('c ',3),('b2 ',5),('A1',6),('_z',7),('Z',8),(' lead',9),\
                ('ß',10),('ss1',11),('ø',13),('y',14),('é',16),('',18),('~',20),('zz',24)";
    for (table, collation) in [
        ("k_latin", "CHARACTER SET latin1 COLLATE latin1_swedish_ci"),
        ("k_general", "COLLATE utf8mb4_general_ci"),
        ("k_unicode", "COLLATE utf8mb4_unicode_ci"),
        ("k_nopad", "COLLATE utf8mb4_unicode_nopad_ci"),
    ] {
        my.query_in(
            &db,
            &format!(
                "SET NAMES utf8mb4; CREATE TABLE {table} (k varchar(20) {collation} PRIMARY KEY, v int); \
                 INSERT IGNORE INTO {table} VALUES {keys};"
            ),
        )
        .unwrap();
    }
    let dst = pg.create_database().unwrap();
    let pg_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        &dst,
        "full",
        &format!("[\"{db}.k_*\"]"),
        "batch_size: 2",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    for table in ["k_latin", "k_general", "k_unicode", "k_nopad"] {
        let source = my_rows(my, &db, "CONCAT('[', k, ']'), v", table);
        assert!(source.len() >= 14, "{table}: {source:?}");
        assert_eq!(
            pg_rows(
                pg,
                &pg_db,
                "'[' || k || ']', v",
                &format!("\"{db}\".{table}")
            ),
            source,
            "{table}"
        );
    }
}

#[test]
fn a_case_insensitive_key_changed_only_in_case_streams_as_one_row() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE ci (k varchar(20) COLLATE utf8mb4_general_ci PRIMARY KEY, v int); \
         INSERT INTO ci VALUES ('a', 1), ('B', 2), ('c ', 3), ('Z', 4);",
    )
    .unwrap();
    let both = BothTargets::new(my, pg, &src, "cdc", &format!("[{db}.ci]"), "");
    both.run_once();

    // A delete and an insert of the same key in another case in one
    // transaction; updates that change only case or trailing spaces.
    my.query_in(
        &db,
        "BEGIN; DELETE FROM ci WHERE k = 'a'; INSERT INTO ci VALUES ('A', 100); COMMIT; \
         UPDATE ci SET k = 'b' WHERE k = 'B'; UPDATE ci SET k = 'c' WHERE k = 'c '; \
         BEGIN; DELETE FROM ci WHERE k = 'Z'; INSERT INTO ci VALUES ('z ', 200); COMMIT;",
    )
    .unwrap();
    both.run_once();
    let source = my_rows(my, &db, "CONCAT('[', k, ']'), v", "ci");
    assert_eq!(source, vec!["[A]|100", "[b]|2", "[c]|3", "[z ]|200"]);
    assert_eq!(
        my_rows(my, &both.my_db, "CONCAT('[', k, ']'), v", "ci"),
        source
    );
    assert_eq!(
        pg_rows(
            pg,
            &both.pg_db,
            "'[' || k || ']', v",
            &format!("\"{db}\".ci")
        ),
        source
    );
}

#[test]
fn a_case_insensitive_key_changed_only_in_case_is_polled_as_one_row() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE ci (k varchar(20) COLLATE utf8mb4_general_ci PRIMARY KEY, v int, \
           upd timestamp(6) NOT NULL DEFAULT '2026-01-01 00:00:00'); \
         INSERT INTO ci (k, v) VALUES ('a', 1), ('B', 2), ('c ', 3), ('d', 4);",
    )
    .unwrap();
    let extra = "cursor: upd\ndelete_detection: key_diff";
    let tables = format!("[{db}.ci]");
    let both = BothTargets::new(my, pg, &src, "incremental", &tables, extra);
    both.run_once();

    // Keys changed only in case or trailing spaces (the same row to the
    // source's collation), and a delete.
    my.query_in(
        &db,
        "UPDATE ci SET k = 'A', upd = '2026-01-02 00:00:00' WHERE k = 'a'; \
         UPDATE ci SET k = 'c', upd = '2026-01-02 00:00:00' WHERE k = 'c '; \
         DELETE FROM ci WHERE k = 'd';",
    )
    .unwrap();
    both.run_once();
    let source = my_rows(my, &db, "CONCAT('[', k, ']'), v", "ci");
    assert_eq!(source, vec!["[A]|1", "[B]|2", "[c]|3"]);
    assert_eq!(
        pg_rows(
            pg,
            &both.pg_db,
            "'[' || k || ']', v",
            &format!("\"{db}\".ci")
        ),
        source,
        "PostgreSQL target"
    );
    assert_eq!(
        my_rows(my, &both.my_db, "CONCAT('[', k, ']'), v", "ci"),
        source,
        "MariaDB target"
    );
}

#[test]
fn a_transaction_swapping_unique_values_between_rows_streams_to_both_targets() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE uq (id int PRIMARY KEY, email varchar(50) NOT NULL, UNIQUE KEY (email)); \
         INSERT INTO uq VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x');",
    )
    .unwrap();
    let both = BothTargets::new(my, pg, &src, "cdc", &format!("[{db}.uq]"), "");
    both.run_once();

    // Valid at the source statement by statement: a swap through a
    // temporary value, and a unique value freed by a delete and taken by an
    // insert.
    my.query_in(
        &db,
        "BEGIN; UPDATE uq SET email = 'tmp' WHERE id = 1; UPDATE uq SET email = 'a@x' WHERE id = 2; \
         UPDATE uq SET email = 'b@x' WHERE id = 1; COMMIT; \
         BEGIN; DELETE FROM uq WHERE id = 3; INSERT INTO uq VALUES (4, 'c@x'); COMMIT;",
    )
    .unwrap();
    both.run_once();
    let source = my_rows(my, &db, "id, email", "uq");
    assert_eq!(source, vec!["1|b@x", "2|a@x", "4|c@x"]);
    assert_eq!(
        my_rows(my, &both.my_db, "id, email", "uq"),
        source,
        "MariaDB target"
    );
    assert_eq!(
        pg_rows(pg, &both.pg_db, "id, email", &format!("\"{db}\".uq")),
        source,
        "PostgreSQL target"
    );
}

#[test]
fn a_table_dropped_and_created_again_between_runs_does_not_keep_the_old_rows_silently() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1); \
         CREATE TABLE other (id int PRIMARY KEY);",
    )
    .unwrap();
    let dst = pg.create_database().unwrap();
    let pg_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        &dst,
        "cdc",
        &format!("[{db}.t, {db}.other]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));

    // The README: a DROP of a replicated table stops it with what to do.
    // Either a run says so, or the target ends equal to the new table; never
    // the old table's rows silently beside the new ones. A run sees the table
    // gone; the next sees it back.
    my.query_in(&db, "INSERT INTO t VALUES (2, 2); DROP TABLE t;")
        .unwrap();
    let gone = siphon(dir.path(), &["run", "--once"]);
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (5, 5);",
    )
    .unwrap();
    let back = siphon(dir.path(), &["run", "--once"]);
    if gone.status.success() && back.status.success() {
        assert_eq!(
            pg_rows(pg, &pg_db, "id, v", &format!("\"{db}\".t")),
            my_rows(my, &db, "id, v", "t"),
        );
    } else {
        let said = format!("{}{}", text(&gone), text(&back));
        assert!(said.contains("siphon sync resync"), "{said}");
    }
}
