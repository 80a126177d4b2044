//! The engine's fault model, each fault injected, on both backends: a store that fails
//! (transiently, or refusing one outcome), a server that stalls past the lease, a reply
//! with a NUL byte, a connection dropped after the final dot, a shutdown during a long
//! transaction, a relay that rejects our login, a worker that crashes mid-transaction.

use outbox_testkit::conformance;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use outbox_queue::engine::{Engine, EngineConfig, RunMode};
use outbox_queue::{
    AttemptRecord, Backend, Claimed, Enqueued, EventDelivery, EventFilter, EventPage, ListFilter,
    ListPage, MessageBody, MessageDetail, MessageStatus, MessageSummary, NewMessage, NewRecipient,
    NewSuppression, Outcome, RecipientState, RequestKey, RouteFilter, StatusCounts, Store,
    StoreError, StoreFuture, StoredSuspension, Suppression, SuppressionFilter, SuppressionPage,
    WebhookBacklog, WebhookBatch, WebhookResult, WebhookRoute, WorkerInfo,
};
use outbox_smtp::server::{Fault, MemorySink, Server, Stage, StaticUsers};
use outbox_testkit::relay::{Peer, relay_transport};
use outbox_testkit::{TestStore, message};
use time::OffsetDateTime;
use tokio::sync::Notify;

/// Which store calls fail, and how.
#[derive(Default)]
struct Faults {
    /// Every ledger call (claim, complete, release, heartbeat, next_due, ...) fails.
    down: AtomicBool,
    /// The next this-many `complete` calls fail with a transient error.
    complete_failures: AtomicU32,
    /// A `complete` whose batch holds this recipient id fails with a non-transient error
    /// (0: none), this many more times.
    poison_id: std::sync::atomic::AtomicI64,
    poison_failures: AtomicU32,
    /// How many `complete` calls were made.
    completes: AtomicUsize,
}

/// A store that delegates to a real one and fails on command.
struct FaultyStore {
    inner: Arc<dyn Store>,
    faults: Arc<Faults>,
}

fn injected() -> StoreError {
    // A transient error, as a dropped connection or a locked database gives.
    StoreError::Worker("injected: the database is unavailable".into())
}

impl FaultyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.faults.down.load(Ordering::SeqCst) {
            Err(injected())
        } else {
            Ok(())
        }
    }
}

macro_rules! guarded {
    ($self:ident, $call:expr) => {{
        let check = $self.check();
        let call = $call;
        Box::pin(async move {
            check?;
            call.await
        })
    }};
}

impl Store for FaultyStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    fn enqueue_batch(&self, messages: Vec<NewMessage>) -> StoreFuture<'_, Vec<Enqueued>> {
        self.inner.enqueue_batch(messages)
    }
    fn enqueue_keyed(
        &self,
        messages: Vec<NewMessage>,
        key: RequestKey,
    ) -> StoreFuture<'_, Vec<Enqueued>> {
        self.inner.enqueue_keyed(messages, key)
    }
    fn add_recipients<'a>(
        &'a self,
        message_id: &'a str,
        recipients: Vec<NewRecipient>,
    ) -> StoreFuture<'a, u64> {
        self.inner.add_recipients(message_id, recipients)
    }
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        guarded!(self, self.inner.claim(owner, now, limit))
    }
    fn claim_route<'a>(
        &'a self,
        owner: &'a str,
        route: &'a RouteFilter,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        guarded!(self, self.inner.claim_route(owner, route, now, limit))
    }
    fn heartbeat(&self, worker: &WorkerInfo, lease: Duration) -> StoreFuture<'_, ()> {
        guarded!(self, self.inner.heartbeat(worker, lease))
    }
    fn recover(&self) -> StoreFuture<'_, u64> {
        guarded!(self, self.inner.recover())
    }
    fn retire(&self, owner: &str) -> StoreFuture<'_, ()> {
        guarded!(self, self.inner.retire(owner))
    }
    fn release<'a>(
        &'a self,
        owner: &'a str,
        recipient_ids: &'a [i64],
        now: OffsetDateTime,
    ) -> StoreFuture<'a, u64> {
        guarded!(self, self.inner.release(owner, recipient_ids, now))
    }
    fn complete<'a>(&'a self, owner: &'a str, outcomes: Vec<Outcome>) -> StoreFuture<'a, u64> {
        let faults = &self.faults;
        faults.completes.fetch_add(1, Ordering::SeqCst);
        let down = self.check();
        let transient = faults
            .complete_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let poison = faults.poison_id.load(Ordering::SeqCst);
        let poisoned = poison != 0
            && outcomes.iter().any(|o| o.recipient_id == poison)
            && faults
                .poison_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        Box::pin(async move {
            down?;
            if transient {
                return Err(injected());
            }
            if poisoned {
                return Err(StoreError::Corrupt {
                    what: "outcome",
                    detail: "injected: the store refuses this outcome".into(),
                });
            }
            self.inner.complete(owner, outcomes).await
        })
    }
    fn message_bodies<'a>(
        &'a self,
        message_ids: &'a [String],
    ) -> StoreFuture<'a, Vec<(String, MessageBody)>> {
        guarded!(self, self.inner.message_bodies(message_ids))
    }
    fn message_body<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageBody> {
        guarded!(self, self.inner.message_body(message_id))
    }
    fn status<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageStatus> {
        self.inner.status(message_id)
    }
    fn detail<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageDetail> {
        self.inner.detail(message_id)
    }
    fn summary<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageSummary> {
        self.inner.summary(message_id)
    }
    fn list(&self, filter: ListFilter) -> StoreFuture<'_, ListPage> {
        guarded!(self, self.inner.list(filter))
    }
    fn counts(&self) -> StoreFuture<'_, StatusCounts> {
        self.inner.counts()
    }
    fn remove<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, u64> {
        self.inner.remove(message_id)
    }
    fn retry<'a>(&'a self, message_id: &'a str, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        self.inner.retry(message_id, now)
    }
    fn purge(&self, before: OffsetDateTime) -> StoreFuture<'_, u64> {
        self.inner.purge(before)
    }
    fn attempts<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>> {
        self.inner.attempts(message_id)
    }
    fn next_due(&self) -> StoreFuture<'_, Option<OffsetDateTime>> {
        guarded!(self, self.inner.next_due())
    }
    fn has_due(&self, now: OffsetDateTime) -> StoreFuture<'_, bool> {
        guarded!(self, self.inner.has_due(now))
    }
    fn suspend(&self, suspension: StoredSuspension) -> StoreFuture<'_, ()> {
        guarded!(self, self.inner.suspend(suspension))
    }
    fn lift_suspension<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, ()> {
        guarded!(self, self.inner.lift_suspension(destination))
    }
    fn suspensions(&self, now: OffsetDateTime) -> StoreFuture<'_, Vec<StoredSuspension>> {
        guarded!(self, self.inner.suspensions(now))
    }
    fn pending_domains<'a>(
        &'a self,
        message_ids: &'a [String],
    ) -> StoreFuture<'a, HashMap<String, Vec<String>>> {
        self.inner.pending_domains(message_ids)
    }
    fn suppress(&self, suppression: NewSuppression) -> StoreFuture<'_, Suppression> {
        guarded!(self, self.inner.suppress(suppression))
    }
    fn unsuppress<'a>(&'a self, address: &'a str, list: &'a str) -> StoreFuture<'a, bool> {
        guarded!(self, self.inner.unsuppress(address, list))
    }
    fn suppressions_list(&self, filter: SuppressionFilter) -> StoreFuture<'_, SuppressionPage> {
        guarded!(self, self.inner.suppressions_list(filter))
    }
    fn suppressed<'a>(
        &'a self,
        addresses: &'a [String],
        list: &'a str,
    ) -> StoreFuture<'a, Vec<Suppression>> {
        guarded!(self, self.inner.suppressed(addresses, list))
    }
    fn record_feedback(
        &self,
        feedback: outbox_queue::NewFeedback,
    ) -> StoreFuture<'_, outbox_queue::FeedbackApplied> {
        guarded!(self, self.inner.record_feedback(feedback))
    }
    fn feedback_list(
        &self,
        filter: outbox_queue::FeedbackFilter,
    ) -> StoreFuture<'_, Vec<outbox_queue::FeedbackRecord>> {
        guarded!(self, self.inner.feedback_list(filter))
    }
    fn feedback_raw(&self, id: i64) -> StoreFuture<'_, Option<Vec<u8>>> {
        guarded!(self, self.inner.feedback_raw(id))
    }
    fn events(&self, filter: EventFilter) -> StoreFuture<'_, EventPage> {
        guarded!(self, self.inner.events(filter))
    }
    fn event_deliveries<'a>(&'a self, ids: &'a [i64]) -> StoreFuture<'a, Vec<EventDelivery>> {
        guarded!(self, self.inner.event_deliveries(ids))
    }
    fn dispatch_events<'a>(
        &'a self,
        webhooks: &'a [WebhookRoute],
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, u64> {
        guarded!(self, self.inner.dispatch_events(webhooks, now, limit))
    }
    fn lock_webhook<'a>(
        &'a self,
        webhook: &'a str,
        owner: &'a str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        guarded!(self, self.inner.lock_webhook(webhook, owner, now, until))
    }
    fn webhook_batch<'a>(
        &'a self,
        webhook: &'a str,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, WebhookBatch> {
        guarded!(self, self.inner.webhook_batch(webhook, now, limit))
    }
    fn webhook_result<'a>(
        &'a self,
        webhook: &'a str,
        ids: &'a [i64],
        result: WebhookResult,
        now: OffsetDateTime,
    ) -> StoreFuture<'a, ()> {
        guarded!(self, self.inner.webhook_result(webhook, ids, result, now))
    }
    fn webhook_backlog(&self) -> StoreFuture<'_, Vec<WebhookBacklog>> {
        guarded!(self, self.inner.webhook_backlog())
    }
    fn prune_events(&self, before: OffsetDateTime, limit: usize) -> StoreFuture<'_, u64> {
        guarded!(self, self.inner.prune_events(before, limit))
    }
    fn enqueued(&self) -> Arc<Notify> {
        self.inner.enqueued()
    }
}

/// Short leases and retries: fault tests never sleep long.
fn config(owner: &str) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.owner = owner.into();
    config.relay_configured = true;
    config.retry_backoff = vec![Duration::from_millis(100)];
    config.poll_interval = Duration::from_millis(50);
    config.lease = Duration::from_millis(600);
    config
}

/// Runs an engine through the relay at `relay` until nothing is left.
async fn drain(store: Arc<dyn Store>, relay: String, config: EngineConfig) {
    outbox_testkit::relay::drain(&store, relay_transport(&relay), config).await;
}

async fn enqueue(store: &Arc<dyn Store>, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let id = store
            .enqueue(message(&format!("m{i}"), &[&format!("r{i}@example.net")]))
            .await
            .unwrap()
            .id;
        ids.push(id);
    }
    ids
}

async fn states(store: &Arc<dyn Store>, id: &str) -> Vec<RecipientState> {
    store
        .detail(id)
        .await
        .unwrap()
        .recipients
        .iter()
        .map(|r| r.state)
        .collect()
}

/// Waits (bounded) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The store fails transiently — every call for a while, then `complete` again and again
/// — and the engine neither stops nor loses an outcome: every message goes out exactly
/// once and is recorded as sent.
async fn store_errors_never_stop_the_engine_nor_lose_an_outcome(ts: TestStore) {
    let peer = Peer::start(vec![]).await;
    let faults = Arc::new(Faults::default());
    let store: Arc<dyn Store> = Arc::new(FaultyStore {
        inner: ts.store.clone(),
        faults: faults.clone(),
    });
    let ids = enqueue(&ts.store, 20).await;
    faults.down.store(true, Ordering::SeqCst);
    faults.complete_failures.store(6, Ordering::SeqCst);
    let engine = tokio::spawn(drain(store.clone(), peer.spec(), config("w1")));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        peer.received(),
        0,
        "nothing is claimed while the store is down"
    );
    faults.down.store(false, Ordering::SeqCst);
    engine.await.unwrap();
    assert_eq!(peer.received(), 20, "each message once");
    for id in &ids {
        assert_eq!(states(&ts.store, id).await, [RecipientState::Sent]);
    }
    assert!(faults.completes.load(Ordering::SeqCst) > 6);
}

/// One outcome the store refuses (not a transient error) does not hold the others back,
/// and is stored once the store takes it.
async fn a_refused_outcome_is_kept_and_retried_alone(ts: TestStore) {
    let peer = Peer::start(vec![]).await;
    let faults = Arc::new(Faults::default());
    let store: Arc<dyn Store> = Arc::new(FaultyStore {
        inner: ts.store.clone(),
        faults: faults.clone(),
    });
    let ids = enqueue(&ts.store, 5).await;
    // Recipient ids are assigned in order from 1 on both backends' fresh databases.
    faults.poison_id.store(3, Ordering::SeqCst);
    faults.poison_failures.store(4, Ordering::SeqCst);
    drain(store, peer.spec(), config("w1")).await;
    assert_eq!(peer.received(), 5);
    for id in &ids {
        assert_eq!(states(&ts.store, id).await, [RecipientState::Sent]);
    }
    assert_eq!(faults.poison_failures.load(Ordering::SeqCst), 0);
}

/// A reply with a NUL byte and control characters is stored, sanitised, on both backends
/// (PostgreSQL refuses NUL in text): the attempt is counted and the recipient retried.
async fn a_reply_with_nul_is_stored_sanitised(ts: TestStore) {
    let peer = Peer::start(vec![
        Fault::reply(Stage::EndOfData, 451, "4.3.0 busy\0 now\x1b[2J").times(1),
    ])
    .await;
    let ids = enqueue(&ts.store, 1).await;
    drain(ts.store.clone(), peer.spec(), config("w1")).await;
    assert_eq!(states(&ts.store, &ids[0]).await, [RecipientState::Sent]);
    let attempts = ts.store.attempts(&ids[0]).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let first = &attempts[0].reply;
    assert!(first.starts_with("451"), "{first}");
    assert!(!first.chars().any(char::is_control), "{first:?}");
}

/// The connection drops after the final dot, before the reply: the outcome is `unknown`
/// — deferred, counted, logged as such — and the message is sent again.
async fn a_drop_after_the_dot_is_unknown_and_retried(ts: TestStore) {
    let peer = Peer::start(vec![Fault::drop_connection(Stage::EndOfData).times(1)]).await;
    let ids = enqueue(&ts.store, 1).await;
    drain(ts.store.clone(), peer.spec(), config("w1")).await;
    assert_eq!(states(&ts.store, &ids[0]).await, [RecipientState::Sent]);
    let attempts = ts.store.attempts(&ids[0]).await.unwrap();
    let outcomes: Vec<String> = attempts.iter().map(|a| a.outcome.to_string()).collect();
    assert_eq!(outcomes, ["unknown", "sent"], "{attempts:?}");
    assert!(attempts[0].reply.starts_with("unknown: "), "{attempts:?}");
    assert_eq!(peer.received(), 1);
}

/// A server that holds the final reply for several leases: a second worker on the same
/// database never takes the recipient from the live first one, and the message goes out
/// once.
async fn a_live_workers_slow_transaction_is_never_taken(ts: TestStore) {
    let stall = Duration::from_millis(2500);
    let peer = Peer::start(vec![Fault::stall(Stage::EndOfData, stall).times(1)]).await;
    let ids = enqueue(&ts.store, 1).await;
    let first = tokio::spawn(drain(ts.store.clone(), peer.spec(), config("w1")));
    let store = ts.store.clone();
    let id = ids[0].clone();
    until("the first worker is sending", || {
        let store = store.clone();
        let id = id.clone();
        async move { states(&store, &id).await == [RecipientState::Sending] }
    })
    .await;
    // Four leases pass while the second worker looks for work.
    let second = Engine::new(
        ts.store.clone(),
        relay_transport(&peer.spec()),
        config("w2"),
    );
    let _ = tokio::time::timeout(
        Duration::from_millis(2000),
        second.run(RunMode::Forever, std::future::pending()),
    )
    .await;
    first.await.unwrap();
    assert_eq!(peer.received(), 1);
    assert_eq!(states(&ts.store, &ids[0]).await, [RecipientState::Sent]);
    assert_eq!(second.metrics().snapshot().connections_total, 0);
}

/// Shutdown (SIGTERM in `serve`) during a transaction that outlasts the lease: the
/// heartbeat goes on, the transaction finishes and its 250 is recorded; another worker
/// running meanwhile does not send the message again.
async fn shutdown_during_a_long_transaction_keeps_the_lease(ts: TestStore) {
    let peer = Peer::start(vec![
        Fault::stall(Stage::EndOfData, Duration::from_millis(2000)).times(1),
    ])
    .await;
    let ids = enqueue(&ts.store, 1).await;
    let stop = Arc::new(Notify::new());
    let engine = Engine::new(
        ts.store.clone(),
        relay_transport(&peer.spec()),
        config("w1"),
    );
    let stopped = stop.clone();
    let first = tokio::spawn(async move {
        engine
            .run(RunMode::Forever, async move { stopped.notified().await })
            .await
    });
    let store = ts.store.clone();
    let id = ids[0].clone();
    until("the worker is sending", || {
        let store = store.clone();
        let id = id.clone();
        async move { states(&store, &id).await == [RecipientState::Sending] }
    })
    .await;
    stop.notify_one();
    let other = tokio::spawn(drain(ts.store.clone(), peer.spec(), config("w2")));
    tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("shutdown finished")
        .unwrap()
        .unwrap();
    other.await.unwrap();
    assert_eq!(states(&ts.store, &ids[0]).await, [RecipientState::Sent]);
    assert_eq!(peer.received(), 1, "sent once");
}

/// A worker that dies mid-transaction (its runtime dropped: no heartbeat, no release):
/// another worker resumes its recipient after one lease and delivers it.
async fn a_crashed_workers_recipients_are_resumed(ts: TestStore) {
    let peer = Peer::start(vec![
        Fault::stall(Stage::EndOfData, Duration::from_secs(30)).times(1),
    ])
    .await;
    let ids = enqueue(&ts.store, 1).await;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::new(
        ts.store.clone(),
        relay_transport(&peer.spec()),
        config("doomed"),
    );
    runtime.spawn(async move {
        let _ = engine.run(RunMode::Forever, std::future::pending()).await;
    });
    let store = ts.store.clone();
    let id = ids[0].clone();
    until("the doomed worker is sending", || {
        let store = store.clone();
        let id = id.clone();
        async move { states(&store, &id).await == [RecipientState::Sending] }
    })
    .await;
    runtime.shutdown_background();
    drain(ts.store.clone(), peer.spec(), config("survivor")).await;
    assert_eq!(states(&ts.store, &ids[0]).await, [RecipientState::Sent]);
    assert!(peer.received() >= 1);
}

/// A relay that rejects our login (535, as after a rotated password): the recipients are
/// deferred without using up attempts — even with `max_attempts = 1` — the route pauses,
/// and the failure is counted; once the relay takes the login, they go out.
async fn a_rejected_login_defers_and_never_fails(ts: TestStore) {
    let users = Arc::new(StaticUsers::new([("app", "right")]));
    let sink = Arc::new(MemorySink::new());
    let server = Server::builder()
        .sink(sink.clone())
        .authenticator(users)
        .auth_requires_tls(false)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let ids = enqueue(&ts.store, 2).await;
    let wrong = format!("smtp://app:wrong@{addr}?starttls=off");
    // A long pause: the route is not tried again before the engine stops.
    let engine = Engine::new(ts.store.clone(), relay_transport(&wrong), {
        let mut config = config("w1");
        config.max_attempts = 1;
        config.retry_backoff = vec![Duration::from_secs(30)];
        config
    });
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let running = engine.run(RunMode::Forever, async move { stopped.notified().await });
    let watch = async {
        let store = ts.store.clone();
        let ids = ids.clone();
        until("both recipients are deferred", || {
            let store = store.clone();
            let ids = ids.clone();
            async move {
                for id in &ids {
                    if states(&store, id).await != [RecipientState::Deferred] {
                        return false;
                    }
                }
                true
            }
        })
        .await;
        stop.notify_one();
    };
    let (result, ()) = tokio::join!(running, watch);
    result.unwrap();
    let metrics = engine.metrics().snapshot();
    assert!(metrics.connection_failures >= 1, "{metrics:?}");
    assert!(metrics.not_attempted >= 2, "{metrics:?}");
    assert_eq!(metrics.failed, 0);
    for id in &ids {
        let detail = ts.store.detail(id).await.unwrap();
        let recipient = &detail.recipients[0];
        assert_eq!(recipient.state, RecipientState::Deferred, "{detail:?}");
        assert_eq!(recipient.attempts, 0, "not an attempt");
        let reply = recipient.last_reply.as_deref().unwrap_or_default();
        assert!(reply.contains("535"), "{reply}");
        assert!(
            !reply.contains("wrong"),
            "no password in the reply: {reply}"
        );
    }
    assert!(sink.messages().is_empty());
    // The password is fixed and the operator retries them (`outbox queue retry`): the
    // next run delivers both.
    for id in &ids {
        assert_eq!(
            ts.store.retry(id, OffsetDateTime::now_utc()).await.unwrap(),
            1
        );
    }
    let right = format!("smtp://app:right@{addr}?starttls=off");
    drain(ts.store.clone(), right, config("w2")).await;
    assert_eq!(sink.messages().len(), 2);
}

conformance!(
    store_errors_never_stop_the_engine_nor_lose_an_outcome,
    a_refused_outcome_is_kept_and_retried_alone,
    a_reply_with_nul_is_stored_sanitised,
    a_drop_after_the_dot_is_unknown_and_retried,
    a_live_workers_slow_transaction_is_never_taken,
    shutdown_during_a_long_transaction_keeps_the_lease,
    a_crashed_workers_recipients_are_resumed,
    a_rejected_login_defers_and_never_fails,
);
