//! MySQL and MariaDB connections through the binary, against the real MariaDB,
//! PostgreSQL and SQLite from the testkit: an orders-shaped table (an unsigned
//! bigint key up to its maximum, decimal(12,2), tinyint(1), json, datetime(6),
//! timestamp, utf8mb4 text with emoji) copied MariaDB→PostgreSQL,
//! PostgreSQL→MariaDB, MariaDB→MariaDB and MariaDB→SQLite in `full`,
//! `incremental` and `row_count` modes, and streamed from MariaDB's binlog in
//! `cdc`; each compared with its source row by row. Also: `mariadb://` URLs,
//! `connection test` naming the server, and passwords masked in
//! `connection list`.

use std::path::Path;

use rusqlite::Connection;
use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{fails, ok, siphon};

/// The source table on MariaDB.
const MARIADB_ORDERS: &str = "CREATE TABLE orders (
    id bigint unsigned NOT NULL PRIMARY KEY,
    customer varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    amount decimal(12,2) NOT NULL,
    paid tinyint(1) NOT NULL,
    details json,
    placed datetime(6) NOT NULL,
    updated_at timestamp NOT NULL DEFAULT '2026-01-01 00:00:00',
    KEY by_updated (updated_at)
)";

/// Rows of every shape, extremes included. Fractions of `placed` end in a
/// non-zero digit so every engine prints all six; JSON is written as
/// PostgreSQL's jsonb prints it, so a document compares as text anywhere.
const MARIADB_ROWS: &str = "INSERT INTO orders VALUES
    (1, 'Zoë 🚀 Ltd', 12.50, 1, '{\"qty\": 2, \"sku\": \"A-1\"}', '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05'),
    (2, 'plain', -0.01, 0, NULL, '1999-12-31 23:59:59.999999', '2026-01-03 00:00:00'),
    (3, '日本語 ✓', 9999999999.99, 1, '{\"a\": [1, 2, {\"b\": null}]}', '2026-06-30 12:00:00.000001', '2026-01-04 00:00:00'),
    (9223372036854775808, 'past signed', 0.00, 0, '[]', '2026-01-01 00:00:00.500001', '2026-01-05 00:00:00'),
    (18446744073709551615, 'max unsigned 🐘', 1.05, 1, '{}', '2038-01-19 03:14:07.654321', '2026-01-06 00:00:00')";

/// One line per row of `orders` on MariaDB (`db`), in a shape every engine
/// can print: `id|customer|amount|paid|json|placed|updated_at` (UTC).
fn mariadb_rows(my: &MariaDb, db: &str) -> Vec<String> {
    let out = my
        .query_in(
            db,
            "SET NAMES utf8mb4; SET time_zone = '+00:00'; SELECT CONCAT_WS('|', id, customer, amount, paid + 0, \
             IFNULL(details, 'null'), DATE_FORMAT(placed, '%Y-%m-%d %H:%i:%s.%f'), \
             DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s')) FROM orders",
        )
        .unwrap();
    sorted(out.lines())
}

/// [`mariadb_rows`] for `orders` on PostgreSQL (`db`, schema `schema`).
fn pg_rows(pg: &Postgres, db: &str, schema: &str) -> Vec<String> {
    let out = pg
        .query_in(
            db,
            &format!(
                "SELECT string_agg(concat_ws('|', id, customer, amount, paid::int, \
                 coalesce(details::text, 'null'), to_char(placed, 'YYYY-MM-DD HH24:MI:SS.US'), \
                 to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')), E'\\n') \
                 FROM \"{schema}\".orders"
            ),
        )
        .unwrap();
    sorted(out.lines())
}

/// [`mariadb_rows`] for `orders` in a SQLite file.
fn sqlite_rows(path: &Path) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    let mut st = c
        .prepare(
            "SELECT id || '|' || customer || '|' || printf('%.2f', amount) || '|' || paid || '|' || \
             coalesce(details, 'null') || '|' || placed || '|' || \
             strftime('%Y-%m-%d %H:%M:%S', updated_at) FROM orders",
        )
        .unwrap();
    let rows: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    sorted(rows.iter().map(String::as_str))
}

fn sorted<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = lines.map(str::to_string).collect();
    v.sort();
    v
}

/// A new MariaDB database holding the orders table and its rows; its name.
fn mariadb_orders(my: &MariaDb) -> (String, String) {
    let url = my.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    my.query_in(
        &db,
        &format!("SET NAMES utf8mb4; {MARIADB_ORDERS}; {MARIADB_ROWS}"),
    )
    .unwrap();
    (url, db)
}

/// Writes a one-pipeline `siphon.yaml` in `dir` and runs it once.
fn run_once(dir: &Path, source: &str, target: &str, table: &str, mode: &str) -> String {
    std::fs::write(
        dir.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {source}\n  dst: {target}\n\
             pipelines:\n  orders:\n    source: src\n    target: dst\n    mode: {mode}\n\
             \x20   tables: [{table}]\n    cursor: updated_at\n"
        ),
    )
    .unwrap();
    ok(siphon(dir, &["run", "--once"]))
}

/// Changes at the MariaDB source between runs: a new row, an update that
/// moves the cursor, a delete (seen by `row_count` and `cdc`).
fn change_mariadb(my: &MariaDb, db: &str, delete: bool) {
    my.query_in(
        db,
        "SET NAMES utf8mb4; INSERT INTO orders VALUES (4, 'new 🎉', 7.77, 0, '{\"n\": 1}', '2026-02-01 00:00:00.111111', \
         '2026-02-01 00:00:00'); \
         UPDATE orders SET amount = 13.75, paid = 0, updated_at = '2026-02-02 00:00:00' WHERE id = 1;",
    )
    .unwrap();
    if delete {
        my.query_in(db, "DELETE FROM orders WHERE id = 2").unwrap();
    }
}

#[test]
fn mariadb_to_postgres_in_full_incremental_and_row_count() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    for mode in ["full", "incremental", "row_count"] {
        let (src, db) = mariadb_orders(my);
        let dst = pg.create_database().unwrap();
        let pg_db = dst.rsplit('/').next().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let table = format!("{db}.orders");
        run_once(dir.path(), &src, &dst, &table, mode);
        assert_eq!(pg_rows(pg, pg_db, &db), mariadb_rows(my, &db), "{mode}");
        assert_eq!(pg_rows(pg, pg_db, &db).len(), 5);
        let types = pg
            .query_in(
                pg_db,
                &format!(
                    "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
                     FROM information_schema.columns WHERE table_schema = '{db}' AND table_name = 'orders'"
                ),
            )
            .unwrap();
        assert!(
            types.contains("amount numeric") && types.contains("paid boolean"),
            "{types}"
        );
        // A change that each mode carries (full copies again, incremental
        // reads the moved cursor, row_count sees the new count).
        change_mariadb(my, &db, false);
        run_once(dir.path(), &src, &dst, &table, mode);
        assert_eq!(pg_rows(pg, pg_db, &db), mariadb_rows(my, &db), "{mode}");
        assert_eq!(pg_rows(pg, pg_db, &db).len(), 6);
    }
}

#[test]
fn postgres_to_mariadb_in_full_incremental_row_count_and_cdc() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    for mode in ["full", "incremental", "row_count", "cdc"] {
        let src = pg.create_database().unwrap();
        let pg_db = src.rsplit('/').next().unwrap().to_string();
        pg.query_in(
            &pg_db,
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer varchar(100) NOT NULL,
               amount numeric(12,2) NOT NULL, paid boolean NOT NULL, details jsonb,
               placed timestamp(6) NOT NULL, updated_at timestamptz NOT NULL);
             INSERT INTO orders VALUES
               (1, 'Zoë 🚀 Ltd', 12.50, true, '{\"sku\": \"A-1\", \"qty\": 2}', '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05+00'),
               (2, 'plain', -0.01, false, NULL, '1999-12-31 23:59:59.999999', '2026-01-03 02:00:00+02'),
               (9223372036854775807, 'max 🐘', 9999999999.99, true, '[1, {\"a\": null}]', '2026-06-30 12:00:00.000001', '2026-01-04 00:00:00+00');",
        )
        .unwrap();
        let dst = my.create_database().unwrap();
        let db = dst.rsplit('/').next().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        run_once(dir.path(), &src, &dst, "public.orders", mode);
        assert_eq!(
            mariadb_rows(my, &db),
            pg_rows(pg, &pg_db, "public"),
            "{mode}"
        );
        assert_eq!(mariadb_rows(my, &db).len(), 3);

        pg.query_in(
            &pg_db,
            "INSERT INTO orders VALUES (4, 'new 🎉', 7.77, false, '{\"n\": 1}', '2026-02-01 00:00:00.111111', '2026-02-01 00:00:00+00');
             UPDATE orders SET amount = 13.75, updated_at = '2026-02-02 00:00:00+00' WHERE id = 1;",
        )
        .unwrap();
        run_once(dir.path(), &src, &dst, "public.orders", mode);
        assert_eq!(
            mariadb_rows(my, &db),
            pg_rows(pg, &pg_db, "public"),
            "{mode}"
        );
        assert_eq!(mariadb_rows(my, &db).len(), 4);
        if mode == "cdc" {
            // Deletes and a truncate travel through the log too.
            pg.query_in(&pg_db, "DELETE FROM orders WHERE id = 2")
                .unwrap();
            run_once(dir.path(), &src, &dst, "public.orders", mode);
            assert_eq!(mariadb_rows(my, &db), pg_rows(pg, &pg_db, "public"));
            assert_eq!(mariadb_rows(my, &db).len(), 3);
            pg.query_in(&pg_db, "TRUNCATE orders").unwrap();
            run_once(dir.path(), &src, &dst, "public.orders", mode);
            assert!(mariadb_rows(my, &db).is_empty());
            // The pipeline's slot and publication go with it.
            ok(siphon(dir.path(), &["sync", "remove", "orders", "--yes"]));
        }
    }
}

#[test]
fn mariadb_to_mariadb_in_full_incremental_and_row_count() {
    let my = MariaDb::shared().unwrap();
    for mode in ["full", "incremental", "row_count"] {
        let (src, db) = mariadb_orders(my);
        let dst = my.create_database().unwrap();
        let dst_db = dst.rsplit('/').next().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let table = format!("{db}.orders");
        // Written as `mariadb://`: the same connector.
        let source = src.replacen("mysql://", "mariadb://", 1);
        run_once(dir.path(), &source, &dst, &table, mode);
        assert_eq!(mariadb_rows(my, &dst_db), mariadb_rows(my, &db), "{mode}");
        // The same engine keeps the declared types.
        let types = my
            .query_in(
                &dst_db,
                "SELECT GROUP_CONCAT(CONCAT(column_name, ' ', column_type) ORDER BY ordinal_position) \
                 FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'orders'",
            )
            .unwrap();
        assert!(
            types.contains("id bigint(20) unsigned")
                && types.contains("amount decimal(12,2)")
                && types.contains("paid tinyint(1)")
                && types.contains("placed datetime(6)"),
            "{types}"
        );
        change_mariadb(my, &db, false);
        run_once(dir.path(), &source, &dst, &table, mode);
        assert_eq!(mariadb_rows(my, &dst_db), mariadb_rows(my, &db), "{mode}");
        assert_eq!(mariadb_rows(my, &dst_db).len(), 6);
    }
}

#[test]
fn mariadb_to_sqlite_in_full_incremental_and_row_count() {
    let my = MariaDb::shared().unwrap();
    for mode in ["full", "incremental", "row_count"] {
        let (src, db) = mariadb_orders(my);
        let dir = tempfile::tempdir().unwrap();
        let table = format!("{db}.orders");
        run_once(dir.path(), &src, "sqlite://dst.db", &table, mode);
        let target = dir.path().join("dst.db");
        assert_eq!(sqlite_rows(&target), mariadb_rows(my, &db), "{mode}");
        change_mariadb(my, &db, false);
        run_once(dir.path(), &src, "sqlite://dst.db", &table, mode);
        assert_eq!(sqlite_rows(&target), mariadb_rows(my, &db), "{mode}");
        assert_eq!(sqlite_rows(&target).len(), 6);
    }
}

#[test]
fn a_delete_reaches_the_target_in_row_count_mode_and_an_update_alone_does_not() {
    let my = MariaDb::shared().unwrap();
    let (src, db) = mariadb_orders(my);
    let dst = my.create_database().unwrap();
    let dst_db = dst.rsplit('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let table = format!("{db}.orders");
    run_once(dir.path(), &src, &dst, &table, "row_count");
    my.query_in(&db, "UPDATE orders SET amount = 1.00 WHERE id = 1")
        .unwrap();
    let out = run_once(dir.path(), &src, &dst, &table, "row_count");
    assert!(out.contains("row counts equal (5): not copied"), "{out}");
    assert_ne!(mariadb_rows(my, &dst_db), mariadb_rows(my, &db));
    my.query_in(&db, "DELETE FROM orders WHERE id = 2").unwrap();
    let out = run_once(dir.path(), &src, &dst, &table, "row_count");
    assert!(
        out.contains("row counts differed (source 4, target 5)"),
        "{out}"
    );
    assert_eq!(mariadb_rows(my, &dst_db), mariadb_rows(my, &db));
}

#[test]
fn cdc_from_mariadb_to_postgres_and_sqlite() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    // PostgreSQL.
    let (src, db) = mariadb_orders(my);
    let dst = pg.create_database().unwrap();
    let pg_db = dst.rsplit('/').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let table = format!("{db}.orders");
    run_once(dir.path(), &src, &dst, &table, "cdc");
    assert_eq!(pg_rows(pg, pg_db, &db), mariadb_rows(my, &db));
    change_mariadb(my, &db, true);
    run_once(dir.path(), &src, &dst, &table, "cdc");
    assert_eq!(pg_rows(pg, pg_db, &db), mariadb_rows(my, &db));
    assert_eq!(pg_rows(pg, pg_db, &db).len(), 5);

    // SQLite, from another database of the same server.
    let (src, db) = mariadb_orders(my);
    let dir = tempfile::tempdir().unwrap();
    let table = format!("{db}.orders");
    run_once(dir.path(), &src, "sqlite://dst.db", &table, "cdc");
    change_mariadb(my, &db, true);
    run_once(dir.path(), &src, "sqlite://dst.db", &table, "cdc");
    assert_eq!(
        sqlite_rows(&dir.path().join("dst.db")),
        mariadb_rows(my, &db)
    );
}

#[test]
fn cdc_from_mariadb_to_mariadb() {
    let my = MariaDb::shared().unwrap();
    let (src, db) = mariadb_orders(my);
    let dst = my.create_database().unwrap();
    let dst_db = dst.rsplit('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let table = format!("{db}.orders");
    run_once(dir.path(), &src, &dst, &table, "cdc");
    assert_eq!(mariadb_rows(my, &dst_db), mariadb_rows(my, &db));
    change_mariadb(my, &db, true);
    run_once(dir.path(), &src, &dst, &table, "cdc");
    assert_eq!(mariadb_rows(my, &dst_db), mariadb_rows(my, &db));
    assert_eq!(mariadb_rows(my, &dst_db).len(), 5);
}

#[test]
fn connections_name_their_server_and_hide_their_password() {
    let my = MariaDb::shared().unwrap();
    let url = my.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    my.query(&format!(
        "CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 's3cret'; \
         GRANT ALL ON `{db}`.* TO 'app'@'%'"
    ))
    .unwrap();
    let with_password = format!("mysql://app:s3cret@{}:{}/{db}", my.host(), my.port());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(siphon(d, &["connection", "add", "shop", &with_password]));
    let maria = with_password.replacen("mysql://", "mariadb://", 1);
    ok(siphon(d, &["connection", "add", "shop2", &maria]));
    let listed = ok(siphon(d, &["connection", "list"]));
    assert!(!listed.contains("s3cret"), "{listed}");
    assert!(listed.contains("mysql://app:***@"), "{listed}");
    assert!(listed.contains("mariadb://app:***@"), "{listed}");

    for name in ["shop", "shop2"] {
        let out = ok(siphon(d, &["connection", "test", name]));
        assert!(out.contains("reached MariaDB 10."), "{out}");
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("source, target, change log"), "{out}");
    }

    // A wrong password is the URL's to fix (exit 2): the error says so,
    // without the password.
    let wrong = format!("mysql://app:wrong-pw@{}:{}/{db}", my.host(), my.port());
    ok(siphon(d, &["connection", "add", "bad", &wrong]));
    let out = fails(siphon(d, &["connection", "test", "bad"]), 2);
    assert!(out.contains("1045") && !out.contains("wrong-pw"), "{out}");

    // A parameter siphon reads is checked when the connection is stored.
    let out = fails(
        siphon(
            d,
            &[
                "connection",
                "add",
                "odd",
                &format!("{with_password}?zero_dates=maybe"),
            ],
        ),
        2,
    );
    assert!(
        out.contains("zero_dates") && !out.contains("s3cret"),
        "{out}"
    );
}
