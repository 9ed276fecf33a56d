//! What a MySQL or MariaDB server offers siphon, read without changing
//! anything: which server it is, and each setting and privilege that
//! `mode: cdc` needs to read the binlog (`log_bin`, `binlog_format=ROW`,
//! `binlog_row_image=FULL`, no binlog compression or encryption, REPLICATION
//! SLAVE and REPLICATION CLIENT), each with its fix when it is missing. The
//! same rules as the checks a cdc pipeline makes before it starts (`cdc`'s
//! `checks`). `full` and `incremental` need none of them.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use siphon_core::Result;

use crate::conn::{literal, my_err, server, ConnConfig, Flavor, Server};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked: a server variable (`binlog_format`) or a privilege.
    pub name: &'static str,
    /// Whether it is as siphon needs it (a setting siphon copes without,
    /// such as `binlog_row_metadata`, is ok with a note).
    pub ok: bool,
    /// What the server has now.
    pub value: String,
    /// What siphon needs.
    pub needed: String,
    /// What needs it: `cdc`.
    pub needed_for: &'static str,
    /// How to make it so, when it is not.
    pub fix: Option<String>,
    /// What siphon does about it, when that is worth knowing.
    pub note: Option<String>,
}

/// The server and what each check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// MariaDB or MySQL, and its version.
    pub server: Server,
    /// The checks, in the order they are shown.
    pub checks: Vec<Check>,
}

/// The server variables read.
const VARIABLES: &[&str] = &[
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "log_bin_compress",
    "binlog_transaction_compression",
    "encrypt_binlog",
    "binlog_encryption",
    "binlog_row_value_options",
];

/// Connects to the `mysql://` URL and reads what siphon needs; an error only
/// when the server cannot be reached or read (never holding the password).
pub async fn probe(url: &str) -> Result<Report> {
    let config = ConnConfig::parse(url)?;
    let mut conn = config.connect("server").await?;
    let server = server(&mut conn).await?;
    let list = VARIABLES
        .iter()
        .map(|v| literal(v))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({list})"
        ))
        .await
        .map_err(|e| my_err(e, "reading the server's binlog settings"))?;
    let vars: HashMap<String, String> = rows
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_uppercase()))
        .collect();
    let grants: Vec<String> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(|e| my_err(e, "reading the user's privileges (SHOW GRANTS)"))?;
    let account: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(|e| my_err(e, "reading the user's account"))?;
    let _ = conn.disconnect().await;
    let account = account.unwrap_or_else(|| config.user().to_string());
    Ok(judge(server, &vars, &grants, &account))
}

/// `'user'@'host'` from `user@host` as `CURRENT_USER()` says it.
fn quoted_account(account: &str) -> String {
    match account.rsplit_once('@') {
        Some((user, host)) => format!("{}@{}", literal(user), literal(host)),
        None => literal(account),
    }
}

/// Which of the privileges siphon needs the `SHOW GRANTS` lines give on
/// `*.*`: (REPLICATION SLAVE, REPLICATION CLIENT, roles granted).
fn global_privileges(grants: &[String]) -> (bool, bool, Vec<String>) {
    let (mut slave, mut client, mut roles) = (false, false, Vec::new());
    for g in grants {
        let up = g.to_ascii_uppercase();
        if up.starts_with("GRANT `") || up.starts_with("GRANT '") {
            // A role granted: its privileges are not listed on this line.
            if let Some(role) = g["GRANT ".len()..].split(" TO ").next() {
                roles.push(role.to_string());
            }
            continue;
        }
        if !up.contains(" ON *.* ") {
            continue;
        }
        let all = up.contains("ALL PRIVILEGES");
        slave |= all || up.contains("REPLICATION SLAVE");
        // MariaDB 10.5+ shows REPLICATION CLIENT as BINLOG MONITOR; SUPER
        // allowed it before.
        client |= all
            || up.contains("REPLICATION CLIENT")
            || up.contains("BINLOG MONITOR")
            || up.contains("SUPER");
    }
    (slave, client, roles)
}

fn judge(
    server: Server,
    vars: &HashMap<String, String>,
    grants: &[String],
    account: &str,
) -> Report {
    let get = |k: &str| vars.get(k).map(String::as_str);
    let mut checks = Vec::new();
    let setting = |name: &'static str, now: &str, want: &str, ok: bool, restart: bool| Check {
        name,
        ok,
        value: now.to_string(),
        needed: want.to_string(),
        needed_for: "cdc",
        fix: (!ok).then(|| {
            if restart {
                format!(
                    "add `{}={want}` to the [mysqld] section of the server's configuration and \
                     restart it",
                    name.replace('_', "-")
                )
            } else {
                format!(
                    "SET GLOBAL {name} = {want}; (for new sessions) and `{}={want}` in the \
                     [mysqld] section of the server's configuration, so that it survives a restart",
                    name.replace('_', "-")
                )
            }
        }),
        note: None,
    };
    let log_bin = get("log_bin").unwrap_or("OFF");
    checks.push(setting(
        "log_bin",
        log_bin,
        "ON",
        matches!(log_bin, "ON" | "1"),
        true,
    ));
    let format = get("binlog_format").unwrap_or("");
    checks.push(setting(
        "binlog_format",
        format,
        "ROW",
        format == "ROW",
        false,
    ));
    let image = get("binlog_row_image").unwrap_or("");
    checks.push(setting(
        "binlog_row_image",
        image,
        "FULL",
        image == "FULL",
        false,
    ));
    // MariaDB compresses events siphon cannot read; MySQL's transaction
    // compression is decoded by the driver.
    if server.flavor == Flavor::MariaDb {
        let compress = get("log_bin_compress").unwrap_or("OFF");
        checks.push(setting(
            "log_bin_compress",
            compress,
            "OFF",
            !matches!(compress, "ON" | "1"),
            false,
        ));
    } else if let Some(compress) = get("binlog_transaction_compression") {
        let mut c = setting(
            "binlog_transaction_compression",
            compress,
            "OFF or ON",
            true,
            false,
        );
        c.needed = "OFF or ON".into();
        checks.push(c);
    }
    for name in ["encrypt_binlog", "binlog_encryption"] {
        if let Some(now) = get(name) {
            checks.push(setting(
                name,
                now,
                "OFF",
                !matches!(now, "ON" | "1"),
                name == "encrypt_binlog",
            ));
        }
    }
    if let Some(options) = get("binlog_row_value_options") {
        let partial = options.contains("PARTIAL_JSON");
        let mut c = setting(
            "binlog_row_value_options",
            if options.is_empty() { "''" } else { options },
            "''",
            !partial,
            false,
        );
        if partial {
            c.fix = Some(
                "SET GLOBAL binlog_row_value_options = ''; and in the server's configuration"
                    .into(),
            );
        }
        checks.push(c);
    }
    let metadata = get("binlog_row_metadata");
    checks.push(Check {
        name: "binlog_row_metadata",
        ok: true,
        value: metadata
            .unwrap_or("(not available on this server)")
            .to_string(),
        needed: "FULL, or siphon reads column details from information_schema".into(),
        needed_for: "cdc",
        fix: None,
        note: (metadata != Some("FULL")).then(|| {
            "not FULL: siphon takes each column's signedness and ENUM/SET labels from \
             information_schema instead of the binlog, which serves as long as the tables' shapes \
             do not change while their changes wait in the binlog; SET GLOBAL \
             binlog_row_metadata = FULL makes the binlog carry them"
                .to_string()
        }),
    });
    let (slave, client, roles) = global_privileges(grants);
    let who = quoted_account(account);
    let via_roles = if roles.is_empty() {
        String::new()
    } else {
        format!(" (roles granted, not inspected: {})", roles.join(", "))
    };
    let monitor = match server.flavor {
        Flavor::MariaDb => "REPLICATION CLIENT (BINLOG MONITOR)",
        Flavor::MySql => "REPLICATION CLIENT",
    };
    checks.push(Check {
        name: "REPLICATION SLAVE",
        ok: slave,
        value: format!(
            "{account} {} it on *.*{via_roles}",
            if slave { "has" } else { "lacks" }
        ),
        needed: "REPLICATION SLAVE on *.* (ALL PRIVILEGES includes it), to read the binlog".into(),
        needed_for: "cdc",
        fix: (!slave).then(|| format!("GRANT REPLICATION SLAVE ON *.* TO {who};")),
        note: None,
    });
    checks.push(Check {
        name: "REPLICATION CLIENT",
        ok: client,
        value: format!(
            "{account} {} it on *.*{via_roles}",
            if client { "has" } else { "lacks" }
        ),
        needed: format!(
            "{monitor} on *.* (ALL PRIVILEGES includes it), to read the binlog's position"
        ),
        needed_for: "cdc",
        fix: (!client).then(|| format!("GRANT REPLICATION CLIENT ON *.* TO {who};")),
        note: None,
    });
    Report { server, checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn maria() -> Server {
        Server {
            flavor: Flavor::MariaDb,
            version: "10.11.6-MariaDB".into(),
        }
    }

    const GOOD: &[(&str, &str)] = &[
        ("log_bin", "ON"),
        ("binlog_format", "ROW"),
        ("binlog_row_image", "FULL"),
        ("log_bin_compress", "OFF"),
        ("binlog_row_metadata", "FULL"),
    ];

    #[test]
    fn a_ready_server_passes_and_each_setting_fails_with_its_fix() {
        let all = ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`".to_string()];
        let r = judge(maria(), &vars(GOOD), &all, "root@localhost");
        assert!(
            r.checks
                .iter()
                .all(|c| c.ok && c.fix.is_none() && c.note.is_none()),
            "{r:?}"
        );
        for (var, bad, fix) in [
            ("log_bin", "OFF", "log-bin=ON"),
            (
                "binlog_format",
                "STATEMENT",
                "SET GLOBAL binlog_format = ROW",
            ),
            ("binlog_row_image", "MINIMAL", "binlog-row-image=FULL"),
            ("log_bin_compress", "ON", "log-bin-compress=OFF"),
        ] {
            let mut v = vars(GOOD);
            v.insert(var.into(), bad.into());
            let r = judge(maria(), &v, &all, "root@localhost");
            let c = r.checks.iter().find(|c| c.name == var).unwrap();
            assert!(!c.ok && c.fix.as_ref().unwrap().contains(fix), "{c:?}");
        }
        let mut v = vars(GOOD);
        v.insert("binlog_row_metadata".into(), "NO_LOG".into());
        let r = judge(maria(), &v, &all, "root@localhost");
        let c = r
            .checks
            .iter()
            .find(|c| c.name == "binlog_row_metadata")
            .unwrap();
        assert!(
            c.ok && c.note.as_ref().unwrap().contains("information_schema"),
            "{c:?}"
        );
    }

    #[test]
    fn grants_are_read_privilege_by_privilege() {
        let r = judge(
            maria(),
            &vars(GOOD),
            &["GRANT SELECT, BINLOG MONITOR ON *.* TO `s`@`%`".into()],
            "s@%",
        );
        let c = |n: &str| r.checks.iter().find(|c| c.name == n).unwrap().clone();
        assert!(!c("REPLICATION SLAVE").ok);
        assert_eq!(
            c("REPLICATION SLAVE").fix.unwrap(),
            "GRANT REPLICATION SLAVE ON *.* TO 's'@'%';"
        );
        assert!(c("REPLICATION CLIENT").ok);
        let (slave, client, roles) = global_privileges(&[
            "GRANT `reader` TO `s`@`%`".into(),
            "GRANT USAGE ON *.* TO `s`@`%`".into(),
        ]);
        assert!(!slave && !client);
        assert_eq!(roles, vec!["`reader`".to_string()]);
    }
}
