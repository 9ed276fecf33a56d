//! `mode: cdc` from MariaDB into MariaDB through the binary, with many small
//! source transactions and a small `batch_size`: the transactions are applied
//! merged into batches, the target ends as the source, and the state store's
//! copy of the log checkpoint (written beside the next batch's apply, and when
//! the run ends) is the checkpoint the target committed last.

use std::path::Path;

use siphon_testkit::MariaDb;

mod support;
use support::{ok, siphon};

fn db_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// The GTID state in a checkpoint's JSON.
fn gtid_of(checkpoint: &str) -> String {
    checkpoint
        .split("\"gtid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no GTID state in the checkpoint: {checkpoint}"))
        .to_string()
}

/// The state store's copy of pipeline `p`'s log checkpoint.
fn stored_checkpoint(dir: &Path) -> String {
    let db = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    db.query_row(
        "SELECT checkpoint FROM checkpoints WHERE pipeline = 'p' AND table_name = '*'",
        [],
        |r| r.get(0),
    )
    .unwrap_or_default()
}

#[test]
fn small_transactions_merged_into_batches_end_with_the_last_checkpoint_copied() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_of(&src);
    let dst = my.create_database().unwrap();
    let dst_db = db_of(&dst);
    my.query_in(
        &db,
        "CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, amount decimal(12,2) NOT NULL, \
           at datetime(6) NOT NULL); \
         INSERT INTO items SELECT seq, seq, seq / 100, '2025-01-01 00:00:00' FROM seq_1_to_100;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\npipelines:\n  p:\n\
         \x20   source: src\n    target: dst\n    mode: cdc\n    tables: [{db}.items]\n    batch_size: 25\n"
    );
    std::fs::write(dir.path().join("siphon.yaml"), yaml).unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));

    // 23 transactions of 10 updates (ids out of order), a delete and an insert.
    let mut sql = String::new();
    for t in 0..23 {
        sql.push_str("START TRANSACTION; ");
        for i in 0..10 {
            let id = 1 + (t * 10 + i) * 37 % 100;
            sql.push_str(&format!(
                "UPDATE items SET qty = qty + 1, amount = amount + 0.01, at = '2025-02-{:02} 01:02:03.{:06}' WHERE id = {id}; ",
                1 + t,
                i * 1001
            ));
        }
        sql.push_str("COMMIT; ");
    }
    sql.push_str(
        "DELETE FROM items WHERE id = 7; INSERT INTO items VALUES (1000, 1, 1.50, '2025-03-01');",
    );
    my.query_in(&db, &sql).unwrap();
    let out = ok(siphon(dir.path(), &["run", "--once"]));

    let rows = "SELECT CONCAT_WS('|', id, qty, amount, at) FROM items ORDER BY id";
    assert_eq!(
        my.query_in(&dst_db, rows).unwrap(),
        my.query_in(&db, rows).unwrap(),
        "{out}"
    );
    let target = my
        .query_in(
            &dst_db,
            "SELECT checkpoint FROM siphon_checkpoints WHERE pipeline = 'p' AND tbl = '*'",
        )
        .unwrap();
    let copied = stored_checkpoint(dir.path());
    assert_eq!(
        gtid_of(&copied),
        gtid_of(&target),
        "the state store's copy is not the checkpoint the target committed last"
    );
}
