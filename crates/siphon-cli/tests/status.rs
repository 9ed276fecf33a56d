//! `siphon status` through the binary: the JSON document and the text after
//! real runs (tables, states, row counts, history, a failed table's error),
//! a PostgreSQL cdc pipeline's log checkpoint, and `status --watch` in tmux
//! beside a running pipeline (its tables, their progress, `q` quitting).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use serde_json::Value;
use siphon_testkit::Postgres;
use support::tmux::Tmux;
use support::{command, fails, ok, siphon, stdout, text, wait_for, Running};

/// A folder with `source.db` holding `items` (1,000 rows, copied fully),
/// `events` (3 rows, polled by `at`) and `bad` (polled by a column it lacks),
/// and a siphon.yaml of pipeline `p` over them.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Connection::open(dir.path().join("source.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO items SELECT i, 'item ' || i FROM n;
             CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMP);
             INSERT INTO events VALUES (1, '2026-01-01 00:00:01'), (2, '2026-01-01 00:00:02'),
                 (3, '2026-01-01 00:00:03');
             CREATE TABLE bad (id INTEGER PRIMARY KEY, at TIMESTAMP);",
        )
        .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  p:\n    source: src\n    target: dst\n    mode: full\n\
         \x20   tables_config:\n      events: { mode: incremental, cursor: at }\n\
         \x20     bad: { mode: incremental, cursor: no_such_column }\n",
    )
    .unwrap();
    dir
}

fn status_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["status", "--json"];
    all.extend(args);
    let out = siphon(dir, &all);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}:\n{}", stdout(&out)))
}

fn table<'a>(pipeline: &'a Value, name: &str) -> &'a Value {
    pipeline["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {pipeline:#}"))
}

#[test]
fn status_json_shows_each_table_its_state_its_rows_and_its_history() {
    let dir = setup();
    let d = dir.path();
    // Before any run: the pipeline, and no table yet.
    ok(siphon(d, &["apply"]));
    let doc = status_json(d, &[]);
    assert_eq!(doc["pipelines"][0]["name"], "p");
    assert_eq!(doc["pipelines"][0]["tables"], serde_json::json!([]));

    // One table fails; the run says so, and the others are copied.
    let out = siphon(d, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = status_json(d, &[]);
    assert!(doc["generated_at"].is_string(), "{doc:#}");
    let p = &doc["pipelines"][0];
    assert_eq!(
        (&p["source"], &p["target"], &p["mode"]),
        (&"src".into(), &"dst".into(), &"full".into())
    );
    assert!(p["lease"].is_null(), "a finished run holds no lease: {p:#}");

    let items = table(p, "items");
    assert_eq!(items["state"], "idle", "{items:#}");
    assert_eq!(items["mode"], "full");
    assert!(items["error"].is_null() && items["snapshot"].is_null());
    assert_eq!(items["last_run"]["status"], "succeeded");
    assert_eq!(items["last_run"]["rows_read"], 1000);
    // Every row carries at least its 8-byte integer key.
    assert!(
        items["last_run"]["bytes"].as_u64().unwrap() >= 8000,
        "{items:#}"
    );
    assert_eq!(items["last_run"]["inserted"], 1000);
    assert!(items["last_run"]["duration_ms"].is_u64(), "{items:#}");
    assert_eq!(items["checkpoint"]["phase"], "streaming");
    assert!(items["checkpoint_at"].is_string(), "{items:#}");
    assert!(
        items["rows_per_second"].as_f64().unwrap() > 0.0,
        "{items:#}"
    );

    let events = table(p, "events");
    assert_eq!(events["state"], "idle");
    assert_eq!(events["mode"], "incremental");
    // Polling reads again the row its watermark ends on.
    assert_eq!(events["last_run"]["inserted"], 3, "{events:#}");
    assert!(events["last_run"]["rows_read"].as_u64().unwrap() >= 3);
    assert!(events["checkpoint"]["position"].is_object(), "{events:#}");

    let bad = table(p, "bad");
    assert_eq!(bad["state"], "failed", "{bad:#}");
    let message = bad["error"]["message"].as_str().unwrap();
    assert!(message.contains("no_such_column"), "{bad:#}");
    assert!(bad["error"]["kind"].is_string(), "{bad:#}");
    assert_eq!(bad["last_run"]["status"], "failed");
    assert!(bad["last_run"]["error"]
        .as_str()
        .unwrap()
        .contains("no_such_column"));

    let executions = p["executions"].as_array().unwrap();
    assert_eq!(executions.len(), 1, "{p:#}");
    assert_eq!(executions[0]["status"], "failed");
    assert_eq!(
        executions[0]["tables"].as_array().unwrap().len(),
        3,
        "{p:#}"
    );

    // A second run: the history grows, newest first.
    Connection::open(d.join("source.db"))
        .unwrap()
        .execute_batch(
            "INSERT INTO events VALUES (4, '2026-01-01 00:00:04'), (5, '2026-01-01 00:00:05');",
        )
        .unwrap();
    siphon(d, &["run", "--once"]);
    let doc = status_json(d, &["p"]);
    let p = &doc["pipelines"][0];
    let events = table(p, "events");
    let runs = events["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{events:#}");
    assert_eq!(runs[0]["inserted"], 2, "{events:#}");
    assert_eq!(runs[1]["inserted"], 3, "{events:#}");
    assert!(runs[0]["execution"].as_u64() > runs[1]["execution"].as_u64());
    assert_eq!(events["last_run"]["execution"], runs[0]["execution"]);
    // `run --once` copies a full table at every run.
    let items = table(p, "items")["runs"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{p:#}");
    assert!(items.iter().all(|r| r["rows_read"] == 1000), "{p:#}");
    assert_eq!(table(p, "bad")["runs"].as_array().unwrap().len(), 2);
    assert_eq!(p["executions"].as_array().unwrap().len(), 2);

    // The same for people.
    let out = ok(siphon(d, &["status"]));
    assert!(out.contains("pipeline p: src -> dst, mode full"), "{out}");
    assert!(out.contains("not running"), "{out}");
    let line = |t: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{t} ")))
            .unwrap_or_else(|| panic!("no line for {t}:\n{out}"))
            .to_string()
    };
    assert!(line("items").contains("idle"), "{out}");
    assert!(line("items").contains("succeeded, 1,000 rows in"), "{out}");
    assert!(line("events").contains("succeeded, "), "{out}");
    assert!(line("bad").contains("failed ("), "{out}");
    assert!(
        out.contains("error: ") && out.contains("no_such_column"),
        "{out}"
    );

    // Asked for a pipeline that does not exist, or for a view without a terminal.
    let out = fails(siphon(d, &["status", "nope"]), 2);
    assert!(out.contains("no pipeline `nope`"), "{out}");
    let out = fails(siphon(d, &["status", "--watch"]), 2);
    assert!(out.contains("needs a terminal"), "{out}");
    fails(siphon(d, &["status", "--watch", "--json"]), 2);
}

#[test]
fn status_shows_an_interrupted_load_with_its_progress_and_total() {
    const ROWS: i64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_source(d, ROWS);
    std::fs::write(
        d.join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  p:\n    source: src\n    target: dst\n    mode: full\n    batch_size: 10\n",
    )
    .unwrap();
    let mut run = Running::spawn(command(d, &["run", "--once"]), &d.join("run.log"));
    let state = d.join("state.db");
    wait_for(
        "the load to commit some chunks",
        Duration::from_secs(60),
        || {
            assert!(run.running(), "the load ended before it was seen loading");
            stored_state(&state, "big").is_some_and(|s| {
                s["state"] == "snapshotting" && s["rows"].as_u64().is_some_and(|r| r > 0)
            })
        },
    );
    run.kill();
    let doc = status_json(d, &[]);
    let big = table(&doc["pipelines"][0], "big");
    assert_eq!(big["state"], "snapshotting", "{big:#}");
    let done = big["snapshot"]["rows_done"].as_u64().unwrap();
    assert!(done > 0 && done < ROWS as u64, "{big:#}");
    // The source's estimate (SQLite counts).
    assert_eq!(big["snapshot"]["rows_total"], ROWS, "{big:#}");
    assert_eq!(big["checkpoint"]["phase"], "snapshot", "{big:#}");
    assert_eq!(big["last_run"]["status"], "running", "{big:#}");
    let out = ok(siphon(d, &["status"]));
    assert!(out.contains("snapshotting"), "{out}");
    assert!(out.contains("/200,000 ("), "{out}");
}

/// `source.db` in `dir` with table `big` of `rows` rows.
fn big_source(dir: &Path, rows: i64) {
    Connection::open(dir.join("source.db"))
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO big SELECT i, 'row ' || i FROM n;"
        ))
        .unwrap();
}

/// The stream state the state store holds for `table` of pipeline `p`.
fn stored_state(state: &Path, table: &str) -> Option<Value> {
    let c = Connection::open(state).ok()?;
    let json = c
        .query_row(
            "SELECT state FROM stream_states WHERE pipeline = 'p' AND table_name = ?1",
            [table],
            |r| r.get::<_, String>(0),
        )
        .ok()?;
    serde_json::from_str(&json).ok()
}

#[test]
fn status_json_shows_a_cdc_pipelines_log_checkpoint_and_retained_log() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pipeline = format!("s_{src}");
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src_url}\n  dst: {dst_url}\n\
             pipelines:\n  {pipeline}:\n    source: src\n    target: dst\n    mode: cdc\n    tables: [public.t]\n"
        ),
    )
    .unwrap();
    ok(siphon(d, &["run", "--once"]));
    pg.query_in(
        &src,
        "INSERT INTO t VALUES (3, 'c'); UPDATE t SET v = 'z' WHERE id = 1;",
    )
    .unwrap();
    ok(siphon(d, &["run", "--once"]));
    let doc = status_json(d, &[]);
    let p = &doc["pipelines"][0];
    assert_eq!(p["mode"], "cdc");
    assert_eq!(p["log_checkpoint"]["phase"], "streaming", "{p:#}");
    assert!(!p["log_checkpoint"]["position"].is_null(), "{p:#}");
    assert!(p["retained_log_bytes"].is_u64(), "{p:#}");
    let t = table(p, "public.t");
    assert_eq!(t["mode"], "cdc");
    let runs = t["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{t:#}");
    assert_eq!(
        runs[1]["rows_read"], 2,
        "the first run copied the table: {t:#}"
    );
    assert_eq!(runs[0]["inserted"], 1, "{t:#}");
    assert_eq!(runs[0]["updated"], 1, "{t:#}");
    ok(siphon(d, &["sync", "remove", &pipeline, "--yes"]));
}

// --- status --watch in tmux --------------------------------------------------

/// `status --watch` started and quit in a [`Tmux`] pane.
trait Watch {
    fn watch(&self, args: &str);
    fn quit(&self, key: &str);
}

impl Watch for Tmux {
    /// Starts `siphon status --watch` in the pane, saying its exit status when it ends.
    fn watch(&self, args: &str) {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_siphon"));
        self.wait("the shell's prompt", Duration::from_secs(10), |s| {
            s.contains("ready$")
        });
        self.send(&[
            &format!(
                "'{}' --state sqlite://state.db status --watch {args}; printf 'watch %s %d\\n' ended $?",
                bin.display()
            ),
            "Enter",
        ]);
    }

    /// Quits the view with `key` (a tmux key name) and checks it ended well
    /// and gave the shell back.
    fn quit(&self, key: &str) {
        self.send(&[key]);
        let s = self.wait("the view to end", Duration::from_secs(10), |s| {
            s.contains("watch ended ")
        });
        assert!(s.contains("watch ended 0"), "{s}");
        // The view's screen is gone: the prompt is back after the exit line.
        let after = s.split("watch ended 0").nth(1).unwrap();
        assert!(after.contains("ready$"), "{s}");
        assert!(
            !s.contains("q quits"),
            "the view was left on the screen:\n{s}"
        );
    }
}

/// The words of the view's line for `table`.
fn row<'a>(screen: &'a str, table: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&table))
}

#[test]
fn status_watch_shows_the_tables_and_quits_on_q() {
    let dir = setup();
    let d = dir.path();
    siphon(d, &["run", "--once"]);
    let tmux = Tmux::start(d, 160, 40);
    tmux.watch("");
    let s = tmux.wait(
        "the tables and their states",
        Duration::from_secs(30),
        |s| {
            row(s, "items").is_some_and(|w| w.get(1) == Some(&"idle"))
                && row(s, "events").is_some_and(|w| w.get(1) == Some(&"idle"))
                && row(s, "bad").is_some_and(|w| w.get(1) == Some(&"failed"))
        },
    );
    assert!(s.contains("pipeline p: src -> dst, mode full"), "{s}");
    assert!(s.contains("succeeded, 1,000 rows in"), "{s}");
    // The failed table's error, in the errors panel.
    assert!(s.contains("p/bad") && s.contains("no_such_column"), "{s}");
    assert!(s.contains("q quits"), "{s}");
    tmux.quit("q");
    // Ctrl-C quits too (raw mode makes it a key press, not a signal).
    tmux.send(&["clear", "Enter"]);
    tmux.watch("p");
    tmux.wait("the view again", Duration::from_secs(30), |s| {
        s.contains("q quits")
    });
    tmux.quit("C-c");
}

#[test]
fn status_watch_follows_a_running_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_source(d, 200_000);
    Connection::open(d.join("source.db"))
        .unwrap()
        .execute_batch("CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMP);")
        .unwrap();
    // Two pipelines side by side: `load` copies `big` a row at a time, for
    // long enough to be watched; `p` polls `events` pass after pass.
    std::fs::write(
        d.join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  load:\n    source: src\n    target: dst\n    mode: full\n    tables: [big]\n\
         \x20   batch_size: 1\n  p:\n    source: src\n    target: dst\n    mode: incremental\n\
         \x20   cursor: at\n    tables: [events]\n",
    )
    .unwrap();
    let mut run = Running::spawn(command(d, &["run"]), &d.join("run.log"));
    // `run` applies the file first: the view starts once both pipelines are
    // stored, as it refuses a pipeline it does not know.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !command(d, &["status", "load", "p", "--json"])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(run.running(), "siphon run ended early");
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not store its pipelines"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let tmux = Tmux::start(d, 170, 40);
    tmux.watch("load p");
    let rate = |w: &Vec<&str>| {
        w.get(2)
            .and_then(|r| r.replace(',', "").parse::<f64>().ok())
            .is_some_and(|r| r > 0.0)
    };
    // The load's progress bar and rate, and the worker that runs it.
    let s = tmux.wait("the load's progress", Duration::from_secs(60), |s| {
        assert!(run.running(), "siphon run ended early");
        row(s, "big").is_some_and(|w| {
            w.get(1) == Some(&"snapshotting") && rate(&w) && w.iter().any(|x| x.ends_with('%'))
        })
    });
    assert!(s.contains("pipeline load: src -> dst, mode full"), "{s}");
    assert!(s.contains("run by "), "{s}");
    assert!(s.contains('█') || s.contains('░'), "{s}");
    // Rows arriving at the polled table show as a rate.
    let src = Connection::open(d.join("source.db")).unwrap();
    src.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO events SELECT i, datetime('2026-01-01', '+' || i || ' seconds') FROM n;",
    )
    .unwrap();
    tmux.wait("the polled table's rate", Duration::from_secs(120), |s| {
        row(s, "events").is_some_and(|w| rate(&w))
    });
    tmux.quit("q");
    assert!(run.running(), "quitting the view left the run alone");
    assert!(
        run.stop("TERM", Duration::from_secs(30)),
        "{}",
        std::fs::read_to_string(d.join("run.log")).unwrap_or_default()
    );
}
