//! The web console in a real browser: `siphon service start --listen` serves
//! it beside the REST API, a continuous PostgreSQL to PostgreSQL `cdc`
//! pipeline runs, and headless Chromium, driven through chromedriver
//! (WebDriver), is refused a wrong token and signs in with the right one, sees
//! the pipeline's tables and a table's replication lag, pauses one with a
//! click (which the state store then says is paused), resumes it, resyncs
//! another after the page's confirmation, resolves a conflict kept in the
//! state store, and lists the executions. Names and rows holding markup show
//! as text.
//!
//! Every wait polls a condition with a deadline; no fixed sleep synchronizes.
//! chromedriver and the Chromium it starts run in a process group of their
//! own, killed when the test ends however it ends.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use siphon::{ConnectionUrl, Registry};
use siphon_core::{Conflict, Side, StateStore, TableName};
use siphon_testkit::{free_port, Postgres};

mod support;
use support::{db_name, ok, Running};

/// How long a copy, a start or a switch may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// The service's API token.
const TOKEN: &str = "console-test-token-3f9c";

/// A table whose name is markup: the console must show it as text.
const ODD: &str = "<i>odd</i> & \"quoted\"";

/// chromedriver and every process it started (Chromium and its helpers), in a
/// process group of their own; the whole group is SIGKILLed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts `/usr/bin/chromedriver` on a free loopback port and waits until
    /// it accepts connections.
    fn start(log: &Path) -> Driver {
        let port = free_port().unwrap();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start /usr/bin/chromedriver (Debian package chromium-driver)");
        let driver = Driver { child, port };
        wait_until("chromedriver listens", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 100 ms until it holds; fails the test after [`DEADLINE`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `script` in the page every 100 ms until it returns `true`; fails the
/// test with `what` and the page's last answer after [`DEADLINE`].
async fn page_until(browser: &Client, what: &str, script: &str, args: Vec<Value>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answer = browser.execute(script, args.clone()).await;
        if matches!(answer, Ok(Value::Bool(true))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; the page answered {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A script's expression over the row of table `arguments[0]`: `tr` is the row
/// (found by its `data-table`, compared in script so that any name works) or
/// `undefined`.
fn on_row(expr: &str) -> String {
    format!(
        "const tr = [...document.querySelectorAll('#pipelines tr[data-table]')]
           .find((r) => r.dataset.table === arguments[0]);
         return {expr};"
    )
}

/// `siphon status --json` of the test's state store: its one pipeline's
/// table `table`, or `Null` while it is not listed.
fn stored(dir: &Path, state: &str, table: &str) -> Value {
    let run = support::siphon(dir, &["status", "--json", "--state", state]);
    let out = support::stdout(&run);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "status --json printed no JSON ({e}): {}",
            support::text(&run)
        )
    });
    report["pipelines"][0]["tables"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["table"] == table).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_shows_the_tables_and_pauses_one_with_a_click() {
    let pg = Postgres::shared().unwrap();
    let src = db_name(&pg.create_database().unwrap());
    let dst = db_name(&pg.create_database().unwrap());
    let odd = ODD.replace('"', "\"\"");
    pg.query_in(
        &src,
        &format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, v text NOT NULL);
             CREATE TABLE customers (id bigint PRIMARY KEY, v text NOT NULL);
             CREATE TABLE \"{odd}\" (id bigint PRIMARY KEY);
             INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 500) g;
             INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 50) g;
             INSERT INTO \"{odd}\" VALUES (1);"
        ),
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
            "connections:\n  src: {}\n  dst: {}\npipelines:\n  {pipeline}:\n    source: src\n    \
             target: dst\n    mode: cdc\n    tables: [\"public.*\"]\n    schedule: continuous\n",
            pg.url_for(&src),
            pg.url_for(&dst)
        ),
    )
    .unwrap();
    ok(support::siphon(d, &["apply", "--state", &state]));

    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut service = support::command(d, &["service", "start", "--listen", &listen]);
    service
        .args(["--state", &state])
        .env("SIPHON_API_TOKEN", TOKEN);
    let mut service = Running::spawn(service, &d.join("service.log"));
    let log = || std::fs::read_to_string(d.join("service.log")).unwrap_or_default();
    for table in ["public.orders", "public.customers"] {
        wait_until(&format!("{table} streams"), || {
            assert!(service.running(), "the service ended: {}", log());
            stored(d, &state, table)["state"] == "streaming"
        });
    }
    wait_until("the service listens", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let driver = Driver::start(&d.join("chromedriver.log"));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", d.join("chromium").display()),
            ],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session from chromedriver");
    let console = format!("http://{listen}/");

    // The page and its files come from the binary, with their content types.
    browser.goto(&console).await.unwrap();
    let types = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             Promise.all(['/', '/console/app.js', '/console/app.css'].map((p) =>
               fetch(p).then((r) => r.status + ' ' + r.headers.get('content-type'))))
               .then(done, (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        types,
        json!([
            "200 text/html; charset=utf-8",
            "200 text/javascript; charset=utf-8",
            "200 text/css; charset=utf-8"
        ])
    );
    // A browser that has the script already revalidates it for nothing.
    let revalidated = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/console/app.js', {cache: 'no-store'})
               .then((r) => fetch('/console/app.js',
                 {cache: 'no-store', headers: {'If-None-Match': r.headers.get('etag')}}))
               .then((r) => done(r.status), (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(revalidated, json!(304));

    // Without a token the API answers 401: the page asks for one, and says
    // when the service refuses it.
    let visible = "const e = document.getElementById(arguments[0]); return !!e && !e.hidden;";
    page_until(
        &browser,
        "the token form shows",
        visible,
        vec![json!("login")],
    )
    .await;
    browser
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("not-the-token")
        .await
        .unwrap();
    browser
        .find(Locator::Id("token-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_until(
        &browser,
        "the page says the token was refused",
        "const e = document.getElementById('token-error');
         return !e.hidden && e.textContent.includes('refused');",
        vec![],
    )
    .await;
    browser
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    browser
        .find(Locator::Id("token-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The running pipeline's tables, live from GET /api/v1/status.
    for table in ["public.orders", "public.customers"] {
        page_until(
            &browser,
            &format!("the page shows {table} streaming"),
            &on_row("!!tr && tr.dataset.state === 'streaming'"),
            vec![json!(table)],
        )
        .await;
    }
    // A row streamed into public.customers gives it a replication lag, which
    // the page shows.
    pg.query_in(&src, "INSERT INTO customers VALUES (1000, 'new')")
        .unwrap();
    wait_until("the store keeps public.customers' lag", || {
        stored(d, &state, "public.customers")["lag"]["seconds"].is_number()
    });
    page_until(
        &browser,
        "the page shows public.customers' lag",
        &on_row(
            "!!tr && /^[0-9.,]+ (ms|s|min|h|d)$/
               .test(tr.querySelector('[data-field=lag]').textContent.trim())",
        ),
        vec![json!("public.customers")],
    )
    .await;
    let section = browser
        .find(Locator::Css("#pipelines section[data-pipeline]"))
        .await
        .unwrap();
    assert_eq!(
        section.attr("data-pipeline").await.unwrap().as_deref(),
        Some(pipeline.as_str())
    );
    // The odd name shows as text, never as markup.
    let odd_table = format!("public.{ODD}");
    page_until(
        &browser,
        "the odd table's name shows as text",
        &on_row(
            "!!tr && tr.querySelector('[data-field=table]').textContent === arguments[0]
             && document.querySelectorAll('#pipelines i').length === 0",
        ),
        vec![json!(odd_table)],
    )
    .await;

    // Pause: one click, and the state store says the table is paused.
    browser
        .execute(
            &on_row("tr.querySelector('button[data-action=pause]').click()"),
            vec![json!("public.orders")],
        )
        .await
        .unwrap();
    wait_until("the store says public.orders is paused", || {
        assert!(service.running(), "the service ended: {}", log());
        let t = stored(d, &state, "public.orders");
        t["enabled"] == false && t["state"] == "paused"
    });
    let other = stored(d, &state, "public.customers");
    assert_eq!(other["enabled"], true, "{other}");
    assert_eq!(other["state"], "streaming", "{other}");
    page_until(
        &browser,
        "the page shows public.orders paused",
        &on_row(
            "!!tr && tr.dataset.state === 'paused' && tr.dataset.enabled === 'false'
             && tr.querySelector('[data-field=state]').textContent.trim() === 'paused'
             && tr.querySelector('button[data-action=pause]').disabled
             && !tr.querySelector('button[data-action=resume]').disabled",
        ),
        vec![json!("public.orders")],
    )
    .await;

    // The token is kept for the tab: a reload shows the tables without asking.
    browser.refresh().await.unwrap();
    page_until(
        &browser,
        "the reloaded page shows public.orders paused",
        &on_row("!!tr && tr.dataset.state === 'paused'"),
        vec![json!("public.orders")],
    )
    .await;
    assert_eq!(
        browser
            .execute(visible, vec![json!("login")])
            .await
            .unwrap(),
        json!(false)
    );

    // Resume through a real click on the button.
    browser
        .find(Locator::Css(
            "tr[data-table=\"public.orders\"] button[data-action=resume]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until("the store says public.orders streams again", || {
        assert!(service.running(), "the service ended: {}", log());
        let t = stored(d, &state, "public.orders");
        t["enabled"] == true && t["state"] == "streaming"
    });
    page_until(
        &browser,
        "the page shows public.orders streaming again",
        &on_row("!!tr && tr.dataset.state === 'streaming' && tr.dataset.enabled === 'true'"),
        vec![json!("public.orders")],
    )
    .await;

    // Resync asks first; once accepted, the table is copied again whole (a
    // run of it after the click reads all its 51 rows).
    let newest = "const done = arguments[arguments.length - 1];
         fetch('/api/v1/executions?limit=1000&pipeline=' + encodeURIComponent(arguments[0]),
           {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('siphon.token')}})
           .then((r) => r.json())
           .then((es) => done(es), (e) => done(String(e)));";
    let before = browser
        .execute_async(newest, vec![json!(pipeline)])
        .await
        .unwrap()[0]["id"]
        .as_u64()
        .expect("an execution");
    browser
        .find(Locator::Css(
            "tr[data-table=\"public.customers\"] button[data-action=resync]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let asked = browser.get_alert_text().await.unwrap();
    assert!(asked.contains("public.customers"), "{asked}");
    browser.accept_alert().await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let executions = browser
            .execute_async(newest, vec![json!(pipeline)])
            .await
            .unwrap();
        let reloaded = executions.as_array().into_iter().flatten().any(|e| {
            e["id"].as_u64() > Some(before)
                && e["tables"].as_array().into_iter().flatten().any(|t| {
                    t["table"]["name"] == "customers"
                        && t["status"] == "succeeded"
                        && t["rows_read"].as_u64() >= Some(51)
                })
        });
        if reloaded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until public.customers was copied again: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    page_until(
        &browser,
        "the page shows public.customers streaming, its resync done",
        &on_row(
            "!!tr && tr.dataset.state === 'streaming'
             && !tr.querySelector('button[data-action=resync]').disabled",
        ),
        vec![json!("public.customers")],
    )
    .await;

    // A conflict kept in the state store (as a `manual` merge pipeline keeps
    // one) is listed with its rows; "Keep source" resolves it in the store.
    let store = Registry::standard()
        .open_state("state", &ConnectionUrl::from_parts(&state, &state))
        .await
        .unwrap();
    let id = store
        .record_conflict(&Conflict {
            id: 0,
            pipeline: pipeline.clone(),
            table: TableName::new(Some("public"), "accounts"),
            key: json!({"id": 7}),
            source_row: Some(json!({"id": 7, "name": "<b>source</b>"})),
            target_row: None,
            detected_at: chrono::Utc::now(),
            resolved_at: None,
            resolution: None,
        })
        .await
        .unwrap();
    browser
        .find(Locator::Css("#tabs a[data-tab=conflicts]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let conflict_row = format!("#conflicts tr[data-conflict=\"{id}\"]");
    page_until(
        &browser,
        "the conflicts tab lists the conflict, its rows as text",
        "const tr = document.querySelector(arguments[0]);
         return !!tr && tr.textContent.includes('<b>source</b>')
           && tr.querySelectorAll('b').length === 0
           && document.getElementById('conflict-count').textContent === '1';",
        vec![json!(conflict_row)],
    )
    .await;
    browser
        .find(Locator::Css(&format!(
            "{conflict_row} button[data-resolve=source]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = store.conflicts(Some(&pipeline), false).await.unwrap();
        let c = all.iter().find(|c| c.id == id).expect("the conflict");
        if c.resolved_at.is_some() {
            assert_eq!(c.resolution, Some(Side::Source));
            break;
        }
        assert!(Instant::now() < deadline, "the conflict was not resolved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page_until(
        &browser,
        "the resolved conflict leaves the list of open ones",
        "return !document.querySelector(arguments[0])
           && document.getElementById('conflict-count').hidden;",
        vec![json!(conflict_row)],
    )
    .await;

    // Execution history from GET /api/v1/executions.
    browser
        .find(Locator::Css("#tabs a[data-tab=executions]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_until(
        &browser,
        "the executions tab lists the pipeline's executions",
        "return !document.getElementById('view-executions').hidden
           && document.querySelectorAll('#executions tr[data-execution]').length > 0
           && document.getElementById('error-banner').hidden;",
        vec![],
    )
    .await;

    browser.close().await.unwrap();
    drop(driver);
    assert!(
        service.stop("TERM", DEADLINE),
        "the service did not stop cleanly: {}",
        log()
    );
}
