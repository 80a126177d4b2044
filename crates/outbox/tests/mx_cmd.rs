//! `outbox mx` against a dnsmasq on loopback (`OUTBOX_DNS_NAMESERVERS`), run as the real
//! binary in a temp dir.

#[path = "../../outbox-smtp/tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};

use support::dnsmasq::Dnsmasq;

fn dns() -> Dnsmasq {
    let records = [
        "--mx-host=a.test,mx2.a.test,20",
        "--mx-host=a.test,mx1.a.test,10",
        "--host-record=mx1.a.test,127.0.0.2",
        "--host-record=implicit.test,127.0.0.4",
        "--mx-host=null.test,.,0",
    ];
    Dnsmasq::start(&records.map(String::from))
}

fn outbox(dns: &Dnsmasq, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_outbox"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("OUTBOX_CONFIG")
        .env_remove("RUST_LOG")
        .env("OUTBOX_DNS_NAMESERVERS", dns.nameserver())
        .output()
        .expect("run outbox")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn lists_hosts_in_order() {
    let dns = dns();
    let out = outbox(&dns, &["mx", "a.test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "10 mx1.a.test\n20 mx2.a.test\n");
    assert_eq!(stderr(&out), "");
    let out = outbox(&dns, &["mx", "A.TEST.", "--refresh"]);
    assert_eq!(stdout(&out), "10 mx1.a.test\n20 mx2.a.test\n");
}

#[test]
fn implicit_mx() {
    let dns = dns();
    let out = outbox(&dns, &["mx", "implicit.test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "0 implicit.test\n");
}

#[test]
fn json_output_with_addresses() {
    let dns = dns();
    let out = outbox(&dns, &["--json", "mx", "a.test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        hosts,
        serde_json::json!([
            {"preference": 10, "host": "mx1.a.test", "addresses": ["127.0.0.2"]},
            {"preference": 20, "host": "mx2.a.test"},
        ])
    );
    let again = outbox(&dns, &["mx", "a.test", "--json"]);
    assert_eq!(again.stdout, out.stdout, "--json is global");
}

#[test]
fn null_mx_and_missing_domain_fail_with_one_line() {
    let dns = dns();
    for domain in ["null.test", "nx.test"] {
        let out = outbox(&dns, &["mx", domain]);
        assert!(!out.status.success());
        assert_eq!(stdout(&out), "");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(domain), "{err}");
    }
    let out = outbox(&dns, &["mx", "bad domain"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad domain"));
}
