//! What a token holder (or someone guessing tokens) cannot do over HTTP: choose a relay,
//! run a program, reuse another token's idempotency key, change a request under a known
//! key, guess tokens quickly, open unbounded immediate connections, forge trace headers,
//! schedule far ahead. Through `app(state).oneshot(...)`, a real SQLite store.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::api_tests::{Harness, TOKEN, call, harness, harness_with, post, request, send, spec};

const OTHER_TOKEN: &str = "second-api-token-abcdefghij";

async fn queued(h: &Harness) -> u64 {
    h.store.counts().await.unwrap().queued
}

async fn post_as(
    h: &Harness,
    token: &str,
    uri: &str,
    body: &Value,
    key: Option<&str>,
) -> super::api_tests::Reply {
    let mut req = request(
        Method::POST,
        uri,
        Some(serde_json::to_vec(body).unwrap()),
        Some(token),
    );
    if let Some(key) = key {
        req.headers_mut()
            .insert("Idempotency-Key", key.parse().unwrap());
    }
    send(&h.app, req).await
}

#[tokio::test]
async fn a_message_cannot_choose_its_relay_unless_allowed() {
    let h = harness().await;
    let marker = h.dir.path().join("ran");
    let program = format!("program:/usr/bin/touch {}", marker.display());
    for relay in ["smtp://127.0.0.1:2525", program.as_str()] {
        let mut single = spec("s", "a@example.net");
        single["relay"] = json!(relay);
        let (error, field) = post(&h.app, single.clone())
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("relay"), "{error}");
        assert!(
            !error.contains("/usr/bin/touch"),
            "the command is not echoed: {error}"
        );

        single["immediate"] = json!(true);
        let (_, field) = post(&h.app, single)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("relay"));

        let mut second = spec("t", "b@example.net");
        second["relay"] = json!(relay);
        let batch = json!([spec("ok", "c@example.net"), second]);
        let (_, field) = call(&h.app, Method::POST, "/api/v1/messages/batch", Some(batch))
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("[1].relay"));
    }
    assert_eq!(queued(&h).await, 0, "nothing stored");
    assert!(!marker.exists(), "no program ran");
}

#[tokio::test]
async fn program_relays_are_refused_even_with_allow_relay() {
    let h = harness_with(|config, _| config.http.allow_relay = true).await;
    let marker = h.dir.path().join("ran");
    for immediate in [false, true] {
        let mut body = spec("s", "a@example.net");
        body["relay"] = json!(format!("program:/usr/bin/touch {}", marker.display()));
        body["immediate"] = json!(immediate);
        let (error, field) = post(&h.app, body)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("relay"));
        assert!(error.contains("never accepted over HTTP"), "{error}");
    }
    assert_eq!(queued(&h).await, 0);
    assert!(!marker.exists(), "no program ran");

    // What allow_relay grants: an SMTP relay of the client's choosing.
    let mut body = spec("s", "a@example.net");
    body["relay"] = json!("smtp://127.0.0.1:2525?starttls=off");
    let reply = post(&h.app, body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_token() {
    let h = harness_with(|config, _| config.http.tokens.push(OTHER_TOKEN.into())).await;
    let body = spec("keyed", "a@example.net");
    let uri = "/api/v1/messages";
    let a = post_as(&h, TOKEN, uri, &body, Some("k-7")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let b = post_as(&h, OTHER_TOKEN, uri, &body, Some("k-7")).await;
    assert_eq!(
        b.status,
        StatusCode::ACCEPTED,
        "B gets its own message: {}",
        b.text
    );
    assert_ne!(b.json()["id"], a.json()["id"]);
    let a_again = post_as(&h, TOKEN, uri, &body, Some("k-7")).await;
    assert_eq!(a_again.status, StatusCode::OK);
    assert_eq!(a_again.json()["id"], a.json()["id"]);
    assert_eq!(queued(&h).await, 2);
}

#[tokio::test]
async fn batch_honours_the_idempotency_key() {
    let h = harness().await;
    let uri = "/api/v1/messages/batch";
    let batch = json!([spec("one", "a@example.net"), spec("two", "b@example.net")]);
    let first = post_as(&h, TOKEN, uri, &batch, Some("batch-1")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let again = post_as(&h, TOKEN, uri, &batch, Some("batch-1")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json(), first.json(), "the same ids and statuses");
    assert_eq!(queued(&h).await, 2);

    let changed = json!([spec("one", "a@example.net"), spec("2", "b@example.net")]);
    let (_, field) = post_as(&h, TOKEN, uri, &changed, Some("batch-1"))
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(field.as_deref(), Some("Idempotency-Key"));
    // A single message under the batch's key is another request too.
    let (_, field) = post_as(
        &h,
        TOKEN,
        "/api/v1/messages",
        &spec("one", "a@example.net"),
        Some("batch-1"),
    )
    .await
    .error(StatusCode::CONFLICT);
    assert_eq!(field.as_deref(), Some("Idempotency-Key"));
    assert_eq!(queued(&h).await, 2, "nothing new stored");
}

#[tokio::test]
async fn wrong_methods_get_a_json_405() {
    let h = harness().await;
    for (method, uri) in [
        (Method::PUT, "/api/v1/messages"),
        (Method::DELETE, "/api/v1/messages/batch"),
        (Method::POST, "/healthz"),
        (Method::PUT, "/login"),
    ] {
        let response = {
            use tower::ServiceExt;
            h.app
                .clone()
                .oneshot(request(method.clone(), uri, None, Some(TOKEN)))
                .await
                .unwrap()
        };
        assert!(response.headers().contains_key(ALLOW), "{method} {uri}");
        let reply = send(&h.app, request(method.clone(), uri, None, Some(TOKEN))).await;
        let (error, _) = reply.error(StatusCode::METHOD_NOT_ALLOWED);
        assert!(error.contains(method.as_str()), "{error}");
    }
}

#[tokio::test]
async fn a_json_array_is_not_a_message() {
    let h = harness().await;
    let positional = json!([
        "app@example.com",
        ["a@example.net"],
        [],
        [],
        "subject",
        "text"
    ]);
    let (error, _) = post(&h.app, positional.clone())
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error.contains("JSON object"), "{error}");
    let batch = json!([spec("ok", "b@example.net"), positional]);
    let (_, field) = call(&h.app, Method::POST, "/api/v1/messages/batch", Some(batch))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("[1]"));
    assert_eq!(queued(&h).await, 0);
}

#[tokio::test]
async fn json_is_accepted_without_a_content_type_and_as_curl_d_sends_it() {
    let h = harness().await;
    for content_type in [None, Some("application/x-www-form-urlencoded")] {
        let mut req = request(
            Method::POST,
            "/api/v1/messages",
            Some(serde_json::to_vec(&spec("curl", "a@example.net")).unwrap()),
            Some(TOKEN),
        );
        req.headers_mut().remove(CONTENT_TYPE);
        if let Some(value) = content_type {
            req.headers_mut()
                .insert(CONTENT_TYPE, value.parse().unwrap());
        }
        let reply = send(&h.app, req).await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "{content_type:?}: {}",
            reply.text
        );
    }
}

#[tokio::test]
async fn trace_headers_far_schedules_and_unknown_priorities_are_refused() {
    let h = harness().await;
    let mut forged = spec("s", "a@example.net");
    forged["headers"] = json!([["Received", "from trusted.example by mx"]]);
    let (_, field) = post(&h.app, forged)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("headers"));
    let mut far = spec("s", "a@example.net");
    far["send_at"] = json!("9999-01-01T00:00:00Z");
    let (_, field) = post(&h.app, far)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("send_at"));
    let mut urgent = spec("s", "a@example.net");
    urgent["priority"] = json!("urgent");
    let (_, field) = post(&h.app, urgent)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("priority"));
    assert_eq!(queued(&h).await, 0);
    let mut past = spec("s", "a@example.net");
    past["send_at"] = json!("2001-01-01T00:00:00Z");
    assert_eq!(post(&h.app, past).await.status, StatusCode::ACCEPTED);
}

fn from(
    address: &str,
    mut req: axum::http::Request<axum::body::Body>,
) -> axum::http::Request<axum::body::Body> {
    let address: SocketAddr = address.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(address));
    req
}

#[tokio::test]
async fn failed_tokens_are_throttled_per_client_address() {
    let h = harness_with(|config, _| config.http.max_auth_failures = 3).await;
    let list = |token: &str, client: &str| {
        from(
            client,
            request(Method::GET, "/api/v1/messages", None, Some(token)),
        )
    };
    for _ in 0..3 {
        let reply = send(&h.app, list("wrong-token-guess", "192.0.2.7:4000")).await;
        reply.error(StatusCode::UNAUTHORIZED);
    }
    let response = {
        use tower::ServiceExt;
        h.app
            .clone()
            .oneshot(list(TOKEN, "192.0.2.7:4001"))
            .await
            .unwrap()
    };
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even a right token waits"
    );
    let wait: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    let reply = send(&h.app, list(TOKEN, "192.0.2.7:4002")).await;
    let (error, _) = reply.error(StatusCode::TOO_MANY_REQUESTS);
    assert!(error.contains("try again"), "{error}");
    // Another address is served.
    let reply = send(&h.app, list(TOKEN, "192.0.2.8:4000")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn failed_admin_logins_are_throttled_per_client_address() {
    let h = harness_with(|config, _| config.http.max_auth_failures = 2).await;
    let login = |token: &str, client: &str| {
        let mut req = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/login")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(format!("token={token}")))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(client.parse::<SocketAddr>().unwrap()));
        req
    };
    for _ in 0..2 {
        assert_eq!(
            send(&h.app, login("guess", "198.51.100.1:1")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let blocked = send(&h.app, login(TOKEN, "198.51.100.1:2")).await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        blocked.text
    );
    assert!(!blocked.text.contains(TOKEN));
    // The admin page's Bearer header counts against the same address.
    let page = from(
        "198.51.100.1:3",
        request(Method::GET, "/", None, Some(TOKEN)),
    );
    assert_eq!(
        send(&h.app, page).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let elsewhere = send(&h.app, login(TOKEN, "198.51.100.2:1")).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::SEE_OTHER,
        "{}",
        elsewhere.text
    );
}

/// `[http] throttle_exempt`: a shared address (a reverse proxy, local apps on 127.0.0.1)
/// is never blocked, so one client's bad token does not lock out the others; addresses
/// outside it still are.
#[tokio::test]
async fn throttle_exempt_addresses_are_never_blocked() {
    let h = harness_with(|config, _| {
        config.http.max_auth_failures = 2;
        config.http.throttle_exempt = vec!["127.0.0.0/8".to_owned()];
    })
    .await;
    let list = |token: &str, client: &str| {
        from(
            client,
            request(Method::GET, "/api/v1/messages", None, Some(token)),
        )
    };
    // Past the limit, the exempt address still gets 401 (its token checked), not 429.
    for (client, failures) in [("127.0.0.1:5000", 5), ("192.0.2.9:5000", 2)] {
        for _ in 0..failures {
            let reply = send(&h.app, list("wrong-token-guess", client)).await;
            reply.error(StatusCode::UNAUTHORIZED);
        }
    }
    let reply = send(&h.app, list(TOKEN, "127.0.0.1:5001")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = send(&h.app, list(TOKEN, "192.0.2.9:5001")).await;
    reply.error(StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn immediate_sends_are_bounded_by_delivery_max_connections() {
    // A relay that accepts and never greets: the first immediate send holds its slot.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    let h = harness_with(|config, _| {
        config.delivery.relay = Some(format!("smtp://{address}?starttls=off"));
        config.delivery.max_connections = 1;
    })
    .await;
    let mut body = spec("Now", "ann@example.net");
    body["immediate"] = json!(true);
    let app = h.app.clone();
    let first_body = body.clone();
    let first = tokio::spawn(async move { post(&app, first_body).await });
    let (_held, _) = silent.accept().await.unwrap();
    let reply = post(&h.app, body).await;
    let (error, _) = reply.error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(error.contains("max_connections"), "{error}");
    first.abort();
}

#[test]
fn files_are_read_up_to_the_queue_limit_or_for_immediate_the_larger_default() {
    let mut config = crate::config::Config::default();
    config.delivery.max_message_size.0 = 4096;
    let limit = |immediate| super::api::http_compose_options(&config, immediate).max_file_size;
    assert_eq!(limit(false), Some(4096));
    assert_eq!(limit(true), Some(outbox_mime::DEFAULT_MAX_FILE_SIZE));
    let big = outbox_mime::DEFAULT_MAX_FILE_SIZE * 2;
    config.delivery.max_message_size.0 = big;
    let limit = |immediate| super::api::http_compose_options(&config, immediate).max_file_size;
    assert_eq!(limit(false), Some(big));
    assert_eq!(limit(true), Some(big));
}

#[tokio::test]
async fn path_attachments_over_max_message_size_are_refused_before_reading() {
    let h = harness_with(|config, dir| {
        config.http.attachment_dir = Some(dir.to_path_buf());
        config.delivery.max_message_size.0 = 4096;
        // Where an immediate send would go if the file got through: nothing listens.
        config.delivery.relay = Some("127.0.0.1:1".into());
    })
    .await;
    // Sparse files: no disk used. One just over the limit; one of 1 TiB, which could not
    // be read within the test, so a prompt answer shows it was refused from its size.
    let just_over = h.dir.path().join("just-over.bin");
    std::fs::File::create(&just_over)
        .unwrap()
        .set_len(4097)
        .unwrap();
    let huge = h.dir.path().join("huge.bin");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    for path in [&just_over, &huge] {
        for field in ["attachments", "html_images"] {
            for immediate in [false, true] {
                let mut body = spec("big", "a@example.net");
                body["html"] = json!("<p>see</p>");
                body[field] = json!([{"path": path}]);
                body["immediate"] = json!(immediate);
                let (error, at) = post(&h.app, body.clone())
                    .await
                    .error(StatusCode::PAYLOAD_TOO_LARGE);
                // The field names the item that went over the limit.
                let item = format!("{field}[0].path");
                assert_eq!(at.as_deref(), Some(item.as_str()), "{error}");
                assert!(error.contains("max_message_size"), "{error}");
                if !immediate {
                    let batch = json!([spec("ok", "b@example.net"), body]);
                    let (_, at) = call(&h.app, Method::POST, "/api/v1/messages/batch", Some(batch))
                        .await
                        .error(StatusCode::PAYLOAD_TOO_LARGE);
                    assert_eq!(at, Some(format!("[1].{item}")));
                }
            }
        }
    }
    let counts = h.store.counts().await.unwrap();
    assert_eq!(
        (counts.queued, counts.sent, counts.error),
        (0, 0, 0),
        "nothing stored"
    );
}
