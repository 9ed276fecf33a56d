//! `siphon service start | stop | restart | status`: the service that runs
//! every pipeline of the state store on its schedule, in the foreground or as
//! a daemon, found by its pid file.
//!
//! The pid file lies beside the state for the embedded SQLite store
//! (`.siphon/service.pid` next to `.siphon/state.db`), so that one state has
//! one service; for Redis and PostgreSQL stores, which several services may
//! share (their leases keep each pipeline on one worker), it lies in the run
//! folder (`--run-dir`, `.siphon` by default), one per worker.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use siphon::{ServeOptions, StateStore};
use siphon_core::{Error, ErrorKind, ExecutionStatus, Result};
use siphon_engine::{NoopObserver, Shutdown};

use crate::config::ConnUrl;
use crate::connect::registry;
use crate::logfile::RotatingFile;
use crate::pidfile::{alive, probe, PidInfo, PidLock, Probe, Refused, PID_FILE};

mod api;

/// How long `service stop` waits for the service to exit.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// How long `service start --daemon` waits for the service to say it started.
const START_WAIT: Duration = Duration::from_secs(60);

/// The exit status of `service status` when no service runs (as LSB init
/// scripts and systemd say "not running").
const NOT_RUNNING: u8 = 3;

/// The service's commands.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Runs every pipeline of the state store on its schedule until SIGTERM or Ctrl-C; pipelines added, changed or removed meanwhile are picked up without a restart. Logs at info level (-v debug).
    Start(StartArgs),
    /// Stops the running service: each pipeline commits the batch in flight with its checkpoint; waits up to 15 s for it to exit.
    Stop(Place),
    /// Stops the service and starts it again in the background, with the options it was started with.
    Restart(Place),
    /// Whether the service runs, since when, and its pipelines: lease holder, last run, table states. Exit status 0 when it runs, 3 when not.
    Status(Place),
}

/// Where the service's pid file and logs are.
#[derive(Debug, Clone, Args)]
pub struct Place {
    /// Folder of the daemon's logs (`logs/`), and of the pid file for Redis and PostgreSQL state stores [default: the SQLite state's folder, else .siphon].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}

/// How `service start` runs.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Runs in the background, detached from the terminal; logs go to logs/combined.log and logs/error.log in the run folder.
    #[arg(long)]
    pub daemon: bool,
    #[command(flatten)]
    pub place: Place,
    /// Size past which a daemon's log file is rotated (`combined.log` → `combined.log.1` …).
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    pub log_max_size: u64,
    /// Rotated log files kept of each log.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub log_keep: usize,
    /// How often the catalog is read for pipelines added or removed.
    #[arg(long, value_name = "DURATION", env = "SIPHON_CATALOG_POLL", default_value = "5s", value_parser = parse_interval)]
    pub catalog_poll: Duration,
    /// Serves the REST API, /metrics, /healthz, /readyz and the web console on this address (HOST:PORT, such as 127.0.0.1:8080). With SIPHON_API_TOKEN set, /api/* and /metrics need `Authorization: Bearer TOKEN`; a non-loopback address is refused without it.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The process `--daemon` starts in the background.
    #[arg(long, hide = true)]
    pub detached: bool,
}

fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let size: siphon_core::ByteSize = s.parse()?;
    if size.0 == 0 {
        return Err("a log file must be allowed at least one byte".into());
    }
    Ok(size.0)
}

fn parse_interval(s: &str) -> std::result::Result<Duration, String> {
    let d = siphon_core::parse_duration(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!(
            "`{s}` is too short: read the catalog every 10ms or less often"
        ));
    }
    Ok(d)
}

impl StartArgs {
    /// The options that start this service again, as `restart` does: the run
    /// folder made absolute, the log level as `-v` flags.
    fn again(&self, run_dir: &Path, verbose: u8) -> Vec<String> {
        let mut args = vec![
            "--run-dir".to_string(),
            run_dir.display().to_string(),
            "--log-max-size".to_string(),
            self.log_max_size.to_string(),
            "--log-keep".to_string(),
            self.log_keep.to_string(),
            "--catalog-poll".to_string(),
            format!("{}ms", self.catalog_poll.as_millis()),
        ];
        if let Some(listen) = &self.listen {
            args.extend(["--listen".to_string(), listen.clone()]);
        }
        args.extend((0..verbose).map(|_| "-v".to_string()));
        args
    }
}

/// The options a pid file recorded, read back for `restart`.
#[derive(Debug, Parser)]
#[command(name = "start")]
struct Recorded {
    #[command(flatten)]
    start: StartArgs,
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// Whether the command sets up its own logs (`start`), rather than the
/// binary's usual stderr logs.
pub fn logs_itself(cmd: &ServiceCommand) -> bool {
    matches!(cmd, ServiceCommand::Start(_))
}

/// Runs a service command. `state` is the global `--state` (or
/// `SIPHON_STATE`).
pub async fn run(state: Option<&str>, verbose: u8, cmd: ServiceCommand) -> Result<ExitCode> {
    match cmd {
        ServiceCommand::Start(args) => start(state, verbose, args).await,
        ServiceCommand::Stop(place) => {
            let at = Located::find(state, place.run_dir.as_deref())?;
            stop(&at).await
        }
        ServiceCommand::Restart(place) => {
            let at = Located::find(state, place.run_dir.as_deref())?;
            restart(&at).await
        }
        ServiceCommand::Status(place) => {
            let at = Located::find(state, place.run_dir.as_deref())?;
            status(&at).await
        }
    }
}

/// Where a service's state, pid file and logs are.
#[derive(Debug, Clone)]
struct Located {
    /// The state store's URL as the service opens it: as written (`${VAR}`
    /// unexpanded), a SQLite path made absolute.
    state: String,
    /// The state store's URL with any password hidden.
    shown: String,
    pid_file: PathBuf,
    run_dir: PathBuf,
}

impl Located {
    /// The state named by `--state` / `SIPHON_STATE`, else `./siphon.yaml`'s
    /// `state`, else the default; the pid file beside a SQLite state, else in
    /// the run folder.
    fn find(flag: Option<&str>, run_dir: Option<&Path>) -> Result<Located> {
        let file = if flag.is_some() {
            None
        } else {
            super::config_file(None)?
        };
        let (key, written) = match (flag, file.as_ref().and_then(|(_, f)| f.state.clone())) {
            (Some(f), _) => ("--state", f.to_string()),
            (None, Some(f)) => ("state", f),
            (None, None) => ("state", super::DEFAULT_STATE.to_string()),
        };
        let url = ConnUrl::parse(key, &written)?;
        let absolute = |p: &Path| {
            std::path::absolute(p).map_err(|e| {
                Error::config(format!("cannot make the path {} absolute", p.display())).source(e)
            })
        };
        let run_dir = run_dir.map(absolute).transpose()?;
        if url.is(&siphon::SQLITE) {
            let path = absolute(&siphon_sqlite::path_from_url(url.expose())?)?;
            let query = url
                .expose()
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap_or_default();
            let state = format!("sqlite://{}{query}", path.display());
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok(Located {
                shown: state.clone(),
                state,
                pid_file: dir.join(PID_FILE),
                run_dir: run_dir.unwrap_or(dir),
            })
        } else {
            let run_dir = match run_dir {
                Some(d) => d,
                None => absolute(Path::new(".siphon"))?,
            };
            Ok(Located {
                state: written,
                shown: url.to_string(),
                pid_file: run_dir.join(PID_FILE),
                run_dir,
            })
        }
    }

    fn logs(&self) -> PathBuf {
        self.run_dir.join("logs")
    }
}

/// Opens the daemon's two logs: everything at `level` in `combined.log`,
/// warnings and errors in `error.log`, each rotated by size.
fn open_logs(dir: &Path, args: &StartArgs) -> Result<(RotatingFile, RotatingFile)> {
    let open = |name: &str| {
        let path = dir.join(name);
        RotatingFile::open(&path, args.log_max_size, args.log_keep).map_err(|e| {
            Error::config(format!(
                "cannot write the log file {}: check the run folder (--run-dir)",
                path.display()
            ))
            .source(e)
        })
    };
    Ok((open("combined.log")?, open("error.log")?))
}

/// Sends the daemon's logs to its two files.
fn file_logs(level: &str, (combined, errors): (RotatingFile, RotatingFile)) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // In the `--log-format` chosen (text, or JSON lines).
    tracing_subscriber::registry()
        .with(crate::logs::layer(Mutex::new(combined), false).with_filter(filter))
        .with(crate::logs::layer(Mutex::new(errors), false).with_filter(LevelFilter::WARN))
        .init();
}

/// `service start`: in the foreground, or `--daemon` in the background.
async fn start(state: Option<&str>, verbose: u8, args: StartArgs) -> Result<ExitCode> {
    let level = if verbose == 0 { "info" } else { "debug" };
    if !args.detached {
        crate::stderr_logs(level);
    }
    let at = Located::find(state, args.place.run_dir.as_deref())?;
    // Refused here, before anything starts (in the background or not).
    if let Some(listen) = &args.listen {
        api::listen_addr(listen, &siphon_api::Token::from_env())?;
    }
    if args.detached {
        file_logs(level, open_logs(&at.logs(), &args)?);
        // A session of its own: no terminal's hangup or Ctrl-C reaches it.
        if let Err(e) = rustix::process::setsid() {
            tracing::warn!(error = %e, "could not start a session of its own");
        }
        let result = serve_here(&at, verbose, &args).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "the service stopped");
        }
        return result;
    }
    if args.daemon {
        return daemonize(&at, &args, verbose, None).await;
    }
    serve_here(&at, verbose, &args).await
}

/// The message a start refused by a running service ends with.
fn already_running(info: Option<&PidInfo>, pid_file: &Path) -> String {
    match info {
        Some(i) => format!(
            "a service is already running (pid {}, since {}) on this state; stop it with \
             `siphon service stop` (pid file {})",
            i.pid,
            i.since(),
            pid_file.display()
        ),
        None => format!(
            "a service is already running on this state: it is starting (pid file {})",
            pid_file.display()
        ),
    }
}

/// Runs the service in this process until SIGTERM or Ctrl-C.
async fn serve_here(at: &Located, verbose: u8, args: &StartArgs) -> Result<ExitCode> {
    let mut lock = match PidLock::acquire(&at.pid_file) {
        Ok(l) => l,
        Err(Refused::Running(info)) => {
            let msg = already_running(info.as_ref(), &at.pid_file);
            if args.detached {
                tracing::error!("{msg}");
            } else {
                eprintln!("error: {msg}");
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(Refused::Io(e)) => {
            return Err(Error::new(
                ErrorKind::State,
                format!(
                    "cannot create or lock the pid file {}: check the folder's permissions",
                    at.pid_file.display()
                ),
            )
            .source(e))
        }
    };
    let state = Arc::new(super::open_state(Some(&at.state), None).await?);
    let token = siphon_api::Token::from_env();
    let listener = match &args.listen {
        Some(listen) => Some(api::bind(api::listen_addr(listen, &token)?).await?),
        None => None,
    };
    let info = PidInfo {
        pid: std::process::id(),
        started_at: chrono::Utc::now(),
        state: at.shown.clone(),
        cwd: std::env::current_dir().unwrap_or_default(),
        args: args.again(&at.run_dir, verbose),
    };
    lock.write(&info).map_err(|e| {
        Error::new(
            ErrorKind::State,
            format!("cannot write the pid file {}", lock.path().display()),
        )
        .source(e)
    })?;
    let pipelines = state.pipelines().await.map(|p| p.len()).unwrap_or(0);
    tracing::info!(
        pid = info.pid,
        state = %at.shown,
        pid_file = %at.pid_file.display(),
        pipelines,
        "service started; SIGTERM or Ctrl-C stops it"
    );
    let shutdown = Shutdown::new();
    super::watch_signals(shutdown.clone(), |first| {
        if first {
            tracing::info!(
                "stopping: each pipeline commits the batch in flight with its checkpoint \
                 (a second signal exits at once)"
            );
        } else {
            tracing::warn!("exiting at once on a second signal; what was committed stays");
        }
    });
    let options = ServeOptions {
        catalog_poll: args.catalog_poll,
        ..ServeOptions::default()
    };
    let api = listener.map(|listener| {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(
            listen = %addr,
            token = token.is_set(),
            "REST API at http://{addr}/api/v1 (docs at /api/v1/docs, console at /)"
        );
        api::spawn(
            listener,
            state.clone(),
            options.supervisor.clone(),
            token.clone(),
            shutdown.clone(),
        )
    });
    let served = siphon::serve(
        state,
        Arc::new(registry()),
        Arc::new(NoopObserver),
        &shutdown,
        &options,
    )
    .await;
    if let Some(api) = api {
        let _ = api.await;
    }
    lock.remove();
    let outcomes = served?;
    tracing::info!(pipelines = outcomes.len(), "service stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts the service in the background and waits until it wrote its pid
/// file (or ended). `cwd`: the folder it runs in [default: this one].
async fn daemonize(
    at: &Located,
    args: &StartArgs,
    verbose: u8,
    cwd: Option<&Path>,
) -> Result<ExitCode> {
    if let Ok(Probe::Running(info)) = probe(&at.pid_file) {
        eprintln!("error: {}", already_running(info.as_ref(), &at.pid_file));
        return Ok(ExitCode::FAILURE);
    }
    // Said here, where it can be seen, rather than lost by the detached process.
    drop(open_logs(&at.logs(), args)?);
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal("cannot find the siphon binary to start").source(e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["service", "start", "--detached"])
        .args(args.again(&at.run_dir, verbose))
        // Through the environment, so that a password stays out of `ps`.
        .env("SIPHON_STATE", &at.state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::internal("cannot start the service in the background").source(e))?;
    let pid = child.id();
    let error_log = at.logs().join("error.log");
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Ok(Probe::Running(Some(info))) = probe(&at.pid_file) {
            if info.pid == pid {
                println!(
                    "siphon service started in the background (pid {pid}); logs in {}",
                    at.logs().display()
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            match probe(&at.pid_file) {
                Ok(Probe::Running(info)) => {
                    eprintln!("error: {}", already_running(info.as_ref(), &at.pid_file));
                }
                _ => eprintln!(
                    "error: the service ended as it started ({status}); see {}",
                    error_log.display()
                ),
            }
            return Ok(ExitCode::FAILURE);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "error: the service (pid {pid}) did not write its pid file {} within {}s; see {}",
                at.pid_file.display(),
                START_WAIT.as_secs(),
                error_log.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `service stop`: SIGTERM, then waits for the service to exit.
async fn stop(at: &Located) -> Result<ExitCode> {
    let Some(info) = running(at).await? else {
        println!("no service is running (pid file {})", at.pid_file.display());
        return Ok(ExitCode::SUCCESS);
    };
    let pid = info.pid;
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::State,
                format!("the pid file {} names no process", at.pid_file.display()),
            )
        })?;
    if let Err(e) = rustix::process::kill_process(target, rustix::process::Signal::TERM) {
        if e != rustix::io::Errno::SRCH {
            return Err(Error::new(
                ErrorKind::Privilege,
                format!("cannot send SIGTERM to the service (pid {pid}): run as its user"),
            )
            .source(std::io::Error::from(e)));
        }
    }
    println!("stopping the service (pid {pid}): each pipeline commits the batch in flight");
    let asked = Instant::now();
    loop {
        let gone = matches!(probe(&at.pid_file), Ok(Probe::NotRunning(_))) && !alive(pid);
        if gone {
            println!(
                "stopped (pid {pid}, in {:.1}s)",
                asked.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if asked.elapsed() >= STOP_WAIT {
            eprintln!(
                "error: the service (pid {pid}) did not exit within {}s of SIGTERM; it may be \
                 waiting on a server. `kill -9 {pid}` ends it at once (what it committed stays, \
                 with its checkpoints)",
                STOP_WAIT.as_secs()
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the running service wrote in its pid file; `None` when none runs. A
/// service that holds the file but has not written it yet is waited for.
async fn running(at: &Located) -> Result<Option<PidInfo>> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let found = probe(&at.pid_file).map_err(|e| {
            Error::new(
                ErrorKind::State,
                format!("cannot read the pid file {}", at.pid_file.display()),
            )
            .source(e)
        })?;
        match found {
            Probe::NotRunning(_) => return Ok(None),
            Probe::Running(Some(info)) => return Ok(Some(info)),
            Probe::Running(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Probe::Running(None) => {
                return Err(Error::new(
                    ErrorKind::State,
                    format!(
                        "a process holds the pid file {} but has not written its pid in {}s",
                        at.pid_file.display(),
                        START_WAIT.as_secs()
                    ),
                ))
            }
        }
    }
}

/// `service restart`: stops the service, then starts it in the background
/// with the options it was started with (the defaults when none ran).
async fn restart(at: &Located) -> Result<ExitCode> {
    let info = match running(at).await? {
        Some(info) => {
            if info.state != at.shown {
                return Err(Error::config(format!(
                    "the service in {} runs on the state {}, not {}: pass that state with --state",
                    at.pid_file.display(),
                    info.state,
                    at.shown
                )));
            }
            let stopped = stop(at).await?;
            if stopped != ExitCode::SUCCESS {
                return Ok(stopped);
            }
            Some(info)
        }
        None => {
            println!("no service was running; starting one");
            None
        }
    };
    let recorded = info.as_ref().map(|i| {
        Recorded::try_parse_from(std::iter::once("start".to_string()).chain(i.args.clone()))
    });
    let (args, verbose) = match recorded {
        Some(Ok(r)) => (r.start, r.verbose),
        Some(Err(e)) => {
            return Err(Error::internal(format!(
                "the pid file {} holds options this siphon does not read: {e}",
                at.pid_file.display()
            )))
        }
        None => (
            Recorded::try_parse_from(["start"])
                .map_err(|e| Error::internal(e.to_string()))?
                .start,
            0,
        ),
    };
    let at = Located {
        run_dir: args.place.run_dir.clone().unwrap_or(at.run_dir.clone()),
        ..at.clone()
    };
    daemonize(&at, &args, verbose, info.as_ref().map(|i| i.cwd.as_path())).await
}

/// `service status`: whether it runs, and each pipeline's lease, last run
/// and table states from the state store.
async fn status(at: &Located) -> Result<ExitCode> {
    let found = probe(&at.pid_file).map_err(|e| {
        Error::new(
            ErrorKind::State,
            format!("cannot read the pid file {}", at.pid_file.display()),
        )
        .source(e)
    })?;
    let runs = matches!(found, Probe::Running(_));
    match &found {
        Probe::Running(Some(i)) => println!(
            "siphon service: running (pid {}, since {}, {} ago)",
            i.pid,
            i.since(),
            ago(i.started_at)
        ),
        Probe::Running(None) => println!("siphon service: starting"),
        Probe::NotRunning(Some(i)) => println!(
            "siphon service: not running (its pid file is left from pid {}, started {}, which is gone)",
            i.pid,
            i.since()
        ),
        Probe::NotRunning(None) => println!("siphon service: not running"),
    }
    println!("  state: {}", at.shown);
    if let Probe::Running(Some(i)) = &found {
        if let Some(listen) = i.args.iter().skip_while(|a| *a != "--listen").nth(1) {
            println!("  REST API: http://{listen}/api/v1 (console at /)");
        }
    }
    println!("  pid file: {}", at.pid_file.display());
    println!("  logs (--daemon): {}", at.logs().display());
    match super::open_state(Some(&at.state), None).await {
        Ok(state) => {
            if let Err(e) = pipelines(&state).await {
                println!("  pipelines: cannot be read from the state store: {e}");
            }
        }
        Err(e) => println!("  pipelines: the state store cannot be opened: {e}"),
    }
    Ok(if runs {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_RUNNING)
    })
}

/// How long ago `t` was, to the second.
fn ago(t: chrono::DateTime<chrono::Utc>) -> String {
    let s = (chrono::Utc::now() - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Prints each pipeline: its lease, its last run, its table streams.
async fn pipelines<St: StateStore>(state: &St) -> Result<()> {
    let all = state.pipelines().await?;
    let streams = state.stream_states().await?;
    println!("pipelines: {}", all.len());
    for (name, spec) in &all {
        println!(
            "  {name}: {} -> {}, mode {}, schedule {}{}",
            spec.source,
            spec.target,
            spec.mode,
            spec.schedule,
            if spec.enabled {
                ""
            } else {
                ", paused (`siphon sync enable` resumes it)"
            }
        );
        match state.lease(name).await? {
            Some(l) => println!(
                "    run by {} (lease epoch {}, until {})",
                l.holder,
                l.epoch,
                l.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => println!("    run by no worker now (its lease is free)"),
        }
        let mut recent = state
            .executions(Some(name), 2)
            .await?
            .into_iter()
            .peekable();
        if let Some(now) = recent.next_if(|e| e.status == ExecutionStatus::Running) {
            println!(
                "    running now: #{} since {}",
                now.id,
                now.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
        match recent.next() {
            Some(e) => {
                let when = e.finished_at.unwrap_or(e.started_at);
                let rows: u64 = e.tables.iter().map(|t| t.rows_read).sum();
                let mut line = format!(
                    "    last run: #{} {} at {}, {} tables, {rows} rows read",
                    e.id,
                    e.status.as_str(),
                    when.format("%Y-%m-%d %H:%M:%S UTC"),
                    e.tables.len()
                );
                if let Some(err) = &e.error {
                    line.push_str(&format!(": {err}"));
                }
                println!("{line}");
            }
            None => println!("    last run: none yet"),
        }
        for (id, st) in streams.iter().filter(|(id, _)| &id.pipeline == name) {
            println!("    {}: {st}", id.table);
        }
    }
    Ok(())
}
