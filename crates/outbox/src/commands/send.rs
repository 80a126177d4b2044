//! `outbox send [message flags] [--spec FILE|-] [--now]` (`email_send`, `email_immediate`).
//!
//! Without `--now` the message is queued and its id printed. With `--now` (or the spec's
//! `immediate`) it is delivered at once, bypassing the queue and its size limit, through
//! the same transport the engine uses: the message's relay, else the configured relay,
//! else each recipient domain's MX hosts. Recipients sharing a route share a transaction;
//! a merge message is one transaction per recipient. One line per recipient:
//! `ADDRESS sent` or `ADDRESS failed: CODE text`.

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
        send_now(&config, &spec, now_limit).await
    } else {
        send_queued(&config, &spec, queue_limit).await
    }
}

/// Queues the message; prints its id once it is durably stored.
async fn send_queued(config: &Config, spec: &EmailSpec, limit: u64) -> anyhow::Result<()> {
    crate::message_args::check_queued_relay(spec, config.delivery.allow_program_relay)?;
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
async fn send_now(config: &Config, spec: &EmailSpec, limit: u64) -> anyhow::Result<()> {
    let message = outbox_queue::prepare_with(spec, &compose_options(limit))?;
    let transport = app::transport(config)?;
    let dkim = crate::config::dkim::signers(&config.dkim)?;
    let results = deliver_now(
        &*transport,
        &message,
        config.delivery.relay.is_some(),
        &dkim,
    )
    .await;
    for result in &results {
        println!("{}", line(result));
    }
    let failed = results.iter().filter(|r| !r.accepted).count();
    if failed > 0 {
        let total = results.len();
        return Err(Exit::new(1, format!("{failed} of {total} recipients failed")).into());
    }
    Ok(())
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
