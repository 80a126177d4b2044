//! The enqueue hook of `prepare.rs`: whatever way a raw message comes in (sendmail, the
//! SMTP listener, HTTP), a line over 998 octets is re-encoded before it is stored, so a
//! strict server never refuses it at delivery. Same tests on SQLite and PostgreSQL.

use outbox_testkit::conformance;
use std::io::Write;
use std::process::{Command, Stdio};

use outbox_queue::{NewMessage, NewRecipient, StoreError};
use outbox_testkit::TestStore;

conformance!(
    a_long_line_is_stored_re_encoded_with_its_text_exact,
    a_long_line_in_a_merge_message_keeps_its_markers,
    a_message_that_cannot_be_fitted_is_refused_and_nothing_is_stored,
);

/// What PHP's `mail()` gives sendmail: LF line ends, no MIME headers, one long line.
fn php_message(line: &str) -> NewMessage {
    {
        let mut new_message = NewMessage::default();
        new_message.data = format!(
            "To: bob@example.net\nSubject: report\nFrom: app@example.com\n\n\
             Report follows.\n{line}\nEnd.\n"
        )
        .into_bytes();
        new_message.envelope_from = "app@example.com".into();
        new_message.recipients = vec![NewRecipient::new("bob@example.net")];
        new_message.subject = "report".into();
        new_message
    }
}

/// The text of the message as Python's `email` package decodes it (policy.default).
fn python_text(data: &[u8]) -> String {
    let script = "import sys\nfrom email import policy\nfrom email.parser import BytesParser\n\
                  m = BytesParser(policy=policy.default).parsebytes(sys.stdin.buffer.read())\n\
                  assert not m.defects, m.defects\n\
                  sys.stdout.write(m.get_content())\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .replace("\r\n", "\n")
}

fn longest_line(data: &[u8]) -> usize {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .max()
        .unwrap_or(0)
}

async fn a_long_line_is_stored_re_encoded_with_its_text_exact(t: TestStore) {
    let line: String = "Zürich, ".repeat(250); // 2 250 octets
    let queued = t.store.enqueue(php_message(&line)).await.unwrap();
    let stored = t.store.message_body(&queued.id).await.unwrap().data;
    assert!(longest_line(&stored) <= 998, "{}", longest_line(&stored));
    let text = String::from_utf8(stored.clone()).unwrap();
    assert!(text.contains("\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"));
    assert!(text.contains("\nContent-Transfer-Encoding: quoted-printable\n\n"));
    assert_eq!(
        python_text(&stored),
        format!("Report follows.\n{line}\nEnd.\n")
    );
    // A message without a long line is stored byte for byte.
    let short = php_message("short");
    let data = short.data.clone();
    let queued = t.store.enqueue(short).await.unwrap();
    assert_eq!(t.store.message_body(&queued.id).await.unwrap().data, data);
}

async fn a_long_line_in_a_merge_message_keeps_its_markers(t: TestStore) {
    let mut message = php_message(&format!("Dear #First#, {}", "x".repeat(2000)));
    message.tokens = Some([("First".to_string(), "Ann".to_string())].into());
    let queued = t.store.enqueue(message).await.unwrap();
    let body = t.store.message_body(&queued.id).await.unwrap();
    let merged = outbox_mime::merge_message(&body.data, &body.tokens.unwrap());
    assert!(longest_line(&merged) <= 998);
    assert_eq!(
        python_text(&merged),
        format!("Report follows.\nDear Ann, {}\nEnd.\n", "x".repeat(2000))
    );
}

async fn a_message_that_cannot_be_fitted_is_refused_and_nothing_is_stored(t: TestStore) {
    let mut message = php_message("short");
    message.data = format!(
        "Message-ID: <{}@example.com>\r\nSubject: s\r\n\r\nbody\r\n",
        "i".repeat(1200)
    )
    .into_bytes();
    let err = t.store.enqueue(message).await.unwrap_err();
    assert!(matches!(err, StoreError::LineTooLong(_)), "{err:?}");
    assert!(err.is_permanent());
    assert_eq!(
        err.to_string(),
        "message refused: header Message-ID: a line longer than 998 octets that cannot be folded"
    );
    assert_eq!(t.store.counts().await.unwrap().queued, 0);
}
