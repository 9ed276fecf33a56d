//! A SQLite state store deleted between runs, through the binary against the
//! testkit's real MariaDB and PostgreSQL: the targets still hold checkpoints
//! written under lease epochs the fresh store never granted, and the next run
//! takes the lease under a newer epoch than theirs and goes on, so each target
//! equals its source.

use std::path::Path;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{db_name, my_rows, ok, pg_rows, siphon, BothTargets};

fn delete_state(dir: &Path) {
    for file in ["state.db", "state.db-wal", "state.db-shm"] {
        match std::fs::remove_file(dir.join(file)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {file}: {e}"),
        }
    }
}

#[test]
fn a_deleted_state_store_recovers_by_itself_on_the_next_run() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(20)); \
         INSERT INTO t VALUES (1, 'one'), (2, 'two');",
    )
    .unwrap();
    let both = BothTargets::new(my, pg, &src, "cdc", &format!("[{db}.t]"), "");
    let (my_db, pg_db) = (&both.my_db, &both.pg_db);
    // Three runs: the targets' checkpoints carry lease epoch 3.
    for n in 0..3 {
        my.query_in(&db, &format!("INSERT INTO t VALUES ({}, 'run')", 10 + n))
            .unwrap();
        both.run_once();
    }

    // The state stores are lost; the source changes meanwhile.
    delete_state(both.to_my.path());
    delete_state(both.to_pg.path());
    my.query_in(
        &db,
        "INSERT INTO t VALUES (3, 'three'); UPDATE t SET v = 'TWO' WHERE id = 2; \
         DELETE FROM t WHERE id = 1;",
    )
    .unwrap();
    both.run_once();

    let source = my_rows(my, &db, "id, v", "t");
    assert_eq!(
        source,
        vec!["10|run", "11|run", "12|run", "2|TWO", "3|three"]
    );
    let on_my = my_rows(my, my_db, "id, v", "t");
    assert_eq!(on_my, source, "MariaDB target");
    let on_pg = pg_rows(pg, pg_db, "id, v", &format!("\"{db}\".t"));
    assert_eq!(on_pg, source, "PostgreSQL target");
    // And the run after goes on as usual.
    my.query_in(&db, "INSERT INTO t VALUES (4, 'four')")
        .unwrap();
    ok(siphon(both.to_my.path(), &["run", "--once"]));
    let on_my = my_rows(my, my_db, "id, v", "t");
    assert!(on_my.contains(&"4|four".to_string()), "{on_my:?}");
}
