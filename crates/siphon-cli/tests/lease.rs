//! Two `siphon run` processes on one state file and one continuous `cdc`
//! pipeline, PostgreSQL to PostgreSQL, with a 3 s lease: one streams, the other
//! waits for the lease; SIGKILLed (or stalled by SIGSTOP until its lease
//! expired), the first is replaced by the second, and the target ends
//! identical to the source while a writer inserted throughout. Also `run
//! --once` while another process holds the lease.
//!
//! Every wait polls a condition with a generous deadline; no fixed sleep is
//! used as synchronization.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siphon_testkit::Postgres;

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(600);

/// The lease time the processes run with.
const TTL: &str = "3s";

/// The waiting process's words.
const WAITS: &str = "waits for the pipeline's lease, held by";

struct Setup {
    pg: &'static Postgres,
    src: String,
    dst: String,
    pipeline: String,
    dir: tempfile::TempDir,
}

impl Setup {
    /// A source table `t` of 2000 rows, an empty target database, and a
    /// config with one continuous cdc pipeline between them.
    fn new() -> Setup {
        let pg = Postgres::shared().unwrap();
        let src_url = pg.create_database().unwrap();
        let dst_url = pg.create_database().unwrap();
        let src = src_url.rsplit('/').next().unwrap().to_string();
        let dst = dst_url.rsplit('/').next().unwrap().to_string();
        let s = Setup {
            pg,
            pipeline: src.clone(),
            src,
            dst,
            dir: tempfile::tempdir().unwrap(),
        };
        s.pg.query_in(
            &s.src,
            "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
             INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, 2000) g;",
        )
        .unwrap();
        std::fs::write(
            s.dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: {}\n  dst: {}\n\
                 pipelines:\n  {}:\n    source: src\n    target: dst\n    mode: cdc\n    tables: [public.t]\n\
                 \x20   schedule: continuous\n    batch_size: 200\n",
                s.pg.url_for(&s.src),
                s.pg.url_for(&s.dst),
                s.pipeline
            ),
        )
        .unwrap();
        s
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_siphon"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("SIPHON_LEASE_TTL", TTL)
            .stdin(Stdio::null());
        c
    }

    /// `siphon run -f siphon.yaml` as a child logging to `log`, killed on drop.
    fn spawn(&self, log: &str) -> Siphon {
        let child = self
            .command(&["run", "-f", "siphon.yaml"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(log)).unwrap())
            .spawn()
            .unwrap();
        Siphon {
            child: Some(child),
            log: self.dir.path().join(log),
        }
    }

    /// The pipeline's lease row in the state store: holder and epoch.
    fn lease(&self) -> Option<(String, i64)> {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).ok()?;
        db.query_row(
            "SELECT holder, epoch FROM leases WHERE pipeline = ?1",
            [&self.pipeline],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
    }

    /// Whether the process `pid` holds the lease (holder `host:pid:random`).
    fn held_by(&self, pid: u32) -> bool {
        self.lease()
            .is_some_and(|(h, _)| h.split(':').nth(1) == Some(&pid.to_string()))
    }

    /// The epoch the target's log checkpoint row carries.
    fn checkpoint_epoch(&self) -> i64 {
        self.pg
            .query_in(
                &self.dst,
                &format!(
                    "SELECT epoch FROM siphon_checkpoints WHERE pipeline = '{}' AND tbl = '*'",
                    self.pipeline
                ),
            )
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }

    /// Row for row in PostgreSQL's text form, with the count and the sum of ids.
    fn digest(&self, db: &str) -> String {
        self.pg
            .query_in(
                db,
                "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) || ' ' || count(*) || ' ' || sum(id) FROM t",
            )
            .unwrap_or_default()
    }

    fn same(&self) -> bool {
        self.digest(&self.dst) == self.digest(&self.src)
    }

    /// Rows the writer inserted that the target has.
    fn progress(&self) -> i64 {
        self.pg
            .query_in(&self.dst, "SELECT count(*) FROM t WHERE id > 1000000")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }
}

struct Siphon {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Siphon {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(&mut self) {
        let mut c = self.child.take().unwrap();
        terminate(c.id());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "siphon exited with {status} after SIGTERM"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "siphon did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Siphon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn terminate(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Polls `cond` every 50 ms until it holds; fails after [`DEADLINE`] with `what`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` transactions, each inserting a row with a new id above 1,000,000,
/// updating an existing row and, every third time, deleting one.
fn writer(pg: &Postgres, db: &str, n: i64) -> std::thread::JoinHandle<()> {
    let (psql, port, db) = (pg.bin_dir().join("psql"), pg.port(), db.to_string());
    let sql = format!(
        "DO $$ BEGIN
           FOR i IN 1..{n} LOOP
             INSERT INTO t VALUES (1000000 + i, i, 'new ' || i);
             UPDATE t SET v = v + i, note = 'upd ' || i WHERE id = (i * 7) % 2000 + 1;
             IF i % 3 = 0 THEN DELETE FROM t WHERE id = (i * 13) % 2000 + 1; END IF;
             COMMIT;
             PERFORM pg_sleep(0.003);
           END LOOP;
         END $$"
    );
    std::thread::spawn(move || {
        let status = Command::new(psql)
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres"])
            .args([
                "-p",
                &port.to_string(),
                "-d",
                &db,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &sql,
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the writer failed");
    })
}

fn mentions_pid(log: &str, pid: u32) -> bool {
    log.contains(&format!(":{pid}:"))
}

#[test]
fn a_second_run_waits_for_the_lease_and_takes_over_when_the_first_is_killed() {
    const TXNS: i64 = 3000;
    let s = Setup::new();
    let mut first = s.spawn("first.log");
    wait_for("the first run copied the table", || {
        assert!(first.running(), "the first run ended: {}", first.log());
        s.same()
    });
    assert!(s.held_by(first.pid()), "lease: {:?}", s.lease());
    let (_, first_epoch) = s.lease().unwrap();

    let mut second = s.spawn("second.log");
    wait_for("the second run says it waits for the lease", || {
        assert!(second.running(), "the second run ended: {}", second.log());
        second.log().contains(WAITS)
    });
    // It names the holder: the first process.
    assert!(mentions_pid(&second.log(), first.pid()), "{}", second.log());

    let load = writer(s.pg, &s.src, TXNS);
    wait_for("the first run streams the writer's rows", || {
        assert!(first.running(), "the first run ended: {}", first.log());
        s.progress() > 0
    });
    // Only the first streams: the second never reached the source's slot, and
    // the lease stayed the first's.
    assert!(s.held_by(first.pid()), "lease: {:?}", s.lease());
    assert_eq!(s.checkpoint_epoch(), first_epoch);
    let log = second.log();
    assert!(
        !log.contains("replication slot") && !log.contains("pass failed") && !log.contains("error"),
        "the second run touched the pipeline while the first held it: {log}"
    );

    first.kill();
    let at_kill = s.progress();
    wait_for("the second run took the lease over", || {
        assert!(second.running(), "the second run ended: {}", second.log());
        s.held_by(second.pid())
    });
    let (_, second_epoch) = s.lease().unwrap();
    assert!(
        second_epoch > first_epoch,
        "{second_epoch} after {first_epoch}"
    );
    assert!(
        second.log().contains("took over the pipeline's lease"),
        "{}",
        second.log()
    );
    load.join().unwrap();
    assert_eq!(
        s.pg.query_in(&s.src, "SELECT count(*) FROM t WHERE id > 1000000")
            .unwrap(),
        TXNS.to_string()
    );
    wait_for("the target caught up with the source", || {
        assert!(second.running(), "the second run ended: {}", second.log());
        s.same()
    });
    assert!(
        s.progress() > at_kill,
        "the second run applied nothing after the kill"
    );
    // Its checkpoints carry its epoch.
    assert_eq!(s.checkpoint_epoch(), second_epoch);
    second.terminate();
    assert_eq!(s.digest(&s.dst), s.digest(&s.src));
    // A graceful stop gives the lease up at once.
    let (holder, _) = s.lease().unwrap();
    assert!(holder.is_empty(), "still held by {holder} after SIGTERM");
}

#[test]
fn run_once_fails_clearly_while_another_run_holds_the_lease() {
    let s = Setup::new();
    let mut holder = s.spawn("holder.log");
    wait_for("the running process holds the lease", || {
        assert!(holder.running(), "the run ended: {}", holder.log());
        s.held_by(holder.pid())
    });
    let out = s
        .command(&["run", "-f", "siphon.yaml", "--once"])
        .env("SIPHON_LEASE_TTL", "1s")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(WAITS), "{err}");
    assert!(
        err.contains("holds the pipeline's lease") && mentions_pid(&err, holder.pid()),
        "{err}"
    );
    assert!(s.held_by(holder.pid()), "lease: {:?}", s.lease());
    holder.terminate();
    // Free again, `run --once` runs.
    let out = s
        .command(&["run", "-f", "siphon.yaml", "--once"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.same());
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn a_stalled_holder_loses_the_lease_once_it_expires_and_stops_when_it_wakes() {
    const TXNS: i64 = 1500;
    let s = Setup::new();
    let mut first = s.spawn("first.log");
    wait_for("the first run copied the table", || {
        assert!(first.running(), "the first run ended: {}", first.log());
        s.same()
    });
    let (_, first_epoch) = s.lease().unwrap();
    let mut second = s.spawn("second.log");
    wait_for("the second run says it waits for the lease", || {
        assert!(second.running(), "the second run ended: {}", second.log());
        second.log().contains(WAITS)
    });
    let load = writer(s.pg, &s.src, TXNS);
    wait_for("the first run streams the writer's rows", || {
        s.progress() > 0
    });

    // The first stalls: alive, but renewing nothing. Its lease expires and
    // the second takes it over (its process is still there, so only the
    // lease time tells).
    signal(first.pid(), "-STOP");
    wait_for("the second run took the expired lease over", || {
        assert!(second.running(), "the second run ended: {}", second.log());
        s.held_by(second.pid())
    });
    let (_, second_epoch) = s.lease().unwrap();
    assert!(second_epoch > first_epoch);

    // Woken, the first finds its lease lost, stops the pipeline and waits.
    signal(first.pid(), "-CONT");
    wait_for("the first run stopped the pipeline and waits", || {
        assert!(first.running(), "the first run ended: {}", first.log());
        let log = first.log();
        log.contains("lost the pipeline's lease") && mentions_pid(&log, second.pid())
    });
    load.join().unwrap();
    wait_for("the target caught up with the source", || {
        assert!(second.running(), "the second run ended: {}", second.log());
        s.same()
    });
    assert!(s.held_by(second.pid()), "lease: {:?}", s.lease());
    assert_eq!(s.checkpoint_epoch(), second_epoch);
    first.terminate();
    second.terminate();
    assert_eq!(s.digest(&s.dst), s.digest(&s.src));
}
