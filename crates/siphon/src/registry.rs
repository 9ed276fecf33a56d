//! From a URL to a connector: the registry maps each URL scheme to the
//! connector that opens it as a source, a target or a state store, and says
//! what each connector can do.
//!
//! Adding a connector is one [`Connector`] entry in [`Registry::standard`]
//! plus the connector's own crate (which runs siphon-testkit's conformance
//! suite). What a connector cannot do is a `None` or `false` in its entry,
//! and asking for it is an error that says so.

use std::fmt;

use siphon_core::{Error, Result};
use siphon_mysql::{MySqlSink, MySqlSource};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_sqlite::{SqliteSink, SqliteSource};
use siphon_state::{PostgresStateStore, RedisStateStore, SqliteStateStore};
use siphon_stream::FileSink;

use crate::dispatch::{AnyEventSink, AnySink, AnySource, AnyStateStore, AnyTarget, BoxFuture};
use crate::url::ConnectionUrl;

/// Opens a connection as a source: `(connection name, URL)`.
pub type OpenSource = for<'a> fn(&'a str, &'a ConnectionUrl) -> BoxFuture<'a, Result<AnySource>>;

/// Opens a connection as a target: `(connection name, URL)`.
pub type OpenSink = for<'a> fn(&'a str, &'a ConnectionUrl) -> BoxFuture<'a, Result<AnySink>>;

/// Opens a connection as an event target: `(connection name, URL)`.
pub type OpenEvents = for<'a> fn(&'a str, &'a ConnectionUrl) -> BoxFuture<'a, Result<AnyEventSink>>;

/// Opens a state store from its URL.
pub type OpenState = for<'a> fn(&'a ConnectionUrl) -> BoxFuture<'a, Result<AnyStateStore>>;

/// One connector: the schemes it opens and its constructors. Every field is
/// required, so an entry says explicitly what the connector lacks.
#[derive(Debug, Clone, Copy)]
pub struct Connector {
    /// The connector's name, also its main scheme (`postgres`).
    pub name: &'static str,
    /// Every URL scheme it opens (`postgres`, `postgresql`).
    pub schemes: &'static [&'static str],
    /// Opens a source; `None` when this connector cannot be read from.
    pub source: Option<OpenSource>,
    /// Opens a table target; `None` when this connector holds no tables.
    pub sink: Option<OpenSink>,
    /// Opens an event target (changes published with their ids, checkpoints
    /// kept in the state store); `None` when this connector takes no events.
    pub events: Option<OpenEvents>,
    /// Opens a state store; `None` when siphon cannot keep its state there.
    pub state: Option<OpenState>,
    /// Whether its sources have a change log siphon reads (`mode: cdc`);
    /// such a source is made with [`AnySource::with_log`].
    pub log: bool,
}

/// What a connector can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// It can be a pipeline's source.
    pub source: bool,
    /// It can be a pipeline's target (a table target or an event target).
    pub sink: bool,
    /// As a target, it takes changes as events rather than tables.
    pub events: bool,
    /// It can hold siphon's state store.
    pub state: bool,
    /// Its sources have a change log (`mode: cdc`).
    pub log: bool,
}

impl Connector {
    /// What this connector can do.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            source: self.source.is_some(),
            sink: self.sink.is_some() || self.events.is_some(),
            events: self.events.is_some(),
            state: self.state.is_some(),
            log: self.log,
        }
    }
}

/// The connectors siphon opens connections with, by URL scheme.
#[derive(Debug, Clone)]
pub struct Registry {
    connectors: Vec<Connector>,
    urls: ParseUrl,
}

/// Makes a URL as written under a key (`connections.app`) ready to open:
/// expands `${VAR}`, checks it, and says how to show it.
pub type ParseUrl = fn(&str, &str) -> Result<ConnectionUrl>;

impl Default for Registry {
    fn default() -> Registry {
        Registry::standard()
    }
}

/// Says which connection an error concerns, its URL shown without secrets.
pub fn named(e: Error, name: &str, url: &ConnectionUrl) -> Error {
    Error::new(e.kind(), format!("connection `{name}` ({url})")).source(e)
}

impl Registry {
    /// A registry with no connector.
    pub fn empty() -> Registry {
        Registry {
            connectors: Vec::new(),
            urls: ConnectionUrl::parse,
        }
    }

    /// Every connector this version of siphon has: SQLite, PostgreSQL,
    /// MySQL and MariaDB, and files as event targets.
    pub fn standard() -> Registry {
        let mut r = Registry::empty();
        r.register(SQLITE)
            .register(POSTGRES)
            .register(MYSQL)
            .register(FILE)
            .register(REDIS);
        r
    }

    /// Adds a connector; it replaces an earlier one for the same schemes.
    pub fn register(&mut self, connector: Connector) -> &mut Registry {
        self.connectors
            .retain(|c| !c.schemes.iter().any(|s| connector.schemes.contains(s)));
        self.connectors.push(connector);
        self
    }

    /// Parses stored URLs with `parse` instead of [`ConnectionUrl::parse`]
    /// (the CLI checks a URL's shape and masks more forms of secrets).
    pub fn with_url_parser(mut self, parse: ParseUrl) -> Registry {
        self.urls = parse;
        self
    }

    /// A URL as written under `key`, ready to open.
    pub fn parse_url(&self, key: &str, written: &str) -> Result<ConnectionUrl> {
        (self.urls)(key, written)
    }

    /// Every registered connector, in the order they were registered.
    pub fn connectors(&self) -> &[Connector] {
        &self.connectors
    }

    /// The connector that opens URLs of `scheme`.
    pub fn connector(&self, scheme: &str) -> Option<&Connector> {
        self.connectors.iter().find(|c| c.schemes.contains(&scheme))
    }

    /// What the connector for this URL can do; `None` for a scheme no
    /// connector opens.
    pub fn capabilities(&self, url: &ConnectionUrl) -> Option<Capabilities> {
        self.connector(url.scheme()).map(Connector::capabilities)
    }

    /// The refusal of a connection that cannot take `role`: it names the
    /// connection and the connectors that can.
    fn cannot(
        &self,
        name: &str,
        url: &ConnectionUrl,
        role: &str,
        can: fn(&Connector) -> bool,
    ) -> Error {
        let able: Vec<String> = self
            .connectors
            .iter()
            .filter(|c| can(c))
            .map(|c| format!("{}:// connections", c.name))
            .collect();
        Error::config(format!(
            "connection `{name}` ({url}) cannot be a {role} in this version of siphon: only {} \
             are replicated so far",
            able.join(" and ")
        ))
    }

    /// Opens the source the connection `name` names.
    pub async fn open_source(&self, name: &str, url: &ConnectionUrl) -> Result<AnySource> {
        match self.connector(url.scheme()).and_then(|c| c.source) {
            Some(open) => open(name, url).await,
            None => Err(self.cannot(name, url, "source", |c| c.source.is_some())),
        }
    }

    /// Opens the state store at `url` (`key` names where the URL was given,
    /// such as `state`, in errors).
    pub async fn open_state(&self, key: &str, url: &ConnectionUrl) -> Result<AnyStateStore> {
        match self.connector(url.scheme()).and_then(|c| c.state) {
            Some(open) => open(url).await,
            None => {
                let able: Vec<String> = self
                    .connectors
                    .iter()
                    .filter(|c| c.state.is_some())
                    .map(|c| format!("{}://", c.name))
                    .collect();
                Err(Error::config(format!(
                    "{key}: `{url}` cannot hold siphon's state in this version of siphon: only {} \
                     state stores are opened so far",
                    able.join(" and ")
                )))
            }
        }
    }

    /// Opens the table target the connection `name` names; an event target
    /// is refused (use [`Registry::open_target`] for a pipeline's target).
    pub async fn open_sink(&self, name: &str, url: &ConnectionUrl) -> Result<AnySink> {
        match self.connector(url.scheme()) {
            Some(Connector {
                sink: Some(open), ..
            }) => open(name, url).await,
            Some(Connector {
                events: Some(_), ..
            }) => Err(Error::config(format!(
                "connection `{name}` ({url}) is an event target: it holds no tables, and its \
                 pipelines' checkpoints are in the state store"
            ))),
            _ => Err(self.cannot(name, url, "target", |c| {
                c.sink.is_some() || c.events.is_some()
            })),
        }
    }

    /// Opens the target the connection `name` names, of either kind.
    pub async fn open_target(&self, name: &str, url: &ConnectionUrl) -> Result<AnyTarget> {
        match self.connector(url.scheme()) {
            Some(Connector {
                sink: Some(open), ..
            }) => open(name, url).await.map(AnyTarget::Table),
            Some(Connector {
                events: Some(open), ..
            }) => open(name, url).await.map(AnyTarget::Events),
            _ => Err(self.cannot(name, url, "target", |c| {
                c.sink.is_some() || c.events.is_some()
            })),
        }
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut roles = Vec::new();
        if self.source {
            roles.push("source");
        }
        if self.events {
            roles.push("event target");
        } else if self.sink {
            roles.push("target");
        }
        if self.state {
            roles.push("state store");
        }
        if self.log {
            roles.push("change log");
        }
        f.write_str(&roles.join(", "))
    }
}

/// SQLite files: source, target and state store; no change log.
pub const SQLITE: Connector = Connector {
    name: "sqlite",
    schemes: &["sqlite"],
    source: Some(|_name, url| {
        Box::pin(async move {
            let path = siphon_sqlite::path_from_url(url.expose())?;
            Ok(AnySource::new(SqliteSource::open(path)?))
        })
    }),
    sink: Some(|_name, url| {
        Box::pin(async move {
            let path = siphon_sqlite::path_from_url(url.expose())?;
            Ok(AnySink::new(SqliteSink::open(path)?))
        })
    }),
    events: None,
    state: Some(|url| {
        Box::pin(async move {
            SqliteStateStore::open_url(url.expose())
                .await
                .map(AnyStateStore::new)
        })
    }),
    log: false,
};

/// PostgreSQL: source with its logical replication log, target, and state
/// store (`postgres://…?schema=NAME`, see [`siphon_state::PostgresStateStore`]).
pub const POSTGRES: Connector = Connector {
    name: "postgres",
    schemes: &["postgres", "postgresql"],
    source: Some(|name, url| {
        Box::pin(async move {
            PostgresSource::connect(url.expose())
                .await
                .map(AnySource::with_log)
                .map_err(|e| named(e, name, url))
        })
    }),
    sink: Some(|name, url| {
        Box::pin(async move {
            PostgresSink::connect(url.expose())
                .await
                .map(AnySink::new)
                .map_err(|e| named(e, name, url))
        })
    }),
    events: None,
    state: Some(|url| {
        Box::pin(async move {
            PostgresStateStore::open_url(url.expose())
                .await
                .map(AnyStateStore::new)
        })
    }),
    log: true,
};

/// MySQL and MariaDB (`mysql://` or `mariadb://`, one connector for both):
/// source with its binlog as the change log, and target; not a state store.
pub const MYSQL: Connector = Connector {
    name: "mysql",
    schemes: &["mysql", "mariadb"],
    source: Some(|name, url| {
        Box::pin(async move {
            MySqlSource::connect(&mysql_driver_url(url.expose()))
                .await
                .map(AnySource::with_log)
                .map_err(|e| named(e, name, url))
        })
    }),
    sink: Some(|name, url| {
        Box::pin(async move {
            MySqlSink::connect(&mysql_driver_url(url.expose()))
                .await
                .map(AnySink::new)
                .map_err(|e| named(e, name, url))
        })
    }),
    events: None,
    state: None,
    log: true,
};

/// A `mysql://` or `mariadb://` URL as the MySQL driver takes it: the
/// driver knows only `mysql://`, and both servers speak its protocol.
pub fn mysql_driver_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
            format!("mysql://{rest}")
        }
        _ => url.to_string(),
    }
}

/// Files: an event target writing JSON Lines, one file per table under the
/// URL's directory (`file:///var/lib/siphon/events`); see
/// [`siphon_stream::FileSink`].
pub const FILE: Connector = Connector {
    name: "file",
    schemes: &["file"],
    source: None,
    sink: None,
    events: Some(|name, url| {
        Box::pin(async move {
            FileSink::path_from_url(url.expose())
                .and_then(FileSink::open)
                .map(AnyEventSink::new)
                .map_err(|e| named(e, name, url))
        })
    }),
    state: None,
    log: false,
};

/// Redis: a state store only (`redis://host:port/db?prefix=NAME`, see
/// [`siphon_state::RedisStateStore`]); `rediss://` is refused with the
/// reason, as this build has no TLS.
pub const REDIS: Connector = Connector {
    name: "redis",
    schemes: &["redis", "rediss"],
    source: None,
    sink: None,
    events: None,
    state: Some(|url| {
        Box::pin(async move {
            RedisStateStore::open_url(url.expose())
                .await
                .map(AnyStateStore::new)
        })
    }),
    log: false,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_has_its_connector_and_capabilities() {
        let r = Registry::standard();
        let pg = ConnectionUrl::from_parts("postgresql://h/d", "postgresql://h/d");
        let caps = r.capabilities(&pg).unwrap();
        assert!(caps.source && caps.sink && caps.log && caps.state, "{caps}");
        let lite = ConnectionUrl::from_parts("sqlite://a.db", "sqlite://a.db");
        let caps = r.capabilities(&lite).unwrap();
        assert!(
            caps.source && caps.sink && caps.state && !caps.log,
            "{caps}"
        );
        for url in ["mysql://h/d", "mariadb://h/d"] {
            let my = ConnectionUrl::from_parts(url, url);
            let caps = r.capabilities(&my).unwrap();
            assert!(
                caps.source && caps.sink && caps.log && !caps.state,
                "{caps}"
            );
            assert_eq!(r.connector(my.scheme()).unwrap().name, "mysql");
        }
        let ms = ConnectionUrl::from_parts("sqlserver://h/d", "sqlserver://h/d");
        assert_eq!(r.capabilities(&ms), None);
    }

    #[test]
    fn a_mariadb_url_reaches_the_driver_as_mysql() {
        assert_eq!(
            mysql_driver_url("mariadb://u:pw@h:3306/d?zero_dates=null"),
            "mysql://u:pw@h:3306/d?zero_dates=null"
        );
        assert_eq!(mysql_driver_url("MariaDB://h/d"), "mysql://h/d");
        assert_eq!(mysql_driver_url("mysql://h/d"), "mysql://h/d");
    }

    #[tokio::test]
    async fn what_a_connector_lacks_is_said() {
        let mut r = Registry::standard();
        r.register(Connector {
            source: None,
            ..MYSQL
        });
        let my = ConnectionUrl::from_parts("mysql://u:pw@h/d", "mysql://u:***@h/d");
        let e = r.open_source("m", &my).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "connection `m` (mysql://u:***@h/d) cannot be a source in this version of siphon: only \
             sqlite:// connections and postgres:// connections are replicated so far"
        );
        let mut r = Registry::standard();
        r.register(Connector {
            sink: None,
            ..SQLITE
        });
        let lite = ConnectionUrl::from_parts("sqlite://x.db", "sqlite://x.db");
        let e = r.open_sink("l", &lite).await.unwrap_err().to_string();
        assert!(
            e.contains("cannot be a target") && e.contains("only postgres:// connections"),
            "{e}"
        );
        let my = ConnectionUrl::from_parts("mysql://h/d", "mysql://h/d");
        let e = r.open_state("state", &my).await.unwrap_err().to_string();
        assert_eq!(
            e,
            "state: `mysql://h/d` cannot hold siphon's state in this version of siphon: only \
             postgres:// and redis:// and sqlite:// state stores are opened so far"
        );
    }

    #[tokio::test]
    async fn redis_is_a_state_store_only_and_refuses_tls_clearly() {
        let r = Registry::standard();
        let redis = ConnectionUrl::from_parts("redis://h/0", "redis://h/0");
        let caps = r.capabilities(&redis).unwrap();
        assert!(
            caps.state && !caps.source && !caps.sink && !caps.log,
            "{caps}"
        );
        assert_eq!(caps.to_string(), "state store");
        let e = r.open_source("r", &redis).await.unwrap_err().to_string();
        assert!(e.contains("cannot be a source"), "{e}");
        let tls = ConnectionUrl::from_parts("rediss://:pw@h/0", "rediss://:***@h/0");
        let e = r.open_state("state", &tls).await.unwrap_err();
        assert_eq!(e.kind(), siphon_core::ErrorKind::Config);
        let e = e.to_string();
        assert!(e.contains("rediss:// (Redis over TLS) is not built"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
    }

    #[tokio::test]
    async fn a_file_connection_is_an_event_target_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("events").display());
        let file = ConnectionUrl::from_parts(url.clone(), url);
        let r = Registry::standard();
        let caps = r.capabilities(&file).unwrap();
        assert!(
            caps.sink && caps.events && !caps.source && !caps.state,
            "{caps}"
        );
        assert_eq!(caps.to_string(), "event target");
        match r.open_target("out", &file).await.unwrap() {
            AnyTarget::Events(e) => assert!(e.downcast_ref::<FileSink>().is_some()),
            AnyTarget::Table(t) => panic!("a file opened as a table target: {t:?}"),
        }
        let e = r.open_sink("out", &file).await.unwrap_err().to_string();
        assert!(
            e.contains("`out`") && e.contains("is an event target"),
            "{e}"
        );
        let e = r.open_source("out", &file).await.unwrap_err().to_string();
        assert!(e.contains("cannot be a source"), "{e}");
    }

    #[tokio::test]
    async fn a_sqlite_source_says_it_has_no_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        rusqlite::Connection::open(&path).unwrap();
        let url = format!("sqlite://{}", path.display());
        let lite = ConnectionUrl::from_parts(url.clone(), url);
        let source = Registry::standard().open_source("l", &lite).await.unwrap();
        assert!(!source.has_log());
        assert!(source.downcast_ref::<SqliteSource>().is_some());
        let e = siphon_core::LogSource::log_head(&source).await.unwrap_err();
        assert!(
            e.to_string().contains("cdc needs a PostgreSQL source"),
            "{e}"
        );
    }
}
