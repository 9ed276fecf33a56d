//! A throwaway PostgreSQL cluster: `initdb` plus `postgres` in a temporary
//! directory, listening on 127.0.0.1 and a free port, ready for logical
//! replication (`wal_level=logical`), with trust authentication for `postgres`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::instance::{Instance, Shared, StopSignal};
use crate::util::{
    find_binary, is_executable, lookup_account, run_client, same_path, unique_name, HOST,
};
use crate::{sys, Error};

/// Where Debian puts the PostgreSQL 15 server binaries (not on `PATH`).
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The superuser created by `initdb -U`.
const SUPERUSER: &str = "postgres";

/// Settings every test cluster gets, as `-c name=value` on the command line.
/// Durability is off for speed: a test server never outlives a machine crash.
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", HOST),
    ("wal_level", "logical"),
    ("max_replication_slots", "32"),
    ("max_wal_senders", "32"),
    ("max_connections", "200"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("logging_collector", "off"),
];

/// A running PostgreSQL test server; stopped and deleted on drop.
///
/// ```no_run
/// let pg = siphon_testkit::Postgres::start()?;
/// assert_eq!(pg.query("SHOW wal_level")?, "logical");
/// let url = pg.create_database()?; // postgres://postgres@127.0.0.1:PORT/t_PID_N
/// # let _ = url;
/// # Ok::<(), siphon_testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Postgres {
    instance: Instance,
    port: u16,
    bin_dir: PathBuf,
    /// The server's command line for a port, kept to start it again.
    command: ServerCommand,
}

/// What starts the server: the binary, its data directory and settings, and
/// the account it runs as.
#[derive(Debug)]
struct ServerCommand {
    postgres: PathBuf,
    dir: PathBuf,
    settings: Vec<(String, String)>,
    account: Option<(u32, u32)>,
}

impl ServerCommand {
    fn at(&self, port: u16) -> Command {
        let mut cmd = Command::new(&self.postgres);
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .current_dir(&self.dir);
        for (name, value) in &self.settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        if let Some((uid, gid)) = self.account {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Postgres {
    /// Starts a new cluster with the default settings (see the module docs)
    /// and waits until it accepts connections.
    pub fn start() -> Result<Self, Error> {
        Self::start_with_settings(&[])
    }

    /// Starts a new cluster with extra `postgresql.conf` settings, passed as
    /// `-c name=value` after the defaults (so they override them), e.g.
    /// `&[("max_slot_wal_keep_size", "64MB")]`.
    pub fn start_with_settings(settings: &[(&str, &str)]) -> Result<Self, Error> {
        Self::start_with_hba(settings, &[])
    }

    /// Like [`Postgres::start_with_settings`], with `hba` lines put at the top
    /// of `pg_hba.conf` before the server starts (the first matching line
    /// wins; the default trust lines stay below them), e.g.
    /// `&["host all alice 127.0.0.1/32 scram-sha-256"]`.
    pub fn start_with_hba(settings: &[(&str, &str)], hba: &[&str]) -> Result<Self, Error> {
        let bin_dir = bin_dir()?;
        let initdb = find_binary(&bin_dir.join("initdb").to_string_lossy())?;
        let postgres = find_binary(&bin_dir.join("postgres").to_string_lossy())?;
        let psql = psql_binary(&bin_dir)?;

        // postgres refuses to run as root: then run it as the `postgres`
        // account, which must own the directory.
        let account = if sys::is_root() {
            Some(
                lookup_account(SUPERUSER).ok_or_else(|| Error::MissingBinary {
                    binary: "the `postgres` system account (made by the postgresql package)".into(),
                    searched: "/etc/passwd".into(),
                })?,
            )
        } else {
            None
        };

        let mut instance =
            Instance::new("PostgreSQL", "siphon-pg-", StopSignal::Int, "postgres.log")?;
        let dir = instance.dir().to_path_buf();
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| {
                Error::io(
                    format!("giving {} to the postgres account", dir.display()),
                    &e,
                )
            })?;
        }
        let data_dir = dir.join("data");
        let as_account = |cmd: &mut Command| {
            cmd.current_dir(&dir);
            if let Some((uid, gid)) = account {
                cmd.uid(uid).gid(gid);
            }
        };

        let mut cmd = Command::new(&initdb);
        cmd.arg("-D")
            .arg(&data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]);
        as_account(&mut cmd);
        instance.run_setup(cmd, "initdb.log")?;
        if !hba.is_empty() {
            let path = data_dir.join("pg_hba.conf");
            let defaults = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), &e))?;
            let mut text = hba.join("\n");
            text.push('\n');
            text.push_str(&defaults);
            // Rewriting keeps the file's owner and mode.
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("writing {}", path.display()), &e))?;
        }

        let command = ServerCommand {
            postgres,
            dir: dir.clone(),
            settings: SETTINGS
                .iter()
                .chain(settings)
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            account,
        };
        let port = instance.launch(
            |port| command.at(port),
            |port| ready(&psql, port, &data_dir),
        )?;
        Ok(Postgres {
            instance,
            port,
            bin_dir,
            command,
        })
    }

    /// Stops the server (a fast shutdown: clients are disconnected), keeping
    /// its data; [`Postgres::start_again`] starts it on the same port. For a
    /// server of one's own ([`Postgres::start`]), not the shared one.
    pub fn stop(&mut self) {
        self.instance.stop_server();
    }

    /// Starts the server stopped by [`Postgres::stop`] again on the same port
    /// and waits until it accepts connections.
    pub fn start_again(&mut self) -> Result<(), Error> {
        let psql = psql_binary(&self.bin_dir)?;
        let (port, data_dir) = (self.port, self.data_dir());
        let command = self.command.at(port);
        self.instance
            .relaunch(command, || ready(&psql, port, &data_dir))
    }

    /// One server shared by all tests of this test binary, started on first use.
    ///
    /// Give each test its own database ([`Postgres::create_database`]) so tests
    /// running in parallel do not see each other's tables.
    /// The server is never dropped: it is stopped and its directory removed
    /// when the test process exits (by an exit handler, or by its watchdog if
    /// the process is killed). If the start failed, every caller gets that error.
    pub fn shared() -> Result<&'static Postgres, Error> {
        static SHARED: Shared<Postgres> = Shared::new();
        SHARED.get(Postgres::start, |server| &server.instance)
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser, `postgres` (no password; trust authentication).
    pub fn user(&self) -> &'static str {
        SUPERUSER
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `database` on this server.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@{HOST}:{}/{database}", self.port)
    }

    /// Creates a database with a fresh unique name ([`crate::unique_name`]`("t")`)
    /// and returns its URL.
    pub fn create_database(&self) -> Result<String, Error> {
        self.create_database_named(&unique_name("t"))
    }

    /// Creates database `name` (quoted as an identifier) and returns its URL.
    pub fn create_database_named(&self, name: &str) -> Result<String, Error> {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        self.query(&format!("CREATE DATABASE {quoted}"))?;
        Ok(self.url_for(name))
    }

    /// Runs SQL in database `postgres` with `psql -X -q -tA -v ON_ERROR_STOP=1`
    /// and returns what it printed: one line per row, columns separated by `|`,
    /// no headers and no trailing newline.
    pub fn query(&self, sql: &str) -> Result<String, Error> {
        self.query_in("postgres", sql)
    }

    /// Like [`Postgres::query`], in database `database`.
    pub fn query_in(&self, database: &str, sql: &str) -> Result<String, Error> {
        let psql = psql_binary(&self.bin_dir)?;
        run_client(psql_command(&psql, self.port, database, sql))
    }

    /// The temporary directory (it also holds the unix socket and the logs).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.instance.dir().join("data")
    }

    /// The directory of the unix socket (`host=` for libpq).
    pub fn socket_dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        self.instance.log_path()
    }

    /// Where `initdb`, `postgres` and `psql` were found.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }
}

/// Whether the server on `port` answers, and it is the one of `data_dir`.
fn ready(psql: &Path, port: u16, data_dir: &Path) -> Result<(), String> {
    let sql = "SELECT current_setting('data_directory')";
    let answer =
        run_client(psql_command(psql, port, "postgres", sql)).map_err(|e| e.to_string())?;
    if same_path(Path::new(&answer), data_dir) {
        Ok(())
    } else {
        Err(format!(
            "port {port} is served from {answer}, not from this server"
        ))
    }
}

/// The server binaries' directory: `$SIPHON_PG_BINDIR`, else PostgreSQL 15's
/// Debian directory, else the newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("SIPHON_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let default = PathBuf::from(DEFAULT_BIN_DIR);
    if is_executable(&default.join("postgres")) {
        return Ok(default);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            is_executable(&bin.join("postgres")).then_some((version, bin))
        })
        .max();
    match newest {
        Some((_, bin)) => Ok(bin),
        None => Err(Error::MissingBinary {
            binary: "postgres (PostgreSQL 15 server)".into(),
            searched: format!("{DEFAULT_BIN_DIR}, /usr/lib/postgresql/*/bin and $SIPHON_PG_BINDIR"),
        }),
    }
}

/// `psql` from the server's directory (no wrapper script), else from `PATH`.
fn psql_binary(bin_dir: &Path) -> Result<PathBuf, Error> {
    let local = bin_dir.join("psql");
    if is_executable(&local) {
        Ok(local)
    } else {
        find_binary("psql")
    }
}

fn psql_command(psql: &Path, port: u16, database: &str, sql: &str) -> Command {
    let mut cmd = Command::new(psql);
    cmd.args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", HOST])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", SUPERUSER, "-d", database, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10");
    for var in [
        "PGPASSWORD",
        "PGSERVICE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGAPPNAME",
        "PSQLRC",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
