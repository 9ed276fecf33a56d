//! `siphon.yaml`: reading, `${VAR}` expansion and validation, with errors that name
//! the key (and the line, where the parser knows it) and never show a secret.
//!
//! What is stored is checked as written: `${VAR}` stays unexpanded until a
//! connection is opened, so a variable needs to be set only where siphon runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use siphon::{Connector, Registry};
use siphon_core::{
    CursorStrategy, Error, Lookback, Mode, PipelineSpec, Result, Secret, Strategy, TableFilter,
    TableName,
};

/// Every secret in a URL or connection string masked: siphon's one redaction,
/// shared with the library and the connectors.
pub use siphon::redact;

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where siphon keeps its state (default `sqlite://.siphon/state.db`).
    #[serde(default)]
    pub state: Option<String>,
    /// Named endpoints: `name: URL`, with `${VAR}` taken from the environment.
    #[serde(default)]
    pub connections: BTreeMap<String, String>,
    /// Named pipelines.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineSpec>,
}

/// The registry that says which URL schemes exist and what each can be
/// (source, target, state store, change log): the CLI keeps no list of its own.
fn registry() -> Registry {
    crate::connect::registry()
}

/// The schemes the registry opens, for errors: `postgres://, sqlite://`.
fn schemes(registry: &Registry, can: impl Fn(&Connector) -> bool) -> String {
    let all: Vec<String> = registry
        .connectors()
        .iter()
        .filter(|c| can(c))
        .flat_map(|c| c.schemes.iter().map(|s| format!("{s}://")))
        .collect();
    if all.is_empty() {
        "none".to_string()
    } else {
        all.join(", ")
    }
}

/// A connection URL with `${VAR}` expanded, and the connector its scheme names
/// in the registry. `Display` and `Debug` show it with every secret replaced
/// by `***`.
#[derive(Clone)]
pub struct ConnUrl {
    /// The registry's connector for the URL's scheme.
    pub connector: Connector,
    expanded: Secret,
}

impl ConnUrl {
    /// The full URL, secrets included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        self.expanded.expose()
    }

    /// Whether the URL is opened by `connector` (such as [`siphon::SQLITE`]).
    pub fn is(&self, connector: &Connector) -> bool {
        self.connector.name == connector.name
    }

    /// Expands and parses a URL as written under `key` in the config, to open it:
    /// a `${VAR}` that is not set is an error naming the variable.
    pub fn parse(key: &str, written: &str) -> Result<ConnUrl> {
        let expanded = expand_env(key, written)?;
        let connector = shape(key, &expanded)?;
        Ok(ConnUrl {
            connector,
            expanded: Secret::new(expanded),
        })
    }

    /// Checks a URL as it is stored, `${VAR}` unexpanded (a variable need not be
    /// set): the registry must know its scheme as a source or a target. Returns
    /// the connector, or `None` when a variable stands for the scheme itself.
    pub fn check_stored(key: &str, written: &str) -> Result<Option<Connector>> {
        placeholders(key, written)?;
        let scheme_part = written.split("://").next().unwrap_or_default();
        if scheme_part.contains("${") || (!written.contains("://") && written.contains("${")) {
            return Ok(None);
        }
        let connector = shape(key, written)?;
        let caps = connector.capabilities();
        if !caps.source && !caps.sink {
            return Err(Error::config(format!(
                "{key}: `{}` cannot be stored: {}:// can be {caps} but not a pipeline's source or \
                 target; connections can be {}",
                redact(written),
                connector.name,
                schemes(&registry(), |c| c.source.is_some() || c.sink.is_some())
            )));
        }
        if connector.name == siphon::POSTGRES.name && !written.contains("${") {
            // Parameters and settings siphon would refuse when opening it
            // (`sslmode=require`, a bad `connect_timeout`) are refused now.
            siphon_postgres::check_url(written)
                .map_err(|e| Error::config(format!("{key}: `{}`", redact(written))).source(e))?;
        }
        if connector.name == siphon::MYSQL.name && !written.contains("${") {
            // Its own parameters (`zero_dates`, `connect_timeout`) and the
            // driver's are checked as opening it would.
            siphon_mysql::conn::check_url(&siphon::mysql_driver_url(written))
                .map_err(|e| Error::config(format!("{key}: `{}`", redact(written))).source(e))?;
        }
        Ok(Some(connector))
    }
}

/// The registry's connector for a URL, after checking its shape. Parts that
/// hold a `${VAR}` are not checked further (their value is not known yet).
fn shape(key: &str, url: &str) -> Result<Connector> {
    let bad =
        |why: &str| Error::config(format!("{key}: cannot parse URL `{}`: {why}", redact(url)));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        bad("it has no scheme; write it as postgres://…, mysql://…, sqlite://path.db")
    })?;
    let registry = registry();
    let connector = *registry.connector(scheme).ok_or_else(|| {
        bad(&format!(
            "unknown scheme `{scheme}`; this version of siphon opens {}",
            schemes(&registry, |_| true)
        ))
    })?;
    // A file URL names a path, any other a host.
    match scheme {
        "sqlite" | "file" => {
            if rest.is_empty() {
                return Err(bad("it names no file"));
            }
        }
        _ => {
            let query = rest.find('?').unwrap_or(rest.len());
            let at = rest[..query].rfind('@').map_or(0, |i| i + 1);
            let authority = rest[at..].split(['/', '?']).next().unwrap_or_default();
            if authority.is_empty() {
                return Err(bad("it names no host"));
            }
            if let Some((_, port)) = authority
                .rsplit_once(':')
                .filter(|_| !authority.ends_with(']') && !authority.contains("${"))
            {
                if port.parse::<u16>().is_err() {
                    return Err(bad(&format!(
                        "port `{port}` is not a number from 0 to 65535"
                    )));
                }
            }
        }
    }
    Ok(connector)
}

impl fmt::Display for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.expose()))
    }
}

impl fmt::Debug for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnUrl({self})")
    }
}

/// Checks that every `${` has its `}`.
fn placeholders(key: &str, s: &str) -> Result<()> {
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::config(format!("{key}: `${{` without a closing `}}`")))?;
        rest = &after[end + 1..];
    }
    Ok(())
}

/// `${VAR}` expansion is the library's, so the CLI and code that uses siphon
/// as a library read environment variables the same way.
pub use siphon::expand_env;

/// A `sqlite://` URL with a relative path made relative to `dir` (absolute);
/// any other URL, an absolute path, or a path that starts with `${VAR}` is
/// returned as written.
pub fn resolve_url(url: &str, dir: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url.to_string();
    };
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with("${") || rest.starts_with(':') {
        return url.to_string();
    }
    let base = dir.to_string_lossy();
    format!("sqlite://{}/{rest}", base.trim_end_matches('/'))
}

impl ConfigFile {
    /// Reads and checks a config file. Relative `sqlite://` paths in it (the
    /// connections' and `state`) are made relative to the file's folder, whatever
    /// the working directory; `${VAR}` is left unexpanded.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read config file {}", path.display())).source(e)
        })?;
        let mut file = ConfigFile::parse(&text)
            .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        let absolute = std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .map_err(|e| {
                Error::config(format!("cannot find the folder of {}", path.display())).source(e)
            })?;
        let dir = absolute.parent().unwrap_or(Path::new("/"));
        file.state = file.state.map(|s| resolve_url(&s, dir));
        for url in file.connections.values_mut() {
            *url = resolve_url(url, dir);
        }
        Ok(file)
    }

    /// Refuses a file that would point a stored pipeline it does not define at
    /// another database: connection names are shared by everything in a state
    /// store, so a file that stores connection `src` with a new URL would make a
    /// pipeline of another file (or of `siphon sync add`) read or write that
    /// database from its next pass on. `connections` and `pipelines` are the
    /// store's.
    pub fn check_shared(
        &self,
        path: &Path,
        connections: &BTreeMap<String, String>,
        pipelines: &BTreeMap<String, PipelineSpec>,
    ) -> Result<()> {
        for (conn, url) in &self.connections {
            let Some(stored) = connections.get(conn).filter(|s| *s != url) else {
                continue;
            };
            let users: Vec<&str> = pipelines
                .iter()
                .filter(|(name, spec)| {
                    !self.pipelines.contains_key(*name)
                        && (&spec.source == conn || &spec.target == conn)
                })
                .map(|(name, _)| name.as_str())
                .collect();
            if !users.is_empty() {
                return Err(Error::config(format!(
                    "{}: connections.{conn}: the state store already has connection `{conn}` as {}, \
                     used by pipeline {} that this file does not define; storing {} would make it \
                     read or write another database. Give the connection another name in this file, \
                     or keep this file's pipelines in a state store of their own (`state:`)",
                    path.display(),
                    redact(stored),
                    users.join(", "),
                    redact(url)
                )));
            }
        }
        Ok(())
    }

    /// Parses config text and checks each entry on its own (URLs and pipeline
    /// settings); references between entries are checked by [`Self::validate`].
    pub fn parse(text: &str) -> Result<ConfigFile> {
        let file: ConfigFile =
            serde_norway::from_str(text).map_err(|e| Error::config(e.to_string()))?;
        file.check_entries()?;
        Ok(file)
    }

    fn check_entries(&self) -> Result<()> {
        if let Some(state) = &self.state {
            placeholders("state", state)?;
            if !state.starts_with("${") && shape("state", state)?.state.is_none() {
                return Err(Error::config(format!(
                    "state: {} cannot hold siphon's state in this version; state stores open {}",
                    redact(state),
                    schemes(&registry(), |c| c.state.is_some())
                )));
            }
        }
        for (name, url) in &self.connections {
            ConnUrl::check_stored(&format!("connections.{name}"), url)?;
        }
        for (name, p) in &self.pipelines {
            validate_pipeline(name, p)?;
        }
        Ok(())
    }

    /// Checks every URL, setting and reference. `known` holds connections already
    /// in the catalog, which pipelines may also name.
    pub fn validate(&self, known: &BTreeMap<String, String>) -> Result<()> {
        self.check_entries()?;
        for (name, p) in &self.pipelines {
            for (field, conn) in [("source", &p.source), ("target", &p.target)] {
                if !self.connections.contains_key(conn) && !known.contains_key(conn) {
                    let mut names: Vec<&String> =
                        self.connections.keys().chain(known.keys()).collect();
                    names.sort();
                    names.dedup();
                    return Err(Error::config(format!(
                        "pipelines.{name}.{field}: unknown connection `{conn}`; defined: {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )));
                }
            }
            let source = self.connections.get(&p.source).or(known.get(&p.source));
            if let Some(url) = source {
                validate_source(name, p, url)?;
            }
            let target = self.connections.get(&p.target).or(known.get(&p.target));
            if let (Some(s), Some(t)) = (source, target) {
                validate_endpoints(name, p, s, t)?;
            }
        }
        Ok(())
    }
}

/// Checks a pipeline's own settings: refuses what this version cannot do.
pub fn validate_pipeline(name: &str, p: &PipelineSpec) -> Result<()> {
    if p.batch_size == 0 {
        return Err(Error::config(format!(
            "pipelines.{name}.batch_size: must be at least 1"
        )));
    }
    if p.tables.is_empty() {
        return Err(Error::config(format!(
            "pipelines.{name}.tables: list at least one table or glob"
        )));
    }
    p.check_strategies()
        .map_err(|e| Error::config(format!("pipelines.{name}.{e}")))?;
    p.check_order()
        .map_err(|e| Error::config(format!("pipelines.{name}.{e}")))?;
    let merge = |key: &str| {
        Error::config(format!(
            "{key}: mode `merge` (two-way sync) is not available in this version; use `full`, \
             `incremental` or `cdc`"
        ))
    };
    if p.mode == Mode::Merge {
        return Err(merge(&format!("pipelines.{name}.mode")));
    }
    if p.conflict.is_some() {
        return Err(Error::config(format!(
            "pipelines.{name}.conflict: conflict handling belongs to mode `merge`, which is not \
             available in this version; remove `conflict`"
        )));
    }
    siphon_engine::validate_schedule(&p.schedule)
        .map_err(|e| Error::config(format!("pipelines.{name}.schedule: {e}")))?;
    // `incremental` reads rows by a cursor column: without one anywhere, every
    // table would fail at its first run.
    let no_cursor = |key: &str| {
        Error::config(format!(
            "{key}: mode `incremental` needs a cursor column: set `cursor` (`--cursor COLUMN` with \
             `siphon sync add`), or per table in `tables_config`, or use mode `full`"
        ))
    };
    if p.cursor.is_none() {
        if p.mode == Mode::Incremental && p.tables_config.values().all(|c| c.cursor.is_none()) {
            return Err(no_cursor(&format!("pipelines.{name}.mode")));
        }
        if let Some((t, _)) = p
            .tables_config
            .iter()
            .find(|(_, c)| c.mode == Some(Mode::Incremental) && c.cursor.is_none())
        {
            return Err(no_cursor(&format!("pipelines.{name}.tables_config.{t}")));
        }
    }
    check_lookback(&format!("pipelines.{name}"), p.lookback, p.strategy)?;
    for (t, c) in &p.tables_config {
        let strategy = c.strategy.filter(|s| s.cursor().is_some()).or(p.strategy);
        let key = format!("pipelines.{name}.tables_config.{t}");
        check_lookback(&key, c.lookback.or(p.lookback), strategy)?;
    }
    for (t, c) in &p.tables_config {
        if c.batch_size == Some(0) {
            return Err(Error::config(format!(
                "pipelines.{name}.tables_config.{t}.batch_size: must be at least 1"
            )));
        }
        if c.mode == Some(Mode::Merge) {
            return Err(merge(&format!("pipelines.{name}.tables_config.{t}.mode")));
        }
    }
    Ok(())
}

/// Refuses a `lookback` that does not fit its cursor strategy (`key` names where
/// it applies): a duration for `timestamp` cursors, a number of values for
/// `sequence` and `version` ones (`0s` and `0` re-read nothing).
fn check_lookback(key: &str, lookback: Option<Lookback>, strategy: Option<Strategy>) -> Result<()> {
    let cursor = strategy.and_then(Strategy::cursor).unwrap_or_default();
    // `0s` and `0` re-read nothing, whatever the cursor.
    let lookback = lookback.filter(|l| !l.is_zero());
    match (lookback, cursor) {
        (Some(Lookback::Amount(n)), CursorStrategy::Timestamp) => Err(Error::config(format!(
            "{key}.lookback: a `timestamp` cursor re-reads a time window: write a duration \
                 such as `5m` or `30s`, not the number {n}"
        ))),
        (Some(Lookback::Duration(_)), CursorStrategy::Sequence | CursorStrategy::Version) => {
            Err(Error::config(format!(
                "{key}.lookback: a `{}` cursor re-reads a number of values: write a number such \
                 as `1000`, not a duration",
                if cursor == CursorStrategy::Sequence {
                    "sequence"
                } else {
                    "version"
                }
            )))
        }
        _ => Ok(()),
    }
}

/// Refuses a pipeline whose target tables would be its source tables: the same
/// SQLite file, or the same PostgreSQL database without a `target_schema` that
/// keeps the copies apart. A load empties its target first, so such a pipeline
/// would empty the source and report success. `source_url` and `target_url` are
/// the connections as written; ones that differ only by a `${VAR}` are not
/// compared (their values are not known yet).
pub fn validate_endpoints(
    name: &str,
    p: &PipelineSpec,
    source_url: &str,
    target_url: &str,
) -> Result<()> {
    let same_text = source_url == target_url;
    if !same_text && (source_url.contains("${") || target_url.contains("${")) {
        return Ok(());
    }
    let kinds = (
        ConnUrl::check_stored("source", source_url).ok().flatten(),
        ConnUrl::check_stored("target", target_url).ok().flatten(),
    );
    let refuse = |what: &str, fix: &str| {
        Err(Error::config(format!(
            "pipelines.{name}: source `{}` and target `{}` are {what} ({}), so the pipeline would \
             write into the tables it reads and a load would empty them: {fix}",
            p.source,
            p.target,
            redact(source_url)
        )))
    };
    let both = |of: &Connector| {
        let is = |c: Option<Connector>| c.is_some_and(|c| c.name == of.name);
        is(kinds.0) && is(kinds.1)
    };
    // Only the MySQL connector copies routines; elsewhere the setting would
    // be taken and do nothing.
    if p.schema.routines && !both(&siphon::MYSQL) {
        return Err(Error::config(format!(
            "pipelines.{name}.schema.routines: procedures, functions, triggers and views are \
             copied from a MySQL or MariaDB source to a MySQL or MariaDB target only, and \
             source `{}` to target `{}` is not that: remove it or set it to false (between \
             PostgreSQL databases, `schema.views` copies views)",
            p.source, p.target
        )));
    }
    match kinds {
        _ if both(&siphon::SQLITE) => {
            let file = |url: &str| {
                siphon_sqlite::path_from_url(url).map(|f| std::fs::canonicalize(&f).unwrap_or(f))
            };
            match (file(source_url), file(target_url)) {
                (Ok(a), Ok(b)) if a == b => {
                    refuse("the same SQLite file", "point the target at another file")
                }
                _ => Ok(()),
            }
        }
        _ if both(&siphon::POSTGRES)
            && (same_text || siphon_postgres::same_database(source_url, target_url)) =>
        {
            let fix = "point the target at another database, or set `target_schema` to a schema \
                       the pipeline's `tables` do not select";
            match &p.target_schema {
                None => refuse("the same PostgreSQL database", fix),
                Some(schema) => {
                    // A selected table in `target_schema` would be copied onto itself.
                    let bare = TableName::new(None, schema);
                    let reads_it = p.tables.iter().any(|glob| {
                        let schema_glob = glob.split('.').next().unwrap_or_default();
                        !glob.contains('.')
                            || TableFilter {
                                include: vec![schema_glob.to_string()],
                                exclude: Vec::new(),
                            }
                            .matches(&bare)
                    });
                    if reads_it {
                        refuse(
                            &format!(
                                "the same PostgreSQL database and `tables` selects tables in \
                                 target_schema `{schema}`"
                            ),
                            fix,
                        )
                    } else {
                        Ok(())
                    }
                }
            }
        }
        _ => Ok(()),
    }
}

/// Checks that the pipeline's source can do what the pipeline asks: `cdc` needs
/// a source with a change log. `source_url` is the source connection as written.
pub fn validate_source(name: &str, p: &PipelineSpec, source_url: &str) -> Result<()> {
    let key = format!("connections.{}", p.source);
    let Some(connector) = ConnUrl::check_stored(&key, source_url)? else {
        return Ok(());
    };
    if connector.log {
        return Ok(());
    }
    let cdc_key = if p.mode == Mode::Cdc {
        Some(format!("pipelines.{name}.mode"))
    } else {
        p.tables_config
            .iter()
            .find(|(_, c)| c.mode == Some(Mode::Cdc))
            .map(|(t, _)| format!("pipelines.{name}.tables_config.{t}.mode"))
    };
    match cdc_key {
        Some(k) => Err(Error::config(format!(
            "{k}: `cdc` reads the source's change log, and source `{}` ({}) has none siphon can \
             read: cdc needs a PostgreSQL source, or a MySQL or MariaDB one; use mode `full`, `incremental` or \
             `row_count` for this source",
            p.source,
            redact(source_url)
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let u = ConnUrl::parse(
            "connections.a",
            "postgres://app:s3cret@db:5432/app?sslmode=require",
        )
        .unwrap();
        assert_eq!(
            u.to_string(),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(
            redact("sqlserver://h:1433?user=sa&password=x1&encrypt=true"),
            "sqlserver://h:1433?user=sa&password=***&encrypt=true"
        );
        let err = ConnUrl::parse("connections.a", "postgres://app:s3cret@db:54x/app")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("connections.a") && err.contains("54x") && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn every_form_of_secret_is_masked() {
        for (url, shown) in [
            ("postgres://app:pw/1@db/app", "postgres://app:***@db/app"),
            ("postgres://app@db/app", "postgres://app@db/app"),
            ("nats://s3cr3tToken@nats:4222", "nats://***@nats:4222"),
            ("redis://:pw@cache:6379", "redis://:***@cache:6379"),
            (
                "postgres://db/app?user=a&Password=x&PWD=y",
                "postgres://db/app?user=a&Password=***&PWD=***",
            ),
            (
                "sqlserver://h:1433;database=x;Password=a b;encrypt=true",
                "sqlserver://h:1433;database=x;Password=***;encrypt=true",
            ),
            (
                "host=db password='a b' sslpassword=z token=t dbname=app",
                "host=db password=*** sslpassword=*** token=*** dbname=app",
            ),
            (
                "postgres://app:${APP_PW}@db/app?pwd=${X}",
                "postgres://app:${APP_PW}@db/app?pwd=${X}",
            ),
            ("sqlite://data/a@b.db", "sqlite://data/a@b.db"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let u = ConnUrl::parse("k", "sqlite://data/app.db").unwrap();
        assert!(u.is(&siphon::SQLITE), "{}", u.connector.name);
        let u = ConnUrl::parse("k", "postgresql://app@h/x").unwrap();
        assert!(u.is(&siphon::POSTGRES), "{}", u.connector.name);
        for bad in ["localhost:5432", "oracle://x", "postgres://", "sqlite://"] {
            let e = ConnUrl::parse("connections.k", bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("connections.k: cannot parse URL"),
                "{bad}: {e}"
            );
        }
    }

    /// The schemes and what each can be come from the registry, not from a
    /// list of the CLI's own: an unknown scheme's error lists the registry's.
    #[test]
    fn schemes_and_roles_come_from_the_registry() {
        let registry = siphon::Registry::standard();
        let known: Vec<String> = registry
            .connectors()
            .iter()
            .flat_map(|c| c.schemes.iter().map(|s| format!("{s}://")))
            .collect();
        assert!(known.len() >= 3, "{known:?}");
        for bad in ["oracle://h/x", "sqlserver://r:pw@h/x", "nats://tok@h"] {
            let e = ConnUrl::parse("connections.k", bad)
                .unwrap_err()
                .to_string();
            let scheme = bad.split("://").next().unwrap();
            assert!(
                e.contains(&format!(
                    "unknown scheme `{scheme}`; this version of siphon opens {}",
                    known.join(", ")
                )),
                "{e}"
            );
            assert!(!e.contains("pw@") && !e.contains("tok@"), "{e}");
        }
        // Every scheme the registry knows is accepted, with its connector.
        for c in registry.connectors() {
            for scheme in c.schemes {
                let url = if c.capabilities().state {
                    format!("{scheme}://data/x.db")
                } else {
                    format!("{scheme}://h/x")
                };
                let u = ConnUrl::parse("k", &url).unwrap();
                assert!(u.is(c), "{url}");
                assert_eq!(u.connector.capabilities(), c.capabilities());
            }
        }
        // What a connector can be is the registry's: cdc needs a log, state a store.
        let cdc = "connections:\n  a: sqlite://a.db\n  b: sqlite://b.db\npipelines:\n  p:\n    source: a\n    target: b\n    mode: cdc\n";
        let e = ConfigFile::parse(cdc)
            .and_then(|f| f.validate(&BTreeMap::new()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("has none siphon can read"), "{e}");
        let e = ConfigFile::parse("state: mysql://u:pw@h/x\n")
            .unwrap_err()
            .to_string();
        let stores: Vec<String> = registry
            .connectors()
            .iter()
            .filter(|c| c.capabilities().state)
            .flat_map(|c| c.schemes.iter().map(|s| format!("{s}://")))
            .collect();
        assert!(
            e.contains(&format!("state stores open {}", stores.join(", "))) && !e.contains("pw@"),
            "{e}"
        );
    }

    #[test]
    fn stored_urls_keep_variables_and_refuse_other_kinds() {
        let k = ConnUrl::check_stored("c", "postgres://a:${SIPHON_TEST_SURELY_UNSET}@h:${P}/d");
        assert_eq!(k.unwrap().map(|c| c.name), Some(siphon::POSTGRES.name));
        assert!(ConnUrl::check_stored("c", "${WHOLE_URL}")
            .unwrap()
            .is_none());
        for bad in [
            "oracle://r:pw@h/x",
            "nats://tok@h",
            "sqlserver://h",
            "kafka://h:9092",
        ] {
            let e = ConnUrl::check_stored("c", bad).unwrap_err().to_string();
            assert!(e.contains("postgres://") && e.contains("sqlite://"), "{e}");
            assert!(!e.contains("pw@") && !e.contains("tok@"), "{e}");
        }
    }

    #[test]
    fn env_vars_expand_or_name_the_missing_one() {
        std::env::set_var("SIPHON_TEST_PW", "pw");
        assert_eq!(expand_env("k", "a:${SIPHON_TEST_PW}@h").unwrap(), "a:pw@h");
        let e = expand_env("connections.r", "${SIPHON_TEST_SURELY_UNSET}")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "connections.r: environment variable SIPHON_TEST_SURELY_UNSET is not set"
            ),
            "{e}"
        );
    }

    #[test]
    fn relative_sqlite_paths_follow_the_config_file() {
        let dir = Path::new("/etc/siphon");
        assert_eq!(
            resolve_url("sqlite://data/a.db?x=1", dir),
            "sqlite:///etc/siphon/data/a.db?x=1"
        );
        for kept in [
            "sqlite:///abs.db",
            "sqlite://${DATA}/a.db",
            "postgres://h/db",
        ] {
            assert_eq!(resolve_url(kept, dir), kept);
        }
    }

    #[test]
    fn unknown_keys_and_connections_are_named() {
        let e = ConfigFile::parse("connections:\n  a: sqlite://a.db\npipelines:\n  p:\n    source: a\n    target: a\n    colour: red\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour") && e.contains("line"), "{e}");
        let e = ConfigFile::parse(
            "connections:\n  a: sqlite://a.db\npipelines:\n  p:\n    source: a\n    target: b\n",
        )
        .unwrap()
        .validate(&BTreeMap::new())
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("pipelines.p.target: unknown connection `b`"),
            "{e}"
        );
    }

    #[test]
    fn schema_routines_needs_mysql_at_both_ends() {
        let check = |a: &str, b: &str| {
            ConfigFile::parse(&format!(
                "connections:\n  a: {a}\n  b: {b}\npipelines:\n  p:\n    source: a\n    \
                 target: b\n    schema: {{ routines: true }}\n"
            ))
            .and_then(|f| f.validate(&BTreeMap::new()))
        };
        check("mysql://u@h/a", "mariadb://u@h/b").unwrap();
        for (a, b) in [
            ("postgres://u@h/a", "postgres://u@h/b"),
            ("mysql://u@h/a", "postgres://u@h/b"),
            ("sqlite://a.db", "sqlite://b.db"),
        ] {
            let e = check(a, b).unwrap_err().to_string();
            assert!(
                e.contains("pipelines.p.schema.routines") && e.contains("MySQL"),
                "{e}"
            );
        }
    }

    #[test]
    fn what_this_version_cannot_do_is_refused() {
        let file = |extra: &str| {
            format!(
                "connections:\n  a: sqlite://a.db\n  b: sqlite://b.db\npipelines:\n  p:\n    source: a\n    target: b\n{extra}"
            )
        };
        for (extra, wanted) in [
            ("    mode: merge\n", "pipelines.p.mode: mode `merge`"),
            (
                "    tables_config:\n      t: { mode: merge }\n",
                "pipelines.p.tables_config.t.mode",
            ),
            ("    mode: cdc\n", "pipelines.p.mode: `cdc`"),
            (
                "    tables_config:\n      t: { mode: cdc }\n",
                "cdc needs a PostgreSQL source",
            ),
        ] {
            let e = ConfigFile::parse(&file(extra))
                .and_then(|f| f.validate(&BTreeMap::new()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(wanted), "{extra}: {e}");
        }
    }

    #[test]
    fn a_lookback_must_fit_its_cursor() {
        let file = |extra: &str| {
            format!(
                "connections:\n  a: sqlite://a.db\n  b: sqlite://b.db\npipelines:\n  p:\n    source: a\n    \
                 target: b\n    mode: incremental\n    cursor: at\n{extra}"
            )
        };
        let check = |extra: &str| {
            ConfigFile::parse(&file(extra)).and_then(|f| f.validate(&BTreeMap::new()))
        };
        for (extra, wanted) in [
            (
                "    lookback: 300\n",
                "pipelines.p.lookback: a `timestamp` cursor",
            ),
            (
                "    strategy: sequence\n    lookback: 5m\n",
                "pipelines.p.lookback: a `sequence` cursor",
            ),
            (
                "    lookback: 100\n    tables_config:\n      t: { strategy: timestamp }\n",
                "pipelines.p.lookback: a `timestamp`",
            ),
            (
                "    strategy: version\n    tables_config:\n      t: { lookback: 30s }\n",
                "pipelines.p.tables_config.t.lookback: a `version` cursor",
            ),
        ] {
            let e = check(extra).unwrap_err().to_string();
            assert!(e.contains(wanted), "{extra}: {e}");
        }
        for fits in [
            "    lookback: 5m\n",
            "    lookback: 0s\n",
            "    lookback: 0s\n    tables_config:\n      t: { strategy: sequence }\n",
            "    strategy: sequence\n    lookback: 0s\n",
            "    lookback: 0\n",
            "    strategy: sequence\n    lookback: 1000\n",
            "    strategy: sequence\n    tables_config:\n      t: { strategy: timestamp, lookback: 1m }\n",
        ] {
            check(fits).unwrap_or_else(|e| panic!("{fits}: {e}"));
        }
    }
}
