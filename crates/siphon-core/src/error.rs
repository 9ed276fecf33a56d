//! One error type for every connector, with a kind, and the one policy that
//! decides from the kind what the engine does next: retry soon, wait for an
//! operator, or never retry.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong, in terms of what to do about it. [`ErrorKind::action`]
/// says what the engine does; the error's message says what a person does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The configuration is wrong: fix the file or the command line.
    Config,
    /// The data or schema cannot be replicated as configured (a missing column, a
    /// value that does not fit, a table without a key, a row the target refuses):
    /// the same input fails again until someone fixes the table or the config.
    BadInput,
    /// A server could not be reached or dropped the connection (refused, reset,
    /// shut down): worth retrying.
    Connection,
    /// A source or target statement failed for a reason siphon does not know
    /// more about (out of memory or disk, an unexpected server error).
    Database,
    /// A checkpoint refers to a position the source no longer has.
    PositionLost,
    /// siphon's own state store failed.
    State,
    /// Stopped on request.
    Cancelled,
    /// A bug in siphon.
    Internal,
    /// A connection, a statement or a lock wait ran out of time.
    Timeout,
    /// The server refused for now and says to try again: a deadlock, a
    /// serialization failure, too many connections, a database busy or locked.
    Transient,
    /// The user siphon connects as lacks a privilege: grant it.
    Privilege,
    /// This worker no longer holds the pipeline's lease (it expired, or another
    /// worker took it).
    LeaseLost,
    /// A write carried an older lease epoch than the one the target or the
    /// state store holds: another worker runs the pipeline now.
    Fenced,
}

/// What the engine does about an error of some kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Try again after a delay that grows with each attempt: the cause is
    /// expected to go away by itself (a network blip, a deadlock, a restart).
    RetrySoon,
    /// Stop and wait for a person: the configuration, a privilege, a lost log
    /// position or a lost lease must be dealt with first.
    WaitForOperator,
    /// Never retry the same work: the data fails again until it is fixed (or a
    /// stop was requested). The table stream stops with an error naming the fix.
    Never,
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::Config,
        ErrorKind::BadInput,
        ErrorKind::Connection,
        ErrorKind::Database,
        ErrorKind::PositionLost,
        ErrorKind::State,
        ErrorKind::Cancelled,
        ErrorKind::Internal,
        ErrorKind::Timeout,
        ErrorKind::Transient,
        ErrorKind::Privilege,
        ErrorKind::LeaseLost,
        ErrorKind::Fenced,
    ];

    /// The one mapping from kind to action that every part of the engine uses.
    pub fn action(self) -> Action {
        match self {
            ErrorKind::Connection
            | ErrorKind::Timeout
            | ErrorKind::Transient
            | ErrorKind::Database
            | ErrorKind::State => Action::RetrySoon,
            ErrorKind::Config
            | ErrorKind::Privilege
            | ErrorKind::PositionLost
            | ErrorKind::LeaseLost
            // A fenced worker must never write again with its old epoch; it
            // stops the pass and runs again only once it holds a new lease.
            | ErrorKind::Fenced
            | ErrorKind::Internal => Action::WaitForOperator,
            ErrorKind::BadInput | ErrorKind::Cancelled => Action::Never,
        }
    }

    /// The kind's name as stored and shown (`bad_input`, `connection`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::BadInput => "bad_input",
            ErrorKind::Connection => "connection",
            ErrorKind::Database => "database",
            ErrorKind::PositionLost => "position_lost",
            ErrorKind::State => "state",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transient => "transient",
            ErrorKind::Privilege => "privilege",
            ErrorKind::LeaseLost => "lease_lost",
            ErrorKind::Fenced => "fenced",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::RetrySoon => "retried soon",
            Action::WaitForOperator => "waits for an operator",
            Action::Never => "not retried",
        })
    }
}

/// What the engine does after an error, with the delay for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after the delay.
    After(Duration),
    /// Stop until an operator acts.
    WaitForOperator,
    /// Never retry this work.
    Never,
}

/// Exponential backoff with jitter for [`Action::RetrySoon`]: attempt `n`
/// (1 for the first retry) waits between half and all of `base × 2ⁿ⁻¹`,
/// never more than `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The longest delay of the first attempt.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
}

impl Backoff {
    /// The engine's backoff: half a second doubling up to five minutes.
    pub const STANDARD: Backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(300),
    };

    /// The delay before attempt `attempt` (counted from 1), with `jitter` in
    /// `0.0..=1.0` choosing where between half and all of the full delay it
    /// falls. Pure, for tests; [`Backoff::delay`] draws the jitter.
    pub fn delay_with(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let full = self
            .base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap);
        let jitter = jitter.clamp(0.0, 1.0);
        full / 2 + full.mul_f64(jitter) / 2
    }

    /// The delay before attempt `attempt` (counted from 1), with random
    /// jitter so that workers retrying the same server do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, random_fraction())
    }
}

/// A number in `0.0..1.0` that differs from call to call, for jitter (the
/// standard library's randomly keyed hasher: no dependency for a jitter).
pub fn random_fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The retry policy: what to do after the `attempt`th failure in a row
/// (counted from one) of an error of `kind`. Every retry decision in siphon
/// comes from here.
pub fn retry_policy(kind: ErrorKind, attempt: u32) -> Retry {
    match kind.action() {
        Action::RetrySoon => Retry::After(Backoff::STANDARD.delay(attempt)),
        Action::WaitForOperator => Retry::WaitForOperator,
        Action::Never => Retry::Never,
    }
}

/// An error with its kind, the table and column it concerns, and its cause.
/// Messages never contain secrets: connectors redact URLs before they get here.
/// Cloning shares the cause, so one error can stop several tables and each
/// keeps the whole chain.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    table: Option<String>,
    column: Option<String>,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Error {
    /// The cause itself (not the `Arc` that shares it), so callers can
    /// downcast it to the driver's error.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `Result` with siphon's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind`; the message should name the fix.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            table: None,
            column: None,
            source: None,
        }
    }

    /// A configuration error: waits for an operator.
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    /// Data or a schema that cannot be replicated as configured: never retried.
    pub fn bad_input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadInput, message)
    }

    /// A bug in siphon.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// A connection, statement or lock wait that ran out of time: retried soon.
    pub fn timeout(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Timeout, message)
    }

    /// A refusal the server says to try again (a deadlock, a serialization
    /// failure, a busy database): retried soon.
    pub fn transient(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Transient, message)
    }

    /// A privilege the connecting user lacks: waits for an operator to grant it.
    pub fn privilege(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Privilege, message)
    }

    /// Names the table the error concerns.
    pub fn table(mut self, table: impl ToString) -> Error {
        self.table = Some(table.to_string());
        self
    }

    /// Names the column the error concerns.
    pub fn column(mut self, column: impl Into<String>) -> Error {
        self.column = Some(column.into());
        self
    }

    /// Keeps the underlying cause.
    pub fn source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(std::sync::Arc::new(e));
        self
    }

    /// Keeps an underlying cause that is already boxed (a driver's inner error).
    pub fn boxed_source(mut self, e: Box<dyn std::error::Error + Send + Sync + 'static>) -> Error {
        self.source = Some(std::sync::Arc::from(e));
        self
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The table the error concerns, if it names one.
    pub fn table_name(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// The column the error concerns, if it names one.
    pub fn column_name(&self) -> Option<&str> {
        self.column.as_deref()
    }

    /// What the engine does about this error: [`ErrorKind::action`].
    pub fn action(&self) -> Action {
        self.kind.action()
    }

    /// The retry policy for this error after its first attempt: see
    /// [`retry_policy`] for later attempts.
    pub fn retry(&self) -> Retry {
        retry_policy(self.kind, 1)
    }

    /// The same error with another kind (a driver error that siphon knows
    /// more about than the driver did).
    pub fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }

    fn render(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.table {
            s.push_str("table ");
            s.push_str(t);
            if let Some(c) = &self.column {
                s.push_str(", column ");
                s.push_str(c);
            }
            s.push_str(": ");
        } else if let Some(c) = &self.column {
            s.push_str("column ");
            s.push_str(c);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        if let Some(src) = &self.source {
            s.push_str(": ");
            s.push_str(&src.to_string());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_table_column_and_cause() {
        let io = std::io::Error::other("disk full");
        let e = Error::bad_input("no such column; set `cursor` to an existing column")
            .table("main.orders")
            .column("updatd_at")
            .source(io);
        assert_eq!(
            e.to_string(),
            "table main.orders, column updatd_at: no such column; set `cursor` to an existing column: disk full"
        );
        assert_eq!(e.retry(), Retry::Never);
        assert!(matches!(
            Error::new(ErrorKind::Connection, "x").retry(),
            Retry::After(_)
        ));
        // The cause is kept as a source, not only as text.
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }

    #[test]
    fn each_kind_maps_to_one_action() {
        use Action::*;
        for (kind, action) in [
            (ErrorKind::Connection, RetrySoon),
            (ErrorKind::Timeout, RetrySoon),
            (ErrorKind::Transient, RetrySoon),
            (ErrorKind::Database, RetrySoon),
            (ErrorKind::State, RetrySoon),
            (ErrorKind::Config, WaitForOperator),
            (ErrorKind::Privilege, WaitForOperator),
            (ErrorKind::PositionLost, WaitForOperator),
            (ErrorKind::LeaseLost, WaitForOperator),
            (ErrorKind::Fenced, WaitForOperator),
            (ErrorKind::Internal, WaitForOperator),
            (ErrorKind::BadInput, Never),
            (ErrorKind::Cancelled, Never),
        ] {
            assert_eq!(kind.action(), action, "{kind}");
            let retry = retry_policy(kind, 3);
            match action {
                RetrySoon => assert!(matches!(retry, Retry::After(_)), "{kind}"),
                WaitForOperator => assert_eq!(retry, Retry::WaitForOperator, "{kind}"),
                Never => assert_eq!(retry, Retry::Never, "{kind}"),
            }
        }
    }

    #[test]
    fn kinds_are_stored_by_name() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
        }
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_its_cap() {
        let b = Backoff::STANDARD;
        assert_eq!(b.delay_with(1, 1.0), Duration::from_millis(500));
        assert_eq!(b.delay_with(1, 0.0), Duration::from_millis(250));
        assert_eq!(b.delay_with(4, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay_with(4, 0.0), Duration::from_secs(2));
        for attempt in [11, 12, 40, u32::MAX] {
            assert_eq!(b.delay_with(attempt, 1.0), b.cap, "{attempt}");
            assert_eq!(b.delay_with(attempt, 0.0), b.cap / 2, "{attempt}");
        }
        let mut seen = std::collections::HashSet::new();
        for attempt in 1..=20 {
            let d = b.delay(attempt);
            let full = b.delay_with(attempt, 1.0);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            seen.insert(b.delay(3));
        }
        assert!(seen.len() > 1, "the jitter never varies: {seen:?}");
    }
}
