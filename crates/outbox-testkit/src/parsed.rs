//! Reading composed messages back with two independent parsers: mail-parser 0.11 and
//! Python's `email` package (tests/python/mime_dump.py), into one comparable shape.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders, PartType};

/// One leaf part as a parser sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub content_type: String,
    pub filename: Option<String>,
    pub content_id: Option<String>,
    /// Decoded text for text parts that are not attachments.
    pub text: Option<String>,
    /// Decoded bytes for everything else.
    pub bytes: Vec<u8>,
}

/// A message as a parser sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub subject: String,
    pub from: Vec<(Option<String>, String)>,
    pub to: Vec<(Option<String>, String)>,
    pub cc: Vec<(Option<String>, String)>,
    pub structure: String,
    pub leaves: Vec<Leaf>,
    pub headers: Vec<(String, String)>,
}

fn strip_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// Parses with mail-parser 0.11.
pub fn with_mail_parser(data: &[u8]) -> Parsed {
    let message = MessageParser::default()
        .parse(data)
        .expect("mail-parser parses it");
    let addresses = |address: Option<&mail_parser::Address<'_>>| {
        address
            .map(|a| {
                a.iter()
                    .map(|addr| {
                        (
                            addr.name().map(str::to_string),
                            addr.address().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut leaves = vec![];
    let structure = structure(&message, 0, &mut leaves);
    Parsed {
        subject: message.subject().unwrap_or_default().to_string(),
        from: addresses(message.from()),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        structure,
        leaves,
        headers: message
            .headers_raw()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect(),
    }
}

fn structure(message: &mail_parser::Message<'_>, id: usize, leaves: &mut Vec<Leaf>) -> String {
    let part = &message.parts[id];
    let content_type = part
        .content_type()
        .map(|ct| {
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()).to_ascii_lowercase()
        })
        .unwrap_or_else(|| "text/plain".to_string());
    let attachment = part
        .content_disposition()
        .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"));
    let mut leaf = Leaf {
        content_type: content_type.clone(),
        filename: part.attachment_name().map(str::to_string),
        content_id: part.content_id().map(strip_id),
        text: None,
        bytes: vec![],
    };
    match &part.body {
        PartType::Multipart(children) => {
            let inner: Vec<String> = children
                .iter()
                .map(|&child| structure(message, child as usize, leaves))
                .collect();
            return format!("{content_type}({})", inner.join(","));
        }
        PartType::Text(text) | PartType::Html(text) if !attachment => {
            leaf.text = Some(text.to_string());
        }
        _ => leaf.bytes = part.contents().to_vec(),
    }
    leaves.push(leaf);
    content_type
}

/// Parses with Python's `email` package (policy.default).
pub fn with_python(data: &[u8]) -> Parsed {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/mime_dump.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for the round-trip tests");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "mime_dump.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let defects = json["defects"].as_array().unwrap();
    assert!(defects.is_empty(), "Python found defects: {defects:?}");
    let pairs = |key: &str| -> Vec<(Option<String>, String)> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let name = pair[0].as_str().unwrap();
                (
                    (!name.is_empty()).then(|| name.to_string()),
                    pair[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let leaves = json["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| Leaf {
            content_type: part["content_type"].as_str().unwrap().to_string(),
            filename: part["filename"].as_str().map(str::to_string),
            content_id: part["content_id"].as_str().map(strip_id),
            text: part["text"].as_str().map(str::to_string),
            bytes: part["base64"]
                .as_str()
                .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
                .unwrap_or_default(),
        })
        .collect();
    Parsed {
        subject: json["headers"]["subject"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        from: pairs("from"),
        to: pairs("to"),
        cc: pairs("cc"),
        structure: json["structure"].as_str().unwrap().to_string(),
        leaves,
        headers: json["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    }
}

/// Line ends made `\n`, as both parsers may hand back CRLF or LF.
pub fn lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Every line of `data` is at most 998 octets and ends in CRLF.
pub fn assert_wire_clean(data: &[u8]) {
    assert!(data.ends_with(b"\r\n"), "message must end with CRLF");
    for line in data.split(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(content.len() <= 998, "line of {} octets", content.len());
        assert!(!content.contains(&b'\r'), "bare CR");
    }
    let bare_lf = data
        .windows(2)
        .enumerate()
        .any(|(i, w)| w[1] == b'\n' && (w[0] != b'\r') && i + 1 > 0);
    assert!(!bare_lf && data[0] != b'\n', "bare LF");
}
