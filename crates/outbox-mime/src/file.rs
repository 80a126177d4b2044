//! Reading the files a message names (attachments, inline images, and the CLI's body and
//! spec files) without trusting them: only regular files, only up to a size limit, and never
//! a read that can block forever or grow without bound.
//!
//! The file is opened with `O_NONBLOCK` (so opening a FIFO returns at once instead of
//! waiting for a writer), then the *opened* descriptor is checked with `fstat`: what is
//! read is exactly what was checked (no window between a `stat` and the `open`). The size
//! is checked before any byte is read, and the read itself stops one byte past the limit,
//! in case the file grows meanwhile.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Files composition reads are refused above this size unless the caller gives its own
/// limit ([`crate::ComposeOptions::max_file_size`]): 64 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// Why a file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A directory, FIFO, socket or device: refused before reading anything.
    #[error("not a regular file (it is a {kind})")]
    NotRegular {
        /// `directory`, `FIFO`, `socket`, `character device`, `block device`.
        kind: &'static str,
    },
    /// Larger than the limit: refused before reading anything (or when it grew while read).
    #[error("{size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The size found (at least `limit + 1` when the file grew while read).
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Opening or reading failed.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

/// The whole content of the regular file at `path`, if it holds at most `limit` bytes.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_dir() {
            "directory"
        } else if file_type.is_fifo() {
            "FIFO"
        } else if file_type.is_socket() {
            "socket"
        } else if file_type.is_char_device() {
            "character device"
        } else if file_type.is_block_device() {
            "block device"
        } else {
            "special file"
        };
        return Err(FileError::NotRegular { kind });
    }
    if metadata.len() > limit {
        return Err(FileError::TooLarge {
            size: metadata.len(),
            limit,
        });
    }
    // The size is known and bounded, so the buffer is allocated once.
    let capacity = usize::try_from(metadata.len()).unwrap_or(0);
    read_bounded_into(file, limit, Vec::with_capacity(capacity))
}

/// Everything `reader` gives (stdin, a pipe), refused once it passes `limit` bytes; at most
/// `limit + 1` bytes are ever held.
pub fn read_bounded(reader: impl Read, limit: u64) -> Result<Vec<u8>, FileError> {
    read_bounded_into(reader, limit, Vec::new())
}

fn read_bounded_into(
    reader: impl Read,
    limit: u64,
    mut data: Vec<u8>,
) -> Result<Vec<u8>, FileError> {
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(FileError::TooLarge {
            size: data.len() as u64,
            limit,
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_file(&path, 5).unwrap(), b"12345");
        assert!(matches!(
            read_file(&path, 4),
            Err(FileError::TooLarge { size: 5, limit: 4 })
        ));
        assert!(matches!(
            read_file(&dir.path().join("missing"), 5),
            Err(FileError::Io(_))
        ));
    }

    #[test]
    fn streams_stop_one_byte_past_the_limit() {
        let err = read_bounded(std::io::repeat(b'x'), 1000).unwrap_err();
        assert!(matches!(
            err,
            FileError::TooLarge {
                size: 1001,
                limit: 1000
            }
        ));
        assert_eq!(read_bounded(&b"abc"[..], 3).unwrap(), b"abc");
    }
}
