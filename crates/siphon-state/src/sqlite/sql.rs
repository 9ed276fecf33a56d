//! How siphon's values are written to and read from SQLite columns: timestamps as
//! RFC 3339 text, structured values as JSON text, enums as their snake_case names.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::ToSql;
use serde::de::DeserializeOwned;
use serde::Serialize;
use siphon_core::{ExecutionStatus, Mode};

/// A timestamp as RFC 3339 text in UTC with nanoseconds (`2024-05-01T12:00:00.000000000Z`):
/// lossless, and fixed-width so that text order is time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp(pub DateTime<Utc>);

impl ToSql for Stamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(
            self.0.to_rfc3339_opts(SecondsFormat::Nanos, true),
        ))
    }
}

impl FromSql for Stamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        DateTime::parse_from_rfc3339(text)
            .map(|t| Stamp(t.with_timezone(&Utc)))
            .map_err(|e| {
                FromSqlError::Other(format!("`{text}` is not an RFC 3339 timestamp: {e}").into())
            })
    }
}

/// A value kept as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Json<T>(pub T);

impl<T: Serialize> ToSql for Json<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        serde_json::to_string(&self.0)
            .map(ToSqlOutput::from)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }
}

impl<T: DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?)
            .map(Json)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A [`Mode`] by its name (`full`, `cdc`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ModeName(pub Mode);

impl ToSql for ModeName {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.to_string()))
    }
}

impl FromSql for ModeName {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        serde_json::from_value(serde_json::Value::String(text.to_string()))
            .map(ModeName)
            .map_err(|_| FromSqlError::Other(format!("`{text}` is not a mode").into()))
    }
}

/// An [`ExecutionStatus`] by its name (`running`, `succeeded`, `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StatusName(pub ExecutionStatus);

impl ToSql for StatusName {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_str()))
    }
}

impl FromSql for StatusName {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        ExecutionStatus::parse(text).map(StatusName).ok_or_else(|| {
            FromSqlError::Other(format!("`{text}` is not an execution status").into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rusqlite::Connection;

    fn round_trip<T: ToSql + FromSql>(value: &T) -> (String, T) {
        let conn = Connection::open_in_memory().unwrap();
        conn.query_row("SELECT ?1, ?1", [value], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
    }

    #[test]
    fn values_round_trip_as_readable_text() {
        let t =
            Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 3).unwrap() + chrono::Duration::nanoseconds(7);
        assert_eq!(
            round_trip(&Stamp(t)),
            ("2024-05-01T12:00:03.000000007Z".to_string(), Stamp(t))
        );
        assert_eq!(
            round_trip(&ModeName(Mode::Incremental)),
            ("incremental".to_string(), ModeName(Mode::Incremental))
        );
        assert_eq!(
            round_trip(&StatusName(ExecutionStatus::Succeeded)),
            (
                "succeeded".to_string(),
                StatusName(ExecutionStatus::Succeeded)
            )
        );
        assert_eq!(
            round_trip(&Json(vec![1, 2])),
            ("[1,2]".to_string(), Json(vec![1, 2]))
        );
    }

    #[test]
    fn unreadable_text_is_an_error_that_shows_it() {
        let conn = Connection::open_in_memory().unwrap();
        let err = conn
            .query_row("SELECT 'yesterday'", [], |r| r.get::<_, Stamp>(0))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`yesterday` is not an RFC 3339 timestamp"),
            "{err}"
        );
        let err = conn
            .query_row("SELECT 'sideways'", [], |r| r.get::<_, ModeName>(0))
            .unwrap_err();
        assert!(
            err.to_string().contains("`sideways` is not a mode"),
            "{err}"
        );
    }
}
