//! What the command line says when something is wrong, run as the real binary: one line
//! on stderr, each cause once, sizes in units that make sense, a bad `[tls] ca_file` found
//! before any delivery, and `queue list` in aligned columns.

mod mail_support;

use std::process::{Output, Stdio};

use mail_support::{Workdir, stderr, stdout};

/// The single line a failing command writes to stderr.
fn one_error_line(what: &str, out: &Output) -> String {
    assert!(!out.status.success(), "{what} must fail: {}", stdout(out));
    let text = stderr(out);
    assert_eq!(
        text.lines().count(),
        1,
        "{what}: one line on stderr: {text:?}"
    );
    text.trim_end().to_string()
}

fn send_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "send",
        "--from",
        "app@example.com",
        "--to",
        "rcpt@example.net",
        "--subject",
        "subj",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_missing_database_directory_is_named_once() {
    let work = Workdir::new();
    let db = work.path().join("no-such-dir/outbox.db");
    let url = format!("sqlite://{}", db.display());
    let line = one_error_line("queue list", &work.run(&["--db", &url, "queue", "list"]));
    assert_eq!(
        line,
        format!(
            "outbox: cannot open SQLite database {}: directory {} does not exist",
            db.display(),
            work.path().join("no-such-dir").display()
        )
    );
}

#[test]
fn a_sqlite_error_is_shown_once() {
    let work = Workdir::new();
    work.write("outbox.db", vec![b'x'; 4096]);
    let line = one_error_line("queue list", &work.run(&["queue", "list"]));
    assert_eq!(line.matches("file is not a database").count(), 1, "{line}");
}

#[test]
fn small_limits_are_shown_in_small_units() {
    let work = Workdir::new();
    let body = "x".repeat(3_000);
    let mut send = work.outbox(&send_args(&["--body", &body]));
    send.env("OUTBOX_DELIVERY_MAX_MESSAGE_SIZE", "1KB");
    let line = one_error_line("send", &send.output().unwrap());
    assert!(line.starts_with("outbox: message is 3."), "{line}");
    assert!(
        line.ends_with("KB, over the 1 KB queue limit (use --now to send it without queueing)"),
        "{line}"
    );
    // sendmail has no --now: its refusal must not suggest one.
    let mut sendmail = work.outbox(&["sendmail", "rcpt@example.net"]);
    sendmail
        .env("OUTBOX_DELIVERY_MAX_MESSAGE_SIZE", "1KB")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = sendmail.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = write!(stdin, "From: app@example.com\nSubject: big\n\n{body}\n");
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "sendmail must refuse it");
    assert!(!stderr(&out).contains("--now"), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 KB"), "{}", stderr(&out));
}

#[test]
fn a_bad_ca_file_stops_delivery_before_any_attempt() {
    let work = Workdir::new();
    let queued = work.run(&send_args(&["--body", "hi"]));
    assert!(queued.status.success(), "send: {}", stderr(&queued));
    let id = stdout(&queued).trim().to_string();
    let missing = work.path().join("missing-ca.pem");
    let garbage = work.write("garbage-ca.pem", "not a certificate\n");
    for (file, reason) in [
        (&missing, "cannot read CA file"),
        (&garbage, "no PEM certificate found"),
    ] {
        for args in [
            vec!["deliver", "--until-empty"],
            vec!["serve"],
            send_args(&["--body", "hi", "--now"]),
        ] {
            let mut command = work.outbox(&args);
            command
                .env("OUTBOX_TLS_CA_FILE", file)
                .env("OUTBOX_DELIVERY_RELAY", "smtp://127.0.0.1:9?starttls=off")
                .env("OUTBOX_HTTP_LISTEN", "127.0.0.1:0");
            let line = one_error_line(&format!("{args:?}"), &command.output().unwrap());
            assert!(line.contains("tls.ca_file"), "{args:?}: {line}");
            assert!(
                line.contains(&file.display().to_string()),
                "{args:?}: {line}"
            );
            assert!(line.contains(reason), "{args:?}: {line}");
        }
    }
    // Nothing was attempted: the queued recipient kept all its attempts.
    let status = work.status(&id);
    assert_eq!(status["recipients"][0]["attempts"], 0, "{status}");
    assert_eq!(status["recipients"][0]["state"], "queued", "{status}");
}

#[test]
fn queue_list_columns_line_up() {
    let work = Workdir::new();
    for priority in ["low", "medium", "high"] {
        let out = work.run(&send_args(&["--body", "hi", "--priority", priority]));
        assert!(out.status.success(), "send: {}", stderr(&out));
    }
    let out = work.run(&["queue", "list"]);
    assert!(out.status.success(), "queue list: {}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let subject_at = lines[0].find("SUBJECT").expect("header");
    let rcpts_end = lines[0].find("RCPTS").expect("header") + "RCPTS".len();
    for line in &lines[1..] {
        assert_eq!(line.find("subj"), Some(subject_at), "{table}");
        assert_eq!(&line[rcpts_end - 1..rcpts_end], "1", "{table}");
    }
    // --json is unchanged: an array of objects.
    let json = work.queue_list();
    assert_eq!(json.as_array().map(Vec::len), Some(3), "{json}");
}
