//! A source transaction larger than `batch_size` is applied over several
//! target transactions. siphon SIGKILLed after some of them committed and
//! before the transaction's end resumes inside it: a table without a key
//! (whose inserts no upsert absorbs) gets none of the transaction's rows
//! twice, from a PostgreSQL (`REPLICA IDENTITY FULL`) source.
//!
//! The kill lands between two parts deterministically: a trigger on the
//! target table waits on an advisory lock the test holds for every row past
//! the first parts, so the target has committed exactly those parts and is
//! applying the next one when siphon is killed. No fixed sleep: every wait
//! polls a condition with a deadline.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use siphon_testkit::Postgres;

mod support;
use support::{config_named, db_name, ok, siphon, spawn_run, wait_for};

/// How long any awaited condition may take on a loaded machine.
const WITHIN: Duration = Duration::from_secs(120);

/// Rows of the one large source transaction.
const ROWS: i64 = 3000;

/// Changes per target transaction: the source transaction is split in 300.
const BATCH: i64 = 10;

/// The target's rows with `a` up to this go in unhindered (the first three
/// parts); the part holding the next one waits on the gate.
const OPEN_THROUGH: i64 = 35;

/// The advisory lock the gate is.
const GATE: i64 = 7_245_113;

/// A psql session on the target holding the gate's lock; released (the
/// session ends) when dropped.
struct Gate {
    psql: Child,
}

impl Gate {
    /// Takes the lock in database `db` of `pg` and waits until it is held.
    fn close(pg: &Postgres, db: &str) -> Gate {
        let mut psql = Command::new(pg.bin_dir().join("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(pg.port().to_string())
            .args(["-d", db, "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start psql");
        let stdin = psql.stdin.as_mut().expect("psql's stdin");
        writeln!(stdin, "SELECT pg_advisory_lock({GATE});").expect("write to psql");
        stdin.flush().expect("write to psql");
        wait_for("the gate is closed", WITHIN, || locks(pg, db, true) == 1);
        Gate { psql }
    }

    /// Ends the session, which releases the lock.
    fn open(mut self) {
        drop(self.psql.stdin.take());
        self.psql.wait().expect("psql ends");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.psql.kill();
        let _ = self.psql.wait();
    }
}

/// The gate's locks in `db`: held (`granted`) or waited for.
fn locks(pg: &Postgres, db: &str, granted: bool) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 \
         AND objid = {GATE} AND granted = {granted} \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    );
    pg.query_in(db, &sql)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1)
}

/// Makes inserts into `table` of database `db` wait on the gate for rows
/// past [`OPEN_THROUGH`]; `ALWAYS`, since the sink writes as a replica.
fn gate_inserts(pg: &Postgres, db: &str, table: &str) {
    pg.query_in(
        db,
        &format!(
            "CREATE FUNCTION public.split_replay_gate() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF NEW.a > {OPEN_THROUGH} THEN \
                 PERFORM pg_advisory_lock_shared({GATE}); \
                 PERFORM pg_advisory_unlock_shared({GATE}); \
               END IF; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER split_replay_gate BEFORE INSERT ON {table} \
               FOR EACH ROW EXECUTE FUNCTION public.split_replay_gate(); \
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER split_replay_gate;"
        ),
    )
    .unwrap();
}

/// Each distinct row of `table` with how many times it is there, as
/// `a|b|count`, in both engines' SQL.
fn rows_sql(table: &str) -> String {
    format!("SELECT CONCAT_WS('|', a, b, COUNT(*)) FROM {table} GROUP BY a, b ORDER BY a, b")
}

/// What a client printed, one trimmed line per row, sorted.
fn lines(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// One keyless table streamed into a PostgreSQL target by a continuous
/// pipeline whose config is in `dir`.
struct Case<'a> {
    pg: &'a Postgres,
    dir: tempfile::TempDir,
    dst_db: String,
    /// The target table, as SQL names it.
    target: String,
}

impl Case<'_> {
    fn count(&self) -> i64 {
        self.pg
            .query_in(
                &self.dst_db,
                &format!("SELECT count(*) FROM {}", self.target),
            )
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    }

    fn rows(&self) -> Vec<String> {
        lines(
            &self
                .pg
                .query_in(&self.dst_db, &rows_sql(&self.target))
                .unwrap(),
        )
    }

    /// Waits until `cond` holds; fails with `what` and siphon's log after
    /// [`WITHIN`].
    fn wait(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + WITHIN;
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting until {what}: {}",
                support::run_log(self.dir.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs siphon following the log, commits the large transaction with
    /// `insert`, kills siphon once the first parts are committed and the
    /// next one is being applied, then runs it again to the end.
    fn killed_inside_the_transaction(&self, insert: impl FnOnce()) {
        let mut run = spawn_run(self.dir.path());
        self.wait("the copy", || {
            assert!(run.running(), "siphon ended");
            self.count() == 1
        });
        gate_inserts(self.pg, &self.dst_db, &self.target);
        let gate = Gate::close(self.pg, &self.dst_db);
        insert();
        self.wait("a part waits on the gate", || {
            assert!(run.running(), "siphon ended");
            locks(self.pg, &self.dst_db, false) >= 1
        });
        // The parts before the gated one are committed, the rest is not.
        let applied = self.count() - 1;
        assert_eq!(
            applied,
            OPEN_THROUGH / BATCH * BATCH,
            "not stopped between the parts of the transaction"
        );
        run.kill();
        gate.open();
        ok(siphon(self.dir.path(), &["run", "--once"]));
        assert_eq!(
            self.count(),
            ROWS + 1,
            "{}",
            support::run_log(self.dir.path())
        );
    }
}

#[test]
fn a_keyless_postgres_table_killed_inside_a_large_transaction_gets_no_duplicates() {
    let pg = Postgres::shared().unwrap();
    let src = pg.create_database().unwrap();
    let src_db = db_name(&src);
    pg.query_in(
        &src_db,
        "CREATE TABLE kb (a int, b text); ALTER TABLE kb REPLICA IDENTITY FULL; \
         INSERT INTO kb VALUES (0, 'seed');",
    )
    .unwrap();
    let dst = pg.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config_named(
        dir.path(),
        "split_pg",
        &src,
        &dst,
        "cdc",
        "[public.kb]",
        &format!("batch_size: {BATCH}\nschedule: continuous"),
    );
    let case = Case {
        pg,
        dir,
        dst_db: db_name(&dst),
        target: "public.kb".into(),
    };
    case.killed_inside_the_transaction(|| {
        pg.query_in(
            &src_db,
            &format!(
                "INSERT INTO kb SELECT g, 'row ' || (g % 7) FROM generate_series(1, {ROWS}) g;"
            ),
        )
        .unwrap();
    });
    let source = lines(&pg.query_in(&src_db, &rows_sql("kb")).unwrap());
    assert_eq!(source.len() as i64, ROWS + 1);
    assert_eq!(case.rows(), source);
}
