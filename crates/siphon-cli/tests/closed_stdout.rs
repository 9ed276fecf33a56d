//! A reader that closes siphon's stdout early (`siphon connection list | head`)
//! ends siphon quietly with status 141, as it ends other tools, and never with
//! a panic message.

use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_ends_siphon_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Enough output to fill a pipe, so siphon is still printing when the
    // reader goes away, whatever the timing.
    let mut yaml = String::from("state: sqlite://state.db\nconnections:\n");
    for i in 0..3000 {
        yaml.push_str(&format!("  connection_{i:05}: sqlite://db_{i:05}.db\n"));
    }
    std::fs::write(d.join("siphon.yaml"), yaml).unwrap();
    let applied = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .arg("apply")
        .current_dir(d)
        .env_remove("SIPHON_STATE")
        .output()
        .unwrap();
    assert!(applied.status.success(), "{applied:?}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["connection", "list"])
        .current_dir(d)
        .env_remove("SIPHON_STATE")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first).contains("connection_00000"));
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}
