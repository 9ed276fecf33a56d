//! Connection URLs: `${VAR}` taken from the environment when a connection is
//! opened, and shown with every secret masked by siphon-core's [`redact`].

use std::fmt;

pub use siphon_core::redact;
use siphon_core::{Error, Result, Secret};

/// A connection URL ready to open: `${VAR}` expanded. `Display` and `Debug`
/// show it with its secrets replaced by `***`; only [`ConnectionUrl::expose`]
/// gives the full URL, to hand to a driver.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl {
    expanded: Secret,
    shown: String,
}

impl ConnectionUrl {
    /// Expands each `${VAR}` in a URL as written under `key` (a config key
    /// such as `connections.app`, named in errors). A variable that is not set
    /// is an error naming the key and the variable.
    pub fn parse(key: &str, written: &str) -> Result<ConnectionUrl> {
        let expanded = expand_env(key, written)?;
        let shown = redact(&expanded);
        Ok(ConnectionUrl {
            expanded: Secret::new(expanded),
            shown,
        })
    }

    /// A URL expanded already, with how to show it (its secrets masked).
    pub fn from_parts(expanded: impl Into<String>, shown: impl Into<String>) -> ConnectionUrl {
        ConnectionUrl {
            expanded: Secret::new(expanded),
            shown: shown.into(),
        }
    }

    /// The full URL, secrets included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        self.expanded.expose()
    }

    /// The scheme (`postgres`, `sqlite`), or `""` when the URL has none.
    pub fn scheme(&self) -> &str {
        self.expose()
            .split_once("://")
            .map_or("", |(scheme, _)| scheme)
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionUrl({})", self.shown)
    }
}

/// Replaces each `${VAR}` with the variable's value; a missing variable is an
/// error naming `key` and the variable.
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
        let value = std::env::var(var).map_err(|_| {
            Error::config(format!(
                "{key}: environment variable {var} is not set; it is read when the connection is \
                 opened: set it in the environment siphon runs in"
            ))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let u = ConnectionUrl::from_parts(
            "x",
            redact("postgres://app:s3cret@db:5432/app?sslpassword=k&x=1"),
        );
        assert_eq!(
            u.to_string(),
            "postgres://app:***@db:5432/app?sslpassword=***&x=1"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(redact("sqlite://a@b.db"), "sqlite://a@b.db");
        // The library shows every form the CLI does: tokens, any case.
        for (url, hidden) in [
            ("nats://T0KEN@h:4222", "T0KEN"),
            ("postgres://h/d?PASSWORD=pw1", "pw1"),
            ("sqlserver://h;Password=pw2;", "pw2"),
        ] {
            let u = ConnectionUrl::parse("connections.a", url).unwrap();
            assert!(!u.to_string().contains(hidden), "{u}");
            assert!(!format!("{u:?}").contains(hidden), "{u:?}");
            assert_eq!(u.expose(), url);
        }
    }

    #[test]
    fn variables_expand_or_are_named() {
        std::env::set_var("SIPHON_URL_TEST_PASSWORD", "pw");
        let u = ConnectionUrl::parse(
            "connections.a",
            "postgres://u:${SIPHON_URL_TEST_PASSWORD}@h/d",
        )
        .unwrap();
        assert_eq!(u.expose(), "postgres://u:pw@h/d");
        assert_eq!(u.scheme(), "postgres");
        let e = ConnectionUrl::parse("connections.a", "postgres://u:${SIPHON_URL_TEST_UNSET}@h/d")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("connections.a") && e.contains("SIPHON_URL_TEST_UNSET"),
            "{e}"
        );
    }
}
