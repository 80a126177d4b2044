//! The client driven through `tokio::io::duplex` against a scripted peer: exact wire order,
//! pipelining, per-recipient outcomes, HELO fallback, AUTH, and timeouts on paused time (no
//! real waiting).

use std::time::Duration;

use outbox_smtp::{
    ClientConfig, ClientError, Credentials, Mechanism, RcptOutcome, RecipientOutcome, SmtpClient,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;

/// One step of the peer's script.
enum Step {
    /// Send these bytes (replies, CRLF included).
    Send(&'static str),
    /// Read one line and check it (without CRLF).
    Expect(&'static str),
    /// Read message data up to and including `.\r\n` and check it byte for byte.
    Data(&'static [u8]),
    /// Hang up.
    Close,
    /// Never answer again (keep the stream open).
    Stall,
}
use Step::*;

/// Runs `script` on the server side of a duplex pipe; returns the client side and the peer's
/// task, which panics on any deviation from the script.
fn peer(script: Vec<Step>) -> (DuplexStream, JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let mut io = BufReader::new(server);
        for (i, step) in script.into_iter().enumerate() {
            match step {
                Send(text) => io.get_mut().write_all(text.as_bytes()).await.unwrap(),
                Expect(want) => {
                    let mut line = String::new();
                    io.read_line(&mut line).await.unwrap();
                    assert_eq!(
                        line.strip_suffix("\r\n"),
                        Some(want),
                        "step {i}: got {line:?}"
                    );
                }
                Data(want) => {
                    let mut data = Vec::new();
                    while !data.ends_with(b"\r\n.\r\n") && data != b".\r\n" {
                        let n = io.read_until(b'\n', &mut data).await.unwrap();
                        assert!(n > 0, "step {i}: client closed during data");
                    }
                    assert_eq!(
                        String::from_utf8_lossy(&data),
                        String::from_utf8_lossy(want),
                        "step {i}"
                    );
                }
                Close => return,
                Stall => {
                    std::future::pending::<()>().await;
                }
            }
        }
        // The script is over: the client must not send anything more.
        let mut rest = String::new();
        io.read_line(&mut rest).await.unwrap();
        assert_eq!(rest, "", "client sent more than the script expected");
    });
    (client, task)
}

const GREETING: &str = "220 mx.test ESMTP\r\n";
const EHLO_PIPELINING: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";

fn config() -> ClientConfig {
    ClientConfig::new("client.test")
}

async fn opened(stream: DuplexStream) -> SmtpClient<DuplexStream> {
    let mut client = SmtpClient::with_stream(stream, "mx.test", config());
    client.read_greeting().await.unwrap();
    client.ehlo().await.unwrap();
    client
}

#[tokio::test]
async fn pipelined_transaction_with_one_rejected_recipient() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send(EHLO_PIPELINING),
        // All of MAIL and the RCPTs arrive before any reply is sent: that is pipelining.
        Expect("MAIL FROM:<a@x.test> SIZE=12"),
        Expect("RCPT TO:<b@y.test>"),
        Expect("RCPT TO:<bad@y.test>"),
        Expect("RCPT TO:<c@y.test>"),
        Send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n"),
        Expect("DATA"),
        Send("354 go ahead\r\n"),
        Data(b"Subject: x\r\n.\r\n"),
        Send("250 2.0.0 queued as 123\r\n"),
        Expect("QUIT"),
        Send("221 2.0.0 bye\r\n"),
    ]);
    let mut client = opened(stream).await;
    assert!(client.capabilities().pipelining);
    let delivery = client
        .send_to(
            "a@x.test",
            &["b@y.test", "bad@y.test", "c@y.test"],
            b"Subject: x",
        )
        .await
        .unwrap();
    assert_eq!(delivery.accepted(), 2);
    assert!(matches!(&delivery.recipients[1].outcome, RcptOutcome::Rejected(r) if r.code == 550));
    let outcomes = delivery.outcomes();
    assert!(matches!(
        outcomes[0],
        ("b@y.test", RecipientOutcome::Sent(_))
    ));
    assert!(
        matches!(&outcomes[1], ("bad@y.test", RecipientOutcome::Permanent(r)) if r.message() == "no such user")
    );
    assert!(matches!(
        outcomes[2],
        ("c@y.test", RecipientOutcome::Sent(_))
    ));
    assert_eq!(delivery.data.as_ref().unwrap().code, 250);
    assert_eq!(client.quit().await.unwrap().unwrap().code, 221);
    task.await.unwrap();
}

#[tokio::test]
async fn all_recipients_rejected_means_rset_and_no_data() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send(EHLO_PIPELINING),
        Expect("MAIL FROM:<a@x.test> SIZE=4"),
        Expect("RCPT TO:<b@y.test>"),
        Expect("RCPT TO:<c@y.test>"),
        Send("250 ok\r\n550 no\r\n451 later\r\n"),
        Expect("RSET"),
        Send("250 reset\r\n"),
        // The session is reusable: the next message goes through.
        Expect("MAIL FROM:<a@x.test> SIZE=4"),
        Expect("RCPT TO:<d@y.test>"),
        Send("250 ok\r\n250 ok\r\n"),
        Expect("DATA"),
        Send("354 go\r\n"),
        Data(b"hi\r\n.\r\n"),
        Send("250 done\r\n"),
    ]);
    let mut client = opened(stream).await;
    let delivery = client
        .send_to("a@x.test", &["b@y.test", "c@y.test"], b"hi\n")
        .await
        .unwrap();
    assert_eq!(delivery.data, None);
    let outcomes = delivery.outcomes();
    assert!(matches!(outcomes[0].1, RecipientOutcome::Permanent(_)));
    assert!(matches!(outcomes[1].1, RecipientOutcome::Transient(_)));
    let delivery = client
        .send_to("a@x.test", &["d@y.test".to_string()], b"hi\n")
        .await
        .unwrap();
    assert!(delivery.all_sent());
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn helo_fallback_and_unpipelined_lockstep() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send("502 5.5.2 command not recognized\r\n"),
        Expect("HELO client.test"),
        Send("250 mx.test\r\n"),
        Expect("MAIL FROM:<a@x.test>"),
        Send("250 ok\r\n"),
        Expect("RCPT TO:<b@y.test>"),
        Send("250 ok\r\n"),
        Expect("RCPT TO:<c@y.test>"),
        Send("250 ok\r\n"),
        Expect("DATA"),
        Send("354 go\r\n"),
        Data(b"..leading dot\r\nline\r\n.\r\n"),
        Send("250 ok\r\n"),
    ]);
    let mut client = opened(stream).await;
    assert!(!client.capabilities().pipelining);
    let delivery = client
        .send_to(
            "a@x.test",
            &["b@y.test", "c@y.test"],
            b".leading dot\r\nline\r\n",
        )
        .await
        .unwrap();
    assert!(delivery.all_sent());
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn data_refused_is_reported_and_transaction_reset() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send(EHLO_PIPELINING),
        Expect("MAIL FROM:<a@x.test> SIZE=4"),
        Expect("RCPT TO:<b@y.test>"),
        Send("250 ok\r\n250 ok\r\n"),
        Expect("DATA"),
        Send("451 4.3.0 try later\r\n"),
        Expect("RSET"),
        Send("250 ok\r\n"),
    ]);
    let mut client = opened(stream).await;
    let delivery = client
        .send_to("a@x.test", &["b@y.test"], b"hi")
        .await
        .unwrap();
    assert!(matches!(
        delivery.outcomes()[0].1,
        RecipientOutcome::Transient(_)
    ));
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn mail_from_rejection_is_an_error_classed_by_code() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send(EHLO_PIPELINING),
        Expect("MAIL FROM:<a@x.test> SIZE=4"),
        Expect("RCPT TO:<b@y.test>"),
        Send("550 5.7.1 sender refused\r\n503 5.5.1 need MAIL first\r\n"),
    ]);
    let mut client = opened(stream).await;
    let err = client
        .send_to("a@x.test", &["b@y.test"], b"hi")
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::Rejected { command, .. } if command == "MAIL FROM"));
    assert!(err.is_permanent());
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn mail_parameters_follow_the_capabilities() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send("250-mx.test\r\n250-SIZE\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"),
        Expect("MAIL FROM:<é@x.test> SIZE=4 BODY=8BITMIME SMTPUTF8"),
        Send("250 ok\r\n"),
        Expect("RCPT TO:<b@y.test>"),
        Send("250 ok\r\n"),
        Expect("DATA"),
        Send("354 go\r\n"),
        Data("é\r\n.\r\n".as_bytes()),
        Send("250 ok\r\n"),
    ]);
    let mut client = opened(stream).await;
    client
        .send_to("é@x.test", &["b@y.test"], "é".as_bytes())
        .await
        .unwrap();
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn refused_before_any_command_when_it_cannot_work() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send("250-mx.test\r\n250 SIZE 10\r\n"),
    ]);
    let mut client = opened(stream).await;
    let err = client
        .send_to("a@x.test", &["b@y.test"], &[b'x'; 11])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::MessageTooBig {
                size: 13,
                limit: 10
            }
        ),
        "{err}"
    );
    assert!(err.is_permanent());
    let err = client
        .send_to("é@x.test", &["b@y.test"], b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Utf8NotSupported { .. }), "{err}");
    let err = client
        .send_to("a@x.test", &["b@y.test>\r\nRSET"], b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidInput { .. }), "{err}");
    let none: &[&str] = &[];
    assert!(matches!(
        client.send_to("a@x.test", none, b"x").await,
        Err(ClientError::NoRecipients)
    ));
    assert!(client.command("NOOP\r\nRSET").await.is_err());
    drop(client);
    task.await.unwrap();
}

/// A message full of SMTP smuggling attempts reaches the peer with every line end CRLF, the
/// dots stuffed and exactly one terminator.
#[tokio::test]
async fn smuggling_sequences_never_end_the_data() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send(EHLO_PIPELINING),
        Expect("MAIL FROM:<a@x.test> SIZE=41"),
        Expect("RCPT TO:<b@y.test>"),
        Send("250 ok\r\n250 ok\r\n"),
        Expect("DATA"),
        Send("354 go\r\n"),
        Data(b"a\r\n..\r\nb\r\n..\r\nc\r\n..\r\nMAIL FROM:<x@evil>\r\n.\r\n"),
        Send("250 ok\r\n"),
    ]);
    let mut client = opened(stream).await;
    client
        .send_to(
            "a@x.test",
            &["b@y.test"],
            b"a\n.\nb\r.\rc\r\n.\nMAIL FROM:<x@evil>",
        )
        .await
        .unwrap();
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn auth_picks_cram_md5_when_offered() {
    // RFC 2195's exchange, with the user and secret of its example.
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send("250-mx.test\r\n250 AUTH LOGIN PLAIN CRAM-MD5\r\n"),
        Expect("AUTH CRAM-MD5"),
        Send("334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n"),
        Expect("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"),
        Send("235 2.7.0 ok\r\n"),
    ]);
    let mut client = opened(stream).await;
    let credentials = Credentials::new("tim", "tanstaaftanstaaf");
    assert_eq!(
        client.authenticate(&credentials, true).await.unwrap(),
        Mechanism::CramMd5
    );
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn auth_login_and_its_rejection() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send("250-mx.test\r\n250 AUTH LOGIN\r\n"),
        Expect("AUTH LOGIN"),
        Send("334 VXNlcm5hbWU6\r\n"),
        Expect("dXNlcg=="),
        Send("334 UGFzc3dvcmQ6\r\n"),
        Expect("d3Jvbmc="),
        Send("535 5.7.8 authentication failed\r\n"),
    ]);
    let mut client = opened(stream).await;
    let err = client
        .authenticate(&Credentials::new("user", "wrong"), true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::AuthRejected {
                mechanism: Mechanism::Login,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_permanent());
    assert!(!err.to_string().contains("wrong"));
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn no_credentials_in_clear_and_no_usable_mechanism() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send("250-mx.test\r\n250 AUTH XOAUTH2 GSSAPI\r\n"),
    ]);
    let mut client = opened(stream).await;
    let credentials = Credentials::new("user", "pass");
    let err = client.authenticate(&credentials, false).await.unwrap_err();
    assert!(matches!(err, ClientError::AuthWithoutTls { .. }), "{err}");
    let err = client.authenticate(&credentials, true).await.unwrap_err();
    assert!(matches!(err, ClientError::NoAuthMechanism { .. }), "{err}");
    assert!(err.is_permanent());
    drop(client);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn greeting_timeout_names_the_step_and_the_limit() {
    let (stream, _task) = peer(vec![Stall]);
    let mut client = SmtpClient::with_stream(stream, "mx.test", config());
    let err = client.read_greeting().await.unwrap_err();
    match &err {
        ClientError::Timeout { command, after } => {
            assert_eq!(command, "greeting");
            assert_eq!(*after, Duration::from_secs(300));
        }
        other => panic!("{other}"),
    }
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "timeout after 5m waiting for the reply to greeting"
    );
}

#[tokio::test(start_paused = true)]
async fn end_of_data_timeout_uses_the_data_termination_limit() {
    let (stream, _task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send(EHLO_PIPELINING),
        Expect("MAIL FROM:<a@x.test> SIZE=4"),
        Expect("RCPT TO:<b@y.test>"),
        Send("250 ok\r\n250 ok\r\n"),
        Expect("DATA"),
        Send("354 go\r\n"),
        Data(b"hi\r\n.\r\n"),
        Stall,
    ]);
    let mut client = opened(stream).await;
    let err = client
        .send_to("a@x.test", &["b@y.test"], b"hi")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Timeout { command, after }
            if command == "end of DATA" && *after == Duration::from_secs(600)),
        "{err}"
    );
}

#[tokio::test]
async fn server_closing_mid_data_is_a_clear_transient_error() {
    let (stream, task) = peer(vec![
        Send(GREETING),
        Expect("EHLO client.test"),
        Send(EHLO_PIPELINING),
        Expect("MAIL FROM:<a@x.test> SIZE=4"),
        Expect("RCPT TO:<b@y.test>"),
        Send("250 ok\r\n250 ok\r\n"),
        Expect("DATA"),
        Send("354 go\r\n"),
        Close,
    ]);
    let mut client = opened(stream).await;
    let err = client
        .send_to("a@x.test", &["b@y.test"], b"hi")
        .await
        .unwrap_err();
    task.await.unwrap();
    assert!(
        matches!(&err, ClientError::Closed { .. } | ClientError::Io { .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("DATA"), "{err}");
}

#[tokio::test]
async fn garbage_and_oversized_replies_are_errors() {
    let (stream, _task) = peer(vec![Send("HTTP/1.1 400 Bad Request\r\n"), Stall]);
    let mut client = SmtpClient::with_stream(stream, "mx.test", config());
    let err = client.read_greeting().await.unwrap_err();
    assert!(matches!(err, ClientError::BadReply { .. }), "{err}");

    let long: &'static str = Box::leak(format!("220 {}\r\n", "x".repeat(70_000)).into_boxed_str());
    let (stream, _task) = peer(vec![Send(long), Stall]);
    let mut client = SmtpClient::with_stream(stream, "mx.test", config());
    let err = client.read_greeting().await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
}

#[tokio::test]
async fn raw_interface_command_expect_and_multi_line_replies() {
    let (stream, task) = peer(vec![
        Send("220-mx.test first\r\n220 second\r\n"),
        Expect("NOOP"),
        Send("250 2.0.0 ok\r\n"),
        Expect("VRFY x"),
        Send("252-cannot\r\n252 verify\r\n"),
        Expect("HELP"),
        Send("502 no help\r\n"),
    ]);
    let mut client = SmtpClient::with_stream(stream, "mx.test", config());
    let greeting = client.read_reply().await.unwrap();
    assert_eq!(greeting.lines, ["mx.test first", "second"]);
    assert_eq!(client.expect("NOOP", 250).await.unwrap().message(), "ok");
    let reply = client.command("VRFY x").await.unwrap();
    assert_eq!(reply.to_wire(), "252-cannot\r\n252 verify\r\n");
    let err = client.expect("HELP", 214).await.unwrap_err();
    assert!(matches!(err, ClientError::Rejected { ref command, .. } if command == "HELP"));
    drop(client);
    task.await.unwrap();
}
