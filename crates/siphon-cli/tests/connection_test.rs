//! `siphon connection test` against real servers: it names the server and
//! its version, and each setting and privilege cdc needs, missing ones with
//! their fix (PostgreSQL's `wal_level` and REPLICATION, MariaDB's
//! `binlog_format` and REPLICATION SLAVE), and says so in JSON too. A
//! reachable server is success (exit status 0) even with settings missing.

mod support;

use serde_json::Value;
use siphon_testkit::{MariaDb, Postgres};
use support::{fails, ok, siphon, stdout};

/// The line of `check` in `connection test`'s output.
fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 1 && out_check(l, check) && ["ok", "missing", "note"].contains(&w[0])
        })
        .unwrap_or_else(|| panic!("no line for {check}:\n{out}"))
}

fn out_check(line: &str, check: &str) -> bool {
    let rest = line.trim_start();
    let rest = rest.split_once(' ').map_or("", |(_, r)| r).trim_start();
    rest.starts_with(check) && rest[check.len()..].starts_with(' ')
}

/// The line under `check`'s line: its fix or note.
fn under<'a>(out: &'a str, check: &str) -> &'a str {
    let l = line(out, check);
    let mut lines = out.lines().skip_while(|x| *x != l);
    lines.next();
    lines.next().unwrap_or_default().trim()
}

fn test_json(d: &std::path::Path, name: &str) -> Value {
    let out = siphon(d, &["connection", "test", name, "--json"]);
    assert!(out.status.success(), "{}", support::text(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {doc:#}"))
}

#[test]
fn a_postgres_ready_for_cdc_passes_every_check() {
    let pg = Postgres::shared().unwrap();
    let url = pg.create_database().unwrap();
    pg.query_in(
        &support::db_name(&url),
        "CREATE TABLE t (id int PRIMARY KEY)",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(siphon(d, &["connection", "add", "pg", &url]));
    let out = ok(siphon(d, &["connection", "test", "pg"]));
    assert!(out.contains("reached PostgreSQL 15"), "{out}");
    for c in [
        "wal_level",
        "REPLICATION",
        "publication",
        "max_replication_slots",
        "max_wal_senders",
        "SELECT on tables",
    ] {
        assert!(line(&out, c).trim_start().starts_with("ok "), "{c}:\n{out}");
    }
    assert!(line(&out, "wal_level").contains("logical"), "{out}");
    assert!(!out.contains("missing"), "{out}");
    assert!(out.contains("ready for every mode"), "{out}");
    let doc = test_json(d, "pg");
    assert_eq!(doc["connector"], "postgres");
    assert!(doc["server"].as_str().unwrap().starts_with("PostgreSQL 15"));
    assert!(
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true && c["fix"].is_null()),
        "{doc:#}"
    );
}

#[test]
fn a_postgres_without_logical_wal_is_named_with_its_fix() {
    let pg = Postgres::start_with_settings(&[("wal_level", "replica")]).unwrap();
    let url = pg.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(siphon(d, &["connection", "add", "pg", &url]));
    let out = siphon(d, &["connection", "test", "pg"]);
    // Reachable: success, since full and incremental need no log.
    let out = ok(out);
    let l = line(&out, "wal_level");
    assert!(l.trim_start().starts_with("missing"), "{out}");
    assert!(l.contains("replica") && l.contains("logical"), "{out}");
    assert!(
        under(&out, "wal_level").starts_with("fix: ALTER SYSTEM SET wal_level = logical"),
        "{out}"
    );
    assert!(
        out.contains("warning: cdc from this connection needs what is missing (wal_level)"),
        "{out}"
    );
    assert!(
        out.contains("full and incremental pipelines need none of it"),
        "{out}"
    );
    let doc = test_json(d, "pg");
    let w = check(&doc, "wal_level");
    assert_eq!(
        (w["ok"].clone(), w["value"].clone()),
        (false.into(), "replica".into())
    );
    assert!(w["fix"].as_str().unwrap().contains("wal_level = logical"));
    assert_eq!(w["needed_for"], "cdc");
}

#[test]
fn a_postgres_role_without_replication_is_named_with_its_fix() {
    let pg = Postgres::shared().unwrap();
    let url = pg.create_database().unwrap();
    let db = support::db_name(&url);
    let role = format!("norepl_{db}");
    pg.query_in(
        &db,
        &format!(
            "CREATE ROLE {role} LOGIN; CREATE TABLE owned_by_postgres (id int PRIMARY KEY); \
             GRANT SELECT ON owned_by_postgres TO {role};"
        ),
    )
    .unwrap();
    let as_role = format!("postgres://{role}:rolepw@{}:{}/{db}", pg.host(), pg.port());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(siphon(d, &["connection", "add", "pg", &as_role]));
    let out = ok(siphon(d, &["connection", "test", "pg"]));
    assert!(!out.contains("rolepw"), "{out}");
    let l = line(&out, "REPLICATION");
    assert!(l.trim_start().starts_with("missing"), "{out}");
    assert!(l.contains("neither REPLICATION nor superuser"), "{out}");
    assert!(
        under(&out, "REPLICATION").contains(&format!("ALTER ROLE \"{role}\" WITH REPLICATION")),
        "{out}"
    );
    // Publishing a table needs its ownership.
    let l = line(&out, "publication");
    assert!(
        l.trim_start().starts_with("missing") && l.contains("public.owned_by_postgres"),
        "{out}"
    );
    assert!(
        line(&out, "wal_level").trim_start().starts_with("ok"),
        "{out}"
    );
    assert!(
        line(&out, "SELECT on tables")
            .trim_start()
            .starts_with("ok"),
        "{out}"
    );
    pg.query_in(&db, &format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .unwrap();
}

#[test]
fn mariadb_checks_name_the_server_kind_and_what_is_missing() {
    // A fully configured server, as root: every check passes, and the
    // binlog's row metadata is a note (information_schema serves instead).
    let my = MariaDb::shared().unwrap();
    let url = my.create_database().unwrap();
    let db = support::db_name(&url);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(siphon(d, &["connection", "add", "root", &url]));
    let out = ok(siphon(d, &["connection", "test", "root"]));
    assert!(out.contains("reached MariaDB 10."), "{out}");
    assert!(!out.contains("missing"), "{out}");
    for c in [
        "log_bin",
        "binlog_format",
        "binlog_row_image",
        "log_bin_compress",
        "REPLICATION SLAVE",
        "REPLICATION CLIENT",
    ] {
        assert!(line(&out, c).trim_start().starts_with("ok "), "{c}:\n{out}");
    }
    let metadata = line(&out, "binlog_row_metadata");
    assert!(
        metadata.trim_start().starts_with("note") || metadata.trim_start().starts_with("ok"),
        "{out}"
    );
    if metadata.trim_start().starts_with("note") {
        assert!(
            under(&out, "binlog_row_metadata").contains("information_schema"),
            "{out}"
        );
    }
    let doc = test_json(d, "root");
    assert_eq!(doc["server_kind"], "MariaDB");
    assert!(
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{doc:#}"
    );

    // A user that may read the tables but not the binlog.
    let user = format!("noslave_{db}");
    my.query(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'userpw'; GRANT SELECT ON `{db}`.* TO '{user}'@'%'"
    ))
    .unwrap();
    let as_user = format!("mysql://{user}:userpw@{}:{}/{db}", my.host(), my.port());
    ok(siphon(d, &["connection", "add", "user", &as_user]));
    let out = ok(siphon(d, &["connection", "test", "user"]));
    assert!(!out.contains("userpw"), "{out}");
    let l = line(&out, "REPLICATION SLAVE");
    assert!(l.trim_start().starts_with("missing"), "{out}");
    assert_eq!(
        under(&out, "REPLICATION SLAVE"),
        format!("fix: GRANT REPLICATION SLAVE ON *.* TO '{user}'@'%';"),
        "{out}"
    );
    assert!(
        line(&out, "REPLICATION CLIENT")
            .trim_start()
            .starts_with("missing"),
        "{out}"
    );
    assert!(
        line(&out, "binlog_format").trim_start().starts_with("ok"),
        "{out}"
    );
    my.query(&format!("DROP USER '{user}'@'%'")).unwrap();

    // A server writing its binlog as statements (a server of its own: the
    // setting is global).
    let statement = MariaDb::start().unwrap();
    statement
        .query("SET GLOBAL binlog_format = 'STATEMENT'")
        .unwrap();
    ok(siphon(d, &["connection", "add", "stmt", &statement.url()]));
    let out = ok(siphon(d, &["connection", "test", "stmt"]));
    let l = line(&out, "binlog_format");
    assert!(
        l.trim_start().starts_with("missing") && l.contains("STATEMENT") && l.contains("ROW"),
        "{out}"
    );
    assert!(
        under(&out, "binlog_format").contains("SET GLOBAL binlog_format = ROW"),
        "{out}"
    );
    assert!(
        out.contains("warning: cdc from this connection needs what is missing (binlog_format)"),
        "{out}"
    );
}

#[test]
fn an_unreachable_or_unknown_connection_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = fails(siphon(d, &["connection", "test", "nope"]), 2);
    assert!(out.contains("unknown connection `nope`"), "{out}");
    ok(siphon(
        d,
        &[
            "connection",
            "add",
            "down",
            "postgres://u:downpw@127.0.0.1:1/x?connect_timeout=2",
        ],
    ));
    let out = fails(siphon(d, &["connection", "test", "down"]), 1);
    assert!(
        out.contains("connection `down`") && !out.contains("downpw"),
        "{out}"
    );
    // A SQLite file is opened, and has nothing to check.
    rusqlite::Connection::open(d.join("lite.db")).unwrap();
    ok(siphon(
        d,
        &["connection", "add", "lite", "sqlite://lite.db"],
    ));
    let out = ok(siphon(d, &["connection", "test", "lite"]));
    assert!(out.contains("connection lite (sqlite://"), "{out}");
    assert!(
        out.contains("lite.db): reached; can be source, target"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
}
