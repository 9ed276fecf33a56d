//! `siphon.yaml`: reading, `${VAR}` expansion and validation, with errors that name
//! the key (and the line, where the parser knows it) and never show a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use siphon_core::{Error, PipelineSpec, Result};

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

    /// Expands and parses a URL as written under `key` in the config.
    pub fn parse(key: &str, written: &str) -> Result<ConnUrl> {
        let expanded = expand_env(key, written)?;
        let bad = |why: &str| {
            Error::config(format!(
                "{key}: cannot parse URL `{}`: {why}",
                redact(&expanded)
            ))
        };
        let (scheme, rest) = expanded.split_once("://").ok_or_else(|| {
            bad("it has no scheme; write it as postgres://…, mysql://…, sqlite://path.db")
        })?;
        let kind = Kind::from_scheme(scheme).ok_or_else(|| {
            bad(&format!(
                "unknown scheme `{scheme}`; use postgres, mysql, sqlserver, sqlite, nats, kafka or file"
            ))
        })?;
        match kind {
            Kind::Sqlite | Kind::File => {
                if rest.is_empty() {
                    return Err(bad("it names no file"));
                }
            }
            _ => {
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
                if host_port.is_empty() {
                    return Err(bad("it names no host"));
                }
                if let Some((_, port)) = host_port
                    .rsplit_once(':')
                    .filter(|_| !host_port.ends_with(']'))
                {
                    if port.parse::<u16>().is_err() {
                        return Err(bad(&format!(
                            "port `{port}` is not a number from 0 to 65535"
                        )));
                    }
                }
            }
        }
        Ok(ConnUrl { kind, expanded })
    }
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

/// The URL with any password (`user:password@`) and `password=` parameter hidden.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                out = format!("{scheme}://{user}:***@{host}{}", &rest[end..]);
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let tail = &out[i + 9..];
        let end = tail.find('&').unwrap_or(tail.len());
        out = format!("{}password=***{}", &out[..i], &tail[end..]);
    }
    out
}

/// Replaces each `${VAR}` with the variable's value; a missing variable is an error
/// naming the key and the variable.
pub fn expand_env(key: &str, s: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::config(format!("{key}: `${{` without a closing `}}`")))?;
        let var = &after[..end];
        let value = std::env::var(var)
            .map_err(|_| Error::config(format!("{key}: environment variable {var} is not set")))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ConfigFile {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read config file {}", path.display())).source(e)
        })?;
        let file = ConfigFile::parse(&text)
            .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        Ok(file)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<ConfigFile> {
        let file: ConfigFile =
            serde_norway::from_str(text).map_err(|e| Error::config(e.to_string()))?;
        file.validate(&BTreeMap::new())?;
        Ok(file)
    }

    /// Checks every URL and every reference. `known` holds connections already in
    /// the catalog, which pipelines may also name.
    pub fn validate(&self, known: &BTreeMap<String, String>) -> Result<()> {
        if let Some(state) = &self.state {
            ConnUrl::parse("state", state)?;
        }
        for (name, url) in &self.connections {
            ConnUrl::parse(&format!("connections.{name}"), url)?;
        }
        for (name, p) in &self.pipelines {
            for (field, conn) in [("source", &p.source), ("target", &p.target)] {
                if !self.connections.contains_key(conn) && !known.contains_key(conn) {
                    let mut names: Vec<&String> =
                        self.connections.keys().chain(known.keys()).collect();
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
            validate_pipeline(name, p)?;
        }
        Ok(())
    }
}

/// Checks a pipeline's own settings.
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
    siphon_engine::validate_schedule(&p.schedule)
        .map_err(|e| Error::config(format!("pipelines.{name}.schedule: {e}")))?;
    for (t, c) in &p.tables_config {
        if c.batch_size == Some(0) {
            return Err(Error::config(format!(
                "pipelines.{name}.tables_config.{t}.batch_size: must be at least 1"
            )));
        }
    }
    Ok(())
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
    fn env_vars_expand_or_name_the_missing_one() {
        std::env::set_var("SIPHON_TEST_PW", "pw");
        assert_eq!(expand_env("k", "a:${SIPHON_TEST_PW}@h").unwrap(), "a:pw@h");
        let e = expand_env("connections.r", "${SIPHON_TEST_SURELY_UNSET}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "connections.r: environment variable SIPHON_TEST_SURELY_UNSET is not set"
        );
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
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("pipelines.p.target: unknown connection `b`"),
            "{e}"
        );
    }
}
