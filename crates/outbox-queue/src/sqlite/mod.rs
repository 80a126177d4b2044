//! The SQLite backend: one database file in WAL mode, created on first use.
//!
//! rusqlite is synchronous, so statements run on tokio's blocking pool. Writes go through
//! one writer connection (SQLite allows one writer at a time anyway) and start with
//! `BEGIN IMMEDIATE`, which makes a claim atomic: nobody else can write between the
//! select and the update. Reads use a small pool of reader connections, which WAL lets
//! run beside the writer. `synchronous = FULL` makes each commit durable before the
//! enqueue returns its id. Other processes (a CLI `send` beside a running daemon) share
//! the file; `busy_timeout` makes them wait for each other instead of failing.

mod admin;
mod enqueue;
pub(crate) mod events;
mod feedback;
mod group;
pub(crate) mod ledger;
mod suppress;
mod suspensions;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
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
use crate::prepare::{IdGenerator, check_id};
use crate::store::{Backend, Store, StoreFuture};
use crate::suppression::{NewSuppression, Suppression, SuppressionFilter, SuppressionPage};
use crate::{StoreError, StoreOptions, schema};

/// Reader connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;

/// Page cache of the writer connection, in KiB (SQLite's default is 2 MB).
const WRITER_CACHE_KIB: i64 = 32_768;

/// Page cache of each reader connection, in KiB.
const READER_CACHE_KIB: i64 = 8_192;

/// A [`Store`] in one SQLite file.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    options: StoreOptions,
    ids: IdGenerator,
    enqueued: Arc<Notify>,
    /// The producers' writes, committed in groups (see `group`).
    group: group::GroupCommit,
}

impl SqliteStore {
    /// Checks and inserts messages in one transaction (see `enqueue::insert_messages`).
    async fn insert(
        &self,
        messages: Vec<NewMessage>,
        key: Option<RequestKey>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let prepared = messages
            .into_iter()
            .map(|m| crate::prepare::prepare_message(m, &self.inner.options, &self.inner.ids, now))
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        group::submit(
            &self.inner,
            crate::group_commit::Job::Insert {
                messages: prepared,
                key,
                reply,
            },
        );
        let enqueued = answer.await.map_err(|_| group_failed())??;
        self.inner.enqueued.notify_one();
        Ok(enqueued)
    }

    /// Producer commits so far: concurrent enqueues share one (group commit), so under
    /// concurrency this stays below the number of requests. For tests and benchmarks.
    #[doc(hidden)]
    pub fn producer_commits(&self) -> u64 {
        self.inner.group.commits()
    }

    /// Producer requests (enqueues, added recipients) submitted and not answered yet.
    /// For tests that need requests to pile up behind a held write lock.
    #[doc(hidden)]
    pub fn producer_requests_waiting(&self) -> u64 {
        self.inner.group.waiting()
    }

    /// Opens the database at `path` (creating the file and its directory entries'
    /// tables if missing) and applies pending migrations.
    pub async fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let store = tokio::task::spawn_blocking(move || -> Result<SqliteStore, StoreError> {
            let mut writer = connect(&path, true)?;
            migrate(&mut writer)?;
            Ok(SqliteStore {
                inner: Arc::new(Inner {
                    path,
                    writer: Mutex::new(writer),
                    readers: Mutex::new(Vec::new()),
                    options,
                    ids: IdGenerator::new(),
                    enqueued: Arc::new(Notify::new()),
                    group: group::GroupCommit::new(),
                }),
            })
        })
        .await
        .map_err(|err| StoreError::Worker(err.to_string()))??;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer connection and
    /// commits it.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx, &inner)?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(|err| StoreError::Worker(err.to_string()))?
    }

    /// Runs `f` on a reader connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let idle = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match idle {
                Some(conn) => conn,
                None => connect(&inner.path, false)?,
            };
            let value = f(&conn);
            let mut readers = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if readers.len() < MAX_IDLE_READERS {
                readers.push(conn);
            }
            value
        })
        .await
        .map_err(|err| StoreError::Worker(err.to_string()))?
    }
}

/// The error of a producer request whose committer stopped before answering it.
fn group_failed() -> StoreError {
    StoreError::Worker("the SQLite group committer stopped before answering".to_string())
}

/// Opens a connection with the pragmas every connection needs: the writer (which also
/// creates the file) or a reader.
fn connect(path: &Path, writer: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if writer {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let open_error = |error| StoreError::Open {
        path: path.to_path_buf(),
        error,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open_error)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_error)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_error)?;
    // The writer: a 32 MB page cache (the default is 2 MB) and a 40 MB WAL between
    // checkpoints keep big batches from re-reading and re-syncing the same index pages.
    // Any cache fills up to its size on a big queue (heaptrack, bench/memory.sh: the
    // writer's 64 MB cache, filled by the event dispatcher walking 1 000 000 events, was
    // most of a 108 MB peak RSS; with 32 MB it is 77 MB and filling 1 000 000 messages is
    // as fast). Readers mostly fetch one message body by id, read once: a small cache each.
    let cache_kib = if writer {
        WRITER_CACHE_KIB
    } else {
        READER_CACHE_KIB
    };
    conn.pragma_update(None, "cache_size", -cache_kib)
        .map_err(open_error)?;
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)
        .map_err(open_error)?;
    Ok(conn)
}

/// Applies the migrations newer than the recorded version, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let known = schema::SQLITE.last().map_or(0, |(version, _)| *version);
    for (version, sql) in schema::SQLITE {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )?;
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        if current < *version {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                (version, crate::timefmt::to_ms(OffsetDateTime::now_utc())),
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn enqueue_batch(&self, messages: Vec<NewMessage>) -> StoreFuture<'_, Vec<Enqueued>> {
        Box::pin(self.insert(messages, None))
    }

    fn enqueue_keyed(
        &self,
        messages: Vec<NewMessage>,
        key: RequestKey,
    ) -> StoreFuture<'_, Vec<Enqueued>> {
        Box::pin(self.insert(messages, Some(key)))
    }

    fn add_recipients<'a>(
        &'a self,
        message_id: &'a str,
        recipients: Vec<NewRecipient>,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            check_id(message_id)?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            group::submit(
                &self.inner,
                crate::group_commit::Job::AddRecipients {
                    message_id: message_id.to_string(),
                    recipients,
                    reply,
                },
            );
            let added = answer.await.map_err(|_| group_failed())??;
            self.inner.enqueued.notify_one();
            Ok(added)
        })
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        let owner = owner.to_string();
        Box::pin(self.write(move |tx, _| ledger::claim(tx, &owner, None, now, limit)))
    }

    fn claim_route<'a>(
        &'a self,
        owner: &'a str,
        route: &'a RouteFilter,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        let owner = owner.to_string();
        let route = route.clone();
        Box::pin(self.write(move |tx, _| ledger::claim(tx, &owner, Some(&route), now, limit)))
    }

    fn heartbeat(&self, worker: &WorkerInfo, lease: Duration) -> StoreFuture<'_, ()> {
        let worker = worker.clone();
        Box::pin(self.write(move |tx, _| ledger::heartbeat(tx, &worker, lease)))
    }

    fn recover(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let resumed = self.write(|tx, _| ledger::recover(tx)).await?;
            if resumed > 0 {
                self.inner.enqueued.notify_one();
            }
            Ok(resumed)
        })
    }

    fn retire(&self, owner: &str) -> StoreFuture<'_, ()> {
        let owner = owner.to_string();
        Box::pin(self.write(move |tx, _| ledger::retire(tx, &owner)))
    }

    fn release<'a>(
        &'a self,
        owner: &'a str,
        recipient_ids: &'a [i64],
        now: OffsetDateTime,
    ) -> StoreFuture<'a, u64> {
        let owner = owner.to_string();
        let ids = recipient_ids.to_vec();
        Box::pin(self.write(move |tx, _| ledger::release(tx, &owner, &ids, now)))
    }

    fn complete<'a>(&'a self, owner: &'a str, outcomes: Vec<Outcome>) -> StoreFuture<'a, u64> {
        let owner = owner.to_string();
        Box::pin(self.write(move |tx, _| ledger::complete(tx, &owner, outcomes)))
    }

    fn message_bodies<'a>(
        &'a self,
        message_ids: &'a [String],
    ) -> StoreFuture<'a, Vec<(String, MessageBody)>> {
        let ids = message_ids.to_vec();
        Box::pin(async move {
            ids.iter().try_for_each(|id| check_id(id))?;
            self.read(move |conn| ledger::message_bodies(conn, &ids))
                .await
        })
    }

    fn message_body<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageBody> {
        let id = message_id.to_string();
        Box::pin(async move {
            check_id(&id)?;
            self.read(move |conn| admin::message_body(conn, &id)).await
        })
    }

    fn status<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageStatus> {
        let id = message_id.to_string();
        Box::pin(async move {
            check_id(&id)?;
            self.read(move |conn| admin::status(conn, &id)).await
        })
    }

    fn detail<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageDetail> {
        let id = message_id.to_string();
        Box::pin(async move {
            check_id(&id)?;
            self.read(move |conn| admin::detail(conn, &id)).await
        })
    }

    fn summary<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageSummary> {
        let id = message_id.to_string();
        Box::pin(async move {
            check_id(&id)?;
            self.read(move |conn| admin::summary(conn, &id)).await
        })
    }

    fn list(&self, filter: ListFilter) -> StoreFuture<'_, ListPage> {
        Box::pin(self.read(move |conn| admin::list(conn, &filter)))
    }

    fn counts(&self) -> StoreFuture<'_, StatusCounts> {
        Box::pin(self.read(admin::counts))
    }

    fn remove<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, u64> {
        let id = message_id.to_string();
        Box::pin(async move {
            check_id(&id)?;
            self.write(move |tx, _| admin::remove(tx, &id)).await
        })
    }

    fn retry<'a>(&'a self, message_id: &'a str, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        let id = message_id.to_string();
        Box::pin(async move {
            check_id(&id)?;
            let retried = self.write(move |tx, _| admin::retry(tx, &id, now)).await?;
            self.inner.enqueued.notify_one();
            Ok(retried)
        })
    }

    fn purge(&self, before: OffsetDateTime) -> StoreFuture<'_, u64> {
        Box::pin(self.write(move |tx, _| admin::purge(tx, before)))
    }

    fn attempts<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>> {
        let id = message_id.to_string();
        Box::pin(async move {
            check_id(&id)?;
            self.read(move |conn| admin::attempts(conn, &id)).await
        })
    }

    fn next_due(&self) -> StoreFuture<'_, Option<OffsetDateTime>> {
        Box::pin(self.read(ledger::next_due))
    }

    fn has_due(&self, now: OffsetDateTime) -> StoreFuture<'_, bool> {
        Box::pin(self.read(move |conn| ledger::has_due(conn, now)))
    }

    fn suspend(&self, suspension: StoredSuspension) -> StoreFuture<'_, ()> {
        Box::pin(
            self.write(move |tx, _| {
                suspensions::suspend(tx, &suspension, OffsetDateTime::now_utc())
            }),
        )
    }

    fn lift_suspension<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, ()> {
        let destination = destination.to_string();
        Box::pin(self.write(move |tx, _| suspensions::lift(tx, &destination)))
    }

    fn suspensions(&self, now: OffsetDateTime) -> StoreFuture<'_, Vec<StoredSuspension>> {
        Box::pin(self.read(move |conn| suspensions::active(conn, now)))
    }

    fn pending_domains<'a>(
        &'a self,
        message_ids: &'a [String],
    ) -> StoreFuture<'a, HashMap<String, Vec<String>>> {
        let ids = message_ids.to_vec();
        Box::pin(async move {
            ids.iter().try_for_each(|id| check_id(id))?;
            self.read(move |conn| suspensions::pending_domains(conn, &ids))
                .await
        })
    }

    fn record_feedback(&self, report: NewFeedback) -> StoreFuture<'_, FeedbackApplied> {
        Box::pin(self.write(move |tx, _| feedback::record(tx, &report, OffsetDateTime::now_utc())))
    }

    fn feedback_list(&self, filter: FeedbackFilter) -> StoreFuture<'_, Vec<FeedbackRecord>> {
        Box::pin(self.read(move |conn| feedback::list(conn, &filter)))
    }

    fn feedback_raw(&self, id: i64) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(self.read(move |conn| feedback::raw(conn, id)))
    }

    fn suppress(&self, suppression: NewSuppression) -> StoreFuture<'_, Suppression> {
        Box::pin(
            self.write(move |tx, _| suppress::add(tx, &suppression, OffsetDateTime::now_utc())),
        )
    }

    fn unsuppress<'a>(&'a self, address: &'a str, list: &'a str) -> StoreFuture<'a, bool> {
        let address = address.to_string();
        let list = list.to_string();
        Box::pin(self.write(move |tx, _| suppress::remove(tx, &address, &list)))
    }

    fn suppressions_list(&self, filter: SuppressionFilter) -> StoreFuture<'_, SuppressionPage> {
        Box::pin(self.read(move |conn| suppress::list(conn, &filter)))
    }

    fn suppressed<'a>(
        &'a self,
        addresses: &'a [String],
        list: &'a str,
    ) -> StoreFuture<'a, Vec<Suppression>> {
        let addresses = addresses.to_vec();
        let list = list.to_string();
        Box::pin(self.read(move |conn| suppress::matching(conn, &addresses, &list)))
    }

    fn events(&self, filter: EventFilter) -> StoreFuture<'_, EventPage> {
        Box::pin(self.read(move |conn| events::list(conn, &filter)))
    }

    fn event_deliveries<'a>(&'a self, event_ids: &'a [i64]) -> StoreFuture<'a, Vec<EventDelivery>> {
        let ids = event_ids.to_vec();
        Box::pin(self.read(move |conn| events::deliveries(conn, &ids)))
    }

    fn dispatch_events<'a>(
        &'a self,
        webhooks: &'a [WebhookRoute],
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, u64> {
        let webhooks = webhooks.to_vec();
        Box::pin(self.write(move |tx, _| events::dispatch(tx, &webhooks, now, limit)))
    }

    fn lock_webhook<'a>(
        &'a self,
        webhook: &'a str,
        owner: &'a str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        let webhook = webhook.to_string();
        let owner = owner.to_string();
        Box::pin(self.write(move |tx, _| events::lock(tx, &webhook, &owner, now, until)))
    }

    fn webhook_batch<'a>(
        &'a self,
        webhook: &'a str,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, WebhookBatch> {
        let webhook = webhook.to_string();
        Box::pin(self.read(move |conn| events::batch(conn, &webhook, now, limit)))
    }

    fn webhook_result<'a>(
        &'a self,
        webhook: &'a str,
        event_ids: &'a [i64],
        result: WebhookResult,
        now: OffsetDateTime,
    ) -> StoreFuture<'a, ()> {
        let webhook = webhook.to_string();
        let ids = event_ids.to_vec();
        Box::pin(self.write(move |tx, _| events::result(tx, &webhook, &ids, &result, now)))
    }

    fn webhook_backlog(&self) -> StoreFuture<'_, Vec<WebhookBacklog>> {
        Box::pin(self.read(events::backlog))
    }

    fn prune_events(&self, before: OffsetDateTime, limit: usize) -> StoreFuture<'_, u64> {
        Box::pin(self.write(move |tx, _| events::prune(tx, before, limit)))
    }

    fn enqueued(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.enqueued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made before migration 2 keeps its keyed rows, now in the empty scope,
    /// and gets the scoped unique index; migration 3 moves its data into `bodies`.
    #[test]
    fn migrations_upgrade_a_version_1_database() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("old.db")).unwrap();
        conn.execute_batch(schema::SQLITE[0].1).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0);
             INSERT INTO messages (id, created_at, send_at, priority, envelope_from, subject, size,
                data, idempotency_key, status, recipient_count)
             VALUES ('01JD2W6Q0R9N6X4Y7Z8A1B2C3D', 0, 0, 1, 'a@b.test', 's', 1, x'41', 'k', 'queued', 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (scope, hash, index): (String, Option<String>, i64) = conn
            .query_row(
                "SELECT idempotency_scope, request_hash, idempotency_index FROM messages",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!((scope.as_str(), hash, index), ("", None, 0));
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            indexes.contains(&"messages_idempotency".to_string()),
            "{indexes:?}"
        );
        assert!(
            !indexes.contains(&"messages_idempotency_key".to_string()),
            "{indexes:?}"
        );
        let data: Vec<u8> = conn
            .query_row("SELECT data FROM bodies", [], |row| row.get(0))
            .unwrap();
        assert_eq!(data, b"A");
        // The same key in another scope is allowed now.
        conn.execute(
            "INSERT INTO messages (id, created_at, send_at, priority, envelope_from, subject, size,
                idempotency_key, status, recipient_count, idempotency_scope)
             VALUES ('01JD2W6Q0R9N6X4Y7Z8A1B2C3E', 0, 0, 1, 'a@b.test', 's', 1, 'k', 'queued', 0, 'tok')",
            [],
        )
        .unwrap();
    }
}
