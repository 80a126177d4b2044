//! The PostgreSQL backend: tokio-postgres through a small deadpool pool.
//!
//! Claims are one `UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)` statement, so
//! workers in any number of processes take disjoint recipients without waiting on each
//! other. Batched writes (recipients of a bulk merge, outcomes) pass arrays and `UNNEST`
//! them: one round trip per batch, not per row. Each enqueue sends `NOTIFY
//! outbox_enqueued` in its transaction, delivered on commit to every listening engine.
//! Connections are plain TCP or Unix sockets (no TLS): the database is expected on the
//! same host or a trusted network.

mod admin;
mod enqueue;
pub(crate) mod events;
mod feedback;
mod group;
pub(crate) mod ledger;
mod listen;
mod suppress;
mod suspensions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

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
use crate::prepare::{IdGenerator, check_id, prepare_message};
use crate::store::{Backend, Store, StoreFuture};
use crate::suppression::{NewSuppression, Suppression, SuppressionFilter, SuppressionPage};
use crate::{StoreError, StoreOptions, schema};

/// Connections the pool keeps at most.
const POOL_SIZE: usize = 8;

/// Arbitrary key of the advisory lock that serializes migrations between processes.
const MIGRATION_LOCK: i64 = 0x6f75_7462_6f78;

/// A [`Store`] in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    options: StoreOptions,
    ids: IdGenerator,
    enqueued: Arc<Notify>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// The producers' writes, committed in groups (see `group`).
    group: Arc<group::GroupCommit>,
}

impl PostgresStore {
    /// Checks and inserts messages in one transaction (see `enqueue::insert_messages`).
    async fn insert(
        &self,
        messages: Vec<NewMessage>,
        key: Option<RequestKey>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let prepared = messages
            .into_iter()
            .map(|m| prepare_message(m, &self.options, &self.ids, now))
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        group::submit(
            &self.group,
            &self.pool,
            crate::group_commit::Job::Insert {
                messages: prepared,
                key,
                reply,
            },
        );
        let enqueued = answer.await.map_err(|_| group_failed())??;
        self.enqueued.notify_one();
        Ok(enqueued)
    }

    /// Producer transactions so far: concurrent enqueues share them (group commit), so
    /// under concurrency this stays below the number of requests. For tests and
    /// benchmarks.
    #[doc(hidden)]
    pub fn producer_commits(&self) -> u64 {
        self.group.commits()
    }

    /// Producer requests (enqueues, added recipients) submitted and not answered yet.
    /// For tests that need requests to pile up behind a held lock.
    #[doc(hidden)]
    pub fn producer_requests_waiting(&self) -> u64 {
        self.group.waiting()
    }

    /// Connects to the database a `postgres://` URL names and applies pending migrations.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|err| StoreError::invalid_url(url, format!("{err}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|err| StoreError::invalid_url(url, err.to_string()))?;
        let store = PostgresStore {
            pool,
            config,
            options,
            ids: IdGenerator::new(),
            enqueued: Arc::new(Notify::new()),
            listener: Mutex::new(None),
            group: Arc::new(group::GroupCommit::new()),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        let known = schema::POSTGRES.last().map_or(0, |(version, _)| *version);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (version, sql) in schema::POSTGRES {
            if *version > current {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[version, &crate::timefmt::to_ms(OffsetDateTime::now_utc())],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The error of a producer request whose committer stopped before answering it.
fn group_failed() -> StoreError {
    StoreError::Worker("the PostgreSQL group committer stopped before answering".to_string())
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            listener.abort();
        }
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
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
                &self.group,
                &self.pool,
                crate::group_commit::Job::AddRecipients {
                    message_id: message_id.to_string(),
                    recipients,
                    reply,
                },
            );
            let added = answer.await.map_err(|_| group_failed())??;
            self.enqueued.notify_one();
            Ok(added)
        })
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            ledger::claim(&mut client, owner, None, now, limit).await
        })
    }

    fn claim_route<'a>(
        &'a self,
        owner: &'a str,
        route: &'a RouteFilter,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            ledger::claim(&mut client, owner, Some(route), now, limit).await
        })
    }

    fn heartbeat(&self, worker: &WorkerInfo, lease: Duration) -> StoreFuture<'_, ()> {
        let worker = worker.clone();
        Box::pin(async move {
            let client = self.pool.get().await?;
            ledger::heartbeat(&client, &worker, lease).await
        })
    }

    fn recover(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            let resumed = ledger::recover(&mut client).await?;
            if resumed > 0 {
                self.enqueued.notify_one();
            }
            Ok(resumed)
        })
    }

    fn retire(&self, owner: &str) -> StoreFuture<'_, ()> {
        let owner = owner.to_string();
        Box::pin(async move {
            let client = self.pool.get().await?;
            ledger::retire(&client, &owner).await
        })
    }

    fn release<'a>(
        &'a self,
        owner: &'a str,
        recipient_ids: &'a [i64],
        now: OffsetDateTime,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            ledger::release(&client, owner, recipient_ids, now).await
        })
    }

    fn complete<'a>(&'a self, owner: &'a str, outcomes: Vec<Outcome>) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            ledger::complete(&mut client, owner, outcomes).await
        })
    }

    fn message_bodies<'a>(
        &'a self,
        message_ids: &'a [String],
    ) -> StoreFuture<'a, Vec<(String, MessageBody)>> {
        Box::pin(async move {
            message_ids.iter().try_for_each(|id| check_id(id))?;
            ledger::message_bodies(&self.pool.get().await?, message_ids).await
        })
    }

    fn message_body<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageBody> {
        Box::pin(async move {
            check_id(message_id)?;
            admin::message_body(&self.pool.get().await?, message_id).await
        })
    }

    fn status<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageStatus> {
        Box::pin(async move {
            check_id(message_id)?;
            admin::status(&**self.pool.get().await?, message_id).await
        })
    }

    fn detail<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageDetail> {
        Box::pin(async move {
            check_id(message_id)?;
            admin::detail(&**self.pool.get().await?, message_id).await
        })
    }

    fn summary<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, MessageSummary> {
        Box::pin(async move {
            check_id(message_id)?;
            admin::summary(&**self.pool.get().await?, message_id).await
        })
    }

    fn list(&self, filter: ListFilter) -> StoreFuture<'_, ListPage> {
        Box::pin(async move { admin::list(&**self.pool.get().await?, &filter).await })
    }

    fn counts(&self) -> StoreFuture<'_, StatusCounts> {
        Box::pin(async move { admin::counts(&**self.pool.get().await?).await })
    }

    fn remove<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            check_id(message_id)?;
            let mut client = self.pool.get().await?;
            admin::remove(&mut client, message_id).await
        })
    }

    fn retry<'a>(&'a self, message_id: &'a str, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            check_id(message_id)?;
            let mut client = self.pool.get().await?;
            let retried = admin::retry(&mut client, message_id, now).await?;
            self.enqueued.notify_one();
            Ok(retried)
        })
    }

    fn purge(&self, before: OffsetDateTime) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            admin::purge(&mut client, before).await
        })
    }

    fn attempts<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>> {
        Box::pin(async move {
            check_id(message_id)?;
            admin::attempts(&**self.pool.get().await?, message_id).await
        })
    }

    fn next_due(&self) -> StoreFuture<'_, Option<OffsetDateTime>> {
        Box::pin(async move { ledger::next_due(&self.pool.get().await?).await })
    }

    fn has_due(&self, now: OffsetDateTime) -> StoreFuture<'_, bool> {
        Box::pin(async move { ledger::has_due(&self.pool.get().await?, now).await })
    }

    fn suspend(&self, suspension: StoredSuspension) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            suspensions::suspend(&client, &suspension, OffsetDateTime::now_utc()).await
        })
    }

    fn lift_suspension<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move { suspensions::lift(&self.pool.get().await?, destination).await })
    }

    fn suspensions(&self, now: OffsetDateTime) -> StoreFuture<'_, Vec<StoredSuspension>> {
        Box::pin(async move { suspensions::active(&self.pool.get().await?, now).await })
    }

    fn pending_domains<'a>(
        &'a self,
        message_ids: &'a [String],
    ) -> StoreFuture<'a, HashMap<String, Vec<String>>> {
        Box::pin(async move {
            message_ids.iter().try_for_each(|id| check_id(id))?;
            suspensions::pending_domains(&self.pool.get().await?, message_ids).await
        })
    }

    fn record_feedback(&self, report: NewFeedback) -> StoreFuture<'_, FeedbackApplied> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            feedback::record(&mut client, &report, OffsetDateTime::now_utc()).await
        })
    }

    fn feedback_list(&self, filter: FeedbackFilter) -> StoreFuture<'_, Vec<FeedbackRecord>> {
        Box::pin(async move { feedback::list(&self.pool.get().await?, &filter).await })
    }

    fn feedback_raw(&self, id: i64) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move { feedback::raw(&self.pool.get().await?, id).await })
    }

    fn suppress(&self, suppression: NewSuppression) -> StoreFuture<'_, Suppression> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            suppress::add(&client, &suppression, OffsetDateTime::now_utc()).await
        })
    }

    fn unsuppress<'a>(&'a self, address: &'a str, list: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move { suppress::remove(&self.pool.get().await?, address, list).await })
    }

    fn suppressions_list(&self, filter: SuppressionFilter) -> StoreFuture<'_, SuppressionPage> {
        Box::pin(async move { suppress::list(&self.pool.get().await?, &filter).await })
    }

    fn suppressed<'a>(
        &'a self,
        addresses: &'a [String],
        list: &'a str,
    ) -> StoreFuture<'a, Vec<Suppression>> {
        Box::pin(async move { suppress::matching(&self.pool.get().await?, addresses, list).await })
    }

    fn events(&self, filter: EventFilter) -> StoreFuture<'_, EventPage> {
        Box::pin(async move { events::list(&self.pool.get().await?, &filter).await })
    }

    fn event_deliveries<'a>(&'a self, event_ids: &'a [i64]) -> StoreFuture<'a, Vec<EventDelivery>> {
        Box::pin(async move { events::deliveries(&self.pool.get().await?, event_ids).await })
    }

    fn dispatch_events<'a>(
        &'a self,
        webhooks: &'a [WebhookRoute],
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            events::dispatch(&mut client, webhooks, now, limit).await
        })
    }

    fn lock_webhook<'a>(
        &'a self,
        webhook: &'a str,
        owner: &'a str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        Box::pin(
            async move { events::lock(&self.pool.get().await?, webhook, owner, now, until).await },
        )
    }

    fn webhook_batch<'a>(
        &'a self,
        webhook: &'a str,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, WebhookBatch> {
        Box::pin(async move { events::batch(&self.pool.get().await?, webhook, now, limit).await })
    }

    fn webhook_result<'a>(
        &'a self,
        webhook: &'a str,
        event_ids: &'a [i64],
        result: WebhookResult,
        now: OffsetDateTime,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            events::result(&self.pool.get().await?, webhook, event_ids, &result, now).await
        })
    }

    fn webhook_backlog(&self) -> StoreFuture<'_, Vec<WebhookBacklog>> {
        Box::pin(async move { events::backlog(&self.pool.get().await?).await })
    }

    fn prune_events(&self, before: OffsetDateTime, limit: usize) -> StoreFuture<'_, u64> {
        Box::pin(async move { events::prune(&self.pool.get().await?, before, limit).await })
    }

    fn enqueued(&self) -> Arc<Notify> {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let task = listen::listen(self.config.clone(), Arc::clone(&self.enqueued));
            *listener = Some(runtime.spawn(task));
        }
        Arc::clone(&self.enqueued)
    }
}
