//! Small helpers shared by the servers: free ports, unique names, finding
//! binaries, running client commands, reading log tails, looking up accounts.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::Error;

/// The loopback address every testkit server listens on.
pub const HOST: &str = "127.0.0.1";

/// Directories searched after `PATH`: `nats-server` and `mariadbd` live in
/// `/usr/sbin`, which a non-root `PATH` may lack.
const EXTRA_BIN_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// It binds `127.0.0.1:0`, reads the port the kernel chose and closes the
/// listener again. A port is never handed out twice within one process, so
/// tests running in parallel threads cannot collide with each other; a
/// collision with another process is still possible, which is why the servers
/// retry with a new port when theirs turns out to be taken.
pub fn free_port() -> Result<u16, Error> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..100 {
        let listener = TcpListener::bind((HOST, 0))
            .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", &e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("reading the address of a bound listener", &e))?
            .port();
        drop(listener);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::Io {
        context: "finding a free port on 127.0.0.1".into(),
        message: "the kernel kept returning ports this process already used".into(),
    })
}

/// Returns a name that no other call in this process returns:
/// `{prefix}_{process id}_{counter}`, e.g. `t_4711_3`.
///
/// Use it for databases, tables, streams or keys that tests sharing one
/// server must not trip over. `prefix` should be a lowercase identifier.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// Finds an executable by name in `PATH` and the usual system directories,
/// or checks an absolute path; fails with the install hint when it is absent.
pub(crate) fn find_binary(name: &str) -> Result<PathBuf, Error> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::MissingBinary {
                binary: name.to_string(),
                searched: name.to_string(),
            })
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(EXTRA_BIN_DIRS.iter().map(PathBuf::from));
    for dir in &dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Error::MissingBinary {
        binary: name.to_string(),
        searched: format!("PATH and {}", EXTRA_BIN_DIRS.join(", ")),
    })
}

/// Whether `path` is a regular file with an execute bit.
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Renders a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&shell_word(arg));
    }
    text
}

fn shell_word(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:@,+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a client command to completion and returns its standard output with
/// the trailing newline removed; a spawn failure for a missing binary becomes
/// [`Error::MissingBinary`], a non-zero exit becomes [`Error::Command`].
pub(crate) fn run_client(mut cmd: Command) -> Result<String, Error> {
    cmd.stdin(Stdio::null());
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingBinary {
                binary: cmd.get_program().to_string_lossy().into_owned(),
                searched: "PATH".into(),
            })
        }
        Err(e) => return Err(Error::io(format!("running `{}`", describe(&cmd)), &e)),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_string())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(Error::Command {
            command: describe(&cmd),
            status: output.status.to_string(),
            output: format!("{}{}", stderr, stdout),
        })
    }
}

/// Reads the last `lines` lines of a log file, starting no earlier than byte
/// `from` (the log's length before the current attempt began).
pub(crate) fn log_tail(path: &Path, from: u64, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(MAX_BYTES));
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether two paths name the same file once symlinks are resolved: the
/// probes use it to make sure they reached *this* server, not another process
/// that holds the same port.
pub(crate) fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The length of a file, or 0 when it does not exist yet.
pub(crate) fn file_len(path: &Path) -> u64 {
    path.metadata().map(|m| m.len()).unwrap_or(0)
}

/// Looks up a local account's uid and gid in `/etc/passwd`.
pub(crate) fn lookup_account(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
        assert!(unique_name("db").starts_with("db_"));
    }

    #[test]
    fn missing_binary_names_it_and_says_what_to_run() {
        let err = find_binary("siphon-no-such-binary").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("siphon-no-such-binary"), "{text}");
        assert!(text.contains("run scripts/test"), "{text}");
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word(OsStr::new("-p")), "-p");
        assert_eq!(shell_word(OsStr::new("SELECT 1")), "'SELECT 1'");
        assert_eq!(shell_word(OsStr::new("")), "''");
    }
}
