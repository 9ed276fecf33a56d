//! `sync remove` of a `cdc` pipeline that a `siphon run` is streaming refuses,
//! and removes nothing: dropping the slot under a running stream made that run
//! create the slot and publication again, for a pipeline no longer in the
//! catalog, and the slot was then left holding WAL with nothing to remove it.

use std::time::Duration;

use siphon_testkit::Postgres;

mod support;
use support::{command, siphon, text, wait_for, Running};

const DEADLINE: Duration = Duration::from_secs(60);

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

    let mut run = Running::spawn(command(d, &["run"]), &d.join("run.log"));
    wait_for("the run streams from its slot", DEADLINE, || {
        slot_state() == "true"
    });

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

    run.stop("INT", DEADLINE);
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
