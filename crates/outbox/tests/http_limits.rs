//! `outbox serve`'s HTTP side against raw TCP sockets and real curl: header timeout,
//! connection caps (in all and per client address), the README's curl example, the
//! start-up warning about short tokens, and failed tokens logged with the client address
//! but never the value tried.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use outbox_testkit::ProcessGuard;
use std::time::{Duration, Instant};

const TOKEN: &str = "limits-token-0123456789abcdef";

/// Kills the server on drop, so a failing test leaves no process behind.
struct Serve {
    child: ProcessGuard,
    address: SocketAddr,
    log: std::path::PathBuf,
}

impl Serve {
    /// Stops the server (SIGTERM) and returns everything it logged.
    fn stop(mut self) -> String {
        self.child.terminate();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `outbox serve` with `[http]` lines added; retries once if the port was taken.
fn start(dir: &Path, http_extra: &str, tokens: &[&str]) -> Serve {
    for _ in 0..2 {
        let port = outbox_testkit::free_tcp_port();
        let config = dir.join("outbox.toml");
        let tokens: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
        std::fs::write(
            &config,
            format!(
                "database = \"sqlite://{db}\"\n\
                 [delivery]\nrelay = \"smtp://127.0.0.1:9?starttls=off\"\n\
                 [http]\nlisten = \"127.0.0.1:{port}\"\ntokens = [{tokens}]\n{http_extra}\n",
                db = dir.join("outbox.db").display(),
                tokens = tokens.join(", "),
            ),
        )
        .unwrap();
        let log = dir.join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_outbox"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(dir)
            .env_remove("OUTBOX_CONFIG")
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("outbox serve starts");
        let mut serve = Serve {
            child: ProcessGuard::new(child, "outbox serve"),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = serve.child.try_wait() {
                let stderr = std::fs::read_to_string(&serve.log).unwrap_or_default();
                if stderr.contains("cannot listen") {
                    break;
                }
                panic!("outbox serve exited with {status}: {stderr}");
            }
            if get(serve.address, "/healthz", None).is_ok_and(|(status, _)| status == 200) {
                return serve;
            }
            assert!(Instant::now() < deadline, "outbox serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("no free port for outbox serve after two tries");
}

/// One GET over a fresh connection: status and body.
fn get(address: SocketAddr, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{auth}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Reads until the server closes the connection; panics if it has not within `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return started.elapsed(),
            Ok(_) => continue, // a 408 or similar before the close is fine
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                return started.elapsed();
            }
            Err(err) => panic!("the server kept the connection open ({err})"),
        }
    }
}

#[test]
fn half_sent_headers_and_silent_connections_are_closed_after_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path(), "header_timeout = \"1s\"", &[TOKEN]);
    let mut half = TcpStream::connect(serve.address).unwrap();
    half.write_all(b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-")
        .unwrap();
    let mut silent = TcpStream::connect(serve.address).unwrap();
    // Kept alive after one answer, then idle.
    let mut idle = TcpStream::connect(serve.address).unwrap();
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();

    // Without the timeout, these reads would wait for the full 10 s and fail.
    closed_within(&mut half, Duration::from_secs(10));
    closed_within(&mut silent, Duration::from_secs(10));
    closed_within(&mut idle, Duration::from_secs(10));
    drop(serve);
}

#[test]
fn a_body_that_trickles_in_is_cut_off_after_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path(), "body_timeout = \"1s\"", &[TOKEN]);
    let mut slow = TcpStream::connect(serve.address).unwrap();
    write!(
        slow,
        "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"from\""
    )
    .unwrap();
    // The rest of the body never comes: without body_timeout this read would wait for the
    // full 10 s and fail.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    drop(serve);
}

/// A TCP connection to `address` from the local address `from` (another loopback
/// address stands for another client).
fn connect_from(from: [u8; 4], address: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from((from, 0)))
            .expect("binds a loopback address");
        let stream = socket.connect(address).await.unwrap().into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// Status and body of the answer to one GET sent over `stream`.
fn get_over(mut stream: TcpStream, path: &str) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn one_client_address_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(
        dir.path(),
        "header_timeout = \"30s\"\nmax_connections_per_client = 3",
        &[TOKEN],
    );
    // 127.0.0.2 holds its three connections, idle...
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| connect_from([127, 0, 0, 2], serve.address))
        .collect();
    // ...and a fourth from it is refused (the server accepts in order, so the three are
    // counted before it)...
    let (status, body) = get_over(connect_from([127, 0, 0, 2], serve.address), "/healthz");
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("max_connections_per_client"),
        "{body}"
    );
    // ...while a client at another address is served at once.
    let (status, body) = get(serve.address, "/api/v1/messages", Some(TOKEN)).unwrap();
    assert_eq!(status, 200, "{body}");
    drop(idle);
}

#[test]
fn connections_over_max_connections_get_a_json_503_until_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(
        dir.path(),
        "header_timeout = \"1s\"\nmax_connections = 2",
        &[TOKEN],
    );
    // Open idle connections until a new one is refused. start()'s /healthz connection may
    // still hold a slot for a moment; each probe that is still served adds one more idle
    // connection, so the slots fill up without guessing how long anything takes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(serve.address).unwrap())
        .collect();
    let body = loop {
        let (status, body) = get(serve.address, "/healthz", None).unwrap();
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            Instant::now() < deadline,
            "never refused over max_connections"
        );
        idle.push(TcpStream::connect(serve.address).unwrap());
    };
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("(http.max_connections)"),
        "{body}"
    );
    // The idle ones are closed after header_timeout; then a client is served again.
    loop {
        if get(serve.address, "/healthz", None).is_ok_and(|(status, _)| status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(idle);
}

#[test]
fn the_readme_curl_example_queues_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path(), "", &[TOKEN]);
    std::fs::write(
        dir.path().join("message.json"),
        r#"{"from": "app@example.com", "to": "ann@example.net", "subject": "Hi", "text": "Hello"}"#,
    )
    .unwrap();
    // The README's line, verbatim but for the token and port.
    let output = Command::new("curl")
        .current_dir(dir.path())
        .args([
            "-sS",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "-d",
            "@message.json",
            &format!("http://{}/api/v1/messages", serve.address),
            "-w",
            "\n%{http_code}",
        ])
        .output()
        .expect("curl runs (scripts/install-peers.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "202", "{body}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["status"], "queued");
}

#[test]
fn short_tokens_are_warned_about_and_failed_tokens_logged_with_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let short = "tiny-tok3n";
    let serve = start(dir.path(), "", &[TOKEN, short]);
    let guess = "guessed-token-value-42";
    let (status, _) = get(serve.address, "/api/v1/messages", Some(guess)).unwrap();
    assert_eq!(status, 401);
    let log = serve.stop();
    assert!(
        log.contains("http.tokens[1] is only 10 characters long"),
        "{log}"
    );
    assert!(!log.contains("http.tokens[0] is only"), "{log}");
    let failure = log
        .lines()
        .find(|line| line.contains("wrong or missing token"))
        .unwrap_or_else(|| panic!("no failed-token line: {log}"));
    assert!(failure.contains("WARN"), "{failure}");
    // (The field name may be wrapped in terminal colour codes.)
    assert!(
        failure.contains("client") && failure.contains("127.0.0.1"),
        "{failure}"
    );
    for secret in [TOKEN, short, guess] {
        assert!(!log.contains(secret), "{secret} appears in the log");
    }
}
