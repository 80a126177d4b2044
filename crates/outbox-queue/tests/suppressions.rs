//! Store conformance: the suppression list (add, remove, list, look up) and what it does
//! to recipients at enqueue and at a claim — the same tests on SQLite and PostgreSQL.

use outbox_queue::{
    MessageStatus, NewMessage, NewRecipient, NewSuppression, RecipientState, StoreError,
    SuppressionFilter, SuppressionReason,
};
use outbox_testkit::conformance;
use outbox_testkit::{TestStore, message, soon};

conformance!(
    add_is_idempotent_and_keeps_the_first_time,
    remove_and_look_up,
    list_filters_and_pages,
    bad_input_is_refused_naming_the_field,
    suppressed_recipients_are_marked_at_enqueue,
    a_message_whose_every_recipient_is_suppressed_ends_in_error,
    added_recipients_and_batches_are_checked_too,
    a_claim_marks_recipients_suppressed_after_enqueue,
    the_default_list_is_the_header_from,
);

fn suppression(address: &str, list: Option<&str>, reason: SuppressionReason) -> NewSuppression {
    {
        let mut new_suppression = NewSuppression::default();
        new_suppression.address = address.into();
        new_suppression.list = list.map(str::to_string);
        new_suppression.reason = reason;
        new_suppression.message_id = None;
        new_suppression
    }
}

fn with_list(mut m: NewMessage, list: &str) -> NewMessage {
    m.list = Some(list.into());
    m
}

async fn add_is_idempotent_and_keeps_the_first_time(t: TestStore) {
    let first = t
        .store
        .suppress(suppression(
            " Ann@Example.NET ",
            Some("News"),
            SuppressionReason::Manual,
        ))
        .await
        .unwrap();
    assert_eq!(first.address, "ann@example.net");
    assert_eq!(first.list.as_deref(), Some("news"));
    assert_eq!(first.reason, SuppressionReason::Manual);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut again = suppression("ann@example.net", Some("news"), SuppressionReason::Bounced);
    again.message_id = Some("01ARZ3NDEKTSV4RRFFQ69G5FAV".into());
    let second = t.store.suppress(again).await.unwrap();
    assert_eq!(
        second.created_at, first.created_at,
        "the first time is kept"
    );
    assert_eq!(second.reason, SuppressionReason::Bounced);
    assert_eq!(
        second.message_id.as_deref(),
        Some("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    );
    // A repeat without a message id keeps the one stored.
    let third = t
        .store
        .suppress(suppression(
            "ann@example.net",
            Some("news"),
            SuppressionReason::Bounced,
        ))
        .await
        .unwrap();
    assert_eq!(third.message_id, second.message_id);
    let page = t
        .store
        .suppressions_list(SuppressionFilter::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0], third);
    // Every list is another row.
    let all = t
        .store
        .suppress(suppression(
            "ann@example.net",
            None,
            SuppressionReason::Complained,
        ))
        .await
        .unwrap();
    assert_eq!(all.list, None);
    let json = serde_json::to_value(&all).unwrap();
    assert!(json.get("list").is_none(), "{json}");
    assert_eq!(json["reason"], "complained");
}

async fn remove_and_look_up(t: TestStore) {
    for (address, list) in [
        ("a@x.test", None),
        ("b@x.test", Some("news")),
        ("c@x.test", Some("other")),
    ] {
        t.store
            .suppress(suppression(address, list, SuppressionReason::Unsubscribed))
            .await
            .unwrap();
    }
    let asked: Vec<String> = [
        "A@x.test",
        "b@X.test",
        "c@x.test",
        "d@x.test",
        "not an address",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let found = t.store.suppressed(&asked, "News").await.unwrap();
    let found: Vec<&str> = found.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(found, ["a@x.test", "b@x.test"]);
    assert!(t.store.unsuppress("B@x.test", "news").await.unwrap());
    assert!(
        !t.store.unsuppress("b@x.test", "news").await.unwrap(),
        "gone"
    );
    assert!(
        !t.store.unsuppress("a@x.test", "news").await.unwrap(),
        "a list-scoped remove leaves the every-list row"
    );
    assert!(t.store.unsuppress("a@x.test", "").await.unwrap());
    assert!(t.store.suppressed(&asked, "news").await.unwrap().is_empty());
}

async fn list_filters_and_pages(t: TestStore) {
    for i in 0..5 {
        for list in [None, Some("news")] {
            t.store
                .suppress(suppression(
                    &format!("u{i}@x.test"),
                    list,
                    SuppressionReason::Manual,
                ))
                .await
                .unwrap();
        }
    }
    let mut seen = Vec::new();
    let mut filter = SuppressionFilter::default();
    filter.limit = 3;
    loop {
        let page = t.store.suppressions_list(filter.clone()).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(
            page.items
                .iter()
                .map(|s| (s.address.clone(), s.list.clone())),
        );
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    assert_eq!(seen[0], ("u0@x.test".to_string(), None));
    assert_eq!(seen[1], ("u0@x.test".to_string(), Some("news".to_string())));
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "ordered by address, then list");
    let only = |address: Option<&str>, list: Option<&str>| {
        let mut suppression_filter = SuppressionFilter::default();
        suppression_filter.address = address.map(str::to_string);
        suppression_filter.list = list.map(str::to_string);
        suppression_filter
    };
    let page = t
        .store
        .suppressions_list(only(Some("U3@x.test"), None))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let page = t
        .store
        .suppressions_list(only(None, Some("")))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert!(page.items.iter().all(|s| s.list.is_none()));
    let page = t
        .store
        .suppressions_list(only(Some("u3@x.test"), Some("news")))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

async fn bad_input_is_refused_naming_the_field(t: TestStore) {
    for (bad, field) in [
        (
            suppression("nobody", None, SuppressionReason::Manual),
            "address",
        ),
        (
            suppression("a b@x.test", None, SuppressionReason::Manual),
            "address",
        ),
        (
            suppression("a@x.test", Some("new\nline"), SuppressionReason::Manual),
            "list",
        ),
    ] {
        match t.store.suppress(bad).await {
            Err(StoreError::InvalidSuppression { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
    let err = t
        .store
        .suppressions_list({
            let mut suppression_filter = SuppressionFilter::default();
            suppression_filter.cursor = Some("garbage".into());
            suppression_filter
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidSuppression {
                field: "cursor",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_permanent());
    assert!(
        t.store
            .suppressions_list(SuppressionFilter::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn suppressed_recipients_are_marked_at_enqueue(t: TestStore) {
    t.store
        .suppress(suppression(
            "ann@x.test",
            Some("news"),
            SuppressionReason::Unsubscribed,
        ))
        .await
        .unwrap();
    t.store
        .suppress(suppression("bob@x.test", None, SuppressionReason::Bounced))
        .await
        .unwrap();
    let news = t
        .store
        .enqueue(with_list(
            message("news", &["Ann@X.test", "bob@x.test", "cat@x.test"]),
            "News",
        ))
        .await
        .unwrap();
    let detail = t.store.detail(&news.id).await.unwrap();
    let states: Vec<RecipientState> = detail.recipients.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            RecipientState::Suppressed,
            RecipientState::Suppressed,
            RecipientState::Queued
        ]
    );
    let ann = detail.recipients[0].last_reply.as_deref().unwrap();
    assert!(
        ann.starts_with("suppressed: unsubscribed (list news) since 20"),
        "{ann}"
    );
    let bob = detail.recipients[1].last_reply.as_deref().unwrap();
    assert!(
        bob.starts_with("suppressed: bounced (every list) since 20"),
        "{bob}"
    );
    assert_eq!(detail.status, MessageStatus::Queued);
    // Another list: only the every-list suppression applies.
    let other = t
        .store
        .enqueue(with_list(
            message("other", &["ann@x.test", "bob@x.test"]),
            "other",
        ))
        .await
        .unwrap();
    let detail = t.store.detail(&other.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Queued);
    assert_eq!(detail.recipients[1].state, RecipientState::Suppressed);
    // Suppressed recipients are never claimed.
    let claimed = t.store.claim("w", soon(), 100).await.unwrap();
    let addresses: Vec<&str> = claimed
        .iter()
        .flat_map(|c| c.recipients.iter().map(|r| r.address.as_str()))
        .collect();
    let mut addresses = addresses;
    addresses.sort_unstable();
    assert_eq!(addresses, ["ann@x.test", "cat@x.test"]);
}

async fn a_message_whose_every_recipient_is_suppressed_ends_in_error(t: TestStore) {
    t.store
        .suppress(suppression("ann@x.test", None, SuppressionReason::Manual))
        .await
        .unwrap();
    let queued = t
        .store
        .enqueue(message("x", &["ann@x.test"]))
        .await
        .unwrap();
    assert_eq!(
        t.store.status(&queued.id).await.unwrap(),
        MessageStatus::Error,
        "not delivered, like removed"
    );
    assert_eq!(t.store.counts().await.unwrap().error, 1);
    assert_eq!(t.store.next_due().await.unwrap(), None, "nothing to claim");
    // Final: neither retry nor remove touches it, and removing the entry leaves it so.
    assert_eq!(t.store.retry(&queued.id, soon()).await.unwrap(), 0);
    assert_eq!(t.store.remove(&queued.id).await.unwrap(), 0);
    assert!(t.store.unsuppress("ann@x.test", "").await.unwrap());
    let detail = t.store.detail(&queued.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Suppressed);
    assert!(detail.recipients[0].state.is_final());
}

async fn added_recipients_and_batches_are_checked_too(t: TestStore) {
    t.store
        .suppress(suppression("z@x.test", None, SuppressionReason::Manual))
        .await
        .unwrap();
    let batch = t
        .store
        .enqueue_batch(vec![
            message("one", &["z@x.test", "a@x.test"]),
            message("two", &["z@x.test"]),
        ])
        .await
        .unwrap();
    assert_eq!(
        t.store.status(&batch[0].id).await.unwrap(),
        MessageStatus::Queued
    );
    assert_eq!(
        t.store.status(&batch[1].id).await.unwrap(),
        MessageStatus::Error
    );
    let id = &batch[0].id;
    let added = t
        .store
        .add_recipients(
            id,
            vec![NewRecipient::new("Z@x.test"), NewRecipient::new("b@x.test")],
        )
        .await
        .unwrap();
    assert_eq!(added, 2);
    let states: Vec<RecipientState> = t
        .store
        .detail(id)
        .await
        .unwrap()
        .recipients
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(
        states,
        [
            RecipientState::Suppressed,
            RecipientState::Queued,
            RecipientState::Suppressed,
            RecipientState::Queued
        ]
    );
}

async fn a_claim_marks_recipients_suppressed_after_enqueue(t: TestStore) {
    let a = t
        .store
        .enqueue(with_list(
            message("a", &["ann@x.test", "bob@x.test"]),
            "news",
        ))
        .await
        .unwrap();
    let b = t
        .store
        .enqueue(with_list(message("b", &["ann@x.test"]), "news"))
        .await
        .unwrap();
    let c = t
        .store
        .enqueue(with_list(message("c", &["ann@x.test"]), "other"))
        .await
        .unwrap();
    // Suppressed after enqueue: the recipients stay queued until a claim sees them.
    t.store
        .suppress(suppression(
            "ANN@x.test",
            Some("news"),
            SuppressionReason::Unsubscribed,
        ))
        .await
        .unwrap();
    let claimed = t.store.claim("w", soon(), 100).await.unwrap();
    let mut got: Vec<(String, String)> = claimed
        .iter()
        .flat_map(|c| {
            c.recipients
                .iter()
                .map(|r| (c.message_id.clone(), r.address.clone()))
        })
        .collect();
    got.sort();
    let mut want = vec![
        (a.id.clone(), "bob@x.test".to_string()),
        (c.id.clone(), "ann@x.test".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    let detail = t.store.detail(&a.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Suppressed);
    assert!(
        detail.recipients[0]
            .last_reply
            .as_deref()
            .unwrap()
            .starts_with("suppressed: unsubscribed (list news)")
    );
    assert_eq!(detail.recipients[1].state, RecipientState::Sending);
    assert_eq!(
        t.store.status(&b.id).await.unwrap(),
        MessageStatus::Error,
        "its only recipient was suppressed by the claim"
    );
    // Nothing is left to claim, and the suppressed rows are never claimed again.
    assert!(t.store.claim("w2", soon(), 100).await.unwrap().is_empty());
}

async fn the_default_list_is_the_header_from(t: TestStore) {
    t.store
        .suppress(suppression(
            "ann@x.test",
            Some("app@example.com"),
            SuppressionReason::Unsubscribed,
        ))
        .await
        .unwrap();
    // `message` has `From: app@example.com`; the envelope sender differs here.
    let mut m = message("x", &["ann@x.test"]);
    m.envelope_from = "bounces+123@example.com".into();
    let queued = t.store.enqueue(m).await.unwrap();
    let detail = t.store.detail(&queued.id).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Suppressed);
}
