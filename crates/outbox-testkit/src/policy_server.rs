//! A small HTTPS server for MTA-STS policy files (tokio + tokio-rustls), on a free port of
//! a loopback address. It counts the requests it reads and answers each with the reply set
//! at the time: status, headers, body (Content-Length or chunked), or no answer at all
//! (a stall). Responses are written by hand so a test controls every byte; the server stops
//! (all its connections with it) when dropped.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// What the server answers.
#[derive(Clone, Debug)]
pub struct PolicyReply {
    /// The HTTP status.
    pub status: u16,
    /// Headers besides Content-Length / Transfer-Encoding and Connection.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Send the body chunked (in 1000-byte chunks) instead of with a Content-Length.
    pub chunked: bool,
    /// Read the request, then never answer.
    pub stall: bool,
}

impl PolicyReply {
    /// `200`, `text/plain`, with `policy` as the body.
    pub fn policy(policy: &str) -> PolicyReply {
        PolicyReply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: policy.as_bytes().to_vec(),
            chunked: false,
            stall: false,
        }
    }

    /// A bodiless answer with `status` and one header.
    pub fn status(status: u16, header: (&str, &str)) -> PolicyReply {
        PolicyReply {
            status,
            headers: vec![(header.0.into(), header.1.into())],
            body: Vec::new(),
            chunked: false,
            stall: false,
        }
    }

    /// No answer at all after the request.
    pub fn stall() -> PolicyReply {
        PolicyReply {
            stall: true,
            ..PolicyReply::policy("")
        }
    }

    fn head(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} Test\r\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.chunked {
            head.push_str("Transfer-Encoding: chunked\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        head.into_bytes()
    }

    fn encoded_body(&self) -> Vec<u8> {
        if !self.chunked {
            return self.body.clone();
        }
        let mut out = Vec::new();
        for chunk in self.body.chunks(1000) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }
}

/// A running policy server; dropping it stops it.
pub struct PolicyServer {
    /// Where it listens.
    pub addr: SocketAddr,
    reply: Arc<Mutex<PolicyReply>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl PolicyServer {
    /// Listens on `ip`, port 0, presenting `cert` (PEM chain) and `key`; answers `reply`.
    pub async fn start(ip: IpAddr, cert: &Path, key: &Path, reply: PolicyReply) -> PolicyServer {
        let tls = outbox_smtp::server::server_tls_config_from_files(cert, key)
            .expect("policy server certificate");
        let acceptor = TlsAcceptor::from(tls);
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let reply = Arc::new(Mutex::new(reply));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (shared_reply, shared_requests) = (reply.clone(), requests.clone());
        let task = tokio::spawn(async move {
            // Owned here, so aborting this task drops (and aborts) every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, reply, requests) = (
                    acceptor.clone(),
                    shared_reply.clone(),
                    shared_requests.clone(),
                );
                connections.spawn(async move {
                    let accept =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    let Ok(Ok(mut tls)) = accept.await else {
                        return; // a client that refused our certificate, or went silent
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    requests
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let reply = reply.lock().unwrap().clone();
                    if reply.stall {
                        std::future::pending::<()>().await;
                    }
                    let _ = tls.write_all(&reply.head()).await;
                    let _ = tls.write_all(&reply.encoded_body()).await;
                    let _ = tls.shutdown().await;
                });
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        });
        PolicyServer {
            addr,
            reply,
            requests,
            task,
        }
    }

    /// Answers `reply` from now on.
    pub fn set_reply(&self, reply: PolicyReply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// How many requests were read so far.
    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The request heads read so far, as text.
    pub fn request_heads(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
