//! A throwaway Redis server: `redis-server` on 127.0.0.1 and a free port,
//! without persistence (`--save "" --appendonly no`), its directory temporary.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::instance::{Instance, Shared, StopSignal};
use crate::util::{find_binary, same_path, HOST};
use crate::Error;

/// A running Redis test server; stopped and deleted on drop.
///
/// ```no_run
/// let redis = siphon_testkit::Redis::start()?;
/// let url = redis.url(); // redis://127.0.0.1:PORT/0
/// # let _ = url;
/// # Ok::<(), siphon_testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Redis {
    instance: Instance,
    port: u16,
}

impl Redis {
    /// Starts a new server and waits until it answers `PING` with `PONG`.
    pub fn start() -> Result<Self, Error> {
        let binary = find_binary("redis-server")?;
        let mut instance = Instance::new("Redis", "siphon-redis-", StopSignal::Term, "redis.log")?;
        let dir = instance.dir().to_path_buf();
        let port = instance.launch(
            |port| {
                let mut cmd = Command::new(&binary);
                cmd.arg("--port")
                    .arg(port.to_string())
                    .args(["--bind", HOST, "--save", "", "--appendonly", "no"])
                    .args(["--daemonize", "no", "--logfile", ""])
                    .arg("--dir")
                    .arg(&dir)
                    .current_dir(&dir);
                cmd
            },
            |port| probe(port, &dir),
        )?;
        Ok(Redis { instance, port })
    }

    /// One server shared by all tests of this test binary, started on first use.
    ///
    /// Give each test its own key prefix ([`crate::unique_name`]) or its own
    /// database number ([`Redis::url_db`]).
    /// The server is never dropped: it is stopped and its directory removed
    /// when the test process exits (by an exit handler, or by its watchdog if
    /// the process is killed). If the start failed, every caller gets that error.
    pub fn shared() -> Result<&'static Redis, Error> {
        static SHARED: Shared<Redis> = Shared::new();
        SHARED.get(Redis::start, |server| &server.instance)
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        self.url_db(0)
    }

    /// `redis://127.0.0.1:PORT/DB` (Redis has databases 0 to 15).
    pub fn url_db(&self, db: u8) -> String {
        format!("redis://{HOST}:{}/{db}", self.port)
    }

    /// The temporary directory (the server's working directory).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        self.instance.log_path()
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }
}

/// Readiness probe: `CONFIG GET dir` must answer with this server's
/// directory (so it is ready, and it is this server that answers).
pub(crate) fn probe(port: u16, dir: &Path) -> Result<(), String> {
    let timeout = Duration::from_secs(2);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n")
        .map_err(|e| e.to_string())?;
    // Expected: *2 / $3 / dir / $N / the directory.
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    for _ in 0..5 {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end().to_string();
        if line.is_empty() || line.starts_with('-') {
            return Err(format!("CONFIG GET dir answered {line:?}"));
        }
        lines.push(line);
    }
    if lines[0] == "*2" && same_path(Path::new(&lines[4]), dir) {
        Ok(())
    } else {
        Err(format!(
            "port {port} is not this server (CONFIG GET dir: {lines:?})"
        ))
    }
}
