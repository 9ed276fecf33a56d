//! `mode: cdc` from PostgreSQL to PostgreSQL through the binary, against real
//! servers from the testkit: siphon SIGKILLed during the snapshot and during
//! streaming, the source server restarted while siphon streams, and one source
//! transaction of a million rows applied in bounded memory.
//!
//! Every wait polls a condition with a generous deadline (the tests must pass
//! on a loaded two-core machine); no fixed sleep is used as synchronization.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use siphon_testkit::Postgres;

mod support;
use support::{command, siphon, Running};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(600);

/// A source and a target database on one server, a working directory with a
/// `siphon.yaml` for one cdc pipeline named after the source database (slots are
/// server-wide, so pipelines never share one).
struct Setup<'a> {
    pg: &'a Postgres,
    /// The target's server (the source's, unless a test needs another).
    dst_pg: &'a Postgres,
    src: String,
    dst: String,
    pipeline: String,
    dir: tempfile::TempDir,
}

impl<'a> Setup<'a> {
    fn new(pg: &'a Postgres) -> Self {
        Self::across(pg, pg)
    }

    /// The source database on `pg`, the target on `dst_pg`.
    fn across(pg: &'a Postgres, dst_pg: &'a Postgres) -> Self {
        let src_url = pg.create_database().unwrap();
        let dst_url = dst_pg.create_database().unwrap();
        let src = src_url.rsplit('/').next().unwrap().to_string();
        let dst = dst_url.rsplit('/').next().unwrap().to_string();
        Setup {
            pg,
            dst_pg,
            pipeline: src.clone(),
            src,
            dst,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes the config: `table` in cdc mode with `schedule` and `batch_size`;
    /// retained WAL is warned about past 1 kB.
    fn config(&self, table: &str, schedule: &str, batch_size: usize) {
        let (src, dst) = (self.pg.url_for(&self.src), self.dst_pg.url_for(&self.dst));
        std::fs::write(
            self.dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
                 pipelines:\n  {}:\n    source: src\n    target: dst\n    mode: cdc\n    tables: [public.{table}]\n\
                 \x20   schedule: {schedule}\n    batch_size: {batch_size}\n    retained_log_warning: 1kB\n",
                self.pipeline
            ),
        )
        .unwrap();
    }

    /// Writes the config: every table of `public` in one continuous cdc
    /// pipeline.
    fn config_all(&self) {
        let (src, dst) = (self.pg.url_for(&self.src), self.dst_pg.url_for(&self.dst));
        std::fs::write(
            self.dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
                 pipelines:\n  {}:\n    source: src\n    target: dst\n    mode: cdc\n    tables: [\"public.*\"]\n\
                 \x20   schedule: continuous\n",
                self.pipeline
            ),
        )
        .unwrap();
    }

    /// The state the store shows for a table stream of the pipeline.
    fn stream_state(&self, table: &str) -> String {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap();
        db.query_row(
            "SELECT state FROM stream_states WHERE pipeline = ?1 AND table_name = ?2",
            [&self.pipeline, &format!("public.{table}")],
            |r| r.get(0),
        )
        .unwrap_or_default()
    }

    fn src_sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.src, sql).unwrap()
    }

    fn dst_sql(&self, sql: &str) -> String {
        self.dst_pg.query_in(&self.dst, sql).unwrap()
    }

    /// A number the target answers, or -1 while it cannot (no table yet).
    fn dst_number(&self, sql: &str) -> i64 {
        self.dst_pg
            .query_in(&self.dst, sql)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }

    /// `siphon run -f siphon.yaml` (continuous) as a child, killed on drop.
    fn spawn(&self) -> Running {
        let cmd = command(self.dir.path(), &["run", "-f", "siphon.yaml"]);
        Running::spawn(cmd, &self.dir.path().join("siphon.log"))
    }

    /// `siphon run -f siphon.yaml --once`, which must succeed; its stdout.
    fn once(&self) -> String {
        succeeded(&siphon(
            self.dir.path(),
            &["run", "-f", "siphon.yaml", "--once"],
        ))
    }

    /// How many executions in the state store failed.
    fn failed_executions(&self) -> i64 {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap();
        db.query_row(
            "SELECT count(*) FROM executions WHERE status = 'failed'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// The status of the newest execution in the state store, and the log the
    /// source retained then.
    fn last_execution(&self) -> (String, Option<i64>) {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap();
        db.query_row(
            "SELECT status, retained_log_bytes FROM executions ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("siphon.log")).unwrap_or_default()
    }

    /// Row for row, in PostgreSQL's own text form, with the row count.
    fn digest(&self, db: &str, table: &str) -> String {
        let pg = if db == self.dst { self.dst_pg } else { self.pg };
        pg.query_in(
                db,
                &format!("SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) || ' ' || count(*) FROM {table} t"),
            )
            .unwrap_or_default()
    }

    fn same(&self, table: &str) -> bool {
        self.digest(&self.dst, table) == self.digest(&self.src, table)
    }

    fn assert_same(&self, table: &str) {
        assert_eq!(
            self.digest(&self.dst, table),
            self.digest(&self.src, table),
            "target {table} differs from the source"
        );
    }

    /// Asserts the slot exists and never confirmed more than the target's
    /// committed log checkpoint (the pipeline-level stream, table `*`).
    fn assert_slot_behind_checkpoint(&self) {
        let lsn = self.dst_sql(&format!(
            "SELECT checkpoint::json->'position'->>'lsn' FROM siphon_checkpoints WHERE pipeline = '{}' AND tbl = '*'",
            self.pipeline
        ));
        assert!(!lsn.is_empty(), "no log checkpoint on the target");
        let ok = self
            .pg
            .query(&format!(
                "SELECT confirmed_flush_lsn <= '{lsn}'::pg_lsn FROM pg_replication_slots \
                 WHERE slot_name = 'siphon_{}'",
                self.pipeline
            ))
            .unwrap();
        assert_eq!(
            ok, "t",
            "the slot is gone or confirmed past the target's checkpoint {lsn}"
        );
    }
}

fn succeeded(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "siphon failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("FAILED"), "{text}");
    text
}

/// Polls `cond` until it holds; fails after [`DEADLINE`] with `what`.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    support::wait_for(what, DEADLINE, cond)
}

/// SIGTERM, and the clean exit it must bring.
fn terminate(siphon: &mut Running) {
    assert!(
        siphon.stop("TERM", DEADLINE),
        "siphon exited with a failure after SIGTERM"
    );
}

/// The `read` figure of a summary line.
fn rows_read(text: &str) -> i64 {
    let after = text
        .split("read")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary line: {text}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// A workload of `n` transactions, each inserting a row with id above 1,000,000
/// (never deleted: they count progress), updating an existing row and, every
/// third time, deleting one, with a COMMIT after each. Runs in one psql process.
fn workload(pg: &Postgres, db: &str, first: i64, n: i64) -> std::thread::JoinHandle<()> {
    let (psql, port, db) = (pg.bin_dir().join("psql"), pg.port(), db.to_string());
    let sql = format!(
        "DO $$ BEGIN
           FOR i IN {first}..{last} LOOP
             INSERT INTO t VALUES (1000000 + i, i, 'new ' || i);
             UPDATE t SET v = v + i, note = 'upd ' || i WHERE id = (i * 7) % 2000 + 1;
             IF i % 3 = 0 THEN DELETE FROM t WHERE id = (i * 13) % 2000 + 1; END IF;
             COMMIT;
             PERFORM pg_sleep(0.002);
           END LOOP;
         END $$",
        last = first + n - 1
    );
    std::thread::spawn(move || {
        // The server may restart meanwhile and cut the connection: errors are
        // ignored, the committed transactions count.
        let _ = Command::new(psql)
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &port.to_string(), "-d", &db, "-c", &sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    })
}

const SMALL: &str = "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
     INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, 2000) g;";

/// Rows the workload inserted that the target has.
const PROGRESS: &str = "SELECT count(*) FROM t WHERE id > 1000000";

#[test]
fn cdc_killed_during_the_snapshot_and_during_streaming_resumes_without_loss() {
    let pg = Postgres::shared().unwrap();

    // 1. Killed during the snapshot of a large table: the copy resumes from
    // its last committed chunk.
    const ROWS: i64 = 200_000;
    let s = Setup::new(pg);
    s.src_sql(&format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, n int, note text, at timestamptz);
         INSERT INTO big SELECT g, g % 1000, 'note ' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 s'
           FROM generate_series(1, {ROWS}) g;"
    ));
    s.config("big", "continuous", 5000);
    let mut siphon = s.spawn();
    let copied = || s.dst_number("SELECT count(*) FROM big");
    wait_for("the snapshot is a quarter done", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        copied() >= ROWS / 4
    });
    siphon.kill();
    let at_kill = copied();
    assert!(at_kill < ROWS, "the snapshot finished before the kill");
    // The chunk checkpoint committed with the rows names the last row copied.
    let last = s.dst_sql(
        "SELECT (checkpoint::jsonb #>> '{last_key,key,0,value}') || '/' || (SELECT max(id) FROM big) \
         FROM siphon_checkpoints WHERE tbl = 'public.big'",
    );
    assert_eq!(last, format!("{at_kill}/{at_kill}"));
    let text = s.once();
    // Only the rest was read, not the table again.
    assert_eq!(rows_read(&text), ROWS - at_kill, "{text}");
    s.assert_same("big");
    s.assert_slot_behind_checkpoint();

    // 2. Killed while it applies a stream of small transactions.
    const TXNS: i64 = 3000;
    let s = Setup::new(pg);
    s.src_sql(SMALL);
    s.config("t", "continuous", 200);
    let mut siphon = s.spawn();
    wait_for("the snapshot is on the target", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("t")
    });
    let load = workload(pg, &s.src, 1, TXNS);
    let progress = || s.dst_number(PROGRESS);
    wait_for("some streamed changes are applied", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        let p = progress();
        assert!(p < TXNS, "every change was applied before the kill");
        p > 0
    });
    siphon.kill();
    let at_kill = progress();
    assert!(
        at_kill > 0 && at_kill < TXNS,
        "killed at {at_kill} of {TXNS}"
    );
    // Right after the crash the slot has not confirmed what the target lacks.
    s.assert_slot_behind_checkpoint();

    let mut siphon = s.spawn();
    load.join().unwrap();
    assert_eq!(
        s.src_sql("SELECT count(*) FROM t WHERE id > 1000000"),
        TXNS.to_string(),
        "the workload did not run to the end"
    );
    wait_for("the target caught up with the source", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("t")
    });
    terminate(&mut siphon);
    s.assert_same("t");
    s.assert_slot_behind_checkpoint();
    // Stopping a continuous stream is its normal end, not a failure.
    let (status, retained) = s.last_execution();
    assert_eq!(status, "succeeded", "{}", s.log());
    let retained = retained.expect("no retained log recorded");
    // Past `retained_log_warning`, each pass warns.
    if retained > 1000 {
        assert!(
            s.log()
                .contains("more log for this pipeline than `retained_log_warning`"),
            "{retained} bytes retained and no warning: {}",
            s.log()
        );
    }
    assert!(!s.log().contains("table stream failed"), "{}", s.log());
}

/// Stops the restarted server (started by `pg_ctl`, not by the testkit) when
/// the test ends, before the testkit removes its directory.
struct PgCtl<'a> {
    pg: &'a Postgres,
    restarted: bool,
}

impl PgCtl<'_> {
    /// `pg_ctl` as the `postgres` account when root (the server refuses root).
    fn command(&self, args: &[&str]) -> Command {
        let pg_ctl = self.pg.bin_dir().join("pg_ctl");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut cmd = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        cmd.arg("-D")
            .arg(self.pg.data_dir())
            .args(args)
            .current_dir(self.pg.dir())
            .stdin(Stdio::null());
        cmd
    }

    /// Restarts the server with its original options (`postmaster.opts`), on
    /// the same port.
    fn restart(&mut self) {
        self.restarted = true;
        let log = self.pg.dir().join("restart.log");
        let out = self
            .command(&["restart", "-m", "fast", "-w", "-t", "300", "-l"])
            .arg(&log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCtl<'_> {
    fn drop(&mut self) {
        if self.restarted {
            let _ = self
                .command(&["stop", "-m", "immediate", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn cdc_catches_up_after_the_source_server_restarts() {
    // Its own source server, so the restart disturbs no other test; the
    // target is on another server, which stays up.
    let pg = Postgres::start().unwrap();
    let mut ctl = PgCtl {
        pg: &pg,
        restarted: false,
    };
    const TXNS: i64 = 2000;
    let s = Setup::across(&pg, Postgres::shared().unwrap());
    s.src_sql(SMALL);
    s.config("t", "continuous", 200);
    let mut siphon = s.spawn();
    wait_for("the snapshot is on the target", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("t")
    });
    let load = workload(&pg, &s.src, 1, TXNS);
    wait_for("some streamed changes are applied", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.dst_number(PROGRESS) > 0
    });
    // Restarted while siphon streams and the workload runs (the restart cuts
    // the workload's connection: what it committed before counts).
    let started = "SELECT pg_postmaster_start_time()";
    let before = pg.query(started).unwrap();
    ctl.restart();
    load.join().unwrap();
    assert_ne!(
        pg.query(started).unwrap(),
        before,
        "the server did not restart"
    );
    assert_eq!(
        pg.query("SELECT current_setting('wal_level') || ' ' || current_setting('port')")
            .unwrap(),
        format!("logical {}", pg.port())
    );
    // More changes after the restart.
    let load = workload(&pg, &s.src, TXNS + 1, 500);
    load.join().unwrap();
    assert_eq!(
        s.src_sql(&format!(
            "SELECT count(*) FROM t WHERE id > {}",
            1000000 + TXNS
        )),
        "500",
        "the workload after the restart did not run"
    );
    s.src_sql(
        "UPDATE t SET note = 'after restart' WHERE id <= 2000; DELETE FROM t WHERE id % 10 = 5;",
    );
    wait_for("the target caught up with the restarted source", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("t")
    });
    terminate(&mut siphon);
    s.assert_same("t");
    s.assert_slot_behind_checkpoint();
    // The connections were opened again within the pass: no execution failed.
    assert_eq!(s.failed_executions(), 0, "{}", s.log());
}

#[test]
fn one_transaction_of_a_million_rows_streams_in_bounded_memory() {
    const ROWS: i64 = 1_000_000;
    const LIMIT_KIB: u64 = 200 * 1024;
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    s.src_sql(
        "CREATE TABLE m (id bigint PRIMARY KEY, n int NOT NULL, note text, at timestamptz);
         INSERT INTO m VALUES (0, 0, 'before', now());",
    );
    s.config("m", "continuous", 5000);
    s.once();
    s.assert_same("m");
    // One transaction (a single statement) after the snapshot.
    s.src_sql(&format!(
        "INSERT INTO m SELECT g, g % 1000, 'note number ' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 s'
           FROM generate_series(1, {ROWS}) g;"
    ));
    // Peak RSS from /usr/bin/time -v.
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml", "--once"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let text = succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time: {stderr}"))
        .trim()
        .parse()
        .unwrap();
    eprintln!("peak RSS applying one transaction of {ROWS} rows: {peak} KiB");
    assert_eq!(rows_read(&text), ROWS, "{text}");
    s.assert_same("m");
    s.assert_slot_behind_checkpoint();
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {peak} KiB is over {LIMIT_KIB} KiB"
    );
}

/// In one continuous `cdc` pipeline, a table whose target refuses a change
/// (a CHECK constraint) stops alone: the other table keeps receiving changes,
/// the slot keeps advancing, and the failed table's state names the fix.
#[test]
fn a_table_the_target_refuses_stops_alone() {
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    s.src_sql(
        "CREATE TABLE a (id int PRIMARY KEY, v int); CREATE TABLE b (id int PRIMARY KEY, v int);
         INSERT INTO a VALUES (1, 1); INSERT INTO b VALUES (1, 1);",
    );
    s.config_all();
    let mut siphon = s.spawn();
    wait_for("both tables are copied", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("a") && s.same("b") && s.stream_state("b").contains("streaming")
    });
    s.dst_sql("ALTER TABLE b ADD CONSTRAINT small CHECK (v < 100) NOT VALID");
    // One source transaction touching both tables, then more for `a` alone.
    s.src_sql("BEGIN; INSERT INTO b VALUES (2, 500); INSERT INTO a VALUES (2, 2); COMMIT;");
    s.src_sql("INSERT INTO a SELECT g, g FROM generate_series(3, 50) g");
    wait_for("table a goes on streaming", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("a")
    });
    wait_for("table b is marked failed", || {
        s.stream_state("b").contains("failed")
    });
    let state = s.stream_state("b");
    assert!(
        state.contains("small"),
        "the constraint is not named: {state}"
    );
    assert!(
        state.contains("siphon sync resync"),
        "the fix is not named: {state}"
    );
    // Its kind is recorded, and a refused row waits for a fix: no retry time.
    assert!(
        state.contains(r#""kind":"bad_input""#) && state.contains(r#""next_retry":null"#),
        "the kind is not recorded: {state}"
    );
    let list = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["sync", "list"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let list = succeeded(&list);
    assert!(
        list.contains("failed (bad_input, not retried)"),
        "`sync list` does not show the kind: {list}"
    );
    // Later changes of `a` still arrive, and the slot moves past b's change.
    s.src_sql("INSERT INTO a VALUES (100, 100)");
    wait_for("a later change of a arrives", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.dst_number("SELECT count(*) FROM a WHERE id = 100") == 1
    });
    let lsn = s.src_sql("SELECT pg_current_wal_lsn()");
    s.src_sql("INSERT INTO a VALUES (101, 101)");
    wait_for("the slot confirms past the refused change", || {
        s.pg.query(&format!(
            "SELECT confirmed_flush_lsn >= '{lsn}'::pg_lsn FROM pg_replication_slots \
             WHERE slot_name = 'siphon_{}'",
            s.pipeline
        ))
        .unwrap()
            == "t"
    });
    assert_eq!(s.dst_number("SELECT count(*) FROM b WHERE id = 2"), 0);
    // The fix the error names brings the table back while siphon runs.
    s.dst_sql("ALTER TABLE b DROP CONSTRAINT small");
    let out = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["sync", "resync", &s.pipeline, "--table", "public.b"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    succeeded(&out);
    s.src_sql("INSERT INTO b VALUES (3, 3)");
    wait_for("table b is copied again and streams", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("b") && s.stream_state("b").contains("streaming")
    });
    s.src_sql("UPDATE b SET v = 4 WHERE id = 3");
    wait_for("a later change of b arrives", || s.same("b"));
    terminate(&mut siphon);
    s.assert_same("a");
}

/// A table created while a continuous `cdc` pipeline runs, matching its glob,
/// is copied and then streamed without a restart; a table dropped at the
/// source gets every change committed before the drop, then stops being
/// streamed with a log line saying so.
#[test]
fn tables_created_and_dropped_while_streaming() {
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    s.src_sql(
        "CREATE TABLE a (id int PRIMARY KEY, v int); CREATE TABLE gone (id int PRIMARY KEY, v text);
         INSERT INTO a VALUES (1, 1); INSERT INTO gone VALUES (1, 'one');",
    );
    s.config_all();
    let mut siphon = s.spawn();
    wait_for("both tables are copied", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("a") && s.same("gone") && s.stream_state("gone").contains("streaming")
    });
    // Rows committed just before the drop reach the target.
    s.src_sql("INSERT INTO gone VALUES (2, 'two'); UPDATE gone SET v = 'uno' WHERE id = 1;");
    s.src_sql("DROP TABLE gone");
    s.src_sql("INSERT INTO a VALUES (2, 2)");
    wait_for("the last rows of the dropped table arrive", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.dst_number("SELECT count(*) FROM gone WHERE id = 2 OR v = 'uno'") == 2
    });
    // A new table is picked up, snapshot then stream.
    s.src_sql(
        "CREATE TABLE fresh (id int PRIMARY KEY, v text); INSERT INTO fresh SELECT g, 'v' || g FROM generate_series(1, 1000) g;",
    );
    wait_for("the new table is copied", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("fresh")
    });
    s.src_sql("INSERT INTO fresh VALUES (1001, 'later'); DELETE FROM fresh WHERE id = 1; INSERT INTO a VALUES (3, 3);");
    wait_for("changes of the new table stream", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("fresh") && s.same("a")
    });
    terminate(&mut siphon);
    let log = s.log();
    assert!(
        log.contains("public.gone") && log.contains("dropped at the source"),
        "no log line about the dropped table: {log}"
    );
    assert!(!log.contains("table stream failed"), "{log}");
}

/// Through the binary: columns added at the source while a continuous `cdc`
/// pipeline streams (a constant and a volatile default) reach the target with
/// the source's values in rows that existed before, and a renamed column
/// stays one column with its values.
#[test]
fn columns_added_and_renamed_while_streaming_keep_the_sources_values() {
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    s.src_sql(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 300) g;",
    );
    s.config("t", "continuous", 100);
    let mut siphon = s.spawn();
    wait_for("the table is copied", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("t")
    });
    s.src_sql(
        "ALTER TABLE t ADD COLUMN c int DEFAULT 7, ADD COLUMN r float8 DEFAULT random();
         INSERT INTO t (id, v) VALUES (301, 'new');",
    );
    wait_for("the added columns carry the source's values", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("t")
    });
    s.src_sql("ALTER TABLE t RENAME COLUMN v TO label; UPDATE t SET c = 8 WHERE id = 1;");
    wait_for("the rename is a rename on the target", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("t")
    });
    terminate(&mut siphon);
    let columns = s.dst_sql(
        "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = 't'",
    );
    assert_eq!(columns, "id,label,c,r");
    s.assert_same("t");
}

/// A column added with a default while pgbench (4 clients) updates the
/// table: rows changed just before the ALTER (old shape, read while the
/// previous batch is applied) must not overwrite the source's values the
/// target's existing rows were filled with.
#[test]
fn a_column_added_under_pgbench_ends_with_the_sources_values() {
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    let pgbench = |args: &[&str]| {
        let out = Command::new(pg.bin_dir().join("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
                &pg.port().to_string(),
            ])
            .args(args)
            .arg(&s.src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pgbench: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    pgbench(&["-i", "-q", "-s", "2"]);
    s.config(
        "pgbench_accounts, public.pgbench_branches, public.pgbench_tellers",
        "continuous",
        5000,
    );
    let mut siphon = s.spawn();
    wait_for("the table is copied", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("pgbench_accounts")
    });
    let run = std::thread::scope(|scope| {
        let run = scope.spawn(|| pgbench(&["-n", "-c", "4", "-T", "15"]));
        wait_for("pgbench is under way", || {
            s.src_sql("SELECT count(*) FROM pgbench_history")
                .parse::<i64>()
                .unwrap()
                > 1500
        });
        s.src_sql("ALTER TABLE pgbench_accounts ADD COLUMN note text DEFAULT 'x'");
        run.join()
    });
    run.unwrap();
    wait_for("the target caught up with the source", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.same("pgbench_accounts")
    });
    terminate(&mut siphon);
    assert_eq!(
        s.dst_number("SELECT count(*) FROM pgbench_accounts WHERE note IS DISTINCT FROM 'x'"),
        0
    );
}
