//! `outbox mx` against a dnsmasq on loopback (`OUTBOX_DNS_NAMESERVERS`), run as the real
//! binary in a temp dir; `--tls` against in-process MX servers on 127.0.0.2-5.

use std::process::{Command, Output};

use outbox_smtp::server::{Fault, Server, server_tls_config_from_files};
use outbox_testkit::ca::{SelfSigned, TestCa};
use outbox_testkit::dnsmasq::Dnsmasq;

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

/// `outbox mx DOMAIN --tls` as a real process (async, so the in-process MX servers of the
/// test keep answering meanwhile).
async fn outbox_tls(dns: &Dnsmasq, port: u16, ca_file: &std::path::Path, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_outbox"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("OUTBOX_CONFIG")
        .env_remove("RUST_LOG")
        .env("OUTBOX_DNS_NAMESERVERS", dns.nameserver())
        .env("OUTBOX_DELIVERY_MX_PORT", port.to_string())
        .env("OUTBOX_DELIVERY_CONNECT_TIMEOUT", "5s")
        .env("OUTBOX_TLS_CA_FILE", ca_file)
        .output()
        .await
        .expect("run outbox")
}

/// Four MX hosts of tls.test on one port: 127.0.0.2 with a certificate for its name from a
/// CA in `[tls] ca_file`, 127.0.0.3 self-signed, 127.0.0.4 without STARTTLS, 127.0.0.5 with
/// a broken handshake; mx5 has no address and 127.0.0.6 listens nowhere.
struct TlsHosts {
    servers: Vec<Server>,
    ca: TestCa,
    port: u16,
    dns: Dnsmasq,
    _self_signed: SelfSigned,
}

async fn tls_hosts() -> TlsHosts {
    let ca = TestCa::for_names(&["mx1.tls.test"]);
    let self_signed = SelfSigned::generate("mx2");
    let valid = server_tls_config_from_files(&ca.server_cert, &ca.server_key).unwrap();
    let own = server_tls_config_from_files(&self_signed.cert, &self_signed.key).unwrap();
    let builders = || {
        [
            ("127.0.0.2", Server::builder().tls(valid.clone())),
            ("127.0.0.3", Server::builder().tls(own.clone())),
            ("127.0.0.4", Server::builder()),
            (
                "127.0.0.5",
                Server::builder().tls(own.clone()).fault(Fault::break_tls()),
            ),
        ]
    };
    let (servers, port) = 'retry: loop {
        let port = outbox_testkit::free_tcp_port();
        let mut servers = Vec::new();
        for (ip, builder) in builders() {
            match builder.bind(&format!("{ip}:{port}")).await {
                Ok(server) => servers.push(server),
                Err(_) => continue 'retry,
            }
        }
        break (servers, port);
    };
    let records = [
        "--mx-host=tls.test,mx1.tls.test,10",
        "--mx-host=tls.test,mx2.tls.test,20",
        "--mx-host=tls.test,mx3.tls.test,30",
        "--mx-host=tls.test,mx4.tls.test,40",
        "--mx-host=tls.test,mx5.tls.test,50",
        "--mx-host=tls.test,mx6.tls.test,60",
        "--host-record=mx1.tls.test,127.0.0.2",
        "--host-record=mx2.tls.test,127.0.0.3",
        "--host-record=mx3.tls.test,127.0.0.4",
        "--host-record=mx4.tls.test,127.0.0.5",
        "--host-record=mx6.tls.test,127.0.0.6",
    ];
    TlsHosts {
        servers,
        ca,
        port,
        dns: Dnsmasq::start(&records.map(String::from)),
        _self_signed: self_signed,
    }
}

#[tokio::test]
async fn tls_shows_starttls_and_certificate_per_address() {
    let hosts = tls_hosts().await;
    let out = outbox_tls(
        &hosts.dns,
        hosts.port,
        &hosts.ca.ca_cert,
        &["mx", "tls.test", "--tls"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "mta-sts: none (no _mta-sts TXT record)", "{text}");
    assert_eq!(lines[1], "10 mx1.tls.test", "{text}");
    assert_eq!(
        lines[2],
        "  127.0.0.2: STARTTLS offered; certificate valid for mx1.tls.test"
    );
    assert_eq!(lines[3], "20 mx2.tls.test");
    assert!(
        lines[4].starts_with(
            "  127.0.0.3: STARTTLS offered; certificate not valid for mx2.tls.test: self-signed"
        ),
        "{text}"
    );
    assert_eq!(lines[5], "30 mx3.tls.test");
    assert_eq!(lines[6], "  127.0.0.4: STARTTLS not offered");
    assert_eq!(lines[7], "40 mx4.tls.test");
    assert!(
        lines[8].starts_with(
            "  127.0.0.5: STARTTLS offered; failed: TLS handshake with mx4.tls.test failed"
        ),
        "{text}"
    );
    assert_eq!(lines[9], "50 mx5.tls.test");
    assert!(lines[10].starts_with("  no addresses: "), "{text}");
    assert_eq!(lines[11], "60 mx6.tls.test");
    assert!(
        lines[12].starts_with("  127.0.0.6: no SMTP session: cannot connect"),
        "{text}"
    );
    assert_eq!(lines.len(), 13, "{text}");
    // Each probe opened one session, and delivered nothing.
    for server in &hosts.servers {
        assert_eq!(server.stats().connections_accepted, 1);
        assert!(server.memory_sink().unwrap().is_empty());
    }

    // Without the CA in [tls] ca_file, mx1's certificate is not trusted either.
    let other = SelfSigned::generate("unrelated");
    let out = outbox_tls(
        &hosts.dns,
        hosts.port,
        &other.cert,
        &["mx", "tls.test", "--tls"],
    )
    .await;
    let text = stdout(&out);
    assert!(
        text.contains("127.0.0.2: STARTTLS offered; certificate not valid for mx1.tls.test: not issued by a trusted CA"),
        "{text}"
    );
}

#[tokio::test]
async fn tls_json_adds_a_probe_per_address() {
    let hosts = tls_hosts().await;
    let out = outbox_tls(
        &hosts.dns,
        hosts.port,
        &hosts.ca.ca_cert,
        &["--json", "mx", "tls.test", "--tls"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probe = |i: usize| json[i]["tls"][0].clone();
    assert_eq!(
        probe(0),
        serde_json::json!({"address": "127.0.0.2", "starttls": true,
            "certificate_valid": true, "certificate_error": null, "error": null})
    );
    assert_eq!(probe(1)["certificate_valid"], false);
    assert!(
        probe(1)["certificate_error"]
            .as_str()
            .unwrap()
            .starts_with("self-signed")
    );
    assert_eq!(
        probe(2),
        serde_json::json!({"address": "127.0.0.4", "starttls": false,
            "certificate_valid": null, "certificate_error": null, "error": null})
    );
    assert_eq!(probe(3)["starttls"], true);
    assert!(
        probe(3)["error"]
            .as_str()
            .unwrap()
            .contains("TLS handshake")
    );
    assert!(json[4].get("addresses").is_none());
    assert!(json[4]["error"].is_string());
    assert_eq!(json[5]["tls"][0]["starttls"], false);
    assert!(
        json[5]["tls"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
    assert_eq!(
        json[0]["mta_sts"],
        serde_json::json!({"mode": "none", "reason": "no _mta-sts TXT record", "allowed": true})
    );
    // The fields of the plain listing are unchanged.
    assert_eq!(json[0]["preference"], 10);
    assert_eq!(json[0]["host"], "mx1.tls.test");
    assert_eq!(json[0]["addresses"], serde_json::json!(["127.0.0.2"]));
}

#[tokio::test]
async fn tls_shows_the_mta_sts_policy_and_the_hosts_it_leaves_out() {
    let ca = TestCa::for_names(&["mx1.sts.test", "mta-sts.sts.test"]);
    let policy = outbox_testkit::policy_server::PolicyServer::start(
        "127.0.0.4".parse().unwrap(),
        &ca.server_cert,
        &ca.server_key,
        outbox_testkit::policy_server::PolicyReply::policy(
            "version: STSv1\nmode: enforce\nmx: mx1.sts.test\nmax_age: 86400\n",
        ),
    )
    .await;
    let tls = server_tls_config_from_files(&ca.server_cert, &ca.server_key).unwrap();
    let mx1 = Server::builder()
        .tls(tls)
        .bind("127.0.0.2:0")
        .await
        .unwrap();
    let records = [
        "--mx-host=sts.test,mx1.sts.test,10",
        "--mx-host=sts.test,mx2.sts.test,20",
        "--host-record=mx1.sts.test,127.0.0.2",
        "--host-record=mta-sts.sts.test,127.0.0.4",
        "--txt-record=_mta-sts.sts.test,v=STSv1; id=42",
    ];
    let dns = Dnsmasq::start(&records.map(String::from));
    let dir = tempfile::tempdir().unwrap();
    let run = |json: bool| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_outbox"));
        if json {
            command.arg("--json");
        }
        command
            .args(["mx", "sts.test", "--tls"])
            .current_dir(dir.path())
            .env_remove("OUTBOX_CONFIG")
            .env_remove("RUST_LOG")
            .env("OUTBOX_DNS_NAMESERVERS", dns.nameserver())
            .env(
                "OUTBOX_DELIVERY_MX_PORT",
                mx1.local_addr().port().to_string(),
            )
            .env("OUTBOX_TLS_CA_FILE", &ca.ca_cert)
            .env("OUTBOX_MTA_STS_HTTPS_PORT", policy.addr.port().to_string())
            .output()
    };
    let out = run(false).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "mta-sts: enforce (fetched policy id 42)",
        "{text}"
    );
    assert_eq!(lines[1], "10 mx1.sts.test");
    assert_eq!(
        lines[2],
        "  127.0.0.2: STARTTLS offered; certificate valid for mx1.sts.test"
    );
    assert_eq!(lines[3], "20 mx2.sts.test");
    assert_eq!(
        lines[4],
        "  not an MX host of the MTA-STS policy: delivery skips it"
    );
    assert!(lines[5].starts_with("  no addresses: "), "{text}");

    let out = run(true).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json[1]["mta_sts"],
        serde_json::json!({"mode": "enforce", "reason": "fetched policy id 42", "allowed": false})
    );
    assert_eq!(json[0]["mta_sts"]["allowed"], true);

    // With [mta_sts] off, the policy is not looked up.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_outbox"))
        .args(["mx", "sts.test", "--tls"])
        .current_dir(dir.path())
        .env_remove("OUTBOX_CONFIG")
        .env("OUTBOX_DNS_NAMESERVERS", dns.nameserver())
        .env(
            "OUTBOX_DELIVERY_MX_PORT",
            mx1.local_addr().port().to_string(),
        )
        .env("OUTBOX_MTA_STS_ENABLED", "false")
        .output()
        .await
        .unwrap();
    assert!(
        stdout(&out).starts_with("mta-sts: disabled ([mta_sts] enabled = false)\n"),
        "{}",
        stdout(&out)
    );
}
