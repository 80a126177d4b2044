//! The delivery engine against Outbox's own SMTP server (fault injection, counters), on
//! both backends: priority order, connection limits, per-recipient outcomes, retries,
//! send_at, removal, merge.

use outbox_testkit::conformance;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use outbox_mime::EmailSpec;
use outbox_queue::engine::{
    Engine, EngineConfig, RunMode, SmtpTransport, SmtpTransportConfig, Transport,
};
use outbox_queue::{NewMessage, Outbox, Priority, RecipientState, Store};
use outbox_smtp::server::{Fault, MemorySink, Server, Stage};
use outbox_smtp::{ClientConfig, ServerSpec};
use outbox_testkit::counting::Counting;
use outbox_testkit::relay::{self, Peer};
use outbox_testkit::{TestStore, message};

fn config() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.relay_configured = true;
    config.retry_backoff = vec![Duration::from_millis(50)];
    config.poll_interval = Duration::from_millis(100);
    config
}

/// Runs the engine through `peer` until nothing is left to do.
async fn drain(store: &Arc<dyn Store>, peer: &Peer, config: EngineConfig) {
    relay::drain(store, peer.transport(), config).await;
}

fn with_priority(subject: &str, priority: Priority) -> NewMessage {
    {
        let mut new_message = message(subject, &["rcpt@example.net"]);
        new_message.priority = priority;
        new_message
    }
}

async fn priority_order_on_one_connection(ts: TestStore) {
    let store = ts.store.clone();
    for (subject, priority) in [
        ("low-1", Priority::Low),
        ("medium-1", Priority::Medium),
        ("high-1", Priority::High),
        ("low-2", Priority::Low),
        ("high-2", Priority::High),
    ] {
        store
            .enqueue(with_priority(subject, priority))
            .await
            .unwrap();
    }
    let peer = Peer::start(vec![]).await;
    drain(&store, &peer, {
        let mut config = config();
        config.max_connections = 1;
        config
    })
    .await;
    assert_eq!(
        peer.subjects(),
        ["high-1", "high-2", "medium-1", "low-1", "low-2"]
    );
    assert_eq!(peer.server.stats().connections_accepted, 1);
}

async fn a_hundred_messages_per_connection(ts: TestStore) {
    let store = ts.store.clone();
    let batch = (0..250)
        .map(|i| message(&format!("m{i}"), &["r@example.net"]))
        .collect();
    store.enqueue_batch(batch).await.unwrap();
    let peer = Peer::start(vec![]).await;
    drain(&store, &peer, {
        let mut config = config();
        config.max_connections = 1;
        config
    })
    .await;
    let stats = peer.server.stats();
    assert_eq!(stats.messages_delivered(), 250);
    assert_eq!(stats.max_transactions_per_connection(), 100);
    assert_eq!(stats.connections_accepted, 3);
}

async fn at_most_five_connections(ts: TestStore) {
    let store = ts.store.clone();
    let batch = (0..400)
        .map(|i| message(&format!("m{i}"), &["r@example.net"]))
        .collect();
    store.enqueue_batch(batch).await.unwrap();
    let peer = Peer::start(vec![
        Fault::stall(Stage::Data, Duration::from_millis(2)).times(400),
    ])
    .await;
    let transport = Counting::new(peer.transport());
    let mut config = config();
    config.messages_per_connection = 20;
    relay::drain(&store, transport.clone(), config).await;
    let stats = peer.server.stats();
    assert_eq!(stats.messages_delivered(), 400);
    let max = transport.max_total();
    assert!(max <= 5, "{max} connections open at once");
    // Connections did run side by side, so a sixth would have been seen.
    assert!(max >= 2, "{max} connections open at once: {stats:?}");
    assert!(stats.max_transactions_per_connection() <= 20, "{stats:?}");
    assert_eq!(store.counts().await.unwrap().sent, 400);
}

async fn one_refused_recipient_does_not_stop_the_others(ts: TestStore) {
    let store = ts.store.clone();
    let id = store
        .enqueue(message(
            "three",
            &["a@example.net", "b@example.net", "c@example.net"],
        ))
        .await
        .unwrap()
        .id;
    let peer = Peer::start(vec![
        Fault::reply(Stage::Rcpt, 550, "5.1.1 no such user").for_recipient("b@example.net"),
    ])
    .await;
    drain(&store, &peer, config()).await;
    let received = peer.sink.messages();
    assert_eq!(received.len(), 1, "one transaction for the message");
    assert_eq!(
        received[0].envelope.rcpt_to,
        ["a@example.net", "c@example.net"]
    );
    let detail = store.detail(&id).await.unwrap();
    assert_eq!(detail.status.as_str(), "error");
    let states: Vec<_> = detail.recipients.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            RecipientState::Sent,
            RecipientState::Failed,
            RecipientState::Sent
        ]
    );
    let refused = detail.recipients[1].last_reply.as_deref().unwrap();
    assert!(refused.starts_with("550"), "{refused}");
}

async fn deferred_twice_then_sent(ts: TestStore) {
    let store = ts.store.clone();
    let id = store
        .enqueue(message("later", &["b@example.net"]))
        .await
        .unwrap()
        .id;
    let peer = Peer::start(vec![
        Fault::reply(Stage::Rcpt, 451, "4.3.0 try later")
            .for_recipient("b@example.net")
            .times(2),
    ])
    .await;
    drain(&store, &peer, config()).await;
    let detail = store.detail(&id).await.unwrap();
    assert_eq!(detail.status.as_str(), "sent");
    assert_eq!(detail.recipients[0].attempts, 3);
    let log = store.attempts(&id).await.unwrap();
    let codes: Vec<_> = log.iter().map(|a| a.code).collect();
    assert_eq!(codes, [Some(451), Some(451), Some(250)]);
    assert_eq!(peer.sink.len(), 1);
}

async fn always_deferred_fails_after_max_attempts(ts: TestStore) {
    let store = ts.store.clone();
    let id = store
        .enqueue(message("never", &["b@example.net"]))
        .await
        .unwrap()
        .id;
    let peer = Peer::start(vec![
        Fault::reply(Stage::Rcpt, 451, "4.3.0 try later").for_recipient("b@example.net"),
    ])
    .await;
    drain(&store, &peer, {
        let mut config = config();
        config.max_attempts = 3;
        config
    })
    .await;
    let detail = store.detail(&id).await.unwrap();
    assert_eq!(detail.status.as_str(), "error");
    let recipient = &detail.recipients[0];
    assert_eq!(recipient.state, RecipientState::Failed);
    assert_eq!(recipient.attempts, 3);
    assert!(
        recipient.last_reply.as_deref().unwrap().starts_with("451"),
        "{recipient:?}"
    );
}

async fn send_at_is_honoured(ts: TestStore) {
    let store = ts.store.clone();
    let later = time::OffsetDateTime::now_utc() + Duration::from_millis(1500);
    let id = store
        .enqueue({
            let mut new_message = message("later", &["r@example.net"]);
            new_message.send_at = Some(later);
            new_message
        })
        .await
        .unwrap()
        .id;
    let now = store
        .enqueue(message("now", &["r@example.net"]))
        .await
        .unwrap()
        .id;
    let peer = Peer::start(vec![]).await;
    // Until-empty does not wait for a message whose time has not come.
    drain(&store, &peer, config()).await;
    assert_eq!(peer.subjects(), ["now"]);
    assert_eq!(store.status(&now).await.unwrap().as_str(), "sent");
    assert_eq!(store.status(&id).await.unwrap().as_str(), "queued");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    drain(&store, &peer, config()).await;
    assert_eq!(peer.subjects(), ["now", "later"]);
}

async fn removed_messages_are_not_sent(ts: TestStore) {
    let store = ts.store.clone();
    let gone = store
        .enqueue(message("gone", &["r@example.net"]))
        .await
        .unwrap()
        .id;
    store
        .enqueue(message("kept", &["r@example.net"]))
        .await
        .unwrap();
    assert_eq!(store.remove(&gone).await.unwrap(), 1);
    let peer = Peer::start(vec![]).await;
    drain(&store, &peer, config()).await;
    assert_eq!(peer.subjects(), ["kept"]);
    let detail = store.detail(&gone).await.unwrap();
    assert_eq!(detail.status.as_str(), "error");
    assert_eq!(detail.recipients[0].state, RecipientState::Removed);
}

/// An address suppressed after its message was queued: the claim marks it `suppressed`
/// and the server never hears of it; the other recipient of the same message is sent.
async fn addresses_suppressed_after_enqueue_are_not_sent(ts: TestStore) {
    let store = ts.store.clone();
    let mut m = message("news", &["gone@example.net", "kept@example.net"]);
    m.list = Some("news".into());
    let id = store.enqueue(m).await.unwrap().id;
    let only = store
        .enqueue(message("only", &["Gone@Example.net"]))
        .await
        .unwrap()
        .id;
    store
        .suppress({
            let mut new_suppression = outbox_queue::NewSuppression::default();
            new_suppression.address = "gone@example.net".into();
            new_suppression.list = None;
            new_suppression.reason = outbox_queue::SuppressionReason::Bounced;
            new_suppression.message_id = None;
            new_suppression
        })
        .await
        .unwrap();
    let peer = Peer::start(vec![]).await;
    drain(&store, &peer, config()).await;
    assert_eq!(
        peer.subjects(),
        ["news"],
        "nothing of `only` reached the server"
    );
    let got = peer.sink.messages();
    assert_eq!(got[0].envelope.rcpt_to, ["kept@example.net"]);
    let detail = store.detail(&id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Suppressed);
    assert_eq!(detail.recipients[0].attempts, 0);
    assert!(
        detail.recipients[0]
            .last_reply
            .as_deref()
            .unwrap()
            .starts_with("suppressed: bounced (every list) since ")
    );
    assert_eq!(detail.recipients[1].state, RecipientState::Sent);
    assert_eq!(
        detail.status.as_str(),
        "error",
        "not delivered to every recipient"
    );
    assert_eq!(store.status(&only).await.unwrap().as_str(), "error");
    assert!(
        store.attempts(&only).await.unwrap().is_empty(),
        "never attempted"
    );
}

async fn merge_sends_each_recipient_its_own_copy(ts: TestStore) {
    let store = ts.store.clone();
    let peer = Peer::start(vec![]).await;
    let outbox = Outbox::new(store.clone(), peer.transport(), config());
    let mut merge = BTreeMap::new();
    for (address, name) in [("ann@example.net", "Ann"), ("bob@example.net", "Bob")] {
        merge.insert(
            address.to_string(),
            BTreeMap::from([("First".to_string(), name.to_string())]),
        );
    }
    let spec = EmailSpec {
        merge,
        ..EmailSpec::builder()
            .from("app@example.com")
            .to("ann@example.net, bob@example.net, cy@example.net")
            .subject("Hello #First#")
            .text("Dear #First#,\r\nyour code is #Code#.\r\n")
            .token("First", "friend")
            .token("Code", "42")
            .into_spec()
    };
    let id = outbox.send(&spec).await.unwrap().id;
    // The body is stored once, with its markers.
    let body = store.message_body(&id).await.unwrap();
    let stored = String::from_utf8(body.data).unwrap();
    assert_eq!(stored.matches("#First#").count(), 2, "{stored}");
    assert_eq!(store.summary(&id).await.unwrap().recipients, 3);

    drain(&store, &peer, config()).await;
    let received = peer.sink.messages();
    assert_eq!(received.len(), 3, "one transaction per recipient");
    for message in received {
        let text = String::from_utf8(message.data).unwrap();
        let name = match message.envelope.rcpt_to.as_slice() {
            [one] if one == "ann@example.net" => "Ann",
            [one] if one == "bob@example.net" => "Bob",
            [one] if one == "cy@example.net" => "friend",
            other => panic!("unexpected envelope {other:?}"),
        };
        assert!(
            text.contains(&format!("Subject: Hello {name}\r\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("Dear {name},\r\nyour code is 42.")),
            "{text}"
        );
    }
    assert_eq!(outbox.status(&id).await.unwrap().as_str(), "sent");
}

/// A relay nobody listens on: the recipient waits (deferred, no attempt used up, the
/// error in `last_reply`) however many times the route is tried, and goes out once the
/// relay answers. The operator's relay being down is not the recipient's failure.
async fn unreachable_relay_defers_without_failing(ts: TestStore) {
    let store = ts.store.clone();
    let id = store
        .enqueue(message("nowhere", &["r@example.net"]))
        .await
        .unwrap()
        .id;
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let transport: Arc<dyn Transport> = Arc::new(
        SmtpTransport::new({
            let mut transport = SmtpTransportConfig::default();
            transport.client = ClientConfig::new("outbox.test");
            transport.relay = Some(ServerSpec::parse(&closed.to_string()).unwrap());
            transport
        })
        .unwrap(),
    );
    let engine = Engine::new(store.clone(), transport, {
        let mut config = config();
        config.max_attempts = 2;
        config
    });
    // Several pauses of the route (backoff 50 ms) pass, then the engine stops.
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let running = engine.run(RunMode::Forever, async move { stopped.notified().await });
    let metrics = engine.metrics();
    let watch = async {
        for _ in 0..600 {
            if metrics.snapshot().connection_failures >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.notify_one();
    };
    let (result, ()) = tokio::join!(running, watch);
    result.unwrap();
    let metrics = engine.metrics().snapshot();
    assert!(metrics.connection_failures >= 3, "{metrics:?}");
    let detail = store.detail(&id).await.unwrap();
    let recipient = &detail.recipients[0];
    assert_eq!(recipient.state, RecipientState::Deferred);
    assert_eq!(recipient.attempts, 0);
    let reply = recipient.last_reply.as_deref().unwrap();
    assert!(reply.contains(&closed.to_string()), "{reply}");
    // The relay comes up on that port: delivered.
    let sink = Arc::new(MemorySink::new());
    let server = Server::builder()
        .sink(sink.clone())
        .bind(&closed.to_string())
        .await
        .expect("rebind the relay's port");
    drain(
        &store,
        &Peer {
            server,
            sink: sink.clone(),
        },
        config(),
    )
    .await;
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(
        outbox_queue::MessageStatus::Sent,
        store.status(&id).await.unwrap()
    );
}

async fn a_relay_carries_all_domains_of_a_message_in_one_transaction(ts: TestStore) {
    let store = ts.store.clone();
    store
        .enqueue(message(
            "domains",
            &["a@one.test", "b@two.test", "c@one.test"],
        ))
        .await
        .unwrap();
    let peer = Peer::start(vec![]).await;
    drain(&store, &peer, config()).await;
    let received = peer.sink.messages();
    assert_eq!(received.len(), 1, "one transaction through the relay");
    let mut rcpts = received[0].envelope.rcpt_to.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["a@one.test", "b@two.test", "c@one.test"]);
}

conformance!(
    a_relay_carries_all_domains_of_a_message_in_one_transaction,
    priority_order_on_one_connection,
    a_hundred_messages_per_connection,
    at_most_five_connections,
    one_refused_recipient_does_not_stop_the_others,
    deferred_twice_then_sent,
    always_deferred_fails_after_max_attempts,
    send_at_is_honoured,
    removed_messages_are_not_sent,
    addresses_suppressed_after_enqueue_are_not_sent,
    merge_sends_each_recipient_its_own_copy,
    unreachable_relay_defers_without_failing,
);
