//! The [`Store`] trait the engine, the CLI and the HTTP API hold as `Arc<dyn Store>`,
//! and [`open_store`], which picks the backend from a database URL.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::events::{
    EventDelivery, EventFilter, EventPage, WebhookBacklog, WebhookBatch, WebhookResult,
    WebhookRoute,
};
use crate::feedback::{FeedbackApplied, FeedbackFilter, FeedbackRecord, NewFeedback};
use crate::model::{
    AttemptRecord, Claimed, Enqueued, ListFilter, ListPage, MessageBody, MessageDetail,
    MessageStatus, MessageSummary, NewMessage, NewRecipient, Outcome, RequestKey, RouteFilter,
    StatusCounts, StoredSuspension, WorkerInfo,
};
use crate::suppression::{NewSuppression, Suppression, SuppressionFilter, SuppressionPage};
use crate::{StoreError, StoreOptions};

/// The future every store operation returns: boxed, so the trait is object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// One SQLite file in WAL mode.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// The durable queue. Every method commits before its future resolves.
///
/// Concurrency: any number of workers (in one process or several, sharing the database)
/// may call `claim` at once; a recipient is leased to one owner at a time, for as long as
/// that owner's heartbeat says it is alive.
pub trait Store: Send + Sync {
    /// The backend behind this store.
    fn backend(&self) -> Backend;

    /// Queues one message and returns its id once committed. A repeated idempotency key
    /// returns the first message's id with `existing = true` and stores nothing.
    fn enqueue(&self, message: NewMessage) -> StoreFuture<'_, Enqueued> {
        Box::pin(async move {
            let mut enqueued = self.enqueue_batch(vec![message]).await?;
            enqueued
                .pop()
                .ok_or(StoreError::Worker("enqueue returned nothing".into()))
        })
    }

    /// Queues many messages in one transaction (`email_batch`): all or none. Every
    /// message is checked before anything is written.
    fn enqueue_batch(&self, messages: Vec<NewMessage>) -> StoreFuture<'_, Vec<Enqueued>>;

    /// Like [`enqueue_batch`](Store::enqueue_batch), for the messages of one request that
    /// carried an idempotency key (the messages' own `idempotency_key` is then ignored):
    /// the first time, they are queued with the key, each at its place in the request;
    /// the same key in the same scope with the same request hash returns the first ids
    /// (`existing = true`) and stores nothing; with another hash it is
    /// [`StoreError::IdempotencyConflict`] and stores nothing.
    fn enqueue_keyed(
        &self,
        messages: Vec<NewMessage>,
        key: RequestKey,
    ) -> StoreFuture<'_, Vec<Enqueued>>;

    /// Adds recipients to a queued message in one transaction (for bulk merges: call it
    /// once per batch of, say, 10 000). Returns how many were added.
    fn add_recipients<'a>(
        &'a self,
        message_id: &'a str,
        recipients: Vec<NewRecipient>,
    ) -> StoreFuture<'a, u64>;

    /// Leases up to `limit` due (`queued` or `deferred`, `next_attempt_at <= now`)
    /// recipients to `owner`, high priority first, then by due time and id, grouped into
    /// work units by (message, route). Each claim increments the recipient's lease epoch
    /// (returned in [`ClaimedRecipient::epoch`](crate::ClaimedRecipient::epoch)). A
    /// `sending` recipient is never claimed, not even by its own owner: a dead worker's
    /// come back through [`recover`](Store::recover). The claim writes no expiry: the
    /// lease lasts as long as `owner`'s [`heartbeat`](Store::heartbeat).
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Claimed>>;

    /// Like [`claim`](Store::claim), restricted to one route whatever the priority: what
    /// an open connection drains before it closes.
    fn claim_route<'a>(
        &'a self,
        owner: &'a str,
        route: &'a RouteFilter,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Claimed>>;

    /// Records that `worker` is alive, for `lease` from now: upserts its `workers` row
    /// with `heartbeat_at = now`. "Now" is the database's clock on PostgreSQL (so workers
    /// on several machines agree), the local clock on SQLite. Call it every fraction of
    /// `lease` for as long as the worker holds claims, shutdown included.
    fn heartbeat(&self, worker: &WorkerInfo, lease: Duration) -> StoreFuture<'_, ()>;

    /// Makes the `sending` recipients of dead workers due again (`deferred` if they had
    /// attempts or a reply — a connection failure that was not an attempt — else `queued`; `lease_owner` cleared; `next_attempt_at` now, or kept when
    /// earlier), deletes the dead workers' rows, and returns how many recipients it
    /// resumed. A worker is dead when its heartbeat is older than its lease (by the
    /// database clock on PostgreSQL), or when it runs on this host (same host key) and
    /// its pid no longer exists here; a `sending` recipient whose owner has no `workers`
    /// row at all is resumed too. A live worker's recipients are never taken, however
    /// long it holds them.
    fn recover(&self) -> StoreFuture<'_, u64>;

    /// Deletes `owner`'s `workers` row: a clean shutdown, after its claims were completed
    /// or released.
    fn retire(&self, owner: &str) -> StoreFuture<'_, ()>;

    /// Gives leased recipients back without an attempt (a worker shutting down): they are
    /// due again at `now`, `deferred` if they had attempts or a reply, else `queued`. Returns how many were released (only those `owner` still
    /// held).
    fn release<'a>(
        &'a self,
        owner: &'a str,
        recipient_ids: &'a [i64],
        now: OffsetDateTime,
    ) -> StoreFuture<'a, u64>;

    /// Records outcomes in one transaction, with a constant number of statements:
    /// - [`Delivery::Sent`](crate::Delivery::Sent) is final: applied whoever holds the
    ///   lease and whatever the epoch, unless the recipient is already sent; it clears the
    ///   lease and increments the epoch (fencing the current holder, if any);
    /// - every other outcome applies only while `owner` still holds the claim it was made
    ///   under (`lease_owner = owner`, same epoch, state `sending`);
    /// - every outcome of an existing recipient gets an attempts-log row, applied or not
    ///   (the attempt happened); `attempts + 1` where applied, except for
    ///   [`Delivery::NotAttempted`](crate::Delivery::NotAttempted);
    /// - the touched messages' statuses are refreshed.
    ///
    /// NUL bytes in reply texts and hosts are dropped. Returns how many outcomes were
    /// applied; the rest were stale.
    fn complete<'a>(&'a self, owner: &'a str, outcomes: Vec<Outcome>) -> StoreFuture<'a, u64>;

    /// The bodies (MIME data and tokens) of several messages, in one statement. Ids of
    /// messages that no longer exist are left out of the result; the order is unspecified.
    fn message_bodies<'a>(
        &'a self,
        message_ids: &'a [String],
    ) -> StoreFuture<'a, Vec<(String, MessageBody)>>;

    /// The stored MIME data and tokens of a message.
    fn message_body<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageBody>;

    /// `queued`, `sent` or `error`.
    fn status<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageStatus>;

    /// The detailed per-recipient view (`status --json`).
    fn detail<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageDetail>;

    /// One message's summary (the `queue list` row).
    fn summary<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageSummary>;

    /// Messages matching a filter, newest first, one page at a time.
    fn list(&self, filter: ListFilter) -> StoreFuture<'_, ListPage>;

    /// Number of messages per status.
    fn counts(&self) -> StoreFuture<'_, StatusCounts>;

    /// Marks every recipient that is not yet sent or failed as `removed`; returns how many.
    fn remove<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, u64>;

    /// Makes deferred and failed recipients due now (`queued`); returns how many.
    fn retry<'a>(&'a self, message_id: &'a str, now: OffsetDateTime) -> StoreFuture<'a, u64>;

    /// Deletes messages in a final status (sent, error) queued before `before`, with
    /// their recipients and attempts; returns how many messages.
    fn purge(&self, before: OffsetDateTime) -> StoreFuture<'_, u64>;

    /// A message's delivery log, oldest first.
    fn attempts<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>>;

    /// The earliest `next_attempt_at` of a `queued` or `deferred` recipient, or `None`
    /// when there is none: the engine sleeps until then. (`sending` recipients are not
    /// considered: a dead worker's come back through [`recover`](Store::recover).)
    fn next_due(&self) -> StoreFuture<'_, Option<OffsetDateTime>>;

    /// True when some `queued` or `deferred` recipient is due at `now`.
    fn has_due(&self, now: OffsetDateTime) -> StoreFuture<'_, bool>;

    /// Stores a destination's suspension, replacing the one stored for the same
    /// destination (`updated_at` is this process's clock). Suspensions that ended before
    /// now (this process's clock) are deleted in the same transaction: the table only
    /// ever holds a few rows. Domains are stored lowercase, sorted, without duplicates.
    fn suspend(&self, suspension: StoredSuspension) -> StoreFuture<'_, ()>;

    /// Deletes a destination's suspension (it accepted a message again); nothing when it
    /// has none.
    fn lift_suspension<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, ()>;

    /// The suspensions that have not ended at `now` (`until > now`), soonest end first,
    /// then by destination. A read only: ended rows are skipped here, and deleted by the
    /// next [`suspend`](Store::suspend).
    fn suspensions(&self, now: OffsetDateTime) -> StoreFuture<'_, Vec<StoredSuspension>>;

    /// The distinct domains of the recipients still waiting (`queued` or `deferred`) in
    /// each of the given messages, in one statement: message id -> domains, sorted.
    /// Messages without a waiting recipient (or that do not exist) are left out.
    fn pending_domains<'a>(
        &'a self,
        message_ids: &'a [String],
    ) -> StoreFuture<'a, HashMap<String, Vec<String>>>;

    /// Adds an address to the suppression list, for one list or (list `None` or empty)
    /// for every list; returns the stored row. Idempotent: adding it again keeps the
    /// first `created_at`, takes the new reason, and keeps the first message id unless
    /// the new one has one. Queued recipients are not changed here: the next claim marks
    /// them `suppressed` instead of leasing them.
    fn suppress(&self, suppression: NewSuppression) -> StoreFuture<'_, Suppression>;

    /// Removes an address's suppression for `list` (empty: the one for every list);
    /// true when there was one. Recipients already `suppressed` stay so.
    fn unsuppress<'a>(&'a self, address: &'a str, list: &'a str) -> StoreFuture<'a, bool>;

    /// Suppressions matching a filter, by address then list, one page at a time.
    fn suppressions_list(&self, filter: SuppressionFilter) -> StoreFuture<'_, SuppressionPage>;

    /// The suppressions that stop mail of `list` to any of `addresses` (those for every
    /// list and those for `list`), in one statement; addresses that are not valid are
    /// skipped. For `send --now`, which bypasses the queue.
    fn suppressed<'a>(
        &'a self,
        addresses: &'a [String],
        list: &'a str,
    ) -> StoreFuture<'a, Vec<Suppression>>;

    /// Records one feedback report (a bounce, a delay notice, a complaint) and applies it,
    /// in one transaction: this is the one place where feedback changes a recipient
    /// ([`NewFeedback`]). When `recipient_id` names an existing recipient: a bounce
    /// makes it `bounced` (from sent, failed, deferred, queued or bounced) and, with a
    /// 5.x.x status, suppresses its address for every list (reason `bounced`); a
    /// complaint makes it `complained` (from those or bounced) and suppresses the address
    /// (reason `complained`); a delay changes nothing. Its message's status is refreshed.
    /// Every report gets a `feedback` row; one that names no recipient keeps its text.
    fn record_feedback(&self, feedback: NewFeedback) -> StoreFuture<'_, FeedbackApplied>;

    /// Stored reports matching a filter, newest first.
    fn feedback_list(&self, filter: FeedbackFilter) -> StoreFuture<'_, Vec<FeedbackRecord>>;

    /// The text kept of an unmatched report; `None` when there is no such report or it
    /// matched a recipient (then only its fields are kept).
    fn feedback_raw(&self, id: i64) -> StoreFuture<'_, Option<Vec<u8>>>;

    /// Events, oldest first, one page at a time (`outbox events list`,
    /// `GET /api/v1/events`).
    fn events(&self, filter: EventFilter) -> StoreFuture<'_, EventPage>;

    /// The deliveries of the given events to every webhook, by event then webhook.
    fn event_deliveries<'a>(&'a self, event_ids: &'a [i64]) -> StoreFuture<'a, Vec<EventDelivery>>;

    /// Fans out up to `limit` events not dispatched yet, oldest first, in one
    /// transaction: one delivery row (due at `now`) per webhook of `webhooks` that wants
    /// the event's type, and the events marked dispatched (also with no webhook at all:
    /// a webhook configured later receives the events recorded from then on). Returns how
    /// many events were dispatched.
    fn dispatch_events<'a>(
        &'a self,
        webhooks: &'a [WebhookRoute],
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, u64>;

    /// Takes or renews the right to send to `webhook` until `until`: true when `owner`
    /// holds it now (nobody held it, `owner` held it, the holder's time ran out, or the
    /// holder is no live worker: it has no `workers` row, as after a crash once
    /// [`recover`](Store::recover) ran). One sender per webhook keeps events in order
    /// across processes; `owner` is the engine's worker name.
    fn lock_webhook<'a>(
        &'a self,
        webhook: &'a str,
        owner: &'a str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreFuture<'a, bool>;

    /// The next events to send to `webhook`: its undelivered deliveries in event order,
    /// at most `limit`, stopping before the first one not due at `now` (a batch never
    /// overtakes an event in backoff, so events stay in order).
    fn webhook_batch<'a>(
        &'a self,
        webhook: &'a str,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, WebhookBatch>;

    /// Records the result of one request carrying `event_ids` to `webhook`: delivered, or
    /// one more attempt and the next due time.
    fn webhook_result<'a>(
        &'a self,
        webhook: &'a str,
        event_ids: &'a [i64],
        result: WebhookResult,
        now: OffsetDateTime,
    ) -> StoreFuture<'a, ()>;

    /// Per webhook with undelivered events: how many, and how many failed before.
    fn webhook_backlog(&self) -> StoreFuture<'_, Vec<WebhookBacklog>>;

    /// Deletes events recorded before `before` that no webhook waits for any more (and
    /// their deliveries), at most `limit` of them; returns how many.
    fn prune_events(&self, before: OffsetDateTime, limit: usize) -> StoreFuture<'_, u64>;

    /// Signalled after each enqueue: in this process always, and on PostgreSQL also for
    /// other processes' enqueues (LISTEN `outbox_enqueued`). The signal is a
    /// [`Notify::notify_one`], so a wake-up sent while the engine was busy is kept.
    fn enqueued(&self) -> Arc<Notify>;
}

/// The SQL of a claim on `backend` (`route`: as [`Store::claim_route`] takes it, `None`
/// for [`Store::claim`]), for EXPLAIN in tests and benchmarks: the planner settings the
/// claim's transaction runs with (empty on SQLite), then the statement. SQLite's
/// parameters are ?1 owner, ?2 now (ms), ?3 limit, ?4 route key; PostgreSQL's the same
/// as $1..$4.
#[doc(hidden)]
pub fn claim_statement(backend: Backend, route: Option<&RouteFilter>) -> (&'static str, String) {
    match backend {
        Backend::Sqlite => ("", crate::sqlite::ledger::claim_sql(route)),
        Backend::Postgres => (
            crate::postgres::ledger::CLAIM_SETTINGS,
            crate::postgres::ledger::claim_sql(route),
        ),
    }
}

/// Where a database URL points. `Debug` shows a PostgreSQL URL with its password as `***`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseUrl {
    /// `sqlite://relative/path.db` or `sqlite:///absolute/path.db`.
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`, as given.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            DatabaseUrl::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&outbox_smtp::redact(url))
                .finish(),
        }
    }
}

impl DatabaseUrl {
    /// Parses the URL forms of DESIGN §6.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::invalid_url(url, reason);
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split_once('?').map_or(path, |(path, _)| path);
            if path.is_empty() || path == "/" {
                return Err(invalid("no file path after sqlite://"));
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_string()))
        } else {
            Err(invalid("expected sqlite://PATH or postgres://..."))
        }
    }
}

/// Opens (and migrates) the store a URL names, with default options. A missing SQLite
/// file is created.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with(url, StoreOptions::default()).await
}

/// Opens (and migrates) the store a URL names.
pub async fn open_store_with(
    url: &str,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite(path) => Arc::new(crate::SqliteStore::open(&path, options).await?),
        DatabaseUrl::Postgres(url) => Arc::new(crate::PostgresStore::open(&url, options).await?),
    })
}

/// Queues a message with many recipients (a bulk merge): the message with the first
/// `batch` recipients in one transaction, then the rest `batch` at a time, each batch
/// its own transaction. The id is returned once every batch is committed.
pub async fn enqueue_in_batches(
    store: &dyn Store,
    mut message: NewMessage,
    batch: usize,
) -> Result<Enqueued, StoreError> {
    let batch = batch.max(1);
    let rest = if message.recipients.len() > batch {
        message.recipients.split_off(batch)
    } else {
        Vec::new()
    };
    let enqueued = store.enqueue(message).await?;
    if enqueued.existing {
        return Ok(enqueued);
    }
    let mut rest = rest.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<NewRecipient> = rest.by_ref().take(batch).collect();
        store.add_recipients(&enqueued.id, chunk).await?;
    }
    Ok(enqueued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://outbox.db").unwrap(),
            DatabaseUrl::Sqlite("outbox.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/outbox.db").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/outbox.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://root@127.0.0.1/test").unwrap(),
            DatabaseUrl::Postgres("postgres://root@127.0.0.1/test".into())
        );
        for bad in ["mysql://x", "outbox.db", "sqlite://"] {
            assert!(
                matches!(DatabaseUrl::parse(bad), Err(StoreError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_hides_the_database_password() {
        let url = DatabaseUrl::parse("postgres://app:pg-Secret@127.0.0.1/db").unwrap();
        let shown = format!("{url:?}");
        assert!(!shown.contains("pg-Secret"), "{shown}");
        assert!(shown.contains("postgres://app:***@127.0.0.1/db"), "{shown}");
        let err = DatabaseUrl::parse("mysql://root:pg-Secret@h/db").unwrap_err();
        assert!(!err.to_string().contains("pg-Secret"), "{err}");
    }
}
