//! `sync remove` of a `cdc` pipeline that a `siphon run` is streaming refuses,
//! and removes nothing: dropping the slot under a running stream made that run
//! create the slot and publication again, for a pipeline no longer in the
//! catalog, and the slot was then left holding WAL with nothing to remove it.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use siphon_testkit::Postgres;

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_siphon"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("SIPHON_STATE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn siphon(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("run siphon")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `f` until it is true, for at most a minute.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a `siphon run` with SIGINT and waits for it.
fn stop(mut child: Child) {
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("siphon run did not stop");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn removing_a_running_cdc_pipeline_is_refused_until_the_run_stops() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pipeline = src.clone();
    let slot = format!("siphon_{pipeline}");
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src_url}\n  dst: {dst_url}\n\
             pipelines:\n  {pipeline}:\n    source: src\n    target: dst\n    mode: cdc\n    tables: [public.t]\n"
        ),
    )
    .unwrap();
    let slot_state = || {
        pg.query(&format!(
            "SELECT coalesce((SELECT active::text FROM pg_replication_slots WHERE slot_name = '{slot}'), 'none')"
        ))
        .unwrap()
    };

    let run = command(d, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start siphon run");
    wait_for("the run to stream from its slot", || slot_state() == "true");

    let out = siphon(d, &["sync", "remove", &pipeline, "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("running") && said.contains("nothing was removed"),
        "{said}"
    );
    assert_eq!(slot_state(), "true", "the slot was touched");
    let listed = text(&siphon(d, &["sync", "list"]));
    assert!(listed.contains(&format!("{pipeline}:")), "{listed}");

    stop(run);
    std::fs::remove_file(d.join("siphon.yaml")).unwrap();
    let out = siphon(
        d,
        &[
            "--state",
            "sqlite://state.db",
            "sync",
            "remove",
            &pipeline,
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(slot_state(), "none");
    let publications = pg
        .query_in(
            &src,
            &format!("SELECT count(*) FROM pg_publication WHERE pubname = '{slot}'"),
        )
        .unwrap();
    assert_eq!(publications, "0");
}
