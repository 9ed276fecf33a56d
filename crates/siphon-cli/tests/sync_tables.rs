//! `siphon sync tables NAME` against a real PostgreSQL source: the tables
//! the pipeline's globs select, with each one's mode, and every other table
//! with why it is left out (no glob matches, an `exclude` glob, no key for
//! cdc, no cursor column for incremental).

mod support;

use siphon_testkit::Postgres;
use support::{db_name, fails, ok, siphon};

/// The output line of `table`.
fn line<'a>(out: &'a str, table: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(&format!("{table} ")))
        .unwrap_or_else(|| panic!("no line for {table}:\n{out}"))
}

/// The section (`selected` or `left out`) a table is listed in.
fn section<'a>(out: &'a str, table: &str) -> &'a str {
    let mut current = "";
    for l in out.lines() {
        if l.starts_with("selected (") {
            current = "selected";
        } else if l.starts_with("left out (") {
            current = "left out";
        } else if l.trim_start().starts_with(&format!("{table} ")) {
            return current;
        }
    }
    panic!("{table} is not listed:\n{out}")
}

#[test]
fn sync_tables_says_what_is_selected_and_why_the_rest_is_left_out() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = db_name(&src_url);
    pg.query_in(
        &src,
        "CREATE TABLE orders (id int PRIMARY KEY, v text);
         CREATE TABLE events (id int PRIMARY KEY, at timestamptz);
         CREATE TABLE no_cursor (id int PRIMARY KEY);
         CREATE TABLE audit_log (id int PRIMARY KEY);
         CREATE TABLE nokey (v text);
         CREATE SCHEMA other; CREATE TABLE other.x (id int PRIMARY KEY);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src_url}\n  dst: {dst_url}\n\
             pipelines:\n  p:\n    source: src\n    target: dst\n    mode: cdc\n\
             \x20   tables: [\"public.*\"]\n    exclude: [\"public.audit_*\"]\n\
             \x20   tables_config:\n      public.events: {{ mode: incremental, cursor: at }}\n\
             \x20     public.no_cursor: {{ mode: incremental, cursor: at }}\n"
        ),
    )
    .unwrap();
    ok(siphon(d, &["apply"]));
    ok(siphon(d, &["sync", "disable", "p", "--table", "orders"]));
    let out = ok(siphon(d, &["sync", "tables", "p"]));
    assert!(out.starts_with("pipeline p: src -> dst, mode cdc"), "{out}");
    assert!(
        out.contains("selected (2):") && out.contains("left out (4):"),
        "{out}"
    );

    assert_eq!(section(&out, "public.orders"), "selected");
    let l = line(&out, "public.orders");
    assert!(
        l.contains("cdc") && l.contains("selected by `public.*`"),
        "{out}"
    );
    assert!(
        l.contains("paused (`siphon sync enable p --table public.orders`"),
        "{out}"
    );
    assert_eq!(section(&out, "public.events"), "selected");
    assert!(line(&out, "public.events").contains("incremental"), "{out}");
    assert!(!line(&out, "public.events").contains("paused"), "{out}");

    assert_eq!(section(&out, "other.x"), "left out");
    assert!(
        line(&out, "other.x").contains("matched by no glob of `tables` (public.*)"),
        "{out}"
    );
    assert_eq!(section(&out, "public.audit_log"), "left out");
    assert!(
        line(&out, "public.audit_log").contains("excluded by `public.audit_*`"),
        "{out}"
    );
    // The log's rule: a key-less table needs REPLICA IDENTITY FULL.
    assert_eq!(section(&out, "public.nokey"), "left out");
    let l = line(&out, "public.nokey");
    assert!(
        l.contains("cdc: the log cannot carry it") && l.contains("REPLICA IDENTITY FULL"),
        "{out}"
    );
    assert_eq!(section(&out, "public.no_cursor"), "left out");
    assert!(
        line(&out, "public.no_cursor")
            .contains("its cursor column `at` is not a column of the table"),
        "{out}"
    );

    // Given the replica identity the log needs, the key-less table is selected.
    pg.query_in(&src, "ALTER TABLE nokey REPLICA IDENTITY FULL")
        .unwrap();
    let out = ok(siphon(d, &["sync", "tables", "p"]));
    assert_eq!(section(&out, "public.nokey"), "selected", "{out}");

    let out = fails(siphon(d, &["sync", "tables", "nope"]), 2);
    assert!(out.contains("unknown pipeline `nope`"), "{out}");
}
