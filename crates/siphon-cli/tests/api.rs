//! The REST API of `siphon service start --listen ADDR`, over real HTTP against
//! a running service: the catalog edited through it, a pipeline run and its
//! executions read, a table paused and resynced as the state store then
//! shows, the bearer token, clear 400s for malformed bodies, the refusal of a
//! non-loopback address without a token, the OpenAPI document that lists
//! every route, and a schemathesis run that finds no server error.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{json, Value};

mod support;
use siphon_testkit::Postgres;
use support::{command, db_name, fails, ok, siphon, siphon_with, wait_for, Running};

const DEADLINE: Duration = Duration::from_secs(120);
const TOKEN: &str = "t0ken-for-tests";

fn sqlite(path: &Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

/// The rows of `table` in the SQLite file, 0 while it cannot be read.
fn count(path: &Path, table: &str) -> i64 {
    Connection::open(path)
        .and_then(|c| c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Adds rows `from..=to` to `t` of the SQLite file.
fn add_rows(path: &Path, from: i64, to: i64) {
    sqlite(
        path,
        &format!(
            "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to})
             INSERT INTO t SELECT i, 'row ' || i FROM n;"
        ),
    );
}

/// A service with its API on a free loopback port (`--listen 127.0.0.1:0`),
/// the token `token` when given, and its base URL read from its log.
struct Service {
    running: Running,
    base: String,
}

fn start(dir: &Path, token: Option<&str>) -> Service {
    let mut cmd = command(
        dir,
        &[
            "service",
            "start",
            "--listen",
            "127.0.0.1:0",
            "--catalog-poll",
            "100ms",
        ],
    );
    match token {
        Some(t) => cmd.env("SIPHON_API_TOKEN", t),
        None => cmd.env_remove("SIPHON_API_TOKEN"),
    };
    let log = dir.join("service.log");
    let mut running = Running::spawn(cmd, &log);
    let mut base = String::new();
    wait_for("the service says where its API listens", DEADLINE, || {
        assert!(
            running.running(),
            "the service ended: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match text.split_once("REST API at http://") {
            Some((_, rest)) => {
                let addr = rest.split("/api").next().unwrap();
                base = format!("http://{addr}");
                true
            }
            None => false,
        }
    });
    let svc = Service { running, base };
    wait_for("/healthz answers", DEADLINE, || {
        svc.call("GET", "/healthz", None, None).0 == 200
    });
    svc
}

impl Service {
    /// `METHOD path` with the bearer token `token` (none when `None`) and a
    /// JSON `body`: the status, the body as text and the content type.
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let answer = match method {
            "GET" | "DELETE" => {
                let mut req = if method == "GET" {
                    agent.get(&url)
                } else {
                    agent.delete(&url)
                };
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            _ => {
                let mut req = if method == "POST" {
                    agent.post(&url)
                } else {
                    agent.put(&url)
                };
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                match body {
                    Some(b) => req.content_type("application/json").send(b),
                    None => req.send_empty(),
                }
            }
        };
        let mut answer = answer.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        (status, text, content_type)
    }

    /// `METHOD path` with the right token; the status and the JSON answer.
    fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text, _) = self.call(method, path, Some(TOKEN), body.as_deref());
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
        };
        (status, value)
    }

    /// As [`Service::json`], failing unless the status is `want`.
    fn expect(&self, want: u16, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.json(method, path, body);
        assert_eq!(status, want, "{method} {path}: {value}");
        value
    }

    /// SIGTERM; the service must stop, API and pipelines, with success.
    fn stop(mut self) {
        assert!(
            self.running.stop("TERM", DEADLINE),
            "the service did not exit with success on SIGTERM"
        );
    }
}

/// The succeeded executions of `pipeline`, newest first.
fn succeeded(svc: &Service, pipeline: &str) -> Vec<Value> {
    let list = svc.expect(
        200,
        "GET",
        &format!("/api/v1/executions?pipeline={pipeline}"),
        None,
    );
    list.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "succeeded")
        .cloned()
        .collect()
}

/// The line of `siphon sync list` (which reads the state store) about table `t`.
fn listed(dir: &Path) -> String {
    let out = ok(siphon(dir, &["sync", "list"]));
    out.lines()
        .find(|l| l.trim_start().starts_with("t "))
        .unwrap_or_else(|| panic!("table t is not listed: {out}"))
        .to_string()
}

#[test]
fn the_catalog_runs_and_switches_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_rows(&d.join("src.db"), 1, 100);
    let svc = start(d, Some(TOKEN));

    // Auth: the token on /api/* and /metrics, nothing on the health checks.
    for (token, what) in [(None, "no token"), (Some("wrong"), "a wrong token")] {
        for path in ["/api/v1/connections", "/api/v1/status", "/metrics"] {
            let (status, text, _) = svc.call("GET", path, token, None);
            assert_eq!(status, 401, "GET {path} with {what}: {text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["error"], "unauthorized", "{text}");
            assert!(
                body["detail"].as_str().unwrap().contains("Bearer"),
                "{text}"
            );
        }
    }
    let (status, _, _) = svc.call("POST", "/api/v1/connections", None, Some("{}"));
    assert_eq!(status, 401, "a write without a token");
    assert_eq!(svc.call("GET", "/healthz", None, None).0, 200);
    assert_eq!(svc.call("GET", "/readyz", None, None).0, 200);
    let (status, metrics, content_type) = svc.call("GET", "/metrics", Some(TOKEN), None);
    assert_eq!(status, 200, "{metrics}");
    assert_eq!(content_type, "text/plain; version=0.0.4");

    // Connections: added, duplicates refused, secrets masked, tested.
    let created = svc.expect(
        201,
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "src", "url": "sqlite://src.db"})),
    );
    assert_eq!(created["name"], "src");
    svc.expect(
        201,
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "dst", "url": "sqlite://dst.db"})),
    );
    let dup = svc.expect(
        409,
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "src", "url": "sqlite://other.db"})),
    );
    assert!(dup["detail"].as_str().unwrap().contains("`src`"), "{dup}");
    svc.expect(
        201,
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "pg", "url": "postgres://app:sup3rsecret@127.0.0.1:1/app"})),
    );
    let listed_conns = svc.expect(200, "GET", "/api/v1/connections", None);
    let text = listed_conns.to_string();
    assert!(!text.contains("sup3rsecret"), "a password is shown: {text}");
    assert!(text.contains("127.0.0.1:1/app"), "{text}");
    let tested = svc.expect(200, "POST", "/api/v1/connections/src/test", None);
    assert_eq!(tested["reachable"], true, "{tested}");
    let unreachable = svc.expect(200, "POST", "/api/v1/connections/pg/test", None);
    assert_eq!(unreachable["reachable"], false, "{unreachable}");
    assert!(
        !unreachable.to_string().contains("sup3rsecret"),
        "{unreachable}"
    );
    svc.expect(404, "POST", "/api/v1/connections/nope/test", None);
    svc.expect(204, "DELETE", "/api/v1/connections/pg", None);
    svc.expect(404, "DELETE", "/api/v1/connections/pg", None);

    // Malformed bodies: 400 (415 without a JSON content type), saying what is wrong.
    let (status, text, _) = svc.call(
        "POST",
        "/api/v1/pipelines",
        Some(TOKEN),
        Some(r#"{"name": "p", "source": "#),
    );
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "malformed body", "{text}");
    assert!(
        body["detail"].as_str().unwrap().contains("line 1"),
        "the syntax error is located: {text}"
    );
    let wrong_type = svc.expect(
        400,
        "POST",
        "/api/v1/connections",
        Some(json!({"name": 1, "url": "sqlite://x.db"})),
    );
    assert!(
        wrong_type["detail"].as_str().unwrap().contains("name"),
        "the field is named: {wrong_type}"
    );
    let unknown_key = svc.expect(
        400,
        "POST",
        "/api/v1/pipelines",
        Some(json!({"name": "p", "source": "src", "target": "dst", "bogus": 1})),
    );
    assert!(
        unknown_key["detail"].as_str().unwrap().contains("bogus"),
        "the unknown key is named: {unknown_key}"
    );
    let unknown_conn = svc.expect(
        400,
        "POST",
        "/api/v1/pipelines",
        Some(json!({"name": "p", "source": "nowhere", "target": "dst"})),
    );
    assert!(
        unknown_conn["detail"].as_str().unwrap().contains("nowhere"),
        "{unknown_conn}"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let plain = agent
        .post(&format!("{}/api/v1/pipelines", svc.base))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .content_type("text/plain")
        .send("name=p")
        .unwrap();
    assert_eq!(plain.status().as_u16(), 415);

    // A pipeline, created, run by the service, its execution read. Polled
    // every hour: only a run asked for copies the rows added later.
    let created = svc.expect(
        201,
        "POST",
        "/api/v1/pipelines",
        Some(
            json!({"name": "p", "source": "src", "target": "dst", "mode": "incremental",
                    "cursor": "id", "strategy": "sequence", "schedule": "every 1h",
                    "batch_size": 40}),
        ),
    );
    assert_eq!(created["name"], "p");
    assert_eq!(created["schedule"], "every 3600s");
    svc.expect(
        409,
        "POST",
        "/api/v1/pipelines",
        Some(json!({"name": "p", "source": "src", "target": "dst"})),
    );
    let mut first = Value::Null;
    wait_for(
        "the new pipeline's first pass succeeded",
        DEADLINE,
        || match succeeded(&svc, "p").into_iter().next() {
            Some(e) => {
                first = e;
                true
            }
            None => false,
        },
    );
    let id = first["id"].as_u64().unwrap();
    let execution = svc.expect(200, "GET", &format!("/api/v1/executions/{id}"), None);
    assert_eq!(execution["pipeline"], "p");
    assert_eq!(execution["tables"][0]["inserted"], 100, "{execution}");
    assert_eq!(count(&d.join("dst.db"), "t"), 100);
    svc.expect(404, "GET", "/api/v1/executions/999999", None);
    svc.expect(400, "GET", "/api/v1/executions/abc", None);

    // Run now: the next pass (due in an hour) runs at once.
    add_rows(&d.join("src.db"), 101, 150);
    let run = svc.expect(202, "POST", "/api/v1/pipelines/p/run", None);
    assert_eq!(run["run"], "started", "{run}");
    wait_for("the pass asked for succeeded", DEADLINE, || {
        succeeded(&svc, "p")
            .first()
            .is_some_and(|e| e["id"].as_u64().unwrap() > id)
    });
    assert_eq!(count(&d.join("dst.db"), "t"), 150);
    svc.expect(404, "POST", "/api/v1/pipelines/nope/run", None);

    // Changed with PUT.
    let changed = svc.expect(
        200,
        "PUT",
        "/api/v1/pipelines/p",
        Some(
            json!({"source": "src", "target": "dst", "mode": "incremental",
                    "cursor": "id", "strategy": "sequence", "schedule": "every 1h",
                    "batch_size": 25}),
        ),
    );
    assert_eq!(changed["batch_size"], 25);
    assert_eq!(
        svc.expect(200, "GET", "/api/v1/pipelines/p", None)["batch_size"],
        25
    );
    let all = svc.expect(200, "GET", "/api/v1/pipelines", None);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    svc.expect(404, "GET", "/api/v1/pipelines/nope", None);

    // A table paused, resynced and resumed, as the state store then shows.
    let paused = svc.expect(200, "POST", "/api/v1/pipelines/p/tables/t/disable", None);
    assert_eq!(paused["streams"].as_array().unwrap().len(), 1, "{paused}");
    assert!(listed(d).contains("paused"), "{}", listed(d));
    let status = svc.expect(200, "GET", "/api/v1/status", None);
    let table = &status["pipelines"][0]["tables"][0];
    assert_eq!(table["table"], "t", "{status}");
    assert_eq!(table["enabled"], false, "{status}");
    svc.expect(200, "POST", "/api/v1/pipelines/p/tables/t/resync", None);
    assert!(listed(d).contains("resync requested"), "{}", listed(d));
    svc.expect(200, "POST", "/api/v1/pipelines/p/tables/t/enable", None);
    assert!(!listed(d).contains("paused"), "{}", listed(d));
    let missing = svc.expect(
        400,
        "POST",
        "/api/v1/pipelines/p/tables/nosuch/disable",
        None,
    );
    assert!(
        missing["detail"].as_str().unwrap().contains("nosuch"),
        "{missing}"
    );
    svc.expect(404, "POST", "/api/v1/pipelines/nope/tables/t/disable", None);

    // The status document is the one `siphon status --json` prints.
    let api_status = svc.expect(200, "GET", "/api/v1/status", None);
    let cli_status: Value =
        serde_json::from_str(&support::stdout(&siphon(d, &["status", "--json"]))).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&api_status), keys(&cli_status));
    assert_eq!(
        keys(&api_status["pipelines"][0]),
        keys(&cli_status["pipelines"][0])
    );

    // Conflicts: none here; an unknown one is 404.
    assert_eq!(svc.expect(200, "GET", "/api/v1/conflicts", None), json!([]));
    svc.expect(
        404,
        "POST",
        "/api/v1/conflicts/7/resolve",
        Some(json!({"keep": "source"})),
    );
    svc.expect(
        400,
        "POST",
        "/api/v1/conflicts/7/resolve",
        Some(json!({"keep": "both"})),
    );

    // A connection in use is kept; the pipeline removed, then the connection.
    svc.expect(409, "DELETE", "/api/v1/connections/src", None);
    svc.expect(200, "DELETE", "/api/v1/pipelines/p", None);
    svc.expect(404, "GET", "/api/v1/pipelines/p", None);
    svc.expect(204, "DELETE", "/api/v1/connections/src", None);
    svc.stop();
}

/// Whether the replication slot `slot` exists: `Some(active)`, or `None`.
fn slot(pg: &Postgres, slot: &str) -> Option<bool> {
    let out = pg
        .query(&format!(
            "SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .unwrap();
    (!out.is_empty()).then(|| out == "t")
}

#[test]
fn deleting_a_streaming_cdc_pipeline_pauses_it_then_drops_its_slot() {
    let pg = Postgres::shared().unwrap();
    let src = db_name(&pg.create_database().unwrap());
    let dst = db_name(&pg.create_database().unwrap());
    pg.query_in(
        &src,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), Some(TOKEN));
    for (name, db) in [("src", &src), ("dst", &dst)] {
        svc.expect(
            201,
            "POST",
            "/api/v1/connections",
            Some(json!({ "name": name, "url": pg.url_for(db) })),
        );
    }
    // Replication slots are server-wide: the pipeline is named after its source.
    let name = src.clone();
    svc.expect(
        201,
        "POST",
        "/api/v1/pipelines",
        Some(json!({
            "name": name, "source": "src", "target": "dst", "mode": "cdc",
            "tables": ["public.*"], "schedule": "continuous",
        })),
    );
    let slot_name = format!("siphon_{name}");
    wait_for("the pipeline streams from its slot", DEADLINE, || {
        slot(pg, &slot_name) == Some(true)
    });

    // The service's own run holds the slot: the removal pauses it, waits for
    // the run to let go, then drops the slot and forgets the pipeline.
    let (status, answer) = svc.json("DELETE", &format!("/api/v1/pipelines/{name}"), None);
    assert!((200..300).contains(&status), "{status}: {answer}");
    assert_eq!(slot(pg, &slot_name), None, "the slot is dropped");
    svc.expect(404, "GET", &format!("/api/v1/pipelines/{name}"), None);
    let publications = pg
        .query_in(
            &src,
            &format!("SELECT count(*) FROM pg_publication WHERE pubname = '{slot_name}'"),
        )
        .unwrap();
    assert_eq!(publications, "0");
    svc.stop();
    // The run did not come back to create them again before the service stopped.
    assert_eq!(slot(pg, &slot_name), None, "no slot created again");
}

#[test]
fn a_pause_survives_a_put_env_references_are_refused_and_unknown_routes_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_rows(&d.join("src.db"), 1, 5);
    let svc = start(d, Some(TOKEN));
    for (name, file) in [("src", "src.db"), ("dst", "dst.db")] {
        let url = format!("sqlite://{file}");
        svc.expect(
            201,
            "POST",
            "/api/v1/connections",
            Some(json!({"name": name, "url": url})),
        );
    }
    // The service would fill `${VAR}` from its own environment.
    let refused = svc.expect(
        400,
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "leak", "url": "postgres://u:${HOME}@127.0.0.1:1/x"})),
    );
    assert!(
        refused["detail"].as_str().unwrap().contains("${VAR}"),
        "{refused}"
    );
    let listed = svc
        .expect(200, "GET", "/api/v1/connections", None)
        .to_string();
    assert!(!listed.contains("leak"), "{listed}");
    // A connection's URL is replaced in place (a new password, another file).
    let replaced = svc.expect(
        200,
        "PUT",
        "/api/v1/connections/dst",
        Some(json!({"url": "sqlite://dst2.db"})),
    );
    assert_eq!(replaced["name"], "dst", "{replaced}");
    let listed = svc
        .expect(200, "GET", "/api/v1/connections", None)
        .to_string();
    assert!(listed.contains("dst2.db"), "{listed}");
    svc.expect(
        404,
        "PUT",
        "/api/v1/connections/nobody",
        Some(json!({"url": "sqlite://x.db"})),
    );

    let body = json!({"name": "p", "source": "src", "target": "dst", "schedule": "every 1h"});
    svc.expect(201, "POST", "/api/v1/pipelines", Some(body));
    let mut paused =
        json!({"source": "src", "target": "dst", "schedule": "every 1h", "enabled": false});
    let put = svc.expect(200, "PUT", "/api/v1/pipelines/p", Some(paused.clone()));
    assert_eq!(put["enabled"], false, "{put}");
    // A body that does not say `enabled` keeps the pause.
    paused.as_object_mut().unwrap().remove("enabled");
    paused["schedule"] = json!("every 2h");
    let put = svc.expect(200, "PUT", "/api/v1/pipelines/p", Some(paused));
    assert_eq!(put["enabled"], false, "{put}");
    assert_eq!(put["schedule"], "every 7200s", "{put}");
    let got = svc.expect(200, "GET", "/api/v1/pipelines/p", None);
    assert_eq!(got["enabled"], false, "{got}");

    // Unknown routes and methods answer in the API's error shape.
    let missing = svc.expect(404, "GET", "/api/v1/nothing-here", None);
    assert!(
        missing["error"].is_string() && missing["detail"].is_string(),
        "{missing}"
    );
    let (status, text, _) = svc.call("DELETE", "/api/v1/status", Some(TOKEN), None);
    assert_eq!(status, 405, "{text}");
    let wrong: Value = serde_json::from_str(&text).unwrap();
    assert!(wrong["error"].is_string(), "{text}");
    svc.stop();
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = fails(
        siphon_with(
            dir.path(),
            &["service", "start", "--listen", "0.0.0.0:0"],
            &[("SIPHON_API_TOKEN", "")],
        ),
        2,
    );
    assert!(out.contains("SIPHON_API_TOKEN"), "{out}");
    assert!(out.contains("0.0.0.0:0"), "{out}");
    assert!(
        !dir.path().join(".siphon/service.pid").exists(),
        "nothing was started"
    );
    let out = fails(
        siphon(
            dir.path(),
            &["service", "start", "--daemon", "--listen", "[::]:0"],
        ),
        2,
    );
    assert!(out.contains("SIPHON_API_TOKEN"), "{out}");
}

/// Every route of DESIGN.md, as (method, path) in the OpenAPI document.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/connections"),
    ("post", "/api/v1/connections"),
    ("put", "/api/v1/connections/{name}"),
    ("delete", "/api/v1/connections/{name}"),
    ("post", "/api/v1/connections/{name}/test"),
    ("get", "/api/v1/pipelines"),
    ("post", "/api/v1/pipelines"),
    ("get", "/api/v1/pipelines/{name}"),
    ("put", "/api/v1/pipelines/{name}"),
    ("delete", "/api/v1/pipelines/{name}"),
    ("post", "/api/v1/pipelines/{name}/run"),
    ("post", "/api/v1/pipelines/{name}/tables/{table}/enable"),
    ("post", "/api/v1/pipelines/{name}/tables/{table}/disable"),
    ("post", "/api/v1/pipelines/{name}/tables/{table}/resync"),
    ("get", "/api/v1/executions"),
    ("get", "/api/v1/executions/{id}"),
    ("get", "/api/v1/conflicts"),
    ("post", "/api/v1/conflicts/{id}/resolve"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

#[test]
fn the_openapi_document_lists_every_route_and_schemathesis_finds_no_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_rows(&d.join("src.db"), 1, 20);
    let svc = start(d, Some(TOKEN));
    svc.expect(
        201,
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "src", "url": "sqlite://src.db"})),
    );
    svc.expect(
        201,
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "dst", "url": "sqlite://dst.db"})),
    );
    svc.expect(
        201,
        "POST",
        "/api/v1/pipelines",
        Some(json!({"name": "p", "source": "src", "target": "dst", "schedule": "every 1h"})),
    );

    // The served document: OpenAPI 3, every route with its method, each
    // operation answering something, the bearer scheme on the guarded ones.
    let (status, text, content_type) = svc.call("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut missing = Vec::new();
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method];
        if !op.is_object() {
            missing.push(format!("{} {path}", method.to_uppercase()));
            continue;
        }
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no response"
        );
        let guarded =
            path.starts_with("/api/v1/") && *path != "/api/v1/openapi.json" || *path == "/metrics";
        assert_eq!(
            op["security"].is_array(),
            guarded,
            "{method} {path}: security {}",
            op["security"]
        );
    }
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every $ref points at a schema the document holds.
    let refs: Vec<&str> = text
        .split("\"$ref\": \"#/components/schemas/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert!(!refs.is_empty());
    for r in refs {
        assert!(
            doc["components"]["schemas"][r].is_object(),
            "$ref {r} points nowhere"
        );
    }
    // And a validator of the OpenAPI specification itself (PyPI
    // `openapi-spec-validator`, which scripts/test installs) accepts it.
    let file = d.join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let checked = Command::new("openapi-spec-validator")
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs (pip install openapi-spec-validator)");
    assert!(
        checked.status.success(),
        "the document is not valid OpenAPI: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let docs = svc.call("GET", "/api/v1/docs", None, None);
    assert_eq!(docs.0, 200);
    assert!(docs.2.starts_with("text/html") && docs.1.contains("siphon"));

    // schemathesis loads the document (refusing an invalid one) and sends
    // generated requests to every operation; a 5xx fails it.
    let report = d.join("schemathesis.json");
    let out = Command::new("schemathesis")
        .args(["run", &format!("{}/api/v1/openapi.json", svc.base)])
        .args(["--url", &svc.base])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--max-time", "45", "--workers", "2"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report", "json", "--report-json-path"])
        .arg(&report)
        .current_dir(d)
        .output()
        .expect("run schemathesis (scripts/test installs it: pip install schemathesis)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis failed:\n{said}");
    // It tested every operation but the document it loaded, with cases.
    let tested = ROUTES.len() - 1;
    assert!(
        said.contains(&format!("Selected: {tested}/{tested}"))
            && said.contains(&format!("Tested: {tested}")),
        "schemathesis did not test every operation:\n{said}"
    );
    let cases: u64 = said
        .split_once(" generated, ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        cases >= tested as u64,
        "schemathesis ran too few cases:\n{said}"
    );
    assert!(report.exists(), "schemathesis wrote no report");
    assert_eq!(svc.call("GET", "/healthz", None, None).0, 200);
    svc.stop();
}
