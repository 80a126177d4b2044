//! Store conformance, part 4: suspended destinations (stored so that every process sees
//! them) and the pending domains `queue list` matches them against. The same tests on
//! SQLite and PostgreSQL.

use outbox_testkit::conformance;
use std::time::Duration;

use outbox_queue::{Delivery, Outcome, StoredSuspension, WorkerInfo};
use outbox_testkit::{TestStore, message, soon};
use time::OffsetDateTime;

conformance!(
    a_suspension_is_upserted_by_destination,
    suspensions_list_only_active_ones_soonest_end_first,
    ended_suspensions_are_deleted_at_the_next_suspend,
    lifting_removes_one_destination_only,
    stored_values_are_normalised_and_round_trip,
    pending_domains_are_the_waiting_recipients_domains,
);

/// Now, whole milliseconds (what the store keeps).
fn now_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap()
}

fn suspension(destination: &str, until: OffsetDateTime, domains: &[&str]) -> StoredSuspension {
    StoredSuspension {
        destination: destination.into(),
        reason: format!("{destination} suspended after: 421 4.7.0 busy"),
        until,
        times: 1,
        domains: domains.iter().map(|d| d.to_string()).collect(),
    }
}

async fn a_suspension_is_upserted_by_destination(t: TestStore) {
    let now = now_ms();
    let first = suspension(
        "mx mx1.shared.test",
        now + Duration::from_secs(60),
        &["a.test"],
    );
    t.store.suspend(first).await.unwrap();
    let second = StoredSuspension {
        reason: "mx mx1.shared.test suspended after: 421 4.7.0 still busy".into(),
        until: now + Duration::from_secs(600),
        times: 2,
        domains: vec!["a.test".into(), "b.test".into()],
        ..suspension("mx mx1.shared.test", now, &[])
    };
    t.store.suspend(second.clone()).await.unwrap();
    assert_eq!(t.store.suspensions(now).await.unwrap(), vec![second]);
}

async fn suspensions_list_only_active_ones_soonest_end_first(t: TestStore) {
    let now = now_ms();
    let later = suspension("mx *.big.test", now + Duration::from_secs(3600), &[]);
    let sooner = suspension("domain c.test", now + Duration::from_secs(60), &["c.test"]);
    let same_end = suspension("domain a.test", now + Duration::from_secs(60), &["a.test"]);
    for s in [&later, &sooner, &same_end] {
        t.store.suspend(s.clone()).await.unwrap();
    }
    assert_eq!(
        t.store.suspensions(now).await.unwrap(),
        vec![same_end.clone(), sooner.clone(), later.clone()],
        "by end, then by destination"
    );
    // At the end of a suspension it is no longer active.
    let at_end = now + Duration::from_secs(60);
    assert_eq!(t.store.suspensions(at_end).await.unwrap(), vec![later]);
    let after_all = now + Duration::from_secs(7200);
    assert!(t.store.suspensions(after_all).await.unwrap().is_empty());
}

async fn ended_suspensions_are_deleted_at_the_next_suspend(t: TestStore) {
    let now = now_ms();
    let ended = suspension(
        "domain old.test",
        now - Duration::from_secs(3600),
        &["old.test"],
    );
    t.store.suspend(ended.clone()).await.unwrap();
    // Written with an end in the past it is kept until the next suspension: reads skip it.
    let long_ago = now - Duration::from_secs(7200);
    assert_eq!(t.store.suspensions(long_ago).await.unwrap(), vec![ended]);
    assert!(t.store.suspensions(now).await.unwrap().is_empty());
    let current = suspension(
        "domain new.test",
        now + Duration::from_secs(60),
        &["new.test"],
    );
    t.store.suspend(current.clone()).await.unwrap();
    assert_eq!(
        t.store.suspensions(long_ago).await.unwrap(),
        vec![current],
        "the ended row is gone"
    );
}

async fn lifting_removes_one_destination_only(t: TestStore) {
    let now = now_ms();
    let a = suspension("domain a.test", now + Duration::from_secs(60), &["a.test"]);
    let b = suspension("domain b.test", now + Duration::from_secs(60), &["b.test"]);
    t.store.suspend(a).await.unwrap();
    t.store.suspend(b.clone()).await.unwrap();
    t.store.lift_suspension("domain a.test").await.unwrap();
    assert_eq!(t.store.suspensions(now).await.unwrap(), vec![b]);
    // Lifting what is not suspended is not an error.
    t.store.lift_suspension("domain a.test").await.unwrap();
    t.store.lift_suspension("mx nowhere.test").await.unwrap();
    assert_eq!(t.store.suspensions(now).await.unwrap().len(), 1);
}

async fn stored_values_are_normalised_and_round_trip(t: TestStore) {
    let until = now_ms() + Duration::from_millis(90_123);
    let s = StoredSuspension {
        destination: "relay smtp://app:***@relay.test:587".into(),
        reason: "relay suspended after: 421 busy\0 now ✓".into(),
        until,
        times: u32::MAX,
        domains: vec![
            "B.test".into(),
            "a.test".into(),
            " b.test ".into(),
            String::new(),
        ],
    };
    t.store.suspend(s).await.unwrap();
    let stored = t.store.suspensions(now_ms()).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let stored = &stored[0];
    assert_eq!(stored.destination, "relay smtp://app:***@relay.test:587");
    assert_eq!(stored.reason, "relay suspended after: 421 busy now ✓");
    assert_eq!(stored.until, until, "milliseconds kept");
    assert_eq!(
        stored.times,
        i32::MAX as u32,
        "clamped alike on both backends"
    );
    assert_eq!(stored.domains, ["a.test", "b.test"]);
    let json = serde_json::to_value(stored).unwrap();
    assert_eq!(json["until"], outbox_queue::rfc3339(until));
    assert_eq!(json["domains"], serde_json::json!(["a.test", "b.test"]));
}

async fn pending_domains_are_the_waiting_recipients_domains(t: TestStore) {
    let store = &t.store;
    let waiting = store
        .enqueue(message(
            "waiting",
            &["r1@a.test", "r2@A.test", "r3@b.test", "r4@sent.test"],
        ))
        .await
        .unwrap()
        .id;
    let done = store
        .enqueue(message("done", &["r@c.test"]))
        .await
        .unwrap()
        .id;
    // Deliver r4@sent.test and the whole of `done`; defer r3@b.test.
    store
        .heartbeat(
            &WorkerInfo::this_process("w".into()),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let claimed: Vec<_> = store
        .claim("w", soon(), 100)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|unit| unit.recipients)
        .collect();
    let outcomes = claimed
        .iter()
        .filter_map(|r| {
            let delivery = match r.address.as_str() {
                "r4@sent.test" | "r@c.test" => Delivery::Sent {
                    reply: "250 ok".into(),
                },
                "r3@b.test" => Delivery::Deferred {
                    reply: "451 later".into(),
                    next_attempt_at: OffsetDateTime::now_utc() + Duration::from_secs(3600),
                },
                _ => return None,
            };
            Some(Outcome {
                recipient_id: r.id,
                epoch: r.epoch,
                delivery,
                at: OffsetDateTime::now_utc(),
                host: None,
                duration: Duration::ZERO,
            })
        })
        .collect();
    store.complete("w", outcomes).await.unwrap();
    // r1 and r2 are still `sending`: not waiting.
    let still_sending: Vec<i64> = claimed
        .iter()
        .filter(|r| r.address.starts_with("r1@") || r.address.starts_with("r2@"))
        .map(|r| r.id)
        .collect();
    let ids = vec![
        waiting.clone(),
        done.clone(),
        "01JD2W6Q0R9N6X4Y7Z8A1B2C3D".into(),
    ];
    let domains = store.pending_domains(&ids).await.unwrap();
    assert_eq!(domains.len(), 1, "{domains:?}");
    assert_eq!(domains[&waiting], ["b.test"]);
    // Given back, r1 and r2 wait again: one domain for both (stored lowercase).
    store
        .release("w", &still_sending, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let domains = store.pending_domains(&ids).await.unwrap();
    assert_eq!(domains[&waiting], ["a.test", "b.test"]);
    assert!(!domains.contains_key(&done));
    assert!(store.pending_domains(&[]).await.unwrap().is_empty());
}
