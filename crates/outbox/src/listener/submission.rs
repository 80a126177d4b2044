//! What the listener does to a submitted message as a submission server (RFC 6409 §8,
//! DESIGN §10): checks each envelope address as compose does, adds the trace header, adds
//! `Date` and `Message-ID` when missing, and removes `Bcc`.

use outbox_mime::{AddressError, parse_address};
use outbox_smtp::Reply;
use outbox_smtp::server::ReceivedEnvelope;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// Whether the address is for `MAIL FROM` or `RCPT TO`: the enhanced status codes differ
/// (RFC 3463 §3.2: 5.1.7 bad sender's address, 5.1.3 bad destination address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Recipient,
}

/// Checks one envelope address with compose's rules (outbox_mime's parser): `501` for a
/// malformed address, `553` for an unqualified one (`root`: no domain to deliver to). The
/// null sender `<>` is accepted for `MAIL FROM`.
pub fn check_address(address: &str, role: Role) -> Result<(), Reply> {
    let status = match role {
        Role::Sender => "5.1.7",
        Role::Recipient => "5.1.3",
    };
    let what = match role {
        Role::Sender => "sender",
        Role::Recipient => "recipient",
    };
    if address.is_empty() && role == Role::Sender {
        return Ok(());
    }
    // The parser also takes header forms (`Name <a@b>`, comments): none of that belongs in
    // an SMTP path. White space is refused even inside a quoted local part, as the queue
    // would refuse it at the end of DATA, failing the whole message.
    let header_syntax = address.contains([' ', '\t', '(', ')', ',', ';', '<', '>'])
        || address.chars().any(char::is_control);
    let printable: String = address
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(256)
        .collect();
    if header_syntax {
        return Err(Reply::new(
            501,
            [format!("{status} Bad {what} address syntax: {printable}")],
        ));
    }
    match parse_address(address) {
        Ok(_) => Ok(()),
        Err(AddressError::MissingAt { .. }) => Err(Reply::new(
            553,
            [format!(
                "{status} Unqualified {what} address {printable}: use user@domain"
            )],
        )),
        Err(_) => Err(Reply::new(
            501,
            [format!("{status} Bad {what} address syntax: {printable}")],
        )),
    }
}

/// The message as stored: the `Received:` trace header, `Date:` and `Message-ID:` when the
/// client sent none, then the client's header without its `Bcc:` fields, then the body.
/// A message whose first line is not a header field gets the blank line that separates an
/// (added) header from the body.
pub fn prepare(
    data: &[u8],
    envelope: &ReceivedEnvelope,
    hostname: &str,
    now: OffsetDateTime,
) -> Vec<u8> {
    let mut stored = received_header(hostname, envelope, now);
    let mut kept = Vec::with_capacity(data.len());
    let mut has_date = false;
    let mut has_message_id = false;
    let mut dropping = false;
    let mut rest = data;
    let mut ended_by_blank_line = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |at| at + 1);
        let line = &rest[..end];
        if line == b"\r\n" || line == b"\n" {
            ended_by_blank_line = true;
            break;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            // A continuation line belongs to the field above it.
            if !dropping {
                kept.extend_from_slice(line);
            }
        } else if let Some(name) = field_name(line) {
            dropping = name.eq_ignore_ascii_case("bcc");
            has_date |= name.eq_ignore_ascii_case("date");
            has_message_id |= name.eq_ignore_ascii_case("message-id");
            if !dropping {
                kept.extend_from_slice(line);
            }
        } else {
            // Not a header field: the body starts here without its blank line.
            break;
        }
        rest = &rest[end..];
    }
    if !has_date {
        let date = now
            .format(&Rfc2822)
            .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_string());
        stored.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    if !has_message_id {
        let id = format!("Message-ID: <{}@{hostname}>\r\n", ulid::Ulid::new());
        stored.extend_from_slice(id.as_bytes());
    }
    stored.extend_from_slice(&kept);
    if !ended_by_blank_line && !rest.is_empty() {
        stored.extend_from_slice(b"\r\n");
    }
    stored.extend_from_slice(rest);
    stored
}

/// The name of the header field that `line` starts (RFC 5322 §2.2: printable ASCII but
/// `:`, then `:`), or `None` when the line is not a field.
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    // RFC 5322 §4.5.3 (obsolete syntax) allows white space before the colon.
    let name = std::str::from_utf8(&line[..colon]).ok()?.trim_end();
    let valid = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b));
    valid.then_some(name)
}

/// The trace header a server adds to each message it accepts (RFC 5321 §4.4), with the
/// `with` protocol names of RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA).
pub fn received_header(
    hostname: &str,
    envelope: &ReceivedEnvelope,
    now: OffsetDateTime,
) -> Vec<u8> {
    let protocol = match (envelope.tls, envelope.authenticated.is_some()) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    // The HELO name is client-supplied: keep only characters that are safe in a header.
    let helo: String = envelope
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let date = now
        .format(&Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_string());
    format!(
        "Received: from {helo} ([{ip}])\r\n\tby {hostname} with {protocol};\r\n\t{date}\r\n",
        ip = envelope.peer.ip(),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(tls: bool, user: Option<&str>) -> ReceivedEnvelope {
        ReceivedEnvelope {
            mail_from: "a@x.test".into(),
            rcpt_to: vec!["b@y.test".into()],
            helo: "client\r\nX-Injected: 1".into(),
            peer: "127.0.0.1:4000".parse().unwrap(),
            authenticated: user.map(str::to_string),
            tls,
            connection: 1,
        }
    }

    fn epoch() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(0).unwrap()
    }

    #[test]
    fn received_names_protocol_and_strips_unsafe_helo() {
        let text = String::from_utf8(received_header(
            "mx.test",
            &envelope(true, Some("app")),
            epoch(),
        ))
        .unwrap();
        assert_eq!(
            text,
            "Received: from clientX-Injected:1 ([127.0.0.1])\r\n\tby mx.test with ESMTPSA;\r\n\
             \tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
        let plain = received_header("h", &envelope(false, None), epoch());
        assert!(String::from_utf8(plain).unwrap().contains("with ESMTP;"));
    }

    fn prepared(data: &str) -> String {
        let stored = prepare(data.as_bytes(), &envelope(false, None), "mx.test", epoch());
        let text = String::from_utf8(stored).unwrap();
        let received_end = text.find("+0000\r\n").unwrap() + 7;
        text[received_end..].to_string()
    }

    #[test]
    fn date_and_message_id_are_added_when_missing_and_bcc_removed() {
        let text = prepared(
            "From: a@x.test\r\nBcc: hidden@z.test,\r\n\tother@z.test\r\nTo: b@y.test\r\n\
             BCC : loud@z.test\r\nSubject: s\r\n\r\nBcc: in the body stays\r\n",
        );
        assert!(text.starts_with("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\nMessage-ID: <"));
        assert!(text.contains("@mx.test>\r\nFrom: a@x.test\r\nTo: b@y.test\r\nSubject: s\r\n\r\n"));
        assert!(
            text.ends_with("\r\n\r\nBcc: in the body stays\r\n"),
            "{text}"
        );
        assert!(!text.contains("hidden") && !text.contains("other@") && !text.contains("loud"));
    }

    #[test]
    fn present_date_and_message_id_are_kept_as_they_are() {
        let head = "Date: Mon, 30 Nov 2026 03:00:00 +0000\r\nmessage-id: <x@client>\r\n";
        let text = prepared(&format!("{head}Subject: s\r\n\r\nbody\r\n"));
        assert_eq!(text, format!("{head}Subject: s\r\n\r\nbody\r\n"));
    }

    #[test]
    fn a_body_without_header_gets_its_blank_line() {
        let text = prepared("just text\r\nmore\r\n");
        assert!(text.ends_with(">\r\n\r\njust text\r\nmore\r\n"), "{text}");
        let text = prepared("Subject: only a header\r\n");
        assert!(text.ends_with(">\r\nSubject: only a header\r\n"), "{text}");
    }

    #[test]
    fn envelope_addresses_use_compose_rules() {
        let code = |address, role| check_address(address, role).map_err(|r| r.to_wire());
        assert_eq!(code("b@y.test", Role::Recipient), Ok(()));
        assert_eq!(code("", Role::Sender), Ok(()));
        assert_eq!(
            code("bad@@x", Role::Recipient),
            Err("501 5.1.3 Bad recipient address syntax: bad@@x\r\n".into())
        );
        assert_eq!(
            code("root", Role::Recipient),
            Err("553 5.1.3 Unqualified recipient address root: use user@domain\r\n".into())
        );
        assert_eq!(
            code("root", Role::Sender),
            Err("553 5.1.7 Unqualified sender address root: use user@domain\r\n".into())
        );
        for bad in [
            "Name a@b.test",
            "a@b.test (comment)",
            "a,b@c.test",
            "",
            "a@",
        ] {
            let reply = code(bad, Role::Recipient).unwrap_err();
            assert!(reply.starts_with("501 5.1.3 "), "{bad}: {reply}");
        }
    }
}
