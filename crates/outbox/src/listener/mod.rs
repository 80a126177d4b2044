//! The SMTP submission listener of `outbox serve` (`[smtp_listener]`): the `outbox-smtp`
//! server with the queue as its sink.
//!
//! Policy (DESIGN §6, §10): AUTH PLAIN/LOGIN is required before `MAIL` except for clients
//! in `trusted_networks` (empty by default: no open relay); with a certificate it offers
//! STARTTLS (RFC 3207), and with `require_tls` it offers AUTH only after STARTTLS. It
//! advertises `SIZE` = `delivery.max_message_size` (RFC 1870). Each `MAIL FROM` and
//! `RCPT TO` address is checked with compose's rules when it arrives; a message is answered
//! `250 2.0.0 Ok: queued as ID` only once [`QueueSink`] has committed it to the store, with
//! `Date`, `Message-ID` and `Received` added and `Bcc` removed ([`submission`]). The limits
//! of `[smtp_listener]` (connections in all and per client address, recipients, commands,
//! errors, failed AUTH, idle time) are enforced by the server (docs/security.md).
//!
//! Feedback (issue 12): mail for `[bounces] domain` or `[complaints] address` is taken
//! from anyone, without AUTH, and only that: every other recipient of a client that has
//! not authenticated is refused (`530 5.7.0`), so the listener stays a closed relay. Such
//! mail is never queued: it is read as a bounce or complaint and applied ([`feedback`]).

pub mod feedback;
mod submission;

use std::sync::Arc;

use anyhow::Context;
use outbox_queue::{NewMessage, NewRecipient, Store, StoreError};
use outbox_smtp::Reply;
use outbox_smtp::server::{
    DeliverFuture, MessageSink, Network, ReceivedEnvelope, Server, StaticUsers,
    server_tls_config_from_files,
};
use submission::Role;
use time::OffsetDateTime;

use crate::config::Config;

/// Starts the listener when `smtp_listener.listen` is set; `None` when it is not.
pub async fn start(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Option<Server>> {
    let settings = &config.smtp_listener;
    let Some(listen) = settings.listen else {
        return Ok(None);
    };
    let trusted = settings
        .trusted_networks
        .iter()
        .map(|text| {
            text.parse::<Network>()
                .with_context(|| "configuration: smtp_listener.trusted_networks")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let feedback = feedback::FeedbackAddresses::from_config(config);
    if settings.users.is_empty() && trusted.is_empty() && feedback.is_none() {
        tracing::warn!(
            "smtp_listener has no users and no trusted_networks: every submission is refused"
        );
    }
    let hostname = config.delivery.helo_name.clone();
    let mut builder = Server::builder()
        .hostname(hostname.clone())
        .max_size(config.delivery.max_message_size.0)
        .max_connections(settings.max_connections)
        .max_connections_per_client(settings.max_connections_per_client)
        .max_recipients(settings.max_recipients)
        .command_timeout(settings.idle_timeout.0)
        .max_commands(settings.max_commands)
        .max_errors(settings.max_errors)
        .max_auth_failures(settings.max_auth_failures)
        .auth_failures_per_client(
            settings.max_auth_failures_per_client,
            settings.auth_failure_window.0,
        )
        .require_auth(trusted)
        // One stats entry per connection would grow for as long as serve runs.
        .per_connection_stats(false)
        .auth_requires_tls(settings.require_tls)
        .sink(Arc::new(
            QueueSink::new(store, hostname).with_feedback(feedback),
        ));
    if !settings.users.is_empty() {
        builder = builder.authenticator(Arc::new(StaticUsers::new(settings.users.clone())));
    }
    // The configuration checks that cert_file and key_file come together, and that
    // require_tls has them.
    if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
        let tls = server_tls_config_from_files(cert, key)
            .context("configuration: smtp_listener.cert_file/key_file")?;
        builder = builder.tls(tls);
    }
    let server = builder
        .bind(&listen.to_string())
        .await
        .context("smtp_listener.listen")?;
    tracing::info!(address = %server.local_addr(), "SMTP submission listener listening");
    Ok(Some(server))
}

/// The listener's [`MessageSink`]: each accepted message becomes one queued message,
/// committed before the server answers `250` to the end of DATA.
///
/// Group commit happens in the store: messages that arrive on other connections while a
/// commit is running join the next one (one transaction, a savepoint each), so concurrent
/// clients share the cost of each durable commit, and a message refused for its own reason
/// (an invalid address) is refused alone.
pub struct QueueSink {
    store: Arc<dyn Store>,
    hostname: String,
    feedback: Option<feedback::FeedbackAddresses>,
}

impl QueueSink {
    /// A sink queueing into `store`; `hostname` names this server in `Received:`.
    pub fn new(store: Arc<dyn Store>, hostname: String) -> QueueSink {
        QueueSink {
            store,
            hostname,
            feedback: None,
        }
    }

    /// The same sink, taking bounces and complaints for these addresses.
    pub fn with_feedback(mut self, feedback: Option<feedback::FeedbackAddresses>) -> QueueSink {
        self.feedback = feedback;
        self
    }
}

impl MessageSink for QueueSink {
    fn deliver(&self, mut envelope: ReceivedEnvelope, data: Vec<u8>) -> DeliverFuture<'_> {
        Box::pin(async move {
            if let Some(feedback) = &self.feedback {
                let (reports, others): (Vec<String>, Vec<String>) = envelope
                    .rcpt_to
                    .drain(..)
                    .partition(|rcpt| feedback.is_feedback(rcpt));
                envelope.rcpt_to = others;
                if !reports.is_empty() {
                    feedback
                        .receive(&*self.store, &envelope.mail_from, &reports, &data)
                        .await?;
                }
                if envelope.rcpt_to.is_empty() {
                    return Ok(None);
                }
            }
            let stored =
                submission::prepare(&data, &envelope, &self.hostname, OffsetDateTime::now_utc());
            // Only these fields come from the client: the relay, priority, send time, merge
            // values and idempotency key stay at their defaults, so nothing a client sends
            // can pick a route or a program (docs/security.md).
            let mut message = NewMessage::default();
            message.subject = subject_of(&data);
            message.data = stored;
            message.envelope_from = envelope.mail_from;
            message.recipients = envelope
                .rcpt_to
                .into_iter()
                .map(NewRecipient::new)
                .collect();
            enqueue_alone(&*self.store, message).await
        })
    }

    fn check_sender(&self, address: &str) -> Result<(), Reply> {
        submission::check_address(address, Role::Sender)
    }

    fn check_recipient(&self, address: &str) -> Result<(), Reply> {
        submission::check_address(address, Role::Recipient)
    }

    fn has_open_recipients(&self) -> bool {
        self.feedback.is_some()
    }

    fn open_recipient(&self, address: &str) -> bool {
        self.feedback
            .as_ref()
            .is_some_and(|feedback| feedback.is_feedback(address))
    }
}

/// One message committed: its id, or the reply that refuses it.
async fn enqueue_alone(store: &dyn Store, message: NewMessage) -> Result<Option<String>, Reply> {
    store
        .enqueue(message)
        .await
        .map(|queued| Some(queued.id))
        .map_err(|err| {
            tracing::warn!(error = %err, "SMTP submission refused");
            refusal(&err)
        })
}

/// The reply for a message the queue would not take. The size check of the server comes
/// first (552 while reading), so `TooLarge` here means the `Received:` line tipped it over.
fn refusal(err: &StoreError) -> Reply {
    match err {
        // RFC 3463 §3.4: 5.3.4, message too big for system.
        StoreError::TooLarge { .. } => {
            Reply::new(552, ["5.3.4 Message size exceeds fixed maximum"])
        }
        // RFC 3463 §3.7: 5.6.0, other media error — a line too long that cannot be fixed.
        StoreError::LineTooLong(err) => Reply::new(550, [format!("5.6.0 {err}")]),
        // RFC 3463 §3.2: bad destination / sender address syntax.
        StoreError::InvalidRecipient { address } => {
            Reply::new(553, [format!("5.1.3 Invalid recipient address {address}")])
        }
        StoreError::InvalidSender { address } => {
            Reply::new(553, [format!("5.1.7 Invalid sender address {address}")])
        }
        // Anything else is the queue failing (busy, unavailable): the client keeps the
        // message and tries again later (RFC 3463 §3.3: 4.3.0, other mail system problem).
        _ => Reply::new(451, ["4.3.0 Queue unavailable, try again later"]),
    }
}

/// The `Subject:` of a message's header block, unfolded (RFC 5322 §2.2.3), for listings;
/// empty when there is none. Encoded words are kept as they are.
pub fn subject_of(data: &[u8]) -> String {
    let header_end = find(data, b"\r\n\r\n")
        .or_else(|| find(data, b"\n\n"))
        .unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..header_end]);
    let mut subject: Option<String> = None;
    for line in header.split('\n') {
        let line = line.trim_end_matches('\r');
        match &mut subject {
            Some(value) if line.starts_with([' ', '\t']) => {
                value.push(' ');
                value.push_str(line.trim());
            }
            Some(_) => break,
            None => {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("subject")
                {
                    subject = Some(value.trim().to_string());
                }
            }
        }
    }
    subject.unwrap_or_default()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_unfolded_and_body_ignored() {
        assert_eq!(
            subject_of(b"From: a\r\nSUBJECT: one\r\n two\r\nTo: b\r\n\r\nSubject: body"),
            "one two"
        );
        assert_eq!(subject_of(b"From: a\n\nSubject: body\n"), "");
        assert_eq!(subject_of(b""), "");
    }

    fn submission(peer: &str, rcpt: &str) -> (ReceivedEnvelope, Vec<u8>) {
        let envelope = ReceivedEnvelope {
            mail_from: "a@x.test".into(),
            rcpt_to: vec![rcpt.to_string()],
            helo: "client.test".into(),
            peer: peer.parse().unwrap(),
            authenticated: None,
            tls: false,
            connection: 1,
        };
        (envelope, b"Subject: group\r\n\r\nhi\r\n".to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_messages_share_commits_and_one_bad_one_is_refused_alone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let store = outbox_queue::open_store(&url).await.unwrap();
        let sink = Arc::new(QueueSink::new(store.clone(), "mx.test".into()));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let sink = sink.clone();
            // The store refuses a recipient without a domain: that message alone fails.
            let rcpt = if i == 17 {
                "nodomain".to_string()
            } else {
                format!("r{i}@y.test")
            };
            tasks.push(tokio::spawn(async move {
                let (envelope, data) = submission("127.0.0.1:1000", &rcpt);
                sink.deliver(envelope, data).await
            }));
        }
        let mut refused = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if let Err(reply) = task.await.unwrap() {
                refused.push((i, reply.to_wire()));
            }
        }
        assert_eq!(
            refused,
            [(
                17,
                "553 5.1.3 Invalid recipient address nodomain\r\n".to_string()
            )]
        );
        let counts = store.counts().await.unwrap();
        assert_eq!(counts.queued, 39);
    }

    /// A store that fails under the listener (here a PostgreSQL database dropped while
    /// the sink holds it) is a temporary failure: 451, and the client keeps the message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unavailable_queue_answers_451() {
        let admin_url = "host=127.0.0.1 port=5432 user=postgres dbname=test";
        let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (see PEERS.md)");
        tokio::spawn(connection);
        let name = format!("outbox_test_listener_{}", rand::random::<u32>());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let store = outbox_queue::open_store(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
            .await
            .unwrap();
        let sink = QueueSink::new(store, "mx.test".into());
        let (envelope, data) = submission("127.0.0.1:1000", "b@y.test");
        sink.deliver(envelope, data)
            .await
            .expect("queued while the database is up");
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
        let (envelope, data) = submission("127.0.0.1:1000", "b@y.test");
        let reply = sink.deliver(envelope, data).await.unwrap_err();
        assert_eq!(
            reply.to_wire(),
            "451 4.3.0 Queue unavailable, try again later\r\n"
        );
    }

    #[test]
    fn queue_errors_become_smtp_replies() {
        let too_big = refusal(&StoreError::TooLarge { size: 9, limit: 8 });
        assert_eq!(
            too_big.to_wire(),
            "552 5.3.4 Message size exceeds fixed maximum\r\n"
        );
        let busy = refusal(&StoreError::Worker("gone".into()));
        assert_eq!(
            busy.to_wire(),
            "451 4.3.0 Queue unavailable, try again later\r\n"
        );
        let bad = refusal(&StoreError::InvalidRecipient {
            address: "x".into(),
        });
        assert!(bad.is_permanent());
    }
}
