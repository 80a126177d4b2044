//! `outbox smtp` against Postfix's smtp-sink, started by the test on a free loopback port.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sink() -> outbox_testkit::peers::SmtpSink {
    outbox_testkit::peers::smtp_sink(&[])
}

/// Runs `outbox smtp ARGS` in a temp dir with `input` on stdin.
fn outbox_smtp(args: &[&str], input: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outbox"))
        .arg("smtp")
        .args(args)
        .current_dir(dir.path())
        .env_remove("OUTBOX_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn prints_greeting_and_every_reply_until_quit() {
    let sink = sink();
    let server = format!("127.0.0.1:{}", sink.port);
    let output = outbox_smtp(
        &[&server],
        "EHLO client.test\nMAIL FROM:<a@x.test>\nRCPT TO:<b@y.test>\nDATA\nSubject: hi\n\n..dot\n.\nQUIT\nNOOP\n",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("220 "), "{stdout}");
    // The EHLO reply in full: several 250- lines, then a final 250 line.
    assert!(lines[1].starts_with("250-"), "{stdout}");
    assert!(lines.iter().any(|l| l.contains("PIPELINING")), "{stdout}");
    let finals: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .collect();
    // greeting, EHLO, MAIL, RCPT, DATA (354), end of data, QUIT; nothing after QUIT.
    assert_eq!(finals.len(), 7, "{stdout}");
    assert!(finals[4].starts_with("354"), "{stdout}");
    assert!(finals[5].starts_with("250"), "{stdout}");
    assert!(finals[6].starts_with("221"), "{stdout}");
}

#[test]
fn end_of_input_also_exits_zero() {
    let sink = sink();
    let output = outbox_smtp(&[&format!("smtp://127.0.0.1:{}", sink.port)], "NOOP\n");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.lines().nth(1).unwrap().starts_with("250"),
        "{stdout}"
    );
}

#[test]
fn credentials_over_plaintext_are_refused_in_one_line() {
    let sink = sink();
    let output = outbox_smtp(
        &[
            &format!("127.0.0.1:{}", sink.port),
            "--user",
            "u",
            "--password",
            "secret",
        ],
        "QUIT\n",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("without TLS"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}

#[test]
fn connection_errors_are_one_clear_line() {
    let port = outbox_testkit::free_tcp_port();
    let output = outbox_smtp(&[&format!("127.0.0.1:{port}")], "QUIT\n");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{stderr}"
    );

    let output = outbox_smtp(&["smtp://host?tls=yes"], "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("unknown parameter \"tls\""), "{stderr}");
}
