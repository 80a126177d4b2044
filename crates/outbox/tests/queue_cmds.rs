//! `outbox send` (queued), `status` and `queue list|show|rm|retry|purge`, run as the real
//! binary against an SQLite queue in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use outbox_queue::{Delivery, Outcome, RouteFilter, RouteKey, StoredSuspension, open_store};
use serde_json::Value;
use time::OffsetDateTime;

/// A temp dir with its own queue database; every command runs there with `--db`.
struct Queue {
    dir: tempfile::TempDir,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn db_path(&self) -> PathBuf {
        self.dir.path().join("queue.db")
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }

    /// Runs `outbox --db URL ARGS...` in the temp dir, with no config from outside.
    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_outbox"));
        command
            .arg("--db")
            .arg(self.url())
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        clear_env(&mut command);
        command.output().expect("run outbox")
    }

    /// Runs a command that must succeed silently on stderr; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "outbox {args:?} failed: {stderr}");
        assert_eq!(stderr, "", "outbox {args:?} wrote to stderr");
        String::from_utf8(output.stdout).expect("UTF-8 stdout")
    }

    /// Runs a command that must fail with exactly one line on stderr; returns that line.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(!output.status.success(), "outbox {args:?} succeeded");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 stderr");
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
        stderr.trim_end().to_string()
    }

    /// Runs a command clap must refuse (a bad flag value): non-zero, the value named on
    /// the first line of stderr.
    fn usage_error(&self, args: &[&str], value: &str) {
        let output = self.run(args);
        assert!(!output.status.success(), "outbox {args:?} succeeded");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 stderr");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(value), "{stderr}");
    }

    /// Queues a message and returns its id.
    fn send(&self, subject: &str, to: &str) -> String {
        let out = self.ok(&[
            "send",
            "--from",
            "app@example.com",
            "--to",
            to,
            "--subject",
            subject,
            "--body",
            "hello",
        ]);
        let id = out.trim_end().to_string();
        assert_eq!(
            out,
            format!("{id}\n"),
            "send prints the id alone on one line"
        );
        assert_eq!(id.len(), 26, "a ULID: {id}");
        id
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }
}

fn clear_env(command: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("OUTBOX_") {
            command.env_remove(key);
        }
    }
    command.env_remove("RUST_LOG");
}

#[test]
fn send_prints_an_id_and_status_says_queued() {
    let q = Queue::new();
    let id = q.send("Hello", "bob@example.net, ann@example.org");
    assert_eq!(q.ok(&["status", &id]), "queued\n");
    let detail = q.json(&["status", &id, "--json"]);
    assert_eq!(
        detail,
        serde_json::json!({
            "id": id,
            "status": "queued",
            "recipients": [
                {"address": "bob@example.net", "state": "queued", "attempts": 0, "last_reply": null},
                {"address": "ann@example.org", "state": "queued", "attempts": 0, "last_reply": null},
            ]
        })
    );
    assert_eq!(
        q.json(&["--json", "status", &id]),
        detail,
        "--json is global"
    );
}

#[test]
fn a_missing_sqlite_file_is_created_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox"));
    command
        .args(["--db", "sqlite://rel.db", "queue", "list", "--json"])
        .current_dir(dir.path());
    clear_env(&mut command);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "[]\n");
    assert!(Path::new(&dir.path().join("rel.db")).exists());
}

#[test]
fn queue_list_json_and_table_with_filters_and_paging() {
    let q = Queue::new();
    let first = q.send("First report", "a@one.test");
    let second = q.send("Second", "b@two.test");
    let third = q.send("Third report", "c@one.test");

    let list = q.json(&["queue", "list", "--json"]);
    let items = list.as_array().expect("an array");
    let ids: Vec<&str> = items.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [third.as_str(), second.as_str(), first.as_str()],
        "newest first"
    );
    let item = &items[2];
    assert_eq!(item["status"], "queued");
    assert_eq!(item["subject"], "First report");
    assert_eq!(item["priority"], "medium");
    assert_eq!(item["recipients"], 1);
    assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(item["send_at"], item["created_at"]);

    let by_domain = q.json(&["queue", "list", "--domain", "one.test", "--json"]);
    assert_eq!(by_domain.as_array().unwrap().len(), 2);
    let errors = q.json(&["queue", "list", "--status", "error", "--json"]);
    assert_eq!(errors, serde_json::json!([]));

    let table = q.ok(&["queue", "list", "--limit", "2"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID "), "{table}");
    assert!(
        lines[1].starts_with(&third) && lines[1].contains("Third report"),
        "{table}"
    );
    assert_eq!(lines[3], format!("more: --cursor {second}"));
    let rest = q.json(&[
        "queue", "list", "--limit", "2", "--cursor", &second, "--json",
    ]);
    assert_eq!(rest[0]["id"], first.as_str());
    assert_eq!(rest.as_array().unwrap().len(), 1);

    q.usage_error(&["queue", "list", "--status", "lost"], "lost");
}

#[test]
fn queue_list_shows_the_messages_waiting_for_a_suspended_destination() {
    let q = Queue::new();
    let waiting = q.send("Waits", "a@a.test, x@other.test");
    let also = q.send("Also waits", "b@B.test");
    let free = q.send("Free", "c@other.test");
    let sent = q.send("Sent already", "d@a.test");
    // Whole milliseconds, as stored.
    let until = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let until = until
        .replace_nanosecond(until.millisecond() as u32 * 1_000_000)
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = open_store(&q.url()).await.unwrap();
        // As an engine in another process stores it.
        store
            .suspend(StoredSuspension {
                destination: "mx mx1.shared.test".into(),
                reason: "mx mx1.shared.test suspended after: 421 4.7.0 mx1 too busy".into(),
                until,
                times: 1,
                domains: vec!["a.test".into(), "b.test".into()],
            })
            .await
            .unwrap();
        // One that has ended is not shown.
        store
            .suspend(StoredSuspension {
                destination: "domain other.test".into(),
                reason: "domain other.test suspended after: 421 old".into(),
                until: OffsetDateTime::now_utc() - Duration::from_secs(1),
                times: 1,
                domains: vec!["other.test".into()],
            })
            .await
            .unwrap();
        // The a.test recipient of `sent` was delivered: it waits for nothing.
        let now = OffsetDateTime::now_utc() + Duration::from_secs(1);
        let route = RouteFilter::Key(RouteKey::Mx("a.test".into()));
        let units = store.claim_route("w", &route, now, 10).await.unwrap();
        let outcomes = units
            .iter()
            .flat_map(|u| u.recipients.iter().map(move |r| (u, r)))
            .map(|(u, r)| Outcome {
                recipient_id: r.id,
                epoch: r.epoch,
                delivery: if u.message_id == sent {
                    Delivery::Sent {
                        reply: "250 ok".into(),
                    }
                } else {
                    Delivery::NotAttempted {
                        reply: "mx mx1.shared.test suspended after: 421 4.7.0 mx1 too busy".into(),
                        next_attempt_at: until,
                    }
                },
                at: now,
                host: None,
                duration: Duration::ZERO,
            })
            .collect();
        store.complete("w", outcomes).await.unwrap();
    });

    let list = q.json(&["queue", "list", "--json"]);
    let items = list.as_array().expect("still an array of messages");
    let by_id = |id: &str| {
        items
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed"))
    };
    let expected = serde_json::json!({
        "destination": "mx mx1.shared.test",
        "until": outbox_queue::rfc3339(until),
        "reason": "mx mx1.shared.test suspended after: 421 4.7.0 mx1 too busy",
    });
    assert_eq!(
        by_id(&waiting)["suspended"],
        expected,
        "a deferred recipient"
    );
    assert_eq!(by_id(&also)["suspended"], expected, "a queued recipient");
    for id in [&free, &sent] {
        let item = by_id(id);
        assert!(item.get("suspended").is_none(), "{item}");
        assert_eq!(item["recipients"], 1, "the usual fields stay: {item}");
    }

    let table = q.ok(&["queue", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "suspended: mx mx1.shared.test until {} (421 4.7.0 mx1 too busy)",
            outbox_queue::rfc3339(until)
        ),
        "{table}"
    );
    assert!(lines[1].starts_with("ID "), "{table}");
    assert!(!table.contains("other.test"), "ended: {table}");
}

#[test]
fn show_rm_retry_and_purge() {
    let q = Queue::new();
    let id = q.send("Status report", "bob@example.net");
    let other = q.send("Other", "ann@example.org");

    let show = q.ok(&["queue", "show", &id]);
    assert!(show.contains(&format!("id:        {id}")), "{show}");
    assert!(show.contains("subject:   Status report"), "{show}");
    assert!(
        show.contains("bob@example.net") && show.contains("queued"),
        "{show}"
    );
    assert!(show.contains("(none yet)"), "{show}");

    // A delivery attempt fails permanently (recorded through the library, as the engine does).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = open_store(&q.url()).await.unwrap();
        let now = OffsetDateTime::now_utc() + Duration::from_secs(1);
        // Only example.net: the other message stays queued.
        let route = RouteFilter::Key(RouteKey::Mx("example.net".into()));
        let units = store
            .claim_route("test-worker", &route, now, 10)
            .await
            .unwrap();
        let outcomes = units
            .iter()
            .flat_map(|u| &u.recipients)
            .map(|r| Outcome {
                recipient_id: r.id,
                epoch: r.epoch,
                delivery: Delivery::Failed {
                    reply: "550 5.1.1 no such user".into(),
                },
                at: now,
                host: Some("127.0.0.1:25".into()),
                duration: Duration::from_millis(3),
            })
            .collect();
        store.complete("test-worker", outcomes).await.unwrap();
    });
    assert_eq!(q.ok(&["status", &id]), "error\n");
    let shown = q.json(&["queue", "show", &id, "--json"]);
    assert_eq!(
        shown["recipients"][0]["last_reply"],
        "550 5.1.1 no such user"
    );
    assert_eq!(shown["attempts"][0]["code"], 550);
    assert_eq!(shown["attempts"][0]["host"], "127.0.0.1:25");

    assert_eq!(
        q.ok(&["queue", "retry", &id]),
        format!("{id} retried (1 recipient)\n")
    );
    assert_eq!(q.ok(&["status", &id]), "queued\n");
    assert_eq!(
        q.ok(&["queue", "rm", &id, &other]),
        format!("{id} removed (1 recipient)\n{other} removed (1 recipient)\n")
    );
    assert_eq!(q.ok(&["status", &id]), "error\n");
    let detail = q.json(&["status", &id, "--json"]);
    assert_eq!(detail["recipients"][0]["state"], "removed");

    assert_eq!(
        q.ok(&["queue", "purge", "--older-than", "30d"]),
        "purged 0 messages\n"
    );
    assert_eq!(
        q.ok(&["queue", "purge", "--older-than", "0s"]),
        "purged 2 messages\n"
    );
    assert_eq!(
        q.fails(&["status", &id]),
        format!("outbox: no message with id {id}")
    );
}

#[test]
fn bad_ids_fail_with_one_line_and_change_nothing() {
    let q = Queue::new();
    let id = q.send("Keep me", "bob@example.net");
    let err = q.fails(&["status", "not-an-id"]);
    assert!(err.contains("\"not-an-id\""), "{err}");
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    assert_eq!(
        q.fails(&["queue", "show", unknown]),
        format!("outbox: no message with id {unknown}")
    );
    // rm checks every id before removing any.
    q.fails(&["queue", "rm", &id, unknown]);
    assert_eq!(q.ok(&["status", &id]), "queued\n");
    q.fails(&["queue", "retry", "bogus"]);
    q.usage_error(&["queue", "purge", "--older-than", "soon"], "soon");
}

#[test]
fn an_oversize_message_is_refused_before_anything_is_stored() {
    let q = Queue::new();
    let body = q.dir.path().join("big.txt");
    let line = "x".repeat(76) + "\n";
    std::fs::write(&body, line.repeat(9_200_000 / line.len() + 1)).unwrap();
    let err = q.fails(&[
        "send",
        "--from",
        "app@example.com",
        "--to",
        "bob@example.net",
        "--subject",
        "big",
        "--body-file",
        body.to_str().unwrap(),
    ]);
    assert!(
        err.ends_with("MB, over the 8 MB queue limit (use --now to send it without queueing)"),
        "{err}"
    );
    assert_eq!(q.ok(&["queue", "list", "--json"]), "[]\n");
}
