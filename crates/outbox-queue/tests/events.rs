//! Store conformance: the event log (one event per state change, in the transaction of
//! the change) and the bookkeeping of webhook deliveries (dispatch, batches in order,
//! backoff, locks, pruning) — the same tests on SQLite and PostgreSQL.

use std::time::Duration;

use outbox_queue::{
    Delivery, Event, EventFilter, EventType, NewRecipient, NewSuppression, Outcome, StoreError,
    SuppressionReason, WebhookResult, WebhookRoute, WorkerInfo,
};
use outbox_testkit::conformance;
use outbox_testkit::{TestStore, message, soon};
use time::OffsetDateTime;

conformance!(
    enqueue_records_queued_and_suppressed,
    outcomes_record_one_event_each_and_stale_ones_none,
    a_claim_records_suppressed,
    unsubscribe_is_an_event_once,
    listing_pages_and_filters,
    dispatch_fans_out_by_type_once,
    batches_keep_event_order_and_wait_for_backoff,
    one_sender_per_webhook,
    prune_keeps_what_a_webhook_waits_for,
);

async fn all_events(t: &TestStore, message_id: Option<&str>) -> Vec<Event> {
    t.store
        .events({
            let mut event_filter = EventFilter::default();
            event_filter.message_id = message_id.map(str::to_string);
            event_filter.limit = 1000;
            event_filter.cursor = None;
            event_filter
        })
        .await
        .unwrap()
        .items
}

fn kinds(events: &[Event]) -> Vec<(String, EventType)> {
    events
        .iter()
        .map(|e| (e.recipient.clone(), e.kind))
        .collect()
}

async fn enqueue_records_queued_and_suppressed(t: TestStore) {
    t.store
        .suppress({
            let mut new_suppression = NewSuppression::default();
            new_suppression.address = "bob@x.test".into();
            new_suppression.reason = SuppressionReason::Manual;
            new_suppression
        })
        .await
        .unwrap();
    let id = t
        .store
        .enqueue(message("a", &["ann@x.test", "bob@x.test"]))
        .await
        .unwrap()
        .id;
    t.store
        .add_recipients(&id, vec![NewRecipient::new("cat@x.test")])
        .await
        .unwrap();
    let events = all_events(&t, Some(&id)).await;
    assert_eq!(
        kinds(&events),
        [
            ("ann@x.test".to_string(), EventType::Queued),
            ("bob@x.test".to_string(), EventType::Suppressed),
            ("cat@x.test".to_string(), EventType::Queued),
        ]
    );
    assert!(events.iter().all(|e| e.message_id.as_deref() == Some(&*id)));
    assert_eq!(events[1].state.as_deref(), Some("suppressed"));
    assert!(
        events[1]
            .reply
            .as_deref()
            .unwrap()
            .starts_with("suppressed: manual"),
        "{:?}",
        events[1].reply
    );
    // A repeated idempotency key stores nothing, and records nothing.
    let mut keyed = message("k", &["dan@x.test"]);
    keyed.idempotency_key = Some("k1".into());
    t.store.enqueue(keyed.clone()).await.unwrap();
    let before = all_events(&t, None).await.len();
    t.store.enqueue(keyed).await.unwrap();
    assert_eq!(all_events(&t, None).await.len(), before);
}

fn outcome(id: i64, epoch: i64, delivery: Delivery) -> Outcome {
    Outcome {
        recipient_id: id,
        epoch,
        delivery,
        at: OffsetDateTime::now_utc(),
        host: Some("mx.x.test:25".into()),
        duration: Duration::from_millis(3),
    }
}

async fn outcomes_record_one_event_each_and_stale_ones_none(t: TestStore) {
    let id = t
        .store
        .enqueue(message("a", &["ann@x.test", "bob@x.test", "cat@x.test"]))
        .await
        .unwrap()
        .id;
    let claimed = t.store.claim("w1", soon(), 10).await.unwrap();
    let r = &claimed[0].recipients;
    let later = OffsetDateTime::now_utc() + Duration::from_secs(600);
    let applied = t
        .store
        .complete(
            "w1",
            vec![
                outcome(
                    r[0].id,
                    r[0].epoch,
                    Delivery::Sent {
                        reply: "250 2.0.0 Ok".into(),
                    },
                ),
                outcome(
                    r[1].id,
                    r[1].epoch,
                    Delivery::Deferred {
                        reply: "451 4.3.0 try later".into(),
                        next_attempt_at: later,
                    },
                ),
                outcome(
                    r[2].id,
                    r[2].epoch,
                    Delivery::Failed {
                        reply: "550 5.1.1 no such user".into(),
                    },
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied, 3);
    // Stale: another owner, an old epoch; and a second 250 for a recipient already sent.
    let applied = t
        .store
        .complete(
            "w2",
            vec![
                outcome(
                    r[1].id,
                    r[1].epoch,
                    Delivery::Failed {
                        reply: "550 stale".into(),
                    },
                ),
                outcome(
                    r[0].id,
                    r[0].epoch,
                    Delivery::Sent {
                        reply: "250 again".into(),
                    },
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied, 0);
    let events = all_events(&t, Some(&id)).await;
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.kind != EventType::Queued)
        .map(|e| (e.recipient.as_str(), e.kind, e.reply.as_deref()))
        .collect();
    assert_eq!(
        changes,
        [
            ("ann@x.test", EventType::Sent, Some("250 2.0.0 Ok")),
            (
                "bob@x.test",
                EventType::Deferred,
                Some("451 4.3.0 try later")
            ),
            (
                "cat@x.test",
                EventType::Failed,
                Some("550 5.1.1 no such user")
            ),
        ]
    );
    assert_eq!(events.len(), 6, "3 queued + 3 changes: {events:?}");
}

async fn a_claim_records_suppressed(t: TestStore) {
    let id = t
        .store
        .enqueue(message("a", &["ann@x.test"]))
        .await
        .unwrap()
        .id;
    t.store
        .suppress({
            let mut new_suppression = NewSuppression::default();
            new_suppression.address = "ann@x.test".into();
            new_suppression.reason = SuppressionReason::Bounced;
            new_suppression
        })
        .await
        .unwrap();
    assert!(t.store.claim("w", soon(), 10).await.unwrap().is_empty());
    let events = all_events(&t, Some(&id)).await;
    assert_eq!(
        kinds(&events),
        [
            ("ann@x.test".to_string(), EventType::Queued),
            ("ann@x.test".to_string(), EventType::Suppressed),
        ]
    );
}

async fn unsubscribe_is_an_event_once(t: TestStore) {
    let id = t
        .store
        .enqueue(message("a", &["Ann@X.test"]))
        .await
        .unwrap()
        .id;
    let mut unsubscribe = NewSuppression::default();
    unsubscribe.address = "ann@x.test".into();
    unsubscribe.list = Some("news".into());
    unsubscribe.reason = SuppressionReason::Unsubscribed;
    unsubscribe.message_id = Some(id.clone());
    t.store.suppress(unsubscribe.clone()).await.unwrap();
    t.store.suppress(unsubscribe).await.unwrap();
    // Other reasons are not unsubscribes; one without a message is one.
    t.store
        .suppress({
            let mut new_suppression = NewSuppression::default();
            new_suppression.address = "bob@x.test".into();
            new_suppression.reason = SuppressionReason::Manual;
            new_suppression
        })
        .await
        .unwrap();
    t.store
        .suppress({
            let mut new_suppression = NewSuppression::default();
            new_suppression.address = "cat@x.test".into();
            new_suppression.reason = SuppressionReason::Unsubscribed;
            new_suppression
        })
        .await
        .unwrap();
    let events: Vec<Event> = all_events(&t, None)
        .await
        .into_iter()
        .filter(|e| e.kind == EventType::Unsubscribed)
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].message_id.as_deref(), Some(&*id));
    assert_eq!(events[0].recipient, "ann@x.test");
    assert_eq!(
        events[0].reply.as_deref(),
        Some("unsubscribed from list news")
    );
    assert_eq!(events[1].message_id, None);
    assert_eq!(
        events[1].reply.as_deref(),
        Some("unsubscribed from every list")
    );
}

async fn listing_pages_and_filters(t: TestStore) {
    let a = t
        .store
        .enqueue(message("a", &["a1@x.test", "a2@x.test", "a3@x.test"]))
        .await
        .unwrap()
        .id;
    t.store.enqueue(message("b", &["b1@x.test"])).await.unwrap();
    let first = t
        .store
        .events({
            let mut event_filter = EventFilter::default();
            event_filter.limit = 2;
            event_filter
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let cursor = first.next_cursor.clone().expect("a next page");
    let second = t
        .store
        .events({
            let mut event_filter = EventFilter::default();
            event_filter.limit = 2;
            event_filter.cursor = Some(cursor);
            event_filter
        })
        .await
        .unwrap();
    assert_eq!(second.items.len(), 2);
    assert_eq!(second.next_cursor, None);
    let ids: Vec<i64> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|e| e.id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    assert_eq!(all_events(&t, Some(&a)).await.len(), 3);
    for bad in ["x", "-3", "1; DROP TABLE events"] {
        let err = t
            .store
            .events({
                let mut event_filter = EventFilter::default();
                event_filter.cursor = Some(bad.into());
                event_filter.limit = 10;
                event_filter
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidCursor { .. }), "{err}");
    }
    let err = t
        .store
        .events({
            let mut event_filter = EventFilter::default();
            event_filter.message_id = Some("nope".into());
            event_filter.limit = 10;
            event_filter
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidId { .. }), "{err}");
}

fn route(name: &str, events: &[EventType]) -> WebhookRoute {
    WebhookRoute {
        webhook: name.into(),
        events: events.to_vec(),
    }
}

async fn dispatch_fans_out_by_type_once(t: TestStore) {
    let id = t
        .store
        .enqueue(message("a", &["ann@x.test"]))
        .await
        .unwrap()
        .id;
    let claimed = t.store.claim("w", soon(), 10).await.unwrap();
    let r = &claimed[0].recipients[0];
    t.store
        .complete(
            "w",
            vec![outcome(
                r.id,
                r.epoch,
                Delivery::Sent {
                    reply: "250 ok".into(),
                },
            )],
        )
        .await
        .unwrap();
    let routes = [
        route("http://all.test/", &EventType::ALL),
        route("http://sent.test/", &[EventType::Sent]),
    ];
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        t.store.dispatch_events(&routes, now, 1000).await.unwrap(),
        2
    );
    assert_eq!(
        t.store.dispatch_events(&routes, now, 1000).await.unwrap(),
        0,
        "once"
    );
    let all = t
        .store
        .webhook_batch("http://all.test/", now, 10)
        .await
        .unwrap();
    assert_eq!(
        all.events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventType::Queued, EventType::Sent]
    );
    let sent = t
        .store
        .webhook_batch("http://sent.test/", now, 10)
        .await
        .unwrap();
    assert_eq!(sent.events.len(), 1);
    assert_eq!(sent.events[0].kind, EventType::Sent);
    let ids: Vec<i64> = all_events(&t, Some(&id))
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    let deliveries = t.store.event_deliveries(&ids).await.unwrap();
    assert_eq!(deliveries.len(), 3);
    assert!(
        deliveries
            .iter()
            .all(|d| d.delivered_at.is_none() && d.attempts == 0)
    );
    let backlog = t.store.webhook_backlog().await.unwrap();
    assert_eq!(backlog.len(), 2);
    assert_eq!((backlog[0].pending, backlog[0].failing), (2, 0));
}

async fn batches_keep_event_order_and_wait_for_backoff(t: TestStore) {
    for subject in ["a", "b", "c"] {
        t.store
            .enqueue(message(subject, &["ann@x.test"]))
            .await
            .unwrap();
    }
    let hook = "http://hook.test/";
    let routes = [route(hook, &EventType::ALL)];
    let now = OffsetDateTime::now_utc();
    t.store.dispatch_events(&routes, now, 1000).await.unwrap();
    let first = t.store.webhook_batch(hook, now, 2).await.unwrap();
    assert_eq!(first.events.len(), 2);
    let ids: Vec<i64> = first.events.iter().map(|e| e.id).collect();
    let retry_at = now + Duration::from_secs(60);
    t.store
        .webhook_result(
            hook,
            &ids,
            WebhookResult::Failed {
                status: Some(503),
                error: "HTTP 503".into(),
                next_attempt_at: retry_at,
            },
            now,
        )
        .await
        .unwrap();
    // The head waits: nothing overtakes it, not even the third event, due now.
    let waiting = t.store.webhook_batch(hook, now, 10).await.unwrap();
    assert!(waiting.events.is_empty());
    assert_eq!(
        waiting.next_attempt_at.map(|t| t.unix_timestamp()),
        Some(retry_at.unix_timestamp())
    );
    let backlog = t.store.webhook_backlog().await.unwrap();
    assert_eq!((backlog[0].pending, backlog[0].failing), (3, 2));
    // Due again: the same events first, then the rest.
    let again = t.store.webhook_batch(hook, retry_at, 10).await.unwrap();
    assert_eq!(again.attempts, 1);
    assert_eq!(again.events.len(), 3);
    assert_eq!(
        &again.events.iter().map(|e| e.id).collect::<Vec<_>>()[..2],
        &ids[..]
    );
    let all: Vec<i64> = again.events.iter().map(|e| e.id).collect();
    t.store
        .webhook_result(
            hook,
            &all,
            WebhookResult::Delivered { status: 204 },
            retry_at,
        )
        .await
        .unwrap();
    assert!(
        t.store
            .webhook_batch(hook, retry_at, 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert!(t.store.webhook_backlog().await.unwrap().is_empty());
    let deliveries = t.store.event_deliveries(&all).await.unwrap();
    let first = deliveries.iter().find(|d| d.event_id == ids[0]).unwrap();
    assert_eq!(
        (
            first.attempts,
            first.last_status,
            first.last_error.as_deref()
        ),
        (2, Some(204), None)
    );
    assert!(first.delivered_at.is_some());
}

async fn one_sender_per_webhook(t: TestStore) {
    let now = OffsetDateTime::now_utc();
    let until = now + Duration::from_secs(60);
    for owner in ["w1", "w2"] {
        t.store
            .heartbeat(
                &WorkerInfo::this_process(owner.into()),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
    }
    // A holder that is no live worker (a crashed one, once recovered) loses it at once.
    assert!(t.store.lock_webhook("h", "gone", now, until).await.unwrap());
    assert!(t.store.lock_webhook("h", "w1", now, until).await.unwrap());
    assert!(!t.store.lock_webhook("h", "w2", now, until).await.unwrap());
    assert!(
        t.store.lock_webhook("h", "w1", now, until).await.unwrap(),
        "renewed"
    );
    assert!(
        t.store
            .lock_webhook("other", "w2", now, until)
            .await
            .unwrap()
    );
    // Once the holder's time ran out, another takes it.
    let later = until + Duration::from_secs(1);
    assert!(
        t.store
            .lock_webhook("h", "w2", later, later + Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !t.store
            .lock_webhook("h", "w1", later, later + Duration::from_secs(60))
            .await
            .unwrap()
    );
}

async fn prune_keeps_what_a_webhook_waits_for(t: TestStore) {
    t.store
        .enqueue(message("a", &["ann@x.test", "bob@x.test"]))
        .await
        .unwrap();
    let routes = [route("http://hook.test/", &[EventType::Queued])];
    let now = OffsetDateTime::now_utc();
    t.store.dispatch_events(&routes, now, 1).await.unwrap();
    let later = now + Duration::from_secs(5);
    // Not yet dispatched: kept. Dispatched but not delivered: kept.
    assert_eq!(t.store.prune_events(later, 100).await.unwrap(), 0);
    t.store.dispatch_events(&routes, now, 10).await.unwrap();
    let batch = t
        .store
        .webhook_batch("http://hook.test/", now, 1)
        .await
        .unwrap();
    let ids: Vec<i64> = batch.events.iter().map(|e| e.id).collect();
    t.store
        .webhook_result(
            "http://hook.test/",
            &ids,
            WebhookResult::Delivered { status: 200 },
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        t.store
            .prune_events(now - Duration::from_secs(5), 100)
            .await
            .unwrap(),
        0,
        "young"
    );
    assert_eq!(t.store.prune_events(later, 100).await.unwrap(), 1);
    let left = all_events(&t, None).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].recipient, "bob@x.test");
    assert!(t.store.event_deliveries(&ids).await.unwrap().is_empty());
}
