//! Schema objects and drift from one MariaDB database to another, on the
//! testkit's real server: views, functions, procedures and triggers created on
//! the target and working there, a changed body replaced and a dropped object
//! dropped on the next pass, columns and indexes added at the source appearing
//! on the target, and a narrowing change stopping that table with an error
//! that says what to do.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::{ErrorKind, ObjectKind, SchemaOptions, TableFilter, TableSchema};
use siphon_mysql::conn::{ConnConfig, Flavor};
use siphon_mysql::objects::{self, drift, Registry};
use siphon_testkit::MariaDb;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A source database and a target database on the shared server, and a
/// connection to each.
struct Pair {
    server: &'static MariaDb,
    src: String,
    dst: String,
    source: Conn,
    target: Conn,
}

fn db_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

async fn pair() -> Res<Pair> {
    let server = MariaDb::shared()?;
    let (src_url, dst_url) = (server.create_database()?, server.create_database()?);
    let source = ConnConfig::parse(&src_url)?.connect("source").await?;
    let target = ConnConfig::parse(&dst_url)?.connect("target").await?;
    Ok(Pair {
        server,
        src: db_of(&src_url),
        dst: db_of(&dst_url),
        source,
        target,
    })
}

/// The tables of `db` as the MySQL source discovers them, with their schema
/// objects attached.
async fn discover(conn: &mut Conn, db: &str) -> Res<Vec<TableSchema>> {
    let all = TableFilter {
        include: vec!["*".into()],
        exclude: vec![],
    };
    let mut tables = siphon_mysql::schema::discover(conn, db, Flavor::MariaDb, &all).await?;
    objects::attach_objects(conn, &mut tables).await?;
    Ok(tables)
}

/// One pass of the target side, as a MySQL sink runs it: each table prepared
/// (columns reconciled, objects recorded), then the objects finished. Returns the finish's report.
async fn pass(
    p: &mut Pair,
    registry: &Registry,
    options: &SchemaOptions,
) -> Res<objects::target::Finished> {
    let tables = discover(&mut p.source, &p.src).await?;
    // Tables keep their source name (database included), as the engine hands
    // them over; the sink writes them all into its own database.
    for t in tables {
        drift::reconcile(&mut p.target, &p.dst, &t, options).await?;
        registry.prepared(&t);
    }
    Ok(registry.finish(&mut p.target, &p.dst, options).await?)
}

fn routines() -> SchemaOptions {
    SchemaOptions {
        routines: true,
        ..SchemaOptions::default()
    }
}

async fn setup_source(p: &mut Pair) -> Res {
    let s = &mut p.source;
    s.query_drop(
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(200), n INT, body TEXT, \
         KEY k_name (name(10), n), UNIQUE KEY u_body (body(20)))",
    )
    .await?;
    s.query_drop("CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100))")
        .await?;
    // `a_view` reads `z_view`, which sorts after it: created in the order
    // that works, not by name.
    s.query_drop("CREATE VIEW z_view AS SELECT id, name, n FROM t WHERE n > 0")
        .await?;
    s.query_drop("CREATE FUNCTION f_double(x INT) RETURNS INT DETERMINISTIC RETURN x * 2")
        .await?;
    s.query_drop(
        "CREATE SQL SECURITY INVOKER VIEW a_view AS SELECT id, f_double(n) AS twice FROM z_view",
    )
    .await?;
    s.query_drop(
        "CREATE PROCEDURE p_add(IN a INT, OUT b INT) COMMENT 'adds one' \
         BEGIN SELECT a + 1 INTO b; INSERT INTO audit (note) VALUES (CONCAT('p_add ', a)); END",
    )
    .await?;
    s.query_drop(
        "CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW \
         BEGIN SET NEW.n = COALESCE(NEW.n, 0) + 1; INSERT INTO audit (note) VALUES (CONCAT('insert ', NEW.id)); END",
    )
    .await?;
    Ok(())
}

/// The target tables as a sink creates them: columns and key, no secondary
/// indexes (those are the objects' part).
async fn setup_target(p: &mut Pair) -> Res {
    let t = &mut p.target;
    t.query_drop("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(200), n INT, body TEXT)")
        .await?;
    t.query_drop("CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100))")
        .await?;
    Ok(())
}

#[tokio::test]
async fn definitions_carry_no_definer_and_keep_sql_security_and_sql_mode() -> Res {
    let mut p = pair().await?;
    setup_source(&mut p).await?;
    let tables = discover(&mut p.source, &p.src).await?;
    let t = tables.iter().find(|t| t.name.name == "t").unwrap();
    let audit = tables.iter().find(|t| t.name.name == "audit").unwrap();
    let find = |kind: ObjectKind, name: &str| {
        t.objects
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .unwrap_or_else(|| panic!("{kind:?} {name} not read: {:#?}", t.objects))
    };
    let view = find(ObjectKind::View, "a_view");
    assert!(
        view.definition.contains("SQL SECURITY INVOKER"),
        "{}",
        view.definition
    );
    assert!(!view.definition.contains("DEFINER="), "{}", view.definition);
    assert!(
        !view.definition.contains(&format!("`{}`.", p.src)),
        "{}",
        view.definition
    );
    let proc = find(ObjectKind::Procedure, "p_add");
    assert!(
        proc.definition.starts_with("SET SESSION sql_mode = '"),
        "{}",
        proc.definition
    );
    assert!(
        proc.definition.contains("COMMENT 'adds one'"),
        "{}",
        proc.definition
    );
    assert!(!proc.definition.contains("DEFINER="), "{}", proc.definition);
    let index = find(ObjectKind::Index, "k_name");
    assert_eq!(
        index.definition,
        "CREATE INDEX `k_name` ON `t` (`name`(10), `n`)"
    );
    assert!(find(ObjectKind::Index, "u_body")
        .definition
        .starts_with("CREATE UNIQUE INDEX"));
    find(ObjectKind::Trigger, "t_bi");
    find(ObjectKind::Function, "f_double");
    // Database-level objects ride on every table; a trigger on its own.
    assert!(audit.objects.iter().any(|o| o.name == "f_double"));
    assert!(!audit.objects.iter().any(|o| o.name == "t_bi"));
    Ok(())
}

#[tokio::test]
async fn procedure_function_trigger_and_views_are_created_and_work_on_the_target() -> Res {
    let mut p = pair().await?;
    setup_source(&mut p).await?;
    setup_target(&mut p).await?;
    let registry = Registry::new();
    let done = pass(&mut p, &registry, &routines()).await?;
    assert!(done.not_carried.is_empty(), "{:?}", done.not_carried);

    let t = &mut p.target;
    let b: Option<i64> = {
        t.query_drop("CALL p_add(41, @b)").await?;
        t.query_first("SELECT @b").await?
    };
    assert_eq!(b, Some(42), "the procedure runs on the target");
    let f: Option<i64> = t.query_first("SELECT f_double(21)").await?;
    assert_eq!(f, Some(42), "the function runs on the target");
    t.query_drop("INSERT INTO t (id, name) VALUES (7, 'seven')")
        .await?;
    let n: Option<i64> = t.query_first("SELECT n FROM t WHERE id = 7").await?;
    assert_eq!(n, Some(1), "the trigger fired on the target");
    let notes: Vec<String> = t.query("SELECT note FROM audit ORDER BY id").await?;
    assert_eq!(notes, vec!["p_add 41".to_string(), "insert 7".to_string()]);
    let twice: Option<(i64, i64)> = t.query_first("SELECT id, twice FROM a_view").await?;
    assert_eq!(
        twice,
        Some((7, 2)),
        "the view over a view and a function reads the target"
    );
    let sub: Option<i64> = t
        .exec_first(
            "SELECT SUB_PART FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't' \
             AND INDEX_NAME = 'k_name' AND SEQ_IN_INDEX = 1",
            (&p.dst,),
        )
        .await?;
    assert_eq!(sub, Some(10), "the prefix index keeps its prefix length");

    // The next pass with nothing changed at the source changes nothing.
    let again = pass(&mut p, &registry, &routines()).await?;
    assert_eq!(again, Default::default());
    Ok(())
}

#[tokio::test]
async fn without_schema_routines_only_indexes_are_carried() -> Res {
    let mut p = pair().await?;
    setup_source(&mut p).await?;
    setup_target(&mut p).await?;
    let done = pass(&mut p, &Registry::new(), &SchemaOptions::default()).await?;
    assert!(
        done.created.iter().all(|c| c.starts_with("index ")),
        "{:?}",
        done.created
    );
    let routines: Option<i64> = p
        .target
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
            (&p.dst,),
        )
        .await?;
    assert_eq!(routines, Some(0));
    Ok(())
}

#[tokio::test]
async fn a_changed_body_is_replaced_and_a_dropped_object_dropped_on_the_next_pass() -> Res {
    let mut p = pair().await?;
    setup_source(&mut p).await?;
    setup_target(&mut p).await?;
    // An object made by hand on the target is never siphon's to drop.
    p.target
        .query_drop("CREATE PROCEDURE mine() SELECT 1")
        .await?;
    let registry = Registry::new();
    pass(&mut p, &registry, &routines()).await?;

    let s = &mut p.source;
    s.query_drop("DROP FUNCTION f_double").await?;
    s.query_drop("CREATE FUNCTION f_double(x INT) RETURNS INT DETERMINISTIC RETURN x * 3")
        .await?;
    s.query_drop("DROP PROCEDURE p_add").await?;
    s.query_drop("DROP TRIGGER t_bi").await?;
    s.query_drop(
        "CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.n = COALESCE(NEW.n, 0) + 100",
    )
    .await?;
    s.query_drop("DROP INDEX k_name ON t").await?;
    let done = pass(&mut p, &registry, &routines()).await?;
    assert!(
        done.created.contains(&"function f_double".to_string()),
        "{done:?}"
    );
    assert!(
        done.created.contains(&"trigger t_bi".to_string()),
        "{done:?}"
    );
    assert!(
        done.dropped.contains(&"procedure p_add".to_string()),
        "{done:?}"
    );
    assert!(
        done.dropped.contains(&"index k_name".to_string()),
        "{done:?}"
    );

    let t = &mut p.target;
    let f: Option<i64> = t.query_first("SELECT f_double(2)").await?;
    assert_eq!(f, Some(6), "the changed body replaced the old one");
    t.query_drop("INSERT INTO t (id) VALUES (1)").await?;
    let n: Option<i64> = t.query_first("SELECT n FROM t WHERE id = 1").await?;
    assert_eq!(n, Some(100), "the changed trigger fires");
    let left: Vec<String> = t
        .exec(
            "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY 1",
            (&p.dst,),
        )
        .await?;
    assert_eq!(left, vec!["f_double".to_string(), "mine".to_string()]);
    let idx: Option<i64> = t
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND INDEX_NAME = 'k_name'",
            (&p.dst,),
        )
        .await?;
    assert_eq!(idx, Some(0), "the index the source dropped is dropped");
    Ok(())
}

#[tokio::test]
async fn a_column_and_an_index_added_at_the_source_appear_on_the_target() -> Res {
    let mut p = pair().await?;
    setup_source(&mut p).await?;
    setup_target(&mut p).await?;
    let registry = Registry::new();
    pass(&mut p, &registry, &SchemaOptions::default()).await?;

    let s = &mut p.source;
    s.query_drop("ALTER TABLE t ADD COLUMN email VARCHAR(100) NULL")
        .await?;
    s.query_drop("ALTER TABLE t ADD UNIQUE INDEX u_email_n (email(20), n)")
        .await?;
    s.query_drop("ALTER TABLE t MODIFY COLUMN name VARCHAR(300)")
        .await?;
    s.query_drop("ALTER TABLE t DROP COLUMN body").await?;
    let done = pass(&mut p, &registry, &SchemaOptions::default()).await?;
    assert!(
        done.created.contains(&"index u_email_n".to_string()),
        "{done:?}"
    );

    let t = &mut p.target;
    let cols: Vec<(String, String, String)> = t
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't' ORDER BY ORDINAL_POSITION",
            (&p.dst,),
        )
        .await?;
    let ty = |c: &str| cols.iter().find(|x| x.0 == c).map(|x| x.1.clone());
    assert_eq!(ty("email").as_deref(), Some("varchar(100)"), "{cols:?}");
    assert_eq!(
        ty("name").as_deref(),
        Some("varchar(300)"),
        "widened: {cols:?}"
    );
    assert_eq!(
        ty("body").as_deref(),
        Some("text"),
        "a dropped column stays: {cols:?}"
    );
    let parts: Vec<(String, Option<i64>, i64)> = t
        .exec(
            "SELECT COLUMN_NAME, SUB_PART, NON_UNIQUE FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't' AND INDEX_NAME = 'u_email_n' ORDER BY SEQ_IN_INDEX",
            (&p.dst,),
        )
        .await?;
    assert_eq!(
        parts,
        vec![
            ("email".to_string(), Some(20), 0),
            ("n".to_string(), None, 0)
        ]
    );
    t.query_drop("INSERT INTO t (id, name, n, email) VALUES (5, 'x', 1, 'a@b')")
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_narrowing_change_stops_that_table_with_an_error_that_says_what_to_do() -> Res {
    let mut p = pair().await?;
    setup_source(&mut p).await?;
    setup_target(&mut p).await?;
    p.source
        .query_drop("ALTER TABLE t MODIFY COLUMN name VARCHAR(50)")
        .await?;
    let tables = discover(&mut p.source, &p.src).await?;
    let mut results = Vec::new();
    for t in tables {
        results.push((
            t.name.name.clone(),
            drift::reconcile(&mut p.target, &p.dst, &t, &SchemaOptions::default()).await,
        ));
    }
    let (_, audit) = results.iter().find(|(n, _)| n == "audit").unwrap();
    assert!(audit.is_ok(), "the other table goes on: {audit:?}");
    let (_, t) = results.iter().find(|(n, _)| n == "t").unwrap();
    let e = t.as_ref().expect_err("narrowing must stop the table");
    assert_eq!(e.kind(), ErrorKind::BadInput);
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "column `name` of `{}`.`t` narrowed from varchar(200) to varchar(50)",
            p.dst
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "`siphon sync resync` of the pipeline, with `--table {}.t`",
            p.src
        )) && !text.contains("PIPELINE"),
        "{text}"
    );
    assert_eq!(e.table_name(), Some(format!("{}.t", p.dst).as_str()));
    // The target is left as it was.
    let ty: Option<String> = p
        .target
        .exec_first(
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't' \
             AND COLUMN_NAME = 'name'",
            (&p.dst,),
        )
        .await?;
    assert_eq!(ty.as_deref(), Some("varchar(200)"));
    let _ = p.server;
    Ok(())
}
