//! Real client programs into the listener of `outbox serve`: swaks (AUTH, PIPELINING),
//! curl, msmtp and Python's smtplib. Each must get `250 2.0.0 Ok: queued as ID`, and
//! `outbox status ID` must find that message. A missing program fails the test with the
//! way to install it (scripts/install-peers.sh); nothing is skipped.

mod listener_support;
mod mail_support;

use std::process::Command;

use listener_support::{Relay, configure, queued_id, require};
use mail_support::{Serve, Workdir, python, stderr, stdout};

const USERS: &str = "users = { app = \"secret\" }\n";

/// Checks that the message `id` is in the queue and reaches the relay with `subject`.
fn check_queued(work: &Workdir, relay: &Relay, id: &str, subject: &str) {
    let status = work.status(id);
    assert_eq!(status["id"], id, "{status}");
    let received = relay.wait_for(1);
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains(&format!("Subject: {subject}\r\n")), "{text}");
    assert!(
        text.contains("\r\nMessage-ID: <") || text.contains("\r\nMessage-Id: <"),
        "{text}"
    );
    assert!(text.contains("\r\nDate: "), "{text}");
}

#[test]
fn swaks_with_auth_and_pipelining() {
    let swaks = require("swaks");
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, USERS);
    let serve = Serve::start(&work, "info");
    let out = Command::new(swaks)
        .args(["--server", &serve.host(), "--port", &serve.port()])
        .args(["--helo", "swaks.test", "--pipeline"])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            "app",
            "--auth-password",
            "secret",
        ])
        .args(["--from", "app@x.test", "--to", "b@y.test"])
        .args([
            "--header",
            "Subject: via swaks",
            "--body",
            "piped\n.leading dot\n",
        ])
        .output()
        .expect("swaks runs");
    let transcript = stdout(&out);
    assert!(out.status.success(), "swaks: {transcript}{}", stderr(&out));
    assert!(transcript.contains("PIPELINING"), "{transcript}");
    let id = queued_id(&transcript);
    check_queued(&work, &relay, &id, "via swaks");
    let text = String::from_utf8_lossy(&relay.wait_for(1)[0].data).into_owned();
    assert!(text.contains("piped\r\n.leading dot\r\n"), "{text}");
}

#[test]
fn curl_uploads_a_message_with_user_and_password() {
    let curl = require("curl");
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, USERS);
    let serve = Serve::start(&work, "info");
    let message = work.write(
        "message.eml",
        "From: app@x.test\r\nTo: b@y.test\r\nSubject: via curl\r\n\r\nuploaded\r\n",
    );
    let out = Command::new(curl)
        .args(["-sS", "-v", "--max-time", "30"])
        .arg(format!("smtp://{}", serve.address))
        .args(["--mail-from", "app@x.test", "--mail-rcpt", "b@y.test"])
        .arg("--upload-file")
        .arg(&message)
        .args(["--user", "app:secret"])
        .output()
        .expect("curl runs");
    // curl -v writes the server's replies to stderr, as `< 250 ...`.
    let transcript = stderr(&out);
    assert!(out.status.success(), "curl: {transcript}");
    assert!(
        transcript.contains("AUTH PLAIN") || transcript.contains("AUTH LOGIN"),
        "{transcript}"
    );
    let id = queued_id(&transcript);
    check_queued(&work, &relay, &id, "via curl");
}

#[test]
fn msmtp_submits_with_auth() {
    let msmtp = require("msmtp");
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, USERS);
    let serve = Serve::start(&work, "info");
    let log = work.path().join("msmtp.log");
    let message = "From: app@x.test\nTo: b@y.test\nSubject: via msmtp\n\nsent by msmtp\n";
    let mut child = Command::new(msmtp)
        .args(["--host", &serve.host(), "--port", &serve.port()])
        .args(["--auth=plain", "--user=app", "--passwordeval=echo secret"])
        .args([
            "--tls=off",
            "--from=app@x.test",
            "--domain=msmtp.test",
            "--debug",
        ])
        .arg(format!("--logfile={}", log.display()))
        .args(["--", "b@y.test"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("msmtp runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(message.as_bytes()).expect("write message");
    }
    let out = child.wait_with_output().expect("msmtp finishes");
    // --debug prints the dialogue (`<-- 250 ...`) on stdout.
    let transcript = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "msmtp: {transcript}");
    let id = queued_id(&transcript);
    check_queued(&work, &relay, &id, "via msmtp");
}

const SMTPLIB: &str = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(':', 1)
s = smtplib.SMTP(host, int(port), local_hostname='client.test', timeout=30)
s.login('app', 'secret')
s.mail('app@x.test')
s.rcpt('b@y.test')
code, msg = s.data('From: app@x.test\r\nSubject: via smtplib\r\n\r\nhello\r\n')
print(code, msg.decode())
s.quit()
"#;

#[test]
fn python_smtplib_gets_the_queue_id() {
    require("python3");
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, USERS);
    let serve = Serve::start(&work, "info");
    let out = python(SMTPLIB, &[&serve.address.to_string()]);
    assert!(out.status.success(), "smtplib: {}", stderr(&out));
    let id = queued_id(&stdout(&out));
    check_queued(&work, &relay, &id, "via smtplib");
}
