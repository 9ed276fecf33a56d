//! PostgreSQL to MariaDB in `cdc`: a column widened at the source while
//! siphon streams (`integer` to `bigint`, a longer `varchar`, a larger
//! `numeric` precision) is widened on the target, so values only the wider
//! type holds arrive instead of stopping the table.

use std::time::Duration;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{command, config, db_name, my_rows, run_log, wait_for, Running};

#[test]
fn columns_widened_at_the_source_are_widened_on_a_mariadb_target() {
    let pg = Postgres::shared().unwrap();
    let my = MariaDb::shared().unwrap();
    let src = pg.create_database().unwrap();
    let src_db = db_name(&src);
    let dst_db = db_name(&my.create_database().unwrap());
    pg.query_in(
        &src_db,
        "CREATE TABLE w (id int PRIMARY KEY, v int, s varchar(5), n numeric(6,2)); \
         INSERT INTO w SELECT g, g, 's' || g, g FROM generate_series(1, 10) g;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        &my.url_for(&dst_db),
        "cdc",
        "[public.w]",
        "schedule: continuous",
    );
    let mut run = Running::spawn(
        command(dir.path(), &["run", "-f", "siphon.yaml"]),
        &dir.path().join("siphon.log"),
    );
    let within = Duration::from_secs(120);
    let count = |sql: &str| -> String {
        my.query_in(&dst_db, sql)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    wait_for("the copy", within, || {
        assert!(run.running(), "{}", run_log(dir.path()));
        count("SELECT count(*) FROM w") == "10"
    });
    pg.query_in(
        &src_db,
        "ALTER TABLE w ALTER COLUMN v TYPE bigint, ALTER COLUMN s TYPE varchar(20), \
         ALTER COLUMN n TYPE numeric(12,2); \
         INSERT INTO w VALUES (11, 5000000000, 'a longer value', 1234567890.12); \
         UPDATE w SET v = -5000000000 WHERE id = 1;",
    )
    .unwrap();
    wait_for("the wide values", within, || {
        assert!(run.running(), "{}", run_log(dir.path()));
        count("SELECT count(*) FROM w WHERE id = 11") == "1"
            && count("SELECT v FROM w WHERE id = 1") == "-5000000000"
    });
    assert!(run.stop("TERM", within), "{}", run_log(dir.path()));
    assert_eq!(
        my_rows(my, &dst_db, "id, v, s, n", "w WHERE id IN (1, 11)"),
        vec![
            "11|5000000000|a longer value|1234567890.12",
            "1|-5000000000|s1|1.00"
        ],
        "{}",
        run_log(dir.path())
    );
    let types = my
        .query_in(
            &dst_db,
            "SELECT GROUP_CONCAT(COLUMN_TYPE ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'w'",
        )
        .unwrap();
    assert_eq!(types.trim(), "int(11),bigint(20),varchar(20),decimal(12,2)");
}
