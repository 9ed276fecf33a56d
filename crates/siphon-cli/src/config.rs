//! `siphon.yaml`: reading, `${VAR}` expansion and validation, with errors that name
//! the key (and the line, where the parser knows it) and never show a secret.
//!
//! What is stored is checked as written: `${VAR}` stays unexpanded until a
//! connection is opened, so a variable needs to be set only where siphon runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use siphon_core::{
    CursorStrategy, Error, Lookback, Mode, PipelineSpec, Result, Strategy, TableFilter, TableName,
};

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

/// The kind of endpoint a URL's scheme names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mysql,
    SqlServer,
    Sqlite,
    Nats,
    Kafka,
    File,
}

/// What to say about the kinds that work, in every refusal.
pub const WORKING_KINDS: &str =
    "siphon replicates postgres:// and sqlite:// connections today (MySQL, SQL Server, NATS, Kafka and files come later)";

impl Kind {
    fn from_scheme(s: &str) -> Option<Kind> {
        Some(match s {
            "postgres" | "postgresql" => Kind::Postgres,
            "mysql" | "mariadb" => Kind::Mysql,
            "sqlserver" | "mssql" => Kind::SqlServer,
            "sqlite" => Kind::Sqlite,
            "nats" => Kind::Nats,
            "kafka" => Kind::Kafka,
            "file" => Kind::File,
            _ => return None,
        })
    }

    /// Whether this version of siphon can read from and write to this kind.
    pub fn replicated(self) -> bool {
        matches!(self, Kind::Postgres | Kind::Sqlite)
    }

    /// Whether this kind has a change log siphon reads (`mode: cdc`).
    pub fn has_log(self) -> bool {
        matches!(self, Kind::Postgres)
    }
}

/// A connection URL with `${VAR}` expanded. `Display` and `Debug` show it with the
/// password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnUrl {
    pub kind: Kind,
    expanded: String,
}

impl ConnUrl {
    /// The full URL, secrets included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.expanded
    }

    /// Expands and parses a URL as written under `key` in the config, to open it:
    /// a `${VAR}` that is not set is an error naming the variable.
    pub fn parse(key: &str, written: &str) -> Result<ConnUrl> {
        let expanded = expand_env(key, written)?;
        let kind = shape(key, &expanded)?;
        Ok(ConnUrl { kind, expanded })
    }

    /// Checks a URL as it is stored, `${VAR}` unexpanded (a variable need not be
    /// set): the scheme must name a kind siphon replicates today. Returns the
    /// kind, or `None` when a variable stands for the scheme itself.
    pub fn check_stored(key: &str, written: &str) -> Result<Option<Kind>> {
        placeholders(key, written)?;
        let scheme_part = written.split("://").next().unwrap_or_default();
        if scheme_part.contains("${") || (!written.contains("://") && written.contains("${")) {
            return Ok(None);
        }
        let kind = shape(key, written)?;
        if !kind.replicated() {
            return Err(Error::config(format!(
                "{key}: `{}` cannot be stored: {WORKING_KINDS}",
                redact(written)
            )));
        }
        if kind == Kind::Postgres && !written.contains("${") {
            // Parameters and settings siphon would refuse when opening it
            // (`sslmode=require`, a bad `connect_timeout`) are refused now.
            siphon_postgres::check_url(written)
                .map_err(|e| Error::config(format!("{key}: `{}`: {e}", redact(written))))?;
        }
        Ok(Some(kind))
    }
}

/// The kind a URL names, after checking its shape. Parts that hold a `${VAR}`
/// are not checked further (their value is not known yet).
fn shape(key: &str, url: &str) -> Result<Kind> {
    let bad =
        |why: &str| Error::config(format!("{key}: cannot parse URL `{}`: {why}", redact(url)));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        bad("it has no scheme; write it as postgres://…, mysql://…, sqlite://path.db")
    })?;
    let kind = Kind::from_scheme(scheme).ok_or_else(|| {
        bad(&format!(
            "unknown scheme `{scheme}`; use postgres or sqlite ({WORKING_KINDS})"
        ))
    })?;
    match kind {
        Kind::Sqlite | Kind::File => {
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
    Ok(kind)
}

impl fmt::Display for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.expanded))
    }
}

impl fmt::Debug for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnUrl({self})")
    }
}

/// Schemes whose user-only userinfo (`postgres://app@host`) is a user name; in
/// any other scheme (`nats://TOKEN@host`) it is a secret.
fn userinfo_is_a_name(scheme: &str) -> bool {
    matches!(
        scheme,
        "postgres" | "postgresql" | "mysql" | "mariadb" | "sqlserver" | "mssql"
    )
}

/// Whether a setting (`password=…`, `Pwd=…`, `token=…`) holds a secret.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("password")
        || k.ends_with("token")
        || k.ends_with("secret")
        || matches!(k.as_str(), "pwd" | "passwd" | "pass" | "apikey" | "api_key")
}

/// `***` for a secret; a lone `${VAR}` is shown, since it names a variable and
/// holds no secret itself.
fn mask(secret: &str) -> String {
    let lone_var =
        secret.starts_with("${") && secret.ends_with('}') && secret.matches("${").count() == 1;
    if lone_var {
        secret.to_string()
    } else {
        "***".to_string()
    }
}

/// The URL with every secret replaced by `***`: the password of `user:password@`,
/// a token written alone before `@` (`nats://TOKEN@host`), and the value of any
/// query parameter or `key=value` setting named password, pwd, token or secret
/// (in any case: `Password=`, `PWD=`, `sslpassword=`).
pub fn redact(url: &str) -> String {
    redact_settings(&redact_userinfo(url))
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if matches!(scheme, "sqlite" | "file") {
        return url.to_string();
    }
    let query = rest.find('?').unwrap_or(rest.len());
    let Some(at) = rest[..query].rfind('@') else {
        return url.to_string();
    };
    let (userinfo, host) = rest.split_at(at);
    let shown = match userinfo.split_once(':') {
        Some((user, secret)) => format!("{user}:{}", mask(secret)),
        None if userinfo_is_a_name(scheme) => userinfo.to_string(),
        None => mask(userinfo),
    };
    format!("{scheme}://{shown}{host}")
}

fn redact_settings(s: &str) -> String {
    let bytes = s.as_bytes();
    // In `a=1;b=2` strings values may hold spaces; elsewhere spaces separate.
    let spaces_separate = !s.contains(';');
    let separator = |b: u8| b == b'&' || b == b';' || (spaces_separate && b.is_ascii_whitespace());
    let mut out = String::with_capacity(s.len());
    let (mut copied, mut from) = (0, 0);
    while let Some(offset) = s[from..].find('=') {
        let eq = from + offset;
        let mut key_end = eq;
        while key_end > 0 && bytes[key_end - 1] == b' ' {
            key_end -= 1;
        }
        let mut key_start = key_end;
        while key_start > 0
            && (bytes[key_start - 1].is_ascii_alphanumeric() || bytes[key_start - 1] == b'_')
        {
            key_start -= 1;
        }
        let mut value_start = eq + 1;
        while value_start < bytes.len() && bytes[value_start] == b' ' {
            value_start += 1;
        }
        let value_end = match bytes.get(value_start) {
            Some(&quote) if quote == b'\'' || quote == b'"' => {
                let mut j = value_start + 1;
                while j < bytes.len() && bytes[j] != quote {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                (j + 1).min(bytes.len())
            }
            _ => {
                let mut j = value_start;
                while j < bytes.len() && !separator(bytes[j]) {
                    j += 1;
                }
                j
            }
        };
        // A backslash before a multi-byte character may leave `value_end`
        // inside it: move to the next character boundary.
        let value_end = (value_end..=bytes.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(bytes.len());
        if secret_key(&s[key_start..key_end]) && value_end > value_start {
            out.push_str(&s[copied..value_start]);
            out.push_str(&mask(&s[value_start..value_end]));
            copied = value_end;
        }
        from = value_end.max(eq + 1);
    }
    out.push_str(&s[copied..]);
    out
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
            if !state.starts_with("${") && shape("state", state)? != Kind::Sqlite {
                return Err(Error::config(format!(
                    "state: {} cannot hold siphon's state in this version; use a sqlite:// URL",
                    redact(state)
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
    if p.schema.routines {
        return Err(Error::config(format!(
            "pipelines.{name}.schema.routines: copying procedures, functions and triggers is not \
             available in this version; remove it or set it to false"
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
    match kinds {
        (Some(Kind::Sqlite), Some(Kind::Sqlite)) => {
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
        (Some(Kind::Postgres), Some(Kind::Postgres))
            if same_text || siphon_postgres::same_database(source_url, target_url) =>
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
    let Some(kind) = ConnUrl::check_stored(&key, source_url)? else {
        return Ok(());
    };
    if kind.has_log() {
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
             read: cdc needs a PostgreSQL source; use mode `full` or `incremental` for this source",
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
        assert_eq!(
            ConnUrl::parse("k", "sqlite://data/app.db").unwrap().kind,
            Kind::Sqlite
        );
        assert_eq!(
            ConnUrl::parse("k", "mysql://root@127.0.0.1:3306/x")
                .unwrap()
                .kind,
            Kind::Mysql
        );
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

    #[test]
    fn stored_urls_keep_variables_and_refuse_other_kinds() {
        let k = ConnUrl::check_stored("c", "postgres://a:${SIPHON_TEST_SURELY_UNSET}@h:${P}/d");
        assert_eq!(k.unwrap(), Some(Kind::Postgres));
        assert_eq!(ConnUrl::check_stored("c", "${WHOLE_URL}").unwrap(), None);
        for bad in [
            "mysql://r:pw@h/x",
            "nats://tok@h",
            "sqlserver://h",
            "kafka://h:9092",
        ] {
            let e = ConnUrl::check_stored("c", bad).unwrap_err().to_string();
            assert!(e.contains("postgres:// and sqlite://"), "{e}");
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
            ("    schema: { routines: true }\n", "schema.routines"),
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
            "    strategy: sequence\n    lookback: 1000\n",
            "    strategy: sequence\n    tables_config:\n      t: { strategy: timestamp, lookback: 1m }\n",
        ] {
            check(fits).unwrap_or_else(|e| panic!("{fits}: {e}"));
        }
    }
}
