//! Store conformance: feedback reports (bounces, delays, complaints) and synchronous hard
//! bounces — what they do to recipients, message statuses and the suppression list — the
//! same tests on SQLite and PostgreSQL.

use std::time::Duration;

use outbox_queue::{
    ClaimedRecipient, Delivery, FeedbackFilter, FeedbackKind, MessageStatus, NewFeedback, Outcome,
    RecipientState, SuppressionFilter, SuppressionReason,
};
use outbox_testkit::conformance;
use outbox_testkit::{TestStore, message, soon};
use time::OffsetDateTime;

conformance!(
    a_failed_report_bounces_a_sent_recipient_and_suppresses_on_5xx,
    a_temporary_status_bounces_without_suppression,
    a_delay_changes_nothing,
    a_complaint_overrides_a_bounce_and_suppresses,
    unmatched_reports_are_kept_with_their_text,
    only_the_newest_unmatched_reports_are_kept,
    removed_recipients_stay_removed,
    a_synchronous_5xx_suppresses_and_a_4xx_never,
    without_a_token_the_message_id_and_address_match,
);

/// Queues a message to `recipients`, claims it and records every recipient sent.
async fn sent_message(t: &TestStore, recipients: &[&str]) -> (String, Vec<ClaimedRecipient>) {
    let id = t.store.enqueue(message("fb", recipients)).await.unwrap().id;
    (id, send_everything(t).await)
}

/// Claims every due recipient and records each as sent (250).
async fn send_everything(t: &TestStore) -> Vec<ClaimedRecipient> {
    let claimed = t.store.claim("w", soon(), 100).await.unwrap();
    let rows: Vec<ClaimedRecipient> = claimed.into_iter().flat_map(|c| c.recipients).collect();
    let outcomes = rows
        .iter()
        .map(|r| {
            outcome(
                r,
                Delivery::Sent {
                    reply: "250 ok".into(),
                },
            )
        })
        .collect();
    t.store.complete("w", outcomes).await.unwrap();
    rows
}

fn outcome(r: &ClaimedRecipient, delivery: Delivery) -> Outcome {
    Outcome {
        recipient_id: r.id,
        epoch: r.epoch,
        delivery,
        at: OffsetDateTime::now_utc(),
        host: Some("mx.test:25".into()),
        duration: Duration::from_millis(1),
    }
}

fn report(kind: FeedbackKind, recipient_id: Option<i64>, status: Option<&str>) -> NewFeedback {
    NewFeedback {
        kind,
        format: "dsn".into(),
        recipient_id,
        original_message_id: None,
        address: Some("someone@example.net".into()),
        status: status.map(str::to_string),
        diagnostic: Some("smtp; 550 5.1.1 user unknown\r\nX-Injected: yes".into()),
        sender: String::new(),
        raw: b"the report".to_vec(),
    }
}

async fn state_of(t: &TestStore, message_id: &str, address: &str) -> (RecipientState, String) {
    let detail = t.store.detail(message_id).await.unwrap();
    let r = detail
        .recipients
        .iter()
        .find(|r| r.address == address)
        .unwrap();
    (r.state, r.last_reply.clone().unwrap_or_default())
}

async fn suppressions(t: &TestStore) -> Vec<(String, SuppressionReason, Option<String>)> {
    t.store
        .suppressions_list(SuppressionFilter::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.address, s.reason, s.message_id))
        .collect()
}

async fn a_failed_report_bounces_a_sent_recipient_and_suppresses_on_5xx(t: TestStore) {
    let (id, rows) = sent_message(&t, &["Gone@Example.net", "ok@example.net"]).await;
    assert_eq!(t.store.status(&id).await.unwrap(), MessageStatus::Sent);
    let applied = t
        .store
        .record_feedback(report(
            FeedbackKind::Bounce,
            Some(rows[0].id),
            Some("5.1.1"),
        ))
        .await
        .unwrap();
    assert_eq!(applied.state, Some(RecipientState::Bounced));
    assert!(applied.suppressed);
    assert_eq!(applied.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(applied.recipient.as_deref(), Some("Gone@Example.net"));
    let (state, reply) = state_of(&t, &id, "Gone@Example.net").await;
    assert_eq!(state, RecipientState::Bounced);
    assert!(
        reply.starts_with("bounced: 5.1.1 smtp; 550 5.1.1 user unknown"),
        "{reply}"
    );
    assert!(!reply.contains('\n'), "{reply}");
    assert_eq!(
        state_of(&t, &id, "ok@example.net").await.0,
        RecipientState::Sent
    );
    assert_eq!(t.store.status(&id).await.unwrap(), MessageStatus::Error);
    assert_eq!(
        suppressions(&t).await,
        [(
            "gone@example.net".to_string(),
            SuppressionReason::Bounced,
            Some(id.clone())
        )]
    );
    let listed = t
        .store
        .feedback_list({
            let mut feedback_filter = FeedbackFilter::default();
            feedback_filter.message_id = Some(id.clone());
            feedback_filter
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].applied.as_deref(), Some("bounced"));
    assert_eq!(listed[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(listed[0].recipient_id, Some(rows[0].id));
    assert_eq!(listed[0].kept_bytes, 0, "a matched report keeps no text");
    assert_eq!(t.store.feedback_raw(listed[0].id).await.unwrap(), None);
    // The same bounce again (a retrying reporter) changes nothing more.
    let again = t
        .store
        .record_feedback(report(
            FeedbackKind::Bounce,
            Some(rows[0].id),
            Some("5.1.1"),
        ))
        .await
        .unwrap();
    assert_eq!(again.state, Some(RecipientState::Bounced));
    assert_eq!(suppressions(&t).await.len(), 1);
}

async fn a_temporary_status_bounces_without_suppression(t: TestStore) {
    let (id, rows) = sent_message(&t, &["full@example.net"]).await;
    let applied = t
        .store
        .record_feedback(report(
            FeedbackKind::Bounce,
            Some(rows[0].id),
            Some("4.2.2"),
        ))
        .await
        .unwrap();
    assert_eq!(applied.state, Some(RecipientState::Bounced));
    assert!(!applied.suppressed);
    assert_eq!(
        state_of(&t, &id, "full@example.net").await.0,
        RecipientState::Bounced
    );
    assert!(suppressions(&t).await.is_empty());
}

async fn a_delay_changes_nothing(t: TestStore) {
    let (id, rows) = sent_message(&t, &["slow@example.net"]).await;
    let applied = t
        .store
        .record_feedback(report(FeedbackKind::Delay, Some(rows[0].id), Some("4.4.1")))
        .await
        .unwrap();
    assert_eq!(applied.state, None);
    assert!(!applied.suppressed);
    assert_eq!(
        state_of(&t, &id, "slow@example.net").await.0,
        RecipientState::Sent
    );
    assert_eq!(t.store.status(&id).await.unwrap(), MessageStatus::Sent);
    let listed = t
        .store
        .feedback_list(FeedbackFilter::default())
        .await
        .unwrap();
    assert_eq!(listed[0].kind, FeedbackKind::Delay);
    assert_eq!(listed[0].message_id.as_deref(), Some(id.as_str()));
}

async fn a_complaint_overrides_a_bounce_and_suppresses(t: TestStore) {
    let (id, rows) = sent_message(&t, &["angry@example.net"]).await;
    t.store
        .record_feedback(report(
            FeedbackKind::Bounce,
            Some(rows[0].id),
            Some("5.0.0"),
        ))
        .await
        .unwrap();
    let mut complaint = report(FeedbackKind::Complaint, Some(rows[0].id), None);
    complaint.format = "arf".into();
    complaint.diagnostic = Some("abuse".into());
    let applied = t.store.record_feedback(complaint).await.unwrap();
    assert_eq!(applied.state, Some(RecipientState::Complained));
    let (state, reply) = state_of(&t, &id, "angry@example.net").await;
    assert_eq!(
        (state, reply.as_str()),
        (RecipientState::Complained, "complained: abuse")
    );
    assert_eq!(
        suppressions(&t).await,
        [(
            "angry@example.net".to_string(),
            SuppressionReason::Complained,
            Some(id.clone())
        )]
    );
    // A bounce after a complaint does not undo it.
    let later = t
        .store
        .record_feedback(report(
            FeedbackKind::Bounce,
            Some(rows[0].id),
            Some("5.1.1"),
        ))
        .await
        .unwrap();
    assert_eq!(later.state, None);
    assert_eq!(
        state_of(&t, &id, "angry@example.net").await.0,
        RecipientState::Complained
    );
    // Each applied report is one event, in its transaction; the one that changed nothing
    // is none.
    let events = t
        .store
        .events({
            let mut event_filter = outbox_queue::EventFilter::default();
            event_filter.message_id = Some(id.clone());
            event_filter.limit = 100;
            event_filter.cursor = None;
            event_filter
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = events.items.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["queued", "sent", "bounced", "complained"]);
    assert_eq!(events.items[3].reply.as_deref(), Some("complained: abuse"));
}

/// Anyone may mail the bounce domain: unmatched reports are kept up to a bound, the
/// oldest deleted first; reports that matched a recipient are never pruned this way.
async fn only_the_newest_unmatched_reports_are_kept(t: TestStore) {
    let (_, rows) = sent_message(&t, &["a@example.net"]).await;
    let matched = t
        .store
        .record_feedback(report(FeedbackKind::Delay, Some(rows[0].id), Some("4.4.1")))
        .await
        .unwrap();
    let max = outbox_queue::MAX_UNMATCHED_REPORTS;
    let mut ids = Vec::new();
    for _ in 0..max + 2 {
        let applied = t
            .store
            .record_feedback(report(FeedbackKind::Bounce, None, Some("5.1.1")))
            .await
            .unwrap();
        ids.push(applied.id);
    }
    let kept = t
        .store
        .feedback_list({
            let mut feedback_filter = FeedbackFilter::default();
            feedback_filter.unmatched = true;
            feedback_filter.limit = 1000;
            feedback_filter
        })
        .await
        .unwrap();
    assert_eq!(kept.len() as i64, max);
    assert_eq!(kept[0].id, *ids.last().unwrap(), "the newest is kept");
    assert_eq!(kept.last().unwrap().id, ids[2], "the two oldest are gone");
    assert_eq!(t.store.feedback_raw(ids[0]).await.unwrap(), None);
    let all = t
        .store
        .feedback_list({
            let mut feedback_filter = FeedbackFilter::default();
            feedback_filter.before = Some(ids[2]);
            feedback_filter
        })
        .await
        .unwrap();
    let older: Vec<i64> = all.iter().map(|r| r.id).collect();
    assert_eq!(older, [matched.id], "the matched report stays");
}

async fn unmatched_reports_are_kept_with_their_text(t: TestStore) {
    let (id, _) = sent_message(&t, &["a@example.net"]).await;
    let mut big = report(FeedbackKind::Bounce, None, Some("5.1.1"));
    big.format = "text".into();
    big.raw = vec![b'x'; 200_000];
    let applied = t.store.record_feedback(big).await.unwrap();
    assert_eq!(
        (applied.state, applied.suppressed, applied.message_id),
        (None, false, None)
    );
    // A token of a row that does not exist (a purged message) matches nothing either.
    let ghost = t
        .store
        .record_feedback(report(FeedbackKind::Complaint, Some(i64::MAX), None))
        .await
        .unwrap();
    assert_eq!(ghost.state, None);
    let unmatched = t
        .store
        .feedback_list({
            let mut feedback_filter = FeedbackFilter::default();
            feedback_filter.unmatched = true;
            feedback_filter
        })
        .await
        .unwrap();
    assert_eq!(unmatched.len(), 2);
    assert_eq!(unmatched[0].id, ghost.id, "newest first");
    assert_eq!(unmatched[0].recipient_id, None);
    assert_eq!(
        unmatched[1].kept_bytes,
        outbox_queue::MAX_KEPT_REPORT as u64
    );
    let raw = t.store.feedback_raw(applied.id).await.unwrap().unwrap();
    assert_eq!(raw.len(), outbox_queue::MAX_KEPT_REPORT);
    assert!(suppressions(&t).await.is_empty());
    assert_eq!(t.store.status(&id).await.unwrap(), MessageStatus::Sent);
    // Paging.
    let older = t
        .store
        .feedback_list({
            let mut feedback_filter = FeedbackFilter::default();
            feedback_filter.unmatched = true;
            feedback_filter.before = Some(ghost.id);
            feedback_filter.limit = 1;
            feedback_filter
        })
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, applied.id);
}

async fn removed_recipients_stay_removed(t: TestStore) {
    let id = t
        .store
        .enqueue(message("rm", &["x@example.net"]))
        .await
        .unwrap()
        .id;
    t.store.remove(&id).await.unwrap();
    let claimed_none = t.store.claim("w", soon(), 10).await.unwrap();
    assert!(claimed_none.is_empty());
    // The recipient row id is not visible from outside: find it through a report of a
    // message that was sent, then check a removed one by listing.
    let (_, rows) = sent_message(&t, &["y@example.net"]).await;
    let removed_id = rows[0].id - 1;
    let applied = t
        .store
        .record_feedback(report(
            FeedbackKind::Bounce,
            Some(removed_id),
            Some("5.1.1"),
        ))
        .await
        .unwrap();
    assert_eq!(applied.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(applied.state, None);
    assert_eq!(
        state_of(&t, &id, "x@example.net").await.0,
        RecipientState::Removed
    );
    // The address is dead all the same: a 5.x.x report suppresses it.
    assert!(applied.suppressed);
}

async fn a_synchronous_5xx_suppresses_and_a_4xx_never(t: TestStore) {
    let id = t
        .store
        .enqueue(message(
            "sync",
            &["Dead@Example.net", "busy@example.net", "plain@example.net"],
        ))
        .await
        .unwrap()
        .id;
    let claimed = t.store.claim("w", soon(), 100).await.unwrap();
    let rows: Vec<ClaimedRecipient> = claimed.into_iter().flat_map(|c| c.recipients).collect();
    let outcomes = vec![
        outcome(
            &rows[0],
            Delivery::HardBounce {
                reply: "550 5.1.1 no such user".into(),
            },
        ),
        outcome(
            &rows[1],
            Delivery::Failed {
                reply: "452 4.2.2 full (cancelled after 10 attempts)".into(),
            },
        ),
        outcome(
            &rows[2],
            Delivery::Failed {
                reply: "null MX".into(),
            },
        ),
    ];
    assert_eq!(t.store.complete("w", outcomes).await.unwrap(), 3);
    for address in ["Dead@Example.net", "busy@example.net", "plain@example.net"] {
        assert_eq!(
            state_of(&t, &id, address).await.0,
            RecipientState::Failed,
            "{address}"
        );
    }
    assert_eq!(
        suppressions(&t).await,
        [(
            "dead@example.net".to_string(),
            SuppressionReason::Bounced,
            Some(id.clone())
        )]
    );
    let attempts = t.store.attempts(&id).await.unwrap();
    assert_eq!(attempts[0].code, Some(550));
    assert_eq!(attempts[0].outcome, outbox_queue::AttemptOutcome::Failed);
}

async fn without_a_token_the_message_id_and_address_match(t: TestStore) {
    let with_id = |id: &str, recipients: &[&str]| {
        let mut m = message("mid", recipients);
        m.data = format!("Message-ID: <{id}>\r\n")
            .into_bytes()
            .into_iter()
            .chain(m.data)
            .collect();
        m
    };
    let two = t
        .store
        .enqueue(with_id("m-2@example.com", &["a@x.test", "B@x.test"]))
        .await
        .unwrap()
        .id;
    let one = t
        .store
        .enqueue(with_id("m-1@example.com", &["solo@x.test"]))
        .await
        .unwrap()
        .id;
    send_everything(&t).await;
    let by_id = |message_id: &str, address: Option<&str>, kind| NewFeedback {
        original_message_id: Some(message_id.to_string()),
        address: address.map(str::to_string),
        ..report(kind, None, Some("5.1.1"))
    };
    // The address of the report, in another case, picks the recipient.
    let applied = t
        .store
        .record_feedback(by_id(
            "<m-2@example.com>",
            Some("b@X.test"),
            FeedbackKind::Bounce,
        ))
        .await
        .unwrap();
    assert_eq!(applied.state, Some(RecipientState::Bounced));
    assert_eq!(
        state_of(&t, &two, "B@x.test").await.0,
        RecipientState::Bounced
    );
    assert_eq!(state_of(&t, &two, "a@x.test").await.0, RecipientState::Sent);
    // A redacted complaint names no one among two recipients, but the only one of one.
    let redacted = t
        .store
        .record_feedback(by_id("m-2@example.com", None, FeedbackKind::Complaint))
        .await
        .unwrap();
    assert_eq!((redacted.state, redacted.message_id), (None, None));
    let solo = t
        .store
        .record_feedback(by_id("m-1@example.com", None, FeedbackKind::Complaint))
        .await
        .unwrap();
    assert_eq!(solo.state, Some(RecipientState::Complained));
    assert_eq!(solo.message_id.as_deref(), Some(one.as_str()));
    // An unknown Message-ID, or the right one with another address, matches nothing.
    for (id, address) in [
        ("nope@example.com", Some("a@x.test")),
        ("m-2@example.com", Some("c@x.test")),
    ] {
        let none = t
            .store
            .record_feedback(by_id(id, address, FeedbackKind::Bounce))
            .await
            .unwrap();
        assert_eq!(none.message_id, None, "{id} {address:?}");
    }
    assert_eq!(state_of(&t, &two, "a@x.test").await.0, RecipientState::Sent);
}
