//! Trials of MySQL/MariaDB replication as a demanding user would run them,
//! through the binary against the testkit's real MariaDB and PostgreSQL: a
//! PostgreSQL table without any key (`REPLICA IDENTITY FULL`) streamed into
//! MariaDB keeps its duplicate rows, and an update or a delete of one of two
//! identical rows changes exactly one of them on the target.

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{config_named, db_name, my_rows, ok, siphon};

#[test]
fn a_keyless_postgres_table_streams_into_mariadb_with_its_duplicate_rows() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = pg.create_database().unwrap();
    let src_db = db_name(&src);
    pg.query_in(
        &src_db,
        "CREATE TABLE logs (who text, amount numeric(10,2), r real, at timestamptz); \
         ALTER TABLE logs REPLICA IDENTITY FULL; \
         INSERT INTO logs VALUES ('dup', 2.00, 0.2, '2025-01-02 00:00:00+00'), \
           ('dup', 2.00, 0.2, '2025-01-02 00:00:00+00'), ('dup', 2.00, 0.2, '2025-01-02 00:00:00+00'), \
           ('one', 1.50, 0.1, NULL);",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config_named(
        dir.path(),
        "kl_dups",
        &src,
        &dst,
        "cdc",
        "[public.logs]",
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    // One of three identical rows updated, another deleted, a fourth
    // identical one added, and a row with a NULL and a real deleted.
    pg.query_in(
        &src_db,
        "UPDATE logs SET amount = 9 WHERE ctid = (SELECT ctid FROM logs WHERE who = 'dup' LIMIT 1); \
         DELETE FROM logs WHERE ctid = (SELECT ctid FROM logs WHERE who = 'dup' AND amount = 2 LIMIT 1); \
         INSERT INTO logs VALUES ('dup', 2.00, 0.2, '2025-01-02 00:00:00+00'); \
         DELETE FROM logs WHERE who = 'one';",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let source: Vec<String> = support::pg_rows(
        pg,
        &src_db,
        "who, amount, r, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
        "logs",
    );
    assert_eq!(
        source,
        vec![
            "dup|2.00|0.2|2025-01-02 00:00:00",
            "dup|2.00|0.2|2025-01-02 00:00:00",
            "dup|9.00|0.2|2025-01-02 00:00:00",
        ]
    );
    assert_eq!(
        my_rows(
            my,
            &dst_db,
            "who, amount, r, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s')",
            "logs"
        ),
        source
    );
}
