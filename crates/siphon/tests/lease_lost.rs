//! A run whose lease another worker takes over stops the pipeline, waits for
//! the lease, and runs again under a newer epoch once it gets it back: the
//! checkpoints it writes then carry that epoch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use siphon::{LogEvents, PassReport, Registry, RunEvents, Shutdown, StateStore};
use siphon_state::SqliteStateStore;

/// What the run said, in order.
#[derive(Clone, Default)]
struct Said(Arc<Mutex<Vec<String>>>);

impl Said {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn has(&self, prefix: &str) -> bool {
        self.0.lock().unwrap().iter().any(|s| s.starts_with(prefix))
    }
    fn passes(&self) -> usize {
        let said = self.0.lock().unwrap();
        said.iter().filter(|s| s.starts_with("ended")).count()
    }
}

impl RunEvents for Said {
    fn removed(&mut self, p: &str) {
        LogEvents.removed(p);
    }
    fn changed(&mut self, p: &str) {
        LogEvents.changed(p);
    }
    fn pass_ended(&mut self, _: &str, report: &PassReport) {
        self.push(format!("ended {:?}", report.status));
    }
    fn pass_stopped(&mut self, _: &str, e: &siphon::Error) {
        self.push(format!("stopped {e}"));
    }
    fn pass_failed(&mut self, _: &str, e: &siphon::Error) {
        self.push(format!("failed {:?} {e}", e.kind()));
    }
    fn waiting_for_lease(&mut self, _: &str, held: Option<&siphon_core::Lease>) {
        self.push(format!(
            "waiting for {}",
            held.map(|l| l.holder.as_str()).unwrap_or("?")
        ));
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sql(path: &std::path::Path, statement: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(statement)
        .unwrap();
}

fn target_epoch(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT epoch FROM siphon_checkpoints WHERE pipeline = 'p'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loses_its_lease_stops_and_runs_again_under_a_newer_epoch() {
    // The only test in this binary: the lease time is read from the environment.
    std::env::set_var(siphon::LEASE_TTL_ENV, "1s");
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, at) = (
        dir.path().join("src.db"),
        dir.path().join("dst.db"),
        dir.path().join("state.db"),
    );
    sql(
        &src,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
    );
    let state = SqliteStateStore::open(&at).await.unwrap();
    state
        .put_connection("src", &format!("sqlite://{}", src.display()))
        .await
        .unwrap();
    state
        .put_connection("dst", &format!("sqlite://{}", dst.display()))
        .await
        .unwrap();
    let spec: siphon::PipelineSpec = serde_json::from_value(serde_json::json!({
        "source": "src", "target": "dst", "tables": ["t"], "schedule": "every 1s"
    }))
    .unwrap();
    state.put_pipeline("p", &spec).await.unwrap();

    let said = Said::default();
    let shutdown = Shutdown::new();
    let run = {
        let (state, spec, shutdown, mut said) =
            (state.clone(), spec.clone(), shutdown.clone(), said.clone());
        tokio::spawn(async move {
            siphon::follow(
                "p",
                &spec,
                &state,
                &Registry::standard(),
                &siphon::NoopObserver,
                &shutdown,
                &mut said,
            )
            .await
        })
    };
    wait_for("a pass ran under the lease", || said.passes() > 0).await;
    let ours = state
        .lease("p")
        .await
        .unwrap()
        .expect("the run holds the lease");
    assert_eq!(ours.holder, siphon::holder_id());
    assert_eq!(target_epoch(&dst), ours.epoch as i64);

    // Another worker takes the lease over (as one would after this worker
    // stalled past its lease time).
    sql(
        &at,
        &format!(
            "UPDATE leases SET holder = 'other:1:x', epoch = {}, \
             expires_at = '2999-01-01T00:00:00.000000000Z' WHERE pipeline = 'p'",
            ours.epoch + 1
        ),
    );
    wait_for("the run notices and waits for the lease", || {
        said.has("waiting for other:1:x")
    })
    .await;
    let passes = said.passes();
    // The other worker stops: its lease is given up.
    sql(
        &at,
        "UPDATE leases SET holder = '', expires_at = '2000-01-01T00:00:00.000000000Z' \
         WHERE pipeline = 'p'",
    );
    wait_for("the run took the lease back and ran again", || {
        said.passes() > passes
    })
    .await;
    let back = state.lease("p").await.unwrap().expect("held again");
    assert_eq!(back.holder, siphon::holder_id());
    assert_eq!(back.epoch, ours.epoch + 2, "a new holding, a new epoch");
    wait_for("the target's checkpoint carries the new epoch", || {
        target_epoch(&dst) == back.epoch as i64
    })
    .await;

    shutdown.request();
    run.await.unwrap();
    // A graceful stop gives the lease up.
    assert_eq!(state.lease("p").await.unwrap(), None);
}
