//! Software nobody here wrote, talking to the server: swaks (AUTH PLAIN/LOGIN, STARTTLS,
//! PIPELINING) and Python's smtplib (STARTTLS verified against the test CA, AUTH, a
//! dot-leading line).

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use outbox_smtp::server::{Server, StaticUsers, server_tls_config_from_files};
use outbox_testkit::ca::TestCa;

const PATIENCE: Duration = Duration::from_secs(30);

async fn tls_auth_server(ca: &TestCa) -> Server {
    let tls = server_tls_config_from_files(&ca.server_cert, &ca.server_key).unwrap();
    Server::builder()
        .hostname("localhost")
        .tls(tls)
        .authenticator(Arc::new(StaticUsers::new([("app", "s3cret")])))
        .auth_requires_tls(true)
        .require_auth(Vec::new())
        .max_size(1_000_000)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

async fn run(program: &str, args: &[String]) -> Output {
    let output = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(PATIENCE, output)
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish"))
        .unwrap_or_else(|e| {
            panic!("{program} could not run ({e}); scripts/install-peers.sh installs it")
        })
}

fn swaks_args(server: &Server, extra: &[&str]) -> Vec<String> {
    let addr = server.local_addr();
    let mut args: Vec<String> = [
        "--server",
        &addr.ip().to_string(),
        "--port",
        &addr.port().to_string(),
        "--from",
        "sender@x.test",
        "--to",
        "rcpt@y.test",
        "--helo",
        "swaks.test",
        "--body",
        "Hello from swaks\n.leading dot\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test]
async fn swaks_starttls_and_auth_plain_and_login() {
    let ca = TestCa::generate();
    let server = tls_auth_server(&ca).await;
    let sink = server.memory_sink().unwrap();
    for (i, mechanism) in ["PLAIN", "LOGIN"].into_iter().enumerate() {
        let args = swaks_args(
            &server,
            &[
                "--tls",
                "--auth",
                mechanism,
                "--auth-user",
                "app",
                "--auth-password",
                "s3cret",
                "--pipeline",
            ],
        );
        let out = run("swaks", &args).await;
        assert!(
            out.status.success(),
            "swaks AUTH {mechanism}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let got = tokio::time::timeout(PATIENCE, sink.wait_for(i + 1))
            .await
            .unwrap();
        let message = &got[i];
        assert!(message.envelope.tls);
        assert_eq!(message.envelope.authenticated.as_deref(), Some("app"));
        assert_eq!(message.envelope.rcpt_to, ["rcpt@y.test"]);
        let text = String::from_utf8_lossy(&message.data);
        assert!(
            text.contains("Hello from swaks\r\n.leading dot\r\n"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn swaks_wrong_password_and_auth_without_tls_are_refused() {
    let ca = TestCa::generate();
    let server = tls_auth_server(&ca).await;
    let wrong = swaks_args(
        &server,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "app",
            "--auth-password",
            "nope",
        ],
    );
    let out = run("swaks", &wrong).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("535 5.7.8"));
    // Without STARTTLS the server does not offer AUTH at all; swaks gives up.
    let clear = swaks_args(
        &server,
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "app",
            "--auth-password",
            "s3cret",
        ],
    );
    let out = run("swaks", &clear).await;
    assert!(!out.status.success());
    assert!(server.memory_sink().unwrap().is_empty());
}

#[tokio::test]
async fn python_smtplib_verifies_the_certificate_and_sends() {
    let ca = TestCa::generate();
    let server = tls_auth_server(&ca).await;
    let script = r#"
import smtplib, ssl, sys
host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP(host, port, local_hostname="python.test", timeout=20) as smtp:
    smtp.ehlo()
    assert smtp.has_extn("starttls") and not smtp.has_extn("auth"), smtp.esmtp_features
    smtp.starttls(context=context)
    smtp.ehlo()
    assert smtp.has_extn("pipelining") and smtp.has_extn("size"), smtp.esmtp_features
    smtp.login("app", "s3cret")
    refused = smtp.sendmail("py@x.test", ["one@y.test", "two@y.test"],
                            "Subject: from python\r\n\r\nline\r\n.starts with a dot\r\n")
    assert refused == {}, refused
print("ok")
"#;
    let addr = server.local_addr();
    let args = vec![
        "-c".to_string(),
        script.to_string(),
        "localhost".to_string(),
        addr.port().to_string(),
        ca.ca_cert.display().to_string(),
    ];
    let out = run("python3", &args).await;
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = server.memory_sink().unwrap().messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.rcpt_to, ["one@y.test", "two@y.test"]);
    assert_eq!(got[0].envelope.helo, "python.test");
    assert!(got[0].envelope.tls);
    assert!(String::from_utf8_lossy(&got[0].data).contains("line\r\n.starts with a dot\r\n"));
}
