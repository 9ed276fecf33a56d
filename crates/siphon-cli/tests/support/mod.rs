//! What the `siphon` binary's tests share: running the binary in a folder
//! without a terminal, reading what it printed, a background `siphon run`
//! that is killed when dropped, and waiting on a condition with a deadline.
//!
//! A test file uses it with `mod support;` and takes only what it needs.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
pub mod tmux;
