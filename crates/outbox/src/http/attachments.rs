//! Which files a message posted over HTTP may name.
//!
//! A `{"path": P}` item in `html_images` or `attachments` makes the server read a file on
//! its own disk, so over HTTP it is refused unless `[http] attachment_dir` is set, and then
//! only files that resolve inside that directory: `..` components are refused outright,
//! and the path is canonicalized (symlinks followed) and must still lie inside the
//! canonical directory, so a symlink cannot lead out of it. The spec is rewritten to the
//! canonical path, so composition reads exactly the file that was checked.

use std::path::{Component, Path, PathBuf};

use outbox_mime::{EmailSpec, PartSource};

use super::error::ApiError;

/// Checks (and canonicalizes) every `path` item of `spec` against `attachment_dir`.
pub async fn confine_paths(
    spec: &mut EmailSpec,
    attachment_dir: Option<&Path>,
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
                *path = confine(field, path, &root).await?;
            }
        }
    }
    Ok(())
}

/// The canonical form of `path` (relative paths are taken from `root`), if it lies inside
/// `root`, itself canonical.
async fn confine(field: &str, path: &Path, root: &Path) -> Result<PathBuf, ApiError> {
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
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        confine_paths(&mut ok, Some(&inside)).await.unwrap();
        let canonical = std::fs::canonicalize(inside.join("a.txt")).unwrap();
        assert_eq!(ok.attachments, [PartSource::path(&canonical)]);
        let mut absolute = spec_with(&canonical);
        confine_paths(&mut absolute, Some(&inside)).await.unwrap();

        for bad in [
            PathBuf::from("../secret.txt"),
            PathBuf::from("link.txt"),
            dir.path().join("secret.txt"),
            PathBuf::from("missing.txt"),
        ] {
            let err = confine_paths(&mut spec_with(&bad), Some(&inside))
                .await
                .unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(err.body.field.as_deref(), Some("attachments"), "{bad:?}");
        }
        let err = confine_paths(&mut spec_with(Path::new("a.txt")), None)
            .await
            .unwrap_err();
        assert_eq!(err.body.field.as_deref(), Some("attachments"));
    }
}
