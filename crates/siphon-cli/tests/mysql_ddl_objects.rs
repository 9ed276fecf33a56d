//! Target tables and their objects, MariaDB→MariaDB (and MariaDB→PostgreSQL
//! where said) through the binary on the testkit's real servers: a unique
//! index on a column prefix is created once on the target, with its prefix; a
//! table created at the source while a `cdc` pipeline streams keeps its
//! `AUTO_INCREMENT` on the target as a table present at the start does, and a
//! column the source makes `AUTO_INCREMENT` while it streams becomes so on the
//! target; and a table with a spatial column is refused before its target
//! table is created, in `full` and `incremental` mode, while the pipeline's
//! other tables copy.

use std::time::Duration;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{config, db_name, ok, siphon, text, wait_for};

/// The indexes of `db`.`table` as `name(column(prefix),…)`, sorted.
fn indexes(my: &MariaDb, db: &str, table: &str) -> Vec<String> {
    let out = my
        .query(&format!(
            "SELECT CONCAT(INDEX_NAME, IF(NON_UNIQUE = 0, ' unique', ''), '(', \
               GROUP_CONCAT(CONCAT(COLUMN_NAME, IFNULL(CONCAT('(', SUB_PART, ')'), '')) \
               ORDER BY SEQ_IN_INDEX), ')') \
             FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}' \
             GROUP BY INDEX_NAME, NON_UNIQUE ORDER BY INDEX_NAME"
        ))
        .unwrap();
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_unique_prefix_index_is_created_once_with_its_prefix_on_a_mariadb_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE people (id int PRIMARY KEY, name varchar(50), bio text, \
           UNIQUE KEY uq_name (name(10)), UNIQUE KEY uq_bio_id (bio(20), id)); \
         INSERT INTO people VALUES (1, 'alexander the great', 'a'), (2, 'bob', 'b');",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        &src,
        &dst,
        "full",
        &format!("[{db}.people]"),
        "",
    );
    ok(siphon(dir.path(), &["run", "--once"]));
    let source = indexes(my, &db, "people");
    assert_eq!(
        source,
        vec![
            "PRIMARY unique(id)",
            "uq_bio_id unique(bio(20),id)",
            "uq_name unique(name(10))"
        ]
    );
    // The target held `name unique(name)` and `bio unique(bio,id)` beside
    // the source's two: the table was created with unique keys named after
    // no index and without the prefixes, then the source's prefix indexes
    // were added by name.
    assert_eq!(indexes(my, &dst_db, "people"), source);
    // A second pass finds them identical and changes nothing.
    ok(siphon(dir.path(), &["sync", "resync", "p"]));
    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(indexes(my, &dst_db, "people"), source);
    assert_eq!(
        support::my_rows(my, &dst_db, "id, name, bio", "people"),
        support::my_rows(my, &db, "id, name, bio", "people"),
    );
}

/// The `EXTRA` of column `id` of `db`.`table`.
fn id_extra(my: &MariaDb, db: &str, table: &str) -> String {
    my.query(&format!(
        "SELECT EXTRA FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}' AND COLUMN_NAME = 'id'"
    ))
    .unwrap()
    .trim()
    .to_string()
}

#[test]
fn a_table_created_while_cdc_streams_keeps_auto_increment_on_a_mariadb_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE first (id int AUTO_INCREMENT PRIMARY KEY, v varchar(10)); \
         INSERT INTO first (v) VALUES ('a'), ('b');",
    )
    .unwrap();
    let dst = my.create_database().unwrap();
    let dst_db = db_name(&dst);
    let dir = tempfile::tempdir().unwrap();
    // A continuous run looks for new tables on each schema check.
    config(
        dir.path(),
        &src,
        &dst,
        "cdc",
        &format!("[\"{db}.*\"]"),
        "schema_check_interval: 2s",
    );
    let mut run = support::spawn_run(dir.path());
    let count = |table: &str| {
        my.query_in(&dst_db, &format!("SELECT COUNT(*) FROM {table}"))
            .map(|n| n.trim().to_string())
            .unwrap_or_default()
    };
    wait_for("the first table is copied", Duration::from_secs(60), || {
        count("first") == "2"
    });
    my.query_in(
        &db,
        "CREATE TABLE later (id int AUTO_INCREMENT PRIMARY KEY, v varchar(10)); \
         INSERT INTO later (v) VALUES ('x'), ('y'); INSERT INTO first (v) VALUES ('c');",
    )
    .unwrap();
    wait_for(
        "the table created at the source reaches the target",
        Duration::from_secs(120),
        || {
            assert!(
                run.running(),
                "siphon stopped:\n{}",
                support::run_log(dir.path())
            );
            count("later") == "2" && count("first") == "3"
        },
    );
    run.kill();
    assert_eq!(id_extra(my, &dst_db, "first"), "auto_increment");
    // The table created while the stream ran had `id int NOT NULL` on the
    // target, with no AUTO_INCREMENT.
    assert_eq!(
        id_extra(my, &dst_db, "later"),
        "auto_increment",
        "{}",
        support::run_log(dir.path())
    );
    my.query_in(&dst_db, "INSERT INTO later (v) VALUES ('z')")
        .expect("an insert without the id on the target");
    assert_eq!(
        support::my_rows(my, &dst_db, "id, v", "later"),
        vec!["1|x", "2|y", "3|z"]
    );
}

#[test]
fn auto_increment_added_at_the_source_while_cdc_streams_reaches_a_mariadb_target() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE t (id int NOT NULL PRIMARY KEY, v varchar(10)); \
         INSERT INTO t VALUES (1, 'a');",
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
        &format!("[\"{db}.*\"]"),
        "schema_check_interval: 2s",
    );
    let mut run = support::spawn_run(dir.path());
    let rows = || support::my_rows(my, &dst_db, "id, v", "t");
    wait_for("the table is copied", Duration::from_secs(60), || {
        my.query_in(&dst_db, "SELECT COUNT(*) FROM t")
            .is_ok_and(|n| n.trim() == "1")
    });
    my.query_in(
        &db,
        "ALTER TABLE t MODIFY id int NOT NULL AUTO_INCREMENT; INSERT INTO t (v) VALUES ('b');",
    )
    .unwrap();
    // The ALTER streamed on without a new shape, and the target's `id` stayed
    // without AUTO_INCREMENT for good.
    wait_for(
        "the target's id is AUTO_INCREMENT",
        Duration::from_secs(60),
        || {
            assert!(
                run.running(),
                "siphon stopped:\n{}",
                support::run_log(dir.path())
            );
            id_extra(my, &dst_db, "t") == "auto_increment" && rows().len() == 2
        },
    );
    run.kill();
    my.query_in(&dst_db, "INSERT INTO t (v) VALUES ('c')")
        .expect("an insert without the id on the target");
    assert_eq!(rows(), vec!["1|a", "2|b", "3|c"]);
}

/// A spatial table and a plain one at a new source database.
fn spatial_source(my: &MariaDb) -> (String, String) {
    let src = my.create_database().unwrap();
    let db = db_name(&src);
    my.query_in(
        &db,
        "CREATE TABLE places (id int PRIMARY KEY, spot point); \
         INSERT INTO places VALUES (1, ST_PointFromText('POINT(1 2)')); \
         CREATE TABLE plain (id int PRIMARY KEY, v int); INSERT INTO plain VALUES (1, 10), (2, 20);",
    )
    .unwrap();
    (src, db)
}

/// The refused run of a pipeline of `places` and `plain` in `mode`: the error
/// names the table and the column, and the other table copied.
fn refused_run(src: &str, db: &str, dst: &str, mode: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let extra = match mode {
        "incremental" => "cursor: id\nstrategy: sequence",
        _ => "",
    };
    config(dir.path(), src, dst, mode, &format!("[\"{db}.*\"]"), extra);
    let out = siphon(dir.path(), &["run", "--once"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{mode}: {said}");
    assert!(
        said.contains(&format!("table {db}.places, column spot")),
        "{mode}: {said}"
    );
    dir
}

#[test]
fn a_spatial_table_is_refused_before_its_target_table_is_created() {
    let my = MariaDb::shared().unwrap();
    let (src, db) = spatial_source(my);
    for mode in ["full", "incremental"] {
        let dst = my.create_database().unwrap();
        let dst_db = db_name(&dst);
        let _dir = refused_run(&src, &db, &dst, mode);
        // The target got an empty `places` with a `point` column before the
        // read refused the table.
        let tables = my
            .query(&format!(
                "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = '{dst_db}' AND TABLE_NAME IN ('places', 'plain')"
            ))
            .unwrap();
        assert_eq!(tables.trim(), "plain", "{mode}");
        assert_eq!(
            support::my_rows(my, &dst_db, "id, v", "plain"),
            vec!["1|10", "2|20"],
            "{mode}"
        );
    }
}

#[test]
fn a_spatial_table_is_refused_before_its_postgres_target_table_is_created() {
    let my = MariaDb::shared().unwrap();
    let pg = Postgres::shared().unwrap();
    let (src, db) = spatial_source(my);
    for mode in ["full", "incremental"] {
        let dst = pg.create_database().unwrap();
        let dst_db = db_name(&dst);
        let _dir = refused_run(&src, &db, &dst, mode);
        let tables = pg
            .query_in(
                &dst_db,
                &format!(
                    "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM \
                     information_schema.tables WHERE table_schema = '{db}' \
                     AND table_name IN ('places', 'plain')"
                ),
            )
            .unwrap();
        assert_eq!(tables.trim(), "plain", "{mode}");
        assert_eq!(
            support::pg_rows(pg, &dst_db, "id, v", &format!("\"{db}\".plain")),
            vec!["1|10", "2|20"],
            "{mode}"
        );
    }
}
