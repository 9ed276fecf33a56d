//! A throwaway MariaDB server: `mariadb-install-db` plus `mariadbd` in a
//! temporary directory, on 127.0.0.1 and a free port, with the binary log on
//! in ROW format, GTID strict mode, and a `root` user without password.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::instance::{Instance, Shared, StopSignal};
use crate::util::{find_binary, run_client, same_path, unique_name, HOST};
use crate::{sys, Error};

/// The `server_id` of every test server.
pub const SERVER_ID: u32 = 1;

/// InnoDB options used by both the bootstrap and the server. Durability is
/// off for speed (`nosync`): a test server never outlives a machine crash.
const INNODB_OPTIONS: &[&str] = &[
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=32M",
    "--innodb-use-native-aio=0",
    "--innodb-flush-method=nosync",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
];

/// Makes `root` reachable over TCP from any loopback address, without password.
const GRANT_ROOT: &str = "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; \
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; \
    CREATE USER IF NOT EXISTS 'root'@'%'; \
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION; \
    FLUSH PRIVILEGES";

/// A running MariaDB test server; stopped and deleted on drop.
///
/// ```no_run
/// let db = siphon_testkit::MariaDb::start()?;
/// assert_eq!(db.query("SELECT @@binlog_format")?, "ROW");
/// let url = db.create_database()?; // mysql://root@127.0.0.1:PORT/t_PID_N
/// # let _ = url;
/// # Ok::<(), siphon_testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct MariaDb {
    instance: Instance,
    port: u16,
    client: PathBuf,
    command: ServerCommand,
}

/// What builds the `mariadbd` command line, kept to start it again.
#[derive(Debug)]
struct ServerCommand {
    mariadbd: PathBuf,
    dir: PathBuf,
    user: &'static [&'static str],
    extra: Vec<String>,
}

impl ServerCommand {
    /// `mariadbd` with this server's options, on `port`.
    fn at(&self, port: u16) -> Command {
        let dir = &self.dir;
        let mut cmd = Command::new(&self.mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("mysql.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--bind-address={HOST}"))
            .arg("--skip-networking=0")
            .args(self.user)
            .args([
                "--log-bin=mysql-bin",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                &format!("--server-id={SERVER_ID}"),
                "--gtid-strict-mode=ON",
                "--log-slave-updates=ON",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--max-connections=500",
                "--max-allowed-packet=64M",
            ])
            .args(INNODB_OPTIONS)
            .args(&self.extra)
            .current_dir(dir);
        cmd
    }
}

impl MariaDb {
    /// Starts a new server and waits until `root` can connect over TCP.
    ///
    /// Options: `log_bin`, `binlog_format=ROW`, `binlog_row_image=FULL`,
    /// `server_id=1`, `gtid_strict_mode=ON`, `log_slave_updates=ON`,
    /// `skip_name_resolve`, utf8mb4 as the server character set.
    pub fn start() -> Result<Self, Error> {
        Self::start_with_args(&[])
    }

    /// Starts a new server with extra `mariadbd` options appended after the
    /// defaults (so they override them), e.g. `&["--binlog-row-image=MINIMAL"]`.
    pub fn start_with_args(extra: &[&str]) -> Result<Self, Error> {
        let install_db = find_binary("mariadb-install-db")?;
        let mariadbd = find_binary("mariadbd")?;
        let client = find_binary("mariadb")?;
        // mariadbd refuses to run as root unless told to.
        let user: &[&str] = if sys::is_root() {
            &["--user=root"]
        } else {
            &[]
        };

        let mut instance = Instance::new(
            "MariaDB",
            "siphon-mariadb-",
            StopSignal::Term,
            "mariadbd.log",
        )?;
        let dir = instance.dir().to_path_buf();
        let data_dir = dir.join("data");
        let socket = dir.join("mysql.sock");

        let mut cmd = Command::new(&install_db);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data_dir.display()))
            .args(user)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            // The bootstrap's own temporary tables go in this server's folder:
            // two servers bootstrapping at once in the shared /tmp can collide
            // on a temporary table's file name.
            .arg(format!("--tmpdir={}", dir.display()))
            .args(INNODB_OPTIONS)
            // Skip the slow shutdown work at the end of the bootstrap.
            .arg("--innodb-fast-shutdown=3")
            .current_dir(&dir);
        instance.run_setup(cmd, "mariadb-install-db.log")?;

        let command = ServerCommand {
            mariadbd,
            dir: dir.clone(),
            user,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        let port = instance.launch(
            |port| command.at(port),
            |_port| {
                run_client(socket_command(&client, &socket, "SELECT 1"))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        )?;
        let server = MariaDb {
            instance,
            port,
            client,
            command,
        };
        // The socket is ours by its path; over TCP, make sure the server that
        // answers is this one (its data directory), not another on the port.
        let tcp_datadir = run_client(socket_command(&server.client, &socket, GRANT_ROOT))
            .and_then(|_| server.query("SELECT @@datadir"))
            .map_err(|e| {
                server
                    .instance
                    .start_error(format!("setting up root over TCP failed: {e}"))
            })?;
        if !same_path(Path::new(&tcp_datadir), &data_dir) {
            return Err(server.instance.start_error(format!(
                "port {port} is served from {tcp_datadir}, not from this server"
            )));
        }
        Ok(server)
    }

    /// Stops the server (SIGTERM: a clean shutdown; SIGKILL if it takes over
    /// 10 s), keeping its data directory and binary logs, and reaps it; a
    /// server already killed (e.g. SIGKILL to [`MariaDb::pid`]) is only
    /// reaped. [`MariaDb::start_again`] starts it on the same port. For a
    /// server of one's own ([`MariaDb::start`]), never the shared one.
    pub fn stop(&mut self) {
        self.instance.stop_server();
    }

    /// Starts the server stopped by [`MariaDb::stop`] again, with the same
    /// options, data directory and port, and waits until `root` can connect
    /// over its socket.
    pub fn start_again(&mut self) -> Result<(), Error> {
        let command = self.command.at(self.port);
        let (client, socket) = (self.client.clone(), self.socket_path());
        self.instance.relaunch(command, || {
            run_client(socket_command(&client, &socket, "SELECT 1"))
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }

    /// One server shared by all tests of this test binary, started on first use.
    ///
    /// Give each test its own database ([`MariaDb::create_database`]).
    /// The server is never dropped: it is stopped and its directory removed
    /// when the test process exits (by an exit handler, or by its watchdog if
    /// the process is killed). If the start failed, every caller gets that error.
    pub fn shared() -> Result<&'static MariaDb, Error> {
        static SHARED: Shared<MariaDb> = Shared::new();
        SHARED.get(MariaDb::start, |server| &server.instance)
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `root`, without password.
    pub fn user(&self) -> &'static str {
        "root"
    }

    /// `mysql://root@127.0.0.1:PORT/` (no default database).
    pub fn url(&self) -> String {
        self.url_for("")
    }

    /// `mysql://root@127.0.0.1:PORT/DATABASE`.
    pub fn url_for(&self, database: &str) -> String {
        format!("mysql://root@{HOST}:{}/{database}", self.port)
    }

    /// Creates a database with a fresh unique name ([`crate::unique_name`]`("t")`)
    /// and returns its URL. In MySQL a database is what siphon calls a schema,
    /// so table names in a pipeline are `NAME.table`.
    pub fn create_database(&self) -> Result<String, Error> {
        self.create_database_named(&unique_name("t"))
    }

    /// Creates database `name` (quoted as an identifier) and returns its URL.
    pub fn create_database_named(&self, name: &str) -> Result<String, Error> {
        let quoted = format!("`{}`", name.replace('`', "``"));
        self.query(&format!("CREATE DATABASE {quoted}"))?;
        Ok(self.url_for(name))
    }

    /// Runs SQL as root over TCP with the `mariadb` client in batch mode
    /// (`-N -B`) and returns what it printed: one line per row, columns
    /// separated by tabs, no headers, no trailing newline.
    pub fn query(&self, sql: &str) -> Result<String, Error> {
        run_client(self.tcp_command(None, sql))
    }

    /// Like [`MariaDb::query`], with `database` as the default database.
    pub fn query_in(&self, database: &str, sql: &str) -> Result<String, Error> {
        run_client(self.tcp_command(Some(database), sql))
    }

    /// The `server_id` ([`SERVER_ID`]).
    pub fn server_id(&self) -> u32 {
        SERVER_ID
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The data directory (the binary logs `mysql-bin.*` are there too).
    pub fn data_dir(&self) -> PathBuf {
        self.instance.dir().join("data")
    }

    /// The unix socket.
    pub fn socket_path(&self) -> PathBuf {
        self.instance.dir().join("mysql.sock")
    }

    /// The server's error log.
    pub fn log_path(&self) -> &Path {
        self.instance.log_path()
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }

    fn tcp_command(&self, database: Option<&str>, sql: &str) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.args(["--no-defaults", "--protocol=TCP", "-h", HOST])
            .arg(format!("--port={}", self.port))
            .args(["-u", "root", "--connect-timeout=10", "-N", "-B"]);
        if let Some(database) = database {
            cmd.arg(format!("--database={database}"));
        }
        cmd.arg("-e").arg(sql).env_remove("MYSQL_PWD");
        cmd
    }
}

fn socket_command(client: &Path, socket: &Path, sql: &str) -> Command {
    let mut cmd = Command::new(client);
    cmd.args(["--no-defaults", "--protocol=SOCKET"])
        .arg(format!("--socket={}", socket.display()))
        .args(["-u", "root", "--connect-timeout=10", "-N", "-B", "-e", sql])
        .env_remove("MYSQL_PWD");
    cmd
}
