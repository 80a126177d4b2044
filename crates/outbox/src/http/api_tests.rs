//! The JSON API through `app(state).oneshot(...)`: tokens, every route, the error shape,
//! idempotency, paging, attachment paths and the body limit. A real SQLite store in a
//! temp dir; nothing is delivered (the engine does not run).

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use outbox_queue::{RecipientState, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::config::units::ByteSize;
use crate::config::{Config, HttpConfig};
use crate::http::{AppState, app};

pub(super) const TOKEN: &str = "api-test-token-0123456789";

pub(super) struct Harness {
    pub(super) app: Router,
    pub(super) store: Arc<dyn Store>,
    pub(super) dir: tempfile::TempDir,
}

pub(super) async fn harness_with(configure: impl FnOnce(&mut Config, &Path)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        database: format!("sqlite://{}", dir.path().join("outbox.db").display()),
        http: HttpConfig {
            tokens: vec![TOKEN.to_string()],
            ..HttpConfig::default()
        },
        ..Config::default()
    };
    configure(&mut config, dir.path());
    let outbox = crate::app::outbox(&config).await.unwrap();
    let metrics = outbox.engine().metrics();
    let store = outbox.store().clone();
    let state = AppState::new(outbox, Arc::new(config), metrics);
    Harness {
        app: app(state),
        store,
        dir,
    }
}

pub(super) async fn harness() -> Harness {
    harness_with(|_, _| {}).await
}

pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) content_type: String,
    pub(super) text: String,
}

impl Reply {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text))
    }

    /// Asserts the error shape and returns `(error, field)`.
    pub(super) fn error(&self, status: StatusCode) -> (String, Option<String>) {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        let body = self.json();
        let error = body["error"]
            .as_str()
            .expect("error is a string")
            .to_string();
        let field = body.get("field").map(|f| f.as_str().unwrap().to_string());
        (error, field)
    }
}

pub(super) fn request(
    method: Method,
    uri: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

pub(super) async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        content_type,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub(super) async fn call(app: &Router, method: Method, uri: &str, body: Option<Value>) -> Reply {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    send(app, request(method, uri, body, Some(TOKEN))).await
}

pub(super) fn spec(subject: &str, to: &str) -> Value {
    json!({"from": "app@example.com", "to": to, "subject": subject, "text": "hello"})
}

pub(super) async fn post(app: &Router, body: Value) -> Reply {
    call(app, Method::POST, "/api/v1/messages", Some(body)).await
}

pub(super) async fn queue(app: &Router, subject: &str, to: &str) -> String {
    let reply = post(app, spec(subject, to)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["status"], "queued");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_route_but_healthz_needs_the_token() {
    // 27 failures from one (test) address: more than the throttle lets through by default.
    let h = harness_with(|config, _| config.http.max_auth_failures = 100).await;
    let id = queue(&h.app, "s", "a@example.net").await;
    let routes = [
        (Method::POST, "/api/v1/messages".to_string()),
        (Method::GET, "/api/v1/messages".to_string()),
        (Method::POST, "/api/v1/messages/batch".to_string()),
        (Method::GET, format!("/api/v1/messages/{id}")),
        (Method::DELETE, format!("/api/v1/messages/{id}")),
        (Method::POST, format!("/api/v1/messages/{id}/retry")),
        (Method::GET, "/api/v1/openapi.json".to_string()),
        (Method::GET, "/metrics".to_string()),
        (Method::GET, "/api/v1/unknown".to_string()),
    ];
    for (method, uri) in routes {
        for token in [None, Some("wrong-token"), Some("")] {
            let body = (method == Method::POST).then(|| b"{}".to_vec());
            let reply = send(&h.app, request(method.clone(), &uri, body, token)).await;
            let (error, _) = reply.error(StatusCode::UNAUTHORIZED);
            assert!(error.contains("token"), "{method} {uri}: {error}");
        }
    }
    // Nothing was removed by the refused DELETE.
    assert_eq!(h.store.status(&id).await.unwrap().as_str(), "queued");
    let reply = send(&h.app, request(Method::GET, "/healthz", None, None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text, "ok\n");
}

#[tokio::test]
async fn post_get_delete_retry() {
    let h = harness().await;
    let id = queue(&h.app, "Welcome", "Ann <ann@example.net>, bob@example.org").await;
    let reply = call(&h.app, Method::GET, &format!("/api/v1/messages/{id}"), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"id": id, "status": "queued", "recipients": [
            {"address": "ann@example.net", "state": "queued", "attempts": 0, "last_reply": null},
            {"address": "bob@example.org", "state": "queued", "attempts": 0, "last_reply": null},
        ]})
    );
    // The same object as `status --json`.
    let detail = h.store.detail(&id).await.unwrap();
    assert_eq!(reply.json(), serde_json::to_value(&detail).unwrap());

    let reply = call(
        &h.app,
        Method::POST,
        &format!("/api/v1/messages/{id}/retry"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["id"], id.as_str());

    let reply = call(
        &h.app,
        Method::DELETE,
        &format!("/api/v1/messages/{id}"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"id": id, "recipients": 2, "status": "error"})
    );
    let detail = h.store.detail(&id).await.unwrap();
    assert!(
        detail
            .recipients
            .iter()
            .all(|r| r.state == RecipientState::Removed)
    );
    let reply = call(&h.app, Method::GET, &format!("/api/v1/messages/{id}"), None).await;
    assert_eq!(reply.json()["status"], "error");
}

#[tokio::test]
async fn unknown_ids_are_404_json() {
    let h = harness().await;
    let missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for (method, uri) in [
        (Method::GET, format!("/api/v1/messages/{missing}")),
        (Method::DELETE, format!("/api/v1/messages/{missing}")),
        (Method::POST, format!("/api/v1/messages/{missing}/retry")),
        (Method::GET, "/api/v1/messages/not-an-id".to_string()),
        (Method::GET, "/api/v1/nothing/here".to_string()),
        (Method::POST, format!("/api/v1/messages/{missing}/resend")),
    ] {
        let reply = call(&h.app, method.clone(), &uri, None).await;
        let (error, field) = reply.error(StatusCode::NOT_FOUND);
        assert!(
            error.contains("no message with id") || error.contains("no such API route"),
            "{method} {uri}: {error}"
        );
        assert_eq!(field, None);
    }
}

#[tokio::test]
async fn list_filters_and_pages() {
    let h = harness().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(queue(&h.app, &format!("Report {n}"), &format!("u{n}@example.net")).await);
    }
    let removed = &ids[1];
    call(
        &h.app,
        Method::DELETE,
        &format!("/api/v1/messages/{removed}"),
        None,
    )
    .await;

    // Newest first, two at a time, only queued messages.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/messages?status=queued&limit=2".to_string();
    loop {
        let reply = call(&h.app, Method::GET, &uri, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let page = reply.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            assert_eq!(item["status"], "queued");
            for key in [
                "id",
                "subject",
                "priority",
                "created_at",
                "send_at",
                "recipients",
            ] {
                assert!(item.get(key).is_some(), "{key} missing in {item}");
            }
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/messages?status=queued&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = ids
        .iter()
        .rev()
        .filter(|id| *id != removed)
        .cloned()
        .collect();
    assert_eq!(seen, expected);

    let reply = call(&h.app, Method::GET, "/api/v1/messages?q=report%203", None).await;
    let items = reply.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], ids[3].as_str());
    let reply = call(
        &h.app,
        Method::GET,
        "/api/v1/messages?domain=nowhere.test",
        None,
    )
    .await;
    assert_eq!(reply.json()["items"], json!([]));

    for (query, field) in [
        ("status=lost", "status"),
        ("priority=urgent", "priority"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("cursor=nonsense", "cursor"),
    ] {
        let reply = call(
            &h.app,
            Method::GET,
            &format!("/api/v1/messages?{query}"),
            None,
        )
        .await;
        let (_, got) = reply.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(got.as_deref(), Some(field), "{query}");
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_answers_the_first_id() {
    let h = harness().await;
    let post_keyed = |key: &'static str, subject: &'static str| {
        let app = h.app.clone();
        async move {
            let mut req = request(
                Method::POST,
                "/api/v1/messages",
                Some(serde_json::to_vec(&spec(subject, "a@example.net")).unwrap()),
                Some(TOKEN),
            );
            req.headers_mut()
                .insert("Idempotency-Key", key.parse().unwrap());
            send(&app, req).await
        }
    };
    let first = post_keyed("order-42", "first").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let again = post_keyed("order-42", "first").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.json()["status"], "queued");
    // The same key with another body is a conflict that names the header.
    let changed = post_keyed("order-42", "second").await;
    let (error, field) = changed.error(StatusCode::CONFLICT);
    assert_eq!(field.as_deref(), Some("Idempotency-Key"), "{error}");
    let other = post_keyed("order-43", "third").await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_ne!(other.json()["id"], first.json()["id"]);
    let page = call(&h.app, Method::GET, "/api/v1/messages", None)
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn batch_is_all_or_nothing() {
    let h = harness().await;
    let reply = call(
        &h.app,
        Method::POST,
        "/api/v1/messages/batch",
        Some(json!([
            spec("one", "a@example.net"),
            spec("two", "b@example.net")
        ])),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let items = reply.json();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(item["status"], "queued");
        let id = item["id"].as_str().unwrap();
        assert_eq!(h.store.status(id).await.unwrap().as_str(), "queued");
    }

    let mut bad = spec("three", "c@example.net");
    bad["subject"] = json!("");
    let reply = call(
        &h.app,
        Method::POST,
        "/api/v1/messages/batch",
        Some(json!([spec("ok", "d@example.net"), bad])),
    )
    .await;
    let (_, field) = reply.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("[1].subject"));
    let page = call(&h.app, Method::GET, "/api/v1/messages", None)
        .await
        .json();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        2,
        "nothing new queued"
    );
}

#[tokio::test]
async fn bad_input_gets_the_json_error_shape() {
    let h = harness().await;
    let raw = |body: &str| {
        request(
            Method::POST,
            "/api/v1/messages",
            Some(body.as_bytes().to_vec()),
            Some(TOKEN),
        )
    };
    let reply = send(&h.app, raw("{\"from\": ")).await;
    let (error, _) = reply.error(StatusCode::BAD_REQUEST);
    assert!(error.contains("malformed JSON"), "{error}");

    let mut typo = spec("s", "a@example.net");
    typo["subjet"] = json!("x");
    let (error, field) = post(&h.app, typo)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error.contains("unknown field `subjet`"), "{error}");
    assert_eq!(field.as_deref(), Some("subjet"));

    let (_, field) = post(
        &h.app,
        json!({"from": "app@example.com", "to": "a@example.net", "text": "t"}),
    )
    .await
    .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("subject"));

    let (error, field) = post(&h.app, spec("s", "not an address"))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("to"), "{error}");

    let (_, field) = post(&h.app, json!({"from": 5}))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("from"));

    let mut header = spec("s", "a@example.net");
    header["headers"] = json!([["X-Evil", "a\r\nBcc: victim@example.net"]]);
    let (_, field) = post(&h.app, header)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field.is_some());

    let (_, field) = call(
        &h.app,
        Method::POST,
        "/api/v1/messages/batch",
        Some(json!([])),
    )
    .await
    .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("[]"));

    let mut plain = raw("{}");
    plain
        .headers_mut()
        .insert(CONTENT_TYPE, "text/plain".parse().unwrap());
    send(&h.app, plain)
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(h.store.counts().await.unwrap().queued, 0);
}

#[tokio::test]
async fn path_attachments_need_the_attachment_dir() {
    let h = harness().await;
    std::fs::write(h.dir.path().join("a.txt"), "attached").unwrap();
    let mut with_path = spec("s", "a@example.net");
    with_path["attachments"] = json!([{"path": h.dir.path().join("a.txt")}]);
    let (error, field) = post(&h.app, with_path)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field.as_deref(), Some("attachments"));
    assert!(error.contains("attachment_dir"), "{error}");

    let h = harness_with(|config, dir| {
        let files = dir.join("files");
        std::fs::create_dir(&files).unwrap();
        std::fs::write(files.join("a.txt"), "attached").unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), files.join("escape.txt")).unwrap();
        config.http.attachment_dir = Some(files);
    })
    .await;
    let files = h.dir.path().join("files");
    let attach = |path: &Path, field: &str| {
        let mut body = spec("s", "a@example.net");
        body["html"] = json!("<img src=\"x\">");
        body[field] = json!([{"path": path}]);
        body
    };
    for ok in [Path::new("a.txt").to_path_buf(), files.join("a.txt")] {
        let reply = post(&h.app, attach(&ok, "attachments")).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{ok:?}: {}", reply.text);
    }
    for bad in [
        Path::new("../secret.txt").to_path_buf(),
        files.join("../secret.txt"),
        Path::new("escape.txt").to_path_buf(),
        h.dir.path().join("secret.txt"),
    ] {
        for field in ["attachments", "html_images"] {
            let (error, got) = post(&h.app, attach(&bad, field))
                .await
                .error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(got, Some(format!("{field}[0].path")), "{bad:?}: {error}");
        }
    }
    assert_eq!(h.store.counts().await.unwrap().queued, 2);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let h = harness_with(|config, _| config.delivery.max_message_size = ByteSize(10_000)).await;
    let limit = super::body_limit(10_000);
    assert_eq!(limit, 14_000 + 65_536);
    let mut body = spec("s", "a@example.net");
    body["text"] = json!("x".repeat(limit));
    let (_, _) = post(&h.app, body)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);

    // Under the HTTP limit but over the queue's: 413 too, naming the limit.
    let mut body = spec("s", "a@example.net");
    body["text"] = json!("y ".repeat(20_000));
    let (error, _) = post(&h.app, body)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error.contains("queue limit"), "{error}");
    assert_eq!(h.store.counts().await.unwrap().queued, 0);
}

#[tokio::test]
async fn metrics_and_openapi() {
    let h = harness().await;
    queue(&h.app, "s", "a@example.net").await;
    let reply = call(&h.app, Method::GET, "/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type.starts_with("text/plain"));
    for line in [
        "outbox_queue_messages{status=\"queued\"} 1",
        "outbox_queue_messages{status=\"sent\"} 0",
        "outbox_messages_enqueued_total 1",
        "outbox_recipients_sent_total 0",
        "outbox_connections_open 0",
        "outbox_delivery_latency_seconds_bucket{le=\"+Inf\"} 0",
    ] {
        assert!(
            reply.text.lines().any(|l| l == line),
            "{line}:\n{}",
            reply.text
        );
    }
    let reply = call(&h.app, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/messages"]["post"].is_object());
}

#[tokio::test]
async fn immediate_sends_at_once_and_stores_nothing() {
    use outbox_smtp::server::{MemorySink, Server};
    let sink = Arc::new(MemorySink::new());
    let relay = Server::builder()
        .sink(sink.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let address = relay.local_addr();
    let h = harness_with(|config, _| {
        config.delivery.relay = Some(format!("smtp://{address}?starttls=off"));
    })
    .await;
    let mut body = spec("Now", "ann@example.net, bob@example.org");
    body["immediate"] = json!(true);
    let reply = post(&h.app, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let answer = reply.json();
    assert_eq!(answer["status"], "sent", "{answer}");
    let recipients = answer["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 2);
    for (recipient, address) in recipients
        .iter()
        .zip(["ann@example.net", "bob@example.org"])
    {
        assert_eq!(recipient["address"], address);
        assert_eq!(recipient["accepted"], true);
        assert!(
            recipient["reply"].as_str().unwrap().starts_with("250"),
            "{recipient}"
        );
    }
    assert_eq!(sink.len(), 1);
    assert_eq!(h.store.counts().await.unwrap().queued, 0);
    relay.shutdown().await;
}
