//! Helpers shared by the integration tests: free ports, a throwaway test CA (openssl), and a
//! dnsmasq guard. Each test file uses only some of them.
#![allow(dead_code)]

pub mod ca;
pub mod dnsmasq;
pub mod peers;

use std::net::{TcpListener, UdpSocket};

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it back, release it).
/// Whoever binds it next must retry on a clash.
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
