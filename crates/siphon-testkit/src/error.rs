//! The one error type of the testkit.
//!
//! Errors are meant to be read by a person looking at a failed test, so they
//! carry the whole story as text: which binary is missing and how to get it,
//! or why a server did not come up together with the last lines of its log.
//! `Debug` prints the same text as `Display`, so `.unwrap()` and `.expect()`
//! show a readable multi-line message instead of an escaped string.

use std::fmt;

/// What every "binary not found" error tells the reader to do.
pub(crate) const INSTALL_HINT: &str = "run scripts/test (it installs the Debian packages \
     postgresql, mariadb-server, redis-server, nats-server)";

/// Why a testkit server could not be started or used.
///
/// The error is `Clone` so that a failed shared server (see e.g.
/// [`crate::Postgres::shared`]) can hand the same error to every test that asks for it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A server or client binary is not installed.
    MissingBinary {
        /// The binary that was looked for, e.g. `mariadbd`.
        binary: String,
        /// Where it was looked for.
        searched: String,
    },
    /// A server was started but did not accept connections, or exited.
    Start {
        /// The kind of server, e.g. `PostgreSQL`.
        server: &'static str,
        /// What went wrong.
        reason: String,
        /// The last lines of the server's log (or of its setup tool's log).
        log_tail: String,
    },
    /// A client or setup command (psql, mariadb, initdb, …) failed.
    Command {
        /// The command line, for the reader.
        command: String,
        /// How it ended, e.g. `exit status: 1`.
        status: String,
        /// What it printed on standard error (and standard output).
        output: String,
    },
    /// An I/O operation of the testkit itself failed.
    Io {
        /// What the testkit was doing.
        context: String,
        /// The underlying error, as text.
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with what the testkit was doing when it happened.
    pub(crate) fn io(context: impl Into<String>, err: &std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingBinary { binary, searched } => write!(
                f,
                "`{binary}` is not installed (looked in {searched}): {INSTALL_HINT}"
            ),
            Error::Start {
                server,
                reason,
                log_tail,
            } => {
                write!(f, "{server} test server failed to start: {reason}")?;
                if log_tail.trim().is_empty() {
                    write!(f, " (its log is empty)")
                } else {
                    write!(
                        f,
                        "\n--- last lines of its log ---\n{}",
                        log_tail.trim_end()
                    )
                }
            }
            Error::Command {
                command,
                status,
                output,
            } => write!(f, "`{command}` failed ({status}): {}", output.trim_end()),
            Error::Io { context, message } => write!(f, "{context}: {message}"),
        }
    }
}

// Debug shows the Display text: test failures print errors with `{:?}`
// (`unwrap`, `expect`, `?` in a test returning `Result`), and a log tail with
// escaped newlines would be unreadable there.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}
