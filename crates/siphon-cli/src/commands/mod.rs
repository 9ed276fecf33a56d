//! The commands behind the CLI.

pub mod catalog;
pub mod quickstart;
pub mod run;

use siphon_core::{Error, Result};
use siphon_state::SqliteStateStore;

use crate::config::{ConnUrl, Kind};

/// The state store when none is named.
pub const DEFAULT_STATE: &str = "sqlite://.siphon/state.db";

/// Opens the state store named by `--state` / `SIPHON_STATE`, else the config file's
/// `state`, else the default.
pub async fn open_state(flag: Option<&str>, file: Option<&str>) -> Result<SqliteStateStore> {
    let (key, written) = match (flag, file) {
        (Some(f), _) => ("--state", f),
        (None, Some(f)) => ("state", f),
        (None, None) => ("state", DEFAULT_STATE),
    };
    let url = ConnUrl::parse(key, written)?;
    match url.kind {
        Kind::Sqlite => SqliteStateStore::open(siphon_sqlite::path_from_url(url.expose())?).await,
        _ => Err(Error::config(format!(
            "{key}: {url} cannot hold siphon's state in this version; use a sqlite:// URL"
        ))),
    }
}
