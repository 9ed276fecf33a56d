//! A table added to a running continuous `cdc` pipeline, or reloaded there by
//! `sync resync`, is copied while the pipeline's other tables keep streaming
//! (the watermark method), through the binary against a real PostgreSQL:
//! changes to the other table reach the target while the copy is only partly
//! done, a copy resumes from its last key after a SIGKILL, and both tables end
//! identical to the source, with the updates, deletes and inserts made to the
//! copied table during its copy.
//!
//! Every wait polls a condition with a generous deadline; no fixed sleep is
//! used as synchronization, and nothing is timed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use siphon_testkit::Postgres;

mod support;
use support::{command, ok, Running};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(600);

/// Rows of the table added while the pipeline runs: with chunks of
/// [`BATCH`] rows its copy takes a hundred chunks.
const ROWS: i64 = 50_000;
const BATCH: usize = 500;

/// The pause between two transactions of a writer: a steady workload that a
/// debug build on a busy machine keeps up with (a pace, not a synchronization).
const PACE: Duration = Duration::from_millis(50);

struct Setup {
    pg: &'static Postgres,
    src: String,
    dst: String,
    pipeline: String,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(pg: &'static Postgres) -> Self {
        let src = pg.create_database().unwrap();
        let dst = pg.create_database().unwrap();
        let src = src.rsplit('/').next().unwrap().to_string();
        let dst = dst.rsplit('/').next().unwrap().to_string();
        let s = Setup {
            pg,
            pipeline: src.clone(),
            src,
            dst,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            s.dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: {}\n  dst: {}\n\
                 pipelines:\n  {}:\n    source: src\n    target: dst\n    mode: cdc\n    tables: [\"public.*\"]\n\
                 \x20   schedule: continuous\n    batch_size: {BATCH}\n",
                pg.url_for(&s.src),
                pg.url_for(&s.dst),
                s.pipeline
            ),
        )
        .unwrap();
        s
    }

    fn src_sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.src, sql).unwrap()
    }

    /// A number the target answers, or -1 while it cannot (no table yet).
    fn dst_number(&self, sql: &str) -> i64 {
        self.pg
            .query_in(&self.dst, sql)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }

    /// The phase of a table's checkpoint on the target (`snapshot` while it is
    /// copied, `streaming` once its copy is complete), empty without one.
    fn phase(&self, table: &str) -> String {
        self.pg
            .query_in(
                &self.dst,
                &format!(
                    "SELECT checkpoint::json->>'phase' FROM siphon_checkpoints \
                     WHERE pipeline = '{}' AND tbl = 'public.{table}'",
                    self.pipeline
                ),
            )
            .unwrap_or_default()
    }

    /// The last key of a table's copy committed on the target, empty before
    /// the first chunk.
    fn last_key(&self, table: &str) -> String {
        self.pg
            .query_in(
                &self.dst,
                &format!(
                    "SELECT checkpoint::json->>'last_key' FROM siphon_checkpoints \
                     WHERE pipeline = '{}' AND tbl = 'public.{table}' \
                     AND checkpoint::json->>'phase' = 'snapshot'",
                    self.pipeline
                ),
            )
            .unwrap_or_default()
    }

    /// Row for row, in PostgreSQL's own text form, with the row count.
    fn digest(&self, db: &str, table: &str) -> String {
        self.pg
            .query_in(
                db,
                &format!("SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) || ' ' || count(*) FROM {table} t"),
            )
            .unwrap_or_default()
    }

    fn same(&self, table: &str) -> bool {
        self.digest(&self.dst, table) == self.digest(&self.src, table)
    }

    /// `siphon run -f siphon.yaml` (continuous) as a child, killed on drop;
    /// its log goes to `log_name`.
    fn spawn(&self, log_name: &str) -> Running {
        let mut cmd = command(self.dir.path(), &["run", "-f", "siphon.yaml"]);
        cmd.env("RUST_LOG", "info");
        Running::spawn(cmd, &self.dir.path().join(log_name))
    }

    fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log_name)).unwrap_or_default()
    }

    /// Runs `statement(i)` for i = 1, 2, … in the source, one transaction
    /// each, [`PACE`] apart, until `stop` is set.
    fn writer(
        &self,
        stop: &Arc<AtomicBool>,
        statement: impl Fn(i64) -> String + Send + 'static,
    ) -> std::thread::JoinHandle<i64> {
        let (pg, db, stop) = (self.pg, self.src.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                pg.query_in(&db, &statement(i)).unwrap();
                std::thread::sleep(PACE);
            }
            i
        })
    }
}

/// Polls `cond` until it holds; fails after [`DEADLINE`] with `what`.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    support::wait_for(what, DEADLINE, cond)
}

#[test]
fn a_table_added_to_a_running_pipeline_is_copied_while_the_other_streams() {
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    s.src_sql(
        "CREATE TABLE a (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
         INSERT INTO a SELECT g, g, 'a ' || g FROM generate_series(1, 1000) g;",
    );
    let mut siphon = s.spawn("siphon.log");
    wait_for("table a is copied", || s.same("a"));

    // A steady writer on a, before, during and after b's copy.
    let stop_a = Arc::new(AtomicBool::new(false));
    let writer_a = s.writer(&stop_a, |i| {
        format!(
            "INSERT INTO a VALUES ({}, {i}, 'steady'); UPDATE a SET v = v + 1 WHERE id = {};",
            1_000_000 + i,
            i % 1000 + 1
        )
    });

    // b matches the pipeline's glob: the running pipeline picks it up.
    s.src_sql(&format!(
        "CREATE TABLE b (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
         INSERT INTO b SELECT g, g, 'b ' || g FROM generate_series(1, {ROWS}) g;"
    ));
    // Changes to b all over its key range while it is copied: keys copied
    // already, keys in the chunk being read, keys not copied yet; updates,
    // deletes and inserts in turn.
    let stop_b = Arc::new(AtomicBool::new(false));
    let writer_b = s.writer(&stop_b, |i| {
        let k = (i * 7919) % ROWS + 1;
        match i % 3 {
            0 => format!("UPDATE b SET v = v + 1000, note = 'upd {i}' WHERE id = {k}"),
            1 => format!("DELETE FROM b WHERE id = {k}"),
            _ => format!("INSERT INTO b VALUES ({}, {i}, 'new')", ROWS + i),
        }
    });

    wait_for("b's copy has started on the target", || {
        s.dst_number("SELECT count(*) FROM b") > 0
    });
    assert_eq!(
        s.phase("b"),
        "snapshot",
        "b's copy must not be complete yet"
    );

    // A change to a made while b is only partly copied reaches the target
    // before b's copy is complete: the log goes on for a during b's copy.
    s.src_sql("INSERT INTO a VALUES (-1, -1, 'marker')");
    wait_for("the marker row reaches the target", || {
        s.dst_number("SELECT count(*) FROM a WHERE id = -1") == 1
    });
    let copied = s.dst_number("SELECT count(*) FROM b");
    assert_eq!(
        s.phase("b"),
        "snapshot",
        "a's changes waited for b's copy ({copied} rows of b on the target)"
    );
    assert!(copied < ROWS, "b was copied whole already: {copied} rows");

    // Killed during b's copy, once a chunk is committed: the restart goes on
    // from b's last copied key.
    wait_for("a chunk of b is committed", || !s.last_key("b").is_empty());
    siphon.kill();
    assert_eq!(
        s.phase("b"),
        "snapshot",
        "b's copy must not be complete yet"
    );
    let resumed_at = s.last_key("b");
    let mut siphon = s.spawn("siphon2.log");
    wait_for("the restarted run resumes b's copy", || {
        let log = s.log("siphon2.log");
        log.contains("copying the table between watermarks")
    });
    assert!(
        s.log("siphon2.log").contains("resumed=true"),
        "b's copy started over instead of going on after {resumed_at}"
    );

    wait_for("b's copy is complete", || s.phase("b") == "streaming");
    stop_a.store(true, Ordering::Relaxed);
    stop_b.store(true, Ordering::Relaxed);
    let (wrote_a, wrote_b) = (writer_a.join().unwrap(), writer_b.join().unwrap());
    assert!(wrote_a > 0 && wrote_b > 0);
    wait_for("b is identical to the source", || s.same("b"));
    wait_for("a is identical to the source", || s.same("a"));
    let log = format!("{}{}", s.log("siphon.log"), s.log("siphon2.log"));
    assert!(!log.contains("ERROR"), "{log}");
    siphon.kill();
}

#[test]
fn a_table_reloaded_by_resync_is_copied_while_the_other_streams() {
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    s.src_sql(&format!(
        "CREATE TABLE a (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
         INSERT INTO a SELECT g, g, 'a ' || g FROM generate_series(1, 1000) g;
         CREATE TABLE b (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
         INSERT INTO b SELECT g, g, 'b ' || g FROM generate_series(1, {ROWS}) g;"
    ));
    let mut siphon = s.spawn("siphon.log");
    wait_for("a and b are copied", || s.same("a") && s.same("b"));
    wait_for("b streams", || s.phase("b") == "streaming");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = s.writer(&stop, |i| {
        let k = (i * 7919) % ROWS + 1;
        match i % 3 {
            0 => format!("UPDATE b SET v = v + 1000, note = 'upd {i}' WHERE id = {k}"),
            1 => format!("DELETE FROM b WHERE id = {k}"),
            _ => format!("INSERT INTO b VALUES ({}, {i}, 'new')", ROWS + i),
        }
    });
    ok(support::siphon(
        s.dir.path(),
        &["sync", "resync", &s.pipeline, "--table", "public.b"],
    ));
    wait_for("b's reload has started", || s.phase("b") == "snapshot");

    // A change to a made while b is reloaded reaches the target before the
    // reload is complete.
    s.src_sql("INSERT INTO a VALUES (-1, -1, 'marker')");
    wait_for("the marker row reaches the target", || {
        s.dst_number("SELECT count(*) FROM a WHERE id = -1") == 1
    });
    assert_eq!(
        s.phase("b"),
        "snapshot",
        "a's changes waited for b's reload"
    );

    wait_for("b's reload is complete", || s.phase("b") == "streaming");
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    wait_for("b is identical to the source", || s.same("b"));
    wait_for("a is identical to the source", || s.same("a"));
    let log = s.log("siphon.log");
    assert!(
        log.contains("copying the table between watermarks"),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
    siphon.kill();
}
