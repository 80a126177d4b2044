//! The store's error type: one enum with structured fields, classified as transient
//! (worth retrying: a busy database, a dropped connection) or permanent (bad input).

use std::path::PathBuf;

/// Everything a [`Store`](crate::Store) operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one of the supported forms.
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The message is bigger than the queue accepts (the seed's 8 MB limit).
    #[error(
        "message is {} MB, over the {} MB queue limit (use --now to send it without queueing)",
        megabytes(*size),
        megabytes(*limit)
    )]
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
    /// No message has this id.
    #[error("no message with id {id}")]
    NotFound {
        /// The id looked up.
        id: String,
    },
    /// The SQLite database file could not be opened or created.
    #[error("cannot open SQLite database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A SQLite statement failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
            StoreError::Sqlite(err) | StoreError::Open { source: err, .. } => matches!(
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
                | StoreError::InvalidId { .. }
                | StoreError::NotFound { .. }
        )
    }
}

/// Bytes as decimal megabytes (1 MB = 1 000 000 bytes, as the configuration counts them)
/// with at most one decimal: `9.2`, `8`.
fn megabytes(bytes: u64) -> String {
    let tenths = (bytes as f64 / 100_000.0).round() as u64;
    if tenths.is_multiple_of(10) {
        format!("{}", tenths / 10)
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
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
            "message is 9.2 MB, over the 8 MB queue limit (use --now to send it without queueing)"
        );
        assert!(err.is_permanent());
        assert!(!err.is_transient());
    }

    #[test]
    fn megabytes_round_to_one_decimal() {
        assert_eq!(megabytes(8_000_000), "8");
        assert_eq!(megabytes(8_388_608), "8.4");
        assert_eq!(megabytes(49_999), "0");
        assert_eq!(megabytes(50_000), "0.1");
    }
}
