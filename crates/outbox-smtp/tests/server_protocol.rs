//! The server driven over real TCP by a raw line client: the protocol, pipelining,
//! dot-unstuffing, the size limit, AUTH, STARTTLS, line limits, counters and shutdown.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use outbox_smtp::server::{Network, Server, StaticUsers, server_tls_config_from_files};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Generous bound so a broken server fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

/// A line-at-a-time SMTP client that reads whole (multi-line) replies.
struct Raw<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    fn new(stream: S) -> Self {
        Raw {
            io: BufReader::new(stream),
        }
    }

    /// Reads one reply; returns all its lines joined by "\n" (codes included), or "" at EOF.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = timeout(PATIENCE, self.io.read_line(&mut line))
                .await
                .expect("reply in time")
                .expect("read");
            if n == 0 {
                return lines.join("\n");
            }
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn send(&mut self, text: &str) {
        self.io
            .get_mut()
            .write_all(text.as_bytes())
            .await
            .expect("write");
    }

    /// Sends one command line and returns the reply.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    fn into_inner(self) -> S {
        self.io.into_inner()
    }
}

async fn connect(server: &Server) -> Raw<TcpStream> {
    let stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let mut raw = Raw::new(stream);
    let greeting = raw.reply().await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    raw
}

fn code(reply: &str) -> &str {
    &reply[..3.min(reply.len())]
}

#[tokio::test]
async fn one_message_with_dot_unstuffing() {
    let server = Server::builder()
        .hostname("mx.test")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let sink = server.memory_sink().unwrap();
    let mut c = connect(&server).await;
    let ehlo = c.cmd("EHLO client.test").await;
    for keyword in ["PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.contains(keyword), "{keyword} missing from {ehlo}");
    }
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert_eq!(
        code(&c.cmd("MAIL FROM:<a@x.test> BODY=8BITMIME").await),
        "250"
    );
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<c@y.test>").await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    c.send("Subject: hi\r\n\r\n..dot\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    let got = timeout(PATIENCE, sink.wait_for(1)).await.unwrap();
    assert_eq!(got[0].data, b"Subject: hi\r\n\r\n.dot\r\n");
    let env = &got[0].envelope;
    assert_eq!(env.mail_from, "a@x.test");
    assert_eq!(env.rcpt_to, vec!["b@y.test", "c@y.test"]);
    assert_eq!(env.helo, "client.test");
    assert_eq!(env.connection, 1);
    assert!(!env.tls);
    assert_eq!(env.authenticated, None);
}

#[tokio::test]
async fn pipelined_commands_get_replies_in_order() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let sink = server.memory_sink().unwrap();
    let mut c = connect(&server).await;
    // RFC 2920: the whole group in one write, DATA last.
    c.send("EHLO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<one@y.test>\r\nRCPT TO:<bad address>\r\nRCPT TO:<two@y.test>\r\nDATA\r\n").await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(code(&c.reply().await).to_string());
    }
    assert_eq!(codes, ["250", "250", "250", "501", "250", "354"]);
    // Message text, the next transaction and QUIT in one write.
    c.send("first\r\n.\r\nRSET\r\nMAIL FROM:<z@x.test>\r\nRCPT TO:<three@y.test>\r\nDATA\r\n")
        .await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(code(&c.reply().await).to_string());
    }
    assert_eq!(codes, ["250", "250", "250", "250", "354"]);
    c.send("second\r\n.\r\nQUIT\r\n").await;
    assert_eq!(code(&c.reply().await), "250");
    assert_eq!(code(&c.reply().await), "221");
    let got = timeout(PATIENCE, sink.wait_for(2)).await.unwrap();
    assert_eq!(got[0].envelope.mail_from, "");
    assert_eq!(got[0].envelope.rcpt_to, vec!["one@y.test", "two@y.test"]);
    assert_eq!(got[1].data, b"second\r\n");
    assert_eq!(server.stats().transactions_per_connection.get(&1), Some(&2));
}

#[tokio::test]
async fn sequence_errors() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let mut c = connect(&server).await;
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "503");
    assert_eq!(code(&c.cmd("HELO c.test").await), "250");
    assert_eq!(
        code(&c.cmd("MAIL FROM:<a@x.test> SIZE=10").await),
        "555",
        "params need EHLO"
    );
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "503");
    assert_eq!(code(&c.cmd("DATA").await), "503");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "503");
    assert_eq!(code(&c.cmd("DATA").await), "554", "no recipients");
    assert_eq!(code(&c.cmd("XYZZY").await), "500");
    assert_eq!(code(&c.cmd("VRFY someone").await), "252");
    assert_eq!(code(&c.cmd("NOOP").await), "250");
    assert_eq!(code(&c.cmd("AUTH PLAIN").await), "502", "AUTH not offered");
    assert_eq!(
        code(&c.cmd("STARTTLS").await),
        "502",
        "STARTTLS not offered"
    );
}

#[tokio::test]
async fn size_limit_is_advertised_and_enforced_while_streaming() {
    let server = Server::builder()
        .max_size(100)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let sink = server.memory_sink().unwrap();
    let mut c = connect(&server).await;
    assert!(c.cmd("EHLO c.test").await.contains("250-SIZE 100"));
    let refused = c.cmd("MAIL FROM:<a@x.test> SIZE=101").await;
    assert!(refused.starts_with("552 5.3.4"), "{refused}");
    // Without SIZE=, the over-size text is read to its end and refused after it.
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    let line = "x".repeat(78) + "\r\n";
    c.send(&line.repeat(1000)).await;
    c.send(".\r\n").await;
    assert!(c.reply().await.starts_with("552 5.3.4"));
    // The session goes on; a message at the limit passes.
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test> SIZE=100").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    // 80 + 20 octets: exactly the limit.
    c.send(&format!("{line}{}\r\n.\r\n", "y".repeat(18))).await;
    assert_eq!(code(&c.reply().await), "250");
    let got = timeout(PATIENCE, sink.wait_for(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.len(), 100);
}

#[tokio::test]
async fn over_long_lines_are_refused() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let sink = server.memory_sink().unwrap();
    let mut c = connect(&server).await;
    assert_eq!(code(&c.cmd("EHLO c.test").await), "250");
    let long = format!("MAIL FROM:<{}@x.test>", "a".repeat(600));
    assert!(c.cmd(&long).await.starts_with("500 5.5.2"));
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    c.send(&format!("{}\r\n.\r\n", "z".repeat(70 * 1024))).await;
    assert!(c.reply().await.starts_with("500 5.5.2"));
    assert_eq!(code(&c.cmd("NOOP").await), "250");
    assert!(sink.is_empty());
}

fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

#[tokio::test]
async fn auth_is_required_before_mail() {
    let server = Server::builder()
        .authenticator(Arc::new(StaticUsers::new([("app", "s3cret")])))
        .require_auth(Vec::new())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let sink = server.memory_sink().unwrap();
    let mut c = connect(&server).await;
    assert!(c.cmd("EHLO c.test").await.contains("AUTH PLAIN LOGIN"));
    assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("530 5.7.0"));
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain("app", "wrong")))
            .await
            .starts_with("535 5.7.8")
    );
    assert_eq!(code(&c.cmd("AUTH CRAM-MD5").await), "504");
    // PLAIN without an initial response: an empty 334 challenge first.
    assert_eq!(c.cmd("AUTH PLAIN").await, "334", "an empty challenge");
    assert!(
        c.cmd(&plain("app", "s3cret"))
            .await
            .starts_with("235 2.7.0")
    );
    assert_eq!(
        code(&c.cmd("AUTH PLAIN").await),
        "503",
        "already authenticated"
    );
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    c.send("hi\r\n.\r\n").await;
    assert_eq!(code(&c.reply().await), "250");
    let got = timeout(PATIENCE, sink.wait_for(1)).await.unwrap();
    assert_eq!(got[0].envelope.authenticated.as_deref(), Some("app"));

    // LOGIN, and `*` cancels.
    let mut c = connect(&server).await;
    c.cmd("EHLO c.test").await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(code(&c.cmd("*").await), "501");
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&B64.encode("app")).await, "334 UGFzc3dvcmQ6");
    assert!(c.cmd(&B64.encode("s3cret")).await.starts_with("235"));
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
}

#[tokio::test]
async fn trusted_networks_skip_auth() {
    let server = Server::builder()
        .authenticator(Arc::new(StaticUsers::new([("app", "pw")])))
        .require_auth(vec!["127.0.0.0/8".parse::<Network>().unwrap()])
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = connect(&server).await;
    c.cmd("EHLO c.test").await;
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
}

/// A rustls client trusting the test CA.
fn tls_connector(ca: &outbox_testkit::ca::TestCa) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&ca.ca_cert).unwrap();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn starttls_then_auth_only_inside_tls() {
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
    let sink = server.memory_sink().unwrap();
    let mut c = connect(&server).await;
    let ehlo = c.cmd("EHLO c.test").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "AUTH must wait for TLS: {ehlo}");
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain("app", "pw")))
            .await
            .starts_with("538 5.7.11")
    );
    assert!(c.cmd("STARTTLS").await.starts_with("220"));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tls_connector(&ca)
        .connect(name, c.into_inner())
        .await
        .expect("TLS handshake");
    let mut c = Raw::new(stream);
    let ehlo = c.cmd("EHLO c.test").await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain("app", "pw")))
            .await
            .starts_with("235")
    );
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    c.send("secret\r\n.\r\n").await;
    assert_eq!(code(&c.reply().await), "250");
    let got = timeout(PATIENCE, sink.wait_for(1)).await.unwrap();
    assert!(got[0].envelope.tls);
    assert_eq!(got[0].envelope.authenticated.as_deref(), Some("app"));
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let ca = outbox_testkit::ca::TestCa::generate();
    let tls = server_tls_config_from_files(&ca.server_cert, &ca.server_key).unwrap();
    let server = Server::builder()
        .tls(tls)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = connect(&server).await;
    c.cmd("EHLO c.test").await;
    // CVE-2011-0411: plaintext injected after STARTTLS must not run inside TLS.
    c.send("STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n").await;
    assert!(c.reply().await.starts_with("220"));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tls_connector(&ca)
        .connect(name, c.into_inner())
        .await
        .expect("TLS handshake");
    let mut c = Raw::new(stream);
    // Had the MAIL been kept, this EHLO's reply would be preceded by its 503/250.
    assert!(c.cmd("EHLO c.test").await.starts_with("250-"));
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
}

#[tokio::test]
async fn counters_track_connections_and_transactions() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&server).await);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.cmd("EHLO c.test").await;
        for _ in 0..=i {
            c.cmd("MAIL FROM:<a@x.test>").await;
            c.cmd("RCPT TO:<b@y.test>").await;
            c.cmd("DATA").await;
            c.send("m\r\n.\r\n").await;
            assert_eq!(code(&c.reply().await), "250");
        }
    }
    let stats = server.stats();
    assert_eq!(stats.connections_accepted, 3);
    assert_eq!(stats.max_concurrent_connections, 3);
    assert_eq!(stats.max_transactions_per_connection(), 3);
    assert_eq!(stats.messages_delivered(), 6);
    for c in &mut clients {
        c.cmd("QUIT").await;
        assert_eq!(c.reply().await, "", "closed after QUIT");
    }
    let mut late = connect(&server).await;
    late.cmd("QUIT").await;
    let stats = server.stats();
    assert_eq!(stats.connections_accepted, 4);
    assert_eq!(stats.max_concurrent_connections, 3);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_with_421() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let mut c = connect(&server).await;
    c.cmd("EHLO c.test").await;
    let done = tokio::spawn(server.shutdown());
    assert!(c.reply().await.starts_with("421 4.3.2"));
    timeout(PATIENCE, done).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_sink_error_is_the_reply() {
    use outbox_smtp::Reply;
    use outbox_smtp::server::{DeliverFuture, MessageSink, ReceivedEnvelope};
    struct Busy;
    impl MessageSink for Busy {
        fn deliver(&self, _: ReceivedEnvelope, _: Vec<u8>) -> DeliverFuture<'_> {
            Box::pin(async { Err(Reply::new(451, ["4.3.0 store unavailable"])) })
        }
    }
    let server = Server::builder()
        .sink(Arc::new(Busy))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    assert!(server.memory_sink().is_none());
    let mut c = connect(&server).await;
    c.cmd("EHLO c.test").await;
    c.cmd("MAIL FROM:<a@x.test>").await;
    c.cmd("RCPT TO:<b@y.test>").await;
    c.cmd("DATA").await;
    c.send("m\r\n.\r\n").await;
    assert_eq!(c.reply().await, "451 4.3.0 store unavailable");
    assert_eq!(server.stats().messages_delivered(), 0);
}

/// A sink that takes mail for `bounces.test` from anyone (a bounce domain).
struct BounceDomainSink {
    inner: Arc<outbox_smtp::server::MemorySink>,
}

impl outbox_smtp::server::MessageSink for BounceDomainSink {
    fn deliver(
        &self,
        envelope: outbox_smtp::server::ReceivedEnvelope,
        data: Vec<u8>,
    ) -> outbox_smtp::server::DeliverFuture<'_> {
        self.inner.deliver(envelope, data)
    }

    fn has_open_recipients(&self) -> bool {
        true
    }

    fn open_recipient(&self, address: &str) -> bool {
        address.to_ascii_lowercase().ends_with("@bounces.test")
    }
}

/// With a sink that has open recipients, a client without AUTH may start a transaction,
/// but only those recipients are taken: every other one is `530`, the transaction goes
/// on, and an authenticated client is not restricted.
#[tokio::test]
async fn without_auth_only_open_recipients_are_taken() {
    let inner = Arc::new(outbox_smtp::server::MemorySink::new());
    let server = Server::builder()
        .authenticator(Arc::new(StaticUsers::new([("app", "s3cret")])))
        .require_auth(Vec::new())
        .sink(Arc::new(BounceDomainSink {
            inner: inner.clone(),
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = connect(&server).await;
    c.cmd("EHLO mx.reporter.test").await;
    assert_eq!(code(&c.cmd("MAIL FROM:<>").await), "250");
    assert!(
        c.cmd("RCPT TO:<victim@else.test>")
            .await
            .starts_with("530 5.7.0")
    );
    assert!(
        c.cmd("RCPT TO:<x@bounces.test.else.test>")
            .await
            .starts_with("530 5.7.0")
    );
    assert_eq!(
        code(&c.cmd("RCPT TO:<bounces+abc@BOUNCES.test>").await),
        "250"
    );
    assert_eq!(code(&c.cmd("DATA").await), "354");
    c.send("a bounce\r\n.\r\n").await;
    assert_eq!(code(&c.reply().await), "250");
    let got = timeout(PATIENCE, inner.wait_for(1)).await.unwrap();
    assert_eq!(got[0].envelope.rcpt_to, ["bounces+abc@BOUNCES.test"]);
    assert_eq!(got[0].envelope.authenticated, None);
    // Only refused recipients: DATA has nothing to deliver to.
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "530");
    assert_eq!(code(&c.cmd("DATA").await), "554");
    c.cmd("RSET").await;
    // Authenticated: any recipient.
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain("app", "s3cret")))
            .await
            .starts_with("235")
    );
    assert_eq!(code(&c.cmd("MAIL FROM:<a@x.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<b@y.test>").await), "250");
    server.shutdown().await;
}
