//! What a PostgreSQL server offers siphon, read without changing anything:
//! its version, and each setting and privilege that `mode: cdc` needs
//! (`wal_level`, the REPLICATION attribute, the right to create the
//! pipeline's publication, a free replication slot and WAL sender), each
//! with its fix when it is missing. `full` and `incremental` need none of
//! them, only the right to read the tables, which is checked too.

use siphon_core::Result;
use tokio_postgres::Client;

use crate::conn::{connect, ident, pg_err};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked: a setting's name (`wal_level`) or a privilege's.
    pub name: &'static str,
    /// Whether it is as siphon needs it.
    pub ok: bool,
    /// What the server has now (`replica`, `3 of 10 used`).
    pub value: String,
    /// What siphon needs (`logical`).
    pub needed: String,
    /// What needs it: `cdc`, or `every mode`.
    pub needed_for: &'static str,
    /// How to make it so, when it is not.
    pub fix: Option<String>,
}

/// The server and what each check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `PostgreSQL 15.8 (Debian 15.8-0+deb12u1)`.
    pub server: String,
    /// The checks, in the order they are shown.
    pub checks: Vec<Check>,
}

/// What siphon reads from the server to judge it.
#[derive(Debug, Clone, Default)]
struct Facts {
    version: String,
    user: String,
    database: String,
    superuser: bool,
    replication: bool,
    wal_level: String,
    slots_max: i64,
    slots_used: i64,
    senders_max: i64,
    senders_used: i64,
    create_on_database: bool,
    /// Tables (`schema.table`) the user does not own, and how many tables there are.
    not_owned: Vec<String>,
    unreadable: Vec<String>,
    tables: i64,
}

/// Connects to `url` and reads what siphon needs; an error only when the
/// server cannot be reached or read (the error never holds the password).
pub async fn probe(url: &str) -> Result<Report> {
    let client = connect(url, "server").await?;
    let facts = read(&client).await?;
    Ok(judge(&facts))
}

async fn one(client: &Client, sql: &str, doing: &str) -> Result<tokio_postgres::Row> {
    client
        .query_one(sql, &[])
        .await
        .map_err(|e| pg_err(e, doing))
}

/// Tables a query of `(schema, table)` rows lists, as `schema.table`.
async fn names(client: &Client, sql: &str, doing: &str) -> Result<Vec<String>> {
    Ok(client
        .query(sql, &[])
        .await
        .map_err(|e| pg_err(e, doing))?
        .iter()
        .map(|r| format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// The user tables siphon would discover (as its discovery lists them).
const USER_TABLES: &str = "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
       AND c.relname NOT IN ('siphon_checkpoints', 'siphon_columns')";

async fn read(client: &Client) -> Result<Facts> {
    let r = one(
        client,
        "SELECT current_setting('server_version'), current_user::text, current_database()::text, \
                r.rolsuper, r.rolreplication, current_setting('wal_level'), \
                current_setting('max_replication_slots')::int8, \
                (SELECT count(*) FROM pg_replication_slots), \
                current_setting('max_wal_senders')::int8, \
                (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'), \
                has_database_privilege(current_database(), 'CREATE') \
         FROM pg_roles r WHERE r.rolname = current_user",
        "reading the server's settings and the user's privileges",
    )
    .await?;
    let mut facts = Facts {
        version: r.get(0),
        user: r.get(1),
        database: r.get(2),
        superuser: r.get(3),
        replication: r.get(4),
        wal_level: r.get(5),
        slots_max: r.get(6),
        slots_used: r.get(7),
        senders_max: r.get(8),
        senders_used: r.get(9),
        create_on_database: r.get(10),
        ..Facts::default()
    };
    facts.tables = one(
        client,
        &format!("SELECT count(*) {USER_TABLES}"),
        "counting the tables",
    )
    .await?
    .get(0);
    facts.not_owned = names(
        client,
        &format!(
            "SELECT n.nspname::text, c.relname::text {USER_TABLES} \
               AND NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1, 2"
        ),
        "reading the tables' owners",
    )
    .await?;
    facts.unreadable = names(
        client,
        &format!(
            "SELECT n.nspname::text, c.relname::text {USER_TABLES} \
               AND NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')) \
             ORDER BY 1, 2"
        ),
        "reading the user's table privileges",
    )
    .await?;
    Ok(facts)
}

/// `names` for a message, the first 5 of them.
fn some(names: &[String]) -> String {
    let more = names.len().saturating_sub(5);
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

fn judge(f: &Facts) -> Report {
    let user = ident(&f.user);
    let mut checks = Vec::new();
    let logical = f.wal_level == "logical";
    checks.push(Check {
        name: "wal_level",
        ok: logical,
        value: f.wal_level.clone(),
        needed: "logical".into(),
        needed_for: "cdc",
        fix: (!logical).then(|| {
            "ALTER SYSTEM SET wal_level = logical; (or set it in postgresql.conf), then restart \
             the server"
                .to_string()
        }),
    });
    let may_replicate = f.superuser || f.replication;
    checks.push(Check {
        name: "REPLICATION",
        ok: may_replicate,
        value: match (f.superuser, f.replication) {
            (true, _) => format!("user {} is a superuser", f.user),
            (false, true) => format!("user {} has REPLICATION", f.user),
            (false, false) => format!("user {} has neither REPLICATION nor superuser", f.user),
        },
        needed: "the REPLICATION attribute, or superuser".into(),
        needed_for: "cdc",
        fix: (!may_replicate).then(|| {
            format!(
                "ALTER ROLE {user} WITH REPLICATION; (as a superuser; on Amazon RDS: GRANT \
                 rds_replication TO {user};)"
            )
        }),
    });
    let may_publish = f.superuser || (f.create_on_database && f.not_owned.is_empty());
    let mut fixes = Vec::new();
    if !f.superuser && !f.create_on_database {
        fixes.push(format!(
            "GRANT CREATE ON DATABASE {} TO {user};",
            ident(&f.database)
        ));
    }
    if !f.superuser && !f.not_owned.is_empty() {
        fixes.push(format!(
            "make {} the owner of the tables it replicates (ALTER TABLE … OWNER TO {user};), or \
             connect as their owner: a publication's tables must be owned by the user that \
             creates it",
            f.user
        ));
    }
    checks.push(Check {
        name: "publication",
        ok: may_publish,
        value: if f.superuser {
            "superuser: may publish every table".into()
        } else {
            let mut parts = vec![if f.create_on_database {
                format!("may create publications in {}", f.database)
            } else {
                format!("may not create publications in {}", f.database)
            }];
            if f.not_owned.is_empty() {
                parts.push(format!("owns all {} tables", f.tables));
            } else {
                parts.push(format!(
                    "does not own {} of {} tables: {}",
                    f.not_owned.len(),
                    f.tables,
                    some(&f.not_owned)
                ));
            }
            parts.join("; ")
        },
        needed: "CREATE on the database and ownership of the replicated tables, or superuser"
            .into(),
        needed_for: "cdc",
        fix: (!fixes.is_empty()).then(|| fixes.join(" ")),
    });
    let slots_free = f.slots_max - f.slots_used;
    checks.push(Check {
        name: "max_replication_slots",
        ok: slots_free > 0,
        value: format!(
            "{} of {} used, {} free",
            f.slots_used,
            f.slots_max,
            slots_free.max(0)
        ),
        needed: "a free slot for each cdc pipeline".into(),
        needed_for: "cdc",
        fix: (slots_free <= 0).then(|| {
            "raise max_replication_slots (ALTER SYSTEM SET max_replication_slots = N; then restart \
             the server), or drop slots no longer used: SELECT pg_drop_replication_slot(slot_name) \
             FROM pg_replication_slots WHERE NOT active;"
                .to_string()
        }),
    });
    let senders_free = f.senders_max - f.senders_used;
    checks.push(Check {
        name: "max_wal_senders",
        ok: senders_free > 0,
        value: format!(
            "{} of {} used, {} free",
            f.senders_used,
            f.senders_max,
            senders_free.max(0)
        ),
        needed: "a free WAL sender for each cdc pipeline while it streams".into(),
        needed_for: "cdc",
        fix: (senders_free <= 0).then(|| {
            "raise max_wal_senders (ALTER SYSTEM SET max_wal_senders = N; then restart the server)"
                .to_string()
        }),
    });
    checks.push(Check {
        name: "SELECT on tables",
        ok: f.unreadable.is_empty(),
        value: if f.unreadable.is_empty() {
            format!("may read all {} tables", f.tables)
        } else {
            format!(
                "may not read {} of {} tables: {}",
                f.unreadable.len(),
                f.tables,
                some(&f.unreadable)
            )
        },
        needed: "SELECT on each replicated table, USAGE on its schema".into(),
        needed_for: "every mode",
        fix: (!f.unreadable.is_empty()).then(|| {
            format!("GRANT USAGE ON SCHEMA … TO {user}; GRANT SELECT ON ALL TABLES IN SCHEMA … TO {user};")
        }),
    });
    Report {
        server: format!("PostgreSQL {}", f.version),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Facts {
        Facts {
            version: "15.8".into(),
            user: "app".into(),
            database: "shop".into(),
            replication: true,
            wal_level: "logical".into(),
            slots_max: 10,
            slots_used: 2,
            senders_max: 10,
            senders_used: 1,
            create_on_database: true,
            tables: 3,
            ..Facts::default()
        }
    }

    fn check<'a>(r: &'a Report, name: &str) -> &'a Check {
        r.checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn a_ready_server_passes_every_check() {
        let r = judge(&ready());
        assert!(r.checks.iter().all(|c| c.ok && c.fix.is_none()), "{r:?}");
        assert_eq!(
            check(&r, "max_replication_slots").value,
            "2 of 10 used, 8 free"
        );
    }

    #[test]
    fn each_missing_thing_has_its_fix() {
        let mut f = ready();
        f.wal_level = "replica".into();
        f.replication = false;
        f.not_owned = vec!["public.a".into()];
        f.slots_used = 10;
        f.senders_used = 10;
        f.unreadable = vec!["public.b".into()];
        let r = judge(&f);
        assert!(r.checks.iter().all(|c| !c.ok), "{r:?}");
        assert!(check(&r, "wal_level")
            .fix
            .as_ref()
            .unwrap()
            .contains("wal_level = logical"));
        assert!(check(&r, "REPLICATION")
            .fix
            .as_ref()
            .unwrap()
            .contains(r#"ALTER ROLE "app" WITH REPLICATION"#));
        assert!(check(&r, "publication").value.contains("public.a"));
        assert!(check(&r, "SELECT on tables").value.contains("public.b"));
        // A superuser needs neither the attribute nor the tables' ownership.
        f.superuser = true;
        let r = judge(&f);
        assert!(check(&r, "REPLICATION").ok && check(&r, "publication").ok);
    }
}
