//! A row bigger than a MariaDB server's `max_allowed_packet`, through the
//! binary: read from a source whose setting is smaller than the row, and
//! written to a target whose setting is smaller than the row. Each fails at
//! once (not retried as a dropped connection), naming the side, the table,
//! the setting and the statement that raises it; with the setting raised the
//! same run copies the row whole.

use std::path::Path;

use siphon_testkit::MariaDb;

mod support;
use support::{db_name, ok, siphon, text};

/// Bytes in the big row's blob: more than the small setting below.
const BIG: usize = 3 << 20;
/// The small `max_allowed_packet`, in bytes.
const SMALL: usize = 1 << 20;

fn config(dir: &Path, source: &str, target: &str, db: &str) {
    let yaml = format!(
        "state: sqlite://state.db\nconnections:\n  src: {source}\n  dst: {target}\npipelines:\n  p:\n\
         \x20   source: src\n    target: dst\n    mode: full\n    tables: [{db}.docs]\n"
    );
    std::fs::write(dir.join("siphon.yaml"), yaml).unwrap();
}

/// A database at `my` with `docs (id int PRIMARY KEY, body longblob)` holding
/// one small row and one of [`BIG`] bytes.
fn big_rows(my: &MariaDb) -> String {
    let url = my.create_database().unwrap();
    my.query_in(
        &db_name(&url),
        &format!(
            "CREATE TABLE docs (id int PRIMARY KEY, body longblob); \
             INSERT INTO docs VALUES (1, 'small'), (2, REPEAT('x', {BIG}));"
        ),
    )
    .unwrap();
    url
}

/// `id|length` of each row of `docs` at `my`.
fn lengths(my: &MariaDb, db: &str) -> String {
    my.query_in(
        db,
        "SELECT GROUP_CONCAT(CONCAT(id, '|', LENGTH(body)) ORDER BY id) FROM docs",
    )
    .unwrap()
    .trim()
    .to_string()
}

fn set_packet(my: &MariaDb, bytes: usize) {
    my.query(&format!("SET GLOBAL max_allowed_packet = {bytes}"))
        .unwrap();
}

#[test]
fn a_row_bigger_than_max_allowed_packet_fails_naming_the_side_and_the_setting() {
    let shared = MariaDb::shared().unwrap();
    // A server of its own, so that lowering its setting touches no other test.
    let small = MariaDb::start().unwrap();
    let restore = small
        .query("SELECT @@GLOBAL.max_allowed_packet")
        .unwrap()
        .trim()
        .to_string();
    let restore: usize = restore.lines().last().unwrap().trim().parse().unwrap();
    let want = format!("1|5,2|{BIG}");

    // The source's setting is too small for the row.
    let src = big_rows(&small);
    let dst = shared.create_database().unwrap();
    set_packet(&small, SMALL);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, &db_name(&src));
    let out = siphon(dir.path(), &["run", "--once"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    for needle in [
        "the source's max_allowed_packet",
        "SET GLOBAL max_allowed_packet",
        &format!("{}.docs", db_name(&src)),
    ] {
        assert!(said.contains(needle), "no {needle:?} in: {said}");
    }
    assert!(
        !said.contains("retr"),
        "a packet too large was retried: {said}"
    );
    set_packet(&small, restore);
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(lengths(shared, &db_name(&dst)), want);

    // The target's setting is too small for the row.
    let src = big_rows(shared);
    let dst = small.create_database().unwrap();
    set_packet(&small, SMALL);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, &db_name(&src));
    let out = siphon(dir.path(), &["run", "--once"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    for needle in [
        "the target's max_allowed_packet",
        "SET GLOBAL max_allowed_packet",
        &format!("{}.docs", db_name(&src)),
    ] {
        assert!(said.contains(needle), "no {needle:?} in: {said}");
    }
    assert!(
        !said.contains("retr"),
        "a packet too large was retried: {said}"
    );
    set_packet(&small, restore);
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(lengths(&small, &db_name(&dst)), want);
}
