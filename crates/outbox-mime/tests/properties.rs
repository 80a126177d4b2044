//! Properties: any text, subject, display name or file name survives composition and
//! parsing exactly, and no composed line exceeds 998 octets.

use outbox_mime::{EmailSpec, PartSource, compose};
use outbox_testkit::parsed::{assert_wire_clean, lf, with_mail_parser, with_python};
use proptest::prelude::*;

/// Line ends of a text as a parser hands them back: every CRLF, CR or LF is one line end.
fn line_ends_lf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Header-safe text: no CR or LF, and something that is not whitespace.
fn header_text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,150}".prop_filter("needs a non-space", |s| !s.trim().is_empty())
}

/// A display name: any text without control characters (an address holding one is refused
/// by the parser), and something that is not whitespace.
fn display_name() -> impl Strategy<Value = String> {
    r"[^\p{Cc}]{0,100}".prop_filter("needs a non-space", |s| !s.trim().is_empty())
}

fn spec(subject: &str, name: &str, text: &str, file_name: &str, content: &[u8]) -> EmailSpec {
    let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
    EmailSpec::builder()
        .from(format!("\"{quoted}\" <from@example.com>"))
        .to("to@example.com")
        .subject(subject)
        .text(text)
        .html("<p>html</p>")
        .attachment(
            PartSource::data(file_name, content.to_vec())
                .with_content_type("application/octet-stream"),
        )
        .into_spec()
}

fn check(
    parsed: &outbox_testkit::parsed::Parsed,
    subject: &str,
    name: &str,
    text: &str,
    file_name: &str,
    content: &[u8],
) {
    assert_eq!(parsed.subject, subject);
    assert_eq!(parsed.from[0].0.as_deref(), Some(name));
    assert_eq!(parsed.from[0].1, "from@example.com");
    assert_eq!(
        parsed.leaves[0].text.as_deref().map(lf),
        Some(line_ends_lf(text))
    );
    assert_eq!(parsed.leaves[2].filename.as_deref(), Some(file_name));
    assert_eq!(parsed.leaves[2].bytes, content);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn everything_round_trips_through_mail_parser(
        subject in header_text(),
        name in display_name(),
        text in "(?s).{0,300}",
        file_name in "[^\r\n/\\\\]{1,120}".prop_filter("needs a non-space", |s| !s.trim().is_empty()),
        content in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let message = compose(&spec(&subject, &name, &text, &file_name, &content)).unwrap();
        assert_wire_clean(message.data());
        check(&with_mail_parser(message.data()), &subject, &name, &text, &file_name, &content);
    }

    #[test]
    fn no_header_line_exceeds_998_octets_whatever_the_inputs(
        name in r"[^\p{Cc}]{0,1500}",
        subject in "[^\r\n]{1,3000}",
        value in "[a-z ]{0,2500}",
        file_name in "[^\r\n/\\\\]{1,1500}",
        parameter in "[a-z]{0,1500}",
    ) {
        let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
        let mut spec = EmailSpec::builder()
            .from(format!("\"{quoted}\" <from@example.com>"))
            .to(format!("\"{quoted}\" <to@example.com>, other@example.com"))
            .subject(subject)
            .header("X-Long", value)
            .html("<p>html</p>")
            .into_spec();
        spec.html_images.push(PartSource::data(file_name.clone(), vec![1, 2, 3]));
        spec.attachments.push(
            PartSource::data(file_name, vec![4, 5, 6])
                .with_content_type(format!("application/x-thing; p=\"{parameter}\"; q={parameter}")),
        );
        match compose(&spec) {
            Ok(message) => assert_wire_clean(message.data()),
            // Only a subject that is blank is refused here.
            Err(err) => prop_assert_eq!(err.field(), "subject"),
        }
    }

    #[test]
    fn long_single_lines_never_exceed_998_octets(
        word in "[a-zA-Zé€]{1000,3000}",
        subject_word in "[a-z]{950,1200}",
    ) {
        let spec = EmailSpec::builder()
            .from("a@example.com")
            .to("b@example.com")
            .subject(format!("{subject_word} {subject_word}"))
            .text(word.clone())
            .header("X-Long", subject_word.clone())
            .into_spec();
        let message = compose(&spec).unwrap();
        assert_wire_clean(message.data());
        let parsed = with_mail_parser(message.data());
        prop_assert_eq!(parsed.subject, format!("{subject_word} {subject_word}"));
        prop_assert_eq!(parsed.leaves[0].text.as_deref().map(|t| t.trim_end().to_string()), Some(word));
    }
}

proptest! {
    // Each case starts a Python process: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(24))]

    // Display names are kept to one encoded-word (45 UTF-8 octets) here: CPython's address
    // parser puts a space between adjacent encoded-words in a phrase, which RFC 2047 §6.2
    // says to ignore (mail-parser does, see above), so longer names would differ by a space.
    // CPython also strips what `str.isspace` calls whitespace (form feed, U+001C..U+001F, ...)
    // from both ends of a decoded header, so subjects here have no control characters and no
    // whitespace at either end, and so do file names. Its `get_filename` also unquotes a
    // value that starts and ends with a double quote (`email.utils.unquote`, applied even
    // to an RFC 2231 value), so file names here are not wrapped in quotes. And its address
    // parser collapses a run of white space inside a decoded display name to one space
    // (`"a  b"` reads back as `a b`), so names here have no such run.
    #[test]
    fn everything_round_trips_through_python_email(
        subject in display_name().prop_filter("no outer whitespace", |s| s.trim() == s),
        name in display_name().prop_filter("one encoded-word, no run of white space", |n| {
            n.len() <= 45
                && !n
                    .chars()
                    .zip(n.chars().skip(1))
                    .any(|(a, b)| a.is_whitespace() && b.is_whitespace())
        }),
        text in "(?s).{0,300}",
        file_name in r"[^\p{Cc}/\\]{1,120}".prop_filter("no outer whitespace or quotes", |s| {
            !s.is_empty() && s.trim() == s && !(s.len() > 1 && s.starts_with('"') && s.ends_with('"'))
        }),
        content in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let message = compose(&spec(&subject, &name, &text, &file_name, &content)).unwrap();
        check(&with_python(message.data()), &subject, &name, &text, &file_name, &content);
    }
}
