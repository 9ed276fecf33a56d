//! A `cdc` pipeline from PostgreSQL to a `file://` event target through the
//! binary: siphon SIGKILLed while it streams under writes, restarted, and
//! every source change is in the files, each repeated line with the id and
//! contents of its first occurrence. And a pipeline that needs what an event
//! target cannot do is refused when it starts.
//!
//! Every wait polls a condition with a deadline; no fixed sleep synchronizes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as J;
use siphon_testkit::Postgres;

mod support;
use support::{command, siphon, Running};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(600);

/// Transactions the workload commits.
const TXNS: i64 = 1500;

/// A source database with table `t`, and a working directory whose state
/// store holds connection `src` (the database) and `out` (a directory of
/// event files).
struct Setup {
    pg: &'static Postgres,
    db: String,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let pg = Postgres::shared().unwrap();
        let url = pg.create_database().unwrap();
        let db = url.rsplit('/').next().unwrap().to_string();
        pg.query_in(
            &db,
            "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
             INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, 2000) g;",
        )
        .unwrap();
        let s = Setup {
            pg,
            db,
            dir: tempfile::tempdir().unwrap(),
        };
        s.siphon(&["connection", "add", "src", &url]);
        let out = format!("file://{}", s.events().display());
        s.siphon(&["connection", "add", "out", &out]);
        s
    }

    /// The directory the event files are written to.
    fn events(&self) -> PathBuf {
        self.dir.path().join("events")
    }

    /// `siphon ARGS` in the working directory, which must succeed.
    fn siphon(&self, args: &[&str]) -> String {
        succeeded(args, &siphon(self.dir.path(), args))
    }

    /// `siphon run` (continuous) as a child, killed on drop.
    fn spawn(&self) -> Running {
        let cmd = command(self.dir.path(), &["run"]);
        Running::spawn_appending(cmd, &self.dir.path().join("siphon.log"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("siphon.log")).unwrap_or_default()
    }
}

fn succeeded(args: &[&str], out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "siphon {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Polls `cond` until it holds; fails after [`DEADLINE`] with `what`.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    support::wait_for(what, DEADLINE, cond)
}

/// Every complete line of the table's event file, parsed (a line a kill cut
/// short is not complete: no newline yet).
fn lines(file: &Path) -> Vec<J> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Rows the workload inserted that the file holds (ids above 1,000,000).
fn progress(file: &Path) -> i64 {
    lines(file)
        .iter()
        .filter(|l| l["op"] == "insert" && l["key"]["id"].as_i64().unwrap_or(0) > 1_000_000)
        .map(|l| l["key"]["id"].as_i64().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as i64
}

/// The workload: `TXNS` transactions, each inserting a row with id above
/// 1,000,000, updating an existing row and, every third time, deleting one.
fn workload(pg: &Postgres, db: &str) -> std::thread::JoinHandle<()> {
    let (psql, port, db) = (pg.bin_dir().join("psql"), pg.port(), db.to_string());
    let sql = format!(
        "DO $$ BEGIN
           FOR i IN 1..{TXNS} LOOP
             INSERT INTO t VALUES (1000000 + i, i, 'new ' || i);
             UPDATE t SET v = v + i, note = 'upd ' || i WHERE id = (i * 7) % 2000 + 1;
             IF i % 3 = 0 THEN DELETE FROM t WHERE id = (i * 13) % 2000 + 1; END IF;
             COMMIT;
             PERFORM pg_sleep(0.002);
           END LOOP;
         END $$"
    );
    std::thread::spawn(move || {
        let ok = Command::new(psql)
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &port.to_string(), "-d", &db, "-c", &sql])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "the workload failed");
    })
}

/// The table as the events say it is: each id's first line applied in file
/// order (`insert`/`update` set the row, `delete` removes it, `truncate`
/// empties the table). Checks on the
/// way that every repeated id carries the same event as its first line.
fn replay(events: &[J]) -> BTreeMap<i64, (i64, Option<String>)> {
    let mut first: HashMap<String, &J> = HashMap::new();
    let mut rows = BTreeMap::new();
    for e in events {
        let id = e["id"].as_str().expect("every line has an id").to_string();
        if let Some(earlier) = first.get(&id) {
            assert_eq!(
                *earlier, e,
                "id {id} appears again with other contents than its first line"
            );
            continue;
        }
        first.insert(id, e);
        let key = || e["key"]["id"].as_i64().expect("a row key");
        match e["op"].as_str().unwrap() {
            "insert" | "update" => {
                let after = &e["after"];
                rows.insert(
                    key(),
                    (
                        after["v"].as_i64().unwrap(),
                        after["note"].as_str().map(str::to_string),
                    ),
                );
            }
            "delete" => {
                rows.remove(&key());
            }
            "truncate" => rows.clear(),
            "schema" => {}
            other => panic!("unexpected op {other}: {e}"),
        }
    }
    rows
}

#[test]
fn cdc_to_files_survives_a_sigkill_without_losing_a_change() {
    let s = Setup::new();
    s.siphon(&[
        "sync",
        "add",
        &format!("p_{}", s.db),
        "--source",
        "src",
        "--target",
        "out",
        "--mode",
        "cdc",
        "--tables",
        "public.t",
    ]);
    let file = s.events().join("public.t.jsonl");
    let mut siphon = s.spawn();
    wait_for("the snapshot is in the file", || {
        lines(&file)
            .iter()
            .filter(|l| l["op"] == "insert" && l["tx"].is_null())
            .count()
            >= 2000
    });
    let writes = workload(s.pg, &s.db);
    wait_for("changes stream into the file", || progress(&file) >= 50);
    siphon.kill();
    let at_kill = progress(&file);
    assert!(
        at_kill < TXNS,
        "every change was in the file before the kill ({at_kill}): the kill was not mid-stream"
    );

    let _siphon = s.spawn();
    writes.join().unwrap();
    wait_for("every workload insert is in the file", || {
        progress(&file) == TXNS
    });
    let source: BTreeMap<i64, (i64, Option<String>)> =
        s.pg.query_in(
            &s.db,
            "SELECT id || '|' || v || '|' || coalesce(note, '') FROM t ORDER BY id",
        )
        .unwrap()
        .lines()
        .map(|l| {
            let mut p = l.splitn(3, '|');
            let id = p.next().unwrap().parse().unwrap();
            let v = p.next().unwrap().parse().unwrap();
            (id, (v, Some(p.next().unwrap().to_string())))
        })
        .collect();
    let mut replayed = BTreeMap::new();
    let deadline = Instant::now() + DEADLINE;
    while replayed != source {
        assert!(
            Instant::now() < deadline,
            "the file's events do not replay to the source's table; siphon's log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
        replayed = replay(&lines(&file));
    }
    let all = lines(&file);
    // A change delivered again after the kill carries the id it had: lines
    // equal but for their id share their id.
    let mut ids_of: HashMap<String, String> = HashMap::new();
    for l in &all {
        let mut body = l.clone();
        let id = body["id"].take();
        let id = id.as_str().unwrap().to_string();
        if let Some(first) = ids_of.insert(body.to_string(), id.clone()) {
            assert_eq!(first, id, "one change delivered under two ids: {l}");
        }
    }
    let logged = all.iter().filter(|l| !l["tx"].is_null()).count();
    assert!(logged as i64 >= TXNS * 2, "{logged} logged changes");
    for l in all.iter().filter(|l| !l["tx"].is_null()) {
        assert!(
            l["tx"]["position"].is_string() || l["tx"]["position"].is_object(),
            "a logged change without its transaction's position: {l}"
        );
        assert!(
            l["tx"]["commit_time"].is_string(),
            "a logged change without its commit time: {l}"
        );
    }
}

#[test]
fn a_pipeline_needing_what_an_event_target_lacks_fails_at_start() {
    let s = Setup::new();
    let url = s.pg.url_for(&s.db);
    let out = format!("file://{}", s.events().display());
    std::fs::write(
        s.dir.path().join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {url}\n  out: {out}\n\
             pipelines:\n  polled:\n    source: src\n    target: out\n    mode: incremental\n\
             \x20   cursor: id\n    tables: [public.t]\n    delete_detection: key_diff\n"
        ),
    )
    .unwrap();
    let run = siphon(s.dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    let text = support::text(&run);
    assert!(!run.status.success(), "the pipeline ran: {text}");
    assert!(
        text.contains("target `out` cannot serve `delete_detection: key_diff`")
            && text.contains("read_keys"),
        "{text}"
    );
    // Nothing was published: the refusal came before any table was read.
    let published = std::fs::read_dir(s.events())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(published, 0, "events were written before the refusal");
}

#[test]
fn a_pipeline_to_files_is_removed_without_opening_the_target_for_checkpoints() {
    let s = Setup::new();
    let name = format!("p_{}", s.db);
    s.siphon(&[
        "sync", "add", &name, "--source", "src", "--target", "out", "--mode", "full",
    ]);
    s.siphon(&["run", &name, "--once"]);
    assert!(
        !lines(&s.events().join("public.t.jsonl")).is_empty(),
        "the full load wrote no events"
    );
    let out = s.siphon(&["sync", "remove", &name, "--yes"]);
    assert!(out.contains(&format!("pipeline {name} removed")), "{out}");
}
