//! The throttle on failed credential checks per client, shared by the SMTP listener (failed
//! AUTH) and the HTTP API (failed tokens and admin logins), so both keep the same rules:
//! a sliding window per client, clients keyed by [`client_key`], a bounded table.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most clients whose failures are remembered: beyond it the entries whose last failure
/// is oldest go first, so a spread-out attack cannot grow the table without limit, and an
/// attacker cycling through addresses can only make the table forget the quietest clients,
/// never reset its own count.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// The key a per-client limit counts under: an IPv4 address as is (also when a dual-stack
/// socket reports it as `::ffff:a.b.c.d`), an IPv6 address by its /64. A single IPv6 host
/// usually holds a whole /64 and can pick a new address from it for every connection;
/// counting per address would let it get around every per-client limit.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        },
    }
}

/// Failed credential checks per client ([`client_key`]): a client with `limit` failures
/// within the last `window` is blocked until the oldest of them leaves the window.
///
/// Every method takes the current time as `now` (pass [`Instant::now()`]), so that tests
/// can move the clock instead of sleeping. Successes are not recorded: an attacker holding
/// one valid credential must not be able to clear the count for guesses at another.
#[derive(Debug)]
pub struct FailureThrottle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureThrottle {
    /// Blocks a client after `limit` (at least 1) failures within `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        FailureThrottle {
            limit: limit.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records one failure from `client` at `now`; true when the client is now blocked.
    pub fn record(&self, client: IpAddr, now: Instant) -> bool {
        let client = client_key(client);
        let mut table = self.lock();
        if table.len() >= MAX_TRACKED_CLIENTS && !table.contains_key(&client) {
            table.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < self.window)
            });
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
        self.prune(times, now);
        times.len() >= self.limit as usize
    }

    /// How long `client` stays blocked from `now` (at least a second, for `Retry-After`);
    /// `None` when it is not blocked.
    pub fn blocked(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let client = client_key(client);
        let mut table = self.lock();
        let times = table.get_mut(&client)?;
        self.prune(times, now);
        if times.is_empty() {
            table.remove(&client);
            return None;
        }
        if times.len() < self.limit as usize {
            return None;
        }
        // `prune` keeps at most `limit` failures: the block ends when the oldest one leaves
        // the window.
        let ends = *times.front()? + self.window;
        Some(
            ends.saturating_duration_since(now)
                .max(Duration::from_secs(1)),
        )
    }

    /// The number of clients remembered now (for tests of the table's bounds).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    /// Drops failures older than the window and keeps at most `limit` (all a decision needs).
    fn prune(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        while times.len() > self.limit as usize {
            times.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        // Every update is a few pushes and pops that cannot panic midway.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_by_the_ipv4_address() {
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::1")), ip("::"));
    }

    #[test]
    fn blocks_after_the_limit_until_the_oldest_failure_leaves_the_window() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!(!throttle.record(a, t0));
        assert!(!throttle.record(a, t0 + Duration::from_secs(10)));
        assert_eq!(throttle.blocked(a, t0 + Duration::from_secs(10)), None);
        assert!(throttle.record(ip("::ffff:192.0.2.1"), t0 + Duration::from_secs(20)));
        assert_eq!(
            throttle.blocked(a, t0 + Duration::from_secs(20)),
            Some(Duration::from_secs(40)),
            "blocked until the first failure is 60s old"
        );
        assert_eq!(
            throttle.blocked(ip("192.0.2.2"), t0),
            None,
            "another client"
        );
        // Sliding: at 60s the first failure is gone and two remain.
        assert_eq!(throttle.blocked(a, t0 + Duration::from_secs(60)), None);
        assert!(
            throttle.record(a, t0 + Duration::from_secs(61)),
            "2 + 1 again"
        );
        // Once every failure is older than the window the entry goes.
        assert_eq!(throttle.blocked(a, t0 + Duration::from_secs(200)), None);
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn retry_after_is_at_least_a_second() {
        let throttle = FailureThrottle::new(1, Duration::from_millis(1500));
        let t0 = Instant::now();
        assert!(throttle.record(ip("192.0.2.1"), t0));
        assert_eq!(
            throttle.blocked(ip("192.0.2.1"), t0 + Duration::from_millis(1400)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn one_ipv6_64_counts_as_one_client() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let now = Instant::now();
        assert!(!throttle.record(ip("2001:db8::1"), now));
        assert!(!throttle.record(ip("2001:db8::2"), now));
        assert!(throttle.record(ip("2001:db8::ffff:3"), now));
        assert!(throttle.blocked(ip("2001:db8::4"), now).is_some());
        assert_eq!(throttle.blocked(ip("2001:db8:0:1::1"), now), None);
    }

    #[test]
    fn a_full_table_forgets_the_quietest_client_not_a_blocked_one() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(600));
        let t0 = Instant::now();
        let attacker = ip("198.51.100.1");
        throttle.record(attacker, t0 + Duration::from_secs(5));
        throttle.record(attacker, t0 + Duration::from_secs(5));
        // Fill the table with other (older) clients, then add more: each new one evicts an
        // old entry, and the attacker's (the newest) stays blocked.
        for n in 0..MAX_TRACKED_CLIENTS as u32 + 10 {
            let other = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            throttle.record(other, t0);
        }
        assert_eq!(throttle.tracked(), MAX_TRACKED_CLIENTS);
        assert!(
            throttle
                .blocked(attacker, t0 + Duration::from_secs(6))
                .is_some()
        );
    }
}
