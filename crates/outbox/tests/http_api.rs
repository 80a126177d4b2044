//! `outbox serve` end to end: the real binary with a temp-dir config, an in-process SMTP
//! server as its relay, a message posted over HTTP and delivered, then SIGTERM and a
//! clean exit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_smtp::server::{MemorySink, Server};
use outbox_testkit::ProcessGuard;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-token-0123456789abcdef";

/// Kills the server on drop, so a failing test leaves no process behind.
struct ServeProcess {
    child: ProcessGuard,
    address: SocketAddr,
}

impl ServeProcess {
    fn terminate(&mut self) -> ExitStatus {
        self.child.terminate()
    }
}

/// A port that was free a moment ago (the config cannot say "port 0").
/// Starts `outbox serve` and waits until /healthz answers; retries once with another
/// port if the first one was taken in between.
fn start_serve(dir: &Path, relay: SocketAddr) -> ServeProcess {
    for _ in 0..2 {
        let port = outbox_testkit::free_tcp_port();
        let config = dir.join("outbox.toml");
        std::fs::write(
            &config,
            format!(
                "database = \"sqlite://{db}\"\n\
                 [delivery]\nrelay = \"smtp://{relay}?starttls=off\"\nretry_backoff = [\"1s\"]\n\
                 [http]\nlisten = \"127.0.0.1:{port}\"\ntokens = [\"{TOKEN}\"]\n",
                db = dir.join("outbox.db").display(),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_outbox"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(dir)
            .env_remove("OUTBOX_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: nobody reads the log while the server runs, and a
            // full pipe would block it.
            .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
            .spawn()
            .expect("outbox serve starts");
        let mut serve = ServeProcess {
            child: ProcessGuard::new(child, "outbox serve"),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = serve.child.try_wait() {
                let stderr = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
                if stderr.contains("cannot listen") {
                    break; // the port was taken: try another
                }
                panic!("outbox serve exited with {status}: {stderr}");
            }
            if let Ok((200, _)) = http(serve.address, "GET", "/healthz", None, None) {
                return serve;
            }
            assert!(Instant::now() < deadline, "outbox serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("no free port for outbox serve after two tries");
}

/// One HTTP/1.1 request over a fresh connection; returns the status and body.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_a_posted_message_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::new());
    let relay = Server::builder()
        .sink(sink.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let relay_address = relay.local_addr();
    let dir_path = dir.path().to_path_buf();
    let mut serve = tokio::task::spawn_blocking(move || start_serve(&dir_path, relay_address))
        .await
        .unwrap();
    let address = serve.address;

    let spec = json!({
        "from": "app@example.com",
        "to": ["ann@example.net"],
        "subject": "Over HTTP",
        "text": "Hello from the API",
    });
    let (status, body) = tokio::task::spawn_blocking(move || {
        let unauthorized = http(address, "POST", "/api/v1/messages", None, Some(&spec)).unwrap();
        assert_eq!(unauthorized.0, 401, "{}", unauthorized.1);
        http(
            address,
            "POST",
            "/api/v1/messages",
            Some(TOKEN),
            Some(&spec),
        )
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let received = tokio::time::timeout(Duration::from_secs(60), sink.wait_for(1))
        .await
        .expect("the relay received the message");
    assert_eq!(received[0].envelope.rcpt_to, ["ann@example.net"]);
    let data = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(data.contains("Subject: Over HTTP"), "{data}");

    let path = format!("/api/v1/messages/{id}");
    let detail = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = http(address, "GET", &path, Some(TOKEN), None).unwrap();
            assert_eq!(status, 200, "{body}");
            let detail: Value = serde_json::from_str(&body).unwrap();
            if detail["status"] == "sent" || Instant::now() > deadline {
                return detail;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert_eq!(detail["status"], "sent", "{detail}");
    assert_eq!(detail["recipients"][0]["state"], "sent");

    let metrics = tokio::task::spawn_blocking(move || {
        http(address, "GET", "/metrics", Some(TOKEN), None).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(metrics.0, 200);
    assert!(
        metrics.1.contains("outbox_recipients_sent_total 1"),
        "{}",
        metrics.1
    );

    let exit = tokio::task::spawn_blocking(move || serve.terminate())
        .await
        .unwrap();
    assert!(exit.success(), "outbox serve exited with {exit}");
    relay.shutdown().await;
}
