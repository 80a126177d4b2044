//! No secret ever leaves the binary: every command is run at `RUST_LOG=trace` with a
//! configuration full of secrets (API tokens, the relay's password, a listener password, a
//! PostgreSQL password), and every byte it writes is searched for each of them — stdout,
//! stderr, `/metrics`, the admin pages' HTML, HTTP error bodies — along with the base64 forms
//! an SMTP AUTH exchange would carry.
//!
//! To extend it: add a secret to [`SECRETS`] (and put it in the configuration), and pass
//! any new output to [`Outputs::add`]. [`Outputs::assert_clean`] reports every leak with
//! the output it came from.

mod mail_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mail_support::{ProcessGuard, Workdir, stderr, stdout};
use outbox_queue::StoreOptions;
use outbox_smtp::server::{Server, StaticUsers};

const TOKEN_A: &str = "tok-A-7f3e9c1d2b4a6e8f";
const TOKEN_B: &str = "tok-B-0a1b2c3d4e5f6a7b";
const RELAY_USER: &str = "mailer";
const RELAY_PASSWORD: &str = "relay-pw-Q9x8W7v6u5";
const LISTENER_USER: &str = "app";
const LISTENER_PASSWORD: &str = "listener-pw-M3n4B5v6";
/// A wrong password a client tries: what a client sends is as secret as what is configured.
const WRONG_PASSWORD: &str = "guess-pw-K7j6H5g4";
const POSTGRES_PASSWORD: &str = "pg-pw-Z1y2X3w4v5";
/// A message's own relay (`send --relay`), a second account on the same relay.
const MESSAGE_RELAY_USER: &str = "mailer2";
const MESSAGE_RELAY_PASSWORD: &str = "msg-relay-pw-R4t5Y6u7";
const UNSUBSCRIBE_SECRET: &str = "unsub-secret-P0o9I8u7Y6t5";
const BOUNCES_SECRET: &str = "verp-secret-L1k2J3h4G5f6";
const WEBHOOK_SECRET: &str = "whsec_d2ViaG9vay1zZWNyZXQtQTFzMkQzZjQ=";

/// Every secret and what it is, for the failure message.
const SECRETS: &[(&str, &str)] = &[
    ("API token A", TOKEN_A),
    ("API token B", TOKEN_B),
    ("relay password", RELAY_PASSWORD),
    ("listener password", LISTENER_PASSWORD),
    ("wrong listener password", WRONG_PASSWORD),
    ("PostgreSQL password", POSTGRES_PASSWORD),
    ("a message's relay password", MESSAGE_RELAY_PASSWORD),
    ("unsubscribe secret", UNSUBSCRIBE_SECRET),
    ("VERP (bounces) secret", BOUNCES_SECRET),
    ("webhook secret", WEBHOOK_SECRET),
];

/// Every output of the run, by where it came from.
#[derive(Default)]
struct Outputs(Vec<(String, String)>);

impl Outputs {
    fn add(&mut self, label: impl Into<String>, text: impl AsRef<[u8]>) {
        self.0.push((
            label.into(),
            String::from_utf8_lossy(text.as_ref()).into_owned(),
        ));
    }

    fn add_output(&mut self, label: &str, output: &Output) {
        self.add(format!("{label}: stdout"), &output.stdout);
        self.add(format!("{label}: stderr"), &output.stderr);
    }

    /// Fails listing every secret found, in any form, in any output.
    fn assert_clean(&self) {
        let mut leaks = Vec::new();
        for (name, secret) in SECRETS {
            for (form, needle) in forms(secret) {
                for (label, text) in &self.0 {
                    if text.contains(&needle) {
                        leaks.push(format!("{name} ({form}) in {label}"));
                    }
                }
            }
        }
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    }

    fn text(&self, label: &str) -> &str {
        self.0
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("no output {label}"))
    }
}

/// A secret as it could appear: as is, percent-encoded, and in the base64 of SMTP AUTH
/// (LOGIN sends the password alone, PLAIN sends `\0user\0password`).
fn forms(secret: &str) -> Vec<(&'static str, String)> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut forms = vec![
        ("plain", secret.to_string()),
        ("base64", b64(secret.as_bytes())),
    ];
    for user in [RELAY_USER, LISTENER_USER, MESSAGE_RELAY_USER] {
        forms.push((
            "AUTH PLAIN base64",
            b64(format!("\0{user}\0{secret}").as_bytes()),
        ));
    }
    forms
}

fn config(relay: &str, database: &str) -> String {
    format!(
        r#"database = "{database}"
[delivery]
relay = "smtp://{RELAY_USER}:{RELAY_PASSWORD}@{relay}?starttls=off"
connect_timeout = "10s"
command_timeout = "10s"
max_attempts = 2
retry_backoff = ["1s"]
[http]
listen = "127.0.0.1:0"
tokens = ["{TOKEN_A}", "{TOKEN_B}"]
[smtp_listener]
listen = "127.0.0.1:0"
users = {{ {LISTENER_USER} = "{LISTENER_PASSWORD}" }}
[unsubscribe]
base_url = "https://mail.example.com"
secret = "{UNSUBSCRIBE_SECRET}"
[bounces]
domain = "bounces.example.com"
secret = "{BOUNCES_SECRET}"
[[webhooks]]
url = "http://127.0.0.1:9/hook"
secret = "{WEBHOOK_SECRET}"
"#
    )
}

/// `outbox ARGS` in the work dir at trace level.
fn traced(work: &Workdir, args: &[&str]) -> Command {
    let mut command = work.outbox(args);
    command.env("RUST_LOG", "trace");
    command
}

fn run(work: &Workdir, args: &[&str]) -> Output {
    traced(work, args).output().expect("run outbox")
}

const SEND: &[&str] = &[
    "send",
    "--from",
    "app@example.com",
    "--to",
    "rcpt@example.net",
    "--subject",
    "secrets test",
    "--body",
    "hello",
];

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl")
}

/// `outbox serve` at trace level; returns the guard, the HTTP and SMTP addresses, and the
/// channel of its stderr lines (every one of them is checked).
fn serve(work: &Workdir) -> (ProcessGuard, String, String, mpsc::Receiver<String>) {
    let child = traced(work, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start outbox serve");
    let mut guard = ProcessGuard::new(child, "outbox");
    let pipe = guard.child_mut().stderr.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let address = |line: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix("address="))
            .map(str::to_string)
    };
    let (mut http, mut smtp) = (None, None);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.is_none() || smtp.is_none() {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("serve did not start: {}", seen.join("\n")));
        if line.contains("HTTP API and admin page listening") {
            http = address(&line);
        }
        if line.contains("SMTP submission listener listening") {
            smtp = address(&line);
        }
        seen.push(line);
    }
    // The lines read so far are checked too.
    let (sender, rest) = mpsc::channel();
    for line in seen {
        let _ = sender.send(line);
    }
    std::thread::spawn(move || {
        for line in lines {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    (guard, http.unwrap(), smtp.unwrap(), rest)
}

/// SMTP submission with AUTH PLAIN through Python's smtplib: a wrong password, then the
/// right one and a message.
fn submit(smtp: &str) -> Output {
    let (host, port) = smtp.rsplit_once(':').unwrap();
    mail_support::python(
        r#"
import smtplib, sys
host, port, user, good, bad = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("client.test")
try:
    s.login(user, bad)
    sys.exit("the wrong password was accepted")
except smtplib.SMTPAuthenticationError:
    pass
s.login(user, good)
s.sendmail("app@example.com", ["rcpt@example.net"],
           "From: app@example.com\r\nTo: rcpt@example.net\r\nSubject: via listener\r\n\r\nhi\r\n")
s.quit()
print("submitted")
"#,
        &[host, port, LISTENER_USER, LISTENER_PASSWORD, WRONG_PASSWORD],
    )
}

#[test]
fn no_secret_in_any_output_at_trace_level() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The relay requires AUTH from everyone, so delivery must log in with the password.
    let relay = runtime.block_on(async {
        Server::builder()
            .authenticator(Arc::new(StaticUsers::new([
                (RELAY_USER, RELAY_PASSWORD),
                (MESSAGE_RELAY_USER, MESSAGE_RELAY_PASSWORD),
            ])))
            .require_auth(Vec::new())
            .bind("127.0.0.1:0")
            .await
            .expect("bind relay")
    });
    let relay_address = relay.local_addr().to_string();
    let mut outputs = Outputs::default();
    let work = Workdir::new();
    work.write("outbox.toml", config(&relay_address, "sqlite://outbox.db"));

    // Queue, send at once, deliver through the relay.
    let queued = run(&work, SEND);
    assert!(queued.status.success(), "send: {}", stderr(&queued));
    let id = stdout(&queued).trim().to_string();
    outputs.add_output("send", &queued);
    let mut now = SEND.to_vec();
    now.push("--now");
    let sent_now = run(&work, &now);
    assert!(
        sent_now.status.success(),
        "send --now: {}",
        stderr(&sent_now)
    );
    outputs.add_output("send --now", &sent_now);
    // A message with its own relay and password, stored with the message.
    let own_relay = format!(
        "smtp://{MESSAGE_RELAY_USER}:{MESSAGE_RELAY_PASSWORD}@{relay_address}?starttls=off"
    );
    let mut with_relay = SEND.to_vec();
    with_relay.extend(["--relay", &own_relay]);
    let queued_relay = run(&work, &with_relay);
    assert!(
        queued_relay.status.success(),
        "send --relay: {}",
        stderr(&queued_relay)
    );
    let relay_id = stdout(&queued_relay).trim().to_string();
    outputs.add_output("send --relay", &queued_relay);
    // A message with unsubscribe links, signed with the unsubscribe secret.
    let mut with_links = SEND.to_vec();
    with_links.push("--unsubscribe");
    let queued_links = run(&work, &with_links);
    assert!(
        queued_links.status.success(),
        "send --unsubscribe: {}",
        stderr(&queued_links)
    );
    outputs.add_output("send --unsubscribe", &queued_links);
    let delivered = run(&work, &["deliver", "--until-empty"]);
    assert!(
        delivered.status.success(),
        "deliver: {}",
        stderr(&delivered)
    );
    outputs.add_output("deliver", &delivered);
    let received = relay.memory_sink().unwrap().messages();
    assert_eq!(
        received.len(),
        4,
        "every message (queued, --now, own relay, with links) reached the relay after AUTH"
    );
    for message in &received {
        outputs.add("a delivered message", &message.data);
    }
    // The queued ones went out with VERP return paths made with the bounces secret.
    let verp = received
        .iter()
        .filter(|m| m.envelope.mail_from.starts_with("bounces+"))
        .count();
    assert_eq!(verp, 3, "queued messages carry VERP return paths");
    // Proof that the trace reached the SMTP conversation, where a password could show.
    assert!(
        outputs.text("deliver: stderr").contains("AUTH"),
        "the trace shows the AUTH command (redacted)"
    );
    for args in [
        vec!["status", &id],
        vec!["--json", "status", &id],
        vec!["queue", "list"],
        vec!["queue", "show", &id],
        vec!["--json", "queue", "show", &id],
        vec!["queue", "show", &relay_id],
        vec!["--json", "queue", "show", &relay_id],
        vec!["--json", "status", &relay_id],
    ] {
        let out = run(&work, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        outputs.add_output(&args.join(" "), &out);
    }

    // serve: the API, /metrics, the admin pages, and the SMTP listener with AUTH.
    let (mut server, http, smtp, lines) = serve(&work);
    let base = format!("http://{http}");
    let bearer = format!("Authorization: Bearer {TOKEN_A}");
    let checks: Vec<(&str, Vec<String>, &str)> = vec![
        ("GET /metrics", vec!["-H".into(), bearer.clone(), format!("{base}/metrics")], "200"),
        ("GET /metrics without a token", vec![format!("{base}/metrics")], "401"),
        (
            "POST /u/ with a forged token",
            vec!["-d".into(), "List-Unsubscribe=One-Click".into(), format!("{base}/u/YW5uQHgueQp3ZWVrbHkK.AAAA")],
            "400",
        ),
        (
            "GET /api/v1/messages with a wrong token",
            vec!["-H".into(), "Authorization: Bearer not-the-token-at-all".into(), format!("{base}/api/v1/messages")],
            "401",
        ),
        ("GET /api/v1/messages", vec!["-H".into(), bearer.clone(), format!("{base}/api/v1/messages")], "200"),
        (
            "GET /api/v1/messages/ID",
            vec!["-H".into(), bearer.clone(), format!("{base}/api/v1/messages/{id}")],
            "200",
        ),
        (
            "POST /api/v1/messages",
            vec![
                "-H".into(), bearer.clone(), "-H".into(), "Content-Type: application/json".into(),
                "-d".into(), r#"{"from":"app@example.com","to":["rcpt@example.net"],"subject":"api","text":"hi"}"#.into(),
                format!("{base}/api/v1/messages"),
            ],
            "20",
        ),
        (
            "POST /api/v1/messages, bad JSON",
            vec!["-H".into(), bearer.clone(), "-H".into(), "Content-Type: application/json".into(),
                 "-d".into(), "{".into(), format!("{base}/api/v1/messages")],
            "400",
        ),
        ("GET / (admin queue)", vec!["-H".into(), bearer.clone(), format!("{base}/")], "200"),
        (
            "GET /messages/ID (admin message page)",
            vec!["-H".into(), bearer.clone(), format!("{base}/messages/{id}")],
            "200",
        ),
        (
            "GET /api/v1/messages/ID of the message with its own relay",
            vec!["-H".into(), bearer.clone(), format!("{base}/api/v1/messages/{relay_id}")],
            "200",
        ),
        (
            "GET /messages/ID (admin page of the message with its own relay)",
            vec!["-H".into(), bearer.clone(), format!("{base}/messages/{relay_id}")],
            "200",
        ),
        ("GET /login", vec![format!("{base}/login")], "200"),
        (
            "POST /login with a wrong token",
            vec!["-d".into(), "token=not-the-token-at-all".into(), format!("{base}/login")],
            "401",
        ),
    ];
    for (label, args, status) in checks {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(&args);
        let head = stdout(&out);
        assert!(
            head.lines()
                .next()
                .unwrap_or_default()
                .contains(&format!(" {status}")),
            "{label}: expected {status}: {head}"
        );
        outputs.add(label, &out.stdout);
        outputs.add(format!("{label} (curl stderr)"), &out.stderr);
    }
    // A session from the login form, and the pages seen through it.
    let jar = work.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let login = curl(&[
        "-c",
        jar,
        "-d",
        &format!("token={TOKEN_B}"),
        &format!("{base}/login"),
    ]);
    outputs.add("POST /login", &login.stdout);
    let page = curl(&["-b", jar, &format!("{base}/")]);
    assert!(
        stdout(&page).contains("<html") || stdout(&page).contains("<!DOCTYPE"),
        "admin page: {}",
        stdout(&page)
    );
    outputs.add("GET / (admin session)", &page.stdout);
    outputs.add("cookie jar", std::fs::read(jar).unwrap_or_default());

    let submitted = submit(&smtp);
    assert!(
        submitted.status.success(),
        "smtplib: {}",
        stderr(&submitted)
    );
    outputs.add("smtplib stdout", &submitted.stdout);

    mail_support::wait_until("the listener's message is delivered", || {
        relay.memory_sink().unwrap().messages().len() >= 5
    });
    server.terminate();
    let serve_log: Vec<String> = lines.try_iter().collect();
    outputs.add("serve: stderr", serve_log.join("\n"));
    assert!(
        outputs.text("serve: stderr").contains("TRACE"),
        "serve logged at trace level"
    );

    // Configurations that do not load, with secrets in the wrong places.
    let bad_env: &[(&str, &str, String)] = &[
        (
            "bad relay port",
            "OUTBOX_DELIVERY_RELAY",
            format!("smtp://{RELAY_USER}:{RELAY_PASSWORD}@127.0.0.1:99999"),
        ),
        (
            "relay password with '?'",
            "OUTBOX_DELIVERY_RELAY",
            format!("smtp://{RELAY_USER}:x?{RELAY_PASSWORD}@127.0.0.1:99999"),
        ),
        (
            "relay without a scheme",
            "OUTBOX_DELIVERY_RELAY",
            format!("{RELAY_USER}:{RELAY_PASSWORD}@127.0.0.1"),
        ),
        (
            "listener users without '='",
            "OUTBOX_SMTP_LISTENER_USERS",
            format!("{LISTENER_USER}:{LISTENER_PASSWORD}"),
        ),
        (
            "bad PostgreSQL port",
            "OUTBOX_DATABASE",
            format!("postgres://postgres:{POSTGRES_PASSWORD}@127.0.0.1:notaport/test"),
        ),
        (
            "unknown database scheme",
            "OUTBOX_DATABASE",
            format!("mysql://root:{POSTGRES_PASSWORD}@127.0.0.1/test"),
        ),
    ];
    for (label, key, value) in bad_env {
        let out = traced(&work, SEND).env(key, value).output().unwrap();
        assert!(!out.status.success(), "{label}: must fail");
        outputs.add_output(label, &out);
    }
    let bad_files = [
        (
            "tokens as a string",
            format!("[http]\ntokens = \"{TOKEN_A}\"\n"),
        ),
        (
            "a token that is not a string",
            format!("[http]\ntokens = [\"{TOKEN_A}\", 5]\n"),
        ),
        (
            "listener users as a string",
            format!("[smtp_listener]\nusers = \"{LISTENER_USER}={LISTENER_PASSWORD}\"\n"),
        ),
        (
            "relay as a list",
            format!("[delivery]\nrelay = [\"smtp://{RELAY_USER}:{RELAY_PASSWORD}@h\"]\n"),
        ),
        (
            "a token in the wrong key",
            format!("[http]\ntokens = [\"{TOKEN_A}\"]\nlisten = \"{TOKEN_A}\"\n"),
        ),
    ];
    for (label, text) in bad_files {
        let dir = Workdir::new();
        dir.write("outbox.toml", text);
        let out = traced(&dir, &["serve"]).output().unwrap();
        assert!(!out.status.success(), "{label}: must fail");
        outputs.add_output(label, &out);
    }

    // A real PostgreSQL database, reached with a password in the URL (trust auth ignores
    // it), at trace level: the driver's logs are checked too.
    let postgres = runtime.block_on(outbox_testkit::TestStore::postgres(StoreOptions::default()));
    let url = postgres.url.replacen(
        "://postgres@",
        &format!("://postgres:{POSTGRES_PASSWORD}@"),
        1,
    );
    assert!(
        url.contains(POSTGRES_PASSWORD),
        "the test URL takes a password: {url}"
    );
    for args in [vec!["queue", "list"], SEND.to_vec()] {
        let out = traced(&work, &args)
            .env("OUTBOX_DATABASE", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PostgreSQL {args:?}: {}",
            stderr(&out)
        );
        outputs.add_output(&format!("PostgreSQL {}", args.join(" ")), &out);
    }
    let deliver_pg = traced(&work, &["deliver", "--until-empty"])
        .env("OUTBOX_DATABASE", &url)
        .output()
        .unwrap();
    assert!(
        deliver_pg.status.success(),
        "PostgreSQL deliver: {}",
        stderr(&deliver_pg)
    );
    outputs.add_output("PostgreSQL deliver", &deliver_pg);
    // libpq also takes the password as a query parameter; `deliver` logs the database.
    let separator = if postgres.url.contains('?') { '&' } else { '?' };
    let query_url = format!("{}{separator}password={POSTGRES_PASSWORD}", postgres.url);
    let deliver_query = traced(&work, &["deliver", "--until-empty"])
        .env("OUTBOX_DATABASE", &query_url)
        .output()
        .unwrap();
    assert!(
        deliver_query.status.success(),
        "PostgreSQL deliver (?password=): {}",
        stderr(&deliver_query)
    );
    outputs.add_output("PostgreSQL deliver (?password=)", &deliver_query);

    outputs.assert_clean();
    drop(server);
    runtime.block_on(relay.shutdown());
}
