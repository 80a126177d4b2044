//! The admin page on the real `outbox serve`: the page is mounted, a browser-less client
//! is sent to /login, logs in with the token, sees a message queued by `outbox send`, and
//! removes it with the page's CSRF token. (tests/browser does the same in Chromium.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{ChildStderr, Command, Output, Stdio};
use std::time::Duration;

use outbox_testkit::ProcessGuard;

const TOKEN: &str = "admin-serve-token-0123456789";

/// Kills `outbox serve` on drop, also when an assertion fails.
struct Serve {
    _child: ProcessGuard,
    address: SocketAddr,
}

fn outbox(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outbox"))
        .arg("--config")
        .arg(dir.join("outbox.toml"))
        .args(args)
        .current_dir(dir)
        .env_remove("OUTBOX_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("outbox runs")
}

/// Writes a config listening on port 0, starts `serve`, and reads the bound address back
/// from its log line. The relay is a closed port, so messages stay queued (deferred).
fn start(dir: &Path) -> Serve {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        dir.join("outbox.toml"),
        format!(
            "database = \"sqlite://{db}\"\n\
             [delivery]\nrelay = \"smtp://{closed}\"\nretry_backoff = [\"1h\"]\n\
             [http]\nlisten = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\n",
            db = dir.join("outbox.db").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outbox"))
        .arg("--config")
        .arg(dir.join("outbox.toml"))
        .arg("serve")
        .current_dir(dir)
        .env_remove("OUTBOX_CONFIG")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outbox serve starts");
    let stderr = child.stderr.take().unwrap();
    let child = ProcessGuard::new(child, "outbox serve");
    Serve {
        _child: child,
        address: listening_address(stderr),
    }
}

fn listening_address(stderr: ChildStderr) -> SocketAddr {
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = strip_ansi(&line.expect("serve's stderr"));
        if line.contains("listening")
            && let Some(rest) = line.split("address=").nth(1)
        {
            let address = rest.split_whitespace().next().unwrap().parse().unwrap();
            // Keep draining the log so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return address;
        }
    }
    panic!("outbox serve exited without saying where it listens");
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// One HTTP/1.1 request; returns the status, the headers (lowercase names) and the body.
fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn admin_page_on_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    // Create the config (and the queue) first, then queue a message with the CLI.
    let serve = start(dir.path());
    let sent = outbox(
        dir.path(),
        &[
            "send",
            "--from",
            "ops@example.com",
            "--to",
            "ann@example.org",
            "--subject",
            "Quarterly <report>",
            "--body",
            "numbers",
        ],
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let id = String::from_utf8(sent.stdout).unwrap().trim().to_string();

    let (status, headers, _) = request(serve.address, "GET", "/", &[], "");
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/login"));

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, headers, _) = request(serve.address, "POST", "/login", &form, "token=wrong");
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "set-cookie"), None);

    let (status, headers, _) = request(
        serve.address,
        "POST",
        "/login",
        &form,
        &format!("token={TOKEN}"),
    );
    assert_eq!(status, 303);
    let set_cookie = header(&headers, "set-cookie").expect("a session cookie");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    let (status, headers, page) = request(serve.address, "GET", "/", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.contains(&id), "the queued message is listed");
    assert!(
        page.contains("Quarterly &lt;report&gt;"),
        "the subject is escaped"
    );
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a CSRF field") + marker.len();
    let csrf = page[start..].split('"').next().unwrap();

    let remove = format!("/messages/{id}/remove");
    let with_cookie = [form[0], ("Cookie", &cookie)];
    let (status, _, _) = request(serve.address, "POST", &remove, &with_cookie, "csrf=wrong");
    assert_eq!(status, 403);
    let (status, _, _) = request(
        serve.address,
        "POST",
        &remove,
        &with_cookie,
        &format!("csrf={csrf}"),
    );
    assert_eq!(status, 303);

    let shown = outbox(dir.path(), &["status", &id]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), "error");
    drop(serve);
}
