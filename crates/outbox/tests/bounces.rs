//! Bounces and complaints through `outbox serve` (issue 12), on SQLite and PostgreSQL:
//! - a real Postfix takes a message from Outbox for an unknown local user, and sends its
//!   RFC 3464 bounce to the VERP return path, which its transport map routes to Outbox's
//!   listener: the recipient becomes `bounced` and its address suppressed;
//! - Python's smtplib, without AUTH, delivers an ARF complaint, a plain-text bounce and a
//!   tampered token to the bounce domain, and is refused every other recipient.

mod mail_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_support::{Workdir, python, serve, stderr, stdout};
use outbox_queue::{
    FeedbackFilter, MessageStatus, RecipientState, Store, SuppressionFilter, SuppressionReason,
};
use outbox_smtp::server::{MemorySink, Server};
use outbox_testkit::{TestStore, message};

const DOMAIN: &str = "bounces.example.test";

/// Writes `outbox.toml`: the store, the relay serve delivers to, a listener that requires
/// AUTH, and the bounce domain.
fn configure(work: &Workdir, database: &str, relay: &str) {
    work.write(
        "outbox.toml",
        format!(
            "database = \"{database}\"\n\
             [delivery]\nrelay = \"{relay}\"\nhelo_name = \"outbox.test\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [smtp_listener]\nlisten = \"127.0.0.1:0\"\nusers = {{ app = \"secret\" }}\n\
             [bounces]\ndomain = \"{DOMAIN}\"\nsecret = \"a-test-secret-of-32-characters!!\"\n\
             [complaints]\naddress = \"fbl@example.test\"\n"
        ),
    );
}

/// Polls the store until `check` holds (60 s at most: a Postfix round trip takes seconds).
async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn state_of(store: &dyn Store, id: &str, address: &str) -> (RecipientState, String) {
    let detail = store.detail(id).await.unwrap();
    let r = detail
        .recipients
        .iter()
        .find(|r| r.address == address)
        .unwrap_or_else(|| panic!("{address} in {detail:?}"));
    (r.state, r.last_reply.clone().unwrap_or_default())
}

async fn suppressions(store: &dyn Store) -> BTreeMap<String, SuppressionReason> {
    store
        .suppressions_list(SuppressionFilter::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.address, s.reason))
        .collect()
}

// --- A real Postfix bounce ----------------------------------------------------------------

/// A throwaway Postfix (bench/postfix-relay.sh), stopped when dropped.
struct Postfix {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Postfix {
    /// Postfix on `smtpd_port`, final destination of `unknown.test` (whose every user is
    /// unknown: it takes the message, then bounces it), sending mail for the bounce domain
    /// to `listener` (Outbox's SMTP listener).
    fn start(smtpd_port: u16, listener: &str) -> Postfix {
        let tmp = tempfile::tempdir().expect("temp dir");
        // Postfix's daemons run as the postfix user and must reach the queue in it.
        set_mode(tmp.path(), 0o755);
        let dir = tmp.path().join("postfix");
        let (host, port) = listener.rsplit_once(':').expect("HOST:PORT");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/postfix-relay.sh");
        let status = Command::new("bash")
            .arg(&script)
            .args(["start", dir.to_str().unwrap()])
            .args([
                smtpd_port.to_string(),
                outbox_testkit::free_tcp_port().to_string(),
            ])
            .env(
                "POSTFIX_RELAY_POSTCONF",
                format!(
                    "transport_maps = inline:{{{DOMAIN}=smtp:[{host}]:{port}}}\n\
                     mydestination = unknown.test\nlocal_recipient_maps =\n\
                     myhostname = mx.postfix.test"
                ),
            )
            .status()
            .expect("run bench/postfix-relay.sh (Postfix: scripts/install-peers.sh)");
        assert!(status.success(), "Postfix did not start (see PEERS.md)");
        Postfix { dir, _tmp: tmp }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/postfix-relay.sh");
        let _ = Command::new("bash")
            .arg(script)
            .args(["stop", self.dir.to_str().unwrap()])
            .status();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

async fn postfix_bounce_marks_the_recipient_bounced(ts: TestStore) {
    let smtpd_port = outbox_testkit::free_tcp_port();
    let work = Workdir::new();
    configure(
        &work,
        &ts.url,
        &format!("smtp://127.0.0.1:{smtpd_port}?starttls=off"),
    );
    let (_serve, listener) = serve(&work);
    let _postfix = tokio::task::spawn_blocking(move || Postfix::start(smtpd_port, &listener))
        .await
        .unwrap();

    let id = ts
        .store
        .enqueue(message("to a dead address", &["no-such-user@unknown.test"]))
        .await
        .unwrap()
        .id;
    let store = ts.store.clone();
    let id_ = id.clone();
    wait_for("Postfix's bounce to reach outbox", async || {
        state_of(&*store, &id_, "no-such-user@unknown.test").await.0 == RecipientState::Bounced
    })
    .await;

    let (_, reply) = state_of(&*ts.store, &id, "no-such-user@unknown.test").await;
    assert_eq!(reply, "bounced: 5.1.1 unknown user: \"no-such-user\"");
    assert_eq!(ts.store.status(&id).await.unwrap(), MessageStatus::Error);
    let reports = ts
        .store
        .feedback_list(FeedbackFilter::default())
        .await
        .unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report.format, "dsn", "Postfix writes RFC 3464: {report:?}");
    assert_eq!(report.sender, "", "a bounce has the null sender");
    assert_eq!(report.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(report.address.as_deref(), Some("no-such-user@unknown.test"));
    assert_eq!(report.status.as_deref(), Some("5.1.1"), "{report:?}");
    assert!(report.diagnostic.is_some(), "{report:?}");
    assert_eq!(
        suppressions(&*ts.store).await,
        BTreeMap::from([(
            "no-such-user@unknown.test".to_string(),
            SuppressionReason::Bounced
        )])
    );
    // The CLI shows it.
    let out = work.run(&["--json", "bounces", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed[0]["applied"], "bounced", "{listed}");
    assert_eq!(listed[0]["kind"], "bounce", "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_bounce_marks_the_recipient_bounced_sqlite() {
    postfix_bounce_marks_the_recipient_bounced(TestStore::sqlite(Default::default()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_bounce_marks_the_recipient_bounced_postgres() {
    postfix_bounce_marks_the_recipient_bounced(TestStore::postgres(Default::default()).await).await;
}

// --- Reports from an unauthenticated client -----------------------------------------------

/// Sends each report without AUTH, after checking that any other recipient is refused.
/// argv: listener, then (rcpt, file) pairs. Prints one line per step.
const SEND_REPORTS: &str = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(':', 1)
s = smtplib.SMTP(host, int(port), local_hostname='mx.reporter.test', timeout=30)
s.ehlo()
code, _ = s.mail('')
print('MAIL', code)
code, _ = s.rcpt('victim@elsewhere.test')
print('RCPT other', code)
s.rset()
pairs = sys.argv[2:]
for rcpt, path in zip(pairs[::2], pairs[1::2]):
    s.mail('')
    code, _ = s.rcpt(rcpt)
    code2, _ = s.rcpt('someone@elsewhere.test')
    data = open(path, 'rb').read()
    code3, text = s.data(data)
    print('REPORT', code, code2, code3)
s.quit()
"#;

fn arf(return_path: &str) -> String {
    format!(
        "From: <fbl@isp.test>\r\nTo: <fbl@example.test>\r\nSubject: complaint\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\r\n\r\n\
--arf\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
--arf\r\nContent-Type: message/feedback-report\r\n\r\n\
Feedback-Type: abuse\r\nUser-Agent: isp/1.0\r\nVersion: 1\r\n\
Original-Mail-From: <{return_path}>\r\nOriginal-Rcpt-To: <b@x.test>\r\n\r\n\
--arf\r\nContent-Type: message/rfc822\r\n\r\n\
Return-Path: <{return_path}>\r\nFrom: app@example.com\r\nSubject: fb\r\nMessage-ID: <m1@example.com>\r\n\r\nbody\r\n\
--arf--\r\n"
    )
}

const PLAIN_BOUNCE: &str = "From: MAILER-DAEMON@old.test\r\nSubject: failure notice\r\n\r\n\
Hi. This is the qmail-send program at old.test.\r\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\r\n\
<a@x.test>:\r\nRemote host said: 550 5.1.1 mailbox unavailable\r\n";

async fn reports_from_anyone_only_to_the_bounce_domain(ts: TestStore) {
    // serve delivers into an in-process server, which shows each VERP return path.
    let sink = Arc::new(MemorySink::new());
    let relay = Server::builder()
        .sink(sink.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let work = Workdir::new();
    configure(
        &work,
        &ts.url,
        &format!("smtp://{}?starttls=off", relay.local_addr()),
    );
    let (_serve, listener) = serve(&work);
    let id = ts
        .store
        .enqueue(message("fb", &["a@x.test", "b@x.test", "c@x.test"]))
        .await
        .unwrap()
        .id;
    let received = tokio::time::timeout(Duration::from_secs(60), sink.wait_for(3))
        .await
        .expect("three transactions: one recipient each");
    let mut paths = BTreeMap::new();
    for m in &received {
        assert_eq!(
            m.envelope.rcpt_to.len(),
            1,
            "one recipient per VERP transaction"
        );
        let from = &m.envelope.mail_from;
        assert!(
            from.starts_with("bounces+") && from.ends_with(DOMAIN),
            "{from}"
        );
        assert!(
            String::from_utf8_lossy(&m.data).contains("From: app@example.com"),
            "the header From is unchanged"
        );
        paths.insert(m.envelope.rcpt_to[0].clone(), from.clone());
    }
    let store = ts.store.clone();
    let id_ = id.clone();
    wait_for("the three recipients sent", async || {
        store.status(&id_).await.unwrap() == MessageStatus::Sent
    })
    .await;

    // a: a plain-text bounce to its return path, upper-cased by a server that folds
    // local parts. b: a complaint to the complaints address, matched by the return path
    // in the report. c: its token with one character changed.
    let mut tampered = paths["c@x.test"].clone().into_bytes();
    let at = "bounces+".len() + 3;
    tampered[at] = if tampered[at] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let files = [
        (
            paths["a@x.test"].to_ascii_uppercase(),
            work.write("a.eml", PLAIN_BOUNCE),
        ),
        (
            "fbl@example.test".to_string(),
            work.write("b.eml", arf(&paths["b@x.test"])),
        ),
        (
            tampered.clone(),
            work.write("c.eml", PLAIN_BOUNCE.replace("<a@x.test>", "<c@x.test>")),
        ),
    ];
    let mut args = vec![listener.clone()];
    for (rcpt, path) in &files {
        args.push(rcpt.clone());
        args.push(path.to_str().unwrap().to_string());
    }
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python(SEND_REPORTS, &args)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "smtplib: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "MAIL 250\nRCPT other 530\nREPORT 250 530 250\nREPORT 250 530 250\nREPORT 250 530 250\n",
        "only the bounce domain and the complaints address, without AUTH"
    );

    let (state, reply) = state_of(&*ts.store, &id, "a@x.test").await;
    assert_eq!(
        (state, reply.as_str()),
        (RecipientState::Bounced, "bounced: 5.1.1")
    );
    assert_eq!(
        state_of(&*ts.store, &id, "b@x.test").await.0,
        RecipientState::Complained
    );
    assert_eq!(
        state_of(&*ts.store, &id, "c@x.test").await.0,
        RecipientState::Sent
    );
    assert_eq!(ts.store.status(&id).await.unwrap(), MessageStatus::Error);
    assert_eq!(
        suppressions(&*ts.store).await,
        BTreeMap::from([
            ("a@x.test".to_string(), SuppressionReason::Bounced),
            ("b@x.test".to_string(), SuppressionReason::Complained),
        ])
    );
    // The tampered one is kept, unmatched, with its text.
    let unmatched = ts
        .store
        .feedback_list({
            let mut feedback_filter = FeedbackFilter::default();
            feedback_filter.unmatched = true;
            feedback_filter
        })
        .await
        .unwrap();
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert_eq!(unmatched[0].format, "text");
    let shown = work.run(&["bounces", "show", &unmatched[0].id.to_string()]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(stdout(&shown).contains("<c@x.test>"), "{}", stdout(&shown));
    let table = work.run(&["bounces", "list", "--unmatched"]);
    assert!(stdout(&table).contains("unmatched"), "{}", stdout(&table));
    // Nothing sent to the bounce domain was queued for delivery.
    assert_eq!(ts.store.counts().await.unwrap().queued, 0);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_anyone_only_to_the_bounce_domain_sqlite() {
    reports_from_anyone_only_to_the_bounce_domain(TestStore::sqlite(Default::default()).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_anyone_only_to_the_bounce_domain_postgres() {
    reports_from_anyone_only_to_the_bounce_domain(TestStore::postgres(Default::default()).await)
        .await;
}
