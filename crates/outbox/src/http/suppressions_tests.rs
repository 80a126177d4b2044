//! `/api/v1/suppressions` through `app(state).oneshot(...)`: add (idempotent), list with
//! filters and paging, delete (204, 404), bad input as 422 naming the field, the token,
//! and what a suppression does to a message posted afterwards.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::api_tests::{TOKEN, call, harness, request, send};

#[tokio::test]
async fn add_list_and_delete() {
    let h = harness().await;
    let reply = call(
        &h.app,
        Method::POST,
        "/api/v1/suppressions",
        Some(json!({"address": " Ann@Example.NET", "list": "Weekly", "reason": "unsubscribed"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let first = reply.json();
    assert_eq!(first["address"], "ann@example.net");
    assert_eq!(first["list"], "weekly");
    assert_eq!(first["reason"], "unsubscribed");
    // Idempotent: 201 again, the first created_at kept.
    let again = call(
        &h.app,
        Method::POST,
        "/api/v1/suppressions",
        Some(json!({"address": "ann@example.net", "list": "weekly", "reason": "bounced"})),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json()["created_at"], first["created_at"]);
    assert_eq!(again.json()["reason"], "bounced");
    // No list, no reason: every list, manual.
    let all = call(
        &h.app,
        Method::POST,
        "/api/v1/suppressions",
        Some(json!({"address": "bob@example.net", "list": null})),
    )
    .await
    .json();
    assert!(all.get("list").is_none(), "{all}");
    assert_eq!(all["reason"], "manual");

    let page = call(&h.app, Method::GET, "/api/v1/suppressions", None)
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_cursor"], json!(null));
    let page = call(&h.app, Method::GET, "/api/v1/suppressions?limit=1", None)
        .await
        .json();
    assert_eq!(page["items"][0]["address"], "ann@example.net");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let next = call(
        &h.app,
        Method::GET,
        &format!(
            "/api/v1/suppressions?limit=1&cursor={}",
            urlencoding(&cursor)
        ),
        None,
    )
    .await
    .json();
    assert_eq!(next["items"][0]["address"], "bob@example.net");
    let every = call(&h.app, Method::GET, "/api/v1/suppressions?list=", None)
        .await
        .json();
    assert_eq!(every["items"].as_array().unwrap().len(), 1);
    let one = call(
        &h.app,
        Method::GET,
        "/api/v1/suppressions?address=ANN%40example.net",
        None,
    )
    .await
    .json();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);

    // DELETE: the scope must match; 204, then 404.
    let missing = call(
        &h.app,
        Method::DELETE,
        "/api/v1/suppressions/ann%40example.net",
        None,
    )
    .await;
    missing.error(StatusCode::NOT_FOUND);
    let gone = call(
        &h.app,
        Method::DELETE,
        "/api/v1/suppressions/ann%40example.net?list=weekly",
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text);
    let again = call(
        &h.app,
        Method::DELETE,
        "/api/v1/suppressions/ann%40example.net?list=weekly",
        None,
    )
    .await;
    again.error(StatusCode::NOT_FOUND);
}

/// Percent-encodes the few characters a cursor has that a query string cannot carry.
fn urlencoding(text: &str) -> String {
    text.replace('%', "%25")
        .replace(' ', "%20")
        .replace('@', "%40")
        .replace('&', "%26")
        .replace('+', "%2B")
}

#[tokio::test]
async fn bad_input_is_422_naming_the_field() {
    let h = harness().await;
    for (body, field) in [
        (json!({"address": "nobody"}), "address"),
        (json!({"address": 5}), "address"),
        (json!({"list": "x"}), "address"),
        (json!({"address": null}), "address"),
        (json!({"address": "a@x.test", "reason": "spam"}), "reason"),
        (json!({"address": "a@x.test", "list": 3}), "list"),
        (json!({"address": "a@x.test", "list": "a\u{1}b"}), "list"),
        (json!({"address": "a@x.test", "colour": "red"}), "colour"),
        (
            json!({"address": format!("{}@x.test", "a".repeat(300))}),
            "address",
        ),
    ] {
        let reply = call(
            &h.app,
            Method::POST,
            "/api/v1/suppressions",
            Some(body.clone()),
        )
        .await;
        let (_, got) = reply.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(got.as_deref(), Some(field), "{body}");
    }
    let reply = call(
        &h.app,
        Method::POST,
        "/api/v1/suppressions",
        Some(json!([1])),
    )
    .await;
    reply.error(StatusCode::UNPROCESSABLE_ENTITY);
    let reply = send(
        &h.app,
        request(
            Method::POST,
            "/api/v1/suppressions",
            Some(b"{not json".to_vec()),
            Some(TOKEN),
        ),
    )
    .await;
    reply.error(StatusCode::BAD_REQUEST);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("cursor=garbage", "cursor"),
        ("address=nobody", "address"),
    ] {
        let reply = call(
            &h.app,
            Method::GET,
            &format!("/api/v1/suppressions?{query}"),
            None,
        )
        .await;
        let (_, got) = reply.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(got.as_deref(), Some(field), "{query}");
    }
    let reply = call(&h.app, Method::DELETE, "/api/v1/suppressions/nobody", None).await;
    let (_, got) = reply.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(got.as_deref(), Some("address"));
    // Nothing was stored by any of them.
    let page = call(&h.app, Method::GET, "/api/v1/suppressions", None)
        .await
        .json();
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn the_token_is_required() {
    let h = harness().await;
    for (method, uri) in [
        (Method::GET, "/api/v1/suppressions"),
        (Method::POST, "/api/v1/suppressions"),
        (Method::DELETE, "/api/v1/suppressions/a%40x.test"),
    ] {
        let body = (method == Method::POST).then(|| br#"{"address": "a@x.test"}"#.to_vec());
        let reply = send(&h.app, request(method.clone(), uri, body, None)).await;
        reply.error(StatusCode::UNAUTHORIZED);
    }
    assert!(
        h.store
            .suppressed(&["a@x.test".to_string()], "")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_message_posted_after_shows_the_recipient_suppressed() {
    let h = harness().await;
    call(
        &h.app,
        Method::POST,
        "/api/v1/suppressions",
        Some(json!({"address": "ann@example.net", "list": "weekly"})),
    )
    .await;
    let posted = call(
        &h.app,
        Method::POST,
        "/api/v1/messages",
        Some(json!({
            "from": "app@example.com", "to": ["ann@example.net", "bob@example.net"],
            "subject": "s", "text": "t", "list": "weekly"
        })),
    )
    .await;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{}", posted.text);
    let id = posted.json()["id"].as_str().unwrap().to_string();
    let detail = call(&h.app, Method::GET, &format!("/api/v1/messages/{id}"), None)
        .await
        .json();
    assert_eq!(detail["recipients"][0]["state"], "suppressed");
    assert!(
        detail["recipients"][0]["last_reply"]
            .as_str()
            .unwrap()
            .starts_with("suppressed: manual (list weekly) since ")
    );
    assert_eq!(detail["recipients"][1]["state"], "queued");
    // Another list: not suppressed.
    let posted = call(
        &h.app,
        Method::POST,
        "/api/v1/messages",
        Some(json!({"from": "app@example.com", "to": "ann@example.net", "subject": "s", "text": "t"})),
    )
    .await;
    let id = posted.json()["id"].as_str().unwrap().to_string();
    let detail = call(&h.app, Method::GET, &format!("/api/v1/messages/{id}"), None)
        .await
        .json();
    assert_eq!(detail["recipients"][0]["state"], "queued");
    // A bad list on a message is a 422 naming it, and nothing is queued.
    let reply = call(
        &h.app,
        Method::POST,
        "/api/v1/messages",
        Some(
            json!({"from": "app@example.com", "to": "x@example.net", "subject": "s",
                    "text": "t", "list": "x".repeat(300)}),
        ),
    )
    .await;
    let (_, field) = reply.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("list"));
    assert_eq!(
        h.store.counts().await.unwrap().queued,
        2,
        "the two above only"
    );
}

#[tokio::test]
async fn an_immediate_send_refuses_suppressed_recipients() {
    let h = harness().await;
    let reply = call(
        &h.app,
        Method::POST,
        "/api/v1/suppressions",
        Some(json!({"address": "ann@example.org", "reason": "bounced"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let mut spec = super::api_tests::spec("now", "ann@example.org");
    spec["immediate"] = json!(true);
    let reply = super::api_tests::post(&h.app, spec).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["status"], "error");
    assert_eq!(body["recipients"][0]["accepted"], false);
    let text = body["recipients"][0]["reply"].as_str().unwrap();
    assert!(text.starts_with("suppressed: bounced"), "{text}");
}

/// `GET /api/v1/bounces`: the reports, newest first, filtered and paged; bad values are
/// 422 naming the field; the token is required.
#[tokio::test]
async fn bounces_are_listed_with_filters() {
    let h = harness().await;
    let report = |raw: &str| outbox_queue::NewFeedback {
        kind: outbox_queue::FeedbackKind::Bounce,
        format: "text".into(),
        recipient_id: None,
        original_message_id: None,
        address: Some("gone@example.net".into()),
        status: Some("5.1.1".into()),
        diagnostic: None,
        sender: String::new(),
        raw: raw.as_bytes().to_vec(),
    };
    let first = h.store.record_feedback(report("one")).await.unwrap();
    let second = h.store.record_feedback(report("two")).await.unwrap();
    let all = call(&h.app, Method::GET, "/api/v1/bounces", None).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let items = all.json();
    assert_eq!(items[0]["id"], second.id);
    assert_eq!(items[1]["id"], first.id);
    assert_eq!(items[0]["status"], "5.1.1");
    assert_eq!(items[0]["kept_bytes"], 3);
    assert_eq!(items[0]["message_id"], json!(null));
    let page = call(
        &h.app,
        Method::GET,
        &format!(
            "/api/v1/bounces?unmatched=true&limit=1&before={}",
            second.id
        ),
        None,
    )
    .await
    .json();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], first.id);
    let none = call(
        &h.app,
        Method::GET,
        "/api/v1/bounces?message=01ARZ3NDEKTSV4RRFFQ69G5FAV",
        None,
    )
    .await
    .json();
    assert_eq!(none, json!([]));
    for (query, field) in [
        ("unmatched=maybe", "unmatched"),
        ("before=x", "before"),
        ("limit=0", "limit"),
    ] {
        let reply = call(
            &h.app,
            Method::GET,
            &format!("/api/v1/bounces?{query}"),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(reply.json()["field"], field, "{query}");
    }
    let anonymous = send(&h.app, request(Method::GET, "/api/v1/bounces", None, None)).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}
