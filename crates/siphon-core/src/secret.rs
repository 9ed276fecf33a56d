//! Passwords and tokens, which never show in logs or errors: a [`Secret`]
//! type that redacts itself, and [`redact`], the one function that masks
//! every secret in every connection URL form siphon accepts.

use std::fmt;

/// A password, token or whole connection string that holds one. `Debug` and
/// `Display` show `***`; only [`Secret::expose`] gives the value, to hand to
/// a driver. Not serializable, so it cannot end up in a stored row by
/// accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself: only for handing to a driver, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Schemes whose user-only userinfo (`postgres://app@host`) is a user name;
/// in any other scheme (`nats://TOKEN@host`) userinfo alone is a token, and
/// masked.
fn userinfo_is_a_name(scheme: &str) -> bool {
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "postgres" | "postgresql" | "mysql" | "mariadb" | "sqlserver" | "mssql"
    )
}

/// Schemes whose URL names a file path, in which `@` is part of the path.
fn names_a_file(scheme: &str) -> bool {
    matches!(scheme.to_ascii_lowercase().as_str(), "sqlite" | "file")
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

/// The URL or connection string with every secret replaced by `***`: the
/// password of `user:password@`, a token written alone before `@`
/// (`nats://TOKEN@host`), and the value of any query parameter or `key=value`
/// setting named password, pwd, token or secret, in any case (`password=`,
/// `Password=`, `PASSWORD=`, `sslpassword=`), including SQL Server's
/// ADO-style `Password=…;` and PostgreSQL's `key=value` strings. A lone
/// `${VAR}` is kept, since it names a variable rather than holding a secret.
pub fn redact(url: &str) -> String {
    redact_settings(&redact_userinfo(url))
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if names_a_file(scheme) {
        return url.to_string();
    }
    let end = rest.find(['?', ';', '/']).unwrap_or(rest.len());
    // `@` may also appear in a password: the host follows the last one before
    // the path, the query or the settings.
    let Some(at) = rest[..end].rfind('@').or_else(|| {
        let query = rest.find(['?', ';']).unwrap_or(rest.len());
        rest[..query].rfind('@')
    }) else {
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
            // Quoted, or braced as ODBC and ADO strings allow (`Pwd={a;b}`).
            Some(&open) if matches!(open, b'\'' | b'"' | b'{') => {
                let close = if open == b'{' { b'}' } else { open };
                let mut j = value_start + 1;
                while j < bytes.len() && bytes[j] != close {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows() {
        let s = Secret::new("hunter2");
        assert_eq!(s.to_string(), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn every_url_form_is_redacted() {
        for (url, shown) in [
            // user:password@
            (
                "postgres://app:s3cret@db:5432/app?sslmode=require",
                "postgres://app:***@db:5432/app?sslmode=require",
            ),
            ("postgres://app:pw/1@db/app", "postgres://app:***@db/app"),
            ("mysql://root:p@ss@h:3306/x", "mysql://root:***@h:3306/x"),
            ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
            // a user name alone is a name for database schemes
            ("postgres://app@db/app", "postgres://app@db/app"),
            // a user-only token
            ("nats://s3cr3tToken@nats:4222", "nats://***@nats:4222"),
            ("NATS://s3cr3tToken@nats:4222", "NATS://***@nats:4222"),
            ("kafka://tok@broker:9092/t", "kafka://***@broker:9092/t"),
            // query parameters, any case
            (
                "postgres://db/app?user=a&password=x&Password=y&PASSWORD=z&PWD=w",
                "postgres://db/app?user=a&password=***&Password=***&PASSWORD=***&PWD=***",
            ),
            (
                "postgres://u@db/app?sslpassword=k&x=1",
                "postgres://u@db/app?sslpassword=***&x=1",
            ),
            (
                "nats://h:4222?token=abc&auth_token=def&client_secret=ghi",
                "nats://h:4222?token=***&auth_token=***&client_secret=***",
            ),
            // SQL Server ADO-style settings
            (
                "sqlserver://h:1433;database=x;Password=a b;encrypt=true",
                "sqlserver://h:1433;database=x;Password=***;encrypt=true",
            ),
            (
                "sqlserver://h:1433;User Id=sa;PASSWORD=Str0ng;",
                "sqlserver://h:1433;User Id=sa;PASSWORD=***;",
            ),
            (
                "Server=tcp:h,1433;User ID=sa;Pwd={x;y};",
                "Server=tcp:h,1433;User ID=sa;Pwd=***;",
            ),
            // PostgreSQL key=value strings
            (
                "host=db password='a b' sslpassword=z token=t dbname=app",
                "host=db password=*** sslpassword=*** token=*** dbname=app",
            ),
            // variables hold no secret themselves
            (
                "postgres://app:${APP_PW}@db/app?pwd=${X}",
                "postgres://app:${APP_PW}@db/app?pwd=${X}",
            ),
            // a path's `@` is no userinfo
            ("sqlite://data/a@b.db", "sqlite://data/a@b.db"),
            ("sqlite://a.db?password=k", "sqlite://a.db?password=***"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
