//! Per-table retries, through the binary against real PostgreSQL servers: a
//! table whose target refuses writes for a while (a trigger that fires even
//! for siphon's replica-role connection and raises a serialization failure)
//! is retried with a growing delay and converges once the target takes writes
//! again, while the pipeline's other table goes on; a permanent failure stays
//! `failed` with its message, and so does a transient one whose retries are
//! spent, until `siphon sync resync`. Then the discovery of a table created
//! while a continuous `cdc` pipeline runs, with its state in Redis under the
//! original tool's prefix and `new_tables: paused`.
//!
//! Every wait polls a condition with a generous deadline; no fixed sleep.

use std::time::Duration;

use serde_json::Value;
use siphon_testkit::{Postgres, Redis};

mod support;
use support::{command, ok, siphon, wait_for, Running};

/// How long any awaited condition may take on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// A source and a target database on the shared server, and a working
/// directory with a `siphon.yaml` whose pipeline is named after the source.
struct Setup {
    pg: &'static Postgres,
    src: String,
    dst: String,
    pipeline: String,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Creates tables `tables` on the source, each with rows 1 to 3.
    fn new(tables: &[&str]) -> Setup {
        let pg = Postgres::shared().unwrap();
        let name = |url: String| url.rsplit('/').next().unwrap().to_string();
        let src = name(pg.create_database().unwrap());
        let dst = name(pg.create_database().unwrap());
        let s = Setup {
            pg,
            pipeline: src.clone(),
            src,
            dst,
            dir: tempfile::tempdir().unwrap(),
        };
        for t in tables {
            s.src_sql(&format!(
                "CREATE TABLE {t} (id int PRIMARY KEY, v text NOT NULL);
                 INSERT INTO {t} SELECT g, 'row ' || g FROM generate_series(1, 3) g;"
            ));
        }
        s
    }

    /// Writes `siphon.yaml`: one continuous `incremental` pipeline over
    /// `tables` (by their `id`), with `extra` lines of pipeline options.
    fn config(&self, tables: &[&str], extra: &str) {
        let list: Vec<String> = tables.iter().map(|t| format!("public.{t}")).collect();
        std::fs::write(
            self.dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: {}\n  dst: {}\n\
                 pipelines:\n  {}:\n    source: src\n    target: dst\n    mode: incremental\n\
                 \x20   cursor: id\n    strategy: sequence\n    tables: [{}]\n\
                 \x20   schedule: continuous\n{extra}",
                self.pg.url_for(&self.src),
                self.pg.url_for(&self.dst),
                self.pipeline,
                list.join(", "),
            ),
        )
        .unwrap();
    }

    fn spawn(&self) -> Running {
        let cmd = command(self.dir.path(), &["run", "-f", "siphon.yaml"]);
        Running::spawn(cmd, &self.dir.path().join("siphon.log"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("siphon.log")).unwrap_or_default()
    }

    fn src_sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.src, sql).unwrap()
    }

    fn dst_sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.dst, sql).unwrap()
    }

    /// The target's rows of `table`, or -1 while it has no such table.
    fn dst_rows(&self, table: &str) -> i64 {
        self.pg
            .query_in(&self.dst, &format!("SELECT count(*) FROM {table}"))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }

    /// Makes the target refuse writes to `table` with SQLSTATE `code`, from a
    /// trigger that fires for siphon's replica-role connection too.
    fn refuse(&self, table: &str, code: &str, message: &str) {
        self.dst_sql(&format!(
            "CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{code}'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION refuse_{table}();
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER refuse;"
        ));
    }

    /// The target takes writes to `table` again.
    fn accept(&self, table: &str) {
        self.dst_sql(&format!("DROP TRIGGER refuse ON {table}"));
    }

    /// The stream state of `table` as JSON (`null` before it has one).
    fn state(&self, table: &str) -> Value {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap();
        let text: Option<String> = db
            .query_row(
                "SELECT state FROM stream_states WHERE pipeline = ?1 AND table_name = ?2",
                [&self.pipeline, &format!("public.{table}")],
                |r| r.get(0),
            )
            .ok();
        text.map_or(Value::Null, |t| serde_json::from_str(&t).unwrap())
    }

    /// How many recorded runs of `table` failed, and the error of the last.
    fn failed_runs(&self, table: &str) -> (i64, String) {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap();
        db.query_row(
            "SELECT count(*), coalesce(max(error), '') FROM execution_tables
             WHERE table_name = ?1 AND status = 'failed'",
            [&format!("public.{table}")],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_default()
    }

    /// How many executions the pipeline has recorded.
    fn executions(&self) -> i64 {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap();
        db.query_row("SELECT count(*) FROM executions", [], |r| r.get(0))
            .unwrap_or_default()
    }

    /// Waits until the pipeline has run `passes` more passes.
    fn wait_passes(&self, passes: i64, run: &mut Running) {
        let from = self.executions();
        wait_for(&format!("{passes} more passes"), DEADLINE, || {
            assert!(run.running(), "siphon ended: {}", self.log());
            self.executions() >= from + passes
        });
    }
}

fn failed(state: &Value) -> bool {
    state["state"] == "failed"
}

fn attempt(state: &Value) -> u64 {
    state["attempt"].as_u64().unwrap_or(0)
}

#[test]
fn a_transient_failure_is_retried_and_converges_while_the_other_table_goes_on() {
    let s = Setup::new(&["a", "b"]);
    s.config(&["a", "b"], "    max_retries: 5\n    retry_delay: 1s\n");
    let mut run = s.spawn();
    wait_for("both tables are copied", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("a") == 3 && s.dst_rows("b") == 3
    });

    s.refuse("b", "40001", "b is busy for now");
    s.src_sql("INSERT INTO b SELECT g, 'row ' || g FROM generate_series(4, 6) g");
    wait_for("b fails and is retried", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        let st = s.state("b");
        failed(&st) && attempt(&st) >= 2
    });
    let st = s.state("b");
    assert_eq!(st["kind"], "transient", "{st}");
    assert!(
        st["next_retry"].is_string(),
        "a transient failure is retried: {st}"
    );
    assert!(
        st["error"]
            .as_str()
            .unwrap_or_default()
            .contains("b is busy for now"),
        "{st}"
    );
    // Each attempt ran once: passes in between left the table out.
    let (runs, error) = s.failed_runs("b");
    let tries = attempt(&s.state("b")) as i64;
    assert!(
        runs == tries || runs + 1 == tries,
        "{runs} failed runs recorded for {tries} attempts"
    );
    assert!(error.contains("b is busy for now"), "{error}");

    // The other table goes on meanwhile.
    s.src_sql("INSERT INTO a SELECT g, 'row ' || g FROM generate_series(4, 6) g");
    wait_for("a goes on while b waits", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("a") == 6
    });
    assert_eq!(
        s.dst_rows("b"),
        3,
        "b took rows while its target refused them"
    );

    s.accept("b");
    wait_for("b converges once its target takes writes", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("b") == 6 && !failed(&s.state("b"))
    });
    assert_eq!(
        s.dst_sql("SELECT string_agg(v, ',' ORDER BY id) FROM b"),
        s.src_sql("SELECT string_agg(v, ',' ORDER BY id) FROM b")
    );
    assert!(run.stop("TERM", Duration::from_secs(30)), "{}", s.log());
}

#[test]
fn permanent_and_exhausted_failures_stay_failed_until_resync() {
    let s = Setup::new(&["a", "b", "c"]);
    s.config(
        &["a", "b", "c"],
        "    max_retries: 1\n    retry_delay: 1s\n",
    );
    let mut run = s.spawn();
    wait_for("the tables are copied", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        ["a", "b", "c"].iter().all(|t| s.dst_rows(t) == 3)
    });

    // b: a row its target refuses for good; c: a transient refusal that
    // outlasts its one retry.
    s.refuse("b", "23514", "b refuses this row");
    s.refuse("c", "40001", "c is busy for now");
    s.src_sql("INSERT INTO b VALUES (4, 'row 4')");
    s.src_sql("INSERT INTO c VALUES (4, 'row 4')");
    wait_for("b fails, and c spends its retry", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        let (b, c) = (s.state("b"), s.state("c"));
        failed(&b) && failed(&c) && attempt(&c) == 2 && c["next_retry"].is_null()
    });
    let b = s.state("b");
    assert_eq!(b["kind"], "bad_input", "{b}");
    assert!(
        b["next_retry"].is_null(),
        "a permanent failure is not retried: {b}"
    );
    assert!(
        b["error"]
            .as_str()
            .unwrap_or_default()
            .contains("b refuses this row"),
        "{b}"
    );
    assert_eq!(attempt(&b), 1, "{b}");
    assert_eq!(s.state("c")["kind"], "transient");

    // Passes go on for a; neither b nor c is tried again, even once their
    // targets take writes, until an operator asks.
    let (b_runs, _) = s.failed_runs("b");
    let (c_runs, _) = s.failed_runs("c");
    assert_eq!((b_runs, c_runs), (1, 2));
    s.accept("b");
    s.accept("c");
    s.src_sql("INSERT INTO a VALUES (4, 'row 4')");
    wait_for("a goes on", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("a") == 4
    });
    s.wait_passes(5, &mut run);
    assert_eq!(s.failed_runs("b").0, 1, "b was tried again");
    assert_eq!(
        s.failed_runs("c").0,
        2,
        "c was tried again after its retries"
    );
    assert_eq!((s.dst_rows("b"), s.dst_rows("c")), (3, 3));
    assert!(failed(&s.state("b")) && failed(&s.state("c")));
    let list = ok(siphon(s.dir.path(), &["sync", "list"]));
    assert!(list.contains("failed (bad_input, not retried)"), "{list}");

    for t in ["public.b", "public.c"] {
        ok(siphon(
            s.dir.path(),
            &["sync", "resync", &s.pipeline, "--table", t],
        ));
    }
    wait_for("b and c converge after resync", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("b") == 4
            && s.dst_rows("c") == 4
            && !failed(&s.state("b"))
            && !failed(&s.state("c"))
    });
    assert!(run.stop("TERM", Duration::from_secs(30)), "{}", s.log());
}

/// Old executions go as `history` says: with `keep_runs: 2`, a run leaves the
/// pipeline's newest two.
#[test]
fn history_keeps_the_newest_runs() {
    let s = Setup::new(&["a"]);
    s.config(&["a"], "    history: { keep_runs: 2 }\n");
    for n in 0..4 {
        s.src_sql(&format!("INSERT INTO a VALUES ({}, 'more')", 10 + n));
        ok(siphon(
            s.dir.path(),
            &["run", "-f", "siphon.yaml", "--once"],
        ));
    }
    assert_eq!(s.executions(), 2);
    assert_eq!(s.dst_rows("a"), 7);
    let db = rusqlite::Connection::open(s.dir.path().join("state.db")).unwrap();
    let newest: i64 = db
        .query_row("SELECT min(id) FROM executions", [], |r| r.get(0))
        .unwrap();
    assert!(newest >= 3, "the oldest runs were kept: min id {newest}");
}

/// With its state in Redis under the original tool's prefix and `new_tables:
/// paused`, a table created while a continuous `cdc` pipeline runs is found
/// by the next schema check and shown `paused`, and copied and streamed once
/// an operator enables it with `redis-cli`.
#[test]
fn a_table_created_while_cdc_runs_is_discovered_paused_and_enabled_by_redis_cli() {
    let redis = Redis::start().unwrap();
    let s = Setup::new(&["a"]);
    let state = format!("redis://127.0.0.1:{}/0?prefix=mssql_sync", redis.port());
    std::fs::write(
        s.dir.path().join("siphon.yaml"),
        format!(
            "state: {state}\nconnections:\n  src: {}\n  dst: {}\n\
             pipelines:\n  {}:\n    source: src\n    target: dst\n    mode: cdc\n\
             \x20   tables: [\"public.*\"]\n    schedule: continuous\n    new_tables: paused\n\
             \x20   schema_check_interval: 2s\n",
            s.pg.url_for(&s.src),
            s.pg.url_for(&s.dst),
            s.pipeline,
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let states_key = format!("mssql_sync:states:{}", s.pipeline);
    assert_eq!(cli(&["SET", "mssql_sync:enabled:a", "true"]), "OK");
    let mut run = s.spawn();
    wait_for("a is copied and streams", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("a") == 3 && cli(&["HGET", &states_key, "public.a"]).contains("streaming")
    });

    s.src_sql(
        "CREATE TABLE fresh (id int PRIMARY KEY, v text);
         INSERT INTO fresh VALUES (1, 'one'), (2, 'two');",
    );
    wait_for("the new table is found and paused", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        cli(&["HGET", &states_key, "public.fresh"]).contains("paused")
    });
    assert_eq!(s.dst_rows("fresh"), -1, "a paused table was copied");
    s.src_sql("INSERT INTO a VALUES (4, 'row 4')");
    wait_for("a goes on", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("a") == 4
    });
    assert_eq!(s.dst_rows("fresh"), -1, "a paused table was copied");

    assert_eq!(cli(&["SET", "mssql_sync:enabled:fresh", "true"]), "OK");
    s.src_sql("INSERT INTO fresh VALUES (3, 'three')");
    wait_for("the enabled table is copied and streams", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("fresh") == 3
    });
    s.src_sql("INSERT INTO fresh VALUES (4, 'four')");
    wait_for("its changes arrive", DEADLINE, || {
        assert!(run.running(), "siphon ended: {}", s.log());
        s.dst_rows("fresh") == 4
    });
    assert!(run.stop("TERM", Duration::from_secs(30)), "{}", s.log());
}
