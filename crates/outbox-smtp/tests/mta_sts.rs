//! MTA-STS discovery against real parts: dnsmasq on loopback for the `_mta-sts` TXT record
//! and the `mta-sts.a.test` address (127.0.0.2), and a local HTTPS policy server with a
//! certificate from a throwaway CA given as `[tls] ca_file`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outbox_smtp::TlsConfig;
use outbox_smtp::mta_sts::{MAX_POLICY_SIZE, Mode, MtaSts, MtaStsSettings, PolicyLookup};
use outbox_smtp::mx::{DnsMxResolver, MxHost, MxResolver, ResolveFuture, ResolverSettings};
use outbox_testkit::ca::TestCa;
use outbox_testkit::dnsmasq::Dnsmasq;
use outbox_testkit::policy_server::{PolicyReply, PolicyServer};

const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.a.test\r\nmx: *.backup.a.test\r\nmax_age: 86400\r\n";

/// DNS records for a.test with the TXT record of `id` (none when `None`).
fn records(id: Option<&str>) -> Vec<String> {
    let mut records = vec![
        "--mx-host=a.test,mx1.a.test,10".to_string(),
        "--host-record=mta-sts.a.test,127.0.0.2".to_string(),
    ];
    if let Some(id) = id {
        records.push(format!("--txt-record=_mta-sts.a.test,v=STSv1; id={id}"));
    }
    records
}

fn dns_resolver(dns: &Dnsmasq) -> Arc<DnsMxResolver> {
    Arc::new(
        DnsMxResolver::new(&{
            let mut settings = ResolverSettings::default();
            settings.nameservers = vec![dns.addr];
            settings.timeout = Duration::from_secs(1);
            settings
        })
        .expect("resolver"),
    )
}

/// A resolver whose DNS server can be swapped mid-test (dnsmasq's records are fixed at
/// start), counting TXT lookups.
struct SwitchableResolver {
    current: Mutex<Arc<DnsMxResolver>>,
    txt_lookups: AtomicUsize,
}

impl SwitchableResolver {
    fn inner(&self) -> Arc<DnsMxResolver> {
        self.current.lock().unwrap().clone()
    }
}

impl MxResolver for SwitchableResolver {
    fn mx_hosts<'a>(&'a self, domain: &'a str) -> ResolveFuture<'a, Vec<MxHost>> {
        let inner = self.inner();
        Box::pin(async move { inner.lookup(domain, false).await })
    }

    fn host_addresses<'a>(&'a self, host: &'a str) -> ResolveFuture<'a, Vec<IpAddr>> {
        let inner = self.inner();
        Box::pin(async move { inner.addresses(host).await })
    }

    fn txt_records<'a>(&'a self, name: &'a str) -> ResolveFuture<'a, Vec<String>> {
        self.txt_lookups.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner();
        Box::pin(async move { inner.txt(name).await })
    }
}

/// DNS, a CA, the policy server for mta-sts.a.test and the MTA-STS client under test.
struct Fixture {
    dns: Dnsmasq,
    resolver: Arc<SwitchableResolver>,
    ca: TestCa,
    server: PolicyServer,
    sts: MtaSts,
}

impl Fixture {
    /// `id` for the TXT record; the server answers `reply`; no answer is reused between
    /// calls (recheck interval zero) unless `tune` says otherwise.
    async fn start(
        id: Option<&str>,
        reply: PolicyReply,
        tune: impl FnOnce(&mut MtaStsSettings),
    ) -> Fixture {
        let ca = TestCa::for_names(&["mta-sts.a.test"]);
        let server = PolicyServer::start(
            [127, 0, 0, 2].into(),
            &ca.server_cert,
            &ca.server_key,
            reply,
        )
        .await;
        Fixture::with_server(id, ca, server, tune)
    }

    fn with_server(
        id: Option<&str>,
        ca: TestCa,
        server: PolicyServer,
        tune: impl FnOnce(&mut MtaStsSettings),
    ) -> Fixture {
        let dns = Dnsmasq::start(&records(id));
        let resolver = Arc::new(SwitchableResolver {
            current: Mutex::new(dns_resolver(&dns)),
            txt_lookups: AtomicUsize::new(0),
        });
        let mut settings = MtaStsSettings::default();
        settings.https_port = server.addr.port();
        settings.fetch_timeout = Duration::from_secs(5);
        settings.recheck_interval = Duration::ZERO;
        tune(&mut settings);
        let sts = MtaSts::new(
            resolver.clone(),
            &TlsConfig::with_ca_file(&ca.ca_cert),
            settings,
        )
        .expect("MTA-STS client");
        Fixture {
            dns,
            resolver,
            ca,
            server,
            sts,
        }
    }

    /// Points DNS at a new dnsmasq publishing `id`; returns it (keep it alive).
    fn republish(&self, id: Option<&str>) -> Dnsmasq {
        let dns = Dnsmasq::start(&records(id));
        *self.resolver.current.lock().unwrap() = dns_resolver(&dns);
        dns
    }

    async fn lookup(&self) -> PolicyLookup {
        self.sts.policy("a.test").await
    }
}

fn policy_id(lookup: &PolicyLookup) -> Option<&str> {
    lookup.policy.as_ref().map(|policy| policy.id.as_str())
}

#[tokio::test]
async fn policy_is_fetched_and_parsed() {
    let f = Fixture::start(Some("20260101"), PolicyReply::policy(POLICY), |_| {}).await;
    let lookup = f.sts.policy("A.Test.").await;
    let policy = lookup.policy.as_ref().expect("a policy");
    assert_eq!(policy.id, "20260101");
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(policy.mx, vec!["mx1.a.test", "*.backup.a.test"]);
    assert_eq!(policy.max_age, Duration::from_secs(86400));
    assert!(policy.matches("MX1.a.test."));
    assert!(policy.matches("x.backup.a.test"));
    assert!(!policy.matches("mx2.a.test"));
    assert_eq!(lookup.reason, "fetched policy id 20260101");
    assert_eq!(
        lookup.to_string(),
        "MTA-STS enforce (fetched policy id 20260101)"
    );

    let heads = f.server.request_heads();
    assert_eq!(heads.len(), 1);
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with("get /.well-known/mta-sts.txt http/1.1\r\n"),
        "{head}"
    );
    let host = format!("host: mta-sts.a.test:{}\r\n", f.server.addr.port());
    assert!(head.contains(&host), "{head}");
}

#[tokio::test]
async fn chunked_policy_with_media_type_parameters_is_accepted() {
    let mut reply = PolicyReply::policy(&POLICY.replace("\r\n", "\n"));
    reply.chunked = true;
    reply.headers = vec![("Content-Type".into(), "text/plain; charset=utf-8".into())];
    let f = Fixture::start(Some("1"), reply, |_| {}).await;
    let lookup = f.lookup().await;
    assert_eq!(policy_id(&lookup), Some("1"), "{lookup}");
    assert_eq!(lookup.mode(), Some(Mode::Enforce));
}

#[tokio::test]
async fn same_id_is_not_fetched_again() {
    let f = Fixture::start(Some("20260101"), PolicyReply::policy(POLICY), |_| {}).await;
    assert_eq!(policy_id(&f.lookup().await), Some("20260101"));
    let second = f.lookup().await;
    assert_eq!(policy_id(&second), Some("20260101"));
    assert_eq!(second.reason, "policy id 20260101 unchanged, cached");
    assert_eq!(f.server.request_count(), 1);
    assert_eq!(
        f.resolver.txt_lookups.load(Ordering::SeqCst),
        2,
        "the TXT record is checked on each call (recheck interval zero)"
    );
}

#[tokio::test]
async fn changed_id_is_fetched_again() {
    let f = Fixture::start(Some("20260101"), PolicyReply::policy(POLICY), |_| {}).await;
    assert_eq!(f.lookup().await.mode(), Some(Mode::Enforce));
    let _dns = f.republish(Some("20260202"));
    f.server
        .set_reply(PolicyReply::policy(&POLICY.replace("enforce", "testing")));
    let lookup = f.lookup().await;
    assert_eq!(policy_id(&lookup), Some("20260202"));
    assert_eq!(lookup.mode(), Some(Mode::Testing));
    assert!(lookup.enforced().is_none());
    assert_eq!(f.server.request_count(), 2);
}

#[tokio::test]
async fn expired_policy_is_fetched_again() {
    let short = POLICY.replace("max_age: 86400", "max_age: 1");
    let f = Fixture::start(Some("1"), PolicyReply::policy(&short), |_| {}).await;
    assert_eq!(policy_id(&f.lookup().await), Some("1"));
    assert_eq!(f.lookup().await.reason, "policy id 1 unchanged, cached");
    assert_eq!(f.server.request_count(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let lookup = f.lookup().await;
    assert_eq!(lookup.reason, "fetched policy id 1");
    assert_eq!(f.server.request_count(), 2);
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let reply = PolicyReply::status(
        301,
        ("Location", "https://mta-sts.b.test/.well-known/mta-sts.txt"),
    );
    let f = Fixture::start(Some("1"), reply, |_| {}).await;
    let lookup = f.lookup().await;
    assert!(lookup.policy.is_none());
    assert_eq!(
        lookup.reason,
        "policy fetch failed: mta-sts.a.test answered HTTP 301 (redirect to \
         \"https://mta-sts.b.test/.well-known/mta-sts.txt\"); redirects are not followed \
         (RFC 8461 §3.3)"
    );
    assert_eq!(f.server.request_count(), 1, "only the first URL was asked");
}

#[tokio::test]
async fn body_over_64_kib_means_no_policy() {
    let mut big = POLICY.to_string();
    while big.len() <= MAX_POLICY_SIZE {
        big.push_str("x-padding: 0123456789012345678901234567890123456789\r\n");
    }
    let f = Fixture::start(Some("1"), PolicyReply::policy(&big), |_| {}).await;
    let want = "policy fetch failed: the policy from mta-sts.a.test is over 65536 bytes";
    let lookup = f.lookup().await;
    assert!(lookup.policy.is_none());
    assert_eq!(lookup.reason, want);
    let mut chunked = PolicyReply::policy(&big);
    chunked.chunked = true;
    f.server.set_reply(chunked);
    let lookup = f.lookup().await;
    assert!(lookup.policy.is_none());
    assert_eq!(lookup.reason, want);
    // The same policy within the limit is fine.
    let fits: String = big[..MAX_POLICY_SIZE - 100]
        .rsplit_once("\r\n")
        .unwrap()
        .0
        .to_string();
    f.server.set_reply(PolicyReply::policy(&fits));
    assert_eq!(policy_id(&f.lookup().await), Some("1"));
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_means_no_policy() {
    let trusted = TestCa::for_names(&["mta-sts.a.test"]);
    let other = TestCa::for_names(&["mta-sts.a.test"]);
    let server = PolicyServer::start(
        [127, 0, 0, 2].into(),
        &other.server_cert,
        &other.server_key,
        PolicyReply::policy(POLICY),
    )
    .await;
    let f = Fixture::with_server(Some("1"), trusted, server, |_| {});
    let lookup = f.lookup().await;
    assert!(lookup.policy.is_none());
    assert!(
        lookup.reason.starts_with(
            "policy fetch failed: TLS with mta-sts.a.test failed: invalid peer certificate"
        ),
        "{}",
        lookup.reason
    );
    assert_eq!(f.server.request_count(), 0);
}

#[tokio::test]
async fn certificate_for_another_name_means_no_policy() {
    // Signed by the trusted CA, but for 127.0.0.1 and localhost only.
    let ca = TestCa::generate();
    let server = PolicyServer::start(
        [127, 0, 0, 2].into(),
        &ca.server_cert,
        &ca.server_key,
        PolicyReply::policy(POLICY),
    )
    .await;
    let f = Fixture::with_server(Some("1"), ca, server, |_| {});
    let lookup = f.lookup().await;
    assert!(lookup.policy.is_none());
    assert!(
        lookup.reason.contains("invalid peer certificate"),
        "{}",
        lookup.reason
    );
    assert_eq!(f.server.request_count(), 0);
}

#[tokio::test]
async fn no_txt_record_means_no_policy() {
    let f = Fixture::start(None, PolicyReply::policy(POLICY), |_| {}).await;
    let lookup = f.lookup().await;
    assert_eq!(lookup.policy, None);
    assert_eq!(lookup.reason, "no _mta-sts TXT record");
    assert_eq!(
        lookup.to_string(),
        "no MTA-STS policy (no _mta-sts TXT record)"
    );
    assert_eq!(f.server.request_count(), 0);
    // A domain unknown to DNS altogether is the same.
    let other = f.sts.policy("nx.test").await;
    assert_eq!(other.policy, None);
    assert_eq!(other.reason, "no _mta-sts TXT record");
}

#[tokio::test]
async fn failed_fetch_keeps_the_cached_policy() {
    let f = Fixture::start(Some("1"), PolicyReply::policy(POLICY), |_| {}).await;
    assert_eq!(policy_id(&f.lookup().await), Some("1"));

    let _dns = f.republish(Some("2"));
    f.server
        .set_reply(PolicyReply::status(500, ("Content-Type", "text/plain")));
    let lookup = f.lookup().await;
    assert_eq!(policy_id(&lookup), Some("1"));
    assert_eq!(
        lookup.reason,
        "policy fetch failed: mta-sts.a.test answered HTTP 500, not 200; \
         using the cached policy (id 1)"
    );
    assert_eq!(f.server.request_count(), 2);

    // The TXT record withdrawn: the unexpired cached policy still applies (RFC 8461 §5.1).
    let _dns = f.republish(None);
    let lookup = f.lookup().await;
    assert_eq!(policy_id(&lookup), Some("1"));
    assert_eq!(
        lookup.reason,
        "no _mta-sts TXT record; using the cached policy (id 1)"
    );

    // DNS down: the same.
    drop(_dns);
    let lookup = f.lookup().await;
    assert_eq!(policy_id(&lookup), Some("1"));
    assert!(
        lookup.reason.starts_with("TXT lookup failed: ")
            && lookup.reason.ends_with("; using the cached policy (id 1)"),
        "{}",
        lookup.reason
    );
    assert_eq!(f.server.request_count(), 2);
}

#[tokio::test]
async fn stalled_policy_host_times_out() {
    let f = Fixture::start(Some("1"), PolicyReply::stall(), |settings| {
        settings.fetch_timeout = Duration::from_millis(300);
    })
    .await;
    let started = Instant::now();
    let lookup = f.lookup().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "blocked for {:?}",
        started.elapsed()
    );
    assert!(lookup.policy.is_none());
    assert_eq!(
        lookup.reason,
        "policy fetch failed: fetching the policy from mta-sts.a.test took over 300ms"
    );
    assert_eq!(f.server.request_count(), 1, "the request was sent and read");
}

#[tokio::test]
async fn malformed_policy_means_no_policy() {
    let bad = POLICY.replace("mode: enforce", "mode: strict");
    let f = Fixture::start(Some("1"), PolicyReply::policy(&bad), |_| {}).await;
    let lookup = f.lookup().await;
    assert!(lookup.policy.is_none());
    assert_eq!(
        lookup.reason,
        "policy fetch failed: invalid policy from mta-sts.a.test: policy line 2: \
         mode must be enforce, testing or none, got \"strict\""
    );
}

#[tokio::test]
async fn concurrent_lookups_fetch_once() {
    let f = Fixture::start(Some("1"), PolicyReply::policy(POLICY), |_| {}).await;
    let lookups = futures_join(&f).await;
    for lookup in &lookups {
        assert_eq!(policy_id(lookup), Some("1"), "{lookup}");
    }
    assert_eq!(f.server.request_count(), 1);
}

async fn futures_join(f: &Fixture) -> Vec<PolicyLookup> {
    let (a, b, c, d) = tokio::join!(f.lookup(), f.lookup(), f.lookup(), f.lookup());
    vec![a, b, c, d]
}

#[tokio::test]
async fn answers_are_reused_within_the_recheck_interval() {
    let f = Fixture::start(
        Some("1"),
        PolicyReply::status(503, ("Content-Type", "text/plain")),
        |settings| settings.recheck_interval = Duration::from_secs(300),
    )
    .await;
    let first = f.lookup().await;
    assert!(first.policy.is_none());
    assert_eq!(f.lookup().await, first);
    assert_eq!(
        f.server.request_count(),
        1,
        "a failing policy host is not asked per message"
    );
    assert_eq!(f.resolver.txt_lookups.load(Ordering::SeqCst), 1);
    // Other domains are looked up on their own.
    assert_eq!(f.sts.policy("b.test").await.policy, None);
    assert_eq!(f.resolver.txt_lookups.load(Ordering::SeqCst), 2);
    let _ = (&f.dns, &f.ca);
}

#[tokio::test]
async fn txt_lookup_joins_strings_and_keeps_records_apart() {
    let dns = Dnsmasq::start(&[
        "--txt-record=_mta-sts.c.test,v=STSv1; ,id=split".to_string(),
        "--txt-record=_mta-sts.c.test,google-site-verification=x".to_string(),
        "--host-record=nodata.test,127.0.0.9".to_string(),
    ]);
    let resolver = dns_resolver(&dns);
    let mut records = resolver.txt_records("_mta-sts.c.test").await.unwrap();
    records.sort();
    assert_eq!(
        records,
        vec!["google-site-verification=x", "v=STSv1; id=split"]
    );
    // No such name, and a name without TXT records: no records, not an error.
    assert!(
        resolver
            .txt_records("_mta-sts.nx.test")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        resolver
            .txt_records("nodata.test")
            .await
            .unwrap()
            .is_empty()
    );
    // DNS down: a transient error.
    drop(dns);
    let error = resolver.txt_records("_mta-sts.c.test").await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}
