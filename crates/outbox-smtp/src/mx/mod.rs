//! MX lookup (RFC 5321 §5.1): which hosts receive mail for a domain, in the order to try
//! them, behind the [`MxResolver`] trait so the delivery engine's tests can use a fixed map
//! ([`StaticMxResolver`]) instead of DNS ([`DnsMxResolver`]).
//!
//! - MX records are sorted by preference, and shuffled among equal preferences.
//! - A domain without MX records but with A/AAAA records is its own implicit MX.
//! - A null MX (RFC 7505: a single MX whose exchange is `.`) is a permanent failure, as is a
//!   domain that does not exist; server failures and timeouts are transient.

mod dns;
mod fixed;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use rand::seq::SliceRandom;
use thiserror::Error;

pub use dns::{DnsMxResolver, NEGATIVE_TTL, ResolverSettings};
pub use fixed::StaticMxResolver;

/// One host that receives mail for a domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MxHost {
    /// The MX preference; lower is tried first (0 for an implicit MX).
    pub preference: u16,
    /// The host name, without a trailing dot, lower-cased.
    pub host: String,
}

/// Why the mail hosts of a domain (or a host's addresses) could not be found.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MxError {
    /// The domain publishes a null MX: it accepts no mail (RFC 7505 §3).
    #[error("{domain} accepts no mail (null MX, RFC 7505)")]
    NullMx {
        /// The domain.
        domain: String,
    },
    /// The domain does not exist (NXDOMAIN).
    #[error("{domain}: no such domain")]
    NoSuchDomain {
        /// The domain.
        domain: String,
    },
    /// The domain exists but has neither MX nor A/AAAA records (RFC 5321 §5.1).
    #[error("{domain} has no MX and no address records")]
    NoMailHost {
        /// The domain.
        domain: String,
    },
    /// A mail host has no A/AAAA records (or does not exist).
    #[error("mail host {host} has no address records")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// The text is not a domain name that can be looked up.
    #[error("invalid domain {domain:?}: {reason}")]
    InvalidDomain {
        /// The text as given.
        domain: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The lookup failed for now: server failure, refusal, timeout, network error.
    #[error("DNS lookup for {name} failed: {message}")]
    Lookup {
        /// The name that was looked up.
        name: String,
        /// The resolver's description of the failure.
        message: String,
    },
    /// The resolver could not be set up (bad nameserver list, unreadable resolv.conf).
    #[error("cannot set up the DNS resolver: {message}")]
    Setup {
        /// What went wrong.
        message: String,
    },
}

impl MxError {
    /// Whether retrying later can help (DNS trouble), as opposed to an answer that says the
    /// domain takes no mail.
    pub fn is_transient(&self) -> bool {
        matches!(self, MxError::Lookup { .. } | MxError::Setup { .. })
    }

    /// Whether the answer is final: the recipient's domain cannot receive mail.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

/// A boxed future, so resolvers can be used as `Arc<dyn MxResolver>`.
pub type ResolveFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, MxError>> + Send + 'a>>;

/// Finds the mail hosts of a domain and the addresses of a host.
pub trait MxResolver: Send + Sync {
    /// The hosts to try for `domain`, in order (implicit MX included).
    fn mx_hosts<'a>(&'a self, domain: &'a str) -> ResolveFuture<'a, Vec<MxHost>>;

    /// The addresses of `host`, in the order to try them.
    fn host_addresses<'a>(&'a self, host: &'a str) -> ResolveFuture<'a, Vec<IpAddr>>;

    /// The TXT records at `name` (e.g. `_mta-sts.example.com`, RFC 8461 §3.1), each one's
    /// character-strings joined into one text. A name that does not exist or has no TXT
    /// records gives an empty list; only a failed lookup is an error.
    ///
    /// The default body answers "no TXT records", so a resolver that does not implement it
    /// (a test's fake) means "no MTA-STS policy anywhere", as before MTA-STS existed.
    fn txt_records<'a>(&'a self, name: &'a str) -> ResolveFuture<'a, Vec<String>> {
        let _ = name;
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// An MX record as it came from DNS: `(preference, exchange)`, exchange without the
/// trailing dot (`""` is the root, i.e. a null MX).
pub type MxRecord = (u16, String);

/// What a set of MX records means (RFC 5321 §5.1, RFC 7505 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MxAnswer {
    /// The hosts in the order to try them.
    Hosts(Vec<MxHost>),
    /// A null MX: no mail for this domain.
    NullMx,
}

/// Orders MX records: by preference, with hosts of equal preference shuffled (RFC 5321 §5.1:
/// "the sender-SMTP MUST randomize them"). A lone record with exchange `.` is a null MX; a
/// `.` among other records is ignored, as RFC 7505 §3 says it must not appear there.
pub fn order_mx_records(records: &[MxRecord], rng: &mut impl rand::Rng) -> MxAnswer {
    if let [(_, exchange)] = records
        && exchange.is_empty()
    {
        return MxAnswer::NullMx;
    }
    let mut hosts: Vec<MxHost> = records
        .iter()
        .filter(|(_, exchange)| !exchange.is_empty())
        .map(|(preference, exchange)| MxHost {
            preference: *preference,
            host: exchange.trim_end_matches('.').to_ascii_lowercase(),
        })
        .collect();
    hosts.sort_by_key(|host| host.preference);
    hosts.dedup();
    for group in hosts.chunk_by_mut(|a, b| a.preference == b.preference) {
        group.shuffle(rng);
    }
    if hosts.is_empty() {
        MxAnswer::NullMx
    } else {
        MxAnswer::Hosts(hosts)
    }
}

/// Checks that `domain` can be looked up and returns it lower-cased without a trailing dot.
pub fn normalize_domain(domain: &str) -> Result<String, MxError> {
    let invalid = |reason: &str| MxError::InvalidDomain {
        domain: domain.to_string(),
        reason: reason.to_string(),
    };
    let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("each label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || !b.is_ascii())
        {
            return Err(invalid("only letters, digits, '-' and '_' are allowed"));
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn hosts(answer: MxAnswer) -> Vec<(u16, String)> {
        match answer {
            MxAnswer::Hosts(hosts) => hosts.into_iter().map(|h| (h.preference, h.host)).collect(),
            MxAnswer::NullMx => panic!("unexpected null MX"),
        }
    }

    #[test]
    fn sorted_by_preference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let records = vec![(20, "mx2.a.test".into()), (10, "MX1.a.test.".into())];
        assert_eq!(
            hosts(order_mx_records(&records, &mut rng)),
            vec![(10, "mx1.a.test".into()), (20, "mx2.a.test".into())]
        );
    }

    #[test]
    fn equal_preferences_are_shuffled_but_stay_in_their_group() {
        let records: Vec<MxRecord> = vec![
            (10, "a.test".into()),
            (10, "b.test".into()),
            (10, "c.test".into()),
            (5, "first.test".into()),
            (30, "last.test".into()),
        ];
        let mut orders = std::collections::HashSet::new();
        for seed in 0..40 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let got = hosts(order_mx_records(&records, &mut rng));
            assert_eq!(got[0].1, "first.test");
            assert_eq!(got[4].1, "last.test");
            orders.insert(got[1..4].to_vec());
        }
        assert!(orders.len() > 1, "equal preferences were never shuffled");
    }

    #[test]
    fn null_mx() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            order_mx_records(&[(0, String::new())], &mut rng),
            MxAnswer::NullMx
        );
        // A root exchange beside real hosts is ignored.
        let mixed = vec![(0, String::new()), (10, "mx.a.test".into())];
        assert_eq!(
            hosts(order_mx_records(&mixed, &mut rng)),
            vec![(10, "mx.a.test".into())]
        );
    }

    #[test]
    fn domains() {
        assert_eq!(normalize_domain("Example.TEST.").unwrap(), "example.test");
        for bad in ["", "a..b", "a b.test", "-", &"x".repeat(64)] {
            let result = normalize_domain(bad);
            if bad == "-" {
                assert!(result.is_ok());
            } else {
                assert!(
                    matches!(result, Err(MxError::InvalidDomain { .. })),
                    "{bad:?}"
                );
            }
        }
    }
}
