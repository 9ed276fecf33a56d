//! The acceptance test of tables without a key: pgbench's four tables, with
//! `pgbench_history` (no key, `REPLICA IDENTITY FULL`) among them, replicated
//! by one continuous `cdc` pipeline through the binary while a 30 s TPC-B-like
//! pgbench run with 4 clients writes to them, siphon SIGKILLed halfway and
//! started again. Every table ends identical on both sides: the keyed ones
//! row by row, `pgbench_history` as a multiset (each row as many times).
//!
//! Every wait polls a condition with a deadline; no fixed sleep is used as
//! synchronization.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siphon_testkit::Postgres;

/// How long the workload runs, in seconds.
const RUN_SECONDS: u64 = 30;

/// How long the target may take to catch up once the workload ended.
const CATCH_UP: Duration = Duration::from_secs(60);

/// A running process, SIGKILLed if still running when dropped.
struct Running(Option<Child>);

impl Running {
    fn alive(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Waits for the process to end; whether it succeeded.
    fn wait(&mut self) -> bool {
        self.0
            .take()
            .is_some_and(|mut c| c.wait().unwrap().success())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pgbench(pg: &Postgres, db: &str, args: &[&str], log: &std::path::Path) -> Command {
    let mut c = Command::new(pg.bin_dir().join("pgbench"));
    c.args([
        "-h",
        pg.host(),
        "-p",
        &pg.port().to_string(),
        "-U",
        pg.user(),
    ])
    .args(args)
    .arg(db)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(log).unwrap())
    .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    c
}

fn siphon(dir: &std::path::Path, log: &str) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml"])
        .current_dir(dir)
        .env_remove("SIPHON_STATE")
        // The restarted process takes the killed one's lease over when it
        // expires: a short lease keeps the test short.
        .env("SIPHON_LEASE_TTL", "3s")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap();
    Running(Some(child))
}

/// Polls `cond` every 100 ms until it holds; fails at `deadline` with `what`.
fn wait_for(what: &str, deadline: Instant, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What identifies a table's content: for a keyed table its rows in key
/// order, for `pgbench_history` the count and every row (duplicates
/// included) in the order of its text, each as an md5.
fn fingerprint(pg: &Postgres, db: &str, table: &str, order: &str) -> String {
    pg.query_in(
        db,
        &format!(
            "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY {order})), '') FROM {table} t"
        ),
    )
    .unwrap_or_else(|e| format!("unreadable: {e}"))
}

const TABLES: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_branches", "bid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_history", "t::text"),
];

#[test]
fn pgbench_with_a_keyless_history_survives_a_sigkill_and_ends_identical() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    let dst = dst_url.rsplit('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let init = pgbench(pg, &src, &["-i", "-s", "1", "-q"], &d.join("init.log"))
        .status()
        .unwrap();
    assert!(init.success(), "pgbench -i failed");
    pg.query_in(&src, "ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
        .unwrap();
    let pipeline = src.clone();
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src_url}\n  dst: {dst_url}\n\
             pipelines:\n  {pipeline}:\n    source: src\n    target: dst\n    mode: cdc\n\
             \x20   tables: [\"public.pgbench_*\"]\n    schedule: continuous\n"
        ),
    )
    .unwrap();

    // siphon and the workload start together: the tables are copied while
    // pgbench writes to them, so the copy of pgbench_history must meet its
    // stream exactly.
    let mut first = siphon(d, "siphon-1.log");
    let started = Instant::now();
    let mut bench = Running(Some(
        pgbench(
            pg,
            &src,
            &["-c", "4", "-j", "2", "-T", &RUN_SECONDS.to_string(), "-n"],
            &d.join("bench.log"),
        )
        .spawn()
        .unwrap(),
    ));
    let half = started + Duration::from_secs(RUN_SECONDS / 2);
    let deadline = started + Duration::from_secs(RUN_SECONDS) + CATCH_UP;
    let history_on_target = || {
        pg.query_in(&dst, "SELECT count(*) FROM pgbench_history")
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0)
    };
    // Halfway through the run, with history rows streamed already.
    wait_for(
        "siphon streams pgbench_history, halfway through the run",
        deadline,
        || {
            assert!(first.alive(), "siphon stopped: {}", log(d, "siphon-1.log"));
            Instant::now() >= half && history_on_target() > 0
        },
    );
    assert!(
        bench.alive(),
        "pgbench ended before halfway: {}",
        log(d, "bench.log.err")
    );
    first.kill();
    let at_kill = history_on_target();

    let mut second = siphon(d, "siphon-2.log");
    assert!(bench.wait(), "pgbench failed: {}", log(d, "bench.log.err"));
    let transactions: i64 = pg
        .query_in(&src, "SELECT count(*) FROM pgbench_history")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        transactions > at_kill,
        "no transaction after the kill: {transactions} in all, {at_kill} on the target at the kill"
    );

    let differing = || {
        TABLES
            .iter()
            .filter(|(t, order)| fingerprint(pg, &src, t, order) != fingerprint(pg, &dst, t, order))
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
    };
    let caught_up = Instant::now() + CATCH_UP;
    loop {
        let last = differing();
        if last.is_empty() {
            break;
        }
        assert!(second.alive(), "siphon stopped: {}", log(d, "siphon-2.log"));
        assert!(
            Instant::now() < caught_up,
            "tables {last:?} still differ {} s after the run ended ({}); siphon's log: {}",
            CATCH_UP.as_secs(),
            TABLES
                .iter()
                .map(|(t, o)| format!(
                    "{t}: source {} target {}",
                    fingerprint(pg, &src, t, o),
                    fingerprint(pg, &dst, t, o)
                ))
                .collect::<Vec<_>>()
                .join(", "),
            log(d, "siphon-2.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    second.kill();
    // The slot is the server's, shared with other tests: drop it once its
    // session is gone.
    wait_for(
        "the replication slot is dropped",
        Instant::now() + CATCH_UP,
        || {
            pg.query(&format!(
            "SELECT count(*) FROM (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE database = '{src}' AND NOT active) s"
        ))
        .is_ok()
            && pg
                .query(&format!(
                    "SELECT count(*) FROM pg_replication_slots WHERE database = '{src}'"
                ))
                .unwrap()
                == "0"
        },
    );
}

/// The end of a log file, for failure messages.
fn log(dir: &std::path::Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}
