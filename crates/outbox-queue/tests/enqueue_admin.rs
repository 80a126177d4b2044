//! Store conformance, part 1: enqueue, status, listing and administration — the same
//! tests on SQLite and PostgreSQL.

use outbox_testkit::conformance;
use std::collections::BTreeMap;
use std::time::Duration;

use outbox_queue::{
    Delivery, Enqueued, ListFilter, MessageStatus, NewMessage, NewRecipient, Outcome, Priority,
    RecipientState, RequestKey, StoreError, StoreOptions, enqueue_in_batches,
};
use outbox_testkit::{TestStore, message, soon};
use time::OffsetDateTime;

conformance!(
    enqueue_returns_an_id_and_status_is_queued,
    idempotency_key_returns_the_first_id,
    idempotency_keys_are_scoped_and_bound_to_their_request,
    oversize_and_bad_input_store_nothing,
    batch_is_all_or_nothing,
    a_batch_stores_every_row_in_order,
    bulk_recipients_store_the_body_once,
    remove_and_retry,
    purge_deletes_only_old_final_messages,
    list_filters_and_pages,
    bad_and_unknown_ids,
);

async fn enqueue_returns_an_id_and_status_is_queued(t: TestStore) {
    let queued = t
        .store
        .enqueue(message("hello", &["bob@Example.NET", "ann@b.test"]))
        .await
        .unwrap();
    assert_eq!(queued.id.len(), 26);
    assert!(!queued.existing);
    assert_eq!(
        t.store.status(&queued.id).await.unwrap(),
        MessageStatus::Queued
    );
    let detail = t.store.detail(&queued.id).await.unwrap();
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": queued.id,
            "status": "queued",
            "recipients": [
                {"address": "bob@Example.NET", "state": "queued", "attempts": 0, "last_reply": null},
                {"address": "ann@b.test", "state": "queued", "attempts": 0, "last_reply": null},
            ]
        })
    );
    let summary = t.store.summary(&queued.id).await.unwrap();
    assert_eq!(summary.subject, "hello");
    assert_eq!(summary.recipients, 2);
    assert_eq!(summary.priority, Priority::Medium);
    assert_eq!(summary.send_at, summary.created_at);
    let body = t.store.message_body(&queued.id).await.unwrap();
    assert!(body.data.starts_with(b"From: app@example.com\r\n"));
    assert_eq!(body.tokens, None);
    let counts = t.store.counts().await.unwrap();
    assert_eq!((counts.queued, counts.sent, counts.error), (1, 0, 0));
}

async fn idempotency_key_returns_the_first_id(t: TestStore) {
    let mut first = message("once", &["bob@example.net"]);
    first.idempotency_key = Some("order-42".into());
    let a = t.store.enqueue(first.clone()).await.unwrap();
    let b = t.store.enqueue(first.clone()).await.unwrap();
    assert_eq!(b.id, a.id);
    assert!(b.existing);
    let batch = t
        .store
        .enqueue_batch(vec![first, message("other", &["c@d.test"])])
        .await
        .unwrap();
    assert_eq!(batch[0].id, a.id);
    assert!(batch[0].existing);
    assert!(!batch[1].existing);
    assert_eq!(t.store.counts().await.unwrap().queued, 2);
}

/// The HTTP API's use of keys: per scope (a token's hash), tied to a hash of the request,
/// and shared by the messages of a batch at their places in it.
async fn idempotency_keys_are_scoped_and_bound_to_their_request(t: TestStore) {
    let key = |scope: &str, hash: &str| RequestKey {
        key: "k-1".into(),
        scope: scope.into(),
        request_hash: hash.into(),
    };
    let one = || vec![message("keyed", &["bob@example.net"])];
    let a = t
        .store
        .enqueue_keyed(one(), key("token-a", "h1"))
        .await
        .unwrap();
    let again = t
        .store
        .enqueue_keyed(one(), key("token-a", "h1"))
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![Enqueued {
            id: a[0].id.clone(),
            existing: true
        }]
    );
    // Another scope with the same key is another message.
    let b = t
        .store
        .enqueue_keyed(one(), key("token-b", "h1"))
        .await
        .unwrap();
    assert!(!b[0].existing);
    assert_ne!(b[0].id, a[0].id);
    // The same key with another request: a conflict, nothing stored.
    let err = t
        .store
        .enqueue_keyed(
            vec![message("x", &["c@d.test"]), message("y", &["c@d.test"])],
            key("token-a", "h2"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::IdempotencyConflict { key } if key == "k-1"),
        "{err:?}"
    );
    assert_eq!(t.store.counts().await.unwrap().queued, 2);
    // A batch shares one key: each message at its own place, repeated as a whole.
    let two = || vec![message("1", &["a@b.test"]), message("2", &["c@d.test"])];
    let first = t
        .store
        .enqueue_keyed(two(), key("token-c", "hb"))
        .await
        .unwrap();
    let second = t
        .store
        .enqueue_keyed(two(), key("token-c", "hb"))
        .await
        .unwrap();
    assert!(first.iter().all(|e| !e.existing));
    assert!(second.iter().all(|e| e.existing));
    let ids = |v: &[Enqueued]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&second));
    assert_ne!(first[0].id, first[1].id);
    assert_eq!(t.store.counts().await.unwrap().queued, 4);
    // Keys without a scope (other callers) live apart from the scoped ones.
    let mut legacy = message("legacy", &["e@f.test"]);
    legacy.idempotency_key = Some("k-1".into());
    assert!(!t.store.enqueue(legacy).await.unwrap().existing);
}

async fn oversize_and_bad_input_store_nothing(t: TestStore) {
    let mut big = message("big", &["bob@example.net"]);
    big.data = vec![b'x'; 9_200_000];
    let err = t.store.enqueue(big).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "message is 9.2 MB, over the 8 MB queue limit"
    );
    assert!(matches!(
        t.store.enqueue(message("none", &[])).await,
        Err(StoreError::NoRecipients)
    ));
    let err = t
        .store
        .enqueue(message("bad", &["ok@a.test", "no-domain"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidRecipient { address } if address == "no-domain"),
        "{err}"
    );
    let mut bad_from = message("bad from", &["ok@a.test"]);
    bad_from.envelope_from = "a@b.test>\r\nRCPT TO:<x@y>".into();
    assert!(matches!(
        t.store.enqueue(bad_from).await,
        Err(StoreError::InvalidSender { .. })
    ));
    let counts = t.store.counts().await.unwrap();
    assert_eq!((counts.queued, counts.sent, counts.error), (0, 0, 0));
}

async fn batch_is_all_or_nothing(t: TestStore) {
    let messages: Vec<NewMessage> = (0..50)
        .map(|i| message(&format!("m{i}"), &[&format!("u{i}@a.test")]))
        .collect();
    let ids = t.store.enqueue_batch(messages.clone()).await.unwrap();
    assert_eq!(ids.len(), 50);
    let mut with_bad = messages;
    with_bad.push(message("bad", &["nobody"]));
    assert!(t.store.enqueue_batch(with_bad).await.is_err());
    assert_eq!(t.store.counts().await.unwrap().queued, 50);
}

/// A batch larger than one multi-row statement (and not a multiple of it), with messages of
/// different recipient counts and a key repeated inside the batch: every row lands with its
/// own message, recipients in the order given, the repeated key answered with the first id.
async fn a_batch_stores_every_row_in_order(t: TestStore) {
    let messages: Vec<NewMessage> = (0..77)
        .map(|i| {
            let recipients: Vec<String> = (0..(i % 4) + 1)
                .map(|r| format!("r{r}.m{i}@d{}.test", (i + r) % 3))
                .collect();
            let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
            let mut m = message(&format!("m{i}"), &refs);
            m.data =
                format!("From: app@example.com\r\nSubject: m{i}\r\n\r\nbody {i}\r\n").into_bytes();
            if i == 10 || i == 60 {
                m.idempotency_key = Some("same-in-batch".into());
            }
            m
        })
        .collect();
    let queued = t.store.enqueue_batch(messages.clone()).await.unwrap();
    assert_eq!(queued.len(), 77);
    assert!(!queued[10].existing);
    assert_eq!(
        queued[60],
        Enqueued {
            id: queued[10].id.clone(),
            existing: true
        }
    );
    for (i, (m, q)) in messages.iter().zip(&queued).enumerate() {
        if i == 60 {
            continue;
        }
        assert!(!q.existing, "m{i}");
        let detail = t.store.detail(&q.id).await.unwrap();
        let addresses: Vec<&str> = detail
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        let given: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addresses, given, "m{i}");
        assert_eq!(
            t.store.summary(&q.id).await.unwrap().subject,
            format!("m{i}")
        );
        assert_eq!(
            t.store.message_body(&q.id).await.unwrap().data,
            m.data,
            "m{i}"
        );
    }
    assert_eq!(t.store.counts().await.unwrap().queued, 76);
}

async fn bulk_recipients_store_the_body_once(t: TestStore) {
    let mut bulk = message("Hi #name#", &[]);
    bulk.tokens = Some(BTreeMap::from([("name".to_string(), "friend".to_string())]));
    bulk.recipients = (0..12_000)
        .map(|i| {
            NewRecipient::with_merge(
                format!("user{i}@d{}.test", i % 7),
                BTreeMap::from([("name".to_string(), format!("User {i}"))]),
            )
        })
        .collect();
    let queued = enqueue_in_batches(&*t.store, bulk, 5_000).await.unwrap();
    let summary = t.store.summary(&queued.id).await.unwrap();
    assert_eq!(summary.recipients, 12_000);
    assert_eq!(
        t.store.detail(&queued.id).await.unwrap().recipients.len(),
        12_000
    );
    let body = t.store.message_body(&queued.id).await.unwrap();
    assert_eq!(body.tokens.unwrap()["name"], "friend");
    let page = t
        .store
        .list({
            let mut list_filter = ListFilter::default();
            list_filter.domain = Some("d3.test".into());
            list_filter
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let added = t
        .store
        .add_recipients(&queued.id, vec![NewRecipient::new("late@d0.test")])
        .await
        .unwrap();
    assert_eq!(added, 1);
    assert_eq!(
        t.store.summary(&queued.id).await.unwrap().recipients,
        12_001
    );
}

async fn remove_and_retry(t: TestStore) {
    let now = soon();
    let a = t
        .store
        .enqueue(message("a", &["x@a.test", "y@a.test"]))
        .await
        .unwrap();
    assert_eq!(t.store.remove(&a.id).await.unwrap(), 2);
    assert_eq!(t.store.status(&a.id).await.unwrap(), MessageStatus::Error);
    let detail = t.store.detail(&a.id).await.unwrap();
    assert!(
        detail
            .recipients
            .iter()
            .all(|r| r.state == RecipientState::Removed)
    );
    assert!(
        !t.store
            .has_due(now + Duration::from_secs(3600))
            .await
            .unwrap()
    );
    // A removed message stays removed on retry: only deferred and failed come back.
    assert_eq!(t.store.retry(&a.id, now).await.unwrap(), 0);

    let b = t.store.enqueue(message("b", &["x@b.test"])).await.unwrap();
    let claimed = t.store.claim("w1", now, 10).await.unwrap();
    let rid = claimed[0].recipients[0].id;
    let outcome = Outcome {
        recipient_id: rid,
        epoch: claimed[0].recipients[0].epoch,
        delivery: Delivery::Failed {
            reply: "550 5.1.1 no such user".into(),
        },
        at: now,
        host: Some("127.0.0.1:25".into()),
        duration: Duration::from_millis(12),
    };
    assert_eq!(t.store.complete("w1", vec![outcome]).await.unwrap(), 1);
    assert_eq!(t.store.status(&b.id).await.unwrap(), MessageStatus::Error);
    assert_eq!(t.store.retry(&b.id, now).await.unwrap(), 1);
    assert_eq!(t.store.status(&b.id).await.unwrap(), MessageStatus::Queued);
    let detail = t.store.detail(&b.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Queued);
    assert_eq!(detail.recipients[0].attempts, 1);
    assert!(t.store.has_due(now).await.unwrap());
}

async fn purge_deletes_only_old_final_messages(t: TestStore) {
    let done = t
        .store
        .enqueue(message("done", &["x@a.test"]))
        .await
        .unwrap();
    let pending = t
        .store
        .enqueue(message("pending", &["y@a.test"]))
        .await
        .unwrap();
    t.store.remove(&done.id).await.unwrap();
    let past = OffsetDateTime::now_utc() - Duration::from_secs(3600);
    assert_eq!(t.store.purge(past).await.unwrap(), 0);
    let future = OffsetDateTime::now_utc() + Duration::from_secs(60);
    assert_eq!(t.store.purge(future).await.unwrap(), 1);
    assert!(matches!(
        t.store.status(&done.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        t.store.status(&pending.id).await.unwrap(),
        MessageStatus::Queued
    );
}

async fn list_filters_and_pages(t: TestStore) {
    for i in 0..7 {
        let mut m = message(
            &format!("Report {i}"),
            &[&format!(
                "u{i}@{}.test",
                if i % 2 == 0 { "even" } else { "odd" }
            )],
        );
        m.priority = if i < 2 { Priority::High } else { Priority::Low };
        t.store.enqueue(m).await.unwrap();
    }
    let removed = t
        .store
        .enqueue(message("Invoice", &["z@odd.test"]))
        .await
        .unwrap();
    t.store.remove(&removed.id).await.unwrap();

    let all = t.store.list(ListFilter::default()).await.unwrap();
    assert_eq!(all.items.len(), 8);
    assert_eq!(all.items[0].id, removed.id, "newest first");
    assert!(all.next_cursor.is_none());

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = t
            .store
            .list({
                let mut list_filter = ListFilter::default();
                list_filter.limit = 3;
                list_filter.cursor = cursor.clone();
                list_filter
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|m| m.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        all.items.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    );

    let count = |filter: ListFilter| {
        let store = t.store.clone();
        async move { store.list(filter).await.unwrap().items.len() }
    };
    assert_eq!(
        count({
            let mut list_filter = ListFilter::default();
            list_filter.status = Some(MessageStatus::Error);
            list_filter
        })
        .await,
        1
    );
    assert_eq!(
        count({
            let mut list_filter = ListFilter::default();
            list_filter.priority = Some(Priority::High);
            list_filter
        })
        .await,
        2
    );
    assert_eq!(
        count({
            let mut list_filter = ListFilter::default();
            list_filter.domain = Some("ODD.test".into());
            list_filter
        })
        .await,
        4
    );
    assert_eq!(
        count({
            let mut list_filter = ListFilter::default();
            list_filter.subject = Some("report".into());
            list_filter
        })
        .await,
        7
    );
    let later = OffsetDateTime::now_utc() + Duration::from_secs(60);
    assert_eq!(
        count({
            let mut list_filter = ListFilter::default();
            list_filter.before = Some(later);
            list_filter
        })
        .await,
        8
    );
    assert_eq!(
        count({
            let mut list_filter = ListFilter::default();
            list_filter.after = Some(later);
            list_filter
        })
        .await,
        0
    );
    let counts = t.store.counts().await.unwrap();
    assert_eq!((counts.queued, counts.error), (7, 1));
}

async fn bad_and_unknown_ids(t: TestStore) {
    let err = t.store.status("not-an-id").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidId { .. }), "{err}");
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let err = t.store.detail(unknown).await.unwrap_err();
    assert_eq!(err.to_string(), format!("no message with id {unknown}"));
    assert!(matches!(
        t.store.remove(unknown).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        t.store.retry(unknown, OffsetDateTime::now_utc()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        t.store.attempts(unknown).await,
        Err(StoreError::NotFound { .. })
    ));
    let opts = StoreOptions::default();
    assert_eq!(opts.max_message_size, 8_000_000);
}
