//! Routes whose connection could not be set up wait before the next try: a relay that
//! rejects our login or refuses connections is not asked again for every new message.
//! The pause grows with consecutive failures along the retry schedule, and ends at the
//! first connection that succeeds. Destinations that tell us to slow down (a `421`, a
//! reply matching a `[[shaping]] on_reply` pattern) are suspended the same way
//! ([`super::shaping`]), keyed by destination instead of route.

use std::collections::HashMap;
use std::hash::Hash;
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

/// The paused routes (or suspended destinations) of this worker.
pub(crate) struct Pauses<K> {
    inner: Mutex<HashMap<K, Pause>>,
    /// When each key's pause was last cleared here: a pause read back from the store in
    /// that moment (before the lift written in the background reached it) is stale.
    cleared: Mutex<HashMap<K, std::time::Instant>>,
}

/// How long after clearing a pause this worker ignores the same pause read from the store.
const RECENTLY_CLEARED: Duration = Duration::from_secs(60);

/// Routes whose connections failed.
pub(crate) type RoutePauses = Pauses<Route>;

impl<K> Default for Pauses<K> {
    fn default() -> Self {
        Pauses {
            inner: Mutex::new(HashMap::new()),
            cleared: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> Pauses<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Pause>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key's pause, when it has one that has not ended at `now`.
    pub fn active(&self, route: &K, now: OffsetDateTime) -> Option<Pause> {
        self.lock()
            .get(route)
            .filter(|pause| pause.until > now)
            .cloned()
    }

    /// Records one more failure in a row; `delay` picks the pause from the failure count.
    pub fn fail(
        &self,
        route: &K,
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

    /// A connection on the route succeeded: no more pause. True when there was one (ended
    /// or not), so a caller can tell others once, not on every success.
    pub fn clear(&self, route: &K) -> bool {
        let removed = self.lock().remove(route).is_some();
        if removed {
            let mut cleared = self.cleared.lock().unwrap_or_else(PoisonError::into_inner);
            cleared.retain(|_, at| at.elapsed() < RECENTLY_CLEARED);
            cleared.insert(route.clone(), std::time::Instant::now());
        }
        removed
    }

    /// Installs a pause learnt elsewhere — another worker's suspension, read from the
    /// store — unless this worker's own pause for the key ends as late or later, or this
    /// worker cleared the key in the last minute (the store row is then the one its lift,
    /// written in the background, is removing). The count
    /// of failures in a row is the greater of both, so the next failure grows from there.
    /// True when it changed the pause.
    pub fn install(&self, key: &K, pause: Pause) -> bool {
        let recently_cleared = self
            .cleared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .is_some_and(|at| at.elapsed() < RECENTLY_CLEARED);
        if recently_cleared {
            return false;
        }
        let mut pauses = self.lock();
        let failures = match pauses.get(key) {
            Some(local) if local.until >= pause.until => return false,
            Some(local) => local.failures.max(pause.failures),
            None => pause.failures,
        };
        pauses.insert(key.clone(), Pause { failures, ..pause });
        true
    }

    /// Every pause that has not ended at `now`, for the admin view.
    pub fn all_active(&self, now: OffsetDateTime) -> Vec<(K, Pause)> {
        self.lock()
            .iter()
            .filter(|(_, pause)| pause.until > now)
            .map(|(key, pause)| (key.clone(), pause.clone()))
            .collect()
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
        assert!(pauses.clear(&route));
        assert!(!pauses.clear(&route), "nothing left to clear");
        assert_eq!(pauses.fail(&route, "x", now, delay).failures, 1);
    }

    #[test]
    fn an_installed_pause_never_shortens_a_longer_local_one() {
        let pauses = RoutePauses::default();
        let route = Route::Mx("a.test".into());
        let now = OffsetDateTime::UNIX_EPOCH;
        let elsewhere = |secs: u64, failures: u32| Pause {
            reason: format!("elsewhere {secs}"),
            until: now + Duration::from_secs(secs),
            failures,
        };
        assert!(pauses.install(&route, elsewhere(60, 3)));
        assert_eq!(pauses.active(&route, now), Some(elsewhere(60, 3)));
        // The next local failure grows from the installed count.
        let local = pauses.fail(&route, "421 local", now, |n| {
            Duration::from_secs(100 * u64::from(n))
        });
        assert_eq!(
            (local.failures, local.until),
            (4, now + Duration::from_secs(400))
        );
        assert!(
            !pauses.install(&route, elsewhere(300, 9)),
            "ends sooner than ours"
        );
        assert_eq!(pauses.active(&route, now), Some(local));
        assert!(pauses.install(&route, elsewhere(900, 2)));
        let merged = pauses.active(&route, now).unwrap();
        assert_eq!(
            (merged.failures, merged.until),
            (4, now + Duration::from_secs(900))
        );
        assert_eq!(merged.reason, "elsewhere 900");
    }

    #[test]
    fn a_pause_cleared_here_is_not_installed_again_from_a_stale_row() {
        let pauses = RoutePauses::default();
        let route = Route::Mx("a.test".into());
        let now = OffsetDateTime::UNIX_EPOCH;
        pauses.fail(&route, "421", now, |_| Duration::from_secs(60));
        assert!(pauses.clear(&route));
        let stale = Pause {
            reason: "421".into(),
            until: now + Duration::from_secs(60),
            failures: 1,
        };
        assert!(!pauses.install(&route, stale), "the lift is on its way");
        assert_eq!(pauses.active(&route, now), None);
        assert!(!pauses.clear(&route), "nothing left to clear");
    }
}
