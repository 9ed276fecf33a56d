//! Progress lines of a `cdc` table copied while the log streams (a forced
//! reload between watermarks): the line that ends the copy counts the rows of
//! its last chunk too.

use std::time::Duration;

use siphon_testkit::Postgres;

mod support;
use support::{command, config, db_name, ok, run_log, siphon, wait_for, Running};

#[test]
fn a_reload_while_streaming_ends_its_progress_with_every_row_copied() {
    let pg = Postgres::shared().unwrap();
    let src = pg.create_database().unwrap();
    let db = db_name(&src);
    pg.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); \
         INSERT INTO t SELECT g, g FROM generate_series(1, 1200) g;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.db");
    config(
        dir.path(),
        &src,
        &format!("sqlite://{}", target.display()),
        "cdc",
        "[public.t]",
        "schedule: continuous\nbatch_size: 500",
    );
    let mut cmd = command(dir.path(), &["run", "-f", "siphon.yaml"]);
    cmd.env("SIPHON_PROGRESS_EVERY", "0s");
    let mut run = Running::spawn(cmd, &dir.path().join("siphon.log"));
    let within = Duration::from_secs(120);
    let copied = "p/public.t: copied ";
    let ends = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.starts_with(copied))
            .map(str::to_string)
            .collect()
    };
    wait_for("the first copy is complete", within, || {
        assert!(run.running(), "{}", run_log(dir.path()));
        ends(&run_log(dir.path())).len() == 1
    });
    // The reload is copied in three chunks (500, 500, 200) while the log streams.
    ok(siphon(
        dir.path(),
        &["sync", "resync", "p", "--table", "public.t"],
    ));
    wait_for("the reload is complete", within, || {
        assert!(run.running(), "{}", run_log(dir.path()));
        ends(&run_log(dir.path())).len() == 2
    });
    assert!(run.stop("TERM", within), "{}", run_log(dir.path()));
    let log = run_log(dir.path());
    assert_eq!(
        ends(&log),
        vec![
            "p/public.t: copied 1200 rows; streaming".to_string(),
            "p/public.t: copied 1200 rows; streaming".to_string(),
        ],
        "{log}"
    );
}
