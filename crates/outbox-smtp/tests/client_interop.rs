//! The client against real servers nobody here wrote, started by each test on loopback:
//! Postfix's smtp-sink (plain, pipelined, HELO-only, rejecting) and aiosmtpd (AUTH, STARTTLS,
//! implicit TLS, a throwaway CA).

use outbox_smtp::{ClientConfig, ClientError, ServerSpec, SmtpClient, SmtpSpec, TlsConfig};
use outbox_testkit::ca::TestCa;
use outbox_testkit::peers::{AiosmtpdOptions, aiosmtpd, dump_dir, dumped_messages, smtp_sink};

fn spec(text: &str) -> SmtpSpec {
    match ServerSpec::parse(text).unwrap() {
        ServerSpec::Smtp(spec) => spec,
        other => panic!("not an SMTP spec: {other}"),
    }
}

fn config() -> ClientConfig {
    ClientConfig::new("client.outbox.test")
}

fn trusting(ca: &TestCa) -> ClientConfig {
    config().with_tls(TlsConfig::with_ca_file(&ca.ca_cert))
}

const MESSAGE: &[u8] = b"From: a@x.test\nTo: b@y.test\nSubject: interop\n\n.dot line\nbody\r\n";
const ON_THE_WIRE: &str =
    "From: a@x.test\r\nTo: b@y.test\r\nSubject: interop\r\n\r\n.dot line\r\nbody\r\n";

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn smtp_sink_receives_exact_bytes_pipelined_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let dumps = dump_dir(dir.path());
    let template = format!("{}/%M.", dumps.display());
    let sink = smtp_sink(&["-d", &template]);
    let mut client =
        SmtpClient::connect_with(&spec(&format!("127.0.0.1:{}", sink.port)), &config())
            .await
            .unwrap();
    assert!(client.capabilities().pipelining);
    assert!(!client.is_tls());
    for i in 0..5 {
        let rcpts = [format!("b{i}@y.test"), format!("c{i}@y.test")];
        let delivery = client.send_to("a@x.test", &rcpts, MESSAGE).await.unwrap();
        assert!(delivery.all_sent(), "{delivery:?}");
    }
    assert_eq!(client.quit().await.unwrap().unwrap().code, 221);
    let messages = dumped_messages(&dumps);
    assert_eq!(messages.len(), 5);
    // smtp-sink un-stuffs the dots and stores lines with LF: the text arrives as meant.
    let stored = ON_THE_WIRE.replace("\r\n", "\n");
    for message in &messages {
        assert!(
            contains(message, &stored),
            "{}",
            String::from_utf8_lossy(message)
        );
        assert!(contains(message, "a@x.test"));
    }
}

#[tokio::test]
async fn smtp_sink_without_esmtp_gets_helo_and_lockstep() {
    let sink = smtp_sink(&["-e"]);
    let mut client =
        SmtpClient::connect_with(&spec(&format!("smtp://127.0.0.1:{}", sink.port)), &config())
            .await
            .unwrap();
    assert!(!client.capabilities().pipelining);
    let delivery = client
        .send_to("a@x.test", &["b@y.test"], MESSAGE)
        .await
        .unwrap();
    assert!(delivery.all_sent());
    client.quit().await.unwrap();
}

#[tokio::test]
async fn smtp_sink_rejecting_every_rcpt_gets_no_data() {
    let sink = smtp_sink(&["-f", "RCPT"]);
    let mut client =
        SmtpClient::connect_with(&spec(&format!("127.0.0.1:{}", sink.port)), &config())
            .await
            .unwrap();
    let delivery = client
        .send_to("a@x.test", &["b@y.test", "c@y.test"], MESSAGE)
        .await
        .unwrap();
    assert_eq!(delivery.data, None);
    assert_eq!(delivery.accepted(), 0);
    assert!(
        delivery
            .recipients
            .iter()
            .all(|r| r.outcome.reply().code / 100 == 5)
    );
    client.quit().await.unwrap();
}

#[tokio::test]
async fn refused_connection_is_a_clear_transient_error() {
    let port = outbox_testkit::free_tcp_port();
    let err = SmtpClient::connect_with(&spec(&format!("127.0.0.1:{port}")), &config())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(err.is_transient());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn aiosmtpd_starttls_required_then_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate();
    let server = aiosmtpd(AiosmtpdOptions {
        out: Some(dir.path()),
        user: Some(("alice", "s3cret pass")),
        tls: Some(&ca),
        implicit_tls: false,
    });
    let text = format!(
        "smtp://alice:s3cret%20pass@127.0.0.1:{}?starttls=required",
        server.port
    );
    let mut client = SmtpClient::connect_with(&spec(&text), &trusting(&ca))
        .await
        .unwrap();
    assert!(client.is_tls());
    let delivery = client
        .send_to("a@x.test", &["b@y.test"], MESSAGE)
        .await
        .unwrap();
    assert!(delivery.all_sent(), "{delivery:?}");
    client.quit().await.unwrap();
    let messages = dumped_messages(dir.path());
    assert_eq!(messages.len(), 1);
    assert!(contains(&messages[0], "X-Envelope-To: b@y.test"));
    assert!(
        contains(&messages[0], ON_THE_WIRE),
        "{}",
        String::from_utf8_lossy(&messages[0])
    );
}

#[tokio::test]
async fn aiosmtpd_opportunistic_starttls_is_taken_when_offered() {
    let ca = TestCa::generate();
    let server = aiosmtpd(AiosmtpdOptions {
        tls: Some(&ca),
        ..AiosmtpdOptions::default()
    });
    let mut client =
        SmtpClient::connect_with(&spec(&format!("localhost:{}", server.port)), &trusting(&ca))
            .await
            .unwrap();
    assert!(client.is_tls());
    assert!(
        client
            .send_to("a@x.test", &["b@y.test"], MESSAGE)
            .await
            .unwrap()
            .all_sent()
    );
    client.quit().await.unwrap();
}

#[tokio::test]
async fn aiosmtpd_implicit_tls_with_auth() {
    let ca = TestCa::generate();
    let server = aiosmtpd(AiosmtpdOptions {
        user: Some(("alice", "pw")),
        tls: Some(&ca),
        implicit_tls: true,
        ..AiosmtpdOptions::default()
    });
    let text = format!("smtps://alice:pw@127.0.0.1:{}", server.port);
    let mut client = SmtpClient::connect_with(&spec(&text), &trusting(&ca))
        .await
        .unwrap();
    assert!(client.is_tls());
    assert!(
        client
            .send_to("a@x.test", &["b@y.test"], MESSAGE)
            .await
            .unwrap()
            .all_sent()
    );
    client.quit().await.unwrap();
}

#[tokio::test]
async fn untrusted_certificate_is_a_clear_error() {
    let ca = TestCa::generate();
    let server = aiosmtpd(AiosmtpdOptions {
        tls: Some(&ca),
        implicit_tls: true,
        ..AiosmtpdOptions::default()
    });
    // Only the webpki roots: the test CA is unknown.
    let err = SmtpClient::connect_with(
        &spec(&format!("smtps://127.0.0.1:{}", server.port)),
        &config(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_password_is_a_permanent_auth_error() {
    let ca = TestCa::generate();
    let server = aiosmtpd(AiosmtpdOptions {
        user: Some(("alice", "right")),
        tls: Some(&ca),
        ..AiosmtpdOptions::default()
    });
    let text = format!("smtp://alice:wrong@127.0.0.1:{}", server.port);
    let err = SmtpClient::connect_with(&spec(&text), &trusting(&ca))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::AuthRejected { .. }), "{err}");
    assert!(err.is_permanent(), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[tokio::test]
async fn credentials_stay_off_plaintext_unless_starttls_is_off() {
    let server = aiosmtpd(AiosmtpdOptions {
        user: Some(("alice", "pw")),
        ..AiosmtpdOptions::default()
    });
    let text = format!("smtp://alice:pw@127.0.0.1:{}", server.port);
    let err = SmtpClient::connect_with(&spec(&text), &config())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::AuthWithoutTls { .. }), "{err}");
    assert!(err.to_string().contains("starttls=off"), "{err}");

    let required = format!("smtp://127.0.0.1:{}?starttls=required", server.port);
    let err = SmtpClient::connect_with(&spec(&required), &config())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::StartTlsUnavailable { .. }),
        "{err}"
    );

    let explicit = format!("smtp://alice:pw@127.0.0.1:{}?starttls=off", server.port);
    let mut client = SmtpClient::connect_with(&spec(&explicit), &config())
        .await
        .unwrap();
    assert!(
        client
            .send_to("a@x.test", &["b@y.test"], MESSAGE)
            .await
            .unwrap()
            .all_sent()
    );
    client.quit().await.unwrap();
}
