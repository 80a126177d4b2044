//! One-click unsubscribe (RFC 8058), answered by `serve` without an API token: the link is
//! the credential, signed by `[unsubscribe] secret`.
//!
//! - `POST /u/TOKEN` with the body `List-Unsubscribe=One-Click` (what mail clients send,
//!   and what the confirmation page's button sends): the address is suppressed for the
//!   list, reason `unsubscribed`; 200, and 200 again when repeated.
//! - `GET /u/TOKEN`: a page naming the address and the list, with a button; it changes
//!   nothing, because link scanners and previews follow GETs.
//! - A token that does not verify: 400, nothing changes. No `[unsubscribe]`: 404.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use outbox_queue::{NewSuppression, SuppressionReason, Unsubscribe, UnsubscribeRequest};

use super::AppState;
use super::admin::pages::respond;

/// The largest POST body read: the form is 26 octets; multipart adds a boundary or two.
pub const MAX_BODY: usize = 4096;

/// `GET /u/{token}`: the confirmation page.
pub async fn confirm_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let request = match verify(&state, &token) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    let already = match state
        .outbox
        .store()
        .suppressed(std::slice::from_ref(&request.address), &request.list)
        .await
    {
        Ok(found) => !found.is_empty(),
        Err(err) => return unavailable(&err),
    };
    let body = if already {
        html! {
            h1 { "You are unsubscribed" }
            p { (request.address) " gets no mail from " b { (request.list) } "." }
        }
    } else {
        html! {
            h1 { "Unsubscribe?" }
            p { "Stop mail from " b { (request.list) } " to " b { (request.address) } "." }
            form method="post" action={ "/u/" (token) } {
                input type="hidden" name="List-Unsubscribe" value="One-Click";
                button type="submit" { "Unsubscribe" }
            }
        }
    };
    respond(StatusCode::OK, page("Unsubscribe", body))
}

/// `POST /u/{token}`: suppresses the address for the list.
pub async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let request = match verify(&state, &token) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !is_one_click(content_type, &body) {
        return failure(
            StatusCode::BAD_REQUEST,
            "Not a one-click unsubscribe",
            "The request body must be List-Unsubscribe=One-Click (RFC 8058). Nothing was changed.",
        );
    }
    let mut suppression = NewSuppression::default();
    suppression.address = request.address.clone();
    suppression.list = Some(request.list.clone());
    suppression.reason = SuppressionReason::Unsubscribed;
    suppression.message_id = request.message_id.clone();
    if let Err(err) = state.outbox.store().suppress(suppression).await {
        return unavailable(&err);
    }
    tracing::info!(list = %request.list, message = ?request.message_id, "unsubscribed by one-click link");
    respond(
        StatusCode::OK,
        page(
            "Unsubscribed",
            html! {
                h1 { "You are unsubscribed" }
                p { (request.address) " gets no more mail from " b { (request.list) } "." }
            },
        ),
    )
}

/// Why a token is not taken.
enum Refused {
    /// No `[unsubscribe]` on this server.
    NotConfigured,
    /// Not one of ours.
    BadToken,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NotConfigured => failure(
                StatusCode::NOT_FOUND,
                "Not found",
                "This server does not send unsubscribe links.",
            ),
            Refused::BadToken => failure(
                StatusCode::BAD_REQUEST,
                "This unsubscribe link is not valid",
                "The link is incomplete or was changed. Nothing was changed; use the link \
                 from the message as it arrived.",
            ),
        }
    }
}

/// The request a token names.
fn verify(state: &AppState, token: &str) -> Result<UnsubscribeRequest, Refused> {
    let links: Option<std::sync::Arc<Unsubscribe>> =
        state.config.unsubscribe.links().ok().flatten();
    let links = links.ok_or(Refused::NotConfigured)?;
    links.verify(token).map_err(|_| {
        tracing::info!("unsubscribe: a token that does not verify");
        Refused::BadToken
    })
}

/// Whether a POST body is RFC 8058's `List-Unsubscribe=One-Click`: as a form
/// (`application/x-www-form-urlencoded`, what clients send) or as a multipart form field.
fn is_one_click(content_type: &str, body: &[u8]) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    if media == "multipart/form-data" {
        return text.contains("name=\"List-Unsubscribe\"") && text.contains("One-Click");
    }
    text.trim()
        .split('&')
        .any(|pair| pair == "List-Unsubscribe=One-Click")
}

/// The store did not answer: 503, nothing changed, try again.
fn unavailable(err: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %err, "unsubscribe: the queue database did not answer");
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "The unsubscribe could not be recorded just now. Nothing was changed.",
    )
}

fn failure(status: StatusCode, title: &str, detail: &str) -> Response {
    respond(
        status,
        page(
            title,
            html! {
                h1 { (title) }
                p { (detail) }
            },
        ),
    )
}

/// The frame of these pages: no links into the admin page, no script.
fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                style {
                    "body{font:16px/1.5 system-ui,sans-serif;color:#1f2937;max-width:36em;margin:4em auto;padding:0 1em}"
                    "button{font:inherit;padding:.5em 1.5em;border-radius:6px;border:1px solid #2563eb;background:#2563eb;color:#fff;cursor:pointer}"
                }
            }
            body { main { (body) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_one_click;

    #[test]
    fn the_one_click_body_in_each_form_clients_send() {
        let form = "application/x-www-form-urlencoded";
        assert!(is_one_click(form, b"List-Unsubscribe=One-Click"));
        assert!(is_one_click(form, b"List-Unsubscribe=One-Click\r\n"));
        assert!(is_one_click("", b"a=b&List-Unsubscribe=One-Click"));
        assert!(is_one_click(
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--x--\r\n"
        ));
        assert!(!is_one_click(form, b""));
        assert!(!is_one_click(form, b"List-Unsubscribe=Other"));
        assert!(!is_one_click(form, b"X=List-Unsubscribe=One-Click"));
        assert!(!is_one_click(form, &[0xff, 0xfe]));
    }
}
