//! `/u/{token}` through `app(state).oneshot(...)`: one-click POST without an API token
//! (idempotent), the GET page that changes nothing, bad and tampered tokens, bodies that are
//! not RFC 8058's, a server without `[unsubscribe]`, and `list_unsubscribe` over the API.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, Request, StatusCode};
use outbox_queue::{SuppressionFilter, Unsubscribe};
use serde_json::json;

use super::api_tests::{Harness, harness, harness_with, post, send};
use crate::config::UnsubscribeConfig;

const SECRET: &str = "unsubscribe-test-secret-0123456789";

async fn configured() -> Harness {
    harness_with(|config, _| {
        config.unsubscribe = UnsubscribeConfig {
            base_url: Some("https://mail.example.com".into()),
            secret: Some(SECRET.into()),
            mailto: None,
        };
    })
    .await
}

fn token(address: &str, list: &str) -> String {
    Unsubscribe::new("https://mail.example.com", SECRET.as_bytes(), None)
        .unwrap()
        .token(address, list, Some("01JD2W6Q0R9N6X4Y7Z8A1B2C3D"))
}

fn one_click(uri: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, content_type)
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::builder().uri(uri).body(Body::empty()).unwrap()
}

async fn suppressed(h: &Harness) -> Vec<(String, Option<String>, String, Option<String>)> {
    h.store
        .suppressions_list(SuppressionFilter::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            (
                s.address,
                s.list,
                s.reason.as_str().to_string(),
                s.message_id,
            )
        })
        .collect()
}

#[tokio::test]
async fn one_click_post_suppresses_for_the_list_and_is_idempotent() {
    let h = configured().await;
    let uri = format!("/u/{}", token("Ann@Example.org", "Weekly"));
    // As mail clients send it (RFC 8058 §3.2), with no Authorization header.
    let form = "application/x-www-form-urlencoded";
    for _ in 0..2 {
        let reply = send(&h.app, one_click(&uri, form, "List-Unsubscribe=One-Click")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(
            reply.text.contains("You are unsubscribed"),
            "{}",
            reply.text
        );
    }
    assert_eq!(
        suppressed(&h).await,
        vec![(
            "ann@example.org".to_string(),
            Some("weekly".to_string()),
            "unsubscribed".to_string(),
            Some("01JD2W6Q0R9N6X4Y7Z8A1B2C3D".to_string()),
        )]
    );
}

#[tokio::test]
async fn the_get_page_asks_and_changes_nothing() {
    let h = configured().await;
    let token = token("ann@example.org", "weekly");
    let reply = send(&h.app, get(&format!("/u/{token}"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.content_type.starts_with("text/html"),
        "{}",
        reply.content_type
    );
    assert!(reply.text.contains("Unsubscribe?"), "{}", reply.text);
    assert!(reply.text.contains("ann@example.org"));
    assert!(
        reply.text.contains(&format!("action=\"/u/{token}\"")),
        "{}",
        reply.text
    );
    assert!(suppressed(&h).await.is_empty(), "a GET never unsubscribes");
}

#[tokio::test]
async fn bad_tokens_and_bodies_change_nothing() {
    let h = configured().await;
    let good = token("ann@example.org", "weekly");
    let other = Unsubscribe::new(
        "https://mail.example.com",
        b"another secret, long enough",
        None,
    )
    .unwrap()
    .token("ann@example.org", "weekly", None);
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let form = "application/x-www-form-urlencoded";
    for bad in [
        other.as_str(),
        flipped.as_str(),
        "nothing",
        "a.b",
        &"x".repeat(3000),
    ] {
        let reply = send(
            &h.app,
            one_click(&format!("/u/{bad}"), form, "List-Unsubscribe=One-Click"),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text
        );
        assert!(reply.text.contains("not valid"), "{}", reply.text);
        let page = send(&h.app, get(&format!("/u/{bad}"))).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
    }
    // A good token without RFC 8058's body.
    let uri = format!("/u/{good}");
    for body in ["", "List-Unsubscribe=Yes", "unsubscribe"] {
        let reply = send(&h.app, one_click(&uri, form, body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body:?}");
    }
    // A body over the bound.
    let big = format!("List-Unsubscribe=One-Click&pad={}", "x".repeat(8192));
    let reply = send(&h.app, one_click(&uri, form, &big)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(suppressed(&h).await.is_empty());
    // Only GET and POST.
    let reply = send(
        &h.app,
        Request::builder()
            .method(Method::DELETE)
            .uri(&uri)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn without_unsubscribe_config_the_links_are_not_found_and_the_flag_is_refused() {
    let h = harness().await;
    let uri = format!("/u/{}", token("ann@example.org", "weekly"));
    let reply = send(
        &h.app,
        one_click(
            &uri,
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let mut spec = super::api_tests::spec("s", "ann@example.org");
    spec["list_unsubscribe"] = json!(true);
    let reply = post(&h.app, spec.clone()).await;
    let (error, field) = reply.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("list_unsubscribe"));
    assert!(error.contains("[unsubscribe]"), "{error}");
    spec["immediate"] = json!(true);
    let reply = post(&h.app, spec).await;
    reply.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(h.store.counts().await.unwrap().queued, 0, "nothing stored");
}

#[tokio::test]
async fn list_unsubscribe_over_the_api_is_stored_with_its_list() {
    let h = configured().await;
    let mut spec = super::api_tests::spec("s", "ann@example.org");
    spec["list_unsubscribe"] = json!(true);
    spec["list"] = json!("Weekly");
    let reply = post(&h.app, spec.clone()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let id = reply.json()["id"].as_str().unwrap().to_string();
    let body = h.store.message_body(&id).await.unwrap();
    assert_eq!(body.unsubscribe_list.as_deref(), Some("weekly"));
    // The header is Outbox's to write.
    spec["headers"] = json!([["List-Unsubscribe", "<https://elsewhere.test/u>"]]);
    let (error, field) = post(&h.app, spec)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("headers"));
    assert!(error.contains("list_unsubscribe"), "{error}");
}
