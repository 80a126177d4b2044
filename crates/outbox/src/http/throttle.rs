//! Per-client throttling of failed token checks (API bearer tokens, admin logins and admin
//! `Authorization` headers), on top of [`outbox_smtp::server::FailureThrottle`], the same throttle
//! the SMTP listener uses for failed AUTH.
//!
//! A client (an IPv4 address, or an IPv6 /64) with `max_auth_failures` failures within the
//! last `[http] auth_failure_window` gets 429 with `Retry-After` on every request that needs
//! a token until the oldest of them leaves the window, whether or not its token is right,
//! so guessing cannot go faster than `max_auth_failures / auth_failure_window`. A success
//! does not reset the count: an attacker holding one token must not be able to clear the
//! count for its guesses at another. Each failure is logged at warn with the client
//! address, never the value tried.
//!
//! Addresses in `[http] throttle_exempt` are never blocked (their failures are still
//! logged): behind a reverse proxy, or for local apps on 127.0.0.1, every client shares one
//! address, and ten bad requests from any of them would block all of them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::Extensions;
use outbox_smtp::server::FailureThrottle;
use outbox_smtp::server::Network;

/// Failed token checks per client.
#[derive(Debug)]
pub struct AuthThrottle {
    failures: FailureThrottle,
    exempt: Vec<Network>,
}

impl AuthThrottle {
    /// A throttle that blocks a client after `max_failures` failures within `window`,
    /// except clients inside one of the `exempt` networks.
    pub fn new(max_failures: u32, window: Duration, exempt: Vec<Network>) -> Self {
        AuthThrottle {
            failures: FailureThrottle::new(max_failures, window),
            exempt,
        }
    }

    /// `Some(seconds to wait)` when `address` is blocked now.
    pub fn blocked(&self, address: IpAddr) -> Option<u64> {
        self.blocked_at(address, Instant::now())
    }

    /// Counts one failure from `address` and logs it (`what` says which check failed).
    pub fn failed(&self, address: IpAddr, what: &str) {
        self.failed_at(address, what, Instant::now());
    }

    /// [`Self::blocked`] with the clock given.
    pub fn blocked_at(&self, address: IpAddr, now: Instant) -> Option<u64> {
        if self.is_exempt(address) {
            return None;
        }
        let wait = self.failures.blocked(address, now)?;
        Some(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// [`Self::failed`] with the clock given.
    pub fn failed_at(&self, address: IpAddr, what: &str, now: Instant) {
        if self.is_exempt(address) {
            tracing::warn!(client = %address, exempt = true, "{what}: wrong or missing token");
            return;
        }
        let blocked = self.failures.record(address, now);
        tracing::warn!(client = %address, blocked, "{what}: wrong or missing token");
    }

    fn is_exempt(&self, address: IpAddr) -> bool {
        self.exempt.iter().any(|network| network.contains(address))
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_after_the_limit_per_client_until_the_window_ends() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(300), Vec::new());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..2 {
            throttle.failed_at(a, "test", t0);
            assert_eq!(throttle.blocked_at(a, t0), None);
        }
        throttle.failed_at(ip("::ffff:192.0.2.1"), "test", t0);
        assert_eq!(throttle.blocked_at(a, t0), Some(300));
        assert_eq!(
            throttle.blocked_at(a, t0 + Duration::from_millis(299_500)),
            Some(1),
            "Retry-After rounds up and is at least 1"
        );
        assert_eq!(
            throttle.blocked_at(ip("192.0.2.2"), t0),
            None,
            "another client"
        );
        let later = t0 + Duration::from_secs(300);
        assert_eq!(throttle.blocked_at(a, later), None, "the window ended");
        throttle.failed_at(a, "test", later);
        assert_eq!(throttle.blocked_at(a, later), None, "counting starts again");
    }

    /// Cycling through other addresses cannot reset an attacker's own count (the old
    /// throttle cleared its whole table when full), and a new address in the same IPv6
    /// /64 is the same client.
    #[test]
    fn other_addresses_and_other_addresses_in_the_64_do_not_help() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(300), Vec::new());
        let now = Instant::now();
        throttle.failed_at(ip("2001:db8:5:6::1"), "test", now);
        for n in 0..1000u32 {
            throttle.failed_at(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), "test", now);
        }
        throttle.failed_at(ip("2001:db8:5:6:dead::2"), "test", now);
        assert_eq!(throttle.blocked_at(ip("2001:db8:5:6::99"), now), Some(300));
        assert_eq!(throttle.blocked_at(ip("2001:db8:5:7::1"), now), None);
    }

    #[test]
    fn exempt_networks_are_never_blocked() {
        let exempt = vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let throttle = AuthThrottle::new(1, Duration::from_secs(300), exempt);
        let now = Instant::now();
        for client in ["127.0.0.1", "::ffff:127.0.0.5", "fd00::1", "192.0.2.1"] {
            for _ in 0..5 {
                throttle.failed_at(ip(client), "test", now);
            }
        }
        assert_eq!(throttle.blocked_at(ip("127.0.0.1"), now), None);
        assert_eq!(throttle.blocked_at(ip("::ffff:127.0.0.5"), now), None);
        assert_eq!(throttle.blocked_at(ip("fd00::1"), now), None);
        assert_eq!(throttle.blocked_at(ip("192.0.2.1"), now), Some(300));
    }
}
