//! Fresh PostgreSQL databases, one per test, dropped when the test ends (also when it
//! panics). The server is `OUTBOX_TEST_POSTGRES_URL` ([`admin_url`]), else
//! [`DEFAULT_POSTGRES_URL`]; one that cannot be reached fails the test loudly.

/// The server the PostgreSQL tests use when `OUTBOX_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The URL of the server's maintenance database the tests create their databases from:
/// `OUTBOX_TEST_POSTGRES_URL`, else [`DEFAULT_POSTGRES_URL`].
pub fn admin_url() -> String {
    std::env::var("OUTBOX_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string())
}

/// A database of its own for one test; dropping it drops the database (`WITH (FORCE)`).
pub struct TestDatabase {
    /// Its URL (the admin URL with the database name replaced).
    pub url: String,
    /// Its name, `outbox_test_` and 16 hex digits.
    pub name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database on [`admin_url`]'s server. Panics, naming the server
    /// and how to provide one, when it cannot.
    pub async fn create() -> TestDatabase {
        let admin_url = admin_url();
        let client = connect(&admin_url).await;
        let name = format!("outbox_test_{:016x}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|err| panic!("CREATE DATABASE {name} on {admin_url}: {err}"));
        TestDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// A connection to the server's admin database (for what a test does to its database
    /// from outside: `ALTER DATABASE`, `pg_terminate_backend`).
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.admin_url).await
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| {
            panic!("PostgreSQL tests need a server: cannot connect to {url}: {err} (set OUTBOX_TEST_POSTGRES_URL or run ./test.sh)")
        });
    tokio::spawn(connection);
    client
}

impl Drop for TestDatabase {
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
