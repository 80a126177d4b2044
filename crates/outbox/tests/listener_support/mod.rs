//! Shared by the listener tests: the in-process relay `outbox serve` delivers to, a raw SMTP
//! client bound to a chosen loopback address, and the check that a real client program is
//! installed. (`outbox serve` itself, with its log kept, is `mail_support::Serve`.)

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_smtp::server::{MemorySink, ReceivedMessage, Server};

use crate::mail_support::Workdir;

/// The relay `serve` delivers to: an outbox-smtp server with an in-memory sink.
pub struct Relay {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    sink: Arc<MemorySink>,
}

impl Relay {
    pub fn start() -> Relay {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let sink = Arc::new(MemorySink::new());
        let server = runtime
            .block_on(Server::builder().sink(sink.clone()).bind("127.0.0.1:0"))
            .expect("bind relay");
        Relay {
            runtime,
            server: Some(server),
            sink,
        }
    }

    pub fn spec(&self) -> String {
        let address = self.server.as_ref().expect("running").local_addr();
        format!("smtp://{address}?starttls=off")
    }

    pub fn wait_for(&self, n: usize) -> Vec<ReceivedMessage> {
        self.runtime
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(60), self.sink.wait_for(n)).await
            })
            .expect("messages reach the relay")
    }

    /// Waits until the relay has received `n` recipients in all; returns every message.
    pub fn wait_for_recipients(&self, n: usize) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.sink.messages();
            let count: usize = received.iter().map(|m| m.envelope.rcpt_to.len()).sum();
            if count >= n {
                return received;
            }
            assert!(Instant::now() < deadline, "{n} recipients reach the relay");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.sink.messages()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// Writes `outbox.toml` with the listener section given and serve relaying to `relay`.
pub fn configure(work: &Workdir, relay: &Relay, listener: &str) {
    work.write(
        "outbox.toml",
        format!(
            "database = \"sqlite://outbox.db\"\n\
             [delivery]\nrelay = \"{}\"\nhelo_name = \"outbox.test\"\nmax_message_size = \"20KB\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [smtp_listener]\nlisten = \"127.0.0.1:0\"\n{listener}",
            relay.spec()
        ),
    );
}

/// A blocking line client on a real socket, bound to `from` before connecting.
pub struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect_from(server: SocketAddr, from: &str) -> Raw {
        // std's TcpStream cannot bind before connecting; tokio's TcpSocket can.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let stream = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(format!("{from}:0").parse().unwrap())
                .expect("bind client address");
            socket.connect(server).await.expect("connect")
        });
        let stream = stream.into_std().expect("std stream");
        stream.set_nonblocking(false).expect("blocking");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Raw {
            reader: BufReader::new(stream),
        }
    }

    /// One (possibly multi-line) reply, lines joined by "\n"; "" at EOF or reset.
    pub fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return lines.join("\n"),
                Ok(_) => {}
            }
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads until EOF (true) or until `limit` passes (false).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let stream = self.reader.get_mut();
        stream.set_read_timeout(Some(limit)).expect("timeout");
        let mut buf = [0u8; 256];
        let started = Instant::now();
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
            if started.elapsed() > limit {
                return false;
            }
        }
    }
}

/// The path of a real client program, or a failure that says how to get it.
pub fn require(program: &str) -> String {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        !found.is_empty(),
        "{program} is not installed: run scripts/install-peers.sh"
    );
    found
}

/// The queue id in a `250 2.0.0 Ok: queued as ID` line of a client's transcript.
pub fn queued_id(transcript: &str) -> String {
    let at = transcript
        .find("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("no `queued as` reply in:\n{transcript}"));
    transcript[at + "250 2.0.0 Ok: queued as ".len()..]
        .split_whitespace()
        .next()
        .expect("an id")
        .to_string()
}
