//! MX lookup against a real DNS server (dnsmasq on loopback).

use std::net::IpAddr;

use outbox_smtp::mx::{MxError, MxHost, MxResolver};
use outbox_testkit::dnsmasq::Dnsmasq;

fn host(preference: u16, host: &str) -> MxHost {
    MxHost {
        preference,
        host: host.to_string(),
    }
}

#[tokio::test]
async fn mx_records_in_preference_order() {
    let dns = Dnsmasq::start(&[
        "--mx-host=a.test,mx2.a.test,20",
        "--mx-host=a.test,mx1.a.test,10",
        "--mx-host=a.test,mx3.a.test,30",
        "--host-record=mx1.a.test,127.0.0.2",
    ]);
    let resolver = dns.resolver();
    assert_eq!(
        resolver.lookup("a.test", false).await.unwrap(),
        vec![
            host(10, "mx1.a.test"),
            host(20, "mx2.a.test"),
            host(30, "mx3.a.test")
        ]
    );
    let ip: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        resolver.host_addresses("mx1.a.test").await.unwrap(),
        vec![ip]
    );
    assert!(matches!(
        resolver.host_addresses("mx2.a.test").await,
        Err(MxError::NoAddress { .. })
    ));
}

#[tokio::test]
async fn implicit_mx_null_mx_and_nxdomain() {
    let dns = Dnsmasq::start(&[
        "--host-record=implicit.test,127.0.0.4",
        "--mx-host=null.test,.,0",
    ]);
    let resolver = dns.resolver();
    assert_eq!(
        resolver.mx_hosts("implicit.test").await.unwrap(),
        vec![host(0, "implicit.test")]
    );
    let null = resolver.mx_hosts("null.test").await.unwrap_err();
    assert_eq!(
        null,
        MxError::NullMx {
            domain: "null.test".into()
        }
    );
    assert!(null.is_permanent());
    let missing = resolver.mx_hosts("nx.test").await.unwrap_err();
    assert_eq!(
        missing,
        MxError::NoSuchDomain {
            domain: "nx.test".into()
        }
    );
    assert!(missing.is_permanent());
}

#[tokio::test]
async fn refused_queries_are_transient() {
    // dnsmasq answers REFUSED for names outside its zone when it has no upstream.
    let dns = Dnsmasq::start::<&str>(&[]);
    let error = dns
        .resolver()
        .mx_hosts("outside.example")
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn cache_answers_until_refresh() {
    let first = Dnsmasq::start(&["--mx-host=c.test,old.c.test,10"]);
    let resolver = first.resolver();
    assert_eq!(
        resolver.lookup("c.test", false).await.unwrap(),
        vec![host(10, "old.c.test")]
    );
    // With the DNS server gone, the cached answer (TTL 300 s) is still served ...
    let addr = first.addr;
    drop(first);
    assert_eq!(
        resolver.lookup("c.test", false).await.unwrap(),
        vec![host(10, "old.c.test")]
    );
    // ... and a refresh goes to DNS again, failing transiently.
    let refreshed = resolver.lookup("c.test", true).await.unwrap_err();
    assert!(
        refreshed.is_transient(),
        "{refreshed:?} (server was {addr})"
    );
    // The failure is not cached: the old answer is still there.
    assert_eq!(
        resolver.lookup("c.test", false).await.unwrap(),
        vec![host(10, "old.c.test")]
    );
}

#[tokio::test]
async fn negative_answers_are_cached_too() {
    let dns = Dnsmasq::start::<&str>(&[]);
    let resolver = dns.resolver();
    assert!(matches!(
        resolver.lookup("gone.test", false).await,
        Err(MxError::NoSuchDomain { .. })
    ));
    drop(dns);
    assert!(matches!(
        resolver.lookup("gone.test", false).await,
        Err(MxError::NoSuchDomain { .. })
    ));
    assert!(
        resolver
            .lookup("gone.test", true)
            .await
            .unwrap_err()
            .is_transient()
    );
}
