//! Direct delivery under MTA-STS (RFC 8461 §5), against real parts: dnsmasq answers a.test's
//! MX records (mx1.a.test on 127.0.0.2, mx2.a.test on 127.0.0.3, one port), its
//! `_mta-sts` TXT record and `mta-sts.a.test` (127.0.0.4), where a local HTTPS server
//! serves the policy; certificates come from a throwaway CA given as `[tls] ca_file`.
//!
//! `enforce` delivers only to hosts the policy names, over TLS verified for the host name,
//! never in plaintext; `testing` delivers as without a policy.

use std::sync::Arc;
use std::time::Duration;

use outbox_smtp::direct::{DirectDelivery, DirectError, HostFailure};
use outbox_smtp::mta_sts::{MtaSts, MtaStsSettings};
use outbox_smtp::mx::{DnsMxResolver, ResolverSettings};
use outbox_smtp::server::{Server, server_tls_config_from_files};
use outbox_smtp::{ClientConfig, ClientError, Protection, TlsConfig};
use outbox_testkit::ca::{SelfSigned, TestCa};
use outbox_testkit::dnsmasq::Dnsmasq;
use outbox_testkit::policy_server::{PolicyReply, PolicyServer};

/// What mx2 presents.
enum Mx2Cert {
    /// A certificate for mx2.a.test from the test CA.
    Valid,
    /// A self-signed one (for localhost).
    SelfSigned,
}

struct World {
    _dns: Dnsmasq,
    _ca: TestCa,
    _self_signed: SelfSigned,
    _policy: PolicyServer,
    mx1: Server,
    mx2: Server,
    direct: DirectDelivery,
    resolver: Arc<DnsMxResolver>,
}

/// mx1 (preference 10) offers no STARTTLS; mx2 (preference 20) offers it with `cert`.
async fn world(policy: &str, cert: Mx2Cert) -> World {
    let ca = TestCa::for_names(&["mx1.a.test", "mx2.a.test", "mta-sts.a.test"]);
    let self_signed = SelfSigned::generate("mx2");
    let policy_server = PolicyServer::start(
        "127.0.0.4".parse().unwrap(),
        &ca.server_cert,
        &ca.server_key,
        PolicyReply::policy(policy),
    )
    .await;
    let (mx1, mx2) = loop {
        let mx1 = Server::builder()
            .hostname("mx1.a.test")
            .bind("127.0.0.2:0")
            .await
            .unwrap();
        let (cert_file, key_file) = match cert {
            Mx2Cert::Valid => (&ca.server_cert, &ca.server_key),
            Mx2Cert::SelfSigned => (&self_signed.cert, &self_signed.key),
        };
        let mx2 = Server::builder()
            .hostname("mx2.a.test")
            .tls(server_tls_config_from_files(cert_file, key_file).unwrap())
            .bind(&format!("127.0.0.3:{}", mx1.local_addr().port()))
            .await;
        if let Ok(mx2) = mx2 {
            break (mx1, mx2);
        }
    };
    let dns = Dnsmasq::start(&[
        "--mx-host=a.test,mx1.a.test,10".to_string(),
        "--mx-host=a.test,mx2.a.test,20".to_string(),
        "--host-record=mx1.a.test,127.0.0.2".to_string(),
        "--host-record=mx2.a.test,127.0.0.3".to_string(),
        "--host-record=mta-sts.a.test,127.0.0.4".to_string(),
        "--txt-record=_mta-sts.a.test,v=STSv1; id=20261130".to_string(),
    ]);
    let resolver = Arc::new(
        DnsMxResolver::new(&{
            let mut settings = ResolverSettings::default();
            settings.nameservers = vec![dns.addr];
            settings.timeout = Duration::from_secs(1);
            settings
        })
        .unwrap(),
    );
    let tls = TlsConfig::with_ca_file(&ca.ca_cert);
    let client = ClientConfig::new("outbox.test").with_tls(tls.clone());
    let mta_sts = MtaSts::new(resolver.clone(), &tls, {
        let mut mta_sts = MtaStsSettings::default();
        mta_sts.https_port = policy_server.addr.port();
        mta_sts
    })
    .unwrap();
    World {
        direct: DirectDelivery::new(mx1.local_addr().port(), client)
            .with_mta_sts(Arc::new(mta_sts)),
        resolver,
        mx1,
        mx2,
        _dns: dns,
        _ca: ca,
        _self_signed: self_signed,
        _policy: policy_server,
    }
}

/// One message to r@a.test by direct delivery: a session with the first host that
/// opens one, then the transaction.
async fn deliver(world: &World) -> Result<outbox_smtp::SendReport, DirectError> {
    let mut session = world.direct.connect(&*world.resolver, "a.test").await?;
    let report = session
        .client
        .send_to("s@x.test", &["r@a.test"], b"Subject: x\r\n\r\nx\r\n")
        .await
        .expect("the transaction");
    Ok(report)
}

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n")
}

#[tokio::test]
async fn enforce_delivers_only_to_a_listed_host_over_verified_tls() {
    let world = world(&policy("enforce", "mx2.a.test"), Mx2Cert::Valid).await;
    let session = world
        .direct
        .connect(&*world.resolver, "a.test")
        .await
        .expect("mx2 takes the session");
    assert_eq!(session.host.host, "mx2.a.test");
    assert_eq!(session.client.protection(), Protection::TlsVerified);
    assert!(
        matches!(&session.failed[..], [attempt] if matches!(attempt.error, HostFailure::NotInPolicy { .. })),
        "mx1 skipped for the policy: {:?}",
        session.failed
    );
    assert_eq!(
        world.mx1.stats().connections_accepted,
        0,
        "mx1 is not asked"
    );
}

#[tokio::test]
async fn enforce_defers_when_no_listed_host_offers_verified_tls() {
    // mx1 is listed but offers no STARTTLS; mx2 is not listed.
    let world = world(&policy("enforce", "mx1.a.test"), Mx2Cert::Valid).await;
    let error = deliver(&world).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let DirectError::Unreachable { attempts, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(
            attempts[0].error,
            HostFailure::Smtp(ClientError::StartTlsUnavailable { .. })
        ),
        "{attempts:?}"
    );
    assert!(
        matches!(attempts[1].error, HostFailure::NotInPolicy { .. }),
        "{attempts:?}"
    );
    assert!(
        error.to_string().contains("MTA-STS policy of a.test"),
        "{error}"
    );
    assert_eq!(
        world.mx1.stats().messages_delivered(),
        0,
        "never in plaintext"
    );
    assert_eq!(world.mx2.stats().connections_accepted, 0);
}

#[tokio::test]
async fn enforce_refuses_a_certificate_that_does_not_verify() {
    let world = world(&policy("enforce", "*.a.test"), Mx2Cert::SelfSigned).await;
    // mx1 offers no TLS, mx2's certificate is self-signed: nothing qualifies.
    let error = world
        .direct
        .connect(&*world.resolver, "a.test")
        .await
        .err()
        .expect("no session");
    let DirectError::Unreachable { attempts, .. } = &error else {
        panic!("{error:?}");
    };
    let last = attempts.last().unwrap();
    assert_eq!(last.host, "mx2.a.test");
    assert!(
        matches!(&last.error, HostFailure::Smtp(ClientError::Tls { .. })),
        "{last:?}"
    );
    assert_eq!(
        world.mx2.stats().connections_accepted,
        1,
        "no plaintext retry under enforce"
    );
}

#[tokio::test]
async fn testing_mode_delivers_as_without_a_policy() {
    let world = world(&policy("testing", "mx2.a.test"), Mx2Cert::Valid).await;
    let delivery = deliver(&world).await.expect("delivered");
    assert!(delivery.data.is_some());
    assert_eq!(
        world.mx1.stats().messages_delivered(),
        1,
        "mx1, outside the policy, still takes the mail in testing mode"
    );
}
