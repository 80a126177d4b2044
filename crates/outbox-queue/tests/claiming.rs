//! Store conformance, part 2: claiming, outcomes, due times and wake-ups — the same
//! tests on SQLite and PostgreSQL. (Worker liveness, fencing and recovery: tests/ledger.rs.)

use outbox_testkit::conformance;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use outbox_queue::{
    AttemptOutcome, Delivery, MessageStatus, NewRecipient, Outcome, Priority, RecipientState,
    RouteFilter, RouteKey, Store, WorkerInfo,
};
use outbox_testkit::{TestStore, message, soon};
use time::OffsetDateTime;

const LEASE: Duration = Duration::from_secs(60);

conformance!(
    claims_in_priority_then_age_order_grouped_by_route,
    a_claim_is_exclusive_until_its_worker_is_dead,
    claim_route_drains_one_route_whatever_the_priority,
    outcomes_update_states_attempts_and_the_log,
    send_at_and_next_due,
    concurrent_claims_are_disjoint,
    release_gives_claims_back,
    enqueue_wakes_the_engine,
);

fn outcome((recipient_id, epoch): (i64, i64), delivery: Delivery) -> Outcome {
    Outcome {
        recipient_id,
        epoch,
        delivery,
        at: OffsetDateTime::now_utc(),
        host: Some("127.0.0.1:2525".into()),
        duration: Duration::from_millis(5),
    }
}

async fn claims_in_priority_then_age_order_grouped_by_route(t: TestStore) {
    let now = soon();
    let mut low = message("low", &["a@one.test"]);
    low.priority = Priority::Low;
    let low = t.store.enqueue(low).await.unwrap();
    let old = t
        .store
        .enqueue(message("old", &["b@one.test", "c@two.test", "d@ONE.test"]))
        .await
        .unwrap();
    let mut high = message("high", &["e@two.test"]);
    high.priority = Priority::High;
    let high = t.store.enqueue(high).await.unwrap();
    let mut merge = message("merge", &[]);
    merge.recipients = vec![NewRecipient::with_merge(
        "f@three.test",
        BTreeMap::from([("n".into(), "F".into())]),
    )];
    merge.relay = Some("smtp://127.0.0.1:2525".into());
    let merge = t.store.enqueue(merge).await.unwrap();

    let units = t.store.claim("w1", now, 100).await.unwrap();
    let order: Vec<(&str, RouteKey, usize)> = units
        .iter()
        .map(|u| (u.message_id.as_str(), u.route.clone(), u.recipients.len()))
        .collect();
    assert_eq!(
        order,
        vec![
            (high.id.as_str(), RouteKey::Mx("two.test".into()), 1),
            (old.id.as_str(), RouteKey::Mx("one.test".into()), 2),
            (old.id.as_str(), RouteKey::Mx("two.test".into()), 1),
            (
                merge.id.as_str(),
                RouteKey::Relay("smtp://127.0.0.1:2525".into()),
                1
            ),
            (low.id.as_str(), RouteKey::Mx("one.test".into()), 1),
        ]
    );
    let old_one = &units[1];
    assert_eq!(old_one.recipients[0].address, "b@one.test");
    assert_eq!(old_one.recipients[1].address, "d@ONE.test");
    assert_eq!(old_one.recipients[1].domain, "one.test");
    assert_eq!(old_one.envelope_from, "app@example.com");
    assert!(!old_one.needs_merge);
    let merged = &units[3];
    assert!(merged.needs_merge);
    assert_eq!(merged.relay.as_deref(), Some("smtp://127.0.0.1:2525"));
    assert_eq!(merged.recipients[0].merge.as_ref().unwrap()["n"], "F");
    assert_eq!(units[0].priority, Priority::High);
    assert_eq!(
        t.store.status(&old.id).await.unwrap(),
        MessageStatus::Queued
    );
    let detail = t.store.detail(&old.id).await.unwrap();
    assert!(
        detail
            .recipients
            .iter()
            .all(|r| r.state == RecipientState::Sending)
    );
}

async fn a_claim_is_exclusive_until_its_worker_is_dead(t: TestStore) {
    let now = soon();
    t.store
        .enqueue(message("m", &["a@x.test", "b@x.test"]))
        .await
        .unwrap();
    let w1 = WorkerInfo::this_process("w1".into());
    t.store.heartbeat(&w1, LEASE).await.unwrap();
    let first = t.store.claim("w1", now, 10).await.unwrap();
    assert_eq!(first[0].recipients.len(), 2);
    assert!(first[0].recipients.iter().all(|r| r.epoch == 1));
    assert!(t.store.claim("w2", now, 10).await.unwrap().is_empty());
    // No expiry: however late, a live worker's recipients are not due.
    let much_later = now + Duration::from_secs(24 * 3600);
    assert!(!t.store.has_due(much_later).await.unwrap());
    assert!(
        t.store
            .claim("w2", much_later, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.store.recover().await.unwrap(), 0);

    // w1 is gone (no workers row): recover resumes its recipients, w2 claims them at a
    // new epoch, and w1's late non-final outcome is not applied.
    t.store.retire("w1").await.unwrap();
    assert_eq!(t.store.recover().await.unwrap(), 2);
    assert!(t.store.has_due(now).await.unwrap());
    let second = t.store.claim("w2", now, 10).await.unwrap();
    assert_eq!(second[0].recipients.len(), 2);
    assert!(second[0].recipients.iter().all(|r| r.epoch == 2));
    let stale = first[0]
        .recipients
        .iter()
        .map(|r| {
            outcome(
                (r.id, r.epoch),
                Delivery::Deferred {
                    reply: "451 later".into(),
                    next_attempt_at: now,
                },
            )
        })
        .collect();
    assert_eq!(t.store.complete("w1", stale).await.unwrap(), 0);
    let fresh = second[0]
        .recipients
        .iter()
        .map(|r| {
            outcome(
                (r.id, r.epoch),
                Delivery::Sent {
                    reply: "250 ok".into(),
                },
            )
        })
        .collect();
    assert_eq!(t.store.complete("w2", fresh).await.unwrap(), 2);
    assert_eq!(
        t.store.status(&second[0].message_id).await.unwrap(),
        MessageStatus::Sent
    );
}

async fn claim_route_drains_one_route_whatever_the_priority(t: TestStore) {
    let now = soon();
    let mut relayed = message("relayed", &["r@x.test"]);
    relayed.relay = Some("relay.test:2525".into());
    relayed.priority = Priority::High;
    t.store.enqueue(relayed).await.unwrap();
    let mut low = message("low", &["a@x.test"]);
    low.priority = Priority::Low;
    let low = t.store.enqueue(low).await.unwrap();
    t.store
        .enqueue(message("other", &["b@y.test"]))
        .await
        .unwrap();

    let x = RouteFilter::Key(RouteKey::Mx("x.test".into()));
    let units = t.store.claim_route("w1", &x, now, 10).await.unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].message_id, low.id);
    assert!(
        t.store
            .claim_route("w1", &x, now, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let units = t
        .store
        .claim_route("w1", &RouteFilter::AnyMx, now, 10)
        .await
        .unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].route, RouteKey::Mx("y.test".into()));

    let relay = RouteFilter::Key(RouteKey::Relay("relay.test:2525".into()));
    let units = t.store.claim_route("w1", &relay, now, 10).await.unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].recipients[0].address, "r@x.test");
}

async fn outcomes_update_states_attempts_and_the_log(t: TestStore) {
    let now = soon();
    let m = t
        .store
        .enqueue(message("m", &["sent@a.test", "later@a.test", "bad@a.test"]))
        .await
        .unwrap();
    let units = t.store.claim("w1", now, 10).await.unwrap();
    let ids: Vec<(i64, i64)> = units[0]
        .recipients
        .iter()
        .map(|r| (r.id, r.epoch))
        .collect();
    let retry_at = now + Duration::from_secs(300);
    let done = t
        .store
        .complete(
            "w1",
            vec![
                outcome(
                    ids[0],
                    Delivery::Sent {
                        reply: "250 2.0.0 queued as X".into(),
                    },
                ),
                outcome(
                    ids[1],
                    Delivery::Deferred {
                        reply: "451 4.3.0 try later".into(),
                        next_attempt_at: retry_at,
                    },
                ),
                outcome(
                    ids[2],
                    Delivery::Failed {
                        reply: "550 5.1.1 unknown".into(),
                    },
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(done, 3);
    assert_eq!(t.store.status(&m.id).await.unwrap(), MessageStatus::Queued);
    let detail = t.store.detail(&m.id).await.unwrap();
    let states: Vec<_> = detail
        .recipients
        .iter()
        .map(|r| (r.state, r.attempts, r.last_reply.clone().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            (RecipientState::Sent, 1, "250 2.0.0 queued as X".to_string()),
            (
                RecipientState::Deferred,
                1,
                "451 4.3.0 try later".to_string()
            ),
            (RecipientState::Failed, 1, "550 5.1.1 unknown".to_string()),
        ]
    );
    assert_eq!(
        t.store
            .next_due()
            .await
            .unwrap()
            .map(|t| t.unix_timestamp()),
        Some(retry_at.unix_timestamp())
    );
    assert!(t.store.claim("w1", now, 10).await.unwrap().is_empty());

    let again = t.store.claim("w1", retry_at, 10).await.unwrap();
    assert_eq!(again[0].recipients[0].attempts, 1);
    let id = (again[0].recipients[0].id, again[0].recipients[0].epoch);
    t.store
        .complete(
            "w1",
            vec![outcome(
                id,
                Delivery::Failed {
                    reply: "connection refused".into(),
                },
            )],
        )
        .await
        .unwrap();
    assert_eq!(t.store.status(&m.id).await.unwrap(), MessageStatus::Error);
    assert_eq!(t.store.next_due().await.unwrap(), None);

    let log = t.store.attempts(&m.id).await.unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].recipient, "sent@a.test");
    assert_eq!(log[0].code, Some(250));
    assert_eq!(log[0].host.as_deref(), Some("127.0.0.1:2525"));
    assert_eq!(log[0].duration_ms, 5);
    assert_eq!(log[1].outcome, AttemptOutcome::Deferred);
    assert_eq!(log[3].code, None);
    assert_eq!(log[3].reply, "connection refused");
}

async fn send_at_and_next_due(t: TestStore) {
    let now = soon();
    assert_eq!(t.store.next_due().await.unwrap(), None);
    let at = now + Duration::from_secs(3600);
    let mut later = message("later", &["a@x.test"]);
    later.send_at = Some(at);
    let m = t.store.enqueue(later).await.unwrap();
    assert_eq!(
        t.store
            .summary(&m.id)
            .await
            .unwrap()
            .send_at
            .unix_timestamp(),
        at.unix_timestamp()
    );
    assert!(!t.store.has_due(now).await.unwrap());
    assert!(t.store.claim("w1", now, 10).await.unwrap().is_empty());
    assert_eq!(
        t.store.next_due().await.unwrap().unwrap().unix_timestamp(),
        at.unix_timestamp()
    );
    assert_eq!(t.store.claim("w1", at, 10).await.unwrap().len(), 1);
}

async fn concurrent_claims_are_disjoint(t: TestStore) {
    let recipients: Vec<String> = (0..200).map(|i| format!("u{i}@d{}.test", i % 5)).collect();
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    for chunk in refs.chunks(20) {
        t.store.enqueue(message("m", chunk)).await.unwrap();
    }
    let now = soon();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let store: Arc<dyn Store> = t.store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{worker}");
            let mut got = Vec::new();
            loop {
                let units = store.claim(&owner, now, 7).await.unwrap();
                if units.is_empty() {
                    break got;
                }
                got.extend(
                    units
                        .into_iter()
                        .flat_map(|u| u.recipients.into_iter().map(|r| r.id)),
                );
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(unique.len(), 200);
}

async fn release_gives_claims_back(t: TestStore) {
    let now = soon();
    t.store
        .enqueue(message("m", &["a@x.test", "b@x.test"]))
        .await
        .unwrap();
    let units = t.store.claim("w1", now, 10).await.unwrap();
    let ids: Vec<i64> = units[0].recipients.iter().map(|r| r.id).collect();
    let later = now + Duration::from_secs(50);
    assert_eq!(t.store.release("w2", &ids, later).await.unwrap(), 0);
    assert!(!t.store.has_due(later).await.unwrap());
    assert_eq!(t.store.release("w1", &ids[..1], later).await.unwrap(), 1);
    assert!(!t.store.has_due(now).await.unwrap());
    assert!(t.store.has_due(later).await.unwrap());
    let units = t.store.claim("w2", later, 10).await.unwrap();
    assert_eq!(units[0].recipients.len(), 1);
    assert_eq!(units[0].recipients[0].id, ids[0]);
    assert_eq!(units[0].recipients[0].attempts, 0);
    assert_eq!(units[0].recipients[0].epoch, 2);
}

async fn enqueue_wakes_the_engine(t: TestStore) {
    let wake = t.store.enqueued();
    t.store.enqueue(message("m", &["a@x.test"])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("an enqueue in this process wakes the engine");
    if t.url.starts_with("postgres") {
        // Another process's enqueue arrives through LISTEN/NOTIFY.
        let other = outbox_queue::open_store(&t.url).await.unwrap();
        let other_wake = other.enqueued();
        // The listener signals once when it connects (notifications may have been missed).
        tokio::time::timeout(Duration::from_secs(10), other_wake.notified())
            .await
            .expect("the listener connects");
        t.store.enqueue(message("m2", &["b@x.test"])).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), other_wake.notified())
            .await
            .expect("NOTIFY outbox_enqueued reaches the other store");
    }
}
