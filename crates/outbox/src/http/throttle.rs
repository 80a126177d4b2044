//! Per-client-address throttling of failed token checks (API bearer tokens, admin logins
//! and admin `Authorization` headers).
//!
//! Each client address has a window of `[http] auth_failure_window` that starts at its
//! first failure; after `max_auth_failures` failures in it, every request from that
//! address that needs a token gets 429 with `Retry-After` until the window ends, whether
//! or not its token is right, so guessing cannot go faster than
//! `max_auth_failures / auth_failure_window`. A success does not reset the count: an
//! attacker holding one token must not be able to clear the count for its guesses at
//! another. Each failure is logged at warn with the client address, never the value tried.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::Extensions;

/// The most addresses remembered at once; beyond it, expired windows are dropped first
/// and, if all are live, the table is cleared, so a flood of spoofed-looking sources
/// cannot grow memory without bound. (Over TCP, addresses cannot be spoofed.)
const MAX_TRACKED: usize = 100_000;

/// Failed token checks per client address.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    by_address: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl AuthThrottle {
    /// A throttle that blocks an address after `max_failures` failures within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        AuthThrottle {
            max_failures: max_failures.max(1),
            window,
            by_address: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` when `address` is blocked now.
    pub fn blocked(&self, address: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let table = self.lock();
        let window = table.get(&address)?;
        let ends = window.started + self.window;
        (window.failures >= self.max_failures && ends > now)
            .then(|| (ends - now).as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Counts one failure from `address` and logs it (`what` says which check failed).
    pub fn failed(&self, address: IpAddr, what: &str) {
        let now = Instant::now();
        let mut table = self.lock();
        if table.len() >= MAX_TRACKED && !table.contains_key(&address) {
            table.retain(|_, w| w.started + self.window > now);
            if table.len() >= MAX_TRACKED {
                table.clear();
            }
        }
        let window = table.entry(address).or_insert(Window {
            started: now,
            failures: 0,
        });
        if window.started + self.window <= now {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
        let failures = window.failures;
        drop(table);
        tracing::warn!(client = %address, failures, "{what}: wrong or missing token");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.by_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The client address of a request: from the server's `ConnectInfo`; requests built in
/// process (tests) without it share the unspecified address.
pub fn client_address(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_address_until_the_window_ends() {
        let throttle = AuthThrottle::new(3, Duration::from_millis(200));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            throttle.failed(a, "test");
            assert_eq!(throttle.blocked(a), None);
        }
        throttle.failed(a, "test");
        assert_eq!(
            throttle.blocked(a),
            Some(1),
            "blocked, Retry-After at least 1"
        );
        assert_eq!(throttle.blocked(b), None, "another address is not blocked");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(throttle.blocked(a), None, "the window ended");
        throttle.failed(a, "test");
        assert_eq!(throttle.blocked(a), None, "a new window starts from zero");
    }
}
