//! Per-server and per-client limits: concurrent connections in all and per client address
//! (Postfix's anvil), and the throttle on failed AUTH per client address.
//!
//! Both tables are keyed by the client's IP address (an IPv4-mapped IPv6 address counts as
//! its IPv4 address) and stay bounded: a connection's entry goes when its last connection
//! closes, an AUTH-failure entry when its failures are older than the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits a [`super::Server`] enforces. `None` is "no limit", the default, so that the
/// server stays a permissive peer for delivery tests; the submission listener sets them all.
/// Public for [`Connections`], which outbox's HTTP server uses too (only the first two).
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub max_commands: Option<u32>,
    pub max_errors: Option<u32>,
    pub max_auth_failures: Option<u32>,
    pub auth_failures_per_client: Option<(u32, Duration)>,
}

/// Why a new connection was refused at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` connections are open.
    Busy,
    /// `max_connections_per_client` connections from this address are open.
    ClientBusy,
    /// This address failed AUTH too often recently.
    AuthBlocked,
}

/// The counts of open connections, in all and per client address.
#[derive(Debug, Default)]
pub struct Connections {
    inner: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    connections: Arc<Connections>,
    client: IpAddr,
}

impl Connections {
    /// Admits a connection from `client` unless a limit is reached.
    pub fn admit(self: &Arc<Self>, client: IpAddr, limits: &Limits) -> Result<Permit, Refusal> {
        let client = canonical(client);
        let mut open = self.lock();
        if limits.max_connections.is_some_and(|max| open.total >= max) {
            return Err(Refusal::Busy);
        }
        let mine = open.per_client.get(&client).copied().unwrap_or(0);
        if limits
            .max_connections_per_client
            .is_some_and(|max| mine >= max)
        {
            return Err(Refusal::ClientBusy);
        }
        open.total += 1;
        open.per_client.insert(client, mine + 1);
        Ok(Permit {
            connections: self.clone(),
            client,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // Every update is a few integer writes that cannot panic midway.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.connections.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

/// The most client addresses whose AUTH failures are remembered: beyond it the oldest
/// entries go first, so a spread-out attack cannot grow the table without limit.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// Recent failed AUTH attempts per client address.
#[derive(Debug, Default)]
pub(crate) struct AuthFailures {
    inner: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl AuthFailures {
    /// Records one failure from `client`; true when the address is now blocked.
    pub(crate) fn record(&self, client: IpAddr, limit: u32, window: Duration) -> bool {
        let client = canonical(client);
        let now = Instant::now();
        let mut table = self.lock();
        if table.len() >= MAX_TRACKED_CLIENTS && !table.contains_key(&client) {
            table.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
            if table.len() >= MAX_TRACKED_CLIENTS {
                // Still full of fresh entries: forget the one whose last failure is oldest.
                let oldest = table
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    table.remove(&oldest);
                }
            }
        }
        let times = table.entry(client).or_default();
        times.push_back(now);
        prune(times, now, window, limit);
        times.len() >= limit as usize
    }

    /// Whether `client` has had `limit` failures within the last `window`.
    pub(crate) fn blocked(&self, client: IpAddr, limit: u32, window: Duration) -> bool {
        let client = canonical(client);
        let now = Instant::now();
        let mut table = self.lock();
        let Some(times) = table.get_mut(&client) else {
            return false;
        };
        prune(times, now, window, limit);
        if times.is_empty() {
            table.remove(&client);
            return false;
        }
        times.len() >= limit as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drops failures older than `window` and keeps at most `limit` (all that a decision needs).
fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration, limit: u32) {
    while times.front().is_some_and(|t| now - *t >= window) {
        times.pop_front();
    }
    while times.len() > (limit as usize).max(1) {
        times.pop_front();
    }
}

/// An IPv4 client seen by a dual-stack socket as `::ffff:a.b.c.d` is the same client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn connection_limits_in_all_and_per_client() {
        let limits = Limits {
            max_connections: Some(3),
            max_connections_per_client: Some(2),
            ..Limits::default()
        };
        let connections = Arc::new(Connections::default());
        let a1 = connections.admit(ip("127.0.0.2"), &limits).unwrap();
        let _a2 = connections.admit(ip("::ffff:127.0.0.2"), &limits).unwrap();
        assert_eq!(
            connections.admit(ip("127.0.0.2"), &limits).unwrap_err(),
            Refusal::ClientBusy
        );
        let _b1 = connections.admit(ip("127.0.0.1"), &limits).unwrap();
        assert_eq!(
            connections.admit(ip("127.0.0.3"), &limits).unwrap_err(),
            Refusal::Busy
        );
        drop(a1);
        let _a3 = connections.admit(ip("127.0.0.2"), &limits).unwrap();
        assert_eq!(connections.lock().per_client.len(), 2);
    }

    #[test]
    fn entries_go_when_their_connections_close() {
        let connections = Arc::new(Connections::default());
        let permit = connections
            .admit(ip("10.0.0.1"), &Limits::default())
            .unwrap();
        drop(permit);
        assert!(connections.lock().per_client.is_empty());
        assert_eq!(connections.lock().total, 0);
    }

    #[test]
    fn auth_failures_block_one_address_for_the_window() {
        let failures = AuthFailures::default();
        let window = Duration::from_secs(60);
        assert!(!failures.record(ip("127.0.0.2"), 3, window));
        assert!(!failures.record(ip("127.0.0.2"), 3, window));
        assert!(!failures.blocked(ip("127.0.0.2"), 3, window));
        assert!(failures.record(ip("::ffff:127.0.0.2"), 3, window));
        assert!(failures.blocked(ip("127.0.0.2"), 3, window));
        assert!(!failures.blocked(ip("127.0.0.1"), 3, window));
        // Once the window has passed the address is free again and its entry is gone.
        assert!(!failures.blocked(ip("127.0.0.2"), 3, Duration::ZERO));
        assert!(failures.lock().is_empty());
    }
}
