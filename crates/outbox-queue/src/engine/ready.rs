//! Work this worker has claimed but not yet sent, kept per route so that an open
//! connection can take every due message of its route, whatever the priority (the seed:
//! "once it connects to an SMTP server it delivers as many messages as possible").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Claimed, MessageBody, Priority};

use super::transport::Route;

/// Claimed units waiting for a connection, by route.
#[derive(Default)]
pub(crate) struct ReadyQueues {
    inner: Mutex<HashMap<Route, VecDeque<Claimed>>>,
}

impl ReadyQueues {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Route, VecDeque<Claimed>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a freshly claimed unit (claims come in priority order) to its route's queue.
    /// The store groups a message's recipients by their own route (`mx:DOMAIN`); when
    /// several of those share one connection (a configured relay), the recipients of one
    /// message join one unit again, so they go in one transaction (DESIGN §5). A merge
    /// message is one transaction per recipient anyway.
    ///
    /// A unit of higher priority than the tail goes ahead of every unit of lower priority:
    /// a password reset claimed while a campaign drains is the next transaction of the
    /// route's connections, not the one after everything claimed before it.
    pub fn push_back(&self, route: Route, unit: Claimed) {
        let mut queues = self.lock();
        let queue = queues.entry(route).or_default();
        match queue.back_mut() {
            Some(last) if last.message_id == unit.message_id && !unit.needs_merge => {
                last.recipients.extend(unit.recipients);
            }
            Some(last) if last.priority > unit.priority => {
                let at = queue
                    .iter()
                    .position(|waiting| waiting.priority > unit.priority)
                    .unwrap_or(queue.len());
                queue.insert(at, unit);
            }
            _ => queue.push_back(unit),
        }
    }

    /// Puts a unit back at the front of its route's queue (a connection stopped early).
    pub fn push_front(&self, route: Route, unit: Claimed) {
        self.lock().entry(route).or_default().push_front(unit);
    }

    /// The next unit for a connection on `route`.
    pub fn pop(&self, route: &Route) -> Option<Claimed> {
        let mut queues = self.lock();
        let queue = queues.get_mut(route)?;
        let unit = queue.pop_front();
        if queue.is_empty() {
            queues.remove(route);
        }
        unit
    }

    /// Every unit waiting for `route` (a connection to it just failed).
    pub fn take_route(&self, route: &Route) -> Vec<Claimed> {
        self.lock().remove(route).map(Vec::from).unwrap_or_default()
    }

    /// Everything waiting (the worker is stopping).
    pub fn take_all(&self) -> Vec<Claimed> {
        self.lock().drain().flat_map(|(_, queue)| queue).collect()
    }

    /// The routes with waiting units, best first (by the priority of its best unit, then
    /// its age: message ids sort by time), with how many units each has.
    pub fn waiting(&self) -> Vec<(Route, usize)> {
        let queues = self.lock();
        let mut waiting: Vec<(Priority, &str, &Route, usize)> = queues
            .iter()
            .filter_map(|(route, queue)| {
                let best = queue
                    .iter()
                    .min_by(|a, b| (a.priority, &a.message_id).cmp(&(b.priority, &b.message_id)))?;
                Some((best.priority, best.message_id.as_str(), route, queue.len()))
            })
            .collect();
        waiting.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        waiting
            .into_iter()
            .map(|(_, _, route, units)| (route.clone(), units))
            .collect()
    }

    /// Number of units waiting.
    pub fn len(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
    }
}

/// Message bodies recently read, so a merge to many recipients and the messages of one
/// connection read each body once. Bounded by bytes, not entries: bodies go up to 8 MB.
pub(crate) struct BodyCache {
    inner: Mutex<(HashMap<String, Arc<MessageBody>>, usize)>,
    max_bytes: usize,
}

impl BodyCache {
    pub fn new(max_bytes: usize) -> Self {
        BodyCache {
            inner: Mutex::new((HashMap::new(), 0)),
            max_bytes,
        }
    }

    pub fn get(&self, message_id: &str) -> Option<Arc<MessageBody>> {
        let cache = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        cache.0.get(message_id).cloned()
    }

    pub fn insert(&self, message_id: &str, body: Arc<MessageBody>) {
        let size = body.data.len();
        if size > self.max_bytes {
            return;
        }
        let mut cache = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.1 + size > self.max_bytes {
            // Cheap eviction: a miss re-reads the body, so forgetting everything is correct.
            cache.0.clear();
            cache.1 = 0;
        }
        if cache.0.insert(message_id.to_string(), body).is_none() {
            cache.1 += size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClaimedRecipient, RouteKey};

    fn unit(id: &str, priority: Priority) -> Claimed {
        Claimed {
            message_id: id.into(),
            route: RouteKey::Mx("example.net".into()),
            envelope_from: "a@example.com".into(),
            relay: None,
            priority,
            size: 1,
            needs_merge: false,
            recipients: vec![ClaimedRecipient {
                id: 1,
                address: "r@example.net".into(),
                domain: "example.net".into(),
                attempts: 0,
                merge: None,
                epoch: 1,
            }],
        }
    }

    #[test]
    fn a_higher_priority_unit_goes_ahead_of_the_backlog() {
        let ready = ReadyQueues::default();
        let route = Route::ConfiguredRelay;
        ready.push_back(route.clone(), unit("h1", Priority::High));
        for id in ["l1", "l2", "l3"] {
            ready.push_back(route.clone(), unit(id, Priority::Low));
        }
        ready.push_back(route.clone(), unit("m1", Priority::Medium));
        ready.push_back(route.clone(), unit("h2", Priority::High));
        ready.push_back(route.clone(), unit("l4", Priority::Low));
        let order: Vec<String> = std::iter::from_fn(|| ready.pop(&route))
            .map(|unit| unit.message_id)
            .collect();
        assert_eq!(order, ["h1", "h2", "m1", "l1", "l2", "l3", "l4"]);
    }
}
