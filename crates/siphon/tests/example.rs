//! The library example, run against a real PostgreSQL server: it copies a
//! table into a SQLite file, streams the changes made while it runs, stops
//! gracefully with its checkpoint committed, and a second run goes on from
//! that checkpoint instead of copying the table again.
//!
//! The test compiles the example's own file and calls its `replicate`, so
//! what runs is exactly the example's code (`cargo test` also builds the
//! example binary itself). Every wait polls a condition with a deadline.

#[path = "../examples/postgres_to_sqlite.rs"]
#[allow(dead_code)]
mod example;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siphon::{ConnectionUrl, Phase, Registry, Sink, StreamId, TableName};
use siphon_testkit::Postgres;

/// How long any awaited condition may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// The rows of `items` in the SQLite file, by id: `(id, name)`.
fn target_rows(path: &Path) -> Vec<(i64, String)> {
    let Ok(db) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut q) = db.prepare("SELECT id, name FROM items ORDER BY id") else {
        return Vec::new();
    };
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Waits until the SQLite file holds exactly `want`.
async fn wait_for_rows(path: &Path, want: &[(i64, String)], what: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let have = target_rows(path);
        if have == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the target has {} rows, not the {} expected",
            have.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(id, "item id")` for each id.
fn items(ids: impl IntoIterator<Item = i64>) -> Vec<(i64, String)> {
    ids.into_iter().map(|i| (i, format!("item {i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_streams_changes_and_stops_with_its_checkpoint() {
    let pg = Postgres::shared().unwrap();
    let url = pg.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &db,
        "CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 100) g;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("copy.db");
    let state = dir.path().join("state.db");
    // The only test in this binary: nothing else reads the environment.
    std::env::set_var("SIPHON_EXAMPLE_SOURCE", &url);
    std::env::set_var("SIPHON_EXAMPLE_TARGET", &target);

    let progress = Arc::new(example::Progress::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let (state, progress) = (state.clone(), progress.clone());
        async move {
            example::replicate(&state, progress, async {
                stopped.await.ok();
            })
            .await
        }
    });

    wait_for_rows(&target, &items(1..=100), "the snapshot").await;
    pg.query_in(
        &db,
        "INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(101, 150) g;
         UPDATE public.items SET name = 'renamed' WHERE id = 1;
         DELETE FROM public.items WHERE id = 2;",
    )
    .unwrap();
    let mut want = items((1..=150).filter(|&i| i != 2));
    want[0].1 = "renamed".to_string();
    wait_for_rows(&target, &want, "the streamed changes").await;

    stop.send(()).unwrap();
    let outcomes = run.await.unwrap().expect("the run stops without error");
    assert_eq!(outcomes.len(), 1);
    let outcome = &outcomes[0];
    assert_eq!(outcome.pipeline, example::PIPELINE);
    assert!(
        outcome.last_error.is_none(),
        "the run failed: {:?}",
        outcome.last_error
    );
    assert!(outcome.passes >= 1, "no pass ended");
    assert!(
        progress.rows() >= 152,
        "rows committed: {}",
        progress.rows()
    );

    // The checkpoint committed with the data: the stream is past its snapshot.
    let target_url = format!("sqlite://{}", target.display());
    let sink = Registry::standard()
        .open_sink(
            "target",
            &ConnectionUrl::from_parts(target_url.clone(), target_url),
        )
        .await
        .unwrap();
    let stream = StreamId::new(example::PIPELINE, &TableName::new(Some("public"), "items"));
    let checkpoint = sink
        .checkpoint(&stream)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert!(
        matches!(checkpoint.phase, Phase::Streaming { position: Some(_) }),
        "{checkpoint:?}"
    );

    // A second run goes on from that checkpoint: it applies the new change
    // only, and copies nothing again.
    pg.query_in(&db, "INSERT INTO public.items VALUES (151, 'item 151');")
        .unwrap();
    want.push((151, "item 151".to_string()));
    let again = Arc::new(example::Progress::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let (state, again) = (state.clone(), again.clone());
        async move {
            example::replicate(&state, again, async {
                stopped.await.ok();
            })
            .await
        }
    });
    wait_for_rows(&target, &want, "the change made while stopped").await;
    stop.send(()).unwrap();
    let outcomes = run
        .await
        .unwrap()
        .expect("the second run stops without error");
    assert!(
        outcomes[0].last_error.is_none(),
        "{:?}",
        outcomes[0].last_error
    );
    assert_eq!(again.rows(), 1, "the second run copied rows again");
}
