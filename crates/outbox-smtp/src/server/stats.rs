//! Connection and transaction counters, so delivery tests can assert limits such as "at most
//! 5 connections at a time, at most 100 messages per connection".

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A snapshot of a server's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted since the server started.
    pub connections_accepted: u64,
    /// Connections open right now.
    pub connections_open: u64,
    /// Connections answered `421` and closed at once because a limit was reached.
    pub connections_refused: u64,
    /// The most connections that were open at the same time.
    pub max_concurrent_connections: u64,
    /// For each connection (by number, from 1), how many messages it delivered (the sink
    /// accepted them and the client got `250`).
    pub transactions_per_connection: BTreeMap<u64, u64>,
}

impl ServerStats {
    /// The most messages delivered over one connection.
    pub fn max_transactions_per_connection(&self) -> u64 {
        self.transactions_per_connection
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// Messages delivered over all connections.
    pub fn messages_delivered(&self) -> u64 {
        self.transactions_per_connection.values().sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    inner: Mutex<ServerStats>,
    /// Whether `transactions_per_connection` is kept: it grows by one entry per connection,
    /// fine for a test peer, a leak for a listener that runs for months.
    untracked: bool,
}

impl Counters {
    pub(crate) fn new(per_connection: bool) -> Counters {
        Counters {
            inner: Mutex::default(),
            untracked: !per_connection,
        }
    }

    /// Counts a new connection and returns its number.
    pub(crate) fn connection_opened(&self) -> u64 {
        let mut stats = self.lock();
        stats.connections_accepted += 1;
        stats.connections_open += 1;
        stats.max_concurrent_connections =
            stats.max_concurrent_connections.max(stats.connections_open);
        let id = stats.connections_accepted;
        if !self.untracked {
            stats.transactions_per_connection.insert(id, 0);
        }
        id
    }

    pub(crate) fn connection_refused(&self) {
        self.lock().connections_refused += 1;
    }

    pub(crate) fn connection_closed(&self) {
        let mut stats = self.lock();
        stats.connections_open = stats.connections_open.saturating_sub(1);
    }

    pub(crate) fn transaction_done(&self, connection: u64) {
        if self.untracked {
            return;
        }
        *self
            .lock()
            .transactions_per_connection
            .entry(connection)
            .or_insert(0) += 1;
    }

    pub(crate) fn snapshot(&self) -> ServerStats {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerStats> {
        // Every update is a few field writes that cannot panic midway.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untracked_counters_keep_no_entry_per_connection() {
        let counters = Counters::new(false);
        for _ in 0..1000 {
            let id = counters.connection_opened();
            counters.transaction_done(id);
            counters.connection_closed();
        }
        let stats = counters.snapshot();
        assert_eq!(stats.connections_accepted, 1000);
        assert!(stats.transactions_per_connection.is_empty());
        let tracked = Counters::new(true);
        let id = tracked.connection_opened();
        tracked.transaction_done(id);
        assert_eq!(tracked.snapshot().transactions_per_connection[&id], 1);
    }
}
