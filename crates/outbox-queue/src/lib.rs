//! Outbox's durable queue: the [`Store`] (SQLite by default, PostgreSQL for a shared
//! database), its schema migrations, and the leases that let several workers deliver
//! from one queue without sending anything twice.
//!
//! A message is queued once — its MIME data stored once, even for a merge to 100 000
//! recipients — and each envelope recipient is a row with its own state:
//! `queued -> sending (leased) -> sent | deferred | failed`, or `removed` by an operator,
//! `suppressed` by the suppression list, `bounced` or `complained` by feedback
//! ([`feedback`], [`verp`]).
//! A message's status (`queued`, `sent`, `error`) is derived from its recipients.
//!
//! ```no_run
//! # async fn demo() -> Result<(), outbox_queue::StoreError> {
//! use outbox_queue::{NewMessage, NewRecipient, open_store};
//!
//! let store = open_store("sqlite://outbox.db").await?;
//! let queued = store
//!     .enqueue(NewMessage {
//!         data: b"Subject: hi\r\n\r\nhello\r\n".to_vec(),
//!         envelope_from: "app@example.com".into(),
//!         recipients: vec![NewRecipient::new("bob@example.net")],
//!         subject: "hi".into(),
//!         ..NewMessage::default()
//!     })
//!     .await?;
//! println!("{}", queued.id);
//! assert_eq!(store.status(&queued.id).await?.as_str(), "queued");
//! # Ok(()) }
//! ```
//!
//! The delivery engine claims work with [`Store::claim`] / [`Store::claim_route`],
//! keeps its claims alive with [`Store::heartbeat`], and records each attempt with
//! [`Store::complete`]. A worker that dies stops its heartbeat: [`Store::recover`] (run
//! by any live or restarted worker) makes its recipients due again, at once when the dead
//! worker ran on the same host, else once its lease has run out.

pub mod engine;
mod error;
mod events;
pub mod feedback;
mod group_commit;
mod idempotency;
mod listing;
mod model;
mod outbox;
mod postgres;
mod prepare;
mod rows;
mod schema;
mod signing;
mod sqlite;
mod store;
mod suppression;
mod timefmt;
mod unsubscribe;
pub mod verp;
pub mod webhooks;

pub use error::{StoreError, human_size, sizes};
pub use events::{
    Event, EventDelivery, EventFilter, EventPage, EventType, WebhookBacklog, WebhookBatch,
    WebhookResult, WebhookRoute,
};
pub use feedback::{FeedbackApplied, FeedbackFilter, FeedbackKind, FeedbackRecord, NewFeedback};
pub use model::{
    AttemptOutcome, AttemptRecord, Claimed, ClaimedRecipient, Delivery, Enqueued, ListFilter,
    ListPage, MergeValues, MessageBody, MessageDetail, MessageStatus, MessageSummary, NewMessage,
    NewRecipient, Outcome, Priority, RecipientState, RecipientStatus, RequestKey, RouteFilter,
    RouteKey, StatusCounts, StoreOptions, StoredSuspension, WorkerInfo,
};
pub use outbox::{
    ImmediateResult, Outbox, OutboxError, RawMessage, deliver_now, prepare, prepare_raw,
    prepare_with, priority,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use store::{
    Backend, DatabaseUrl, Store, StoreFuture, claim_statement, enqueue_in_batches, open_store,
    open_store_with,
};
pub use suppression::{
    MAX_SUPPRESSION_TEXT, NewSuppression, Suppression, SuppressionFilter, SuppressionPage,
    SuppressionReason, message_list, normalise_address, normalise_list,
};
pub use timefmt::rfc3339;
pub use unsubscribe::{BadToken, Unsubscribe, UnsubscribeConfigError, UnsubscribeRequest};
pub use verp::Verp;
