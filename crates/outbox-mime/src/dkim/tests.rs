use std::io::Write as _;
use std::process::{Command, Stdio};

use proptest::prelude::*;

use super::*;

fn key(name: &str) -> DkimKey {
    let path = format!("{}/testdata/dkim/{name}", env!("CARGO_MANIFEST_DIR"));
    DkimKey::from_pem(&std::fs::read(&path).unwrap()).unwrap()
}

fn signer(domain: &str, selector: &str, key_file: &str) -> DkimSigner {
    DkimSigner::new(domain, selector, key(key_file))
}

const MESSAGE: &[u8] = b"From: \"Ann\" <ann@example.com>\r\nTo: bob@example.net\r\n\
Subject: Hello  there\r\n\tfolded\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\
X-Other: not signed\r\n\r\nHello  world \r\n\r\n\r\n";

/// The tags of the first DKIM-Signature field, unfolded, whitespace removed.
fn tags(signed: &[u8]) -> Vec<(String, String)> {
    let (fields, _) = canon::split(signed).unwrap();
    let value = fields[0].value();
    value
        .split(';')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let (k, v) = t.split_once('=').unwrap();
            (
                k.trim().to_string(),
                v.split_whitespace().collect::<String>(),
            )
        })
        .collect()
}

fn tag(signed: &[u8], name: &str) -> String {
    tags(signed)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Verifies with dkimpy (an independent implementation), the DNS answer given directly.
fn dkimpy_verifies(signed: &[u8], records: &[(&str, String)]) -> bool {
    let script = r#"
import sys, dkim, json
records = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    return records.get(name.decode().rstrip('.'), '').encode()
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [i for i, (k, v) in enumerate(d.headers) if k.lower() == b'dkim-signature']
ok = all(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(len(sigs))) and sigs
sys.exit(0 if ok else 1)
"#;
    let records: serde_json::Map<String, serde_json::Value> = records
        .iter()
        .map(|(name, record)| (name.to_string(), record.clone().into()))
        .collect();
    let mut child = Command::new("python3")
        .args([
            "-c",
            script,
            &serde_json::Value::Object(records).to_string(),
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3 with dkimpy (scripts/install-peers.sh)");
    child.stdin.take().unwrap().write_all(signed).unwrap();
    child.wait().unwrap().success()
}

#[test]
fn ed25519_and_rsa_signatures_verify_with_dkimpy() {
    for key_file in ["ed25519.pem", "rsa2048.pem", "rsa2048-pkcs1.pem"] {
        let s = signer("example.com", "s1", key_file);
        let record = s.key().dns_record();
        let signed = DkimSigners::new(vec![s])
            .sign(MESSAGE, 1_790_000_000)
            .unwrap();
        assert!(
            dkimpy_verifies(&signed, &[("s1._domainkey.example.com", record.clone())]),
            "{key_file}"
        );
        // The test can fail: a changed body does not verify.
        let mut tampered = signed.clone();
        let at = tampered.len() - 8;
        tampered[at] = b'X';
        assert!(!dkimpy_verifies(
            &tampered,
            &[("s1._domainkey.example.com", record)]
        ));
    }
}

#[test]
fn two_entries_for_one_domain_give_two_signatures() {
    let a = signer("example.com", "rsa", "rsa2048.pem");
    let b = signer("example.com", "ed", "ed25519.pem");
    let records = [
        ("rsa._domainkey.example.com", a.key().dns_record()),
        ("ed._domainkey.example.com", b.key().dns_record()),
    ];
    let signed = DkimSigners::new(vec![a, b]).sign(MESSAGE, 1).unwrap();
    let text = String::from_utf8_lossy(&signed);
    assert_eq!(text.matches("DKIM-Signature:").count(), 2);
    assert!(dkimpy_verifies(&signed, &records));
}

#[test]
fn present_headers_are_over_signed_and_absent_ones_left_out() {
    let signed = DkimSigners::new(vec![signer("example.com", "s", "ed25519.pem")])
        .sign(MESSAGE, 42)
        .unwrap();
    assert_eq!(
        tag(&signed, "h"),
        "From:From:To:To:Subject:Subject:Date:Date:Message-ID:Message-ID:\
         MIME-Version:MIME-Version:Content-Type:Content-Type"
    );
    assert_eq!(tag(&signed, "t"), "42");
    assert_eq!(tag(&signed, "c"), "relaxed/relaxed");
    assert_eq!(tag(&signed, "d"), "example.com");
    assert_eq!(tag(&signed, "s"), "s");
    // bh= of the relaxed body "Hello world\r\n".
    let expected = ring::digest::digest(&ring::digest::SHA256, b"Hello world\r\n");
    assert_eq!(tag(&signed, "bh"), STANDARD.encode(expected));
}

#[test]
fn a_header_added_after_signing_breaks_the_signature() {
    let s = signer("example.com", "s", "ed25519.pem");
    let record = s.key().dns_record();
    let signed = DkimSigners::new(vec![s]).sign(MESSAGE, 1).unwrap();
    let text = String::from_utf8(signed).unwrap();
    let added = text.replacen("To: bob", "Subject: added\r\nTo: bob", 1);
    assert!(dkimpy_verifies(
        text.as_bytes(),
        &[("s._domainkey.example.com", record.clone())]
    ));
    assert!(!dkimpy_verifies(
        added.as_bytes(),
        &[("s._domainkey.example.com", record)]
    ));
}

#[test]
fn configured_headers_replace_the_default_list_and_keep_from() {
    let s =
        signer("example.com", "s", "ed25519.pem").with_headers(["Subject", "subject", "X-Other"]);
    assert_eq!(s.headers(), ["From", "Subject", "X-Other"]);
    let signed = DkimSigners::new(vec![s]).sign(MESSAGE, 1).unwrap();
    assert_eq!(
        tag(&signed, "h"),
        "From:From:Subject:Subject:X-Other:X-Other"
    );
}

#[test]
fn list_unsubscribe_headers_are_signed_when_present() {
    let message = b"From: a@example.com\r\nList-Unsubscribe: <https://x.example/u/1>\r\n\
List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n";
    let signed = DkimSigners::new(vec![signer("example.com", "s", "ed25519.pem")])
        .sign(message, 1)
        .unwrap();
    assert_eq!(
        tag(&signed, "h"),
        "From:From:List-Unsubscribe:List-Unsubscribe:List-Unsubscribe-Post:List-Unsubscribe-Post"
    );
}

#[test]
fn signature_lines_stay_within_78_characters() {
    let signers = DkimSigners::new(vec![
        signer(
            "a-rather-long-subdomain.of-a-long-domain.example.com",
            "selector-2026-11",
            "rsa2048.pem",
        ),
        signer(
            "a-rather-long-subdomain.of-a-long-domain.example.com",
            "e",
            "ed25519.pem",
        ),
    ]);
    let message = b"From: x@a-rather-long-subdomain.of-a-long-domain.example.com\r\nTo: y@z\r\n\
Cc: c@z\r\nReply-To: r@z\r\nSubject: s\r\nDate: d\r\nMessage-ID: <m@z>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain\r\n\r\nbody\r\n";
    let signed = signers.sign(message, u64::MAX).unwrap();
    let text = String::from_utf8(signed).unwrap();
    let header = text.split("\r\nFrom:").next().unwrap();
    for line in header.split("\r\n") {
        assert!(line.len() <= 78, "{} chars: {line}", line.len());
    }
}

#[test]
fn the_most_specific_entry_signs_and_subdomains_match() {
    let signers = DkimSigners::new(vec![
        signer("example.com", "parent", "ed25519.pem"),
        signer("news.example.com", "child", "ed25519.pem"),
        signer("news.example.com", "child2", "rsa2048.pem"),
    ]);
    let plan = |from: &str| -> Result<Vec<String>, Unsigned> {
        let message = format!("From: {from}\r\n\r\n");
        signers
            .plan(message.as_bytes())
            .map(|s| s.iter().map(|s| s.selector().to_string()).collect())
    };
    assert_eq!(plan("a@example.com").unwrap(), ["parent"]);
    assert_eq!(plan("a@deep.sub.example.com").unwrap(), ["parent"]);
    assert_eq!(
        plan("Ann <a@NEWS.example.com>").unwrap(),
        ["child", "child2"]
    );
    assert_eq!(plan("a@x.news.example.com").unwrap(), ["child", "child2"]);
    assert_eq!(
        plan("a@badexample.com").unwrap_err(),
        Unsigned::NoEntry {
            domain: "badexample.com".into()
        }
    );
}

#[test]
fn bad_messages_go_unsigned_with_a_reason() {
    let signers = DkimSigners::new(vec![signer("example.com", "s", "ed25519.pem")]);
    let cases: [(&[u8], Unsigned); 5] = [
        (b"To: a@example.com\r\n\r\nbody", Unsigned::NoFrom),
        (
            b"From: a@example.com\r\nFrom: b@example.com\r\n\r\n",
            Unsigned::SeveralFrom { count: 2 },
        ),
        (b"From: undisclosed\r\n\r\n", Unsigned::FromWithoutDomain),
        (b"From: <a@>\r\n\r\n", Unsigned::FromWithoutDomain),
        (
            b"From: a@example.com\r\ngarbage\r\n\r\n",
            Unsigned::MalformedHeader,
        ),
    ];
    for (message, reason) in cases {
        assert_eq!(signers.sign(message, 1).unwrap_err(), reason);
    }
    assert_eq!(
        Unsigned::NoEntry {
            domain: "example.net".into()
        }
        .to_string(),
        "no [[dkim]] entry for example.net"
    );
}

#[test]
fn small_rsa_keys_are_refused_and_pkcs1_loads() {
    let pem = std::fs::read(format!(
        "{}/testdata/dkim/rsa1024.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let err = DkimKey::from_pem(&pem).unwrap_err();
    assert_eq!(err, KeyError::RsaTooSmall { bits: 1024 });
    assert_eq!(
        err.to_string(),
        "the RSA key has 1024 bits; DKIM keys need at least 2048"
    );
    assert_eq!(key("rsa2048-pkcs1.pem").algorithm(), Algorithm::RsaSha256);
    assert_eq!(key("rsa2048.pem").algorithm(), Algorithm::RsaSha256);
    assert_eq!(key("ed25519.pem").algorithm(), Algorithm::Ed25519Sha256);
    // Both RSA files hold the same key: one record.
    assert_eq!(
        key("rsa2048.pem").dns_record(),
        key("rsa2048-pkcs1.pem").dns_record()
    );
    assert!(format!("{:?}", key("rsa2048.pem")).contains("RsaSha256"));
}

#[test]
fn the_rsa_record_is_the_subject_public_key_info_openssl_prints() {
    let path = format!("{}/testdata/dkim/rsa2048.pem", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("openssl")
        .args(["pkey", "-in", &path, "-pubout", "-outform", "DER"])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    let k = key("rsa2048.pem");
    assert_eq!(k.public_key(), out.stdout);
    assert!(k.matches_public_key(&out.stdout));
    assert!(!key("ed25519.pem").matches_public_key(&out.stdout));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_messages_never_panic(
        header in proptest::collection::vec(any::<u8>(), 0..300),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        from in "[ -~]{0,40}",
    ) {
        let signers = DkimSigners::new(vec![signer("example.com", "s", "ed25519.pem")]);
        let mut message = format!("From: {from}\r\n").into_bytes();
        message.extend_from_slice(&header);
        message.extend_from_slice(b"\r\n\r\n");
        message.extend_from_slice(&body);
        let _ = signers.sign(&message, 1);
        let _ = signers.sign(&header, 1);
        let _ = signers.plan(&body);
    }
}
