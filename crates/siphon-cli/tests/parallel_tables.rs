//! Many tables at once, through the binary with a real PostgreSQL on both
//! sides: `max_parallel` runs a pipeline's tables side by side, so one table
//! held on the target does not hold the others; `order` and `max_parallel: 1`
//! run them one after another (in the given order); a failing table is
//! recorded alone; and a forced reload's flag is cleared only once the reload
//! committed, so a worker killed in the middle reloads the table again.
//!
//! Concurrency is read from the execution history (each table's start and
//! finish), never from how long anything took.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use siphon_testkit::{Postgres, Redis};
use support::{command, fails, ok, siphon, wait_for};

const LONG: Duration = Duration::from_secs(180);

/// A database on the shared server: its URL and its name.
fn database(pg: &Postgres) -> (String, String) {
    let url = pg.create_database().unwrap();
    let name = url.rsplit('/').next().unwrap().to_string();
    (url, name)
}

/// Creates tables `t01`..`tNN` in `db`, table `i` holding `rows + i` rows.
fn make_tables(pg: &Postgres, db: &str, count: usize, rows: usize) {
    let mut sql = String::new();
    for i in 1..=count {
        sql.push_str(&format!(
            "CREATE TABLE t{i:02} (id integer PRIMARY KEY, v text NOT NULL);
             INSERT INTO t{i:02} SELECT g, md5(g::text) FROM generate_series(1, {}) g;",
            rows + i
        ));
    }
    pg.query_in(db, &sql).unwrap();
}

/// A digest of every row of `table`, in key order.
fn digest(pg: &Postgres, db: &str, table: &str) -> String {
    pg.query_in(
        db,
        &format!(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(id || '|' || v, ',' ORDER BY id)), '') \
             FROM public.{table}"
        ),
    )
    .unwrap()
}

fn write_config(dir: &Path, source: &str, target: &str, extra: &str) {
    std::fs::write(
        dir.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {source}\n  dst: {target}\n\
             pipelines:\n  many:\n    source: src\n    target: dst\n    mode: full\n\
             \x20   tables: [\"public.*\"]\n{extra}"
        ),
    )
    .unwrap();
}

/// One table's run in the execution history.
#[derive(Debug, Clone)]
struct Run {
    table: String,
    started: String,
    finished: Option<String>,
    status: String,
    error: Option<String>,
}

/// The tables of the newest execution in the SQLite state store, by start.
/// Times are RFC 3339 with nanoseconds, in UTC: they order as text.
fn history(dir: &Path) -> Vec<Run> {
    read_history(dir).unwrap()
}

/// As [`history`]; an error while the store is still being created.
fn read_history(dir: &Path) -> rusqlite::Result<Vec<Run>> {
    let c = Connection::open_with_flags(dir.join("state.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(Duration::from_secs(10))?;
    let mut st = c.prepare(
        "SELECT table_name, started_at, finished_at, status, error FROM execution_tables
         WHERE execution = (SELECT max(id) FROM executions) ORDER BY started_at, table_name",
    )?;
    let runs = st.query_map([], |r| {
        Ok(Run {
            table: r
                .get::<_, String>(0)?
                .trim_start_matches("public.")
                .to_string(),
            started: r.get(1)?,
            finished: r.get(2)?,
            status: r.get(3)?,
            error: r.get(4)?,
        })
    })?;
    runs.collect()
}

/// The most runs that were in progress at one moment.
fn most_at_once(runs: &[Run]) -> usize {
    runs.iter()
        .map(|a| {
            runs.iter()
                .filter(|b| {
                    b.started <= a.started
                        && b.finished.as_deref().is_none_or(|f| f > a.started.as_str())
                })
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Holds PostgreSQL advisory lock `key` in database `db` from a `psql`
/// session of its own, until opened (or dropped). A target table whose
/// insert trigger takes the lock shared (see [`gate_table`]) waits there.
struct Gate {
    psql: Option<Child>,
}

impl Gate {
    fn close(pg: &Postgres, db: &str, key: i64) -> Gate {
        let bin = pg.bin_dir().join("psql");
        let psql = if bin.exists() { bin } else { "psql".into() };
        let mut child = Command::new(psql)
            .args(["-X", "-q", "-h", pg.host(), "-p", &pg.port().to_string()])
            .args(["-U", pg.user(), "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start psql");
        writeln!(
            child.stdin.as_mut().unwrap(),
            "SELECT pg_advisory_lock({key});"
        )
        .unwrap();
        wait_for("the gate's lock is held", LONG, || {
            locks(pg, db, key, true) == 1
        });
        Gate { psql: Some(child) }
    }

    /// Ends the session, which lets every waiter through.
    fn open(&mut self) {
        if let Some(mut c) = self.psql.take() {
            drop(c.stdin.take());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// Advisory locks on `key` in `db` that are granted (or waited for).
fn locks(pg: &Postgres, db: &str, key: i64, granted: bool) -> usize {
    pg.query_in(
        db,
        &format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {key} \
             AND granted = {granted} AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
    )
    .unwrap()
    .parse()
    .unwrap()
}

/// Makes every row written into `table` of `db` wait for the gate on `key`,
/// siphon's own writes included (`ENABLE ALWAYS`).
fn gate_table(pg: &Postgres, db: &str, table: &str, key: i64) {
    pg.query_in(
        db,
        &format!(
            "CREATE OR REPLACE FUNCTION gate_{key}() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN NEW; END $$;
             CREATE TRIGGER gate BEFORE INSERT ON public.{table}
               FOR EACH ROW EXECUTE FUNCTION gate_{key}();
             ALTER TABLE public.{table} ENABLE ALWAYS TRIGGER gate;"
        ),
    )
    .unwrap();
}

/// Waits up to `within` for `child` to exit; whether it succeeded.
fn exits(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("siphon did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join("run.log")).unwrap();
    command(dir, args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start siphon")
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("run.log")).unwrap_or_default()
}

#[test]
fn twenty_tables_with_max_parallel_4_converge_while_one_is_held() {
    let pg = Postgres::shared().unwrap();
    let (src, src_db) = database(pg);
    let (dst, dst_db) = database(pg);
    make_tables(pg, &src_db, 20, 2_000);
    // t01, the first table, waits on the target until the gate opens.
    pg.query_in(
        &dst_db,
        "CREATE TABLE t01 (id integer PRIMARY KEY, v text NOT NULL)",
    )
    .unwrap();
    gate_table(pg, &dst_db, "t01", 7101);
    let mut gate = Gate::close(pg, &dst_db, 7101);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, &src, &dst, "    max_parallel: 4\n");

    let mut run = spawn(d, &["run", "--once"]);
    // The other nineteen are copied while t01 is held: it holds its own slot
    // only.
    wait_for("the nineteen other tables are copied", LONG, || {
        read_history(d)
            .is_ok_and(|runs| runs.iter().filter(|r| r.status == "succeeded").count() == 19)
    });
    let held = history(d);
    let t01 = held.iter().find(|r| r.table == "t01").expect("t01 started");
    assert_eq!(t01.status, "running", "{held:?}");
    assert!(
        locks(pg, &dst_db, 7101, false) >= 1,
        "t01 waits at the gate"
    );
    gate.open();
    assert!(exits(&mut run, LONG), "{}", log(d));

    for i in 1..=20 {
        let t = format!("t{i:02}");
        assert_eq!(digest(pg, &dst_db, &t), digest(pg, &src_db, &t), "{t}");
    }
    let runs = history(d);
    assert_eq!(runs.len(), 20, "{runs:?}");
    assert!(runs.iter().all(|r| r.status == "succeeded"), "{runs:?}");
    // Others ran and finished within t01's run, and never more than four at once.
    let t01 = runs.iter().find(|r| r.table == "t01").unwrap();
    let t01_end = t01.finished.clone().unwrap();
    let inside = runs
        .iter()
        .filter(|r| r.table != "t01")
        .filter(|r| r.started >= t01.started && r.finished.as_ref().unwrap() <= &t01_end)
        .count();
    assert_eq!(inside, 19, "{runs:?}");
    let most = most_at_once(&runs);
    assert!((2..=4).contains(&most), "{most} at once: {runs:?}");
}

#[test]
fn order_and_max_parallel_1_run_tables_one_after_another() {
    let pg = Postgres::shared().unwrap();
    let (src, src_db) = database(pg);
    let (dst, dst_db) = database(pg);
    make_tables(pg, &src_db, 6, 3_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sequential = |runs: &[Run]| {
        runs.windows(2)
            .all(|w| w[0].finished.as_deref().unwrap() <= w[1].started.as_str())
    };
    let names = |runs: &[Run]| runs.iter().map(|r| r.table.clone()).collect::<Vec<_>>();

    write_config(d, &src, &dst, "    max_parallel: 1\n");
    ok(siphon(d, &["run", "--once"]));
    let runs = history(d);
    assert_eq!(names(&runs), ["t01", "t02", "t03", "t04", "t05", "t06"]);
    assert!(sequential(&runs), "{runs:?}");
    assert_eq!(most_at_once(&runs), 1, "{runs:?}");

    // The listed tables first, in the order given, then the others one at a
    // time, whatever the number of cores.
    write_config(d, &src, &dst, "    order: [public.t05, t03, t01]\n");
    ok(siphon(d, &["run", "--once"]));
    let runs = history(d);
    assert_eq!(names(&runs), ["t05", "t03", "t01", "t02", "t04", "t06"]);
    assert!(sequential(&runs), "{runs:?}");
    for i in 1..=6 {
        let t = format!("t{i:02}");
        assert_eq!(digest(pg, &dst_db, &t), digest(pg, &src_db, &t), "{t}");
    }

    // `order` runs one at a time: a max_parallel above 1 beside it is refused.
    write_config(d, &src, &dst, "    order: [t05]\n    max_parallel: 3\n");
    let out = fails(siphon(d, &["run", "--once"]), 2);
    assert!(
        out.contains("pipelines.many.max_parallel: 3 cannot go with `order`"),
        "{out}"
    );
    write_config(d, &src, &dst, "    max_parallel: 0\n");
    let out = fails(siphon(d, &["run", "--once"]), 2);
    assert!(out.contains("`max_parallel` must be"), "{out}");
}

#[test]
fn a_failing_table_is_recorded_alone_while_the_others_converge() {
    let pg = Postgres::shared().unwrap();
    let (src, src_db) = database(pg);
    let (dst, dst_db) = database(pg);
    make_tables(pg, &src_db, 8, 1_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
             pipelines:\n  many:\n    source: src\n    target: dst\n    mode: incremental\n\
             \x20   cursor: id\n    strategy: sequence\n    tables: [\"public.*\"]\n    max_parallel: 4\n\
             \x20   tables_config:\n      public.t03: {{ cursor: no_such_column }}\n"
        ),
    )
    .unwrap();
    let out = fails(siphon(d, &["run", "--once"]), 1);
    let runs = history(d);
    assert_eq!(runs.len(), 8, "{runs:?}\n{out}");
    for r in &runs {
        if r.table == "t03" {
            assert_eq!(r.status, "failed", "{r:?}");
            let e = r.error.as_deref().unwrap_or_default();
            assert!(e.contains("no_such_column"), "{e}");
        } else {
            assert_eq!(r.status, "succeeded", "{r:?}");
            assert_eq!(digest(pg, &dst_db, &r.table), digest(pg, &src_db, &r.table));
        }
    }
    assert!(most_at_once(&runs) <= 4, "{runs:?}");
}

/// The forced-reload scenario on one store: `set_flag` asks for a reload of
/// `public.items`, `flag_set` reads whether the request is still there. A
/// first run copies the table, a row is added on the target only (drift),
/// the reload is asked for, and the run that reloads is killed while its
/// copy waits on the target: the request must still be there. The next run
/// reloads (the drift is gone) and only then is the request cleared.
fn forced_reload_survives_a_kill(
    dir: &Path,
    state: &str,
    mode: &str,
    set_flag: &dyn Fn(),
    flag_set: &dyn Fn() -> bool,
    key: i64,
) {
    let pg = Postgres::shared().unwrap();
    let (src, src_db) = database(pg);
    let (dst, dst_db) = database(pg);
    pg.query_in(
        &src_db,
        "CREATE TABLE items (id integer PRIMARY KEY, v text NOT NULL);
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 500) g;",
    )
    .unwrap();
    let cursor = match mode {
        "incremental" => "    cursor: id\n    strategy: sequence\n",
        _ => "",
    };
    std::fs::write(
        dir.join("siphon.yaml"),
        format!(
            "state: {state}\nconnections:\n  src: {src}\n  dst: {dst}\n\
             pipelines:\n  items:\n    source: src\n    target: dst\n    mode: {mode}\n\
             {cursor}    tables: [public.items]\n"
        ),
    )
    .unwrap();
    ok(siphon(dir, &["run", "--once"]));
    assert_eq!(digest(pg, &dst_db, "items"), digest(pg, &src_db, "items"));
    pg.query_in(&dst_db, "INSERT INTO items VALUES (-1, 'drift')")
        .unwrap();
    ok(siphon(dir, &["run", "--once"]));
    assert_ne!(digest(pg, &dst_db, "items"), digest(pg, &src_db, "items"));

    set_flag();
    assert!(flag_set());
    gate_table(pg, &dst_db, "items", key);
    let mut gate = Gate::close(pg, &dst_db, key);
    let mut run = spawn(dir, &["run", "--once"]);
    wait_for("the reload waits at the gate", LONG, || {
        locks(pg, &dst_db, key, false) >= 1
    });
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(
        flag_set(),
        "the request was cleared before its reload committed:\n{}",
        log(dir)
    );

    gate.open();
    ok(siphon(dir, &["run", "--once"]));
    assert_eq!(digest(pg, &dst_db, "items"), digest(pg, &src_db, "items"));
    assert!(
        !flag_set(),
        "the reload committed, and its request is still there"
    );
}

#[test]
fn a_forced_reload_in_the_sqlite_store_is_cleared_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let flag_set = || {
        let c = Connection::open_with_flags(d.join("state.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.query_row(
            "SELECT value FROM flags WHERE pipeline = 'items' AND flag = 'force_full_load'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .unwrap()
            == Some(1)
    };
    let set_flag = || {
        ok(siphon(
            &d,
            &["sync", "resync", "items", "--table", "public.items"],
        ));
    };
    forced_reload_survives_a_kill(
        &d,
        "sqlite://state.db",
        "incremental",
        &set_flag,
        &flag_set,
        7201,
    );
}

/// As above for a `cdc` table, whose forced copy is made before the log
/// streams on.
#[test]
fn a_forced_cdc_copy_is_cleared_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let flag_set = || {
        let c = Connection::open_with_flags(d.join("state.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.query_row(
            "SELECT value FROM flags WHERE pipeline = 'items' AND flag = 'force_full_load'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .unwrap()
            == Some(1)
    };
    let set_flag = || {
        ok(siphon(
            &d,
            &["sync", "resync", "items", "--table", "public.items"],
        ));
    };
    forced_reload_survives_a_kill(&d, "sqlite://state.db", "cdc", &set_flag, &flag_set, 7401);
}

#[test]
fn a_forced_reload_set_with_redis_cli_is_deleted_only_once_committed() {
    let redis = Redis::shared().unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                redis.host(),
                "-p",
                &redis.port().to_string(),
                "-n",
                "5",
            ])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let set_flag = || {
        assert_eq!(
            cli(&["SET", "mssql_sync:force_full_load:items", "true"]),
            "OK"
        );
    };
    let flag_set = || cli(&["EXISTS", "mssql_sync:force_full_load:items"]) == "1";
    let state = format!("{}?prefix=mssql_sync", redis.url_db(5));
    forced_reload_survives_a_kill(
        dir.path(),
        &state,
        "incremental",
        &set_flag,
        &flag_set,
        7301,
    );
}
