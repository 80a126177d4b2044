//! `outbox sendmail` with the input Postfix's sendmail copes with: a leading mbox `From `
//! line, headers not followed by a blank line, the flags every mail program passes, `--help`
//! and unknown flags (64), and messages over the size limit (65, read with a bound).

mod mail_support;
mod sendmail_support;

use std::io::Write;
use std::process::Stdio;

use mail_support::{Workdir, stderr, stdout};
use sendmail_support::{assert_fails, assert_quiet_success, link_once, sendmail, text_of};

#[test]
fn a_leading_mbox_from_line_is_dropped() {
    let work = Workdir::new();
    let out = sendmail(
        &work,
        &["-t", "-i"],
        "From someone@x.test Mon Nov 30 03:26:16 2026\n\
         From: someone@x.test\nTo: a@y.test\nSubject: mbox\n\nFrom here on, the body\n",
    );
    assert_quiet_success(&out);
    let received = work.deliver_all();
    assert_eq!(received[0].envelope.rcpt_to, ["a@y.test"]);
    assert_eq!(received[0].envelope.mail_from, "someone@x.test");
    let text = text_of(&received[0].data);
    assert!(!text.contains("From someone"), "{text}");
    assert!(
        text.contains("\r\nFrom: someone@x.test\r\nTo: a@y.test\r\nSubject: mbox\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\nFrom here on, the body\r\n"),
        "{text}"
    );
}

#[test]
fn a_body_without_a_blank_line_starts_at_the_first_non_header_line() {
    let work = Workdir::new();
    let out = sendmail(
        &work,
        &["-t", "-i"],
        "From: a@x.test\nTo: b@y.test\nSubject: no blank line\nThis is the body: it says so.\nTo: not@a-recipient.test\n",
    );
    assert_quiet_success(&out);
    let received = work.deliver_all();
    assert_eq!(received[0].envelope.rcpt_to, ["b@y.test"]);
    let text = text_of(&received[0].data);
    assert!(
        text.ends_with(
            "Subject: no blank line\r\n\r\nThis is the body: it says so.\r\nTo: not@a-recipient.test\r\n"
        ),
        "{text}"
    );
}

#[test]
fn the_flags_mail_programs_pass_are_accepted() {
    let work = Workdir::new();
    let message = "From: a@x.test\nTo: b@y.test\nSubject: flags\n\nx\n";
    for argv in [
        // neomutt ($sendmail "/usr/sbin/sendmail -oem -oi", $use_8bitmime, DSN, envelope from)
        &[
            "-oem",
            "-oi",
            "-B8BITMIME",
            "-N",
            "failure,delay",
            "-R",
            "hdrs",
            "-V",
            "envid1",
            "-f",
            "a@x.test",
            "--",
            "b@y.test",
        ][..],
        // s-nail, mailutils, PHP, git send-email
        &["-i", "-odi", "-Am", "--", "b@y.test"],
        &["-oi", "-t", "-odb"],
        &["-t", "-i", "-fa@x.test"],
        &[
            "-i", "-v", "-U", "-m", "-n", "-G", "-Ac", "-XV", "-L", "tag", "-O", "x=y", "-h", "30",
            "b@y.test",
        ],
        &["-o", "i", "-o", "x", "value", "-t"],
    ] {
        let out = sendmail(&work, argv, message);
        assert_quiet_success(&out);
    }
    let received = work.deliver_all();
    assert_eq!(received.len(), 6);
    assert!(received.iter().all(|m| m.envelope.rcpt_to == ["b@y.test"]));
}

#[test]
fn help_and_unknown_flags_are_usage_errors_that_say_why() {
    let work = Workdir::new();
    let message = "From: a@x.test\nSubject: s\n\nbody\n";
    for (argv, needle) in [
        (&["--help"][..], "sendmail has no long options"),
        (&["--version"], "sendmail has no long options"),
        (&["-k", "b@y.test"], "invalid option -k"),
        (&["-t", "-f"], "option -f requires an argument"),
        (&["-bp"], "-bp is not supported"),
        (&["-q"], "-q is not supported"),
    ] {
        let out = sendmail(&work, argv, message);
        assert_fails(&out, 64, needle);
        assert!(stderr(&out).contains("usage: sendmail"), "{}", stderr(&out));
    }
    // The subcommand answers the same way (clap must not take --help for itself).
    let out = work.run(&["sendmail", "--help"]);
    assert_fails(&out, 64, "sendmail has no long options");
    assert_eq!(work.queue_list(), serde_json::json!([]));
}

#[test]
fn a_message_over_the_size_limit_is_refused_naming_the_limit() {
    let work = Workdir::new();
    work.write("outbox.toml", "[delivery]\nmax_message_size = \"2kB\"\n");
    let big = format!("From: a@x.test\nTo: b@y.test\n\n{}\n", "x".repeat(3000));
    let out = sendmail(&work, &["-t", "-i"], &big);
    assert_fails(&out, 65, "over the size limit of 2 KB (2000 bytes)");
    let err = stderr(&out);
    assert!(
        err.contains("max_message_size") && !err.contains("--now"),
        "{err}"
    );
    assert!(!err.contains(" 0 MB"), "{err}");
    // Fits as read, over the limit once Date and Message-ID are added: the same refusal.
    let edge = format!("From: a@x.test\nTo: b@y.test\n\n{}\n", "y".repeat(1900));
    assert_fails(&sendmail(&work, &["-t", "-i"], &edge), 65, "2000 bytes");
    assert_eq!(work.queue_list(), serde_json::json!([]));
}

#[test]
fn stdin_is_read_with_a_bound() {
    let work = Workdir::new();
    work.write("outbox.toml", "[delivery]\nmax_message_size = \"1MB\"\n");
    let mut child = work
        .command_for(&link_once(&work))
        .args(["-i", "b@y.test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sendmail");
    let mut stdin = child.stdin.take().unwrap();
    // 256 MB offered, one line without end; sendmail must stop after about 1 MB and exit,
    // so the writer meets a closed pipe long before the end.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'z'; 1 << 20];
        let mut written = 0usize;
        for _ in 0..256 {
            if stdin.write_all(&chunk).is_err() {
                return (written, true);
            }
            written += chunk.len();
        }
        (written, false)
    });
    let out = child.wait_with_output().expect("sendmail output");
    let (written, broken) = writer.join().unwrap();
    assert_fails(&out, 65, "1 MB (1000000 bytes)");
    assert!(
        broken,
        "sendmail read all {written} bytes instead of stopping"
    );
    assert!(written < 64 << 20, "{written} bytes accepted by the pipe");
    assert_eq!(stdout(&out), "");
}

#[test]
fn no_flag_or_header_chooses_the_relay_or_the_configuration() {
    let work = Workdir::new();
    work.write("outbox.toml", "[sendmail]\ndomain = \"real.example\"\n");
    // Postfix's -C names a config file and -O/-o set options; here they are read and
    // ignored: neither this file nor a `program:` relay may come from the command line.
    let marker = work.path().join("ran");
    work.write(
        "evil.toml",
        format!(
            "database = \"sqlite://evil.db\"\n[sendmail]\ndomain = \"evil.example\"\n\
             [delivery]\nrelay = \"program:/usr/bin/touch {}\"\n",
            marker.display()
        ),
    );
    let out = sendmail(
        &work,
        &[
            "-C",
            "evil.toml",
            "-O",
            &format!("relay=program:/usr/bin/touch {}", marker.display()),
            "-odi",
            "-i",
            "root",
        ],
        format!(
            "X-Outbox-Relay: program:/usr/bin/touch {0}\nRelay: program:/usr/bin/touch {0}\n\
             Subject: relay?\n\nbody\n",
            marker.display()
        ),
    );
    assert_quiet_success(&out);
    assert!(!work.path().join("evil.db").exists(), "-C was read");
    // Delivered through the relay the delivering process is configured with, to root at
    // the real domain.
    let received = work.deliver_all();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].envelope.rcpt_to, ["root@real.example"]);
    assert!(!marker.exists(), "a program relay ran");
}

#[test]
fn a_header_line_that_cannot_be_folded_is_refused_not_queued() {
    let work = Workdir::new();
    let word = "x".repeat(1200);
    let out = sendmail(
        &work,
        &["-t", "-i"],
        format!("From: a@x.test\nTo: b@y.test\nX-Token: {word}\n\nbody\n"),
    );
    assert_fails(&out, 65, "sendmail: message refused");
    assert_eq!(work.queue_list(), serde_json::json!([]));
}
