//! MX lookup over DNS with hickory-resolver, and a cache that honours record TTLs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, ResolveError, TokioResolver};

use super::{
    MxAnswer, MxError, MxHost, MxRecord, MxResolver, ResolveFuture, normalize_domain,
    order_mx_records,
};

/// How long "no such domain" and "no mail host" answers are remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// How to reach DNS.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ResolverSettings {
    /// Nameservers to ask (`[dns] nameservers`); empty means the system's (resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for one answer.
    pub timeout: Duration,
    /// How long negative answers stay cached.
    pub negative_ttl: Duration,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            negative_ttl: NEGATIVE_TTL,
        }
    }
}

/// What the cache remembers for a domain: the raw records (so each use reshuffles equal
/// preferences), an implicit MX, or a permanent error.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Known {
    Records(Vec<MxRecord>),
    Implicit,
    Error(MxError),
}

/// A TTL cache of MX answers, keyed by normalized domain. Time is passed in so the expiry
/// rule can be tested without waiting.
#[derive(Debug, Default)]
struct MxCache {
    entries: Mutex<HashMap<String, (Known, Instant)>>,
}

impl MxCache {
    fn get(&self, domain: &str, now: Instant) -> Option<Known> {
        let mut entries = self.lock();
        match entries.get(domain) {
            Some((known, expires)) if *expires > now => Some(known.clone()),
            Some(_) => {
                entries.remove(domain);
                None
            }
            None => None,
        }
    }

    fn put(&self, domain: &str, known: Known, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        self.lock().insert(domain.to_string(), (known, now + ttl));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Known, Instant)>> {
        // Inserts and removes cannot leave the map inconsistent if a holder panicked.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// MX lookup over DNS (hickory-resolver), with its own TTL cache so `lookup(.., refresh)`
/// can bypass it (`email_mxlookup -refresh`).
pub struct DnsMxResolver {
    resolver: TokioResolver,
    cache: MxCache,
    negative_ttl: Duration,
}

impl DnsMxResolver {
    /// A resolver asking `settings.nameservers` (UDP, then TCP), or the system's nameservers
    /// when the list is empty.
    pub fn new(settings: &ResolverSettings) -> Result<DnsMxResolver, MxError> {
        let mut builder = if settings.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| MxError::Setup {
                message: e.to_string(),
            })?
        } else {
            let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
            for address in &settings.nameservers {
                for protocol in [Protocol::Udp, Protocol::Tcp] {
                    let mut server = NameServerConfig::new(*address, protocol);
                    // An NXDOMAIN from the configured server is the answer, not a reason to
                    // ask the next one.
                    server.trust_negative_responses = true;
                    config.add_name_server(server);
                }
            }
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        };
        let options = builder.options_mut();
        options.timeout = settings.timeout;
        options.attempts = 2;
        options.use_hosts_file = ResolveHosts::Never;
        options.ndots = 0;
        // Caching is ours (so it can be bypassed); hickory's cache would answer a refresh.
        options.cache_size = 0;
        Ok(DnsMxResolver {
            resolver: builder.build(),
            cache: MxCache::default(),
            negative_ttl: settings.negative_ttl,
        })
    }

    /// The hosts to try for `domain`, in order; `refresh` ignores (and replaces) what the
    /// cache holds.
    pub async fn lookup(&self, domain: &str, refresh: bool) -> Result<Vec<MxHost>, MxError> {
        let domain = normalize_domain(domain)?;
        let cached = if refresh {
            None
        } else {
            self.cache.get(&domain, Instant::now())
        };
        let known = match cached {
            Some(known) => known,
            None => {
                let (known, ttl) = self.query(&domain).await?;
                self.cache.put(&domain, known.clone(), ttl, Instant::now());
                known
            }
        };
        match known {
            Known::Error(error) => Err(error),
            Known::Implicit => Ok(vec![MxHost {
                preference: 0,
                host: domain,
            }]),
            Known::Records(records) => match order_mx_records(&records, &mut rand::rng()) {
                MxAnswer::Hosts(hosts) => Ok(hosts),
                MxAnswer::NullMx => Err(MxError::NullMx { domain }),
            },
        }
    }

    /// Asks DNS; returns what to remember and for how long. Transient failures are errors
    /// (never cached).
    async fn query(&self, domain: &str) -> Result<(Known, Duration), MxError> {
        let name = fqdn(domain)?;
        match self.resolver.mx_lookup(name.clone()).await {
            Ok(lookup) => {
                let mut records = Vec::new();
                let mut ttl = u32::MAX;
                for record in lookup.as_lookup().records() {
                    if let RData::MX(mx) = record.data() {
                        let exchange = mx.exchange().to_ascii();
                        records.push((mx.preference(), exchange.trim_end_matches('.').to_string()));
                        ttl = ttl.min(record.ttl());
                    }
                }
                if !records.is_empty() {
                    let known = match order_mx_records(&records, &mut rand::rng()) {
                        MxAnswer::NullMx => Known::Error(MxError::NullMx {
                            domain: domain.to_string(),
                        }),
                        MxAnswer::Hosts(_) => Known::Records(records),
                    };
                    return Ok((known, Duration::from_secs(u64::from(ttl))));
                }
            }
            Err(error) => match classify(&error) {
                Negative::NoSuchDomain => {
                    return Ok((self.no_such_domain(domain), self.negative_ttl));
                }
                Negative::NoRecords => {}
                Negative::Failure => return Err(lookup_error(domain, &error)),
            },
        }
        // RFC 5321 §5.1: no MX records, so the domain itself is the mail host if it has an
        // address.
        match self.resolver.lookup_ip(name).await {
            Ok(lookup) => {
                let ttl = lookup
                    .as_lookup()
                    .records()
                    .iter()
                    .map(|r| r.ttl())
                    .min()
                    .unwrap_or(0);
                if lookup.iter().next().is_some() {
                    Ok((Known::Implicit, Duration::from_secs(u64::from(ttl))))
                } else {
                    Ok((self.no_mail_host(domain), self.negative_ttl))
                }
            }
            Err(error) if error.is_nx_domain() => {
                Ok((self.no_such_domain(domain), self.negative_ttl))
            }
            Err(error) if error.is_no_records_found() => {
                Ok((self.no_mail_host(domain), self.negative_ttl))
            }
            Err(error) => Err(lookup_error(domain, &error)),
        }
    }

    fn no_such_domain(&self, domain: &str) -> Known {
        Known::Error(MxError::NoSuchDomain {
            domain: domain.to_string(),
        })
    }

    fn no_mail_host(&self, domain: &str) -> Known {
        Known::Error(MxError::NoMailHost {
            domain: domain.to_string(),
        })
    }

    /// The A and AAAA addresses of `host`.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, MxError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(vec![ip]);
        }
        let host = normalize_domain(host)?;
        match self.resolver.lookup_ip(fqdn(&host)?).await {
            Ok(lookup) => {
                let addresses: Vec<IpAddr> = lookup.iter().collect();
                if addresses.is_empty() {
                    Err(MxError::NoAddress { host })
                } else {
                    Ok(addresses)
                }
            }
            Err(error) => match classify(&error) {
                Negative::NoSuchDomain | Negative::NoRecords => Err(MxError::NoAddress { host }),
                Negative::Failure => Err(lookup_error(&host, &error)),
            },
        }
    }

    /// The TXT records at `name`, each one's strings joined (not cached here: MTA-STS,
    /// the one user, remembers its own answers). NXDOMAIN and "no records" are an empty
    /// list; a failed lookup is [`MxError::Lookup`].
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, MxError> {
        let name = normalize_domain(name)?;
        match self.resolver.txt_lookup(fqdn(&name)?).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|txt| String::from_utf8_lossy(&txt.txt_data().concat()).into_owned())
                .collect()),
            Err(error) => match classify(&error) {
                Negative::NoSuchDomain | Negative::NoRecords => Ok(Vec::new()),
                Negative::Failure => Err(lookup_error(&name, &error)),
            },
        }
    }
}

impl MxResolver for DnsMxResolver {
    fn mx_hosts<'a>(&'a self, domain: &'a str) -> ResolveFuture<'a, Vec<MxHost>> {
        Box::pin(self.lookup(domain, false))
    }

    fn host_addresses<'a>(&'a self, host: &'a str) -> ResolveFuture<'a, Vec<IpAddr>> {
        Box::pin(self.addresses(host))
    }

    fn txt_records<'a>(&'a self, name: &'a str) -> ResolveFuture<'a, Vec<String>> {
        Box::pin(self.txt(name))
    }
}

/// The absolute name, so no search domain is ever appended.
fn fqdn(domain: &str) -> Result<Name, MxError> {
    Name::from_utf8(format!("{domain}.")).map_err(|e| MxError::InvalidDomain {
        domain: domain.to_string(),
        reason: e.to_string(),
    })
}

/// What a failed lookup says about the name.
enum Negative {
    /// NXDOMAIN: the name does not exist.
    NoSuchDomain,
    /// NOERROR with no answer: the name exists without records of that type.
    NoRecords,
    /// SERVFAIL, REFUSED, timeouts, network errors: nothing is known (transient).
    Failure,
}

fn classify(error: &ResolveError) -> Negative {
    let code = error.proto().and_then(|proto| match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
        _ => None,
    });
    match code {
        Some(ResponseCode::NXDomain) => Negative::NoSuchDomain,
        Some(ResponseCode::NoError) => Negative::NoRecords,
        _ => Negative::Failure,
    }
}

fn lookup_error(name: &str, error: &ResolveError) -> MxError {
    MxError::Lookup {
        name: name.to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_after_the_ttl() {
        let cache = MxCache::default();
        let start = Instant::now();
        let known = Known::Records(vec![(10, "mx.a.test".into())]);
        cache.put("a.test", known.clone(), Duration::from_secs(300), start);
        assert_eq!(
            cache.get("a.test", start + Duration::from_secs(299)),
            Some(known)
        );
        assert_eq!(cache.get("a.test", start + Duration::from_secs(300)), None);
        assert_eq!(
            cache.get("a.test", start),
            None,
            "an expired entry is removed"
        );
    }

    #[test]
    fn zero_ttl_is_not_cached() {
        let cache = MxCache::default();
        let now = Instant::now();
        cache.put("a.test", Known::Implicit, Duration::ZERO, now);
        assert_eq!(cache.get("a.test", now), None);
    }
}
