//! One-click unsubscribe headers (RFC 8058) written by the engine per recipient, on both
//! backends: each copy names its own recipient, the list and the message in a signed link;
//! a message that asks for them is never sent without them.

use std::sync::Arc;
use std::time::Duration;

use outbox_mime::EmailSpec;
use outbox_queue::engine::EngineConfig;
use outbox_queue::{Outbox, OutboxError, RecipientState, Store, Unsubscribe, UnsubscribeRequest};
use outbox_testkit::conformance;
use outbox_testkit::relay::{self, Peer};
use outbox_testkit::{TestStore, message};

conformance!(
    each_recipient_gets_its_own_signed_link,
    merge_messages_get_links_after_the_merge,
    without_links_the_message_waits_and_is_not_sent_bare,
    the_facade_refuses_what_it_cannot_write,
);

fn links() -> Arc<Unsubscribe> {
    Arc::new(
        Unsubscribe::new(
            "https://mail.example.com",
            b"a test secret of enough length",
            Some("unsubscribe@example.com"),
        )
        .unwrap(),
    )
}

fn config(unsubscribe: Option<Arc<Unsubscribe>>) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.relay_configured = true;
    config.retry_backoff = vec![Duration::from_millis(50)];
    config.poll_interval = Duration::from_millis(100);
    config.max_attempts = 2;
    config.unsubscribe = unsubscribe;
    config
}

async fn drain(store: &Arc<dyn Store>, peer: &Peer, config: EngineConfig) {
    relay::drain(store, peer.transport(), config).await;
}

/// The `List-Unsubscribe` link's token of a received message, verified.
fn link_of(text: &str) -> UnsubscribeRequest {
    let start = text
        .find("List-Unsubscribe: <https://mail.example.com/u/")
        .unwrap_or_else(|| panic!("no List-Unsubscribe in {text}"));
    let rest = &text[start + "List-Unsubscribe: <https://mail.example.com/u/".len()..];
    let token = &rest[..rest.find('>').unwrap()];
    assert!(
        rest.contains(&format!(
            ",\r\n <mailto:unsubscribe@example.com?subject=unsubscribe%20{token}>\r\n"
        )),
        "{text}"
    );
    links().verify(token).expect("the link verifies")
}

async fn each_recipient_gets_its_own_signed_link(ts: TestStore) {
    let store = ts.store.clone();
    let peer = Peer::start(vec![]).await;
    let mut new = message("news", &["Ann@Example.net", "bob@example.net"]);
    new.data =
        b"From: News <News@Example.com>\r\nSubject: news\r\n\r\nprice #42# today\r\n".to_vec();
    new.list_unsubscribe = true;
    let id = store.enqueue(new).await.unwrap().id;
    let body = store.message_body(&id).await.unwrap();
    assert_eq!(
        body.unsubscribe_list.as_deref(),
        Some("news@example.com"),
        "the list defaults to the header From's address"
    );
    assert!(!body.data.windows(16).any(|w| w == b"List-Unsubscribe"));

    drain(&store, &peer, config(Some(links()))).await;
    let received = peer.sink.messages();
    assert_eq!(received.len(), 2, "one transaction per recipient");
    for message in received {
        let text = String::from_utf8(message.data).unwrap();
        let [rcpt] = message.envelope.rcpt_to.as_slice() else {
            panic!("one recipient per copy: {:?}", message.envelope.rcpt_to);
        };
        let link = link_of(&text);
        assert_eq!(link.address, rcpt.to_ascii_lowercase());
        assert_eq!(link.list, "news@example.com");
        assert_eq!(link.message_id.as_deref(), Some(id.as_str()));
        assert!(
            text.contains(
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nprice #42# today"
            ),
            "headers at the end of the header section, body untouched: {text}"
        );
    }
    let detail = store.detail(&id).await.unwrap();
    assert!(
        detail
            .recipients
            .iter()
            .all(|r| r.state == RecipientState::Sent)
    );
}

async fn merge_messages_get_links_after_the_merge(ts: TestStore) {
    let store = ts.store.clone();
    let peer = Peer::start(vec![]).await;
    let outbox = Outbox::new(store.clone(), peer.transport(), config(Some(links())));
    let spec = EmailSpec::builder()
        .from("app@example.com")
        .to("ann@example.net, bob@example.net")
        .subject("Hello #Name#")
        .text("Dear #Name#\r\n")
        .token("Name", "friend")
        .list("Weekly")
        .list_unsubscribe(true)
        .into_spec();
    let id = outbox.send(&spec).await.unwrap().id;
    drain(&store, &peer, config(Some(links()))).await;
    let received = peer.sink.messages();
    assert_eq!(received.len(), 2);
    for message in received {
        let text = String::from_utf8(message.data).unwrap();
        assert!(text.contains("Subject: Hello friend\r\n"), "{text}");
        let link = link_of(&text);
        assert_eq!(link.address, message.envelope.rcpt_to[0]);
        assert_eq!(link.list, "weekly");
        assert_eq!(link.message_id.as_deref(), Some(id.as_str()));
    }
}

async fn without_links_the_message_waits_and_is_not_sent_bare(ts: TestStore) {
    let store = ts.store.clone();
    let peer = Peer::start(vec![]).await;
    let mut new = message("news", &["ann@example.net"]);
    new.list_unsubscribe = true;
    let id = store.enqueue(new).await.unwrap().id;
    drain(&store, &peer, config(None)).await;
    assert!(peer.sink.messages().is_empty(), "nothing went out bare");
    let detail = store.detail(&id).await.unwrap();
    let recipient = &detail.recipients[0];
    assert_eq!(
        recipient.state,
        RecipientState::Failed,
        "after max_attempts"
    );
    let reply = recipient.last_reply.as_deref().unwrap_or("");
    assert!(reply.contains("[unsubscribe]"), "{reply}");
}

async fn the_facade_refuses_what_it_cannot_write(ts: TestStore) {
    let store = ts.store.clone();
    let peer = Peer::start(vec![]).await;
    let outbox = Outbox::new(store.clone(), peer.transport(), config(None));
    let spec = EmailSpec::builder()
        .from("app@example.com")
        .to("ann@example.net")
        .subject("s")
        .text("t")
        .list_unsubscribe(true)
        .into_spec();
    let err = outbox.send(&spec).await.unwrap_err();
    assert!(matches!(err, OutboxError::NoUnsubscribeLinks), "{err}");
    assert!(err.to_string().starts_with("list_unsubscribe: "), "{err}");
    let results = outbox.send_now(&spec).await;
    assert!(matches!(results, Err(OutboxError::NoUnsubscribeLinks)));
    assert!(peer.sink.messages().is_empty());
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts.queued + counts.sent + counts.error,
        0,
        "nothing stored"
    );
    // A List-Unsubscribe of the caller's own cannot be mixed with Outbox's.
    let mut own = spec.clone();
    own.headers = vec![("List-Unsubscribe".into(), "<https://x.test/u>".into())];
    let err = outbox_queue::prepare(&own).unwrap_err();
    assert!(
        err.to_string()
            .contains("set by the list_unsubscribe field"),
        "{err}"
    );
    own.list_unsubscribe = false;
    assert!(
        outbox_queue::prepare(&own).is_ok(),
        "without the flag the header is the caller's"
    );
}
