//! Webhooks end to end: the real `outbox` binary delivers into an in-process SMTP server
//! and sends its events to a Python receiver that verifies every signature with the
//! `standardwebhooks` package (an implementation nobody here wrote). On SQLite and
//! PostgreSQL: signed, in order per message, one event per state change even when the
//! endpoint fails and is retried (visible in `/metrics`), and nothing lost when the
//! worker is killed with -9 and started again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outbox_queue::{Event, EventFilter, EventType, NewMessage, Store};
use outbox_smtp::server::{Fault, MemorySink, Server, Stage};
use outbox_testkit::{TestStore, message};

/// A Standard Webhooks secret (`whsec_` + base64 of the key).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The receiver: verifies each request with `standardwebhooks`, appends one JSON line
/// per request to the file (`accepted`, the `webhook-id`, the events), answers 503 to
/// the first FAIL_FIRST verified requests and 204 to the rest, 400 to a bad signature.
/// Prints its port first.
const RECEIVER: &str = r#"
import http.server, json, sys, threading, time
from standardwebhooks.webhooks import Webhook
secret, out_path, fail_first, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
hook = Webhook(secret)
lock = threading.Lock()
seen = {"n": 0}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            payload = hook.verify(body, dict(self.headers))
        except Exception as err:
            with lock, open(out_path, "a") as f:
                f.write(json.dumps({"invalid": str(err)}) + "\n")
            self.send_response(400)
            self.end_headers()
            return
        time.sleep(delay)
        with lock:
            seen["n"] += 1
            failing = seen["n"] <= fail_first
            events = payload if isinstance(payload, list) else [payload]
            with open(out_path, "a") as f:
                f.write(json.dumps({"accepted": not failing, "id": self.headers["webhook-id"], "events": events}) + "\n")
        self.send_response(503 if failing else 204)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A child process killed (by its pid) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Receiver {
    _process: Running,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Request {
    accepted: bool,
    id: String,
    events: Vec<serde_json::Value>,
}

impl Receiver {
    fn start(fail_first: u32, delay: Duration) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        std::fs::write(&log, "").unwrap();
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(RECEIVER)
            .arg(SECRET)
            .arg(&log)
            .arg(fail_first.to_string())
            .arg(delay.as_secs_f64().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (install-peers.sh installs standardwebhooks)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            panic!("the receiver did not start (is standardwebhooks installed?): {line:?}")
        });
        Receiver {
            _process: Running(child),
            url: format!("http://127.0.0.1:{port}/hooks/outbox"),
            log,
            _dir: dir,
        }
    }

    fn requests(&self) -> Vec<Request> {
        let text = std::fs::read_to_string(&self.log).unwrap();
        text.lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(
                    value.get("invalid").is_none(),
                    "the receiver refused a signature: {line}"
                );
                Request {
                    accepted: value["accepted"].as_bool().unwrap(),
                    id: value["id"].as_str().unwrap().to_string(),
                    events: value["events"].as_array().unwrap().clone(),
                }
            })
            .collect()
    }

    /// The events of accepted requests, in the order they arrived (duplicates kept).
    fn accepted(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.accepted)
            .flat_map(|r| r.events)
            .collect()
    }
}

fn event_id(event: &serde_json::Value) -> i64 {
    event["data"]["event_id"].as_i64().expect("data.event_id")
}

async fn sink_server(faults: Vec<Fault>) -> (Server, std::sync::Arc<MemorySink>) {
    let sink = std::sync::Arc::new(MemorySink::new());
    let mut builder = Server::builder().sink(sink.clone());
    for fault in faults {
        builder = builder.fault(fault);
    }
    (builder.bind("127.0.0.1:0").await.expect("bind sink"), sink)
}

/// A config file with one webhook, short retries, and the HTTP API on a free port.
fn config(dir: &Path, url: &str, batch_size: usize) -> PathBuf {
    let path = dir.join("outbox.toml");
    std::fs::write(
        &path,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntokens = [\"webhook-test-token-0123\"]\n\
             [events]\nwebhook_retry_backoff = [\"100ms\", \"200ms\"]\nwebhook_batch_size = {batch_size}\n\
             [[webhooks]]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    path
}

/// `outbox SUBCOMMAND` on the test's database and relay, with the config file.
fn outbox(subcommand: &str, db: &str, config: &Path, relay: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox"));
    command
        .arg(subcommand)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("OUTBOX_CONFIG", config)
        .env("OUTBOX_DATABASE", db)
        .env(
            "OUTBOX_DELIVERY_RELAY",
            format!("smtp://{relay}?starttls=off"),
        )
        .env("OUTBOX_DELIVERY_RETRY_BACKOFF", "100ms")
        .env("OUTBOX_EVENTS_POLL_INTERVAL", "50ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

async fn all_events(store: &dyn Store) -> Vec<Event> {
    let mut events = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .events({
                let mut event_filter = EventFilter::default();
                event_filter.message_id = None;
                event_filter.limit = 1000;
                event_filter.cursor = cursor;
                event_filter
            })
            .await
            .unwrap();
        events.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return events,
        }
    }
}

/// Waits (up to 90 s) until the receiver accepted every one of `want` events.
async fn wait_for_all(receiver: &Receiver, store: &dyn Store, want: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let events = all_events(store).await;
        let got: BTreeSet<i64> = receiver.accepted().iter().map(event_id).collect();
        if events.len() >= want && events.iter().all(|e| got.contains(&e.id)) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver has {} of {} events ({} recorded)",
            got.len(),
            want,
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message's events arrived in the order they were recorded (first arrival of
/// each, duplicates of at-least-once aside), and each is what the log holds.
fn assert_in_order_per_message(arrived: &[serde_json::Value], events: &[Event]) {
    let by_id: BTreeMap<i64, &Event> = events.iter().map(|e| (e.id, e)).collect();
    let mut seen = BTreeSet::new();
    let mut per_message: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for event in arrived {
        let id = event_id(event);
        let stored = by_id[&id];
        assert_eq!(event["type"], stored.kind.as_str());
        assert_eq!(event["data"]["recipient"], stored.recipient.as_str());
        assert_eq!(
            event["data"]["message_id"],
            stored.message_id.as_deref().unwrap()
        );
        assert_eq!(event["data"]["state"], stored.state.as_deref().unwrap());
        if seen.insert(id) {
            per_message
                .entry(stored.message_id.clone().unwrap())
                .or_default()
                .push(id);
        }
    }
    for (message, ids) in per_message {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{message}: {ids:?}");
    }
}

fn batch(n: usize, recipients: &[&str]) -> Vec<NewMessage> {
    (0..n)
        .map(|i| message(&format!("m{i}"), recipients))
        .collect()
}

/// Reads `outbox serve`'s HTTP address from its log.
fn http_address(child: &mut Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("HTTP API and admin page listening") {
                let address = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))
                    .unwrap_or_default()
                    .to_string();
                let _ = sender.send(address);
                sent = true;
            }
        }
    });
    receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("outbox serve listens")
}

/// `GET PATH` with the test token; returns the body.
fn get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer webhook-test-token-0123\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

async fn events_are_signed_and_in_order(ts: TestStore) {
    let receiver = Receiver::start(0, Duration::ZERO);
    let (server, _sink) = sink_server(vec![
        Fault::reply(Stage::Rcpt, 451, "4.3.0 try again later")
            .for_recipient("bob@x.test")
            .times(1),
        Fault::reply(Stage::Rcpt, 550, "5.1.1 no such user").for_recipient("cat@x.test"),
    ])
    .await;
    let messages = batch(5, &["ann@x.test", "bob@x.test"]);
    ts.store.enqueue_batch(messages).await.unwrap();
    let odd = ts
        .store
        .enqueue(message("odd", &["cat@x.test"]))
        .await
        .unwrap()
        .id;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &receiver.url, 3);
    let _worker = Running(
        outbox(
            "deliver",
            &ts.url,
            &config,
            &server.local_addr().to_string(),
        )
        .spawn()
        .unwrap(),
    );
    // 11 queued; 10 sent, 1 deferred (bob's first attempt), 1 failed.
    let events = wait_for_all(&receiver, &*ts.store, 23).await;
    assert_eq!(events.len(), 23, "{events:#?}");
    let count = |kind: EventType| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(
        [
            count(EventType::Queued),
            count(EventType::Sent),
            count(EventType::Deferred),
            count(EventType::Failed)
        ],
        [11, 10, 1, 1]
    );
    let arrived = receiver.accepted();
    assert_in_order_per_message(&arrived, &events);
    let failed = arrived
        .iter()
        .find(|e| e["type"] == "failed")
        .expect("the failed event");
    assert_eq!(failed["data"]["message_id"], odd.as_str());
    assert!(
        failed["data"]["reply"].as_str().unwrap().starts_with("550"),
        "{failed}"
    );
    // Batches: at most 3 events a request, arrays when more than one.
    assert!(receiver.requests().iter().all(|r| r.events.len() <= 3));
    assert!(receiver.requests().iter().any(|r| r.events.len() > 1));
    assert!(receiver.requests().iter().all(|r| r.id.starts_with("evt_")));

    // The CLI shows the same log.
    let out = Command::new(env!("CARGO_BIN_EXE_outbox"))
        .args(["--json", "events", "list", "--message", &odd])
        .env("OUTBOX_CONFIG", &config)
        .env("OUTBOX_DATABASE", &ts.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let types: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["queued", "failed"]);
}

async fn a_failing_endpoint_is_retried_and_shows_in_metrics(ts: TestStore) {
    let receiver = Receiver::start(3, Duration::ZERO);
    let (server, _sink) = sink_server(vec![]).await;
    let id = ts
        .store
        .enqueue(message("one", &["ann@x.test", "bob@x.test"]))
        .await
        .unwrap()
        .id;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &receiver.url, 100);
    let mut child = outbox("serve", &ts.url, &config, &server.local_addr().to_string())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = http_address(&mut child);
    let _serve = Running(child);
    let events = wait_for_all(&receiver, &*ts.store, 4).await;
    // Retried, yet one event per state change: 2 queued, 2 sent.
    assert_eq!(events.len(), 4, "{events:#?}");
    let requests = receiver.requests();
    let refused = requests.iter().filter(|r| !r.accepted).count();
    assert_eq!(refused, 3, "{requests:#?}");
    // Each retry starts with the same event: nothing overtakes the one in backoff.
    let heads: BTreeSet<i64> = requests[..4]
        .iter()
        .map(|r| event_id(&r.events[0]))
        .collect();
    assert_eq!(heads.len(), 1, "{requests:#?}");
    assert_in_order_per_message(&receiver.accepted(), &events);
    let metrics = get(&address, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "outbox_webhook_deliveries_total{result=\"failed\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("outbox_webhook_deliveries_total{result=\"delivered\"} ")),
        "{metrics}"
    );
    // The API lists the message's events; the delivery rows remember the retries.
    let page: serde_json::Value = serde_json::from_str(&get(
        &address,
        &format!("/api/v1/events?message={id}&limit=10"),
    ))
    .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    let first = ts.store.event_deliveries(&[events[0].id]).await.unwrap();
    assert_eq!(first[0].attempts, 4, "{first:?}");
    assert_eq!(first[0].last_status, Some(204));
    let admin = get(&address, &format!("/messages/{id}"));
    assert!(
        admin.contains("id=\"events\""),
        "the message page lists events"
    );
    assert!(
        admin.contains("delivered"),
        "and their delivery to the webhook"
    );
}

async fn nothing_is_lost_across_a_restart(ts: TestStore) {
    // One event per request, each answered slowly: the worker is killed mid-way.
    let receiver = Receiver::start(0, Duration::from_millis(100));
    let (server, _sink) = sink_server(vec![]).await;
    ts.store
        .enqueue_batch(batch(10, &["ann@x.test"]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &receiver.url, 1);
    let relay = server.local_addr().to_string();
    let mut first = Running(outbox("deliver", &ts.url, &config, &relay).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.accepted().len() < 4 {
        assert!(Instant::now() < deadline, "no event arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let before = receiver.accepted().len();
    assert!(before < 20, "killed before every event was sent ({before})");
    let _second = Running(outbox("deliver", &ts.url, &config, &relay).spawn().unwrap());
    let events = wait_for_all(&receiver, &*ts.store, 20).await;
    assert_eq!(events.len(), 20);
    assert_in_order_per_message(&receiver.accepted(), &events);
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestStore::sqlite(Default::default()).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestStore::postgres(Default::default()).await).await;
                }
            )*
        }
    };
}

both_stores!(
    events_are_signed_and_in_order,
    a_failing_endpoint_is_retried_and_shows_in_metrics,
    nothing_is_lost_across_a_restart,
);
