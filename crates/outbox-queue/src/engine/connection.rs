//! One outgoing connection: it takes units from its route's ready queue (claiming more of
//! its route from the store when the queue runs dry), sends each as one transaction — or
//! one per recipient for a merge message — and records every outcome.
//!
//! What an exchange means for each recipient is decided in one place,
//! [`policy::transaction_outcomes`] (and [`policy::connect_verdict`] when the connection
//! could not be set up); this module only applies it.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use crate::{Claimed, ClaimedRecipient, Delivery, MessageBody, Outcome};

use super::Shared;
use super::policy::{self, Verdict};
use super::transport::{Connection, ErrorStage, Route, TransportError};

/// Runs one connection on `route` until its route has no due work, it has carried
/// `messages_per_connection` transactions, it breaks, or the worker stops.
pub(crate) async fn run(shared: Arc<Shared>, route: Route) {
    let Some(first) = shared.ready.pop(&route) else {
        return;
    };
    let started = Instant::now();
    let at = OffsetDateTime::now_utc();
    // A route whose last connection failed waits out its pause: its recipients go back
    // without an attempt, and nothing is opened.
    if let Some(pause) = shared.pauses.active(&route, at) {
        let mut units = vec![first];
        units.extend(shared.ready.take_route(&route));
        for unit in units {
            for recipient in &unit.recipients {
                record(
                    &shared,
                    &unit,
                    recipient,
                    pause.not_attempted(),
                    None,
                    at,
                    started,
                );
            }
        }
        return;
    }
    // Connection setup (DNS, connect, greeting, EHLO, TLS, AUTH) is cancelled by a stop:
    // nothing has been sent yet, so the claims go back without an attempt. A server that
    // accepts and never greets would otherwise hold shutdown for the whole timeout.
    let mut stop = shared.stop.clone();
    let refusal = policy::route_refusal(&route, shared.config.allow_program_relay);
    let connected = if let Some(reason) = refusal {
        // Settled below like a connection that failed for good: nothing is started.
        Err(TransportError::new(ErrorStage::Destination, reason, true))
    } else {
        tokio::select! {
            connected = shared.transport.connect(&route) => connected,
            // (The watch guard is dropped inside: it must not live across the release.)
            () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                tracing::info!(%route, "stopping: connection setup cancelled");
                shared.release(&first.recipients);
                return;
            }
        }
    };
    let mut connection = match connected {
        Ok(connection) => connection,
        Err(err) => {
            // Everything waiting for this route shares the fate of this attempt.
            let mut units = vec![first];
            units.extend(shared.ready.take_route(&route));
            connect_failed(&shared, &route, &err, units, at, started);
            return;
        }
    };
    shared.pauses.clear(&route);
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
                shared.metrics.store_error();
                tracing::error!(message = %unit.message_id, error = %err, "cannot read message; giving it back");
                shared.release(&unit.recipients);
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

/// Settles every waiting unit of a route whose connection could not be set up: loud
/// (error level, counted), and never a permanent failure unless the destination itself
/// refuses ([`policy::connect_verdict`]). A route that may work later pauses, so the
/// messages that arrive meanwhile wait instead of trying it again at once.
fn connect_failed(
    shared: &Shared,
    route: &Route,
    err: &TransportError,
    units: Vec<Claimed>,
    at: OffsetDateTime,
    started: Instant,
) {
    shared.metrics.connection_failed();
    let verdict = policy::connect_verdict(route, err);
    let config = &shared.config;
    let pause = (verdict != Verdict::Permanent).then(|| {
        shared.pauses.fail(route, &err.message, at, |failures| {
            policy::retry_delay(failures, &config.retry_backoff, rand::random::<f64>())
        })
    });
    match (&pause, verdict) {
        (Some(pause), Verdict::NotAttempted) => tracing::error!(%route, error = %err,
            failures = pause.failures, paused_until = %pause.until,
            "cannot connect; recipients wait, not failed"),
        _ => tracing::warn!(%route, error = %err, "connection failed"),
    }
    for unit in units {
        for recipient in &unit.recipients {
            let delivery = match &pause {
                Some(pause) if verdict == Verdict::NotAttempted => pause.not_attempted(),
                _ => settle(shared, recipient, verdict, &err.message),
            };
            record(shared, &unit, recipient, delivery, None, at, started);
        }
    }
}

/// More work for an open connection: its route's ready queue, else the store.
async fn take_more(shared: &Shared, route: &Route) -> Option<Claimed> {
    if let Some(unit) = shared.ready.pop(route) {
        return Some(unit);
    }
    if shared.stopping() {
        return None;
    }
    let limit = shared.config.messages_per_connection;
    if let Err(err) = shared.claim(Some(route), limit).await {
        // The connection closes; the dispatcher retries the store with backoff.
        shared.metrics.store_error();
        tracing::warn!(%route, error = %err, "claiming more work failed");
        return None;
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
    let result = connection.send(&unit.envelope_from, &addresses, data).await;
    let outcomes = policy::transaction_outcomes(group.len(), &result);
    for (recipient, (verdict, reply)) in group.iter().zip(outcomes) {
        let delivery = settle(shared, recipient, verdict, &reply);
        record(
            shared,
            unit,
            recipient,
            delivery,
            Some(host.clone()),
            at,
            started,
        );
    }
    result.is_err_and(|err| err.connection_lost)
}

/// The delivery for one recipient's verdict, under the configured attempt limit and
/// retry schedule.
fn settle(
    shared: &Shared,
    recipient: &ClaimedRecipient,
    verdict: Verdict,
    reply: &str,
) -> Delivery {
    let config = &shared.config;
    policy::settle(
        verdict,
        reply.to_string(),
        recipient.attempts + 1,
        config.max_attempts,
        &config.retry_backoff,
        OffsetDateTime::now_utc(),
        rand::random::<f64>(),
    )
}

/// Hands one outcome to the completer, which stores it.
fn record(
    shared: &Shared,
    unit: &Claimed,
    recipient: &ClaimedRecipient,
    delivery: Delivery,
    host: Option<String>,
    at: OffsetDateTime,
    started: Instant,
) {
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
