//! Opportunistic TLS for MX delivery (RFC 7435, DESIGN §10): an MX host with a self-signed
//! certificate or one for another name is delivered to over TLS; a broken STARTTLS is
//! retried once in plaintext; relays and `connect_addr` (the MTA-STS enforce path) still
//! verify. dnsmasq on loopback answers the MX lookups; the MX host is our server on
//! 127.0.0.2.

use std::path::Path;
use std::time::Duration;

use outbox_smtp::direct::{DirectDelivery, MxSession};
use outbox_smtp::server::{Fault, Server, Stage, server_tls_config_from_files};
use outbox_smtp::{
    ClientConfig, ClientError, Protection, Security, SmtpClient, SmtpSpec, TlsConfig,
};
use outbox_testkit::ca::{SelfSigned, TestCa};
use outbox_testkit::dnsmasq::Dnsmasq;

fn a_test_dns() -> Dnsmasq {
    Dnsmasq::start(&[
        "--mx-host=a.test,mx.a.test,10".to_string(),
        "--host-record=mx.a.test,127.0.0.2".to_string(),
    ])
}

/// The MX host: our server on 127.0.0.2 with STARTTLS from `cert`/`key`.
async fn mx_server(cert: &Path, key: &Path, faults: &[Fault]) -> Server {
    let mut builder = Server::builder()
        .hostname("mx.a.test")
        .tls(server_tls_config_from_files(cert, key).unwrap());
    for fault in faults {
        builder = builder.fault(fault.clone());
    }
    builder.bind("127.0.0.2:0").await.unwrap()
}

fn direct(server: &Server, client: ClientConfig) -> DirectDelivery {
    DirectDelivery::new(server.local_addr().port(), client)
}

/// Opens a session to a.test's MX host and sends one message over it.
async fn deliver(direct: &DirectDelivery, dns: &Dnsmasq) -> MxSession {
    let mut session = direct
        .connect(&dns.resolver(), "a.test")
        .await
        .expect("an MX session");
    let delivery = session
        .client
        .send_to("s@x.test", &["r@a.test"], b"Subject: t\r\n\r\nhi\r\n")
        .await
        .unwrap();
    assert!(delivery.all_sent(), "{delivery:?}");
    session
}

#[tokio::test]
async fn a_self_signed_mx_gets_mail_over_unverified_tls() {
    let dns = a_test_dns();
    let cert = SelfSigned::generate("mx");
    let server = mx_server(&cert.cert, &cert.key, &[]).await;
    let session = deliver(&direct(&server, ClientConfig::new("outbox.test")), &dns).await;
    assert_eq!(session.client.protection(), Protection::TlsUnverified);
    assert!(session.starttls_failure.is_none());
    let got = server.memory_sink().unwrap().messages();
    assert!(got[0].envelope.tls, "the server saw a TLS session");
    assert_eq!(server.stats().connections_accepted, 1);
}

#[tokio::test]
async fn an_mx_certificate_for_another_name_is_accepted() {
    let dns = a_test_dns();
    // Signed by a CA the client trusts, but for localhost only, not mx.a.test.
    let ca = TestCa::for_names(&["other.test"]);
    let server = mx_server(&ca.server_cert, &ca.server_key, &[]).await;
    let config = ClientConfig::new("outbox.test").with_tls(TlsConfig::with_ca_file(&ca.ca_cert));
    let session = deliver(&direct(&server, config.clone()), &dns).await;
    assert_eq!(session.client.protection(), Protection::TlsUnverified);
    assert!(server.memory_sink().unwrap().messages()[0].envelope.tls);

    // The MTA-STS enforce path, `connect_addr` with STARTTLS required, still verifies the
    // name: the same certificate is refused there.
    let refused = SmtpClient::connect_addr(
        server.local_addr(),
        "mx.a.test",
        Security::RequiredStartTls,
        None,
        &config,
    )
    .await;
    match refused {
        Err(ClientError::Tls { source, .. }) => {
            assert!(
                source.to_string().contains("not valid for name"),
                "{source}"
            )
        }
        other => panic!("expected a TLS error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn connect_addr_verifies_a_certificate_for_the_mx_name() {
    let ca = TestCa::for_names(&["mx.a.test"]);
    let server = mx_server(&ca.server_cert, &ca.server_key, &[]).await;
    let config = ClientConfig::new("outbox.test").with_tls(TlsConfig::with_ca_file(&ca.ca_cert));
    let client = SmtpClient::connect_addr(
        server.local_addr(),
        "mx.a.test",
        Security::RequiredStartTls,
        None,
        &config,
    )
    .await
    .unwrap();
    assert_eq!(client.protection(), Protection::TlsVerified);
}

/// STARTTLS answered 220, then garbage: the handshake fails, and a second connection
/// delivers in plaintext — exactly one retry, and no STARTTLS on it.
#[tokio::test]
async fn a_broken_handshake_is_retried_once_in_plaintext() {
    let dns = a_test_dns();
    let cert = SelfSigned::generate("mx");
    let server = mx_server(&cert.cert, &cert.key, &[Fault::break_tls()]).await;
    let session = deliver(&direct(&server, ClientConfig::new("outbox.test")), &dns).await;
    assert_eq!(session.client.protection(), Protection::Plaintext);
    let failure = session.starttls_failure.as_ref().expect("the TLS failure");
    assert!(matches!(failure, ClientError::Tls { .. }), "{failure}");
    let got = server.memory_sink().unwrap().messages();
    assert!(!got[0].envelope.tls);
    assert_eq!(got[0].envelope.connection, 2);
    assert_eq!(server.stats().connections_accepted, 2);
}

#[tokio::test]
async fn a_refused_or_dropped_starttls_is_retried_once_in_plaintext() {
    let cert = SelfSigned::generate("mx");
    for fault in [
        Fault::reply(Stage::StartTls, 454, "4.7.0 TLS not available"),
        Fault::drop_connection(Stage::StartTls),
    ] {
        let dns = a_test_dns();
        let server = mx_server(&cert.cert, &cert.key, std::slice::from_ref(&fault)).await;
        let session = deliver(&direct(&server, ClientConfig::new("outbox.test")), &dns).await;
        assert_eq!(session.client.protection(), Protection::Plaintext);
        assert!(session.starttls_failure.is_some(), "{fault:?}");
        assert_eq!(server.stats().connections_accepted, 2, "{fault:?}");
        assert!(!server.memory_sink().unwrap().messages()[0].envelope.tls);
    }
}

/// When the plaintext retry fails too, that host is given up (the next MX host would be
/// tried): no third connection.
#[tokio::test]
async fn a_failing_plaintext_retry_is_not_retried_again() {
    let dns = a_test_dns();
    let cert = SelfSigned::generate("mx");
    let faults = [
        Fault::break_tls(),
        // The first greeting passes (a zero stall, used up), the second one is 554.
        Fault::stall(Stage::Connect, Duration::ZERO).times(1),
        Fault::reply(Stage::Connect, 554, "5.3.2 not today"),
    ];
    let server = mx_server(&cert.cert, &cert.key, &faults).await;
    let direct = direct(&server, ClientConfig::new("outbox.test"));
    let error = match direct.connect(&dns.resolver(), "a.test").await {
        Ok(_) => panic!("the retry's 554 greeting must fail the host"),
        Err(error) => error,
    };
    assert!(error.to_string().contains("554"), "{error}");
    assert_eq!(server.stats().connections_accepted, 2);
}

/// Relays stay verified: a relay with a self-signed certificate that is not in `ca_file`
/// is refused, with opportunistic STARTTLS too — no plaintext fallback.
#[tokio::test]
async fn a_self_signed_relay_is_still_refused() {
    let cert = SelfSigned::generate("relay");
    let server = Server::builder()
        .tls(server_tls_config_from_files(&cert.cert, &cert.key).unwrap())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let spec = SmtpSpec::new(addr.ip().to_string(), addr.port());
    assert_eq!(spec.security, Security::OpportunisticStartTls);
    let refused = SmtpClient::connect_with(&spec, &ClientConfig::new("outbox.test")).await;
    assert!(
        matches!(&refused, Err(ClientError::Tls { .. })),
        "{:?}",
        refused.err()
    );
    assert_eq!(server.stats().connections_accepted, 1);
    assert!(server.memory_sink().unwrap().is_empty());
}
