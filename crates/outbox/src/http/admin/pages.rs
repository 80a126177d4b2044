//! The HTML of the admin page: the shared layout and style, the login and error pages,
//! and the queue view. maud escapes every interpolated value (subjects, addresses,
//! replies come from outside), so nothing here builds HTML from strings by hand.

use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use outbox_queue::{
    ListPage, MessageStatus, Priority, RecipientState, StatusCounts, StoredSuspension,
};
use time::OffsetDateTime;
use time::macros::format_description;

use super::BULK_LIMIT;
use super::params::QueueParams;
use super::session::Viewer;

/// No script runs on these pages and nothing loads from elsewhere; the HTML preview's
/// `srcdoc` frame inherits this policy, so a message cannot fetch remote images
/// (tracking pixels) either. Other sites may not frame the page (clickjacking):
/// `frame-ancestors`, and `X-Frame-Options` for browsers without CSP level 2.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = r#"
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header.top { display:flex; align-items:center; gap:16px; padding:10px 24px; background:#111827; color:#fff; }
header.top a { color:#fff; text-decoration:none; font-weight:600; font-size:16px; }
header.top .spacer { flex:1; }
main { padding:20px 24px; max-width:1400px; margin:0 auto; }
h1 { font-size:20px; margin:0 0 12px; } h2 { font-size:16px; margin:24px 0 8px; }
a { color:var(--accent); }
.cards { display:flex; gap:12px; margin-bottom:16px; flex-wrap:wrap; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 16px; min-width:140px; text-decoration:none; color:var(--fg); }
.card b { display:block; font-size:22px; } .card span { color:var(--muted); text-transform:uppercase; font-size:11px; letter-spacing:.05em; }
.card.active { border-color:var(--accent); box-shadow:0 0 0 1px var(--accent); }
form.filters, .bulk, .box { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 12px; margin-bottom:12px; }
form.filters { display:flex; gap:8px; align-items:end; flex-wrap:wrap; }
label { display:flex; flex-direction:column; font-size:11px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; gap:2px; }
input, select { font:inherit; padding:5px 8px; border:1px solid #d1d5db; border-radius:6px; background:#fff; color:var(--fg); }
button, .button { font:inherit; padding:5px 12px; border-radius:6px; border:1px solid #d1d5db; background:#fff; cursor:pointer; color:var(--fg); text-decoration:none; display:inline-block; }
button.primary { background:var(--accent); border-color:var(--accent); color:#fff; }
button.danger { color:#b91c1c; border-color:#fca5a5; }
.bulk { display:flex; gap:8px; align-items:center; flex-wrap:wrap; color:var(--muted); }
table { width:100%; border-collapse:collapse; background:#fff; border:1px solid var(--line); border-radius:8px; overflow:hidden; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f3f4f6; font-size:11px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
tbody tr:hover { background:#f9fafb; }
td.id, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:12px; }
td.num { text-align:right; } td.when { white-space:nowrap; color:var(--muted); }
td.subject { max-width:360px; overflow-wrap:anywhere; } td.reply { max-width:520px; overflow-wrap:anywhere; }
td.actions, div.actions { white-space:nowrap; } td.actions form, div.actions form { display:inline; }
div.actions { margin-top:12px; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600; }
.s-queued { background:#dbeafe; color:#1e40af; } .s-sending { background:#e0e7ff; color:#3730a3; }
.s-sent { background:#dcfce7; color:#166534; } .s-deferred { background:#fef3c7; color:#92400e; }
.s-error, .s-failed, .s-bounced, .s-complained { background:#fee2e2; color:#991b1b; } .s-removed, .s-suppressed { background:#e5e7eb; color:#374151; }
.p-high { color:#b91c1c; font-weight:600; } .p-medium { color:var(--fg); } .p-low { color:var(--muted); }
.pager { display:flex; gap:8px; margin:12px 0; }
.notice { background:#ecfdf5; border:1px solid #a7f3d0; color:#065f46; padding:8px 12px; border-radius:8px; margin-bottom:12px; }
.problem { background:#fef2f2; border:1px solid #fecaca; color:#991b1b; padding:8px 12px; border-radius:8px; margin-bottom:12px; }
.empty { padding:24px; text-align:center; color:var(--muted); background:#fff; border:1px solid var(--line); border-radius:8px; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; margin:0; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; overflow-wrap:anywhere; }
pre.raw { background:#0f172a; color:#e2e8f0; padding:12px; border-radius:8px; overflow:auto; max-height:480px; font-size:12px; white-space:pre-wrap; overflow-wrap:anywhere; }
iframe.preview { width:100%; height:420px; border:1px solid var(--line); border-radius:8px; background:#fff; }
.login { max-width:380px; margin:80px auto; background:#fff; border:1px solid var(--line); border-radius:10px; padding:24px; }
.login form { display:flex; flex-direction:column; gap:12px; }
.muted { color:var(--muted); }
"#;

/// A complete admin HTML response with the security headers every page gets.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (CONTENT_SECURITY_POLICY, CSP),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
            (CACHE_CONTROL, "no-store"),
        ],
        markup,
    )
        .into_response()
}

/// The frame of every page: title, style, top bar (with logout for a browser session).
pub fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Outbox" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header.top {
                    a href="/" { "Outbox" }
                    span.muted { "queue admin" }
                    a href="/suppressions" { "Suppressions" }
                    a href="/bounces" { "Bounces" }
                    span.spacer {}
                    @if let Some(viewer @ Viewer::Session { .. }) = viewer {
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf());
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    respond(
        status,
        layout(
            title,
            None,
            html! {
                h1 { (title) }
                p.problem { (detail) }
                p { a href="/" { "Back to the queue" } }
            },
        ),
    )
}

/// `GET /login`, and the answer to a wrong token.
pub fn login_page(problem: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            div.login {
                h1 { "Log in to Outbox" }
                @if let Some(problem) = problem {
                    p.problem { (problem) }
                }
                form method="post" action="/login" {
                    label for="token" { "API token" }
                    input #token type="password" name="token" autocomplete="current-password"
                        required autofocus;
                    button.primary type="submit" { "Log in" }
                }
                p.muted { "Any token from " code { "[http] tokens" } " in outbox.toml. \
                           Sessions last 12 hours and end when the server restarts." }
            }
        },
    )
}

/// A message status as a coloured badge.
pub fn status_badge(status: MessageStatus) -> Markup {
    html! { span class={ "badge s-" (status.as_str()) } { (status.as_str()) } }
}

/// A recipient state as a coloured badge.
pub fn state_badge(state: RecipientState) -> Markup {
    html! { span class={ "badge s-" (state.as_str()) } { (state.as_str()) } }
}

/// A priority, coloured.
pub fn priority_label(priority: Priority) -> Markup {
    html! { span class={ "p-" (priority.as_str()) } { (priority.as_str()) } }
}

/// A time as `2026-11-22 10:00:00` UTC.
pub fn when(time: OffsetDateTime) -> String {
    time.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_else(|_| time.to_string())
}

/// A count with thin spaces between thousands: `10 000`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(digit);
    }
    out
}

/// Hidden inputs repeating a filter in a form.
pub fn filter_inputs(params: &QueueParams) -> Markup {
    html! {
        input type="hidden" name="status" value=(params.status);
        input type="hidden" name="priority" value=(params.priority);
        input type="hidden" name="subject" value=(params.subject);
        input type="hidden" name="domain" value=(params.domain);
    }
}

/// Everything the queue view shows.
pub struct QueueView<'a> {
    /// Who is looking (for the CSRF token and the logout button).
    pub viewer: &'a Viewer,
    /// The filter in force.
    pub params: &'a QueueParams,
    /// Messages per status, unfiltered.
    pub counts: StatusCounts,
    /// This page of messages.
    pub page: &'a ListPage,
    /// Destinations suspended now (stored by any worker), soonest end first.
    pub suspensions: &'a [StoredSuspension],
    /// A line about what the last action did.
    pub notice: Option<String>,
}

/// `GET /`: counts, filters, bulk actions, the table, paging.
pub fn queue_page(view: &QueueView<'_>) -> Markup {
    let params = view.params;
    let csrf = view.viewer.csrf();
    let total = view.counts.queued + view.counts.sent + view.counts.error;
    let card = |label: &str, value: u64, status: &str| {
        let link = QueueParams {
            status: status.to_string(),
            ..QueueParams::default()
        };
        let active = params.status.trim().eq_ignore_ascii_case(status);
        html! {
            a.card.active[active] href=(link.href()) data-status=(label) {
                b { (value) } span { (label) }
            }
        }
    };
    let select = |name: &str, current: &str, options: &[&str]| {
        html! {
            select name=(name) {
                option value="" selected[current.is_empty()] { "any" }
                @for option in options {
                    option value=(option) selected[current.eq_ignore_ascii_case(option)] { (option) }
                }
            }
        }
    };
    let body = html! {
        h1 { "Queue" }
        @if let Some(notice) = &view.notice {
            p.notice role="status" { (notice) }
        }
        div.cards {
            (card("all", total, ""))
            (card("queued", view.counts.queued, "queued"))
            (card("sent", view.counts.sent, "sent"))
            (card("error", view.counts.error, "error"))
        }
        (suspensions_table(view.suspensions))
        form.filters method="get" action="/" {
            label { "Status" (select("status", &params.status, &["queued", "sent", "error"])) }
            label { "Priority" (select("priority", &params.priority, &["high", "medium", "low"])) }
            label { "Subject contains" input type="search" name="subject" value=(params.subject); }
            label { "Recipient domain" input type="search" name="domain" value=(params.domain)
                placeholder="example.com"; }
            button.primary type="submit" { "Filter" }
            @if params.is_filtered() { a.button href="/" { "Clear" } }
        }
        form.bulk method="post" action="/bulk" {
            input type="hidden" name="csrf" value=(csrf);
            (filter_inputs(params))
            span {
                @if params.is_filtered() { "Every message matching this filter" }
                @else { "Every message in the queue" }
                " (at most " (grouped(BULK_LIMIT as u64)) " at once):"
            }
            button type="submit" name="action" value="retry" { "Retry all" }
            button.danger type="submit" name="action" value="remove" { "Remove all" }
        }
        @if view.page.items.is_empty() {
            p.empty { "No messages" @if params.is_filtered() { " match this filter" } "." }
        } @else {
            table #queue {
                thead { tr {
                    th { "ID" } th { "Subject" } th { "From" } th { "Priority" } th { "Status" }
                    th { "Rcpts" } th { "Created (UTC)" } th { "Send at (UTC)" } th { "Actions" }
                } }
                tbody {
                    @for item in &view.page.items {
                        tr data-id=(item.id) {
                            td.id { a href={ "/messages/" (item.id) } { (item.id) } }
                            td.subject { (item.subject) }
                            td { (item.from) }
                            td { (priority_label(item.priority)) }
                            td.status { (status_badge(item.status)) }
                            td.num { (item.recipients) }
                            td.when { (when(item.created_at)) }
                            td.when { (when(item.send_at)) }
                            td.actions {
                                (action_button(&item.id, "retry", csrf, "queue"))
                                " "
                                (action_button(&item.id, "remove", csrf, "queue"))
                            }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if !params.cursor.is_empty() {
                a.button href=(params.first_page().href()) { "« Newest" }
            }
            @if let Some(next) = &view.page.next_cursor {
                a.button rel="next" href=(params.with_cursor(next).href()) { "Older »" }
            }
        }
    };
    layout("Queue", Some(view.viewer), body)
}

/// "Suspended destinations": the destinations that asked to slow down, and until when
/// their recipients wait; nothing at all when there is none.
fn suspensions_table(suspensions: &[StoredSuspension]) -> Markup {
    html! {
        @if !suspensions.is_empty() {
            h2 { "Suspended destinations" }
            table #suspensions {
                thead { tr {
                    th { "Destination" } th { "Until (UTC)" } th { "Times" } th { "Reason" }
                    th { "Domains" }
                } }
                tbody {
                    @for s in suspensions {
                        tr {
                            td.mono { (s.destination) }
                            td.when { (when(s.until)) }
                            td.num { (s.times) }
                            td.reply { (s.reason) }
                            td { (s.domains.join(" ")) }
                        }
                    }
                }
            }
            h2 { "Messages" }
        }
    }
}

/// A one-button POST form acting on one message; `back` says where to return
/// (`queue` or `message`).
pub fn action_button(id: &str, action: &str, csrf: &str, back: &str) -> Markup {
    let (label, class) = match action {
        "remove" => ("Remove", "danger"),
        _ => ("Retry", ""),
    };
    html! {
        form method="post" action={ "/messages/" (id) "/" (action) } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="back" value=(back);
            button class=(class) type="submit" data-action=(action) { (label) }
        }
    }
}
