//! Connections that cannot be made, or that go silent, end with an error that
//! says why and where, and never hang: a black-hole server (accepts TCP, never
//! answers), nothing listening, an unresolvable host, authentication refused,
//! TLS required, a missing database, and a replication stream whose server
//! stops answering (a proxy in this file stalls it). Real sockets and real
//! PostgreSQL servers from the testkit throughout.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siphon_core::{ChangeStream, Error, ErrorKind, LogSource, Source, TableFilter};
use siphon_postgres::replication::{ReplicationConfig, ReplicationStream};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_testkit::Postgres;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Generous bound that only guards against a hanging test, never measures.
const PATIENCE: Duration = Duration::from_secs(90);

const SECRET: &str = "hunter2";

/// A listener that accepts connections and never answers them. The accepted
/// sockets stay open for as long as the process lives.
fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// Runs `f`, failing the test if it has not returned within [`PATIENCE`].
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} still had not returned after {PATIENCE:?}"))
}

/// Asserts the error's kind, that its text holds each of `wanted`, and that it
/// does not hold the password.
fn assert_says(e: &Error, kind: ErrorKind, wanted: &[&str]) {
    let text = e.to_string();
    eprintln!("{text}");
    assert_eq!(e.kind(), kind, "{text}");
    for w in wanted {
        assert!(text.contains(w), "expected `{w}` in: {text}");
    }
    assert!(!text.contains(SECRET), "the password leaked: {text}");
}

async fn source_err(url: &str) -> Error {
    bounded("opening the source", PostgresSource::connect(url))
        .await
        .unwrap_err()
}

async fn sink_err(url: &str) -> Error {
    bounded("opening the target", PostgresSink::connect(url))
        .await
        .unwrap_err()
}

async fn replication_err(url: &str) -> Error {
    let pg: tokio_postgres::Config = url.parse().unwrap();
    let cfg = ReplicationConfig::from_pg_config(&pg, "any_slot", "any_pub").unwrap();
    bounded(
        "opening a replication connection",
        ReplicationStream::connect(cfg),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_black_hole_server_times_out_with_host_and_port() {
    let port = black_hole();
    let at = format!("127.0.0.1:{port}");
    let url = format!("postgres://app:{SECRET}@{at}/app?connect_timeout=2");
    let e = source_err(&url).await;
    assert_says(&e, ErrorKind::Connection, &["source", &at, "timed out"]);
    let e = sink_err(&url).await;
    assert_says(&e, ErrorKind::Connection, &["target", &at, "timed out"]);
    let e = replication_err(&url).await;
    assert_says(
        &e,
        ErrorKind::Connection,
        &["replication", &at, "timed out"],
    );
}

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    let port = siphon_testkit::free_port().unwrap();
    let at = format!("127.0.0.1:{port}");
    let url = format!("postgres://app:{SECRET}@{at}/app");
    let e = source_err(&url).await;
    assert_says(&e, ErrorKind::Connection, &[&at, "connection refused"]);
    let e = sink_err(&url).await;
    assert_says(&e, ErrorKind::Connection, &[&at, "connection refused"]);
    let e = replication_err(&url).await;
    assert_says(&e, ErrorKind::Connection, &[&at, "connection refused"]);
}

#[tokio::test]
async fn an_unresolvable_host_says_so() {
    let url = format!("postgres://app:{SECRET}@no-such-host.invalid/db");
    let at = "no-such-host.invalid:5432";
    let e = source_err(&url).await;
    assert_says(&e, ErrorKind::Connection, &[at, "cannot be resolved"]);
    let e = replication_err(&url).await;
    assert_says(&e, ErrorKind::Connection, &[at, "cannot be resolved"]);
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let pg = Postgres::shared().unwrap();
    let at = format!("{}:{}", pg.host(), pg.port());
    let url = format!(
        "postgres://postgres:{SECRET}@{at}/no_such_db_{}",
        std::process::id()
    );
    let e = source_err(&url).await;
    assert_says(
        &e,
        ErrorKind::Config,
        &[&at, "database \"no_such_db_", "does not exist"],
    );
    let e = replication_err(&url).await;
    assert_says(
        &e,
        ErrorKind::Config,
        &[&at, "database \"no_such_db_", "does not exist"],
    );
}

#[tokio::test]
async fn refused_authentication_names_the_cause() {
    let pg = Postgres::start_with_hba(
        &[],
        &[
            "host all alice 127.0.0.1/32 scram-sha-256",
            "host all dave 127.0.0.1/32 reject",
        ],
    )
    .unwrap();
    pg.query(&format!(
        "CREATE ROLE alice LOGIN REPLICATION PASSWORD 'right-one'; CREATE ROLE dave LOGIN PASSWORD '{SECRET}'"
    ))
    .unwrap();
    let at = format!("127.0.0.1:{}", pg.port());

    // A wrong password.
    let url = format!("postgres://alice:{SECRET}@{at}/postgres");
    for e in [
        source_err(&url).await,
        sink_err(&url).await,
        replication_err(&url).await,
    ] {
        assert_says(
            &e,
            ErrorKind::Config,
            &[&at, "authentication failed for user \"alice\""],
        );
    }
    // No password at all.
    let e = source_err(&format!("postgres://alice@{at}/postgres")).await;
    assert_says(&e, ErrorKind::Config, &[&at, "asks for a password"]);
    // pg_hba.conf lets the user in from nowhere (the server has no TLS).
    let url = format!("postgres://dave:{SECRET}@{at}/postgres");
    for e in [source_err(&url).await, replication_err(&url).await] {
        assert_says(
            &e,
            ErrorKind::Config,
            &[&at, "does not let this user connect", "pg_hba.conf"],
        );
        assert!(!e.to_string().contains("TLS required"), "{e}");
    }
    // The right password works.
    let ok = format!("postgres://alice:right-one@{at}/postgres?connect_timeout=5");
    bounded("opening the source", PostgresSource::connect(&ok))
        .await
        .unwrap();
}

/// The keepalive timer of the established client socket connected to
/// 127.0.0.1:`port`, from `/proc/net/tcp`: the time left until the next probe.
fn keepalive_timer(port: u16) -> Option<Duration> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // remote address, state 01 (established), timer 02 (keepalive)
        let (timer, when) = f.get(5)?.split_once(':')?;
        (f.get(2) == Some(&remote.as_str()) && f.get(3) == Some(&"01") && timer == "02")
            .then(|| Duration::from_millis(u64::from_str_radix(when, 16).unwrap() * 10))
    })
}

#[tokio::test]
async fn query_connections_probe_a_silent_server_within_a_minute() {
    // While the startup waits on a black hole, the socket is open with its
    // TCP keepalive armed: by default the first probe is due within 30 s (not
    // the system's two hours); `keepalives_idle` in the URL sets it.
    for (params, most) in [("", 30), ("&keepalives_idle=5", 5)] {
        let port = black_hole();
        let url = format!("postgres://app@127.0.0.1:{port}/app?connect_timeout=60{params}");
        let connecting = tokio::spawn(async move { PostgresSource::connect(&url).await });
        let timer = bounded("the client socket", async {
            loop {
                if let Some(t) = keepalive_timer(port) {
                    break t;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        connecting.abort();
        assert!(
            timer <= Duration::from_secs(most),
            "{params}: the first keepalive probe is due in {timer:?}"
        );
    }
}

/// A certificate and key for a server, readable by the `postgres` account
/// that the testkit runs PostgreSQL as.
fn server_certificate() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let ids = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres")).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
    });
    if let Some((uid, gid)) = ids {
        for p in [dir.path(), &cert, &key] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
    }
    let cert = cert.display().to_string();
    let key = key.display().to_string();
    (dir, cert, key)
}

#[tokio::test]
async fn a_server_that_requires_tls_says_tls_is_not_supported_yet() {
    let (_dir, cert, key) = server_certificate();
    let pg = Postgres::start_with_hba(
        &[
            ("ssl", "on"),
            ("ssl_cert_file", &cert),
            ("ssl_key_file", &key),
        ],
        &["hostnossl all carol 127.0.0.1/32 reject"],
    )
    .unwrap();
    pg.query(&format!(
        "CREATE ROLE carol LOGIN REPLICATION PASSWORD '{SECRET}'"
    ))
    .unwrap();
    let at = format!("127.0.0.1:{}", pg.port());
    let url = format!("postgres://carol:{SECRET}@{at}/postgres");
    for e in [
        source_err(&url).await,
        sink_err(&url).await,
        replication_err(&url).await,
    ] {
        assert_says(
            &e,
            ErrorKind::Config,
            &[&at, "TLS required", "does not support TLS"],
        );
    }
    // Asking for TLS in the URL is refused before connecting.
    let e = source_err(&format!("{url}?sslmode=require")).await;
    assert_says(&e, ErrorKind::Config, &["sslmode=require", "TLS"]);
}

// ---------------------------------------------------------------------------
// A replication stream whose server goes silent

/// A TCP proxy to a real server. Replication connections (their startup
/// message asks for `replication`) can be stalled: the proxy then stops
/// moving bytes either way and holds both sockets open, as a hung server or a
/// dead network path would. Dropping the proxy closes every connection.
struct Proxy {
    port: u16,
    stall: watch::Sender<bool>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: (String, u16)) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stall, _) = watch::channel(false);
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (stall_tx, held) = (stall.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect((upstream.0.as_str(), upstream.1))
                    .await
                    .unwrap();
                let (stall, held2) = (stall_tx.subscribe(), held.clone());
                let conn = tokio::spawn(forward(client, server, stall, held2));
                held.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Proxy { port, stall, tasks }
    }

    /// Stops replication connections in their tracks, for good.
    fn stall_replication(&self) {
        self.stall.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Passes the startup message on, then moves bytes both ways; a replication
/// connection stops (holding its sockets) once `stall` turns true.
async fn forward(
    mut client: TcpStream,
    mut server: TcpStream,
    stall: watch::Receiver<bool>,
    held: Arc<Mutex<Vec<AbortHandle>>>,
) {
    let mut first = vec![0u8; 8192];
    let Ok(n) = client.read(&mut first).await else {
        return;
    };
    let replication = first[..n].windows(11).any(|w| w == b"replication");
    if server.write_all(&first[..n]).await.is_err() {
        return;
    }
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, stall.clone(), replication));
    let down = tokio::spawn(pump(sr, cw, stall, replication));
    {
        let mut held = held.lock().unwrap();
        held.push(up.abort_handle());
        held.push(down.abort_handle());
    }
    let _ = tokio::join!(up, down);
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stall: watch::Receiver<bool>,
    stallable: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => Some(read),
            stalled = stall.wait_for(|s| *s), if stallable => {
                drop(stalled);
                None
            }
        };
        let n = match read {
            Some(Ok(0) | Err(_)) => return,
            Some(Ok(n)) => n,
            None => {
                // Hold both halves, move nothing, until aborted.
                std::future::pending::<()>().await;
                return;
            }
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_silent_replication_stream_fails_after_replication_timeout() {
    let pg = Postgres::shared().unwrap();
    let db_url = pg.create_database().unwrap();
    let db = db_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(&db, "CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    let proxy = Proxy::start((pg.host().to_string(), pg.port())).await;
    let at = format!("127.0.0.1:{}", proxy.port);
    let url = format!("postgres://postgres@{at}/{db}?replication_timeout=6");
    let pipeline = format!("silent_{db}");

    let source = PostgresSource::connect(&url).await.unwrap();
    let filter = TableFilter {
        include: vec!["public.t".into()],
        exclude: vec![],
    };
    let tables: Vec<Arc<_>> = source
        .discover(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect();
    let schemas: Vec<_> = tables.iter().map(|t| (**t).clone()).collect();
    let start = source.prepare_log(&pipeline, &schemas).await.unwrap();
    let mut stream = source.stream(&pipeline, &tables, &start).await.unwrap();

    // A healthy but idle server stays connected well past the timeout: it
    // answers when asked.
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < quiet_until {
        let left = quiet_until - tokio::time::Instant::now();
        let idle = bounded("an idle stream", stream.next_batch(100, None, Some(left))).await;
        // Nothing, or only the server's position moving on.
        match idle {
            Ok(None) => {}
            Ok(Some((batch, _))) => assert!(batch.changes.is_empty(), "{batch:?}"),
            Err(e) => panic!("a healthy idle stream failed: {e}"),
        }
    }
    pg.query_in(&db, "INSERT INTO t VALUES (1)").unwrap();
    let got = bounded("a change", stream.next_batch(100, None, Some(PATIENCE)))
        .await
        .unwrap()
        .expect("the insert arrives");
    assert_eq!(got.0.changes.len(), 1);

    // Now the server (through the proxy) goes silent.
    proxy.stall_replication();
    pg.query_in(&db, "INSERT INTO t VALUES (2)").unwrap();
    let silent = bounded(
        "a silent stream",
        stream.next_batch(100, None, Some(Duration::from_secs(3600))),
    )
    .await;
    let e = silent.expect_err("a silent server must fail the stream");
    assert_says(
        &e,
        ErrorKind::Connection,
        &[&at, "timed out", "replication_timeout=6"],
    );
    drop(stream);
    drop(proxy);
    // The slot stays for the next run; this test's is dropped here.
    let direct = PostgresSource::connect(&db_url).await.unwrap();
    let dropped = async {
        loop {
            if direct.drop_log(&pipeline).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    bounded("dropping the slot", dropped).await;
}
