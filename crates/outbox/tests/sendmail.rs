//! `outbox sendmail`, called the way cron, PHP, git send-email and old scripts call
//! /usr/sbin/sendmail: through a symlink named `sendmail` in a temp dir, message on stdin.
//! What was queued is then delivered into an in-process server to check the exact bytes.

mod mail_support;
mod sendmail_support;

use std::io::Write;
use std::process::Stdio;

use mail_support::Workdir;
use outbox_smtp::server::ReceivedMessage;
use sendmail_support::{assert_fails, assert_quiet_success, hostname, sendmail, text_of, user};

/// Every envelope recipient over all transactions (the engine may split a message's
/// recipients by domain), sorted; also checks that every transaction carried the same text.
fn all_recipients(received: &[ReceivedMessage]) -> Vec<String> {
    let mut rcpts: Vec<String> = received
        .iter()
        .flat_map(|m| m.envelope.rcpt_to.clone())
        .collect();
    rcpts.sort();
    for message in received {
        assert_eq!(message.data, received[0].data, "one message, one text");
        assert_eq!(message.envelope.mail_from, received[0].envelope.mail_from);
    }
    rcpts
}

#[test]
fn cron_style_t_i_reads_recipients_from_headers_and_drops_bcc() {
    let work = Workdir::new();
    let out = sendmail(
        &work,
        &["-t", "-i"],
        "To: ops@y.test\nCc: \"Lee, Ann\" <ann@y.test>\nBcc: hidden@z.test\nSubject: cron job\n\n\
         output line\n.\nafter a lone dot\n",
    );
    assert_quiet_success(&out);
    let received = work.deliver_all();
    assert_eq!(work.queue_list().as_array().unwrap().len(), 1);
    assert_eq!(
        received[0].envelope.mail_from,
        format!("{}@{}", user(), hostname())
    );
    assert_eq!(
        all_recipients(&received),
        ["ann@y.test", "hidden@z.test", "ops@y.test"]
    );
    let text = String::from_utf8(received[0].data.clone()).unwrap();
    assert!(
        !text.contains("Bcc") && !text.contains("hidden@z.test"),
        "{text}"
    );
    assert!(
        text.contains(&format!("From: {}@{}\r\n", user(), hostname())),
        "{text}"
    );
    assert!(text.contains("\r\nDate: "), "{text}");
    assert!(text.contains("Message-ID: <"), "{text}");
    assert!(
        text.ends_with("Subject: cron job\r\n\r\noutput line\r\n.\r\nafter a lone dot\r\n"),
        "{text}"
    );
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "every line end is CRLF: {text:?}"
    );
}

#[test]
fn php_style_f_sets_the_envelope_sender() {
    let work = Workdir::new();
    let out = sendmail(
        &work,
        &["-t", "-i", "-f", "www@x.test"],
        "From: Site <site@x.test>\r\nTo: user@y.test\r\nSubject: php\r\n\r\nhi\r\n",
    );
    assert_quiet_success(&out);
    let out = sendmail(
        &work,
        &["-fbounce@x.test", "-oi", "-t"],
        "From: a@x.test\nTo: b@y.test\nSubject: glued\n\nx\n",
    );
    assert_quiet_success(&out);
    let mut received = work.deliver_all();
    received.sort_by_key(|m| m.envelope.mail_from.clone());
    assert_eq!(received[0].envelope.mail_from, "bounce@x.test");
    assert_eq!(received[0].envelope.rcpt_to, ["b@y.test"]);
    assert_eq!(received[1].envelope.mail_from, "www@x.test");
    assert_eq!(received[1].envelope.rcpt_to, ["user@y.test"]);
    let text = String::from_utf8(received[1].data.clone()).unwrap();
    assert!(text.contains("From: Site <site@x.test>\r\n"), "{text}");
}

#[test]
fn without_i_a_lone_dot_ends_the_message() {
    let work = Workdir::new();
    let out = sendmail(
        &work,
        &["-f", "x@x.test", "rcpt@y.test"],
        "Subject: dot\n\nbody\n.\nnot part of the message\n",
    );
    assert_quiet_success(&out);
    let received = work.deliver_all();
    assert_eq!(received[0].envelope.rcpt_to, ["rcpt@y.test"]);
    let text = String::from_utf8(received[0].data.clone()).unwrap();
    assert!(text.ends_with("Subject: dot\r\n\r\nbody\r\n"), "{text}");
    assert!(!text.contains("not part"), "{text}");
    assert!(text.starts_with("From: x@x.test\r\n"), "{text}");
}

#[test]
fn git_send_email_style_recipients_as_arguments_only() {
    let work = Workdir::new();
    let out = sendmail(
        &work,
        &["-i", "dev1@y.test", "dev2@z.test"],
        "From: Dev <dev@x.test>\nTo: list@y.test\nSubject: [PATCH] fix\n\n---\n.\n",
    );
    assert_quiet_success(&out);
    let list = work.queue_list();
    assert_eq!(list[0]["subject"], "[PATCH] fix");
    assert_eq!(list[0]["recipients"], 2);
    let received = work.deliver_all();
    assert_eq!(received[0].envelope.mail_from, "dev@x.test");
    assert_eq!(all_recipients(&received), ["dev1@y.test", "dev2@z.test"]);
    assert!(String::from_utf8_lossy(&received[0].data).ends_with("\r\n---\r\n.\r\n"));
}

#[test]
fn the_subcommand_takes_the_same_flags() {
    let work = Workdir::new();
    let mut child = work
        .outbox(&["sendmail", "-t", "-oi"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"From: a@x.test\nTo: b@y.test\nSubject: sub\n\nx\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_quiet_success(&out);
    assert_eq!(work.queue_list()[0]["subject"], "sub");
}

#[test]
fn exit_codes_follow_sysexits() {
    let work = Workdir::new();
    let message = "From: a@x.test\nSubject: s\n\nbody\n";
    assert_fails(&sendmail(&work, &["-k", "b@y.test"], message), 64, "-k");
    assert_fails(&sendmail(&work, &["-f"], message), 64, "-f");
    assert_fails(&sendmail(&work, &["-bs"], message), 64, "-bs");
    assert_fails(&sendmail(&work, &[], message), 65, "no recipients");
    assert_fails(&sendmail(&work, &["-t"], message), 65, "no recipients");
    assert_fails(
        &sendmail(&work, &["-t"], "From: a@x.test\nTo: not an address\n\nx\n"),
        65,
        "To",
    );
    assert_fails(
        &sendmail(&work, &["bad@@x.test"], message),
        65,
        "bad@@x.test",
    );
    assert_fails(
        &sendmail(
            &work,
            &["-t"],
            "From: a@x.test\nTo: (unclosed comment\n\nx\n",
        ),
        65,
        "unbalanced",
    );
    // Nothing was queued by any of these.
    assert_eq!(work.queue_list(), serde_json::json!([]));

    work.write(
        "outbox.toml",
        "database = \"sqlite:///nonexistent/dir/outbox.db\"\n",
    );
    assert_fails(
        &sendmail(&work, &["b@y.test"], message),
        75,
        "queue unavailable",
    );
}

/// Debian cron's header block for a job of root's without MAILTO (do_command.c), with LF
/// line ends as cron writes them.
const CRON_HEADERS: &str = "From: root (Cron Daemon)\n\
    To: root\n\
    Subject: Cron <root@buildhost> /usr/local/bin/nightly --quiet\n\
    MIME-Version: 1.0\n\
    Content-Type: text/plain; charset=UTF-8\n\
    Content-Transfer-Encoding: 8bit\n\
    X-Cron-Env: <SHELL=/bin/sh>\n\
    X-Cron-Env: <HOME=/root>\n\
    X-Cron-Env: <PATH=/usr/bin:/bin>\n\
    X-Cron-Env: <LOGNAME=root>\n\
    \n";

/// Debian cron's exact argv (MAILARGS "%s -FCronDaemon -i -B8BITMIME -oem %s").
const CRON_ARGV: &[&str] = &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"];

#[test]
fn cron_exact_invocation_is_queued_with_root_qualified() {
    let work = Workdir::new();
    work.write("outbox.toml", "[sendmail]\ndomain = \"cron.example\"\n");
    let body = "backup done: 3 files\n.\nstill output after a lone dot (-i)\n";
    let out = sendmail(&work, CRON_ARGV, format!("{CRON_HEADERS}{body}"));
    assert_quiet_success(&out);
    let received = work.deliver_all();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].envelope.rcpt_to, ["root@cron.example"]);
    assert_eq!(received[0].envelope.mail_from, "root@cron.example");
    let text = text_of(&received[0].data);
    let expected_headers = "From: root@cron.example (Cron Daemon)\r\n\
        To: root@cron.example\r\n\
        Subject: Cron <root@buildhost> /usr/local/bin/nightly --quiet\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=UTF-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        X-Cron-Env: <SHELL=/bin/sh>\r\n\
        X-Cron-Env: <HOME=/root>\r\n\
        X-Cron-Env: <PATH=/usr/bin:/bin>\r\n\
        X-Cron-Env: <LOGNAME=root>\r\n\r\n";
    assert!(
        text.ends_with(&format!("{expected_headers}{}", body.replace('\n', "\r\n"))),
        "{text}"
    );
    assert!(text.contains("\r\nMessage-ID: <"), "{text}");
    assert!(
        !text.contains("CronDaemon"),
        "-F is for messages without From: {text}"
    );
}

#[test]
fn cron_without_a_from_header_gets_the_f_name() {
    let work = Workdir::new();
    work.write("outbox.toml", "[sendmail]\ndomain = \"cron.example\"\n");
    let headers = CRON_HEADERS.replace("From: root (Cron Daemon)\n", "");
    let out = sendmail(&work, CRON_ARGV, format!("{headers}job output\n"));
    assert_quiet_success(&out);
    let received = work.deliver_all();
    let me = format!("{}@cron.example", user());
    assert_eq!(received[0].envelope.mail_from, me);
    let text = text_of(&received[0].data);
    assert!(
        text.starts_with(&format!("From: CronDaemon <{me}>\r\n")),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\njob output\r\n"), "{text}");
}

#[test]
fn unqualified_addresses_are_completed_in_envelope_and_headers() {
    let work = Workdir::new();
    work.write("outbox.toml", "[sendmail]\ndomain = \"h.example\"\n");
    let out = sendmail(
        &work,
        &["-t", "-i", "-f", "www-data", "extra"],
        "From: \"Web Site\" <www-data>\n\
         Sender: www-data (the web server)\n\
         Reply-To: help\n\
         To: ann, \"Lee, Bob\" <bob>,\n  carl@elsewhere.example (Carl)\n\
         Cc: Team: dan (ops);\n\
         Bcc: eve\n\
         Subject: qualified\n\nbody\n",
    );
    assert_quiet_success(&out);
    let received = work.deliver_all();
    assert_eq!(received[0].envelope.mail_from, "www-data@h.example");
    assert_eq!(
        all_recipients(&received),
        [
            "ann@h.example",
            "bob@h.example",
            "carl@elsewhere.example",
            "dan@h.example",
            "eve@h.example",
            "extra@h.example"
        ]
    );
    let text = text_of(&received[0].data);
    for header in [
        "From: \"Web Site\" <www-data@h.example>\r\n",
        "Sender: www-data@h.example (the web server)\r\n",
        "Reply-To: help@h.example\r\n",
        "To: ann@h.example, \"Lee, Bob\" <bob@h.example>,\r\n  carl@elsewhere.example (Carl)\r\n",
        "Cc: Team: dan@h.example (ops);\r\n",
    ] {
        assert!(text.contains(header), "{header:?} in {text}");
    }
    assert!(!text.contains("eve"), "Bcc removed: {text}");
}

#[test]
fn the_default_domain_is_the_host_name() {
    let work = Workdir::new();
    let out = sendmail(&work, &["-i", "root"], "Subject: plain\n\nhello\n");
    assert_quiet_success(&out);
    let received = work.deliver_all();
    let host = hostname();
    assert_eq!(received[0].envelope.rcpt_to, [format!("root@{host}")]);
    assert_eq!(received[0].envelope.mail_from, format!("{}@{host}", user()));
    let out = sendmail(&work, &["-t"], "From: a@x.test\nTo: root\n\nx\n");
    assert_quiet_success(&out);
    work.write("outbox.toml", "[sendmail]\ndomain = \"not a domain\"\n");
    assert_fails(&sendmail(&work, &["root"], "x\n"), 75, "sendmail.domain");
}

/// PHP's mail() through `sendmail -t -i` with a 2 000-character line: RFC 5322 §2.1.1 allows
/// 998 octets a line and strict servers refuse more, so what is queued must not have such a
/// line, and the text must come out exact after decoding (the queue re-encodes the part).
#[test]
fn php_mail_with_a_2000_character_line_is_queued_deliverable() {
    let work = Workdir::new();
    let long = "a".repeat(2000);
    let out = sendmail(
        &work,
        &["-t", "-i"],
        format!(
            "To: dev@y.test\nSubject: php long line\nFrom: Web <www-data>\n\n{long}\nsecond line\n"
        ),
    );
    assert_quiet_success(&out);
    let received = work.deliver_all();
    assert_eq!(received.len(), 1);
    let data = &received[0].data;
    let longest = data.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap();
    assert!(
        longest <= 1000,
        "a line of {longest} octets (with CRLF) was queued"
    );
    let message = mail_parser::MessageParser::default()
        .parse(data.as_slice())
        .expect("parsable message");
    let body = message.body_text(0).expect("a text body");
    assert_eq!(body.replace("\r\n", "\n"), format!("{long}\nsecond line\n"));
}
