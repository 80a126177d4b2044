//! Test backends: a SQLite file in a temp dir, or a fresh PostgreSQL database per test
//! (`OUTBOX_TEST_POSTGRES_URL`, else the server on 127.0.0.1:5432, database `test`).
//! A PostgreSQL server that cannot be reached fails the test loudly.

#![allow(dead_code)]

pub mod counting;
pub mod peer;

use std::sync::Arc;

use outbox_queue::{NewMessage, NewRecipient, PostgresStore, SqliteStore, Store, StoreOptions};

/// The server the PostgreSQL tests use when `OUTBOX_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A store under test and what must be cleaned up after it.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub url: String,
    _guard: Guard,
}

enum Guard {
    Sqlite(tempfile::TempDir),
    Postgres(DropDatabase),
}

/// Drops the per-test database when the test ends, also when it panics.
struct DropDatabase {
    admin_url: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // A fresh thread and runtime: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
                        .await
                        .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
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
        let admin_url = std::env::var("OUTBOX_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string());
        let (client, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|err| {
                panic!("PostgreSQL tests need a server: cannot connect to {admin_url}: {err} (set OUTBOX_TEST_POSTGRES_URL or run ./test.sh)")
            });
        tokio::spawn(connection);
        let name = format!("outbox_test_{:016x}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|err| panic!("CREATE DATABASE {name} on {admin_url}: {err}"));
        let guard = DropDatabase {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let url = with_database(&admin_url, &name);
        let store = PostgresStore::open(&url, options)
            .await
            .expect("open PostgreSQL store");
        TestStore {
            store: Arc::new(store),
            url,
            _guard: Guard::Postgres(guard),
        }
    }
}

/// The URL with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A small message to `recipients`.
pub fn message(subject: &str, recipients: &[&str]) -> NewMessage {
    NewMessage {
        data: format!("From: app@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes(),
        envelope_from: "app@example.com".into(),
        recipients: recipients.iter().map(|r| NewRecipient::new(*r)).collect(),
        subject: subject.into(),
        ..NewMessage::default()
    }
}

/// Instantiates each listed async test fn (taking a `TestStore`) for both backends.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::TestStore::sqlite(Default::default()).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::TestStore::postgres(Default::default()).await).await;
                }
            )*
        }
    };
}

#[test]
fn database_names_replace_the_path() {
    assert_eq!(
        with_database("postgres://root@127.0.0.1:5432/test", "x"),
        "postgres://root@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://root@127.0.0.1:5432?sslmode=disable", "x"),
        "postgres://root@127.0.0.1:5432/x?sslmode=disable"
    );
}

/// A claim time safely after every enqueue so far: enqueues stamp the wall clock in
/// milliseconds, and a claim at the same millisecond as its enqueue may or may not see
/// the message as due.
pub fn soon() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(1)
}
