//! `siphon run --once` against servers that cannot be used: it returns, exits
//! non-zero and says why and where, without the password.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "hunter2";

/// Generous bound that only guards against a hanging test, never measures.
const PATIENCE: Duration = Duration::from_secs(120);

/// A listener that accepts connections and never answers them.
fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// Runs `siphon run -f siphon.yaml --once` on `yaml` in a fresh folder; kills
/// it and fails the test if it has not ended within [`PATIENCE`]. Returns the
/// exit code and everything it printed.
fn run_once(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("siphon.yaml"), yaml).unwrap();
    run_in(dir.path())
}

fn run_in(dir: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml", "--once"])
        .current_dir(dir)
        .env_remove("SIPHON_STATE")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run siphon");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("siphon run --once still had not returned after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.code().unwrap_or(-1), out)
}

fn config(source_url: &str) -> String {
    format!(
        "connections:\n  app: {source_url}\n  out: sqlite://out.db\n\
         pipelines:\n  p:\n    source: app\n    target: out\n"
    )
}

#[test]
fn a_black_hole_server_fails_the_run_with_a_timeout() {
    let port = black_hole();
    let at = format!("127.0.0.1:{port}");
    let (code, out) = run_once(&config(&format!(
        "postgres://app:{SECRET}@{at}/app?connect_timeout=2"
    )));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("timed out"), "{out}");
    assert!(out.contains(&at), "{out}");
    assert!(!out.contains(SECRET), "the password leaked:\n{out}");
}

#[test]
fn nothing_listening_says_connection_refused() {
    let port = siphon_testkit::free_port().unwrap();
    let at = format!("127.0.0.1:{port}");
    let (code, out) = run_once(&config(&format!("postgres://app:{SECRET}@{at}/app")));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("connection refused"), "{out}");
    assert!(out.contains(&at), "{out}");
    assert!(!out.contains(SECRET), "the password leaked:\n{out}");
}

#[test]
fn a_locked_sqlite_target_fails_after_the_busy_timeout_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let src = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
    src.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
    )
    .unwrap();
    // Another connection holds the target's write lock for the whole run.
    let holder = rusqlite::Connection::open(dir.path().join("out.db")).unwrap();
    holder
        .execute_batch("CREATE TABLE x (a); BEGIN EXCLUSIVE; INSERT INTO x VALUES (1);")
        .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "connections:\n  src: sqlite://src.db\n  out: sqlite://out.db\n\
         pipelines:\n  p:\n    source: src\n    target: out\n",
    )
    .unwrap();
    let (code, out) = run_in(dir.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("out.db"), "{out}");
    assert!(
        out.contains("locked by another connection or process"),
        "{out}"
    );
    drop(holder);
}
