//! Merge per recipient: markers in headers and text parts, each value encoded for where it
//! lands; everything else untouched.

use std::collections::BTreeMap;

use outbox_mime::{
    Charset, EmailSpec, TransferEncoding, compose, email_token, merge, merge_message,
};
use outbox_testkit::parsed::{assert_wire_clean, with_mail_parser, with_python};

fn tokens(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn message() -> Vec<u8> {
    let spec = EmailSpec::builder()
        .from("news@example.com")
        .to("ann@example.com")
        .subject(format!("Hello {} — news", email_token("First")))
        .header("X-Recipient", "#First# #Last#")
        .text("Dear #First# #Last#,\nyour code is #Code#. #Unknown# stays.\n")
        .html("<p>Dear #First#</p>")
        .attach_data(
            "data.txt",
            b"#First# in an attachment is data, not a marker".to_vec(),
        )
        .into_spec();
    compose(&spec).unwrap().into_data()
}

#[test]
fn recipient_values_override_tokens_everywhere() {
    let defaults = tokens(&[("First", "Friend"), ("Last", ""), ("Code", "0000")]);
    let ann = tokens(&[("First", "Ann"), ("Last", "Lee")]);
    let merged = merge_message(&message(), &(&ann, &defaults));
    assert_wire_clean(&merged);
    for parsed in [with_mail_parser(&merged), with_python(&merged)] {
        assert_eq!(parsed.subject, "Hello Ann — news");
        assert_eq!(
            parsed.leaves[0]
                .text
                .as_deref()
                .map(outbox_testkit::parsed::lf)
                .as_deref(),
            Some("Dear Ann Lee,\nyour code is 0000. #Unknown# stays.\n")
        );
        assert_eq!(parsed.leaves[1].text.as_deref(), Some("<p>Dear Ann</p>"));
        assert_eq!(
            parsed.leaves[2].bytes,
            b"#First# in an attachment is data, not a marker"
        );
        let header = parsed
            .headers
            .iter()
            .find(|(n, _)| n == "x-recipient")
            .unwrap();
        assert_eq!(header.1.trim(), "Ann Lee");
    }
}

#[test]
fn non_ascii_values_switch_7bit_parts_to_quoted_printable_and_headers_to_encoded_words() {
    let merged = merge_message(&message(), &tokens(&[("First", "Zoë"), ("Last", "Ørsted")]));
    let text = String::from_utf8(merged.clone()).unwrap();
    assert!(text.contains("X-Recipient: =?utf-8?B?"), "{text}");
    assert!(text.contains("Dear Zo=C3=AB =C3=98rsted,"), "{text}");
    assert!(
        !text.contains("Content-Transfer-Encoding: 7bit\r\n\r\nDear Zo"),
        "{text}"
    );
    assert!(merged.is_ascii());
    let parsed = with_python(&merged);
    assert_eq!(
        parsed.leaves[0]
            .text
            .as_deref()
            .map(|t| t.lines().next().unwrap().to_string()),
        Some("Dear Zoë Ørsted,".to_string())
    );
}

#[test]
fn values_cannot_inject_headers() {
    let merged = merge_message(
        &message(),
        &tokens(&[("First", "x\r\nBcc: victim@example.com"), ("Last", "y")]),
    );
    let text = String::from_utf8(merged).unwrap();
    let head = &text[..text.find("\r\n\r\n").unwrap()];
    assert!(!head.contains("\r\nBcc:"), "{head}");
}

#[test]
fn no_known_marker_means_identical_bytes() {
    let data = message();
    assert_eq!(merge_message(&data, &tokens(&[("Other", "x")])), data);
}

#[test]
fn email_merge_on_text_and_on_raw_mime() {
    let t = tokens(&[("Name", "Jörg")]);
    assert_eq!(merge(b"Hi #Name#", &t, None, None), "Hi Jörg".as_bytes());
    assert_eq!(
        merge(
            b"Hi #Name#",
            &t,
            Some(Charset::Latin1),
            Some(TransferEncoding::QuotedPrintable)
        ),
        b"Hi J=F6rg"
    );
    let raw = b"Subject: For #Name#\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHallo #Name#, sch=F6n=\r\n";
    let merged = merge(raw, &t, None, None);
    assert_eq!(
        String::from_utf8(merged).unwrap(),
        "Subject: =?utf-8?B?Rm9yIErDtnJn?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHallo J=F6rg, sch=F6n=\r\n"
    );
}

#[test]
fn composing_for_many_recipients_stores_markers_once() {
    let spec = EmailSpec::builder()
        .from("news@example.com")
        .to("a@example.com, b@example.com")
        .subject("For #Name#")
        .text("Hi #Name#")
        .merge("a@example.com", "Name", "A")
        .merge("b@example.com", "Name", "B")
        .into_spec();
    let message = compose(&spec).unwrap();
    assert!(String::from_utf8_lossy(message.data()).contains("Subject: For #Name#"));
    for address in message.recipients() {
        let values = spec.merge.get(address);
        let merged = merge_message(message.data(), &(values, &spec.tokens));
        let parsed = with_mail_parser(&merged);
        let want = if address.starts_with('a') { "A" } else { "B" };
        assert_eq!(parsed.subject, format!("For {want}"));
    }
}
