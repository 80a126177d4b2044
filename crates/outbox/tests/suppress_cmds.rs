//! `outbox suppress add|rm|list`, and what the list does to `send` (queued, `--list`),
//! `status --json` and `queue show`, run as the real binary against an SQLite queue in a
//! temp dir.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct Queue {
    dir: tempfile::TempDir,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_outbox"));
        command
            .arg("--db")
            .arg(format!(
                "sqlite://{}",
                self.dir.path().join("queue.db").display()
            ))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("OUTBOX_") {
                command.env_remove(key);
            }
        }
        command.env_remove("RUST_LOG");
        command.output().expect("run outbox")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "outbox {args:?} failed: {stderr}");
        assert_eq!(stderr, "", "outbox {args:?} wrote to stderr");
        String::from_utf8(output.stdout).expect("UTF-8 stdout")
    }

    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(!output.status.success(), "outbox {args:?} succeeded");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 stderr");
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
        stderr.trim_end().to_string()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }
}

#[test]
fn add_list_and_rm() {
    let q = Queue::new();
    let out = q.ok(&[
        "suppress",
        "add",
        " Ann@Example.NET ",
        "--reason",
        "unsubscribed",
        "--list",
        "News",
    ]);
    assert!(
        out.starts_with("suppressed ann@example.net for list news (unsubscribed since 20"),
        "{out}"
    );
    q.ok(&["suppress", "add", "bob@example.net"]);
    // Again: idempotent, the first date kept, the reason taken.
    let first = q.json(&["suppress", "list", "--json"]);
    q.ok(&["suppress", "add", "bob@example.net", "--reason", "bounced"]);
    let list = q.json(&["suppress", "list", "--json"]);
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["address"], "ann@example.net");
    assert_eq!(items[0]["list"], "news");
    assert_eq!(items[0]["reason"], "unsubscribed");
    assert_eq!(items[1]["address"], "bob@example.net");
    assert!(items[1].get("list").is_none(), "every list: no list field");
    assert_eq!(items[1]["reason"], "bounced");
    assert_eq!(items[1]["created_at"], first[1]["created_at"]);
    let text = q.ok(&["suppress", "list"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ADDRESS"), "{text}");
    assert!(
        lines[1].contains("ann@example.net") && lines[1].contains("news"),
        "{text}"
    );
    assert!(
        lines[2].contains("bob@example.net") && lines[2].contains(" * "),
        "{text}"
    );
    // Filters and paging.
    let only = q.json(&["suppress", "list", "--json", "--list", ""]);
    assert_eq!(only.as_array().unwrap().len(), 1);
    let page = q.ok(&["suppress", "list", "--limit", "1"]);
    let cursor_line = page.lines().last().unwrap();
    assert!(cursor_line.starts_with("more: --cursor "), "{page}");
    // rm: the scope must match.
    let err = q.fails(&["suppress", "rm", "ann@example.net"]);
    assert_eq!(
        err,
        "outbox: ann@example.net is not suppressed for every list"
    );
    assert_eq!(
        q.ok(&["suppress", "rm", "ANN@example.net", "--list", "news"]),
        "removed ANN@example.net for list news\n"
    );
    q.ok(&["suppress", "rm", "bob@example.net"]);
    assert_eq!(q.ok(&["suppress", "list"]), "no suppressions\n");
}

#[test]
fn bad_input_is_refused_in_one_line() {
    let q = Queue::new();
    let err = q.fails(&["suppress", "add", "nobody"]);
    assert!(err.contains("invalid suppression address"), "{err}");
    let output = q.run(&["suppress", "add", "a@x.test", "--reason", "spam"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown reason \"spam\""), "{stderr}");
    let err = q.fails(&["suppress", "list", "--cursor", "garbage"]);
    assert!(err.contains("cursor"), "{err}");
}

#[test]
fn queued_sends_store_suppressed_recipients_as_suppressed() {
    let q = Queue::new();
    q.ok(&[
        "suppress",
        "add",
        "ann@example.net",
        "--list",
        "weekly",
        "--reason",
        "unsubscribed",
    ]);
    q.ok(&[
        "suppress",
        "add",
        "bob@example.net",
        "--list",
        "app@example.com",
    ]);
    let send = |list: Option<&str>| {
        let mut args = vec![
            "send",
            "--from",
            "App <app@example.com>",
            "--to",
            "ann@example.net, bob@example.net, cat@example.net",
            "--subject",
            "s",
            "--body",
            "b",
        ];
        if let Some(list) = list {
            args.extend(["--list", list]);
        }
        q.ok(&args).trim().to_string()
    };
    // The default list is the From address: bob is suppressed for it.
    let id = send(None);
    let detail = q.json(&["status", &id, "--json"]);
    let states: Vec<&str> = detail["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["queued", "suppressed", "queued"]);
    // --list weekly: ann is.
    let id = send(Some("Weekly"));
    let detail = q.json(&["status", &id, "--json"]);
    assert_eq!(detail["recipients"][0]["state"], "suppressed");
    assert!(
        detail["recipients"][0]["last_reply"]
            .as_str()
            .unwrap()
            .starts_with("suppressed: unsubscribed (list weekly) since 20")
    );
    assert_eq!(detail["recipients"][1]["state"], "queued");
    let show = q.ok(&["queue", "show", &id]);
    assert!(
        show.lines()
            .any(|l| l.contains("ann@example.net") && l.contains("suppressed")),
        "{show}"
    );
    // The spec field `list` does the same.
    let dir = q.dir.path();
    std::fs::write(
        dir.join("spec.json"),
        r#"{"from": "app@example.com", "to": "ann@example.net", "subject": "s", "text": "b", "list": "weekly"}"#,
    )
    .unwrap();
    let id = q.ok(&["send", "--spec", "spec.json"]).trim().to_string();
    assert_eq!(
        q.ok(&["status", &id]),
        "error\n",
        "its only recipient is suppressed"
    );
    // An unknown spec field is still refused.
    std::fs::write(
        dir.join("bad.json"),
        r#"{"from": "app@example.com", "to": "a@x.test", "lists": "weekly"}"#,
    )
    .unwrap();
    let err = q.fails(&["send", "--spec", "bad.json"]);
    assert!(err.contains("lists"), "{err}");
}
