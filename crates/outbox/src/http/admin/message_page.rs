//! `GET /messages/{id}`: one message's facts, recipients, delivery log, HTML preview and
//! raw MIME.

use maud::{Markup, html};
use outbox_queue::{AttemptRecord, Event, EventDelivery, MessageDetail, MessageSummary};

use super::pages::{action_button, layout, priority_label, state_badge, status_badge, when};
use super::preview::{RAW_LIMIT, RawView};
use super::session::Viewer;

/// Everything the message page shows.
pub struct MessageView<'a> {
    /// Who is looking.
    pub viewer: &'a Viewer,
    /// The listing row: subject, sender, times.
    pub summary: &'a MessageSummary,
    /// Recipients and their states.
    pub detail: &'a MessageDetail,
    /// The delivery log, oldest first.
    pub attempts: &'a [AttemptRecord],
    /// The message's events, oldest first.
    pub events: &'a [Event],
    /// True when the message has more events than shown.
    pub more_events: bool,
    /// The deliveries of those events to the webhooks.
    pub deliveries: &'a [EventDelivery],
    /// The decoded first `text/html` part, if any.
    pub html: Option<&'a str>,
    /// The raw MIME, maybe cut.
    pub raw: &'a RawView,
    /// A line about what the last action did.
    pub notice: Option<String>,
}

/// The message page.
pub fn message_page(view: &MessageView<'_>) -> Markup {
    let summary = view.summary;
    let csrf = view.viewer.csrf();
    let body = html! {
        p { a href="/" { "« Queue" } }
        h1 { (summary.subject) }
        @if let Some(notice) = &view.notice {
            p.notice role="status" { (notice) }
        }
        div.box {
            dl.facts {
                dt { "ID" } dd.mono #message-id { (summary.id) }
                dt { "Status" } dd #message-status { (status_badge(view.detail.status)) }
                dt { "From" } dd { (summary.from) }
                dt { "Priority" } dd { (priority_label(summary.priority)) }
                dt { "Created" } dd { (when(summary.created_at)) " UTC" }
                dt { "Send at" } dd { (when(summary.send_at)) " UTC" }
                dt { "Size" } dd { (summary.size) " bytes" }
                dt { "Recipients" } dd { (summary.recipients) }
            }
            // A div, not a p: a <form> inside a <p> would close the paragraph.
            div.actions {
                (action_button(&summary.id, "retry", csrf, "message"))
                " "
                (action_button(&summary.id, "remove", csrf, "message"))
            }
        }
        h2 { "Recipients" }
        table #recipients {
            thead { tr { th { "Address" } th { "State" } th { "Attempts" } th { "Last reply" } } }
            tbody {
                @for recipient in &view.detail.recipients {
                    tr {
                        td { (recipient.address) }
                        td.state { (state_badge(recipient.state)) }
                        td.num { (recipient.attempts) }
                        td.reply { (recipient.last_reply.as_deref().unwrap_or("—")) }
                    }
                }
            }
        }
        h2 { "Delivery log" }
        @if view.attempts.is_empty() {
            p.empty { "No delivery attempt yet." }
        } @else {
            table #attempts {
                thead { tr {
                    th { "Time (UTC)" } th { "Recipient" } th { "Host" } th { "Reply" }
                    th { "Outcome" } th { "Took" }
                } }
                tbody {
                    @for attempt in view.attempts {
                        tr {
                            td.when { (when(attempt.at)) }
                            td { (attempt.recipient) }
                            td.mono { (attempt.host.as_deref().unwrap_or("—")) }
                            td.reply { (attempt.reply) }
                            td { span class={ "badge s-" (attempt.outcome.as_str()) } { (attempt.outcome.as_str()) } }
                            td.num { (attempt.duration_ms) " ms" }
                        }
                    }
                }
            }
        }
        h2 { "Events" }
        @if view.events.is_empty() {
            p.empty { "No event recorded." }
        } @else {
            table #events {
                thead { tr {
                    th { "Time (UTC)" } th { "Event" } th { "Recipient" } th { "Reply" }
                    th { "Webhooks" }
                } }
                tbody {
                    @for event in view.events {
                        tr {
                            td.when { (when(event.created_at)) }
                            td { span class={ "badge s-" (event.kind.as_str()) } { (event.kind.as_str()) } }
                            td { (event.recipient) }
                            td.reply { (event.reply.as_deref().unwrap_or("—")) }
                            td.webhooks { (webhook_cell(view.deliveries, event.id)) }
                        }
                    }
                }
            }
            @if view.more_events {
                p.muted { "Only the first " (view.events.len()) " events are shown: see "
                    code { "outbox events list --message " (summary.id) } "." }
            }
        }
        @if let Some(html_part) = view.html {
            h2 { "HTML preview" }
            p.muted { "Rendered without scripts, forms or remote content." }
            // An empty `sandbox` grants nothing: no scripts, no same-origin access, no
            // forms, no popups, no top navigation. maud escapes the attribute value
            // (& < > "), so the document cannot break out of `srcdoc`.
            iframe.preview sandbox="" referrerpolicy="no-referrer" title="HTML part of the message"
                srcdoc=(html_part) {}
        }
        h2 { "Raw MIME" }
        @if view.raw.truncated {
            p.problem {
                "Showing the first " (RAW_LIMIT / 1024) " KiB of " (view.raw.total) " bytes."
            }
        }
        pre.raw #raw { (view.raw.text) }
    };
    layout(&summary.subject, Some(view.viewer), body)
}

/// One event's deliveries: per webhook (its URL without the query, which may hold a
/// token), delivered or pending with its attempts and last error.
fn webhook_cell(deliveries: &[EventDelivery], event_id: i64) -> Markup {
    let mine: Vec<&EventDelivery> = deliveries
        .iter()
        .filter(|d| d.event_id == event_id)
        .collect();
    html! {
        @if mine.is_empty() {
            span.muted { "—" }
        }
        @for d in mine {
            div.delivery {
                span.mono { (d.webhook.split('?').next().unwrap_or(&d.webhook)) } " "
                @if let Some(at) = d.delivered_at {
                    span class="badge s-sent" { "delivered" }
                    " " (when(at))
                    @if let Some(status) = d.last_status { " (HTTP " (status) ")" }
                } @else if d.attempts == 0 {
                    span class="badge s-queued" { "pending" }
                } @else {
                    span class="badge s-deferred" { "failing" }
                    " " (d.attempts) " attempts, next " (when(d.next_attempt_at))
                    @if let Some(error) = &d.last_error { ": " (error) }
                }
            }
        }
    }
}
