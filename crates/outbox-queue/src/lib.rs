//! Outbox's durable email queue as a library: messages stored once in SQLite (the
//! default) or PostgreSQL (a database several workers share), one row per envelope
//! recipient, leases that let several workers deliver from one queue without sending
//! anything twice, and the delivery engine — retries with backoff, traffic shaping per
//! destination, suppressions, DKIM signing — through a relay or straight to each domain's
//! MX hosts.
//!
//! # From a message to a delivered message
//!
//! [`Outbox`] is the one entry point: open it on a database URL, queue messages
//! ([`Outbox::send`], [`Outbox::queue`] for MIME you composed, [`Outbox::batch`] for many in
//! one transaction), read their [`Outbox::status`] and [`Outbox::detail`], and run the engine
//! ([`Outbox::deliver_until_empty`], or [`Outbox::run`] in a long-running program):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let relay = outbox_smtp::server::Server::builder().bind("127.0.0.1:0").await?;
//! # let relay_url = format!("smtp://{}?starttls=off", relay.local_addr());
//! # let dir = tempfile::tempdir()?;
//! # let database = format!("sqlite://{}", dir.path().join("outbox.db").display());
//! use outbox_queue::{EmailSpec, Outbox};
//!
//! let outbox = Outbox::builder(&database).relay(&relay_url).open().await?;
//! let message = EmailSpec::builder()
//!     .from("app@example.com")
//!     .to("ann@example.net")
//!     .subject("Welcome")
//!     .text("Hello Ann\n")
//!     .into_spec();
//! let id = outbox.send(&message).await?.id;
//! outbox.deliver_until_empty().await?;
//! assert_eq!(outbox.status(&id).await?.as_str(), "sent");
//! # assert_eq!(relay.memory_sink().unwrap().messages().len(), 1);
//! # Ok(()) }
//! ```
//!
//! `database` is `sqlite://path/outbox.db` or `postgres://user@host/db`; `relay_url` is
//! `smtp://user:pw@relay.example.com:587?starttls=required` (the forms of
//! [`outbox_smtp::ServerSpec::parse`]). Without [`OutboxBuilder::relay`] each recipient's
//! domain is delivered to through its MX hosts. The examples (`cargo run -p outbox-queue
//! --example NAME`): `sqlite_queue_and_deliver`, `postgres`, `axum_embed` (the engine inside
//! a web application).
//!
//! # The queue underneath
//!
//! A message is queued once — its MIME data stored once, even for a merge to 100 000
//! recipients — and each envelope recipient is a row with its own state:
//! `queued -> sending (leased) -> sent | deferred | failed`, or `removed` by an operator,
//! `suppressed` by the suppression list, `bounced` or `complained` by feedback
//! ([`Store::record_feedback`], [`Verp`]).
//! A message's status (`queued`, `sent`, `error`) is derived from its recipients. The
//! [`Store`] trait is that queue ([`open_store`] opens one from a URL):
//!
//! ```no_run
//! # async fn demo() -> Result<(), outbox_queue::StoreError> {
//! use outbox_queue::{NewMessage, NewRecipient, open_store};
//!
//! let store = open_store("sqlite://outbox.db").await?;
//! let mut message = NewMessage::default();
//! message.data = b"Subject: hi\r\n\r\nhello\r\n".to_vec();
//! message.envelope_from = "app@example.com".into();
//! message.recipients = vec![NewRecipient::new("bob@example.net")];
//! message.subject = "hi".into();
//! let queued = store.enqueue(message).await?;
//! println!("{}", queued.id);
//! assert_eq!(store.status(&queued.id).await?.as_str(), "queued");
//! # Ok(()) }
//! ```
//!
//! The delivery engine ([`engine`]) claims work with [`Store::claim`] /
//! [`Store::claim_route`], keeps its claims alive with [`Store::heartbeat`], and records each
//! attempt with [`Store::complete`]. A worker that dies stops its heartbeat: [`Store::recover`]
//! (run by any live or restarted worker) makes its recipients due again, at once when the dead
//! worker ran on the same host, else once its lease has run out.
//!
//! # Stability
//!
//! Settings and inputs that grow with Outbox ([`engine::EngineConfig`], [`NewMessage`],
//! [`StoreOptions`], the list filters, …) are `#[non_exhaustive]`: start from
//! `Default::default()` and set the fields you need, so a new field is not a breaking
//! change. So are the enums that gain variants (states, events, errors): match them with a
//! `_` arm.
//!
//! # Feature flags
//!
//! None: SQLite (bundled) and PostgreSQL are both always built.
#![warn(missing_docs)]

pub mod engine;
mod error;
mod events;
mod feedback;
mod group_commit;
mod idempotency;
mod listing;
mod model;
mod open;
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
mod verp;
pub mod webhooks;

pub use error::{StoreError, human_size, sizes};
pub use events::{
    Event, EventDelivery, EventFilter, EventPage, EventType, WebhookBacklog, WebhookBatch,
    WebhookResult, WebhookRoute,
};
pub use feedback::{
    FeedbackApplied, FeedbackFilter, FeedbackKind, FeedbackRecord, MAX_FEEDBACK_TEXT,
    MAX_KEPT_REPORT, MAX_MESSAGE_ID, MAX_UNMATCHED_REPORTS, NewFeedback, normalise_message_id,
};
pub use model::{
    AttemptOutcome, AttemptRecord, Claimed, ClaimedRecipient, Delivery, Enqueued, ListFilter,
    ListPage, MergeValues, MessageBody, MessageDetail, MessageStatus, MessageSummary, NewMessage,
    NewRecipient, Outcome, Priority, RecipientState, RecipientStatus, RequestKey, RouteFilter,
    RouteKey, StatusCounts, StoreOptions, StoredSuspension, WorkerInfo,
};
pub use open::OutboxBuilder;
pub use outbox::{
    ImmediateResult, Outbox, OutboxError, RawMessage, deliver_now, prepare, prepare_raw,
    prepare_with,
};
/// The message spec [`Outbox::send`] takes, from `outbox-mime` (so that `outbox-queue` alone
/// is enough to send).
pub use outbox_mime::{EmailBuilder, EmailSpec};
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
pub use verp::{VERP_PREFIX, Verp};
