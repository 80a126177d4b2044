//! Stores under test: a SQLite file in a temp dir, or a fresh PostgreSQL database per test
//! ([`crate::postgres`]).

use std::sync::Arc;

use outbox_queue::{NewMessage, NewRecipient, PostgresStore, SqliteStore, Store, StoreOptions};

use crate::postgres::TestDatabase;

/// A store under test and what must be cleaned up after it.
pub struct TestStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Its URL (`sqlite://PATH` or `postgres://...`), for a second process to open.
    pub url: String,
    _guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

impl TestStore {
    /// A new SQLite store in a temp dir.
    pub async fn sqlite(options: StoreOptions) -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("queue.db");
        let store = SqliteStore::open(&path, options)
            .await
            .expect("open SQLite store");
        TestStore {
            store: Arc::new(store),
            url: format!("sqlite://{}", path.display()),
            _guard: Guard::Sqlite(dir),
        }
    }

    /// A new PostgreSQL store in its own database.
    pub async fn postgres(options: StoreOptions) -> TestStore {
        let database = TestDatabase::create().await;
        let store = PostgresStore::open(&database.url, options)
            .await
            .expect("open PostgreSQL store");
        TestStore {
            store: Arc::new(store),
            url: database.url.clone(),
            _guard: Guard::Postgres(database),
        }
    }
}

/// A small message to `recipients`.
pub fn message(subject: &str, recipients: &[&str]) -> NewMessage {
    let mut message = NewMessage::default();
    message.data =
        format!("From: app@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes();
    message.envelope_from = "app@example.com".into();
    message.recipients = recipients.iter().map(|r| NewRecipient::new(*r)).collect();
    message.subject = subject.into();
    message
}

/// The benchmarks' message number `i`: 1 KB (1 024 bytes of data) from
/// bench@example.com to `user{i}@example.net`.
pub fn bench_message(i: usize) -> NewMessage {
    let mut data =
        format!("From: bench@example.com\r\nTo: user{i}@example.net\r\nSubject: bench {i}\r\n\r\n")
            .into_bytes();
    data.resize(1024 - 2, b'x');
    data.extend_from_slice(b"\r\n");
    let mut message = NewMessage::default();
    message.data = data;
    message.envelope_from = "bench@example.com".into();
    message.recipients = vec![NewRecipient::new(format!("user{i}@example.net"))];
    message.subject = format!("bench {i}");
    message
}

/// Instantiates each listed async test fn (taking a [`TestStore`]) for both stores, in
/// modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestStore::sqlite(Default::default()).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestStore::postgres(Default::default()).await).await;
                }
            )*
        }
    };
}

/// A claim time safely after every enqueue so far: enqueues stamp the wall clock in
/// milliseconds, and a claim at the same millisecond as its enqueue may or may not see
/// the message as due.
pub fn soon() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(1)
}
