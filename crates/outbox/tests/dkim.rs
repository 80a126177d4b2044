//! DKIM end to end: messages Outbox delivered (queued, merged, `send --now`) into an
//! in-process SMTP server are verified by two independent implementations — dkimpy and
//! Perl's Mail::DKIM — fetching the public keys from a dnsmasq on loopback; `queue show`
//! says how a message is signed; `dkim keygen` then `dkim check` against the record it
//! printed.

mod mail_support;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mail_support::{Workdir, stderr, stdout};
use outbox_smtp::server::Server;
use outbox_testkit::dnsmasq::Dnsmasq;

const DOMAIN: &str = "example.test";

fn testdata(name: &str) -> String {
    format!(
        "{}/../outbox-mime/testdata/dkim/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `--txt-record` for dnsmasq: strings of at most 255 bytes (RFC 1035 §3.3.14).
fn txt_record(name: &str, record: &str) -> String {
    let chunks: Vec<String> = record
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!("--txt-record={name},{}", chunks.join(","))
}

/// The `v=DKIM1; k=...; p=...` record of a PEM key, as `outbox dkim keygen` prints it.
fn record_of(key_file: &str) -> String {
    let key = outbox_mime::dkim::DkimKey::from_pem(&std::fs::read(key_file).unwrap()).unwrap();
    key.dns_record()
}

/// A dnsmasq publishing the given `(selector, key file)` pairs under [`DOMAIN`].
fn dns(keys: &[(&str, &str)]) -> Dnsmasq {
    let records: Vec<String> = keys
        .iter()
        .map(|(selector, file)| {
            txt_record(&format!("{selector}._domainkey.{DOMAIN}"), &record_of(file))
        })
        .collect();
    Dnsmasq::start(&records)
}

/// A work dir whose outbox.toml has one `[[dkim]]` entry per `(selector, key file)`.
fn workdir(keys: &[(&str, &str)]) -> Workdir {
    let work = Workdir::new();
    let mut config = String::new();
    for (selector, file) in keys {
        config.push_str(&format!(
            "[[dkim]]\ndomain = \"{DOMAIN}\"\nselector = \"{selector}\"\nkey_file = {file:?}\n"
        ));
    }
    work.write("outbox.toml", config);
    work
}

fn run_with_stdin(mut command: Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the verifier");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// dkimpy: every DKIM-Signature of `message` verifies, keys looked up in `dns`.
fn dkimpy(message: &[u8], dns: &Dnsmasq) -> Result<(), String> {
    const SCRIPT: &str = r#"
import sys, dkim, dns.resolver
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = ['127.0.0.1']
resolver.port = int(sys.argv[1])
resolver.lifetime = 5
def dnsfunc(name, timeout=5):
    try:
        answer = resolver.resolve(name.decode().rstrip('.'), 'TXT')
    except Exception:
        return None
    return b''.join(b''.join(r.strings) for r in answer)
message = sys.stdin.buffer.read()
d = dkim.DKIM(message)
count = sum(1 for k, _ in d.headers if k.lower() == b'dkim-signature')
if count == 0:
    sys.exit('no DKIM-Signature')
for i in range(count):
    if not d.verify(idx=i, dnsfunc=dnsfunc):
        sys.exit(f'signature {i} does not verify')
print(count)
"#;
    let mut command = Command::new("python3");
    command.args(["-c", SCRIPT, &dns.addr.port().to_string()]);
    let out = run_with_stdin(command, message);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("dkimpy: {}{}", stdout(&out), stderr(&out)))
    }
}

/// Perl's Mail::DKIM: every RSA signature passes (this version knows no Ed25519), at least
/// one, keys looked up in `dns`.
fn mail_dkim(message: &[u8], dns: &Dnsmasq) -> Result<(), String> {
    const SCRIPT: &str = r#"
use strict;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;
my $resolver = Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $ARGV[0],
    recurse => 1, udp_timeout => 5, tcp_timeout => 5);
Mail::DKIM::DNS::resolver($resolver);
my $verifier = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) { $line =~ s/\r?\n\z/\r\n/; $verifier->PRINT($line); }
$verifier->CLOSE;
my @signatures = $verifier->signatures;
die "no signatures\n" unless @signatures;
my $passed = 0;
for my $s (@signatures) {
    my $r = $s->result;
    my $detail = $s->result_detail // '';
    # Debian 12's Mail::DKIM predates RFC 8463: it reports Ed25519 signatures as an
    # unsupported algorithm, which a verifier ignores (RFC 6376 section 6.1.1).
    next if $r eq 'invalid' && $detail =~ /unsupported algorithm ed25519-sha256/;
    die "d=" . $s->domain . " s=" . $s->selector . ": $r ($detail)\n" unless $r eq 'pass';
    $passed++;
}
die "no signature it can verify\n" unless $passed;
print "$passed\n";
"#;
    let mut command = Command::new("perl");
    command.args(["-e", SCRIPT, &dns.addr.port().to_string()]);
    let out = run_with_stdin(command, message);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("Mail::DKIM: {}{}", stdout(&out), stderr(&out)))
    }
}

fn both_verify(message: &[u8], dns: &Dnsmasq) {
    dkimpy_verifies(message, dns);
    let text = String::from_utf8_lossy(message);
    if let Err(err) = mail_dkim(message, dns) {
        panic!("{err}\n{text}");
    }
}

fn dkimpy_verifies(message: &[u8], dns: &Dnsmasq) {
    if let Err(err) = dkimpy(message, dns) {
        panic!("{err}\n{}", String::from_utf8_lossy(message));
    }
}

fn signature_count(message: &[u8]) -> usize {
    String::from_utf8_lossy(message)
        .matches("\r\nDKIM-Signature:")
        .count()
        + usize::from(message.starts_with(b"DKIM-Signature:"))
}

/// Queues one message from `from` and returns its id.
fn queue(work: &Workdir, from: &str, to: &str) -> String {
    let out = work.run(&[
        "send",
        "--from",
        from,
        "--to",
        to,
        "--cc",
        "copy@other.test",
        "--subject",
        "Quarterly  report",
        "--body",
        "Hello,\n\nthe report is attached in spirit.   \n\n\n",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn an_rsa_signed_message_verifies_with_dkimpy_and_mail_dkim() {
    let keys = [("s2026", testdata("rsa2048.pem"))];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(s, f)| (*s, f.as_str())).collect();
    let dns = dns(&keys);
    let work = workdir(&keys);
    queue(&work, "Ann <ann@example.test>", "bob@other.test");
    let got = work.deliver_all();
    assert_eq!(got.len(), 1);
    let data = &got[0].data;
    assert_eq!(signature_count(data), 1);
    assert!(data.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;"));
    both_verify(data, &dns);
}

#[test]
fn an_ed25519_signed_message_verifies_and_a_subdomain_uses_the_parent_entry() {
    let keys = [("ed", testdata("ed25519.pem"))];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(s, f)| (*s, f.as_str())).collect();
    let dns = dns(&keys);
    let work = workdir(&keys);
    queue(&work, "news@mail.example.test", "bob@other.test");
    let got = work.deliver_all();
    let data = &got[0].data;
    assert!(data.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256;"));
    dkimpy_verifies(data, &dns);
    assert!(
        mail_dkim(data, &dns)
            .unwrap_err()
            .contains("no signature it can verify"),
        "Debian 12's Mail::DKIM does not verify Ed25519; when it learns to, verify here too"
    );
}

#[test]
fn two_entries_give_two_signatures_that_both_verify() {
    let keys = [
        ("rsa", testdata("rsa2048-pkcs1.pem")),
        ("ed", testdata("ed25519.pem")),
    ];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(s, f)| (*s, f.as_str())).collect();
    let dns = dns(&keys);
    let work = workdir(&keys);
    queue(&work, "ann@example.test", "bob@other.test");
    let got = work.deliver_all();
    let data = &got[0].data;
    assert_eq!(signature_count(data), 2);
    both_verify(data, &dns);
}

#[test]
fn merge_messages_are_signed_per_recipient_after_the_merge() {
    let keys = [("s1", testdata("rsa2048.pem"))];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(s, f)| (*s, f.as_str())).collect();
    let dns = dns(&keys);
    let work = workdir(&keys);
    work.write(
        "people.csv",
        "email,First\nann@y.test,Ann\nbob@z.test,Bob\ncarl@y.test,Carl\n",
    );
    let out = work.run(&[
        "bulk",
        "--recipients",
        "people.csv",
        "--from",
        "News <news@example.test>",
        "--subject",
        "Hello #First#",
        "--body",
        "Dear #First#, this is for #email#.",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = work.deliver_all();
    assert_eq!(got.len(), 3, "one transaction per recipient");
    let mut hashes = Vec::new();
    for message in &got {
        let text = String::from_utf8_lossy(&message.data);
        let first = ["Ann", "Bob", "Carl"]
            .into_iter()
            .find(|name| text.contains(&format!("Subject: Hello {name}\r\n")))
            .unwrap_or_else(|| panic!("merged subject: {text}"));
        assert!(text.contains(&format!("Dear {first},")), "{text}");
        assert_eq!(signature_count(&message.data), 1);
        both_verify(&message.data, &dns);
        let bh = text.split("bh=").nth(1).unwrap().split(';').next().unwrap();
        hashes.push(bh.split_whitespace().collect::<String>());
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 3, "each recipient's body hashed: {hashes:?}");
}

/// A bulk newsletter with one-click unsubscribe: each copy's List-Unsubscribe names its
/// own recipient, the signature covers both unsubscribe headers (and over-signs them, so
/// that none can be added), and both verifiers accept every copy.
#[test]
fn unsubscribe_headers_are_per_recipient_and_signed() {
    let keys = [("s1", testdata("rsa2048.pem"))];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(s, f)| (*s, f.as_str())).collect();
    let dns = dns(&keys);
    let work = workdir(&keys);
    let mut config = std::fs::read_to_string(work.path().join("outbox.toml")).unwrap();
    config.push_str(
        "[unsubscribe]\nbase_url = \"https://mail.example.test\"\n\
         secret = \"dkim-test-unsubscribe-secret\"\nmailto = \"unsubscribe@example.test\"\n",
    );
    work.write("outbox.toml", config);
    work.write("people.csv", "email\nann@y.test\nbob@z.test\n");
    let out = work.run(&[
        "bulk",
        "--recipients",
        "people.csv",
        "--from",
        "News <news@example.test>",
        "--subject",
        "Weekly",
        "--body",
        "This week.",
        "--unsubscribe",
        "--list",
        "weekly",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = work.queue_list();
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let show = work.run(&["--json", "queue", "show", &id]);
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(
        show["unsubscribe"],
        serde_json::json!({"list": "weekly", "configured": true})
    );
    let show = stdout(&work.run(&["queue", "show", &id]));
    assert!(
        show.contains("unsubscribe: one-click links for list weekly\n"),
        "{show}"
    );
    let got = work.deliver_all();
    assert_eq!(got.len(), 2, "one transaction per recipient");
    let links = outbox_queue::Unsubscribe::new(
        "https://mail.example.test",
        b"dkim-test-unsubscribe-secret",
        None,
    )
    .unwrap();
    for message in &got {
        let text = String::from_utf8_lossy(&message.data);
        let token = text
            .split("List-Unsubscribe: <https://mail.example.test/u/")
            .nth(1)
            .and_then(|rest| rest.split('>').next())
            .unwrap_or_else(|| panic!("no link: {text}"));
        let named = links.verify(token).unwrap();
        assert_eq!(named.address, message.envelope.rcpt_to[0]);
        assert_eq!(named.list, "weekly");
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        let h = text.split(" h=").nth(1).unwrap().split(';').next().unwrap();
        let h: String = h
            .split_whitespace()
            .collect::<String>()
            .to_ascii_lowercase();
        let count = |name: &str| h.split(':').filter(|n| *n == name).count();
        assert_eq!(count("list-unsubscribe"), 2, "signed and over-signed: {h}");
        assert_eq!(count("list-unsubscribe-post"), 2, "{h}");
        both_verify(&message.data, &dns);
    }
}

#[test]
fn send_now_signs_and_an_added_subject_breaks_the_signature() {
    let keys = [("s1", testdata("rsa2048.pem"))];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(s, f)| (*s, f.as_str())).collect();
    let dns = dns(&keys);
    let work = workdir(&keys);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let got = runtime.block_on(async {
        let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
        let relay = format!("smtp://{}?starttls=off", server.local_addr());
        let mut command = tokio::process::Command::from(work.outbox(&[
            "send",
            "--now",
            "--relay",
            &relay,
            "--from",
            "ann@example.test",
            "--to",
            "bob@other.test",
            "--subject",
            "now",
            "--body",
            "sent at once",
        ]));
        command.kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("send --now finishes")
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let got = server.memory_sink().unwrap().messages();
        server.shutdown().await;
        got
    });
    assert_eq!(got.len(), 1);
    let data = &got[0].data;
    both_verify(data, &dns);

    // Over-signing: a second Subject added in transit fails both verifiers.
    let text = String::from_utf8(data.clone()).unwrap();
    let tampered = text.replacen(
        "\r\nSubject: now\r\n",
        "\r\nSubject: now\r\nSubject: win a prize\r\n",
        1,
    );
    assert_ne!(tampered, text);
    assert!(dkimpy(tampered.as_bytes(), &dns).is_err());
    assert!(mail_dkim(tampered.as_bytes(), &dns).is_err());
}

#[test]
fn queue_show_says_how_a_message_is_signed() {
    let keys = [
        ("rsa", testdata("rsa2048.pem")),
        ("ed", testdata("ed25519.pem")),
    ];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(s, f)| (*s, f.as_str())).collect();
    let work = workdir(&keys);
    let signed = queue(&work, "ann@example.test", "bob@other.test");
    let unsigned = queue(&work, "ann@example.net", "bob@other.test");

    let out = work.run(&["queue", "show", &signed]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("dkim:      d=example.test s=rsa rsa-sha256\n"),
        "{text}"
    );
    assert!(
        text.contains("dkim:      d=example.test s=ed ed25519-sha256\n"),
        "{text}"
    );

    let out = work.run(&["queue", "show", &unsigned]);
    let text = stdout(&out);
    assert!(
        text.contains("dkim:      unsigned (no [[dkim]] entry for example.net)\n"),
        "{text}"
    );

    let out = work.run(&["--json", "queue", "show", &signed]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["dkim"]["signed"], true);
    assert_eq!(
        json["dkim"]["signatures"],
        serde_json::json!([
            "d=example.test s=rsa rsa-sha256",
            "d=example.test s=ed ed25519-sha256"
        ])
    );
    let out = work.run(&["--json", "queue", "show", &unsigned]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["dkim"]["signed"], false);
    assert_eq!(json["dkim"]["reason"], "no [[dkim]] entry for example.net");
}

#[test]
fn a_bad_key_file_stops_deliver_and_names_the_file() {
    let work = Workdir::new();
    let key = testdata("rsa1024.pem");
    work.write(
        "outbox.toml",
        format!("[[dkim]]\ndomain = \"{DOMAIN}\"\nselector = \"s\"\nkey_file = {key:?}\n"),
    );
    let out = work.run(&["deliver", "--until-empty"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("rsa1024.pem: the RSA key has 1024 bits"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE"), "{err}");
}

#[test]
fn keygen_then_check_against_the_printed_record() {
    let work = Workdir::new();
    for (algorithm, selector) in [("ed25519", "e1"), ("rsa", "r1")] {
        let file = format!("{selector}.pem");
        let out = work.run(&[
            "dkim",
            "keygen",
            "--domain",
            DOMAIN,
            "--selector",
            selector,
            "--algorithm",
            algorithm,
            "--out",
            &file,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let line = stdout(&out);
        assert_eq!(line.lines().count(), 1, "{line}");
        let prefix = format!("{selector}._domainkey.{DOMAIN} TXT \"v=DKIM1; k={algorithm}; p=");
        assert!(
            line.starts_with(&prefix) && line.ends_with("\"\n"),
            "{line}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(work.path().join(&file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Never over an existing key.
        let again = work.run(&[
            "dkim",
            "keygen",
            "--domain",
            DOMAIN,
            "--selector",
            selector,
            "--out",
            &file,
        ]);
        assert!(!again.status.success());
        assert!(stderr(&again).contains("exists; not overwriting it"));
    }
    let printed = |selector: &str| {
        let pem = std::fs::read(work.path().join(format!("{selector}.pem"))).unwrap();
        outbox_mime::dkim::DkimKey::from_pem(&pem)
            .unwrap()
            .dns_record()
    };
    let dns = Dnsmasq::start(&[
        txt_record(&format!("e1._domainkey.{DOMAIN}"), &printed("e1")),
        txt_record(&format!("r1._domainkey.{DOMAIN}"), &printed("r1")),
        txt_record(&format!("old._domainkey.{DOMAIN}"), "v=DKIM1; k=rsa; p="),
    ]);
    let check = |selector: &str, key: &str| {
        work.outbox(&[
            "dkim",
            "check",
            "--domain",
            DOMAIN,
            "--selector",
            selector,
            "--key",
            key,
        ])
        .env("OUTBOX_DNS_NAMESERVERS", dns.nameserver())
        .output()
        .unwrap()
    };
    for selector in ["e1", "r1"] {
        let out = check(selector, &format!("{selector}.pem"));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("the published key matches"));
    }
    let wrong = check("e1", "r1.pem");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("the record is k=ed25519, the key is rsa"),
        "{}",
        stderr(&wrong)
    );
    let revoked = check("old", "r1.pem");
    assert_eq!(revoked.status.code(), Some(1));
    assert!(
        stderr(&revoked).contains("revoked (empty p=)"),
        "{}",
        stderr(&revoked)
    );
    let missing = check("none", "r1.pem");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no TXT record"),
        "{}",
        stderr(&missing)
    );
    let different = check("r1", &testdata("rsa2048.pem"));
    assert_eq!(different.status.code(), Some(1));
    assert!(
        stderr(&different).contains("p= is a different key"),
        "{}",
        stderr(&different)
    );

    // Without --key, the [[dkim]] entry's key_file.
    work.write(
        "outbox.toml",
        format!("[[dkim]]\ndomain = \"{DOMAIN}\"\nselector = \"r1\"\nkey_file = \"r1.pem\"\n"),
    );
    let out = work
        .outbox(&["dkim", "check", "--domain", DOMAIN, "--selector", "r1"])
        .env("OUTBOX_DNS_NAMESERVERS", dns.nameserver())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
