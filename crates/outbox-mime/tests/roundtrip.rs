//! Every structure of DESIGN §3, composed and parsed back by mail-parser 0.11 and by Python's
//! `email` package: decoded bodies, attachment bytes, file names, content types, Content-IDs.

use std::path::PathBuf;

use outbox_mime::{EmailSpec, PartSource, compose};
use outbox_testkit::parsed::{Leaf, Parsed, assert_wire_clean, lf, with_mail_parser, with_python};

struct Files {
    _dir: tempfile::TempDir,
    png: PathBuf,
    pdf: PathBuf,
    odd: PathBuf,
}

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0xff, 0xfe,
];

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("logo.png");
    std::fs::write(&png, PNG).unwrap();
    let pdf = dir.path().join("report.pdf");
    let pdf_bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&pdf, pdf_bytes).unwrap();
    let odd = dir
        .path()
        .join("Grüße, «façade» — résumé très long nom de fichier.txt");
    std::fs::write(&odd, "plain text attachment\n").unwrap();
    Files {
        _dir: dir,
        png,
        pdf,
        odd,
    }
}

fn text_leaf(content_type: &str, text: &str) -> Leaf {
    Leaf {
        content_type: content_type.to_string(),
        filename: None,
        content_id: None,
        text: Some(text.to_string()),
        bytes: vec![],
    }
}

fn file_leaf(content_type: &str, name: &str, id: Option<&str>, bytes: &[u8]) -> Leaf {
    Leaf {
        content_type: content_type.to_string(),
        filename: Some(name.to_string()),
        content_id: id.map(str::to_string),
        text: None,
        bytes: bytes.to_vec(),
    }
}

/// A spec, the structure it must have, and its leaves.
fn cases(files: &Files) -> Vec<(&'static str, EmailSpec, &'static str, Vec<Leaf>)> {
    let base = || {
        EmailSpec::builder()
            .from("\"Müller, Jörg\" <jorg@example.com>")
            .to("Ann Lee <ann@example.com>, bob@example.com")
            .cc("carol@example.com")
            .subject("Grüße — a test, with \"quotes\"")
    };
    let text = "Hello Ann,\n\nLine with trailing space \nCafé ☕\n";
    let html_path = files.png.to_string_lossy().into_owned();
    let html = format!(r#"<p>Hi</p><img src="{html_path}"><img src="cid:logo.png">"#);
    let html_rewritten = r#"<p>Hi</p><img src="cid:logo.png"><img src="cid:logo.png">"#;
    let pdf = std::fs::read(&files.pdf).unwrap();
    let odd_name = files
        .odd
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    vec![
        (
            "text/plain",
            base().text(text).into_spec(),
            "text/plain",
            vec![text_leaf("text/plain", text)],
        ),
        (
            "text/html",
            base().html("<p>Café</p>\n").into_spec(),
            "text/html",
            vec![text_leaf("text/html", "<p>Café</p>\n")],
        ),
        (
            "alternative",
            base().text(text).html("<p>Hi</p>").into_spec(),
            "multipart/alternative(text/plain,text/html)",
            vec![
                text_leaf("text/plain", text),
                text_leaf("text/html", "<p>Hi</p>"),
            ],
        ),
        (
            "related",
            base().html(html.clone()).html_image(&files.png).into_spec(),
            "multipart/related(text/html,image/png)",
            vec![
                text_leaf("text/html", html_rewritten),
                file_leaf("image/png", "logo.png", Some("logo.png"), PNG),
            ],
        ),
        (
            "mixed around alternative and related",
            base()
                .text(text)
                .html(html.clone())
                .html_image(&files.png)
                .html_image_data("dot.gif", b"GIF89a".to_vec())
                .attach(&files.pdf)
                .attach(&files.odd)
                .attachment(
                    PartSource::data("data.bin", vec![0u8, 1, 2, 255])
                        .with_content_type("application/x-custom"),
                )
                .into_spec(),
            "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png,image/gif)),application/pdf,text/plain,application/x-custom)",
            vec![
                text_leaf("text/plain", text),
                text_leaf("text/html", html_rewritten),
                file_leaf("image/png", "logo.png", Some("logo.png"), PNG),
                file_leaf("image/gif", "dot.gif", Some("dot.gif"), b"GIF89a"),
                file_leaf("application/pdf", "report.pdf", None, &pdf),
                file_leaf("text/plain", &odd_name, None, b"plain text attachment\n"),
                file_leaf("application/x-custom", "data.bin", None, &[0, 1, 2, 255]),
            ],
        ),
        (
            "mixed around text",
            base().text(text).attach(&files.pdf).into_spec(),
            "multipart/mixed(text/plain,application/pdf)",
            vec![
                text_leaf("text/plain", text),
                file_leaf("application/pdf", "report.pdf", None, &pdf),
            ],
        ),
    ]
}

fn check(parser: &str, case: &str, parsed: &Parsed, structure: &str, leaves: &[Leaf]) {
    assert_eq!(parsed.structure, structure, "{parser}: {case}");
    assert_eq!(
        parsed.subject, "Grüße — a test, with \"quotes\"",
        "{parser}: {case}"
    );
    assert_eq!(
        parsed.from,
        [(
            Some("Müller, Jörg".to_string()),
            "jorg@example.com".to_string()
        )],
        "{parser}: {case}"
    );
    assert_eq!(
        parsed.to,
        [
            (Some("Ann Lee".to_string()), "ann@example.com".to_string()),
            (None, "bob@example.com".to_string())
        ],
        "{parser}: {case}"
    );
    assert_eq!(
        parsed.cc,
        [(None, "carol@example.com".to_string())],
        "{parser}: {case}"
    );
    assert_eq!(
        parsed.leaves.len(),
        leaves.len(),
        "{parser}: {case}: {:?}",
        parsed.leaves
    );
    let single = !structure.starts_with("multipart/");
    for (got, want) in parsed.leaves.iter().zip(leaves) {
        let mut got = got.clone();
        // A single-part body ends with the CRLF that ends the message.
        if let (true, Some(text), Some(wanted)) = (single, &mut got.text, &want.text)
            && !wanted.ends_with('\n')
        {
            *text = text.trim_end_matches(['\r', '\n']).to_string();
        }
        got.text = got.text.as_deref().map(lf);
        assert_eq!(&got, want, "{parser}: {case}");
    }
    let names: Vec<&str> = parsed.headers.iter().map(|(n, _)| n.as_str()).collect();
    for required in ["date", "message-id", "mime-version"] {
        assert!(names.contains(&required), "{parser}: {case}: no {required}");
    }
    assert!(!names.contains(&"bcc"), "{parser}: {case}: Bcc in headers");
}

#[test]
fn every_structure_round_trips_through_mail_parser() {
    let files = files();
    for (case, spec, structure, leaves) in cases(&files) {
        let message = compose(&spec).unwrap();
        assert_wire_clean(message.data());
        check(
            "mail-parser",
            case,
            &with_mail_parser(message.data()),
            structure,
            &leaves,
        );
    }
}

#[test]
fn every_structure_round_trips_through_python_email() {
    let files = files();
    for (case, spec, structure, leaves) in cases(&files) {
        let message = compose(&spec).unwrap();
        check(
            "python",
            case,
            &with_python(message.data()),
            structure,
            &leaves,
        );
    }
}

#[test]
fn nested_parts_and_merged_messages_parse_in_python() {
    let inner = outbox_mime::compose_part(
        &EmailSpec::builder()
            .text("inner #Name#")
            .html("<b>inner</b>")
            .into_spec(),
    )
    .unwrap();
    let spec = EmailSpec::builder()
        .from("a@example.com")
        .to("b@example.com")
        .subject("Für #Name#")
        .text("Hallo #Name#, 7bit so far")
        .part(inner)
        .into_spec();
    let message = compose(&spec).unwrap();
    let tokens = std::collections::BTreeMap::from([("Name".to_string(), "Zoë".to_string())]);
    let merged = outbox_mime::merge_message(message.data(), &tokens);
    assert_wire_clean(&merged);
    for parsed in [with_python(&merged), with_mail_parser(&merged)] {
        assert_eq!(parsed.subject, "Für Zoë");
        assert_eq!(
            parsed.structure,
            "multipart/mixed(text/plain,multipart/alternative(text/plain,text/html))"
        );
        assert_eq!(
            parsed.leaves[0].text.as_deref(),
            Some("Hallo Zoë, 7bit so far")
        );
        assert_eq!(parsed.leaves[1].text.as_deref(), Some("inner Zoë"));
    }
}
