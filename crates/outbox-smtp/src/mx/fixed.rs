//! A resolver answering from a fixed table, for tests of the delivery engine.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{
    MxAnswer, MxError, MxHost, MxRecord, MxResolver, ResolveFuture, normalize_domain,
    order_mx_records,
};

/// Answers from a table built in code: MX records per domain and addresses per host. A
/// domain with no MX entry but with addresses is its own implicit MX; a domain in neither
/// table does not exist.
#[derive(Clone, Debug, Default)]
pub struct StaticMxResolver {
    mx: HashMap<String, Vec<MxRecord>>,
    addresses: HashMap<String, Vec<IpAddr>>,
    txt: HashMap<String, Vec<String>>,
    failing: HashMap<String, String>,
}

impl StaticMxResolver {
    /// An empty table: every domain is unknown.
    pub fn new() -> StaticMxResolver {
        StaticMxResolver::default()
    }

    /// Adds an MX record; an exchange of `"."` makes a null MX.
    pub fn mx(mut self, domain: &str, preference: u16, exchange: &str) -> Self {
        let exchange = exchange.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .entry(domain.to_ascii_lowercase())
            .or_default()
            .push((preference, exchange));
        self
    }

    /// Adds an address of `host`.
    pub fn address(mut self, host: &str, address: IpAddr) -> Self {
        self.addresses
            .entry(host.to_ascii_lowercase())
            .or_default()
            .push(address);
        self
    }

    /// Adds a TXT record at `name` (e.g. `_mta-sts.a.test`, `"v=STSv1; id=1"`).
    pub fn txt(mut self, name: &str, text: &str) -> Self {
        self.txt
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(text.to_string());
        self
    }

    /// Makes every lookup of `name` fail transiently with `message` (a SERVFAIL stand-in).
    pub fn failing(mut self, name: &str, message: &str) -> Self {
        self.failing
            .insert(name.to_ascii_lowercase(), message.to_string());
        self
    }

    fn check_failing(&self, name: &str) -> Result<(), MxError> {
        match self.failing.get(name) {
            Some(message) => Err(MxError::Lookup {
                name: name.to_string(),
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }

    fn hosts(&self, domain: &str) -> Result<Vec<MxHost>, MxError> {
        let domain = normalize_domain(domain)?;
        self.check_failing(&domain)?;
        if let Some(records) = self.mx.get(&domain) {
            return match order_mx_records(records, &mut rand::rng()) {
                MxAnswer::Hosts(hosts) => Ok(hosts),
                MxAnswer::NullMx => Err(MxError::NullMx { domain }),
            };
        }
        if self.addresses.contains_key(&domain) {
            return Ok(vec![MxHost {
                preference: 0,
                host: domain,
            }]);
        }
        Err(MxError::NoSuchDomain { domain })
    }

    fn ips(&self, host: &str) -> Result<Vec<IpAddr>, MxError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let host = normalize_domain(host)?;
        self.check_failing(&host)?;
        self.addresses
            .get(&host)
            .cloned()
            .ok_or(MxError::NoAddress { host })
    }
}

impl MxResolver for StaticMxResolver {
    fn mx_hosts<'a>(&'a self, domain: &'a str) -> ResolveFuture<'a, Vec<MxHost>> {
        Box::pin(async move { self.hosts(domain) })
    }

    fn host_addresses<'a>(&'a self, host: &'a str) -> ResolveFuture<'a, Vec<IpAddr>> {
        Box::pin(async move { self.ips(host) })
    }

    fn txt_records<'a>(&'a self, name: &'a str) -> ResolveFuture<'a, Vec<String>> {
        Box::pin(async move {
            let name = normalize_domain(name)?;
            self.check_failing(&name)?;
            Ok(self.txt.get(&name).cloned().unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_from_the_table() {
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let resolver = StaticMxResolver::new()
            .mx("a.test", 20, "mx2.a.test")
            .mx("a.test", 10, "mx1.a.test")
            .mx("null.test", 0, ".")
            .address("mx1.a.test", ip)
            .address("implicit.test", ip)
            .txt("_mta-sts.a.test", "v=STSv1; id=1")
            .failing("broken.test", "SERVFAIL");
        let hosts = resolver.mx_hosts("A.test").await.unwrap();
        assert_eq!(hosts[0].host, "mx1.a.test");
        assert_eq!(hosts[1].host, "mx2.a.test");
        assert_eq!(
            resolver.mx_hosts("implicit.test").await.unwrap(),
            vec![MxHost {
                preference: 0,
                host: "implicit.test".into()
            }]
        );
        assert!(matches!(
            resolver.mx_hosts("null.test").await,
            Err(MxError::NullMx { .. })
        ));
        let missing = resolver.mx_hosts("nx.test").await.unwrap_err();
        assert!(missing.is_permanent());
        assert!(
            resolver
                .mx_hosts("broken.test")
                .await
                .unwrap_err()
                .is_transient()
        );
        assert_eq!(
            resolver.host_addresses("mx1.a.test").await.unwrap(),
            vec![ip]
        );
        assert!(matches!(
            resolver.host_addresses("mx2.a.test").await,
            Err(MxError::NoAddress { .. })
        ));
        assert_eq!(
            resolver.txt_records("_MTA-STS.a.test.").await.unwrap(),
            vec!["v=STSv1; id=1".to_string()]
        );
        assert!(resolver.txt_records("b.test").await.unwrap().is_empty());
        assert!(resolver.txt_records("broken.test").await.is_err());
    }
}
