//! `outbox send --now` run as the real binary against in-process SMTP servers: through a
//! relay (flag and configuration), with per-recipient refusals, with mail merge, to a
//! program, and direct to MX hosts found through a dnsmasq on loopback.

use std::process::Output;
use std::time::{Duration, Instant};

use outbox_smtp::server::{Fault, Server, Stage};
use outbox_testkit::dnsmasq::Dnsmasq;
use tempfile::TempDir;

struct Run {
    dir: TempDir,
    env: Vec<(String, String)>,
}

impl Run {
    fn new() -> Run {
        Run {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    fn env(mut self, key: &str, value: impl Into<String>) -> Run {
        self.env.push((key.to_string(), value.into()));
        self
    }

    async fn outbox(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_outbox"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("OUTBOX_CONFIG")
            .env_remove("RUST_LOG")
            // Never wander off to the real DNS or port 25 by accident.
            .env("OUTBOX_DNS_NAMESERVERS", "127.0.0.1:9")
            .env("OUTBOX_DELIVERY_CONNECT_TIMEOUT", "5s")
            .env("OUTBOX_DELIVERY_HELO_NAME", "outbox.test");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command.output().await.expect("run outbox")
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn server() -> Server {
    Server::builder().bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn through_a_relay_flag() {
    let server = server().await;
    let relay = server.local_addr().to_string();
    let run = Run::new();
    let out = run
        .outbox(&[
            "send",
            "--now",
            "--from",
            "Ann <ann@x.test>",
            "--to",
            "b@y.test,c@y.test",
            "--bcc",
            "d@z.test",
            "--subject",
            "hi",
            "--body",
            "hello\n.dot",
            "--relay",
            &relay,
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "b@y.test sent\nc@y.test sent\nd@z.test sent\n"
    );
    assert_eq!(stderr(&out), "");
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got.len(), 1, "one route, one transaction");
    assert_eq!(got[0].envelope.mail_from, "ann@x.test");
    assert_eq!(
        got[0].envelope.rcpt_to,
        ["b@y.test", "c@y.test", "d@z.test"]
    );
    let text = String::from_utf8(got[0].data.clone()).unwrap();
    assert!(text.contains("Subject: hi\r\n"), "{text}");
    assert!(
        text.contains("hello\r\n.dot"),
        "dot-unstuffed on arrival: {text}"
    );
    assert!(!text.contains("d@z.test"), "bcc never in headers");
    assert!(
        !run.dir.path().join("outbox.db").exists(),
        "--now does not touch the queue"
    );
}

#[tokio::test]
async fn refused_recipients_fail_alone() {
    let server = Server::builder()
        .fault(Fault::reply(Stage::Rcpt, 550, "5.1.1 no such user").for_recipient("bad@y.test"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let relay = format!("smtp://{}", server.local_addr());
    let out = Run::new()
        .env("OUTBOX_DELIVERY_RELAY", relay)
        .outbox(&[
            "send",
            "--now",
            "--from",
            "a@x.test",
            "--to",
            "ok@y.test",
            "--to",
            "bad@y.test",
            "--subject",
            "s",
            "--body",
            "b",
        ])
        .await;
    assert!(!out.status.success());
    assert_eq!(
        stdout(&out),
        "ok@y.test sent\nbad@y.test failed: 550 5.1.1 no such user\n"
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert_eq!(
        server.memory_sink().unwrap().messages()[0].envelope.rcpt_to,
        ["ok@y.test"]
    );
}

#[tokio::test]
async fn a_transient_data_reply_fails_every_recipient() {
    let server = Server::builder()
        .fault(Fault::reply(
            Stage::EndOfData,
            452,
            "4.3.1 insufficient storage",
        ))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let relay = server.local_addr().to_string();
    let out = Run::new()
        .outbox(&[
            "send",
            "--now",
            "--from",
            "a@x.test",
            "--to",
            "b@y.test,c@y.test",
            "--subject",
            "s",
            "--body",
            "b",
            "--relay",
            &relay,
        ])
        .await;
    assert!(!out.status.success());
    assert_eq!(
        stdout(&out),
        "b@y.test failed: 452 4.3.1 insufficient storage\n\
         c@y.test failed: 452 4.3.1 insufficient storage\n"
    );
}

#[tokio::test]
async fn merge_sends_one_transaction_per_recipient() {
    let server = server().await;
    let run = Run::new();
    std::fs::write(
        run.dir.path().join("merge.json"),
        r#"{"b@y.test": {"name": "Bea"}, "c@y.test": {"name": "Cy"}}"#,
    )
    .unwrap();
    let relay = server.local_addr().to_string();
    let out = run
        .outbox(&[
            "send",
            "--now",
            "--from",
            "a@x.test",
            "--to",
            "b@y.test,c@y.test",
            "--subject",
            "Hi #name#",
            "--body",
            "Dear #name#, #greeting#",
            "--token",
            "greeting=hello",
            "--merge",
            "merge.json",
            "--relay",
            &relay,
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got.len(), 2);
    for (message, name) in got.iter().zip(["Bea", "Cy"]) {
        let text = String::from_utf8(message.data.clone()).unwrap();
        assert_eq!(message.envelope.rcpt_to.len(), 1);
        assert!(text.contains(&format!("Subject: Hi {name}")), "{text}");
        assert!(text.contains(&format!("Dear {name}, hello")), "{text}");
    }
    assert_eq!(
        server.stats().connections_accepted,
        1,
        "one connection for the route"
    );
}

#[tokio::test]
async fn to_a_program() {
    let run = Run::new();
    let out_file = run.dir.path().join("piped.eml");
    let relay = format!("program:/bin/sh -c 'cat > {}'", out_file.display());
    let out = run
        .outbox(&[
            "send",
            "--now",
            "--from",
            "a@x.test",
            "--to",
            "b@y.test",
            "--subject",
            "p",
            "--body",
            "via a program",
            "--relay",
            &relay,
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "b@y.test sent\n");
    let piped = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        piped.contains("via a program\n") && !piped.contains('\r'),
        "{piped:?}"
    );
}

#[tokio::test]
async fn unreachable_relay_fails_everyone_with_one_stderr_line() {
    let port = outbox_testkit::free_tcp_port();
    let out = Run::new()
        .outbox(&[
            "send",
            "--now",
            "--from",
            "a@x.test",
            "--to",
            "b@y.test",
            "--subject",
            "s",
            "--body",
            "b",
            "--relay",
            &format!("127.0.0.1:{port}"),
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        stdout(&out).starts_with("b@y.test failed: "),
        "{}",
        stdout(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
}

/// `[delivery] greeting_timeout` gives up on a server that never greets, while the other
/// steps keep their own limits: MAIL FROM answered after longer than the greeting timeout
/// still goes through.
#[tokio::test]
async fn a_stalled_greeting_is_given_up_after_greeting_timeout() {
    let silent = Server::builder()
        .fault(Fault::stall(Stage::Connect, Duration::from_secs(60)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let slow_mail = Server::builder()
        .fault(Fault::stall(Stage::Mail, Duration::from_millis(900)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let run = Run::new().env("OUTBOX_DELIVERY_GREETING_TIMEOUT", "300ms");
    let send = |relay: String| {
        let run = &run;
        async move {
            run.outbox(&[
                "send",
                "--now",
                "--from",
                "a@x.test",
                "--to",
                "b@y.test",
                "--subject",
                "s",
                "--body",
                "b",
                "--relay",
                &relay,
            ])
            .await
        }
    };
    let started = Instant::now();
    let out = send(silent.local_addr().to_string()).await;
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("timeout after 300ms waiting for the reply to greeting"),
        "{}",
        stdout(&out)
    );
    // Not the 5 minutes of the other steps, nor the server's 60 s silence.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    let out = send(slow_mail.local_addr().to_string()).await;
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "b@y.test sent\n");
    assert_eq!(slow_mail.memory_sink().unwrap().len(), 1);
}

#[tokio::test]
async fn direct_to_mx_hosts_grouped_by_domain() {
    // Two domains whose MX hosts listen on the same port at 127.0.0.2 and 127.0.0.3.
    let (first, second) = loop {
        let second = Server::builder().bind("127.0.0.3:0").await.unwrap();
        let port = second.local_addr().port();
        if let Ok(first) = Server::builder().bind(&format!("127.0.0.2:{port}")).await {
            break (first, second);
        }
    };
    let dns = Dnsmasq::start(&[
        "--mx-host=a.test,mx.a.test,10".to_string(),
        "--host-record=mx.a.test,127.0.0.2".to_string(),
        "--host-record=b.test,127.0.0.3".to_string(),
        "--mx-host=null.test,.,0".to_string(),
    ]);
    let out = Run::new()
        .env("OUTBOX_DNS_NAMESERVERS", dns.nameserver())
        .env(
            "OUTBOX_DELIVERY_MX_PORT",
            second.local_addr().port().to_string(),
        )
        .outbox(&[
            "send",
            "--now",
            "--from",
            "s@x.test",
            "--to",
            "one@a.test,two@b.test,three@a.test,four@null.test",
            "--subject",
            "mx",
            "--body",
            "direct",
        ])
        .await;
    assert!(!out.status.success(), "null.test must fail");
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(
        lines[..3],
        ["one@a.test sent", "two@b.test sent", "three@a.test sent"]
    );
    assert!(
        lines[3].starts_with("four@null.test failed: ") && lines[3].contains("null.test"),
        "{lines:?}"
    );
    let a = first.memory_sink().unwrap().messages();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].envelope.rcpt_to, ["one@a.test", "three@a.test"]);
    let b = second.memory_sink().unwrap().messages();
    assert_eq!(
        b[0].envelope.rcpt_to,
        ["two@b.test"],
        "implicit MX via the A record"
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_sending() {
    let server = server().await;
    let relay = server.local_addr().to_string();
    let out = Run::new()
        .outbox(&[
            "send",
            "--now",
            "--to",
            "b@y.test",
            "--subject",
            "s",
            "--relay",
            &relay,
        ])
        .await;
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("from"), "{err}");
    assert_eq!(server.stats().connections_accepted, 0);
}

#[tokio::test]
async fn now_ignores_the_queue_size_limit_that_queueing_enforces() {
    let server = server().await;
    let relay = server.local_addr().to_string();
    let body = "x".repeat(20_000);
    let run = Run::new().env("OUTBOX_DELIVERY_MAX_MESSAGE_SIZE", "10KB");
    let args = |now: bool| {
        let mut args = vec![
            "send",
            "--from",
            "a@x.test",
            "--to",
            "b@y.test",
            "--subject",
            "big",
        ];
        args.extend(["--body", body.as_str(), "--relay", relay.as_str()]);
        if now {
            args.push("--now");
        }
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let queued = run
        .outbox(&args(false).iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert!(!queued.status.success());
    assert_eq!(stdout(&queued), "");
    assert_eq!(stderr(&queued).lines().count(), 1, "{}", stderr(&queued));
    assert!(stderr(&queued).contains("limit"), "{}", stderr(&queued));
    let now = run
        .outbox(&args(true).iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert!(now.status.success(), "{}", stderr(&now));
    assert_eq!(stdout(&now), "b@y.test sent\n");
    assert!(server.memory_sink().unwrap().messages()[0].data.len() > 20_000);
}

#[tokio::test]
async fn without_now_the_message_is_queued_and_its_id_printed() {
    let server = server().await;
    let relay = server.local_addr().to_string();
    let run = Run::new();
    let out = run
        .outbox(&[
            "send",
            "--from",
            "a@x.test",
            "--to",
            "b@y.test",
            "--subject",
            "later",
            "--body",
            "queued",
            "--relay",
            &relay,
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(stdout(&out), format!("{id}\n"), "the id alone on one line");
    assert!(!id.is_empty() && !id.contains(' '));
    let status = run.outbox(&["status", &id]).await;
    assert_eq!(stdout(&status), "queued\n", "{}", stderr(&status));
    assert_eq!(
        server.stats().connections_accepted,
        0,
        "nothing sent without a worker"
    );
}

/// `send --now` refuses suppressed recipients (one line each, exit 1) and sends the rest;
/// `--ignore-suppression` sends to them too.
#[tokio::test]
async fn suppressed_recipients_are_refused_unless_ignored() {
    let server = server().await;
    let relay = server.local_addr().to_string();
    let run = Run::new();
    let db = format!("sqlite://{}", run.dir.path().join("q.db").display());
    let out = run
        .outbox(&[
            "--db",
            &db,
            "suppress",
            "add",
            "Bad@y.test",
            "--reason",
            "bounced",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let send = |ignore: bool| {
        let mut args = vec![
            "--db",
            &db,
            "send",
            "--now",
            "--from",
            "a@x.test",
            "--to",
            "ok@y.test, bad@y.test",
            "--subject",
            "s",
            "--body",
            "b",
            "--relay",
            &relay,
        ];
        if ignore {
            args.push("--ignore-suppression");
        }
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let args = send(false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run.outbox(&args).await;
    assert!(!out.status.success());
    let printed = stdout(&out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(
        lines[0].starts_with("bad@y.test suppressed: bounced (every list) since 20"),
        "{printed}"
    );
    assert_eq!(lines[1], "ok@y.test sent");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--ignore-suppression"), "{err}");
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].envelope.rcpt_to,
        ["ok@y.test"],
        "nothing for bad@y.test"
    );

    let args = send(true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run.outbox(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ok@y.test sent\nbad@y.test sent\n");
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got[1].envelope.rcpt_to, ["ok@y.test", "bad@y.test"]);
}
