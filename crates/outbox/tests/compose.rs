//! `outbox compose`, run as the real binary in a temp dir: each structure from flags and
//! from `--spec` JSON, tokens applied, and every kind of bad input refused with one line on
//! stderr and nothing on stdout.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `outbox compose ARGS` in `dir`, feeding `stdin`.
fn compose(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outbox"))
        .arg("compose")
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("OUTBOX_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outbox runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// A temp dir with an image, a PDF and an HTML file.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("logo.png"),
        [0x89, b'P', b'N', b'G', 1, 2, 3],
    )
    .unwrap();
    std::fs::write(dir.path().join("report.pdf"), b"%PDF-1.4 fake").unwrap();
    std::fs::write(
        dir.path().join("page.html"),
        "<p>Hi #Name#</p><img src=\"logo.png\">",
    )
    .unwrap();
    dir
}

const ADDRESSES: &[&str] = &[
    "--from",
    "Ann <ann@example.com>",
    "--to",
    "\"Lee, Bob\" <bob@example.com>,carol@example.com",
    "--to",
    "dave@example.com",
    "--bcc",
    "secret@example.com",
    "--subject",
    "Hello #Name#",
    "--token",
    "Name=Zoë",
];

fn ok(run: &Run) -> &str {
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stderr, "");
    let out = &run.stdout;
    assert!(
        out.contains("\r\nMIME-Version: 1.0\r\n") && out.starts_with("Date: "),
        "{out}"
    );
    assert!(out.contains("\r\nMessage-ID: <"), "{out}");
    assert!(!out.contains("secret@"), "Bcc leaked: {out}");
    assert!(
        out.split("\r\n")
            .all(|line| line.len() <= 998 && !line.contains('\n')),
        "CRLF lines of at most 998 octets"
    );
    out
}

#[test]
fn each_structure_from_flags() {
    let dir = workdir();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--body", "Hi #Name#"],
            &["Content-Type: text/plain; charset=utf-8", "Hi Zo=C3=AB"],
        ),
        (
            &["--html-file", "page.html"],
            &[
                "Content-Type: text/html; charset=utf-8",
                "<p>Hi Zo=C3=AB</p>",
            ],
        ),
        (
            &["--body", "Hi", "--html", "<p>Hi</p>"],
            &[
                "Content-Type: multipart/alternative;",
                "text/plain",
                "text/html",
            ],
        ),
        (
            &["--html-file", "page.html", "--image", "logo.png"],
            // The merged html is quoted-printable (Zoë), so `=` is written `=3D`.
            &[
                "Content-Type: multipart/related;",
                "Content-ID: <logo.png>",
                "src=3D\"cid:logo.png\"",
                "Content-Type: image/png",
            ],
        ),
        (
            &["--html", "<img src=\"brand\">", "--image", "brand=logo.png"],
            &["Content-ID: <brand>", "src=\"cid:brand\""],
        ),
        (
            &[
                "--body",
                "Hi",
                "--html",
                "<p>Hi</p>",
                "--attach",
                "report.pdf",
                "--attach",
                "Q3 report.pdf=report.pdf",
            ],
            &[
                "Content-Type: multipart/mixed;",
                "multipart/alternative",
                "Content-Type: application/pdf; name=\"report.pdf\"",
                "filename=\"Q3 report.pdf\"",
                "JVBERi0xLjQgZmFrZQ==",
            ],
        ),
    ];
    for (args, wanted) in cases {
        let all: Vec<&str> = ADDRESSES.iter().chain(args.iter()).copied().collect();
        let run = compose(dir.path(), &all, "");
        let out = ok(&run);
        assert!(
            out.contains("Subject: =?utf-8?B?"),
            "subject merged and encoded: {out}"
        );
        assert!(
            out.contains("To: \"Lee, Bob\" <bob@example.com>, carol@example.com,"),
            "{out}"
        );
        for want in *wanted {
            assert!(out.contains(want), "{args:?}: missing {want:?} in\n{out}");
        }
    }
}

#[test]
fn each_structure_from_a_json_spec() {
    let dir = workdir();
    let base = r#""from": "ann@example.com", "to": "bob@example.com, carol@example.com", "subject": "Hi #Name#", "tokens": {"Name": "Ann"}"#;
    let cases = [
        (r#""text": "plain""#, "Content-Type: text/plain"),
        (r#""html": "<b>x</b>""#, "Content-Type: text/html"),
        (
            r#""text": "t", "html": "<b>x</b>""#,
            "Content-Type: multipart/alternative",
        ),
        (
            r#""html": "<img src=\"logo.png\">", "html_images": [{"path": "logo.png"}]"#,
            "Content-Type: multipart/related",
        ),
        (
            r#""text": "t", "attachments": [{"name": "a.bin", "content_base64": "AAEC", "content_type": "application/x-a"}]"#,
            "Content-Type: multipart/mixed",
        ),
    ];
    for (i, (fields, want)) in cases.iter().enumerate() {
        let json = format!("{{{base}, {fields}}}");
        // From a file, and from stdin.
        let path = dir.path().join(format!("spec{i}.json"));
        std::fs::write(&path, &json).unwrap();
        for run in [
            compose(dir.path(), &["--spec", path.to_str().unwrap()], ""),
            compose(dir.path(), &["--spec", "-"], &json),
        ] {
            let out = ok(&run);
            assert!(out.contains(want), "{fields}: {out}");
            assert!(out.contains("Subject: Hi Ann\r\n"), "{out}");
        }
    }
    // Flags override the spec's fields.
    let path = dir.path().join("spec0.json");
    let run = compose(
        dir.path(),
        &[
            "--spec",
            path.to_str().unwrap(),
            "--subject",
            "Override",
            "--to",
            "zed@example.com",
        ],
        "",
    );
    let out = ok(&run);
    assert!(
        out.contains("Subject: Override\r\nTo: zed@example.com\r\n")
            || out.contains("To: zed@example.com\r\n"),
        "{out}"
    );
    assert!(!out.contains("bob@example.com"), "{out}");
}

/// Runs a bad command and checks the failure contract; returns stderr.
fn refused(dir: &Path, args: &[&str], stdin: &str) -> String {
    let run = compose(dir, args, stdin);
    assert_ne!(run.code, Some(0), "{args:?} should fail");
    assert_eq!(run.stdout, "", "{args:?}: nothing on stdout");
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "{args:?}: one line: {:?}",
        run.stderr
    );
    run.stderr
}

#[test]
fn bad_input_fails_with_one_line_naming_the_problem() {
    let dir = workdir();
    let good = [
        "--from",
        "ann@example.com",
        "--to",
        "bob@example.com",
        "--subject",
        "s",
        "--body",
        "b",
    ];
    // The good flags with some replaced or added.
    let with = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec![];
        for pair in good.chunks(2) {
            if !extra.chunks(2).any(|e| e[0] == pair[0]) {
                args.extend(pair.iter().map(|s| s.to_string()));
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (with(&["--to", "bob@@example.com"]), "", "bob@@example.com"),
        (with(&["--from", "nobody"]), "", "from"),
        (
            vec![
                "--to".into(),
                "b@example.com".into(),
                "--subject".into(),
                "s".into(),
                "--body".into(),
                "b".into(),
            ],
            "",
            "missing from",
        ),
        (
            vec![
                "--from".into(),
                "a@example.com".into(),
                "--to".into(),
                "b@example.com".into(),
                "--body".into(),
                "b".into(),
            ],
            "",
            "missing subject",
        ),
        (
            vec![
                "--from".into(),
                "a@example.com".into(),
                "--subject".into(),
                "s".into(),
                "--body".into(),
                "b".into(),
            ],
            "",
            "missing recipient",
        ),
        (
            vec![
                "--from".into(),
                "a@example.com".into(),
                "--to".into(),
                "b@example.com".into(),
                "--subject".into(),
                "s".into(),
            ],
            "",
            "missing body",
        ),
        (with(&["--attach", "missing.pdf"]), "", "missing.pdf"),
        (with(&["--html-file", "nope.html"]), "", "nope.html"),
        (
            with(&["--body-file", "page.html"]),
            "",
            "--body and --body-file",
        ),
        (
            with(&["--header", "X-Evil: a\r\nBcc: victim@example.com"]),
            "",
            "header injection",
        ),
        (with(&["--subject", "two\nlines"]), "", "subject"),
        (with(&["--transfer-encoding", "binary"]), "", "binary"),
        (with(&["--charset", "klingon"]), "", "klingon"),
        (with(&["--priority", "urgent"]), "", "--priority"),
        (with(&["--at", "tomorrow"]), "", "--at"),
        (with(&["--relay", "gopher://x"]), "", "relay"),
        (with(&["--header", "Subject: x"]), "", "subject"),
        (with(&["--token", "noequals"]), "", "--token"),
        (
            vec!["--spec".into(), "-".into()],
            r#"{"from":"a@example.com","subjet":"typo"}"#,
            "subjet",
        ),
        (
            vec!["--spec".into(), "-".into()],
            r#"{"from":"a@example.com","to":"b@example.com","subject":"s","text":"t","send_at":"soon"}"#,
            "send_at",
        ),
        (
            vec!["--spec".into(), "nospec.json".into()],
            "",
            "nospec.json",
        ),
    ];
    for (args, stdin, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = refused(dir.path(), &args, stdin);
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} should name {needle:?}"
        );
    }
}

#[test]
fn special_and_huge_files_are_refused_with_one_line() {
    let dir = workdir();
    std::fs::File::create(dir.path().join("huge.bin"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let base = [
        "--from",
        "a@x.test",
        "--to",
        "b@x.test",
        "--subject",
        "s",
        "--body",
        "b",
    ];
    for (file, expected) in [
        (
            "/dev/zero",
            "attachments: /dev/zero: not a regular file (it is a character device)",
        ),
        (
            ".",
            "attachments: .: not a regular file (it is a directory)",
        ),
        (
            "huge.bin",
            "attachments: huge.bin: 1073741824 bytes, over the limit of 67108864 bytes",
        ),
    ] {
        let run = compose(dir.path(), &[&base[..], &["--attach", file]].concat(), "");
        assert_eq!(run.code, Some(1), "{file}: {}", run.stderr);
        assert_eq!(run.stdout, "");
        assert_eq!(run.stderr, format!("outbox: {expected}\n"));
    }
}
