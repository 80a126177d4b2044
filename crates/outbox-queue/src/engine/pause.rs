//! Routes whose connection could not be set up wait before the next try: a relay that
//! rejects our login or refuses connections is not asked again for every new message.
//! The pause grows with consecutive failures along the retry schedule, and ends at the
//! first connection that succeeds.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use crate::Delivery;

use super::policy;
use super::transport::Route;

/// Why and until when a route waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pause {
    /// The connection error that started it.
    pub reason: String,
    /// No connection is tried before this.
    pub until: OffsetDateTime,
    /// Connection failures in a row.
    pub failures: u32,
}

impl Pause {
    /// What a recipient of the paused route gets: put back, without an attempt, until
    /// the pause ends, with the error that started it.
    pub fn not_attempted(&self) -> Delivery {
        Delivery::NotAttempted {
            reply: policy::sanitize_reply(&self.reason),
            next_attempt_at: self.until,
        }
    }
}

/// The paused routes of this worker.
#[derive(Default)]
pub(crate) struct RoutePauses {
    inner: Mutex<HashMap<Route, Pause>>,
}

impl RoutePauses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Route, Pause>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The route's pause, when it has one that has not ended at `now`.
    pub fn active(&self, route: &Route, now: OffsetDateTime) -> Option<Pause> {
        self.lock()
            .get(route)
            .filter(|pause| pause.until > now)
            .cloned()
    }

    /// Records one more failure in a row; `delay` picks the pause from the failure count.
    pub fn fail(
        &self,
        route: &Route,
        reason: &str,
        now: OffsetDateTime,
        delay: impl FnOnce(u32) -> Duration,
    ) -> Pause {
        let mut pauses = self.lock();
        let failures = pauses.get(route).map_or(0, |pause| pause.failures) + 1;
        let pause = Pause {
            reason: reason.to_string(),
            until: now + delay(failures),
            failures,
        };
        pauses.insert(route.clone(), pause.clone());
        pause
    }

    /// A connection on the route succeeded: no more pause.
    pub fn clear(&self, route: &Route) {
        self.lock().remove(route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_end_at_a_success() {
        let pauses = RoutePauses::default();
        let route = Route::ConfiguredRelay;
        let now = OffsetDateTime::UNIX_EPOCH;
        let delay = |n: u32| Duration::from_secs(10 * u64::from(n));
        assert_eq!(pauses.active(&route, now), None);
        let first = pauses.fail(&route, "535 nope", now, delay);
        assert_eq!(
            (first.failures, first.until),
            (1, now + Duration::from_secs(10))
        );
        let second = pauses.fail(&route, "535 nope", now, delay);
        assert_eq!(second.until, now + Duration::from_secs(20));
        assert_eq!(pauses.active(&route, now), Some(second.clone()));
        assert_eq!(pauses.active(&route, second.until), None, "ended");
        assert_eq!(pauses.active(&Route::Mx("a.test".into()), now), None);
        pauses.clear(&route);
        assert_eq!(pauses.fail(&route, "x", now, delay).failures, 1);
    }
}
