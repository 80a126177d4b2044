//! Per-destination shaping and head-of-line blocking, with direct MX delivery to several
//! in-process servers on 127.0.0.x (one port, several loopback addresses) and a resolver
//! table: destinations are MX host sets, their limits hold, "slow down" replies suspend a
//! whole destination, and stalled destinations cannot hold every connection slot.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use outbox_queue::engine::shaping::{OnReply, ShapingMatch, ShapingRule};
use outbox_queue::engine::{
    BoxFuture, Engine, EngineConfig, RunMode, SmtpTransport, SmtpTransportConfig, Transport,
};
use outbox_queue::{NewMessage, Priority, RecipientState, Store};
use outbox_smtp::ClientConfig;
use outbox_smtp::mx::StaticMxResolver;
use outbox_smtp::server::{Fault, Server, ServerBuilder, Stage};
use outbox_testkit::counting::Counting;
use outbox_testkit::relay::{Peer, drain};
use outbox_testkit::{TestStore, message};
use time::OffsetDateTime;

/// Servers on 127.0.0.2, 127.0.0.3, ... sharing one port, as MX hosts do.
struct Hosts {
    port: u16,
    peers: Vec<Peer>,
}

/// How to build one test server: its settings and faults.
type ServerSetup = (fn() -> ServerBuilder, Vec<Fault>);

impl Hosts {
    /// One server per entry, at 127.0.0.(2+i), all on one port.
    async fn start(servers: Vec<ServerSetup>) -> Hosts {
        'again: loop {
            let mut peers = Vec::new();
            let mut port = 0;
            for (i, (builder, faults)) in servers.iter().enumerate() {
                let address = format!("127.0.0.{}:{port}", i + 2);
                let Some(peer) = Peer::try_start_on(&address, builder(), faults.clone()).await
                else {
                    // The port was taken on another address: start over on a new one.
                    continue 'again;
                };
                port = peer.server.local_addr().port();
                peers.push(peer);
            }
            return Hosts { port, peers };
        }
    }

    fn ip(i: usize) -> IpAddr {
        format!("127.0.0.{}", i + 2).parse().unwrap()
    }
}

/// The engine's transport delivering by MX through `resolver`, to `port`.
fn mx_transport(resolver: StaticMxResolver, port: u16) -> Arc<dyn Transport> {
    Arc::new(
        SmtpTransport::new({
            let mut transport = SmtpTransportConfig::default();
            transport.client = ClientConfig::new("outbox.test");
            transport.mx_port = port;
            transport.resolver = Some(Arc::new(resolver));
            transport
        })
        .expect("transport"),
    )
}

/// An engine running until [`Running::stop`].
struct Running {
    engine: Arc<Engine>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), outbox_queue::StoreError>>,
}

impl Running {
    fn start(engine: Engine) -> Running {
        let engine = Arc::new(engine);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let engine = engine.clone();
            async move {
                engine
                    .run(RunMode::Forever, async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        Running { engine, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

fn config() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.retry_backoff = vec![Duration::from_secs(3600)];
    config.poll_interval = Duration::from_millis(100);
    config
}

fn rule(matches: ShapingMatch) -> ShapingRule {
    ShapingRule {
        matches,
        max_connections: None,
        messages_per_connection: None,
        max_message_rate: None,
        max_recipients_per_transaction: None,
        on_reply: Vec::new(),
    }
}

/// Waits (bounded) until `check` holds for the store.
async fn until<F>(store: &Arc<dyn Store>, what: &str, check: F)
where
    F: for<'a> Fn(&'a Arc<dyn Store>) -> BoxFuture<'a, bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check(store).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The state of the one recipient of `id`.
async fn recipient(store: &Arc<dyn Store>, id: &str) -> outbox_queue::RecipientStatus {
    store.detail(id).await.unwrap().recipients.remove(0)
}

fn settled(state: RecipientState) -> bool {
    !matches!(state, RecipientState::Queued | RecipientState::Sending)
}

/// Waits (bounded) until the one recipient of each of `ids` has an outcome.
async fn until_settled(store: &Arc<dyn Store>, ids: &[String]) {
    let ids = ids.to_vec();
    until(store, &format!("{ids:?} settled"), |store| {
        let ids = ids.clone();
        Box::pin(async move {
            for id in &ids {
                if !settled(recipient(store, id).await.state) {
                    return false;
                }
            }
            true
        })
    })
    .await;
}

/// One plain MX server (at `Hosts::ip(0)`) with these faults.
async fn one_host(faults: Vec<Fault>) -> Hosts {
    Hosts::start(vec![(Server::builder as fn() -> ServerBuilder, faults)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_with_the_same_mx_hosts_share_one_budget() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    let slow = || vec![Fault::stall(Stage::Data, Duration::from_millis(5)).times(1000)];
    let hosts = Hosts::start(vec![
        (Server::builder as fn() -> ServerBuilder, slow()),
        (Server::builder as fn() -> ServerBuilder, slow()),
    ])
    .await;
    let resolver = StaticMxResolver::new()
        .mx("a.test", 10, "mx1.shared.test")
        .mx("b.test", 10, "mx1.shared.test")
        .mx("c.test", 10, "mx.c.test")
        .address("mx1.shared.test", Hosts::ip(0))
        .address("mx.c.test", Hosts::ip(1));
    let mut batch = Vec::new();
    for i in 0..30 {
        for domain in ["a.test", "b.test", "c.test"] {
            batch.push(message(
                &format!("{domain} {i}"),
                &[&format!("r{i}@{domain}")],
            ));
        }
    }
    store.enqueue_batch(batch).await.unwrap();
    let transport = Counting::new(mx_transport(resolver, hosts.port));
    let mut shared_rule = rule(ShapingMatch::MxSuffix(".shared.test".into()));
    shared_rule.max_connections = Some(1);
    shared_rule.messages_per_connection = Some(7);
    drain(&store, transport.clone(), {
        let mut config = config();
        config.shaping = vec![shared_rule];
        config
    })
    .await;
    assert_eq!(store.counts().await.unwrap().sent, 90);
    let (shared, other) = (hosts.peers[0].server.stats(), hosts.peers[1].server.stats());
    assert_eq!(shared.messages_delivered(), 60);
    assert_eq!(
        transport.max_to(&format!("[{}]", Hosts::ip(0))),
        1,
        "a.test and b.test share one connection"
    );
    assert!(shared.max_transactions_per_connection() <= 7, "{shared:?}");
    assert_eq!(other.messages_delivered(), 30);
    assert!(
        transport.max_to(&format!("[{}]", Hosts::ip(1))) >= 2,
        "c.test is not limited: {other:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_over_the_limit_go_in_the_next_transaction() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    // One server takes two recipients per transaction (452 4.5.3 beyond, as Postfix
    // does); the other takes all, but the rule allows three per transaction.
    let hosts = Hosts::start(vec![
        (|| Server::builder().max_recipients(2), vec![]),
        (Server::builder as fn() -> ServerBuilder, vec![]),
    ])
    .await;
    let resolver = StaticMxResolver::new()
        .mx("few.test", 10, "mx.few.test")
        .mx("rule.test", 10, "mx.rule.test")
        .address("mx.few.test", Hosts::ip(0))
        .address("mx.rule.test", Hosts::ip(1));
    let few: Vec<String> = (0..5).map(|i| format!("r{i}@few.test")).collect();
    let ruled: Vec<String> = (0..7).map(|i| format!("r{i}@rule.test")).collect();
    let ids = [
        store
            .enqueue(message(
                "few",
                &few.iter().map(String::as_str).collect::<Vec<_>>(),
            ))
            .await
            .unwrap()
            .id,
        store
            .enqueue(message(
                "ruled",
                &ruled.iter().map(String::as_str).collect::<Vec<_>>(),
            ))
            .await
            .unwrap()
            .id,
    ];
    let mut three = rule(ShapingMatch::Domain("rule.test".into()));
    three.max_recipients_per_transaction = Some(3);
    drain(&store, mx_transport(resolver, hosts.port), {
        let mut config = config();
        config.shaping = vec![three];
        config
    })
    .await;
    for id in &ids {
        let detail = store.detail(id).await.unwrap();
        for r in &detail.recipients {
            assert_eq!(
                (r.state, r.attempts),
                (RecipientState::Sent, 1),
                "{r:?}: never deferred"
            );
        }
    }
    let few_stats = hosts.peers[0].server.stats();
    assert_eq!(few_stats.connections_accepted, 1, "{few_stats:?}");
    assert_eq!(few_stats.messages_delivered(), 3, "2 + 2 + 1 recipients");
    let rule_stats = hosts.peers[1].server.stats();
    assert_eq!(rule_stats.messages_delivered(), 3, "3 + 3 + 1 recipients");
}

/// A 421 to a pipelined MAIL FROM is followed by the server's close, not by the RCPT
/// replies: the 421 must still reach the engine (not "connection closed during RCPT TO"),
/// so the destination is suspended instead of being tried again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_to_a_pipelined_mail_suspends_the_destination() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    let hosts = one_host(vec![
        Fault::reply(Stage::Mail, 421, "4.7.0 slow down").times(1),
    ])
    .await;
    let resolver = StaticMxResolver::new()
        .mx("a.test", 10, "mx1.shared.test")
        .address("mx1.shared.test", Hosts::ip(0));
    let running = Running::start(Engine::new(
        store.clone(),
        mx_transport(resolver, hosts.port),
        config(),
    ));
    let id = store.enqueue(message("a", &["r@a.test"])).await.unwrap().id;
    until_settled(&store, std::slice::from_ref(&id)).await;
    let a = recipient(&store, &id).await;
    assert_eq!(
        (a.state, a.attempts),
        (RecipientState::Deferred, 1),
        "{a:?}"
    );
    let reply = a.last_reply.unwrap_or_default();
    assert!(reply.contains("421 4.7.0 slow down"), "{reply}");
    let suspensions = running.engine.suspensions();
    assert_eq!(suspensions.len(), 1, "{suspensions:?}");
    assert_eq!(suspensions[0].destination, "mx mx1.shared.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_suspends_every_domain_of_the_destination() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    let hosts = one_host(vec![Fault::reply(
        Stage::Connect,
        421,
        "4.7.0 mx1 too busy, come back later",
    )])
    .await;
    let resolver = StaticMxResolver::new()
        .mx("a.test", 10, "mx1.shared.test")
        .mx("b.test", 10, "mx1.shared.test")
        .address("mx1.shared.test", Hosts::ip(0));
    let running = Running::start(Engine::new(
        store.clone(),
        mx_transport(resolver, hosts.port),
        config(),
    ));
    let engine = running.engine.clone();
    let first = store.enqueue(message("a", &["r@a.test"])).await.unwrap().id;
    until_settled(&store, std::slice::from_ref(&first)).await;
    let a = recipient(&store, &first).await;
    assert_eq!(
        (a.state, a.attempts),
        (RecipientState::Deferred, 1),
        "{a:?}"
    );
    assert!(
        a.last_reply.as_deref().unwrap_or("").contains("421"),
        "{a:?}"
    );

    // b.test shares the MX host: it waits for the suspension, without an attempt.
    let second = store.enqueue(message("b", &["r@b.test"])).await.unwrap().id;
    until_settled(&store, std::slice::from_ref(&second)).await;
    let b = recipient(&store, &second).await;
    assert_eq!(
        (b.state, b.attempts),
        (RecipientState::Deferred, 0),
        "{b:?}"
    );
    let reply = b.last_reply.unwrap_or_default();
    assert!(reply.contains("mx mx1.shared.test suspended"), "{reply}");
    assert!(reply.contains("421 4.7.0 mx1 too busy"), "{reply}");
    assert_eq!(
        hosts.peers[0].server.stats().connections_accepted,
        1,
        "no second connection while suspended"
    );
    let suspensions = engine.suspensions();
    assert_eq!(suspensions.len(), 1, "{suspensions:?}");
    assert_eq!(suspensions[0].destination, "mx mx1.shared.test");
    assert!(suspensions[0].until > OffsetDateTime::now_utc() + Duration::from_secs(3000));
    running.stop().await;
}

/// Waits (bounded) until the one recipient of `id` is sent.
async fn until_sent(store: &Arc<dyn Store>, id: &str) {
    until(store, &format!("{id} sent"), |store| {
        let id = id.to_string();
        Box::pin(async move { recipient(store, &id).await.state == RecipientState::Sent })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_is_stored_with_its_domains_and_lifted_when_accepted_again() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    let hosts = Hosts::start(vec![(Server::builder as fn() -> ServerBuilder, vec![])]).await;
    let resolver = StaticMxResolver::new()
        .mx("a.test", 10, "mx1.shared.test")
        .mx("b.test", 10, "mx1.shared.test")
        .address("mx1.shared.test", Hosts::ip(0));
    // A short schedule: the suspension ends, the retry is accepted, the suspension lifted.
    let running = Running::start(Engine::new(
        store.clone(),
        mx_transport(resolver, hosts.port),
        {
            let mut config = config();
            config.retry_backoff = vec![Duration::from_millis(500)];
            config
        },
    ));
    let engine = running.engine.clone();
    // The engine learns that both domains go to mx1.shared.test.
    for domain in ["a.test", "b.test"] {
        let id = store
            .enqueue(message(domain, &[&format!("r@{domain}")]))
            .await
            .unwrap()
            .id;
        until_sent(&store, &id).await;
    }
    assert!(
        store
            .suspensions(OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap()
            .is_empty()
    );

    hosts.peers[0]
        .server
        .inject(Fault::reply(Stage::Connect, 421, "4.7.0 mx1 too busy, come back later").times(1));
    let third = store
        .enqueue(message("a again", &["s@a.test"]))
        .await
        .unwrap()
        .id;
    // Every stored row, ended or not: the suspension is short.
    let all = |store: &Arc<dyn Store>| {
        let store = store.clone();
        async move { store.suspensions(OffsetDateTime::UNIX_EPOCH).await.unwrap() }
    };
    until(&store, "the suspension stored", |store| {
        let all = all(store);
        Box::pin(async move { !all.await.is_empty() })
    })
    .await;
    let stored = all(&store).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let suspension = &stored[0];
    assert_eq!(suspension.destination, "mx mx1.shared.test");
    assert_eq!(suspension.domains, ["a.test", "b.test"]);
    assert_eq!(suspension.times, 1);
    assert!(
        suspension
            .reason
            .starts_with("mx mx1.shared.test suspended after: 421 4.7.0 mx1 too busy"),
        "{suspension:?}"
    );
    let in_memory = engine.suspensions_handle();
    assert!(
        in_memory.list().iter().all(|s| s.until >= suspension.until),
        "the engine's own copy: {:?}",
        in_memory.list()
    );

    // Once it ends, the retry is accepted, and the suspension is deleted (not only ended).
    until_sent(&store, &third).await;
    until(&store, "the suspension lifted", |store| {
        let all = all(store);
        Box::pin(async move { all.await.is_empty() })
    })
    .await;
    assert_eq!(hosts.peers[0].server.stats().messages_delivered(), 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_suspended_by_another_worker_waits_here_too() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    let hosts = Hosts::start(vec![(Server::builder as fn() -> ServerBuilder, vec![])]).await;
    let resolver = StaticMxResolver::new()
        .mx("a.test", 10, "mx1.shared.test")
        .address("mx1.shared.test", Hosts::ip(0));
    // Another worker sharing the database was told to slow down.
    let until_then = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    store
        .suspend(outbox_queue::StoredSuspension {
            destination: "mx mx1.shared.test".into(),
            reason: "mx mx1.shared.test suspended after: 421 4.7.0 told another worker".into(),
            until: until_then,
            times: 2,
            domains: vec!["b.test".into()],
        })
        .await
        .unwrap();
    let id = store.enqueue(message("a", &["r@a.test"])).await.unwrap().id;
    let running = Running::start(Engine::new(
        store.clone(),
        mx_transport(resolver, hosts.port),
        config(),
    ));
    let engine = running.engine.clone();
    until_settled(&store, std::slice::from_ref(&id)).await;
    let a = recipient(&store, &id).await;
    assert_eq!(
        (a.state, a.attempts),
        (RecipientState::Deferred, 0),
        "{a:?}"
    );
    assert!(
        a.last_reply
            .as_deref()
            .unwrap_or("")
            .contains("421 4.7.0 told another worker"),
        "{a:?}"
    );
    assert_eq!(
        hosts.peers[0].server.stats().connections_accepted,
        0,
        "the suspended destination is not asked"
    );
    let suspensions = engine.suspensions();
    assert_eq!(suspensions.len(), 1, "{suspensions:?}");
    assert_eq!(suspensions[0].times, 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_matching_on_reply_suspends_for_its_time() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    let hosts = one_host(vec![
        Fault::reply(Stage::Rcpt, 451, "4.7.1 Too many connections from your IP").times(1),
    ])
    .await;
    let resolver = StaticMxResolver::new()
        .mx("a.test", 10, "mx.a.test")
        .address("mx.a.test", Hosts::ip(0));
    // One connection: the second message comes after the first's reply.
    let mut slow = rule(ShapingMatch::Domain("a.test".into()));
    slow.max_connections = Some(1);
    slow.on_reply = vec![OnReply {
        pattern: regex::Regex::new("(?i)too many connections").unwrap(),
        suspend: Duration::from_secs(600),
    }];
    let ids = [
        store
            .enqueue(message("one", &["r1@a.test"]))
            .await
            .unwrap()
            .id,
        store
            .enqueue(message("two", &["r2@a.test"]))
            .await
            .unwrap()
            .id,
    ];
    let running = Running::start(Engine::new(
        store.clone(),
        mx_transport(resolver, hosts.port),
        {
            let mut config = config();
            config.shaping = vec![slow];
            config
        },
    ));
    let engine = running.engine.clone();
    until_settled(&store, &ids).await;
    // Whichever went first got the 451; the other waits for the suspension, unattempted.
    let mut both = [
        recipient(&store, &ids[0]).await,
        recipient(&store, &ids[1]).await,
    ];
    both.sort_by_key(|r| std::cmp::Reverse(r.attempts));
    let [refused, waiting] = both;
    assert_eq!(
        (refused.state, refused.attempts),
        (RecipientState::Deferred, 1),
        "{refused:?}"
    );
    assert!(
        refused
            .last_reply
            .as_deref()
            .unwrap_or("")
            .contains("451 4.7.1"),
        "{refused:?}"
    );
    assert_eq!(
        (waiting.state, waiting.attempts),
        (RecipientState::Deferred, 0),
        "{waiting:?}"
    );
    assert!(
        waiting
            .last_reply
            .as_deref()
            .unwrap_or("")
            .contains("suspended after: 451"),
        "{waiting:?}"
    );
    assert_eq!(hosts.peers[0].server.stats().messages_delivered(), 0);
    let suspensions = engine.suspensions();
    assert_eq!(suspensions.len(), 1, "{suspensions:?}");
    let left = suspensions[0].until - OffsetDateTime::now_utc();
    assert!(
        left > Duration::from_secs(500) && left <= Duration::from_secs(600),
        "suspended for the rule's 10 minutes: {left}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_rate_wait_for_their_turn() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    let hosts = Hosts::start(vec![(Server::builder as fn() -> ServerBuilder, vec![])]).await;
    let resolver = StaticMxResolver::new()
        .mx("a.test", 10, "mx.a.test")
        .address("mx.a.test", Hosts::ip(0));
    let mut hourly = rule(ShapingMatch::Domain("a.test".into()));
    hourly.max_message_rate = Some("2/h".parse().unwrap());
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(
                store
                    .enqueue(message(&format!("m{i}"), &[&format!("r{i}@a.test")]))
                    .await
                    .unwrap()
                    .id,
            );
        }
        ids
    };
    let engine = Engine::new(store.clone(), mx_transport(resolver, hosts.port), {
        let mut config = config();
        config.shaping = vec![hourly];
        config
    });
    let started = OffsetDateTime::now_utc();
    let running = Running::start(engine);
    until_settled(&store, &ids).await;
    running.stop().await;
    assert_eq!(hosts.peers[0].server.stats().messages_delivered(), 1);
    let mut waiting = 0;
    for id in &ids {
        let r = recipient(&store, id).await;
        if r.state == RecipientState::Sent {
            continue;
        }
        waiting += 1;
        assert_eq!(
            (r.state, r.attempts),
            (RecipientState::Deferred, 0),
            "{r:?}"
        );
        assert!(
            r.last_reply.as_deref().unwrap_or("").contains("2/h"),
            "{r:?}"
        );
    }
    assert_eq!(waiting, 2);
    // The next is due when the rate allows it: half an hour after the first, not before.
    let due = store.next_due().await.unwrap().expect("work is waiting");
    let wait = due - started;
    assert!(
        wait > Duration::from_secs(29 * 60) && wait < Duration::from_secs(31 * 60),
        "next due after {wait}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_destinations_do_not_hold_up_a_healthy_one() {
    let ts = TestStore::sqlite(Default::default()).await;
    let store = ts.store.clone();
    // Three destinations accept connections and say nothing for two minutes (the greeting
    // timeout is RFC 5321's five); a fourth is healthy.
    let stall = || vec![Fault::stall(Stage::Connect, Duration::from_secs(120))];
    let hosts = Hosts::start(vec![
        (Server::builder as fn() -> ServerBuilder, vec![]),
        (Server::builder as fn() -> ServerBuilder, stall()),
        (Server::builder as fn() -> ServerBuilder, stall()),
        (Server::builder as fn() -> ServerBuilder, stall()),
    ])
    .await;
    let mut resolver = StaticMxResolver::new()
        .mx("healthy.test", 10, "mx.healthy.test")
        .address("mx.healthy.test", Hosts::ip(0));
    let mut batch: Vec<NewMessage> = Vec::new();
    for i in 1..=3 {
        let domain = format!("stall{i}.test");
        let host = format!("mx.{domain}");
        resolver = resolver.mx(&domain, 10, &host).address(&host, Hosts::ip(i));
        for n in 0..10 {
            batch.push({
                let mut new_message =
                    message(&format!("{domain} {n}"), &[&format!("r{n}@{domain}")]);
                new_message.priority = Priority::Low;
                new_message
            });
        }
    }
    store.enqueue_batch(batch).await.unwrap();
    let engine = Engine::new(store.clone(), mx_transport(resolver, hosts.port), config());
    let running = Running::start(engine);
    // Let the stalled destinations take every slot.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hosts.peers[1..]
        .iter()
        .map(|peer| peer.server.stats().connections_open)
        .sum::<u64>()
        < 5
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled connections opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reset = store
        .enqueue({
            let mut new_message = message("password reset", &["user@healthy.test"]);
            new_message.priority = Priority::High;
            new_message
        })
        .await
        .unwrap()
        .id;
    // Within seconds, not after a stall: the bound is far below the two-minute stall.
    tokio::time::timeout(Duration::from_secs(20), async {
        while recipient(&store, &reset).await.state != RecipientState::Sent {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the healthy destination got a slot while the others stalled");
    assert_eq!(hosts.peers[0].received(), 1);
    running.stop().await;
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.sent, 1, "{counts:?}");
}
