//! Store conformance, part 3: the engine's ledger — worker liveness and recovery,
//! epoch fencing, outcomes that are not plain attempts, set-based completion, and the
//! claim's query plan. The same tests on SQLite and PostgreSQL.

use outbox_testkit::conformance;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use outbox_queue::{
    AttemptOutcome, Backend, ClaimedRecipient, Delivery, MessageStatus, NewRecipient, Outcome,
    Priority, RecipientState, RouteFilter, RouteKey, StoreError, WorkerInfo, claim_statement,
    enqueue_in_batches,
};
use outbox_testkit::{TestStore, message, soon};
use time::OffsetDateTime;

const LONG_LEASE: Duration = Duration::from_secs(3600);

conformance!(
    a_stale_deferral_after_a_reclaim_is_logged_not_applied,
    a_stale_sent_is_applied_and_fences_the_new_holder,
    nul_and_control_bytes_in_replies_are_stored,
    a_claim_never_returns_a_sending_row,
    recover_takes_workers_dead_by_heartbeat_age,
    recover_takes_workers_whose_pid_is_gone,
    recover_takes_rows_without_a_worker_and_keeps_attempts,
    not_attempted_counts_no_attempt,
    unknown_counts_an_attempt_and_logs_unknown,
    complete_of_1000_outcomes_across_many_messages,
    concurrent_completions_of_one_message_leave_it_sent,
    message_bodies_in_one_call,
    the_claim_plan_reads_index_ranges_without_sorting,
);

fn outcome(recipient: &ClaimedRecipient, delivery: Delivery) -> Outcome {
    Outcome {
        recipient_id: recipient.id,
        epoch: recipient.epoch,
        delivery,
        at: OffsetDateTime::now_utc(),
        host: Some("127.0.0.1:2525".into()),
        duration: Duration::from_millis(5),
    }
}

fn deferred(reply: &str) -> Delivery {
    Delivery::Deferred {
        reply: reply.into(),
        next_attempt_at: OffsetDateTime::now_utc() + LONG_LEASE,
    }
}

fn sent() -> Delivery {
    Delivery::Sent {
        reply: "250 2.0.0 ok".into(),
    }
}

/// A worker on another machine (its pid means nothing here).
fn remote(owner: &str) -> WorkerInfo {
    WorkerInfo {
        owner: owner.into(),
        host_key: "another-host/boot/pid:[1]".into(),
        pid: 1,
    }
}

/// Claims everything due for `owner` and returns the recipients.
async fn claim_all(t: &TestStore, owner: &str) -> Vec<ClaimedRecipient> {
    t.store
        .claim(owner, soon(), 10_000)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|unit| unit.recipients)
        .collect()
}

async fn a_stale_deferral_after_a_reclaim_is_logged_not_applied(t: TestStore) {
    let m = t.store.enqueue(message("m", &["a@x.test"])).await.unwrap();
    // w1 claims, is declared dead (no heartbeat), and w2 claims the recipient again.
    let first = claim_all(&t, "w1").await;
    assert_eq!(t.store.recover().await.unwrap(), 1);
    t.store.heartbeat(&remote("w2"), LONG_LEASE).await.unwrap();
    let second = claim_all(&t, "w2").await;
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].epoch, first[0].epoch + 1);

    let stale = outcome(&first[0], deferred("451 4.3.0 stale"));
    assert_eq!(t.store.complete("w1", vec![stale]).await.unwrap(), 0);
    let detail = t.store.detail(&m.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Sending);
    assert_eq!(detail.recipients[0].attempts, 0);
    assert_eq!(detail.recipients[0].last_reply, None);
    let log = t.store.attempts(&m.id).await.unwrap();
    assert_eq!(log.len(), 1, "the stale attempt is logged");
    assert_eq!(log[0].reply, "451 4.3.0 stale");

    // The same owner with an old epoch is stale too: w2 re-claims after a recovery.
    t.store.retire("w2").await.unwrap();
    assert_eq!(t.store.recover().await.unwrap(), 1);
    let third = claim_all(&t, "w2").await;
    let old_epoch = outcome(&second[0], deferred("451 4.3.0 old epoch"));
    assert_eq!(t.store.complete("w2", vec![old_epoch]).await.unwrap(), 0);
    let current = outcome(&third[0], deferred("451 4.3.0 current"));
    assert_eq!(t.store.complete("w2", vec![current]).await.unwrap(), 1);
    let detail = t.store.detail(&m.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Deferred);
    assert_eq!(detail.recipients[0].attempts, 1);
    assert_eq!(
        detail.recipients[0].last_reply.as_deref(),
        Some("451 4.3.0 current")
    );
    assert_eq!(t.store.attempts(&m.id).await.unwrap().len(), 3);
}

async fn a_stale_sent_is_applied_and_fences_the_new_holder(t: TestStore) {
    let m = t.store.enqueue(message("m", &["a@x.test"])).await.unwrap();
    let first = claim_all(&t, "w1").await;
    assert_eq!(t.store.recover().await.unwrap(), 1);
    t.store.heartbeat(&remote("w2"), LONG_LEASE).await.unwrap();
    let second = claim_all(&t, "w2").await;

    // The server said 250 to w1: that is final, whoever holds the recipient now.
    let late_250 = outcome(&first[0], sent());
    assert_eq!(t.store.complete("w1", vec![late_250]).await.unwrap(), 1);
    assert_eq!(t.store.status(&m.id).await.unwrap(), MessageStatus::Sent);
    // w2's later deferral (its epoch was fenced off) changes nothing.
    let deferral = outcome(&second[0], deferred("421 4.4.2 timeout"));
    assert_eq!(t.store.complete("w2", vec![deferral]).await.unwrap(), 0);
    // A second 250 for a sent recipient is logged, not applied.
    let again = outcome(&second[0], sent());
    assert_eq!(t.store.complete("w2", vec![again]).await.unwrap(), 0);
    let detail = t.store.detail(&m.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Sent);
    assert_eq!(detail.recipients[0].attempts, 1);
    assert_eq!(
        detail.recipients[0].last_reply.as_deref(),
        Some("250 2.0.0 ok")
    );
    assert_eq!(t.store.status(&m.id).await.unwrap(), MessageStatus::Sent);
    let outcomes: Vec<AttemptOutcome> = t
        .store
        .attempts(&m.id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        vec![
            AttemptOutcome::Sent,
            AttemptOutcome::Deferred,
            AttemptOutcome::Sent
        ]
    );
    // Nothing is due, nothing is leased.
    assert_eq!(t.store.next_due().await.unwrap(), None);
    assert_eq!(t.store.recover().await.unwrap(), 0);
}

async fn nul_and_control_bytes_in_replies_are_stored(t: TestStore) {
    let m = t
        .store
        .enqueue(message("m", &["a@x.test", "b@x.test"]))
        .await
        .unwrap();
    let claimed = claim_all(&t, "w1").await;
    let mut with_nul = outcome(&claimed[0], deferred("451 a\0b\x01c\x7f"));
    with_nul.host = Some("mx\0.x.test:25".into());
    let failed = outcome(
        &claimed[1],
        Delivery::Failed {
            reply: "550\0 no".into(),
        },
    );
    assert_eq!(
        t.store
            .complete("w1", vec![with_nul, failed])
            .await
            .unwrap(),
        2
    );
    let detail = t.store.detail(&m.id).await.unwrap();
    assert_eq!(
        detail.recipients[0].last_reply.as_deref(),
        Some("451 ab\x01c\x7f")
    );
    assert_eq!(detail.recipients[1].last_reply.as_deref(), Some("550 no"));
    let log = t.store.attempts(&m.id).await.unwrap();
    assert_eq!(log[0].reply, "451 ab\x01c\x7f");
    assert_eq!(log[0].code, Some(451));
    assert_eq!(log[0].host.as_deref(), Some("mx.x.test:25"));
    assert_eq!(log[1].code, Some(550));
}

async fn a_claim_never_returns_a_sending_row(t: TestStore) {
    t.store
        .enqueue(message("m", &["a@x.test", "b@y.test"]))
        .await
        .unwrap();
    t.store
        .heartbeat(&WorkerInfo::this_process("w1".into()), LONG_LEASE)
        .await
        .unwrap();
    assert_eq!(claim_all(&t, "w1").await.len(), 2);
    let far = soon() + Duration::from_secs(365 * 24 * 3600);
    assert!(t.store.claim("w1", far, 100).await.unwrap().is_empty());
    assert!(t.store.claim("w2", far, 100).await.unwrap().is_empty());
    for filter in [
        RouteFilter::AnyMx,
        RouteFilter::Key(RouteKey::Mx("x.test".into())),
    ] {
        assert!(
            t.store
                .claim_route("w1", &filter, far, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert!(!t.store.has_due(far).await.unwrap());
    assert_eq!(t.store.next_due().await.unwrap(), None);
}

async fn recover_takes_workers_dead_by_heartbeat_age(t: TestStore) {
    let m1 = t.store.enqueue(message("m1", &["a@x.test"])).await.unwrap();
    // A remote worker with a short lease claims m1, then stops heartbeating.
    t.store
        .heartbeat(&remote("short"), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claim_all(&t, "short").await.len(), 1);
    let m2 = t.store.enqueue(message("m2", &["b@x.test"])).await.unwrap();
    // A live remote worker with a long lease claims m2.
    t.store
        .heartbeat(&remote("live"), LONG_LEASE)
        .await
        .unwrap();
    assert_eq!(claim_all(&t, "live").await.len(), 1);

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(t.store.recover().await.unwrap(), 1);
    let d1 = t.store.detail(&m1.id).await.unwrap();
    assert_eq!(d1.recipients[0].state, RecipientState::Queued);
    let d2 = t.store.detail(&m2.id).await.unwrap();
    assert_eq!(d2.recipients[0].state, RecipientState::Sending);
    assert!(t.store.has_due(soon()).await.unwrap());
    // The live worker keeps its recipient, however long it holds it.
    assert_eq!(t.store.recover().await.unwrap(), 0);
    let again = claim_all(&t, "other").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].address, "a@x.test");
}

async fn recover_takes_workers_whose_pid_is_gone(t: TestStore) {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let here = WorkerInfo::this_process("gone".into());
    let gone = WorkerInfo {
        pid: dead_pid,
        ..here.clone()
    };
    // A worker of this host whose process is gone, with a lease that has not run out.
    t.store.heartbeat(&gone, LONG_LEASE).await.unwrap();
    t.store.enqueue(message("m1", &["a@x.test"])).await.unwrap();
    assert_eq!(claim_all(&t, "gone").await.len(), 1);
    // A worker of this host that is alive (this process).
    let alive = WorkerInfo {
        owner: "alive".into(),
        ..here
    };
    t.store.heartbeat(&alive, LONG_LEASE).await.unwrap();
    t.store.enqueue(message("m2", &["b@x.test"])).await.unwrap();
    assert_eq!(claim_all(&t, "alive").await.len(), 1);

    assert_eq!(t.store.recover().await.unwrap(), 1);
    let resumed = claim_all(&t, "alive").await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].address, "a@x.test");
    assert_eq!(t.store.recover().await.unwrap(), 0);
}

async fn recover_takes_rows_without_a_worker_and_keeps_attempts(t: TestStore) {
    let m = t
        .store
        .enqueue(message("m", &["a@x.test", "b@x.test"]))
        .await
        .unwrap();
    let claimed = claim_all(&t, "w1").await;
    let retry_now = Delivery::Deferred {
        reply: "451 later".into(),
        next_attempt_at: OffsetDateTime::now_utc(),
    };
    t.store
        .complete("w1", vec![outcome(&claimed[0], retry_now)])
        .await
        .unwrap();
    t.store
        .release("w1", &[claimed[1].id], soon())
        .await
        .unwrap();
    // A worker from before the migration (or one that retired) holds both: no row.
    assert_eq!(claim_all(&t, "old-worker").await.len(), 2);
    assert_eq!(t.store.recover().await.unwrap(), 2);
    let detail = t.store.detail(&m.id).await.unwrap();
    let states: Vec<(RecipientState, u32)> = detail
        .recipients
        .iter()
        .map(|r| (r.state, r.attempts))
        .collect();
    assert_eq!(
        states,
        vec![(RecipientState::Deferred, 1), (RecipientState::Queued, 0)]
    );
    assert!(t.store.has_due(soon()).await.unwrap());
}

async fn not_attempted_counts_no_attempt(t: TestStore) {
    let m = t.store.enqueue(message("m", &["a@x.test"])).await.unwrap();
    for round in 0..3 {
        let claimed = claim_all(&t, "w1").await;
        assert_eq!(claimed[0].attempts, 0, "round {round}");
        let refused = Delivery::NotAttempted {
            reply: "535 5.7.8 authentication failed".into(),
            next_attempt_at: OffsetDateTime::now_utc(),
        };
        assert_eq!(
            t.store
                .complete("w1", vec![outcome(&claimed[0], refused)])
                .await
                .unwrap(),
            1
        );
    }
    let detail = t.store.detail(&m.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Deferred);
    assert_eq!(detail.recipients[0].attempts, 0);
    assert_eq!(
        detail.recipients[0].last_reply.as_deref(),
        Some("535 5.7.8 authentication failed")
    );
    assert_eq!(t.store.status(&m.id).await.unwrap(), MessageStatus::Queued);
    let log = t.store.attempts(&m.id).await.unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|a| a.outcome == AttemptOutcome::Deferred));
    assert_eq!(log[0].code, Some(535));
}

async fn unknown_counts_an_attempt_and_logs_unknown(t: TestStore) {
    let m = t.store.enqueue(message("m", &["a@x.test"])).await.unwrap();
    let claimed = claim_all(&t, "w1").await;
    let retry_at = soon() + Duration::from_secs(600);
    let lost = Delivery::Unknown {
        reply: "connection lost after the final dot".into(),
        next_attempt_at: retry_at,
    };
    assert_eq!(
        t.store
            .complete("w1", vec![outcome(&claimed[0], lost)])
            .await
            .unwrap(),
        1
    );
    let detail = t.store.detail(&m.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Deferred);
    assert_eq!(detail.recipients[0].attempts, 1);
    let log = t.store.attempts(&m.id).await.unwrap();
    assert_eq!(log[0].outcome, AttemptOutcome::Unknown);
    assert_eq!(log[0].code, None);
    let json = serde_json::to_value(&log[0]).unwrap();
    assert_eq!(json["outcome"], "unknown");
    assert_eq!(
        t.store
            .next_due()
            .await
            .unwrap()
            .map(|t| t.unix_timestamp()),
        Some(retry_at.unix_timestamp())
    );
    assert_eq!(t.store.status(&m.id).await.unwrap(), MessageStatus::Queued);
}

async fn complete_of_1000_outcomes_across_many_messages(t: TestStore) {
    // 100 messages of 10 recipients.
    let mut ids = Vec::new();
    for i in 0..100 {
        let recipients: Vec<String> = (0..10).map(|j| format!("u{j}@d{i}.test")).collect();
        let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
        ids.push(t.store.enqueue(message("m", &refs)).await.unwrap().id);
    }
    let units = t.store.claim("w1", soon(), 1000).await.unwrap();
    assert_eq!(
        units.iter().map(|u| u.recipients.len()).sum::<usize>(),
        1000
    );
    // Message i: all sent if i % 3 == 0; one failed if i % 3 == 1; one deferred else.
    let index_of = |message_id: &str| ids.iter().position(|id| id == message_id).unwrap();
    let mut outcomes = Vec::new();
    for unit in &units {
        let i = index_of(&unit.message_id);
        for recipient in &unit.recipients {
            let first = recipient.address.starts_with("u0@");
            let delivery = match i % 3 {
                1 if first => Delivery::Failed {
                    reply: "550 no".into(),
                },
                2 if first => deferred("451 later"),
                _ => sent(),
            };
            outcomes.push(outcome(recipient, delivery));
        }
    }
    assert_eq!(t.store.complete("w1", outcomes).await.unwrap(), 1000);
    for (i, id) in ids.iter().enumerate() {
        let expected = match i % 3 {
            0 => MessageStatus::Sent,
            1 => MessageStatus::Error,
            _ => MessageStatus::Queued,
        };
        assert_eq!(t.store.status(id).await.unwrap(), expected, "message {i}");
        let log = t.store.attempts(id).await.unwrap();
        assert_eq!(log.len(), 10, "message {i}");
        let detail = t.store.detail(id).await.unwrap();
        assert!(detail.recipients.iter().all(|r| r.attempts == 1));
    }
    let counts = t.store.counts().await.unwrap();
    assert_eq!((counts.sent, counts.error, counts.queued), (34, 33, 33));
}

/// Recipients of one message completed at the same time by separate transactions: the
/// last to commit must see the others' states when it refreshes the message's status.
async fn concurrent_completions_of_one_message_leave_it_sent(t: TestStore) {
    let mut ids = Vec::new();
    for i in 0..20 {
        let recipients: Vec<String> = (0..4).map(|j| format!("u{j}@d{i}.test")).collect();
        let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
        ids.push(t.store.enqueue(message("m", &refs)).await.unwrap().id);
    }
    let claimed = claim_all(&t, "w1").await;
    assert_eq!(claimed.len(), 80);
    let mut tasks = Vec::new();
    for recipient in claimed {
        let store = t.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .complete("w1", vec![outcome(&recipient, sent())])
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 1);
    }
    for id in &ids {
        assert_eq!(t.store.status(id).await.unwrap(), MessageStatus::Sent);
    }
}

async fn message_bodies_in_one_call(t: TestStore) {
    let a = t.store.enqueue(message("a", &["a@x.test"])).await.unwrap();
    let mut merged = message("b", &[]);
    merged.recipients = vec![NewRecipient::new("b@x.test")];
    merged.tokens = Some(BTreeMap::from([("n".into(), "v".into())]));
    let b = t.store.enqueue(merged).await.unwrap();
    let missing = "01JD2W6Q0R9N6X4Y7Z8A1B2C3D".to_string();
    let mut bodies = t
        .store
        .message_bodies(&[a.id.clone(), b.id.clone(), missing])
        .await
        .unwrap();
    bodies.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0].0, a.id);
    assert_eq!(bodies[0].1, t.store.message_body(&a.id).await.unwrap());
    assert!(bodies[0].1.data.starts_with(b"From: app@example.com"));
    assert_eq!(bodies[1].0, b.id);
    assert_eq!(bodies[1].1.tokens.as_ref().unwrap()["n"], "v");
    assert!(t.store.message_bodies(&[]).await.unwrap().is_empty());
    assert!(matches!(
        t.store.message_bodies(&["nope".into()]).await,
        Err(StoreError::InvalidId { .. })
    ));
}

/// 10 000 high-priority recipients deferred for an hour, then a merge of 100 000 queued
/// medium-priority ones: the claim must read index ranges in order, without a sort and
/// without walking the deferred rows.
async fn the_claim_plan_reads_index_ranges_without_sorting(t: TestStore) {
    let started = Instant::now();
    let mut high = message("high", &[]);
    high.priority = Priority::High;
    high.recipients = (0..10_000)
        .map(|i| NewRecipient::new(format!("h{i}@deferred.test")))
        .collect();
    t.store.enqueue(high).await.unwrap();
    let claimed = claim_all(&t, "w1").await;
    assert_eq!(claimed.len(), 10_000);
    let outcomes = claimed
        .iter()
        .map(|r| outcome(r, deferred("451 later")))
        .collect();
    assert_eq!(t.store.complete("w1", outcomes).await.unwrap(), 10_000);
    let mut merge = message("merge", &[]);
    merge.recipients = (0..100_000)
        .map(|i| {
            NewRecipient::with_merge(
                format!("m{i}@merge{}.test", i % 100),
                BTreeMap::from([("n".into(), i.to_string())]),
            )
        })
        .collect();
    let merge = enqueue_in_batches(&*t.store, merge, 10_000).await.unwrap();
    eprintln!("setup took {:?}", started.elapsed());

    let now = soon();
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    let route = RouteFilter::Key(RouteKey::Mx("merge7.test".into()));
    let cases: [(Option<&RouteFilter>, &str); 3] = [
        (None, "recipients_due"),
        (Some(&RouteFilter::AnyMx), "recipients_due"),
        (Some(&route), "recipients_route"),
    ];
    let backend = t.store.backend();
    // First with the statistics as they are right after the merge was queued (none, or
    // stale), then analyzed.
    for analyze in [false, true] {
        for (filter, index) in cases {
            let (settings, sql) = claim_statement(backend, filter);
            let key = match filter {
                Some(RouteFilter::Key(key)) => Some(key.to_key()),
                _ => None,
            };
            let plan = explain(&t, backend, analyze, settings, &sql, now_ms, key.as_deref()).await;
            eprintln!("{backend:?} claim {filter:?} (analyzed: {analyze}):\n{plan}");
            assert!(plan.contains(index), "{index} not used:\n{plan}");
            match backend {
                Backend::Sqlite => {
                    assert!(!plan.contains("TEMP B-TREE"), "sorts:\n{plan}");
                    assert!(!plan.contains("SCAN recipients"), "walks a table:\n{plan}");
                }
                Backend::Postgres => {
                    assert!(!plan.contains("Sort"), "sorts:\n{plan}");
                    assert!(
                        !plan.contains("Seq Scan on recipients"),
                        "walks a table:\n{plan}"
                    );
                    assert!(
                        !plan.contains("Bitmap"),
                        "reads the range unordered:\n{plan}"
                    );
                }
                other => panic!("no plan check for {other:?}"),
            }
        }
    }
    // And the claim takes the merge's recipients, in id order, none of the deferred.
    let units = t.store.claim("w2", now, 100).await.unwrap();
    let got: Vec<&ClaimedRecipient> = units.iter().flat_map(|u| &u.recipients).collect();
    assert_eq!(got.len(), 100);
    assert!(units.iter().all(|u| u.message_id == merge.id));
    assert!(units.iter().all(|u| u.needs_merge));
    let addresses: Vec<String> = got.iter().map(|r| r.address.clone()).collect();
    let mut expected: Vec<String> = (0..100).map(|i| format!("m{i}@merge{i}.test")).collect();
    expected.sort();
    let mut sorted = addresses.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
}

/// The plan of a claim statement, as text (on PostgreSQL: the custom plan for these
/// values, then the generic plan a prepared statement switches to after a few runs).
async fn explain(
    t: &TestStore,
    backend: Backend,
    analyze: bool,
    settings: &str,
    sql: &str,
    now_ms: i64,
    route_key: Option<&str>,
) -> String {
    match backend {
        Backend::Sqlite => {
            let path = t.url.strip_prefix("sqlite://").unwrap().to_string();
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            let key = route_key.map(str::to_string);
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open(path).unwrap();
                if analyze {
                    conn.execute_batch("ANALYZE").unwrap();
                }
                let mut statement = conn.prepare(&sql).unwrap();
                let map = |row: &rusqlite::Row<'_>| row.get::<_, String>(3);
                let lines: Vec<String> = match key {
                    Some(key) => statement
                        .query_map(rusqlite::params!["explain", now_ms, 100i64, key], map)
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    None => statement
                        .query_map(rusqlite::params!["explain", now_ms, 100i64], map)
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap(),
                };
                lines.join("\n")
            })
            .await
            .unwrap()
        }
        Backend::Postgres => {
            let (client, connection) = tokio_postgres::connect(&t.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            if analyze {
                client.batch_execute("ANALYZE").await.unwrap();
            }
            client.batch_execute("BEGIN").await.unwrap();
            client.batch_execute(settings).await.unwrap();
            client
                .batch_execute(&format!(
                    "PREPARE claim_plan (text, bigint, bigint, text) AS {sql}"
                ))
                .await
                .unwrap();
            let key = route_key.map_or("NULL".to_string(), |k| format!("'{k}'"));
            let mut plans = Vec::new();
            for mode in ["force_custom_plan", "force_generic_plan"] {
                client
                    .batch_execute(&format!("SET LOCAL plan_cache_mode = {mode}"))
                    .await
                    .unwrap();
                let rows = client
                    .query(
                        &format!("EXPLAIN EXECUTE claim_plan ('explain', {now_ms}, 100, {key})"),
                        &[],
                    )
                    .await
                    .unwrap();
                plans.push(format!("-- {mode}"));
                plans.extend(rows.iter().map(|row| row.get::<_, String>(0)));
            }
            client.batch_execute("ROLLBACK").await.unwrap();
            plans.join("\n")
        }
        other => panic!("no EXPLAIN for {other:?}"),
    }
}

/// Claim + complete of 1 000 recipients (1 000 one-recipient messages), timed: a
/// measurement, not an assertion. Run with
/// `cargo nextest run -p outbox-queue --test ledger --run-ignored only timing --no-capture`.
async fn timing_claim_and_complete_1000(t: TestStore) {
    let mut claims = Vec::new();
    let mut completes = Vec::new();
    for round in 0..7 {
        let messages: Vec<_> = (0..1000)
            .map(|i| message("t", &[format!("u{i}@d{}.test", i % 50).as_str()]))
            .collect();
        t.store.enqueue_batch(messages).await.unwrap();
        let now = soon();
        let started = Instant::now();
        let units = t.store.claim("w1", now, 1000).await.unwrap();
        let claim = started.elapsed();
        let outcomes: Vec<Outcome> = units
            .iter()
            .flat_map(|u| &u.recipients)
            .map(|r| outcome(r, sent()))
            .collect();
        assert_eq!(outcomes.len(), 1000, "round {round}");
        let started = Instant::now();
        assert_eq!(t.store.complete("w1", outcomes).await.unwrap(), 1000);
        let complete = started.elapsed();
        claims.push(claim);
        completes.push(complete);
    }
    claims.sort();
    completes.sort();
    eprintln!(
        "TIMING {:?} claim 1000: median {:?} (min {:?}); complete 1000: median {:?} (min {:?})",
        t.store.backend(),
        claims[claims.len() / 2],
        claims[0],
        completes[completes.len() / 2],
        completes[0]
    );
}

mod timing {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement; prints ms"]
    async fn sqlite() {
        super::timing_claim_and_complete_1000(
            outbox_testkit::TestStore::sqlite(Default::default()).await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement; prints ms"]
    async fn postgres() {
        super::timing_claim_and_complete_1000(
            outbox_testkit::TestStore::postgres(Default::default()).await,
        )
        .await;
    }
}
