//! A dnsmasq serving test records on a free port of 127.0.0.1, killed by pid on drop.
//!
//! It is authoritative for `.test` (`--local=/test/`), so unknown names there are NXDOMAIN,
//! and it never forwards anything anywhere (`--no-resolv`).

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dnsmasq; dropping it kills the process.
pub struct Dnsmasq {
    child: Child,
    /// Where it answers, UDP and TCP.
    pub addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq with `records` (dnsmasq options such as `--mx-host=a.test,mx.a.test,10`
    /// and `--host-record=mx.a.test,127.0.0.2`). Panics, naming the reason, when it cannot
    /// start: a test that needs it must not pass without it.
    pub fn start<S: AsRef<str>>(records: &[S]) -> Dnsmasq {
        let binary = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("dnsmasq is not installed (scripts/install-peers.sh installs dnsmasq-base)");
        let mut last_error = String::new();
        for _ in 0..10 {
            let port = crate::free_udp_tcp_port();
            let mut child = Command::new(binary)
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                    "--pid-file",
                    "--local=/test/",
                    "--local-ttl=300",
                ])
                .arg(format!("--port={port}"))
                .args(records.iter().map(AsRef::as_ref))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn dnsmasq");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        use std::io::Read;
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                    last_error = format!("dnsmasq exited with {status}: {}", stderr.trim());
                    break; // most likely the port was taken meanwhile: try another
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Dnsmasq { child, addr };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("dnsmasq did not start listening on {addr}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("dnsmasq could not start: {last_error}");
    }

    /// outbox-smtp's resolver asking only this server, with a 1 s timeout (short, so the
    /// tests that stop the server do not wait long for its silence).
    #[cfg(feature = "smtp")]
    pub fn resolver(&self) -> outbox_smtp::mx::DnsMxResolver {
        let mut settings = outbox_smtp::mx::ResolverSettings::default();
        settings.nameservers = vec![self.addr];
        settings.timeout = Duration::from_secs(1);
        outbox_smtp::mx::DnsMxResolver::new(&settings).expect("resolver")
    }

    /// `host:port` as `[dns] nameservers` / `OUTBOX_DNS_NAMESERVERS` take it.
    pub fn nameserver(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
