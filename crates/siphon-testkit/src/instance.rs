//! One running server: its temporary directory, its child process, its log,
//! and a watchdog that cleans up if the test process dies without dropping it.
//!
//! Life of an [`Instance`]:
//! 1. [`Instance::new`] makes the temporary directory and starts the watchdog.
//! 2. Setup tools run with [`Instance::run_setup`] (initdb, mariadb-install-db).
//! 3. [`Instance::launch`] picks a free port, spawns the server and polls it
//!    until it answers, retrying on another port when the chosen one was taken.
//! 4. Dropping the instance stops the server (its polite stop signal, then
//!    SIGKILL after [`STOP_GRACE`]), disarms the watchdog and removes the directory.
//!
//! The watchdog is a tiny `sh` process whose standard input is a pipe from
//! this process. It learns the server's pid over that pipe. When the pipe
//! closes without a `disarm` line (the test process exited without running
//! `Drop`, which is always the case for servers kept in a `static`, or it was
//! killed), the watchdog stops the server and deletes the directory. Unlike
//! `PR_SET_PDEATHSIG`, it does not fire when the test *thread* that started a
//! shared server ends.
//!
//! Shared servers ([`Shared`]) are never dropped, so they are registered with
//! an `atexit` handler that shuts them down like a dropped server: when a test
//! binary ends normally, its shared servers are gone (and reaped) before it
//! returns. When it is killed, the watchdogs clean up a moment later.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use crate::util::{describe, file_len, free_port, log_tail};
use crate::{sys, Error};

/// How long a server may take to accept connections.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to stop after its polite signal before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many ports are tried when the chosen one turns out to be taken.
const PORT_ATTEMPTS: usize = 5;
/// Lines of log quoted in errors.
const TAIL_LINES: usize = 40;

/// The watchdog script: `$1` is the stop signal name, `$2` the directory.
/// Lines on stdin: `pid N` (the server to stop), `pid` (none any more),
/// `disarm` (exit without doing anything). At end of input it stops the
/// server (a zombie counts as stopped) and deletes the directory.
const WATCHDOG_SCRIPT: &str = r#"
trap '' INT HUP
pid=
alive() {
  [ -n "$pid" ] || return 1
  s=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [ "${s%% *}" != Z ]
}
while read -r cmd arg; do
  case "$cmd" in
    pid) pid="$arg" ;;
    disarm) exit 0 ;;
  esac
done
if alive; then
  kill -s "$1" "$pid" 2>/dev/null
  i=0
  while alive && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  alive && kill -s KILL "$pid" 2>/dev/null
fi
rm -rf -- "$2"
"#;

/// A signal a server understands as "shut down cleanly".
#[derive(Debug, Clone, Copy)]
pub(crate) enum StopSignal {
    /// SIGTERM (MariaDB, Redis, NATS).
    Term,
    /// SIGINT (PostgreSQL's "fast" shutdown; SIGTERM would wait for clients).
    Int,
}

impl StopSignal {
    fn number(self) -> libc::c_int {
        match self {
            StopSignal::Term => libc::SIGTERM,
            StopSignal::Int => libc::SIGINT,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "TERM",
            StopSignal::Int => "INT",
        }
    }
}

/// Why a launch attempt failed.
enum Failure {
    /// The server process exited; `port_taken` when its log says so.
    Exited { status: String, port_taken: bool },
    /// It kept running but never answered the probe.
    Timeout { last: String },
    /// Something on our side went wrong.
    Other(Error),
}

/// A server's temporary directory, process and watchdog. See the module docs.
#[derive(Debug)]
pub(crate) struct Instance {
    server: &'static str,
    stop_signal: StopSignal,
    log_path: PathBuf,
    /// Length of the log before the current launch attempt: errors and the
    /// port-taken check look only at what this attempt wrote.
    log_start: u64,
    dir_path: PathBuf,
    /// What has to be stopped or removed. In a mutex so that a shared server,
    /// reachable only through `&'static`, can still be shut down at exit.
    live: Mutex<Live>,
}

/// The parts of an [`Instance`] that shutting down consumes.
#[derive(Debug)]
struct Live {
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    dir: Option<tempfile::TempDir>,
}

impl Instance {
    /// Creates the temporary directory (`{prefix}XXXXXX` under
    /// `SIPHON_TESTKIT_TMPDIR` or the system temp dir) and starts its watchdog.
    pub(crate) fn new(
        server: &'static str,
        prefix: &str,
        stop_signal: StopSignal,
        log_name: &str,
    ) -> Result<Self, Error> {
        let base = std::env::var_os("SIPHON_TESTKIT_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&base)
            .map_err(|e| {
                Error::io(
                    format!("creating a temporary directory in {}", base.display()),
                    &e,
                )
            })?;
        let dir_path = dir.path().to_path_buf();
        let watchdog = Watchdog::spawn(stop_signal, &dir_path)?;
        Ok(Instance {
            server,
            stop_signal,
            log_path: dir_path.join(log_name),
            log_start: 0,
            dir_path,
            live: Mutex::new(Live {
                child: None,
                watchdog: Some(watchdog),
                dir: Some(dir),
            }),
        })
    }

    /// The temporary directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The server's log file (standard output and error of the server).
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        lock(&self.live).child.as_ref().map(Child::id)
    }

    /// Runs a setup tool to completion with its output in `dir/{log_name}`;
    /// a failure becomes a start error quoting that log.
    pub(crate) fn run_setup(&self, mut cmd: Command, log_name: &str) -> Result<(), Error> {
        let log = self.dir_path.join(log_name);
        let (out, err) = log_files(&log)?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let status = cmd.status().map_err(|e| spawn_error(&cmd, &e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Start {
                server: self.server,
                reason: format!("`{}` ended with {status}", describe(&cmd)),
                log_tail: log_tail(&log, 0, TAIL_LINES),
            })
        }
    }

    /// Starts the server on a free port and waits until `probe(port)` succeeds.
    ///
    /// `command(port)` builds the server's command line. The probe returns
    /// `Err(reason)` while the server is not ready. If the server exits saying
    /// its address is in use, another port is tried. Returns the port.
    pub(crate) fn launch(
        &mut self,
        mut command: impl FnMut(u16) -> Command,
        mut probe: impl FnMut(u16) -> Result<(), String>,
    ) -> Result<u16, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            self.log_start = file_len(&self.log_path);
            let failure = match self.spawn(command(port)) {
                Ok(()) => match self.wait_ready(|| probe(port)) {
                    Ok(()) => return Ok(port),
                    Err(failure) => failure,
                },
                Err(e) => Failure::Other(e),
            };
            self.live_mut().kill_now();
            match failure {
                Failure::Exited {
                    port_taken: true, ..
                } if attempt < PORT_ATTEMPTS => continue,
                Failure::Exited { status, .. } => {
                    return Err(self.start_error(format!("it exited ({status})")))
                }
                Failure::Timeout { last } => {
                    return Err(self.start_error(format!(
                    "it did not accept connections on port {port} within {} s (last probe: {last})",
                    START_TIMEOUT.as_secs()
                )))
                }
                Failure::Other(e) => return Err(e),
            }
        }
    }

    /// A start error for this server, quoting what the current launch
    /// attempt wrote to the log.
    pub(crate) fn start_error(&self, reason: String) -> Error {
        Error::Start {
            server: self.server,
            reason,
            log_tail: log_tail(&self.log_path, self.log_start, TAIL_LINES),
        }
    }

    /// Stops the server process politely (SIGKILL after [`STOP_GRACE`]) and
    /// waits for it to exit, keeping its directory and watchdog, so that
    /// [`Instance::relaunch`] can start it again.
    pub(crate) fn stop_server(&mut self) {
        let signal = self.stop_signal;
        let live = self.live_mut();
        live.stop_child(signal);
        live.tell_watchdog("pid");
    }

    /// Starts the server again with `command` (on the port it had) and waits
    /// until `probe` succeeds.
    pub(crate) fn relaunch(
        &mut self,
        command: Command,
        probe: impl FnMut() -> Result<(), String>,
    ) -> Result<(), Error> {
        self.log_start = file_len(&self.log_path);
        self.spawn(command)?;
        let failure = match self.wait_ready(probe) {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        self.live_mut().kill_now();
        Err(match failure {
            Failure::Exited { status, .. } => self.start_error(format!("it exited ({status})")),
            Failure::Timeout { last } => self.start_error(format!(
                "it did not accept connections again within {} s (last probe: {last})",
                START_TIMEOUT.as_secs()
            )),
            Failure::Other(e) => e,
        })
    }

    fn live_mut(&mut self) -> &mut Live {
        self.live.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&mut self, mut cmd: Command) -> Result<(), Error> {
        let (out, err) = log_files(&self.log_path)?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C in the terminal reaches the test
            // process only, and the watchdog or Drop stops the server in order.
            .process_group(0);
        let child = cmd.spawn().map_err(|e| spawn_error(&cmd, &e))?;
        let live = self.live_mut();
        live.tell_watchdog(&format!("pid {}", child.id()));
        live.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self, mut probe: impl FnMut() -> Result<(), String>) -> Result<(), Failure> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        loop {
            self.check_running()?;
            let last = match probe() {
                Ok(()) => {
                    // A server that lost the race for its port may still be
                    // alive for a moment while another process answers.
                    return self.check_running();
                }
                Err(reason) => reason,
            };
            if Instant::now() >= deadline {
                return Err(Failure::Timeout { last });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    fn check_running(&mut self) -> Result<(), Failure> {
        let live = self.live_mut();
        let Some(child) = &mut live.child else {
            return Err(Failure::Other(self.start_error("no process".into())));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                live.child = None;
                live.tell_watchdog("pid");
                let text = log_tail(&self.log_path, self.log_start, TAIL_LINES).to_lowercase();
                Err(Failure::Exited {
                    status: status.to_string(),
                    port_taken: text.contains("address already in use")
                        || text.contains("address in use"),
                })
            }
            Err(e) => Err(Failure::Other(Error::io(
                "waiting for the server process",
                &e,
            ))),
        }
    }
}

impl Live {
    fn tell_watchdog(&mut self, line: &str) {
        if let Some(watchdog) = &mut self.watchdog {
            watchdog.tell(line);
        }
    }

    /// SIGKILL the server now (used when a launch attempt failed).
    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.tell_watchdog("pid");
        }
    }

    /// Sends the polite stop signal, if the server still runs.
    fn signal_stop(&mut self, signal: StopSignal) {
        if let Some(child) = &mut self.child {
            if let Ok(None) = child.try_wait() {
                sys::send_signal(child.id(), signal.number());
            }
        }
    }

    /// Stops the server politely (then by force after [`STOP_GRACE`]),
    /// disarms the watchdog and removes the directory.
    fn shut_down(&mut self, signal: StopSignal) {
        self.stop_child(signal);
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                // Files a server created with odd permissions: try once more.
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }

    /// Stops the server process politely (then by force after
    /// [`STOP_GRACE`]) and reaps it.
    fn stop_child(&mut self, signal: StopSignal) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                sys::send_signal(child.id(), signal.number());
                let deadline = Instant::now() + STOP_GRACE;
                loop {
                    match child.try_wait() {
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Ok(Some(_)) => break,
                        _ => {
                            let _ = child.kill();
                            break;
                        }
                    }
                }
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let signal = self.stop_signal;
        self.live_mut().shut_down(signal);
    }
}

/// A server started on first use and kept for the rest of the process,
/// shut down by the exit handler. Each server kind has one in a `static`.
#[derive(Debug)]
pub(crate) struct Shared<T> {
    cell: OnceLock<Result<T, Error>>,
    registered: Once,
}

impl<T> Shared<T> {
    pub(crate) const fn new() -> Self {
        Shared {
            cell: OnceLock::new(),
            registered: Once::new(),
        }
    }

    /// The shared server, started with `start` by the first caller; every
    /// caller gets the same server, or a copy of the same start error.
    pub(crate) fn get(
        &'static self,
        start: impl FnOnce() -> Result<T, Error>,
        instance: impl FnOnce(&'static T) -> &'static Instance,
    ) -> Result<&'static T, Error> {
        match self.cell.get_or_init(start) {
            Ok(server) => {
                self.registered
                    .call_once(|| at_exit::shut_down_at_exit(instance(server)));
                Ok(server)
            }
            Err(e) => Err(e.clone()),
        }
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not stop cleanup).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The exit handler that shuts down shared servers.
mod at_exit {
    use super::{Instance, Mutex, Once};

    static SHARED: Mutex<Vec<&'static Instance>> = Mutex::new(Vec::new());
    static REGISTER: Once = Once::new();

    /// Shuts `instance` down when the process exits through `exit` or a
    /// return from `main`, which is how test binaries end.
    pub(super) fn shut_down_at_exit(instance: &'static Instance) {
        super::lock(&SHARED).push(instance);
        REGISTER.call_once(register);
    }

    #[allow(unsafe_code)] // atexit(3) with a plain `extern "C" fn()`; see SAFETY.
    fn register() {
        // SAFETY: `run` takes no arguments, does not unwind (it only try-locks,
        // signals, waits for children and removes files) and touches only
        // statics, which outlive exit handlers. If registration fails, the
        // watchdogs still clean up once the process is gone.
        let _ = unsafe { libc::atexit(run) };
    }

    extern "C" fn run() {
        // try_lock: never hang the exit on a lock some dead thread held.
        let instances = match SHARED.try_lock() {
            Ok(mut shared) => std::mem::take(&mut *shared),
            Err(_) => return,
        };
        let mut lives = Vec::new();
        for instance in instances {
            if let Ok(live) = instance.live.try_lock() {
                lives.push((live, instance.stop_signal));
            }
        }
        // Signal all first so the servers stop in parallel, then wait for each.
        for (live, signal) in &mut lives {
            live.signal_stop(*signal);
        }
        for (live, signal) in &mut lives {
            live.shut_down(*signal);
        }
    }
}

/// The `sh` process that cleans up after a test process that died.
#[derive(Debug)]
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    fn spawn(stop_signal: StopSignal, dir: &Path) -> Result<Self, Error> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("siphon-testkit-watchdog")
            .arg(stop_signal.name())
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| spawn_error(&cmd, &e))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    fn tell(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
        }
    }

    /// Tells the watchdog to exit without doing anything, and reaps it.
    fn disarm(mut self) {
        self.tell("disarm");
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Opens (appending) a log file twice, for a child's stdout and stderr.
fn log_files(path: &Path) -> Result<(File, File), Error> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening log file {}", path.display()), &e))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::io(format!("duplicating log file {}", path.display()), &e))?;
    Ok((out, err))
}

/// Turns a spawn failure into an error; a missing program says how to install it.
fn spawn_error(cmd: &Command, err: &std::io::Error) -> Error {
    if err.kind() == std::io::ErrorKind::NotFound {
        Error::MissingBinary {
            binary: cmd.get_program().to_string_lossy().into_owned(),
            searched: "the given path".into(),
        }
    } else {
        Error::io(format!("starting `{}`", describe(cmd)), err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::find_binary;
    use std::net::TcpListener;

    /// A server whose first port is taken retries on another one.
    #[test]
    fn launch_retries_when_the_port_is_taken() {
        let redis = find_binary("redis-server").unwrap();
        let blocker = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let taken = blocker.local_addr().unwrap().port();
        let mut instance =
            Instance::new("Redis", "siphon-retry-", StopSignal::Term, "redis.log").unwrap();
        let dir = instance.dir().to_path_buf();
        let mut attempts = Vec::new();
        let port = instance
            .launch(
                |port| {
                    // The first attempt is sent to the taken port.
                    let port = if attempts.is_empty() { taken } else { port };
                    attempts.push(port);
                    let mut cmd = Command::new(&redis);
                    cmd.args(["--bind", "127.0.0.1", "--save", "", "--port"])
                        .arg(port.to_string())
                        .arg("--dir")
                        .arg(&dir);
                    cmd
                },
                |port| crate::redis::probe(port, &dir),
            )
            .unwrap();
        // The first attempt's probe may reach `blocker`, which is not this
        // server; the server itself exits saying the address is in use.
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        assert_ne!(port, taken);
        assert!(instance.pid().is_some());
        drop(instance);
        assert!(!dir.exists());
    }
}
