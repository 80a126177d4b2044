//! A relay's certificate pinned by its SHA-256 fingerprint (`?tls_fingerprint=`): a
//! self-signed relay is trusted by its pin alone, a wrong pin is refused with both
//! fingerprints in the error, and a pin makes STARTTLS required. The fingerprint is
//! computed by openssl, as an operator would.

use std::path::Path;
use std::process::Command;

use outbox_smtp::server::{Server, server_tls_config_from_files};
use outbox_smtp::{ClientConfig, ClientError, Fingerprint, Protection, ServerSpec, SmtpClient};
use outbox_testkit::ca::SelfSigned;

/// `openssl x509 -noout -fingerprint -sha256`: `sha256 Fingerprint=AB:CD:...`.
fn openssl_fingerprint(cert: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let (_, hex) = text.trim().split_once('=').expect("Fingerprint=...");
    hex.to_string()
}

async fn relay(cert: &SelfSigned) -> Server {
    Server::builder()
        .tls(server_tls_config_from_files(&cert.cert, &cert.key).unwrap())
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn spec(text: &str) -> outbox_smtp::SmtpSpec {
    match ServerSpec::parse(text).unwrap() {
        ServerSpec::Smtp(spec) => spec,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_self_signed_relay_pinned_by_its_fingerprint_delivers() {
    let cert = SelfSigned::generate("relay");
    let server = relay(&cert).await;
    let pin = openssl_fingerprint(&cert.cert);
    // openssl's colon form as it is, and plain lower-case hex.
    for written in [pin.clone(), pin.replace(':', "").to_lowercase()] {
        let spec = spec(&format!(
            "smtp://{}?tls_fingerprint=sha256:{written}",
            server.local_addr()
        ));
        let mut client = SmtpClient::connect_with(&spec, &ClientConfig::new("outbox.test"))
            .await
            .unwrap();
        assert_eq!(client.protection(), Protection::TlsPinned);
        let delivery = client
            .send_to("s@x.test", &["r@y.test"], b"Subject: t\r\n\r\nhi\r\n")
            .await
            .unwrap();
        assert!(delivery.all_sent(), "{delivery:?}");
        client.quit().await.unwrap();
    }
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m.envelope.tls));
}

#[tokio::test]
async fn a_wrong_pin_is_refused_showing_the_servers_fingerprint() {
    let cert = SelfSigned::generate("relay");
    let other = SelfSigned::generate("other");
    let server = relay(&cert).await;
    let wrong = openssl_fingerprint(&other.cert);
    let spec = spec(&format!(
        "smtp://{}?tls_fingerprint=sha256:{wrong}",
        server.local_addr()
    ));
    let error = SmtpClient::connect_with(&spec, &ClientConfig::new("outbox.test"))
        .await
        .expect_err("a wrong pin must be refused");
    let actual = format!("sha256:{}", openssl_fingerprint(&cert.cert));
    match &error {
        ClientError::FingerprintMismatch {
            expected,
            actual: presented,
            ..
        } => {
            assert_eq!(expected.to_string(), format!("sha256:{wrong}"));
            assert_eq!(*presented, Fingerprint::parse(&actual).unwrap());
        }
        other => panic!("expected a fingerprint mismatch, got {other}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("does not match the pinned tls_fingerprint"),
        "{text}"
    );
    assert!(text.contains(&actual), "{text}");
    assert!(
        error.is_transient(),
        "the operator may fix the pin or the certificate"
    );
    assert!(server.memory_sink().unwrap().is_empty());
}

/// With a pin, a server that offers no STARTTLS is refused instead of getting the mail in
/// plaintext.
#[tokio::test]
async fn a_pin_requires_starttls() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let pin = format!("sha256:{}", "ab".repeat(32));
    let spec = spec(&format!(
        "smtp://{}?tls_fingerprint={pin}",
        server.local_addr()
    ));
    let error = SmtpClient::connect_with(&spec, &ClientConfig::new("outbox.test"))
        .await
        .expect_err("no STARTTLS, no delivery");
    assert!(
        matches!(error, ClientError::StartTlsUnavailable { .. }),
        "{error}"
    );
}
