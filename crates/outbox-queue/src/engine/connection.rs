//! One outgoing connection: it takes units from its route's ready queue (claiming more of
//! its route from the store when the queue runs dry), sends each as one transaction — or
//! one per recipient for a merge message — and records every outcome.
//!
//! What an exchange means for each recipient is decided in one place,
//! [`policy::transaction_outcomes`] (and [`policy::connect_verdict`] when the connection
//! could not be set up); this module only applies it.
//!
//! Before it connects, a connection finds its route's destination ([`shaping`]) and takes
//! one of the destination's slots; it keeps to the destination's rate, transaction and
//! recipient limits, and suspends the destination when a reply says to slow down.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{Claimed, ClaimedRecipient, Delivery, MessageBody, Outcome, StoredSuspension};

use super::Shared;
use super::pause::Pause;
use super::policy::{self, Verdict};
use super::shaping::{self, Destination, DestinationKey, Permit};
use super::transport::{Connection, ErrorStage, Route, TransactionReport, TransportError};

/// The dispatcher's handle on one connection task: its route, its destination once known,
/// and a way to ask it to give its slot back (another destination is starving).
pub(crate) struct Ticket {
    pub route: Route,
    destination: Mutex<Option<DestinationKey>>,
    connected: AtomicBool,
    yield_now: watch::Sender<bool>,
}

impl Ticket {
    /// A ticket for a connection on `route`, counted against `destination` when it is
    /// known already.
    pub fn new(route: Route, destination: Option<DestinationKey>) -> Arc<Ticket> {
        Arc::new(Ticket {
            route,
            destination: Mutex::new(destination),
            connected: AtomicBool::new(false),
            yield_now: watch::Sender::new(false),
        })
    }

    /// The destination the connection counts against; its route until it is known.
    pub fn key(&self) -> DestinationKey {
        self.destination
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| DestinationKey(format!("route {}", self.route)))
    }

    /// True once the connection is set up (then it can only yield between transactions).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Asks the connection to give its slot back: cancelled while still connecting,
    /// closed after its current transaction otherwise.
    pub fn request_yield(&self) {
        self.yield_now.send_replace(true);
    }

    /// True once asked to yield.
    pub fn yielding(&self) -> bool {
        *self.yield_now.borrow()
    }

    async fn yielded(&self) {
        let mut asked = self.yield_now.subscribe();
        let _ = asked.wait_for(|yes| *yes).await;
    }
}

/// Runs one connection on `route` until its route has no due work, it has carried its
/// destination's `messages_per_connection` transactions, it breaks, it is asked to yield,
/// or the worker stops.
pub(crate) async fn run(shared: Arc<Shared>, ticket: Arc<Ticket>) {
    let route = ticket.route.clone();
    let Some(first) = shared.ready.pop(&route) else {
        return;
    };
    let started = Instant::now();
    let at = OffsetDateTime::now_utc();
    // A route whose last connection failed waits out its pause: its recipients go back
    // without an attempt, and nothing is opened.
    if let Some(pause) = shared.pauses.active(&route, at) {
        put_back(&shared, &route, first, &pause, at, started);
        return;
    }
    // Connection setup (DNS, connect, greeting, EHLO, TLS, AUTH) is cancelled by a stop:
    // nothing has been sent yet, so the claims go back without an attempt. A server that
    // accepts and never greets would otherwise hold shutdown for the whole timeout. A
    // request to yield cancels it too, and the claims wait in the ready queue.
    let mut stop = shared.stop.clone();
    let refusal = policy::route_refusal(&route, shared.config.allow_program_relay);
    let destination = match shared.destinations.known(&route) {
        Some(destination) => destination,
        None if refusal.is_some() => shared.destinations.learn(&route, None),
        None => tokio::select! {
            hosts = shared.transport.mx_hosts(&route) => {
                shared.destinations.learn(&route, hosts.as_deref())
            }
            () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                shared.release(&first.recipients);
                return;
            }
        },
    };
    *ticket
        .destination
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(destination.key.clone());
    // A suspended destination is not asked: its recipients wait, without an attempt.
    if let Some(suspension) = shared.suspensions.active(&destination.key, at) {
        put_back(&shared, &route, first, &suspension, at, started);
        return;
    }
    let Some(_slot) = shared.destinations.try_open(&destination) else {
        // The destination has every connection it may have; the work waits for one.
        shared.ready.push_front(route, first);
        return;
    };
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
            () = ticket.yielded() => {
                tracing::debug!(%route, "connection setup given up for a starving destination");
                shared.ready.push_front(route, first);
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
            if let Some(reply) = &err.reply {
                slow_down(&shared, &destination, reply.code, &reply.text, at);
            }
            connect_failed(&shared, &route, &err, units, at, started);
            return;
        }
    };
    ticket.connected.store(true, Ordering::Relaxed);
    shared.pauses.clear(&route);
    shared.metrics.connection_opened();
    let limits = &destination.limits;
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
        // A merged message differs per recipient; a VERP return path names one recipient,
        // so each needs its own MAIL FROM: one recipient per transaction (the connection
        // is still reused).
        let one_each = unit.needs_merge || verp_sender(&shared, &unit).is_some();
        let mut groups: VecDeque<Vec<ClaimedRecipient>> = if one_each {
            unit.recipients.iter().map(|r| vec![r.clone()]).collect()
        } else {
            unit.recipients
                .chunks(limits.max_recipients_per_transaction.max(1))
                .map(<[ClaimedRecipient]>::to_vec)
                .collect()
        };
        while let Some(group) = groups.pop_front() {
            let hand_back = |group: Vec<ClaimedRecipient>,
                             groups: VecDeque<Vec<ClaimedRecipient>>| {
                let rest: Vec<ClaimedRecipient> =
                    std::iter::once(group).chain(groups).flatten().collect();
                if !rest.is_empty() {
                    shared.ready.push_front(
                        route.clone(),
                        Claimed {
                            recipients: rest,
                            ..unit.clone()
                        },
                    );
                }
            };
            if transactions >= limits.messages_per_connection
                || shared.stopping()
                || ticket.yielding()
                || shared
                    .suspensions
                    .active(&destination.key, OffsetDateTime::now_utc())
                    .is_some()
            {
                // Hand what is left to the next connection.
                hand_back(group, groups);
                break 'units;
            }
            if !wait_for_rate(&shared, &destination).await {
                // Over the destination's rate for longer than a slot may idle: everything
                // of this route goes back until its turn comes.
                hand_back(group, groups);
                let units = shared.ready.take_route(&route);
                throttled(&shared, &destination, units, started);
                break 'units;
            }
            transactions += 1;
            let sent = send_group(&shared, &mut *connection, &unit, &body, &group).await;
            if !sent.carry.is_empty() {
                // 452 "too many recipients": the rest go in the next transaction.
                groups.push_front(sent.carry);
            }
            if let Some((code, text)) = &sent.slow_down {
                slow_down(
                    &shared,
                    &destination,
                    *code,
                    text,
                    OffsetDateTime::now_utc(),
                );
            } else if sent.accepted && shared.suspensions.clear(&destination.key) {
                lift_stored(&shared, &destination.key);
            }
            if sent.lost {
                let rest: Vec<ClaimedRecipient> = groups.into_iter().flatten().collect();
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

/// Puts `first` and everything else waiting for `route` back without an attempt, due when
/// `pause` (of the route, or of its destination) ends.
fn put_back(
    shared: &Shared,
    route: &Route,
    first: Claimed,
    pause: &Pause,
    at: OffsetDateTime,
    started: Instant,
) {
    let delivery = pause.not_attempted();
    let units = std::iter::once(first).chain(shared.ready.take_route(route));
    for unit in units {
        for recipient in &unit.recipients {
            record(
                shared,
                &unit,
                recipient,
                delivery.clone(),
                None,
                at,
                started,
            );
        }
    }
}

/// Waits for the destination's rate limiter when the wait is short; false when it would
/// be longer than [`shaping::MAX_RATE_WAIT`].
async fn wait_for_rate(shared: &Shared, destination: &Destination) -> bool {
    loop {
        match shared.destinations.permit(destination, Instant::now()) {
            Permit::Now => return true,
            Permit::After(wait) if wait <= shaping::MAX_RATE_WAIT => {
                tokio::time::sleep(wait).await;
            }
            Permit::After(_) => return false,
        }
    }
}

/// Gives units back until the destination's rate allows them: the n-th transaction is
/// due when the limiter would let it go, so they come back spread at that rate. No
/// attempt is counted.
fn throttled(shared: &Shared, destination: &Destination, units: Vec<Claimed>, started: Instant) {
    let now = Instant::now();
    let at = OffsetDateTime::now_utc();
    let rate = destination
        .limits
        .max_message_rate
        .map_or_else(String::new, |rate| rate.to_string());
    let reply = format!(
        "waiting for the message rate of {} ({rate})",
        destination.key
    );
    let mut n = 0u32;
    for unit in units {
        let transactions = if unit.needs_merge {
            unit.recipients.len()
        } else {
            1
        };
        let due = shared.destinations.nth_send(destination, n, now);
        n = n.saturating_add(u32::try_from(transactions).unwrap_or(u32::MAX));
        let next_attempt_at = at + due.saturating_duration_since(now);
        for recipient in &unit.recipients {
            let delivery = Delivery::NotAttempted {
                reply: reply.clone(),
                next_attempt_at,
            };
            record(shared, &unit, recipient, delivery, None, at, started);
        }
    }
}

/// A reply that says "slow down" suspends the whole destination: its waiting recipients
/// wait (without an attempt) until the suspension ends. A 421 suspends along the retry
/// schedule; an `on_reply` pattern for its own time, doubled while it repeats.
fn slow_down(
    shared: &Shared,
    destination: &Destination,
    code: u16,
    text: &str,
    at: OffsetDateTime,
) {
    let Some(suspend) = destination.slow_down(code, text) else {
        return;
    };
    let reason = format!(
        "{} suspended after: {}",
        destination.key,
        policy::sanitize_reply(text)
    );
    let config = &shared.config;
    let suspension =
        shared
            .suspensions
            .fail(&destination.key, &reason, at, |times| match suspend {
                Some(base) => base * 2u32.pow(times.clamp(1, 4) - 1),
                None => policy::retry_delay(times, &config.retry_backoff, rand::random::<f64>()),
            });
    tracing::warn!(destination = %destination.key, until = %suspension.until,
        times = suspension.failures, reply = %policy::sanitize_reply(text),
        "destination asked us to slow down; suspended");
    shared.metrics.suspension();
    store_suspension(shared, &destination.key, suspension);
}

/// Stores a suspension for the other processes (`queue list`, the admin page, other
/// workers), without holding up the connection: best effort, as the engine works from its
/// own copy either way.
fn store_suspension(shared: &Shared, key: &DestinationKey, suspension: Pause) {
    let stored = StoredSuspension {
        destination: key.0.clone(),
        reason: suspension.reason,
        until: suspension.until,
        times: suspension.failures,
        domains: shared.destinations.domains_of(key),
    };
    let (store, metrics) = (shared.store.clone(), shared.metrics.clone());
    tokio::spawn(async move {
        if let Err(err) = store.suspend(stored).await {
            metrics.store_error();
            tracing::warn!(error = %err, "storing a suspension failed; other processes do not see it");
        }
    });
}

/// Deletes a lifted suspension from the store, without holding up the connection.
fn lift_stored(shared: &Shared, key: &DestinationKey) {
    let (store, metrics, destination) =
        (shared.store.clone(), shared.metrics.clone(), key.0.clone());
    tokio::spawn(async move {
        if let Err(err) = store.lift_suspension(&destination).await {
            metrics.store_error();
            tracing::warn!(%destination, error = %err, "lifting a stored suspension failed");
        }
    });
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

/// What one transaction left to do.
#[derive(Default)]
struct Sent {
    /// The connection is gone.
    lost: bool,
    /// At least one recipient was accepted with the message.
    accepted: bool,
    /// Recipients refused with 452 (too many recipients) while others were accepted: they
    /// go in the next transaction, unrecorded.
    carry: Vec<ClaimedRecipient>,
    /// A reply that asks the destination to slow down: its code and text.
    slow_down: Option<(u16, String)>,
}

/// One transaction for `group`; records an outcome per recipient, except those to carry
/// to the next transaction.
async fn send_group(
    shared: &Shared,
    connection: &mut dyn Connection,
    unit: &Claimed,
    body: &Arc<MessageBody>,
    group: &[ClaimedRecipient],
) -> Sent {
    let started = Instant::now();
    let at = OffsetDateTime::now_utc();
    let (personal, signed);
    let data: &[u8] = if unit.needs_merge {
        // One recipient per transaction (the groups of a per-recipient message).
        let Some(first) = group.first() else {
            return Sent::default();
        };
        personal = match shared.personalise(&unit.message_id, body, first) {
            Ok(data) => data,
            Err(reason) => {
                tracing::warn!(message = %unit.message_id, "{reason}");
                for recipient in group {
                    let delivery = settle(shared, recipient, Verdict::Transient, reason);
                    record(shared, unit, recipient, delivery, None, at, started);
                }
                return Sent::default();
            }
        };
        &personal
    } else {
        signed = shared.signed_body(&unit.message_id, body);
        &signed.data
    };
    let addresses: Vec<&str> = group.iter().map(|r| r.address.as_str()).collect();
    let host = connection.host();
    let from = match (verp_sender(shared, unit), group) {
        (Some(verp), [only]) => Cow::Owned(verp.return_path(only.id)),
        _ => Cow::Borrowed(unit.envelope_from.as_str()),
    };
    let result = connection.send(&from, &addresses, data).await;
    let rejected = policy::recipient_rejections(group.len(), &result);
    let outcomes = policy::transaction_outcomes(group.len(), &result);
    let carried = match &result {
        Ok(report) => policy::carry_over(report),
        Err(_) => vec![false; group.len()],
    };
    let mut sent = Sent {
        lost: result.as_ref().is_err_and(|err| err.connection_lost),
        accepted: outcomes
            .iter()
            .any(|(verdict, _)| *verdict == Verdict::Sent),
        carry: Vec::new(),
        slow_down: slow_down_reply(&result),
    };
    for (((recipient, (verdict, reply)), carry), rejected) in
        group.iter().zip(outcomes).zip(carried).zip(rejected)
    {
        if carry {
            sent.carry.push(recipient.clone());
            continue;
        }
        let delivery = match settle(shared, recipient, verdict, &reply) {
            Delivery::Failed { reply } if rejected => Delivery::HardBounce { reply },
            delivery => delivery,
        };
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
    sent
}

/// The VERP signer when this unit's deliveries get VERP return paths: `[bounces] domain`
/// is set and the message has a sender (a null sender, a bounce itself, stays null).
fn verp_sender<'a>(shared: &'a Shared, unit: &Claimed) -> Option<&'a crate::Verp> {
    shared
        .config
        .verp
        .as_ref()
        .filter(|_| !unit.envelope_from.is_empty())
}

/// The first 4xx reply of a transaction (or its error), for the slow-down check.
fn slow_down_reply(result: &Result<TransactionReport, TransportError>) -> Option<(u16, String)> {
    match result {
        Ok(report) => report
            .recipients
            .iter()
            .chain(&report.data)
            .find(|reply| (400..500).contains(&reply.code))
            .map(|reply| (reply.code, reply.text.clone())),
        Err(err) => err
            .reply
            .as_ref()
            .filter(|reply| (400..500).contains(&reply.code))
            .map(|reply| (reply.code, reply.text.clone())),
    }
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
