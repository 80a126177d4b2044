//! Which files a message posted over HTTP may name.
//!
//! A `{"path": P}` item in `html_images` or `attachments` makes the server read a file on
//! its own disk, so over HTTP it is refused unless `[http] attachment_dir` is set, and then
//! only files that resolve inside that directory: `..` components are refused outright,
//! and the path is canonicalized (symlinks followed) and must still lie inside the
//! canonical directory, so a symlink cannot lead out of it. The resolved file must be a
//! regular file (a FIFO would hang the request, a device could be endless) no bigger than
//! `delivery.max_message_size` (413 otherwise), checked with `stat` before anything is
//! read. The spec is rewritten to the canonical path, so composition reads exactly the
//! file that was checked.

use std::path::{Component, Path, PathBuf};

use outbox_mime::{EmailSpec, PartSource};

use axum::http::StatusCode;

use super::error::ApiError;
use crate::config::Config;

/// Checks (and canonicalizes) every `path` item of `spec` against `[http] attachment_dir`.
pub async fn confine_paths(spec: &mut EmailSpec, config: &Config) -> Result<(), ApiError> {
    confine_paths_in(
        spec,
        config.http.attachment_dir.as_deref(),
        config.delivery.max_message_size.0,
    )
    .await
}

async fn confine_paths_in(
    spec: &mut EmailSpec,
    attachment_dir: Option<&Path>,
    max_size: u64,
) -> Result<(), ApiError> {
    let has_paths = spec
        .html_images
        .iter()
        .chain(&spec.attachments)
        .any(|part| matches!(part, PartSource::Path { .. }));
    if !has_paths {
        return Ok(());
    }
    let root = match attachment_dir {
        Some(dir) => tokio::fs::canonicalize(dir).await.map_err(|err| {
            ApiError::internal(&format!(
                "http.attachment_dir {} cannot be resolved: {err}",
                dir.display()
            ))
        })?,
        None => {
            let field = if spec
                .html_images
                .iter()
                .any(|part| matches!(part, PartSource::Path { .. }))
            {
                "html_images"
            } else {
                "attachments"
            };
            return Err(ApiError::invalid(
                field,
                format!(
                    "{field}: path items are not accepted over HTTP on this server \
                     (give name and content_base64, or set [http] attachment_dir)"
                ),
            ));
        }
    };
    for (field, parts) in [
        ("html_images", &mut spec.html_images),
        ("attachments", &mut spec.attachments),
    ] {
        for part in parts.iter_mut() {
            if let PartSource::Path { path, .. } = part {
                *path = confine(field, path, &root, max_size).await?;
            }
        }
    }
    Ok(())
}

/// The canonical form of `path` (relative paths are taken from `root`), if it lies inside
/// `root`, itself canonical, and is a regular file of at most `max_size` bytes.
async fn confine(
    field: &str,
    path: &Path,
    root: &Path,
    max_size: u64,
) -> Result<PathBuf, ApiError> {
    let shown = path.display();
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(ApiError::invalid(
            field,
            format!("{field}: {shown}: \"..\" is not allowed in a path"),
        ));
    }
    let joined = root.join(path);
    let resolved = tokio::fs::canonicalize(&joined)
        .await
        .map_err(|err| ApiError::invalid(field, format!("{field}: cannot read {shown}: {err}")))?;
    if !resolved.starts_with(root) {
        return Err(ApiError::invalid(
            field,
            format!("{field}: {shown} is outside the attachment directory"),
        ));
    }
    let metadata = tokio::fs::metadata(&resolved)
        .await
        .map_err(|err| ApiError::invalid(field, format!("{field}: cannot read {shown}: {err}")))?;
    if !metadata.is_file() {
        return Err(ApiError::invalid(
            field,
            format!("{field}: {shown} is not a regular file"),
        ));
    }
    if metadata.len() > max_size {
        return Err(ApiError::field(
            StatusCode::PAYLOAD_TOO_LARGE,
            field,
            format!(
                "{field}: {shown} is {} bytes, over delivery.max_message_size ({max_size} bytes)",
                metadata.len()
            ),
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1_000_000;

    fn spec_with(path: &Path) -> EmailSpec {
        EmailSpec {
            attachments: vec![PartSource::path(path)],
            ..EmailSpec::default()
        }
    }

    #[tokio::test]
    async fn paths_stay_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("files");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(inside.join("a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), inside.join("link.txt")).unwrap();

        let mut ok = spec_with(Path::new("a.txt"));
        confine_paths_in(&mut ok, Some(&inside), MAX).await.unwrap();
        let canonical = std::fs::canonicalize(inside.join("a.txt")).unwrap();
        assert_eq!(ok.attachments, [PartSource::path(&canonical)]);
        let mut absolute = spec_with(&canonical);
        confine_paths_in(&mut absolute, Some(&inside), MAX)
            .await
            .unwrap();

        for bad in [
            PathBuf::from("../secret.txt"),
            PathBuf::from("link.txt"),
            dir.path().join("secret.txt"),
            PathBuf::from("missing.txt"),
        ] {
            let err = confine_paths_in(&mut spec_with(&bad), Some(&inside), MAX)
                .await
                .unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(err.body.field.as_deref(), Some("attachments"), "{bad:?}");
        }
        let err = confine_paths_in(&mut spec_with(Path::new("a.txt")), None, MAX)
            .await
            .unwrap_err();
        assert_eq!(err.body.field.as_deref(), Some("attachments"));
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
            ("zero", StatusCode::UNPROCESSABLE_ENTITY, "outside"),
        ] {
            // A FIFO that were opened would block this test forever: the timeout proves
            // that the check never opens it.
            let checked = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                confine_paths_in(&mut spec_with(Path::new(name)), Some(root), 1024),
            )
            .await
            .expect("the check returns without opening the file");
            let err = checked.unwrap_err();
            assert_eq!(err.status, status, "{name}: {err:?}");
            assert!(err.body.error.contains(words), "{name}: {err:?}");
        }
    }
}
