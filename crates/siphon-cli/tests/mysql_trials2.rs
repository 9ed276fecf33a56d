//! Trials of MySQL/MariaDB replication as a demanding user would run them,
//! through the binary against the testkit's real MariaDB and PostgreSQL: a
//! PostgreSQL table without any key (`REPLICA IDENTITY FULL`) streamed into
//! MariaDB keeps its duplicate rows, and an update or a delete of one of two
//! identical rows changes exactly one of them on the target. Statements
//! that remove rows without row events in the binlog (`ALTER TABLE …
//! TRUNCATE PARTITION` / `DROP PARTITION`, MariaDB's `CREATE OR REPLACE
//! TABLE`) stop that table with what happened and the resync, the other
//! tables stream on and the next run copies it again; partition operations
//! that keep the rows stream on; a string in an ALTER (a COMMENT saying
//! "rename") is not read as SQL; a PostgreSQL unique index on text keeps
//! values differing only in case apart on MariaDB.

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{config, config_named, db_name, fails, my_rows, ok, siphon};

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

/// A PostgreSQL `CREATE UNIQUE INDEX` on a text column of a table with a
/// primary key: on MariaDB it compares byte for byte as at the source, so
/// values that differ only in case or trailing spaces are three rows, not
/// a duplicate key that stops the table.
#[test]
fn a_postgres_unique_index_on_text_keeps_values_differing_in_case_apart_on_mariadb() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let src = pg.create_database().unwrap();
    let src_db = db_name(&src);
    pg.query_in(
        &src_db,
        "CREATE TABLE people (id int PRIMARY KEY, email text, note text); \
         CREATE UNIQUE INDEX people_email ON people (email); \
         INSERT INTO people VALUES (1, 'a@x.com', 'copied');",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config_named(
        dir.path(),
        "uq_text",
        &src,
        &dst,
        "cdc",
        "[public.people]",
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    pg.query_in(
        &src_db,
        "INSERT INTO people VALUES (2, 'A@x.com', 'case'), (3, 'a@x.com ', 'space'); \
         UPDATE people SET note = 'streamed' WHERE id = 1;",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let source = support::pg_rows(pg, &src_db, "id, email, note", "people");
    assert_eq!(source.len(), 3);
    assert_eq!(my_rows(my, &dst_db, "id, email, note", "people"), source);
    // Still unique as at the source.
    let dup = my.query_in(&dst_db, "INSERT INTO people VALUES (4, 'A@x.com', 'dup')");
    assert!(dup.is_err(), "the unique index was not created: {dup:?}");
}

/// Asserts that `out` names the stopped table `db.t`, `what` happened, and
/// the resync of pipeline `p`.
fn says_stopped(out: &str, db: &str, t: &str, what: &str) {
    for part in [
        format!("table {db}.{t}"),
        what.to_string(),
        "the table must be copied again".to_string(),
        format!("siphon sync resync p --table {db}.{t}"),
    ] {
        assert!(out.contains(&part), "{part:?} is not said: {out}");
    }
}

#[test]
fn a_truncated_partition_is_not_left_on_the_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE ev (id int NOT NULL, day date NOT NULL, v varchar(10), PRIMARY KEY (id, day)) \
         PARTITION BY RANGE (YEAR(day)) (PARTITION p2024 VALUES LESS THAN (2025), \
           PARTITION pmax VALUES LESS THAN MAXVALUE); \
         INSERT INTO ev VALUES (1, '2024-01-01', 'a'), (2, '2025-01-01', 'b'), (3, '2024-06-01', 'c'); \
         CREATE TABLE o (id int PRIMARY KEY); INSERT INTO o VALUES (1);",
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
        &format!("[{db}.ev, {db}.o]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    let same = |t: &str, row: &str| {
        assert_eq!(
            my_rows(my, &dst_db, row, t),
            my_rows(my, &db, row, t),
            "{t}"
        );
    };
    same("ev", "id, day, v");

    // The partition's rows go without a row event: the table stops, the
    // other streams on, and the next run copies it again.
    my.query_in(
        &db,
        "ALTER TABLE ev TRUNCATE PARTITION p2024; INSERT INTO ev VALUES (4, '2026-01-01', 'd'); \
         INSERT INTO o VALUES (2);",
    )
    .unwrap();
    let out = fails(siphon(dir.path(), &["run", "--once"]), 1);
    says_stopped(
        &out,
        &db,
        "ev",
        "the source emptied partition p2024 of the table",
    );
    same("o", "id");
    assert_eq!(my_rows(my, &dst_db, "id", "ev").len(), 3, "ev moved on");
    ok(siphon(dir.path(), &["run", "--once"]));
    same("ev", "id, day, v");

    // A partition operation that keeps the rows streams on.
    my.query_in(
        &db,
        "ALTER TABLE ev REORGANIZE PARTITION pmax INTO (PARTITION p2025 VALUES LESS THAN (2026), \
           PARTITION pmax VALUES LESS THAN MAXVALUE); \
         ALTER TABLE ev ANALYZE PARTITION p2025; INSERT INTO ev VALUES (5, '2025-05-05', 'e');",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    same("ev", "id, day, v");

    // A dropped partition takes its rows with it: stopped alike.
    my.query_in(
        &db,
        "ALTER TABLE ev DROP PARTITION p2025; INSERT INTO ev VALUES (6, '2027-01-01', 'f');",
    )
    .unwrap();
    let out = fails(siphon(dir.path(), &["run", "--once"]), 1);
    says_stopped(
        &out,
        &db,
        "ev",
        "the source dropped partition p2025 of the table with its rows",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    same("ev", "id, day, v");
    assert_eq!(my_rows(my, &dst_db, "id", "ev"), ["4", "6"]);
}

/// As a DROP TABLE and a CREATE TABLE of a replicated table: it stops with
/// the resync, and the next run copies the new table in place of the old.
#[test]
fn create_or_replace_table_does_not_leave_the_old_rows_on_the_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE cr (id int PRIMARY KEY, v varchar(10)); INSERT INTO cr VALUES (1, 'old1'), (2, 'old2');",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "cdc", &format!("[{db}.cr]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    my.query_in(
        &db,
        "CREATE OR REPLACE TABLE cr (id int PRIMARY KEY, v varchar(10)); INSERT INTO cr VALUES (9, 'new9');",
    )
    .unwrap();
    let out = fails(siphon(dir.path(), &["run", "--once"]), 1);
    says_stopped(
        &out,
        &db,
        "cr",
        "the source replaced the table with CREATE OR REPLACE TABLE",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &db_name(&dst), "id, v", "cr"),
        vec!["9|new9".to_string()]
    );
}

/// A COMMENT saying "rename" is a string, not RENAME: the column is added
/// and the table streams on.
#[test]
fn a_comment_saying_rename_does_not_stop_the_table() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE u (id int PRIMARY KEY, v int); INSERT INTO u VALUES (1, 1);",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "cdc", &format!("[{db}.u]"), "");
    ok(siphon(dir.path(), &["run", "--once"]));
    my.query_in(
        &db,
        "ALTER TABLE u ADD COLUMN c varchar(30) COMMENT 'we may rename this later, don''t drop it'; \
         INSERT INTO u VALUES (2, 2, 'two');",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        my_rows(my, &db_name(&dst), "id, v, IFNULL(c, 'null')", "u"),
        vec!["1|1|null".to_string(), "2|2|two".to_string()]
    );
}

/// Two deployments (two state stores) that both name their pipeline `p` and
/// read one MariaDB server share a binlog `server_id` (derived from the
/// name), so each connection ends the other's: the log says so and how to
/// end it, rather than calling the server's error a lost binlog position.
#[test]
fn two_pipelines_of_one_name_reading_one_server_are_told_why_they_evict_each_other() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    )
    .unwrap();
    let (d1, d2) = (my.create_database().unwrap(), my.create_database().unwrap());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, dst) in [(&a, &d1), (&b, &d2)] {
        config(
            dir.path(),
            &src,
            dst,
            "cdc",
            &format!("[{db}.t]"),
            "schedule: continuous",
        );
    }
    let _ra = support::spawn_run(a.path());
    let _rb = support::spawn_run(b.path());
    let logs = || support::run_log(a.path()) + &support::run_log(b.path());
    support::wait_for(
        "the eviction named",
        std::time::Duration::from_secs(120),
        || logs().contains("give one of the pipelines another name"),
    );
    let logs = logs();
    for part in [
        "same server_uuid/server_id",
        "run a pipeline named `p` against this server",
    ] {
        assert!(logs.contains(part), "{part:?} is not said: {logs}");
    }
    assert!(
        !logs.contains("binlog no longer holds the changes"),
        "{logs}"
    );
}
