//! One outgoing connection: it takes units from its route's ready queue (claiming more of
//! its route from the store when the queue runs dry), sends each as one transaction — or
//! one per recipient for a merge message — and records every outcome.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use crate::{Claimed, ClaimedRecipient, MessageBody, Outcome};

use super::Shared;
use super::policy::{self, Verdict};
use super::transport::{Connection, ReplyText, Route, TransactionReport, TransportError};

/// Runs one connection on `route` until its route has no due work, it has carried
/// `messages_per_connection` transactions, it breaks, or the worker stops.
pub(crate) async fn run(shared: Arc<Shared>, route: Route) {
    let Some(first) = shared.ready.pop(&route) else {
        return;
    };
    let started = Instant::now();
    let at = OffsetDateTime::now_utc();
    // Connection setup (DNS, connect, greeting, EHLO, TLS, AUTH) is cancelled by a stop:
    // nothing has been sent yet, so the claims go back without an attempt. A server that
    // accepts and never greets would otherwise hold shutdown for the whole timeout.
    let mut stop = shared.stop.clone();
    let refusal = policy::route_refusal(&route, shared.config.allow_program_relay);
    let connected = if let Some(reason) = refusal {
        // Settled below like a connection that failed for good: nothing is started.
        Err(TransportError {
            message: reason.to_string(),
            permanent: true,
            connection_lost: true,
        })
    } else {
        tokio::select! {
            connected = shared.transport.connect(&route) => connected,
            // (The watch guard is dropped inside: it must not live across the release.)
            () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                tracing::info!(%route, "stopping: connection setup cancelled");
                shared.release(&first.recipients).await;
                return;
            }
        }
    };
    let mut connection = match connected {
        Ok(connection) => connection,
        Err(err) => {
            tracing::info!(%route, error = %err, "connection failed");
            // Everything waiting for this route shares the fate of this attempt.
            let mut units = vec![first];
            units.extend(shared.ready.take_route(&route));
            for unit in units {
                settle_all(&shared, &unit, &unit.recipients, &err, None, at, started);
            }
            return;
        }
    };
    shared.metrics.connection_opened();
    let mut transactions = 0;
    let mut next = Some(first);
    'units: loop {
        let unit = match next.take() {
            Some(unit) => unit,
            None => match take_more(&shared, &route).await {
                Some(unit) => unit,
                None => break,
            },
        };
        let body = match shared.body(&unit.message_id).await {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(message = %unit.message_id, error = %err, "cannot read message; releasing it");
                shared.release(&unit.recipients).await;
                continue;
            }
        };
        let groups: Vec<Vec<ClaimedRecipient>> = if unit.needs_merge {
            unit.recipients.iter().map(|r| vec![r.clone()]).collect()
        } else {
            vec![unit.recipients.clone()]
        };
        let mut groups = groups.into_iter();
        while let Some(group) = groups.next() {
            if transactions >= shared.config.messages_per_connection || shared.stopping() {
                // Hand what is left to the next connection.
                let rest: Vec<ClaimedRecipient> =
                    std::iter::once(group).chain(groups).flatten().collect();
                shared.ready.push_front(
                    route.clone(),
                    Claimed {
                        recipients: rest,
                        ..unit
                    },
                );
                break 'units;
            }
            transactions += 1;
            let lost = send_group(&shared, &mut *connection, &unit, &body, &group).await;
            if lost {
                let rest: Vec<ClaimedRecipient> = groups.flatten().collect();
                if !rest.is_empty() {
                    shared.ready.push_front(
                        route.clone(),
                        Claimed {
                            recipients: rest,
                            ..unit
                        },
                    );
                }
                shared.metrics.connection_closed();
                return;
            }
        }
    }
    connection.close().await;
    shared.metrics.connection_closed();
}

/// More work for an open connection: its route's ready queue, else the store.
async fn take_more(shared: &Shared, route: &Route) -> Option<Claimed> {
    if let Some(unit) = shared.ready.pop(route) {
        return Some(unit);
    }
    if shared.stopping() {
        return None;
    }
    let claimed = match shared
        .store
        .claim_route(
            &shared.config.owner,
            &route.filter(),
            OffsetDateTime::now_utc(),
            shared.config.messages_per_connection,
        )
        .await
    {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(%route, error = %err, "claiming more work failed");
            return None;
        }
    };
    for unit in claimed {
        shared.leases.hold(unit.recipients.iter().map(|r| r.id));
        shared.ready.push_back(route.clone(), unit);
    }
    shared.ready.pop(route)
}

/// One transaction for `group`; records an outcome per recipient. True when the
/// connection is gone.
async fn send_group(
    shared: &Shared,
    connection: &mut dyn Connection,
    unit: &Claimed,
    body: &MessageBody,
    group: &[ClaimedRecipient],
) -> bool {
    let started = Instant::now();
    let at = OffsetDateTime::now_utc();
    let merged;
    let data: &[u8] = if unit.needs_merge {
        let recipient_values = group.first().and_then(|r| r.merge.as_ref());
        merged = outbox_mime::merge_message(&body.data, &(recipient_values, body.tokens.as_ref()));
        &merged
    } else {
        &body.data
    };
    let addresses: Vec<&str> = group.iter().map(|r| r.address.as_str()).collect();
    let host = connection.host();
    match connection.send(&unit.envelope_from, &addresses, data).await {
        Ok(report) => {
            record_report(shared, unit, group, &report, &host, at, started);
            false
        }
        Err(err) => {
            settle_all(shared, unit, group, &err, Some(host), at, started);
            err.connection_lost
        }
    }
}

fn record_report(
    shared: &Shared,
    unit: &Claimed,
    group: &[ClaimedRecipient],
    report: &TransactionReport,
    host: &str,
    at: OffsetDateTime,
    started: Instant,
) {
    for (index, recipient) in group.iter().enumerate() {
        // A refused RCPT is that recipient's answer; an accepted one gets the data reply.
        let reply = match (report.recipients.get(index), &report.data) {
            (Some(rcpt), _) if !(200..300).contains(&rcpt.code) => rcpt.clone(),
            (Some(_), Some(data)) => data.clone(),
            (rcpt, _) => rcpt.cloned().unwrap_or_else(|| ReplyText {
                code: 451,
                text: "451 no reply for this recipient".into(),
            }),
        };
        let verdict = Verdict::of_code(reply.code);
        settle(
            shared,
            unit,
            recipient,
            verdict,
            reply.text,
            Some(host.to_string()),
            at,
            started,
        );
    }
}

fn settle_all(
    shared: &Shared,
    unit: &Claimed,
    recipients: &[ClaimedRecipient],
    err: &TransportError,
    host: Option<String>,
    at: OffsetDateTime,
    started: Instant,
) {
    let verdict = if err.permanent {
        Verdict::Permanent
    } else {
        Verdict::Transient
    };
    for recipient in recipients {
        settle(
            shared,
            unit,
            recipient,
            verdict,
            err.message.clone(),
            host.clone(),
            at,
            started,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn settle(
    shared: &Shared,
    unit: &Claimed,
    recipient: &ClaimedRecipient,
    verdict: Verdict,
    reply: String,
    host: Option<String>,
    at: OffsetDateTime,
    started: Instant,
) {
    let config = &shared.config;
    let delivery = policy::settle(
        verdict,
        reply,
        recipient.attempts + 1,
        config.max_attempts,
        &config.retry_backoff,
        OffsetDateTime::now_utc(),
        rand::random::<f64>(),
    );
    shared.metrics.record(&delivery, &unit.message_id);
    shared.completer.record(Outcome {
        recipient_id: recipient.id,
        epoch: recipient.epoch,
        delivery,
        at,
        host,
        duration: started.elapsed(),
    });
}
