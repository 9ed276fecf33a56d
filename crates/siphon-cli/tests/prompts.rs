//! The prompts of `connection add` and `sync add`, answered through a
//! pseudo-terminal (tmux): what is stored is what was chosen. Without a
//! terminal, a missing argument is still a usage error (exit status 2).

mod support;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::Value;
use support::tmux::Tmux;
use support::{fails, ok, siphon};

const WAIT: Duration = Duration::from_secs(30);

/// The stored connections, from the state file.
fn stored_connections(d: &Path) -> Vec<(String, String)> {
    let c = Connection::open(d.join("state.db")).unwrap();
    let mut q = c
        .prepare("SELECT name, url FROM connections ORDER BY name")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The stored pipeline `name`'s spec, from the state file.
fn stored_pipeline(d: &Path, name: &str) -> Value {
    let c = Connection::open(d.join("state.db")).unwrap();
    let spec: String = c
        .query_row("SELECT spec FROM pipelines WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap();
    serde_json::from_str(&spec).unwrap()
}

#[test]
fn connection_add_asks_for_what_is_missing_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmux = Tmux::start(d, 160, 40);
    tmux.siphon(&["--state", "sqlite://state.db", "connection", "add"]);
    tmux.wait("the name prompt", WAIT, |s| s.contains("Connection name"));
    tmux.type_text("shop");
    tmux.send(&["Enter"]);
    tmux.wait("the URL prompt", WAIT, |s| s.contains("URL (postgres://"));
    // A URL siphon cannot store is refused as it is typed, and asked again.
    tmux.type_text("ftp://nowhere");
    tmux.send(&["Enter"]);
    tmux.wait("the refusal", WAIT, |s| s.contains("ftp"));
    tmux.type_text("sqlite://shop.db");
    tmux.send(&["Enter"]);
    let (code, s) = tmux.ended(WAIT);
    assert_eq!(code, 0, "{s}");
    assert!(s.contains("connection shop saved"), "{s}");
    let stored = stored_connections(d);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, "shop");
    assert!(stored[0].1.ends_with("shop.db"), "{stored:?}");

    // Only the URL missing: only it is asked.
    tmux.clear();
    tmux.siphon(&["--state", "sqlite://state.db", "connection", "add", "other"]);
    let s = tmux.wait("the URL prompt", WAIT, |s| s.contains("URL (postgres://"));
    assert!(!s.contains("Connection name"), "{s}");
    tmux.type_text("sqlite://other.db");
    tmux.send(&["Enter"]);
    assert_eq!(tmux.ended(WAIT).0, 0);
    let names: Vec<String> = stored_connections(d).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["other", "shop"]);
}

#[test]
fn sync_add_asks_for_source_target_mode_and_tables_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("src.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, at TEXT);
             CREATE TABLE b (id INTEGER PRIMARY KEY, at TEXT);
             CREATE TABLE c (id INTEGER PRIMARY KEY, at TEXT);",
        )
        .unwrap();
    let state = ["--state", "sqlite://state.db"];
    let with_state = |args: &[&str]| {
        let mut all = state.to_vec();
        all.extend(args);
        siphon(d, &all)
    };
    ok(with_state(&["connection", "add", "dst", "sqlite://dst.db"]));
    ok(with_state(&["connection", "add", "src", "sqlite://src.db"]));

    let tmux = Tmux::start(d, 160, 40);
    tmux.siphon(&["--state", "sqlite://state.db", "sync", "add"]);
    tmux.wait("the name prompt", WAIT, |s| s.contains("Pipeline name"));
    tmux.type_text("p");
    tmux.send(&["Enter"]);
    // The connections, in name order: dst, src.
    let s = tmux.wait("the source list", WAIT, |s| s.contains("Source connection"));
    assert!(s.contains("dst") && s.contains("src"), "{s}");
    tmux.send(&["Down", "Enter"]);
    // The target list leaves out the source.
    tmux.wait("the target list", WAIT, |s| s.contains("Target connection"));
    tmux.send(&["Enter"]);
    let s = tmux.wait("the mode list", WAIT, |s| s.contains("row_count"));
    assert!(
        s.contains("full") && s.contains("incremental") && s.contains("cdc"),
        "{s}"
    );
    tmux.send(&["Down", "Enter"]);
    // The source's tables, discovered.
    let s = tmux.wait("the table list", WAIT, |s| s.contains("[ ] c"));
    assert!(s.contains("[ ] a") && s.contains("[ ] b"), "{s}");
    tmux.send(&["Space", "Down", "Down", "Space"]);
    tmux.wait("two tables chosen", WAIT, |s| {
        s.contains("[x] a") && s.contains("[x] c")
    });
    tmux.send(&["Enter"]);
    tmux.wait("the cursor prompt", WAIT, |s| s.contains("Cursor column"));
    tmux.type_text("at");
    tmux.send(&["Enter"]);
    let (code, s) = tmux.ended(WAIT);
    assert_eq!(code, 0, "{s}");
    assert!(s.contains("pipeline p saved"), "{s}");
    let spec = stored_pipeline(d, "p");
    assert_eq!(spec["source"], "src", "{spec:#}");
    assert_eq!(spec["target"], "dst", "{spec:#}");
    assert_eq!(spec["mode"], "incremental", "{spec:#}");
    assert_eq!(spec["tables"], serde_json::json!(["a", "c"]), "{spec:#}");
    assert_eq!(spec["cursor"], "at", "{spec:#}");

    // Given a name and a source, it asks for the rest; `--mode` given is not asked.
    tmux.clear();
    tmux.siphon(&[
        "--state",
        "sqlite://state.db",
        "sync",
        "add",
        "q",
        "--source",
        "src",
        "--mode",
        "full",
    ]);
    let s = tmux.wait("the target list", WAIT, |s| s.contains("Target connection"));
    assert!(
        !s.contains("Pipeline name") && !s.contains("Source connection"),
        "{s}"
    );
    tmux.send(&["Enter"]);
    tmux.wait("the table list", WAIT, |s| s.contains("[ ] b"));
    assert!(!tmux.screen().contains("row_count"), "the mode was asked");
    tmux.send(&["Down", "Space", "Enter"]);
    let (code, s) = tmux.ended(WAIT);
    assert_eq!(code, 0, "{s}");
    let spec = stored_pipeline(d, "q");
    assert_eq!(
        (&spec["source"], &spec["target"], &spec["tables"]),
        (&"src".into(), &"dst".into(), &serde_json::json!(["b"])),
        "{spec:#}"
    );
    assert!(spec["mode"].is_null() || spec["mode"] == "full", "{spec:#}");
}

#[test]
fn without_a_terminal_a_missing_argument_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(siphon(d, &["connection", "add", "src", "sqlite://src.db"]));
    ok(siphon(d, &["connection", "add", "dst", "sqlite://dst.db"]));
    for args in [
        &["connection", "add"][..],
        &["connection", "add", "x"],
        &["sync", "add", "p"],
        &["sync", "add", "p", "--source", "src"],
        &["sync", "add", "--source", "src", "--target", "dst"],
    ] {
        let out = fails(siphon(d, args), 2);
        assert!(
            out.contains("required arguments were not provided") && out.contains("Usage:"),
            "{args:?}: {out}"
        );
    }
    // Nothing was stored by them.
    let out = ok(siphon(d, &["sync", "list"]));
    assert!(out.contains("no pipelines"), "{out}");
    let out = ok(siphon(d, &["connection", "list"]));
    assert_eq!(out.lines().count(), 2, "{out}");
}
