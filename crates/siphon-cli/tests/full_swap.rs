//! `full` reloads PostgreSQL→PostgreSQL through the binary: with `strategy:
//! swap` a reader counting the target during reloads never sees fewer rows than
//! the source has, and the table keeps its indexes and constraint names; by
//! default a reload over a complete copy swaps too, so a reload that fails
//! part way leaves the previous copy whole, and the next run resumes it; a
//! continuous run reloads only on `sync resync`, and swaps then too.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use siphon_testkit::Postgres;

mod support;
use support::{db_name, siphon, stdout};

/// The number after `word` in a summary line.
fn figure(line: &str, word: &str) -> u64 {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next().unwrap().parse().unwrap();
        }
    }
    panic!("no `{word}` in {line}")
}

fn config(dir: &Path, src: &str, dst: &str, extra: &str) {
    std::fs::write(
        dir.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
             pipelines:\n  p:\n    source: src\n    target: dst\n    mode: full\n    tables: [public.items]\n\
             \x20   batch_size: 2000\n{extra}"
        ),
    )
    .unwrap();
}

#[test]
fn readers_never_see_a_partial_table_while_swap_reloads_run() {
    const ROWS: i64 = 100_000;
    let pg = Postgres::start().unwrap();
    let (src, dst) = (pg.create_database().unwrap(), pg.create_database().unwrap());
    let (src_db, dst_db) = (db_name(&src), db_name(&dst));
    pg.query_in(
        &src_db,
        &format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, code text NOT NULL, note text);
             CREATE UNIQUE INDEX items_code_key ON items (code);
             CREATE INDEX items_note_idx ON items (note);
             INSERT INTO items SELECT i, 'c' || i, 'note ' || i FROM generate_series(1, {ROWS}) i;"
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "    strategy: swap\n");
    let first = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(first.status.success(), "{first:?}");
    let line = stdout(&first);
    assert_eq!(figure(&line, "inserted"), ROWS as u64, "{line}");
    assert_eq!(figure(&line, "deleted"), 0, "{line}");
    let indexes =
        "SELECT string_agg(indexname || ':' || regexp_replace(indexdef, '^.* USING ', ''), ',' \
                   ORDER BY indexname) FROM pg_indexes WHERE tablename = 'items'";
    let before = pg.query_in(&dst_db, indexes).unwrap();
    assert!(before.contains("items_code_key"), "{before}");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = count_in_a_loop(pg.bin_dir().join("psql"), dst.clone(), stop.clone());
    for _ in 0..3 {
        let again = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
        assert!(again.status.success(), "{again:?}");
        let line = stdout(&again);
        assert!(
            line.contains(&format!("replaced the previous {ROWS} rows")),
            "{line}"
        );
        assert_eq!(figure(&line, "deleted"), 0, "{line}");
    }
    stop.store(true, Ordering::SeqCst);
    let (reads, least, errors) = reader.join().unwrap();
    assert!(errors.is_empty(), "the reader failed: {errors:?}");
    assert!(reads > 0);
    assert_eq!(least, ROWS, "a reader saw {least} rows during a reload");
    // The swapped-in table has the indexes and names the old one had, and no
    // shadow is left behind.
    assert_eq!(pg.query_in(&dst_db, indexes).unwrap(), before);
    assert_eq!(
        pg.query_in(
            &dst_db,
            "SELECT count(*) FROM pg_class WHERE relname LIKE '%siphon_new%'"
        )
        .unwrap(),
        "0"
    );
}

#[test]
fn a_reload_that_fails_part_way_keeps_the_previous_copy_and_resumes() {
    const ROWS: i64 = 100_000;
    let pg = Postgres::start().unwrap();
    let (src, dst) = (pg.create_database().unwrap(), pg.create_database().unwrap());
    let (src_db, dst_db) = (db_name(&src), db_name(&dst));
    pg.query_in(
        &src_db,
        &format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, note text);
             INSERT INTO items SELECT i, 'n' || i FROM generate_series(1, {ROWS}) i;"
        ),
    )
    .unwrap();
    // The target's column is narrower than what the source may hold.
    pg.query_in(
        &dst_db,
        "CREATE TABLE items (id bigint PRIMARY KEY, note varchar(20))",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "");
    let first = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(first.status.success(), "{first:?}");
    let dump = "SELECT count(*) || ':' || md5(string_agg(id || note, ',' ORDER BY id)) FROM items";
    let good = pg.query_in(&dst_db, dump).unwrap();
    assert!(good.starts_with(&format!("{ROWS}:")), "{good}");

    // A late row no longer fits: the reload fails at it.
    pg.query_in(
        &src_db,
        "UPDATE items SET note = repeat('x', 50) WHERE id = 90000; UPDATE items SET note = 'new' WHERE id = 1",
    )
    .unwrap();
    let failed = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(!failed.status.success(), "{failed:?}");
    assert!(stdout(&failed).contains("FAILED"), "{failed:?}");
    assert_eq!(
        pg.query_in(&dst_db, dump).unwrap(),
        good,
        "a failed reload changed the target's copy"
    );

    // Fixed at the source, the next run resumes the new copy and swaps it in.
    pg.query_in(&src_db, "UPDATE items SET note = 'short' WHERE id = 90000")
        .unwrap();
    let again = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(again.status.success(), "{again:?}");
    let line = stdout(&again);
    // It read only what the failed run had not committed.
    assert!(figure(&line, "read") < ROWS as u64, "{line}");
    assert!(
        line.contains(&format!("replaced the previous {ROWS} rows")),
        "{line}"
    );
    assert_eq!(
        pg.query_in(&dst_db, dump).unwrap(),
        pg.query_in(&src_db, dump).unwrap()
    );
    assert_eq!(
        pg.query_in(&dst_db, "SELECT note FROM items WHERE id = 1")
            .unwrap(),
        "new"
    );
}

#[test]
fn swap_is_refused_for_a_table_a_view_reads() {
    let pg = Postgres::start().unwrap();
    let (src, dst) = (pg.create_database().unwrap(), pg.create_database().unwrap());
    let (src_db, dst_db) = (db_name(&src), db_name(&dst));
    pg.query_in(
        &src_db,
        "CREATE TABLE items (id bigint PRIMARY KEY, note text);
         INSERT INTO items SELECT i, 'n' || i FROM generate_series(1, 100) i;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "    strategy: swap\n");
    let first = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(first.status.success(), "{first:?}");
    pg.query_in(
        &dst_db,
        "CREATE VIEW recent AS SELECT * FROM items WHERE id > 50",
    )
    .unwrap();
    let refused = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(!refused.status.success(), "{refused:?}");
    let text = format!(
        "{}{}",
        stdout(&refused),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        text.contains("views depend on it")
            && text.contains("recent")
            && text.contains("strategy: truncate"),
        "{text}"
    );
    assert_eq!(
        pg.query_in(&dst_db, "SELECT count(*) FROM recent").unwrap(),
        "50"
    );

    // A strategy that does not fit the mode is a config error naming the key.
    config(dir.path(), &src, &dst, "    strategy: sequence\n");
    let bad = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let text = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(
        text.contains("pipelines.p.strategy") && text.contains("`swap`"),
        "{text}"
    );
}

/// Counts `items` with psql in a loop until `stop`; returns (reads, least
/// count seen, errors).
fn count_in_a_loop(
    psql: std::path::PathBuf,
    url: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, i64, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut reads, mut least, mut errors) = (0u64, i64::MAX, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let out = Command::new(&psql)
                .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", &url, "-c"])
                .arg("SELECT count(*) FROM items")
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    let n: i64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
                    least = least.min(n);
                    reads += 1;
                }
                Ok(o) => errors.push(String::from_utf8_lossy(&o.stderr).to_string()),
                Err(e) => errors.push(e.to_string()),
            }
        }
        (reads, least, errors)
    })
}

#[test]
fn a_continuous_swap_pipeline_reloads_on_resync_without_readers_seeing_a_partial_table() {
    const ROWS: i64 = 50_000;
    let pg = Postgres::start().unwrap();
    let (src, dst) = (pg.create_database().unwrap(), pg.create_database().unwrap());
    let (src_db, dst_db) = (db_name(&src), db_name(&dst));
    pg.query_in(
        &src_db,
        &format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, note text);
             INSERT INTO items SELECT i, 'n' || i FROM generate_series(1, {ROWS}) i;"
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "    strategy: swap\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml"])
        .current_dir(dir.path())
        .env_remove("SIPHON_STATE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let on_target = || {
        pg.query_in(&dst_db, "SELECT count(*) FROM items")
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait("the first copy", &|| on_target() == ROWS);
    let state = dir.path().join("state.db");
    let loads = || {
        rusqlite::Connection::open(&state)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM execution_tables WHERE table_name = 'public.items' \
                     AND status = 'succeeded'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0)
    };
    wait("the first copy's record", &|| loads() == 1);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = count_in_a_loop(pg.bin_dir().join("psql"), dst.clone(), stop.clone());
    for n in 2..=3 {
        pg.query_in(
            &src_db,
            &format!("INSERT INTO items VALUES ({}, 'more')", ROWS + n),
        )
        .unwrap();
        let out = siphon(
            dir.path(),
            &["sync", "resync", "p", "--table", "public.items"],
        );
        assert!(out.status.success(), "{out:?}");
        wait("the forced reload", &|| loads() == n);
        assert_eq!(on_target(), ROWS + n - 1);
    }
    stop.store(true, Ordering::SeqCst);
    let (reads, least, errors) = reader.join().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "siphon did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(errors.is_empty(), "the reader failed: {errors:?}");
    assert!(reads > 0);
    assert!(least >= ROWS, "a reader saw {least} rows during a reload");
}

#[test]
fn identity_sequences_keep_their_type_and_position_across_a_swap() {
    let pg = Postgres::start().unwrap();
    let (src, dst) = (pg.create_database().unwrap(), pg.create_database().unwrap());
    let (src_db, dst_db) = (db_name(&src), db_name(&dst));
    pg.query_in(
        &src_db,
        "CREATE TABLE items (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, code text NOT NULL);
         INSERT INTO items (code) SELECT 'c' || i FROM generate_series(1, 500) i;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "    strategy: swap\n");
    let sequences =
        "SELECT string_agg(s.seqrelid::regclass || ':' || format_type(s.seqtypid, NULL) \
                     || ':' || s.seqmax, ',' ORDER BY 1) FROM pg_sequence s";
    for _ in 0..2 {
        let run = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
        assert!(run.status.success(), "{run:?}");
    }
    assert!(
        stdout(&siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]))
            .contains("replaced the previous 500 rows"),
        "the reload did not swap"
    );
    // The swapped-in table's identity is an integer sequence named as before,
    // as on the source, and goes on after the rows copied.
    assert_eq!(
        pg.query_in(&dst_db, sequences).unwrap(),
        pg.query_in(&src_db, sequences).unwrap()
    );
    assert_eq!(
        pg.query_in(
            &dst_db,
            "INSERT INTO items (code) VALUES ('new') RETURNING id"
        )
        .unwrap(),
        "501"
    );
}

#[test]
fn a_swap_waiting_for_a_long_transaction_does_not_hold_up_other_readers() {
    let pg = Postgres::start().unwrap();
    let (src, dst) = (pg.create_database().unwrap(), pg.create_database().unwrap());
    let (src_db, dst_db) = (db_name(&src), db_name(&dst));
    pg.query_in(
        &src_db,
        "CREATE TABLE items (id bigint PRIMARY KEY, code text NOT NULL);
         INSERT INTO items SELECT i, 'c' || i FROM generate_series(1, 1000) i;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &src, &dst, "    strategy: swap\n");
    let first = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(first.status.success(), "{first:?}");

    // A reader holds the table in a long transaction.
    let psql = pg.bin_dir().join("psql");
    let mut holder = Command::new(&psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &dst])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = holder.stdin.as_mut().unwrap();
        writeln!(stdin, "BEGIN; SELECT count(*) FROM items;").unwrap();
        stdin.flush().unwrap();
    }
    let holding = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                   WHERE c.relname = 'items' AND l.mode = 'AccessShareLock' AND l.granted";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while pg.query_in(&dst_db, holding).unwrap() == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the holder never got its lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The reload waits for it to end...
    let run = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml", "--once"])
        .current_dir(dir.path())
        .env_remove("SIPHON_STATE")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the loaded copy waits for the lock (its session last ran the lock
    // request, or rolled it back to try again)...
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND (query LIKE 'LOCK TABLE%items%' OR query LIKE '%siphon_swap_lock%')";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while pg.query_in(&dst_db, waiting).unwrap() == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the swap never asked for its lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // ...other readers still read the table: a lock request queued until the
    // holder ends would hold each of them up until then.
    for _ in 0..10 {
        let read = Command::new(&psql)
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", &dst, "-c"])
            .arg("SET lock_timeout = '20s'; SELECT count(*) FROM items")
            .output()
            .unwrap();
        assert!(
            read.status.success(),
            "a reader was held up by the waiting swap: {}",
            String::from_utf8_lossy(&read.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "1000");
    }
    // ...and a request has timed out behind the holder (the session rolled
    // back to its savepoint to try again later, and said so in the log)
    // before the holder ends.
    let retried = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND query LIKE 'ROLLBACK TO SAVEPOINT siphon_swap_lock%'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while pg.query_in(&dst_db, retried).unwrap() == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the swap's lock request never timed out behind the holder"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    {
        use std::io::Write;
        let stdin = holder.stdin.as_mut().unwrap();
        writeln!(stdin, "COMMIT;").unwrap();
    }
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("replaced the previous 1000 rows"),
        "{}",
        stdout(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for other transactions"),
        "{out:?}"
    );
}
