//! What the `siphon` binary's tests share: running the binary in a folder
//! without a terminal, reading what it printed, a background `siphon run`
//! that is killed when dropped, waiting on a condition with a deadline,
//! one-pipeline configs, the rows of a table at a MariaDB or PostgreSQL
//! database, the state the store shows for a table, and a write load on a
//! thread of its own.
//!
//! A test file uses it with `mod support;` and takes only what it needs.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siphon_testkit::{MariaDb, Postgres};

pub mod cdc;
pub mod tmux;

/// `siphon ARGS` in `dir`, ready to run: no terminal, and none of the
/// caller's `SIPHON_STATE`, `RUST_LOG`, `SIPHON_API_TOKEN` or `SIPHON_LOG_FORMAT`.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_siphon"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("SIPHON_STATE")
        .env_remove("RUST_LOG")
        .env_remove("SIPHON_API_TOKEN")
        .env_remove("SIPHON_LOG_FORMAT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs `siphon ARGS` in `dir` to the end (see [`command`]).
pub fn siphon(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("run siphon")
}

/// Runs `siphon ARGS` in `dir` to the end with extra environment variables.
pub fn siphon_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(dir, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run siphon")
}

/// What the run printed: standard output, then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Standard output alone.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a run that must succeed printed; fails the test with its output
/// when it did not succeed.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "siphon failed:\n{}", text(&o));
    text(&o)
}

/// What a run that must exit with `code` printed; fails the test otherwise.
pub fn fails(o: Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    text(&o)
}

/// Polls `cond` every 50 ms until it holds; fails the test with `what` after
/// `within`.
pub fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `siphon` process running in the background; SIGKILLed if still running
/// when dropped.
#[derive(Debug)]
pub struct Running(Option<Child>);

impl Running {
    /// Starts `cmd` (from [`command`]) in the background with its standard
    /// error (the log) going to `log`, emptied first, and its standard output
    /// discarded.
    pub fn spawn(cmd: Command, log: &Path) -> Running {
        Running::start(
            cmd,
            std::fs::File::create(log).expect("create the log file"),
        )
    }

    /// As [`Running::spawn`], adding to the end of `log` rather than emptying
    /// it, so one log holds every run of a test.
    pub fn spawn_appending(cmd: Command, log: &Path) -> Running {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the log file");
        Running::start(cmd, file)
    }

    fn start(mut cmd: Command, log: std::fs::File) -> Running {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start siphon");
        Running(Some(child))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("still running").id()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        match self.0.as_mut() {
            Some(c) => c.try_wait().expect("wait").is_none(),
            None => false,
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let mut c = self.0.take().expect("still running");
        c.kill().expect("kill");
        c.wait().expect("wait");
    }

    /// Sends `signal` (`TERM`, `INT`) and waits up to `within` for the process
    /// to end; returns whether it exited with success.
    pub fn stop(&mut self, signal: &str, within: Duration) -> bool {
        let mut c = self.0.take().expect("still running");
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &c.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(sent, "could not send SIG{signal}");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("siphon did not stop within {within:?} after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// The database name at the end of a connection URL.
pub fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// Runs `sql` in database `db` of `pg` through `psql` on a thread of its own
/// (a writer load beside a running siphon); the thread panics if it fails.
pub fn psql_in_background(
    pg: &siphon_testkit::Postgres,
    db: &str,
    sql: String,
) -> std::thread::JoinHandle<()> {
    let (psql, port, db) = (pg.bin_dir().join("psql"), pg.port(), db.to_string());
    std::thread::spawn(move || {
        let status = Command::new(psql)
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(port.to_string())
            .args(["-d", &db, "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the writer failed");
    })
}

/// Writes a one-pipeline (`p`) config in `dir` with a SQLite state store
/// (`state.db`): `tables` is YAML, `extra` more lines of the pipeline.
pub fn config(dir: &Path, source: &str, target: &str, mode: &str, tables: &str, extra: &str) {
    config_named(dir, "p", source, target, mode, tables, extra);
}

/// As [`config`], the pipeline named `pipeline`.
pub fn config_named(
    dir: &Path,
    pipeline: &str,
    source: &str,
    target: &str,
    mode: &str,
    tables: &str,
    extra: &str,
) {
    let mut yaml = format!(
        "state: sqlite://state.db\nconnections:\n  src: {source}\n  dst: {target}\npipelines:\n  {pipeline}:\n\
         \x20   source: src\n    target: dst\n    mode: {mode}\n    tables: {tables}\n"
    );
    for line in extra.lines() {
        yaml.push_str(&format!("    {line}\n"));
    }
    std::fs::write(dir.join("siphon.yaml"), yaml).unwrap();
}

/// A MariaDB and a PostgreSQL target database of one source, each with a
/// folder whose one-pipeline (`p`) config (see [`config`]) writes the
/// source's `tables` there.
#[derive(Debug)]
pub struct BothTargets {
    /// The MariaDB target database's name.
    pub my_db: String,
    /// The PostgreSQL target database's name.
    pub pg_db: String,
    /// The folder of the pipeline into MariaDB.
    pub to_my: tempfile::TempDir,
    /// The folder of the pipeline into PostgreSQL.
    pub to_pg: tempfile::TempDir,
}

impl BothTargets {
    /// Creates both databases and folders and writes the configs.
    pub fn new(
        my: &MariaDb,
        pg: &Postgres,
        src: &str,
        mode: &str,
        tables: &str,
        extra: &str,
    ) -> BothTargets {
        let my_dst = my.create_database().unwrap();
        let pg_dst = pg.create_database().unwrap();
        let both = BothTargets {
            my_db: db_name(&my_dst),
            pg_db: db_name(&pg_dst),
            to_my: tempfile::tempdir().unwrap(),
            to_pg: tempfile::tempdir().unwrap(),
        };
        config(both.to_my.path(), src, &my_dst, mode, tables, extra);
        config(both.to_pg.path(), src, &pg_dst, mode, tables, extra);
        both
    }

    /// `siphon run --once` into MariaDB, then into PostgreSQL; each must
    /// succeed.
    pub fn run_once(&self) {
        ok(siphon(self.to_my.path(), &["run", "--once"]));
        ok(siphon(self.to_pg.path(), &["run", "--once"]));
    }
}

/// The non-empty lines of `out`, sorted.
pub fn sorted(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Rows of `table` at a MariaDB database as `row` (columns joined by `|`)
/// prints them, sorted.
pub fn my_rows(my: &MariaDb, db: &str, row: &str, table: &str) -> Vec<String> {
    sorted(
        &my.query_in(
            db,
            &format!("SET NAMES utf8mb4; SELECT CONCAT_WS('|', {row}) FROM {table}"),
        )
        .unwrap(),
    )
}

/// Rows of `schema.table` at a PostgreSQL database as `row` (columns joined
/// by `|`) prints them, sorted.
pub fn pg_rows(pg: &Postgres, db: &str, row: &str, table: &str) -> Vec<String> {
    sorted(
        &pg.query_in(
            db,
            &format!("SELECT string_agg(concat_ws('|', {row}), E'\\n') FROM {table}"),
        )
        .unwrap(),
    )
}

/// The state the SQLite store `state.db` in `dir` shows for table `table`
/// of `pipeline`; empty while it shows none.
pub fn stream_state(dir: &Path, pipeline: &str, table: &str) -> String {
    let Ok(db) = rusqlite::Connection::open(dir.join("state.db")) else {
        return String::new();
    };
    db.query_row(
        "SELECT state FROM stream_states WHERE pipeline = ?1 AND table_name = ?2",
        [pipeline, table],
        |r| r.get(0),
    )
    .unwrap_or_default()
}

/// `siphon run -f siphon.yaml` in `dir` in the background, its log added to
/// `siphon.log` there (see [`run_log`]); killed on drop.
pub fn spawn_run(dir: &Path) -> Running {
    let cmd = command(dir, &["run", "-f", "siphon.yaml"]);
    Running::spawn_appending(cmd, &dir.join("siphon.log"))
}

/// What the runs of [`spawn_run`] in `dir` logged so far.
pub fn run_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("siphon.log")).unwrap_or_default()
}

/// A thread calling `round` over and over until told to stop (a write load
/// beside a running siphon); `round` returns how much it has written in all.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicI64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread.
    pub fn start(mut round: impl FnMut() -> i64 + Send + 'static) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicI64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                d.store(round(), Ordering::Relaxed);
            }
        });
        Writer {
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// What the last finished round returned.
    pub fn committed(&self) -> i64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Whether the thread ended without being told to stop (a round panicked).
    pub fn failed(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| t.is_finished()) && !self.stop.load(Ordering::Relaxed)
    }

    /// Stops the thread, waits for its last round and returns what it returned.
    pub fn finish(&mut self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the writer failed");
        self.committed()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
