//! Which files a message posted over HTTP may name.
//!
//! A `{"path": P}` item in `html_images` or `attachments` makes the server read a file on
//! its own disk, so over HTTP it is refused unless `[http] attachment_dir` is set, and then
//! only files that lie inside that directory.
//!
//! The checks never tell a token holder anything about files outside the directory:
//!
//! - A path that is lexically outside (a `..` component, or an absolute path that does not
//!   start with the directory) is refused before any filesystem call is made on it.
//! - What is left is canonicalized (symlinks followed) and must still lie inside the
//!   canonical directory, so a symlink cannot lead out of it.
//! - Missing, outside, and unreadable all get the same message (`no readable file P in the
//!   attachment directory`), so the answer is no oracle for which files exist on the server.
//!
//! The resolved file must be a regular file (a FIFO would hang the request, a device could
//! be endless), checked with `stat` before it is opened; it is opened (not read) to prove
//! it is readable. The sizes of all files a message names, and across a whole batch, are
//! added up: past `delivery.max_message_size` the request is 413 before anything is read,
//! so naming one 8 MB file thousands of times cannot make the server read gigabytes. The
//! spec is rewritten to the canonical path, so composition reads exactly the file that was
//! checked.
//!
//! The checks are blocking filesystem calls, made in one `spawn_blocking` per request
//! rather than one per call: a request can name hundreds of thousands of items.

use std::path::{Component, Path, PathBuf};

use outbox_mime::{EmailSpec, PartSource};

use axum::http::StatusCode;

use super::api::in_batch;
use super::error::ApiError;
use crate::config::Config;

/// Checks (and canonicalizes) every `path` item of `spec` against `[http] attachment_dir`;
/// their sizes together may not pass `delivery.max_message_size`.
pub async fn confine_paths(spec: &mut EmailSpec, config: &Config) -> Result<(), ApiError> {
    let mut owned = vec![std::mem::take(spec)];
    let result = confine_blocking(&mut owned, config).await;
    if let Some(back) = owned.pop() {
        *spec = back;
    }
    result.map_err(|(_, err)| err)
}

/// [`confine_paths`] for every message of a batch, with one total for the whole batch, so
/// that no file is read unless the whole batch is within the limit. An error's field is
/// prefixed with the message's index.
pub async fn confine_batch_paths(
    specs: &mut Vec<EmailSpec>,
    config: &Config,
) -> Result<(), ApiError> {
    let mut owned = std::mem::take(specs);
    let result = confine_blocking(&mut owned, config).await;
    *specs = owned;
    result.map_err(|(index, err)| in_batch(index, err))
}

/// Runs [`confine_all`] on a blocking thread, handing `specs` there and back.
async fn confine_blocking(
    specs: &mut Vec<EmailSpec>,
    config: &Config,
) -> Result<(), (usize, ApiError)> {
    let has_paths = specs.iter().any(|spec| {
        spec.html_images
            .iter()
            .chain(&spec.attachments)
            .any(|part| matches!(part, PartSource::Path { .. }))
    });
    if !has_paths {
        return Ok(());
    }
    let mut owned = std::mem::take(specs);
    let dir = config.http.attachment_dir.clone();
    let max_size = config.delivery.max_message_size.0;
    let (back, result) = tokio::task::spawn_blocking(move || {
        let result = confine_all(&mut owned, dir.as_deref(), max_size);
        (owned, result)
    })
    .await
    .map_err(|err| (0, ApiError::internal(&err)))?;
    *specs = back;
    result
}

/// Checks every `path` item of `specs` (one message, or a batch) and rewrites it to its
/// canonical form; on error, the index of the message and the error.
fn confine_all(
    specs: &mut [EmailSpec],
    attachment_dir: Option<&Path>,
    max_size: u64,
) -> Result<(), (usize, ApiError)> {
    let scope = if specs.len() > 1 {
        "this batch"
    } else {
        "this message"
    };
    let mut total: u64 = 0;
    let mut root: Option<PathBuf> = None;
    for (index, spec) in specs.iter_mut().enumerate() {
        let at = |err| (index, err);
        for (list, parts) in [
            ("html_images", &mut spec.html_images),
            ("attachments", &mut spec.attachments),
        ] {
            for (item, part) in parts.iter_mut().enumerate() {
                let PartSource::Path { path, .. } = part else {
                    continue;
                };
                let Some(dir) = attachment_dir else {
                    return Err(at(ApiError::invalid(
                        list,
                        format!(
                            "{list}: path items are not accepted over HTTP on this server \
                             (give name and content_base64, or set [http] attachment_dir)"
                        ),
                    )));
                };
                let root = match &root {
                    Some(root) => root,
                    None => root.insert(std::fs::canonicalize(dir).map_err(|err| {
                        at(ApiError::internal(&format!(
                            "http.attachment_dir {} cannot be resolved: {err}",
                            dir.display()
                        )))
                    })?),
                };
                let field = format!("{list}[{item}].path");
                let (resolved, size) = confine(&field, path, dir, root).map_err(at)?;
                total = total.saturating_add(size);
                if total > max_size {
                    return Err(at(ApiError::field(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        field.as_str(),
                        format!(
                            "{field}: with {shown} ({size} bytes), the files named by path in \
                             {scope} come to {total} bytes, over delivery.max_message_size \
                             ({max_size} bytes)",
                            shown = path.display()
                        ),
                    )));
                }
                *path = resolved;
            }
        }
    }
    Ok(())
}

/// The canonical form of `path` and its size, if `path` lies inside `root` (the canonical
/// form of `configured`, the directory as configured) and is a readable regular file.
/// Relative paths are taken from `root`.
fn confine(
    field: &str,
    path: &Path,
    configured: &Path,
    root: &Path,
) -> Result<(PathBuf, u64), ApiError> {
    // One message for every way a file can be out of reach, so that the answer does not
    // say whether a file exists outside the directory.
    let unreachable = || {
        ApiError::invalid(
            field,
            format!(
                "{field}: no readable file {} in the attachment directory",
                path.display()
            ),
        )
    };
    let joined = lexically_inside(path, configured, root).ok_or_else(unreachable)?;
    let resolved = std::fs::canonicalize(&joined).map_err(|_| unreachable())?;
    if !resolved.starts_with(root) {
        return Err(unreachable());
    }
    // stat before open: opening a FIFO would block until a writer comes.
    let metadata = std::fs::metadata(&resolved).map_err(|_| unreachable())?;
    if !metadata.is_file() {
        return Err(ApiError::invalid(
            field,
            format!("{field}: {} is not a regular file", path.display()),
        ));
    }
    // Opened, not read: proves that composition will be able to read it. The size is
    // taken from the open file, the one composition will read.
    let file = std::fs::File::open(&resolved).map_err(|_| unreachable())?;
    let metadata = file.metadata().map_err(|_| unreachable())?;
    Ok((resolved, metadata.len()))
}

/// `path` joined to `root`, unless it is lexically outside the directory: a `..` component
/// anywhere, or an absolute path under neither `root` nor `configured`. No filesystem call.
fn lexically_inside(path: &Path, configured: &Path, root: &Path) -> Option<PathBuf> {
    let plain = path.components().all(|c| {
        matches!(
            c,
            Component::Normal(_) | Component::CurDir | Component::RootDir
        )
    });
    if !plain {
        return None;
    }
    if path.is_absolute() {
        let rest = path
            .strip_prefix(root)
            .or_else(|_| path.strip_prefix(configured))
            .ok()?;
        Some(root.join(rest))
    } else {
        Some(root.join(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::ByteSize;
    use crate::http::api_tests::{call, harness_with, post, spec};
    use axum::http::Method;
    use serde_json::json;

    const MAX: u64 = 1_000_000;

    fn spec_with(path: &Path) -> EmailSpec {
        EmailSpec {
            attachments: vec![PartSource::path(path)],
            ..EmailSpec::default()
        }
    }

    fn config(dir: Option<&Path>, max: u64) -> Config {
        let mut config = Config::default();
        config.http.attachment_dir = dir.map(Path::to_path_buf);
        config.delivery.max_message_size = ByteSize(max);
        config
    }

    async fn check(spec: &mut EmailSpec, dir: Option<&Path>, max: u64) -> Result<(), ApiError> {
        confine_paths(spec, &config(dir, max)).await
    }

    #[tokio::test]
    async fn paths_stay_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("files");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(inside.join("a.txt"), "a").unwrap();
        // The directory as configured may itself be reached through a symlink.
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&inside, &alias).unwrap();

        let mut ok = spec_with(Path::new("a.txt"));
        check(&mut ok, Some(&inside), MAX).await.unwrap();
        let canonical = std::fs::canonicalize(inside.join("a.txt")).unwrap();
        assert_eq!(ok.attachments, [PartSource::path(&canonical)]);
        for absolute in [canonical.clone(), alias.join("a.txt")] {
            let mut spec = spec_with(&absolute);
            check(&mut spec, Some(&alias), MAX).await.unwrap();
            assert_eq!(spec.attachments, [PartSource::path(&canonical)]);
        }
        let err = check(&mut spec_with(Path::new("a.txt")), None, MAX)
            .await
            .unwrap_err();
        assert_eq!(err.body.field.as_deref(), Some("attachments"));
        assert!(err.body.error.contains("attachment_dir"), "{err:?}");
    }

    /// Missing, outside (lexically or through a symlink) and unreadable files all get one
    /// message, so that a token holder cannot learn which files exist on the server.
    #[tokio::test]
    async fn missing_outside_and_unreadable_files_get_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("files");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(inside.join("a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), inside.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(inside.join("gone.txt"), inside.join("dangling.txt")).unwrap();
        std::os::unix::fs::symlink(inside.join("loop.txt"), inside.join("loop.txt")).unwrap();
        let locked = inside.join("locked.txt");
        std::fs::write(&locked, "l").unwrap();
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();

        let mut bad = vec![
            PathBuf::from("../secret.txt"),  // `..`, the file exists
            PathBuf::from("../missing.txt"), // `..`, it does not
            dir.path().join("secret.txt"),   // absolute outside, exists
            dir.path().join("missing.txt"),  // absolute outside, does not
            inside.join("../secret.txt"),    // absolute with `..`
            PathBuf::from("/etc/passwd"),    // exists on every Unix
            PathBuf::from("link.txt"),       // symlink inside leading out
            PathBuf::from("missing.txt"),    // missing inside (ENOENT)
            PathBuf::from("dangling.txt"),   // dangling symlink
            PathBuf::from("loop.txt"),       // ELOOP
            PathBuf::from("a.txt/x"),        // ENOTDIR
        ];
        // Root reads a mode-0 file all the same; for anyone else it is EACCES.
        if std::fs::File::open(&locked).is_err() {
            bad.push(PathBuf::from("locked.txt"));
        }
        for path in bad {
            let mut spec = EmailSpec {
                html_images: vec![PartSource::data("x.png", b"x".to_vec())],
                attachments: vec![
                    PartSource::data("y", b"y".to_vec()),
                    PartSource::path(&path),
                ],
                ..EmailSpec::default()
            };
            let err = check(&mut spec, Some(&inside), MAX).await.unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{path:?}");
            assert_eq!(err.body.field.as_deref(), Some("attachments[1].path"));
            assert_eq!(
                err.body.error,
                format!(
                    "attachments[1].path: no readable file {} in the attachment directory",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn lexically_outside_paths_are_refused_without_touching_the_disk() {
        // Neither directory exists: the answer can only come from the path's text.
        let configured = Path::new("/nonexistent-outbox/configured");
        let root = Path::new("/nonexistent-outbox/canonical");
        for outside in [
            "/etc/passwd",
            "/nonexistent-outbox/configured-not/a",
            "/nonexistent-outbox/configured/../canonical/a",
            "../a",
            "sub/../../a",
        ] {
            assert_eq!(
                lexically_inside(Path::new(outside), configured, root),
                None,
                "{outside}"
            );
        }
        for (inside, joined) in [
            ("a", "/nonexistent-outbox/canonical/a"),
            ("./sub/a", "/nonexistent-outbox/canonical/sub/a"),
            (
                "/nonexistent-outbox/configured/a",
                "/nonexistent-outbox/canonical/a",
            ),
            (
                "/nonexistent-outbox/canonical/a",
                "/nonexistent-outbox/canonical/a",
            ),
        ] {
            assert_eq!(
                lexically_inside(Path::new(inside), configured, root),
                Some(PathBuf::from(joined)),
                "{inside}"
            );
        }
    }

    /// One file named many times, or many files each under the limit, cannot make a
    /// message (or a batch) read more than `max_message_size`.
    #[tokio::test]
    async fn file_sizes_add_up_per_message_and_per_batch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.bin"), vec![0u8; 600]).unwrap();
        let one = spec_with(Path::new("a.bin"));
        check(&mut one.clone(), Some(root), 1000).await.unwrap();

        let mut twice = EmailSpec {
            html_images: vec![PartSource::path(Path::new("a.bin"))],
            attachments: vec![PartSource::path(Path::new("a.bin"))],
            ..EmailSpec::default()
        };
        let err = check(&mut twice, Some(root), 1000).await.unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.body.field.as_deref(), Some("attachments[0].path"));
        assert!(
            err.body.error.contains("this message come to 1200 bytes")
                && err
                    .body
                    .error
                    .contains("delivery.max_message_size (1000 bytes)"),
            "{err:?}"
        );

        let mut batch = vec![one.clone(), one];
        let err = confine_batch_paths(&mut batch, &config(Some(root), 1000))
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.body.field.as_deref(), Some("[1].attachments[0].path"));
        assert!(
            err.body.error.contains("this batch come to 1200 bytes"),
            "{err:?}"
        );
        let mut batch = vec![spec_with(Path::new("a.bin"))];
        confine_batch_paths(&mut batch, &config(Some(root), 1000))
            .await
            .unwrap();
    }

    /// Through the API: 413 naming the limit, and nothing queued.
    #[tokio::test]
    async fn repeated_files_over_the_limit_are_413_through_the_api() {
        let h = harness_with(|config, dir| {
            std::fs::write(dir.join("a.bin"), vec![b'a'; 4000]).unwrap();
            config.http.attachment_dir = Some(dir.to_path_buf());
            config.delivery.max_message_size = ByteSize(10_000);
        })
        .await;
        let with = |count: usize| {
            let mut body = spec("s", "a@example.net");
            body["attachments"] = json!(vec![json!({"path": "a.bin"}); count]);
            body
        };
        let (error, field) = post(&h.app, with(3))
            .await
            .error(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(field.as_deref(), Some("attachments[2].path"));
        assert!(error.contains("delivery.max_message_size"), "{error}");

        let batch = json!([with(2), with(2)]);
        let (error, field) = call(&h.app, Method::POST, "/api/v1/messages/batch", Some(batch))
            .await
            .error(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(field.as_deref(), Some("[1].attachments[0].path"));
        assert!(error.contains("this batch"), "{error}");
        assert_eq!(h.store.counts().await.unwrap().queued, 0);
    }

    #[tokio::test]
    async fn fifos_directories_and_big_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fifo = root.join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("big.bin"), vec![0u8; 2048]).unwrap();
        // /dev/zero reached through a symlink inside the directory leaves it, and is
        // refused for that before its type matters.
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        for (name, status, words) in [
            (
                "pipe",
                StatusCode::UNPROCESSABLE_ENTITY,
                "not a regular file",
            ),
            (
                "sub",
                StatusCode::UNPROCESSABLE_ENTITY,
                "not a regular file",
            ),
            (
                "big.bin",
                StatusCode::PAYLOAD_TOO_LARGE,
                "over delivery.max_message_size",
            ),
            ("zero", StatusCode::UNPROCESSABLE_ENTITY, "no readable file"),
        ] {
            // A FIFO that were opened would block this test forever: the timeout proves
            // that the check never opens it.
            let checked = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                check(&mut spec_with(Path::new(name)), Some(root), 1024),
            )
            .await
            .expect("the check returns without opening the file");
            let err = checked.unwrap_err();
            assert_eq!(err.status, status, "{name}: {err:?}");
            assert!(err.body.error.contains(words), "{name}: {err:?}");
        }
    }
}
