//! The values that go into and come out of a [`Store`](crate::Store): new messages,
//! claimed work, delivery outcomes, and the administrative views.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::StoreError;

/// Merge values: token name -> value (`#NAME#` markers in the message are replaced by them).
pub type MergeValues = BTreeMap<String, String>;

/// Delivery priority (the same type as in a message spec): due recipients are taken
/// high first, then medium, then low.
pub use outbox_mime::Priority;

/// The number a priority is stored as; lower sorts first.
pub(crate) fn priority_rank(priority: Priority) -> i64 {
    match priority {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}

/// The priority stored as `rank`.
pub(crate) fn priority_from_rank(rank: i64) -> Result<Priority, StoreError> {
    match rank {
        0 => Ok(Priority::High),
        1 => Ok(Priority::Medium),
        2 => Ok(Priority::Low),
        other => Err(StoreError::Corrupt {
            what: "priority",
            detail: other.to_string(),
        }),
    }
}

/// One envelope recipient's state (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RecipientState {
    /// Waiting for its first attempt (or for `send_at`).
    Queued,
    /// Leased by a worker that is delivering it now.
    Sending,
    /// The server answered 250 to end-of-data.
    Sent,
    /// A temporary failure; due again at `next_attempt_at`.
    Deferred,
    /// A permanent failure, or too many attempts ("cancelled" in the seed).
    Failed,
    /// Removed by an operator.
    Removed,
    /// Not sent because the address is on the suppression list (for every list or for
    /// the message's list), found at enqueue or at a claim; `last_reply` says which entry.
    Suppressed,
    /// Accepted, then reported undeliverable by a bounce (an RFC 3464 `failed` report or a
    /// plain-text non-delivery notice to its VERP return path); `last_reply` holds the
    /// reported status and diagnostic.
    Bounced,
    /// The recipient reported the message as spam (an RFC 5965 feedback report).
    Complained,
}

impl RecipientState {
    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Queued => "queued",
            RecipientState::Sending => "sending",
            RecipientState::Sent => "sent",
            RecipientState::Deferred => "deferred",
            RecipientState::Failed => "failed",
            RecipientState::Removed => "removed",
            RecipientState::Suppressed => "suppressed",
            RecipientState::Bounced => "bounced",
            RecipientState::Complained => "complained",
        }
    }

    /// True for sent, failed, removed, suppressed, bounced and complained: no delivery
    /// will be attempted again (a sent recipient may still become bounced or complained
    /// when feedback arrives).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RecipientState::Sent
                | RecipientState::Failed
                | RecipientState::Removed
                | RecipientState::Suppressed
                | RecipientState::Bounced
                | RecipientState::Complained
        )
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => RecipientState::Queued,
            "sending" => RecipientState::Sending,
            "sent" => RecipientState::Sent,
            "deferred" => RecipientState::Deferred,
            "failed" => RecipientState::Failed,
            "removed" => RecipientState::Removed,
            "suppressed" => RecipientState::Suppressed,
            "bounced" => RecipientState::Bounced,
            "complained" => RecipientState::Complained,
            other => {
                return Err(StoreError::Corrupt {
                    what: "recipient state",
                    detail: other.to_string(),
                });
            }
        })
    }
}

impl fmt::Display for RecipientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's status, derived from its recipients: the three words of `email_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MessageStatus {
    /// Some recipient is queued, deferred or being sent.
    Queued,
    /// Every recipient was sent.
    Sent,
    /// Every recipient is final and at least one failed, was removed or was suppressed.
    Error,
}

impl MessageStatus {
    /// `queued`, `sent` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sent => "sent",
            MessageStatus::Error => "error",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        s.parse().map_err(|_| StoreError::Corrupt {
            what: "message status",
            detail: s.to_string(),
        })
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "queued" => Ok(MessageStatus::Queued),
            "sent" => Ok(MessageStatus::Sent),
            "error" => Ok(MessageStatus::Error),
            _ => Err(format!(
                "unknown status {s:?}: expected queued, sent or error"
            )),
        }
    }
}

/// A recipient to queue: the envelope address and, for a merge message, its own values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecipient {
    /// The envelope address (`local@domain`).
    pub address: String,
    /// Merge values for this recipient (they override the message's tokens).
    pub merge: Option<MergeValues>,
}

impl NewRecipient {
    /// A recipient without merge values.
    pub fn new(address: impl Into<String>) -> Self {
        NewRecipient {
            address: address.into(),
            merge: None,
        }
    }

    /// A recipient with its own merge values.
    pub fn with_merge(address: impl Into<String>, merge: MergeValues) -> Self {
        NewRecipient {
            address: address.into(),
            merge: Some(merge),
        }
    }
}

/// A message to queue: the composed MIME data (stored once) and its envelope.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewMessage {
    /// The MIME message, CRLF line ends; for a merge message, with `#NAME#` markers left in.
    pub data: Vec<u8>,
    /// The envelope sender (MAIL FROM); may be empty for a null sender.
    pub envelope_from: String,
    /// Envelope recipients; at least one (more may be added with `add_recipients`).
    pub recipients: Vec<NewRecipient>,
    /// Subject, kept for listing and search only.
    pub subject: String,
    /// Delivery priority.
    pub priority: Priority,
    /// Not delivered before this time; `None` means now.
    pub send_at: Option<OffsetDateTime>,
    /// A server spec for this message instead of the configured route.
    pub relay: Option<String>,
    /// Default merge values; `Some` (even empty) marks a message the engine must merge.
    pub tokens: Option<MergeValues>,
    /// A repeated key returns the first message's id instead of queueing again.
    pub idempotency_key: Option<String>,
    /// The list the message belongs to, for the suppression list (a recipient suppressed
    /// for this list, or for every list, is not sent). `None`: the address of the header
    /// `From` (else the envelope sender). Normalised (trimmed, ASCII lowercase) when stored.
    pub list: Option<String>,
    /// One-click unsubscribe (RFC 8058): each recipient gets `List-Unsubscribe` and
    /// `List-Unsubscribe-Post` headers with a signed link naming it and the message's list
    /// (the engine's [`Unsubscribe`](crate::Unsubscribe) writes them at delivery).
    pub list_unsubscribe: bool,
}

/// The `Idempotency-Key` of a request that queues one or more messages
/// ([`Store::enqueue_keyed`](crate::Store::enqueue_keyed)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The key the client chose.
    pub key: String,
    /// Whose key it is: keys are unique per scope (the HTTP API uses a hash of the token,
    /// never the token, so two tokens never share a key).
    pub scope: String,
    /// A hash of the request: the key repeated with another request is
    /// [`StoreError::IdempotencyConflict`](crate::StoreError::IdempotencyConflict).
    pub request_hash: String,
}

/// What `enqueue` returns once the message is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The message id (a ULID, sortable by time).
    pub id: String,
    /// True when the idempotency key was already used: `id` is the first message's.
    pub existing: bool,
}

/// The key that groups recipients onto one connection.
///
/// Stored per recipient at enqueue time as text: `relay:SPEC` when the message names its
/// own relay, else `mx:DOMAIN`. Whether a configured relay replaces MX delivery is the
/// engine's business, decided at claim time, so changing the configuration never leaves
/// stale routes in the queue: with a relay configured the engine drains
/// [`RouteFilter::AnyMx`] over the relay connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteKey {
    /// The message's own relay (a server spec).
    Relay(String),
    /// The recipient domain's MX hosts (or the configured relay, if any).
    Mx(String),
}

impl RouteKey {
    /// The route of a recipient at `domain` of a message with relay override `relay`.
    pub fn for_recipient(relay: Option<&str>, domain: &str) -> Self {
        match relay {
            Some(spec) => RouteKey::Relay(spec.to_string()),
            None => RouteKey::Mx(domain.to_ascii_lowercase()),
        }
    }

    /// The stored text form.
    pub fn to_key(&self) -> String {
        match self {
            RouteKey::Relay(spec) => format!("relay:{spec}"),
            RouteKey::Mx(domain) => format!("mx:{domain}"),
        }
    }

    /// Parses the stored text form.
    pub fn from_key(key: &str) -> Result<Self, StoreError> {
        if let Some(spec) = key.strip_prefix("relay:") {
            Ok(RouteKey::Relay(spec.to_string()))
        } else if let Some(domain) = key.strip_prefix("mx:") {
            Ok(RouteKey::Mx(domain.to_string()))
        } else {
            Err(StoreError::Corrupt {
                what: "route",
                detail: key.to_string(),
            })
        }
    }
}

/// Which recipients `claim_route` may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteFilter {
    /// Exactly this route.
    Key(RouteKey),
    /// Every recipient without a per-message relay: what a connection to the configured
    /// relay carries.
    AnyMx,
}

/// One recipient of a claimed work unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRecipient {
    /// The recipient's row id: what `release` and `complete` take.
    pub id: i64,
    /// The claim's lease epoch: copy it into the [`Outcome`], so that an outcome of a
    /// claim that was since taken over (a newer epoch) is not applied.
    pub epoch: i64,
    /// The envelope address.
    pub address: String,
    /// The address's domain, lowercase.
    pub domain: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// This recipient's merge values.
    pub merge: Option<MergeValues>,
}

/// A work unit: recipients of one message that share a route, leased to one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The message id; its data comes from `message_body` (fetch once, reuse).
    pub message_id: String,
    /// The route every recipient here shares.
    pub route: RouteKey,
    /// MAIL FROM.
    pub envelope_from: String,
    /// The message's relay override, if any.
    pub relay: Option<String>,
    /// The message's priority.
    pub priority: Priority,
    /// Size of the stored data in bytes.
    pub size: u64,
    /// True when the message is written per recipient, one transaction each: it has tokens
    /// or merge values, or it asked for per-recipient unsubscribe headers.
    pub needs_merge: bool,
    /// The claimed recipients, in id order.
    pub recipients: Vec<ClaimedRecipient>,
}

/// The stored data of a message, as the engine needs it to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody {
    /// The MIME data, once per message.
    pub data: Vec<u8>,
    /// Default merge values.
    pub tokens: Option<MergeValues>,
    /// The message's list when it asked for one-click unsubscribe headers
    /// ([`NewMessage::list_unsubscribe`]); `None` otherwise.
    pub unsubscribe_list: Option<String>,
}

/// The result of one delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Accepted: 250 to end-of-data. Final: recorded whoever holds the lease now.
    Sent {
        /// The server's reply.
        reply: String,
    },
    /// Temporary failure; try again at `next_attempt_at`.
    Deferred {
        /// The reply or network error.
        reply: String,
        /// When the recipient becomes due again.
        next_attempt_at: OffsetDateTime,
    },
    /// Permanent failure (or out of attempts).
    Failed {
        /// The reply or reason.
        reply: String,
    },
    /// A permanent failure the recipient's server gave to this recipient itself (a 5xx
    /// to its RCPT TO, or to the end of data): stored as `failed` like
    /// [`Delivery::Failed`], and also a hard bounce, so the address is added to the
    /// suppression list for every list with reason `bounced` (issue 12). A 4xx never is.
    HardBounce {
        /// The server's reply.
        reply: String,
    },
    /// The connection was lost after the final dot, before any reply: the message may or
    /// may not have been accepted. Stored as `deferred` (retried: at-least-once), counted
    /// as an attempt, logged with the outcome `unknown`.
    Unknown {
        /// What happened (the network error).
        reply: String,
        /// When the recipient becomes due again.
        next_attempt_at: OffsetDateTime,
    },
    /// A connection-level failure before any transaction (AUTH rejected, a TLS
    /// configuration error, the relay refused the connection): stored as `deferred`,
    /// logged as `deferred`, and NOT counted as an attempt, so it can never make the
    /// recipient fail through `max_attempts`.
    NotAttempted {
        /// The error, as the operator should see it.
        reply: String,
        /// When the recipient becomes due again.
        next_attempt_at: OffsetDateTime,
    },
}

impl Delivery {
    /// The state the outcome leaves the recipient in.
    pub fn state(&self) -> RecipientState {
        match self {
            Delivery::Sent { .. } => RecipientState::Sent,
            Delivery::Deferred { .. }
            | Delivery::Unknown { .. }
            | Delivery::NotAttempted { .. } => RecipientState::Deferred,
            Delivery::Failed { .. } | Delivery::HardBounce { .. } => RecipientState::Failed,
        }
    }

    /// The outcome written to the attempts log.
    pub fn logged_as(&self) -> AttemptOutcome {
        match self {
            Delivery::Sent { .. } => AttemptOutcome::Sent,
            Delivery::Deferred { .. } | Delivery::NotAttempted { .. } => AttemptOutcome::Deferred,
            Delivery::Failed { .. } | Delivery::HardBounce { .. } => AttemptOutcome::Failed,
            Delivery::Unknown { .. } => AttemptOutcome::Unknown,
        }
    }

    /// True for [`Delivery::HardBounce`]: the address goes on the suppression list.
    pub fn is_hard_bounce(&self) -> bool {
        matches!(self, Delivery::HardBounce { .. })
    }

    /// False only for [`Delivery::NotAttempted`]: every other outcome adds one to the
    /// recipient's attempts.
    pub fn counts_as_attempt(&self) -> bool {
        !matches!(self, Delivery::NotAttempted { .. })
    }

    /// The reply text stored as `last_reply` and in the attempts log.
    pub fn reply(&self) -> &str {
        match self {
            Delivery::Sent { reply }
            | Delivery::Failed { reply }
            | Delivery::HardBounce { reply } => reply,
            Delivery::Deferred { reply, .. }
            | Delivery::Unknown { reply, .. }
            | Delivery::NotAttempted { reply, .. } => reply,
        }
    }

    /// When a deferred recipient is due again; `None` for final outcomes.
    pub fn next_attempt_at(&self) -> Option<OffsetDateTime> {
        match self {
            Delivery::Deferred {
                next_attempt_at, ..
            }
            | Delivery::Unknown {
                next_attempt_at, ..
            }
            | Delivery::NotAttempted {
                next_attempt_at, ..
            } => Some(*next_attempt_at),
            Delivery::Sent { .. } | Delivery::Failed { .. } | Delivery::HardBounce { .. } => None,
        }
    }
}

/// What an attempts-log row says happened (`AttemptRecord::outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// 250 to end-of-data.
    Sent,
    /// A temporary failure (or a connection-level failure, not counted as an attempt).
    Deferred,
    /// A permanent failure.
    Failed,
    /// The connection was lost after the final dot without a reply: retried.
    Unknown,
}

impl AttemptOutcome {
    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Deferred => "deferred",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Unknown => "unknown",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "sent" => AttemptOutcome::Sent,
            "deferred" => AttemptOutcome::Deferred,
            "failed" => AttemptOutcome::Failed,
            "unknown" => AttemptOutcome::Unknown,
            other => {
                return Err(StoreError::Corrupt {
                    what: "attempt outcome",
                    detail: other.to_string(),
                });
            }
        })
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One outcome to record with `complete`: the recipient, what happened, and the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The claimed recipient's id.
    pub recipient_id: i64,
    /// The epoch of the claim the attempt was made under ([`ClaimedRecipient::epoch`]).
    pub epoch: i64,
    /// What happened.
    pub delivery: Delivery,
    /// When the attempt started.
    pub at: OffsetDateTime,
    /// The host tried (`mx.example.com:25`), if a connection was made or attempted.
    pub host: Option<String>,
    /// How long the attempt took.
    pub duration: Duration,
}

/// A delivery worker, as [`Store::heartbeat`](crate::Store::heartbeat) records it: a
/// `sending` recipient belongs to its worker for as long as the worker is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker's name in `lease_owner`; unique among workers sharing a database.
    pub owner: String,
    /// Which machine and pid namespace the worker runs in: two workers with the same key
    /// can see each other's processes in `/proc`.
    pub host_key: String,
    /// The worker's process id in that namespace.
    pub pid: u32,
}

impl WorkerInfo {
    /// This process under the name `owner`: the host key is the host name, the boot id
    /// (`/proc/sys/kernel/random/boot_id`, new at each boot, so a pid from before a
    /// reboot never matches) and the pid namespace (`/proc/self/ns/pid`).
    pub fn this_process(owner: String) -> WorkerInfo {
        WorkerInfo {
            owner,
            host_key: host_key(),
            pid: std::process::id(),
        }
    }
}

/// The host key of this process (see [`WorkerInfo::this_process`]), computed once.
pub(crate) fn host_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(read_host_key).clone()
}

fn read_host_key() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_string())
            .unwrap_or_default()
    };
    let mut host = read("/proc/sys/kernel/hostname");
    if host.is_empty() {
        host = std::env::var("HOSTNAME").unwrap_or_default();
    }
    let boot = read("/proc/sys/kernel/random/boot_id");
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{host}/{boot}/{namespace}")
}

/// The owners among `(owner, pid)` rows of this host whose process is gone.
pub(crate) fn gone_owners(same_host: Vec<(String, i64)>) -> Vec<String> {
    if !can_see_pids() {
        return Vec::new();
    }
    same_host
        .into_iter()
        .filter(|(_, pid)| !pid_exists(*pid))
        .map(|(owner, _)| owner)
        .collect()
}

/// True when this process can tell whether a pid of its host key is alive: its own pid
/// is visible in `/proc` (Linux with procfs mounted).
fn can_see_pids() -> bool {
    std::path::Path::new(&format!("/proc/{}", std::process::id())).exists()
}

/// True when process `pid` exists in this process's pid namespace (a zombie counts).
fn pid_exists(pid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// One recipient in the detailed status view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientStatus {
    /// The envelope address.
    pub address: String,
    /// Its state.
    pub state: RecipientState,
    /// Attempts made.
    pub attempts: u32,
    /// The last SMTP reply (starting with its code) or network error.
    pub last_reply: Option<String>,
}

/// The detailed status: the `status --json` and `GET /api/v1/messages/{id}` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageDetail {
    /// The message id.
    pub id: String,
    /// The derived status.
    pub status: MessageStatus,
    /// Every recipient, in the order they were queued.
    pub recipients: Vec<RecipientStatus>,
}

/// One message in a listing (`queue list --json` items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageSummary {
    /// The message id.
    pub id: String,
    /// The derived status.
    pub status: MessageStatus,
    /// The subject.
    pub subject: String,
    /// The priority.
    pub priority: Priority,
    /// The envelope sender.
    pub from: String,
    /// When it was queued (RFC 3339).
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub created_at: OffsetDateTime,
    /// Not delivered before (RFC 3339); equals `created_at` when sent at once.
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub send_at: OffsetDateTime,
    /// Number of recipients.
    pub recipients: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

/// One row of a message's delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// When the attempt started (RFC 3339).
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub at: OffsetDateTime,
    /// The recipient address.
    pub recipient: String,
    /// The host tried.
    pub host: Option<String>,
    /// The SMTP reply code, when the reply had one.
    pub code: Option<u16>,
    /// The reply text or network error.
    pub reply: String,
    /// What the attempt's outcome was (`unknown` when the connection was lost after the
    /// final dot).
    pub outcome: AttemptOutcome,
    /// Duration in milliseconds.
    pub duration_ms: u64,
}

/// Filters and paging for `list`. Results are newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only messages with this status.
    pub status: Option<MessageStatus>,
    /// Only messages with this priority.
    pub priority: Option<Priority>,
    /// Only messages queued before this time.
    pub before: Option<OffsetDateTime>,
    /// Only messages queued after this time.
    pub after: Option<OffsetDateTime>,
    /// Only messages with a recipient at this domain.
    pub domain: Option<String>,
    /// Only messages whose subject contains this text (case-insensitive for ASCII).
    pub subject: Option<String>,
    /// At most this many (1..=1000).
    pub limit: u32,
    /// Continue after this cursor (`ListPage::next_cursor` of the previous page).
    pub cursor: Option<String>,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            status: None,
            priority: None,
            before: None,
            after: None,
            domain: None,
            subject: None,
            limit: 50,
            cursor: None,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListPage {
    /// The messages, newest first.
    pub items: Vec<MessageSummary>,
    /// Pass as `ListFilter::cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Number of messages per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// Messages still being delivered.
    pub queued: u64,
    /// Messages fully sent.
    pub sent: u64,
    /// Messages finished with a failed or removed recipient.
    pub error: u64,
}

/// A destination that asked to slow down, as stored for every process to see
/// ([`Store::suspend`](crate::Store::suspend)): the `queue list` of another process, the
/// admin page, and the other workers sharing the database, which wait for it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredSuspension {
    /// The destination, as the engine names it (`mx HOST,HOST`, `mx *.SUFFIX`,
    /// `domain D`, `relay SPEC` with any password hidden).
    pub destination: String,
    /// Why: the reply that suspended it (`<destination> suspended after: <reply>`).
    pub reason: String,
    /// When it ends (RFC 3339).
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub until: OffsetDateTime,
    /// Slow-down replies in a row (stored up to `i32::MAX`).
    pub times: u32,
    /// The recipient domains known to route there: lowercase, sorted, no duplicates
    /// (empty for a relay, which is not reached by domain).
    pub domains: Vec<String>,
}

impl StoredSuspension {
    /// The domains as stored: lowercase, space-separated, sorted, without duplicates or
    /// empty names.
    pub(crate) fn domains_column(&self) -> String {
        let mut domains: Vec<String> = self
            .domains
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty() && !d.contains(char::is_whitespace))
            .collect();
        domains.sort();
        domains.dedup();
        domains.join(" ")
    }

    /// The count as stored: at most `i32::MAX` on both backends (PostgreSQL's INTEGER).
    pub(crate) fn times_column(&self) -> i32 {
        i32::try_from(self.times).unwrap_or(i32::MAX)
    }

    /// A stored row back as a value.
    pub(crate) fn from_row(
        destination: String,
        reason: String,
        until_ms: i64,
        times: i64,
        domains: &str,
    ) -> StoredSuspension {
        StoredSuspension {
            destination,
            reason,
            until: crate::timefmt::from_ms(until_ms),
            times: u32::try_from(times).unwrap_or(if times < 0 { 0 } else { u32::MAX }),
            domains: domains.split_whitespace().map(str::to_string).collect(),
        }
    }
}

/// Settings a store applies to what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Biggest message `enqueue` accepts, in bytes (default 8 MB = 8 000 000 bytes).
    pub max_message_size: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_message_size: 8_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_names_the_host_boot_and_pid_namespace() {
        let me = WorkerInfo::this_process("w".into());
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.owner, "w");
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert!(me.host_key.contains(boot.trim()), "{}", me.host_key);
        assert!(me.host_key.contains("pid:["), "{}", me.host_key);
        assert_eq!(WorkerInfo::this_process("x".into()).host_key, me.host_key);
    }

    #[test]
    fn only_workers_whose_process_is_gone_are_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = i64::from(child.id());
        child.wait().unwrap();
        let alive = i64::from(std::process::id());
        let dead = gone_owners(vec![("alive".into(), alive), ("gone".into(), gone)]);
        assert_eq!(dead, vec!["gone".to_string()]);
    }

    #[test]
    fn deliveries_map_to_states_attempts_and_log_outcomes() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let cases = [
            (
                Delivery::Sent {
                    reply: "250".into(),
                },
                RecipientState::Sent,
                true,
                AttemptOutcome::Sent,
            ),
            (
                Delivery::Unknown {
                    reply: "lost".into(),
                    next_attempt_at: at,
                },
                RecipientState::Deferred,
                true,
                AttemptOutcome::Unknown,
            ),
            (
                Delivery::NotAttempted {
                    reply: "535".into(),
                    next_attempt_at: at,
                },
                RecipientState::Deferred,
                false,
                AttemptOutcome::Deferred,
            ),
            (
                Delivery::Failed {
                    reply: "550".into(),
                },
                RecipientState::Failed,
                true,
                AttemptOutcome::Failed,
            ),
        ];
        for (delivery, state, counts, logged) in cases {
            assert_eq!(delivery.state(), state, "{delivery:?}");
            assert_eq!(delivery.counts_as_attempt(), counts, "{delivery:?}");
            assert_eq!(delivery.logged_as(), logged, "{delivery:?}");
            assert_eq!(
                AttemptOutcome::parse(logged.as_str()).unwrap(),
                logged,
                "{delivery:?}"
            );
        }
    }
}
