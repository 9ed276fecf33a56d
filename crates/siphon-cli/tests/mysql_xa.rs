//! MariaDB XA transactions through the binary against the testkit's real
//! MariaDB: a two-phase XA transaction (XA START … XA PREPARE, decided later
//! by XA COMMIT or XA ROLLBACK in a binlog group of its own) never reaches
//! the target, rolled back or not; the tables it changed stop, naming the
//! command that copies them again, while the pipeline's other tables stream
//! on; an XA COMMIT … ONE PHASE (an ordinary transaction in the binlog)
//! streams like any other, and so do tables outside a prepared XA
//! transaction of tables the pipeline does not read.

use siphon_testkit::MariaDb;

mod support;
use support::{config, db_name, fails, my_rows, ok, siphon};

#[test]
fn a_rolled_back_xa_transaction_does_not_reach_the_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(12)); INSERT INTO t VALUES (1, 'a'); \
         CREATE TABLE o (id int PRIMARY KEY, v varchar(12)); INSERT INTO o VALUES (1, 'a');",
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
        &format!("[{db}.t, {db}.o]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    my.query_in(
        &db,
        "XA START 'x1'; INSERT INTO t VALUES (2, 'rolledback'); UPDATE t SET v = 'rb' WHERE id = 1; \
         XA END 'x1'; XA PREPARE 'x1'; XA ROLLBACK 'x1'; \
         INSERT INTO o VALUES (2, 'plain'); \
         XA START 'x2'; INSERT INTO t VALUES (3, 'committed'); XA END 'x2'; XA PREPARE 'x2'; \
         XA COMMIT 'x2'; \
         XA START 'x3'; INSERT INTO o VALUES (3, 'onephase'); XA END 'x3'; XA COMMIT 'x3' ONE PHASE;",
    )
    .unwrap();
    // Before: exit 0, and t held 1|rb, 2|rolledback, 3|committed.
    let said = fails(siphon(dir.path(), &["run", "--once"]), 1);
    assert!(said.contains("two-phase XA transaction"), "{said}");
    assert!(
        said.contains(&format!("siphon sync resync p --table {db}.t")),
        "{said}"
    );
    assert!(!said.contains(&format!("--table {db}.o")), "{said}");
    assert_eq!(
        my_rows(my, &dst_db, "id, v", "t"),
        vec!["1|a"],
        "a prepared XA transaction's changes reached the target: {said}"
    );
    // The other table streamed on, the ONE PHASE commit with it.
    assert_eq!(
        my_rows(my, &dst_db, "id, v", "o"),
        vec!["1|a", "2|plain", "3|onephase"],
        "{said}"
    );
    // Copied again once both are decided, the table holds the committed one.
    ok(siphon(
        dir.path(),
        &["sync", "resync", "p", "--table", &format!("{db}.t")],
    ));
    my.query_in(&db, "INSERT INTO t VALUES (4, 'after');")
        .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &dst_db, "id, v", "t"),
        vec!["1|a", "3|committed", "4|after"]
    );
}

#[test]
fn one_phase_xa_and_prepared_xa_of_other_tables_stream() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(12)); INSERT INTO t VALUES (1, 'a'); \
         CREATE TABLE other (id int PRIMARY KEY);",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "cdc", &format!("[{db}.t]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    my.query_in(
        &db,
        "XA START 'y1'; INSERT INTO t VALUES (2, 'one'); UPDATE t SET v = 'b' WHERE id = 1; \
         XA END 'y1'; XA COMMIT 'y1' ONE PHASE; \
         XA START 'y2'; INSERT INTO other VALUES (1); XA END 'y2'; XA PREPARE 'y2';",
    )
    .unwrap();
    // A prepared XA transaction outlives its session; decided from another
    // one, after a transaction of `t`.
    my.query_in(
        &db,
        "INSERT INTO t VALUES (3, 'plain'); XA COMMIT 'y2'; XA START 'y3'; INSERT INTO other VALUES (2); XA END 'y3'; \
         XA PREPARE 'y3'; XA ROLLBACK 'y3'; INSERT INTO t VALUES (4, 'last');",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &dst_db, "id, v", "t"),
        vec!["1|b", "2|one", "3|plain", "4|last"]
    );
    // The next run reads on from there.
    my.query_in(&db, "UPDATE t SET v = 'c' WHERE id = 4;")
        .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &dst_db, "id, v", "t"),
        vec!["1|b", "2|one", "3|plain", "4|c"]
    );
}
