//! A pipeline whose target is its own source (one SQLite file, or one
//! PostgreSQL database without a separate `target_schema`) is refused when it
//! is stored, however the two connections spell it: a load empties its target
//! first, so running it would empty the source and report success.

use std::process::Output;

use rusqlite::Connection;
use siphon_testkit::Postgres;

mod support;
use support::{fails, ok, siphon};

fn refused(o: Output) -> String {
    fails(o, 2)
}

#[test]
fn one_sqlite_file_as_source_and_target_is_refused_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("shop.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');",
        )
        .unwrap();
    let rows = || -> i64 {
        Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };

    // A config file naming the file twice, spelled differently.
    std::fs::write(
        d.join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  a: sqlite://shop.db\n  b: sqlite://./shop.db\n\
         pipelines:\n  p:\n    source: a\n    target: b\n",
    )
    .unwrap();
    let out = refused(siphon(d, &["run", "--once"]));
    assert!(out.contains("same SQLite file"), "{out}");
    assert_eq!(rows(), 3, "the source lost rows:\n{out}");

    // The catalog commands: one connection as both ends, or a connection
    // replaced so that a stored pipeline would read and write one file.
    std::fs::remove_file(d.join("siphon.yaml")).unwrap();
    let state = "sqlite://cat.db";
    ok(siphon(
        d,
        &[
            "--state",
            state,
            "connection",
            "add",
            "a",
            "sqlite://shop.db",
        ],
    ));
    ok(siphon(
        d,
        &[
            "--state",
            state,
            "connection",
            "add",
            "b",
            "sqlite://other.db",
        ],
    ));
    let out = refused(siphon(
        d,
        &[
            "--state", state, "sync", "add", "p", "--source", "a", "--target", "a",
        ],
    ));
    assert!(out.contains("same SQLite file"), "{out}");
    ok(siphon(
        d,
        &[
            "--state", state, "sync", "add", "p", "--source", "a", "--target", "b",
        ],
    ));
    let out = refused(siphon(
        d,
        &[
            "--state",
            state,
            "connection",
            "add",
            "b",
            "sqlite://shop.db",
        ],
    ));
    assert!(out.contains("pipelines.p"), "{out}");
    ok(siphon(d, &["--state", state, "run", "p", "--once"]));
    assert_eq!(rows(), 3);
    let copied: i64 = Connection::open(d.join("other.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(copied, 3, "the target of another file was not loaded");
}

#[test]
fn one_postgres_database_as_source_and_target_needs_a_target_schema_of_its_own() {
    let pg = Postgres::shared().unwrap();
    let url = pg.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    )
    .unwrap();
    let rows = |table: &str| -> i64 {
        pg.query_in(&db, &format!("SELECT count(*) FROM {table}"))
            .unwrap()
            .parse()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The same database through `localhost` and through `127.0.0.1`.
    let other = format!("postgres://postgres@localhost:{}/{db}", pg.port());
    let config = |extra: &str| {
        std::fs::write(
            d.join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  a: {url}\n  b: {other}\n\
                 pipelines:\n  p:\n    source: a\n    target: b\n    tables: [public.t]\n{extra}"
            ),
        )
        .unwrap();
    };

    for mode in ["full", "cdc"] {
        config(&format!("    mode: {mode}\n"));
        let out = refused(siphon(d, &["run", "--once"]));
        assert!(out.contains("same PostgreSQL database"), "{out}");
        assert_eq!(
            rows("public.t"),
            3,
            "the source lost rows in {mode}:\n{out}"
        );
    }

    // A target schema the tables do not come from keeps the copies apart.
    config("    target_schema: public\n");
    let out = refused(siphon(d, &["run", "--once"]));
    assert!(out.contains("target_schema `public`"), "{out}");
    pg.query_in(&db, "CREATE SCHEMA copy").unwrap();
    config("    target_schema: copy\n");
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(rows("public.t"), 3);
    assert_eq!(rows("copy.t"), 3);

    // The catalog command refuses it too.
    std::fs::remove_file(d.join("siphon.yaml")).unwrap();
    let state = "sqlite://cat.db";
    ok(siphon(
        d,
        &["--state", state, "connection", "add", "a", &url],
    ));
    ok(siphon(
        d,
        &["--state", state, "connection", "add", "b", &other],
    ));
    let out = refused(siphon(
        d,
        &[
            "--state", state, "sync", "add", "q", "--source", "a", "--target", "b",
        ],
    ));
    assert!(out.contains("same PostgreSQL database"), "{out}");
}
