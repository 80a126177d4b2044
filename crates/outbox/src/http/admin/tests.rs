//! The admin page through `app(state).oneshot(...)`: login, sessions, CSRF, the queue
//! table, one message, actions, escaping and the preview sandbox. A real SQLite store in
//! a temp dir; nothing is delivered (the engine does not run).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use outbox_queue::{
    Delivery, MessageStatus, NewMessage, NewRecipient, Outcome, Priority, RecipientState, Store,
    StoredSuspension,
};
use time::OffsetDateTime;
use tower::ServiceExt;

use crate::config::{Config, HttpConfig};
use crate::http::{AppState, app};

const TOKEN: &str = "admin-test-token-0123456789";

struct Harness {
    app: Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database: format!("sqlite://{}", dir.path().join("outbox.db").display()),
        http: HttpConfig {
            tokens: vec![TOKEN.to_string()],
            ..HttpConfig::default()
        },
        ..Config::default()
    };
    let outbox = crate::app::outbox(&config).await.unwrap();
    let metrics = outbox.engine().metrics();
    let store = outbox.store().clone();
    let state = AppState::new(outbox, Arc::new(config), metrics);
    Harness {
        app: app(state),
        store,
        _dir: dir,
    }
}

fn mime(subject: &str, html: &str) -> Vec<u8> {
    format!(
        "From: sender@example.com\r\nTo: rcpt@example.org\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text\r\n\
         --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b--\r\n"
    )
    .into_bytes()
}

async fn enqueue(store: &Arc<dyn Store>, subject: &str, to: &str, html: &str) -> String {
    store
        .enqueue({
            let mut new_message = NewMessage::default();
            new_message.data = mime(subject, html);
            new_message.envelope_from = "sender@example.com".into();
            new_message.recipients = vec![NewRecipient::new(to)];
            new_message.subject = subject.into();
            new_message.priority = Priority::High;
            new_message
        })
        .await
        .unwrap()
        .id
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &axum::http::HeaderValue| value.to_str().unwrap().to_string())
    };
    let (status, location, cookie) = (response.status(), header(LOCATION), header(SET_COOKIE));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        location,
        cookie,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut request = Request::post(path).header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.body(Body::from(form.to_string())).unwrap()
}

/// Logs in and returns the `name=value` cookie and the page's CSRF token.
async fn login(app: &Router) -> (String, String) {
    let reply = send(app, post("/login", None, &format!("token={TOKEN}"))).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location.as_deref(), Some("/"));
    let set_cookie = reply.cookie.expect("a session cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let page = send(app, get("/", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    (cookie, csrf_in(&page.body))
}

fn csrf_in(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a CSRF field") + marker.len();
    body[start..].split('"').next().unwrap().to_string()
}

async fn state_of(store: &Arc<dyn Store>, id: &str) -> RecipientState {
    store.detail(id).await.unwrap().recipients[0].state
}

#[tokio::test]
async fn every_page_redirects_to_login_without_a_session() {
    let h = harness().await;
    let id = enqueue(&h.store, "Hello", "a@example.org", "<p>x</p>").await;
    for path in ["/", &format!("/messages/{id}"), "/?status=queued"] {
        let reply = send(&h.app, get(path, None)).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.location.as_deref(), Some("/login"), "{path}");
    }
    let reply = send(&h.app, get("/", Some("outbox_session=forged"))).await;
    assert_eq!(reply.location.as_deref(), Some("/login"));
    let reply = send(&h.app, post(&format!("/messages/{id}/remove"), None, "")).await;
    assert_eq!(reply.location.as_deref(), Some("/login"));
    assert_eq!(state_of(&h.store, &id).await, RecipientState::Queued);

    let login = send(&h.app, get("/login", None)).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("name=\"token\""));
}

#[tokio::test]
async fn login_checks_the_token_and_sets_a_safe_cookie() {
    let h = harness().await;
    let wrong = send(&h.app, post("/login", None, "token=nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie.is_none());
    assert!(wrong.body.contains("not accepted"));

    let right = send(&h.app, post("/login", None, &format!("token={TOKEN}"))).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let cookie = right.cookie.unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(TOKEN), "the cookie must not be the token");
    let session = cookie.split(';').next().unwrap();
    assert_eq!(
        send(&h.app, get("/", Some(session))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn logout_ends_the_session() {
    let h = harness().await;
    let (cookie, csrf) = login(&h.app).await;
    let refused = send(&h.app, post("/logout", Some(&cookie), "")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = send(
        &h.app,
        post("/logout", Some(&cookie), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
    let after = send(&h.app, get("/", Some(&cookie))).await;
    assert_eq!(after.location.as_deref(), Some("/login"));
}

#[tokio::test]
async fn bearer_header_works_for_scripts() {
    let h = harness().await;
    let id = enqueue(&h.store, "Scripted", "a@example.org", "<p>x</p>").await;
    let with = |token: &str| {
        Request::get("/")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let page = send(&h.app, with(TOKEN)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&id));
    assert_eq!(
        send(&h.app, with("wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let remove = Request::post(format!("/messages/{id}/remove"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&h.app, remove).await.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&h.store, &id).await, RecipientState::Removed);
}

#[tokio::test]
async fn the_table_lists_queued_messages_newest_first_with_counts() {
    let h = harness().await;
    let older = enqueue(&h.store, "First letter", "a@example.org", "<p>1</p>").await;
    let newer = enqueue(&h.store, "Second letter", "b@example.net", "<p>2</p>").await;
    let (cookie, _) = login(&h.app).await;
    let page = send(&h.app, get("/", Some(&cookie))).await;
    let (at_newer, at_older) = (
        page.body.find(&newer).unwrap(),
        page.body.find(&older).unwrap(),
    );
    assert!(at_newer < at_older, "newest first");
    assert!(page.body.contains("First letter") && page.body.contains("sender@example.com"));
    assert!(page.body.contains("data-status=\"queued\""));
    assert!(
        page.body.contains("<b>2</b><span>queued</span>"),
        "counts at the top"
    );

    let filtered = send(&h.app, get("/?domain=example.net", Some(&cookie))).await;
    assert!(filtered.body.contains(&newer) && !filtered.body.contains(&older));
    let filtered = send(&h.app, get("/?subject=first", Some(&cookie))).await;
    assert!(filtered.body.contains(&older) && !filtered.body.contains(&newer));
    let filtered = send(&h.app, get("/?status=sent", Some(&cookie))).await;
    assert!(!filtered.body.contains(&older) && filtered.body.contains("No messages"));
    let bad = send(&h.app, get("/?status=lost", Some(&cookie))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("status"));
}

#[tokio::test]
async fn paging_follows_the_cursor() {
    let h = harness().await;
    let mut ids = Vec::new();
    for n in 0..55 {
        ids.push(enqueue(&h.store, &format!("Letter {n}"), "a@example.org", "<p/>").await);
    }
    let (cookie, _) = login(&h.app).await;
    let first = send(&h.app, get("/", Some(&cookie))).await;
    assert!(first.body.contains(&ids[54]) && !first.body.contains(&ids[4]));
    let marker = "rel=\"next\" href=\"";
    let start = first.body.find(marker).expect("an Older link") + marker.len();
    let next = first.body[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let second = send(&h.app, get(&next, Some(&cookie))).await;
    assert!(second.body.contains(&ids[4]) && !second.body.contains(&ids[54]));
    assert!(!second.body.contains("rel=\"next\""), "last page");
}

#[tokio::test]
async fn remove_needs_the_csrf_token() {
    let h = harness().await;
    let id = enqueue(&h.store, "Remove me", "a@example.org", "<p/>").await;
    let (cookie, csrf) = login(&h.app).await;
    let path = format!("/messages/{id}/remove");
    for form in ["", "csrf=", "csrf=forged-token-value"] {
        let reply = send(&h.app, post(&path, Some(&cookie), form)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{form:?}");
    }
    assert_eq!(state_of(&h.store, &id).await, RecipientState::Queued);

    let reply = send(
        &h.app,
        post(&path, Some(&cookie), &format!("csrf={csrf}&back=queue")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.location.unwrap().starts_with("/?done=removed&n=1"));
    assert_eq!(state_of(&h.store, &id).await, RecipientState::Removed);
    assert_eq!(h.store.status(&id).await.unwrap(), MessageStatus::Error);

    let page = send(&h.app, get("/?done=removed&n=1&m=1", Some(&cookie))).await;
    assert!(page.body.contains("Removed 1 recipient of 1 message."));
}

/// Records one deferred attempt for every recipient of the queue, due again in an hour.
async fn defer_everything(store: &Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let claimed = store.claim("admin-test", now, 100).await.unwrap();
    let outcomes = claimed
        .iter()
        .flat_map(|unit| &unit.recipients)
        .map(|recipient| Outcome {
            recipient_id: recipient.id,
            epoch: recipient.epoch,
            delivery: Delivery::Deferred {
                reply: "451 4.3.0 try later".into(),
                next_attempt_at: now + Duration::from_secs(3600),
            },
            at: now,
            host: Some("127.0.0.1:25".into()),
            duration: Duration::from_millis(5),
        })
        .collect();
    store.complete("admin-test", outcomes).await.unwrap();
}

#[tokio::test]
async fn retry_makes_a_deferred_recipient_due_now() {
    let h = harness().await;
    let id = enqueue(&h.store, "Retry me", "a@example.org", "<p/>").await;
    defer_everything(&h.store).await;
    assert_eq!(state_of(&h.store, &id).await, RecipientState::Deferred);
    let (cookie, csrf) = login(&h.app).await;

    let log = send(&h.app, get(&format!("/messages/{id}"), Some(&cookie))).await;
    assert!(log.body.contains("451 4.3.0 try later") && log.body.contains("127.0.0.1:25"));

    let path = format!("/messages/{id}/retry");
    assert_eq!(
        send(&h.app, post(&path, Some(&cookie), "")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(state_of(&h.store, &id).await, RecipientState::Deferred);
    let reply = send(&h.app, post(&path, Some(&cookie), &format!("csrf={csrf}"))).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let location = reply.location.unwrap();
    assert!(
        location.starts_with(&format!("/messages/{id}?done=retried&n=1")),
        "{location}"
    );
    assert_eq!(state_of(&h.store, &id).await, RecipientState::Queued);
    let page = send(&h.app, get(&location, Some(&cookie))).await;
    assert!(page.body.contains("Retried 1 recipient of 1 message."));
}

#[tokio::test]
async fn bulk_retry_takes_the_filter() {
    let h = harness().await;
    let a = enqueue(&h.store, "Report A", "a@example.org", "<p/>").await;
    let b = enqueue(&h.store, "Report B", "b@example.org", "<p/>").await;
    defer_everything(&h.store).await;
    let (cookie, csrf) = login(&h.app).await;
    let form = format!("csrf={csrf}&action=retry&subject=report+b");
    let reply = send(&h.app, post("/bulk", Some(&cookie), &form)).await;
    let location = reply.location.unwrap();
    assert!(
        location.starts_with("/?subject=report%20b&done=retried&n=1&m=1"),
        "{location}"
    );
    assert_eq!(state_of(&h.store, &a).await, RecipientState::Deferred);
    assert_eq!(state_of(&h.store, &b).await, RecipientState::Queued);
}

#[tokio::test]
async fn bulk_actions_take_the_filter() {
    let h = harness().await;
    let a = enqueue(&h.store, "Newsletter A", "a@bulk.example", "<p/>").await;
    let b = enqueue(&h.store, "Newsletter B", "b@bulk.example", "<p/>").await;
    let keep = enqueue(&h.store, "Invoice", "c@other.example", "<p/>").await;
    let (cookie, csrf) = login(&h.app).await;

    let refused = send(
        &h.app,
        post("/bulk", Some(&cookie), "action=remove&domain=bulk.example"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let form = format!("csrf={csrf}&action=remove&domain=bulk.example&status=queued");
    let reply = send(&h.app, post("/bulk", Some(&cookie), &form)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let location = reply.location.unwrap();
    assert!(location.contains("done=removed&n=2&m=2"), "{location}");
    assert_eq!(state_of(&h.store, &a).await, RecipientState::Removed);
    assert_eq!(state_of(&h.store, &b).await, RecipientState::Removed);
    assert_eq!(state_of(&h.store, &keep).await, RecipientState::Queued);

    let page = send(
        &h.app,
        get("/?done=removed&n=5&m=10000&capped=1", Some(&cookie)),
    )
    .await;
    assert!(page.body.contains("at most 10\u{2009}000 at once"));
    assert!(page.body.contains("Stopped at 10\u{2009}000 messages"));

    let bad = send(
        &h.app,
        post(
            "/bulk",
            Some(&cookie),
            &format!("csrf={csrf}&action=explode"),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn user_text_is_escaped_and_the_preview_is_sandboxed() {
    let h = harness().await;
    let html = "<script>alert(1)</script><p onclick=\"x()\">Hi &amp; \"quoted\"</p>";
    let id = enqueue(
        &h.store,
        "<script>alert('subject')</script>",
        "x@example.org",
        html,
    )
    .await;
    let (cookie, _) = login(&h.app).await;

    let list = send(&h.app, get("/", Some(&cookie))).await;
    assert!(
        !list.body.contains("<script>alert"),
        "subject unescaped in the table"
    );
    assert!(
        list.body
            .contains("&lt;script&gt;alert('subject')&lt;/script&gt;")
    );

    let page = send(&h.app, get(&format!("/messages/{id}"), Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("<script>"),
        "nothing unescaped anywhere"
    );
    let start = page.body.find("<iframe").expect("an HTML preview");
    let iframe = &page.body[start..start + page.body[start..].find('>').unwrap()];
    assert!(iframe.contains("sandbox=\"\""), "{iframe}");
    assert!(!iframe.contains("allow-scripts") && !iframe.contains("allow-same-origin"));
    assert!(
        iframe.contains("srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;&lt;p onclick=&quot;x()&quot;&gt;Hi &amp;amp; &quot;quoted&quot;&lt;/p&gt;"),
        "{iframe}"
    );
    assert!(page.body.contains("id=\"raw\""), "the raw MIME");
    assert!(page.body.contains("x@example.org"), "the recipients");
}

#[tokio::test]
async fn unknown_messages_are_404() {
    let h = harness().await;
    let (cookie, csrf) = login(&h.app).await;
    let missing = "01JZZZZZZZZZZZZZZZZZZZZZZZ";
    let page = send(&h.app, get(&format!("/messages/{missing}"), Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let page = send(&h.app, get("/messages/not-an-id", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let path = format!("/messages/{missing}/retry");
    let reply = send(&h.app, post(&path, Some(&cookie), &format!("csrf={csrf}"))).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn suspended_destinations_are_listed_escaped_and_counted_in_metrics() {
    let h = harness().await;
    let (cookie, _) = login(&h.app).await;
    let page = send(&h.app, get("/", Some(&cookie))).await;
    assert!(
        !page.body.contains("Suspended destinations"),
        "nothing when none is suspended"
    );
    let metrics = |app: Router| async move {
        let request = Request::get("/metrics")
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        send(&app, request).await.body
    };
    assert!(
        metrics(h.app.clone())
            .await
            .lines()
            .any(|l| l == "outbox_destinations_suspended 0")
    );

    // As an engine (in this process or another) stores them; one has ended.
    let until = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    for (destination, until, reply) in [
        (
            "mx mx1.shared.test",
            until,
            "421 4.7.0 <b>too busy</b> & \"later\"",
        ),
        (
            "domain gone.test",
            OffsetDateTime::now_utc() - Duration::from_secs(5),
            "421 old",
        ),
    ] {
        h.store
            .suspend(StoredSuspension {
                destination: destination.into(),
                reason: format!("{destination} suspended after: {reply}"),
                until,
                times: 3,
                domains: vec!["b.test".into(), "a.test".into()],
            })
            .await
            .unwrap();
    }
    let page = send(&h.app, get("/", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    let start = page
        .body
        .find("<table id=\"suspensions\"")
        .expect("the table");
    let table = &page.body[start..start + page.body[start..].find("</table>").unwrap()];
    assert!(table.contains("mx mx1.shared.test"), "{table}");
    assert!(table.contains(&super::pages::when(until)), "{table}");
    assert!(table.contains("<td class=\"num\">3</td>"), "{table}");
    assert!(table.contains("a.test b.test"), "{table}");
    assert!(
        table.contains("421 4.7.0 &lt;b&gt;too busy&lt;/b&gt; &amp; &quot;later&quot;"),
        "escaped: {table}"
    );
    assert!(!table.contains("<b>too busy"), "{table}");
    assert!(!table.contains("gone.test"), "ended: {table}");
    assert!(page.body.contains("Suspended destinations"));
    assert!(
        metrics(h.app.clone())
            .await
            .lines()
            .any(|l| l == "outbox_destinations_suspended 1")
    );
}

#[tokio::test]
async fn the_suppressions_page_lists_adds_and_removes_with_csrf() {
    let h = harness().await;
    let reply = send(&h.app, get("/suppressions", None)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "needs a session");
    let (cookie, csrf) = login(&h.app).await;
    let page = send(&h.app, get("/suppressions", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No suppressions."), "{}", page.body);

    // Without the CSRF token nothing is added.
    for form in [
        "address=ann%40example.net",
        "csrf=forged&address=ann%40example.net",
    ] {
        let reply = send(&h.app, post("/suppressions", Some(&cookie), form)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{form}");
    }
    let listed = |store: Arc<dyn Store>| async move {
        store
            .suppressions_list(Default::default())
            .await
            .unwrap()
            .items
    };
    assert!(listed(h.store.clone()).await.is_empty());

    let form = format!("csrf={csrf}&address=Ann%40Example.net&list=weekly&reason=unsubscribed");
    let reply = send(&h.app, post("/suppressions", Some(&cookie), &form)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location.as_deref(), Some("/suppressions?done=added"));
    let form = format!("csrf={csrf}&address=%3Cb%3Ex%3C%2Fb%3E%40example.net&list=%3Cscript%3E");
    let reply = send(&h.app, post("/suppressions", Some(&cookie), &form)).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "no angle brackets in an address"
    );
    assert!(reply.body.contains("address"), "{}", reply.body);
    let form = format!("csrf={csrf}&address=bob%40example.net&list=%3Cscript%3E");
    send(&h.app, post("/suppressions", Some(&cookie), &form)).await;
    let items = listed(h.store.clone()).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].address, "ann@example.net");

    let page = send(&h.app, get("/suppressions?done=added", Some(&cookie))).await;
    assert!(page.body.contains("Suppressed."));
    assert!(page.body.contains("ann@example.net"));
    assert!(page.body.contains("unsubscribed"));
    assert!(page.body.contains("&lt;script&gt;"), "escaped");
    assert!(!page.body.contains("<script>"), "escaped");
    let filtered = send(&h.app, get("/suppressions?list=weekly", Some(&cookie))).await;
    assert!(filtered.body.contains("ann@example.net"));
    assert!(!filtered.body.contains("bob@example.net"));

    // Remove, with the token; a second time it is absent.
    let form = format!("csrf={csrf}&address=ann%40example.net&list=weekly");
    let reply = send(
        &h.app,
        post(
            "/suppressions/remove",
            Some(&cookie),
            "address=ann%40example.net&list=weekly",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = send(&h.app, post("/suppressions/remove", Some(&cookie), &form)).await;
    assert_eq!(
        reply.location.as_deref(),
        Some("/suppressions?done=removed")
    );
    let reply = send(&h.app, post("/suppressions/remove", Some(&cookie), &form)).await;
    assert_eq!(reply.location.as_deref(), Some("/suppressions?done=absent"));
    assert_eq!(listed(h.store.clone()).await.len(), 1);
}

#[tokio::test]
async fn a_suppressed_recipient_shows_its_state_on_the_message_page() {
    let h = harness().await;
    h.store
        .suppress({
            let mut new_suppression = outbox_queue::NewSuppression::default();
            new_suppression.address = "gone@example.org".into();
            new_suppression
        })
        .await
        .unwrap();
    let id = enqueue(&h.store, "Hello", "gone@example.org", "<p/>").await;
    let (cookie, _) = login(&h.app).await;
    let page = send(&h.app, get(&format!("/messages/{id}"), Some(&cookie))).await;
    assert!(page.body.contains("s-suppressed"), "{}", page.body);
    assert!(page.body.contains("suppressed: manual (every list) since"));
}

#[tokio::test]
async fn the_bounces_page_lists_reports_and_shows_unmatched_text_as_plain_text() {
    let h = harness().await;
    let id = enqueue(&h.store, "Hello", "gone@example.org", "<p/>").await;
    let claimed = h
        .store
        .claim("w", OffsetDateTime::now_utc() + Duration::from_secs(1), 10)
        .await
        .unwrap();
    let recipient = &claimed[0].recipients[0];
    h.store
        .complete(
            "w",
            vec![Outcome {
                recipient_id: recipient.id,
                epoch: recipient.epoch,
                delivery: Delivery::Sent {
                    reply: "250 ok".into(),
                },
                at: OffsetDateTime::now_utc(),
                host: None,
                duration: Duration::ZERO,
            }],
        )
        .await
        .unwrap();
    let report = |recipient_id, raw: &str| outbox_queue::NewFeedback {
        kind: outbox_queue::FeedbackKind::Bounce,
        format: "dsn".into(),
        recipient_id,
        original_message_id: None,
        address: Some("gone@example.org".into()),
        status: Some("5.1.1".into()),
        diagnostic: Some("<b>user unknown</b>".into()),
        sender: String::new(),
        raw: raw.as_bytes().to_vec(),
    };
    h.store
        .record_feedback(report(Some(recipient.id), ""))
        .await
        .unwrap();
    let unmatched = h
        .store
        .record_feedback(report(None, "<script>alert(1)</script>"))
        .await
        .unwrap();
    let (cookie, _) = login(&h.app).await;
    assert_eq!(
        send(&h.app, get("/bounces", None)).await.status,
        StatusCode::SEE_OTHER
    );
    let page = send(&h.app, get("/bounces", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&format!("/messages/{id}")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("&lt;b&gt;user unknown&lt;/b&gt;"),
        "escaped: {}",
        page.body
    );
    assert!(page.body.contains(&format!("/bounces/{}", unmatched.id)));
    let only = send(&h.app, get("/bounces?unmatched=1", Some(&cookie))).await;
    assert!(
        !only.body.contains(&format!("/messages/{id}")),
        "{}",
        only.body
    );
    let raw = send(
        &h.app,
        get(&format!("/bounces/{}", unmatched.id), Some(&cookie)),
    )
    .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, "<script>alert(1)</script>");
    let bad = send(&h.app, get("/bounces?before=x", Some(&cookie))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let none = send(&h.app, get("/bounces/999", Some(&cookie))).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    let message = send(&h.app, get(&format!("/messages/{id}"), Some(&cookie))).await;
    assert!(message.body.contains("s-bounced"), "{}", message.body);
}
