//! Every `connection` and `sync` verb of DESIGN.md's CLI, end to end against
//! real PostgreSQL servers and the state store, each checked by its effect:
//! `connection add | list | test | remove`, `sync add | list | tables |
//! enable | disable | resync | remove`, per pipeline and per table.

mod support;

use std::path::Path;

use siphon_testkit::Postgres;
use support::{db_name, fails, ok, siphon};

fn count(pg: &Postgres, db: &str, sql: &str) -> i64 {
    pg.query_in(db, sql).unwrap().trim().parse().unwrap()
}

/// The pending flags `sync list` shows for `table` (`-`, `paused`,
/// `resync requested`): the column after the table's name.
fn listed(d: &Path, table: &str) -> String {
    let out = ok(siphon(d, &["sync", "list"]));
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{table} ")))
        .unwrap_or_else(|| panic!("no line for {table}:\n{out}"));
    // `  TABLE (30 wide) FLAGS (28 wide) STATE`
    line.get(33..61).unwrap_or_default().trim().to_string()
}

#[test]
fn every_connection_and_sync_verb_works_end_to_end() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let (src, dst) = (db_name(&src_url), db_name(&dst_url));
    pg.query_in(
        &src,
        "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'a1');
         CREATE TABLE b (id int PRIMARY KEY, v text); INSERT INTO b VALUES (1, 'b1');
         CREATE TABLE skip_me (id int PRIMARY KEY);",
    )
    .unwrap();
    let with_password =
        src_url.replacen("postgres://postgres@", "postgres://postgres:pw-hidden@", 1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // connection add | list | test | remove
    ok(siphon(d, &["connection", "add", "src", &with_password]));
    ok(siphon(d, &["connection", "add", "dst", &dst_url]));
    ok(siphon(
        d,
        &["connection", "add", "spare", "sqlite://spare.db"],
    ));
    let out = ok(siphon(d, &["connection", "list"]));
    assert!(
        out.contains("postgres://postgres:***@") && !out.contains("pw-hidden"),
        "{out}"
    );
    assert!(out.contains("spare"), "{out}");
    let out = ok(siphon(d, &["connection", "test", "src"]));
    assert!(
        out.contains("reached PostgreSQL") && !out.contains("pw-hidden"),
        "{out}"
    );
    ok(siphon(d, &["connection", "remove", "spare"]));
    assert!(!ok(siphon(d, &["connection", "list"])).contains("spare"));
    let out = fails(siphon(d, &["connection", "remove", "spare"]), 2);
    assert!(out.contains("unknown connection `spare`"), "{out}");

    // sync add | list | tables
    ok(siphon(
        d,
        &[
            "sync",
            "add",
            "p",
            "--source",
            "src",
            "--target",
            "dst",
            "--mode",
            "full",
            "--tables",
            "public.*",
            "--exclude",
            "public.skip_*",
        ],
    ));
    let out = ok(siphon(d, &["sync", "list"]));
    assert!(out.contains("p: src -> dst  mode full"), "{out}");
    assert_eq!(listed(d, "public.a"), "-", "{out}");
    assert!(out.contains("not run yet"), "{out}");
    let out = ok(siphon(d, &["sync", "tables", "p"]));
    assert!(
        out.contains("selected (2):") && out.contains("left out (1):"),
        "{out}"
    );
    assert!(out.contains("excluded by `public.skip_*`"), "{out}");
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(count(pg, &dst, "SELECT count(*) FROM a"), 1);
    assert_eq!(count(pg, &dst, "SELECT count(*) FROM b"), 1);
    assert_eq!(
        count(
            pg,
            &dst,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'skip_me'"
        ),
        0
    );

    // sync disable | enable NAME --table T: a paused table is not copied.
    pg.query_in(
        &src,
        "INSERT INTO a VALUES (2, 'a2'); INSERT INTO b VALUES (2, 'b2');",
    )
    .unwrap();
    ok(siphon(d, &["sync", "disable", "p", "--table", "a"]));
    assert!(listed(d, "public.a").contains("paused"));
    assert!(!listed(d, "public.b").contains("paused"));
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(
        count(pg, &dst, "SELECT count(*) FROM a"),
        1,
        "a paused table was copied"
    );
    assert_eq!(count(pg, &dst, "SELECT count(*) FROM b"), 2);
    ok(siphon(d, &["sync", "enable", "p", "--table", "public.a"]));
    assert!(!listed(d, "public.a").contains("paused"));
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(count(pg, &dst, "SELECT count(*) FROM a"), 2);

    // sync disable | enable NAME: the whole pipeline.
    pg.query_in(&src, "INSERT INTO a VALUES (3, 'a3');")
        .unwrap();
    let out = ok(siphon(d, &["sync", "disable", "p"]));
    assert!(out.contains("pipeline p: paused"), "{out}");
    assert!(ok(siphon(d, &["sync", "list"])).contains("PAUSED"));
    siphon(d, &["run", "--once"]);
    assert_eq!(
        count(pg, &dst, "SELECT count(*) FROM a"),
        2,
        "a paused pipeline ran"
    );
    let out = ok(siphon(d, &["sync", "enable", "p"]));
    assert!(out.contains("pipeline p: enabled"), "{out}");
    ok(siphon(d, &["run", "--once"]));
    assert_eq!(count(pg, &dst, "SELECT count(*) FROM a"), 3);

    // sync resync NAME --table T, and NAME: the flag is listed until a run
    // reloads the table.
    ok(siphon(d, &["sync", "resync", "p", "--table", "b"]));
    assert!(listed(d, "public.b").contains("resync requested"));
    assert!(!listed(d, "public.a").contains("resync requested"));
    ok(siphon(d, &["run", "--once"]));
    assert!(!listed(d, "public.b").contains("resync requested"));
    ok(siphon(d, &["sync", "resync", "p"]));
    assert!(listed(d, "public.a").contains("resync requested"));
    assert!(listed(d, "public.b").contains("resync requested"));
    ok(siphon(d, &["run", "--once"]));
    assert!(!listed(d, "public.a").contains("resync requested"));
    assert_eq!(count(pg, &dst, "SELECT count(*) FROM b"), 2);

    // sync remove: gone from the catalog, its checkpoints gone from the target.
    let out = ok(siphon(d, &["sync", "remove", "p", "--yes"]));
    assert!(out.contains("pipeline p removed"), "{out}");
    assert!(ok(siphon(d, &["sync", "list"])).contains("no pipelines"));
    assert_eq!(
        count(
            pg,
            &dst,
            "SELECT count(*) FROM siphon_checkpoints WHERE pipeline = 'p'"
        ),
        0
    );
    let out = fails(siphon(d, &["sync", "remove", "p", "--yes"]), 2);
    assert!(out.contains("unknown pipeline `p`"), "{out}");
}

#[test]
fn a_connection_a_pipeline_uses_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rusqlite::Connection::open(d.join("src.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .unwrap();
    ok(siphon(d, &["connection", "add", "src", "sqlite://src.db"]));
    ok(siphon(d, &["connection", "add", "dst", "sqlite://dst.db"]));
    ok(siphon(
        d,
        &["sync", "add", "p", "--source", "src", "--target", "dst"],
    ));
    let out = fails(siphon(d, &["connection", "remove", "src"]), 2);
    assert!(out.contains("used by pipeline(s) p"), "{out}");
    let listed = ok(siphon(d, &["connection", "list"]));
    assert!(listed.contains("src"), "{listed}");
    ok(siphon(d, &["sync", "remove", "p", "--yes"]));
    ok(siphon(d, &["connection", "remove", "src"]));
}
