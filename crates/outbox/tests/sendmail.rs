//! `outbox sendmail`, called the way cron, PHP, git send-email and old scripts call
//! /usr/sbin/sendmail: through a symlink named `sendmail` in a temp dir, message on stdin.
//! What was queued is then delivered into an in-process server to check the exact bytes.

mod mail_support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use mail_support::{Workdir, stderr, stdout};
use outbox_smtp::server::ReceivedMessage;

fn sendmail(work: &Workdir, args: &[&str], input: &str) -> Output {
    let program = link_once(work);
    let mut child = work
        .command_for(&program)
        .args(args)
        .env("USER", "cronuser")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sendmail");
    // A sendmail that stops reading at a lone "." may close stdin early: ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().expect("sendmail output")
}

/// A `sendmail` symlink to the binary in the work dir, made on first use.
fn link_once(work: &Workdir) -> PathBuf {
    let path = work.path().join("sendmail");
    if !path.exists() {
        std::os::unix::fs::symlink(mail_support::binary(), &path).expect("symlink");
    }
    path
}

fn assert_quiet_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    assert_eq!(stdout(out), "");
    assert_eq!(stderr(out), "");
}

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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
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
        format!("cronuser@{}", hostname())
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
        text.contains(&format!("From: cronuser@{}\r\n", hostname())),
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

fn assert_fails(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    assert_eq!(stdout(out), "");
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
        &sendmail(
            &work,
            &["b@y.test"],
            "From: a@x.test\nthis is not a header\n\nx\n",
        ),
        65,
        "line 2",
    );
    assert_fails(
        &sendmail(&work, &["not-an-address"], message),
        65,
        "not-an-address",
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
