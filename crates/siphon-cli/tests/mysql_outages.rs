//! A continuous `siphon run` of a MariaDB `cdc` pipeline under a write load
//! rides out outages of real servers, and the target ends row for row equal
//! to the source with the table streaming, never left failed: the source's
//! binlog dump connection killed with `KILL`, the source server shut down
//! cleanly (for longer than the reconnects within a pass, so that the table
//! shows `failed` and the pipeline retries it) and SIGKILLed, each time
//! started again on the same port and data directory (MariaDB to PostgreSQL
//! and to MariaDB); the MariaDB target shut down and SIGKILLed the same way
//! (MariaDB to MariaDB); and two `siphon run` of one pipeline on one state
//! store started together, where one streams and the other waits for the
//! lease without opening a binlog connection (which would end the holder's,
//! both reading under the pipeline's `server_id`), and takes over when the
//! first is SIGKILLed.
//!
//! Servers that are stopped are private ([`MariaDb::start`]); every wait
//! polls a condition with a deadline, no fixed sleep synchronizes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{config_named, db_name, Running, Writer};

/// How long any awaited condition may take.
const WITHIN: Duration = Duration::from_secs(180);

/// Rows of the source table before siphon starts.
const ROWS: i64 = 2000;

/// Ids of rows the writer inserts start past this.
const NEW: i64 = 1_000_000;

/// The lease time of the two-process test.
const TTL: &str = "3s";

/// What siphon logs when the binlog or the target failed and it reconnects.
const RECONNECTING: &str = "the change stream failed; reconnecting";

/// Runs `sql` in `db` with the `mariadb` client at `port` (root over TCP),
/// usable from a writer thread that does not own the server.
fn mariadb(port: u16, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
        .arg(format!("--port={port}"))
        .args(["-u", "root", "--connect-timeout=5", "-N", "-B"])
        .arg(format!("--database={db}"))
        .arg("-e")
        .arg(sql)
        .env_remove("MYSQL_PWD")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A writer committing rounds of ten transactions on `t` at the MariaDB at
/// `port` until told to stop: each inserts row `NEW + i`, updates an existing
/// row and, every third time, deletes one. A round the server refuses (it is
/// down) is skipped, and the next is tried after a short pause. It counts the
/// transactions tried.
fn writer(port: u16, db: &str) -> Writer {
    let db = db.to_string();
    let mut i = 0;
    Writer::start(move || {
        let mut sql = String::new();
        for _ in 0..10 {
            i += 1;
            sql.push_str(&format!(
                "START TRANSACTION; INSERT INTO t VALUES ({id}, {i}, 'new {i}'); \
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
        if mariadb(port, &db, &sql).is_err() {
            // The server is down: a pause, not a synchronization.
            std::thread::sleep(Duration::from_millis(100));
        }
        i
    })
}

/// Where the pipeline writes.
enum Dst<'a> {
    Pg(&'static Postgres),
    My(&'a MariaDb),
}

/// One continuous cdc pipeline of table `t` from a MariaDB database to a
/// target database, in a working directory. It knows the servers by port
/// only, so that a test can stop and start a server it owns meanwhile. The
/// pipeline is named after its source database: a binlog reader's
/// `server_id` comes from the pipeline's name, and two pipelines of one name
/// reading the shared server at once (tests run side by side) would end each
/// other's binlog connections.
struct Pipe {
    pipeline: String,
    src_port: u16,
    src_db: String,
    /// The PostgreSQL target, or none for a MariaDB one at `dst_port`.
    pg: Option<&'static Postgres>,
    dst_port: u16,
    dst_db: String,
    dir: tempfile::TempDir,
}

impl Pipe {
    /// Creates the databases and the source table of [`ROWS`] rows, and
    /// writes the config; the source URL's user is `user` (created with
    /// every privilege when not `root`).
    fn new(src: &MariaDb, dst: Dst<'_>, user: &str) -> Pipe {
        let src_db = db_name(&src.create_database().unwrap());
        let dst_db = match &dst {
            Dst::Pg(pg) => db_name(&pg.create_database().unwrap()),
            Dst::My(my) => db_name(&my.create_database().unwrap()),
        };
        src.query_in(
            &src_db,
            &format!(
                "CREATE TABLE t (id bigint NOT NULL PRIMARY KEY, v bigint NOT NULL, note varchar(100) NOT NULL); \
                 INSERT INTO t SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_{ROWS};"
            ),
        )
        .unwrap();
        if user != "root" {
            src.query(&format!(
                "CREATE USER '{user}'@'%'; GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%'"
            ))
            .unwrap();
        }
        let src_url = format!("mysql://{user}@127.0.0.1:{}/{src_db}", src.port());
        let dst_url = match &dst {
            Dst::Pg(pg) => pg.url_for(&dst_db),
            Dst::My(my) => my.url_for(&dst_db),
        };
        let (pg, dst_port) = match dst {
            Dst::Pg(pg) => (Some(pg), pg.port()),
            Dst::My(my) => (None, my.port()),
        };
        let p = Pipe {
            pipeline: format!("p_{src_db}"),
            src_port: src.port(),
            src_db,
            pg,
            dst_port,
            dst_db,
            dir: tempfile::tempdir().unwrap(),
        };
        config_named(
            p.dir.path(),
            &p.pipeline,
            &src_url,
            &dst_url,
            "cdc",
            &format!("[{}.t]", p.src_db),
            "schedule: continuous\nbatch_size: 200",
        );
        p
    }

    /// The target's answer to `sql` (`{t}` names the table), or an error
    /// while the target cannot answer.
    fn dst_sql(&self, sql: &str) -> Result<String, String> {
        match self.pg {
            Some(pg) => pg
                .query_in(
                    &self.dst_db,
                    &sql.replace("{t}", &format!("\"{}\".t", self.src_db)),
                )
                .map_err(|e| e.to_string()),
            None => mariadb(self.dst_port, &self.dst_db, &sql.replace("{t}", "t")),
        }
    }

    /// Row count, sum of `v` and md5 of every row in key order, by the source.
    fn src_digest(&self) -> String {
        mariadb(
            self.src_port,
            &self.src_db,
            "SET SESSION group_concat_max_len = 1073741824; \
             SELECT CONCAT(COUNT(*), ' ', IFNULL(SUM(v), 0), ' ', \
             IFNULL(MD5(GROUP_CONCAT(CONCAT_WS('|', id, v, note) ORDER BY id SEPARATOR ',')), '')) FROM t",
        )
        .unwrap_or_else(|e| format!("(source: {e})"))
    }

    /// [`Pipe::src_digest`] by the target; empty while it cannot answer.
    fn dst_digest(&self) -> String {
        let sql = match self.pg {
            Some(_) => {
                "SELECT concat(count(*), ' ', coalesce(sum(v), 0), ' ', \
                 coalesce(md5(string_agg(concat_ws('|', id, v, note), ',' ORDER BY id)), '')) FROM {t}"
            }
            None => {
                "SET SESSION group_concat_max_len = 1073741824; \
                 SELECT CONCAT(COUNT(*), ' ', IFNULL(SUM(v), 0), ' ', \
                 IFNULL(MD5(GROUP_CONCAT(CONCAT_WS('|', id, v, note) ORDER BY id SEPARATOR ',')), '')) FROM {t}"
            }
        };
        self.dst_sql(sql).unwrap_or_default()
    }

    fn same(&self) -> bool {
        self.dst_digest() == self.src_digest()
    }

    /// A number the target answers, or -1 while it cannot.
    fn dst_number(&self, sql: &str) -> i64 {
        self.dst_sql(sql)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    }

    /// The state the store shows for `t`.
    fn state(&self) -> String {
        support::stream_state(
            self.dir.path(),
            &self.pipeline,
            &format!("{}.t", self.src_db),
        )
    }

    /// `siphon run -f siphon.yaml` in the background, its log in `log`.
    fn spawn(&self, log: &str) -> Running {
        let mut cmd = support::command(self.dir.path(), &["run", "-f", "siphon.yaml"]);
        cmd.env("SIPHON_LEASE_TTL", TTL);
        Running::spawn_appending(cmd, &self.dir.path().join(log))
    }

    fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default()
    }

    /// Waits until `cond` holds while `siphon` (logging to `log`) runs;
    /// fails with `what`, both digests and the log after [`WITHIN`].
    fn wait(&self, siphon: &mut Running, log: &str, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WITHIN;
        loop {
            assert!(siphon.running(), "siphon ended: {}", self.log(log));
            if cond() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}\ntarget {}\nsource {}\nstate {}\nlog:\n{}",
                self.dst_digest(),
                self.src_digest(),
                self.state(),
                self.log(log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the target holds a row the writer committed after this
    /// call: siphon applies what it reads from now on.
    fn wait_for_a_later_write(&self, w: &Writer, siphon: &mut Running, log: &str) {
        assert!(!w.failed(), "the writer failed");
        let after = NEW + w.committed() + 20;
        self.wait(
            siphon,
            log,
            &format!("the target holds row {after}"),
            || self.dst_number(&format!("SELECT count(*) FROM {{t}} WHERE id >= {after}")) > 0,
        );
    }

    /// Waits until `log` says, after its first `since` bytes, that siphon
    /// met a failure and reconnects.
    fn wait_for_reconnecting(&self, siphon: &mut Running, log: &str, since: usize) {
        self.wait(siphon, log, "siphon meets the outage", || {
            self.log(log)
                .get(since..)
                .is_some_and(|l| l.contains(RECONNECTING))
        });
    }

    /// Waits until the store shows the table `failed` with a connection
    /// error and a time to retry it: the outage outlasted the reconnects
    /// within a pass, and the pipeline retries it as a whole.
    fn wait_for_failed(&self, siphon: &mut Running, log: &str) {
        self.wait(siphon, log, "the table shows failed, to be retried", || {
            let state = self.state();
            state.contains("\"failed\"")
                && state.contains("\"kind\":\"connection\"")
                && !state.contains("\"next_retry\":null")
        });
    }

    /// Stops the writer, waits until the target equals the source, stops
    /// siphon with SIGTERM and checks the table streams, never failed.
    fn converge(&self, mut w: Writer, mut siphon: Running, log: &str) {
        let tried = w.finish();
        assert!(tried > 0);
        let committed: i64 = mariadb(
            self.src_port,
            &self.src_db,
            &format!("SELECT count(*) FROM t WHERE id > {NEW}"),
        )
        .unwrap()
        .parse()
        .unwrap();
        self.wait(&mut siphon, log, "the target equals the source", || {
            self.same()
        });
        assert!(self.state().contains("streaming"), "{}", self.state());
        assert!(
            siphon.stop("TERM", WITHIN),
            "siphon failed after SIGTERM: {}",
            self.log(log)
        );
        assert_eq!(self.dst_digest(), self.src_digest());
        let text = self.log(log);
        assert!(!text.contains("table stream failed"), "{text}");
        eprintln!("{committed} of {tried} writer transactions committed");
    }
}

/// The ids of the `Binlog Dump` connections of `user` at the MariaDB at
/// `port`; none while it cannot answer.
fn dump_connections(port: u16, user: &str) -> Vec<String> {
    support::sorted(
        &mariadb(
            port,
            "mysql",
            &format!(
                "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE COMMAND = 'Binlog Dump' AND USER = '{user}'"
            ),
        )
        .unwrap_or_default(),
    )
}

/// SIGKILL to process `pid`.
fn sigkill(pid: u32) {
    let ok = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -KILL {pid}");
}

/// The source's binlog connection killed, then the source shut down cleanly
/// and SIGKILLed, each time started again, while a writer writes to it.
fn rides_out_a_killed_binlog_connection_and_source_restarts(dst: Dst<'_>) {
    const LOG: &str = "siphon.log";
    let mut source = MariaDb::start().unwrap();
    let p = Pipe::new(&source, dst, "root");
    let mut siphon = p.spawn(LOG);
    p.wait(&mut siphon, LOG, "the table is copied and streams", || {
        p.state().contains("streaming") && p.same()
    });
    let w = writer(p.src_port, &p.src_db);
    p.wait_for_a_later_write(&w, &mut siphon, LOG);

    // 1. The binlog dump connection killed at the server: siphon opens
    // another and goes on.
    let dumps = dump_connections(p.src_port, "root");
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let since = p.log(LOG).len();
    source.query(&format!("KILL {}", dumps[0])).unwrap();
    p.wait_for_reconnecting(&mut siphon, LOG, since);
    p.wait(&mut siphon, LOG, "siphon reads the binlog again", || {
        let now = dump_connections(p.src_port, "root");
        now.len() == 1 && now != dumps
    });
    p.wait_for_a_later_write(&w, &mut siphon, LOG);

    // 2. The source shut down cleanly, for longer than siphon reconnects
    // within a pass: the table shows `failed` (a connection error, retried),
    // then the source starts again on its port and data directory.
    let since = p.log(LOG).len();
    source.stop();
    p.wait_for_reconnecting(&mut siphon, LOG, since);
    p.wait_for_failed(&mut siphon, LOG);
    source.start_again().unwrap();
    p.wait_for_a_later_write(&w, &mut siphon, LOG);

    // 3. The source SIGKILLed (crash recovery at the next start), then
    // started again.
    let since = p.log(LOG).len();
    sigkill(source.pid().unwrap());
    source.stop();
    p.wait_for_reconnecting(&mut siphon, LOG, since);
    source.start_again().unwrap();
    p.wait_for_a_later_write(&w, &mut siphon, LOG);

    p.converge(w, siphon, LOG);
}

#[test]
fn mariadb_to_postgres_rides_out_a_killed_binlog_connection_and_source_restarts() {
    rides_out_a_killed_binlog_connection_and_source_restarts(Dst::Pg(Postgres::shared().unwrap()));
}

#[test]
fn mariadb_to_mariadb_rides_out_a_killed_binlog_connection_and_source_restarts() {
    rides_out_a_killed_binlog_connection_and_source_restarts(Dst::My(MariaDb::shared().unwrap()));
}

/// As the source tests, for a MariaDB target of its own, stopped cleanly and
/// SIGKILLed while the shared MariaDB source is written to.
#[test]
fn mariadb_to_mariadb_rides_out_target_restarts() {
    const LOG: &str = "siphon.log";
    let source = MariaDb::shared().unwrap();
    let mut target = MariaDb::start().unwrap();
    let p = Pipe::new(source, Dst::My(&target), "root");
    let mut siphon = p.spawn(LOG);
    p.wait(&mut siphon, LOG, "the table is copied and streams", || {
        p.state().contains("streaming") && p.same()
    });
    let w = writer(p.src_port, &p.src_db);
    p.wait_for_a_later_write(&w, &mut siphon, LOG);

    let since = p.log(LOG).len();
    target.stop();
    p.wait_for_reconnecting(&mut siphon, LOG, since);
    p.wait_for_failed(&mut siphon, LOG);
    target.start_again().unwrap();
    p.wait_for_a_later_write(&w, &mut siphon, LOG);

    let since = p.log(LOG).len();
    sigkill(target.pid().unwrap());
    target.stop();
    p.wait_for_reconnecting(&mut siphon, LOG, since);
    target.start_again().unwrap();
    p.wait_for_a_later_write(&w, &mut siphon, LOG);

    p.converge(w, siphon, LOG);
}

/// The waiting process's words.
const WAITS: &str = "waits for the pipeline's lease, held by";

#[test]
fn a_second_run_waits_without_touching_the_binlog_and_takes_over_when_the_first_is_killed() {
    let source = MariaDb::shared().unwrap();
    // A user of its own, so that its binlog connections are told apart from
    // other tests' at the shared server.
    let user = format!("lease_{}", std::process::id());
    let p = Pipe::new(source, Dst::Pg(Postgres::shared().unwrap()), &user);
    let mut first = p.spawn("first.log");
    let mut second = p.spawn("second.log");
    // Started together: one streams, the other waits.
    p.wait(&mut first, "first.log", "a run copied the table", || {
        p.state().contains("streaming") && p.same()
    });
    p.wait(
        &mut second,
        "second.log",
        "a run waits for the lease",
        || p.log("first.log").contains(WAITS) || p.log("second.log").contains(WAITS),
    );
    let (mut holder, mut waiter, hlog, wlog) = if p.log("second.log").contains(WAITS) {
        (first, second, "first.log", "second.log")
    } else {
        (second, first, "second.log", "first.log")
    };
    assert!(
        p.log(wlog).contains(&format!(":{}:", holder.pid())),
        "{}",
        p.log(wlog)
    );
    let mut dumps = Vec::new();
    p.wait(&mut holder, hlog, "the holder reads the binlog", || {
        dumps = dump_connections(p.src_port, &user);
        dumps.len() == 1
    });

    let w = writer(p.src_port, &p.src_db);
    p.wait_for_a_later_write(&w, &mut holder, hlog);
    p.wait_for_a_later_write(&w, &mut holder, hlog);
    // The waiting run never opened a binlog connection: the holder's is the
    // same one, never ended, and the waiter logged no failure.
    assert!(waiter.running(), "{}", p.log(wlog));
    assert_eq!(dump_connections(p.src_port, &user), dumps);
    assert!(!p.log(hlog).contains(RECONNECTING), "{}", p.log(hlog));
    let log = p.log(wlog);
    assert!(
        log.lines().all(|l| !l.contains("ERROR")
            && !l.contains("failed")
            && (!l.contains("WARN") || l.contains(WAITS))),
        "{log}"
    );

    holder.kill();
    p.wait(&mut waiter, wlog, "the waiting run took over", || {
        p.log(wlog).contains("took over the pipeline's lease")
    });
    p.wait_for_a_later_write(&w, &mut waiter, wlog);
    p.wait(
        &mut waiter,
        wlog,
        "only the new holder reads the binlog",
        || {
            let now = dump_connections(p.src_port, &user);
            now.len() == 1 && now != dumps
        },
    );
    p.converge(w, waiter, wlog);
}

/// Many short outages in one long pass: the binlog connection killed eleven
/// times in a row, each time after siphon applied a later write. Each
/// reconnect that made progress starts the count of reconnects anew, so the
/// table never fails and the pass never ends with an error (five reconnects
/// were once counted for a whole pass: the sixth outage of a 30 s follow
/// window failed it).
#[test]
fn many_short_binlog_outages_in_one_pass_never_fail_it() {
    const LOG: &str = "siphon.log";
    let source = MariaDb::shared().unwrap();
    let user = format!("blips_{}", std::process::id());
    let p = Pipe::new(source, Dst::Pg(Postgres::shared().unwrap()), &user);
    let mut siphon = p.spawn(LOG);
    p.wait(&mut siphon, LOG, "the table is copied and streams", || {
        p.state().contains("streaming") && p.same()
    });
    let w = writer(p.src_port, &p.src_db);
    p.wait_for_a_later_write(&w, &mut siphon, LOG);
    for _ in 0..11 {
        let mut dumps = Vec::new();
        p.wait(&mut siphon, LOG, "siphon reads the binlog", || {
            dumps = dump_connections(p.src_port, &user);
            dumps.len() == 1
        });
        let since = p.log(LOG).len();
        source.query(&format!("KILL {}", dumps[0])).unwrap();
        p.wait_for_reconnecting(&mut siphon, LOG, since);
        p.wait_for_a_later_write(&w, &mut siphon, LOG);
        assert!(!p.state().contains("\"failed\""), "{}", p.state());
    }
    let log = p.log(LOG);
    assert!(!log.contains("pass failed"), "{log}");
    p.converge(w, siphon, LOG);
}
