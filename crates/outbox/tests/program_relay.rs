//! A `program:` relay stored on a message, as anyone who can write the queue database can
//! store one (a local user given write access for `outbox sendmail`): the real `outbox
//! deliver` runs it only with `[delivery] allow_program_relay = true`; otherwise the
//! recipient fails with a reply naming the key and nothing is started. The configured
//! relay is the operator's and runs either way; `outbox send` refuses to queue such a
//! relay up front.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use outbox_queue::{ListFilter, NewMessage, RecipientState};
use outbox_testkit::{TestStore, message};

/// Bounds every run, so a bug fails the test instead of hanging it.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the binary with a clean environment, the test's database and `env`.
async fn outbox(db: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_outbox"));
    command
        .args(args)
        .env_remove("OUTBOX_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("OUTBOX_DELIVERY_ALLOW_PROGRAM_RELAY")
        .env_remove("OUTBOX_DELIVERY_RELAY")
        .env("OUTBOX_DATABASE", db)
        // A program that is run once is enough; no retries to wait for.
        .env("OUTBOX_DELIVERY_MAX_ATTEMPTS", "1")
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .expect("outbox finished in time")
        .expect("outbox ran")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A message whose stored relay runs `touch MARKER`, inserted through the store as a
/// database writer would.
fn touching(marker: &Path) -> NewMessage {
    {
        let mut new_message = message("stored program relay", &["rcpt@example.net"]);
        new_message.relay = Some(format!("program:/usr/bin/touch {}", marker.display()));
        new_message
    }
}

#[tokio::test]
async fn a_program_relay_stored_on_a_message_is_not_run_by_default() {
    let ts = TestStore::sqlite(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let id = ts.store.enqueue(touching(&marker)).await.unwrap().id;

    let out = outbox(&ts.url, &[], &["deliver", "--until-empty"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!marker.exists(), "the stored program was run");
    let detail = ts.store.detail(&id).await.unwrap();
    let recipient = &detail.recipients[0];
    assert_eq!(recipient.state, RecipientState::Failed, "{detail:?}");
    assert_eq!(
        recipient.last_reply.as_deref(),
        Some("program relays on a message are disabled ([delivery] allow_program_relay)")
    );

    // Spelled another way, it is still a program and still refused.
    let marker2 = dir.path().join("MARKER2");
    let id2 = ts
        .store
        .enqueue({
            let mut new_message = message("shouting", &["rcpt@example.net"]);
            new_message.relay = Some(format!("  PROGRAM:/usr/bin/touch {}", marker2.display()));
            new_message
        })
        .await
        .unwrap()
        .id;
    let out = outbox(&ts.url, &[], &["deliver", "--until-empty"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!marker2.exists(), "the stored program was run");
    let detail = ts.store.detail(&id2).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Failed);
}

#[tokio::test]
async fn with_allow_program_relay_a_stored_program_relay_runs() {
    let ts = TestStore::sqlite(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let id = ts.store.enqueue(touching(&marker)).await.unwrap().id;

    let allow = [("OUTBOX_DELIVERY_ALLOW_PROGRAM_RELAY", "true")];
    let out = outbox(&ts.url, &allow, &["deliver", "--until-empty"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker.exists(), "the stored program did not run");
    let detail = ts.store.detail(&id).await.unwrap();
    assert_eq!(
        detail.recipients[0].state,
        RecipientState::Sent,
        "{detail:?}"
    );
}

#[tokio::test]
async fn the_configured_program_relay_runs_without_the_key() {
    let ts = TestStore::sqlite(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let id = ts
        .store
        .enqueue(message("no relay of its own", &["rcpt@example.net"]))
        .await
        .unwrap()
        .id;

    let relay = format!("program:/usr/bin/touch {}", marker.display());
    let env = [("OUTBOX_DELIVERY_RELAY", relay.as_str())];
    let out = outbox(&ts.url, &env, &["deliver", "--until-empty"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker.exists(), "the configured program did not run");
    let detail = ts.store.detail(&id).await.unwrap();
    assert_eq!(
        detail.recipients[0].state,
        RecipientState::Sent,
        "{detail:?}"
    );
}

#[tokio::test]
async fn send_refuses_to_queue_a_program_relay_without_the_key() {
    let ts = TestStore::sqlite(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let relay = format!("program:/usr/bin/touch {}", marker.display());
    let args = [
        "send",
        "--from",
        "a@x.test",
        "--to",
        "b@y.test",
        "--subject",
        "s",
        "--body",
        "b",
        "--relay",
        relay.as_str(),
    ];

    let out = outbox(&ts.url, &[], &args).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("relay:") && err.contains("[delivery] allow_program_relay"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let listed = ts.store.list(ListFilter::default()).await.unwrap();
    assert!(listed.items.is_empty(), "stored: {listed:?}");
    assert!(!marker.exists());

    // With the key the message is queued (and delivered later by the engine).
    let allow = [("OUTBOX_DELIVERY_ALLOW_PROGRAM_RELAY", "true")];
    let out = outbox(&ts.url, &allow, &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = ts.store.list(ListFilter::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(!marker.exists(), "queuing runs nothing");
}
