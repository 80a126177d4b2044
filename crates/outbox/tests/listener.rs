//! The SMTP submission listener of `outbox serve`, driven by real clients (Python's smtplib
//! and swaks), with serve relaying into an in-process SMTP server: AUTH required, trusted
//! networks, STARTTLS with a test CA, `require_tls`, the size limit, and the message in the
//! queue (`outbox queue list`, `outbox status`) and at the relay.

mod listener_support;
mod mail_support;

use std::process::Command;

use listener_support::{Relay, configure};
use mail_support::{Workdir, python, serve, stderr, stdout};
use outbox_testkit::ca::TestCa;

const SUBMIT_WITH_AUTH: &str = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(':', 1)
s = smtplib.SMTP(host, int(port), local_hostname='client.test', timeout=30)
s.ehlo()
print('AUTH' in s.esmtp_features.get('auth', '') or 'auth' in s.esmtp_features)
print('SIZE', s.esmtp_features.get('size'))
code, _ = s.mail('app@x.test')
print('MAIL', code)
s.rset()
try:
    s.login('app', 'wrong')
except smtplib.SMTPAuthenticationError as e:
    print('BADAUTH', e.smtp_code)
s.login('app', 'secret')
print('LOGIN ok')
s.sendmail('app@x.test', ['b@y.test', 'c@z.test'],
           'From: app@x.test\r\nTo: b@y.test\r\nSubject: via smtp\r\n\r\nhello\r\n.dot\r\n')
print('SENT')
s.quit()
"#;

#[test]
fn auth_is_required_and_accepted_mail_is_queued_then_relayed() {
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, "users = { app = \"secret\" }\n");
    let (_serve, address) = serve(&work);

    let out = python(SUBMIT_WITH_AUTH, &[&address]);
    assert!(out.status.success(), "smtplib: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "True\nSIZE 20000\nMAIL 530\nBADAUTH 535\nLOGIN ok\nSENT\n"
    );

    // The 250 came after the commit: the message is in the queue now.
    let list = work.queue_list();
    let items = list.as_array().expect("array");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["subject"], "via smtp");
    assert_eq!(items[0]["recipients"], 2);
    let id = items[0]["id"].as_str().expect("id");

    let received = relay.wait_for(1);
    assert_eq!(received[0].envelope.mail_from, "app@x.test");
    let mut rcpts = received
        .iter()
        .flat_map(|m| m.envelope.rcpt_to.clone())
        .collect::<Vec<_>>();
    rcpts.sort();
    if rcpts.len() < 2 {
        rcpts = relay
            .wait_for(2)
            .iter()
            .flat_map(|m| m.envelope.rcpt_to.clone())
            .collect();
        rcpts.sort();
    }
    assert_eq!(rcpts, ["b@y.test", "c@z.test"]);
    let text = String::from_utf8(received[0].data.clone()).unwrap();
    assert!(
        text.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby outbox.test with ESMTPA;"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("Subject: via smtp\r\n\r\nhello\r\n.dot\r\n"),
        "{text}"
    );
    mail_support::wait_until("status sent", || work.status(id)["status"] == "sent");
}

#[test]
fn trusted_network_submits_without_auth_and_others_are_refused() {
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, "trusted_networks = [\"127.0.0.0/8\"]\n");
    let (_serve, address) = serve(&work);
    let (host, port) = address.rsplit_once(':').unwrap();
    let swaks = |to: &str| {
        Command::new("swaks")
            .args(["--server", host, "--port", port, "--helo", "cron.test"])
            .args(["--from", "cron@x.test", "--to", to])
            .args([
                "--header",
                "Subject: from swaks",
                "--body",
                "nightly report",
            ])
            .output()
            .expect("swaks runs")
    };
    let out = swaks("ops@y.test");
    assert!(
        out.status.success(),
        "swaks: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let received = relay.wait_for(1);
    assert_eq!(received[0].envelope.rcpt_to, ["ops@y.test"]);
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains("with ESMTP;"), "{text}");
    assert!(text.contains("Subject: from swaks\r\n"), "{text}");

    // The same listener with no trusted network and no users: no open relay.
    let closed = Workdir::new();
    configure(&closed, &relay, "");
    let (_serve2, address) = serve(&closed);
    let (host, port) = address.rsplit_once(':').unwrap();
    let out = Command::new("swaks")
        .args([
            "--server", host, "--port", port, "--from", "a@x.test", "--to", "b@y.test",
        ])
        .output()
        .expect("swaks runs");
    assert!(!out.status.success());
    assert!(stdout(&out).contains("<** 530 5.7.0"), "{}", stdout(&out));
    assert_eq!(closed.queue_list(), serde_json::json!([]));
}

const SUBMIT_WITH_STARTTLS: &str = r#"
import smtplib, ssl, sys, base64
host, port = sys.argv[1].rsplit(':', 1)
s = smtplib.SMTP(host, int(port), local_hostname='client.test', timeout=30)
s.ehlo()
print('before', 'starttls' in s.esmtp_features, 'auth' in s.esmtp_features)
code, _ = s.docmd('AUTH', 'PLAIN ' + base64.b64encode(b'\0app\0secret').decode())
print('AUTH before TLS', code)
s.starttls(context=ssl.create_default_context(cafile=sys.argv[2]))
s.ehlo()
print('after', 'starttls' in s.esmtp_features, s.esmtp_features.get('auth', '').strip())
s.login('app', 'secret')
s.sendmail('app@x.test', ['b@y.test'], 'From: app@x.test\r\nSubject: over tls\r\n\r\nsecret\r\n')
print('SENT')
s.quit()
"#;

#[test]
fn starttls_with_require_tls_offers_auth_only_after_tls() {
    let work = Workdir::new();
    let test_ca = TestCa::generate();
    let relay = Relay::start();
    configure(
        &work,
        &relay,
        &format!(
            "users = {{ app = \"secret\" }}\ncert_file = \"{}\"\nkey_file = \"{}\"\nrequire_tls = true\n",
            test_ca.server_cert.display(),
            test_ca.server_key.display()
        ),
    );
    let (_serve, address) = serve(&work);
    let ca = test_ca.ca_cert.clone();
    let out = python(SUBMIT_WITH_STARTTLS, &[&address, ca.to_str().unwrap()]);
    assert!(out.status.success(), "smtplib: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "before True False\nAUTH before TLS 538\nafter False PLAIN LOGIN\nSENT\n"
    );
    let received = relay.wait_for(1);
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains("with ESMTPSA;"), "{text}");
}

const OVERSIZE: &str = r#"
import smtplib, sys, socket
host, port = sys.argv[1].rsplit(':', 1)
body = ('x' * 76 + '\r\n') * 1000   # 78 KB, over the 20 KB limit
s = smtplib.SMTP(host, int(port), local_hostname='client.test', timeout=30)
s.login('app', 'secret')
try:
    s.sendmail('app@x.test', ['b@y.test'], 'Subject: big\r\n\r\n' + body)
except smtplib.SMTPSenderRefused as e:
    print('declared', e.smtp_code)
# Without SIZE= on MAIL the server finds out while reading, discards the text, and says so
# at the end of data; the session goes on.
s.mail('app@x.test')
s.rcpt('b@y.test')
code, msg = s.data('Subject: big\r\n\r\n' + body)
print('undeclared', code, msg.decode().split(' ')[0])
code, _ = s.noop()
print('NOOP', code)
s.sendmail('app@x.test', ['b@y.test'], 'Subject: small\r\n\r\nok\r\n')
print('SMALL SENT')
s.quit()
"#;

#[test]
fn oversize_messages_get_552_and_the_session_continues() {
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, "users = { app = \"secret\" }\n");
    let (_serve, address) = serve(&work);
    let out = python(OVERSIZE, &[&address]);
    assert!(out.status.success(), "smtplib: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "declared 552\nundeclared 552 5.3.4\nNOOP 250\nSMALL SENT\n"
    );
    let list = work.queue_list();
    let subjects: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["small"]);
}

#[test]
fn bad_listener_configuration_fails_with_one_line() {
    let work = Workdir::new();
    let relay = Relay::start();
    configure(&work, &relay, "trusted_networks = [\"10.0.0.0/99\"]\n");
    let out = work.run(&["serve"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("smtp_listener.trusted_networks"), "{err}");
    assert!(last.contains("10.0.0.0/99"), "{err}");
}
