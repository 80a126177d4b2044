//! The `Outbox` facade: the seed's `email_send`, `email_queue`, `email_batch`,
//! `email_status` and `email_immediate` for Rust programs, over one store and transport.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;
use time::OffsetDateTime;

use outbox_mime::dkim::DkimSigners;
use outbox_mime::{ComposeError, ComposeOptions, EmailSpec, Message, compose_with};
use outbox_smtp::{ServerSpec, SpecError};

use crate::engine::{
    Connection, Engine, EngineConfig, ErrorStage, Route, Transport, TransportError,
};
use crate::{
    Enqueued, MergeValues, MessageDetail, MessageStatus, NewMessage, NewRecipient, Priority, Store,
    StoreError, Unsubscribe,
};

/// What can go wrong handing a message to Outbox.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The message could not be composed (a missing field, a bad address, an unreadable file).
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The message's `relay` is not a server spec.
    #[error("relay: {0}")]
    Relay(#[from] SpecError),
    /// The queue refused or failed (too large, database error, unknown id).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message asks for one-click unsubscribe headers and this Outbox has no
    /// unsubscribe links to write ([`EngineConfig::unsubscribe`] is `None`).
    #[error(
        "list_unsubscribe: no unsubscribe links are configured (a base URL and a secret), \
         so the message could not carry them"
    )]
    NoUnsubscribeLinks,
    /// The SMTP transport could not be set up ([`Outbox::builder`]): the DNS resolver or the
    /// TLS trust anchors.
    #[error(transparent)]
    Transport(#[from] crate::engine::TransportSetupError),
}

/// A raw message for [`Outbox::queue`] (`email_queue`): MIME data already composed.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RawMessage {
    /// The MIME text; `#NAME#` markers are merged when `tokens` or `merge` are given.
    pub data: Vec<u8>,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// Delivery priority.
    pub priority: Priority,
    /// Not delivered before this time.
    pub send_at: Option<OffsetDateTime>,
    /// A server spec for this message instead of the configured route.
    pub relay: Option<String>,
    /// Default merge values.
    pub tokens: MergeValues,
    /// Per-recipient merge values, by address.
    pub merge: BTreeMap<String, MergeValues>,
    /// Subject, for listings.
    pub subject: String,
    /// A repeated key returns the first message's id.
    pub idempotency_key: Option<String>,
    /// The message's list for the suppression list; `None`: the header From's address.
    pub list: Option<String>,
    /// One-click unsubscribe headers per recipient ([`NewMessage::list_unsubscribe`]).
    pub list_unsubscribe: bool,
}

/// One recipient's result from [`Outbox::send_now`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmediateResult {
    /// The envelope address.
    pub address: String,
    /// True when the server accepted the message for this recipient.
    pub accepted: bool,
    /// The server's reply (starting with its code), or the error.
    pub reply: String,
}

/// Outbox for Rust programs: queue messages, ask their status, or send one at once.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use outbox_mime::EmailSpec;
/// use outbox_queue::{Outbox, open_store};
/// use outbox_queue::engine::{EngineConfig, SmtpTransport, SmtpTransportConfig};
///
/// let store = open_store("sqlite://outbox.db").await?;
/// let transport = Arc::new(SmtpTransport::new(SmtpTransportConfig::default())?);
/// let outbox = Outbox::new(store, transport, EngineConfig::default());
/// let spec = EmailSpec::builder()
///     .from("app@example.com")
///     .to("ann@example.net")
///     .subject("Welcome")
///     .text("Hello Ann")
///     .into_spec();
/// let id = outbox.send(&spec).await?.id;
/// println!("{id}: {}", outbox.status(&id).await?.as_str());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    config: EngineConfig,
}

impl Outbox {
    /// An Outbox over a store and a transport; `config` drives its [`Engine`].
    pub fn new(store: Arc<dyn Store>, transport: Arc<dyn Transport>, config: EngineConfig) -> Self {
        Outbox {
            store,
            transport,
            config,
        }
    }

    /// The store behind this Outbox.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The background sender for this Outbox's queue.
    pub fn engine(&self) -> Engine {
        Engine::new(
            self.store.clone(),
            self.transport.clone(),
            self.config.clone(),
        )
    }

    /// Composes and queues a message (`email_send`); returns its id once committed.
    pub async fn send(&self, spec: &EmailSpec) -> Result<Enqueued, OutboxError> {
        let message = self.checked(prepare(spec)?)?;
        Ok(self.store.enqueue(message).await?)
    }

    /// Queues already-composed MIME data (`email_queue`).
    pub async fn queue(&self, raw: RawMessage) -> Result<Enqueued, OutboxError> {
        let message = self.checked(prepare_raw(raw)?)?;
        Ok(self.store.enqueue(message).await?)
    }

    /// Composes and queues many messages in one transaction (`email_batch`): all or none.
    pub async fn batch(&self, specs: &[EmailSpec]) -> Result<Vec<Enqueued>, OutboxError> {
        let messages = specs
            .iter()
            .map(|spec| self.checked(prepare(spec)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.store.enqueue_batch(messages).await?)
    }

    /// `message`, unless it asks for what this Outbox cannot do.
    fn checked(&self, message: NewMessage) -> Result<NewMessage, OutboxError> {
        if message.list_unsubscribe && self.config.unsubscribe.is_none() {
            return Err(OutboxError::NoUnsubscribeLinks);
        }
        Ok(message)
    }

    /// `queued`, `sent` or `error` (`email_status`).
    pub async fn status(&self, id: &str) -> Result<MessageStatus, OutboxError> {
        Ok(self.store.status(id).await?)
    }

    /// The per-recipient view of a message.
    pub async fn detail(&self, id: &str) -> Result<MessageDetail, OutboxError> {
        Ok(self.store.detail(id).await?)
    }

    /// Composes and delivers at once, bypassing the queue and its size limit
    /// (`email_immediate`). Recipients sharing a route share a transaction; a merge
    /// message is one transaction per recipient. Recipients on the suppression list are
    /// not sent: their results say which entry stops them.
    pub async fn send_now(&self, spec: &EmailSpec) -> Result<Vec<ImmediateResult>, OutboxError> {
        self.send_now_with(spec, &ComposeOptions::default()).await
    }

    /// [`Outbox::send_now`] with composition options (the largest attachment file read).
    pub async fn send_now_with(
        &self,
        spec: &EmailSpec,
        options: &ComposeOptions,
    ) -> Result<Vec<ImmediateResult>, OutboxError> {
        let mut prepared = self.checked(prepare_with(spec, options)?)?;
        let order: Vec<String> = prepared
            .recipients
            .iter()
            .map(|r| r.address.clone())
            .collect();
        let mut results = self.refuse_suppressed(&mut prepared).await?;
        if !prepared.recipients.is_empty() {
            results.extend(
                deliver_now(
                    &*self.transport,
                    &prepared,
                    self.config.relay_configured,
                    &self.config.dkim,
                    self.config.unsubscribe.as_deref(),
                )
                .await,
            );
        }
        results.sort_by_key(|r| order.iter().position(|a| *a == r.address));
        Ok(results)
    }

    /// Takes the recipients on the suppression list (for every list or the message's) out
    /// of `message`, each as a refused result saying which entry stops it.
    async fn refuse_suppressed(
        &self,
        message: &mut NewMessage,
    ) -> Result<Vec<ImmediateResult>, OutboxError> {
        let list = crate::suppression::message_list(message)?;
        let addresses: Vec<String> = message
            .recipients
            .iter()
            .map(|r| r.address.clone())
            .collect();
        let found = self.store.suppressed(&addresses, &list).await?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut refused = Vec::new();
        message.recipients.retain(|recipient| {
            let key = crate::suppression::normalise_address(&recipient.address).unwrap_or_default();
            // The every-list entry comes first (ordered by list) and wins.
            match found.iter().find(|s| s.address == key) {
                Some(suppression) => {
                    refused.push(ImmediateResult {
                        address: recipient.address.clone(),
                        accepted: false,
                        reply: suppression.reply(),
                    });
                    false
                }
                None => true,
            }
        });
        Ok(refused)
    }
}

/// Composes a spec into what the store keeps. Validates the relay spec too, so a bad
/// relay is refused before anything is stored.
pub fn prepare(spec: &EmailSpec) -> Result<NewMessage, OutboxError> {
    prepare_with(spec, &ComposeOptions::default())
}

/// [`prepare`] with composition options: the binary passes the largest attachment file it
/// reads (`delivery.max_message_size`).
pub fn prepare_with(spec: &EmailSpec, options: &ComposeOptions) -> Result<NewMessage, OutboxError> {
    let message = compose_with(spec, options)?;
    prepare_composed(spec, message)
}

fn prepare_composed(spec: &EmailSpec, message: Message) -> Result<NewMessage, OutboxError> {
    prepare_raw(RawMessage {
        from: message.from().to_string(),
        recipients: message.recipients().to_vec(),
        data: message.into_data(),
        priority: spec.priority,
        send_at: spec.send_at,
        relay: spec.relay.clone(),
        tokens: spec.tokens.clone(),
        merge: spec.merge.clone(),
        subject: spec.subject.clone(),
        idempotency_key: None,
        list: spec.list.clone(),
        list_unsubscribe: spec.list_unsubscribe,
    })
}

/// Turns a raw message into what the store keeps: each recipient with its merge values
/// (matched on the address, case-insensitively), tokens kept once for the message.
pub fn prepare_raw(raw: RawMessage) -> Result<NewMessage, OutboxError> {
    if let Some(relay) = &raw.relay {
        ServerSpec::parse(relay)?;
    }
    let is_merge = !raw.tokens.is_empty() || !raw.merge.is_empty();
    let merge_by_address: BTreeMap<String, MergeValues> = raw
        .merge
        .into_iter()
        .map(|(address, values)| (address.trim().to_ascii_lowercase(), values))
        .collect();
    let recipients = raw
        .recipients
        .into_iter()
        .map(
            |address| match merge_by_address.get(&address.to_ascii_lowercase()) {
                Some(values) => NewRecipient::with_merge(address, values.clone()),
                None => NewRecipient::new(address),
            },
        )
        .collect();
    Ok(NewMessage {
        data: raw.data,
        envelope_from: raw.from,
        recipients,
        subject: raw.subject,
        priority: raw.priority,
        send_at: raw.send_at,
        relay: raw.relay,
        tokens: is_merge.then_some(raw.tokens),
        idempotency_key: raw.idempotency_key,
        list: raw.list,
        list_unsubscribe: raw.list_unsubscribe,
    })
}

/// Recipients grouped by route, routes in first-seen order.
fn routes(message: &NewMessage, relay_configured: bool) -> Vec<(Route, Vec<&NewRecipient>)> {
    let mut routes: Vec<(Route, Vec<&NewRecipient>)> = Vec::new();
    for recipient in &message.recipients {
        let domain = recipient.address.rsplit_once('@').map_or("", |(_, d)| d);
        let key = crate::RouteKey::for_recipient(message.relay.as_deref(), domain);
        let route = Route::for_key(&key, relay_configured);
        match routes.iter_mut().find(|(r, _)| *r == route) {
            Some((_, list)) => list.push(recipient),
            None => routes.push((route, vec![recipient])),
        }
    }
    routes
}

/// Delivers a prepared message at once over `transport`, without a store
/// (`email_immediate`): one connection per route, one transaction per route or, for a
/// merge message or one with unsubscribe headers (written by `unsubscribe`), per
/// recipient. Each transaction's data is DKIM-signed by `dkim` (per-recipient copies after
/// the merge and the headers). Results come in the order the recipients were given.
pub async fn deliver_now(
    transport: &dyn Transport,
    message: &NewMessage,
    relay_configured: bool,
    dkim: &DkimSigners,
    unsubscribe: Option<&Unsubscribe>,
) -> Vec<ImmediateResult> {
    let list = if message.list_unsubscribe {
        match crate::suppression::message_list(message) {
            Ok(list) => Some(list),
            Err(err) => {
                let reply = format!("list: {err}");
                return refuse_all(message, &reply);
            }
        }
    } else {
        None
    };
    if list.is_some() && unsubscribe.is_none() {
        return refuse_all(message, crate::signing::NO_UNSUBSCRIBE_CONFIG);
    }
    let finish = Finish {
        dkim,
        unsubscribe,
        list: list.as_deref(),
    };
    let merging = message.tokens.is_some() || message.list_unsubscribe;
    let mut results = Vec::new();
    for (route, recipients) in routes(message, relay_configured) {
        let mut connection = match transport.connect(&route).await {
            Ok(connection) => connection,
            Err(err) => {
                results.extend(recipients.iter().map(|r| failed(&r.address, &err)));
                continue;
            }
        };
        let groups: Vec<Vec<&NewRecipient>> = if merging {
            recipients.into_iter().map(|r| vec![r]).collect()
        } else {
            vec![recipients]
        };
        let mut lost = None;
        for group in groups {
            if let Some(err) = &lost {
                results.extend(group.iter().map(|r| failed(&r.address, err)));
                continue;
            }
            match transaction(&mut *connection, message, &group, merging, &finish).await {
                Ok(group_results) => results.extend(group_results),
                Err(err) => {
                    results.extend(group.iter().map(|r| failed(&r.address, &err)));
                    if err.connection_lost {
                        lost = Some(err);
                    }
                }
            }
        }
        if lost.is_none() {
            connection.close().await;
        }
    }
    let order = |address: &str| message.recipients.iter().position(|r| r.address == address);
    results.sort_by_key(|r| order(&r.address));
    results
}

/// How [`deliver_now`] finishes each transaction's data.
struct Finish<'a> {
    dkim: &'a DkimSigners,
    unsubscribe: Option<&'a Unsubscribe>,
    /// The message's list when it asked for unsubscribe headers.
    list: Option<&'a str>,
}

/// Every recipient refused with `reply`, nothing sent.
fn refuse_all(message: &NewMessage, reply: &str) -> Vec<ImmediateResult> {
    message
        .recipients
        .iter()
        .map(|r| ImmediateResult {
            address: r.address.clone(),
            accepted: false,
            reply: reply.to_string(),
        })
        .collect()
}

/// One transaction for `group`; a message written per recipient is made for its (only)
/// recipient: merged (its merge values first, then the message's tokens) and given its
/// unsubscribe headers.
async fn transaction(
    connection: &mut dyn Connection,
    message: &NewMessage,
    group: &[&NewRecipient],
    merging: bool,
    finish: &Finish<'_>,
) -> Result<Vec<ImmediateResult>, TransportError> {
    let data = match group.first() {
        Some(first) if merging => {
            let personal = crate::signing::Personal {
                address: &first.address,
                merge: first.merge.as_ref(),
                tokens: message.tokens.as_ref(),
                unsubscribe_list: finish.list,
                message_id: None,
            };
            // `deliver_now` refused the message already when the links are missing.
            let data = crate::signing::personalise(
                &message.data,
                &personal,
                finish.unsubscribe,
                finish.dkim,
            )
            .map_err(|reason| TransportError::new(ErrorStage::Local, reason, true))?;
            Cow::Owned(data)
        }
        _ => crate::signing::sign(finish.dkim, Cow::Borrowed(&message.data)),
    };
    let addresses: Vec<&str> = group.iter().map(|r| r.address.as_str()).collect();
    let report = connection
        .send(&message.envelope_from, &addresses, &data)
        .await?;
    Ok(group
        .iter()
        .enumerate()
        .map(|(index, recipient)| {
            // A refused RCPT decides for its recipient; otherwise the end-of-data reply.
            let reply = match (report.recipients.get(index), &report.data) {
                (Some(rcpt), _) if !(200..300).contains(&rcpt.code) => Some(rcpt),
                (_, Some(data)) => Some(data),
                (rcpt, None) => rcpt,
            };
            match reply {
                Some(reply) => ImmediateResult {
                    address: recipient.address.clone(),
                    accepted: (200..300).contains(&reply.code),
                    reply: reply.text.clone(),
                },
                None => ImmediateResult {
                    address: recipient.address.clone(),
                    accepted: false,
                    reply: "no reply from the server for this recipient".into(),
                },
            }
        })
        .collect())
}

fn failed(address: &str, err: &TransportError) -> ImmediateResult {
    ImmediateResult {
        address: address.to_string(),
        accepted: false,
        reply: err.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_grouped_by_route() {
        let mut message = NewMessage {
            data: b"x".to_vec(),
            envelope_from: "s@x.test".into(),
            recipients: ["a@one.test", "b@two.test", "c@ONE.test"]
                .into_iter()
                .map(NewRecipient::new)
                .collect(),
            ..NewMessage::default()
        };
        let grouped = routes(&message, false);
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped[0].0, Route::Mx("one.test".into()));
        assert_eq!(grouped[0].1.len(), 2);
        assert_eq!(
            routes(&message, true).len(),
            1,
            "a configured relay carries all"
        );
        message.relay = Some("127.0.0.1:2525".into());
        assert_eq!(
            routes(&message, false)[0].0,
            Route::Relay("127.0.0.1:2525".into())
        );
    }
}
