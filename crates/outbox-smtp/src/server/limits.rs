//! Per-server and per-client limits: concurrent connections in all and per client address
//! (Postfix's anvil), and the throttle on failed AUTH per client address.
//!
//! Both tables are keyed by [`client_key`] (an IPv6 client by its /64, an IPv4-mapped IPv6
//! address as its IPv4 address) and stay bounded: a connection's entry goes when its last
//! connection closes; the AUTH failures are a [`super::throttle::FailureThrottle`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::throttle::client_key;

/// The limits a [`super::Server`] enforces. `None` is "no limit", the default, so that the
/// server stays a permissive peer for delivery tests; the submission listener sets them all.
/// Public for [`Connections`], which outbox's HTTP server uses too (only the first two).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Limits {
    /// The most connections open at once.
    pub max_connections: Option<usize>,
    /// The most connections open at once from one client (IPv6 clients by their /64).
    pub max_connections_per_client: Option<usize>,
    /// The most commands a connection may send without a message being accepted.
    pub max_commands: Option<u32>,
    /// The most error replies (4xx and 5xx) a connection may get.
    pub max_errors: Option<u32>,
    /// The most failed AUTH attempts on one connection.
    pub max_auth_failures: Option<u32>,
    /// Failed AUTH attempts per client address within a window before it is blocked.
    pub auth_failures_per_client: Option<(u32, Duration)>,
}

/// Why a new connection was refused at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
        let client = client_key(client);
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
    fn one_ipv6_64_is_one_client() {
        let limits = Limits {
            max_connections_per_client: Some(2),
            ..Limits::default()
        };
        let connections = Arc::new(Connections::default());
        let _a = connections.admit(ip("2001:db8::1"), &limits).unwrap();
        let _b = connections.admit(ip("2001:db8::2"), &limits).unwrap();
        assert_eq!(
            connections
                .admit(ip("2001:db8::ab:3"), &limits)
                .unwrap_err(),
            Refusal::ClientBusy
        );
        let _c = connections.admit(ip("2001:db8:0:1::1"), &limits).unwrap();
    }
}
