//! Our client against our server over TCP: pipelined transactions on one connection,
//! per-recipient outcomes under injected faults, STARTTLS + AUTH with the test CA, and the
//! counters a delivery engine's tests rely on.

use std::sync::Arc;

use outbox_smtp::server::{Fault, Server, Stage, StaticUsers, server_tls_config_from_files};
use outbox_smtp::{
    ClientConfig, ClientError, Credentials, Envelope, RecipientOutcome, Security, SmtpClient,
    SmtpSpec, SpecError, TlsConfig,
};

fn spec(server: &Server) -> SmtpSpec {
    let addr = server.local_addr();
    SmtpSpec::new(addr.ip().to_string(), addr.port())
}

#[tokio::test]
async fn many_transactions_on_one_connection() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let mut client = SmtpClient::connect_with(&spec(&server), &ClientConfig::new("client.test"))
        .await
        .unwrap();
    assert!(client.capabilities().pipelining);
    for i in 0..100 {
        let body = format!("Subject: {i}\r\n\r\n.line {i}\r\n");
        let delivery = client
            .send_to("s@x.test", &["a@y.test", "b@y.test"], body.as_bytes())
            .await
            .unwrap();
        assert!(delivery.all_sent(), "{delivery:?}");
    }
    client.quit().await.unwrap();
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got.len(), 100);
    assert_eq!(got[7].data, b"Subject: 7\r\n\r\n.line 7\r\n");
    let stats = server.stats();
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.max_transactions_per_connection(), 100);
}

/// The three lines of the crate documentation: a URL with credentials, an envelope, a send.
#[tokio::test]
async fn connect_by_url_and_send_an_envelope() {
    let server = Server::builder()
        .authenticator(Arc::new(StaticUsers::new([("app", "p@ss word")])))
        .require_auth(Vec::new())
        .fault(Fault::reply(Stage::Rcpt, 550, "5.1.1 unknown").for_recipient("gone@y.test"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!(
        "smtp://app:p%40ss%20word@{}?starttls=off",
        server.local_addr()
    );
    let mut client = SmtpClient::connect(&url).await.unwrap();
    let envelope = Envelope::new("s@x.test", ["a@y.test", "gone@y.test"]);
    let report = client
        .send(&envelope, b"Subject: url\r\n\r\nbody\r\n")
        .await
        .unwrap();
    let outcomes = report.outcomes();
    assert!(
        matches!(outcomes[0], ("a@y.test", RecipientOutcome::Sent(_))),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], ("gone@y.test", RecipientOutcome::Permanent(reply)) if reply.code == 550),
        "{outcomes:?}"
    );
    client.quit().await.unwrap();
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.mail_from, "s@x.test");
    assert_eq!(got[0].envelope.rcpt_to, ["a@y.test"]);
    assert_eq!(got[0].envelope.authenticated.as_deref(), Some("app"));
}

/// A URL that names no SMTP server is one clear error, before any connection.
#[tokio::test]
async fn connect_refuses_urls_that_are_not_smtp_servers() {
    for (url, expected) in [
        (
            "program:/usr/sbin/sendmail -i",
            "names a program, not an SMTP server",
        ),
        ("smtp://relay.test:notaport", "invalid port"),
        ("http://relay.test", "unknown server spec scheme \"http\""),
        ("", "empty"),
    ] {
        let error = SmtpClient::connect(url).await.unwrap_err();
        assert!(matches!(error, ClientError::Url(_)), "{url}: {error:?}");
        assert!(error.is_permanent(), "{url}");
        let text = error.to_string();
        assert!(text.contains(expected), "{url}: {text}");
    }
    assert!(matches!(
        SmtpClient::connect("program:/bin/true").await.unwrap_err(),
        ClientError::Url(SpecError::NotSmtp)
    ));
}

#[tokio::test]
async fn per_recipient_outcomes_under_faults() {
    let server = Server::builder()
        .fault(
            Fault::reply(Stage::Rcpt, 451, "4.3.0 later")
                .for_recipient("soft@y.test")
                .times(1),
        )
        .fault(Fault::reply(Stage::Rcpt, 550, "5.1.1 unknown").for_recipient("hard@y.test"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut client = SmtpClient::connect_with(&spec(&server), &ClientConfig::new("client.test"))
        .await
        .unwrap();
    let rcpts = ["ok@y.test", "soft@y.test", "hard@y.test"];
    let delivery = client.send_to("s@x.test", &rcpts, b"x\r\n").await.unwrap();
    let outcomes = delivery.outcomes();
    assert!(matches!(outcomes[0].1, RecipientOutcome::Sent(_)));
    assert!(matches!(&outcomes[1].1, RecipientOutcome::Transient(r) if r.code == 451));
    assert!(matches!(&outcomes[2].1, RecipientOutcome::Permanent(r) if r.code == 550));
    // The 451 was used up: the retry goes through.
    let retry = client
        .send_to("s@x.test", &["soft@y.test"], b"x\r\n")
        .await
        .unwrap();
    assert!(retry.all_sent());
    assert_eq!(server.memory_sink().unwrap().len(), 2);
}

#[tokio::test]
async fn a_mail_refusal_and_a_dropped_connection_are_errors() {
    let server = Server::builder()
        .fault(Fault::reply(Stage::Mail, 553, "5.7.1 sender refused").for_sender("bad@x.test"))
        .fault(Fault::drop_mid_data(10).for_recipient("drop@y.test"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut client = SmtpClient::connect_with(&spec(&server), &ClientConfig::new("client.test"))
        .await
        .unwrap();
    let refused = client
        .send_to("bad@x.test", &["a@y.test"], b"x\r\n")
        .await
        .unwrap_err();
    assert!(refused.is_permanent(), "{refused}");
    let dropped = client
        .send_to(
            "s@x.test",
            &["drop@y.test"],
            "long enough text\r\n".repeat(10).as_bytes(),
        )
        .await
        .unwrap_err();
    assert!(dropped.is_transient(), "{dropped}");
    assert!(server.memory_sink().unwrap().is_empty());
}

#[tokio::test]
async fn starttls_and_auth_with_the_test_ca() {
    let ca = outbox_testkit::ca::TestCa::generate();
    let tls = server_tls_config_from_files(&ca.server_cert, &ca.server_key).unwrap();
    let server = Server::builder()
        .tls(tls)
        .authenticator(Arc::new(StaticUsers::new([("app", "pw")])))
        .auth_requires_tls(true)
        .require_auth(Vec::new())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let config = ClientConfig::new("client.test").with_tls(TlsConfig::with_ca_file(&ca.ca_cert));
    let mut good = spec(&server);
    good.security = Security::RequiredStartTls;
    good.credentials = Some(Credentials::new("app", "pw"));
    let mut client = SmtpClient::connect_with(&good, &config).await.unwrap();
    assert!(client.is_tls());
    assert!(
        client
            .send_to("s@x.test", &["a@y.test"], b"x\r\n")
            .await
            .unwrap()
            .all_sent()
    );
    client.quit().await.unwrap();
    let got = server.memory_sink().unwrap().messages();
    assert!(got[0].envelope.tls);
    assert_eq!(got[0].envelope.authenticated.as_deref(), Some("app"));

    let mut wrong = good.clone();
    wrong.credentials = Some(Credentials::new("app", "nope"));
    let error = SmtpClient::connect_with(&wrong, &config)
        .await
        .expect_err("login must fail");
    assert!(
        matches!(&error, ClientError::AuthRejected { reply, .. } if reply.code == 535),
        "{error}"
    );

    // Without the test CA the certificate is not trusted.
    let untrusted = SmtpClient::connect_with(&good, &ClientConfig::new("client.test")).await;
    assert!(
        matches!(untrusted, Err(ClientError::Tls { .. })),
        "{:?}",
        untrusted.err()
    );
}

/// A relay with the usual self-signed certificate (`openssl req -x509`, its own issuer) is
/// trusted when that very certificate is put in `[tls] ca_file` — webpki alone refuses it
/// as "CaUsedAsEndEntity". Another self-signed certificate in the file is not enough.
#[tokio::test]
async fn a_self_signed_relay_is_trusted_through_its_own_certificate_in_ca_file() {
    let relay = outbox_testkit::ca::SelfSigned::generate("relay");
    let tls = server_tls_config_from_files(&relay.cert, &relay.key).unwrap();
    let server = Server::builder()
        .tls(tls)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut required = spec(&server);
    required.security = Security::RequiredStartTls;

    let trusting = ClientConfig::new("client.test").with_tls(TlsConfig::with_ca_file(&relay.cert));
    let mut client = SmtpClient::connect_with(&required, &trusting)
        .await
        .unwrap();
    assert!(client.is_tls());
    assert!(
        client
            .send_to("s@x.test", &["a@y.test"], b"x\r\n")
            .await
            .unwrap()
            .all_sent()
    );
    client.quit().await.unwrap();

    for config in [
        ClientConfig::new("client.test"),
        ClientConfig::new("client.test").with_tls(TlsConfig::with_ca_file(
            &outbox_testkit::ca::SelfSigned::generate("other").cert,
        )),
    ] {
        let refused = SmtpClient::connect_with(&required, &config).await;
        assert!(
            matches!(&refused, Err(ClientError::Tls { .. })),
            "{:?}",
            refused.err()
        );
    }
}
