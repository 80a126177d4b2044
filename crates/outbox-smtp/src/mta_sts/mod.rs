//! MTA-STS (RFC 8461): a domain's promise that its MX hosts take mail over TLS with a
//! valid certificate, published as a `_mta-sts` TXT record and a policy file served at
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`.
//!
//! [`MtaSts::policy`] runs the sender's procedure of §5.1 and answers a [`PolicyLookup`]:
//!
//! 1. look up the TXT record at `_mta-sts.DOMAIN` (through the [`MxResolver`], like MX
//!    lookups); without exactly one valid `v=STSv1` record, a cached, unexpired policy
//!    still applies, else there is none;
//! 2. a record whose `id` is the cached policy's: the cached policy, nothing fetched;
//! 3. otherwise fetch the policy over HTTPS ([`FetchError`] lists what is refused) and
//!    cache it for its `max_age`; a failed fetch falls back to the cached, unexpired policy,
//!    else to none, logged at warn: delivery goes on without MTA-STS, as §5.1 says.
//!
//! Lookups for one domain are serialized, so concurrent deliveries fetch once. Every
//! answer is also remembered for [`MtaStsSettings::recheck_interval`] (never past the
//! policy's expiry), so a busy domain costs one TXT query per interval rather than one per
//! message, and a policy host that fails or stalls is not asked again for every message.
//! This matters because the DNS resolver keeps no cache of its own for TXT answers
//! ([`DnsMxResolver`](crate::mx::DnsMxResolver) turns hickory's off to honour `refresh`).
//!
//! What a policy means for delivery (RFC 8461 §4, §5): in mode [`Mode::Enforce`] only MX
//! hosts for which [`Policy::matches`] holds may be used, over TLS with a certificate
//! verified for the MX host name; in [`Mode::Testing`] failures are logged and delivery
//! proceeds as without a policy; [`Mode::None`] is no policy.

mod fetch;
mod policy;
mod record;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use fetch::{FetchError, MAX_POLICY_SIZE, POLICY_PATH};
pub use policy::{MAX_AGE_LIMIT, Mode, Policy, PolicyError};
pub use record::{RecordError, StsRecord, parse_sts_record, parse_sts_records};

use crate::mx::{MxResolver, normalize_domain};
use crate::tls::{TlsConfig, TlsConfigError};
use fetch::PolicyFetcher;

/// How many domains the cache holds before it forgets those without a valid policy.
const MAX_DOMAINS: usize = 10_000;

/// The tunables of MTA-STS, with named defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MtaStsSettings {
    /// The port of the policy host (`mta-sts.DOMAIN`): 443, the RFC's. Tests use a free
    /// loopback port.
    pub https_port: u16,
    /// The longest a whole policy fetch may take: address lookup, connect, TLS, request and
    /// body. Default 60 s, as RFC 8461 §3.3 suggests.
    pub fetch_timeout: Duration,
    /// How long an answer for a domain is reused before the TXT record is looked up again
    /// (default 5 minutes; zero looks it up for every call).
    pub recheck_interval: Duration,
}

impl MtaStsSettings {
    /// RFC 8461 §3.3: "a timeout of 60 seconds is suggested".
    pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default [`MtaStsSettings::recheck_interval`].
    pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);
}

impl Default for MtaStsSettings {
    fn default() -> Self {
        MtaStsSettings {
            https_port: 443,
            fetch_timeout: Self::DEFAULT_FETCH_TIMEOUT,
            recheck_interval: Self::DEFAULT_RECHECK_INTERVAL,
        }
    }
}

/// The answer for a domain: its policy, if any applies, and why, in words for an operator
/// (`outbox mx --tls`, logs): "fetched policy id 20260101", "no _mta-sts TXT record",
/// "policy fetch failed: ...; using the cached policy (id 20260101)".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyLookup {
    /// The policy that applies; `None` when the domain has none available.
    pub policy: Option<Arc<Policy>>,
    /// How the answer came about.
    pub reason: String,
}

impl PolicyLookup {
    fn none(reason: String) -> Self {
        PolicyLookup {
            policy: None,
            reason,
        }
    }

    fn found(policy: &Arc<Policy>, reason: String) -> Self {
        PolicyLookup {
            policy: Some(policy.clone()),
            reason,
        }
    }

    /// The policy's mode, `None` when there is no policy.
    pub fn mode(&self) -> Option<Mode> {
        self.policy.as_ref().map(|policy| policy.mode)
    }

    /// The policy when its mode is `enforce`: the one case that restricts delivery.
    pub fn enforced(&self) -> Option<&Policy> {
        self.policy.as_deref().filter(|policy| policy.is_enforced())
    }
}

impl fmt::Display for PolicyLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            Some(policy) => write!(f, "MTA-STS {} ({})", policy.mode, self.reason),
            None => write!(f, "no MTA-STS policy ({})", self.reason),
        }
    }
}

/// MTA-STS policy discovery with a per-domain in-memory cache (see the module docs).
pub struct MtaSts {
    resolver: Arc<dyn MxResolver>,
    fetcher: PolicyFetcher,
    settings: MtaStsSettings,
    domains: Mutex<HashMap<String, Arc<tokio::sync::Mutex<DomainState>>>>,
}

impl fmt::Debug for MtaSts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtaSts")
            .field("settings", &self.settings)
            .field("domains", &self.lock_domains().len())
            .finish_non_exhaustive()
    }
}

impl MtaSts {
    /// Discovery through `resolver` (TXT records and the policy host's addresses), with
    /// policy hosts' certificates verified against the webpki roots plus `tls.ca_file`.
    pub fn new(
        resolver: Arc<dyn MxResolver>,
        tls: &TlsConfig,
        settings: MtaStsSettings,
    ) -> Result<MtaSts, TlsConfigError> {
        let client = tls.client_config()?;
        Ok(MtaSts {
            resolver,
            fetcher: PolicyFetcher::new(&client, settings.https_port, settings.fetch_timeout),
            settings,
            domains: Mutex::new(HashMap::new()),
        })
    }

    /// The MTA-STS policy of `domain` (the recipient domain), per RFC 8461 §5.1. Never
    /// fails: every problem means "no policy" (or the cached one) and is told in
    /// [`PolicyLookup::reason`]. Takes at most about the fetch timeout plus two DNS
    /// lookups.
    pub async fn policy(&self, domain: &str) -> PolicyLookup {
        let domain = match normalize_domain(domain) {
            Ok(domain) => domain,
            Err(error) => return PolicyLookup::none(error.to_string()),
        };
        let slot = self.slot(&domain);
        let mut state = slot.lock().await;
        if let Some(answer) = state.recent_answer(Instant::now()) {
            return answer;
        }
        let answer = self.discover(&domain, &mut state).await;
        let now = Instant::now();
        let mut until = now + self.settings.recheck_interval;
        if let Some(cached) = &state.policy {
            until = until.min(cached.expires);
        }
        state.answer = Some(Remembered {
            answer: answer.clone(),
            until,
        });
        answer
    }

    /// Steps 1-3 of the module docs, for a normalized domain.
    async fn discover(&self, domain: &str, state: &mut DomainState) -> PolicyLookup {
        let txt_name = format!("_mta-sts.{domain}");
        let record = match self.resolver.txt_records(&txt_name).await {
            Ok(records) => parse_sts_records(&records).map_err(|error| error.to_string()),
            Err(error) => Err(format!("TXT lookup failed: {error}")),
        };
        let cached = state.valid_policy(Instant::now());
        let record = match (record, &cached) {
            (Ok(record), _) => record,
            (Err(reason), Some(policy)) => {
                let reason = format!("{reason}; using the cached policy (id {})", policy.id);
                return PolicyLookup::found(policy, reason);
            }
            (Err(reason), None) => return PolicyLookup::none(reason),
        };
        if let Some(policy) = &cached
            && policy.id == record.id
        {
            let reason = format!("policy id {} unchanged, cached", policy.id);
            return PolicyLookup::found(policy, reason);
        }
        match self
            .fetcher
            .fetch(self.resolver.as_ref(), domain, &record.id)
            .await
        {
            Ok(policy) => {
                let policy = Arc::new(policy);
                tracing::debug!(domain, id = %policy.id, mode = %policy.mode, "MTA-STS policy fetched");
                state.policy = Some(CachedPolicy {
                    expires: Instant::now() + policy.max_age,
                    policy: policy.clone(),
                });
                PolicyLookup::found(&policy, format!("fetched policy id {}", policy.id))
            }
            Err(error) => match cached {
                Some(policy) => {
                    tracing::warn!(domain, %error, id = %policy.id, "MTA-STS policy fetch failed; using the cached policy");
                    let reason = format!(
                        "policy fetch failed: {error}; using the cached policy (id {})",
                        policy.id
                    );
                    PolicyLookup::found(&policy, reason)
                }
                None => {
                    tracing::warn!(domain, %error, "MTA-STS policy fetch failed; delivering without MTA-STS");
                    PolicyLookup::none(format!("policy fetch failed: {error}"))
                }
            },
        }
    }

    /// The lock and state of `domain`, created on first use. When the table is full,
    /// domains nobody is looking up and without a valid policy are forgotten first.
    fn slot(&self, domain: &str) -> Arc<tokio::sync::Mutex<DomainState>> {
        let mut domains = self.lock_domains();
        if let Some(slot) = domains.get(domain) {
            return slot.clone();
        }
        if domains.len() >= MAX_DOMAINS {
            let now = Instant::now();
            domains.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .is_ok_and(|mut state| state.valid_policy(now).is_some())
            });
            if domains.len() >= MAX_DOMAINS {
                domains.retain(|_, slot| Arc::strong_count(slot) > 1);
            }
        }
        let slot = Arc::new(tokio::sync::Mutex::new(DomainState::default()));
        domains.insert(domain.to_string(), slot.clone());
        slot
    }

    fn lock_domains(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<DomainState>>>> {
        // Inserts and removes cannot leave the map inconsistent if a holder panicked.
        self.domains
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What is known about one domain. Time is passed in, so expiry can be tested without
/// waiting.
#[derive(Debug, Default)]
struct DomainState {
    /// The last policy fetched, until it expires.
    policy: Option<CachedPolicy>,
    /// The last answer given, reused until `until`.
    answer: Option<Remembered>,
}

#[derive(Debug)]
struct CachedPolicy {
    policy: Arc<Policy>,
    /// Fetch time plus `max_age` (RFC 8461 §3.2).
    expires: Instant,
}

#[derive(Debug)]
struct Remembered {
    answer: PolicyLookup,
    until: Instant,
}

impl DomainState {
    /// The cached policy if it has not expired; an expired one is dropped.
    fn valid_policy(&mut self, now: Instant) -> Option<Arc<Policy>> {
        match &self.policy {
            Some(cached) if cached.expires > now => Some(cached.policy.clone()),
            Some(_) => {
                self.policy = None;
                None
            }
            None => None,
        }
    }

    /// The last answer, while it may still be reused.
    fn recent_answer(&self, now: Instant) -> Option<PolicyLookup> {
        self.answer
            .as_ref()
            .filter(|remembered| remembered.until > now)
            .map(|remembered| remembered.answer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: &str) -> Arc<Policy> {
        Arc::new(Policy {
            id: id.to_string(),
            mode: Mode::Enforce,
            mx: vec!["mx.a.test".into()],
            max_age: Duration::from_secs(60),
        })
    }

    #[test]
    fn cached_policy_expires_at_fetch_time_plus_max_age() {
        let start = Instant::now();
        let mut state = DomainState {
            policy: Some(CachedPolicy {
                policy: policy("1"),
                expires: start + Duration::from_secs(60),
            }),
            answer: None,
        };
        let second = Duration::from_secs(1);
        assert_eq!(state.valid_policy(start + 59 * second).unwrap().id, "1");
        assert!(state.valid_policy(start + 60 * second).is_none());
        assert!(state.policy.is_none(), "an expired policy is dropped");
        assert!(state.valid_policy(start).is_none());
    }

    #[test]
    fn answers_are_reused_until_their_time() {
        let start = Instant::now();
        let answer = PolicyLookup::found(&policy("7"), "fetched policy id 7".into());
        let state = DomainState {
            policy: None,
            answer: Some(Remembered {
                answer: answer.clone(),
                until: start + Duration::from_secs(300),
            }),
        };
        assert_eq!(state.recent_answer(start), Some(answer));
        assert_eq!(state.recent_answer(start + Duration::from_secs(300)), None);
    }

    #[test]
    fn lookups_describe_themselves() {
        let found = PolicyLookup::found(&policy("7"), "fetched policy id 7".into());
        assert_eq!(found.mode(), Some(Mode::Enforce));
        assert_eq!(found.enforced().map(|p| p.id.as_str()), Some("7"));
        assert_eq!(found.to_string(), "MTA-STS enforce (fetched policy id 7)");
        let none = PolicyLookup::none("no _mta-sts TXT record".into());
        assert_eq!(none.mode(), None);
        assert!(none.enforced().is_none());
        assert_eq!(
            none.to_string(),
            "no MTA-STS policy (no _mta-sts TXT record)"
        );
    }

    #[tokio::test]
    async fn invalid_domains_and_missing_records_mean_no_policy() {
        let resolver = crate::mx::StaticMxResolver::new()
            .txt("_mta-sts.two.test", "v=STSv1; id=1")
            .txt("_mta-sts.two.test", "v=STSv1; id=2")
            .failing("_mta-sts.broken.test", "SERVFAIL");
        let sts = MtaSts::new(
            Arc::new(resolver),
            &TlsConfig::default(),
            MtaStsSettings::default(),
        )
        .unwrap();
        for (domain, reason) in [
            ("a b.test", "invalid domain \"a b.test\""),
            ("none.test", "no _mta-sts TXT record"),
            (
                "two.test",
                "2 _mta-sts TXT records (exactly one is allowed)",
            ),
            (
                "broken.test",
                "TXT lookup failed: DNS lookup for _mta-sts.broken.test failed: SERVFAIL",
            ),
        ] {
            let lookup = sts.policy(domain).await;
            assert!(lookup.policy.is_none(), "{domain}");
            assert!(
                lookup.reason.starts_with(reason),
                "{domain}: {}",
                lookup.reason
            );
        }
    }

    #[tokio::test]
    async fn a_record_without_a_reachable_policy_host_means_no_policy() {
        let resolver = crate::mx::StaticMxResolver::new().txt("_mta-sts.a.test", "v=STSv1; id=1");
        let sts = MtaSts::new(
            Arc::new(resolver),
            &TlsConfig::default(),
            MtaStsSettings::default(),
        )
        .unwrap();
        let lookup = sts.policy("A.test.").await;
        assert!(lookup.policy.is_none());
        assert_eq!(
            lookup.reason,
            "policy fetch failed: cannot find the address of mta-sts.a.test: \
             mail host mta-sts.a.test has no address records"
        );
    }
}
