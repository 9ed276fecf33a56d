//! `siphon service start | stop | restart | status` through the binary: the
//! pid file that keeps one service per state, pipelines picked up and stopped
//! while the service runs, the daemon's rotated logs, and a stop that commits
//! the batch in flight so that a restart loses and repeats nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rusqlite::Connection;
use siphon_testkit::Postgres;

mod support;
use support::{command, fails, ok, siphon, text, wait_for, Running};

const DEADLINE: Duration = Duration::from_secs(120);

/// The catalog is read this often by the services of these tests.
const POLL: &str = "100ms";

fn sqlite(path: &Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

/// The rows of `table` in the SQLite file, 0 while it cannot be read.
fn count(path: &Path, table: &str) -> i64 {
    Connection::open(path)
        .and_then(|c| c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)))
        .unwrap_or(0)
}

/// A folder with a SQLite source `src.db` holding table `t` (ids 1 to
/// `rows`), connections `src`, `dst` (`dst.db`), `dst2` (`dst2.db`) and `gone`
/// (a file in a folder that does not exist), the `pipelines` YAML, applied to
/// the state store `.siphon/state.db`.
fn folder(rows: i64, pipelines: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite(
        &d.join("src.db"),
        &format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO t SELECT i, 'row ' || i FROM n;"
        ),
    );
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: sqlite://.siphon/state.db\nconnections:\n  src: sqlite://src.db\n  \
             dst: sqlite://dst.db\n  dst2: sqlite://dst2.db\n  gone: sqlite://nowhere/gone.db\n\
             pipelines:\n{pipelines}"
        ),
    )
    .unwrap();
    ok(siphon(d, &["apply"]));
    dir
}

/// An incremental pipeline from `src` to `target`, polled every second.
fn incremental(name: &str, target: &str) -> String {
    format!(
        "  {name}:\n    source: src\n    target: {target}\n    mode: incremental\n    \
         cursor: id\n    strategy: sequence\n    schedule: every 1s\n"
    )
}

/// Adds rows `from..=to` to the source's `t`.
fn add_rows(d: &Path, from: i64, to: i64) {
    sqlite(
        &d.join("src.db"),
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to})
             INSERT INTO t SELECT i, 'row ' || i FROM n;"
        ),
    );
}

/// `siphon service start` in the foreground, logging to `log`.
fn foreground(d: &Path, log: &str) -> Running {
    Running::spawn(
        command(d, &["service", "start", "--catalog-poll", POLL]),
        &d.join(log),
    )
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The pid a `started in the background (pid N)` line names.
fn started_pid(said: &str) -> u32 {
    let at = said
        .find("started in the background (pid ")
        .unwrap_or_else(|| panic!("no start line in: {said}"));
    said[at..]
        .trim_start_matches("started in the background (pid ")
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Stops the daemon of a folder when the test ends, however it ends.
struct Daemon<'a>(&'a Path);

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = siphon(self.0, &["service", "stop"]);
    }
}

#[test]
fn a_foreground_service_runs_reports_refuses_a_second_start_and_stops() {
    let dir = folder(100, &incremental("copy", "dst"));
    let d = dir.path();
    let mut svc = foreground(d, "service.log");
    let pid = svc.pid();
    let dst = d.join("dst.db");
    wait_for("the pipeline copied the rows", DEADLINE, || {
        count(&dst, "t") == 100
    });

    // The first pass's execution is recorded as it ends, just after its rows.
    wait_for("status shows the last run", DEADLINE, || {
        text(&siphon(d, &["service", "status"])).contains("last run: #")
    });
    let status = ok(siphon(d, &["service", "status"]));
    assert!(
        status.contains(&format!("siphon service: running (pid {pid}, since ")),
        "{status}"
    );
    assert!(
        status.contains("copy: src -> dst, mode incremental"),
        "{status}"
    );
    assert!(
        status.contains(&format!(":{pid}:")),
        "the lease holder: {status}"
    );
    assert!(status.contains("last run: #"), "{status}");
    assert!(status.contains("t: "), "the table's state: {status}");

    let refused = fails(siphon(d, &["service", "start"]), 1);
    assert!(
        refused.contains(&format!("a service is already running (pid {pid}, since ")),
        "{refused}"
    );
    assert!(svc.running(), "the refused start disturbed the service");

    add_rows(d, 101, 150);
    wait_for("the running service copied the new rows", DEADLINE, || {
        count(&dst, "t") == 150
    });

    let said = ok(siphon(d, &["service", "stop"]));
    assert!(said.contains(&format!("stopped (pid {pid}")), "{said}");
    assert!(
        !svc.running(),
        "the service still runs after `service stop`"
    );
    let log = read(d.join("service.log"));
    assert!(log.contains("service stopped"), "{log}");
    assert!(!d.join(".siphon/service.pid").exists());

    let after = fails(siphon(d, &["service", "status"]), 3);
    assert!(after.contains("siphon service: not running"), "{after}");
    assert!(after.contains("copy: src -> dst"), "{after}");
    let again = ok(siphon(d, &["service", "stop"]));
    assert!(again.contains("no service is running"), "{again}");
}

#[test]
fn of_two_starts_racing_exactly_one_runs() {
    let dir = folder(10, &incremental("copy", "dst"));
    let d = dir.path();
    let mut a = foreground(d, "a.log");
    let mut b = foreground(d, "b.log");
    wait_for("one of the two starts gave up", DEADLINE, || {
        !a.running() || !b.running()
    });
    let (runs, gave_up) = if a.running() {
        (&mut a, "b.log")
    } else {
        (&mut b, "a.log")
    };
    assert!(runs.running(), "both starts gave up");
    let pid = runs.pid();
    let said = read(d.join(gave_up));
    assert!(said.contains("a service is already running"), "{said}");
    wait_for("the one that runs holds the pid file", DEADLINE, || {
        text(&siphon(d, &["service", "status"])).contains(&format!("running (pid {pid},"))
    });
    ok(siphon(d, &["service", "stop"]));
    assert!(!runs.running());
}

#[test]
fn a_stale_pid_file_is_replaced() {
    let dir = folder(10, &incremental("copy", "dst"));
    let d = dir.path();
    // A pid file left by a service that died: its pid is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    std::fs::write(
        d.join(".siphon/service.pid"),
        format!(
            "{dead}\nstarted_at=2026-01-01T00:00:00+00:00\nstate=sqlite:///x\ncwd=/\nargs=[]\n"
        ),
    )
    .unwrap();
    let before = fails(siphon(d, &["service", "status"]), 3);
    assert!(
        before.contains(&format!("left from pid {dead}")),
        "{before}"
    );

    let mut svc = foreground(d, "service.log");
    let pid = svc.pid();
    wait_for("the new service holds the pid file", DEADLINE, || {
        let out = siphon(d, &["service", "status"]);
        out.status.success() && text(&out).contains(&format!("running (pid {pid},"))
    });
    wait_for("the pipeline ran", DEADLINE, || {
        count(&d.join("dst.db"), "t") == 10
    });
    ok(siphon(d, &["service", "stop"]));
    assert!(!svc.running());
}

#[test]
fn pipelines_added_while_the_service_runs_are_run_and_removed_ones_stop() {
    let dir = folder(100, &incremental("copy", "dst"));
    let d = dir.path();
    let mut svc = foreground(d, "service.log");
    let pid = svc.pid();
    wait_for("the first pipeline ran", DEADLINE, || {
        count(&d.join("dst.db"), "t") == 100
    });

    // Added by `sync add`: run without a restart.
    ok(siphon(
        d,
        &[
            "sync",
            "add",
            "extra",
            "--source",
            "src",
            "--target",
            "dst2",
            "--mode",
            "incremental",
            "--cursor",
            "id",
            "--tables",
            "t",
        ],
    ));
    let dst2 = d.join("dst2.db");
    wait_for("the added pipeline ran", DEADLINE, || {
        count(&dst2, "t") == 100
    });
    let status = ok(siphon(d, &["service", "status"]));
    assert!(status.contains("extra: src -> dst2"), "{status}");

    // Removed: its run stops, and gives its lease up.
    ok(siphon(d, &["sync", "remove", "extra", "--yes"]));
    wait_for("the removed pipeline's run stopped", DEADLINE, || {
        let log = read(d.join("service.log"));
        log.lines()
            .any(|l| l.contains("removed from the catalog") && l.contains("extra"))
            && log
                .lines()
                .any(|l| l.contains(" stopped ") && l.contains("pipeline=\"extra\""))
    });
    let status = ok(siphon(d, &["service", "status"]));
    assert!(!status.contains("extra:"), "{status}");

    // Added again, by `apply` this time: run again, from where it is now.
    add_rows(d, 101, 120);
    std::fs::write(
        d.join("extra.yaml"),
        format!("pipelines:\n{}", incremental("extra", "dst2")),
    )
    .unwrap();
    ok(siphon(d, &["apply", "-f", "extra.yaml"]));
    wait_for("the pipeline added again ran", DEADLINE, || {
        count(&dst2, "t") == 120
    });
    wait_for("the first pipeline went on meanwhile", DEADLINE, || {
        count(&d.join("dst.db"), "t") == 120
    });
    let log = read(d.join("service.log"));
    assert!(log.contains("starts again"), "{log}");
    ok(siphon(d, &["service", "stop"]));
    assert!(!svc.running());
    let _ = pid;
}

#[test]
fn a_daemon_writes_both_logs_rotates_them_and_restarts() {
    let mut pipelines = incremental("copy", "dst");
    pipelines.push_str("  broken:\n    source: gone\n    target: dst2\n    mode: full\n");
    let dir = folder(50, &pipelines);
    let d = dir.path();
    let out = siphon(
        d,
        &[
            "service",
            "start",
            "--daemon",
            "--log-max-size",
            "200B",
            "--log-keep",
            "2",
            "--catalog-poll",
            POLL,
            "-v",
        ],
    );
    let said = ok(out);
    let _stop = Daemon(d);
    let pid = started_pid(&said);
    assert!(said.contains(".siphon/logs"), "{said}");
    let status = ok(siphon(d, &["service", "status"]));
    assert!(status.contains(&format!("running (pid {pid},")), "{status}");

    let logs = d.join(".siphon/logs");
    wait_for("the pipeline ran", DEADLINE, || {
        count(&d.join("dst.db"), "t") == 50
    });
    wait_for(
        "error.log has the broken pipeline's error",
        DEADLINE,
        || {
            read(logs.join("error.log"))
                .lines()
                .any(|l| l.contains("ERROR") && l.contains("broken"))
        },
    );
    wait_for("combined.log rotated", DEADLINE, || {
        logs.join("combined.log.2").exists()
    });
    assert!(!logs.join("combined.log.3").exists(), "only 2 are kept");
    for name in ["combined.log", "combined.log.1", "combined.log.2"] {
        let t = read(logs.join(name));
        assert!(
            t.len() <= 200 || t.lines().count() == 1,
            "{name} is past its size with more than one line: {t}"
        );
    }
    let combined = read(logs.join("combined.log.1")) + &read(logs.join("combined.log"));
    assert!(
        combined.contains("INFO") || combined.contains("DEBUG"),
        "{combined}"
    );
    assert!(
        !read(logs.join("error.log")).contains(" INFO "),
        "error.log has only warnings and errors"
    );

    let restarted = ok(siphon(d, &["service", "restart"]));
    assert!(
        restarted.contains(&format!("stopped (pid {pid}")),
        "{restarted}"
    );
    let new_pid = started_pid(&restarted);
    assert_ne!(new_pid, pid);
    let status = ok(siphon(d, &["service", "status"]));
    assert!(
        status.contains(&format!("running (pid {new_pid},")),
        "{status}"
    );
    // With the options it was started with.
    let pid_file = read(d.join(".siphon/service.pid"));
    assert!(pid_file.contains("\"200\""), "{pid_file}");
    add_rows(d, 51, 60);
    wait_for("the restarted service runs the pipeline", DEADLINE, || {
        count(&d.join("dst.db"), "t") == 60
    });

    let stopped = ok(siphon(d, &["service", "stop"]));
    assert!(
        stopped.contains(&format!("stopped (pid {new_pid}")),
        "{stopped}"
    );
    fails(siphon(d, &["service", "status"]), 3);
}

/// The target's rows, its highest id, and the last key of its snapshot
/// checkpoint.
fn target_and_checkpoint(target: &Path) -> (i64, i64, serde_json::Value) {
    let c = Connection::open(target).unwrap();
    let (rows, max_id): (i64, i64) = c
        .query_row("SELECT count(*), coalesce(max(id), 0) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let cp: String = c
        .query_row(
            "SELECT checkpoint FROM siphon_checkpoints WHERE tbl = 't'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (rows, max_id, serde_json::from_str(&cp).unwrap())
}

#[test]
fn stopping_during_a_full_load_commits_the_chunk_in_flight_and_a_restart_goes_on() {
    const ROWS: i64 = 300_000;
    let dir = folder(
        ROWS,
        "  load:\n    source: src\n    target: dst\n    mode: full\n    batch_size: 500\n",
    );
    let d = dir.path();
    let dst = d.join("dst.db");
    let mut svc = foreground(d, "first.log");
    wait_for("the load committed a chunk", DEADLINE, || {
        count(&dst, "t") > 0
    });
    let said = ok(siphon(d, &["service", "stop"]));
    assert!(said.contains("stopped (pid"), "{said}");
    assert!(!svc.running());

    let (rows, max_id, cp) = target_and_checkpoint(&dst);
    assert!(
        rows < ROWS,
        "the load ended before the stop: make it longer"
    );
    assert_eq!(cp["phase"], "snapshot", "{cp}");
    assert_eq!(cp["last_key"]["key"][0]["int"], max_id, "{cp}");
    assert_eq!(rows, max_id, "rows beyond the checkpoint, or gaps below it");

    let mut again = foreground(d, "second.log");
    wait_for("the load went on to the end", DEADLINE, || {
        count(&dst, "t") == ROWS
    });
    let log = read(d.join("second.log"));
    assert!(log.contains("starts"), "{log}");
    ok(siphon(d, &["service", "stop"]));
    assert!(!again.running());
    let (rows, max_id, _) = target_and_checkpoint(&dst);
    assert_eq!((rows, max_id), (ROWS, ROWS));
}

/// The PostgreSQL source and target of a `cdc` pipeline, the target's table
/// made beforehand with a trigger that records every write applied to it
/// (an `ALWAYS` trigger: siphon's sessions apply as replicas).
struct Cdc {
    pg: &'static Postgres,
    src: String,
    dst: String,
}

impl Cdc {
    fn count(&self, db: &str, sql: &str) -> i64 {
        self.pg
            .query_in(db, sql)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }

    /// Inserts rows `from..=to` into the source, one transaction each.
    fn writer(&self, from: i64, to: i64) -> std::thread::JoinHandle<()> {
        let sql = format!(
            "DO $$ BEGIN
               FOR i IN {from}..{to} LOOP
                 INSERT INTO t (id, v) VALUES (i, i * 10);
                 COMMIT;
                 PERFORM pg_sleep(0.005);
               END LOOP;
             END $$"
        );
        support::psql_in_background(self.pg, &self.src, sql)
    }
}

#[test]
fn stopping_a_streaming_cdc_pipeline_commits_its_batch_and_a_restart_repeats_nothing() {
    const FIRST: i64 = 100;
    const LAST: i64 = 2_000;
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let cdc = Cdc {
        pg,
        src: src_url.rsplit('/').next().unwrap().to_string(),
        dst: dst_url.rsplit('/').next().unwrap().to_string(),
    };
    pg.query_in(
        &cdc.src,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t SELECT i, i * 10 FROM generate_series(1, {FIRST}) i;"
        ),
    )
    .unwrap();
    pg.query_in(
        &cdc.dst,
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         CREATE TABLE applied (n bigserial PRIMARY KEY, id int NOT NULL);
         CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO applied (id) VALUES (NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER audit AFTER INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION audit();
         ALTER TABLE t ENABLE ALWAYS TRIGGER audit;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pipeline = format!("p_{}", cdc.src);
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "connections:\n  src: {src_url}\n  dst: {dst_url}\npipelines:\n  {pipeline}:\n    \
             source: src\n    target: dst\n    mode: cdc\n    tables: [public.t]\n"
        ),
    )
    .unwrap();
    ok(siphon(d, &["apply"]));

    let mut first = foreground(d, "first.log");
    wait_for("the snapshot is on the target", DEADLINE, || {
        cdc.count(&cdc.dst, "SELECT count(*) FROM t") == FIRST
    });
    let writer = cdc.writer(FIRST + 1, LAST);
    wait_for("changes stream to the target", DEADLINE, || {
        cdc.count(&cdc.dst, "SELECT count(*) FROM t") > FIRST + 100
    });
    let said = ok(siphon(d, &["service", "stop"]));
    assert!(said.contains("stopped (pid"), "{said}");
    assert!(!first.running());
    let log = read(d.join("first.log"));
    assert!(log.contains("service stopped"), "{log}");

    let mut second = foreground(d, "second.log");
    writer.join().unwrap();
    wait_for("the target holds every row", DEADLINE, || {
        cdc.count(&cdc.dst, "SELECT count(*) FROM t") == LAST
    });
    ok(siphon(d, &["service", "stop"]));
    assert!(!second.running());

    let digest = "SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t";
    assert_eq!(
        pg.query_in(&cdc.dst, digest).unwrap(),
        pg.query_in(&cdc.src, digest).unwrap()
    );
    // Every row was written to the target once: nothing from before the
    // stop was applied again after it.
    let repeated = pg
        .query_in(
            &cdc.dst,
            "SELECT count(*) FROM (SELECT id FROM applied GROUP BY id HAVING count(*) > 1) x",
        )
        .unwrap();
    assert_eq!(repeated, "0", "rows applied twice");
    assert_eq!(cdc.count(&cdc.dst, "SELECT count(*) FROM applied"), LAST);
}
