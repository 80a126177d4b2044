//! The store's error type: one enum with structured fields, classified as transient
//! (worth retrying: a busy database, a dropped connection) or permanent (bad input).

use std::path::PathBuf;

/// Everything a [`Store`](crate::Store) operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL is not one of the supported forms.
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given, its password replaced by `***` (build it with
        /// [`StoreError::invalid_url`]).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The message is bigger than the queue accepts (the seed's 8 MB limit). The text
    /// names no way around the limit: that depends on the interface (`send --now`, HTTP
    /// `immediate`), which words it; [`sizes`] gives the two sizes as this text shows them.
    #[error("message is {}, over the {} queue limit", sizes(*size, *limit).0, sizes(*size, *limit).1)]
    TooLarge {
        /// Size of the message data in bytes.
        size: u64,
        /// The configured `max_message_size` in bytes.
        limit: u64,
    },
    /// A message was given without any envelope recipient.
    #[error("message has no recipients")]
    NoRecipients,
    /// The message has a line over 998 octets that cannot be folded or re-encoded.
    #[error("message refused: {0}")]
    LineTooLong(#[from] outbox_mime::LineLengthError),
    /// A recipient address has no domain part, so no route can be computed.
    #[error("invalid recipient address {address:?}: expected local@domain")]
    InvalidRecipient {
        /// The address as given.
        address: String,
    },
    /// A suppression (or a filter of the suppression list) was given a bad value.
    #[error("invalid suppression {field}: {reason}")]
    InvalidSuppression {
        /// The field: `address`, `list`, `reason`, `message_id` or `cursor`.
        field: &'static str,
        /// What is wrong with it (the value shown shortened).
        reason: String,
    },
    /// A page cursor that no listing handed out (the event log's are event ids).
    #[error("invalid cursor {cursor:?}: expected the next_cursor of a previous page")]
    InvalidCursor {
        /// The cursor as given, shortened.
        cursor: String,
    },
    /// The envelope sender contains characters that cannot appear in MAIL FROM.
    #[error("invalid envelope sender {address:?}")]
    InvalidSender {
        /// The address as given.
        address: String,
    },
    /// The text is not a message id (a 26-character ULID).
    #[error("invalid message id {id:?}: expected a 26-character ULID")]
    InvalidId {
        /// The id as given.
        id: String,
    },
    /// An idempotency key already used with a different request.
    #[error("Idempotency-Key {key:?} was already used with a different request")]
    IdempotencyConflict {
        /// The key.
        key: String,
    },
    /// No message has this id.
    #[error("no message with id {id}")]
    NotFound {
        /// The id looked up.
        id: String,
    },
    /// The SQLite database file could not be opened or created.
    #[error("cannot open SQLite database {}: {}", path.display(), open_reason(path, error))]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said. Not a `source`: the message already says it (or says more
        /// precisely that the directory is missing), and a source would repeat it.
        error: rusqlite::Error,
    },
    /// A SQLite statement failed. Shown once: rusqlite's error repeats its own text as
    /// its source, so this variant has no source of its own.
    #[error("SQLite: {}", sqlite_text(.0))]
    Sqlite(rusqlite::Error),
    /// A PostgreSQL statement or connection failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be taken from the pool.
    #[error("PostgreSQL connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The database holds a newer schema than this program knows.
    #[error(
        "database schema version {found} is newer than this outbox knows ({known}); upgrade outbox"
    )]
    SchemaTooNew {
        /// The version recorded in the database.
        found: i64,
        /// The newest version this build has migrations for.
        known: i64,
    },
    /// A stored value could not be read back (an unknown state name, bad JSON).
    #[error("corrupt {what} in the queue database: {detail}")]
    Corrupt {
        /// Which column or value.
        what: &'static str,
        /// What was found.
        detail: String,
    },
    /// The blocking worker running a SQLite statement panicked or was cancelled.
    #[error("database worker failed: {0}")]
    Worker(String),
}

impl StoreError {
    /// True when retrying the same operation later may succeed: a busy or locked SQLite
    /// database, a dropped PostgreSQL connection, an exhausted pool.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(err) | StoreError::Open { error: err, .. } => matches!(
                err.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StoreError::Postgres(err) => err.is_closed() || err.code().is_none(),
            StoreError::Pool(_) | StoreError::Worker(_) => true,
            _ => false,
        }
    }

    /// True when the input itself is wrong and retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidUrl { .. }
                | StoreError::TooLarge { .. }
                | StoreError::NoRecipients
                | StoreError::LineTooLong(_)
                | StoreError::InvalidRecipient { .. }
                | StoreError::InvalidSender { .. }
                | StoreError::InvalidSuppression { .. }
                | StoreError::InvalidCursor { .. }
                | StoreError::InvalidId { .. }
                | StoreError::NotFound { .. }
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Sqlite(err)
    }
}

impl StoreError {
    /// An [`StoreError::InvalidUrl`] that shows the URL with its password as `***`.
    pub fn invalid_url(url: &str, reason: impl Into<String>) -> Self {
        StoreError::InvalidUrl {
            url: outbox_smtp::redact(url),
            reason: reason.into(),
        }
    }
}

/// rusqlite's own text, without its source (which repeats the same words).
fn sqlite_text(err: &rusqlite::Error) -> String {
    err.to_string()
}

/// Why a database file could not be opened: a missing directory is named as such (SQLite
/// only says "unable to open database file").
fn open_reason(path: &std::path::Path, err: &rusqlite::Error) -> String {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    match parent {
        Some(dir) if !dir.exists() => format!("directory {} does not exist", dir.display()),
        Some(dir) if !dir.is_dir() => format!("{} is not a directory", dir.display()),
        _ => sqlite_text(err),
    }
}

/// A message size and a limit as [`StoreError::TooLarge`] shows them: in decimal units
/// (bytes, KB, MB, GB, as the configuration counts them) with at most one decimal, both in
/// the larger one's unit. When rounding would make them look equal (8 MB over 8 MB),
/// both are shown in exact bytes.
pub fn sizes(size: u64, limit: u64) -> (String, String) {
    let (factor, unit) = unit_for(size.max(limit));
    let (a, b) = (scaled(size, factor, unit), scaled(limit, factor, unit));
    if a == b {
        (format!("{size} bytes"), format!("{limit} bytes"))
    } else {
        (a, b)
    }
}

/// One size in human decimal units: `512 bytes`, `1.5 KB`, `9.2 MB`, `2 GB`.
pub fn human_size(bytes: u64) -> String {
    let (factor, unit) = unit_for(bytes);
    scaled(bytes, factor, unit)
}

fn unit_for(bytes: u64) -> (u64, &'static str) {
    // The unit is chosen on the rounded value, so 999 960 bytes is "1 MB", not "1000 KB".
    let rounds_to = |factor: u64| (bytes as f64 / factor as f64 * 10.0).round() / 10.0;
    if bytes < 1_000 {
        (1, "bytes")
    } else if rounds_to(1_000) < 1_000.0 {
        (1_000, "KB")
    } else if rounds_to(1_000_000) < 1_000.0 {
        (1_000_000, "MB")
    } else {
        (1_000_000_000, "GB")
    }
}

fn scaled(bytes: u64, factor: u64, unit: &str) -> String {
    if factor == 1 {
        return format!("{bytes} {unit}");
    }
    let tenths = (bytes as f64 / factor as f64 * 10.0).round() as u64;
    if tenths.is_multiple_of(10) {
        format!("{} {unit}", tenths / 10)
    } else {
        format!("{}.{} {unit}", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversize_message_names_the_limit() {
        let err = StoreError::TooLarge {
            size: 9_200_000,
            limit: 8_000_000,
        };
        assert_eq!(
            err.to_string(),
            "message is 9.2 MB, over the 8 MB queue limit"
        );
        assert!(err.is_permanent());
        assert!(!err.is_transient());
    }

    #[test]
    fn sizes_make_sense_at_every_scale() {
        let cases = [
            (600, 500, "600 bytes", "500 bytes"),
            (1_500, 1_000, "1.5 KB", "1 KB"),
            (1_500, 999, "1.5 KB", "1 KB"),
            (120_000, 100_000, "120 KB", "100 KB"),
            (999_960, 500_000, "1 MB", "0.5 MB"),
            (8_388_608, 8_000_000, "8.4 MB", "8 MB"),
            (2_500_000_000, 1_000_000_000, "2.5 GB", "1 GB"),
            // Rounding must not show a message "8 MB over the 8 MB limit".
            (8_000_001, 8_000_000, "8000001 bytes", "8000000 bytes"),
            (1_001, 1_000, "1001 bytes", "1000 bytes"),
        ];
        for (size, limit, a, b) in cases {
            assert_eq!(
                sizes(size, limit),
                (a.to_string(), b.to_string()),
                "{size} {limit}"
            );
        }
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(49_999), "50 KB");
        assert_eq!(
            StoreError::TooLarge {
                size: 2_000,
                limit: 1_000
            }
            .to_string(),
            "message is 2 KB, over the 1 KB queue limit"
        );
    }

    #[test]
    fn invalid_urls_hide_the_password() {
        let err = StoreError::invalid_url("postgres://app:pg-Secret@h:x/db", "invalid port");
        assert!(!err.to_string().contains("pg-Secret"), "{err}");
        assert!(
            err.to_string().contains("postgres://app:***@h:x/db"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_directory_is_named_once() {
        let path = std::path::Path::new("/nonexistent-outbox-dir/sub/outbox.db");
        let error = rusqlite::Connection::open(path).unwrap_err();
        let err = StoreError::Open {
            path: path.to_path_buf(),
            error,
        };
        assert_eq!(
            err.to_string(),
            "cannot open SQLite database /nonexistent-outbox-dir/sub/outbox.db: directory /nonexistent-outbox-dir/sub does not exist"
        );
        assert!(std::error::Error::source(&err).is_none());
    }
}
