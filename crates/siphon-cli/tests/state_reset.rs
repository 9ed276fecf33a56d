//! A SQLite state store deleted between runs, through the binary against the
//! testkit's real MariaDB and PostgreSQL: the targets still hold checkpoints
//! written under lease epochs the fresh store never granted, and the next run
//! takes the lease under a newer epoch than theirs and goes on, so each target
//! equals its source.

use std::path::Path;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{db_name, ok, siphon};

/// Writes a one-pipeline (`p`) config in `dir` with a SQLite state store.
fn config(dir: &Path, source: &str, target: &str, mode: &str, table: &str) {
    let yaml = format!(
        "state: sqlite://state.db\nconnections:\n  src: {source}\n  dst: {target}\npipelines:\n  p:\n\
         \x20   source: src\n    target: dst\n    mode: {mode}\n    tables: [{table}]\n"
    );
    std::fs::write(dir.join("siphon.yaml"), yaml).unwrap();
}

fn sorted(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

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
    let my_dst = my.create_database().unwrap();
    let my_db = db_name(&my_dst);
    let pg_dst = pg.create_database().unwrap();
    let pg_db = db_name(&pg_dst);
    let to_my = tempfile::tempdir().unwrap();
    let to_pg = tempfile::tempdir().unwrap();
    let table = format!("{db}.t");
    config(to_my.path(), &src, &my_dst, "cdc", &table);
    config(to_pg.path(), &src, &pg_dst, "cdc", &table);
    // Three runs: the targets' checkpoints carry lease epoch 3.
    for n in 0..3 {
        my.query_in(&db, &format!("INSERT INTO t VALUES ({}, 'run')", 10 + n))
            .unwrap();
        ok(siphon(to_my.path(), &["run", "--once"]));
        ok(siphon(to_pg.path(), &["run", "--once"]));
    }

    // The state stores are lost; the source changes meanwhile.
    delete_state(to_my.path());
    delete_state(to_pg.path());
    my.query_in(
        &db,
        "INSERT INTO t VALUES (3, 'three'); UPDATE t SET v = 'TWO' WHERE id = 2; \
         DELETE FROM t WHERE id = 1;",
    )
    .unwrap();
    ok(siphon(to_my.path(), &["run", "--once"]));
    ok(siphon(to_pg.path(), &["run", "--once"]));

    let source = sorted(
        &my.query_in(&db, "SELECT CONCAT_WS('|', id, v) FROM t")
            .unwrap(),
    );
    assert_eq!(
        source,
        vec!["10|run", "11|run", "12|run", "2|TWO", "3|three"]
    );
    let on_my = sorted(
        &my.query_in(&my_db, "SELECT CONCAT_WS('|', id, v) FROM t")
            .unwrap(),
    );
    assert_eq!(on_my, source, "MariaDB target");
    let on_pg = sorted(
        &pg.query_in(
            &pg_db,
            &format!("SELECT string_agg(concat_ws('|', id, v), E'\\n') FROM \"{db}\".t"),
        )
        .unwrap(),
    );
    assert_eq!(on_pg, source, "PostgreSQL target");
    // And the run after goes on as usual.
    my.query_in(&db, "INSERT INTO t VALUES (4, 'four')")
        .unwrap();
    ok(siphon(to_my.path(), &["run", "--once"]));
    let on_my = sorted(
        &my.query_in(&my_db, "SELECT CONCAT_WS('|', id, v) FROM t")
            .unwrap(),
    );
    assert!(on_my.contains(&"4|four".to_string()), "{on_my:?}");
}
