//! `mode: cdc` from MariaDB's binlog through the binary, against the real
//! MariaDB and PostgreSQL from the testkit: siphon SIGKILLed during the
//! snapshot and again while streaming, under a concurrent write load, and
//! after each restart the target equals the source row for row; a snapshot
//! stopped by SIGTERM resumed by the next run; and one
//! source transaction of a million rows applied with peak RSS under 200 MiB.
//!
//! Every wait polls a condition with a generous deadline (the tests must pass
//! on a loaded two-core machine); no fixed sleep is used as synchronization.

use std::time::Duration;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::cdc::{Databases, Target};
use support::{config, Running, Writer};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(600);

/// Rows of the source table before the snapshot.
const ROWS: i64 = 50_000;

/// Ids of rows the writer inserts start past this.
const NEW: i64 = 1_000_000;

/// A MariaDB source database, a target database, and a working directory
/// with a `siphon.yaml` for one continuous cdc pipeline.
struct Setup(Databases);

impl Setup {
    fn new(target: Target) -> Self {
        Setup(Databases::new(target))
    }

    /// Writes the config: `table` in continuous cdc mode with `batch_size`.
    fn config(&self, table: &str, batch_size: usize) {
        config(
            self.0.path(),
            &self.0.src_url(),
            &self.0.dst_url(),
            "cdc",
            &format!("[{}.{table}]", self.0.src),
            &format!("schedule: continuous\nbatch_size: {batch_size}"),
        );
    }

    fn src_sql(&self, sql: &str) -> String {
        self.0.my.query_in(&self.0.src, sql).unwrap()
    }

    fn dst_sql(&self, table: &str, sql: &str) -> Result<String, siphon_testkit::Error> {
        self.0.dst_sql(table, sql)
    }

    /// A number the target answers, or -1 while it cannot (no table yet).
    fn dst_number(&self, table: &str, sql: &str) -> i64 {
        self.dst_sql(table, sql)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    }

    /// Row count, sum of `v` and an md5 of every row in key order, computed
    /// by the source server.
    fn src_digest(&self) -> String {
        self.src_sql(
            "SET SESSION group_concat_max_len = 1073741824; \
             SELECT CONCAT(COUNT(*), ' ', IFNULL(SUM(v), 0), ' ', \
             IFNULL(MD5(GROUP_CONCAT(CONCAT_WS('|', id, v, note) ORDER BY id SEPARATOR ',')), '')) FROM t",
        )
    }

    /// [`Setup::src_digest`] computed by the target server; empty while the
    /// target cannot answer.
    fn dst_digest(&self) -> String {
        let sql = match self.0.target {
            Target::Postgres(_) => {
                "SELECT concat(count(*), ' ', coalesce(sum(v), 0), ' ', \
                 coalesce(md5(string_agg(concat_ws('|', id, v, note), ',' ORDER BY id)), '')) FROM {t}"
            }
            Target::MariaDb => {
                "SET SESSION group_concat_max_len = 1073741824; \
                 SELECT CONCAT(COUNT(*), ' ', IFNULL(SUM(v), 0), ' ', \
                 IFNULL(MD5(GROUP_CONCAT(CONCAT_WS('|', id, v, note) ORDER BY id SEPARATOR ',')), '')) FROM {t}"
            }
        };
        self.dst_sql("t", sql).unwrap_or_default()
    }

    /// The first rows that differ between source and target, for a failure
    /// message.
    fn differences(&self) -> String {
        let rows = |text: String| -> std::collections::BTreeSet<String> {
            text.lines().map(|l| l.replace('\t', "|")).collect()
        };
        let src = rows(self.src_sql("SELECT id, v, note FROM t"));
        let sql = match self.0.target {
            Target::Postgres(_) => "SELECT concat_ws('|', id, v, note) FROM {t}",
            Target::MariaDb => "SELECT id, v, note FROM {t}",
        };
        let dst = rows(self.dst_sql("t", sql).unwrap_or_default());
        let missing: Vec<_> = src.difference(&dst).take(10).collect();
        let extra: Vec<_> = dst.difference(&src).take(10).collect();
        format!(
            "source {} rows, target {}; missing on the target: {missing:?}; only on the target: {extra:?}",
            src.len(),
            dst.len()
        )
    }

    /// The state the store shows for the table stream of `table`.
    fn stream_state(&self, table: &str) -> String {
        self.0.stream_state("p", table)
    }

    /// `siphon run -f siphon.yaml` (continuous) as a child, its log appended
    /// to `siphon.log`; killed on drop.
    fn spawn(&self) -> Running {
        self.0.spawn()
    }

    fn log(&self) -> String {
        self.0.log()
    }
}

/// Polls `cond` until it holds; fails after [`DEADLINE`] with `what`.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    support::wait_for(what, DEADLINE, cond)
}

/// A writer committing transactions on `t` until told to stop: each inserts
/// a row with id `NEW + i` (never deleted: they count progress), updates an
/// existing row anywhere in the key range (copied or not yet copied) and,
/// every third time, deletes one. It counts the transactions committed.
fn writer(my: &'static MariaDb, db: &str) -> Writer {
    let db = db.to_string();
    let mut i = 0;
    Writer::start(move || {
        let mut sql = String::new();
        for _ in 0..10 {
            i += 1;
            sql.push_str(&format!(
                "START TRANSACTION; \
                 INSERT INTO t VALUES ({id}, {i}, 'new {i}'); \
                 UPDATE t SET v = v + {i}, note = 'upd {i}' WHERE id = {upd};",
                id = NEW + i,
                upd = (i * 7919) % ROWS + 1
            ));
            if i % 3 == 0 {
                sql.push_str(&format!(
                    "DELETE FROM t WHERE id = {};",
                    (i * 13) % ROWS + 1
                ));
            }
            sql.push_str("COMMIT;");
        }
        my.query_in(&db, &sql).expect("the writer's transactions");
        i
    })
}

/// Waits until the target holds a row the writer committed after this call
/// (proof that siphon applies changes it read after now).
fn wait_for_a_later_write(s: &Setup, w: &Writer, siphon: &mut Running) {
    let after = NEW + w.committed() + 20;
    wait_for(&format!("the target holds row {after}"), || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.dst_number(
            "t",
            &format!("SELECT count(*) FROM {{t}} WHERE id >= {after}"),
        ) > 0
    });
}

fn killed_during_the_snapshot_and_while_streaming(target: Target) {
    let s = Setup::new(target);
    s.src_sql(&format!(
        "CREATE TABLE t (id bigint NOT NULL PRIMARY KEY, v bigint NOT NULL, note varchar(100) NOT NULL); \
         INSERT INTO t SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_{ROWS};"
    ));
    s.config("t", 200);
    let mut w = writer(s.0.my, &s.0.src);

    // 1. Killed during the snapshot: some rows are on the target, not all.
    let mut siphon = s.spawn();
    let copied = || {
        s.dst_number(
            "t",
            &format!("SELECT count(*) FROM {{t}} WHERE id <= {ROWS}"),
        )
    };
    wait_for("the snapshot has copied some rows", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        copied() > 0
    });
    siphon.kill();
    let at_kill = copied();
    let source_rows: i64 = s
        .src_sql(&format!("SELECT count(*) FROM t WHERE id <= {ROWS}"))
        .parse()
        .unwrap();
    assert!(
        at_kill > 0 && at_kill < source_rows,
        "killed with {at_kill} of {source_rows} rows copied: not during the snapshot"
    );

    // 2. Restarted, it finishes the snapshot and streams; killed while it
    // applies the writer's transactions.
    let mut siphon = s.spawn();
    wait_for("the table streams", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.stream_state("t").contains("streaming")
    });
    wait_for_a_later_write(&s, &w, &mut siphon);
    siphon.kill();

    // 3. Restarted again, it goes on streaming; the writer stops and the
    // target catches up to equal the source.
    let mut siphon = s.spawn();
    wait_for_a_later_write(&s, &w, &mut siphon);
    let committed = w.finish();
    assert!(committed > 0);
    let src = s.src_digest();
    let deadline = std::time::Instant::now() + DEADLINE;
    while s.dst_digest() != src {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        assert!(
            std::time::Instant::now() < deadline,
            "the target never equalled the source: {}\n{}",
            s.differences(),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        siphon.stop("TERM", DEADLINE),
        "siphon exited with a failure after SIGTERM: {}",
        s.log()
    );
    assert_eq!(s.dst_digest(), s.src_digest());
    assert!(!s.log().contains("table stream failed"), "{}", s.log());
    eprintln!(
        "killed during the snapshot at {at_kill} of {source_rows} rows; {committed} writer transactions"
    );
}

#[test]
fn mariadb_to_postgres_killed_during_the_snapshot_and_while_streaming() {
    killed_during_the_snapshot_and_while_streaming(Target::Postgres(Postgres::shared().unwrap()));
}

#[test]
fn mariadb_to_mariadb_killed_during_the_snapshot_and_while_streaming() {
    killed_during_the_snapshot_and_while_streaming(Target::MariaDb);
}

/// SIGTERM (as Ctrl-C) while the first run copies the table: the copy's
/// checkpoint stays on the target, and the next run resumes the copy from it
/// (its rows are not emptied and copied again), then streams the writes made
/// meanwhile until the target equals the source.
#[test]
fn a_snapshot_stopped_by_sigterm_is_resumed_by_the_next_run() {
    let s = Setup::new(Target::Postgres(Postgres::shared().unwrap()));
    s.src_sql(&format!(
        "CREATE TABLE t (id bigint NOT NULL PRIMARY KEY, v bigint NOT NULL, note varchar(100) NOT NULL); \
         INSERT INTO t SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_{ROWS};"
    ));
    s.config("t", 200);
    let mut w = writer(s.0.my, &s.0.src);
    let copied = || {
        s.dst_number(
            "t",
            &format!("SELECT count(*) FROM {{t}} WHERE id <= {ROWS}"),
        )
    };
    let mut siphon = s.spawn();
    wait_for("the snapshot has copied some rows", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        copied() > 0
    });
    assert!(
        siphon.stop("TERM", DEADLINE),
        "siphon exited with a failure after SIGTERM: {}",
        s.log()
    );
    let at_stop = copied();
    assert!(
        at_stop > 0 && at_stop < ROWS,
        "stopped with {at_stop} of {ROWS} rows copied: not during the snapshot"
    );
    // The copy's checkpoint, which the next run resumes from.
    let phase = s
        .dst_sql(
            "t",
            &format!(
                "SELECT checkpoint::json->>'phase' FROM public.siphon_checkpoints \
                 WHERE pipeline = 'p' AND tbl = '{}.t'",
                s.0.src
            ),
        )
        .unwrap();
    assert_eq!(
        phase.trim(),
        "snapshot",
        "the stopped copy left no checkpoint to resume from: {}",
        s.log()
    );

    let mut siphon = s.spawn();
    wait_for("the table streams", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.stream_state("t").contains("streaming")
    });
    wait_for_a_later_write(&s, &w, &mut siphon);
    w.finish();
    let src = s.src_digest();
    wait_for("the target equals the source", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.dst_digest() == src
    });
    assert!(
        siphon.stop("TERM", DEADLINE),
        "siphon exited with a failure after SIGTERM: {}",
        s.log()
    );
    assert_eq!(s.dst_digest(), s.src_digest(), "{}", s.differences());
}

/// The peak resident set size of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn one_transaction_of_a_million_rows_streams_in_bounded_memory() {
    const MILLION: i64 = 1_000_000;
    const LIMIT_KIB: u64 = 200 * 1024;
    let s = Setup::new(Target::Postgres(Postgres::shared().unwrap()));
    s.src_sql(
        "CREATE TABLE m (id bigint NOT NULL PRIMARY KEY, n int NOT NULL, note varchar(100) NOT NULL); \
         INSERT INTO m VALUES (0, 0, 'before');",
    );
    s.config("m", 5000);
    let mut siphon = s.spawn();
    wait_for("the table streams", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.stream_state("m").contains("streaming")
            && s.dst_number("m", "SELECT count(*) FROM {t}") == 1
    });
    // One transaction (a single statement) while it streams.
    s.src_sql(&format!(
        "INSERT INTO m SELECT seq, seq % 1000, CONCAT('note number ', seq) FROM seq_1_to_{MILLION}"
    ));
    let started = std::time::Instant::now();
    wait_for("the target has every row", || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.dst_number("m", "SELECT count(*) FROM {t}") == MILLION + 1
    });
    let applied_in = started.elapsed();
    let peak = peak_rss_kib(siphon.pid());
    siphon.kill();
    eprintln!("one transaction of {MILLION} rows applied in {applied_in:?}; peak RSS {peak} KiB");
    let digest =
        "SELECT CONCAT(COUNT(*), ' ', SUM(id), ' ', SUM(n), ' ', SUM(LENGTH(note))) FROM m";
    let pg_digest =
        "SELECT concat(count(*), ' ', sum(id), ' ', sum(n), ' ', sum(length(note))) FROM {t}";
    assert_eq!(s.dst_sql("m", pg_digest).unwrap(), s.src_sql(digest));
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {peak} KiB is over {LIMIT_KIB} KiB"
    );
}
