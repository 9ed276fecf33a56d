//! What the source must be set to for siphon to read its binlog, checked
//! before a pipeline starts, each failure with its fix: the binlog on, in ROW
//! format with whole row images, uncompressed, and a user allowed to read it.
//!
//! Signedness, ENUM and SET labels are not required in the binlog
//! (`binlog_row_metadata`, which MariaDB leaves at NO_LOG): siphon reads
//! them from `information_schema` when it opens the stream.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::{Error, ErrorKind, Result};

use crate::conn::{my_err, Flavor};

/// The server variables the checks read.
const VARIABLES: &[&str] = &[
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "log_bin_compress",
    "binlog_row_value_options",
    "encrypt_binlog",
];

/// Reads the variables the checks need (`SHOW GLOBAL VARIABLES`, so that a
/// variable the server does not have is simply absent).
pub async fn variables(conn: &mut Conn) -> Result<HashMap<String, String>> {
    let list = VARIABLES
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({list})"
        ))
        .await
        .map_err(|e| my_err(e, "reading the source's binlog settings"))?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_uppercase()))
        .collect())
}

/// Checks the binlog settings; the error says which one to change and how.
pub fn check_settings(flavor: Flavor, vars: &HashMap<String, String>) -> Result<()> {
    let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
    let set = |var: &str, want: &str, now: &str| {
        Error::config(format!(
            "cdc from MySQL/MariaDB needs {var}={want} on the source (it is {now}): add \
             `{}={want}` to the [mysqld] section of the server's configuration and restart it{}",
            var.replace('_', "-"),
            if var == "log_bin" {
                ""
            } else {
                " (or SET GLOBAL for new sessions, and in the configuration so it survives a restart)"
            }
        ))
    };
    if !matches!(get("log_bin"), "ON" | "1") {
        return Err(set("log_bin", "ON", get("log_bin")));
    }
    if get("binlog_format") != "ROW" {
        return Err(set("binlog_format", "ROW", get("binlog_format")));
    }
    if get("binlog_row_image") != "FULL" {
        return Err(set("binlog_row_image", "FULL", get("binlog_row_image")));
    }
    if flavor == Flavor::MariaDb && matches!(get("log_bin_compress"), "ON" | "1") {
        return Err(set("log_bin_compress", "OFF", "ON"));
    }
    if matches!(get("encrypt_binlog"), "ON" | "1") {
        return Err(set("encrypt_binlog", "OFF", "ON"));
    }
    if get("binlog_row_value_options").contains("PARTIAL_JSON") {
        return Err(set("binlog_row_value_options", "''", "PARTIAL_JSON"));
    }
    Ok(())
}

/// Whether `SHOW GRANTS` lines give the right to read the binlog
/// (`REPLICATION SLAVE` on `*.*`, or `ALL PRIVILEGES`), or grant roles that may.
pub fn grants_allow(grants: &[String]) -> bool {
    grants.iter().any(|g| {
        let g = g.to_ascii_uppercase();
        let global = g.contains(" ON *.* ");
        let privileges = g.contains("ALL PRIVILEGES") || g.contains("REPLICATION SLAVE");
        // A role granted (`GRANT \`reader\` TO …`): its privileges are not listed here.
        let role = g.starts_with("GRANT `") || g.starts_with("GRANT '");
        (global && privileges) || role
    })
}

/// Checks the connecting user may read the binlog; the error names the GRANT.
pub async fn check_privileges(conn: &mut Conn, flavor: Flavor, user: &str) -> Result<()> {
    let grants: Vec<String> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(|e| my_err(e, "reading the source user's privileges"))?;
    if grants_allow(&grants) {
        return Ok(());
    }
    let monitor = match flavor {
        Flavor::MariaDb => "BINLOG MONITOR",
        Flavor::MySql => "REPLICATION CLIENT",
    };
    Err(Error::new(
        ErrorKind::Privilege,
        format!(
            "the source user {user} may not read the binlog: run GRANT REPLICATION SLAVE, {monitor} \
             ON *.* TO '{user}'@'…' on the source (with SELECT on the replicated tables)"
        ),
    ))
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

    #[test]
    fn each_setting_fails_with_its_fix() {
        let good = [
            ("log_bin", "ON"),
            ("binlog_format", "ROW"),
            ("binlog_row_image", "FULL"),
            ("log_bin_compress", "OFF"),
        ];
        assert!(check_settings(Flavor::MariaDb, &vars(&good)).is_ok());
        for (var, bad, fix) in [
            ("log_bin", "OFF", "log-bin=ON"),
            ("binlog_format", "MIXED", "binlog-format=ROW"),
            ("binlog_row_image", "MINIMAL", "binlog-row-image=FULL"),
            ("log_bin_compress", "ON", "log-bin-compress=OFF"),
        ] {
            let mut v = vars(&good);
            v.insert(var.into(), bad.into());
            let e = check_settings(Flavor::MariaDb, &v).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains(fix), "{e}");
        }
        let mut v = vars(&good);
        v.insert("binlog_row_value_options".into(), "PARTIAL_JSON".into());
        assert!(check_settings(Flavor::MySql, &v).is_err());
    }

    #[test]
    fn grants_are_read() {
        assert!(grants_allow(&[
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`%` WITH GRANT OPTION".into()
        ]));
        assert!(grants_allow(&[
            "GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `s`@`%`".into()
        ]));
        assert!(!grants_allow(
            &["GRANT SELECT ON `app`.* TO `s`@`%`".into()]
        ));
        assert!(!grants_allow(&["GRANT USAGE ON *.* TO `s`@`%`".into()]));
    }
}
