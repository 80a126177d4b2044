//! Traffic shaping per destination (DESIGN §10 `[[shaping]]`).
//!
//! A destination is the set of MX hosts a route reaches, not the recipient domain: domains
//! whose MX hosts are the same share one budget, and so do all the domains whose MX hosts
//! match one `[[shaping]]` rule's `mx_suffix` (every domain hosted at `.google.com`). A
//! relay is a destination of its own. Each destination has limits — connections open at
//! once, transactions per connection, messages per unit of time, recipients per
//! transaction — taken from `[delivery]` and overridden by the first matching rule.
//!
//! Replies that mean "slow down" (a `421`, or a `4xx` matching a rule's `on_reply`
//! pattern) suspend the whole destination (`pause::Pauses` keyed by
//! [`DestinationKey`]), not only the recipients at hand; the suspension grows while the
//! replies repeat and ends at the first accepted message. Each suspension is also stored
//! ([`Store::suspend`](crate::Store::suspend), best effort, off the connection's path) with
//! the recipient domains known to route there, and lifted in the store when it ends that
//! way: `queue list` and the admin page of another process show it, and the other workers
//! sharing the database install it at their next heartbeat tick and wait too.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use regex::Regex;

use super::transport::{Route, redact};

/// A rate such as `20/s`, `300/min` or `1000/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages allowed per `per`.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// The spacing between two messages at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a rate: write N/s, N/min or N/h (e.g. \"20/s\")");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("{text:?}: a rate must allow at least one message"));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// The limits of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Connections open at once to the destination (the global `[delivery]
    /// max_connections` still caps the total).
    pub max_connections: usize,
    /// Transactions on one connection before it is closed.
    pub messages_per_connection: usize,
    /// Messages (transactions) per unit of time; `None`: no limit.
    pub max_message_rate: Option<Rate>,
    /// Recipients in one transaction; more go in the next transaction.
    pub max_recipients_per_transaction: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 5,
            messages_per_connection: 100,
            max_message_rate: None,
            // RFC 5321 §4.5.3.1.8: a server must take at least 100 recipients.
            max_recipients_per_transaction: 100,
        }
    }
}

/// A reply pattern that suspends a destination.
#[derive(Debug, Clone)]
pub struct OnReply {
    /// Matched against the whole reply text (code included) of a `4xx` reply.
    pub pattern: Regex,
    /// How long the destination is suspended the first time; doubled while it repeats (up
    /// to eight times this).
    pub suspend: Duration,
}

/// What a `[[shaping]]` rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShapingMatch {
    /// Recipients of exactly this domain.
    Domain(String),
    /// Domains whose MX hosts end with this suffix (`.google.com`).
    MxSuffix(String),
}

/// One `[[shaping]]` entry: a match and the limits it overrides.
#[derive(Debug, Clone)]
pub struct ShapingRule {
    /// What it applies to.
    pub matches: ShapingMatch,
    /// Overrides of [`Limits::max_connections`].
    pub max_connections: Option<usize>,
    /// Overrides of [`Limits::messages_per_connection`].
    pub messages_per_connection: Option<usize>,
    /// Overrides of [`Limits::max_message_rate`].
    pub max_message_rate: Option<Rate>,
    /// Overrides of [`Limits::max_recipients_per_transaction`].
    pub max_recipients_per_transaction: Option<usize>,
    /// Replies that suspend the destination.
    pub on_reply: Vec<OnReply>,
}

impl ShapingRule {
    fn applies(&self, domain: &str, mx_hosts: &[String]) -> bool {
        match &self.matches {
            ShapingMatch::Domain(wanted) => wanted.eq_ignore_ascii_case(domain),
            ShapingMatch::MxSuffix(suffix) => {
                mx_hosts.iter().any(|host| suffix_matches(host, suffix))
            }
        }
    }

    fn name(&self) -> String {
        match &self.matches {
            ShapingMatch::Domain(domain) => format!("domain {}", domain.to_ascii_lowercase()),
            ShapingMatch::MxSuffix(suffix) => format!("mx *{}", suffix.to_ascii_lowercase()),
        }
    }
}

/// True when `host` ends with `suffix` at a label boundary, ignoring case and trailing
/// dots: `.google.com` and `google.com` both match `aspmx.l.google.com`, neither matches
/// `notgoogle.com`.
fn suffix_matches(host: &str, suffix: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let suffix = suffix.trim_end_matches('.').to_ascii_lowercase();
    let bare = suffix.trim_start_matches('.');
    if bare.is_empty() {
        return false;
    }
    host == bare || host.ends_with(&format!(".{bare}"))
}

/// The shaping configuration: defaults from `[delivery]`, then the rules in order.
#[derive(Debug, Clone, Default)]
pub struct Shaping {
    /// Limits of a destination no rule matches.
    pub defaults: Limits,
    /// `[[shaping]]` entries; the first that matches wins.
    pub rules: Vec<ShapingRule>,
}

/// Names a destination: equal keys share one budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationKey(pub String);

impl fmt::Display for DestinationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A destination with its limits, as one route resolved.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Its name.
    pub key: DestinationKey,
    /// Its limits.
    pub limits: Limits,
    /// Replies that suspend it (from its rule).
    pub on_reply: Vec<OnReply>,
}

impl Shaping {
    /// The destination of `route`, given the MX host names its domain has (`None` when
    /// they are unknown: a relay, or a lookup that failed — then the domain stands alone).
    pub fn destination(&self, route: &Route, mx_hosts: Option<&[String]>) -> Destination {
        let plain = |key: String| Destination {
            key: DestinationKey(key),
            limits: self.defaults.clone(),
            on_reply: Vec::new(),
        };
        let domain = match route {
            Route::Relay(spec) => return plain(format!("relay {}", redact(spec))),
            Route::ConfiguredRelay => return plain("the configured relay".to_string()),
            Route::Mx(domain) => domain,
        };
        let hosts: Vec<String> = mx_hosts
            .unwrap_or_default()
            .iter()
            .map(|host| host.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        if let Some(rule) = self.rules.iter().find(|rule| rule.applies(domain, &hosts)) {
            let defaults = &self.defaults;
            return Destination {
                key: DestinationKey(rule.name()),
                limits: Limits {
                    max_connections: rule.max_connections.unwrap_or(defaults.max_connections),
                    messages_per_connection: rule
                        .messages_per_connection
                        .unwrap_or(defaults.messages_per_connection),
                    max_message_rate: rule.max_message_rate.or(defaults.max_message_rate),
                    max_recipients_per_transaction: rule
                        .max_recipients_per_transaction
                        .unwrap_or(defaults.max_recipients_per_transaction),
                },
                on_reply: rule.on_reply.clone(),
            };
        }
        if hosts.is_empty() {
            return plain(format!("domain {}", domain.to_ascii_lowercase()));
        }
        let mut hosts = hosts;
        hosts.sort();
        hosts.dedup();
        plain(format!("mx {}", hosts.join(",")))
    }
}

impl Destination {
    /// The suspension a reply asks for, if any: a `421` (the server is closing the
    /// service: RFC 5321 §3.8) suspends along the retry schedule (`None` duration), a
    /// `4xx` matching an `on_reply` pattern for that pattern's time.
    pub fn slow_down(&self, code: u16, text: &str) -> Option<Option<Duration>> {
        if !(400..500).contains(&code) {
            return None;
        }
        if let Some(rule) = self
            .on_reply
            .iter()
            .find(|rule| rule.pattern.is_match(text))
        {
            return Some(Some(rule.suspend));
        }
        (code == 421).then_some(None)
    }
}

/// How long a connection may wait for the rate limiter before it gives its work back
/// instead (holding a connection slot idle longer would block other destinations).
pub(crate) const MAX_RATE_WAIT: Duration = Duration::from_secs(1);

/// How long a route's destination is remembered before its MX hosts are looked up again.
const DESTINATION_TTL: Duration = Duration::from_secs(300);

/// The destinations this worker knows: which route goes where, how many connections each
/// has open, and each one's rate limiter.
pub(crate) struct Destinations {
    pub shaping: Shaping,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    of_route: HashMap<Route, (Arc<Destination>, Instant)>,
    state: HashMap<DestinationKey, State>,
}

#[derive(Default)]
struct State {
    open: usize,
    /// The theoretical arrival time of the next message (GCRA): a message may go when it
    /// is not in the future.
    next_send: Option<Instant>,
}

/// What the rate limiter says about the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Send now (the message is counted).
    Now,
    /// Not before this long from now (nothing counted).
    After(Duration),
}

/// A connection slot of one destination, given back on drop.
pub(crate) struct Slot {
    destinations: Arc<Destinations>,
    key: DestinationKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.destinations.lock();
        if let Some(state) = inner.state.get_mut(&self.key) {
            state.open = state.open.saturating_sub(1);
        }
    }
}

impl Destinations {
    pub fn new(shaping: Shaping) -> Self {
        Destinations {
            shaping,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The destination of a route, when it was resolved recently.
    pub fn known(&self, route: &Route) -> Option<Arc<Destination>> {
        let inner = self.lock();
        let (destination, at) = inner.of_route.get(route)?;
        (at.elapsed() < DESTINATION_TTL).then(|| destination.clone())
    }

    /// Remembers a route's destination.
    pub fn learn(&self, route: &Route, mx_hosts: Option<&[String]>) -> Arc<Destination> {
        let destination = Arc::new(self.shaping.destination(route, mx_hosts));
        self.lock()
            .of_route
            .insert(route.clone(), (destination.clone(), Instant::now()));
        destination
    }

    /// The recipient domains this worker has routed to `key` (directly by MX: a relay
    /// is not reached by domain), lowercase and sorted: what a stored suspension lists.
    pub fn domains_of(&self, key: &DestinationKey) -> Vec<String> {
        let mut domains: Vec<String> = self
            .lock()
            .of_route
            .iter()
            .filter(|(_, (destination, _))| destination.key == *key)
            .filter_map(|(route, _)| match route {
                Route::Mx(domain) => Some(domain.to_ascii_lowercase()),
                Route::Relay(_) | Route::ConfiguredRelay => None,
            })
            .collect();
        domains.sort();
        domains.dedup();
        domains
    }

    /// A connection slot, unless the destination has all it may have.
    pub fn try_open(self: &Arc<Self>, destination: &Destination) -> Option<Slot> {
        let mut inner = self.lock();
        let state = inner.state.entry(destination.key.clone()).or_default();
        if state.open >= destination.limits.max_connections {
            return None;
        }
        state.open += 1;
        Some(Slot {
            destinations: self.clone(),
            key: destination.key.clone(),
        })
    }

    /// Asks the rate limiter for one message to `destination` at `now`.
    pub fn permit(&self, destination: &Destination, now: Instant) -> Permit {
        let Some(rate) = destination.limits.max_message_rate else {
            return Permit::Now;
        };
        let interval = rate.interval();
        // A sender woken a little late (timers overshoot by a millisecond or so) keeps the
        // time it lost, up to one interval (at most a second): at 200/s a 1 ms overshoot
        // per message would otherwise cost a sixth of the rate. After an idle spell this
        // lets one more message go at once, never more than the rate allows per period.
        let slack = interval.min(Duration::from_secs(1));
        let mut inner = self.lock();
        let state = inner.state.entry(destination.key.clone()).or_default();
        let earliest = now.checked_sub(slack).unwrap_or(now);
        let due = state.next_send.map_or(now, |due| due.max(earliest));
        if due > now {
            return Permit::After(due - now);
        }
        state.next_send = Some(due + interval);
        Permit::Now
    }

    /// When the `n`-th message from now (0-based) may go at the destination's rate.
    pub fn nth_send(&self, destination: &Destination, n: u32, now: Instant) -> Instant {
        let Some(rate) = destination.limits.max_message_rate else {
            return now;
        };
        let inner = self.lock();
        let due = inner
            .state
            .get(&destination.key)
            .and_then(|state| state.next_send)
            .unwrap_or(now)
            .max(now);
        due + rate.interval() * n
    }
}

/// One candidate for a new connection: a route with waiting work.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub route: Route,
    /// Its destination when known; else the route stands alone.
    pub destination: Option<Arc<Destination>>,
    /// Connections the route could use (waiting units).
    pub wanted: usize,
}

impl Candidate {
    fn key(&self) -> DestinationKey {
        match &self.destination {
            Some(destination) => destination.key.clone(),
            None => DestinationKey(format!("route {}", self.route)),
        }
    }

    fn cap(&self, default: usize) -> usize {
        self.destination
            .as_ref()
            .map_or(default, |destination| destination.limits.max_connections)
    }
}

/// Which connections to open with `free` slots: fair across destinations. Candidates come
/// best first (priority, then age); each round gives one more connection to the destination
/// with the fewest open, best candidate first among equals, within each destination's cap
/// and each route's wanted count. `open` counts the connections each destination has.
pub(crate) fn plan(
    candidates: &[Candidate],
    open: &HashMap<DestinationKey, usize>,
    free: usize,
    default_cap: usize,
) -> Vec<Route> {
    let mut open = open.clone();
    let mut given = vec![0usize; candidates.len()];
    let mut chosen = Vec::new();
    while chosen.len() < free {
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(i, candidate)| {
                let key = candidate.key();
                given[*i] < candidate.wanted
                    && open.get(&key).copied().unwrap_or(0) < candidate.cap(default_cap)
            })
            .min_by_key(|(i, candidate)| (open.get(&candidate.key()).copied().unwrap_or(0), *i));
        let Some((i, candidate)) = best else { break };
        given[i] += 1;
        *open.entry(candidate.key()).or_default() += 1;
        chosen.push(candidate.route.clone());
    }
    chosen
}

/// With every slot taken, the destination that should give one back so that a waiting
/// destination with no connection at all can start: the one holding the most, when it
/// holds more than its fair share (the slots divided among every destination that has
/// work). `None` when no one waits with nothing, or everyone is within their share.
pub(crate) fn over_share(
    candidates: &[Candidate],
    open: &HashMap<DestinationKey, usize>,
    max_connections: usize,
) -> Option<DestinationKey> {
    let starving: Vec<DestinationKey> = candidates
        .iter()
        .map(Candidate::key)
        .filter(|key| open.get(key).copied().unwrap_or(0) == 0)
        .collect();
    if starving.is_empty() {
        return None;
    }
    let mut with_work: Vec<&DestinationKey> = open
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(key, _)| key)
        .chain(starving.iter())
        .collect();
    with_work.sort();
    with_work.dedup();
    let share = (max_connections / with_work.len().max(1)).max(1);
    open.iter()
        .filter(|(_, count)| **count > share)
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(key, _)| key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(matches: ShapingMatch) -> ShapingRule {
        ShapingRule {
            matches,
            max_connections: Some(2),
            messages_per_connection: None,
            max_message_rate: Some("20/s".parse().unwrap()),
            max_recipients_per_transaction: None,
            on_reply: vec![OnReply {
                pattern: Regex::new("(?i)too many connections").unwrap(),
                suspend: Duration::from_secs(600),
            }],
        }
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn the_domains_of_a_destination_are_its_mx_routes() {
        let destinations = Destinations::new(Shaping::default());
        let shared = hosts(&["mx1.shared.test"]);
        let b = destinations.learn(&Route::Mx("B.test".into()), Some(&shared));
        destinations.learn(&Route::Mx("a.test".into()), Some(&shared));
        destinations.learn(&Route::Mx("c.test".into()), Some(&hosts(&["mx.c.test"])));
        destinations.learn(&Route::Relay("relay.test".into()), None);
        assert_eq!(b.key.0, "mx mx1.shared.test");
        assert_eq!(destinations.domains_of(&b.key), ["a.test", "b.test"]);
        let relay = DestinationKey("relay relay.test".into());
        assert!(
            destinations.domains_of(&relay).is_empty(),
            "not reached by domain"
        );
        // A domain that moves to other MX hosts leaves its old destination.
        destinations.learn(&Route::Mx("a.test".into()), Some(&hosts(&["mx.c.test"])));
        assert_eq!(destinations.domains_of(&b.key), ["b.test"]);
    }

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        let rate: Rate = "300/min".parse().unwrap();
        assert_eq!(rate.interval(), Duration::from_millis(200));
        assert_eq!(rate.to_string(), "300/min");
        assert_eq!(
            "20/s".parse::<Rate>().unwrap().interval(),
            Duration::from_millis(50)
        );
        assert_eq!(
            "3600/h".parse::<Rate>().unwrap().interval(),
            Duration::from_secs(1)
        );
        for bad in ["", "20", "0/s", "-1/s", "20/day", "x/s", "20/ s/"] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.contains(bad) || bad.is_empty(), "{bad}: {err}");
        }
    }

    #[test]
    fn domains_sharing_mx_hosts_share_a_destination() {
        let shaping = Shaping::default();
        let a = shaping.destination(
            &Route::Mx("a.test".into()),
            Some(&hosts(&["mx2.host.test.", "MX1.host.test"])),
        );
        let b = shaping.destination(
            &Route::Mx("b.test".into()),
            Some(&hosts(&["mx1.host.test", "mx2.host.test"])),
        );
        assert_eq!(a.key, b.key);
        assert_eq!(a.key.0, "mx mx1.host.test,mx2.host.test");
        let c = shaping.destination(&Route::Mx("c.test".into()), Some(&hosts(&["mx.c.test"])));
        assert_ne!(a.key, c.key);
        let unknown = shaping.destination(&Route::Mx("D.test".into()), None);
        assert_eq!(unknown.key.0, "domain d.test");
        let relay = shaping.destination(&Route::Relay("smtp://u:secret@r.test".into()), None);
        assert!(!relay.key.0.contains("secret"), "{}", relay.key);
    }

    #[test]
    fn the_first_matching_rule_wins_and_overrides_the_defaults() {
        let shaping = Shaping {
            defaults: Limits::default(),
            rules: vec![
                rule(ShapingMatch::Domain("special.test".into())),
                rule(ShapingMatch::MxSuffix(".google.test".into())),
            ],
        };
        let gmail = shaping.destination(
            &Route::Mx("gmail.test".into()),
            Some(&hosts(&["aspmx.l.google.test"])),
        );
        let corp = shaping.destination(
            &Route::Mx("corp.test".into()),
            Some(&hosts(&["alt1.aspmx.l.GOOGLE.test."])),
        );
        assert_eq!(gmail.key, corp.key);
        assert_eq!(gmail.key.0, "mx *.google.test");
        assert_eq!(gmail.limits.max_connections, 2);
        assert_eq!(gmail.limits.messages_per_connection, 100, "default kept");
        let not = shaping.destination(
            &Route::Mx("x.test".into()),
            Some(&hosts(&["notgoogle.test"])),
        );
        assert_eq!(not.limits, Limits::default());
        let special = shaping.destination(
            &Route::Mx("Special.test".into()),
            Some(&hosts(&["aspmx.l.google.test"])),
        );
        assert_eq!(special.key.0, "domain special.test", "first rule first");
    }

    #[test]
    fn slow_down_replies() {
        let destination = Shaping {
            defaults: Limits::default(),
            rules: vec![rule(ShapingMatch::Domain("a.test".into()))],
        }
        .destination(&Route::Mx("a.test".into()), None);
        assert_eq!(destination.slow_down(421, "421 4.7.0 closing"), Some(None));
        assert_eq!(
            destination.slow_down(451, "451 4.7.1 Too many connections from you"),
            Some(Some(Duration::from_secs(600)))
        );
        assert_eq!(destination.slow_down(451, "451 4.3.0 try later"), None);
        assert_eq!(destination.slow_down(550, "550 too many connections"), None);
        assert_eq!(destination.slow_down(250, "250 ok"), None);
    }

    #[test]
    fn the_rate_limiter_spaces_messages() {
        let destinations = Destinations::new(Shaping::default());
        let mut destination = destinations
            .shaping
            .destination(&Route::Mx("a.test".into()), None);
        destination.limits.max_message_rate = Some("10/s".parse().unwrap());
        let start = Instant::now();
        assert_eq!(destinations.permit(&destination, start), Permit::Now);
        assert_eq!(
            destinations.permit(&destination, start),
            Permit::After(Duration::from_millis(100))
        );
        assert_eq!(
            destinations.nth_send(&destination, 2, start),
            start + Duration::from_millis(300)
        );
        let later = start + Duration::from_millis(100);
        assert_eq!(destinations.permit(&destination, later), Permit::Now);
        // Woken 30 ms late: the next is due 70 ms later, not 100.
        let late = start + Duration::from_millis(230);
        assert_eq!(destinations.permit(&destination, late), Permit::Now);
        assert_eq!(
            destinations.permit(&destination, late),
            Permit::After(Duration::from_millis(70))
        );
        // After an idle minute, one extra message at most goes at once.
        let idle = start + Duration::from_secs(60);
        assert_eq!(destinations.permit(&destination, idle), Permit::Now);
        assert_eq!(destinations.permit(&destination, idle), Permit::Now);
        assert!(matches!(
            destinations.permit(&destination, idle),
            Permit::After(_)
        ));
    }

    #[test]
    fn slots_are_capped_per_destination_and_given_back() {
        let destinations = Arc::new(Destinations::new(Shaping::default()));
        let mut destination = destinations
            .shaping
            .destination(&Route::Mx("a.test".into()), None);
        destination.limits.max_connections = 2;
        let one = destinations.try_open(&destination).unwrap();
        let _two = destinations.try_open(&destination).unwrap();
        assert!(destinations.try_open(&destination).is_none());
        drop(one);
        assert!(destinations.try_open(&destination).is_some());
    }

    fn candidate(domain: &str, wanted: usize) -> Candidate {
        Candidate {
            route: Route::Mx(domain.into()),
            destination: None,
            wanted,
        }
    }

    #[test]
    fn slots_are_shared_fairly() {
        let candidates = [candidate("a", 10), candidate("b", 10), candidate("c", 1)];
        let plan = plan(&candidates, &HashMap::new(), 5, 5);
        let count = |d: &str| plan.iter().filter(|r| **r == Route::Mx(d.into())).count();
        assert_eq!((count("a"), count("b"), count("c")), (2, 2, 1));
        assert_eq!(plan[0], Route::Mx("a".into()), "best first");
    }

    #[test]
    fn a_starving_destination_takes_a_slot_from_the_largest() {
        let candidates = [candidate("a", 10), candidate("b", 10), candidate("h", 1)];
        let key = |d: &str| candidates[0].clone_for(d).key();
        let open = HashMap::from([(key("a"), 3), (key("b"), 2)]);
        assert_eq!(over_share(&candidates, &open, 5), Some(key("a")));
        let fair = HashMap::from([(key("a"), 2), (key("b"), 2), (key("h"), 1)]);
        assert_eq!(over_share(&candidates, &fair, 5), None, "nobody starves");
        let one_each = HashMap::from([
            (key("a"), 1),
            (key("b"), 1),
            (key("x"), 1),
            (key("y"), 1),
            (key("z"), 1),
        ]);
        assert_eq!(
            over_share(&candidates, &one_each, 5),
            None,
            "a share is one"
        );
    }

    impl Candidate {
        fn clone_for(&self, domain: &str) -> Candidate {
            candidate(domain, 1)
        }
    }
}
