//! `outbox send [message flags] [--spec FILE|-] [--now]` (`email_send`, `email_immediate`).
//!
//! Without `--now` the message is queued and its id printed. With `--now` (or the spec's
//! `immediate`) it is delivered at once, bypassing the queue and its size limit, through
//! the same transport the engine uses: the message's relay, else the configured relay,
//! else each recipient domain's MX hosts. Recipients sharing a route share a transaction;
//! a merge message is one transaction per recipient. One line per recipient:
//! `ADDRESS sent` or `ADDRESS failed: CODE text`.

use outbox_mime::EmailSpec;
use outbox_queue::engine::{Connection, Route, Transport, TransportError};
use outbox_queue::{NewMessage, NewRecipient, RouteKey};

use crate::app;
use crate::cli::Globals;
use crate::config::Config;
use crate::exit::Exit;
use crate::message_args::MessageArgs;

/// Arguments of `outbox send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub message: MessageArgs,

    /// Deliver at once, bypassing the queue (no size limit); prints one line per
    /// recipient instead of an id.
    #[arg(long)]
    pub now: bool,
}

/// Runs `outbox send`.
pub async fn run(globals: &Globals, args: SendArgs) -> anyhow::Result<()> {
    let config = globals.config()?;
    let spec = args.message.into_spec()?;
    if args.now || spec.immediate {
        send_now(&config, &spec).await
    } else {
        send_queued(&config, &spec).await
    }
}

/// Queues the message; prints its id once it is durably stored.
async fn send_queued(config: &Config, spec: &EmailSpec) -> anyhow::Result<()> {
    let outbox = app::outbox(config).await?;
    let enqueued = outbox.send(spec).await?;
    println!("{}", enqueued.id);
    Ok(())
}

/// What happened to one recipient of an immediate send.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RecipientResult {
    address: String,
    /// `None` when sent; else the reply (starting with its code) or the error.
    failure: Option<String>,
}

impl RecipientResult {
    fn line(&self) -> String {
        match &self.failure {
            None => format!("{} sent", self.address),
            Some(why) => format!("{} failed: {}", self.address, one_line(why)),
        }
    }
}

fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Composes and delivers at once; exit status 0 only when every recipient was accepted.
async fn send_now(config: &Config, spec: &EmailSpec) -> anyhow::Result<()> {
    let message = outbox_queue::prepare(spec)?;
    let transport = app::transport(config)?;
    let order: Vec<String> = message
        .recipients
        .iter()
        .map(|r| r.address.clone())
        .collect();
    let mut results = deliver_now(&*transport, &message, config.delivery.relay.is_some()).await;
    // Print in the order the recipients were given, whatever route each took.
    results.sort_by_key(|r| order.iter().position(|a| *a == r.address));
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    for result in &results {
        println!("{}", result.line());
    }
    if failed > 0 {
        let total = results.len();
        return Err(Exit::new(1, format!("{failed} of {total} recipients failed")).into());
    }
    Ok(())
}

/// Recipients grouped by route, in first-seen order.
fn routes(message: &NewMessage, relay_configured: bool) -> Vec<(Route, Vec<&NewRecipient>)> {
    let mut routes: Vec<(Route, Vec<&NewRecipient>)> = Vec::new();
    for recipient in &message.recipients {
        let domain = recipient.address.rsplit_once('@').map_or("", |(_, d)| d);
        let key = RouteKey::for_recipient(message.relay.as_deref(), domain);
        let route = Route::for_key(&key, relay_configured);
        match routes.iter_mut().find(|(r, _)| *r == route) {
            Some((_, list)) => list.push(recipient),
            None => routes.push((route, vec![recipient])),
        }
    }
    routes
}

/// One connection per route; one transaction per route, or per recipient when merging.
async fn deliver_now(
    transport: &dyn Transport,
    message: &NewMessage,
    relay_configured: bool,
) -> Vec<RecipientResult> {
    let merging = message.tokens.is_some() || message.recipients.iter().any(|r| r.merge.is_some());
    let mut results = Vec::new();
    for (route, recipients) in routes(message, relay_configured) {
        let mut connection = match transport.connect(&route).await {
            Ok(connection) => connection,
            Err(error) => {
                results.extend(recipients.iter().map(|r| failed(&r.address, &error)));
                continue;
            }
        };
        let groups: Vec<Vec<&NewRecipient>> = if merging {
            recipients.into_iter().map(|r| vec![r]).collect()
        } else {
            vec![recipients]
        };
        let mut lost: Option<TransportError> = None;
        for group in groups {
            if let Some(error) = &lost {
                results.extend(group.iter().map(|r| failed(&r.address, error)));
                continue;
            }
            match transaction(&mut *connection, message, &group, merging).await {
                Ok(group_results) => results.extend(group_results),
                Err(error) => {
                    results.extend(group.iter().map(|r| failed(&r.address, &error)));
                    if error.connection_lost {
                        lost = Some(error);
                    }
                }
            }
        }
        if lost.is_none() {
            connection.close().await;
        }
    }
    results
}

/// One SMTP transaction for `group`; with merging, the data is merged for its (only)
/// recipient: its merge values first, then the message's tokens.
async fn transaction(
    connection: &mut dyn Connection,
    message: &NewMessage,
    group: &[&NewRecipient],
    merging: bool,
) -> Result<Vec<RecipientResult>, TransportError> {
    let merged;
    let data: &[u8] = if merging {
        let values = group.first().and_then(|r| r.merge.as_ref());
        merged = outbox_mime::merge_message(&message.data, &(values, message.tokens.as_ref()));
        &merged
    } else {
        &message.data
    };
    let addresses: Vec<&str> = group.iter().map(|r| r.address.as_str()).collect();
    let report = connection
        .send(&message.envelope_from, &addresses, data)
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
            RecipientResult {
                address: recipient.address.clone(),
                failure: match reply {
                    Some(reply) if (200..300).contains(&reply.code) => None,
                    Some(reply) => Some(reply.text.clone()),
                    None => Some("no reply from the server for this recipient".to_string()),
                },
            }
        })
        .collect())
}

fn failed(address: &str, error: &TransportError) -> RecipientResult {
    RecipientResult {
        address: address.to_string(),
        failure: Some(error.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let sent = RecipientResult {
            address: "a@x.test".into(),
            failure: None,
        };
        assert_eq!(sent.line(), "a@x.test sent");
        let failed = RecipientResult {
            address: "b@x.test".into(),
            failure: Some("550-5.1.1 no\r\n550 such user".into()),
        };
        assert_eq!(failed.line(), "b@x.test failed: 550-5.1.1 no 550 such user");
    }

    #[test]
    fn recipients_are_grouped_by_route() {
        let mut message = NewMessage {
            data: b"x".to_vec(),
            envelope_from: "s@x.test".into(),
            recipients: ["a@one.test", "b@two.test", "c@ONE.test"]
                .into_iter()
                .map(NewRecipient::new)
                .collect(),
            subject: String::new(),
            priority: outbox_queue::Priority::Medium,
            send_at: None,
            relay: None,
            tokens: None,
            idempotency_key: None,
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
