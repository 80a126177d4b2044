//! The server against a hostile client, over raw loopback sockets: SMTP smuggling (every
//! bare-LF / bare-CR end-of-data variant), connection caps in all and per client address,
//! the command and error limits, and the throttle on failed AUTH.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use outbox_smtp::Reply;
use outbox_smtp::server::{
    DeliverFuture, MemorySink, MessageSink, Network, ReceivedEnvelope, Server, StaticUsers,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

/// Generous bound so a broken server fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

struct Raw {
    io: BufReader<TcpStream>,
}

impl Raw {
    /// Connects from `from` (an address in 127.0.0.0/8) to the server.
    async fn connect_from(server: SocketAddr, from: &str) -> Raw {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().unwrap())
            .expect("bind client address");
        let stream = timeout(PATIENCE, socket.connect(server))
            .await
            .expect("connect in time")
            .expect("connect");
        Raw {
            io: BufReader::new(stream),
        }
    }

    async fn connect(server: &Server) -> Raw {
        let mut raw = Raw::connect_from(server.local_addr(), "127.0.0.1").await;
        let greeting = raw.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        raw
    }

    /// One (possibly multi-line) reply, lines joined by "\n"; "" at EOF.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            // A reset after the server closed is an end of stream too.
            let n = timeout(PATIENCE, self.io.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap_or_default();
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

    async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.expect("write");
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    async fn login(&mut self) {
        assert!(self.cmd("EHLO c.test").await.starts_with("250"));
        let plain = B64.encode("\0app\0secret");
        let reply = self.cmd(&format!("AUTH PLAIN {plain}")).await;
        assert!(reply.starts_with("235 "), "{reply}");
    }
}

async fn submission_server(sink: Arc<MemorySink>) -> Server {
    Server::builder()
        .hostname("mx.test")
        .authenticator(Arc::new(StaticUsers::new([("app", "secret")])))
        .require_auth(Vec::new())
        .sink(sink)
        .bind("127.0.0.1:0")
        .await
        .expect("bind")
}

/// After AUTH, a message whose text ends with anything but CRLF.CRLF and then carries a
/// second transaction must queue nothing: the server answers 521 and closes.
#[tokio::test]
async fn smuggled_messages_are_never_queued() {
    let sink = Arc::new(MemorySink::new());
    let server = submission_server(sink.clone()).await;
    let variants: [(&str, &[u8]); 6] = [
        ("LF.LF", b"\n.\n"),
        ("CRLF.LF", b"\r\n.\n"),
        ("LF.CRLF", b"\n.\r\n"),
        ("CR.CR", b"\r.\r"),
        ("CRLF.CR", b"\r\n.\r"),
        ("CR.CRLF", b"\r.\r\n"),
    ];
    for (name, end) in variants {
        let mut c = Raw::connect(&server).await;
        c.login().await;
        assert!(c.cmd("MAIL FROM:<app@x.test>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<friend@y.test>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        let mut text = b"Subject: first\r\n\r\nhello".to_vec();
        text.extend_from_slice(end);
        text.extend_from_slice(
            b"MAIL FROM:<admin@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n\
              Subject: smuggled\r\n\r\nevil\r\n.\r\n",
        );
        c.send(&text).await;
        let reply = c.reply().await;
        assert_eq!(
            reply, "521 5.5.2 mx.test Error: bare <LF> received",
            "{name}"
        );
        assert_eq!(c.reply().await, "", "{name}: the connection is closed");
        assert!(sink.is_empty(), "{name}: {:?}", sink.messages());
    }
    // Clean CRLF.CRLF still ends a message, and a pipelined second one is legitimate.
    let mut c = Raw::connect(&server).await;
    c.login().await;
    c.send(b"MAIL FROM:<app@x.test>\r\nRCPT TO:<friend@y.test>\r\nDATA\r\n")
        .await;
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("354"));
    c.send(b"Subject: ok\r\n\r\nfine\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 Ok: queued");
    assert_eq!(sink.len(), 1);
    assert_eq!(sink.messages()[0].data, b"Subject: ok\r\n\r\nfine\r\n");
}

/// A command ending in a bare LF is refused the same way, before it is acted on.
#[tokio::test]
async fn a_command_with_a_bare_lf_is_refused_and_the_connection_closed() {
    let sink = Arc::new(MemorySink::new());
    let server = submission_server(sink.clone()).await;
    let mut c = Raw::connect(&server).await;
    c.login().await;
    c.send(b"MAIL FROM:<app@x.test>\n").await;
    assert_eq!(
        c.reply().await,
        "521 5.5.2 mx.test Error: bare <LF> received"
    );
    assert_eq!(c.reply().await, "");
    let mut c = Raw::connect(&server).await;
    c.send(b"NOOP\rRSET\r\n").await;
    assert_eq!(
        c.reply().await,
        "521 5.5.2 mx.test Error: bare <LF> received"
    );
    // An AUTH response line is a line of the same stream: the same answer, and the end.
    let mut c = Raw::connect(&server).await;
    assert!(c.cmd("EHLO c.test").await.starts_with("250"));
    assert!(c.cmd("AUTH LOGIN").await.starts_with("334 "));
    c.send(b"YXBw\nMAIL FROM:<app@x.test>\r\n").await;
    assert_eq!(
        c.reply().await,
        "521 5.5.2 mx.test Error: bare <LF> received"
    );
    assert_eq!(c.reply().await, "");
}

/// 300 idle connections from 127.0.0.2 take only their per-client share: the rest are
/// answered 421 and closed at once, and a client at 127.0.0.1 is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_does_not_lock_out_another() {
    let sink = Arc::new(MemorySink::new());
    let server = Server::builder()
        .hostname("mx.test")
        .max_connections(50)
        .max_connections_per_client(5)
        .sink(sink.clone())
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = server.local_addr();
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let mut c = Raw::connect_from(address, "127.0.0.2").await;
        let greeting = c.reply().await;
        if greeting.starts_with("220 ") {
            idle.push(c);
        } else {
            assert_eq!(
                greeting,
                "421 4.7.0 mx.test Error: too many connections from 127.0.0.2"
            );
            assert_eq!(c.reply().await, "", "closed at once");
            refused += 1;
        }
    }
    assert_eq!((idle.len(), refused), (5, 295));
    let stats = server.stats();
    assert_eq!(stats.connections_open, 5);
    assert_eq!(stats.connections_refused, 295);

    let mut c = Raw::connect(&server).await;
    assert!(c.cmd("EHLO c.test").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@y.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: through\r\n\r\nserved\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 Ok: queued");

    // A place freed by a closing connection is free again.
    drop(c);
    drop(idle.pop());
    tokio::time::timeout(PATIENCE, async {
        while server.stats().connections_open > 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed connections are noticed");
    let mut again = Raw::connect_from(address, "127.0.0.2").await;
    let greeting = again.reply().await;
    assert!(greeting.starts_with("220 "), "{greeting}");
}

#[tokio::test]
async fn connections_over_max_connections_get_421() {
    let server = Server::builder()
        .hostname("mx.test")
        .max_connections(2)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let _a = Raw::connect(&server).await;
    let _b = Raw::connect_from(server.local_addr(), "127.0.0.3").await;
    let mut c = Raw::connect_from(server.local_addr(), "127.0.0.4").await;
    assert_eq!(
        c.reply().await,
        "421 4.7.0 mx.test Error: too many connections"
    );
    assert_eq!(c.reply().await, "");
}

#[tokio::test]
async fn too_many_errors_or_commands_close_the_session() {
    let server = Server::builder()
        .hostname("mx.test")
        .max_errors(3)
        .max_commands(6)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut c = Raw::connect(&server).await;
    assert!(c.cmd("BOGUS").await.starts_with("500"));
    assert!(c.cmd("RCPT TO:<a@b.test>").await.starts_with("503"));
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Need MAIL command first");
    assert_eq!(c.reply().await, "421 4.7.0 mx.test Error: too many errors");
    assert_eq!(c.reply().await, "");

    let mut c = Raw::connect(&server).await;
    for _ in 0..6 {
        assert!(c.cmd("NOOP").await.starts_with("250"));
    }
    assert_eq!(
        c.cmd("NOOP").await,
        "421 4.7.0 mx.test Error: too many commands"
    );
    assert_eq!(c.reply().await, "");

    // An accepted message starts the count again: a client may send many messages.
    let mut c = Raw::connect(&server).await;
    for round in 0..3 {
        assert!(c.cmd("HELO c.test").await.starts_with("250"), "{round}");
        assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<b@y.test>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.send(b"x\r\n.\r\n").await;
        assert_eq!(c.reply().await, "250 2.0.0 Ok: queued");
    }
}

/// Too many recipients are refused one by one with 452 and the transaction goes on; those
/// replies do not count as errors.
#[tokio::test]
async fn recipients_over_the_limit_get_452_and_do_not_count_as_errors() {
    let server = Server::builder()
        .max_recipients(2)
        .max_errors(2)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sink = server.memory_sink().unwrap();
    let mut c = Raw::connect(&server).await;
    assert!(c.cmd("EHLO c.test").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
    for (i, expected) in ["250", "250", "452", "452", "452"].iter().enumerate() {
        let reply = c.cmd(&format!("RCPT TO:<r{i}@y.test>")).await;
        assert!(reply.starts_with(expected), "{i}: {reply}");
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"x\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 Ok: queued");
    assert_eq!(
        sink.messages()[0].envelope.rcpt_to,
        ["r0@y.test", "r1@y.test"]
    );
}

/// Failed AUTH: at most `max_auth_failures` per connection, and an address with too many
/// failures is refused at connect for the window; another address is not affected.
#[tokio::test]
async fn failed_auth_is_throttled_per_connection_and_per_address() {
    let server = Server::builder()
        .hostname("mx.test")
        .authenticator(Arc::new(StaticUsers::new([("app", "secret")])))
        .require_auth(Vec::new())
        .max_auth_failures(2)
        .auth_failures_per_client(3, Duration::from_secs(600))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = server.local_addr();
    let wrong = format!("AUTH PLAIN {}", B64.encode("\0app\0guess"));

    let mut c = Raw::connect_from(address, "127.0.0.2").await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO c.test").await.starts_with("250"));
    assert!(c.cmd(&wrong).await.starts_with("535 5.7.8"));
    assert_eq!(
        c.cmd(&wrong).await,
        "421 4.7.0 mx.test Error: too many failed authentication attempts"
    );
    assert_eq!(c.reply().await, "");

    // The third failure from the address blocks it (AUTH LOGIN counts the same).
    let mut c = Raw::connect_from(address, "127.0.0.2").await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO c.test").await.starts_with("250"));
    assert!(c.cmd("AUTH LOGIN").await.starts_with("334"));
    assert!(c.cmd(&B64.encode("app")).await.starts_with("334"));
    assert_eq!(
        c.cmd(&B64.encode("guess")).await,
        "421 4.7.0 mx.test Error: too many failed authentication attempts"
    );
    let mut c = Raw::connect_from(address, "127.0.0.2").await;
    assert_eq!(
        c.reply().await,
        "421 4.7.0 mx.test Error: too many failed authentication attempts, try again later"
    );
    assert_eq!(c.reply().await, "");

    // Another address is served, and the right password works there.
    let mut c = Raw::connect(&server).await;
    c.login().await;
}

/// The sink's address checks run at MAIL and RCPT time: a refused recipient is refused
/// alone and the transaction goes on with the others.
#[tokio::test]
async fn address_checks_refuse_one_recipient_and_keep_the_transaction() {
    struct Checking(MemorySink);
    impl MessageSink for Checking {
        fn deliver(&self, envelope: ReceivedEnvelope, data: Vec<u8>) -> DeliverFuture<'_> {
            Box::pin(async move {
                self.0.deliver(envelope, data).await?;
                Ok(Some("01ID".to_string()))
            })
        }
        fn check_sender(&self, address: &str) -> Result<(), Reply> {
            if address.contains('@') || address.is_empty() {
                Ok(())
            } else {
                Err(Reply::new(553, ["5.1.7 unqualified"]))
            }
        }
        fn check_recipient(&self, address: &str) -> Result<(), Reply> {
            if address.contains("@@") {
                Err(Reply::new(501, ["5.1.3 bad"]))
            } else {
                Ok(())
            }
        }
    }
    let sink = Arc::new(Checking(MemorySink::new()));
    let server = Server::builder()
        .sink(sink.clone())
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut c = Raw::connect(&server).await;
    assert!(c.cmd("EHLO c.test").await.starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<root>").await, "553 5.1.7 unqualified");
    assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<bad@@x>").await, "501 5.1.3 bad");
    assert!(c.cmd("RCPT TO:<good@y.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"x\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 Ok: queued as 01ID");
    assert_eq!(sink.0.messages()[0].envelope.rcpt_to, ["good@y.test"]);
}

/// Trusted networks skip AUTH but nothing else: the same limits apply.
#[tokio::test]
async fn trusted_clients_are_limited_too() {
    let server = Server::builder()
        .hostname("mx.test")
        .require_auth(vec!["127.0.0.0/8".parse::<Network>().unwrap()])
        .max_connections_per_client(1)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let _first = Raw::connect(&server).await;
    let mut second = Raw::connect_from(server.local_addr(), "127.0.0.1").await;
    assert_eq!(
        second.reply().await,
        "421 4.7.0 mx.test Error: too many connections from 127.0.0.1"
    );
}

/// A trusted client that fails AUTH too often (a cron job with a stale password) keeps its
/// AUTH blocked, but is not refused at connect: it and every other program on the trusted
/// network can still submit without AUTH. An untrusted address is refused at connect.
#[tokio::test]
async fn auth_failures_from_a_trusted_network_do_not_lock_out_submission() {
    let sink = Arc::new(MemorySink::new());
    let server = Server::builder()
        .hostname("mx.test")
        .authenticator(Arc::new(StaticUsers::new([("app", "secret")])))
        .require_auth(vec!["127.0.0.2/32".parse::<Network>().unwrap()])
        .auth_failures_per_client(2, Duration::from_secs(600))
        .sink(sink.clone())
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = server.local_addr();
    let wrong = format!("AUTH PLAIN {}", B64.encode("\0app\0stale"));
    let blocked = "421 4.7.0 mx.test Error: too many failed authentication attempts";
    for from in ["127.0.0.2", "127.0.0.3"] {
        let mut c = Raw::connect_from(address, from).await;
        assert!(c.reply().await.starts_with("220 "));
        assert!(c.cmd("EHLO c.test").await.starts_with("250"));
        assert!(c.cmd(&wrong).await.starts_with("535 5.7.8"));
        assert_eq!(c.cmd(&wrong).await, blocked, "from {from}");
    }

    // The trusted address is still served and submits without AUTH.
    let mut c = Raw::connect_from(address, "127.0.0.2").await;
    assert!(c.reply().await.starts_with("220 "), "trusted: not refused");
    assert!(c.cmd("EHLO c.test").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<cron@x.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<root@y.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    assert!(
        c.cmd("Subject: cron\r\n\r\nok\r\n.")
            .await
            .starts_with("250")
    );
    // Its AUTH stays throttled, even with the right password.
    let right = format!("AUTH PLAIN {}", B64.encode("\0app\0secret"));
    assert_eq!(
        c.cmd(&right).await,
        "421 4.7.0 mx.test Error: too many failed authentication attempts, try again later"
    );
    assert_eq!(sink.messages().len(), 1);

    // The untrusted address is refused at connect.
    let mut c = Raw::connect_from(address, "127.0.0.3").await;
    assert_eq!(
        c.reply().await,
        "421 4.7.0 mx.test Error: too many failed authentication attempts, try again later"
    );
}
