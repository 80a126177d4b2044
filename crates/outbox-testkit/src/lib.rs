//! The peers Outbox's test suites start, in one place: free loopback ports, child processes
//! killed by pid ([`ProcessGuard`]), a throwaway test CA ([`ca`]), dnsmasq for MX records
//! ([`dnsmasq`]), Postfix's smtp-sink and aiosmtpd ([`peers`]), an HTTPS server for MTA-STS
//! policies ([`policy_server`]), and fresh PostgreSQL databases ([`postgres`]).
//!
//! Dev-only (`publish = false`): every crate of the workspace takes it as a dev-dependency.
//! A peer that cannot start panics with the reason (and how to install it:
//! `scripts/install-peers.sh`): a test that needs a peer never passes without it.
//!
//! # Features
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `smtp` | [`policy_server`] (its TLS comes from outbox-smtp), `Dnsmasq::resolver` |
//! | `store` | [`TestStore`] (a SQLite file or a fresh PostgreSQL database per test), [`conformance!`] (one test for both stores), [`relay`] (an in-process SMTP relay), [`counting`] (a transport counting connections) |
//! | `parsed` | [`parsed`]: composed messages read back by mail-parser and by Python's `email` |

pub mod ca;
#[cfg(feature = "store")]
pub mod counting;
pub mod dnsmasq;
#[cfg(feature = "parsed")]
pub mod parsed;
pub mod peers;
#[cfg(feature = "smtp")]
pub mod policy_server;
pub mod postgres;
mod process;
#[cfg(feature = "store")]
pub mod relay;
#[cfg(feature = "store")]
mod store;

use std::net::{TcpListener, UdpSocket};

pub use process::ProcessGuard;
#[cfg(feature = "store")]
pub use store::{TestStore, bench_message, message, soon};

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it back, release
/// it). Whoever binds it next must retry on a clash.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A port free for both UDP and TCP on 127.0.0.1 (what a DNS server needs).
pub fn free_udp_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let port = udp.local_addr().expect("udp local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
