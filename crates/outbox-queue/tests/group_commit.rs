//! Concurrent producers in one process: every request is committed before it is answered,
//! one request's error fails that request alone, and concurrent requests share commits
//! (group commit) on both backends.

use outbox_testkit::conformance;
use std::collections::HashSet;
use std::sync::Arc;

use outbox_queue::{
    Enqueued, MessageStatus, NewRecipient, PostgresStore, RequestKey, SqliteStore, Store,
    StoreError,
};
use outbox_testkit::{TestStore, message};

conformance!(concurrent_producers_commit_and_fail_alone);

/// A valid message id that no message has.
const UNKNOWN_ID: &str = "01JD2W6Q0R9N6X4Y7Z8A1B2C3D";

fn key(hash: &str) -> RequestKey {
    RequestKey {
        key: "order-7".into(),
        scope: "token".into(),
        request_hash: hash.into(),
    }
}

/// What one concurrent request returned.
enum Answer {
    Enqueued(Result<Vec<Enqueued>, StoreError>),
    Added(Result<u64, StoreError>),
}

/// Starts, all at once, `plain` single enqueues, a keyed enqueue repeating the first
/// request, a keyed enqueue reusing its key with another request (a conflict), recipients
/// added to `existing`, and recipients added to an unknown message.
fn start_requests(
    store: &Arc<dyn Store>,
    plain: usize,
    existing: &str,
) -> Vec<tokio::task::JoinHandle<(String, Answer)>> {
    let mut tasks = Vec::new();
    for i in 0..plain {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let subject = format!("plain {i}");
            let answer = store
                .enqueue_batch(vec![message(&subject, &["bob@example.net"])])
                .await;
            (subject, Answer::Enqueued(answer))
        }));
    }
    let keyed = |name: &'static str, hash: &'static str| {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let answer = store
                .enqueue_keyed(vec![message(name, &["kim@example.net"])], key(hash))
                .await;
            (name.to_string(), Answer::Enqueued(answer))
        })
    };
    tasks.push(keyed("repeat", "h1"));
    tasks.push(keyed("conflict", "h2"));
    let add = |name: &'static str, id: String| {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let answer = store
                .add_recipients(&id, vec![NewRecipient::new("late@example.org")])
                .await;
            (name.to_string(), Answer::Added(answer))
        })
    };
    tasks.push(add("add", existing.to_string()));
    tasks.push(add("add unknown", UNKNOWN_ID.to_string()));
    tasks
}

/// Checks every answer and that what was answered is stored; returns the new ids.
async fn check_answers(
    store: &Arc<dyn Store>,
    answers: Vec<(String, Answer)>,
    first: &Enqueued,
) -> HashSet<String> {
    let mut new_ids = HashSet::new();
    for (name, answer) in answers {
        match (name.as_str(), answer) {
            ("repeat", Answer::Enqueued(result)) => {
                assert_eq!(
                    result.unwrap(),
                    vec![Enqueued {
                        id: first.id.clone(),
                        existing: true
                    }]
                );
            }
            ("conflict", Answer::Enqueued(result)) => {
                let err = result.unwrap_err();
                assert!(
                    matches!(&err, StoreError::IdempotencyConflict { key } if key == "order-7"),
                    "{err:?}"
                );
            }
            ("add", Answer::Added(result)) => assert_eq!(result.unwrap(), 1),
            ("add unknown", Answer::Added(result)) => {
                let err = result.unwrap_err();
                assert!(
                    matches!(&err, StoreError::NotFound { id } if id == UNKNOWN_ID),
                    "{err:?}"
                );
            }
            (subject, Answer::Enqueued(result)) => {
                let enqueued = result.unwrap_or_else(|err| panic!("{subject}: {err}"));
                assert_eq!(enqueued.len(), 1);
                assert!(!enqueued[0].existing);
                let id = enqueued[0].id.clone();
                // Answered means committed: readable at once, with its own data.
                assert_eq!(store.status(&id).await.unwrap(), MessageStatus::Queued);
                assert_eq!(store.summary(&id).await.unwrap().subject, subject);
                assert!(new_ids.insert(id), "{subject}: id given twice");
            }
            (name, _) => panic!("unexpected answer to {name}"),
        }
    }
    new_ids
}

/// Many concurrent requests, some of which must fail: each failure is its own, every
/// success is stored, ids are unique.
async fn concurrent_producers_commit_and_fail_alone(t: TestStore) {
    let first = t
        .store
        .enqueue_keyed(vec![message("first", &["kim@example.net"])], key("h1"))
        .await
        .unwrap()
        .remove(0);
    let tasks = start_requests(&t.store, 40, &first.id);
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let new_ids = check_answers(&t.store, answers, &first).await;
    assert_eq!(new_ids.len(), 40);
    assert_eq!(t.store.counts().await.unwrap().queued, 41);
    assert_eq!(t.store.summary(&first.id).await.unwrap().recipients, 2);
}

/// With the database's write lock held elsewhere (another process's transaction), the
/// requests pile up; once it is released they are committed in far fewer transactions
/// than requests, and the failing ones still fail alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_producers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let sqlite = Arc::new(SqliteStore::open(&path, Default::default()).await.unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    let first = store
        .enqueue_keyed(vec![message("first", &["kim@example.net"])], key("h1"))
        .await
        .unwrap()
        .remove(0);
    let commits_before = sqlite.producer_commits();

    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let tasks = start_requests(&store, 40, &first.id);
    let requests = tasks.len() as u64;
    // Every request is submitted and none can commit while the lock is held.
    while sqlite.producer_requests_waiting() < requests {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(sqlite.producer_commits(), commits_before);
    blocker.execute_batch("COMMIT").unwrap();

    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let commits = sqlite.producer_commits() - commits_before;
    assert!(
        commits < requests,
        "{requests} requests took {commits} commits: no grouping"
    );
    let new_ids = check_answers(&store, answers, &first).await;
    assert_eq!(new_ids.len(), 40);
    assert_eq!(store.counts().await.unwrap().queued, 41);
    assert_eq!(store.summary(&first.id).await.unwrap().recipients, 2);
    assert_eq!(sqlite.producer_requests_waiting(), 0);
}

/// The same on PostgreSQL, with the `messages` table locked by another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_producers_share_commits() {
    let t = TestStore::postgres(Default::default()).await;
    let pg = Arc::new(
        PostgresStore::open(&t.url, Default::default())
            .await
            .unwrap(),
    );
    let store: Arc<dyn Store> = pg.clone();
    let first = store
        .enqueue_keyed(vec![message("first", &["kim@example.net"])], key("h1"))
        .await
        .unwrap()
        .remove(0);
    let commits_before = pg.producer_commits();

    let (mut blocker, connection) = tokio_postgres::connect(&t.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE messages IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let tasks = start_requests(&store, 40, &first.id);
    let requests = tasks.len() as u64;
    while pg.producer_requests_waiting() < requests {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(pg.producer_commits(), commits_before);
    lock.commit().await.unwrap();

    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let commits = pg.producer_commits() - commits_before;
    assert!(
        commits < requests,
        "{requests} requests took {commits} commits: no grouping"
    );
    let new_ids = check_answers(&store, answers, &first).await;
    assert_eq!(new_ids.len(), 40);
    assert_eq!(store.counts().await.unwrap().queued, 41);
    assert_eq!(store.summary(&first.id).await.unwrap().recipients, 2);
    assert_eq!(pg.producer_requests_waiting(), 0);
}

/// Recipients added in one process wake the engines of the others (one NOTIFY per group,
/// sent for added recipients as for new messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_added_recipients_notify_other_processes() {
    use std::time::Duration;
    let t = TestStore::postgres(Default::default()).await;
    let queued = t.store.enqueue(message("m", &["a@x.test"])).await.unwrap();
    let other = outbox_queue::open_store(&t.url).await.unwrap();
    let other_wake = other.enqueued();
    // The listener signals once when it connects (notifications may have been missed).
    tokio::time::timeout(Duration::from_secs(10), other_wake.notified())
        .await
        .expect("the listener connects");
    let added = t
        .store
        .add_recipients(&queued.id, vec![NewRecipient::new("b@x.test")])
        .await
        .unwrap();
    assert_eq!(added, 1);
    tokio::time::timeout(Duration::from_secs(10), other_wake.notified())
        .await
        .expect("NOTIFY outbox_enqueued reaches the other store");
}
