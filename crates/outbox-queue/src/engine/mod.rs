//! The delivery engine: the background sender of the seed.
//!
//! It claims due recipients from the [`Store`] (high priority first, then by age), groups
//! them by route, and runs at most `max_connections` connections at a time, each carrying
//! at most `messages_per_connection` transactions. An open connection drains every due
//! message of its route, whatever the priority. Outcomes follow [`policy`]: 2xx sent, 4xx
//! and network errors deferred with backoff, 5xx failed, and failed after `max_attempts`.
//!
//! The engine wakes at once on an enqueue in this process ([`Store::enqueued`]), at the
//! next due time, and at least every `poll_interval` for work queued by other processes.
//! On shutdown it stops claiming, cancels connections still being set up, lets each open
//! connection finish its transaction (bounded by the command timeout), records every
//! outcome, and gives unsent claims back.
//!
//! The fault model, each part enforced in one place:
//! - the store failing never stops the engine: the dispatcher retries with a growing pause
//!   while connections go on; the completer (`completer`) holds every outcome until it
//!   is stored;
//! - a claim lasts as long as the worker's heartbeat (`liveness`), which runs until the
//!   last outcome is stored; dead workers' recipients are resumed by any live worker;
//! - one pure function decides what an exchange means for each recipient
//!   ([`policy::transaction_outcomes`], [`policy::connect_verdict`]): sent only on a 2xx to
//!   end-of-data, `unknown` (retried) when the connection died after the final dot;
//! - a route whose connection cannot be set up pauses (`pause`); on a relay route its
//!   recipients wait without using up attempts;
//! - connections, rates and transactions are shaped per destination — the set of MX hosts
//!   a route reaches ([`shaping`]) — and shared fairly: a destination whose connections
//!   stall holds only its share of the slots while others wait, and a destination that
//!   answers "slow down" is suspended as a whole.

mod completer;
mod connection;
mod liveness;
pub mod metrics;
mod pause;
pub mod policy;
mod ready;
pub mod shaping;
mod smtp;
pub mod transport;

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use outbox_mime::dkim::DkimSigners;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{
    ClaimedRecipient, ListFilter, MessageBody, MessageStatus, Store, StoreError, Unsubscribe,
    WorkerInfo,
};

use completer::Completer;
use connection::Ticket;
use liveness::Liveness;
pub use metrics::{EngineMetrics, MetricsSnapshot};
use pause::{Pauses, RoutePauses};
use ready::{BodyCache, ReadyQueues};
use shaping::{Candidate, DestinationKey, Destinations, Limits, Rate, Shaping, ShapingRule};
pub use smtp::{SmtpTransport, SmtpTransportConfig, TransportSetupError};
pub use transport::{
    BoxFuture, Connection, ErrorStage, ReplyText, Route, TransactionReport, Transport,
    TransportError,
};

/// How the engine behaves; the binary fills it from `[delivery]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// This worker's name in leases; unique among workers sharing a database.
    pub owner: String,
    /// Connections open at once (the seed's five), in total; also each destination's
    /// default limit.
    pub max_connections: usize,
    /// Transactions per connection before it closes (the seed's 100), unless a shaping
    /// rule says otherwise.
    pub messages_per_connection: usize,
    /// Messages per unit of time to one destination, unless a shaping rule says
    /// otherwise; `None`: no limit.
    pub max_message_rate: Option<Rate>,
    /// Recipients in one transaction, unless a shaping rule says otherwise.
    pub max_recipients_per_transaction: usize,
    /// `[[shaping]]`: per-destination overrides, first match wins.
    pub shaping: Vec<ShapingRule>,
    /// A recipient fails after this many attempts.
    pub max_attempts: u32,
    /// Waits after each temporary failure; the last repeats.
    pub retry_backoff: Vec<Duration>,
    /// How long this worker's heartbeat stays valid: it beats every third of this while it
    /// holds claims; a worker silent for longer is taken for dead and its recipients resumed.
    pub lease: Duration,
    /// True when `[delivery] relay` is set: MX routes then go through it.
    pub relay_configured: bool,
    /// Longest sleep between looks at the queue, for work queued by other processes.
    pub poll_interval: Duration,
    /// `[delivery] allow_program_relay`: may a `program:` relay stored on a message be
    /// run? When false such a message's recipients fail without the program being started
    /// ([`policy::route_refusal`]); the configured relay is not affected.
    pub allow_program_relay: bool,
    /// `[[dkim]]`: the signers of outgoing messages; empty: nothing is signed.
    pub dkim: Arc<DkimSigners>,
    /// `[unsubscribe]`: the links written into messages that ask for one-click
    /// unsubscribe. `None`: such messages are deferred, not sent without them.
    pub unsubscribe: Option<Arc<Unsubscribe>>,
    /// `[bounces] domain`: when set, each delivery's envelope sender is the recipient's
    /// VERP return path (`bounces+TOKEN@DOMAIN`), one recipient per transaction.
    pub verp: Option<crate::Verp>,
    /// `[[webhooks]]` and `[events]`: when set, the webhook sender (and the event log's
    /// dispatch and pruning) runs for as long as the engine does.
    pub webhooks: Option<crate::webhooks::WebhookSettings>,
}

impl EngineConfig {
    /// The shaping configuration: defaults from these settings, then the rules.
    pub fn shaping(&self) -> Shaping {
        Shaping {
            defaults: Limits {
                max_connections: self.max_connections,
                messages_per_connection: self.messages_per_connection,
                max_message_rate: self.max_message_rate,
                max_recipients_per_transaction: self.max_recipients_per_transaction,
            },
            rules: self.shaping.clone(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: default_owner(),
            max_connections: 5,
            messages_per_connection: 100,
            max_message_rate: None,
            max_recipients_per_transaction: Limits::default().max_recipients_per_transaction,
            shaping: Vec::new(),
            max_attempts: 10,
            retry_backoff: [60, 300, 900, 3600, 14400]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            lease: Duration::from_secs(10),
            relay_configured: false,
            poll_interval: Duration::from_secs(1),
            allow_program_relay: false,
            dkim: Arc::default(),
            unsubscribe: None,
            verp: None,
            webhooks: None,
        }
    }
}

/// A worker name that is unique across hosts and processes: `host:pid:random`.
pub fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// When [`Engine::run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunMode {
    /// Until the shutdown future resolves (`outbox serve`, `outbox deliver`).
    Forever,
    /// Also when every recipient of every message whose `send_at` has come is final
    /// (`outbox deliver --until-empty`).
    UntilEmpty,
}

/// State shared by the dispatcher and its connections.
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub transport: Arc<dyn Transport>,
    pub config: EngineConfig,
    pub ready: ReadyQueues,
    pub pauses: RoutePauses,
    pub destinations: Arc<Destinations>,
    pub suspensions: Arc<Pauses<DestinationKey>>,
    pub liveness: Arc<Liveness>,
    pub completer: Completer,
    pub metrics: Arc<EngineMetrics>,
    bodies: BodyCache,
    /// Signed data of messages sent without merging, signed once for all their transactions.
    signed: BodyCache,
    stop: watch::Receiver<bool>,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// A message's data, read once and shared by its transactions.
    pub async fn body(&self, message_id: &str) -> Result<Arc<MessageBody>, StoreError> {
        if let Some(body) = self.bodies.get(message_id) {
            return Ok(body);
        }
        let body = Arc::new(self.store.message_body(message_id).await?);
        self.bodies.insert(message_id, body.clone());
        Ok(body)
    }

    /// What goes on the wire for a message sent without merging: its data DKIM-signed once
    /// (cached beside the body), or the data itself when nothing signs it.
    pub fn signed_body(&self, message_id: &str, body: &Arc<MessageBody>) -> Arc<MessageBody> {
        if self.config.dkim.is_empty() {
            return body.clone();
        }
        if let Some(signed) = self.signed.get(message_id) {
            return signed;
        }
        let signed = match crate::signing::sign(&self.config.dkim, Cow::Borrowed(&body.data)) {
            Cow::Borrowed(_) => body.clone(),
            Cow::Owned(data) => Arc::new(MessageBody {
                data,
                tokens: None,
                unsubscribe_list: None,
            }),
        };
        self.signed.insert(message_id, signed.clone());
        signed
    }

    /// One recipient's copy of a message written per recipient (merged, with its
    /// unsubscribe headers), DKIM-signed.
    pub fn personalise(
        &self,
        message_id: &str,
        body: &MessageBody,
        recipient: &ClaimedRecipient,
    ) -> Result<Vec<u8>, &'static str> {
        let personal = crate::signing::Personal {
            address: &recipient.address,
            merge: recipient.merge.as_ref(),
            tokens: body.tokens.as_ref(),
            unsubscribe_list: body.unsubscribe_list.as_deref(),
            message_id: Some(message_id),
        };
        crate::signing::personalise(
            &body.data,
            &personal,
            self.config.unsubscribe.as_deref(),
            &self.config.dkim,
        )
    }

    /// Counts and logs a failed store step that will be retried.
    fn store_error(&self, doing: &str, err: &StoreError) {
        self.metrics.store_error();
        tracing::warn!(error = %err, "{doing} failed; retrying");
    }

    /// Gives claimed recipients back without an attempt (through the completer, which
    /// does not give up).
    pub fn release(&self, recipients: &[ClaimedRecipient]) {
        self.completer
            .release(recipients.iter().map(|r| r.id).collect());
    }

    /// Claims up to `limit` due recipients (of `route`, or of any) into the ready queues,
    /// and reads the bodies of their messages that are not cached, in one statement.
    /// Nothing is claimed while this worker's heartbeat is not fresh: another worker
    /// could otherwise take it for dead and claim the same recipients.
    pub async fn claim(&self, route: Option<&Route>, limit: usize) -> Result<usize, StoreError> {
        if !self.liveness.fresh() {
            return Ok(0);
        }
        let owner = &self.config.owner;
        let now = OffsetDateTime::now_utc();
        let claimed = match route {
            None => self.store.claim(owner, now, limit).await?,
            Some(route) => {
                self.store
                    .claim_route(owner, &route.filter(), now, limit)
                    .await?
            }
        };
        // Bodies for the first units, as many as half the cache holds: more would push
        // each other out before their transactions run (100 KB messages, 500 claimed).
        let mut budget = BODY_CACHE_BYTES / 2;
        let mut missing: Vec<String> = Vec::new();
        for unit in &claimed {
            let size = usize::try_from(unit.size).unwrap_or(usize::MAX);
            if size > budget {
                break;
            }
            if missing.last() != Some(&unit.message_id)
                && self.bodies.get(&unit.message_id).is_none()
            {
                budget -= size;
                missing.push(unit.message_id.clone());
            }
        }
        if !missing.is_empty() {
            match self.store.message_bodies(&missing).await {
                Ok(bodies) => {
                    for (id, body) in bodies {
                        self.bodies.insert(&id, Arc::new(body));
                    }
                }
                // Each connection reads its body again; nothing is lost.
                Err(err) => tracing::warn!(error = %err, "reading message bodies failed"),
            }
        }
        let count = claimed.len();
        for unit in claimed {
            let unit_route = match route {
                Some(route) => route.clone(),
                None => Route::for_key(&unit.route, self.config.relay_configured),
            };
            self.ready.push_back(unit_route, unit);
        }
        Ok(count)
    }
}

/// Shortest sleep between looks at the queue when work is due but cannot start yet.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// Longest pause between tries when the store fails.
const MAX_STORE_PAUSE: Duration = Duration::from_secs(5);

/// Routes considered for new connections in one round, best first: bounds the dispatcher's
/// work per round when the ready queues hold very many domains.
const MAX_CANDIDATES: usize = 1024;

/// Bodies kept in memory between transactions.
const BODY_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The background sender.
pub struct Engine {
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    config: EngineConfig,
    metrics: Arc<EngineMetrics>,
    suspensions: Arc<Pauses<DestinationKey>>,
}

/// A destination that asked us to slow down, and until when its recipients wait.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Suspension {
    /// The destination (`mx HOST,HOST`, `mx *.SUFFIX`, `domain D`, `relay SPEC`).
    pub destination: String,
    /// The reply that suspended it.
    pub reason: String,
    /// When the suspension ends (RFC 3339).
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub until: OffsetDateTime,
    /// Slow-down replies in a row.
    pub times: u32,
}

impl Engine {
    /// An engine over a store and a transport.
    pub fn new(store: Arc<dyn Store>, transport: Arc<dyn Transport>, config: EngineConfig) -> Self {
        Engine {
            store,
            transport,
            config,
            metrics: Arc::new(EngineMetrics::default()),
            suspensions: Arc::default(),
        }
    }

    /// Destinations suspended now, soonest end first: for the admin page.
    pub fn suspensions(&self) -> Vec<Suspension> {
        self.suspensions_handle().list()
    }

    /// A handle that reads [`Engine::suspensions`] while the engine runs.
    pub fn suspensions_handle(&self) -> SuspensionsHandle {
        SuspensionsHandle(self.suspensions.clone())
    }

    /// The engine's counters (shared; they keep counting while it runs).
    pub fn metrics(&self) -> Arc<EngineMetrics> {
        self.metrics.clone()
    }

    /// Delivers until `shutdown` resolves (or, with [`RunMode::UntilEmpty`], until there is
    /// nothing left to wait for).
    ///
    /// A store error never stops it: the failing step is retried with a growing pause
    /// (counted in [`MetricsSnapshot::store_errors`]) while open connections finish, and
    /// their outcomes are held until they are stored. It returns only once every outcome
    /// is stored and every unsent claim given back — if the database stays unreachable,
    /// it keeps trying until the process is stopped harder. The `Result` is kept for
    /// callers; it is always `Ok`.
    pub async fn run(
        &self,
        mode: RunMode,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StoreError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let liveness = Arc::new(Liveness::new(self.config.lease));
        let heartbeat = tokio::spawn(liveness::run(
            liveness::Heartbeat {
                store: self.store.clone(),
                worker: WorkerInfo::this_process(self.config.owner.clone()),
                lease: self.config.lease,
                liveness: liveness.clone(),
                metrics: self.metrics.clone(),
                suspensions: self.suspensions.clone(),
            },
            done_rx,
        ));
        let (completer, completer_task) = Completer::start(
            self.store.clone(),
            self.config.owner.clone(),
            self.metrics.clone(),
        );
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            transport: self.transport.clone(),
            config: self.config.clone(),
            ready: ReadyQueues::default(),
            pauses: RoutePauses::default(),
            destinations: Arc::new(Destinations::new(self.config.shaping())),
            suspensions: self.suspensions.clone(),
            liveness,
            completer,
            metrics: self.metrics.clone(),
            bodies: BodyCache::new(BODY_CACHE_BYTES),
            signed: BodyCache::new(BODY_CACHE_BYTES),
            stop: stop_rx,
        });
        let webhooks = self.config.webhooks.clone().map(|settings| {
            tokio::spawn(crate::webhooks::run(
                self.store.clone(),
                settings,
                self.config.owner.clone(),
                self.metrics.webhooks().clone(),
                shared.stop.clone(),
            ))
        });
        dispatch(&shared, mode, shutdown, &stop_tx).await;
        let _ = stop_tx.send(true);
        if let Some(webhooks) = webhooks {
            let _ = webhooks.await;
        }

        // Unsent claims go back; every outcome is stored before the heartbeat stops.
        let unsent: Vec<ClaimedRecipient> = shared
            .ready
            .take_all()
            .into_iter()
            .flat_map(|unit| unit.recipients)
            .collect();
        shared.release(&unsent);
        drop(shared);
        let _ = completer_task.await;
        let _ = done_tx.send(true);
        let _ = heartbeat.await;
        Ok(())
    }
}

/// Reads the suspended destinations of a running engine ([`Engine::suspensions_handle`]).
#[derive(Clone)]
pub struct SuspensionsHandle(Arc<Pauses<DestinationKey>>);

impl SuspensionsHandle {
    /// Destinations suspended now, soonest end first.
    pub fn list(&self) -> Vec<Suspension> {
        let mut list: Vec<Suspension> = self
            .0
            .all_active(OffsetDateTime::now_utc())
            .into_iter()
            .map(|(key, pause)| Suspension {
                destination: key.0,
                reason: pause.reason,
                until: pause.until,
                times: pause.failures,
            })
            .collect();
        list.sort_by(|a, b| (a.until, &a.destination).cmp(&(b.until, &b.destination)));
        list
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    mode: RunMode,
    shutdown: impl Future<Output = ()> + Send,
    stop_tx: &watch::Sender<bool>,
) {
    let config = &shared.config;
    let enqueued = shared.store.enqueued();
    let mut connections: JoinSet<()> = JoinSet::new();
    let mut by_task: HashMap<tokio::task::Id, Arc<Ticket>> = HashMap::new();
    tokio::pin!(shutdown);
    let mut stopping = false;
    let mut store_pause = Duration::ZERO;
    let mut woken_by_enqueue = false;
    loop {
        // Any store step that fails makes this round wait `store_pause` (growing), and
        // nothing else: connections go on, the next round tries again.
        let mut store_failed = false;
        if !stopping {
            // Fill the ready queues, then open connections for the best routes. A new
            // message (woken by an enqueue) is claimed at once even while the queues are
            // full, a few recipients at a time: claims come in priority order, and a
            // high-priority unit goes to the front of its route's queue, so it is the next
            // transaction of a busy route instead of waiting for the backlog to drain.
            let batch = config.max_connections * config.messages_per_connection;
            let limit = if connections.len() < config.max_connections
                && shared.ready.len() < config.max_connections
            {
                batch
            } else if woken_by_enqueue && shared.ready.len() < 2 * batch {
                config.max_connections
            } else {
                0
            };
            woken_by_enqueue = false;
            if limit > 0
                && let Err(err) = shared.claim(None, limit).await
            {
                store_failed = true;
                shared.store_error("claiming due recipients", &err);
            }
            open_connections(shared, &mut connections, &mut by_task);
        }
        if connections.is_empty() {
            if stopping {
                return;
            }
            if mode == RunMode::UntilEmpty && shared.ready.len() == 0 && !store_failed {
                shared.completer.flush().await;
                match nothing_left(&*shared.store).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(err) => {
                        store_failed = true;
                        shared.store_error("reading the queue", &err);
                    }
                }
            }
        }
        // At capacity only a finished connection (or shutdown) can change anything;
        // otherwise sleep until the next due time, a new message, or the poll interval.
        let full = connections.len() >= config.max_connections;
        let mut wait = if full || stopping {
            config.poll_interval
        } else if !shared.liveness.fresh() {
            // Waiting for the first (or next) heartbeat before claiming.
            MIN_WAIT * 5
        } else if store_failed {
            config.poll_interval
        } else {
            match shared.store.next_due().await {
                Ok(Some(due)) => Duration::try_from(due - OffsetDateTime::now_utc())
                    .unwrap_or(Duration::ZERO)
                    .clamp(MIN_WAIT, config.poll_interval),
                Ok(None) => config.poll_interval,
                Err(err) => {
                    store_failed = true;
                    shared.store_error("reading the next due time", &err);
                    config.poll_interval
                }
            }
        };
        if store_failed {
            store_pause = (store_pause * 2).clamp(MIN_WAIT * 5, MAX_STORE_PAUSE);
            wait = store_pause;
        } else {
            store_pause = Duration::ZERO;
        }
        tokio::select! {
            finished = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match finished {
                    Some(Ok((id, ()))) => Some(id),
                    Some(Err(err)) => {
                        tracing::error!(error = %err, "a connection task failed");
                        Some(err.id())
                    }
                    None => None,
                };
                if let Some(id) = id {
                    by_task.remove(&id);
                }
            }
            _ = enqueued.notified(), if !stopping && !store_failed => woken_by_enqueue = true,
            _ = tokio::time::sleep(wait), if !full && !stopping => {}
            _ = &mut shutdown, if !stopping => {
                tracing::info!("stopping: finishing open transactions");
                stopping = true;
                let _ = stop_tx.send(true);
            }
        }
    }
}

/// Opens connections for the waiting routes, shared fairly across destinations
/// ([`shaping::plan`]); with every slot taken, asks one connection of a destination over
/// its share to give its slot back when another destination has none
/// ([`shaping::over_share`]).
fn open_connections(
    shared: &Arc<Shared>,
    connections: &mut JoinSet<()>,
    by_task: &mut HashMap<tokio::task::Id, Arc<Ticket>>,
) {
    let max = shared.config.max_connections;
    let mut per_route: HashMap<&Route, usize> = HashMap::new();
    let mut open: HashMap<DestinationKey, usize> = HashMap::new();
    for ticket in by_task.values() {
        *per_route.entry(&ticket.route).or_default() += 1;
        *open.entry(ticket.key()).or_default() += 1;
    }
    let candidates: Vec<Candidate> = shared
        .ready
        .waiting()
        .into_iter()
        .take(MAX_CANDIDATES)
        .filter_map(|(route, units)| {
            let already = per_route.get(&route).copied().unwrap_or(0);
            let wanted = units.min(max).saturating_sub(already);
            (wanted > 0).then(|| Candidate {
                destination: shared.destinations.known(&route),
                route,
                wanted,
            })
        })
        .collect();
    let free = max.saturating_sub(connections.len());
    for route in shaping::plan(&candidates, &open, free, max) {
        let known = shared.destinations.known(&route).map(|d| d.key.clone());
        let ticket = Ticket::new(route, known);
        let handle = connections.spawn(connection::run(shared.clone(), ticket.clone()));
        by_task.insert(handle.id(), ticket);
    }
    if connections.len() < max || by_task.values().any(|ticket| ticket.yielding()) {
        return;
    }
    // Every slot is taken: a destination with waiting work and no connection at all gets
    // one from the destination holding the most beyond its share — a connection still
    // being set up if there is one (it is cancelled), else one that closes after its
    // current transaction.
    // (A route that is paused or a destination that is suspended only has its mail put
    // back: it needs no slot taken from anyone.)
    let now = OffsetDateTime::now_utc();
    let starving: Vec<Candidate> = candidates
        .into_iter()
        .filter(|candidate| {
            shared.pauses.active(&candidate.route, now).is_none()
                && candidate
                    .destination
                    .as_ref()
                    .is_none_or(|d| shared.suspensions.active(&d.key, now).is_none())
        })
        .collect();
    if let Some(key) = shaping::over_share(&starving, &open, max) {
        let victim = by_task
            .values()
            .filter(|ticket| ticket.key() == key)
            .min_by_key(|ticket| ticket.connected());
        if let Some(ticket) = victim {
            tracing::debug!(destination = %key, route = %ticket.route, "asking a connection to yield its slot");
            ticket.request_yield();
        }
    }
}

/// True when every message whose `send_at` has come has only final recipients.
async fn nothing_left(store: &dyn Store) -> Result<bool, StoreError> {
    let now = OffsetDateTime::now_utc();
    let mut filter = ListFilter {
        status: Some(MessageStatus::Queued),
        limit: 1000,
        ..ListFilter::default()
    };
    loop {
        let page = store.list(filter.clone()).await?;
        if page.items.iter().any(|message| message.send_at <= now) {
            return Ok(false);
        }
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return Ok(true),
        }
    }
}
