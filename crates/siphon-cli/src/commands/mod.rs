//! The commands behind the CLI, and where they find the config file and the
//! state store.

pub mod catalog;
pub mod quickstart;
pub mod run;
pub mod sequences;
pub mod service;
pub mod status;

use std::path::{Path, PathBuf};

use siphon::{AnyStateStore, ConnectionUrl};
use siphon_core::Result;
use siphon_state::SqliteStateStore;

use crate::config::{ConfigFile, ConnUrl};

/// The state store when none is named.
pub const DEFAULT_STATE: &str = "sqlite://.siphon/state.db";

/// The config file used when `-f` names none, in the working directory.
pub const DEFAULT_CONFIG: &str = "siphon.yaml";

/// The config file named by `-f`, else `./siphon.yaml` when it exists (said at
/// info level), else none.
pub fn config_file(flag: Option<PathBuf>) -> Result<Option<(PathBuf, ConfigFile)>> {
    let path = match flag {
        Some(p) => p,
        None if Path::new(DEFAULT_CONFIG).is_file() => {
            tracing::info!(
                "using ./{DEFAULT_CONFIG} from the working directory (pass -f to use another file)"
            );
            PathBuf::from(DEFAULT_CONFIG)
        }
        None => return Ok(None),
    };
    let file = ConfigFile::load(&path)?;
    Ok(Some((path, file)))
}

/// Opens the state store named by `--state` / `SIPHON_STATE`, else the config file's
/// `state`, else the default: a SQLite file, or a store that several workers
/// share (`redis://…`, `postgres://…`), through the connector registry.
pub async fn open_state(flag: Option<&str>, file: Option<&str>) -> Result<AnyStateStore> {
    let (key, written) = match (flag, file) {
        (Some(f), _) => ("--state", f),
        (None, Some(f)) => ("state", f),
        (None, None) => ("state", DEFAULT_STATE),
    };
    let url = ConnUrl::parse(key, written)?;
    if url.is(&siphon::SQLITE) {
        SqliteStateStore::open(siphon_sqlite::path_from_url(url.expose())?)
            .await
            .map(AnyStateStore::new)
    } else {
        let shown = ConnectionUrl::from_parts(url.expose(), url.to_string());
        crate::connect::registry().open_state(key, &shown).await
    }
}

/// The state store for `connection` and `sync` commands: as [`open_state`], with
/// the `state` of `./siphon.yaml` when that file exists, so these commands see what
/// `siphon run` in the same folder uses.
pub async fn open_catalog_state(flag: Option<&str>) -> Result<AnyStateStore> {
    if flag.is_some() {
        return open_state(flag, None).await;
    }
    let file = config_file(None)?;
    open_state(None, file.as_ref().and_then(|(_, f)| f.state.as_deref())).await
}

/// The first Ctrl-C or SIGTERM asks every driver to stop after its current
/// chunk or batch; a second one exits at once with status 130 (committed
/// chunks and their checkpoints stay). `say(first)` tells the user, before
/// each.
pub fn watch_signals(shutdown: siphon_engine::Shutdown, say: fn(bool)) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        for round in 0..2 {
            let term_fut = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int_fut = async {
                match int.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term_fut => {}
                _ = int_fut => {}
            }
            say(round == 0);
            if round == 0 {
                shutdown.request();
            } else {
                std::process::exit(130);
            }
        }
    });
}
