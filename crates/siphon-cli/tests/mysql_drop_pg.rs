//! A NOT NULL column dropped at a MariaDB source reaches a PostgreSQL target
//! as a column the target keeps, with the values it held, that rows arrive
//! without: through the binary against the testkit's real servers. Dropped
//! while siphon was stopped, in `mode: cdc` (that table stops once with the
//! fix and the next run copies it again, as the message says: the copy
//! arrives, rows written after it stream) and in `mode: incremental` (the
//! old rows keep their values in the kept column, the new rows arrive
//! without one); dropped while a continuous `cdc` pipeline streams (the
//! table stops with the fix, the other streams on, and `siphon sync resync`
//! of the table copies it again with the column still on the target).
//!
//! Every wait polls a condition with a deadline; no fixed sleep.

use std::time::Duration;

use siphon_testkit::Postgres;

mod support;
use support::cdc::{Databases, Target};
use support::{config_named, ok, siphon, text};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// A MariaDB source database with `t` (a NOT NULL column `n` besides its
/// key and `v`) and `other`, a PostgreSQL target database, and a one-pipeline
/// config over both tables.
struct Setup {
    /// The pipeline's name, one per test: each reads the shared server's
    /// binlog under a server id of its own.
    pipeline: &'static str,
    db: Databases,
}

impl Setup {
    fn new(pipeline: &'static str, mode: &str, extra: &str) -> Setup {
        let db = Databases::new(Target::Postgres(Postgres::shared().unwrap()));
        config_named(
            db.path(),
            pipeline,
            &db.src_url(),
            &db.dst_url(),
            mode,
            &format!("[{src}.t, {src}.other]", src = db.src),
            extra,
        );
        let s = Setup { pipeline, db };
        s.src_sql(
            "CREATE TABLE t (id int NOT NULL PRIMARY KEY, v varchar(20) NOT NULL, n int NOT NULL); \
             INSERT INTO t VALUES (1, 'one', 10), (2, 'two', 20); \
             CREATE TABLE other (id int NOT NULL PRIMARY KEY, x int NOT NULL); \
             INSERT INTO other VALUES (1, 1);",
        );
        s
    }

    fn src_sql(&self, sql: &str) -> String {
        self.db
            .my
            .query_in(&self.db.src, &format!("SET NAMES utf8mb4; {sql}"))
            .unwrap()
    }

    /// The rows of `table` at the source, `cols` joined by `|`, sorted.
    fn source_rows(&self, table: &str, cols: &str) -> Vec<String> {
        support::sorted(&self.src_sql(&format!("SELECT CONCAT_WS('|', {cols}) FROM {table}")))
    }

    /// The same at the target (a NULL shown as `null`); empty while it
    /// cannot answer.
    fn target_rows(&self, table: &str, cols: &str) -> Vec<String> {
        let sql = format!("SELECT string_agg(concat_ws('|', {cols}), E'\\n') FROM {{t}}");
        support::sorted(&self.db.dst_sql(table, &sql).unwrap_or_default())
    }

    /// Whether target column `t.n` may hold NULL.
    fn n_nullable(&self) -> bool {
        let sql = "SELECT NOT attnotnull FROM pg_attribute \
                   WHERE attrelid = '{t}'::regclass AND attname = 'n'";
        self.db.dst_sql("t", sql).unwrap().trim() == "t"
    }

    /// Asserts that `t` (in `id, v`) and `other` equal their sources.
    fn assert_same(&self, when: &str) {
        assert_eq!(
            self.target_rows("t", "id, v"),
            self.source_rows("t", "id, v"),
            "t {when}\n{}",
            self.db.log()
        );
        assert_eq!(
            self.target_rows("other", "id, x"),
            self.source_rows("other", "id, x"),
            "other {when}"
        );
    }

    /// The state the store shows for table `table`.
    fn state(&self, table: &str) -> String {
        self.db.stream_state(self.pipeline, table)
    }

    /// `siphon run --once`; returns whether it succeeded and what it printed.
    fn run_once(&self) -> (bool, String) {
        let o = siphon(self.db.path(), &["run", "--once"]);
        (o.status.success(), text(&o))
    }
}

#[test]
fn a_not_null_column_dropped_while_stopped_leaves_cdc_rows_arriving_on_postgres() {
    let s = Setup::new("drop_cdc_stopped", "cdc", "");
    let (done, out) = s.run_once();
    assert!(done, "{out}");
    s.assert_same("after the copy");
    assert_eq!(s.target_rows("t", "id, n"), ["1|10", "2|20"]);

    // While siphon is stopped: n dropped, rows written without it.
    s.src_sql(
        "ALTER TABLE t DROP COLUMN n; INSERT INTO t VALUES (3, 'three'), (4, 'four'); \
         UPDATE t SET v = 'uno' WHERE id = 1; INSERT INTO other VALUES (2, 2);",
    );
    let (done, out) = s.run_once();
    // The target keeps n and the values it held, no longer NOT NULL.
    assert!(s.n_nullable(), "n is still NOT NULL on the target: {out}");
    assert_eq!(s.target_rows("t", "id, n"), ["1|10", "2|20"], "{out}");
    // The binlog holds the ALTER TABLE, which stops that table alone with
    // the fix; the other table streams on.
    assert!(!done, "{out}");
    assert!(out.contains("the source dropped column `n`"), "{out}");
    assert!(s.state("t").contains("failed"), "{}", s.state("t"));
    assert_eq!(
        s.target_rows("other", "id, x"),
        s.source_rows("other", "id, x")
    );
    // The next run copies the table again by itself, as the message says,
    // into the target that kept n: the rows arrive without it.
    let (done, out) = s.run_once();
    assert!(done, "the copy after the drop failed: {out}");
    s.assert_same("after the drop");
    assert!(!s.state("t").contains("failed"), "{}", s.state("t"));

    // Rows written after that stream in too, across runs.
    s.src_sql(
        "INSERT INTO t VALUES (5, 'five'); UPDATE t SET v = 'dos' WHERE id = 2; \
         DELETE FROM t WHERE id = 3; INSERT INTO other VALUES (3, 3);",
    );
    let (done, out) = s.run_once();
    assert!(done, "{out}");
    s.assert_same("streaming after the drop");
    assert!(!s.state("t").contains("failed"), "{}", s.state("t"));
}

#[test]
fn a_not_null_column_dropped_while_stopped_keeps_its_values_on_an_incremental_target() {
    let s = Setup::new(
        "drop_incremental",
        "incremental",
        "cursor: id\nstrategy: sequence",
    );
    let (done, out) = s.run_once();
    assert!(done, "{out}");
    s.assert_same("after the copy");

    s.src_sql(
        "ALTER TABLE t DROP COLUMN n; INSERT INTO t VALUES (3, 'three'), (4, 'four'); \
         INSERT INTO other VALUES (2, 2);",
    );
    let (done, out) = s.run_once();
    assert!(done, "the pass after the drop failed: {out}");
    s.assert_same("after the drop");
    assert!(s.n_nullable());
    // The old rows keep their values in the kept column; the new ones have
    // none.
    assert_eq!(
        s.target_rows("t", "id, coalesce(n::text, 'null')"),
        ["1|10", "2|20", "3|null", "4|null"]
    );
}

#[test]
fn a_not_null_column_dropped_while_streaming_is_copied_again_with_the_column_kept() {
    let s = Setup::new("drop_cdc_live", "cdc", "schedule: continuous");
    let mut run = s.db.spawn();
    let wait_same = |run: &mut support::Running, when: &str| {
        support::wait_for(when, DEADLINE, || {
            assert!(run.running(), "siphon ended ({when}): {}", s.db.log());
            assert!(
                !s.state("other").contains("failed"),
                "other failed {when}: {}",
                s.state("other")
            );
            s.target_rows("t", "id, v") == s.source_rows("t", "id, v")
                && s.target_rows("other", "id, x") == s.source_rows("other", "id, x")
        });
    };
    wait_same(&mut run, "the copy arrived");
    support::wait_for("both tables stream", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.db.log());
        s.state("t").contains("streaming") && s.state("other").contains("streaming")
    });

    // Dropped while streaming: the binlog's ALTER TABLE stops this table
    // alone, naming the fix; the other streams on.
    s.src_sql(
        "ALTER TABLE t DROP COLUMN n; INSERT INTO t VALUES (3, 'three'); \
         INSERT INTO other VALUES (2, 2);",
    );
    support::wait_for("t stops", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.db.log());
        s.state("t").contains("failed")
    });
    let state = s.state("t");
    assert!(state.contains("the source dropped column `n`"), "{state}");
    let t = format!("{}.t", s.db.src);
    assert!(
        state.contains(&format!("siphon sync resync {} --table {t}", s.pipeline)),
        "{state}"
    );
    s.src_sql("INSERT INTO other VALUES (3, 3);");
    support::wait_for("other streams on", DEADLINE, || {
        s.target_rows("other", "id, x") == s.source_rows("other", "id, x")
    });

    // Copied again with n still on the target: the copy arrives without it,
    // and rows written after it stream.
    ok(siphon(
        s.db.path(),
        &["sync", "resync", s.pipeline, "--table", &t],
    ));
    wait_same(&mut run, "the table was copied again");
    assert!(s.n_nullable());
    s.src_sql("INSERT INTO t VALUES (4, 'four'); UPDATE t SET v = 'uno' WHERE id = 1;");
    wait_same(&mut run, "rows written after the copy");
    support::wait_for("t streams again", DEADLINE, || {
        s.state("t").contains("streaming")
    });
    assert!(run.stop("TERM", DEADLINE), "{}", s.db.log());
}
