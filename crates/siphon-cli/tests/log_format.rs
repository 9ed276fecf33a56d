//! `--log-format json|text`: JSON log lines on stderr, one object a line, or
//! plain text; and in either format, at the most verbose level, a password in
//! a connection's URL appears nowhere in what siphon writes to stderr.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use siphon_testkit::{MariaDb, Postgres};
use support::{siphon, stdout};

const PASSWORD: &str = "Hunter2-sekrit";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `siphon -vv --log-format FORMAT ARGS`; checks the password is
/// nowhere in its output; returns it.
fn run(d: &Path, format: &str, args: &[&str]) -> Output {
    let mut all = vec!["-vv", "--log-format", format];
    all.extend(args);
    let out = siphon(d, &all);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(
        !e.contains(PASSWORD) && !o.contains(PASSWORD),
        "the password was written by `{}`:\n{o}\n{e}",
        all.join(" ")
    );
    out
}

#[test]
fn logs_are_json_lines_or_text_and_never_show_a_password() {
    let my = MariaDb::shared().unwrap();
    let url = my.create_database().unwrap();
    let db = support::db_name(&url);
    let user = format!("logs_{db}");
    my.query(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON `{db}`.* TO '{user}'@'%'"
    ))
    .unwrap();
    my.query_in(
        &db,
        "CREATE TABLE items (id INT PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'a'), (2, 'b')",
    )
    .unwrap();
    let pg = Postgres::shared().unwrap();
    // Trust authentication ignores the password, but the URL carries it
    // through every path that opens the connection.
    let pg_url = pg.create_database().unwrap().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let my_url = format!("mysql://{user}:{PASSWORD}@{}:{}/{db}", my.host(), my.port());
    let wrong = format!(
        "mysql://{user}:{PASSWORD}x@{}:{}/{db}",
        my.host(),
        my.port()
    );
    for format in ["text", "json"] {
        run(d, format, &["connection", "add", "my", &my_url]);
        run(d, format, &["connection", "add", "pg", &pg_url]);
        run(d, format, &["connection", "add", "wrong", &wrong]);
        run(d, format, &["connection", "list"]);
        run(d, format, &["connection", "test", "my"]);
        run(d, format, &["connection", "test", "pg"]);
        let refused = run(d, format, &["connection", "test", "wrong"]);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        run(
            d,
            format,
            &[
                "sync", "add", "p", "--source", "my", "--target", "pg", "--tables", "items",
            ],
        );
        run(d, format, &["sync", "tables", "p"]);
        let out = run(d, format, &["run", "--once", "p"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let e = stderr(&out);
        assert!(!e.trim().is_empty(), "no log lines at -vv");
        // Every line is JSON with `json`, progress lines
        // (`p/t.items: copying about 2 rows`) too.
        let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.iter().any(|l| l.contains(": copying")),
            "a progress line:\n{e}"
        );
        assert!(!lines.is_empty(), "no log lines at -vv:\n{e}");
        if format == "json" {
            for l in &lines {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|err| panic!("not a JSON line ({err}): {l}\n{e}"));
                assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
            }
            assert!(
                lines.iter().any(|l| l.contains(r#""level":"INFO""#)),
                "no info lines at -vv:\n{e}"
            );
            // The refusal is a JSON line too.
            let refused = stderr(&refused);
            let last: Value = serde_json::from_str(refused.lines().last().unwrap()).unwrap();
            assert_eq!(last["level"], "ERROR", "{refused}");
            assert!(
                last["fields"]["message"].as_str().unwrap().contains("1045"),
                "{refused}"
            );
        } else {
            assert!(
                lines
                    .iter()
                    .all(|l| serde_json::from_str::<Value>(l).is_err()),
                "JSON lines without --log-format json:\n{e}"
            );
            assert!(e.contains(" INFO "), "no info lines at -vv:\n{e}");
            assert!(stderr(&refused).contains("error: "), "{}", stderr(&refused));
        }
        run(d, format, &["sync", "remove", "p", "--yes"]);
    }
    // The environment chooses it too.
    let out = support::siphon_with(
        d,
        &["-v", "connection", "test", "wrong"],
        &[("SIPHON_LOG_FORMAT", "json")],
    );
    let last = stderr(&out);
    assert!(
        serde_json::from_str::<Value>(last.lines().last().unwrap()).is_ok(),
        "{last}"
    );
    my.query(&format!("DROP USER '{user}'@'%'")).unwrap();
}

/// Stops the daemon of a folder when the test ends, however it ends.
struct Daemon<'a>(&'a Path);

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = siphon(self.0, &["service", "stop"]);
    }
}

#[test]
fn a_daemon_started_with_json_writes_json_lines_to_its_log_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rusqlite::Connection::open(d.join("src.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .unwrap();
    std::fs::write(
        d.join("siphon.yaml"),
        "state: sqlite://.siphon/state.db\nconnections:\n  src: sqlite://src.db\n  \
         dst: sqlite://dst.db\n  gone: sqlite://nowhere/gone.db\npipelines:\n  \
         copy:\n    source: src\n    target: dst\n    mode: full\n  \
         broken:\n    source: gone\n    target: dst\n    mode: full\n    tables: [t]\n",
    )
    .unwrap();
    support::ok(siphon(d, &["apply"]));
    support::ok(siphon(
        d,
        &[
            "--log-format",
            "json",
            "service",
            "start",
            "--daemon",
            "--catalog-poll",
            "100ms",
        ],
    ));
    let _stop = Daemon(d);
    let logs = d.join(".siphon/logs");
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    support::wait_for(
        "the broken pipeline's error in error.log",
        std::time::Duration::from_secs(120),
        || read("error.log").contains("broken"),
    );
    for name in ["combined.log", "error.log"] {
        let text = read(name);
        assert!(!text.trim().is_empty(), "{name} is empty");
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {l}"));
            assert!(v["level"].is_string(), "{name}: {l}");
        }
    }
    support::ok(siphon(d, &["service", "stop"]));
}
