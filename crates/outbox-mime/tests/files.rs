//! Attachment and image files are read safely: only regular files, only up to the size
//! limit of `ComposeOptions::max_file_size`, checked before any byte is read, and never a
//! read that blocks (a FIFO) or grows without bound (`/dev/zero`).

use std::path::Path;

use outbox_mime::{ComposeError, ComposeOptions, EmailSpec, FileError, PartSource, compose_with};

fn with_attachment(path: &Path) -> EmailSpec {
    EmailSpec::builder()
        .from("a@example.com")
        .to("b@example.com")
        .subject("s")
        .text("x")
        .attach(path)
        .into_spec()
}

fn refused(spec: &EmailSpec, limit: u64) -> (String, String) {
    let mut options = ComposeOptions::default();
    options.max_file_size = Some(limit);
    let err = compose_with(spec, &options).expect_err("should be refused");
    assert!(
        matches!(err, ComposeError::UnreadableFile { .. }),
        "{err:?}"
    );
    (err.field().to_string(), err.to_string())
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // No writer ever opens the FIFO: a blocking open would hang this test.
    let (field, message) = refused(&with_attachment(&fifo), 1000);
    assert_eq!(field, "attachments");
    assert_eq!(
        message,
        format!(
            "attachments: {}: not a regular file (it is a FIFO)",
            fifo.display()
        )
    );
}

#[test]
fn devices_and_directories_are_refused() {
    let (_, message) = refused(&with_attachment(Path::new("/dev/zero")), 1 << 20);
    assert_eq!(
        message,
        "attachments: /dev/zero: not a regular file (it is a character device)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_, message) = refused(&with_attachment(dir.path()), 1 << 20);
    assert!(
        message.ends_with("not a regular file (it is a directory)"),
        "{message}"
    );
    let mut spec = with_attachment(dir.path());
    spec.attachments.clear();
    spec.html = Some("<img src=\"z\">".into());
    spec.html_images.push(PartSource::path("/dev/zero"));
    let (field, _) = refused(&spec, 1 << 20);
    assert_eq!(field, "html_images");
}

#[test]
fn a_big_sparse_file_is_refused_from_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    // 1 GB that takes no disk: reading it would take 1 GB of memory.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (_, message) = refused(&with_attachment(&big), 8_000_000);
    assert!(
        message.ends_with("1073741824 bytes, over the limit of 8000000 bytes"),
        "{message}"
    );
}

#[test]
fn the_limit_is_inclusive_and_the_default_applies() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ten.bin");
    std::fs::write(&file, [7u8; 10]).unwrap();
    let mut options = ComposeOptions::default();
    options.max_file_size = Some(10);
    compose_with(&with_attachment(&file), &options).unwrap();
    refused(&with_attachment(&file), 9);
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(outbox_mime::DEFAULT_MAX_FILE_SIZE + 1)
        .unwrap();
    let err = outbox_mime::compose(&with_attachment(&big)).unwrap_err();
    assert!(matches!(
        err,
        ComposeError::UnreadableFile {
            error: FileError::TooLarge { .. },
            ..
        }
    ));
}
