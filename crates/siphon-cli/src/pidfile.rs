//! The service's pid file: held under an exclusive lock by the running
//! service, so that two services cannot both start on it, and read by `service
//! stop` and `service status` to find the service.
//!
//! The lock (`flock`), not the pid in the file, says whether a service runs:
//! the kernel releases it when the process ends, however it ends, and a pid
//! may be reused by another process. A file left by a service that died is
//! stale and is replaced by the next start.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rustix::fs::{flock, FlockOperation};

/// The pid file's name, in its folder.
pub const PID_FILE: &str = "service.pid";

/// What a service writes in its pid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidInfo {
    /// The service's process id.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its state store, with any password hidden.
    pub state: String,
    /// The folder it was started in.
    pub cwd: PathBuf,
    /// The `service start` options it was started with (for `restart`).
    pub args: Vec<String>,
}

impl PidInfo {
    /// The file's text: the pid alone on the first line (as tools that read pid
    /// files expect), then `key=value` lines.
    fn text(&self) -> String {
        format!(
            "{}\nstarted_at={}\nstate={}\ncwd={}\nargs={}\n",
            self.pid,
            self.started_at.to_rfc3339(),
            self.state,
            self.cwd.display(),
            serde_json::to_string(&self.args).unwrap_or_else(|_| "[]".into())
        )
    }

    /// Reads what [`PidInfo::text`] wrote; `None` for an empty or partly
    /// written file.
    fn parse(text: &str) -> Option<PidInfo> {
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let mut info = PidInfo {
            pid,
            started_at: DateTime::<Utc>::MIN_UTC,
            state: String::new(),
            cwd: PathBuf::new(),
            args: Vec::new(),
        };
        let mut started = false;
        for line in lines {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "started_at" => {
                    info.started_at = DateTime::parse_from_rfc3339(value).ok()?.to_utc();
                    started = true;
                }
                "state" => info.state = value.to_string(),
                "cwd" => info.cwd = PathBuf::from(value),
                "args" => info.args = serde_json::from_str(value).ok()?,
                _ => {}
            }
        }
        started.then_some(info)
    }

    /// When it started, as messages show it.
    pub fn since(&self) -> String {
        self.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }
}

/// The pid file of a running service, locked until it is dropped or removed.
#[derive(Debug)]
pub struct PidLock {
    file: File,
    path: PathBuf,
}

/// Why [`PidLock::acquire`] did not get the lock.
#[derive(Debug)]
pub enum Refused {
    /// A live process holds it; what it wrote, when it wrote it already.
    Running(Option<PidInfo>),
    /// The file could not be created or locked.
    Io(io::Error),
}

impl PidLock {
    /// Takes the pid file at `path` (created, with its folder, when missing)
    /// under an exclusive lock. A file whose lock nobody holds is stale and is
    /// taken over. Of two processes racing, exactly one gets it.
    pub fn acquire(path: &Path) -> Result<PidLock, Refused> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(Refused::Io)?;
        }
        // A `status` probe holds a shared lock for an instant: ask again for a
        // little while before saying that a service runs.
        let patience = Instant::now() + Duration::from_secs(1);
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(Refused::Io)?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    // The previous holder may have removed the file between
                    // our open and our lock: then this lock guards nothing.
                    let same = match (file.metadata(), std::fs::metadata(path)) {
                        (Ok(held), Ok(named)) => {
                            held.ino() == named.ino() && held.dev() == named.dev()
                        }
                        _ => false,
                    };
                    if same {
                        return Ok(PidLock {
                            file,
                            path: path.to_path_buf(),
                        });
                    }
                }
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    let info = read_info(path);
                    let holder_alive = info.as_ref().is_some_and(|i| alive(i.pid));
                    if holder_alive || Instant::now() >= patience {
                        return Err(Refused::Running(info));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Refused::Io(e.into())),
            }
        }
    }

    /// Writes `info` in place of what the file held.
    pub fn write(&mut self, info: &PidInfo) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(info.text().as_bytes())?;
        self.file.sync_all()
    }

    /// The pid file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the pid file, then lets the lock go.
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the pid file");
        }
    }
}

/// Whether a service holds the pid file, and what it says.
#[derive(Debug)]
pub enum Probe {
    /// A live process holds the lock; what it wrote (`None` while it starts).
    Running(Option<PidInfo>),
    /// No process holds it; what a service that ended left (`None` when
    /// there is no file).
    NotRunning(Option<PidInfo>),
}

/// Whether a service holds the pid file at `path`, without disturbing it.
pub fn probe(path: &Path) -> io::Result<Probe> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Probe::NotRunning(None)),
        Err(e) => return Err(e),
    };
    let info = read_info(path);
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        // Dropping the file lets the shared lock go at once.
        Ok(()) => Ok(Probe::NotRunning(info)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(Probe::Running(info)),
        Err(e) => Err(e.into()),
    }
}

/// What the pid file at `path` says, when it says something whole.
fn read_info(path: &Path) -> Option<PidInfo> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    PidInfo::parse(&text)
}

/// Whether a process with this id exists (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => !zombie(pid),
        // It exists, and belongs to someone else.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Whether `/proc` says the process is a zombie (ended, not yet reaped).
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32) -> PidInfo {
        PidInfo {
            pid,
            started_at: DateTime::parse_from_rfc3339("2026-12-02T06:00:00Z")
                .unwrap()
                .to_utc(),
            state: "sqlite:///tmp/state.db".into(),
            cwd: PathBuf::from("/tmp"),
            args: vec!["--log-keep".into(), "5".into()],
        }
    }

    #[test]
    fn the_file_reads_back_what_was_written() {
        let i = info(42);
        assert_eq!(PidInfo::parse(&i.text()), Some(i));
        assert_eq!(PidInfo::parse(""), None);
        assert_eq!(PidInfo::parse("42\n"), None, "a partly written file");
    }

    #[test]
    fn one_holder_at_a_time_and_a_released_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join(PID_FILE);
        let mut held = PidLock::acquire(&path).unwrap();
        held.write(&info(std::process::id())).unwrap();
        match PidLock::acquire(&path) {
            Err(Refused::Running(Some(i))) => assert_eq!(i.pid, std::process::id()),
            other => panic!("a second holder: {other:?}"),
        }
        assert!(matches!(probe(&path).unwrap(), Probe::Running(Some(_))));
        drop(held);
        // Left behind, as by a service that died: stale, and taken over.
        assert!(matches!(probe(&path).unwrap(), Probe::NotRunning(Some(_))));
        let again = PidLock::acquire(&path).unwrap();
        again.remove();
        assert!(matches!(probe(&path).unwrap(), Probe::NotRunning(None)));
    }
}
