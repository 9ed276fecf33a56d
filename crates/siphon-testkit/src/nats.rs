//! A throwaway NATS server with JetStream: `nats-server -js` on 127.0.0.1 and
//! a free port, its JetStream store in a temporary directory.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::instance::{Instance, Shared, StopSignal};
use crate::util::{find_binary, HOST};
use crate::Error;

/// A running NATS (JetStream) test server; stopped and deleted on drop.
///
/// ```no_run
/// let nats = siphon_testkit::Nats::start()?;
/// let url = nats.url(); // nats://127.0.0.1:PORT
/// # let _ = url;
/// # Ok::<(), siphon_testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Nats {
    instance: Instance,
    port: u16,
}

impl Nats {
    /// Starts a new server and waits until it greets with JetStream enabled
    /// and answers `PING` with `PONG`.
    pub fn start() -> Result<Self, Error> {
        let binary = find_binary("nats-server")?;
        let mut instance =
            Instance::new("NATS", "siphon-nats-", StopSignal::Term, "nats-server.log")?;
        let dir = instance.dir().to_path_buf();
        // The directory's unique name doubles as the server name, which the
        // probe finds in the greeting to make sure it reached this server.
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "siphon-nats".into());
        let port = instance.launch(
            |port| {
                let mut cmd = Command::new(&binary);
                cmd.args(["-js", "-a", HOST, "-p"])
                    .arg(port.to_string())
                    .arg("-n")
                    .arg(&name)
                    .arg("-sd")
                    .arg(dir.join("js"))
                    .current_dir(&dir);
                cmd
            },
            |port| probe(port, &name),
        )?;
        Ok(Nats { instance, port })
    }

    /// One server shared by all tests of this test binary, started on first use.
    ///
    /// Give each test its own subjects and stream names ([`crate::unique_name`]).
    /// The server is never dropped: it is stopped and its directory removed
    /// when the test process exits (by an exit handler, or by its watchdog if
    /// the process is killed). If the start failed, every caller gets that error.
    pub fn shared() -> Result<&'static Nats, Error> {
        static SHARED: Shared<Nats> = Shared::new();
        SHARED.get(Nats::start, |server| &server.instance)
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{HOST}:{}", self.port)
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The JetStream store directory (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.instance.dir().join("js")
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

/// Readiness probe: the INFO greeting must carry this server's name and say
/// `"jetstream":true`, and a `PING` must be answered with `PONG`.
fn probe(port: u16, name: &str) -> Result<(), String> {
    let timeout = Duration::from_secs(2);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut info = String::new();
    reader.read_line(&mut info).map_err(|e| e.to_string())?;
    if !info.starts_with("INFO ") {
        return Err(format!("greeting was {:?}", info.trim_end()));
    }
    if !info.contains(&format!("\"server_name\":\"{name}\"")) {
        return Err(format!(
            "port {port} is not this server (greeting {:?})",
            info.trim_end()
        ));
    }
    if !info.contains("\"jetstream\":true") {
        return Err("the INFO greeting does not say \"jetstream\":true".into());
    }
    stream
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.trim_end() == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {:?}", line.trim_end()))
    }
}
