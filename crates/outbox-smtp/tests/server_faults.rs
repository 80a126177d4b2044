//! Each kind of injected fault, seen from a raw TCP client.

use std::time::Duration;

use outbox_smtp::server::{Fault, Server, Stage};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(20);

struct Raw {
    io: BufReader<TcpStream>,
}

impl Raw {
    async fn connect(server: &Server) -> Raw {
        let stream = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        Raw {
            io: BufReader::new(stream),
        }
    }

    /// One reply's last line ("" at EOF).
    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = timeout(PATIENCE, self.io.read_line(&mut line))
                .await
                .expect("in time")
                .expect("read");
            if n == 0 {
                return String::new();
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    async fn send(&mut self, text: &str) {
        // The server may already have closed: a failed write shows up as EOF on read.
        let _ = self.io.get_mut().write_all(text.as_bytes()).await;
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Greeting and EHLO.
    async fn start(server: &Server) -> Raw {
        let mut c = Raw::connect(server).await;
        assert!(c.reply().await.starts_with("220"));
        assert!(c.cmd("EHLO c.test").await.starts_with("250"));
        c
    }

    /// MAIL, the RCPTs, DATA, text; returns each reply's code (or "" at EOF).
    async fn transaction(&mut self, rcpts: &[&str]) -> Vec<String> {
        let mut codes = vec![code(&self.cmd("MAIL FROM:<s@x.test>").await)];
        for r in rcpts {
            codes.push(code(&self.cmd(&format!("RCPT TO:<{r}>")).await));
        }
        let data = code(&self.cmd("DATA").await);
        let sent = data == "354";
        codes.push(data);
        if sent {
            self.send("Subject: t\r\n\r\nbody\r\n.\r\n").await;
            codes.push(code(&self.reply().await));
        }
        codes
    }
}

fn code(reply: &str) -> String {
    reply.chars().take(3).collect()
}

#[tokio::test]
async fn transient_rcpt_twice_then_accept() {
    let server = Server::builder()
        .fault(
            Fault::reply(Stage::Rcpt, 451, "4.3.0 try later")
                .for_recipient("b@x.test")
                .times(2),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::start(&server).await;
    assert_eq!(
        c.transaction(&["a@x.test", "b@x.test"]).await,
        ["250", "250", "451", "354", "250"]
    );
    assert_eq!(c.transaction(&["b@x.test"]).await, ["250", "451", "554"]);
    c.cmd("RSET").await;
    assert_eq!(
        c.transaction(&["b@x.test"]).await,
        ["250", "250", "354", "250"]
    );
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].envelope.rcpt_to, ["a@x.test"]);
    assert_eq!(got[1].envelope.rcpt_to, ["b@x.test"]);
}

#[tokio::test]
async fn permanent_rcpt_for_one_address() {
    let server = Server::builder()
        .fault(Fault::reply(Stage::Rcpt, 550, "5.1.1 no such user").for_recipient("bad@x.test"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::start(&server).await;
    for _ in 0..3 {
        assert_eq!(
            c.transaction(&["bad@x.test", "ok@x.test"]).await,
            ["250", "550", "250", "354", "250"]
        );
    }
}

#[tokio::test]
async fn a_421_to_mail_closes_the_connection() {
    let server = Server::builder()
        .fault(Fault::reply(Stage::Mail, 421, "4.3.2 closing").times(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::start(&server).await;
    assert_eq!(c.cmd("MAIL FROM:<s@x.test>").await, "421 4.3.2 closing");
    assert_eq!(c.reply().await, "", "connection closed after 421");
    let mut c = Raw::start(&server).await;
    assert_eq!(
        c.transaction(&["a@x.test"]).await,
        ["250", "250", "354", "250"]
    );
}

#[tokio::test]
async fn a_452_after_data_does_not_deliver() {
    let server = Server::builder()
        .fault(Fault::reply(Stage::EndOfData, 452, "4.3.1 insufficient storage").times(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::start(&server).await;
    assert_eq!(
        c.transaction(&["a@x.test"]).await,
        ["250", "250", "354", "452"]
    );
    assert!(server.memory_sink().unwrap().is_empty());
    assert_eq!(
        c.transaction(&["a@x.test"]).await,
        ["250", "250", "354", "250"]
    );
    assert_eq!(server.stats().messages_delivered(), 1);
}

#[tokio::test]
async fn faults_at_data_and_for_a_sender() {
    let server = Server::builder()
        .fault(Fault::reply(Stage::Data, 554, "5.7.1 no thanks").for_recipient("x@x.test"))
        .fault(Fault::reply(Stage::Mail, 553, "5.7.1 sender refused").for_sender("spam@x.test"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::start(&server).await;
    assert_eq!(c.transaction(&["x@x.test"]).await, ["250", "250", "554"]);
    assert_eq!(code(&c.cmd("MAIL FROM:<spam@x.test>").await), "553");
    assert_eq!(
        c.transaction(&["y@x.test"]).await,
        ["250", "250", "354", "250"]
    );
}

#[tokio::test]
async fn drop_at_a_command() {
    let server = Server::builder()
        .fault(Fault::drop_connection(Stage::Rcpt).for_recipient("b@x.test"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::start(&server).await;
    assert_eq!(
        c.transaction(&["a@x.test", "b@x.test"]).await[..2],
        ["250", "250"]
    );
    assert_eq!(c.reply().await, "");
    assert!(server.memory_sink().unwrap().is_empty());
}

#[tokio::test]
async fn drop_mid_data() {
    let server = Server::builder()
        .fault(Fault::drop_mid_data(1000).times(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::start(&server).await;
    assert_eq!(code(&c.cmd("MAIL FROM:<s@x.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<a@x.test>").await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    c.send(&"line of text\r\n".repeat(200)).await;
    c.send(".\r\n").await;
    assert_eq!(c.reply().await, "", "dropped during the text, no reply");
    assert!(server.memory_sink().unwrap().is_empty());
    let mut c = Raw::start(&server).await;
    assert_eq!(
        c.transaction(&["a@x.test"]).await,
        ["250", "250", "354", "250"]
    );
}

#[tokio::test]
async fn greeting_faults() {
    let server = Server::builder()
        .fault(Fault::reply(Stage::Connect, 421, "4.3.2 too busy").times(1))
        .fault(Fault::reply(Stage::Connect, 554, "5.7.1 go away").times(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::connect(&server).await;
    assert_eq!(c.reply().await, "421 4.3.2 too busy");
    assert_eq!(c.reply().await, "");
    // RFC 5321 §3.1: after a 554 greeting only QUIT is served.
    let mut c = Raw::connect(&server).await;
    assert_eq!(c.reply().await, "554 5.7.1 go away");
    assert_eq!(code(&c.cmd("EHLO c.test").await), "503");
    assert_eq!(code(&c.cmd("QUIT").await), "221");
    let mut c = Raw::connect(&server).await;
    assert!(c.reply().await.starts_with("220"));
    let mut c = Raw::connect(&server).await;
    assert!(c.reply().await.starts_with("220"));
    server.inject(Fault::drop_connection(Stage::Connect));
    let mut c = Raw::connect(&server).await;
    assert_eq!(c.reply().await, "");
}

#[tokio::test]
async fn stall_delays_the_reply() {
    let server = Server::builder()
        .fault(Fault::stall(Stage::Mail, Duration::from_secs(3)).times(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut c = Raw::start(&server).await;
    c.send("MAIL FROM:<s@x.test>\r\n").await;
    // Nothing arrives while the server stalls (the stall is far longer than this wait) ...
    let mut line = String::new();
    let early = timeout(Duration::from_millis(300), c.io.read_line(&mut line)).await;
    assert!(early.is_err(), "a reply arrived during the stall: {line}");
    // ... and then the normal reply comes.
    assert_eq!(code(&c.reply().await), "250");
}
