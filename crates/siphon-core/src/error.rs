//! One error type for every connector, with a kind that decides retry or stop.

use std::time::Duration;

/// What went wrong, in terms of what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong: fix the file or the command line.
    Config,
    /// The data or schema cannot be replicated as configured (a missing column, a
    /// value that does not fit, a table without a key): fix the table or the config.
    BadInput,
    /// A server could not be reached or dropped the connection: worth retrying.
    Connection,
    /// A source or target statement failed.
    Database,
    /// A checkpoint refers to a position the source no longer has.
    PositionLost,
    /// siphon's own state store failed.
    State,
    /// Stopped on request.
    Cancelled,
    /// A bug in siphon.
    Internal,
}

/// What the engine does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after the delay.
    After(Duration),
    /// Stop this table stream until an operator acts.
    Never,
}

/// An error with its kind, the table and column it concerns, and its cause.
/// Messages never contain secrets: connectors redact URLs before they get here.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct Error {
    kind: ErrorKind,
    message: String,
    table: Option<String>,
    column: Option<String>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with siphon's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            table: None,
            column: None,
            source: None,
        }
    }

    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    pub fn bad_input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadInput, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
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
        self.source = Some(Box::new(e));
        self
    }

    /// Keeps an underlying cause that is already boxed (a driver's inner error).
    pub fn boxed_source(mut self, e: Box<dyn std::error::Error + Send + Sync + 'static>) -> Error {
        self.source = Some(e);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn table_name(&self) -> Option<&str> {
        self.table.as_deref()
    }

    pub fn column_name(&self) -> Option<&str> {
        self.column.as_deref()
    }

    /// The retry policy for this error's kind.
    pub fn retry(&self) -> Retry {
        match self.kind {
            ErrorKind::Connection => Retry::After(Duration::from_secs(1)),
            ErrorKind::Database | ErrorKind::State => Retry::After(Duration::from_secs(5)),
            ErrorKind::Config
            | ErrorKind::BadInput
            | ErrorKind::PositionLost
            | ErrorKind::Cancelled
            | ErrorKind::Internal => Retry::Never,
        }
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
    }
}
