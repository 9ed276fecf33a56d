//! DDL read from MariaDB's binlog while a continuous `cdc` pipeline streams,
//! through the binary against the testkit's real servers, into MariaDB and
//! into PostgreSQL: columns added (at the end and in the middle) evolve the
//! target and the rows carry their values; an index changes nothing; a
//! widened column evolves a MariaDB target; a dropped column stops that table
//! alone, recorded as `failed` with a message naming the table, the column,
//! what changed and the fix, while the other table streams on; with the
//! column dropped on the target too, `siphon sync resync` copies the table
//! again and it streams on.
//!
//! Every wait polls a condition with a deadline; no fixed sleep.

use std::time::Duration;

use siphon_testkit::Postgres;

mod support;
use support::cdc::{Databases, Target};
use support::{config_named, ok, siphon, Running};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// A MariaDB source database, a target database and a working directory
/// with a `siphon.yaml` for one continuous cdc pipeline over `t` and `other`.
struct Setup {
    /// The pipeline's name, one per test: each reads the shared server's
    /// binlog under a server id of its own.
    pipeline: &'static str,
    db: Databases,
}

impl Setup {
    fn new(target: Target) -> Setup {
        let pipeline = match &target {
            Target::Postgres(_) => "ddl_pg",
            Target::MariaDb => "ddl_my",
        };
        let db = Databases::new(target);
        config_named(
            db.path(),
            pipeline,
            &db.src_url(),
            &db.dst_url(),
            "cdc",
            &format!("[{src}.t, {src}.other]", src = db.src),
            "schedule: continuous",
        );
        Setup { pipeline, db }
    }

    fn src_sql(&self, sql: &str) -> String {
        self.db
            .my
            .query_in(&self.db.src, &format!("SET NAMES utf8mb4; {sql}"))
            .unwrap()
    }

    /// The rows of `table` at the source, `cols` joined by `|`, sorted.
    fn source_rows(&self, table: &str, cols: &str) -> Vec<String> {
        sorted(&self.src_sql(&format!("SELECT CONCAT_WS('|', {cols}) FROM {table}")))
    }

    /// The same at the target; empty while it cannot answer.
    fn target_rows(&self, table: &str, cols: &str) -> Vec<String> {
        let sql = match self.db.target {
            Target::Postgres(_) => {
                format!("SELECT string_agg(concat_ws('|', {cols}), E'\\n') FROM {{t}}")
            }
            Target::MariaDb => format!("SELECT CONCAT_WS('|', {cols}) FROM {{t}}"),
        };
        sorted(&self.db.dst_sql(table, &sql).unwrap_or_default())
    }

    /// Waits until `table` at the target equals the source in `cols`.
    fn wait_same(&self, run: &mut Running, table: &str, cols: &str, when: &str) {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let (src, dst) = (self.source_rows(table, cols), self.target_rows(table, cols));
            if !src.is_empty() && src == dst {
                return;
            }
            assert!(run.running(), "siphon ended ({when}): {}", self.log());
            assert!(
                std::time::Instant::now() < deadline,
                "{table} never equalled its source {when}: source {src:?}, target {dst:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The state the store shows for table `table`.
    fn stream_state(&self, table: &str) -> String {
        self.db.stream_state(self.pipeline, table)
    }

    fn log(&self) -> String {
        self.db.log()
    }
}

/// The non-empty lines of `out`, tabs turned to `|`, sorted.
fn sorted(out: &str) -> Vec<String> {
    support::sorted(&out.replace('\t', "|"))
}

fn ddl_while_streaming(target: Target) {
    let s = Setup::new(target);
    let maria = matches!(s.db.target, Target::MariaDb);
    s.src_sql(
        "CREATE TABLE t (id int NOT NULL PRIMARY KEY, v varchar(20) NOT NULL, n int NOT NULL); \
         INSERT INTO t VALUES (1, 'one', 10), (2, 'two', 20); \
         CREATE TABLE other (id int NOT NULL PRIMARY KEY, x int NOT NULL); \
         INSERT INTO other VALUES (1, 1);",
    );
    let mut run = s.db.spawn();
    s.wait_same(&mut run, "t", "id, v, n", "after the copy");
    s.wait_same(&mut run, "other", "id, x", "after the copy");
    support::wait_for("both tables stream", DEADLINE, || {
        s.stream_state("t").contains("streaming") && s.stream_state("other").contains("streaming")
    });

    // Columns added at the end and in the middle, while streaming: the
    // target gains them, and rows carry their values (the rows copied
    // before get the source's defaults).
    s.src_sql(
        "ALTER TABLE t ADD COLUMN w int NOT NULL DEFAULT 7; \
         ALTER TABLE t ADD COLUMN m varchar(10) DEFAULT 'mid' AFTER id; \
         INSERT INTO t VALUES (3, 'm3', 'three', 30, 33); \
         UPDATE t SET w = 11, m = 'one m' WHERE id = 1;",
    );
    let cols = "id, COALESCE(m, 'null'), v, n, w";
    // Row 2, untouched since, holds the defaults on either target.
    let changed = "t";
    s.wait_same(&mut run, changed, cols, "after columns were added");
    s.wait_same(&mut run, "t", "id, v, n", "after columns were added");

    // An index changes nothing: the table streams on.
    s.src_sql("CREATE INDEX t_v ON t (v); INSERT INTO t VALUES (4, 'm4', 'four', 40, 44);");
    s.wait_same(&mut run, changed, cols, "after an index was added");

    if maria {
        // A widened column evolves a MariaDB target: a longer value fits.
        s.src_sql(
            "ALTER TABLE t MODIFY v varchar(200) NOT NULL; \
             INSERT INTO t VALUES (5, 'm5', REPEAT('long ', 30), 50, 55);",
        );
        s.wait_same(&mut run, changed, cols, "after a column was widened");
        let ty =
            s.db.dst_sql(
                "t",
                "SELECT COLUMN_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' AND COLUMN_NAME = 'v'",
            )
            .unwrap();
        assert_eq!(ty.trim(), "varchar(200)");
    }

    // A dropped column stops this table alone, with what to do.
    s.src_sql(
        "ALTER TABLE t DROP COLUMN n; INSERT INTO t VALUES (6, 'm6', 'six', 66); \
         INSERT INTO other VALUES (2, 2);",
    );
    let t = format!("{}.t", s.db.src);
    support::wait_for("the table with the dropped column fails", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.stream_state("t").contains("failed")
    });
    let state = s.stream_state("t");
    for part in [
        format!("table {t}"),
        "column n".to_string(),
        "the source dropped column `n`".to_string(),
        "drop column `n` on the target as well".to_string(),
        format!("siphon sync resync {} --table {t}", s.pipeline),
    ] {
        assert!(
            state.contains(&part),
            "{part:?} is not in the state: {state}"
        );
    }
    assert!(
        s.log().contains("the source dropped column `n`"),
        "{}",
        s.log()
    );
    // The other table streams on.
    s.src_sql("INSERT INTO other VALUES (3, 3); UPDATE other SET x = 10 WHERE id = 1;");
    s.wait_same(&mut run, "other", "id, x", "while t is stopped");
    assert!(s.stream_state("other").contains("streaming"));
    // Nothing of t moved past the stop.
    assert!(s.target_rows("t", "id").iter().all(|id| id != "6"));

    // The fix the message names: the column dropped on the target, then a
    // resync of the table, which the running pipeline copies again.
    s.db.dst_sql("t", "ALTER TABLE {t} DROP COLUMN n").unwrap();
    ok(siphon(
        s.db.path(),
        &["sync", "resync", s.pipeline, "--table", &t],
    ));
    let cols = "id, COALESCE(m, 'null'), v, w";
    s.wait_same(&mut run, "t", cols, "after sync resync");
    support::wait_for("the table streams again", DEADLINE, || {
        s.stream_state("t").contains("streaming")
    });
    s.src_sql(
        "INSERT INTO t VALUES (7, 'm7', 'seven', 77); UPDATE t SET v = 'uno' WHERE id = 1; \
         DELETE FROM t WHERE id = 2; INSERT INTO other VALUES (4, 4);",
    );
    s.wait_same(&mut run, "t", cols, "streaming after the resync");
    s.wait_same(&mut run, "other", "id, x", "streaming after the resync");

    // A narrowed column stops the table too, until the target is changed
    // alike and the table copied again.
    s.src_sql("ALTER TABLE t MODIFY w smallint NOT NULL DEFAULT 7; INSERT INTO t VALUES (8, 'm8', 'eight', 88);");
    support::wait_for("the table with the narrowed column fails", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.stream_state("t").contains("failed")
    });
    let state = s.stream_state("t");
    for part in [
        "column w".to_string(),
        "the source narrowed column `w` from int to smallint".to_string(),
        "change column `w` to smallint on the target as well".to_string(),
        format!("siphon sync resync {} --table {t}", s.pipeline),
    ] {
        assert!(
            state.contains(&part),
            "{part:?} is not in the state: {state}"
        );
    }
    s.src_sql("INSERT INTO other VALUES (5, 5);");
    s.wait_same(&mut run, "other", "id, x", "while t is stopped again");
    let narrow = match s.db.target {
        Target::Postgres(_) => "ALTER TABLE {t} ALTER COLUMN w TYPE smallint",
        Target::MariaDb => "ALTER TABLE {t} MODIFY w smallint NOT NULL DEFAULT 7",
    };
    s.db.dst_sql("t", narrow).unwrap();
    ok(siphon(
        s.db.path(),
        &["sync", "resync", s.pipeline, "--table", &t],
    ));
    s.wait_same(&mut run, "t", cols, "after the second resync");
    s.src_sql("UPDATE t SET w = 99 WHERE id = 8;");
    s.wait_same(&mut run, "t", cols, "streaming after the second resync");
    assert!(run.stop("TERM", DEADLINE), "{}", s.log());
}

#[test]
fn mariadb_to_mariadb_follows_added_columns_and_stops_a_table_on_a_dropped_one() {
    ddl_while_streaming(Target::MariaDb);
}

#[test]
fn mariadb_to_postgres_follows_added_columns_and_stops_a_table_on_a_dropped_one() {
    ddl_while_streaming(Target::Postgres(Postgres::shared().unwrap()));
}
