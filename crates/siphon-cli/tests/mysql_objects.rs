//! Schema objects through the binary, MariaDB→MariaDB on the testkit's real
//! server, with `schema.routines: true`: a procedure, a function, a trigger
//! and a view exist on the target after `siphon run --once` and work there as
//! on the source; a column and an index added on the source appear on the
//! target after the schema check (`schema_check_interval`), in `full` and in
//! `incremental` mode. Also: `schema.routines` is taken for a MySQL pipeline
//! and refused, with what it does, for any other; column defaults come along
//! MariaDB→MariaDB, so a row inserted on the target without them gets them.

use std::path::Path;

use siphon_testkit::MariaDb;

mod support;
use support::{fails, ok, siphon};

/// The source schema: two tables, a function, a view that calls it, a
/// procedure that writes, and a trigger that changes the row and writes.
const SOURCE: &str = "
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100), n INT);
CREATE TABLE audit (id INT PRIMARY KEY, note VARCHAR(100));
CREATE FUNCTION f_double(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
CREATE VIEW v_items AS SELECT id, f_double(n) AS twice FROM items WHERE n > 0;
DELIMITER //
CREATE PROCEDURE p_count(IN least INT, OUT total INT)
BEGIN
  SELECT COUNT(*) INTO total FROM items WHERE n >= least;
  INSERT INTO audit VALUES (1000 + least, CONCAT('counted ', least));
END//
CREATE TRIGGER t_bi BEFORE INSERT ON items FOR EACH ROW
BEGIN
  SET NEW.name = CONCAT(NEW.name, '!');
END//
DELIMITER ;
INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3), (4, 'none', 0);
INSERT INTO audit VALUES (1, 'start');
";

/// What the objects answer in `db`: the procedure's count and the row it
/// wrote, the function, the trigger's effect on a new row, and the view.
fn answers(my: &MariaDb, db: &str) -> String {
    my.query_in(
        db,
        "CALL p_count(2, @total); SELECT @total; SELECT note FROM audit WHERE id = 1002; \
         SELECT f_double(21); INSERT INTO items VALUES (10, 'ten', 10); \
         SELECT name FROM items WHERE id = 10; \
         SELECT GROUP_CONCAT(CONCAT(id, ':', twice) ORDER BY id) FROM v_items",
    )
    .unwrap()
}

/// One line per row of `items` in `db`: `id|name|n`.
fn items(my: &MariaDb, db: &str) -> String {
    my.query_in(
        db,
        "SELECT CONCAT_WS('|', id, name, IFNULL(n, 'null')) FROM items ORDER BY id",
    )
    .unwrap()
}

/// The columns of `items` in `db`, in order, and its index names with their
/// columns.
fn shape(my: &MariaDb, db: &str) -> (String, String) {
    let columns = my
        .query_in(
            db,
            &format!(
                "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM \
                 information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'items'"
            ),
        )
        .unwrap();
    let indexes = my
        .query_in(
            db,
            &format!(
                "SELECT GROUP_CONCAT(DISTINCT CONCAT(INDEX_NAME, '(', COLUMN_NAME, ')') \
                 ORDER BY INDEX_NAME) FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'items' AND INDEX_NAME <> 'PRIMARY'"
            ),
        )
        .unwrap();
    (columns, indexes)
}

fn db_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

fn write_config(dir: &Path, source: &str, target: &str, mode: &str) {
    let cursor = if mode == "incremental" {
        "    cursor: id\n    strategy: sequence\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {source}\n  dst: {target}\n\
             pipelines:\n  objects:\n    source: src\n    target: dst\n    mode: {mode}\n\
             \x20   tables: ['*']\n{cursor}    schema: {{routines: true}}\n\
             \x20   schema_check_interval: 1s\n"
        ),
    )
    .unwrap();
}

/// The whole acceptance case in one `mode`.
fn objects_and_drift(mode: &str) {
    let my = MariaDb::shared().unwrap();
    let (src_url, dst_url) = (my.create_database().unwrap(), my.create_database().unwrap());
    let (src, dst) = (db_of(&src_url), db_of(&dst_url));
    my.query_in(&src, SOURCE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &src_url, &dst_url, mode);

    ok(siphon(dir.path(), &["run", "--once"]));
    assert_eq!(
        items(my, &dst),
        items(my, &src),
        "{mode}: rows copied as they are"
    );
    let routines = my
        .query_in(
            &dst,
            &format!(
                "SELECT GROUP_CONCAT(CONCAT(ROUTINE_TYPE, ' ', ROUTINE_NAME) ORDER BY ROUTINE_NAME) \
                 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{dst}'"
            ),
        )
        .unwrap();
    assert_eq!(routines, "FUNCTION f_double,PROCEDURE p_count", "{mode}");
    // The objects work on the target as on the source (each call writes the
    // same rows into each database).
    let (on_source, on_target) = (answers(my, &src), answers(my, &dst));
    assert_eq!(
        on_target, "2\ncounted 2\n42\nten!\n1:2,2:4,3:6,10:20",
        "{mode}: the procedure, function, trigger and view on the target"
    );
    assert_eq!(on_target, on_source, "{mode}");

    // Drift: a column and an index added on the source.
    my.query_in(
        &src,
        "ALTER TABLE items ADD COLUMN added_col VARCHAR(20) DEFAULT 'x'; \
         CREATE INDEX by_name ON items (name); \
         INSERT INTO items (id, name, n, added_col) VALUES (20, 'twenty', 20, 'new')",
    )
    .unwrap();
    ok(siphon(dir.path(), &["run", "--once"]));
    let (columns, indexes) = shape(my, &dst);
    assert_eq!(columns, "id,name,n,added_col", "{mode}: the added column");
    assert_eq!(indexes, "by_name(name)", "{mode}: the added index");
    if mode == "incremental" {
        // The row past the cursor came over with its new column, as the
        // source holds it: the target's trigger did not change it again.
        let row = |db: &str| {
            my.query_in(
                db,
                "SELECT CONCAT_WS('|', id, name, n, added_col) FROM items WHERE id = 20",
            )
            .unwrap()
        };
        assert_eq!(row(&dst), "20|twenty!|20|new", "{mode}");
    }
}

#[test]
fn full_mode_carries_routines_views_triggers_and_drift() {
    objects_and_drift("full");
}

#[test]
fn incremental_mode_carries_routines_views_triggers_and_drift() {
    objects_and_drift("incremental");
}

#[test]
fn schema_routines_is_taken_for_mysql_and_refused_elsewhere() {
    let my = MariaDb::shared().unwrap();
    let (src_url, dst_url) = (my.create_database().unwrap(), my.create_database().unwrap());
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &src_url, &dst_url, "full");
    ok(siphon(dir.path(), &["apply"]));

    write_config(dir.path(), "sqlite://a.db", "sqlite://b.db", "full");
    let e = fails(siphon(dir.path(), &["apply"]), 2);
    assert!(
        e.contains("pipelines.objects.schema.routines") && e.contains("MySQL"),
        "{e}"
    );
}

#[test]
fn column_defaults_come_along_between_mariadb_databases() {
    let my = MariaDb::shared().unwrap();
    let (src_url, dst_url) = (my.create_database().unwrap(), my.create_database().unwrap());
    let (src, dst) = (db_of(&src_url), db_of(&dst_url));
    my.query_in(
        &src,
        "CREATE TABLE d (id INT PRIMARY KEY, n INT NOT NULL DEFAULT 7, \
         word VARCHAR(20) DEFAULT 'it''s', price DECIMAL(8,2) DEFAULT 1.50, \
         at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), tag CHAR(36) DEFAULT (uuid()), \
         plain INT NOT NULL); \
         INSERT INTO d (id, plain) VALUES (1, 1);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &src_url, &dst_url, "full");
    ok(siphon(dir.path(), &["run", "--once"]));
    let row = |db: &str, id: i32| {
        my.query_in(
            db,
            &format!(
                "SELECT id, n, word, price, at > '2020-01-01', LENGTH(tag) FROM d WHERE id = {id}"
            ),
        )
        .unwrap()
    };
    assert_eq!(row(&dst, 1), row(&src, 1));
    // A row written on the target without the columns gets the source's defaults.
    my.query_in(&dst, "INSERT INTO d (id, plain) VALUES (2, 2)")
        .unwrap();
    assert_eq!(row(&dst, 2), "2\t7\tit's\t1.50\t1\t36");
    let plain = my.query_in(&dst, "INSERT INTO d (id) VALUES (3)");
    assert!(
        plain.is_err(),
        "a NOT NULL column without a default got one: {plain:?}"
    );
}
