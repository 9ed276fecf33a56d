//! A row bigger than a MariaDB server's `max_allowed_packet`, through the
//! binary: read from a source whose setting is smaller than the row, and
//! written to a target whose setting is smaller than the row. Each fails at
//! once (not retried as a dropped connection), naming the side, the table,
//! the setting and the statement that raises it; with the setting raised the
//! same run copies the row whole.

use siphon_testkit::MariaDb;

mod support;
use support::{config, db_name, ok, siphon, text};

/// Bytes in the big row's blob: more than the small setting below.
const BIG: usize = 3 << 20;
/// The small `max_allowed_packet`, in bytes.
const SMALL: usize = 1 << 20;

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
    refused_then_copied(&small, shared, &small, "source", restore, &want);
    // The target's setting is too small for the row.
    refused_then_copied(shared, &small, &small, "target", restore, &want);
}

/// Copies the big row of a new database at `from` into a new one at `to`
/// while `small`'s setting is [`SMALL`]: the run fails at once naming
/// `side`, the setting, the statement that raises it and the table; with the
/// setting back at `restore` the same run copies the rows whole (`want`).
fn refused_then_copied(
    from: &MariaDb,
    to: &MariaDb,
    small: &MariaDb,
    side: &str,
    restore: usize,
    want: &str,
) {
    let src = big_rows(from);
    let dst = to.create_database().unwrap();
    set_packet(small, SMALL);
    let dir = tempfile::tempdir().unwrap();
    let tables = format!("[{}.docs]", db_name(&src));
    config(dir.path(), &src, &dst, "full", &tables, "");
    let out = siphon(dir.path(), &["run", "--once"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    for needle in [
        format!("the {side}'s max_allowed_packet").as_str(),
        "SET GLOBAL max_allowed_packet",
        &format!("{}.docs", db_name(&src)),
    ] {
        assert!(said.contains(needle), "no {needle:?} in: {said}");
    }
    assert!(
        !said.contains("retr"),
        "a packet too large was retried: {said}"
    );
    set_packet(small, restore);
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(lengths(to, &db_name(&dst)), want);
}
