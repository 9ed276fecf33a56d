//! `/metrics` scraped over HTTP from `siphon service start --listen` while a
//! continuous PostgreSQL → PostgreSQL `cdc` pipeline runs: the token is
//! required, and every metric family appears with values that match what was
//! written (rows by operation, snapshot done and total, an error of its kind
//! for a table the target refuses, batch durations, lag, source position, the
//! slot's retained WAL). Then `siphon status` shows the replication lag of the
//! table and the pipeline, read from the same state store.
//!
//! Every wait polls a condition with a deadline; no fixed sleep.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use siphon_testkit::{free_port, Postgres};

mod support;
use support::{db_name, ok, Running};

/// How long a copy, a start or a change may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// The service's API token.
const TOKEN: &str = "metrics-test-token-8d2e";

/// `GET path` on the service with `token` as bearer: the status code and body.
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the service");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

/// The value of the sample of `name` whose labels include every one of
/// `labels`; `None` when there is none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Scrapes `/metrics` until `cond` holds on it; returns that scrape.
fn scrape_until(
    port: u16,
    service: &mut Running,
    log: &Path,
    what: &str,
    cond: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(
            service.running(),
            "the service ended: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let (code, text) = get(port, "/metrics", Some(TOKEN));
        assert_eq!(code, 200, "{text}");
        if cond(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}: not seen in\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `siphon status --json` of the test's state store: its one pipeline.
fn status(dir: &Path, state: &str) -> Value {
    let run = support::siphon(dir, &["status", "--json", "--state", state]);
    let out = support::stdout(&run);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "status --json printed no JSON ({e}): {}",
            support::text(&run)
        )
    });
    report["pipelines"][0].clone()
}

#[test]
fn the_service_serves_every_metric_and_status_shows_the_lag() {
    let pg = Postgres::shared().unwrap();
    let src = db_name(&pg.create_database().unwrap());
    let dst = db_name(&pg.create_database().unwrap());
    pg.query_in(
        &src,
        "CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g;
         CREATE TABLE bad (id bigint PRIMARY KEY, v text);
         INSERT INTO bad VALUES (1, 'x');",
    )
    .unwrap();
    // The target refuses every row of `bad` (a check violation: bad input),
    // even from siphon's replica-role connection.
    pg.query_in(
        &dst,
        "CREATE TABLE bad (id bigint PRIMARY KEY, v text);
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'bad refuses this row' USING ERRCODE = '23514'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON bad
             FOR EACH ROW EXECUTE FUNCTION refuse();
         ALTER TABLE bad ENABLE ALWAYS TRIGGER refuse;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = format!("sqlite://{}", d.join("state.db").to_str().unwrap());
    // Replication slots are server-wide: the pipeline is named after its source.
    let pipeline = src.clone();
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "connections:\n  src: {}\n  dst: {}\n  gone: postgres://app@127.0.0.1:1/app\npipelines:\n  {pipeline}:\n    source: src\n    \
             target: dst\n    mode: cdc\n    tables: [public.items, public.bad]\n    \
             schedule: continuous\n  zz_unreachable:\n    source: gone\n    target: dst\n    \
             mode: full\n    schedule: every 1s\n",
            pg.url_for(&src),
            pg.url_for(&dst)
        ),
    )
    .unwrap();
    ok(support::siphon(d, &["apply", "--state", &state]));

    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = support::command(d, &["service", "start", "--listen", &listen]);
    cmd.args(["--state", &state]).env("SIPHON_API_TOKEN", TOKEN);
    let log = d.join("service.log");
    let mut service = Running::spawn(cmd, &log);
    support::wait_for("the service listens", DEADLINE, || {
        assert!(service.running(), "the service ended");
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    // The token is required.
    assert_eq!(get(port, "/metrics", None).0, 401);
    assert_eq!(get(port, "/metrics", Some("not-the-token")).0, 401);

    let p = pipeline.as_str();
    let items = [("pipeline", p), ("table", "public.items")];
    let text = scrape_until(port, &mut service, &log, "the snapshot of items", |t| {
        sample(t, "siphon_snapshot_rows_done", &items) == Some(200.0)
            && sample(t, "siphon_snapshot_rows_total", &items) == Some(200.0)
    });
    let op = |op: &'static str| [("pipeline", p), ("table", "public.items"), ("op", op)];
    assert_eq!(
        sample(&text, "siphon_rows_applied_total", &op("copy")),
        Some(200.0),
        "{text}"
    );
    let bad = [
        ("pipeline", p),
        ("table", "public.bad"),
        ("kind", "bad_input"),
    ];
    scrape_until(port, &mut service, &log, "the refused table's error", |t| {
        sample(t, "siphon_errors_total", &bad).is_some_and(|n| n >= 1.0)
    });
    // A pipeline whose source cannot be reached fails whole passes.
    scrape_until(
        port,
        &mut service,
        &log,
        "the unreachable source's pass error",
        |t| {
            sample(
                t,
                "siphon_pass_errors_total",
                &[("pipeline", "zz_unreachable"), ("kind", "connection")],
            )
            .is_some_and(|n| n >= 1.0)
        },
    );
    support::wait_for("items streams", DEADLINE, || {
        let p = status(d, &state);
        p["tables"].as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t["table"] == "public.items" && t["state"] == "streaming")
        })
    });

    // Changes while the pipeline streams.
    pg.query_in(
        &src,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(201, 230) g;
         UPDATE items SET v = 'changed' WHERE id <= 3;
         DELETE FROM items WHERE id = 10;",
    )
    .unwrap();
    let text = scrape_until(port, &mut service, &log, "the streamed changes", |t| {
        sample(t, "siphon_rows_applied_total", &op("insert")) == Some(30.0)
            && sample(t, "siphon_rows_applied_total", &op("update")) == Some(3.0)
            && sample(t, "siphon_rows_applied_total", &op("delete")) == Some(1.0)
            && sample(t, "siphon_replication_lag_seconds", &items).is_some()
            && sample(t, "siphon_source_position", &[("pipeline", p)]).is_some()
    });
    let lag = sample(&text, "siphon_replication_lag_seconds", &items).expect("a lag");
    assert!((0.0..300.0).contains(&lag), "lag {lag}\n{text}");
    assert!(
        sample(&text, "siphon_source_position", &[("pipeline", p)]).is_some_and(|n| n > 0.0),
        "{text}"
    );
    let cdc = [("pipeline", p), ("mode", "cdc")];
    let batches = sample(&text, "siphon_batch_apply_duration_seconds_count", &cdc).unwrap_or(0.0);
    assert!(batches >= 1.0, "{text}");
    let mut all = cdc.to_vec();
    all.push(("le", "+Inf"));
    assert_eq!(
        sample(&text, "siphon_batch_apply_duration_seconds_bucket", &all),
        Some(batches),
        "a histogram with buckets: {text}"
    );
    for help in [
        "siphon_rows_applied_total",
        "siphon_replication_lag_seconds",
        "siphon_batch_apply_duration_seconds",
        "siphon_errors_total",
        "siphon_pass_errors_total",
        "siphon_snapshot_rows_done",
        "siphon_snapshot_rows_total",
        "siphon_source_position",
    ] {
        assert!(text.contains(&format!("# HELP {help} ")), "{help}: {text}");
    }
    scrape_until(port, &mut service, &log, "the slot's retained WAL", |t| {
        sample(t, "siphon_source_retained_log_bytes", &[("pipeline", p)]).is_some_and(|b| b > 0.0)
    });

    // `siphon status` shows the lag of the table and of the pipeline.
    let doc = status(d, &state);
    let table = doc["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.items")
        .cloned()
        .unwrap();
    for lag in [&table["lag"], &doc["lag"]] {
        let seconds = lag["seconds"].as_f64().unwrap_or(-1.0);
        assert!((0.0..300.0).contains(&seconds), "{doc:#}");
        assert!(lag["source_commit_at"].is_string(), "{doc:#}");
        assert!(lag["applied_at"].is_string(), "{doc:#}");
    }
    // The refused table applied no logged change: it has no lag.
    let bad_table = doc["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.bad")
        .cloned()
        .unwrap();
    assert!(bad_table["lag"].is_null(), "{doc:#}");
    let text = ok(support::siphon(d, &["status", "--state", &state]));
    assert!(text.contains("replication lag: "), "{text}");
    assert!(text.contains("LAG"), "{text}");

    assert!(
        service.stop("TERM", DEADLINE),
        "the service did not stop cleanly: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The slot is the shared server's: it goes with the pipeline.
    ok(support::siphon(
        d,
        &["sync", "remove", p, "--yes", "--state", &state],
    ));
}
