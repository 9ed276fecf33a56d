//! Widened columns of a MariaDB source reach a PostgreSQL target, through the
//! binary against the testkit's real servers: a `varchar`, an `int` and a
//! `decimal` widened while a continuous `cdc` pipeline streams are widened on
//! the target, and longer values arrive; a column widened while siphon was
//! stopped is widened when it starts again, and the rows written meanwhile
//! arrive; a column narrowed while siphon was stopped stops that table at
//! start with a message naming the table, the column and the fix, while the
//! other tables stream on, and the fix it names lets the table stream again.
//!
//! Every wait polls a condition with a deadline; no fixed sleep.

use std::time::Duration;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{command, ok, siphon, Running};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// A MariaDB source database, a PostgreSQL target database and a working
/// directory with a `siphon.yaml` for one continuous cdc pipeline over
/// `tables`.
struct Setup {
    /// The pipeline's name, one per test: each reads the shared server's
    /// binlog under a server id of its own.
    pipeline: &'static str,
    my: &'static MariaDb,
    pg: &'static Postgres,
    src: String,
    dst: String,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(pipeline: &'static str, tables: &[&str]) -> Setup {
        let my = MariaDb::shared().unwrap();
        let pg = Postgres::shared().unwrap();
        let name = |url: String| url.rsplit('/').next().unwrap().to_string();
        let s = Setup {
            pipeline,
            my,
            pg,
            src: name(my.create_database().unwrap()),
            dst: name(pg.create_database().unwrap()),
            dir: tempfile::tempdir().unwrap(),
        };
        let list: Vec<String> = tables.iter().map(|t| format!("{}.{t}", s.src)).collect();
        std::fs::write(
            s.dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: {}\n  dst: {}\n\
                 pipelines:\n  {pipeline}:\n    source: src\n    target: dst\n    mode: cdc\n\
                 \x20   tables: [{}]\n    schedule: continuous\n",
                my.url_for(&s.src),
                pg.url_for(&s.dst),
                list.join(", ")
            ),
        )
        .unwrap();
        s
    }

    fn src_sql(&self, sql: &str) -> String {
        self.my
            .query_in(&self.src, &format!("SET NAMES utf8mb4; {sql}"))
            .unwrap()
    }

    /// Runs `sql` at the target, `{t}` naming table `table` there.
    fn dst_sql(&self, table: &str, sql: &str) -> Result<String, siphon_testkit::Error> {
        self.pg.query_in(
            &self.dst,
            &sql.replace("{t}", &format!("\"{}\".{table}", self.src)),
        )
    }

    /// The rows of `table` at the source, `cols` joined by `|`, sorted.
    fn source_rows(&self, table: &str, cols: &str) -> Vec<String> {
        sorted(&self.src_sql(&format!("SELECT CONCAT_WS('|', {cols}) FROM {table}")))
    }

    /// The same at the target; empty while it cannot answer.
    fn target_rows(&self, table: &str, cols: &str) -> Vec<String> {
        let sql = format!("SELECT string_agg(concat_ws('|', {cols}), E'\\n') FROM {{t}}");
        sorted(&self.dst_sql(table, &sql).unwrap_or_default())
    }

    /// The type of column `column` of `table` at the target.
    fn target_type(&self, table: &str, column: &str) -> String {
        self.dst_sql(
            table,
            &format!(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = '{{t}}'::regclass AND attname = '{column}'"
            ),
        )
        .unwrap()
        .trim()
        .to_string()
    }

    /// Waits until `table` at the target equals the source in `cols`; fails
    /// at once when the table stream failed.
    fn wait_same(&self, run: &mut Running, table: &str, cols: &str, when: &str) {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let (src, dst) = (self.source_rows(table, cols), self.target_rows(table, cols));
            if !src.is_empty() && src == dst {
                return;
            }
            let state = self.state(table);
            assert!(
                !state.contains("failed"),
                "{table} failed {when}: {state}\n{}",
                self.log()
            );
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
    fn state(&self, table: &str) -> String {
        let Ok(db) = rusqlite::Connection::open(self.dir.path().join("state.db")) else {
            return String::new();
        };
        db.query_row(
            "SELECT state FROM stream_states WHERE pipeline = ?1 AND table_name = ?2",
            [self.pipeline, &format!("{}.{table}", self.src)],
            |r| r.get(0),
        )
        .unwrap_or_default()
    }

    /// `siphon run -f siphon.yaml` in the background, its log added to
    /// `siphon.log`.
    fn spawn(&self) -> Running {
        let cmd = command(self.dir.path(), &["run", "-f", "siphon.yaml"]);
        Running::spawn_appending(cmd, &self.dir.path().join("siphon.log"))
    }

    /// Waits until every table of `tables` streams.
    fn wait_streaming(&self, run: &mut Running, tables: &[&str]) {
        support::wait_for("the tables stream", DEADLINE, || {
            assert!(run.running(), "siphon ended: {}", self.log());
            tables.iter().all(|t| self.state(t).contains("streaming"))
        });
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("siphon.log")).unwrap_or_default()
    }
}

/// The non-empty lines of `out`, sorted.
fn sorted(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn columns_widened_while_streaming_are_widened_on_a_postgres_target() {
    let s = Setup::new("widen_live", &["t", "other"]);
    s.src_sql(
        "CREATE TABLE t (id int NOT NULL PRIMARY KEY, v varchar(20) NOT NULL, n int NOT NULL, \
         d decimal(10,2) NOT NULL); \
         INSERT INTO t VALUES (1, 'one', 10, 1.50), (2, 'two', 20, 2.25); \
         CREATE TABLE other (id int NOT NULL PRIMARY KEY, x int NOT NULL); \
         INSERT INTO other VALUES (1, 1);",
    );
    let cols = "id, v, n, d";
    let mut run = s.spawn();
    s.wait_same(&mut run, "t", cols, "after the copy");
    s.wait_streaming(&mut run, &["t", "other"]);
    assert_eq!(s.target_type("t", "v"), "character varying(20)");

    // Widened at the source while streaming, then values only the wider
    // types hold.
    s.src_sql(
        "ALTER TABLE t MODIFY v varchar(200) NOT NULL, MODIFY n bigint NOT NULL, \
         MODIFY d decimal(14,2) NOT NULL; \
         INSERT INTO t VALUES (3, REPEAT('long ', 30), 9000000000, 123456789012.34); \
         UPDATE t SET v = REPEAT('longer ', 20), n = -9000000001 WHERE id = 1; \
         INSERT INTO other VALUES (2, 2);",
    );
    s.wait_same(&mut run, "t", cols, "after the columns were widened");
    s.wait_same(&mut run, "other", "id, x", "after the columns were widened");
    assert_eq!(s.target_type("t", "v"), "character varying(200)");
    assert_eq!(s.target_type("t", "n"), "bigint");
    assert_eq!(s.target_type("t", "d"), "numeric(14,2)");
    assert!(s.state("t").contains("streaming"), "{}", s.state("t"));
    assert!(run.stop("TERM", DEADLINE), "{}", s.log());
}

#[test]
fn widened_and_narrowed_while_stopped_are_widened_or_refused_at_start() {
    let s = Setup::new("widen_stopped", &["t", "n", "other"]);
    s.src_sql(
        "CREATE TABLE t (id int NOT NULL PRIMARY KEY, v varchar(20) NOT NULL); \
         INSERT INTO t VALUES (1, 'one'), (2, 'two'); \
         CREATE TABLE n (id int NOT NULL PRIMARY KEY, v varchar(20) NOT NULL); \
         INSERT INTO n VALUES (1, 'uno'); \
         CREATE TABLE other (id int NOT NULL PRIMARY KEY, x int NOT NULL); \
         INSERT INTO other VALUES (1, 1);",
    );
    let mut run = s.spawn();
    for t in ["t", "n"] {
        s.wait_same(&mut run, t, "id, v", "after the copy");
    }
    s.wait_same(&mut run, "other", "id, x", "after the copy");
    s.wait_streaming(&mut run, &["t", "n", "other"]);
    s.src_sql("INSERT INTO t VALUES (3, 'three'); INSERT INTO n VALUES (2, 'dos');");
    s.wait_same(&mut run, "t", "id, v", "streaming");
    s.wait_same(&mut run, "n", "id, v", "streaming");
    assert!(run.stop("TERM", DEADLINE), "{}", s.log());

    // While siphon is stopped: t widened and given a longer value, n
    // narrowed (its values still fit), other written.
    s.src_sql(
        "ALTER TABLE t MODIFY v varchar(200) NOT NULL; \
         INSERT INTO t VALUES (4, REPEAT('long ', 30)); \
         ALTER TABLE n MODIFY v varchar(10) NOT NULL; \
         INSERT INTO other VALUES (2, 2);",
    );
    let mut run = s.spawn();
    s.wait_same(&mut run, "t", "id, v", "after t was widened while stopped");
    assert_eq!(s.target_type("t", "v"), "character varying(200)");
    s.src_sql("INSERT INTO t VALUES (5, REPEAT('longer ', 25));");
    s.wait_same(&mut run, "t", "id, v", "streaming after the restart");

    // n stops at start, naming the table, the column and the fix.
    support::wait_for("the narrowed table fails", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.state("n").contains("failed")
    });
    let state = s.state("n");
    let n = format!("{}.n", s.src);
    for part in [
        format!("table {n}"),
        "column v".to_string(),
        "narrowed column v from varchar(20) to varchar(10)".to_string(),
        "ALTER TABLE".to_string(),
        "TYPE varchar(10) USING".to_string(),
        "siphon sync resync".to_string(),
    ] {
        assert!(
            state.contains(&part),
            "{part:?} is not in the state: {state}"
        );
    }
    assert_eq!(s.target_type("n", "v"), "character varying(20)");

    // The other tables stream on.
    s.src_sql("INSERT INTO other VALUES (3, 3); UPDATE other SET x = 10 WHERE id = 1;");
    s.wait_same(&mut run, "other", "id, x", "while n is stopped");
    assert!(
        s.state("other").contains("streaming"),
        "{}",
        s.state("other")
    );
    assert!(s.state("t").contains("streaming"), "{}", s.state("t"));

    // The fix the message names: the target column narrowed alike, then the
    // table copied again, and it streams on.
    s.dst_sql("n", "ALTER TABLE {t} ALTER COLUMN v TYPE varchar(10)")
        .unwrap();
    ok(siphon(
        s.dir.path(),
        &["sync", "resync", s.pipeline, "--table", &n],
    ));
    support::wait_for("n streams again", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.state("n").contains("streaming")
    });
    s.wait_same(&mut run, "n", "id, v", "after the fix and a resync");
    s.src_sql("INSERT INTO n VALUES (3, 'tres');");
    s.wait_same(&mut run, "n", "id, v", "streaming after the fix");
    assert!(run.stop("TERM", DEADLINE), "{}", s.log());
}
