//! `outbox deliver` as a real process: a worker killed with -9 loses nothing, two workers
//! on one PostgreSQL database deliver each message exactly once, direct MX delivery
//! through dnsmasq reaches the right host, and `serve` rides out a PostgreSQL outage.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_queue::{ListFilter, MessageStatus, NewMessage, RecipientState, Store};
use outbox_smtp::server::{MemorySink, Server};
use outbox_testkit::dnsmasq::Dnsmasq;
use outbox_testkit::{TestStore, message};

/// `outbox deliver` with a clean environment and the given settings.
fn deliver(db: &str, env: &[(&str, String)], args: &[&str]) -> Command {
    outbox("deliver", db, env, args)
}

/// `outbox SUBCOMMAND` with a clean environment and the given settings.
fn outbox(subcommand: &str, db: &str, env: &[(&str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox"));
    command
        .arg(subcommand)
        .args(args)
        .env_remove("OUTBOX_CONFIG")
        .env_remove("RUST_LOG")
        .env("OUTBOX_DATABASE", db)
        .env("OUTBOX_DELIVERY_RETRY_BACKOFF", "100ms")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Kills the process when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn sink_server() -> (Server, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::new());
    let server = Server::builder()
        .sink(sink.clone())
        .bind("127.0.0.1:0")
        .await
        .expect("bind sink");
    (server, sink)
}

fn subjects(sink: &MemorySink) -> Vec<String> {
    sink.messages()
        .iter()
        .map(|m| {
            String::from_utf8_lossy(&m.data)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn enqueue_many(store: &dyn Store, n: usize) {
    let messages: Vec<NewMessage> = (0..n)
        .map(|i| message(&format!("m{i}"), &["rcpt@example.net"]))
        .collect();
    for chunk in messages.chunks(500) {
        store.enqueue_batch(chunk.to_vec()).await.unwrap();
    }
}

/// Recipients leased by some worker right now.
async fn leased(store: &dyn Store) -> usize {
    let mut filter = ListFilter::default();
    filter.status = Some(MessageStatus::Queued);
    filter.limit = 1000;
    let mut count = 0;
    loop {
        let page = store.list(filter.clone()).await.unwrap();
        for item in &page.items {
            let detail = store.detail(&item.id).await.unwrap();
            count += detail
                .recipients
                .iter()
                .filter(|r| r.state == RecipientState::Sending)
                .count();
        }
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return count,
        }
    }
}

async fn wait_for(sink: &MemorySink, n: usize, within: Duration) {
    tokio::time::timeout(within, sink.wait_for(n))
        .await
        .unwrap_or_else(|_| panic!("the sink got {} of {n} messages in {within:?}", sink.len()));
}

fn finish(child: Child, within: Duration) {
    let mut child = Running(child);
    let started = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.0.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            assert!(
                status.success(),
                "outbox deliver failed: {status}\n{stderr}"
            );
            return;
        }
        assert!(
            started.elapsed() < within,
            "outbox deliver did not finish in {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_midway_loses_nothing() {
    let ts = TestStore::sqlite(Default::default()).await;
    enqueue_many(&*ts.store, 2000).await;
    let (server, sink) = sink_server().await;
    let env = [
        ("OUTBOX_DELIVERY_RELAY", server.local_addr().to_string()),
        ("OUTBOX_DELIVERY_LEASE", "2s".to_string()),
    ];
    let first = Running(deliver(&ts.url, &env, &[]).spawn().unwrap());
    wait_for(&sink, 300, Duration::from_secs(120)).await;
    drop(first); // SIGKILL, mid-delivery
    let in_flight = leased(&*ts.store).await;
    let before_restart = sink.len();
    assert!(
        before_restart < 2000,
        "the worker finished before it could be killed"
    );

    let second = deliver(&ts.url, &env, &["--until-empty"]).spawn().unwrap();
    tokio::task::spawn_blocking(move || finish(second, Duration::from_secs(180)))
        .await
        .unwrap();

    let received = subjects(&sink);
    let distinct: BTreeSet<&String> = received.iter().collect();
    assert_eq!(distinct.len(), 2000, "every message delivered");
    let duplicates = received.len() - 2000;
    assert!(
        duplicates <= in_flight,
        "{duplicates} duplicates, but only {in_flight} recipients were in flight at the kill"
    );
    assert_eq!(ts.store.counts().await.unwrap().sent, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_postgres_deliver_each_message_once() {
    let ts = TestStore::postgres(Default::default()).await;
    enqueue_many(&*ts.store, 1000).await;
    let (server, sink) = sink_server().await;
    let env = [
        ("OUTBOX_DELIVERY_RELAY", server.local_addr().to_string()),
        ("OUTBOX_DELIVERY_MESSAGES_PER_CONNECTION", "20".to_string()),
    ];
    let a = deliver(&ts.url, &env, &["--until-empty"]).spawn().unwrap();
    let b = deliver(&ts.url, &env, &["--until-empty"]).spawn().unwrap();
    tokio::task::spawn_blocking(move || {
        finish(a, Duration::from_secs(180));
        finish(b, Duration::from_secs(180));
    })
    .await
    .unwrap();
    let received = subjects(&sink);
    let distinct: BTreeSet<&String> = received.iter().collect();
    assert_eq!(distinct.len(), 1000);
    assert_eq!(received.len(), 1000, "no message was delivered twice");
    assert_eq!(ts.store.counts().await.unwrap().sent, 1000);
    // Both workers took part (each connection carries at most 20 messages).
    assert!(server.stats().connections_accepted >= 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mx_delivery_reaches_each_domains_host() {
    // Two "MX hosts" on one port, on 127.0.0.2 and 127.0.0.3.
    let (first, second, port) = loop {
        let first = Server::builder().bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().port();
        match Server::builder().bind(&format!("127.0.0.3:{port}")).await {
            Ok(second) => break (first, second, port),
            Err(_) => continue,
        }
    };
    let dns = Dnsmasq::start(
        &[
            "--mx-host=a.test,mx.a.test,10",
            "--host-record=mx.a.test,127.0.0.2",
            "--mx-host=b.test,mx.b.test,10",
            "--host-record=mx.b.test,127.0.0.3",
            "--mx-host=null.test,.,0",
        ]
        .map(String::from),
    );
    let ts = TestStore::sqlite(Default::default()).await;
    let id = ts
        .store
        .enqueue(message(
            "direct",
            &["ann@a.test", "bob@b.test", "nobody@null.test"],
        ))
        .await
        .unwrap()
        .id;
    let env = [
        ("OUTBOX_DNS_NAMESERVERS", dns.nameserver()),
        ("OUTBOX_DELIVERY_MX_PORT", port.to_string()),
    ];
    let child = deliver(&ts.url, &env, &["--until-empty"]).spawn().unwrap();
    tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(60)))
        .await
        .unwrap();
    let at = |server: &Server| -> Vec<Vec<String>> {
        server
            .memory_sink()
            .unwrap()
            .messages()
            .into_iter()
            .map(|m| m.envelope.rcpt_to)
            .collect()
    };
    assert_eq!(at(&first), [["ann@a.test"]]);
    assert_eq!(at(&second), [["bob@b.test"]]);
    let detail = ts.store.detail(&id).await.unwrap();
    let null = &detail.recipients[2];
    assert_eq!(null.state, RecipientState::Failed);
    assert!(
        null.last_reply.as_deref().unwrap().contains("null MX"),
        "{null:?}"
    );
    assert_eq!(null.attempts, 1, "a null MX is permanent: no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaping_entries_reach_the_engine() {
    // a.test and b.test share one MX host, shaped by one [[shaping]] entry: two recipients
    // per transaction, one transaction per connection.
    let server = Server::builder().bind("127.0.0.2:0").await.unwrap();
    let dns = Dnsmasq::start(
        &[
            "--mx-host=a.test,mx.shared.test,10",
            "--mx-host=b.test,mx.shared.test,10",
            "--host-record=mx.shared.test,127.0.0.2",
        ]
        .map(String::from),
    );
    let ts = TestStore::sqlite(Default::default()).await;
    for (subject, recipients) in [
        ("three", &["r1@a.test", "r2@a.test", "r3@a.test"][..]),
        ("two", &["r1@b.test", "r2@b.test"][..]),
    ] {
        ts.store
            .enqueue(message(subject, recipients))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("outbox.toml");
    std::fs::write(
        &config,
        "[[shaping]]\nmx_suffix = \"shared.test\"\nmax_recipients_per_transaction = 2\n\
         messages_per_connection = 1\n",
    )
    .unwrap();
    let env = [
        ("OUTBOX_CONFIG", config.display().to_string()),
        ("OUTBOX_DNS_NAMESERVERS", dns.nameserver()),
        (
            "OUTBOX_DELIVERY_MX_PORT",
            server.local_addr().port().to_string(),
        ),
    ];
    let child = deliver(&ts.url, &env, &["--until-empty"]).spawn().unwrap();
    tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(60)))
        .await
        .unwrap();
    let mut per_transaction: Vec<usize> = server
        .memory_sink()
        .unwrap()
        .messages()
        .iter()
        .map(|m| m.envelope.rcpt_to.len())
        .collect();
    per_transaction.sort();
    assert_eq!(per_transaction, [1, 2, 2]);
    let stats = server.stats();
    assert_eq!(stats.max_transactions_per_connection(), 1, "{stats:?}");
    assert_eq!(
        ts.store.counts().await.unwrap().sent,
        2,
        "both messages sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_transactions_finish() {
    use outbox_smtp::server::{Fault, Stage};
    let ts = TestStore::sqlite(Default::default()).await;
    enqueue_many(&*ts.store, 20).await;
    // Every end-of-data waits 300 ms: the worker is mid-transaction when it is told to stop.
    let server = Server::builder()
        .fault(Fault::stall(Stage::EndOfData, Duration::from_millis(300)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let sink = server.memory_sink().unwrap();
    let env = [
        ("OUTBOX_DELIVERY_RELAY", server.local_addr().to_string()),
        ("OUTBOX_DELIVERY_MAX_CONNECTIONS", "1".to_string()),
    ];
    let child = deliver(&ts.url, &env, &[]).spawn().unwrap();
    wait_for(&sink, 2, Duration::from_secs(60)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(30)))
        .await
        .unwrap();
    // Whatever the server accepted is sent; nothing else is, and nothing stays leased.
    let counts = ts.store.counts().await.unwrap();
    assert_eq!(counts.sent as usize, sink.len());
    assert!(
        sink.len() < 20,
        "the worker stopped before the queue was empty"
    );
    assert_eq!(leased(&*ts.store).await, 0, "unsent claims were given back");
}

/// HTTP status of `curl` against `serve` (0 when nothing answered within 5 s).
fn http_status(args: &[&str]) -> u16 {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("curl runs (scripts/install-peers.sh installs it)");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Waits (up to 60 s) until `url` answers 200.
async fn healthy(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(&[url]) != 200 {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Closes the test database to every connection (existing ones are terminated), or opens
/// it again: a PostgreSQL outage as `serve` sees it.
async fn database_outage(url: &str, down: bool) {
    let name = url.rsplit('/').next().unwrap().to_string();
    let admin = outbox_testkit::postgres::admin_url();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS {}",
            !down
        ))
        .await
        .unwrap();
    if down {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await
            .unwrap();
    }
}

/// PostgreSQL goes away while `serve` has a transaction open: the server's 250 arrives
/// during the outage and is held, `serve` keeps answering HTTP (`/healthz` says 503, an
/// enqueue gets 503, `/metrics` shows the engine's store errors), and
/// once the database is back the held outcome is stored (sent once, not resent) and new
/// messages are accepted and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_rides_out_a_postgres_outage() {
    use outbox_smtp::server::{Fault, Stage};
    let ts = TestStore::postgres(Default::default()).await;
    let sink = Arc::new(MemorySink::new());
    let server = Server::builder()
        .sink(sink.clone())
        .fault(Fault::stall(Stage::EndOfData, Duration::from_millis(1500)).times(1))
        .bind("127.0.0.1:0")
        .await
        .expect("bind sink");
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let token = "outage-test-token-0123456789";
    let mut serve = outbox(
        "serve",
        &ts.url,
        &[
            ("OUTBOX_DELIVERY_RELAY", server.local_addr().to_string()),
            ("OUTBOX_HTTP_LISTEN", http.to_string()),
            ("OUTBOX_HTTP_TOKENS", token.to_string()),
        ],
        &[],
    );
    serve.stderr(Stdio::null());
    let _serve = Running(serve.spawn().expect("start serve"));
    let health = format!("http://{http}/healthz");
    healthy(&health, "serve answers /healthz").await;

    let first = ts
        .store
        .enqueue(message("before", &["a@example.net"]))
        .await
        .unwrap()
        .id;
    // The transaction is open (the sink holds its 250 for 1.5 s): the database goes away.
    let open = Instant::now() + Duration::from_secs(60);
    while server.stats().connections_accepted == 0 {
        assert!(Instant::now() < open, "serve connects to the relay");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    database_outage(&ts.url, true).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        http_status(&[&health]),
        503,
        "serve answers, and says the database is down"
    );
    let auth = format!("Authorization: Bearer {token}");
    let api = format!("http://{http}/api/v1/messages");
    let body = r#"{"from":"app@example.com","to":["b@example.net"],"subject":"during","text":"x"}"#;
    let post = || {
        http_status(&[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            &api,
        ])
    };
    // /metrics still answers, without the queue gauges, and counts the engine's retries.
    let metrics = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-H",
            &auth,
            &format!("http://{http}/metrics"),
        ])
        .output()
        .expect("curl runs");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("outbox_queue_database_up 0"), "{metrics}");
    let store_errors = metrics
        .lines()
        .find_map(|line| line.strip_prefix("outbox_store_errors_total "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(store_errors.is_some_and(|n| n > 0), "{metrics}");
    let refused = post();
    assert_eq!(
        refused, 503,
        "an enqueue during the outage is refused with 503, not hung"
    );

    database_outage(&ts.url, false).await;
    healthy(&health, "serve answers /healthz again").await;
    assert_eq!(post(), 202);
    let done = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = ts.store.counts().await;
        if counts.as_ref().is_ok_and(|c| c.sent == 2) {
            break;
        }
        assert!(Instant::now() < done, "both delivered: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ts.store.status(&first).await.unwrap(), MessageStatus::Sent);
    let mut got = subjects(&sink);
    got.sort();
    assert_eq!(
        got,
        ["before", "during"],
        "each once: the held 250 was not resent"
    );
}
