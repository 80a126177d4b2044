//! `outbox send [message flags] [--spec FILE|-] [--now]` (`email_send`, `email_immediate`).
//!
//! Without `--now` the message is queued and its id printed. With `--now` (or the spec's
//! `immediate`) it is delivered at once, bypassing the queue and its size limit, through
//! the same transport the engine uses: the message's relay, else the configured relay,
//! else each recipient domain's MX hosts. Recipients sharing a route share a transaction;
//! a merge message is one transaction per recipient. One line per recipient:
//! `ADDRESS sent` or `ADDRESS failed: CODE text`.

use std::collections::HashMap;

use outbox_mime::EmailSpec;
use outbox_queue::{ImmediateResult, deliver_now};

use crate::app;
use crate::cli::Globals;
use crate::config::Config;
use crate::exit::Exit;
use crate::message_args::{MessageArgs, compose_options};

/// Arguments of `outbox send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub message: MessageArgs,

    /// Deliver at once, bypassing the queue (no size limit); prints one line per
    /// recipient instead of an id.
    #[arg(long)]
    pub now: bool,

    /// With --now: send to suppressed recipients too (by default they are refused, one
    /// line each, and the exit status is 1). Queued messages always respect the list.
    #[arg(long, requires = "now")]
    pub ignore_suppression: bool,
}

/// Runs `outbox send`.
pub async fn run(globals: &Globals, args: SendArgs) -> anyhow::Result<()> {
    let config = globals.config()?;
    // Files are bounded by the queue's limit, or for --now (which bypasses the queue) by
    // the larger of it and the composer's default.
    let queue_limit = config.delivery.max_message_size.0;
    let now_limit = crate::message_args::unqueued_limit(queue_limit);
    let spec = args.message.into_spec(now_limit)?;
    if args.now || spec.immediate {
        send_now(&config, &spec, now_limit, args.ignore_suppression).await
    } else {
        send_queued(&config, &spec, queue_limit).await
    }
}

/// Queues the message; prints its id once it is durably stored.
async fn send_queued(config: &Config, spec: &EmailSpec, limit: u64) -> anyhow::Result<()> {
    crate::message_args::check_queued_relay(spec, config.delivery.allow_program_relay)?;
    if spec.list_unsubscribe {
        config.unsubscribe.required()?;
    }
    let outbox = app::outbox(config).await?;
    let message = outbox_queue::prepare_with(spec, &compose_options(limit))?;
    let enqueued = outbox.store().enqueue(message).await?;
    println!("{}", enqueued.id);
    Ok(())
}

/// The line printed for one recipient: `ADDRESS sent` or `ADDRESS failed: CODE text`.
fn line(result: &ImmediateResult) -> String {
    if result.accepted {
        format!("{} sent", result.address)
    } else {
        format!("{} failed: {}", result.address, one_line(&result.reply))
    }
}

fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Composes and delivers at once; exit status 0 only when every recipient was accepted.
/// Recipients on the suppression list (for every list or the message's list) are refused
/// first, one line each, unless `ignore_suppression`.
async fn send_now(
    config: &Config,
    spec: &EmailSpec,
    limit: u64,
    ignore_suppression: bool,
) -> anyhow::Result<()> {
    let mut message = outbox_queue::prepare_with(spec, &compose_options(limit))?;
    let links = match spec.list_unsubscribe {
        true => Some(config.unsubscribe.required()?),
        false => None,
    };
    let total = message.recipients.len();
    let mut refused = 0;
    if !ignore_suppression {
        let suppressed = suppressed_recipients(config, &message).await?;
        message.recipients.retain(|recipient| {
            let key = outbox_queue::normalise_address(&recipient.address).unwrap_or_default();
            match suppressed.get(&key) {
                Some(reply) => {
                    println!("{} {}", recipient.address, reply);
                    refused += 1;
                    false
                }
                None => true,
            }
        });
    }
    let results = if message.recipients.is_empty() {
        Vec::new()
    } else {
        let transport = app::transport(config)?;
        let dkim = crate::config::dkim::signers(&config.dkim)?;
        deliver_now(
            &*transport,
            &message,
            config.delivery.relay.is_some(),
            &dkim,
            links.as_deref(),
        )
        .await
    };
    for result in &results {
        println!("{}", line(result));
    }
    let failed = refused + results.iter().filter(|r| !r.accepted).count();
    if failed > 0 {
        let how = if refused > 0 {
            format!(" ({refused} suppressed; --ignore-suppression sends to them)")
        } else {
            String::new()
        };
        return Err(Exit::new(1, format!("{failed} of {total} recipients failed{how}")).into());
    }
    Ok(())
}

/// The message's recipients that are on the suppression list: normalised address -> the
/// reply to print (`suppressed: REASON (list L) since DATE`).
async fn suppressed_recipients(
    config: &Config,
    message: &outbox_queue::NewMessage,
) -> anyhow::Result<HashMap<String, String>> {
    let list = outbox_queue::message_list(message)?;
    let addresses: Vec<String> = message
        .recipients
        .iter()
        .map(|r| r.address.clone())
        .collect();
    // No SQLite file: no list to check, and --now does not create a queue.
    if let Ok(outbox_queue::DatabaseUrl::Sqlite(path)) =
        outbox_queue::DatabaseUrl::parse(&config.database)
        && !path.exists()
    {
        return Ok(HashMap::new());
    }
    let store = app::store(config).await.map_err(|err| {
        anyhow::anyhow!(
            "cannot check the suppression list: {err:#} (--ignore-suppression sends without checking)"
        )
    })?;
    let found = store.suppressed(&addresses, &list).await?;
    let mut replies = HashMap::new();
    for suppression in found {
        // The every-list entry comes first (ordered by list) and wins.
        replies
            .entry(suppression.address.clone())
            .or_insert_with(|| suppression.reply());
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let sent = ImmediateResult {
            address: "a@x.test".into(),
            accepted: true,
            reply: "250 ok".into(),
        };
        assert_eq!(line(&sent), "a@x.test sent");
        let failed = ImmediateResult {
            address: "b@x.test".into(),
            accepted: false,
            reply: "550-5.1.1 no\r\n550 such user".into(),
        };
        assert_eq!(line(&failed), "b@x.test failed: 550-5.1.1 no 550 such user");
    }
}
