use proptest::prelude::*;

use super::*;

/// A DSN in the shape Postfix writes (RFC 3464 §2), with a failed and a delayed recipient
/// and the returned headers.
const DSN: &str = "From: MAILER-DAEMON@mx.example.test (Mail Delivery System)\r
To: bounces+abc@bounces.example.test\r
Subject: Undelivered Mail Returned to Sender\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status;\r
\tboundary=\"B1\"\r
\r
--B1\r
Content-Type: text/plain; charset=us-ascii\r
\r
I'm sorry to have to inform you that your message could not be delivered.\r
\r
--B1\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.example.test\r
Arrival-Date: Mon, 30 Nov 2026 12:00:00 +0000\r
\r
Final-Recipient: rfc822; nobody@example.test\r
Original-Recipient: rfc822;Nobody@Example.TEST\r
Action: failed\r
Status: 5.1.1\r
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.test>: Recipient address\r
    rejected: User unknown\r
\r
Final-Recipient: rfc822; slow@example.test\r
Action: delayed\r
Status: 4.4.1\r
\r
--B1\r
Content-Type: text/rfc822-headers\r
\r
From: app@example.test\r
Message-ID: <01ABC@example.test>\r
Subject: hello\r
\r
--B1--\r
";

/// The example of RFC 5965 appendix B.2, shortened.
const ARF: &str = "From: <abusedesk@example.com>\r
Date: Thu, 8 Mar 2005 17:40:36 EDT\r
Subject: FW: Earn money\r
To: <abuse@example.net>\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report;\r
     boundary=\"part1_13d.2e68ed54_boundary\"\r
\r
--part1_13d.2e68ed54_boundary\r
Content-Type: text/plain; charset=\"US-ASCII\"\r
Content-Transfer-Encoding: 7bit\r
\r
This is an email abuse report for an email message received from IP\r
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r
\r
--part1_13d.2e68ed54_boundary\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: SomeGenerator/1.0\r
Version: 1\r
Original-Mail-From: <bounces+tok@bounces.example.test>\r
Original-Rcpt-To: <user@example.com>\r
\r
--part1_13d.2e68ed54_boundary\r
Content-Type: message/rfc822\r
Content-Disposition: inline\r
\r
From: <somespammer@example.net>\r
Received: from mailserver.example.net (mailserver.example.net\r
        [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;\r
        Thu, 08 Mar 2005 14:00:00 -0400\r
To: <Undisclosed Recipients>\r
Subject: Earn money\r
MIME-Version: 1.0\r
Content-type: text/plain\r
Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net\r
Date: Thu, 02 Sep 2004 12:31:03 -0500\r
\r
Spam Spam Spam\r
--part1_13d.2e68ed54_boundary--\r
";

#[test]
fn dsn_recipients_carry_action_status_and_diagnostic() {
    let report = parse_report(DSN.as_bytes());
    assert_eq!(report.format, ReportFormat::Dsn);
    assert_eq!(
        report.original_message_id.as_deref(),
        Some("01ABC@example.test")
    );
    assert_eq!(
        report.recipients,
        [
            RecipientReport {
                action: "failed".into(),
                status: Some("5.1.1".into()),
                diagnostic: Some(
                    "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown"
                        .into()
                ),
                final_recipient: Some("nobody@example.test".into()),
                original_recipient: Some("Nobody@Example.TEST".into()),
            },
            RecipientReport {
                action: "delayed".into(),
                status: Some("4.4.1".into()),
                diagnostic: None,
                final_recipient: Some("slow@example.test".into()),
                original_recipient: None,
            },
        ]
    );
    assert_eq!(report.text_status, None);
}

#[test]
fn arf_reports_name_the_feedback_type_and_original_message() {
    let report = parse_report(ARF.as_bytes());
    assert_eq!(report.format, ReportFormat::Arf);
    let complaint = report.complaint.unwrap();
    assert_eq!(complaint.feedback_type, "abuse");
    assert_eq!(
        complaint.original_rcpt_to.as_deref(),
        Some("user@example.com")
    );
    assert_eq!(
        complaint.original_mail_from.as_deref(),
        Some("bounces+tok@bounces.example.test")
    );
    assert_eq!(
        report.original_message_id.as_deref(),
        Some("8787KJKJ3K4J3K4J3K4J3.mail@example.net")
    );
}

#[test]
fn plain_text_notices_get_their_best_status() {
    let text = b"Subject: failure notice\r\n\r\nHi. This is the qmail-send program.\r\n\
        <bob@example.test>:\r\nSorry, I couldn't deliver: 452 mailbox full, then 550 5.1.1 no such user\r\n";
    let report = parse_report(text);
    assert_eq!(report.format, ReportFormat::Text);
    assert_eq!(report.text_status.as_deref(), Some("5.1.1"));
    assert_eq!(
        best_status(b"remote said: 550 no such user").as_deref(),
        Some("550")
    );
    assert_eq!(
        best_status(b"421 4.4.2 timeout (try later)").as_deref(),
        Some("4.4.2")
    );
    assert_eq!(
        best_status(b"nothing to see; version 1.2.3").as_deref(),
        None
    );
    // A multipart/report without its status part is read as text.
    let broken = DSN.replace("message/delivery-status", "text/plain");
    let report = parse_report(broken.as_bytes());
    assert_eq!(report.format, ReportFormat::Text);
    assert_eq!(report.text_status.as_deref(), Some("5.1.1"));
}

#[test]
fn fields_are_unfolded_and_bounded() {
    let long = "x".repeat(5000);
    let block = format!(
        "Action: failed\r\nDiagnostic-Code: smtp; {long}\r\n  {long}\r\nbogus line\r\n: empty\r\n"
    );
    let fields = report_fields(&block);
    assert_eq!(fields.len(), 2, "{fields:?}");
    assert!(fields[1].1.len() <= MAX_FIELD_LEN);
    assert_eq!(enhanced_status("5.7.1 (policy)"), Some("5.7.1".into()));
    for bad in ["5.1", "6.1.1", "5.1234.1", "5..1", "x.1.1", ""] {
        assert_eq!(enhanced_status(bad), None, "{bad}");
    }
}

#[test]
fn many_recipient_blocks_are_capped() {
    let mut body = String::from("Reporting-MTA: dns; x\r\n");
    for i in 0..500 {
        body.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; r{i}@x.test\r\nAction: failed\r\nStatus: 5.0.0\r\n"
        ));
    }
    assert_eq!(recipient_blocks(body.as_bytes()).len(), MAX_RECIPIENTS);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes, and arbitrary bytes inside a report's status part, never panic,
    /// and what is kept stays bounded.
    #[test]
    fn hostile_reports_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..4000),
                                   text in "[ -~\r\n\t:;]{0,2000}") {
        let _ = parse_report(&junk);
        let framed = DSN.replace("Final-Recipient: rfc822; slow@example.test", &text);
        let report = parse_report(framed.as_bytes());
        prop_assert!(report.recipients.len() <= MAX_RECIPIENTS);
        for r in &report.recipients {
            prop_assert!(r.diagnostic.as_ref().is_none_or(|d| d.len() <= MAX_FIELD_LEN));
            prop_assert!(r.final_recipient.as_ref().is_none_or(|d| d.len() <= MAX_FIELD_LEN));
        }
        let arf = ARF.replace("Feedback-Type: abuse", &text);
        let _ = parse_report(arf.as_bytes());
        let _ = best_status(text.as_bytes());
    }
}
