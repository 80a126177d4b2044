//! The schema, as numbered migrations applied in order when a store opens.
//!
//! Both backends have the same tables and columns; only the types differ (SQLite's
//! INTEGER/BLOB, PostgreSQL's BIGINT/BYTEA). Times are milliseconds since the epoch in
//! both, so the queries that compare them are the same. A migration is never edited once
//! released: a change is a new, higher-numbered entry.
//!
//! Choices worth knowing:
//! - `recipients.next_attempt_at` is when a `queued` or `deferred` recipient is due;
//!   `send_at` is copied into it at enqueue. A `sending` recipient belongs to its
//!   `lease_owner` for as long as that worker's row in `workers` is alive (migration 3):
//!   claims never take `sending` rows, `Store::recover` gives a dead worker's back.
//! - `recipients.priority` copies the message's, so claiming needs no join to order.
//! - `recipients.route` is `relay:SPEC` or `mx:DOMAIN` (see [`RouteKey`](crate::RouteKey)).
//! - `messages.status` is kept up to date in the transaction that changes recipients, so
//!   listing by status needs no aggregate.
//! - On PostgreSQL, ids and routes use the "C" collation so that they order bytewise
//!   as in SQLite: ULIDs sort by time, and every `mx:` route sorts between `mx:` and
//!   `mx;`, which is how "any MX route" is selected with an index range.

/// The states of a recipient that is not final yet: its message's status is `queued`.
pub(crate) const ACTIVE_STATES: &str = "('queued', 'deferred', 'sending')";

/// The states from which a recipient can be claimed (when its `next_attempt_at` has
/// come). The claim indexes are partial on exactly this predicate: a query must repeat
/// it word for word for SQLite to use them.
pub(crate) const DUE_STATES: &str = "('queued', 'deferred')";

/// The stored priority ranks (high, medium, low): claims run one index range per rank.
pub(crate) const PRIORITY_RANKS: [i64; 3] = [0, 1, 2];

/// Migration 2: idempotency keys are unique per scope (the HTTP API's scope is a hash of
/// the token, never the token), remember a hash of the request they came with, and a batch
/// shares one key across its messages (`idempotency_index` is the place in the batch).
/// Rows from before keep their key in the empty scope.
const IDEMPOTENCY_SCOPES: &str = "ALTER TABLE messages ADD COLUMN idempotency_scope TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN request_hash TEXT;
    ALTER TABLE messages ADD COLUMN idempotency_index BIGINT NOT NULL DEFAULT 0;
    DROP INDEX messages_idempotency_key;
    CREATE UNIQUE INDEX messages_idempotency ON messages (idempotency_scope, idempotency_key, idempotency_index)
        WHERE idempotency_key IS NOT NULL;";

/// Migration 3 (the ledger of engine v2):
/// - message data moves to `bodies`, so the `messages` row whose status changes on every
///   completion no longer carries (and rewrites) the MIME data;
/// - `workers` holds each engine's heartbeat: a `sending` recipient belongs to its worker
///   for as long as that worker is alive, however long its transaction runs;
/// - `recipients.lease_epoch` counts claims of a row, so an outcome from a stale claim can
///   be told from the current one (fencing);
/// - the claim indexes hold only claimable rows (`queued`, `deferred`) in claim order
///   (`priority, next_attempt_at, id`, and the same after `route`), so a claim reads one
///   index range per priority and stops after its limit: it never sorts, and never walks
///   leased rows; `recipients_next` goes (the earliest due time is the least of the three
///   per-priority index minima).
macro_rules! ledger {
    ($id:literal, $blob:literal) => {
        concat!(
            "CREATE TABLE bodies (
        message_id ",
            $id,
            " PRIMARY KEY NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        data ",
            $blob,
            " NOT NULL
    );
    INSERT INTO bodies (message_id, data) SELECT id, data FROM messages;
    ALTER TABLE messages DROP COLUMN data;
    CREATE TABLE workers (
        owner TEXT PRIMARY KEY NOT NULL,
        host_key TEXT NOT NULL,
        pid BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL,
        lease_ms BIGINT NOT NULL
    );
    ALTER TABLE recipients ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
    DROP INDEX recipients_due;
    DROP INDEX recipients_route;
    DROP INDEX recipients_next;
    CREATE INDEX recipients_due ON recipients (priority, next_attempt_at, id)
        WHERE state IN ('queued', 'deferred');
    CREATE INDEX recipients_route ON recipients (route, priority, next_attempt_at, id)
        WHERE state IN ('queued', 'deferred');
    CREATE INDEX recipients_leased ON recipients (lease_owner) WHERE state = 'sending';"
        )
    };
}

/// Migration 4: destinations suspended because they asked us to slow down (a `421`, a
/// `[[shaping]] on_reply` pattern), so that every process sees them: `queue list` and the
/// admin page in another process than the engine, and the other workers sharing the
/// database, which wait for them too. One row per destination (the engine's name for it);
/// `domains` holds the recipient domains known to route there, lowercase and
/// space-separated; `until` and `updated_at` are milliseconds. Rows that have ended are
/// ignored by reads and deleted at the next suspension written.
const SUSPENSIONS: &str = "CREATE TABLE suspensions (
        destination TEXT PRIMARY KEY NOT NULL,
        reason TEXT NOT NULL,
        until BIGINT NOT NULL,
        times INTEGER NOT NULL,
        domains TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );";

/// Migration 5: the suppression list, and the list each message belongs to.
/// - `suppressions`: one row per (address, list), both normalised (trimmed, ASCII
///   lowercase); the empty list means every list. `reason` is unsubscribed, bounced,
///   complained or manual; `created_at` milliseconds; `message_id` the message that
///   caused it (no foreign key: a purge of that message keeps the suppression).
///   The primary key serves the per-recipient probe of enqueue and claim
///   (`address = ? AND list IN ('', ?)`).
/// - `messages.list`: the message's list, normalised (default: its header From address);
///   messages queued before get their envelope sender, lowercased.
const SUPPRESSIONS_LIST: &str = "CREATE TABLE suppressions (
        address TEXT NOT NULL,
        list TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        message_id TEXT,
        PRIMARY KEY (address, list)
    );
    ALTER TABLE messages ADD COLUMN list TEXT NOT NULL DEFAULT '';
    UPDATE messages SET list = lower(envelope_from);";

/// Migration 6: `messages.list_unsubscribe` (0 or 1): the message asked for one-click
/// unsubscribe (RFC 8058), so the engine writes it per recipient with `List-Unsubscribe`
/// and `List-Unsubscribe-Post` headers naming that recipient and `messages.list`.
const LIST_UNSUBSCRIBE: &str =
    "ALTER TABLE messages ADD COLUMN list_unsubscribe BIGINT NOT NULL DEFAULT 0;";
/// Migration 7 (issue 12, bounces and complaints): one row per feedback report received
/// at the bounce domain, matched or not (`crate::feedback`). `kind` is bounce, delay or
/// complaint; `format` dsn, arf or text; `recipient_id` and `message_id` the recipient the
/// VERP token named (no foreign key: a purge of the message keeps the report); `applied`
/// the state the report put it in, if any; `raw` the report text, kept only when it named
/// no recipient. `messages.header_message_id` is the message's `Message-ID` (without angle
/// brackets), stored at enqueue so that a report without a token can be matched by it;
/// messages queued before have none.
macro_rules! feedback {
    ($id:literal, $blob:literal) => {
        concat!(
            "CREATE TABLE feedback (
        id ",
            $id,
            " PRIMARY KEY,
        received_at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        format TEXT NOT NULL,
        recipient_id BIGINT,
        message_id TEXT,
        address TEXT,
        status TEXT,
        diagnostic TEXT,
        applied TEXT,
        sender TEXT NOT NULL,
        raw ",
            $blob,
            "
    );
    CREATE INDEX feedback_message ON feedback (message_id, id) WHERE message_id IS NOT NULL;
    CREATE INDEX feedback_unmatched ON feedback (id) WHERE recipient_id IS NULL;
    ALTER TABLE messages ADD COLUMN header_message_id TEXT;
    CREATE INDEX messages_header_message_id ON messages (header_message_id)
        WHERE header_message_id IS NOT NULL;"
        )
    };
}

/// Migration 8: the event log and its webhook deliveries.
/// - `events`: one row per recipient state change worth telling (queued, sent, deferred,
///   failed, suppressed, unsubscribed, and the feedback states), written in the
///   transaction of the change itself. `message_id`/`recipient_id` may be NULL (an
///   unsubscribe without a message); no foreign keys, so a purge of the message keeps its
///   events until they are pruned. `dispatched` is 0 until the webhook sender has created
///   the event's deliveries: the partial index `events_undispatched` is what it reads,
///   whatever the order in which concurrent transactions committed their ids.
/// - `webhook_deliveries`: one row per (webhook, event) the webhook wants; delivered when
///   `delivered_at` is set. Sent in event order per webhook (`webhook_deliveries_pending`).
/// - `webhook_locks`: which worker sends to a webhook, until when: one sender at a time
///   per endpoint, so that order holds across processes sharing the database.
macro_rules! events {
    ($id:literal, $c:literal) => {
        concat!(
            "CREATE TABLE events (
        id ",
            $id,
            ",
        message_id TEXT ",
            $c,
            ",
        recipient_id BIGINT,
        address TEXT NOT NULL,
        type TEXT NOT NULL,
        state TEXT,
        reply TEXT,
        created_at BIGINT NOT NULL,
        dispatched BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX events_message ON events (message_id, id);
    CREATE INDEX events_undispatched ON events (id) WHERE dispatched = 0;
    CREATE TABLE webhook_deliveries (
        webhook TEXT ",
            $c,
            " NOT NULL,
        event_id BIGINT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        last_status BIGINT,
        last_error TEXT,
        delivered_at BIGINT,
        PRIMARY KEY (webhook, event_id)
    );
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook, event_id)
        WHERE delivered_at IS NULL;
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
    CREATE TABLE webhook_locks (
        webhook TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL,
        until BIGINT NOT NULL
    );"
        )
    };
}

/// SQLite migrations: (version, SQL).
pub(crate) const SQLITE: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE messages (
        id TEXT PRIMARY KEY NOT NULL,
        created_at INTEGER NOT NULL,
        send_at INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        envelope_from TEXT NOT NULL,
        subject TEXT NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL,
        tokens TEXT,
        relay TEXT,
        idempotency_key TEXT,
        status TEXT NOT NULL,
        recipient_count INTEGER NOT NULL
    );
    CREATE INDEX messages_status ON messages (status, id);
    CREATE UNIQUE INDEX messages_idempotency_key ON messages (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE recipients (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        domain TEXT NOT NULL,
        route TEXT NOT NULL,
        priority INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_owner TEXT,
        last_reply TEXT,
        merge TEXT
    );
    CREATE INDEX recipients_message ON recipients (message_id, state);
    CREATE INDEX recipients_due ON recipients (priority, message_id)
        WHERE state IN ('queued', 'deferred', 'sending');
    CREATE INDEX recipients_route ON recipients (route, priority, message_id)
        WHERE state IN ('queued', 'deferred', 'sending');
    CREATE INDEX recipients_next ON recipients (next_attempt_at)
        WHERE state IN ('queued', 'deferred', 'sending');
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        recipient_id INTEGER NOT NULL,
        at INTEGER NOT NULL,
        host TEXT,
        code INTEGER,
        reply TEXT NOT NULL,
        outcome TEXT NOT NULL,
        duration_ms INTEGER NOT NULL
    );
    CREATE INDEX attempts_message ON attempts (message_id, id);",
    ),
    (2, IDEMPOTENCY_SCOPES),
    (3, SQLITE_LEDGER),
    (4, SUSPENSIONS),
    (5, SUPPRESSIONS_LIST),
    (6, LIST_UNSUBSCRIBE),
    (7, feedback!("INTEGER", "BLOB")),
    (8, SQLITE_EVENTS),
];

/// Migration 3 with SQLite's types.
const SQLITE_LEDGER: &str = ledger!("TEXT", "BLOB");

/// Migration 3 with PostgreSQL's types.
const POSTGRES_LEDGER: &str = ledger!("TEXT COLLATE \"C\"", "BYTEA");

/// Migration 8 with SQLite's types (the rowid alias keeps ids increasing).
const SQLITE_EVENTS: &str = events!("INTEGER PRIMARY KEY", "");

/// Migration 8 with PostgreSQL's types.
const POSTGRES_EVENTS: &str = events!(
    "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "COLLATE \"C\""
);

/// PostgreSQL migrations: (version, SQL).
pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        r#"CREATE TABLE messages (
        id TEXT COLLATE "C" PRIMARY KEY,
        created_at BIGINT NOT NULL,
        send_at BIGINT NOT NULL,
        priority BIGINT NOT NULL,
        envelope_from TEXT NOT NULL,
        subject TEXT NOT NULL,
        size BIGINT NOT NULL,
        data BYTEA NOT NULL,
        tokens TEXT,
        relay TEXT,
        idempotency_key TEXT,
        status TEXT NOT NULL,
        recipient_count BIGINT NOT NULL
    );
    CREATE INDEX messages_status ON messages (status, id);
    CREATE UNIQUE INDEX messages_idempotency_key ON messages (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE recipients (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        domain TEXT NOT NULL,
        route TEXT COLLATE "C" NOT NULL,
        priority BIGINT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        lease_owner TEXT,
        last_reply TEXT,
        merge TEXT
    );
    CREATE INDEX recipients_message ON recipients (message_id, state);
    CREATE INDEX recipients_due ON recipients (priority, message_id)
        WHERE state IN ('queued', 'deferred', 'sending');
    CREATE INDEX recipients_route ON recipients (route, priority, message_id)
        WHERE state IN ('queued', 'deferred', 'sending');
    CREATE INDEX recipients_next ON recipients (next_attempt_at)
        WHERE state IN ('queued', 'deferred', 'sending');
    CREATE TABLE attempts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        recipient_id BIGINT NOT NULL,
        at BIGINT NOT NULL,
        host TEXT,
        code BIGINT,
        reply TEXT NOT NULL,
        outcome TEXT NOT NULL,
        duration_ms BIGINT NOT NULL
    );
    CREATE INDEX attempts_message ON attempts (message_id, id);"#,
    ),
    (2, IDEMPOTENCY_SCOPES),
    (3, POSTGRES_LEDGER),
    (4, SUSPENSIONS),
    (5, SUPPRESSIONS_LIST),
    (6, LIST_UNSUBSCRIBE),
    (7, feedback!("BIGINT GENERATED ALWAYS AS IDENTITY", "BYTEA")),
    (8, POSTGRES_EVENTS),
];

/// The statement that recomputes the status of every message matching `condition`
/// (a condition on `messages.id`, e.g. `id IN (...)`), from its recipients.
pub(crate) fn refresh_statuses_sql(condition: &str) -> String {
    format!(
        "UPDATE messages SET status = CASE \
           WHEN EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = messages.id AND r.state IN {ACTIVE_STATES}) THEN 'queued' \
           WHEN EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = messages.id AND r.state <> 'sent') THEN 'error' \
           ELSE 'sent' END \
         WHERE {condition}"
    )
}

/// The statement that recomputes one message's status from its recipients (DESIGN §4):
/// `queued` while any recipient is active, `sent` when all are sent, else `error`.
/// `{p}` is the placeholder for the message id.
pub(crate) fn refresh_status_sql(p: &str) -> String {
    format!(
        "UPDATE messages SET status = CASE \
           WHEN EXISTS (SELECT 1 FROM recipients WHERE message_id = {p} AND state IN {ACTIVE_STATES}) THEN 'queued' \
           WHEN EXISTS (SELECT 1 FROM recipients WHERE message_id = {p} AND state <> 'sent') THEN 'error' \
           ELSE 'sent' END \
         WHERE id = {p}"
    )
}

/// The earliest due time of a `queued` or `deferred` recipient: the least of the three
/// per-priority index minima.
pub(crate) fn next_due_sql() -> String {
    let arms: Vec<String> = PRIORITY_RANKS
        .iter()
        .map(|rank| {
            format!(
                "SELECT (SELECT next_attempt_at FROM recipients WHERE state IN {DUE_STATES} \
                 AND priority = {rank} ORDER BY next_attempt_at LIMIT 1) AS n"
            )
        })
        .collect();
    format!("SELECT MIN(n) FROM ({}) AS due", arms.join(" UNION ALL "))
}

/// Whether any `queued` or `deferred` recipient is due at the first parameter.
pub(crate) fn has_due_sql(p: &str) -> String {
    let arms: Vec<String> = PRIORITY_RANKS
        .iter()
        .map(|rank| {
            format!(
                "EXISTS (SELECT 1 FROM recipients WHERE state IN {DUE_STATES} \
                 AND priority = {rank} AND next_attempt_at <= {p})"
            )
        })
        .collect();
    format!("SELECT {}", arms.join(" OR "))
}
