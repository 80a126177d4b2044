//! The listener as a submission server (RFC 6409, DESIGN §10), through `outbox serve`:
//! `250 2.0.0 Ok: queued as ID` naming the real queue id, Date / Message-ID / Received added
//! and Bcc removed, each address checked at MAIL / RCPT time, SMTP smuggling refused, no
//! header or parameter choosing a relay, and failed AUTH logged without the password.

mod listener_support;
mod mail_support;

use std::time::Duration;

use listener_support::{Raw, Relay, configure};
use mail_support::{Serve, Workdir, python, stderr, stdout};

const USERS: &str = "users = { app = \"secret\" }\n";

const SUBMIT: &str = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(':', 1)
s = smtplib.SMTP(host, int(port), local_hostname='client.test', timeout=30)
s.login('app', 'secret')
print('MAIL root', s.docmd('MAIL', 'FROM:<root>')[0])
print('MAIL', s.mail('app@x.test')[0])
print('RCPT bad', s.rcpt('bad@@x')[0])
print('RCPT root', s.rcpt('root')[0])
print('RCPT ok', s.rcpt('ok@y.test')[0])
print('RCPT hidden', s.rcpt('hidden@z.test')[0])
code, msg = s.data('From: app@x.test\r\nTo: ok@y.test\r\nBcc: hidden@z.test,\r\n secret-list@z.test\r\nSubject: submitted\r\n\r\nhello\r\n')
print('DATA', code, msg.decode())
s.quit()
"#;

#[test]
fn queued_as_id_and_the_submission_fixes_and_per_recipient_checks() {
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, USERS);
    let serve = Serve::start(&work, "info");
    let out = python(SUBMIT, &[&serve.address.to_string()]);
    assert!(out.status.success(), "smtplib: {}", stderr(&out));
    let transcript = stdout(&out);
    let lines: Vec<&str> = transcript.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "MAIL root 553",
            "MAIL 250",
            "RCPT bad 501",
            "RCPT root 553",
            "RCPT ok 250",
            "RCPT hidden 250"
        ],
        "{transcript}"
    );
    assert!(
        lines[6].starts_with("DATA 250 2.0.0 Ok: queued as "),
        "{transcript}"
    );
    let id = lines[6].rsplit(' ').next().unwrap();

    // The id is the queue's: `outbox status ID` finds the message and its two recipients.
    let status = work.status(id);
    assert_eq!(status["id"], id, "{status}");
    let list = work.queue_list();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["recipients"], 2);

    let received = relay.wait_for(1);
    let text = String::from_utf8(received[0].data.clone()).unwrap();
    let header = &text[..text.find("\r\n\r\n").expect("header end")];
    assert!(
        header.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby outbox.test with ESMTPA;"
        ),
        "{text}"
    );
    assert!(header.contains("\r\nDate: "), "{text}");
    assert!(header.contains("\r\nMessage-ID: <"), "{text}");
    assert!(header.contains("@outbox.test>\r\n"), "{text}");
    assert!(!header.to_ascii_lowercase().contains("bcc"), "{text}");
    assert!(!text.contains("secret-list"), "{text}");
    assert!(
        text.ends_with("Subject: submitted\r\n\r\nhello\r\n"),
        "{text}"
    );
    let mut rcpts: Vec<String> = relay
        .wait_for_recipients(2)
        .iter()
        .flat_map(|m| m.envelope.rcpt_to.clone())
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, ["hidden@z.test", "ok@y.test"]);
}

/// SMTP smuggling after AUTH: every variant of a bare-LF / bare-CR end of data followed by
/// a second transaction queues nothing; the client gets 521 and the connection closes.
#[test]
fn smuggled_messages_are_never_queued() {
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, USERS);
    let serve = Serve::start(&work, "info");
    let auth = format!("AUTH PLAIN {}", base64_encode(b"\0app\0secret"));
    for (name, end) in [
        ("LF.LF", &b"\n.\n"[..]),
        ("CRLF.LF", b"\r\n.\n"),
        ("LF.CRLF", b"\n.\r\n"),
        ("CR.CRLF", b"\r.\r\n"),
    ] {
        let mut c = Raw::connect_from(serve.address, "127.0.0.1");
        assert!(c.reply().starts_with("220 "));
        assert!(c.cmd("EHLO attacker.test").starts_with("250"));
        assert!(c.cmd(&auth).starts_with("235"), "{name}");
        assert!(c.cmd("MAIL FROM:<app@x.test>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<friend@y.test>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        let mut text = b"Subject: first\r\n\r\nhello".to_vec();
        text.extend_from_slice(end);
        text.extend_from_slice(
            b"MAIL FROM:<ceo@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n\
              From: ceo@x.test\r\nSubject: smuggled\r\n\r\npay now\r\n.\r\nQUIT\r\n",
        );
        c.send(&text);
        assert_eq!(
            c.reply(),
            "521 5.5.2 outbox.test Error: bare <LF> received",
            "{name}"
        );
        assert!(c.closed_within(Duration::from_secs(10)), "{name}");
    }
    assert_eq!(work.queue_list(), serde_json::json!([]));
    assert!(relay.received().is_empty());
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const CHOOSE_A_RELAY: &str = r#"
import smtplib, sys
host, port, marker = sys.argv[1], sys.argv[2], sys.argv[3]
s = smtplib.SMTP(host, int(port), local_hostname='client.test', timeout=30)
s.login('app', 'secret')
# MAIL parameters a client controls: all accepted ones are inert.
print('MAIL', s.docmd('MAIL', 'FROM:<app@x.test> SIZE=100 BODY=8BITMIME SMTPUTF8 AUTH=<program:/usr/bin/touch>')[0])
print('RCPT param', s.docmd('RCPT', 'TO:<a@y.test> NOTIFY=NEVER ORCPT=rfc822;program:/bin/sh')[0])
print('RCPT program', s.docmd('RCPT', 'TO:<program:/usr/bin/touch ' + marker + '>')[0])
print('RCPT pipe', s.docmd('RCPT', 'TO:<"|/usr/bin/touch ' + marker + '"@y.test>')[0])
print('RCPT quoted', s.docmd('RCPT', 'TO:<"|touch"@y.test>')[0])
print('RCPT ok', s.docmd('RCPT', 'TO:<a@y.test>')[0])
print('VRFY', s.docmd('VRFY', 'root')[0])
print('EXPN', s.docmd('EXPN', 'staff')[0])
code, msg = s.data(
    'X-Outbox-Relay: program:/usr/bin/touch ' + marker + '\r\n'
    'X-Relay: smtp://127.0.0.1:1\r\nRelay: program:/usr/bin/touch ' + marker + '\r\n'
    'X-Priority: 1\r\nX-Outbox-Send-At: 2000-01-01T00:00:00Z\r\n'
    'Subject: choose\r\n\r\n#name# stays as it is\r\n')
print('DATA', code)
s.quit()
"#;

/// No header, parameter or address lets an SMTP client pick a relay or a program: the
/// message goes through the configured relay, and the marker file is never created.
#[test]
fn no_header_or_parameter_chooses_a_relay_or_a_program() {
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, USERS);
    let serve = Serve::start(&work, "info");
    let marker = work.path().join("pwned");
    let out = python(
        CHOOSE_A_RELAY,
        &[&serve.host(), &serve.port(), marker.to_str().unwrap()],
    );
    assert!(out.status.success(), "smtplib: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "MAIL 250\nRCPT param 555\nRCPT program 501\nRCPT pipe 501\nRCPT quoted 250\nRCPT ok 250\n\
         VRFY 252\nEXPN 500\nDATA 250\n"
    );
    let received = relay.wait_for_recipients(2);
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    // The headers are carried as text, the merge marker is not merged.
    assert!(text.contains("X-Outbox-Relay: program:"), "{text}");
    assert!(text.contains("#name# stays as it is"), "{text}");
    assert!(!marker.exists(), "a program ran");
    // The status shows the message went out now, through the configured relay.
    let list = work.queue_list();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

/// Failed AUTH is logged at warn with the client's address; the password, in clear or in
/// base64, is in no log line even at trace level.
#[test]
fn failed_auth_is_logged_with_the_address_and_never_the_password() {
    let work = Workdir::new();
    let relay = Relay::start();
    configure(
        &work,
        &relay,
        "users = { app = \"right-password-1234\" }\nmax_auth_failures = 2\n",
    );
    let mut serve = Serve::start(&work, "trace");
    let guess = "hunter2-guess-5678";
    let mut c = Raw::connect_from(serve.address, "127.0.0.1");
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO c.test").starts_with("250"));
    let wrong = format!(
        "AUTH PLAIN {}",
        base64_encode(format!("\0app\0{guess}").as_bytes())
    );
    assert!(c.cmd(&wrong).starts_with("535 5.7.8"));
    assert!(c.cmd("AUTH LOGIN").starts_with("334"));
    assert!(c.cmd(&base64_encode(b"app")).starts_with("334"));
    assert_eq!(
        c.cmd(&base64_encode(guess.as_bytes())),
        "421 4.7.0 outbox.test Error: too many failed authentication attempts"
    );
    let mut ok = Raw::connect_from(serve.address, "127.0.0.1");
    assert!(ok.reply().starts_with("220 "));
    assert!(ok.cmd("EHLO c.test").starts_with("250"));
    let right = format!(
        "AUTH PLAIN {}",
        base64_encode(b"\0app\0right-password-1234")
    );
    assert!(ok.cmd(&right).starts_with("235"));
    serve.stop();
    let log = serve.log();
    let failures: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("SMTP AUTH failed"))
        .collect();
    assert_eq!(failures.len(), 2, "{log:#?}");
    for line in failures {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("client=127.0.0.1"), "{line}");
    }
    let encoded = [
        guess.to_string(),
        base64_encode(guess.as_bytes()),
        base64_encode(format!("\0app\0{guess}").as_bytes()),
        "right-password-1234".to_string(),
        base64_encode(b"\0app\0right-password-1234"),
    ];
    for line in &log {
        for secret in &encoded {
            assert!(!line.contains(secret.as_str()), "secret in log: {line}");
        }
    }
}
