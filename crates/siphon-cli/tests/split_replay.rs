//! A source transaction larger than `batch_size` is applied over several
//! target transactions. siphon SIGKILLed after some of them committed and
//! before the transaction's end resumes inside it: a table without a key
//! (whose inserts no upsert absorbs) gets none of the transaction's rows
//! twice, from a PostgreSQL (`REPLICA IDENTITY FULL`) source. From a
//! MariaDB source (binlog), a keyed table whose final rows depend on every
//! change of the transaction being applied, in order, none skipped: the
//! replayed transaction (resumed by GTID, or by binlog file and offset when
//! the checkpoint holds no GTID) must be named and counted as it was first
//! read, or the changes the target never got would be dropped.
//!
//! The kill lands between two parts deterministically: a trigger on the
//! target table waits on an advisory lock the test holds for every row past
//! the first parts, so the target has committed exactly those parts and is
//! applying the next one when siphon is killed. No fixed sleep: every wait
//! polls a condition with a deadline.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use siphon_testkit::{MariaDb, Postgres};

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

/// One table streamed into a PostgreSQL target by a continuous pipeline
/// whose config is in `dir`.
struct Case<'a> {
    pg: &'a Postgres,
    dir: tempfile::TempDir,
    dst_db: String,
    /// The target table, as SQL names it.
    target: String,
    /// The rows the copy brings, before the large transaction.
    seeded: i64,
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

    /// The log checkpoint on the target that says the target is inside a
    /// split transaction, as the sink stores it; empty when there is none.
    fn inside_checkpoint(&self) -> String {
        self.pg
            .query_in(
                &self.dst_db,
                "SELECT checkpoint FROM public.siphon_checkpoints \
                 WHERE checkpoint LIKE '%\"inside_transaction\"%'",
            )
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Runs siphon following the log, commits the large transaction with
    /// `insert` (whose first changes insert rows `a` = 1, 2, …), kills
    /// siphon once the first parts are committed and the next one is being
    /// applied, then runs it again to the end. Returns the checkpoint the
    /// killed run left.
    fn killed_inside_the_transaction(&self, insert: impl FnOnce()) -> String {
        let mut run = spawn_run(self.dir.path());
        self.wait("the copy", || {
            assert!(run.running(), "siphon ended");
            self.count() == self.seeded
        });
        gate_inserts(self.pg, &self.dst_db, &self.target);
        let gate = Gate::close(self.pg, &self.dst_db);
        insert();
        self.wait("a part waits on the gate", || {
            assert!(run.running(), "siphon ended");
            locks(self.pg, &self.dst_db, false) >= 1
        });
        // The parts before the gated one are committed, the rest is not.
        let applied = self.count() - self.seeded;
        assert_eq!(
            applied,
            OPEN_THROUGH / BATCH * BATCH,
            "not stopped between the parts of the transaction"
        );
        // The checkpoint of the last committed part says how far in it is.
        let inside = self.inside_checkpoint();
        assert!(
            !inside.is_empty(),
            "the checkpoint does not say the target is inside the transaction"
        );
        run.kill();
        gate.open();
        ok(siphon(self.dir.path(), &["run", "--once"]));
        // The run read to the log's head, past the transaction's end.
        assert_eq!(self.inside_checkpoint(), "", "still inside the transaction");
        inside
    }

    /// The target holds `source` (from [`rows_sql`]), row for row.
    fn holds(&self, source: &[String]) {
        assert_eq!(
            self.rows(),
            source,
            "the target differs from the source: {}",
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
        seeded: 1,
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
    case.holds(&source);
}

/// Rows of the MariaDB table before the large transaction, besides row 0:
/// `a` = -1 … -`OLD`.
const OLD: i64 = 200;

/// Steps of row 0's counter in the large transaction.
const STEPS: i64 = 100;

/// Streams table `kt` of MariaDB database `src_db` (`my`) into a new
/// PostgreSQL database, kills siphon inside one large transaction that
/// changes every row once or many times, and checks that the target ends
/// as the source does. The table (`a` its key) and its rows before the
/// transaction are made by `setup`. Returns what the checkpoint the killed
/// run left holds under `inside_transaction`.
fn mariadb_keyed_table_killed_inside(
    my: &MariaDb,
    src_db: &str,
    setup: impl FnOnce(&str),
) -> serde_json::Value {
    let pg = Postgres::shared().unwrap();
    setup(&format!(
        "CREATE TABLE kt (a int PRIMARY KEY, b varchar(40) NOT NULL); \
         INSERT INTO kt SELECT -seq, 'old' FROM seq_1_to_{OLD}; \
         INSERT INTO kt VALUES (0, 'step 0');"
    ));
    let dst = pg.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config_named(
        dir.path(),
        "split_my",
        &my.url_for(src_db),
        &dst,
        "cdc",
        &format!("[{src_db}.kt]"),
        &format!("batch_size: {BATCH}\nschedule: continuous"),
    );
    let case = Case {
        pg,
        dir,
        dst_db: db_name(&dst),
        target: format!("\"{src_db}\".kt"),
        seeded: OLD + 1,
    };
    let half = ROWS / 2;
    let inside = case.killed_inside_the_transaction(|| {
        // Every change is the last of its row, or comes before one that
        // needs it: one skipped or applied out of order shows in the rows.
        // The inserts of 1 … `half` are their rows' only changes; those of
        // the rest are each followed by an update; the old rows are each
        // updated or deleted once; row 0 is updated `STEPS` times. That is
        // 4,800 changes, a multiple of `BATCH`: the last part fills a batch,
        // and the transaction's end that follows must still move the
        // checkpoint past it.
        assert_eq!((ROWS + half + OLD + STEPS) % BATCH, 0);
        my.query_in(
            src_db,
            &format!(
                "BEGIN; \
                 INSERT INTO kt SELECT seq, CONCAT('new ', seq) FROM seq_1_to_{ROWS}; \
                 UPDATE kt SET b = CONCAT('updated ', a) WHERE a > {half}; \
                 UPDATE kt SET b = CONCAT('changed ', a) WHERE a < 0 AND a % 2 = 0; \
                 DELETE FROM kt WHERE a < 0 AND a % 2 <> 0; \
                 INSERT INTO kt SELECT 0, CONCAT('step ', seq) FROM seq_1_to_{STEPS} \
                   ORDER BY seq ON DUPLICATE KEY UPDATE b = VALUES(b); \
                 COMMIT;"
            ),
        )
        .unwrap();
    });
    let source = lines(&my.query_in(src_db, &rows_sql("kt")).unwrap());
    assert_eq!(source.len() as i64, ROWS + 1 + OLD / 2);
    assert!(source.contains(&format!("0|step {STEPS}|1")));
    case.holds(&source);
    let inside: serde_json::Value = serde_json::from_str(&inside).unwrap();
    let found = find_key(&inside, "inside_transaction").cloned();
    let within = found.unwrap_or_else(|| panic!("no inside_transaction in {inside}"));
    // The parts before the gated one, counted from 0.
    assert_eq!(
        within["applied_through"],
        serde_json::json!(OPEN_THROUGH / BATCH * BATCH - 1),
        "{within}"
    );
    // MariaDB names a transaction by its GTID, whichever way it is read.
    assert!(within["transaction"]["gtid"].is_string(), "{within}");
    within
}

/// The value under the first `key` found in `v`, depth first.
fn find_key<'v>(v: &'v serde_json::Value, key: &str) -> Option<&'v serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

#[test]
fn a_mariadb_keyed_table_killed_inside_a_large_transaction_gets_every_change_resuming_by_gtid() {
    let my = MariaDb::shared().unwrap();
    let src = my.create_database().unwrap();
    let src_db = db_name(&src);
    let within = mariadb_keyed_table_killed_inside(my, &src_db, |sql| {
        my.query_in(&src_db, sql).unwrap();
    });
    assert!(within["resume_from"]["gtid"].is_string(), "{within}");
}

#[test]
fn a_mariadb_keyed_table_killed_inside_a_large_transaction_gets_every_change_resuming_by_offset() {
    // A server of its own whose binlog holds no GTID before the copy (its
    // binlog emptied, the setup not logged), so the copy's checkpoint is a binlog file and
    // offset alone, and the stream resumes from those.
    let my = MariaDb::start().unwrap();
    let src_db = "split_offset";
    let within = mariadb_keyed_table_killed_inside(&my, src_db, |sql| {
        my.query(&format!(
            "RESET MASTER; SET SESSION sql_log_bin = 0; CREATE DATABASE {src_db}; USE {src_db}; {sql}"
        ))
        .unwrap();
        assert_eq!(my.query("SELECT @@gtid_binlog_pos").unwrap().trim(), "");
    });
    assert!(within["resume_from"].get("gtid").is_none(), "{within}");
    assert!(within["resume_from"]["file"].is_string(), "{within}");
}
